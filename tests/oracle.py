"""Test oracles: the float64 reference and an 'eager in the input dtype' twin.

Error budget in the style of flash-attention (docs/DESIGN.md §4): a kernel's error against
the float64 oracle may be at most twice the error of the plain eager code run in the
same low precision, plus a floor of some ulps of the output's magnitude.
"""
from __future__ import annotations

import torch

import genet_ops
from genet_ops import checks, reference


def eager_gather_excite(x, extent, residual=None):
    """What a user's eager code computes in x's dtype: mean, sigmoid, multiply, add,
    each rounded to x's dtype. Differentiable."""
    t = checks.tile_geom(x.shape, extent)
    g = reference.tile_sum(x, t) / reference.tile_count(t, x.device, x.dtype)
    y = x * reference.expand_tiles(torch.sigmoid(g), t)
    return y if residual is None else y + residual


def eager_excite(x, g, extent, residual=None):
    t = checks.tile_geom(x.shape, extent)
    y = x * reference.expand_tiles(torch.sigmoid(g), t)
    return y if residual is None else y + residual


def assert_within_budget(out, oracle, eager, what: str) -> None:
    assert out.shape == oracle.shape, f"{what}: shape {tuple(out.shape)} != {tuple(oracle.shape)}"
    assert torch.isfinite(out).all(), f"{what}: non-finite values (an output element left unwritten?)"
    err = (out.double() - oracle).abs().max().item() if out.numel() else 0.0
    err_eager = (eager.double() - oracle).abs().max().item() if out.numel() else 0.0
    scale = max(1.0, oracle.abs().max().item()) if out.numel() else 1.0
    # Floor: float32/64 eager code reduces in another order than a kernel; over tiles
    # of thousands of pixels that alone is tens of ulps. In fp16/bf16 the eager error
    # dominates and a few ulps suffice.
    ulps = 64 if out.dtype in (torch.float32, torch.float64) else 4
    floor = ulps * torch.finfo(out.dtype).eps * scale
    assert err <= 2 * err_eager + floor, (
        f"{what}: max error {err:.3g} vs float64 oracle exceeds 2 x eager's {err_eager:.3g} + {floor:.3g}"
    )


def assert_layout(out, x, what: str = "output") -> None:
    """Output strides follow the layout rule: empty_like(kernel_input(x)) (docs/DESIGN.md §2)."""
    want = torch.empty_like(checks.kernel_input(x))
    assert out.stride() == want.stride(), f"{what}: strides {out.stride()} != {want.stride()}"


class GEBlock(torch.nn.Module):
    """A conv and both ops as a model uses them (residual, global and tiled extents, a
    learned gather), for torch.compile tests."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.gather = torch.nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels)

    def forward(self, x):
        h = self.conv(x)
        y = genet_ops.gather_excite(h, 0, residual=x)
        y = genet_ops.gather_excite(y, 4)
        return genet_ops.excite(y, self.gather(y), 2, residual=h)


def assert_compiled_matches_eager(model, x) -> None:
    """torch.compile(fullgraph=True) of model gives eager's output and gradients."""
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    y_eager, y_comp = model(x), compiled(x)
    torch.testing.assert_close(y_comp, y_eager)
    g_eager = torch.autograd.grad(y_eager.square().sum(), [x, *model.parameters()])
    g_comp = torch.autograd.grad(y_comp.square().sum(), [x, *model.parameters()])
    for a, b in zip(g_comp, g_eager):
        torch.testing.assert_close(a, b)
