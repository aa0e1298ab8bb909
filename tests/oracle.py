"""The test toolkit every test file shares: inputs, oracles, tolerances, markers.

- make(): random inputs in every memory layout the ops must handle.
- eager_*: the plain code a user would write, in the input's dtype (the error floor).
- assert_within_budget(): the error budget in the style of flash-attention
  (docs/DESIGN.md §4): a kernel's error against the float64 oracle may be at most twice
  the error of the eager code run in the same precision, plus a small floor.
- assert_matches_reference(): a kernel against the reference in the same dtype.
- assert_layout(), GEBlock / assert_compiled_matches_eager(), requires_cuda.
- extension_build_dir(): where a test-only C++ extension builds (or the test skips).
- write_cifar_tree(): a small tree in the real CIFAR-10 python format (train and script tests).
- GenetOpLog: which genet_ops ops ran (below autograd), e.g. the lean or the input-keeping ones.

tests/parity.py builds the one parity loop over every backend on these.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import genet_ops
from genet_ops import checks, reference

DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
# contiguous / channels_last: the two native layouts. strided: every other channel of a
# wider tensor; strided_w: every other column (neither is dense). misaligned(_cl): dense,
# but starting one element into the storage, so no 16-byte vector access is aligned.
LAYOUTS = ("contiguous", "channels_last", "strided", "strided_w", "misaligned", "misaligned_cl")

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"
)
ROOT = Path(__file__).resolve().parents[1]


def extension_build_dir(name: str) -> Path:
    """build/<name>-pyXY for a test-only extension built by torch.utils.cpp_extension;
    skips the calling test where no C++ compiler or ninja can build it."""
    from torch.utils import cpp_extension

    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip(f"no C++ compiler to build {name}")
    if not cpp_extension.is_ninja_available():
        pytest.skip(f"ninja is missing: torch.utils.cpp_extension cannot build {name}")
    build = ROOT / "build" / f"{name}-py{sys.version_info.major}{sys.version_info.minor}"
    build.mkdir(parents=True, exist_ok=True)
    return build


def make(shape, dtype, layout="contiguous", seed=0, device="cpu", plane_spread=0.0):
    """Standard-normal values (drawn in float64 from `seed`, then rounded to dtype) of
    `shape`, in one of LAYOUTS. plane_spread > 0 adds a random offset of that scale to
    each (n, c) plane, so plane and tile means are clearly non-zero and a wrong tile sum
    moves the sigmoid."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(shape, generator=gen, dtype=torch.float64)
    if plane_spread:
        v += plane_spread * torch.randn(*shape[:2], 1, 1, generator=gen, dtype=torch.float64)
    v = v.to(device=device, dtype=dtype)
    if layout == "contiguous":
        return v
    if layout == "channels_last":
        return v.contiguous(memory_format=torch.channels_last)
    n, c, h, w = shape
    if layout == "strided":
        wide = torch.empty(n, 2 * c, h, w, device=device, dtype=dtype)
        wide[:, ::2] = v
        return wide[:, ::2]
    if layout == "strided_w":
        wide = torch.empty(n, c, h, 2 * w + 1, device=device, dtype=dtype)
        wide[..., 1::2] = v
        return wide[..., 1::2]
    t = v.contiguous(memory_format=torch.channels_last) if layout == "misaligned_cl" else v
    buf = torch.empty(t.numel() + 1, device=device, dtype=dtype)
    out = buf[1:].as_strided(t.shape, t.stride())
    out.copy_(t)
    return out


def eager_gather_excite(x, extent, residual=None, relu=False):
    """What a user's eager code computes in x's dtype: mean, sigmoid, multiply, add,
    ReLU, each rounded to x's dtype. Differentiable."""
    t = checks.tile_geom(x.shape, extent)
    g = reference.tile_sum(x, t) / reference.tile_count(t, x.device, x.dtype)
    y = x * reference.expand_tiles(torch.sigmoid(g), t)
    y = y if residual is None else y + residual
    return torch.relu(y) if relu else y


def eager_excite(x, g, extent, residual=None, relu=False):
    t = checks.tile_geom(x.shape, extent)
    y = x * reference.expand_tiles(torch.sigmoid(g), t)
    y = y if residual is None else y + residual
    return torch.relu(y) if relu else y


def assert_within_budget(out, oracle, eager, what: str, atol: float | None = None) -> None:
    """out's max error against oracle (float64) <= 2 x eager's (same dtype as out) + a
    floor: `atol` where the caller gives one, else some ulps of the output's magnitude."""
    assert out.shape == oracle.shape, f"{what}: shape {tuple(out.shape)} != {tuple(oracle.shape)}"
    assert out.dtype == eager.dtype, f"{what}: dtype {out.dtype}, eager floor in {eager.dtype}"
    assert torch.isfinite(out).all(), f"{what}: non-finite values (an output element left unwritten?)"
    err = (out.double() - oracle).abs().max().item() if out.numel() else 0.0
    err_eager = (eager.double() - oracle).abs().max().item() if out.numel() else 0.0
    if atol is None:
        # Floor: float32/64 eager code reduces in another order than a kernel; over tiles
        # of thousands of pixels that alone is tens of ulps. In fp16/bf16 the eager error
        # dominates and a few ulps suffice.
        scale = max(1.0, oracle.abs().max().item()) if out.numel() else 1.0
        ulps = 64 if out.dtype in (torch.float32, torch.float64) else 4
        atol = ulps * torch.finfo(out.dtype).eps * scale
    assert err <= 2 * err_eager + atol, (
        f"{what}: max error {err:.3g} vs float64 oracle exceeds 2 x eager's {err_eager:.3g} + {atol:.3g}"
    )


# Relative tolerance for a kernel against the reference in the same dtype: one rounding
# of an fp32 (fp64) value each, so at most an ulp or so apart after different summation
# orders; sums over big tiles (running sums per channel in a kernel, pairwise in torch)
# drift apart like sqrt(pixels).
SAME_DTYPE_RTOL = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 8e-3, torch.float16: 1e-3}


def assert_matches_reference(out, ref, what: str, tile_pixels: int = 1) -> None:
    """out and ref (the reference in the same dtype) agree in strides and values, within
    SAME_DTYPE_RTOL widened for tiles of more than 256 pixels."""
    assert out.stride() == ref.stride(), f"{what}: strides {out.stride()} != {ref.stride()}"
    assert torch.isfinite(out).all(), f"{what}: non-finite values (an element left unwritten?)"
    tol = SAME_DTYPE_RTOL[out.dtype] * max(1.0, tile_pixels**0.5 / 16)
    scale = max(ref.abs().max().item(), 1.0) if ref.numel() else 1.0
    torch.testing.assert_close(out.double(), ref.double(), rtol=tol, atol=tol * scale, msg=what)


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


class GenetOpLog(TorchDispatchMode):
    """Records the genet_ops ops that run inside the `with` (their names, e.g.
    'genet_ops::excite_lean'), as the dispatcher sees them below autograd."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "genet_ops":
            self.ops.append(func.name())
        return func(*args, **(kwargs or {}))


def write_cifar_tree(root, n_train=(40, 40, 40, 40, 44), n_test=50, seed=0):
    """A small tree in the real CIFAR-10 python format (pickled dicts with bytes keys,
    data uint8 (n, 3072) as R, G, B planes, labels a list of ints)."""
    import pickle

    import numpy as np

    rng = np.random.RandomState(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, n in zip(names, list(n_train) + [n_test]):
        d = {b"batch_label": name.encode(), b"labels": rng.randint(0, 10, n).tolist(),
             b"data": rng.randint(0, 256, (n, 3072)).astype(np.uint8),
             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(d, f, protocol=2)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": [b"c%d" % i for i in range(10)], b"num_cases_per_batch": 40}, f)
    return folder
