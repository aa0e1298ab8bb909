"""Autograd for the genet_ops ops, to every order: backward, double backward, forward
mode (jvp) and the torch.func transforms (grad, vjp, jacrev, jvp, jacfwd, hessian, vmap).

Each op (the forward ops and their backward ops, main and Triton twins alike) gets
  * an Autograd kernel that runs an autograd.Function (setup_context, backward, jvp) when
    a gradient or a tangent is wanted, and otherwise goes straight to the kernel below
    autograd (the first-order path is one fused kernel per direction). Under torch.func it
    runs at the transform's level, as a C++ op's autograd kernel does: a single-level
    Function, so torch.func's custom_function_call (which cannot run inside a kernel) is
    not involved. torch.library.register_autograd gives no jvp and fails under torch.func;
  * a vmap rule: the vmapped dimension folds into N, since every (n, c) plane is independent.
The derivatives of the backward ops are made of the fused backward op and elementwise
torch math, so they are differentiable again: every order is exact.

Notation: s = sigmoid(m), m the tile mean of x (gather_excite) or g (excite); S = E(s);
E(.) gives each pixel its tile's value, T(.) sums each tile, M(.) = T(.) / |t|;
s1 = s (1 - s), s2 = s1 (1 - 2 s); a dot is a tangent; r the residual; GEB / EB the
backward ops.

  gather_excite           y  = x S + r
    vjp   dx = GEB(dy, x);  dr = dy
    jvp   y. = x. S + x E(s1 M(x.)) + r.
  gather_excite_backward  dx = GEB(dy, x) = dy S + E(s1 M(dy x))
    jvp   dx. = GEB(dy., x) + dy E(s1 M(x.)) + E(s2 M(x.) M(dy x) + s1 M(dy x.))
    vjp   (w the cotangent of dx)
          d dy = w S + x E(s1 M(w))
          d x  = dy E(s1 M(w)) + E(s1 M(w dy) + s2 M(w) M(dy x))
  excite                  y  = x S + r
    vjp   dx, dg = EB(dy, x, g);  dr = dy
    jvp   y. = x. S + x E(s1 g.) + r.
  excite_backward         dx = dy S;  dg = s1 T(dy x)
    jvp   dx. = dy. S + dy E(s1 g.);  dg. = s1 T(dy. x + dy x.) + s2 g. T(dy x)
    vjp   (u, v the cotangents of dx, dg)
          d dy = u S + x E(s1 v);  d x = dy E(s1 v);  d g = s1 T(u dy) + s2 v T(dy x)

The formulas run in the accumulation dtype (float32 for float16 / bfloat16) and round
their results to the input's dtype once.
"""
from __future__ import annotations

import warnings

import torch
import torch.autograd.forward_ad as fwAD
from torch._functorch.utils import enable_single_level_autograd_function
from torch.autograd.function import _SingleLevelFunction

from . import checks, reference


# ----------------------------------------------------------------------------- tiles
class _Tiles:
    """T, M and E for x's tiling, in the accumulation dtype."""

    def __init__(self, x: torch.Tensor, extent: int):
        self.geom = checks.tile_geom(x.shape, extent)
        self.acc = reference._acc_dtype(x.dtype)
        self.count = reference.tile_count(self.geom, x.device, self.acc)

    def sum(self, v):
        return reference.tile_sum(v, self.geom)

    def mean(self, v):
        return reference.tile_sum(v, self.geom) / self.count

    def expand(self, s):
        return reference.expand_tiles(s, self.geom)

    def f(self, t):
        """t in the accumulation dtype (None stays None)."""
        return None if t is None else t.to(self.acc)


def _sigmoids(m):
    s = torch.sigmoid(m)
    s1 = s * (1 - s)
    return s, s1, s1 * (1 - 2 * s)


def _add(*terms):
    """Sum of the terms that are not None (None if all are)."""
    terms = [t for t in terms if t is not None]
    if not terms:
        return None
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


def _like(v, ref):
    """v rounded to ref's dtype (None stays None)."""
    return None if v is None else v.to(ref.dtype)


# ----------------------------------------------------------------- derivative formulas
def _gather_excite_jvp(x, extent, dx, dres):
    """Tangent of gather_excite(x, extent, r) for tangents dx, dres (either may be None)."""
    k = _Tiles(x, extent)
    xf = k.f(x)
    s, s1, _ = _sigmoids(k.mean(xf))
    dy = None
    if dx is not None:
        dxf = k.f(dx)
        dy = dxf * k.expand(s) + xf * k.expand(s1 * k.mean(dxf))
    return _like(_add(dy, k.f(dres)), x)


def _gather_excite_backward_jvp(geb, dy, x, extent, ddy, dx):
    k = _Tiles(x, extent)
    out = [geb(ddy, x, extent) if ddy is not None else None]
    if dx is not None:
        xf, dyf, dxf = k.f(x), k.f(dy), k.f(dx)
        s, s1, s2 = _sigmoids(k.mean(xf))
        mdx = k.mean(dxf)
        out.append(_like(dyf * k.expand(s1 * mdx) + k.expand(s2 * mdx * k.mean(dyf * xf) + s1 * k.mean(dyf * dxf)), x))
    return _add(*out)


def _gather_excite_backward_vjp(dy, x, extent, w, need_dy, need_x):
    k = _Tiles(x, extent)
    xf, dyf, wf = k.f(x), k.f(dy), k.f(w)
    s, s1, s2 = _sigmoids(k.mean(xf))
    mw = k.expand(s1 * k.mean(wf))
    d_dy = _like(wf * k.expand(s) + xf * mw, x) if need_dy else None
    d_x = None
    if need_x:
        d_x = _like(dyf * mw + k.expand(s1 * k.mean(wf * dyf) + s2 * k.mean(wf) * k.mean(dyf * xf)), x)
    return d_dy, d_x


def _excite_jvp(x, g, extent, dx, dg, dres):
    k = _Tiles(x, extent)
    xf = k.f(x)
    s, s1, _ = _sigmoids(k.f(g))
    dy_x = k.f(dx) * k.expand(s) if dx is not None else None
    dy_g = xf * k.expand(s1 * k.f(dg)) if dg is not None else None
    return _like(_add(dy_x, dy_g, k.f(dres)), x)


def _excite_backward_jvp(dy, x, g, extent, ddy, dx, dg):
    k = _Tiles(x, extent)
    xf, dyf = k.f(x), k.f(dy)
    s, s1, s2 = _sigmoids(k.f(g))
    ddyf, dxf, dgf = k.f(ddy), k.f(dx), k.f(dg)
    t_dx = _add(ddyf * k.expand(s) if ddyf is not None else None,
                dyf * k.expand(s1 * dgf) if dgf is not None else None)
    prod = _add(ddyf * xf if ddyf is not None else None, dyf * dxf if dxf is not None else None)
    t_dg = _add(s1 * k.sum(prod) if prod is not None else None,
                s2 * dgf * k.sum(dyf * xf) if dgf is not None else None)
    return _like(t_dx, x), _like(t_dg, g)


def _excite_backward_vjp(dy, x, g, extent, u, v, need):
    k = _Tiles(x, extent)
    xf, dyf, uf, vf = k.f(x), k.f(dy), k.f(u), k.f(v)
    s, s1, s2 = _sigmoids(k.f(g))
    ev = k.expand(s1 * vf)
    d_dy = _like(uf * k.expand(s) + xf * ev, x) if need[0] else None
    d_x = _like(dyf * ev, x) if need[1] else None
    d_g = _like(s1 * k.sum(uf * dyf) + s2 * vf * k.sum(dyf * xf), g) if need[2] else None
    return d_dy, d_x, d_g


# ------------------------------------------------------------ autograd.Functions
def _needs(ctx, i: int) -> bool:
    # The dispatcher drops trailing arguments left at their default (residual=None).
    return i < len(ctx.needs_input_grad) and ctx.needs_input_grad[i]


def _below_autograd(op):
    """forward(): the op's kernel, with autograd handled by the Function around it."""

    def forward(*args):
        with torch._C._AutoDispatchBelowAutograd():
            if not torch._C._are_functorch_transforms_active():
                return op(*args)
            # Under torch.func the Function belongs to one transform level; the levels
            # below it (reached through the dispatcher) need gradients and tangents on,
            # which apply() turned off (as torch.func's own custom_function_call does).
            with torch.enable_grad(), fwAD._set_fwd_grad_enabled(True):
                return op(*args)

    return staticmethod(forward)


def _arg(inputs, i: int, default):
    # The dispatcher drops trailing arguments left at their default (residual=None, relu=False).
    return inputs[i] if i < len(inputs) else default


def _relu_mask(grad, out):
    """grad where ReLU let the value through (out > 0; NaN passes, as torch.relu's backward)."""
    return None if grad is None else torch.where(out <= 0, 0, grad)


def _gather_excite_function(op, backward_op):
    # With relu the output is kept too, for the mask (as an eager ReLU keeps it).
    def setup_context(ctx, inputs, output):
        x, extent = inputs[:2]
        ctx.extent, ctx.n_inputs, ctx.relu = extent, len(inputs), _arg(inputs, 3, False)
        saved = (x, output) if ctx.relu else (x,)
        ctx.save_for_backward(*saved)
        ctx.save_for_forward(*saved)

    def backward(ctx, grad):
        x, *out = ctx.saved_tensors
        if ctx.relu:
            grad = _relu_mask(grad, out[0])
        dx = backward_op(grad, x, ctx.extent) if _needs(ctx, 0) else None
        return (dx, None, grad if _needs(ctx, 2) else None, None)[: ctx.n_inputs]

    def jvp(ctx, saved, dx, _extent, dres=None, _relu=None):
        x, *out = saved
        t = _gather_excite_jvp(x, ctx.extent, dx, dres)
        return _relu_mask(t, out[0]) if ctx.relu else t

    return _function(op, setup_context, backward, jvp)


def _gather_excite_backward_function(op):
    def setup_context(ctx, inputs, output):
        dy, x, extent = inputs
        ctx.extent = extent
        ctx.save_for_backward(dy, x)
        ctx.save_for_forward(dy, x)

    def backward(ctx, w):
        dy, x = ctx.saved_tensors
        d_dy, d_x = _gather_excite_backward_vjp(dy, x, ctx.extent, w, _needs(ctx, 0), _needs(ctx, 1))
        return d_dy, d_x, None

    def jvp(ctx, saved, ddy, dx, _extent):
        dy, x = saved
        return _gather_excite_backward_jvp(op, dy, x, ctx.extent, ddy, dx)

    return _function(op, setup_context, backward, jvp)


def _excite_function(op, backward_op):
    def setup_context(ctx, inputs, output):
        x, g, extent = inputs[:3]
        ctx.extent, ctx.n_inputs, ctx.relu = extent, len(inputs), _arg(inputs, 4, False)
        saved = (x, g, output) if ctx.relu else (x, g)
        ctx.save_for_backward(*saved)
        ctx.save_for_forward(*saved)

    def backward(ctx, grad):
        x, g, *out = ctx.saved_tensors
        if ctx.relu:
            grad = _relu_mask(grad, out[0])
        dx = dg = None
        if _needs(ctx, 0) or _needs(ctx, 1):
            dx, dg = backward_op(grad, x, g, ctx.extent)
        return (dx, dg, None, grad if _needs(ctx, 3) else None, None)[: ctx.n_inputs]

    def jvp(ctx, saved, dx, dg, _extent, dres=None, _relu=None):
        x, g, *out = saved
        t = _excite_jvp(x, g, ctx.extent, dx, dg, dres)
        return _relu_mask(t, out[0]) if ctx.relu else t

    return _function(op, setup_context, backward, jvp)


def _excite_backward_function(op):
    def setup_context(ctx, inputs, output):
        dy, x, g, extent = inputs
        ctx.extent = extent
        ctx.save_for_backward(dy, x, g)
        ctx.save_for_forward(dy, x, g)

    def backward(ctx, u, v):
        dy, x, g = ctx.saved_tensors
        need = (_needs(ctx, 0), _needs(ctx, 1), _needs(ctx, 2))
        return (*_excite_backward_vjp(dy, x, g, ctx.extent, u, v, need), None)

    def jvp(ctx, saved, ddy, dx, dg, _extent):
        dy, x, g = saved
        return _excite_backward_jvp(dy, x, g, ctx.extent, ddy, dx, dg)

    return _function(op, setup_context, backward, jvp)


# ------------------------------------------------- output-keeping (save="output")
# gather_excite_lean / excite_lean keep (out, g, residual) instead of x: with
# z = out - r = x S where the gradient flows and dp = dy (masked where out <= 0 by relu),
# the backward is EL(dy, out, r, g) = excite_lean_backward:
#     dg = (1 - s) T(dp z);  dx = dp S (+ E(dg / |t|) for gather_excite)
# gather_excite_lean's second output g (the tile means) is differentiable, dx += E(dg / |t|),
# so that derivatives of EL through g (higher orders) reach x.
#   EL  vjp  (u, v the cotangents of dx, dg; a = v (+ T(u) / |t|); red = T(dp z))
#            d dp = u S + E(a (1 - s)) z;  d out = E(a (1 - s)) dp = -d r;  d g = s1 (T(u dp) - a red)
#       jvp  dp. = mask(dy.);  z. = out. - r.;  red. = T(dp. z + dp z.)
#            dg. = (1 - s) red. - s1 g. red;  dx. = dp. S + dp E(s1 g.) (+ E(dg. / |t|))
_INPLACE_HINT = (
    "genet_ops: {name} kept its output and residual for backward instead of its input "
    "(save='output'), and one of them was changed in place after the call. Keep the input "
    "instead: genet_ops.{name}(..., save='input'), GatherExcite(..., save='input') or "
    "fuse_excite(model, save='input')."
)


def _saved_outputs(ctx, name: str):
    try:
        return ctx.saved_tensors
    except RuntimeError as exc:
        if "modified by an inplace operation" in str(exc):
            raise RuntimeError(f"{_INPLACE_HINT.format(name=name)} (autograd: {exc})") from exc
        raise


def _tangents_possible() -> bool:
    # x is kept for jvp only when a tangent can come: a forward-AD level or torch.func.
    return fwAD._current_level >= 0 or torch._C._are_functorch_transforms_active()


def _lean_backward_vjp(dy, out, r, g, extent, relu, gather, u, v, need):
    k = _Tiles(out, extent)
    s, s1, _ = _sigmoids(g)
    dp = k.f(_relu_mask(dy, out) if relu else dy)
    z = k.f(out) if r is None else k.f(out) - k.f(r)
    a = None if v is None else v
    if gather and u is not None:
        a = _add(a, k.sum(k.f(u)) / k.count)
    ea = None if a is None else k.expand(a * (1 - s))
    d_dp = _add(None if u is None else k.f(u) * k.expand(s), None if ea is None else ea * z)
    d_dy = d_out = d_r = d_g = None
    if need[0] and d_dp is not None:
        d_dy = _like(_relu_mask(d_dp, out) if relu else d_dp, out)
    d_z = None if ea is None else ea * dp
    if need[1] and d_z is not None:
        d_out = _like(d_z, out)
    if need[2] and d_z is not None:
        d_r = _like(-d_z, out)
    if need[3]:
        terms = [None if u is None else k.sum(k.f(u) * dp), None if a is None else -a * k.sum(dp * z)]
        d_g = None if _add(*terms) is None else s1 * _add(*terms)
    return d_dy, d_out, d_r, d_g


def _lean_backward_jvp(dy, out, r, g, extent, relu, gather, ddy, dout, dr, dgt):
    k = _Tiles(out, extent)
    s, s1, _ = _sigmoids(g)
    dp = k.f(_relu_mask(dy, out) if relu else dy)
    z = k.f(out) if r is None else k.f(out) - k.f(r)
    dp_t = None if ddy is None else k.f(_relu_mask(ddy, out) if relu else ddy)
    z_t = _add(k.f(dout), None if dr is None else -k.f(dr))
    red_t = _add(None if dp_t is None else k.sum(dp_t * z), None if z_t is None else k.sum(dp * z_t))
    dg_t = _add(None if red_t is None else (1 - s) * red_t, None if dgt is None else -s1 * dgt * k.sum(dp * z))
    dx_t = _add(None if dp_t is None else dp_t * k.expand(s), None if dgt is None else dp * k.expand(s1 * dgt),
                k.expand(dg_t / k.count) if gather and dg_t is not None else None)
    return _like(dx_t, out), _like(dg_t, g)


def _gather_excite_lean_function(op, lean_backward_op):
    def setup_context(ctx, inputs, output):
        x, extent = inputs[:2]
        residual, ctx.relu = _arg(inputs, 2, None), _arg(inputs, 3, False)
        ctx.extent, ctx.n_inputs = extent, len(inputs)
        ctx.set_materialize_grads(False)
        out, g = output
        ctx.save_for_backward(out, g, *([] if residual is None else [residual]))
        if _tangents_possible():
            ctx.save_for_forward(x, out, g)

    def backward(ctx, d_out, d_g):
        out, g, *res = _saved_outputs(ctx, "gather_excite")
        r = res[0] if res else None
        dx = dr = None
        if _needs(ctx, 0):
            if d_out is not None:
                dx = lean_backward_op(d_out, out, r, g, ctx.extent, ctx.relu, True)[0]
            if d_g is not None:  # only when a higher derivative differentiates through g
                k = _Tiles(out, ctx.extent)
                dx = _like(_add(k.f(dx), k.expand(k.f(d_g) / k.count)), out)
        if _needs(ctx, 2) and d_out is not None:
            dr = _relu_mask(d_out, out) if ctx.relu else d_out
        return (dx, None, dr, None)[: ctx.n_inputs]

    def jvp(ctx, saved, dx, _extent, dres=None, _relu=None):
        x, out, g = saved
        t = _gather_excite_jvp(x, ctx.extent, dx, dres)
        k = _Tiles(x, ctx.extent)
        # A tangent for each output (torch asserts on a None beside a tensor).
        return (_relu_mask(t, out) if ctx.relu else t), (torch.zeros_like(g) if dx is None else k.mean(k.f(dx)))

    return _function(op, setup_context, backward, jvp)


def _excite_lean_function(op, lean_backward_op):
    def setup_context(ctx, inputs, output):
        x, g, extent = inputs[:3]
        residual, ctx.relu = _arg(inputs, 3, None), _arg(inputs, 4, False)
        ctx.extent, ctx.n_inputs = extent, len(inputs)
        ctx.save_for_backward(output, g, *([] if residual is None else [residual]))
        if _tangents_possible():
            ctx.save_for_forward(x, g, output)

    def backward(ctx, grad):
        out, g, *res = _saved_outputs(ctx, "excite")
        r = res[0] if res else None
        dx = dg = dr = None
        if _needs(ctx, 0) or _needs(ctx, 1):
            dx, dg = lean_backward_op(grad, out, r, g.to(checks.acc_dtype(g.dtype)), ctx.extent, ctx.relu, False)
            dg = dg.to(g.dtype)
        if _needs(ctx, 3):
            dr = _relu_mask(grad, out) if ctx.relu else grad
        return (dx, dg, None, dr, None)[: ctx.n_inputs]

    def jvp(ctx, saved, dx, dg, _extent, dres=None, _relu=None):
        x, g, out = saved
        t = _excite_jvp(x, g, ctx.extent, dx, dg, dres)
        return _relu_mask(t, out) if ctx.relu else t

    return _function(op, setup_context, backward, jvp)


def _excite_lean_backward_function(op):
    def setup_context(ctx, inputs, output):
        dy, out, r, g, extent, relu, gather = inputs
        ctx.args = (extent, relu, gather)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(dy, out, r, g)
        ctx.save_for_forward(dy, out, r, g)

    def backward(ctx, u, v):
        dy, out, r, g = ctx.saved_tensors
        need = (_needs(ctx, 0), _needs(ctx, 1), _needs(ctx, 2), _needs(ctx, 3))
        return (*_lean_backward_vjp(dy, out, r, g, *ctx.args, u, v, need), None, None, None)

    def jvp(ctx, saved, ddy, dout, dr, dg, *_flags):
        dy, out, r, g = saved
        return _lean_backward_jvp(dy, out, r, g, *ctx.args, ddy, dout, dr, dg)

    return _function(op, setup_context, backward, jvp)


def _function(op, setup_context, backward, jvp):
    def jvp_any_level(ctx, *tangents):
        if not torch._C._are_functorch_transforms_active():
            return jvp(ctx, ctx.saved_tensors, *tangents)
        # apply() runs jvp with forward grad off; under torch.func the transform levels
        # below this one need it on (jvp of jvp, jacfwd of jacfwd), on the primals of
        # this level (as for a native op's forward formula).
        with fwAD._set_fwd_grad_enabled(True):
            saved = [fwAD.unpack_dual(t).primal for t in ctx.saved_tensors]
            return jvp(ctx, saved, *tangents)

    return type(
        f"{op._opname}_autograd",
        (_SingleLevelFunction,),
        {
            "forward": _below_autograd(op),
            "setup_context": staticmethod(setup_context),
            "backward": staticmethod(backward),
            "jvp": staticmethod(jvp_any_level),
        },
    )


# ------------------------------------------------------------------ registration
def _vmap_rule(op):
    """Fold the vmapped dimension into N: run op once on (B * N, C, H, W) tensors."""

    def rule(info, in_dims, *args):
        B, N, flat = info.batch_size, None, []
        for a, d in zip(args, in_dims):
            if isinstance(a, torch.Tensor):
                a = a.movedim(d, 0) if d is not None else a.expand(B, *a.shape)
                N = a.shape[1]
                a = a.reshape(B * N, *a.shape[2:])
            flat.append(a)
        out = op(*flat, *args[len(flat):])
        if isinstance(out, tuple):
            return tuple(o.reshape(B, N, *o.shape[1:]) for o in out), (0,) * len(out)
        return out.reshape(B, N, *out.shape[1:]), 0

    return rule


def _apply(function, *args):
    with enable_single_level_autograd_function():
        return function.apply(*args)


def _autograd_kernel(op, function):
    after_autograd = torch._C._after_autograd_keyset

    def kernel(keyset, *args):
        # A gradient to record, or a tangent to carry (a forward-AD level is open):
        # the Function; else the kernel, exactly as without autograd.
        if (torch.is_grad_enabled() and torch._C._any_requires_grad(*args)) or fwAD._current_level >= 0:
            # Under torch.func this kernel already runs at the transform's level (the
            # tensors are its wrappers): a single-level Function is what a C++ op does.
            return _apply(function, *args)
        with torch._C._AutoDispatchBelowAutograd():
            return op.redispatch(keyset & after_autograd, *args)

    return kernel


_lib = torch.library.Library("genet_ops", "FRAGMENT")


def _register(op, function) -> None:
    # allow_override: a triton_op already holds an Autograd kernel of torch's own, which
    # torch 2.11 (the GPU image's) refuses to replace unless asked (2.14 allows by default).
    with warnings.catch_warnings():  # torch's "Overriding a previously registered kernel" note
        warnings.simplefilter("ignore", UserWarning)
        _lib.impl(op._opname, _autograd_kernel(op, function), "Autograd", with_keyset=True, allow_override=True)
    torch.library.register_vmap(op, _vmap_rule(op), lib=_lib)


def _overload(op) -> torch._ops.OpOverload:
    """The OpOverload of an op given by name, OpOverloadPacket or custom_op / triton_op."""
    if isinstance(op, str):
        ns, name = op.split("::")
        return getattr(getattr(torch.ops, ns), name).default
    if isinstance(op, torch._ops.OpOverloadPacket):
        return op.default
    return getattr(op, "_opoverload", op)


def register_gather_excite_autograd(op, backward_op) -> None:
    """Autograd (every order, jvp, torch.func) for a gather_excite implementation and its
    backward op. Shared by the main ops and the Triton twins."""
    op, backward_op = _overload(op), _overload(backward_op)
    _register(op, _gather_excite_function(op, backward_op))
    _register(backward_op, _gather_excite_backward_function(backward_op))


def register_lean_autograd(gather_excite_op, excite_op, backward_op) -> None:
    """Autograd (every order, jvp, torch.func) for the output-keeping ops and their shared
    backward op. Shared by the main ops and the Triton twins."""
    gather_excite_op, excite_op, backward_op = _overload(gather_excite_op), _overload(excite_op), _overload(backward_op)
    _register(gather_excite_op, _gather_excite_lean_function(gather_excite_op, backward_op))
    _register(excite_op, _excite_lean_function(excite_op, backward_op))
    _register(backward_op, _excite_lean_backward_function(backward_op))


def register_excite_autograd(op, backward_op) -> None:
    """Autograd (every order, jvp, torch.func) for an excite implementation and its backward op."""
    op, backward_op = _overload(op), _overload(backward_op)
    _register(op, _excite_function(op, backward_op))
    _register(backward_op, _excite_backward_function(backward_op))
