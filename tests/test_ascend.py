"""Ascend NPU backend tests.

1. The tiling (csrc/ascend/tiling.{h,cpp} and the index arithmetic in tiling_data.h that
   the Ascend C kernels run) is plain C++: a small driver compiled here with g++ replays
   what every AI core would do for many shapes and checks the invariants (every element
   and every tile assigned exactly once, chunks and blocks inside their buffers, the UB
   budget, 32-byte alignment, the DataCopyPad limits, the mapping back to NCHW and to g).
   This runs on any machine with a C++ compiler.
2. The real NPU path (the compiled Ascend C kernels behind torch.ops.genet_ops.* on
   PrivateUse1) is compared with genet_ops.reference. It runs only where torch_npu imports
   and an NPU is present; elsewhere it skips and says why.
"""
from __future__ import annotations

import itertools
import os
import random
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import genet_ops
from genet_ops import reference

ROOT = Path(__file__).resolve().parents[1]
ASCEND = ROOT / "csrc" / "ascend"
EMU = ROOT / "tests" / "emu" / "ascend"  # the CPU model, stub headers and the C++ drivers

OPS = {"ge_fwd": 0, "ge_bwd": 1, "ex_fwd": 2, "ex_bwd": 3, "ex_lean_bwd": 4}
KB = 1024
UB_A2 = 192 * KB  # Atlas A2 (Ascend910B*) Unified Buffer per vector core

# --------------------------------------------------------------------------- driver


@pytest.fixture(scope="module")
def tiling_driver(tmp_path_factory):
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++/c++/clang++) on PATH to build the tiling test driver")
    out = tmp_path_factory.mktemp("ascend_tiling")
    exe = out / "driver"
    cmd = [cxx, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(ASCEND),
           str(EMU / "tiling_driver.cpp"), str(ASCEND / "tiling.cpp"), "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"compiling the tiling driver failed:\n{' '.join(cmd)}\n{proc.stderr}"

    def run(cases):
        text = "\n".join(" ".join(str(int(v)) for v in c) for c in cases) + "\n"
        proc = subprocess.run([str(exe)], input=text, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert len(lines) == len(cases)
        return lines

    return run


def _case(N, C, H, W, extent, op="ge_fwd", dtype_bytes=2, residual=0, cores=48, ub=UB_A2, relu=0, gather=0, means=0):
    return (N, C, H, W, extent, OPS[op], dtype_bytes, residual, cores, ub, relu, gather, means)


def _assert_ok(cases, lines):
    bad = [f"{c} -> {l}" for c, l in zip(cases, lines) if not l.startswith("OK ")]
    assert not bad, "tiling invariants violated:\n" + "\n".join(bad[:20])


def _field(line, name):
    for tok in line.split():
        if tok.startswith(name + "="):
            return tok.split("=", 1)[1]
    raise KeyError(name)


SIZES = [1, 2, 3, 5, 7, 8, 16, 17, 31, 32, 33, 56, 100, 112]
EXTENTS = [0, 1, 2, 3, 4, 5, 7, 8, 16, 32, 64, 1000]


def test_tiling_grid(tiling_driver):
    """Every op x dtype x residual x extent over a grid of plane sizes, Atlas A2 UB."""
    cases = []
    for H, W in itertools.product(SIZES, SIZES):
        for extent in EXTENTS:
            for op in OPS:
                for dtype_bytes in (2, 4):
                    k = H + W + extent
                    residual = int(op in ("ge_fwd", "ex_fwd", "ex_lean_bwd") and k % 2 == 0)
                    cases.append(_case(2, 3, H, W, extent, op, dtype_bytes, residual, cores=7,
                                       relu=int(k % 3 == 0), gather=int(k % 4 < 2), means=int(k % 5 < 3)))
    _assert_ok(cases, tiling_driver(cases))


def test_tiling_random(tiling_driver):
    """Random shapes, core counts and (small) UB sizes, which force segments and STREAM chunks."""
    rng = random.Random(5)
    cases = []
    for _ in range(1500):
        N, C = rng.randint(1, 3), rng.randint(1, 5)
        H, W = rng.choice([rng.randint(1, 40), rng.randint(1, 300)]), rng.choice([rng.randint(1, 40), rng.randint(1, 300)])
        extent = rng.choice([0, 0, rng.randint(1, 9), rng.randint(1, 64), rng.randint(1, 400)])
        op = rng.choice(list(OPS))
        ub = rng.choice([UB_A2, 256 * KB, 24 * KB, 12 * KB, 10 * KB])
        cores = rng.choice([1, 2, 7, 20, 40, 48])
        dtype_bytes, residual, relu, gather, means = rng.choice([2, 4]), *(rng.randint(0, 1) for _ in range(4))
        if relu or op == "ex_lean_bwd":  # 64-lane mask buffers, up to 4 streams: 2 KB past the reserve is too small
            ub = max(ub, 12 * KB)
        cases.append(_case(N, C, H, W, extent, op, dtype_bytes, residual, cores, ub, relu, gather, means))
    _assert_ok(cases, tiling_driver(cases))


def test_tiling_big_and_odd(tiling_driver):
    """Planes bigger than UB (two-sweep chunks), very wide and very tall planes, edge tiles."""
    cases = [
        _case(1, 2, 2048, 2048, 0),            # 4 Mi elements per plane: STREAM, 1-row chunks
        _case(1, 1, 1, 300000, 0, "ge_bwd", 4),
        _case(1, 1, 300000, 1, 5, "ex_bwd"),   # tall and thin, tiled
        _case(1, 1, 3, 200000, 4, "ge_fwd", 4),  # very wide rows: band split into segments
        _case(1, 1, 5000, 3, 4, "ge_bwd", 2),
        _case(1, 1, 4500, 4400, 4200, "ge_fwd", 4),  # tiles taller than DataCopyPad's 4095 rows
        _case(1, 1, 300, 300, 200, "ex_fwd", 2, 1, 48, 24 * KB),  # tile rows wider than UB
        _case(2, 2, 113, 227, 112, "ex_bwd", 4, 0, 3, 12 * KB),
        _case(1, 1, 1, 1, 0), _case(1, 1, 1, 1, 1), _case(3, 1, 1, 7, 2),
    ]
    _assert_ok(cases, tiling_driver(cases))


def test_tiling_empty_and_errors(tiling_driver):
    cases = [_case(0, 3, 8, 8, 0), _case(2, 0, 8, 8, 2), _case(2, 3, 0, 8, 0), _case(2, 3, 8, 0, 4),
             _case(2, 3, 8, 8, 0, ub=8 * KB + 64)]
    lines = tiling_driver(cases)
    assert all(l.startswith("OK ") and _field(l, "items") == "0" and _field(l, "cores") == "0" for l in lines[:4]), lines
    assert lines[4].startswith("THROW") and "Unified Buffer" in lines[4], lines[4]


def test_tiling_design_expectations(tiling_driver):
    """The seed's shapes (WRN-16-8 on CIFAR, global GE): one plane per item, read once,
    all 48 vector cores busy; tiled extents keep whole bands resident."""
    cases = [_case(128, C, S, S, 0, op, 2, int(op == "ge_fwd"))
             for C, S in ((128, 32), (256, 16), (512, 8)) for op in OPS]
    lines = tiling_driver(cases)
    _assert_ok(cases, lines)
    for c, l in zip(cases, lines):
        assert _field(l, "mode") == "resident", l
        assert _field(l, "cores") == "48", l
        assert _field(l, "view") == f"1x{c[2] * c[3]}", l
    (l,) = tiling_driver([_case(8, 64, 56, 56, 4, "ge_bwd", 2)])
    assert _field(l, "mode") == "resident" and _field(l, "seg_tiles") == "14", l
    (l,) = tiling_driver([_case(1, 1, 512, 512, 0, "ge_fwd", 2)])  # 256 Ki elements > UB
    assert _field(l, "mode") == "stream", l


# ------------------------------------------- the kernels on the CPU model of Ascend C
# kernels/genet_ops_kernels.cpp compiled with g++ against tests/emu/ascend/kernel_operator.h
# (our model of the Ascend C calls the kernels make; NOT CANN, no timing). It checks the
# kernels' index arithmetic, buffer use, pipe synchronisation, dtypes and cross-core GM
# access, and the math against genet_ops.reference; it cannot check the real compiler,
# the real API or the hardware.
def build_emu(out: Path, ascend_dir: Path = ASCEND):
    """Compiles the kernels in ascend_dir against the CPU model; returns run(op, x, extent, ...)
    -> (out, dg or None, tiling description, (vector instructions, DMA transfers, waits, core switches))."""
    import ctypes

    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler on PATH to build the Ascend C model")
    lib = out / "libgenet_emu.so"
    cmd = [cxx, "-std=c++17", "-O1", "-g", "-shared", "-fPIC", "-pthread", "-Wall", "-Wno-unused-function",
           "-I", str(EMU), "-I", str(ascend_dir), str(EMU / "kernel_harness.cpp"), str(ascend_dir / "tiling.cpp"),
           "-o", str(lib)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and "_Float16" in proc.stderr:
        pytest.skip(f"{cxx} lacks _Float16, which the model uses for half")
    assert proc.returncode == 0, f"compiling the kernels against the model failed:\n{proc.stderr[-6000:]}"
    f = ctypes.CDLL(str(lib)).genet_emu_run
    i64, vp, ci = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    f.argtypes = [ci, ci, i64, i64, i64, i64, i64, ci, ci, ci, ci, vp, vp, vp, vp, vp, vp, i64, i64, i64, i64,
                  ctypes.c_uint64, ctypes.POINTER(i64), ctypes.c_char_p, ci]
    f.restype = ctypes.c_int

    def run(op, x, extent, aux=None, g=None, cores=7, ub=UB_A2, seed=1, check=True, res=None, relu=False,
            gather=False, means=False):
        """Runs one kernel over every core (seed 0: in order, else interleaved). x is the op's
        input (ex_lean_bwd: its output), aux the residual (forward) or grad_out (backward),
        res ex_lean_bwd's residual; dg comes back for ex_bwd / ex_lean_bwd (d g) and for
        ge_fwd with means=True (the tile means, float32)."""
        from genet_ops import checks
        dtype = {torch.float16: 0, torch.bfloat16: 1, torch.float32: 2}[x.dtype]
        out_t = torch.empty_like(x).fill_(float("nan"))
        gshape = checks.g_shape(x.shape, extent)
        dg_dtype = x.dtype if op == "ex_bwd" else torch.float32
        want_dg = op in ("ex_bwd", "ex_lean_bwd") or (op == "ge_fwd" and means)
        dg = torch.full(gshape, float("nan"), dtype=dg_dtype) if want_dg else None
        ptr = lambda t: None if t is None else t.data_ptr()
        msg = ctypes.create_string_buffer(4096)
        counts = (i64 * 4)()
        nbytes = lambda t: 0 if t is None else t.numel() * t.element_size()
        has_res = (aux is not None and op in ("ge_fwd", "ex_fwd")) or (res is not None and op == "ex_lean_bwd")
        rc = f(OPS[op], dtype, *x.shape, extent, int(has_res), int(relu), int(gather), int(means), ptr(x), ptr(aux),
               ptr(res), ptr(g), ptr(out_t), ptr(dg), nbytes(g), nbytes(dg), cores, ub, seed, counts, msg, len(msg))
        text = msg.value.decode()
        if check:
            assert rc == 0, text
        elif rc != 0:
            raise RuntimeError(text)
        return out_t, dg, text, tuple(counts)

    return run


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    return build_emu(tmp_path_factory.mktemp("ascend_emu"))


EMU_TOL = {torch.float32: dict(atol=2e-5, rtol=2e-5), torch.float16: dict(atol=1e-3, rtol=1e-3),
           torch.bfloat16: dict(atol=8e-3, rtol=8e-3)}
EMU_SHAPES = [((2, 3, 8, 8), 0), ((2, 3, 8, 8), 2), ((2, 5, 7, 9), 3), ((1, 2, 33, 17), 4), ((3, 4, 32, 32), 0),
              ((1, 2, 5, 5), 1), ((2, 2, 9, 9), 100), ((1, 3, 6, 40), 8), ((1, 1, 1, 1), 0), ((2, 1, 3, 70), 5),
              # plane batches (global extent, several planes per core): one and several 64-lane strips
              ((4, 16, 8, 8), 0), ((5, 8, 9, 13), 0), ((3, 30, 7, 7), 1000), ((2, 20, 32, 32), 0)]


def _emu_check(emu, shape, extent, dtype, ub, cores=7):
    torch.manual_seed(hash((shape, extent)) % 2**31)
    from genet_ops import checks
    x = torch.randn(shape).to(dtype)
    res = torch.randn(shape).to(dtype)
    dy = torch.randn(shape).to(dtype)
    g = torch.randn(checks.g_shape(shape, extent)).to(dtype)
    tol = EMU_TOL[dtype]

    def close(a, b, what, desc):
        torch.testing.assert_close(a.float(), b.float(), **tol, msg=lambda m: f"{what} [{desc}]\n{m}")

    y, _, d, _ = emu("ge_fwd", x, extent, cores=cores, ub=ub)
    close(y, reference.gather_excite(x, extent), "gather_excite", d)
    y, _, d, _ = emu("ge_fwd", x, extent, aux=res, cores=cores, ub=ub)
    close(y, reference.gather_excite(x, extent, res), "gather_excite+residual", d)
    dx, _, d, _ = emu("ge_bwd", x, extent, aux=dy, cores=cores, ub=ub)
    close(dx, reference.gather_excite_backward(dy, x, extent), "gather_excite_backward", d)
    y, _, d, _ = emu("ex_fwd", x, extent, g=g, cores=cores, ub=ub)
    close(y, reference.excite(x, g, extent), "excite", d)
    y, _, d, _ = emu("ex_fwd", x, extent, aux=res, g=g, cores=cores, ub=ub)
    close(y, reference.excite(x, g, extent, res), "excite+residual", d)
    dx, dg, d, _ = emu("ex_bwd", x, extent, aux=dy, g=g, cores=cores, ub=ub)
    rdx, rdg = reference.excite_backward(dy, x, g, extent)
    close(dx, rdx, "excite_backward dx", d)
    close(dg, rdg, "excite_backward dg", d)
    return d


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape,extent", EMU_SHAPES)
def test_kernels_on_cpu_model_resident(emu, shape, extent, dtype):
    """Atlas A2 UB: whole bands / planes resident, several tiles per block where tiled."""
    _emu_check(emu, shape, extent, dtype, UB_A2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape,extent,ub", [
    ((1, 2, 40, 40), 0, 24 * KB),     # plane > budget: STREAM, two sweeps, multi-row chunks
    ((1, 2, 70, 70), 0, 12 * KB),     # STREAM, 1-row chunks narrower than the row
    ((2, 2, 50, 44), 30, 12 * KB),    # tiled STREAM with edge tiles
    ((1, 3, 12, 200), 3, 10 * KB),    # RESIDENT, bands split into segments
    ((2, 2, 33, 65), 8, 11 * KB),     # segments with a partial last tile
])
def test_kernels_on_cpu_model_small_ub(emu, shape, extent, ub, dtype):
    """A small UB budget forces segments and STREAM chunks on small shapes."""
    d = _emu_check(emu, shape, extent, dtype, ub, cores=3)
    assert "items=" in d


def test_kernels_on_cpu_model_modes_covered(emu):
    """The small-UB cases above really reach both modes and multi-tile segments."""
    x = torch.randn(1, 2, 40, 40)
    assert "mode=stream" in emu("ge_fwd", x, 0, ub=24 * KB)[2]
    d = emu("ge_bwd", torch.randn(1, 3, 12, 200), 3, aux=torch.randn(1, 3, 12, 200), ub=10 * KB)[2]
    assert "mode=resident" in d and _field(d, "seg_tiles") not in ("1", str(-(-200 // 3))), d


# ------------------------- issue 17 on the CPU model: ReLU epilogue, tile means, lean backward
# Each output is held to the float64 reference within the project's budget (tests/oracle.py:
# at most 2 x the error of the reference run in the input's dtype, plus a few ulps); the
# harness hands the kernels NaN-filled outputs, so an element left unwritten fails too.
LEAN_SHAPES = [((2, 3, 8, 8), 0), ((2, 5, 7, 9), 3), ((1, 2, 33, 17), 4), ((1, 2, 5, 5), 1), ((2, 2, 9, 9), 100),
               ((2, 1, 3, 70), 5), ((1, 1, 1, 1), 0),
               # plane batches with one and several 64-lane strips
               ((4, 16, 8, 8), 0), ((5, 8, 9, 13), 0)]
LEAN_SMALL_UB = [((1, 2, 40, 40), 0, 24 * KB),   # STREAM, multi-row chunks (two sweeps when gathered)
                 ((1, 2, 70, 70), 0, 14 * KB),   # STREAM, chunks narrower than a row
                 ((2, 2, 50, 44), 30, 14 * KB),  # tiled STREAM with edge tiles
                 ((1, 3, 12, 200), 3, 14 * KB),  # RESIDENT, bands split into segments
                 ((2, 2, 33, 65), 8, 14 * KB)]   # segments with a partial last tile


def _lean_check(emu, shape, extent, dtype, ub, cores):
    """Every new kernel path on one shape: gather_excite with ReLU (with and without residual)
    and the tile means, excite with ReLU, and excite_lean_backward over relu x gather x
    residual. Returns the tiling descriptions seen."""
    import oracle
    from genet_ops import checks
    torch.manual_seed(hash((shape, extent, "lean")) % 2**31)
    x = torch.randn(shape).to(dtype)
    res = torch.randn(shape).to(dtype)
    dy = torch.randn(shape).to(dtype)
    g = torch.randn(checks.g_shape(shape, extent)).to(dtype)
    d64 = lambda t: None if t is None else t.double()
    kw = dict(cores=cores, ub=ub)
    seen = []

    def within(out, want64, eager, what, desc):
        oracle.assert_within_budget(out, want64, eager, f"{what} [{desc}]")

    for r, relu in ((None, True), (res, True), (res, False)):
        y, means, d, _ = emu("ge_fwd", x, extent, aux=r, relu=relu, means=True, **kw)
        ey, eg = reference.gather_excite_lean(x, extent, r, relu)
        oy, og = reference.gather_excite_lean(x.double(), extent, d64(r), relu)
        tag = f"gather_excite_lean residual={r is not None} relu={relu}"
        within(y, oy, ey, tag + " out", d)
        within(means, og, eg, tag + " means", d)
        seen.append(d)
    for r in (None, res):
        y, _, d, _ = emu("ex_fwd", x, extent, aux=r, g=g, relu=True, **kw)
        within(y, reference.excite(x.double(), g.double(), extent, d64(r), True),
               reference.excite(x, g, extent, r, True), f"excite relu residual={r is not None}", d)
    # the lean backward reads what the forward kept: out, the residual and fp32 logits
    gl = reference.gather(x, extent).float()
    for relu, gather, r in itertools.product((False, True), (False, True), (None, res)):
        out = reference.gather_excite(x, extent, r, relu)
        dx, dg, d, _ = emu("ex_lean_bwd", out, extent, aux=dy, g=gl, res=r, relu=relu, gather=gather, **kw)
        edx, edg = reference.excite_lean_backward(dy, out, r, gl, extent, relu, gather)
        odx, odg = reference.excite_lean_backward(dy.double(), out.double(), d64(r), gl.double(), extent, relu, gather)
        tag = f"excite_lean_backward relu={relu} gather={gather} residual={r is not None}"
        within(dx, odx, edx, tag + " dx", d)
        within(dg, odg, edg, tag + " dg", d)
        seen.append(d)
    return seen


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape,extent", LEAN_SHAPES)
def test_lean_kernels_on_cpu_model_resident(emu, shape, extent, dtype):
    """Atlas A2 UB: the ReLU epilogue, the tile means and the lean backward, every flag."""
    _lean_check(emu, shape, extent, dtype, UB_A2, cores=7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape,extent,ub", LEAN_SMALL_UB)
def test_lean_kernels_on_cpu_model_small_ub(emu, shape, extent, ub, dtype):
    """A small UB budget: segments and STREAM chunks, incl. the gathered lean backward's two sweeps."""
    _lean_check(emu, shape, extent, dtype, ub, cores=3)


def test_lean_kernels_on_cpu_model_modes_covered(emu):
    """The lean cases above reach STREAM, multi-tile segments and plane batches with every flag."""
    d = _lean_check(emu, (1, 2, 40, 40), 0, torch.float16, 24 * KB, cores=3)
    assert all("mode=stream" in l for l in d), d
    d = _lean_check(emu, (1, 3, 12, 200), 3, torch.float32, 14 * KB, cores=3)
    assert all("mode=resident" in l and _field(l, "seg_tiles") not in ("1", str(-(-200 // 3))) for l in d), d
    d = _lean_check(emu, (4, 16, 8, 8), 0, torch.bfloat16, UB_A2, cores=7)
    assert all(int(_field(l, "plane_batch")) > 1 for l in d), d
    assert any("relu=1 gather=1" in l for l in d) and any("means=1" in l for l in d), d


@pytest.mark.parametrize("shape,extent,ub", [((2, 3, 8, 8), 2, UB_A2), ((4, 16, 8, 8), 0, UB_A2),
                                             ((1, 2, 40, 40), 0, 24 * KB)])
def test_relu_keeps_nan_and_zeroes_minus_inf_on_cpu_model(emu, shape, extent, ub):
    """ReLU is `v < 0 ? 0 : v` (torch.relu): NaN stays NaN, -inf becomes 0, in the forward
    epilogue; the lean backward's mask lets grad_out through where out is NaN (torch's
    threshold backward). Resident tiles, plane batches and STREAM chunks."""
    from genet_ops import checks
    torch.manual_seed(3)
    x = torch.randn(shape)
    flat = x.view(-1)
    flat[3], flat[-2], flat[len(flat) // 2] = float("nan"), float("-inf"), float("inf")
    g = torch.randn(checks.g_shape(shape, extent))
    y, _, d, _ = emu("ex_fwd", x, extent, g=g, relu=True, ub=ub)
    want = reference.excite(x, g, extent, None, True)
    assert torch.isnan(y.view(-1)[3]) and y.view(-1)[-2] == 0 and y.view(-1)[len(flat) // 2] == float("inf"), d
    torch.testing.assert_close(y, want, equal_nan=True, msg=lambda m: f"excite relu [{d}]\n{m}")
    dy = torch.randn(shape)
    gl = torch.randn(checks.g_shape(shape, extent))
    out = torch.randn(shape)
    out.view(-1)[5] = float("nan")
    for gather in (False, True):
        dx, dg, d, _ = emu("ex_lean_bwd", out, extent, aux=dy, g=gl, relu=True, gather=gather, ub=ub)
        rdx, rdg = reference.excite_lean_backward(dy, out, None, gl, extent, True, gather)
        assert not (dx.view(-1)[5] == 0), d  # the mask let grad_out through where out is NaN
        torch.testing.assert_close(dx, rdx, equal_nan=True, msg=lambda m: f"lean dx gather={gather} [{d}]\n{m}")
        torch.testing.assert_close(dg, rdg, equal_nan=True, msg=lambda m: f"lean dg gather={gather} [{d}]\n{m}")


def test_kernels_on_cpu_model_refuses_tiny_ub(emu):
    """A UB that cannot hold one 32-byte row per buffer is refused with a message."""
    with pytest.raises(AssertionError, match="Unified Buffer"):
        emu("ge_fwd", torch.randn(1, 1, 8, 8), 0, ub=8 * KB + 64)


# Planted bugs the model must catch: (file under csrc/ascend, text, replacement, dtype,
# what the failure says, or None for "wrong result"[, gather_excite flags]). Each is a real
# class of kernel bug.
PLANTED = {
    # padded lanes leak into the tile sums
    "no_zero_padding": ("kernels/genet_ops_kernels.cpp", "pad.rightPadding = static_cast<uint8_t>(pitch - cols);",
                        "pad.rightPadding = 0;", torch.float16, None),
    # every vector-pipe barrier dropped: dependent vector instructions race on the chip
    "no_pipe_barriers": ("kernels/genet_ops_kernels.cpp", "PipeBarrier<PIPE_V>();", "",
                         torch.float32, "without PipeBarrier<PIPE_V>"),
    # a float -> bfloat16_t round mode Atlas A2 does not implement
    "bf16_cast_mode": ("kernels/genet_ops_kernels.cpp", "Cast(dst, src, RoundMode::CAST_RINT, n);",
                       "Cast(dst, src, RoundMode::CAST_NONE, n);", torch.bfloat16, "round mode not implemented"),
    # arithmetic on bfloat16_t, which the A2 vector unit does not do
    "bf16_arithmetic": ("kernels/genet_ops_kernels.cpp", "Cast(dst, src, RoundMode::CAST_RINT, n);",
                        "Cast(dst, src, RoundMode::CAST_RINT, n);\n    PipeBarrier<PIPE_V>();\n"
                        "    Muls(dst, dst, static_cast<T>(1.0f), n);", torch.bfloat16, "not supported on Atlas A2"),
    # overlapping core ranges: two cores write the same item (same values, so running the
    # cores one after another showed nothing)
    "cores_overlap": ("tiling_data.h", "end = begin + q + (core < big ? 1 : 0);",
                      "end = genet_min(begin + q + 1, t.items);", torch.float32, "written by core"),
    # ReLU's compare over a count that is not whole 256-byte repeats (the A2 count form's rule)
    "relu_partial_repeat": ("kernels/genet_ops_kernels.cpp",
                            "CompareScalar(mask_, u, 0.0f, zeroWhen, static_cast<uint32_t>(n64));",
                            "CompareScalar(mask_, u, 0.0f, zeroWhen, static_cast<uint32_t>(n));", torch.float32,
                            "whole 256-byte repeats", {"relu": True}),
}


@pytest.mark.parametrize("plant", list(PLANTED))
def test_cpu_model_catches_planted_bug(tmp_path, plant):
    """Meta-test: the same harness, on a copy of the kernels with one planted bug, must
    fail (with the model's message) or give a wrong result. The shape has several items
    per core, edge tiles and padded rows (10 fp16 = 20 bytes, padded to 32)."""
    rel, needle, repl, dtype, expect, *flags = PLANTED[plant]
    flags = flags[0] if flags else {}
    bad = tmp_path / "ascend"
    shutil.copytree(ASCEND, bad)
    src = (bad / rel).read_text()
    assert needle in src, f"planted bug {plant}: {needle!r} is no longer in {rel}"
    (bad / rel).write_text(src.replace(needle, repl))
    run = build_emu(tmp_path, bad)
    x = torch.randn(2, 3, 12, 10).to(dtype)
    for extent in (0, 11):
        try:
            y = run("ge_fwd", x, extent, cores=4, check=False, **flags)[0]
        except RuntimeError as exc:
            assert expect is not None and expect in str(exc), str(exc)
            return
        want = reference.gather_excite(x, extent, None, flags.get("relu", False))
        if expect is None and not torch.allclose(y.float(), want.float(), atol=1e-3, rtol=1e-3):
            return
    pytest.fail(f"the CPU model did not catch the planted bug {plant}")


def test_cpu_model_interleaves_cores(emu):
    """Cores run interleaved in a seeded random order (seed 0: one after another); what they
    issue and compute does not depend on it."""
    x = torch.randn(3, 5, 12, 10)
    runs = {seed: emu("ge_fwd", x, 4, cores=5, seed=seed) for seed in (0, 1, 2, 3)}
    assert runs[0][3][3] == 0
    for seed in (1, 2, 3):
        assert runs[seed][3][3] > 5 * 10, f"seed {seed}: only {runs[seed][3][3]} switches between cores"
        assert torch.equal(runs[seed][0], runs[0][0]) and runs[seed][3][:3] == runs[0][3][:3]


def _aclrtlaunch_headers(out_dir: Path) -> list[str]:
    """Writes aclrtlaunch_<kernel>.h for every kernel entry, as CANN's generator does:
    GM pointers become void*, the tiling struct a pointer, blockDim and stream come first.
    The entries are read from the preprocessed kernel source (macros expanded)."""
    import re

    cxx = os.environ.get("CXX") or shutil.which("g++")
    pre = subprocess.run([cxx, "-std=c++17", "-E", "-P", "-I", str(EMU), "-I", str(ASCEND),
                          str(ASCEND / "kernels" / "genet_ops_kernels.cpp")], capture_output=True, text=True)
    assert pre.returncode == 0, pre.stderr
    names = []
    for name, params in re.findall(r'extern "C"\s+void\s+(genet_\w+)\s*\(([^)]*)\)', pre.stdout):
        args = []
        for p in params.split(","):
            p = " ".join(p.split())
            typ, arg = p.rsplit(" ", 1)
            typ = "void*" if typ.endswith("*") else (typ + "*" if typ == "GenetTiling" else typ)
            args.append(f"{typ} {arg}")
        (out_dir / f"aclrtlaunch_{name}.h").write_text(
            f'#pragma once\n#include "acl/acl_base.h"\n#include <stdint.h>\nstruct GenetTiling;\n'
            f"#ifndef ACLRT_LAUNCH_KERNEL\n#define ACLRT_LAUNCH_KERNEL(kernel_func) aclrtlaunch_##kernel_func\n#endif\n"
            f'extern "C" uint32_t aclrtlaunch_{name}(uint32_t blockDim, aclrtStream stream, {", ".join(args)});\n')
        names.append(name)
    return names


def test_launcher_compiles_against_stubs(tmp_path):
    """csrc/ascend/launcher.cpp compiles (-fsyntax-only) against this torch's headers, with
    stand-ins for torch_npu and CANN (tests/emu/ascend/host) and aclrtlaunch headers
    generated from the kernel entries: the launcher's calls match the kernels' signatures.
    Not a substitute for building on a CANN machine."""
    from torch.utils import cpp_extension

    cxx = os.environ.get("CXX") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    names = _aclrtlaunch_headers(tmp_path)
    assert sorted(names) == sorted(f"genet_{op}_{dt}" for op in OPS for dt in ("fp16", "bf16", "fp32"))
    incs = [str(tmp_path), str(EMU / "host"), str(ASCEND), str(ROOT / "csrc")] + cpp_extension.include_paths()
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    cmd = [cxx, "-std=c++20", "-fsyntax-only", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror",
           f"-D_GLIBCXX_USE_CXX11_ABI={abi}"] + [f"-I{d}" for d in incs] + [str(ASCEND / "launcher.cpp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]


# ------------------------------------------------------------- storage formats
def test_private_npu_formats_are_cast_to_nd(tmp_path):
    """The launcher's rule (csrc/ascend/npu_format.h): base formats (ND, NCHW, NHWC, NCDHW)
    are read as they are; private ones (NC1HWC0 = 3, FRACTAL_Z = 4, FRACTAL_NZ = 29,
    NDC1HWC0 = 32, ...) are cast to ND (2) before the kernels see them; an absent operand
    is left alone."""
    cxx = os.environ.get("CXX") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    exe = tmp_path / "format_seam"
    proc = subprocess.run([cxx, "-std=c++17", "-Wall", "-Werror", "-I", str(ASCEND), str(EMU / "format_seam.cpp"),
                           "-o", str(exe)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run([str(exe), "0", "1", "2", "30", "3", "4", "29", "32", "-1"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out == ["0 keep", "1 keep", "2 keep", "30 keep", "3 cast 2 -> 2", "4 cast 2 -> 2", "29 cast 2 -> 2",
                   "32 cast 2 -> 2", "-1 cast 2 -> 2", "undefined keep"], out


def test_launcher_applies_the_format_rule_to_every_operand_and_output():
    """Every tensor the kernels read goes through readable() and every output through
    make_nd(): checked on the launcher's source, since it compiles only with torch_npu."""
    import re

    src = (ASCEND / "launcher.cpp").read_text()
    for op, operands in {"gather_excite_npu": ("x", "residual"), "gather_excite_backward_npu": ("x", "grad_out"),
                         "excite_npu": ("x", "g", "residual"), "excite_backward_npu": ("x", "grad_out", "g"),
                         "gather_excite_lean_npu": ("x", "residual"),
                         "excite_lean_backward_npu": ("out", "grad_out", "residual", "g")}.items():
        body = src[src.index(f" {op}("):]
        body = body[:body.index("\n}\n")]
        for name in operands:
            assert re.search(rf"readable\({name}\)", body), f"{op}: {name} does not go through readable()"
        assert "prepared(prepare_" in body, f"{op}: outputs not made ND"
    assert "make_nd(c.out);" in src and "make_nd(c.dg);" in src
    assert "relu_after" not in src, "the Ascend forward kernels apply ReLU themselves (GenetTiling::relu)"
    for op in ("gather_excite_lean", "excite_lean_backward", "excite_lean"):
        assert f'm.impl("{op}", ' in src, f"{op} is not registered for PrivateUse1"


# ------------------------------------------------------------- the Ascend module
def test_ascend_module_failure_warns_once_and_is_reported(monkeypatch):
    """genet_ops._C_ascend built but failing to load (an undefined symbol from a CANN
    library): one warning, the reason returned for backend_info(), and genet_ops._C and
    its CPU kernels untouched. Not built: quiet."""
    from genet_ops import _extension

    def failing_import(name):
        if name.endswith("_C_ascend"):
            raise ImportError("_C_ascend.so: undefined symbol: _ZN2ge9AscendStringC1EPKc")
        return None

    with pytest.warns(RuntimeWarning, match="did not load") as rec:
        ok, why = _extension.load_ascend(find_spec=lambda name: object(), import_module=failing_import)
    assert len(rec) == 1 and not ok and "undefined symbol" in why
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok, why = _extension.load_ascend(find_spec=lambda name: None, import_module=failing_import)
    assert not ok and why.startswith("not built")
    info = genet_ops.backend_info()
    assert "ascend_loaded" in info and "ascend_error" in info
    if info["extension_loaded"]:
        assert info["kernels"]["gather_excite"]["cpu"] == "cpp"
        x = torch.randn(2, 3, 5, 5)
        torch.testing.assert_close(torch.ops.genet_ops.gather_excite(x, 2), reference.gather_excite(x, 2))


# ------------------------------------------------------------- the build guard
def _load_build_py():
    import importlib.util

    spec = importlib.util.spec_from_file_location("genet_ascend_build_test", ASCEND / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("env,expect", [
    ({"GENET_OPS_ASCEND": "0"}, "GENET_OPS_ASCEND=0"),
    ({}, "no CANN toolkit"),
    ({"ASCEND_HOME_PATH": "{tmp}"}, "SOC_VERSION is not set"),
    ({"ASCEND_TOOLKIT_HOME": "{tmp}", "SOC_VERSION": "Ascend310P3"}, "not an Atlas A2/A3 SoC"),
])
def test_build_guard_says_why(monkeypatch, tmp_path, env, expect):
    """setup.py's Ascend hook skips with ONE line saying why, and adds nothing."""
    build = _load_build_py()
    for var in ("GENET_OPS_ASCEND", "ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME", "SOC_VERSION"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v.format(tmp=tmp_path))
    lines = []
    assert build.configure(str(ROOT), lines.append) is None
    assert len(lines) == 1 and lines[0].startswith("Ascend kernels skipped: ") and expect in lines[0], lines
    monkeypatch.setenv("GENET_OPS_ASCEND", "1")
    if expect != "GENET_OPS_ASCEND=0":
        with pytest.raises(SystemExit, match="GENET_OPS_ASCEND=1 but"):
            build.configure(str(ROOT), lines.append)


def test_build_guard_torch_npu(monkeypatch, tmp_path):
    """With CANN and an A2 SoC named but no torch_npu (this machine), it still skips."""
    build = _load_build_py()
    monkeypatch.setenv("ASCEND_HOME_PATH", str(tmp_path))
    monkeypatch.setenv("SOC_VERSION", "Ascend910B3")
    monkeypatch.delenv("GENET_OPS_ASCEND", raising=False)
    reason = build.why_not()
    if reason is None:
        pytest.skip("torch_npu imports and cmake is present here: the guard would build")
    assert "torch_npu" in reason or "cmake" in reason, reason


def _fake_cann(monkeypatch, tmp_path, libs):
    """A CANN home and a torch_npu package in tmp_path, holding lib<name>.so for `libs`."""
    import sys
    import types

    home, npu = tmp_path / "cann", tmp_path / "site" / "torch_npu"
    (home / "lib64").mkdir(parents=True)
    (npu / "lib").mkdir(parents=True)
    (npu / "__init__.py").write_text("")
    for name in libs:
        folder = npu / "lib" if name == "torch_npu" else home / "lib64"
        (folder / f"lib{name}.so").write_text("")
    fake = types.ModuleType("torch_npu")
    fake.__file__ = str(npu / "__init__.py")
    monkeypatch.setitem(sys.modules, "torch_npu", fake)
    monkeypatch.setenv("ASCEND_HOME_PATH", str(home))
    monkeypatch.setenv("SOC_VERSION", "Ascend910B3")
    return home, npu


def test_build_links_what_the_tiling_archive_needs(monkeypatch, tmp_path):
    """With CANN and torch_npu found, the Ascend part is its own module, genet_ops._C_ascend,
    linked with the tiling archive's dependencies (register, exe_graph, c_sec), with
    torch_npu's lib and CANN's lib64 on the rpath; a missing library stops the build before
    the kernels are compiled, naming it."""
    build = _load_build_py()
    monkeypatch.setattr(build, "why_not", lambda: None)
    home, npu = _fake_cann(monkeypatch, tmp_path, [l for l in build.LINK_LIBS if l != "exe_graph"])
    with pytest.raises(SystemExit, match="not found: exe_graph"):
        build.configure(str(ROOT), lambda msg: None)

    (home / "lib64" / "libexe_graph.so").write_text("")
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    (kernels / f"lib{build.KERNEL_LIB}.so").write_text("")
    monkeypatch.setattr(build, "build_kernels", lambda root, log: (str(kernels), str(kernels)))
    pkg = tmp_path / "root" / "genet_ops"
    pkg.mkdir(parents=True)
    kw = build.configure(str(tmp_path / "root"), lambda msg: None)
    assert kw["name"] == "genet_ops._C_ascend"
    assert {"register", "exe_graph", "c_sec", "tiling_api", "platform", "torch_npu", "ascendcl"} <= set(kw["libraries"])
    assert f"-Wl,-rpath,{npu / 'lib'}" in kw["extra_link_args"] and "-Wl,-rpath,$ORIGIN" in kw["extra_link_args"]
    assert "-DGENET_OPS_CHECKS_ONLY" in kw["extra_compile_args"]
    assert not any("cpu" in src or "cuda" in src for src in kw["sources"]), kw["sources"]
    assert (pkg / f"lib{build.KERNEL_LIB}.so").exists()


# ------------------------------------------------------------------ the NPU path
def _npu_skip_reason() -> str | None:
    try:
        import torch_npu  # noqa: F401
    except Exception as exc:  # ImportError, or torch_npu failing to find CANN
        return f"torch_npu does not import here ({type(exc).__name__}: {exc}); the Ascend path needs CANN and an NPU"
    if not (hasattr(torch, "npu") and torch.npu.is_available() and torch.npu.device_count() > 0):
        return "torch_npu imports but no NPU is available"
    return None


_NPU_SKIP = _npu_skip_reason()
requires_npu = pytest.mark.skipif(_NPU_SKIP is not None, reason=_NPU_SKIP or "")


def _ascend_compiled() -> bool:
    return genet_ops.backend_info()["kernels"]["gather_excite"].get("npu") == "ascend"


NPU_DTYPES = [(torch.float32, 1e-5, 1e-5), (torch.float16, 2e-3, 2e-3), (torch.bfloat16, 2e-2, 2e-2)]
NPU_SHAPES = [((2, 3, 8, 8), 0), ((2, 3, 8, 8), 2), ((2, 5, 7, 9), 3), ((1, 2, 33, 17), 4), ((2, 4, 32, 32), 0),
              ((1, 2, 5, 5), 1), ((1, 1, 300, 300), 0), ((1, 2, 64, 640), 8), ((1, 1, 9, 9), 100)]


@requires_npu
def test_npu_kernels_are_compiled():
    assert _ascend_compiled(), (
        "genet_ops on this NPU machine runs the reference, not the Ascend C kernels: "
        f"{genet_ops.backend_info()} (rebuild with CANN, see csrc/ascend/README.md)")


@requires_npu
@pytest.mark.parametrize("dtype,atol,rtol", NPU_DTYPES)
@pytest.mark.parametrize("shape,extent", NPU_SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_npu_parity(shape, extent, dtype, atol, rtol, channels_last):
    dev = "npu"
    torch.manual_seed(0)
    mf = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(shape, device=dev, dtype=dtype).to(memory_format=mf)
    res = torch.randn(shape, device=dev, dtype=dtype).to(memory_format=mf)
    dy = torch.randn(shape, device=dev, dtype=dtype).to(memory_format=mf)
    from genet_ops import checks
    g = torch.randn(checks.g_shape(shape, extent), device=dev, dtype=dtype)
    ops = torch.ops.genet_ops

    def close(a, b):
        assert a.shape == b.shape and a.stride() == b.stride(), (a.stride(), b.stride())
        torch.testing.assert_close(a.float().cpu(), b.float().cpu(), atol=atol, rtol=rtol)

    close(ops.gather_excite(x, extent), reference.gather_excite(x, extent))
    close(ops.gather_excite(x, extent, res), reference.gather_excite(x, extent, res))
    close(ops.gather_excite_backward(dy, x, extent), reference.gather_excite_backward(dy, x, extent))
    close(ops.excite(x, g, extent), reference.excite(x, g, extent))
    close(ops.excite(x, g, extent, res), reference.excite(x, g, extent, res))
    dx, dg = ops.excite_backward(dy, x, g, extent)
    rdx, rdg = reference.excite_backward(dy, x, g, extent)
    close(dx, rdx)
    close(dg, rdg)


@requires_npu
@pytest.mark.parametrize("dtype,atol,rtol", NPU_DTYPES)
@pytest.mark.parametrize("shape,extent", NPU_SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_npu_lean_parity(shape, extent, dtype, atol, rtol, channels_last):
    """Issue 17's kernels on the NPU: ReLU epilogues, gather_excite_lean's means (fp32, g's
    layout) and excite_lean_backward over relu x gather x residual, against the reference."""
    dev = "npu"
    torch.manual_seed(0)
    mf = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(shape, device=dev, dtype=dtype).to(memory_format=mf)
    res = torch.randn(shape, device=dev, dtype=dtype).to(memory_format=mf)
    dy = torch.randn(shape, device=dev, dtype=dtype).to(memory_format=mf)
    from genet_ops import checks
    g = torch.randn(checks.g_shape(shape, extent), device=dev, dtype=dtype)
    ops = torch.ops.genet_ops

    def close(a, b):
        assert a.shape == b.shape and a.stride() == b.stride() and a.dtype == b.dtype, (a.stride(), b.stride())
        torch.testing.assert_close(a.float().cpu(), b.float().cpu(), atol=atol, rtol=rtol)

    for r in (None, res):
        close(ops.gather_excite(x, extent, r, True), reference.gather_excite(x, extent, r, True))
        close(ops.excite(x, g, extent, r, True), reference.excite(x, g, extent, r, True))
        for relu in (False, True):
            for got, want in zip(ops.gather_excite_lean(x, extent, r, relu),
                                 reference.gather_excite_lean(x, extent, r, relu)):
                close(got, want)
    gl = reference.gather(x, extent).float()
    for relu, gather, r in itertools.product((False, True), (False, True), (None, res)):
        out = reference.gather_excite(x, extent, r, relu)
        for got, want in zip(ops.excite_lean_backward(dy, out, r, gl, extent, relu, gather),
                             reference.excite_lean_backward(dy, out, r, gl, extent, relu, gather)):
            close(got, want)


@requires_npu
def test_npu_opcheck_and_empty():
    x = torch.randn(2, 3, 9, 7, device="npu")
    g = torch.randn(2, 3, 3, 3, device="npu")
    torch.library.opcheck(torch.ops.genet_ops.gather_excite.default, (x, 3))
    torch.library.opcheck(torch.ops.genet_ops.excite.default, (x, g, 3))
    torch.library.opcheck(torch.ops.genet_ops.gather_excite.default, (x, 3, x, True))
    torch.library.opcheck(torch.ops.genet_ops.gather_excite_lean.default, (x, 3, x, True))
    out, gl = torch.ops.genet_ops.gather_excite_lean(x, 3, x, True)
    torch.library.opcheck(torch.ops.genet_ops.excite_lean_backward.default, (torch.randn_like(x), out, x, gl, 3, True, True))
    e = torch.randn(0, 3, 8, 8, device="npu")
    assert torch.ops.genet_ops.gather_excite(e, 0).shape == e.shape
    y, means = torch.ops.genet_ops.gather_excite_lean(torch.randn(2, 3, 0, 8, device="npu"), 0)
    assert means.dtype == torch.float32 and means.shape == (2, 3, 1, 1) and (means.cpu() == 0).all()


@requires_npu
@pytest.mark.parametrize("acl_format", [3, 29])  # NC1HWC0, FRACTAL_NZ
def test_npu_private_formats(acl_format):
    """Operands in private NPU formats give the reference's result, outputs in ND."""
    import torch_npu

    torch.manual_seed(0)
    x = torch.randn(2, 32, 8, 8, device="npu", dtype=torch.float16)
    g = torch.randn(2, 32, 4, 4, device="npu", dtype=torch.float16)
    xp, gp = torch_npu.npu_format_cast(x.clone(), acl_format), torch_npu.npu_format_cast(g.clone(), acl_format)
    for got, want in ((torch.ops.genet_ops.gather_excite(xp, 0, xp), reference.gather_excite(x, 0, x)),
                      (torch.ops.genet_ops.excite(xp, gp, 2), reference.excite(x, g, 2)),
                      (torch.ops.genet_ops.gather_excite_lean(xp, 2, xp, True)[0], reference.gather_excite(x, 2, x, True)),
                      (torch.ops.genet_ops.excite_lean_backward(xp, xp, None, gp.float(), 2, True, True)[0],
                       reference.excite_lean_backward(x, x, None, g.float(), 2, True, True)[0])):
        assert torch_npu.get_npu_format(got) in (0, 2)  # NCHW / ND
        torch.testing.assert_close(got.float().cpu(), want.float().cpu(), atol=2e-3, rtol=2e-3)


@requires_npu
def test_npu_failed_launch_raises():
    """A launch that returns an ACL error (injected: GENET_OPS_ASCEND_FAIL_LAUNCH=1) raises,
    naming the op, instead of leaving the output unwritten."""
    code = ("import torch, torch_npu, genet_ops\n"
            "x = torch.randn(2, 3, 8, 8, device='npu')\n"
            "y = torch.ops.genet_ops.gather_excite(x, 0)\n"
            "torch.npu.synchronize()\n")
    env = dict(os.environ, GENET_OPS_ASCEND_FAIL_LAUNCH="1", ASCEND_LAUNCH_BLOCKING="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode != 0 and "genet_gather_excite" in proc.stderr, proc.stderr[-3000:]


def test_npu_path_status_is_reported():
    """Runs everywhere: says which NPU kernel the package would use, so a skipped NPU
    run is visible in the log rather than silent."""
    info = genet_ops.backend_info()
    assert info["kernels"]["gather_excite"]["npu"] in ("ascend", "reference")
    if _NPU_SKIP is not None:
        assert info["kernels"]["gather_excite"]["npu"] == "reference"
