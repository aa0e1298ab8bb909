"""The output-keeping ops (save='output', docs/DESIGN.md §2): gather_excite_lean, excite_lean,
excite_lean_backward and the forward ops' ReLU epilogue, through torch.ops.genet_ops on the
CPU (whatever kernel serves it), and the autograd around them.

The lean backward is judged on its own inputs: it reads (grad_out, out, residual, g), so the
oracle is the reference run in float64 on those same values and the eager floor is the
reference in the op's dtype (docs/DESIGN.md §4). Whether a model's gradient stays within the
budget once out is rounded is the save='auto' rule's business (test_keeps_output_rule here,
the numerics tests beside the models).
"""
import pytest
import torch

import genet_ops
from genet_ops import checks, ops, reference
from oracle import DTYPES, assert_layout, assert_within_budget, eager_excite, eager_gather_excite, make

SHAPES = [(2, 3, 1, 1), (2, 3, 7, 7), (3, 2, 3, 5), (1, 4, 32, 32), (0, 3, 8, 8), (2, 5, 13, 11)]
EXTENTS = [0, 1, 2, 3, 8]
LAYOUTS = ["contiguous", "channels_last", "strided"]


def _relu(t):
    return torch.where(t < 0, 0, t)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("extent", EXTENTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_relu_and_lean_forward(shape, extent, dtype, poison_outputs):
    for layout in LAYOUTS:
        for with_res in (False, True):
            what = f"{layout} residual={with_res}"
            x = make(shape, dtype, layout, 0)
            res = make(shape, dtype, layout, 1) if with_res else None
            g = make(checks.g_shape(shape, extent), dtype, "contiguous", 3).mul_(2)
            r64 = None if res is None else res.double()

            y = torch.ops.genet_ops.gather_excite(x, extent, res, True)
            out, means = torch.ops.genet_ops.gather_excite_lean(x, extent, res, True)
            y64 = reference.gather_excite(x.double(), extent, r64, True)
            ye = _relu(eager_gather_excite(x, extent, res))
            for name, v in (("gather_excite relu", y), ("gather_excite_lean", out)):
                assert_layout(v, x, f"{name} {what}")
                assert_within_budget(v, y64, ye, f"{name} {what}")
            assert means.dtype == checks.acc_dtype(dtype), what
            assert means.stride() == checks.g_for_layout(means, checks.is_nchw(checks.kernel_input(x))).stride()
            m64 = reference.gather(x.double(), extent) if x.numel() else torch.zeros(means.shape, dtype=torch.float64)
            torch.testing.assert_close(means.double(), m64, rtol=1e-5, atol=1e-5, msg=f"means {what}")

            ex = torch.ops.genet_ops.excite(x, g, extent, res, True)
            ex_lean = torch.ops.genet_ops.excite_lean(x, g, extent, res, True)
            ex64 = reference.excite(x.double(), g.double(), extent, r64, True)
            exe = _relu(eager_excite(x, g, extent, res))
            for name, v in (("excite relu", ex), ("excite_lean", ex_lean)):
                assert_layout(v, x, f"{name} {what}")
                assert_within_budget(v, ex64, exe, f"{name} {what}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("extent", EXTENTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_lean_backward_parity(shape, extent, dtype, poison_outputs):
    acc = checks.acc_dtype(dtype)
    for layout in LAYOUTS:
        for with_res in (False, True):
            for relu in (False, True):
                for gather in (False, True):
                    what = f"{layout} residual={with_res} relu={relu} gather={gather}"
                    out = make(shape, dtype, layout, 0)
                    dy = make(shape, dtype, layout, 2)
                    res = make(shape, dtype, layout, 1) if with_res else None
                    g = make(checks.g_shape(shape, extent), acc, "contiguous", 3).mul_(2)
                    dx, dg = torch.ops.genet_ops.excite_lean_backward(dy, out, res, g, extent, relu, gather)
                    dx64, dg64 = reference.excite_lean_backward(
                        dy.double(), out.double(), None if res is None else res.double(), g.double(), extent, relu, gather)
                    dxe, dge = reference.excite_lean_backward(dy, out, res, g, extent, relu, gather)
                    assert_layout(dx, out, f"dx {what}")
                    assert dg.dtype == acc and dg.stride() == dge.stride(), f"dg {what}"
                    assert_within_budget(dx, dx64, dxe, f"dx {what}")
                    assert_within_budget(dg, dg64, dge, f"dg {what}")


# ------------------------------------------------------------------ autograd, float64
def _calls(extent, relu, save):
    """(name, f(x, g, r), which inputs f differentiates) for both public ops."""
    return [
        ("gather_excite", lambda x, g, r: genet_ops.gather_excite(x, extent, r, relu=relu, save=save), (0, 2)),
        ("excite", lambda x, g, r: genet_ops.excite(x, g, extent, r, relu=relu, save=save), (0, 1, 2)),
    ]


def _inputs(layout, extent, shape=(2, 3, 7, 5)):
    x = make(shape, torch.float64, layout, 0).requires_grad_()
    g = make(checks.g_shape(shape, extent), torch.float64, "contiguous", 3).requires_grad_()
    r = make(shape, torch.float64, layout, 1).requires_grad_()
    return x, g, r


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("extent", [0, 3])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_lean_gradients_equal_input_keeping(layout, extent, relu):
    x, g, r = _inputs(layout, extent)
    dy = make(x.shape, torch.float64, layout, 4)
    for with_res in (False, True):
        rr = r if with_res else None
        for (name, lean, idx), (_, keep, _) in zip(_calls(extent, relu, "output"), _calls(extent, relu, "input")):
            ins = [t for i, t in enumerate((x, g, r)) if i in idx and (i != 2 or with_res)]
            a = torch.autograd.grad(lean(x, g, rr), ins, dy)
            b = torch.autograd.grad(keep(x, g, rr), ins, dy)
            for u, v in zip(a, b):
                torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12, msg=f"{name} residual={with_res}")


@pytest.mark.parametrize("relu,extent,layout", [(False, 0, "contiguous"), (True, 3, "channels_last"), (True, 2, "contiguous")])
def test_lean_gradcheck_every_order_and_forward_mode(layout, extent, relu):
    x, g, r = _inputs(layout, extent, (1, 2, 5, 4))
    for name, f, idx in _calls(extent, relu, "output"):
        ins = tuple(t for i, t in enumerate((x, g, r)) if i in idx)
        fn = (lambda a, c: f(a, None, c)) if name == "gather_excite" else f
        assert torch.autograd.gradcheck(fn, ins, check_forward_ad=True, fast_mode=True), name
        assert torch.autograd.gradgradcheck(fn, ins, check_fwd_over_rev=True, fast_mode=True), name


def test_lean_torch_func_transforms():
    from torch.func import grad, hessian, jacfwd, jacrev, vmap

    x, _, r = _inputs("contiguous", 2, (1, 2, 5, 4))
    x, r = x.detach(), r.detach()
    for relu in (False, True):
        def lean(v):
            return genet_ops.gather_excite(v, 2, r, relu=relu, save="output")

        def plain(v):
            return reference.gather_excite(v, 2, r, relu)
        torch.testing.assert_close(hessian(lambda v: lean(v).sum())(x), hessian(lambda v: plain(v).sum())(x))
        torch.testing.assert_close(jacrev(lean)(x), jacfwd(lean)(x))
        xb = make((3, 1, 2, 5, 4), torch.float64, "contiguous", 5)
        torch.testing.assert_close(vmap(lean)(xb), torch.stack([plain(b) for b in xb]))
        torch.testing.assert_close(vmap(grad(lambda v: lean(v).square().sum()))(xb),
                                   vmap(grad(lambda v: plain(v).square().sum()))(xb))


@pytest.mark.parametrize("dtype,layout,extent", [(torch.float32, "contiguous", 3), (torch.float64, "channels_last", 0),
                                                  (torch.float32, "channels_last", 2)], ids=str)
def test_opcheck(extent, layout, dtype):
    shape = (2, 3, 7, 5)
    x, res, dy = (make(shape, dtype, layout, s) for s in (0, 1, 2))
    g = make(checks.g_shape(shape, extent), dtype, "contiguous", 3)
    ga = g.to(checks.acc_dtype(dtype))
    rg = lambda t: t.clone().requires_grad_()  # noqa: E731
    cases = [
        (torch.ops.genet_ops.gather_excite.default, (rg(x), extent, rg(res), True)),
        (torch.ops.genet_ops.excite.default, (rg(x), rg(g), extent, rg(res), True)),
        (torch.ops.genet_ops.gather_excite_lean.default, (rg(x), extent)),
        (torch.ops.genet_ops.gather_excite_lean.default, (rg(x), extent, rg(res), True)),
        (torch.ops.genet_ops.excite_lean.default, (rg(x), rg(g), extent, rg(res), True)),
        (torch.ops.genet_ops.excite_lean_backward.default, (dy, x, res, ga, extent, True, True)),
        (torch.ops.genet_ops.excite_lean_backward.default, (rg(dy), rg(x), None, rg(ga), extent, False, False)),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)


class _LeanBlock(torch.nn.Module):
    """A post-activation block with both ops kept lean: relu(GE(conv(x)) + x), then excite."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.gather = torch.nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels)

    def forward(self, x):
        y = genet_ops.gather_excite(self.conv(x), 0, x, relu=True, save="output")
        return genet_ops.excite(y, self.gather(y), 2, save="output")


def test_lean_torch_compile_fullgraph_and_export():
    from oracle import assert_compiled_matches_eager

    torch.manual_seed(0)
    model, x = _LeanBlock(4), torch.randn(2, 4, 8, 8, requires_grad=True)
    assert_compiled_matches_eager(model, x)
    ep = torch.export.export(model, (x.detach(),))
    torch.testing.assert_close(ep.module()(x.detach()), model(x.detach()))


# ------------------------------------------------------------------ what is kept
def _saved_storages(fn, *args):
    """The storages autograd keeps for backward while running fn(*args)."""
    kept = []

    def pack(t):
        kept.append(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*args)
    return out, set(kept)


def test_lean_keeps_output_residual_and_means_not_input():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    r = torch.randn(2, 3, 8, 8, requires_grad=True)
    g = torch.randn(2, 3, 1, 1, requires_grad=True)
    ptr = lambda t: t.untyped_storage().data_ptr()  # noqa: E731
    y, kept = _saved_storages(lambda: genet_ops.gather_excite(x, 0, r, save="output"))
    assert ptr(x) not in kept and {ptr(y), ptr(r)} <= kept and len(kept) == 3, "out, residual, means"
    y, kept = _saved_storages(lambda: genet_ops.gather_excite(x, 0, r, save="input"))
    assert kept == {ptr(x)}
    y, kept = _saved_storages(lambda: genet_ops.gather_excite(x, 0, r, relu=True, save="input"))
    assert kept == {ptr(x), ptr(y)}, "input-keeping with relu keeps x and relu's output"
    y, kept = _saved_storages(lambda: genet_ops.excite(x, g, 0, save="output"))
    assert kept == {ptr(y), ptr(g)}
    y, kept = _saved_storages(lambda: genet_ops.gather_excite(x, 0, relu=True, save="output"))
    assert ptr(x) not in kept and ptr(y) in kept and len(kept) == 2


def test_keeps_output_rule():
    x32, x16, xb = torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2, dtype=torch.float16), torch.ones(1, 1, 2, 2, dtype=torch.bfloat16)
    assert ops.keeps_output(x32, x32) and ops.keeps_output(x32.double(), x32.double())
    assert ops.keeps_output(x16, None) and ops.keeps_output(xb, None)
    assert not ops.keeps_output(x16, x16) and not ops.keeps_output(xb, xb), "half dtypes with a residual keep x"
    assert ops.keeps_output(xb, xb, "output") and not ops.keeps_output(x32, None, "input")
    with pytest.raises(ValueError, match="save must be one of auto, output, input"):
        genet_ops.gather_excite(x32, 0, save="outputs")


def test_in_place_change_of_a_kept_output_names_save_input():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    r = torch.randn(2, 3, 4, 4)
    for make_y in (lambda: genet_ops.gather_excite(x, 0, r, save="output"),
                   lambda: genet_ops.excite(x, torch.zeros(2, 3, 1, 1), 0, r, save="output")):
        y = make_y()
        y.add_(1)  # as timm's SE-ResNet does with `x += shortcut`
        with pytest.raises(RuntimeError, match="save='input'"):
            y.sum().backward()
    y = genet_ops.gather_excite(x, 0, r, save="input")
    y.add_(1)
    y.sum().backward()  # the input-keeping mode does not mind
    assert x.grad is not None


BAD_LEAN = [
    ("out rank", lambda: torch.ops.genet_ops.excite_lean_backward(torch.randn(3, 4, 4), torch.randn(3, 4, 4), None,
                                                                 torch.randn(1, 3, 1, 1), 0, False, False), "out must be a 4-D"),
    ("g dtype", lambda: torch.ops.genet_ops.excite_lean_backward(torch.randn(1, 3, 4, 4).half(), torch.randn(1, 3, 4, 4).half(),
                                                                None, torch.randn(1, 3, 1, 1).half(), 0, False, False),
     "g must be .*the accumulation dtype"),
    ("g shape", lambda: torch.ops.genet_ops.excite_lean_backward(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4), None,
                                                                torch.randn(1, 3, 2, 2), 0, False, False), r"g must have shape \[1, 3, 1, 1\]"),
    ("grad_out shape", lambda: torch.ops.genet_ops.excite_lean_backward(torch.randn(1, 3, 4, 5), torch.randn(1, 3, 4, 4), None,
                                                                       torch.randn(1, 3, 1, 1), 0, False, False), "grad_out must have out's shape"),
    ("residual dtype", lambda: torch.ops.genet_ops.excite_lean_backward(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4),
                                                                       torch.randn(1, 3, 4, 4).double(), torch.randn(1, 3, 1, 1), 0,
                                                                       False, False), "residual must have out's dtype"),
    ("lean extent", lambda: torch.ops.genet_ops.gather_excite_lean(torch.randn(1, 3, 4, 4), -2), "extent must be >= 0"),
]


@pytest.mark.parametrize("name,call,message", BAD_LEAN, ids=[c[0] for c in BAD_LEAN])
def test_bad_input_names_the_argument(name, call, message):
    with pytest.raises((ValueError, RuntimeError), match=message):
        call()
