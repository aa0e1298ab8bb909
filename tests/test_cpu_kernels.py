"""What is specific to the C++ CPU kernels (csrc/cpu): that they are the ones running,
the edges of their vector loops and work splits, both instruction sets, threading, and
that the build stays loadable on any x86-64. Parity with the float64 reference (every op,
the output-keeping ones too) is test_parity.py's (backend "cpu"), through autograd test_ops.py's.
"""
import itertools
import os
import platform
import re
import shutil
import subprocess
import sys

import pytest
import torch

import genet_ops
from genet_ops import checks, reference
from oracle import DTYPES, assert_matches_reference, make

pytestmark = pytest.mark.skipif(not genet_ops.backend_info()["extension_loaded"], reason="genet_ops._C not built")

OPS = ("gather_excite", "gather_excite_backward", "excite", "excite_backward", "gather_excite_lean", "excite_lean",
       "excite_lean_backward")
# (gather, relu, residual) of excite_lean_backward: every flag both ways and every pair of
# flags in all four combinations (so each of the kernel's relu x residual loops runs).
LEAN_FLAGS = ((False, False, False), (True, False, True), (False, True, True), (True, True, False))


def run_lean_backward(dy, out, r, g, extent, flags=LEAN_FLAGS):
    """excite_lean_backward on the C++ kernels and on the reference: [(name, out, ref)]."""
    ops, res = torch.ops.genet_ops, []
    for gather, relu, with_res in flags:
        args = (dy, out, r if with_res else None, g, extent, relu, gather)
        (dx, dg), (rdx, rdg) = ops.excite_lean_backward(*args), reference.excite_lean_backward(*args)
        what = f"excite_lean_backward gather={gather} relu={relu} res={with_res}"
        res += [(what + " dx", dx, rdx), (what + " dg", dg, rdg)]
    return res


def run_all(x, extent, seed=0, lean_flags=LEAN_FLAGS):
    """Every op (forwards with and without residual and ReLU, the backwards) on the C++
    kernels and on the reference: [(name, out, ref)]."""
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    layout = "channels_last" if cl else "contiguous"
    r = make(x.shape, x.dtype, layout, seed + 1)
    dy = make(x.shape, x.dtype, layout, seed + 2)
    g = make(checks.g_shape(x.shape, extent), x.dtype, "contiguous", seed + 3).mul_(2)
    ops = torch.ops.genet_ops
    out = [
        ("gather_excite", ops.gather_excite(x, extent), reference.gather_excite(x, extent)),
        ("gather_excite+res", ops.gather_excite(x, extent, r), reference.gather_excite(x, extent, r)),
        ("gather_excite+relu", ops.gather_excite(x, extent, None, True), reference.gather_excite(x, extent, None, True)),
        ("gather_excite_backward", ops.gather_excite_backward(dy, x, extent), reference.gather_excite_backward(dy, x, extent)),
        ("excite", ops.excite(x, g, extent), reference.excite(x, g, extent)),
        ("excite+res", ops.excite(x, g, extent, r), reference.excite(x, g, extent, r)),
        ("excite+res+relu", ops.excite(x, g, extent, r, True), reference.excite(x, g, extent, r, True)),
    ]
    (dx, dg), (rdx, rdg) = ops.excite_backward(dy, x, g, extent), reference.excite_backward(dy, x, g, extent)
    out += [("excite_backward dx", dx, rdx), ("excite_backward dg", dg, rdg)]
    # The output-keeping path: the lean forward's output and means feed its backward,
    # so ReLU's zeros are real zeros of out.
    (y, m), (ry, rm) = ops.gather_excite_lean(x, extent, r, True), reference.gather_excite_lean(x, extent, r, True)
    out += [("gather_excite_lean+res+relu out", y, ry), ("gather_excite_lean+res+relu g", m, rm)]
    return out + run_lean_backward(dy, y, r, m, extent, lean_flags)


def test_cpu_kernels_are_the_cpp_ones():
    kernels = genet_ops.backend_info()["kernels"]
    assert all(kernels[op]["cpu"] == "cpp" for op in OPS), kernels
    for op in OPS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"genet_ops::{op}", "CPU")
    assert torch.ops.genet_ops_cpu.isa() in ("avx2", "default")


# Widths around the vector step (8 floats / 16 half in AVX2, 4 doubles), channel counts
# that are no multiple of it: every partial step of the NCHW rows and NHWC channel runs.
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"], ids=["nchw", "cl"])
def test_vector_tails(dtype, layout, poison_outputs):
    for W in (7, 8, 9, 15, 16, 17):
        for C, H in ((3, 5), (13, 4), (19, 9)):
            for extent in (0, 2, 3, 4, 8):
                x = make((2, C, H, W), dtype, layout, W * 100 + C + extent)
                for what, out, ref in run_all(x, extent):
                    assert_matches_reference(out, ref, f"{what} {tuple(x.shape)} e{extent} {layout}")


# Work-split edges: NHWC channel blocks with a partial last block (a tile row of more
# than 8 MiB), NHWC wide channel runs (>= 1024: pixel groups, chunks of channels, single
# steps and a scalar tail), NCHW planes bigger than a batch, many tiny planes in several
# batches.
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize(
    "shape,extent,channels_last",
    [((1, 200, 160, 160), 0, True), ((1, 200, 48, 48), 0, True), ((1, 72, 40, 72), 8, True),
     ((2, 1051, 5, 6), 0, True), ((2, 1051, 5, 6), 4, True), ((1, 1030, 9, 7), 3, True),
     ((1, 2, 150, 140), 0, False), ((1, 2, 150, 140), 3, False), ((9, 301, 5, 6), 2, False), ((9, 301, 5, 6), 0, False)],
    ids=str,
)
def test_work_split_edges(shape, extent, channels_last, dtype, poison_outputs):
    x = make(shape, dtype, "channels_last" if channels_last else "contiguous", 7)
    t = checks.tile_geom(shape, extent)
    # The lean backward with gather (two sweeps, channel blocks) and without (one sweep).
    for what, out, ref in run_all(x, extent, lean_flags=((True, True, True), (False, False, False))):
        assert_matches_reference(out, ref, f"{what} {shape} e{extent} cl={channels_last}", t.eh * t.ew)


# The new ops and flags (ReLU epilogue, tile means, the output-keeping backward) against the
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"], ids=["nchw", "cl"])
def test_relu_keeps_nan_and_masks_where_out_is_not_positive(layout):
    """ReLU as torch.relu (NaN kept, -0.0 and +0.0 both count as 'not positive' in the
    backward mask), in the vector steps and the scalar tails alike."""
    ops = torch.ops.genet_ops
    x = make((2, 19, 5, 9), torch.float32, layout, 5)
    g = make((2, 19, 1, 1), torch.float32, "contiguous", 6)
    x[0, 3, 1, 2] = float("nan")  # a vector step (NCHW) ...
    x[1, 18, 4, 8] = float("nan")  # ... and a tail element in both layouts
    y = ops.excite(x, g, 0, None, True)
    torch.testing.assert_close(y, reference.excite(x, g, 0, None, True), equal_nan=True)
    assert y[0, 3, 1, 2].isnan() and y[1, 18, 4, 8].isnan() and (y.nan_to_num() >= 0).all()
    out = y.nan_to_num(nan=0.0)
    out[0, 5, 2] = -0.0
    dy = make(out.shape, torch.float32, layout, 7)
    for o, gather in itertools.product((out, y), (False, True)):  # y: NaN passes the mask
        args = (dy, o, None, g, 0, True, gather)
        dx, dg = ops.excite_lean_backward(*args)
        rdx, rdg = reference.excite_lean_backward(*args)
        torch.testing.assert_close(dx, rdx, equal_nan=True)
        torch.testing.assert_close(dg, rdg, equal_nan=True)
        if o is out and not gather:
            assert (dx[out <= 0] == 0).all() and (dx[out > 0] != 0).all()


def test_results_do_not_depend_on_the_thread_count():
    """Each tile is reduced by one thread in a fixed order: bitwise the same results."""
    x = make((8, 64, 20, 20), torch.float32, "contiguous", 3)
    xs = [x, x.contiguous(memory_format=torch.channels_last)]
    before = torch.get_num_threads()
    try:
        results = []
        for n in (1, max(before, 2)):
            torch.set_num_threads(n)
            results.append([out for xi in xs for e in (0, 4) for _, out, _ in run_all(xi, e)])
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="one thread only")
def test_parallel_for_starts_openmp_workers():
    """at::parallel_for in the extension uses torch's OpenMP pool (one libgomp in the
    process): the first big op in a fresh process adds worker threads."""
    code = (
        "import os, torch, genet_ops\n"
        "n0 = len(os.listdir('/proc/self/task'))\n"
        "torch.ops.genet_ops.gather_excite(torch.randn(64, 64, 32, 32), 0)\n"
        "libs = {l.split()[-1] for l in open('/proc/self/maps') if 'libgomp' in l}\n"
        "print(torch.get_num_threads(), n0, len(os.listdir('/proc/self/task')), len(libs))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    threads, before, after, gomps = map(int, out.stdout.split())
    assert after - before >= threads - 1, out.stdout
    assert gomps <= 1, "two OpenMP runtimes loaded"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 only")
def test_default_isa_kernels_under_aten_cpu_capability_default():
    """ATEN_CPU_CAPABILITY=default selects the baseline kernels; they agree with the
    reference too (on an AVX2 machine this is the only way to run them)."""
    code = (
        "import torch, genet_ops, sys\n"
        "sys.path.insert(0, 'tests')\n"
        "from oracle import DTYPES, assert_matches_reference, make\n"
        "from test_cpu_kernels import run_all\n"
        "assert torch.ops.genet_ops_cpu.isa() == 'default', torch.ops.genet_ops_cpu.isa()\n"
        "for dtype in DTYPES:\n"
        "    for layout in ('contiguous', 'channels_last'):\n"
        "        for e in (0, 3, 4):\n"
        "            x = make((2, 19, 9, 17), dtype, layout, 1)\n"
        "            for what, out, ref in run_all(x, e):\n"
        "                assert_matches_reference(out, ref, what)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout + out.stderr


@pytest.mark.skipif(platform.machine() != "x86_64" or shutil.which("objdump") is None, reason="needs x86-64 objdump")
def test_avx_instructions_only_in_the_avx2_kernels():
    """kernels_avx2.cpp is the only code built for AVX2 (target pragma); nothing the
    extension runs before choosing an ISA may use VEX/EVEX instructions, or importing
    it would fault on an x86-64 without AVX."""
    so = genet_ops._C.__file__
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", so], capture_output=True, text=True, check=True).stdout
    fn_re = re.compile(r"^[0-9a-f]+ <(.*)>:$")
    insn_re = re.compile(r"^\s+[0-9a-f]+:\s+(v[a-z0-9]+|andn|bextr|blsi|blsr|bzhi|pdep|pext|sarx|shlx|shrx|rorx)\s")
    offenders, fn = set(), None
    for line in dis.splitlines():
        m = fn_re.match(line)
        if m:
            fn = m.group(1)
        elif fn and insn_re.match(line) and "isa_avx2" not in fn and "genet_avx2" not in fn:
            offenders.add(fn)
    assert not offenders, f"AVX code outside the AVX2 kernels: {sorted(offenders)[:5]}"


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"], ids=["nchw", "cl"])
@pytest.mark.parametrize("extent", [0, 3])
def test_opcheck_cpp_kernels(extent, layout):
    x = make((2, 5, 7, 6), torch.float32, layout, 0)
    dy = make(x.shape, torch.float32, layout, 1)
    r = make(x.shape, torch.float32, layout, 2)
    g = make(checks.g_shape(x.shape, extent), torch.float32, "contiguous", 3)
    m = reference.gather_excite_lean(x, extent)[1]
    ops = torch.ops.genet_ops
    rg = lambda t: t.detach().clone().requires_grad_()  # noqa: E731
    cases = [
        (ops.gather_excite.default, (rg(x), extent, r)),
        (ops.gather_excite_backward.default, (dy, x, extent)),
        (ops.excite.default, (rg(x), rg(g), extent)),
        (ops.excite_backward.default, (dy, x, g, extent)),
    ]
    if extent:  # the new ops and flags (test_ops.py opchecks them at both extents)
        cases += [
            (ops.gather_excite.default, (rg(x), extent, rg(r), True)),
            (ops.excite.default, (rg(x), rg(g), extent, rg(r), True)),
            (ops.gather_excite_lean.default, (rg(x), extent, rg(r), True)),
            (ops.excite_lean.default, (rg(x), rg(g), extent, rg(r), True)),
            (ops.excite_lean_backward.default, (dy, x, None, m, extent, False, True)),
            (ops.excite_lean_backward.default, (dy, x, r, m, extent, True, False)),
        ]
    for op, args in cases:
        torch.library.opcheck(op, args)
