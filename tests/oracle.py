"""Test oracles: the float64 reference and an 'eager in the input dtype' twin.

Error budget in the style of flash-attention (DESIGN §4): a kernel's error against
the float64 oracle may be at most twice the error of the plain eager code run in the
same low precision, plus a floor of some ulps of the output's magnitude.
"""
from __future__ import annotations

import torch

from genet_ops import _layout as L, reference as R


def eager_gather_excite(x, extent, residual=None):
    """What a user's eager code computes in x's dtype: mean, sigmoid, multiply, add,
    each rounded to x's dtype. Differentiable."""
    t = L.tile_geom(x.shape, extent)
    g = R.tile_sum(x, t) / R.tile_count(t, x.device, x.dtype)
    y = x * R.expand_tiles(torch.sigmoid(g), t)
    return y if residual is None else y + residual


def eager_excite(x, g, extent, residual=None):
    t = L.tile_geom(x.shape, extent)
    y = x * R.expand_tiles(torch.sigmoid(g), t)
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
