"""The Triton ops (genet_ops::*_triton) against genet_ops.reference.

Without a GPU they run under the Triton interpreter (conftest sets TRITON_INTERPRET=1) on
CPU tensors; with one, on CUDA. Every test name contains "triton" (`pytest -k triton`).
Shapes stay small: the interpreter runs each program in numpy.

Parity with the float64 reference in every dtype and layout is test_parity.py's loop
(backend "triton", tests/parity.py); the checks here are the Triton ops' own: mixed
layouts, row-chunk loops and plans, empty inputs, errors, gradients, opcheck, compile.
"""
import functools
import json
import os
import subprocess
import sys

import pytest
import torch

triton = pytest.importorskip("triton")

import genet_ops  # noqa: E402
from genet_ops import checks, reference  # noqa: E402
from genet_ops.triton import _launch  # noqa: E402

import oracle  # noqa: E402
from oracle import assert_layout, requires_cuda  # noqa: E402

ops = torch.ops.genet_ops
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# torch 2.11 (the GPU image's) builds a triton_op's schema from its annotations whatever
# schema= says; our pinned 2.14 honours schema=. Versions between are not checked.
MAY_INFER_SCHEMA = tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 14)
make = functools.partial(oracle.make, device=DEVICE)


def g_for(x, extent, seed=1):
    """A gate g for x and extent, in x's dtype and on x's device."""
    return oracle.make(checks.g_shape(x.shape, extent), x.dtype, "contiguous", seed, x.device)


# ------------------------------------------------------------------------- layouts
def test_triton_mixed_layouts(poison_outputs):
    """x channels_last, residual NCHW, grad_out a strided view, g channels_last: the
    other tensors' strides go to the kernels as they are."""
    shape, e = (2, 4, 6, 5), 2
    x = make(shape, torch.float32, "channels_last")
    res = make(shape, torch.float32, "contiguous", seed=2)
    dy = make(shape, torch.float32, "strided_w", seed=3)
    g = g_for(x, e).contiguous(memory_format=torch.channels_last)
    tol = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ops.gather_excite_triton(x, e, res), reference.gather_excite(x, e, res), **tol)
    torch.testing.assert_close(ops.gather_excite_backward_triton(dy, x, e), reference.gather_excite_backward(dy, x, e), **tol)
    torch.testing.assert_close(ops.excite_triton(x, g, e, res), reference.excite(x, g, e, res), **tol)
    dx, dg = ops.excite_backward_triton(dy, x, g, e)
    rdx, rdg = reference.excite_backward(dy, x, g, e)
    torch.testing.assert_close((dx, dg), (rdx, rdg), **tol)
    assert dg.stride() == rdg.stride()
    # an expanded (stride-0) gradient, as sum().backward() produces
    ones = torch.ones(1, 1, 1, 1, device=DEVICE).expand(shape)
    torch.testing.assert_close(ops.gather_excite_backward_triton(ones, x, e), reference.gather_excite_backward(ones, x, e), **tol)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_triton_two_sweep_and_small_blocks(layout, monkeypatch, poison_outputs):
    """Blocks too small for a tile-row: the row-chunk loops (two sweeps in gather_excite),
    and one unit per program (as when a large grid is wanted)."""
    monkeypatch.setattr(_launch, "FWD_BLOCK_BYTES", 64)
    monkeypatch.setattr(_launch, "BWD_BLOCK_BYTES", 32)
    monkeypatch.setattr(_launch, "MIN_PROGRAMS", 1 << 20)
    tol = dict(rtol=1e-5, atol=1e-5)
    for shape, e in [((1, 3, 9, 10), 0), ((2, 2, 7, 9), 4)]:
        x = make(shape, torch.float32, layout)
        g, res, dy = g_for(x, e), make(shape, torch.float32, layout, 2), make(shape, torch.float32, layout, 3)
        assert not _launch.plan(checks.kernel_input(x), e, _launch.FWD_BLOCK_BYTES).SINGLE
        torch.testing.assert_close(ops.gather_excite_triton(x, e, res), reference.gather_excite(x, e, res), **tol)
        torch.testing.assert_close(ops.gather_excite_backward_triton(dy, x, e), reference.gather_excite_backward(dy, x, e), **tol)
        torch.testing.assert_close(ops.excite_triton(x, g, e, res), reference.excite(x, g, e, res), **tol)
        torch.testing.assert_close(ops.excite_backward_triton(dy, x, g, e), reference.excite_backward(dy, x, g, e), **tol)


def test_triton_seed_equivalences():
    """docs/DESIGN.md §2: θ⁻ as pool/interpolate, excite as nearest upsampling, extent 1 = SiLU."""
    F = torch.nn.functional
    x = make((2, 3, 8, 8), torch.float32, "contiguous")
    tol = dict(rtol=1e-5, atol=1e-6)
    for e in (1, 2, 4):
        pooled = F.adaptive_avg_pool2d(x, (8 // e, 8 // e))
        torch.testing.assert_close(
            ops.gather_excite_triton(x, e), x * torch.sigmoid(F.interpolate(pooled, (8, 8))), **tol)
        g = g_for(x, e)
        torch.testing.assert_close(
            ops.excite_triton(x, g, e), x * torch.sigmoid(F.interpolate(g, size=(8, 8), mode="nearest")), **tol)
    torch.testing.assert_close(ops.gather_excite_triton(x, 1), F.silu(x), **tol)


@pytest.mark.parametrize("shape", [(0, 3, 5, 5), (2, 3, 0, 4)], ids=["N0", "H0"])
def test_triton_empty(shape):
    for layout in ("contiguous", "channels_last"):
        x = make(shape, torch.float32, layout)
        for e in (0, 2):
            y = ops.gather_excite_triton(x, e, x)
            assert y.shape == x.shape
            assert_layout(y, x)
            assert ops.gather_excite_backward_triton(x, x, e).shape == x.shape
            g = torch.randn(checks.g_shape(shape, e), device=DEVICE)
            assert ops.excite_triton(x, g, e).shape == x.shape
            dx, dg = ops.excite_backward_triton(x, x, g, e)
            assert dx.shape == x.shape and dg.shape == g.shape
            assert (dg == 0).all()


def test_triton_bad_arguments():
    x = make((1, 2, 4, 4), torch.float32, "contiguous")
    with pytest.raises(ValueError, match="g must have shape"):
        ops.excite_triton(x, torch.zeros(1, 2, 3, 3, device=DEVICE), 2)
    with pytest.raises(ValueError, match="residual must have x's dtype"):
        ops.gather_excite_triton(x, 0, x.double())
    with pytest.raises(ValueError, match="extent must be >= 0"):
        ops.gather_excite_triton(x, -1)
    with pytest.raises(ValueError, match="grad_out must have x's shape"):
        ops.gather_excite_backward_triton(x[:, :1], x, 0)
    with pytest.raises(ValueError, match="4-D"):
        ops.gather_excite_triton(x[0], 0)


# ------------------------------------------- ReLU epilogue and output-keeping twins
def test_triton_relu_keeps_nan(poison_outputs):
    """The epilogue is out < 0 ? 0 : out (NaN stays, as torch.relu); the lean backward masks
    where out <= 0 and lets NaN through, as torch's threshold backward."""
    shape, e = (1, 2, 4, 5), 2
    x = make(shape, torch.float32, "contiguous")
    x[0, 0, 1, 1] = float("nan")
    g = g_for(x, e)
    y = ops.excite_triton(x, g, e, None, True)
    want = reference.excite(x, g, e, None, True)
    torch.testing.assert_close(y, want, equal_nan=True)
    assert y[0, 0, 1, 1].isnan() and (y[~y.isnan()] >= 0).all() and (y == 0).any()
    torch.testing.assert_close(ops.excite_lean_triton(x, g, e, None, True), want, equal_nan=True)
    ge, _ = ops.gather_excite_lean_triton(x, e, None, True)
    torch.testing.assert_close(ge, reference.gather_excite(x, e, None, True), equal_nan=True)
    dy = make(shape, torch.float32, "contiguous", seed=3)
    dx, dg = ops.excite_lean_backward_triton(dy, y, None, g.float(), e, True, False)
    rdx, rdg = reference.excite_lean_backward(dy, y, None, g.float(), e, True, False)
    torch.testing.assert_close((dx, dg), (rdx, rdg), equal_nan=True)
    assert (dx[y == 0] == 0).all() and dx[0, 0, 1, 1] != 0 and dg[0, 0, 0, 0].isnan()


def test_triton_lean_chunked_rows(monkeypatch, poison_outputs):
    """The row-chunk loops of the lean kernels (two sweeps for gather_excite_lean and the
    gathering backward, the ReLU mask re-read in the second)."""
    monkeypatch.setattr(_launch, "FWD_BLOCK_BYTES", 64)
    monkeypatch.setattr(_launch, "BWD_BLOCK_BYTES", 32)
    _check_lean_fp32("contiguous", [((1, 2, 9, 10), 0)], single=False)
    _check_lean_fp32("channels_last", [((1, 2, 7, 9), 4)], single=False)


def test_triton_lean_persistent_plan(poison_outputs):
    """Knob triton_cl_global=persistent: the lean forward and the gathering backward walk
    grid positions, as gather_excite's kernels."""
    from genet_ops import _tuning

    with _tuning.using("triton_cl_global", "persistent"):
        x = make((1, 32, 10, 10), torch.float32, "channels_last")
        for block in (_launch.FWD_BLOCK_BYTES, _launch.BWD_BLOCK_BYTES):
            q = _launch.plan_persistent(_launch.plan(x, 0, block), x, block)
            # more positions than programs: each walks several
            assert q.PERSIST and q.grid[0] < triton.cdiv(32, q.BLOCK_A)
        _check_lean_fp32("channels_last", [((1, 32, 10, 10), 0)], single=None)


def _check_lean_fp32(layout, cases, single):
    tol = dict(rtol=1e-5, atol=1e-5)
    for shape, e in cases:
        x = make(shape, torch.float32, layout)
        res, dy = make(shape, torch.float32, layout, 2), make(shape, torch.float32, layout, 3)
        if single is not None:
            assert _launch.plan(checks.kernel_input(x), e, _launch.BWD_BLOCK_BYTES).SINGLE == single
        y, means = ops.gather_excite_lean_triton(x, e, res, True)
        torch.testing.assert_close((y, means), reference.gather_excite_lean(x, e, res, True), **tol)
        # the gathering backward with and without the ReLU mask's re-read, and the excite one
        for r, relu, gather in [(res, True, True), (None, False, True), (res, True, False)]:
            got = ops.excite_lean_backward_triton(dy, y, r, means, e, relu, gather)
            torch.testing.assert_close(got, reference.excite_lean_backward(dy, y, r, means, e, relu, gather), **tol)


@pytest.mark.parametrize("shape", [(0, 3, 5, 5), (2, 3, 0, 4)], ids=["N0", "H0"])
def test_triton_lean_empty(shape):
    """Empty inputs: empty outputs, tile means and dg zero (tiles without pixels)."""
    for layout in ("contiguous", "channels_last"):
        x = make(shape, torch.float16, layout)
        for e in (0, 2):
            y, means = ops.gather_excite_lean_triton(x, e, x, True)
            assert_layout(y, x)
            rmeans = reference.gather_excite_lean(x, e, x, True)[1]
            assert means.shape == rmeans.shape and means.stride() == rmeans.stride()
            assert means.dtype == torch.float32 and (means == 0).all()
            dx, dg = ops.excite_lean_backward_triton(x, y, x, means, e, True, True)
            assert_layout(dx, x, "dx")
            assert dg.shape == means.shape and (dg == 0).all()


def test_triton_lean_reference_fallback(monkeypatch, poison_outputs):
    """Where the plan refuses (rows too wide, huge samples) the lean twins and the ReLU
    epilogue run on the reference, with the same layouts."""
    monkeypatch.setattr(_launch, "MAX_ROW", 1)
    for layout in ("contiguous", "channels_last"):
        x = make((1, 3, 5, 6), torch.float32, layout)
        res, dy, g = make(x.shape, torch.float32, layout, 2), make(x.shape, torch.float32, layout, 3), g_for(x, 2)
        assert _launch.plan(checks.kernel_input(x), 2, _launch.FWD_BLOCK_BYTES) is None
        for got, want in [
            (ops.gather_excite_lean_triton(x, 2, res, True), reference.gather_excite_lean(x, 2, res, True)),
            ((ops.gather_excite_triton(x, 2, res, True),), (reference.gather_excite(x, 2, res, True),)),
            ((ops.excite_lean_triton(x, g, 2, res, True),), (reference.excite(x, g, 2, res, True),)),
            (ops.excite_lean_backward_triton(dy, x, res, g.float(), 2, True, True),
             reference.excite_lean_backward(dy, x, res, g.float(), 2, True, True)),
        ]:
            torch.testing.assert_close(got, want, rtol=0, atol=0)
            assert [t.stride() for t in got] == [t.stride() for t in want]


def test_triton_lean_bad_arguments():
    x = make((1, 2, 4, 4), torch.float16, "contiguous")
    means = torch.zeros(1, 2, 2, 2, device=DEVICE)
    with pytest.raises(ValueError, match="g must be torch.float32"):
        ops.excite_lean_backward_triton(x, x, None, means.half(), 2, False, True)
    with pytest.raises(ValueError, match="residual must have"):
        ops.excite_lean_backward_triton(x, x, x[:, :1], means, 2, False, True)
    with pytest.raises(ValueError, match="g must have shape"):
        ops.excite_lean_backward_triton(x, x, None, means, 0, False, True)
    with pytest.raises(ValueError, match="residual must have x's dtype"):
        ops.gather_excite_lean_triton(x, 0, x.float())
    with pytest.raises(ValueError, match="g must have x's dtype"):
        ops.excite_lean_triton(x, means, 2)


# ----------------------------------------------------------------------- autograd
@pytest.mark.parametrize("extent", [0, 2, 3])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_triton_autograd_matches_reference(layout, extent):
    """Gradients through the shared autograd registration (the *_backward_triton ops)
    equal float64 autograd through the reference forward."""
    shape = (2, 3, 7, 6)
    w = make(shape, torch.float64, "contiguous", seed=9)

    def grads(fn, *inputs):
        inputs = [t.detach().requires_grad_() for t in inputs]
        out = fn(*inputs)
        return torch.autograd.grad((out.double() * w).sum(), inputs)

    x, res = make(shape, torch.float32, layout), make(shape, torch.float32, layout, 2)
    g = g_for(x, extent)
    tol = dict(rtol=1e-5, atol=1e-5)
    got = grads(lambda x, r: ops.gather_excite_triton(x, extent, r), x, res)
    want = grads(lambda x, r: reference.gather_excite(x, extent, r), x.double(), res.double())
    torch.testing.assert_close([t.double() for t in got], list(want), **tol)
    got = grads(lambda x, g, r: ops.excite_triton(x, g, extent, r), x, g, res)
    want = grads(lambda x, g, r: reference.excite(x, g, extent, r), x.double(), g.double(), res.double())
    torch.testing.assert_close([t.double() for t in got], list(want), **tol)
    # only some inputs needing grad
    xg = x.detach().requires_grad_()
    (gx,) = torch.autograd.grad(ops.gather_excite_triton(xg, extent).sum(), [xg])
    torch.testing.assert_close(gx, reference.gather_excite_backward(torch.ones_like(x), x, extent), **tol)


@pytest.mark.parametrize("extent", [0, 3])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_triton_lean_autograd_matches_reference(layout, extent):
    """Gradients of the output-keeping twins (through register_lean_autograd and
    excite_lean_backward_triton), with residual and ReLU, equal float64 autograd through the
    reference forward."""
    shape = (2, 3, 7, 6)
    w = make(shape, torch.float64, "contiguous", seed=9)
    x, res = make(shape, torch.float32, layout), make(shape, torch.float32, layout, 2)
    g = g_for(x, extent)
    tol = dict(rtol=1e-5, atol=1e-5)
    for relu in (False, True):
        cases = [
            (lambda x, r: ops.gather_excite_lean_triton(x, extent, r, relu)[0],
             lambda x, r: reference.gather_excite(x, extent, r, relu), (x, res)),
            (lambda x, g, r: ops.excite_lean_triton(x, g, extent, r, relu),
             lambda x, g, r: reference.excite(x, g, extent, r, relu), (x, g, res)),
            (lambda x, g: ops.excite_lean_triton(x, g, extent, None, relu),
             lambda x, g: reference.excite(x, g, extent, None, relu), (x, g)),
        ]
        for fn, ref, inputs in cases:
            ins = [t.detach().requires_grad_() for t in inputs]
            got = torch.autograd.grad((fn(*ins).double() * w).sum(), ins)
            ins64 = [t.detach().double().requires_grad_() for t in inputs]
            want = torch.autograd.grad((ref(*ins64) * w).sum(), ins64)
            torch.testing.assert_close([t.double() for t in got], list(want), **tol)


def test_triton_lean_gradcheck():
    """First and second order through the lean twins (g's output included, which a higher
    derivative differentiates through)."""
    x = make((1, 2, 3, 5), torch.float64, "contiguous").requires_grad_()
    res = make((1, 2, 3, 5), torch.float64, "channels_last", 2).requires_grad_()
    g = g_for(x, 2).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, r: ops.gather_excite_lean_triton(x, 2, r, True), (x, res), fast_mode=True)
    assert torch.autograd.gradcheck(lambda x, g, r: ops.excite_lean_triton(x, g, 2, r, True), (x, g, res),
                                    fast_mode=True)
    assert torch.autograd.gradgradcheck(lambda x, r: ops.gather_excite_lean_triton(x, 2, r)[0], (x, res),
                                        fast_mode=True)


def test_triton_gradcheck():
    x = make((1, 2, 3, 5), torch.float64, "contiguous").requires_grad_()
    res = make((1, 2, 3, 5), torch.float64, "channels_last", 2).requires_grad_()
    g = g_for(x, 2).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, r: ops.gather_excite_triton(x, 2, r), (x, res), fast_mode=True)
    assert torch.autograd.gradcheck(lambda x, g, r: ops.excite_triton(x, g, 2, r), (x, g, res), fast_mode=True)


# ---------------------------------------------------------------- torch.library
def _opcheck_cases():
    x = make((2, 3, 5, 6), torch.float32, "contiguous")
    xc = make((2, 4, 5, 6), torch.bfloat16, "channels_last")
    for t, e, res in [(x, 2, make(x.shape, x.dtype, "contiguous", 2)), (xc, 0, None)]:
        g = g_for(t, e)
        dy = torch.randn_like(t)
        xr = t.clone().requires_grad_()
        yield "gather_excite_triton", (xr, e, None if res is None else res.clone().requires_grad_())
        yield "gather_excite_backward_triton", (dy, t, e)
        yield "excite_triton", (xr, g.clone().requires_grad_(), e, res)
        yield "excite_backward_triton", (dy, t, g, e)
        yield "gather_excite_lean_triton", (xr, e, None if res is None else res.clone().requires_grad_(), True)
        yield "excite_lean_triton", (xr, g.clone().requires_grad_(), e, res, True)
        out, means = ops.gather_excite_lean_triton(t, e, res, True)
        yield "excite_lean_backward_triton", (dy, out, res, means, e, True, res is None)


@pytest.mark.parametrize("i", range(14))
def test_triton_opcheck(i):
    """torch.library.opcheck: schema, fake (= the triton_op body), autograd registration,
    AOT dispatch with dynamic shapes. Under the interpreter the fake kernel only allocates
    (an interpreted kernel cannot run on fake tensors) and the op stays opaque to AOT."""
    name, args = list(_opcheck_cases())[i]
    torch.library.opcheck(getattr(ops, name), args)


def test_triton_ops_share_main_schemas():
    """Same arguments and returns. torch 2.11's triton_op ignores schema= and infers the
    schema from the annotations, which makes `extent` a SymInt: the one difference allowed."""
    def args(schema, twin):
        return [(a.name, "int" if twin and str(a.type) == "SymInt" and MAY_INFER_SCHEMA else str(a.type), a.default_value)
                for a in schema.arguments]

    for op in sorted(genet_ops.backend.TRITON_TWINS):
        main = getattr(ops, op).default._schema
        twin = getattr(ops, f"{op}_triton").default._schema
        assert args(main, False) == args(twin, True)
        assert [str(r.type) for r in main.returns] == [str(r.type) for r in twin.returns]


def test_triton_compile_fullgraph_matches_eager():
    """torch.compile(fullgraph=True) through the triton ops, the output-keeping twins with
    ReLU included, forward and backward. On a GPU the compiler traces into the kernels;
    under the interpreter each op stays one node."""
    torch._dynamo.reset()

    def f(x, g, r):
        y = ops.gather_excite_triton(x, 2, r) * 2
        y = ops.excite_triton(y, g, 2) + 1
        y, _ = ops.gather_excite_lean_triton(y, 2, r, True)
        return ops.excite_lean_triton(y * 2, g, 2, r, True) - 1

    x, r = make((2, 3, 6, 5), torch.float32, "channels_last"), make((2, 3, 6, 5), torch.float32, "contiguous", 2)
    g = g_for(x, 2)
    ins = [t.clone().requires_grad_() for t in (x, g, r)]
    ins_c = [t.clone().requires_grad_() for t in (x, g, r)]
    out = f(*ins)
    out_c = torch.compile(f, fullgraph=True)(*ins_c)
    torch.testing.assert_close(out_c, out)
    out.square().sum().backward()
    out_c.square().sum().backward()
    torch.testing.assert_close([t.grad for t in ins_c], [t.grad for t in ins])


@requires_cuda
def test_triton_compile_traces_into_kernels():
    """On a GPU, AOTAutograd decomposes the triton_ops into their kernels."""
    from torch._dynamo.backends.common import aot_autograd

    graphs = []

    def capture(gm, example_inputs):
        graphs.append(str(gm.code))
        return gm

    torch._dynamo.reset()
    x = make((2, 8, 6, 6), torch.bfloat16, "channels_last")
    f = torch.compile(lambda x: ops.gather_excite_triton(x, 2) + 1, fullgraph=True,
                      backend=aot_autograd(fw_compiler=capture))
    torch.testing.assert_close(f(x), ops.gather_excite_triton(x, 2) + 1)
    assert any("triton_kernel_wrapper" in code for code in graphs), graphs


@requires_cuda
def test_triton_backend_routes_public_api():
    x = make((2, 8, 6, 6), torch.float16, "contiguous")
    prev = genet_ops.get_backend()
    try:
        genet_ops.set_backend("triton")
        torch.testing.assert_close(genet_ops.gather_excite(x, 2), ops.gather_excite_triton(x, 2))
        # with a gradient wanted and no residual, the output-keeping twin (save='auto')
        xg = x.clone().requires_grad_()
        y = genet_ops.gather_excite(xg, 2, relu=True)
        assert "gather_excite_lean_triton" in str(y.grad_fn.name())
        (dx,) = torch.autograd.grad(y.float().sum(), [xg])
        want = torch.autograd.grad(reference.gather_excite(xg.double(), 2, None, True).sum(), [xg])[0]
        torch.testing.assert_close(dx.double(), want, rtol=1e-2, atol=1e-2)
    finally:
        genet_ops.set_backend(prev)


# ------------------------------------------------------------ the real compiler
_AOT_SCRIPT = """
import json, torch
import triton_aot_report as _aot
cases = [((4, 256, 56, 56), 0, torch.bfloat16, False), ((4, 64, 56, 56), 2, torch.float16, True)]
rows = _aot.main(cases=cases, all_configs=False)
print("ROWS" + json.dumps({"rows": rows, "per_case": _aot.LAUNCHES_PER_CASE}, default=str))
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the other tests compile the kernels for real")
def test_triton_kernels_compile_for_sm90():
    """The interpreter does not run Triton's compiler: compile the kernels (each forward and
    backward, the ReLU epilogue, the tile-means store and the output-keeping backward) for
    sm_90 (Triton -> PTX -> ptxas, no GPU needed) and check the loads come out 16 bytes wide."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, os.path.join(root, "tools"), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", _AOT_SCRIPT], capture_output=True, text=True, env=env,
                          cwd=root, timeout=600)
    if proc.returncode != 0 and "ptxas" in proc.stderr and "not found" in proc.stderr.lower():
        pytest.skip("Triton's bundled ptxas is missing")
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.split("ROWS", 1)[1])
    rows = report["rows"]
    assert len(rows) == 2 * report["per_case"]
    assert {"_excite_lean_backward_kernel", "_gather_excite_kernel", "_excite_kernel"} <= {r["kernel"] for r in rows}
    for r in rows:
        assert r["ld_v4"] > 0, r


# ------------------------------------------------------------ registration failure
_BROKEN_TWINS = """
import sys, warnings
sys.modules["genet_ops.triton"] = None  # importing the twins now raises ImportError
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import genet_ops
import torch
info = genet_ops.backend_info()
assert info["triton"] is False, info
assert "could not be registered" in info["triton_error"], info
assert "triton" not in {d.get("cuda") for d in info["kernels"].values()}, info
said = [w for w in caught if "Triton kernels off" in str(w.message)]
assert len(said) == 1, [str(w.message) for w in caught]
print("OK", genet_ops.gather_excite(torch.randn(1, 2, 3, 3), 0).shape)
"""


def test_triton_registration_failure_keeps_import_working():
    """If the *_triton ops cannot be registered (a torch or Triton API change), import
    genet_ops still works, warns once and backend_info() says why Triton is off."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _BROKEN_TWINS], capture_output=True, text=True, env=env,
                          cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK" in proc.stdout
