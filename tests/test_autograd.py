"""Derivatives of every order, forward mode, torch.func, torch.export, huge extents,
argument types and mixed dtypes, against the float64 reference / eager PyTorch.

"main" tests run torch.ops.genet_ops.* (the C++ CPU kernels here, or the reference where
the extension is not loaded: test_fallback_reruns_main_tests reruns them that way);
"triton" tests run the Triton twins under the interpreter, on fewer, smaller cases.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vjp, vmap

import genet_ops
from genet_ops import checks, reference
from oracle import GenetOpLog, eager_excite, eager_gather_excite

HERE = os.path.dirname(os.path.abspath(__file__))
OPS = torch.ops.genet_ops
SHAPE = (2, 2, 5, 4)  # partial tiles at extents 2 and 3
EXTENTS = [0, 1, 2, 3, 6]  # 6 >= max(H, W): global
HUGE = [10**6, 2**63 - 5, 2**63 - 1]


def _ops(impl):
    if impl == "main":
        return OPS.gather_excite, OPS.gather_excite_backward, OPS.excite, OPS.excite_backward
    pytest.importorskip("triton")
    return OPS.gather_excite_triton, OPS.gather_excite_backward_triton, OPS.excite_triton, OPS.excite_backward_triton


def _inputs(extent, channels_last, shape=SHAPE, seed=0):
    """x, residual, grad_out, g in float64 (x in the chosen layout), all requiring grad."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, dtype=torch.float64, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    res = torch.randn(shape, dtype=torch.float64, generator=gen)
    dy = torch.randn(shape, dtype=torch.float64, generator=gen)
    g = torch.randn(checks.g_shape(shape, extent), dtype=torch.float64, generator=gen)
    return [t.requires_grad_() for t in (x, res, dy, g)]


def _cases(ops, extent):
    """(name, fn, inputs-picker) for every op and every differentiable input."""
    ge, geb, ex, exb = ops
    return [
        ("gather_excite", lambda x, r: ge(x, extent, r), lambda x, r, dy, g: (x, r)),
        ("gather_excite_backward", lambda dy, x: geb(dy, x, extent), lambda x, r, dy, g: (dy, x)),
        ("excite", lambda x, g, r: ex(x, g, extent, r), lambda x, r, dy, g: (x, g, r)),
        ("excite_backward", lambda dy, x, g: exb(dy, x, g, extent), lambda x, r, dy, g: (dy, x, g)),
    ]


# ------------------------------------------------------------------ gradgradcheck / jvp
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
@pytest.mark.parametrize("extent", EXTENTS)
def test_main_gradcheck_every_order(extent, channels_last):
    """Backward, double backward (rev-over-rev and fwd-over-rev), jvp against finite
    differences, for every op and input."""
    inputs = _inputs(extent, channels_last)
    for name, fn, pick in _cases(_ops("main"), extent):
        args = pick(*inputs)
        # No batched checks: gradcheck's legacy vmap lacks rules for slicing. torch.func's
        # vmap over vjp / jvp (jacrev, jacfwd, hessian) is tested below.
        # fast_mode: the Jacobians compared along random directions, which keeps the
        # suite's time modest (the full matrices: test_main_gradgradcheck_full_jacobian).
        assert gradcheck(fn, args, check_forward_ad=True, check_batched_grad=False, fast_mode=True), name
        assert gradgradcheck(fn, args, check_fwd_over_rev=True, check_batched_grad=False, fast_mode=True), name


@pytest.mark.parametrize("extent", [0, 3])
def test_main_opcheck_backward_ops_with_grad(extent):
    """opcheck (fake, autograd registration, AOT dispatch) on the backward ops with inputs
    that require grad, i.e. through their new autograd kernels."""
    x, r, dy, g = _inputs(extent, False)
    torch.library.opcheck(OPS.gather_excite_backward.default, (dy, x, extent))
    torch.library.opcheck(OPS.excite_backward.default, (dy, x, g, extent))


def test_main_gradgradcheck_full_jacobian():
    inputs = _inputs(2, True, shape=(1, 2, 3, 3))
    for name, fn, pick in _cases(_ops("main"), 2):
        assert gradgradcheck(fn, pick(*inputs), check_fwd_over_rev=True), name


def test_triton_gradgradcheck():
    """One small case: the interpreter is slow. The Triton ops share the main ops' autograd
    code; the torch.func and second-order tests below run them too."""
    inputs = _inputs(2, True, shape=(1, 2, 3, 3))
    for name, fn, pick in _cases(_ops("triton"), 2):
        assert gradgradcheck(fn, pick(*inputs), check_fwd_over_rev=True, fast_mode=True), name


@pytest.mark.parametrize("impl", ["main", "triton"])
def test_main_second_order_value_matches_eager(impl):
    """The issue's check: grad of |grad of |y|^2|^2, against eager PyTorch."""
    ge, _, ex, _ = _ops(impl)
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)

    def second(f, *args):
        g1 = torch.autograd.grad(f(*args).pow(2).sum(), args, create_graph=True)
        return torch.autograd.grad(sum(t.pow(2).sum() for t in g1), args)

    for got, want in [
        (second(lambda x: ge(x, 2), x), second(lambda x: eager_gather_excite(x, 2), x)),
        (second(lambda x, g: ex(x, g, 2), x, g), second(lambda x, g: eager_excite(x, g, 2), x, g)),
    ]:
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_main_third_order():
    """Derivatives of the backward ops' derivatives are exact too."""
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    f = lambda x: OPS.gather_excite(x, 3).pow(3).sum()  # noqa: E731
    e = lambda x: eager_gather_excite(x, 3).pow(3).sum()  # noqa: E731
    v = torch.randn_like(x)
    torch.testing.assert_close(jvp(hessian(f), (x.detach(),), (v,))[1], jvp(hessian(e), (x.detach(),), (v,))[1])


# -------------------------------------------------------------------------- torch.func
@pytest.mark.parametrize("impl", ["main", "triton"])
def test_main_torch_func_transforms_match_eager(impl):
    ge, _, ex, _ = _ops(impl)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 5, 3, dtype=torch.float64, generator=gen)
    g = torch.randn(1, 2, 3, 2, dtype=torch.float64, generator=gen)
    v = torch.randn(x.shape, dtype=torch.float64, generator=gen)
    pairs = [
        (lambda x: ge(x, 2), lambda x: eager_gather_excite(x, 2)),
        (lambda x: ex(x, g, 2), lambda x: eager_excite(x, g, 2)),
        (lambda x: ex(x.detach() + 1, x[:, :, ::2, ::2] * 2, 2), lambda x: eager_excite(x.detach() + 1, x[:, :, ::2, ::2] * 2, 2)),
    ]
    close = torch.testing.assert_close
    for fused, eager in pairs:
        fs, es = (lambda f: lambda x: f(x).pow(2).sum())(fused), (lambda f: lambda x: f(x).pow(2).sum())(eager)
        close(grad(fs)(x), grad(es)(x))
        close(jacrev(fused)(x), jacrev(eager)(x))
        close(jacfwd(fused)(x), jacfwd(eager)(x))
        close(jvp(fused, (x,), (v,)), jvp(eager, (x,), (v,)))
        close(vjp(fused, x)[1](v), vjp(eager, x)[1](v))
        close(hessian(fs)(x), hessian(es)(x))
        close(jacrev(jacrev(fs))(x), hessian(es)(x))
        xb = torch.stack([x, 2 * x, -x])
        close(vmap(fused)(xb), vmap(eager)(xb))
        close(vmap(grad(fs))(xb), vmap(grad(es))(xb))


def test_main_vmap_over_every_argument_and_layout():
    """The vmap rule folds the batch into N: any in_dims, batched or not, channels_last."""
    x = torch.randn(3, 2, 5, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    xb = torch.randn(4, 3, 2, 5, 4, dtype=torch.float64)
    gb = torch.randn(3, 2, 3, 2, 4, dtype=torch.float64)  # batch last
    r = torch.randn_like(x)
    got = vmap(lambda x, g: OPS.excite(x, g, 2, r), in_dims=(0, 4))(xb, gb)
    want = torch.stack([eager_excite(xb[i], gb[..., i], 2, r) for i in range(4)])
    torch.testing.assert_close(got, want)
    dy, dx = torch.randn_like(xb), vmap(OPS.gather_excite_backward, in_dims=(0, None, None))
    torch.testing.assert_close(dx(dy, x, 2), torch.stack([reference.gather_excite_backward(d, x, 2) for d in dy]))
    got_dx, got_dg = vmap(OPS.excite_backward, in_dims=(0, None, 4, None))(dy, x, gb, 2)
    for i in range(4):
        rdx, rdg = reference.excite_backward(dy[i], x, gb[..., i].contiguous(), 2)
        torch.testing.assert_close(got_dx[i], rdx)
        torch.testing.assert_close(got_dg[i], rdg)


# ------------------------------------------------------------------------ torch.export
@pytest.mark.parametrize("extent", [0, 2, 4])
@pytest.mark.parametrize("variant", ["theta-", "theta", "theta+"])
def test_main_export_symbolic_shapes(variant, extent):
    """N, H and W symbolic (H, W fixed where the global learned gather's kernel fixes them)."""
    from torch.export import Dim, export

    kw = {"theta-": {}, "theta": {"extra_params": True}, "theta+": {"extra_params": True, "use_mlp": True}}[variant]
    m = genet_ops.GatherExcite(8, extent=extent, feat_size=(11, 9), **kw).eval()
    fixed_plane = extent == 0 and variant != "theta-"
    # 8 and up: the stride-2 convs' outputs never have size 1 (a guard of conv2d itself)
    dims = {0: Dim("N", min=1, max=64)}
    if not fixed_plane:
        dims.update({2: Dim("H", min=8, max=256), 3: Dim("W", min=8, max=256)})
    ep = export(m, (torch.randn(3, 8, 11, 9),), dynamic_shapes={"x": dims})
    assert any("genet_ops" in str(n.target) for n in ep.graph.nodes), "the fused op is not in the graph"
    x2 = torch.randn(5, 8, 11, 9) if fixed_plane else torch.randn(5, 8, 13, 10)
    torch.testing.assert_close(ep.module()(x2), m(x2))


# --------------------------------------------------------------------------- extents
@pytest.mark.parametrize("extent", HUGE)
def test_main_huge_extent_is_global(extent):
    """No overflow, g is (N, C, 1, 1), results equal extent 0 (op and reference)."""
    x, r, dy, _ = (t.detach() for t in _inputs(0, False))
    g = torch.randn(*x.shape[:2], 1, 1, dtype=torch.float64)
    assert checks.g_shape(x.shape, extent) == g.shape
    for impl in (OPS, reference):
        torch.testing.assert_close(impl.gather_excite(x, extent, r), reference.gather_excite(x, 0, r))
        torch.testing.assert_close(impl.gather_excite_backward(dy, x, extent), reference.gather_excite_backward(dy, x, 0))
        torch.testing.assert_close(impl.excite(x, g, extent, r), reference.excite(x, g, 0, r))
        for a, b in zip(impl.excite_backward(dy, x, g, extent), reference.excite_backward(dy, x, g, 0)):
            torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="g must have shape"):
        OPS.excite(x, torch.randn(2, 3, 0, 0, dtype=torch.float64), extent)


def test_main_tiles_never_exceed_the_plane():
    """The reference pads a plane to whole tiles only: a tile is clamped to the plane, so
    memory stays bounded by the input (extent 999 on a 1 x 1000 row is not 999 x 1000)."""
    for shape, extent in [((2, 3, 1, 1000), 999), ((2, 3, 5, 6), 10**6), ((1, 1, 7, 3), 4)]:
        t = checks.tile_geom(shape, extent)
        assert t.eh <= max(shape[2], 1) and t.ew <= max(shape[3], 1)
        assert t.th * t.eh < 2 * max(shape[2], 1) and t.tw * t.ew < 2 * max(shape[3], 1)
    x = torch.randn(1, 2, 1, 1000, dtype=torch.float64)
    torch.testing.assert_close(reference.gather_excite(x, 999), eager_gather_excite(x, 999))


@pytest.mark.parametrize("extent", [0, 4, 2**63 - 1])
def test_triton_huge_extent_is_global(extent):
    _ops("triton")
    x = torch.randn(1, 2, 5, 3)
    torch.testing.assert_close(OPS.gather_excite_triton(x, extent), reference.gather_excite(x, 0 if extent > 5 else extent))


# ---------------------------------------------------------------------- argument types
def test_main_extent_types():
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64)
    g = torch.randn(1, 2, 3, 2, dtype=torch.float64)
    for f in (genet_ops.gather_excite, reference.gather_excite):
        with pytest.raises(ValueError, match="extent"):
            f(x, True)
        with pytest.raises(TypeError, match="extent"):
            f(x, 2.0)
        for e in (np.int64(2), np.int32(2), np.uint8(2)):
            torch.testing.assert_close(f(x, e), reference.gather_excite(x, 2))
    for f in (genet_ops.excite, reference.excite):
        with pytest.raises(ValueError, match="extent"):
            f(x, g, False)
        torch.testing.assert_close(f(x, g, np.int64(2)), reference.excite(x, g, 2))
    with pytest.raises(ValueError, match="extent must be at most"):
        genet_ops.gather_excite(x, 2**63)


# ----------------------------------------------------------------------- mixed dtypes
def _fake(fn):
    from torch._subclasses.fake_tensor import FakeTensorMode

    def run(*args):
        with FakeTensorMode() as mode:
            return fn(*(mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args))

    return run


@pytest.mark.parametrize("impl", ["op", "reference", "fake", "triton"])
def test_main_mixed_dtypes_raise(impl):
    """residual, g and grad_out must have x's dtype, on every backend (a clear ValueError)."""
    if impl == "triton":
        ge, geb, ex, exb = _ops("triton")
    elif impl == "reference":
        ge, geb, ex, exb = reference.gather_excite, reference.gather_excite_backward, reference.excite, reference.excite_backward
    else:
        ge, geb, ex, exb = OPS.gather_excite, OPS.gather_excite_backward, OPS.excite, OPS.excite_backward
        if impl == "fake":
            ge, geb, ex, exb = _fake(ge), _fake(geb), _fake(ex), _fake(exb)
    x = torch.randn(1, 2, 4, 4, dtype=torch.bfloat16)
    f32 = torch.randn(1, 2, 4, 4)
    g = torch.randn(1, 2, 2, 2, dtype=torch.bfloat16)
    for what, call in [
        ("residual", lambda: ge(x, 2, f32)),
        ("residual", lambda: ex(x, g, 2, f32)),
        ("g", lambda: ex(x, g.float(), 2)),
        ("grad_out", lambda: geb(f32, x, 2)),
        ("grad_out", lambda: exb(f32, x, g, 2)),
        ("g", lambda: exb(x, x, g.float(), 2)),
    ]:
        with pytest.raises(ValueError, match=f"{what} must have x's dtype"):
            call()


@pytest.mark.parametrize("variant", ["theta-", "theta"])
def test_main_module_promotes_like_eager(variant):
    """GatherExcite(fused) with a residual of another dtype gives eager's promoted dtype
    and values, still through the fused op."""
    kw = {} if variant == "theta-" else {"extra_params": True}
    m = genet_ops.GatherExcite(4, extent=2, **kw)
    x = torch.randn(2, 4, 6, 6).bfloat16()
    res = torch.randn(2, 4, 6, 6)
    m.bfloat16()  # theta's gather runs on the bf16 x
    with GenetOpLog() as log:
        y = m(x, res)
    want_ops = {"excite", "excite_lean"} if kw else {"gather_excite", "gather_excite_lean"}
    assert want_ops & {name.split("::")[-1] for name in log.ops}, f"the fused op did not run: {log.ops}"
    m.fused = False
    want = m(x, res)
    assert y.dtype == want.dtype == torch.float32
    torch.testing.assert_close(y, want, rtol=2e-2, atol=2e-2)


def test_main_model_under_cpu_autocast():
    """A model with every GatherExcite variant trains under bf16 autocast, fused as eager."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        genet_ops.GatherExcite(8, extent=2),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        genet_ops.GatherExcite(8, extent=2, extra_params=True),
        genet_ops.GatherExcite(8, extent=4, extra_params=True, use_mlp=True),
    )
    x = torch.randn(2, 3, 8, 8)
    outs = []
    for fused in (True, False):
        genet_ops.GatherExcite.set_fused(net, fused)
        net.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = net(x)
        y.float().pow(2).mean().backward()
        outs.append((y, net[0].weight.grad.clone()))
    (yf, gf), (ye, ge) = outs
    assert yf.dtype == ye.dtype
    torch.testing.assert_close(yf.float(), ye.float(), rtol=5e-2, atol=5e-2)
    torch.testing.assert_close(gf, ge, rtol=1e-1, atol=1e-2)


# --------------------------------------------------------------------------- fallback
@pytest.mark.skipif(not genet_ops.backend_info()["extension_loaded"], reason="already running on the fallback")
def test_fallback_reruns_main_tests():
    """The main tests again with the reference kernels behind torch.ops.genet_ops.*."""
    env = dict(os.environ, GENET_OPS_LOAD_EXTENSION="0")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", os.path.abspath(__file__),
           "-k", "main and not export and not autocast and not (every_order and cl)"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200,
                          cwd=os.path.dirname(HERE))
    tail = "\n".join(proc.stdout.splitlines()[-15:])
    assert proc.returncode == 0, f"fallback run failed:\n{tail}\n{proc.stderr[-2000:]}"
    assert " passed" in tail and "failed" not in tail, tail
