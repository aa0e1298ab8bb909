"""The two ops against docs/DESIGN.md §2, through torch.ops.genet_ops on the CPU.

Whatever kernel serves the CPU runs here: the C++ one when genet_ops._C is built, the
reference under GENET_OPS_LOAD_EXTENSION=0 (test_fallback.py reruns this file so).
"""
import pytest
import torch
import torch.nn.functional as F

import genet_ops
from genet_ops import checks, ops, reference
from oracle import (DTYPES, GEBlock, assert_compiled_matches_eager, assert_layout, assert_within_budget, eager_excite,
                    eager_gather_excite, make)

SHAPES = [(2, 3, 1, 1), (2, 3, 7, 7), (3, 2, 3, 5), (1, 4, 32, 32), (1, 2, 56, 56), (0, 3, 8, 8), (2, 1, 9, 6), (2, 5, 13, 11)]
EXTENTS = [0, 1, 2, 3, 4, 8, 64]
LAYOUTS = ["contiguous", "channels_last", "strided"]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("extent", EXTENTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_gather_excite_parity(shape, extent, dtype, poison_outputs):
    for layout in LAYOUTS:
        for with_res in (False, True):
            what = f"gather_excite {layout} residual={with_res}"
            x = make(shape, dtype, layout, 0).requires_grad_()
            res = make(shape, dtype, layout, 1).requires_grad_() if with_res else None
            dy = make(shape, dtype, layout, 2)

            y = torch.ops.genet_ops.gather_excite(x, extent, res)
            grads = torch.autograd.grad(y, [x, res] if with_res else [x], dy)
            dx = grads[0]
            assert_layout(y, x, what)
            assert_layout(dx, x, what + " dx")

            x64 = x.detach().double().requires_grad_()
            y64 = reference.gather_excite(x64, extent, None if res is None else res.detach().double())
            (dx64,) = torch.autograd.grad(y64, x64, dy.double())
            xe = x.detach().clone().requires_grad_()
            ye = eager_gather_excite(xe, extent, None if res is None else res.detach())
            (dxe,) = torch.autograd.grad(ye, xe, dy)

            assert_within_budget(y, y64, ye, what)
            assert_within_budget(dx, dx64, dxe, what + " dx")
            if with_res:
                assert torch.equal(grads[1], dy), what + ": d residual must be grad_out"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("extent", EXTENTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_excite_parity(shape, extent, dtype, poison_outputs):
    for layout in LAYOUTS:
        for with_res in (False, True):
            what = f"excite {layout} residual={with_res}"
            x = make(shape, dtype, layout, 0).requires_grad_()
            g = make(checks.g_shape(shape, extent), dtype, "contiguous", 3).mul_(2).requires_grad_()
            res = make(shape, dtype, layout, 1) if with_res else None
            dy = make(shape, dtype, layout, 2)

            y = torch.ops.genet_ops.excite(x, g, extent, res)
            dx, dg = torch.autograd.grad(y, [x, g], dy)
            assert_layout(y, x, what)
            assert_layout(dx, x, what + " dx")
            assert dg.shape == g.shape

            x64 = x.detach().double().requires_grad_()
            g64 = g.detach().double().requires_grad_()
            y64 = reference.excite(x64, g64, extent, None if res is None else res.double())
            dx64, dg64 = torch.autograd.grad(y64, [x64, g64], dy.double())
            xe, ge = x.detach().clone().requires_grad_(), g.detach().clone().requires_grad_()
            ye = eager_excite(xe, ge, extent, res)
            dxe, dge = torch.autograd.grad(ye, [xe, ge], dy)

            assert_within_budget(y, y64, ye, what)
            assert_within_budget(dx, dx64, dxe, what + " dx")
            assert_within_budget(dg, dg64, dge, what + " dg")


def test_backward_ops_match_reference_formulas():
    """The explicit backward formulas (used as fallback kernels) equal autograd of the
    reference forward: the oracle above is sound."""
    x = torch.randn(2, 3, 7, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(2, 3, 7, 5, dtype=torch.float64)
    (dx,) = torch.autograd.grad(reference.gather_excite(x, 3), x, dy)
    torch.testing.assert_close(reference.gather_excite_backward(dy, x.detach(), 3), dx)
    dx, dg = torch.autograd.grad(reference.excite(x, g, 3), [x, g], dy)
    ex, eg = reference.excite_backward(dy, x.detach(), g.detach(), 3)
    torch.testing.assert_close(ex, dx)
    torch.testing.assert_close(eg, dg)


@pytest.mark.parametrize("extent", [0, 2, 3, 8])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gradcheck(extent, layout):
    x = make((2, 3, 7, 5), torch.float64, layout, 0).requires_grad_()
    res = make((2, 3, 7, 5), torch.float64, layout, 1).requires_grad_()
    g = make(checks.g_shape(x.shape, extent), torch.float64, "contiguous", 2).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, r: torch.ops.genet_ops.gather_excite(a, extent, r), (x, res))
    assert torch.autograd.gradcheck(lambda a: torch.ops.genet_ops.gather_excite(a, extent), (x,))
    assert torch.autograd.gradcheck(lambda a, b, r: torch.ops.genet_ops.excite(a, b, extent, r), (x, g, res))


@pytest.mark.parametrize("extent", [0, 3])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_opcheck(extent, layout, dtype):
    shape = (2, 3, 7, 5)
    x = make(shape, dtype, layout, 0)
    res = make(shape, dtype, layout, 1)
    dy = make(shape, dtype, layout, 2)
    g = make(checks.g_shape(shape, extent), dtype, "contiguous", 3)
    rg = lambda t: t.clone().requires_grad_()  # noqa: E731
    ops = torch.ops.genet_ops
    cases = [
        (ops.gather_excite.default, (rg(x), extent)),
        (ops.gather_excite.default, (rg(x), extent, rg(res))),
        (ops.gather_excite_backward.default, (dy, x, extent)),
        (ops.excite.default, (rg(x), rg(g), extent)),
        (ops.excite.default, (rg(x), rg(g), extent, rg(res))),
        (ops.excite_backward.default, (dy, x, g, extent)),
    ]
    if dtype == torch.float32:  # the ReLU flag and the output-keeping ops (one dtype: opcheck is slow)
        means = reference.gather_excite_lean(x, extent)[1]  # the accumulation dtype
        cases += [
            (ops.gather_excite.default, (rg(x), extent, rg(res), True)),
            (ops.excite.default, (rg(x), rg(g), extent, rg(res), True)),
            (ops.gather_excite_lean.default, (rg(x), extent, rg(res), True)),
            (ops.excite_lean.default, (rg(x), rg(g), extent, rg(res), True)),
            (ops.excite_lean_backward.default, (dy, x, None, means, extent, False, True)),
            (ops.excite_lean_backward.default, (dy, x, res, means, extent, True, False)),
        ]
    for op, args in cases:
        torch.library.opcheck(op, args)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("extent", [2, 4, 8])
def test_equals_seed_pool_and_interpolate(extent, dtype):
    """docs/DESIGN.md §2: the seed's θ⁻ (adaptive avg pool + interpolate) and the nearest-upsampled excite."""
    x = torch.randn(2, 3, 16, 24, dtype=dtype)
    H, W = x.shape[2:]
    seed = x * torch.sigmoid(F.interpolate(F.adaptive_avg_pool2d(x, (H // extent, W // extent)), (H, W)))
    torch.testing.assert_close(genet_ops.gather_excite(x, extent), seed)
    g = torch.randn(2, 3, H // extent, W // extent, dtype=dtype)
    seed = x * torch.sigmoid(F.interpolate(g, size=(H, W), mode="nearest"))
    torch.testing.assert_close(genet_ops.excite(x, g, extent), seed)


def test_extent_1_is_silu_and_large_extent_is_global():
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64)
    torch.testing.assert_close(genet_ops.gather_excite(x, 1), F.silu(x))
    glob = x * torch.sigmoid(x.mean((2, 3), keepdim=True))
    torch.testing.assert_close(genet_ops.gather_excite(x, 0), glob)
    torch.testing.assert_close(genet_ops.gather_excite(x, 9), glob)
    torch.testing.assert_close(genet_ops.gather_excite(x, 100), glob)


def test_torch_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    assert_compiled_matches_eager(GEBlock(4), torch.randn(2, 4, 8, 8, requires_grad=True))


# ----------------------------------------------------------------------- bad input
X = torch.randn(2, 3, 8, 8)
BAD_CALLS = [
    ("rank", lambda f: f.gather_excite(torch.randn(3, 8, 8), 0), "x must be a 4-D"),
    ("int dtype", lambda f: f.gather_excite(torch.ones(2, 3, 8, 8, dtype=torch.int32), 0), "x must be float16"),
    ("negative extent", lambda f: f.gather_excite(X, -1), "extent must be >= 0"),
    ("residual shape", lambda f: f.gather_excite(X, 0, torch.randn(2, 3, 8, 7)), "residual must have x's shape"),
    ("residual dtype", lambda f: f.gather_excite(X, 0, X.double()), "residual must have x's dtype"),
    ("residual device", lambda f: f.gather_excite(X, 0, X.to("meta")), "residual must be on x's device"),
    ("g spatial shape", lambda f: f.excite(X, torch.randn(2, 3, 2, 2), 2), r"g must have shape \[2, 3, 4, 4\]"),
    ("g channels", lambda f: f.excite(X, torch.randn(2, 4, 1, 1), 0), r"g must have shape \[2, 3, 1, 1\]"),
    ("g rank", lambda f: f.excite(X, torch.randn(2, 3), 0), "g must have shape"),
    ("g dtype", lambda f: f.excite(X, torch.randn(2, 3, 1, 1, dtype=torch.float64), 0), "g must have x's dtype"),
    ("excite residual", lambda f: f.excite(X, torch.randn(2, 3, 1, 1), 0, torch.randn(1, 3, 8, 8)), "residual must have x's shape"),
    ("grad_out shape", lambda f: torch.ops.genet_ops.gather_excite_backward(torch.randn(2, 3, 8, 9), X, 0), "grad_out must have x's shape"),
]


@pytest.mark.parametrize("front", ["torch.ops", "genet_ops"])
@pytest.mark.parametrize("name,call,message", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_names_the_argument(front, name, call, message):
    f = torch.ops.genet_ops if front == "torch.ops" else genet_ops
    with pytest.raises((ValueError, RuntimeError), match=message):
        call(f)


def test_bad_input_under_compile_names_the_argument():
    """The fake functions check too, so tracing reports the error, not a crash."""
    fn = torch.compile(lambda x, g: torch.ops.genet_ops.excite(x, g, 2), fullgraph=True)
    with pytest.raises(Exception, match="g must have shape"):
        fn(X, torch.randn(2, 3, 3, 3))


def test_non_int_extent_is_rejected():
    with pytest.raises((TypeError, RuntimeError)):
        torch.ops.genet_ops.gather_excite(X, 1.5)


# ----------------------------------------------------------------------- registration
def test_schemas_are_the_documented_ones():
    for name, schema in ops.SCHEMAS.items():
        assert str(getattr(torch.ops.genet_ops, name).default._schema) == f"genet_ops::{schema}"


def test_backend_info_names_the_cpu_kernel():
    info = genet_ops.backend_info()
    want = "cpp" if info["extension_loaded"] else "reference"
    for op in ops.SCHEMAS:
        assert info["kernels"][op]["cpu"] == want, (op, info)
