"""The CUDA C++ kernels (csrc/cuda) and, on a GPU, both CUDA backends.

Without a GPU:
- test_cuda_kernels_registered: when genet_ops._C was built with the CUDA sources, the
  dispatcher holds their CUDA kernel for every op (not the Python fallback).
- test_emu_*: tests/emu/cuda builds the CUDA kernels' own source as plain C++ and runs it
  thread by thread on CPU tensors (fibers for threads; barriers and warp shuffles
  emulated), as torch.ops.genet_ops_emu.* (conftest's cuda_emu fixture). Here: the
  shapes of parity.EMU_CASES reach every launch plan, 64-bit unit decoding, the fast
  divmod. Their parity with the float64 reference, in two thread orders, runs in
  test_parity.py (backend "cuda_emu").

With a GPU (skipped, with the reason, without one), for both CUDA backends: gradcheck in
float64, torch.library.opcheck, torch.compile(fullgraph=True) against eager, streams
and devices, errors. Their parity is test_parity.py's (backends "cuda" and "triton").
"""
from __future__ import annotations

import pytest
import torch

import genet_ops
from genet_ops import _extension, backend, checks, ops, reference
from oracle import DTYPES, GEBlock, assert_compiled_matches_eager, requires_cuda
import parity
from parity import CUDA_LAYOUTS, EMU_CASES, check_four_ops, emu_fns, make


# ============================================================== registration (no GPU)
def _built_with_cuda() -> bool:
    """Whether genet_ops._C holds the CUDA sources (the CUDA op files' names are in its
    registration records), whatever this machine's GPU."""
    from genet_ops import _C

    with open(_C.__file__, "rb") as f:
        return b"csrc/cuda/gather_excite_cuda" in f.read()


def test_cuda_kernels_registered():
    if not _extension.loaded:
        pytest.skip(f"extension not loaded ({_extension.error})")
    if not _built_with_cuda():
        pytest.skip("extension built without CUDA")
    info = genet_ops.backend_info()
    for op in ops.SCHEMAS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"genet_ops::{op}", "CUDA"), op
        # The compiled kernel, registered from csrc/cuda, not the Python fallback.
        assert backend.KERNELS[op]["cuda"] == "cuda", (op, backend.KERNELS[op])
        assert info["kernels"][op]["cuda"] == "cuda", (op, info)
        dump = torch._C._dispatch_dump(f"genet_ops::{op}")
        cuda_lines = [ln for ln in dump.splitlines() if ln.startswith("CUDA")]
        assert cuda_lines and "csrc/cuda/" in cuda_lines[0], dump
    assert backend.cuda_kernels_compiled()


# ============================================================ emulated kernels (no GPU)
# Parity on EMU_CASES, in both thread orders, is test_parity.py's (backend "cuda_emu").
@pytest.mark.parametrize("shape,extent", [((2, 3, 7, 7), 0), ((1, 2, 13, 16), 2), ((2, 16, 9, 6), 4), ((1, 3, 56, 56), 4)])
def test_emu_64bit_unit_decoding(cuda_emu, shape, extent):
    cuda_emu.emu_force_idx64(True)
    try:
        for layout in ("contiguous", "channels_last"):
            check_four_ops(emu_fns(cuda_emu), shape, extent, torch.float32, layout, True)
    finally:
        cuda_emu.emu_force_idx64(False)


def test_emu_fast_divmod(cuda_emu):
    for d in [1, 2, 3, 5, 7, 12, 25, 49, 112, 1000, 4097, 65535, 65536, 1 << 20, (1 << 31) - 1]:
        assert cuda_emu.emu_check_divmod(d, 0, 5000), d
        assert cuda_emu.emu_check_divmod(d, (1 << 31) - 5000, 5000), d
        assert cuda_emu.emu_check_divmod(d, 123456789, 2000), d


def test_emu_cases_reach_every_plan(cuda_emu):
    """The plans of EMU_CASES cover every kernel path: NCHW flat / 2-D / tiles narrower
    than a vector, NHWC; teams within a warp and across warps; register cache and two
    sweeps; scalar and vector accesses."""
    seen = set()
    for dtype in DTYPES:
        for shape, extent in EMU_CASES:
            if 0 in shape:
                continue
            for layout in CUDA_LAYOUTS:
                x = make(shape, dtype, layout, 0)
                for nvals in (1, 2):
                    lay, V, Tc, Rr, T, items, cache, block, flat, multi_tile, *_ = cuda_emu.emu_plan(x, extent, nvals)
                    name = "nhwc" if lay else ("flat" if flat else ("multi_tile" if multi_tile else "2d"))
                    seen |= {(name,), (name, "cache" if cache else "sweep"), (name, "vec" if V > 1 else "scalar"),
                             ("nchw" if lay == 0 else "nhwc", "team>32" if T > 32 else "team<=32")}
    want = {(n,) for n in ("flat", "2d", "multi_tile", "nhwc")}
    want |= {(n, v) for n in ("flat", "2d", "multi_tile", "nhwc") for v in ("vec",)}
    want |= {(n, "scalar") for n in ("flat", "2d", "nhwc")}
    want |= {(n, "cache") for n in ("flat", "2d", "multi_tile", "nhwc")}
    want |= {(n, "sweep") for n in ("flat", "nhwc")}
    want |= {(lay, t) for lay in ("nchw", "nhwc") for t in ("team>32", "team<=32")}
    assert want <= seen, sorted(want - seen)


# =================================================================== GPU (both backends)
def gpu_fns(backend_name):
    """The four ops of backend "cuda" or "triton" (tests/parity.py), or skip saying why."""
    return parity.BACKENDS[backend_name].fns()


def gpu_lean_fns():
    """The output-keeping ops of the CUDA C++ backend."""
    return parity.BACKENDS["cuda"].lean_fns()


@requires_cuda
@pytest.mark.parametrize("extent", [0, 2, 3])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gpu_lean_gradcheck(extent, layout, chosen_backend):
    """The public ops with save='output' (gather_excite_lean / excite_lean and the CUDA
    excite_lean_backward under their autograd), ReLU on and off, in float64."""
    gpu_lean_fns()
    chosen_backend("cuda")
    shape = (2, 3, 7, 5)
    x = make(shape, torch.float64, layout, 0, "cuda").requires_grad_()
    res = make(shape, torch.float64, layout, 1, "cuda").requires_grad_()
    g = make(checks.g_shape(shape, extent), torch.float64, "contiguous", 2, "cuda").requires_grad_()
    for relu in (False, True):
        assert torch.autograd.gradcheck(
            lambda a, r: genet_ops.gather_excite(a, extent, r, relu=relu, save="output"), (x, res))
        assert torch.autograd.gradcheck(
            lambda a, b, r: genet_ops.excite(a, b, extent, r, relu=relu, save="output"), (x, g, res))


@pytest.fixture
def chosen_backend():
    before = genet_ops.get_backend()
    yield genet_ops.set_backend
    genet_ops.set_backend(before)


@requires_cuda
@pytest.mark.parametrize("backend_name", ["cuda", "triton"])
@pytest.mark.parametrize("extent", [0, 2, 3])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gpu_gradcheck(backend_name, extent, layout, chosen_backend):
    gpu_fns(backend_name)  # skips when the backend is missing
    chosen_backend(backend_name)
    shape = (2, 3, 7, 5)
    x = make(shape, torch.float64, layout, 0, "cuda").requires_grad_()
    res = make(shape, torch.float64, layout, 1, "cuda").requires_grad_()
    g = make(checks.g_shape(shape, extent), torch.float64, "contiguous", 2, "cuda").requires_grad_()
    assert torch.autograd.gradcheck(lambda a, r: genet_ops.gather_excite(a, extent, r), (x, res))
    assert torch.autograd.gradcheck(lambda a, b, r: genet_ops.excite(a, b, extent, r), (x, g, res))


@requires_cuda
@pytest.mark.parametrize("backend_name", ["cuda", "triton"])
@pytest.mark.parametrize("extent", [0, 3])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_gpu_opcheck(backend_name, extent, layout, dtype):
    ge, ge_bwd, ex, ex_bwd = gpu_fns(backend_name)
    shape = (2, 8, 7, 5)
    x = make(shape, dtype, layout, 0, "cuda")
    res = make(shape, dtype, layout, 1, "cuda")
    dy = make(shape, dtype, layout, 2, "cuda")
    g = make(checks.g_shape(shape, extent), dtype, "contiguous", 3, "cuda")
    rg = lambda t: t.clone().requires_grad_()  # noqa: E731
    for op, args in [
        (ge.default, (rg(x), extent)),
        (ge.default, (rg(x), extent, rg(res))),
        (ge_bwd.default, (dy, x, extent)),
        (ex.default, (rg(x), rg(g), extent)),
        (ex.default, (rg(x), rg(g), extent, rg(res))),
        (ex_bwd.default, (dy, x, g, extent)),
        (ge.default, (rg(x), extent, rg(res), True)),
        (ex.default, (rg(x), rg(g), extent, rg(res), True)),
    ]:
        torch.library.opcheck(op, args)
    if backend_name == "cuda":
        ge_lean, ex_lean, lean_bwd = gpu_lean_fns()
        out, means = ge_lean(x, extent, res, True)
        for op, args in [
            (ge_lean.default, (rg(x), extent, rg(res), True)),
            (ge_lean.default, (rg(x), extent)),
            (ex_lean.default, (rg(x), rg(g), extent, rg(res), True)),
            (lean_bwd.default, (dy, out, res, means, extent, True, True)),
            (lean_bwd.default, (dy, out, None, means, extent, False, False)),
        ]:
            torch.library.opcheck(op, args)


@requires_cuda
@pytest.mark.parametrize("backend_name", ["cuda", "triton"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gpu_compile_fullgraph_matches_eager(backend_name, layout, chosen_backend):
    gpu_fns(backend_name)
    chosen_backend(backend_name)

    torch.manual_seed(0)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = GEBlock(16).cuda().to(memory_format=fmt)
    x = torch.randn(4, 16, 16, 16, device="cuda").contiguous(memory_format=fmt).requires_grad_()
    assert_compiled_matches_eager(model, x)


@requires_cuda
@pytest.mark.parametrize("backend_name", ["cuda", "triton"])
def test_gpu_side_stream(backend_name):
    """Kernels run on the caller's current stream: work queued on a side stream, with
    no synchronisation in between, sees the inputs made there."""
    ge, ge_bwd, ex, ex_bwd = gpu_fns(backend_name)
    base = make((8, 64, 28, 28), torch.float32, "contiguous", 0, "cuda")
    want = ge(base, 0)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        x = base * 1.0  # produced on s
        y = ge(x, 0)
    torch.cuda.current_stream().wait_stream(s)
    torch.testing.assert_close(y, want, rtol=0, atol=0)


@requires_cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
@pytest.mark.parametrize("backend_name", ["cuda", "triton"])
def test_gpu_second_device(backend_name):
    ge, ge_bwd, ex, ex_bwd = gpu_fns(backend_name)
    x = make((2, 8, 14, 14), torch.float32, "contiguous", 0, "cuda:1")
    with torch.cuda.device(0):
        y = ge(x, 2)
    assert y.device == x.device
    torch.testing.assert_close(y.double(), reference.gather_excite(x.double(), 2), rtol=1e-5, atol=1e-6)


@requires_cuda
def test_gpu_bad_input_names_the_argument():
    x = torch.randn(2, 3, 8, 8, device="cuda")
    with pytest.raises((ValueError, RuntimeError), match="residual must be on x's device"):
        torch.ops.genet_ops.gather_excite(x, 0, x.cpu())
    with pytest.raises((ValueError, RuntimeError), match="g must have shape"):
        torch.ops.genet_ops.excite(x, torch.randn(2, 3, 3, 3, device="cuda"), 2)
