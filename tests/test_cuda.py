"""The CUDA C++ kernels (csrc/cuda) and, on a GPU, both CUDA backends.

Without a GPU:
- test_cuda_kernels_registered: when genet_ops._C was built with the CUDA sources, the
  dispatcher holds their CUDA kernel for every op (not the Python fallback).
- test_emu_*: tests/emu/cuda builds the CUDA kernels' own source as plain C++ and runs it
  thread by thread on CPU tensors (fibers for threads; barriers and warp shuffles
  emulated), as torch.ops.genet_ops_emu.*. Parity with the float64 reference on shapes
  that reach every launch plan (see test_emu_cases_reach_every_plan), for the four ops
  (ReLU epilogue on and off) and the output-keeping ones (gather_excite_lean's means,
  excite_lean_backward with every relu / gather flag), bitwise equality between two
  thread orders (a missing barrier shows up there), 64-bit unit decoding.

With a GPU (skipped, with the reason, without one): the CUDA C++ backend and the Triton
backend against the float64 reference in all four dtypes, NCHW / channels_last /
strided / misaligned inputs, odd, tiny, large and empty shapes, ReLU on and off; the
output-keeping ops of the CUDA C++ backend the same way; gradcheck in float64;
torch.library.opcheck; torch.compile(fullgraph=True) against eager; streams and devices.
"""
from __future__ import annotations

import functools

import pytest
import torch

import genet_ops
from genet_ops import _extension, _tuning, backend, checks, ops, reference
import oracle
from oracle import (DTYPES, GEBlock, assert_compiled_matches_eager, assert_layout, assert_within_budget, eager_excite,
                    eager_gather_excite, requires_cuda)

from oracle import ROOT
LAYOUTS = ["contiguous", "channels_last", "strided", "misaligned", "misaligned_cl"]
# Planes with clearly non-zero means, so that a wrong tile sum moves the sigmoid.
make = functools.partial(oracle.make, plane_spread=1.5)


def check_four_ops(fns, shape, extent, dtype, layout, with_res, device="cpu", relu=False):
    """Runs the four ops through fns = (gather_excite, gather_excite_backward, excite,
    excite_backward), the forward ones with the ReLU epilogue when relu, and checks each
    output against the float64 oracle within the eager budget (tests/oracle.py), and its
    layout. Returns the outputs."""
    ge, ge_bwd, ex, ex_bwd = fns
    what = f"{tuple(shape)} e={extent} {dtype} {layout} res={with_res} relu={relu}"
    x = make(shape, dtype, layout, 0, device)
    res = make(shape, dtype, layout, 1, device) if with_res else None
    dy = make(shape, dtype, layout, 2, device)
    g = make(checks.g_shape(shape, extent), dtype, "contiguous", 3, device)

    y = ge(x, extent, res, relu)
    dx = ge_bwd(dy, x, extent)
    ye_ = ex(x, g, extent, res, relu)
    edx, edg = ex_bwd(dy, x, g, extent)

    x64 = x.detach().double().requires_grad_()
    g64 = g.detach().double().requires_grad_()
    r64 = None if res is None else res.double()
    y64 = reference.gather_excite(x64, extent, r64)
    (dx64,) = torch.autograd.grad(y64, x64, dy.double())
    y64 = reference.gather_excite(x64.detach(), extent, r64, relu)
    ey64 = reference.excite(x64.detach(), g64.detach(), extent, r64, relu)
    edx64, edg64 = reference.excite_backward(dy.double(), x64.detach(), g64.detach(), extent)

    xe = x.detach().clone().requires_grad_()
    ge_ = g.detach().clone().requires_grad_()
    yl = eager_gather_excite(xe, extent, res)
    (dxl,) = torch.autograd.grad(yl, xe, dy)
    eyl = eager_excite(xe, ge_, extent, res)
    edxl, edgl = torch.autograd.grad(eyl, [xe, ge_], dy)
    if relu:
        yl, eyl = torch.relu(yl), torch.relu(eyl)

    assert_within_budget(y, y64, yl, "gather_excite " + what)
    assert_within_budget(dx, dx64, dxl, "gather_excite_backward " + what)
    assert_within_budget(ye_, ey64, eyl, "excite " + what)
    assert_within_budget(edx, edx64, edxl, "excite_backward dx " + what)
    assert_within_budget(edg, edg64, edgl, "excite_backward dg " + what)
    for name, out in (("y", y), ("dx", dx), ("excite y", ye_), ("excite dx", edx)):
        assert_layout(out, x, f"{name} {what}")
    want_dg = torch.empty_like(checks.g_for_layout(g, checks.is_nchw(checks.kernel_input(x))))
    assert edg.shape == g.shape and edg.stride() == want_dg.stride(), f"dg layout {what}"
    return y, dx, ye_, edx, edg


def check_lean_ops(fns, shape, extent, dtype, layout, with_res, relu, device="cpu"):
    """Runs the output-keeping ops through fns = (gather_excite_lean, excite_lean,
    excite_lean_backward): gather_excite_lean's output and tile means, excite_lean's
    output, then excite_lean_backward on that output and those means with gather off and
    on. Each result against the float64 reference within the budget, where the floor is
    the reference run on the same inputs in their precision (its reductions in the
    accumulation dtype, as the kernels'); and each layout. Returns the outputs."""
    ge_lean, ex_lean, lean_bwd = fns
    what = f"{tuple(shape)} e={extent} {dtype} {layout} res={with_res} relu={relu}"
    x = make(shape, dtype, layout, 0, device)
    res = make(shape, dtype, layout, 1, device) if with_res else None
    dy = make(shape, dtype, layout, 2, device)
    g = make(checks.g_shape(shape, extent), dtype, "contiguous", 3, device)
    x64, g64 = x.double(), g.double()
    r64 = None if res is None else res.double()
    nchw = checks.is_nchw(checks.kernel_input(x))

    out, means = ge_lean(x, extent, res, relu)
    ye = eager_gather_excite(x, extent, res)
    assert_within_budget(out, reference.gather_excite(x64, extent, r64, relu), torch.relu(ye) if relu else ye,
                         "gather_excite_lean out " + what)
    assert means.dtype == checks.acc_dtype(dtype), f"means dtype {means.dtype} {what}"
    means64 = reference.gather_excite_lean(x64, extent)[1]
    assert_within_budget(means, means64, reference.gather_excite_lean(x, extent)[1], "gather_excite_lean g " + what)
    assert_layout(out, x, f"gather_excite_lean out {what}")
    want_g = torch.empty_like(checks.g_for_layout(torch.empty(means.shape), nchw))
    assert means.stride() == want_g.stride(), f"gather_excite_lean g layout {what}"

    ey = ex_lean(x, g, extent, res, relu)
    eye = eager_excite(x, g, extent, res)
    assert_within_budget(ey, reference.excite(x64, g64, extent, r64, relu), torch.relu(eye) if relu else eye,
                         "excite_lean " + what)

    results = [out, means, ey]
    for gather in (False, True):
        dx, dg = lean_bwd(dy, out, res, means, extent, relu, gather)
        dx64, dg64 = reference.excite_lean_backward(dy.double(), out.double(), r64, means.double(), extent, relu, gather)
        dxe, dge = reference.excite_lean_backward(dy, out, res, means, extent, relu, gather)
        assert_within_budget(dx, dx64, dxe, f"excite_lean_backward dx gather={gather} {what}")
        assert_within_budget(dg, dg64, dge, f"excite_lean_backward dg gather={gather} {what}")
        assert_layout(dx, out, f"excite_lean_backward dx {what}")
        assert dg.dtype == means.dtype and dg.stride() == want_g.stride(), f"excite_lean_backward dg {what}"
        results += [dx, dg]
    return results


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
@pytest.fixture(scope="session")
def emu():
    """torch.ops.genet_ops_emu, built once per session from tests/emu/cuda/emu_ext.cpp."""
    from torch.utils import cpp_extension

    build = oracle.extension_build_dir("emu")
    cpp_extension.load(
        name="genet_ops_emu",
        sources=[str(ROOT / "tests" / "emu" / "cuda" / "emu_ext.cpp")],
        extra_include_paths=[str(ROOT / "csrc"), str(ROOT / "csrc" / "cuda"), str(ROOT / "tests" / "emu" / "cuda")],
        extra_cflags=["-O1"],
        build_directory=str(build),
        is_python_module=False,
        verbose=False,
    )
    E = torch.ops.genet_ops_emu
    E.emu_set_reverse(False)
    E.emu_force_idx64(False)
    _tuning.add_sink(E._set_tuning)  # the emulated planner follows genet_ops._tuning too
    return E


def emu_fns(E):
    return (E.gather_excite, E.gather_excite_backward, E.excite, E.excite_backward)


def emu_lean_fns(E):
    return (E.gather_excite_lean, E.excite_lean, E.excite_lean_backward)


# (shape, extent): each reaches some launch plan; test_emu_cases_reach_every_plan
# checks that together they reach all of them.
EMU_CASES = [
    ((2, 3, 7, 7), 0),        # tiny planes, odd size: flat, several teams per block
    ((3, 2, 3, 5), 0),
    ((3, 2, 3, 5), 2),        # partial tiles both ways
    ((2, 4, 8, 8), 0),        # one thread per plane, 16-byte vectors
    ((2, 4, 8, 8), 2),        # tiles narrower than a vector
    ((1, 2, 13, 16), 2),      # ... with a partial last tile row
    ((2, 4, 8, 8), 4),
    ((1, 3, 56, 56), 0),      # multi-warp teams (shared-memory reduction)
    ((1, 3, 56, 56), 4),
    ((1, 2, 56, 56), 8),
    ((1, 2, 28, 28), 3),      # odd extent: scalar columns, partial tiles
    ((1, 2, 112, 112), 0),    # 112 x 112 global
    ((1, 1, 112, 112), 16),
    ((1, 1, 200, 200), 0),    # past the register budget: two sweeps
    ((2, 5, 13, 11), 0),
    ((2, 5, 13, 11), 4),
    ((2, 16, 9, 6), 2),       # channels_last with vectors across C, partial tiles
    ((2, 16, 9, 6), 4),
    ((1, 24, 14, 14), 0),     # channels_last: several channel groups
    ((1, 64, 16, 16), 0),     # channels_last: multi-warp teams
    ((1, 4, 72, 72), 0),      # channels_last: two sweeps
    ((2, 3, 9, 7), 1),        # extent 1 (SiLU)
    ((2, 3, 9, 7), 100),      # extent beyond the plane (= global)
    ((0, 3, 8, 8), 0),        # empty
    ((2, 3, 0, 5), 2),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,extent", EMU_CASES, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else f"e{v}")
def test_emu_parity(emu, shape, extent, dtype, poison_outputs):
    for i, layout in enumerate(LAYOUTS):
        for with_res in (False, True):
            # ReLU on in half the runs: with and without residual, in both native layouts
            check_emu_both_orders(emu, shape, extent, dtype, layout, with_res, relu=(i + with_res) % 2 == 1)


# The output-keeping ops' runs per case: (layout, residual, relu), every combination of
# the flags in both native layouts, and misaligned views for the narrower vectors.
LEAN_RUNS = [("contiguous", False, False), ("contiguous", True, True), ("channels_last", True, False),
             ("channels_last", False, True), ("misaligned", True, True), ("misaligned_cl", True, False)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,extent", EMU_CASES + [((2, 3, 0, 5), 0)],
                         ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else f"e{v}")
def test_emu_lean_parity(emu, shape, extent, dtype, poison_outputs):
    """gather_excite_lean, excite_lean and excite_lean_backward (gather off and on) on the
    shapes that reach every plan, in both thread orders. (2, 3, 0, 5) at extent 0 has
    tiles without pixels: means and dg must come back 0."""
    # planes past the register budget (two sweeps) are slow to emulate: fewer runs there
    runs = LEAN_RUNS if shape[2] * shape[3] < 5000 else LEAN_RUNS[:2] + [("channels_last", True, True)]
    for layout, with_res, relu in runs:
        check_emu_both_orders(emu, shape, extent, dtype, layout, with_res, relu=relu, lean=True)


def check_emu_both_orders(emu, shape, extent, dtype, layout, with_res, relu=False, lean=False):
    """check_four_ops (check_lean_ops if lean) on the emulator with threads run forward,
    then in reverse order between barriers; the results must be equal bit for bit (a
    missing barrier differs)."""
    def run():
        if lean:
            return check_lean_ops(emu_lean_fns(emu), shape, extent, dtype, layout, with_res, relu)
        return check_four_ops(emu_fns(emu), shape, extent, dtype, layout, with_res, relu=relu)

    emu.emu_set_reverse(False)
    fwd = run()
    emu.emu_set_reverse(True)
    try:
        rev = run()
    finally:
        emu.emu_set_reverse(False)
    for a, b in zip(fwd, rev):  # NaN-free (checked above), so equal means bitwise
        assert torch.equal(a, b), f"thread order changes the result: {shape} e={extent} {dtype} {layout}"


@pytest.mark.parametrize("shape,extent", [((2, 3, 7, 7), 0), ((1, 2, 13, 16), 2), ((2, 16, 9, 6), 4), ((1, 3, 56, 56), 4)])
def test_emu_64bit_unit_decoding(emu, shape, extent):
    emu.emu_force_idx64(True)
    try:
        for layout in ("contiguous", "channels_last"):
            check_four_ops(emu_fns(emu), shape, extent, torch.float32, layout, True)
    finally:
        emu.emu_force_idx64(False)


def test_emu_fast_divmod(emu):
    for d in [1, 2, 3, 5, 7, 12, 25, 49, 112, 1000, 4097, 65535, 65536, 1 << 20, (1 << 31) - 1]:
        assert emu.emu_check_divmod(d, 0, 5000), d
        assert emu.emu_check_divmod(d, (1 << 31) - 5000, 5000), d
        assert emu.emu_check_divmod(d, 123456789, 2000), d


def test_emu_cases_reach_every_plan(emu):
    """The plans of EMU_CASES cover every kernel path: NCHW flat / 2-D / tiles narrower
    than a vector, NHWC; teams within a warp and across warps; register cache and two
    sweeps; scalar and vector accesses."""
    seen = set()
    for dtype in DTYPES:
        for shape, extent in EMU_CASES:
            if 0 in shape:
                continue
            for layout in LAYOUTS:
                x = make(shape, dtype, layout, 0)
                for nvals in (1, 2):
                    lay, V, Tc, Rr, T, items, cache, block, flat, multi, *_ = emu.emu_plan(x, extent, nvals)
                    name = "nhwc" if lay else ("flat" if flat else ("multi" if multi else "2d"))
                    seen |= {(name,), (name, "cache" if cache else "sweep"), (name, "vec" if V > 1 else "scalar"),
                             ("nchw" if lay == 0 else "nhwc", "team>32" if T > 32 else "team<=32")}
    want = {(n,) for n in ("flat", "2d", "multi", "nhwc")}
    want |= {(n, v) for n in ("flat", "2d", "multi", "nhwc") for v in ("vec",)}
    want |= {(n, "scalar") for n in ("flat", "2d", "nhwc")}
    want |= {(n, "cache") for n in ("flat", "2d", "multi", "nhwc")}
    want |= {(n, "sweep") for n in ("flat", "nhwc")}
    want |= {(lay, t) for lay in ("nchw", "nhwc") for t in ("team>32", "team<=32")}
    assert want <= seen, sorted(want - seen)


# =================================================================== GPU (both backends)
def gpu_fns(backend_name):
    if backend_name == "cuda":
        if not backend.cuda_kernels_compiled():
            pytest.skip("CUDA C++ kernels not compiled into genet_ops._C")
        t = torch.ops.genet_ops
        return (t.gather_excite, t.gather_excite_backward, t.excite, t.excite_backward)
    if not backend.triton_available() or not hasattr(torch.ops.genet_ops, "gather_excite_triton"):
        pytest.skip("Triton ops not available")
    t = torch.ops.genet_ops
    return (t.gather_excite_triton, t.gather_excite_backward_triton, t.excite_triton, t.excite_backward_triton)


GPU_CASES = [
    ((4, 8, 7, 7), 0),
    ((8, 16, 8, 8), 0),
    ((3, 2, 3, 5), 0),
    ((3, 2, 3, 5), 2),
    ((2, 8, 16, 16), 2),
    ((2, 32, 28, 28), 8),
    ((2, 16, 56, 56), 0),
    ((2, 16, 56, 56), 4),
    ((2, 4, 112, 112), 0),
    ((1, 2, 112, 112), 16),
    ((2, 5, 13, 11), 3),
    ((2, 5, 13, 11), 4),
    ((2, 16, 9, 6), 2),
    ((2, 3, 9, 7), 1),
    ((1, 2, 256, 256), 0),    # NCHW past the register budget
    ((1, 8, 100, 100), 0),    # channels_last past the register budget
    ((2, 256, 14, 14), 0),
    ((0, 3, 8, 8), 0),
    ((2, 3, 0, 5), 2),
]


@requires_cuda
@pytest.mark.parametrize("backend_name", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,extent", GPU_CASES, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else f"e{v}")
def test_gpu_parity(backend_name, shape, extent, dtype, poison_outputs):
    fns = gpu_fns(backend_name)
    for i, layout in enumerate(LAYOUTS):
        for with_res in (False, True):
            check_four_ops(fns, shape, extent, dtype, layout, with_res, device="cuda", relu=(i + with_res) % 2 == 1)


def gpu_lean_fns():
    """The output-keeping ops of the CUDA C++ backend (they have no Triton twin yet)."""
    gpu_fns("cuda")  # skips when the CUDA C++ kernels are missing
    t = torch.ops.genet_ops
    return (t.gather_excite_lean, t.excite_lean, t.excite_lean_backward)


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,extent", GPU_CASES + [((2, 3, 0, 5), 0)],
                         ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else f"e{v}")
def test_gpu_lean_parity(shape, extent, dtype, poison_outputs):
    fns = gpu_lean_fns()
    for layout, with_res, relu in LEAN_RUNS + [("strided", True, True), ("strided", False, False)]:
        check_lean_ops(fns, shape, extent, dtype, layout, with_res, relu, device="cuda")


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
