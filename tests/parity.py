"""One parity check for every backend, and the backends it runs on.

- check_four_ops / check_lean_ops: one case on one backend. Each op against the float64
  reference within the error budget (docs/DESIGN.md §4) and the layout rule (§2).
- BACKENDS: for each backend its ops, device, cases and, where it differs, its rounding
  floor. tests/test_parity.py runs every backend's cases through the checks.
- The CUDA kernel emulator (tests/emu/cuda): load_cuda_emu(), and
  check_emu_both_orders(), which runs a check with the threads in two orders.
- The Triton interpreter's rounding floor: triton_floor(), TRITON_ATOL.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import pytest
import torch

from genet_ops import _tuning, backend, checks, reference
import oracle
from oracle import DTYPES, ROOT, assert_layout, assert_within_budget, eager_excite, eager_gather_excite

# The layouts the CUDA kernels are checked in (tests/oracle.py's LAYOUTS but strided_w).
CUDA_LAYOUTS = ["contiguous", "channels_last", "strided", "misaligned", "misaligned_cl"]
# Planes with clearly non-zero means, so that a wrong tile sum moves the sigmoid.
make = functools.partial(oracle.make, plane_spread=1.5)


# ===================================================================== the checks
def _inputs(shape, extent, dtype, layout, with_res, device):
    """x, the residual (or None), grad_out and a gate g of one case, each from its own seed."""
    x = make(shape, dtype, layout, 0, device)
    res = make(shape, dtype, layout, 1, device) if with_res else None
    dy = make(shape, dtype, layout, 2, device)
    return x, res, dy, make(checks.g_shape(shape, extent), dtype, "contiguous", 3, device)


def check_four_ops(fns, shape, extent, dtype, layout, with_res, device="cpu", relu=False, floor=None, atol=None):
    """Runs the four ops through fns = (gather_excite, gather_excite_backward, excite,
    excite_backward), the forward ones with the ReLU epilogue when relu, and checks each
    output against the float64 oracle within the budget, and its layout. The budget's
    floor is the eager code in the input's dtype, or floor(reference_fn, *args) where a
    backend gives one; atol (per dtype) replaces the budget's ulp floor. Returns the outputs."""
    ge, ge_bwd, ex, ex_bwd = fns
    what = f"{tuple(shape)} e={extent} {dtype} {layout} res={with_res} relu={relu}"
    tol = None if atol is None else atol[dtype]
    x, res, dy, g = _inputs(shape, extent, dtype, layout, with_res, device)

    y = ge(x, extent, res, relu)
    dx = ge_bwd(dy, x, extent)
    ye_ = ex(x, g, extent, res, relu)
    edx, edg = ex_bwd(dy, x, g, extent)

    x64, g64 = x.double(), g.double()
    r64 = None if res is None else res.double()
    y64 = reference.gather_excite(x64, extent, r64, relu)
    dx64 = reference.gather_excite_backward(dy.double(), x64, extent)
    ey64 = reference.excite(x64, g64, extent, r64, relu)
    edx64, edg64 = reference.excite_backward(dy.double(), x64, g64, extent)

    if floor is None:
        xe = x.detach().clone().requires_grad_()
        ge_ = g.detach().clone().requires_grad_()
        yl = eager_gather_excite(xe, extent, res)
        (dxl,) = torch.autograd.grad(yl, xe, dy)
        eyl = eager_excite(xe, ge_, extent, res)
        edxl, edgl = torch.autograd.grad(eyl, [xe, ge_], dy)
        if relu:
            yl, eyl = torch.relu(yl), torch.relu(eyl)
    else:
        yl = floor(reference.gather_excite, x, extent, res, relu)
        dxl = floor(reference.gather_excite_backward, dy, x, extent)
        eyl = floor(reference.excite, x, g, extent, res, relu)
        edxl, edgl = floor(reference.excite_backward, dy, x, g, extent)

    assert_within_budget(y, y64, yl, "gather_excite " + what, tol)
    assert_within_budget(dx, dx64, dxl, "gather_excite_backward " + what, tol)
    assert_within_budget(ye_, ey64, eyl, "excite " + what, tol)
    assert_within_budget(edx, edx64, edxl, "excite_backward dx " + what, tol)
    assert_within_budget(edg, edg64, edgl, "excite_backward dg " + what, tol)
    for name, out in (("y", y), ("dx", dx), ("excite y", ye_), ("excite dx", edx)):
        assert_layout(out, x, f"{name} {what}")
    want_dg = torch.empty_like(checks.g_for_layout(g, checks.is_nchw(checks.kernel_input(x))))
    assert edg.shape == g.shape and edg.stride() == want_dg.stride(), f"dg layout {what}"
    return y, dx, ye_, edx, edg


def check_lean_ops(fns, shape, extent, dtype, layout, with_res, relu, device="cpu", floor=None, atol=None,
                   plain=None):
    """Runs the output-keeping ops through fns = (gather_excite_lean, excite_lean,
    excite_lean_backward): gather_excite_lean's output and tile means, excite_lean's
    output, then excite_lean_backward on that output and those means with gather off and
    on. Each result against the float64 reference within the budget, where the floor is
    the reference run on the same inputs in their precision (its reductions in the
    accumulation dtype, as the kernels'), or floor(reference_fn, *args); and each layout.
    atol (per dtype) applies to the outputs in the input's dtype. With plain = (the same
    backend's gather_excite, excite), their outputs must equal the lean ones bit for bit
    (one kernel; the means are an extra store). Returns the outputs."""
    ge_lean, ex_lean, lean_bwd = fns
    what = f"{tuple(shape)} e={extent} {dtype} {layout} res={with_res} relu={relu}"
    tol = None if atol is None else atol[dtype]
    x, res, dy, g = _inputs(shape, extent, dtype, layout, with_res, device)
    x64, g64 = x.double(), g.double()
    r64 = None if res is None else res.double()
    nchw = checks.is_nchw(checks.kernel_input(x))
    if floor is None:
        def floor(fn, *args):
            if fn is reference.gather_excite:
                return eager_gather_excite(*args)
            if fn is reference.excite:
                return eager_excite(*args)
            return fn(*args)

    out, means = ge_lean(x, extent, res, relu)
    assert_within_budget(out, reference.gather_excite(x64, extent, r64, relu),
                         floor(reference.gather_excite, x, extent, res, relu), "gather_excite_lean out " + what, tol)
    assert means.dtype == checks.acc_dtype(dtype), f"means dtype {means.dtype} {what}"
    means64 = reference.gather_excite_lean(x64, extent)[1]
    assert_within_budget(means, means64, floor(_tile_means, x, extent), "gather_excite_lean g " + what)
    assert_layout(out, x, f"gather_excite_lean out {what}")
    want_g = torch.empty_like(checks.g_for_layout(torch.empty(means.shape), nchw))
    assert means.stride() == want_g.stride(), f"gather_excite_lean g layout {what}"

    ey = ex_lean(x, g, extent, res, relu)
    assert_within_budget(ey, reference.excite(x64, g64, extent, r64, relu),
                         floor(reference.excite, x, g, extent, res, relu), "excite_lean " + what, tol)
    assert_layout(ey, x, f"excite_lean {what}")
    if plain is not None:
        assert torch.equal(plain[0](x, extent, res, relu), out), f"gather_excite vs gather_excite_lean {what}"
        assert torch.equal(plain[1](x, g, extent, res, relu), ey), f"excite vs excite_lean {what}"

    results = [out, means, ey]
    for gather in (False, True):
        dx, dg = lean_bwd(dy, out, res, means, extent, relu, gather)
        dx64, dg64 = reference.excite_lean_backward(dy.double(), out.double(), r64, means.double(), extent, relu,
                                                    gather)
        dxe, dge = floor(reference.excite_lean_backward, dy, out, res, means, extent, relu, gather)
        assert_within_budget(dx, dx64, dxe, f"excite_lean_backward dx gather={gather} {what}", tol)
        assert_within_budget(dg, dg64, dge, f"excite_lean_backward dg gather={gather} {what}")
        assert_layout(dx, out, f"excite_lean_backward dx {what}")
        assert dg.dtype == means.dtype and dg.stride() == want_g.stride(), f"excite_lean_backward dg {what}"
        results += [dx, dg]
    return results


def _tile_means(x, extent):
    """gather_excite_lean's second output (the tile means, in the accumulation dtype)."""
    return reference.gather_excite_lean(x, extent)[1]


# ============================================================ the Triton interpreter
# The budget's floor for the Triton ops: an absolute one (their shapes are small and well scaled).
TRITON_ATOL = {torch.float32: 1e-6, torch.float16: 1e-4, torch.bfloat16: 1e-3, torch.float64: 1e-12}


def _truncate_to_bf16(t):
    return (t.float().contiguous().view(torch.int32) & -65536).view(torch.float32).to(torch.bfloat16)


def triton_floor(fn, *args):
    """fn (a reference kernel) in the inputs' dtype: the Triton ops' rounding floor. Triton
    3.8's interpreter converts float32 to bfloat16 by truncation (GPUs round to nearest
    even), so there a bfloat16 floor is the reference's float32 result truncated."""
    native = fn(*args)
    dtype = next(a.dtype for a in args if isinstance(a, torch.Tensor))
    if not (triton_interpreted() and dtype == torch.bfloat16):
        return native
    wide = fn(*[a.float() if isinstance(a, torch.Tensor) and a.dtype == torch.bfloat16 else a for a in args])

    def pick(n, w):
        return _truncate_to_bf16(w) if n.dtype == torch.bfloat16 else w

    return tuple(map(pick, native, wide)) if isinstance(native, tuple) else pick(native, wide)


def triton_interpreted() -> bool:
    from genet_ops.triton import _launch

    return _launch.INTERPRET


def triton_device() -> str:
    """Where the Triton ops run: the GPU, or CPU tensors under the interpreter."""
    return "cuda" if torch.cuda.is_available() else "cpu"


# ==================================================================== the emulator
@functools.cache
def load_cuda_emu():
    """torch.ops.genet_ops_emu: the CUDA kernels' source built as plain C++ from
    tests/emu/cuda/emu_ext.cpp (once per process), threads run as fibers."""
    from torch.utils import cpp_extension

    build = oracle.extension_build_dir("emu")
    emu_dir = ROOT / "tests" / "emu" / "cuda"
    cpp_extension.load(
        name="genet_ops_emu",
        sources=[str(emu_dir / "emu_ext.cpp")],
        extra_include_paths=[str(ROOT / "csrc"), str(ROOT / "csrc" / "cuda"), str(emu_dir)],
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


def in_both_orders(E, run, what):
    """run() on the emulator with threads run forward, then in reverse order between
    barriers; the results must be equal bit for bit (a missing barrier differs)."""
    E.emu_set_reverse(False)
    fwd = run()
    E.emu_set_reverse(True)
    try:
        rev = run()
    finally:
        E.emu_set_reverse(False)
    for a, b in zip(fwd, rev):  # NaN-free (checked by run), so equal means bitwise
        assert torch.equal(a, b), f"thread order changes the result: {what}"


def check_emu_both_orders(E, shape, extent, dtype, layout, with_res, relu=False, lean=False):
    """check_four_ops (check_lean_ops if lean) on the emulator, in both thread orders."""
    def run():
        if lean:
            return check_lean_ops(emu_lean_fns(E), shape, extent, dtype, layout, with_res, relu,
                                  plain=emu_fns(E)[::2])
        return check_four_ops(emu_fns(E), shape, extent, dtype, layout, with_res, relu=relu)

    in_both_orders(E, run, f"{shape} e={extent} {dtype} {layout} res={with_res} relu={relu} lean={lean}")


# ===================================================================== the backends
def _dispatcher_fns():
    t = torch.ops.genet_ops
    return (t.gather_excite, t.gather_excite_backward, t.excite, t.excite_backward)


def _dispatcher_lean_fns():
    t = torch.ops.genet_ops
    return (t.gather_excite_lean, t.excite_lean, t.excite_lean_backward)


def _reference_fns():
    return (reference.gather_excite, reference.gather_excite_backward, reference.excite, reference.excite_backward)


def _reference_lean_fns():
    return (reference.gather_excite_lean, reference.excite, reference.excite_lean_backward)


def _triton_fns():
    _need_triton()
    t = torch.ops.genet_ops
    return (t.gather_excite_triton, t.gather_excite_backward_triton, t.excite_triton, t.excite_backward_triton)


def _triton_lean_fns():
    _need_triton()
    t = torch.ops.genet_ops
    return (t.gather_excite_lean_triton, t.excite_lean_triton, t.excite_lean_backward_triton)


def _need_triton():
    if not backend.triton_available() or not hasattr(torch.ops.genet_ops, "gather_excite_triton"):
        pytest.skip("Triton ops not available")


def _need_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (torch.cuda.is_available() is False)")
    if not backend.cuda_kernels_compiled():
        pytest.skip("CUDA C++ kernels not compiled into genet_ops._C")


def _cuda_fns():
    _need_cuda()
    return _dispatcher_fns()


def _cuda_lean_fns():
    _need_cuda()
    return _dispatcher_lean_fns()


def _emu(fns):
    return lambda: fns(load_cuda_emu())


# A case: (shape, extent, runs), each run (layout, residual, relu).
def _cuda_runs(layouts=CUDA_LAYOUTS):
    """Every layout with and without a residual, the ReLU on in half of them (with and
    without residual, in both native layouts)."""
    return [(lay, res, (i + res) % 2 == 1) for i, lay in enumerate(layouts) for res in (False, True)]


# The output-keeping ops' runs: every combination of the flags in both native layouts,
# and misaligned views for the narrower vectors.
LEAN_RUNS = [("contiguous", False, False), ("contiguous", True, True), ("channels_last", True, False),
             ("channels_last", False, True), ("misaligned", True, True), ("misaligned_cl", True, False)]

# (shape, extent): each reaches some launch plan of the CUDA kernels (test_cuda's
# test_emu_cases_reach_every_plan checks that together they reach all of them).
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
# (2, 3, 0, 5) at extent 0 has tiles without pixels: means and dg must come back 0.
# Planes past the register budget (two sweeps) are slow to emulate: fewer runs there.
EMU_LEAN_CASES = [(s, e, LEAN_RUNS if s[2] * s[3] < 5000 else LEAN_RUNS[:2] + [("channels_last", True, True)])
                  for s, e in EMU_CASES + [((2, 3, 0, 5), 0)]]

# The CPU kernels' own lean cases besides EMU_LEAN_CASES: odd and partial-tile shapes, a
# strided input, extents 0 / 1 / 2 / 3 / large, residual and ReLU in all four combinations.
CPU_LEAN_CASES = [(s, e, [(lay, res, relu) for lay in ("contiguous", "channels_last", "strided")
                          for res in (False, True) for relu in (False, True)])
                  for s in [(2, 3, 7, 7), (3, 2, 3, 5), (2, 5, 13, 11), (1, 4, 32, 32), (0, 3, 8, 8)]
                  for e in (0, 1, 2, 3, 64)]

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
GPU_LEAN_RUNS = LEAN_RUNS + [("strided", True, True), ("strided", False, False)]

# Under the interpreter (each program runs in numpy) the shapes stay small: global on tiny
# odd planes and on planes that allow vector accesses, partial tiles along H, W or both,
# extent 1 (SiLU), extent between W and H, extent larger than the plane.
TRITON_LAYOUTS = ["contiguous", "channels_last", "strided_w"]
TRITON_CASES = [(s, e, [(lay, res, False) for lay in TRITON_LAYOUTS]) for s, e, res in [
    ((2, 3, 7, 7), 0, True),
    ((2, 3, 4, 6), 0, False),
    ((2, 3, 9, 10), 2, False),
    ((1, 4, 8, 7), 3, True),
    ((2, 2, 6, 9), 4, False),
    ((1, 3, 5, 6), 1, True),
    ((1, 2, 9, 3), 4, True),
    ((1, 2, 5, 7), 9, False),
]]
# One run per case, each layout in several (not the full product).
TRITON_LEAN_CASES = [(s, e, [(lay, res, relu)]) for s, e, res, relu, lay in [
    ((2, 3, 7, 7), 0, True, True, "channels_last"),
    ((2, 3, 4, 6), 0, False, True, "contiguous"),
    ((2, 3, 9, 10), 2, False, True, "strided_w"),
    ((1, 4, 8, 7), 3, True, False, "contiguous"),
    ((1, 3, 5, 6), 1, True, True, "strided_w"),
    ((1, 2, 9, 3), 4, False, False, "channels_last"),
    ((1, 2, 5, 7), 9, True, True, "contiguous"),
    ((1, 4, 6, 5), 2, True, True, "channels_last"),
]]


@dataclass(frozen=True)
class Backend:
    """One backend's ops (fns / lean_fns: callables that return them, or skip with the
    reason), where its tensors live, its cases and its floor. host: runs on the CPU
    whatever the machine (the GPU check deselects those with -m "not host")."""

    fns: Callable[[], tuple]
    lean_fns: Callable[[], tuple]
    device: str
    cases: list
    lean_cases: list
    host: bool
    floor: Callable | None = None
    atol: dict | None = None
    both_orders: bool = False


_ON_GPU = torch.cuda.is_available()
BACKENDS = {
    # The reference run as a kernel (what every op falls back to).
    "reference": Backend(_reference_fns, _reference_lean_fns, "cpu", TRITON_CASES, TRITON_LEAN_CASES, True),
    # Whatever serves torch.ops.genet_ops on CPU tensors: the C++ kernels, or the
    # reference where genet_ops._C is not built.
    "cpu": Backend(_dispatcher_fns, _dispatcher_lean_fns, "cpu",
                   [(s, e, _cuda_runs()) for s, e in EMU_CASES], EMU_LEAN_CASES + CPU_LEAN_CASES, True),
    "cuda_emu": Backend(_emu(emu_fns), _emu(emu_lean_fns), "cpu",
                        [(s, e, _cuda_runs()) for s, e in EMU_CASES], EMU_LEAN_CASES, True, both_orders=True),
    "cuda": Backend(_cuda_fns, _cuda_lean_fns, "cuda", [(s, e, _cuda_runs()) for s, e in GPU_CASES],
                    [(s, e, GPU_LEAN_RUNS) for s, e in GPU_CASES + [((2, 3, 0, 5), 0)]], False),
    "triton": (Backend(_triton_fns, _triton_lean_fns, "cuda", [(s, e, _cuda_runs()) for s, e in GPU_CASES],
                       [(s, e, GPU_LEAN_RUNS) for s, e in GPU_CASES + [((2, 3, 0, 5), 0)]], False)
               if _ON_GPU else
               Backend(_triton_fns, _triton_lean_fns, "cpu", TRITON_CASES, TRITON_LEAN_CASES, True,
                       floor=triton_floor, atol=TRITON_ATOL)),
}


def run_case(name, shape, extent, dtype, runs, lean):
    """Every run of one case on backend `name`, through check_four_ops or check_lean_ops."""
    b = BACKENDS[name]
    fns = b.lean_fns() if lean else b.fns()
    plain = b.fns()[::2] if lean else None
    for layout, with_res, relu in runs:
        def once():
            if lean:
                return check_lean_ops(fns, shape, extent, dtype, layout, with_res, relu, b.device, b.floor, b.atol,
                                      plain)
            return check_four_ops(fns, shape, extent, dtype, layout, with_res, b.device, relu, b.floor, b.atol)

        if b.both_orders:
            in_both_orders(load_cuda_emu(), once, f"{name} {shape} e={extent} {dtype} {layout}")
        else:
            once()


def params(lean):
    """pytest.param(name, shape, extent, dtype, runs) for every backend's cases, in every
    dtype; the host backends marked `host`."""
    out = []
    for name, b in BACKENDS.items():
        for shape, extent, runs in (b.lean_cases if lean else b.cases):
            for dtype in DTYPES:
                pid = f"{name}-{'x'.join(map(str, shape))}-e{extent}-{str(dtype).removeprefix('torch.')}"
                out.append(pytest.param(name, shape, extent, dtype, runs, id=pid,
                                        marks=[pytest.mark.host] if b.host else []))
    return out

