"""genet_ops::gather_excite_triton, genet_ops::gather_excite_lean_triton and
genet_ops::gather_excite_backward_triton.

Forward: g_t = mean of x over tile t; y = x * sigmoid(g_t) (+ residual), then ReLU when
relu. gather_excite_lean_triton runs the same kernel and also stores g (MEANS), in the
accumulation dtype, for the output-keeping backward (lean.py).
Backward: dx = dy * s_t + s_t (1 - s_t) / |t| * sum_t(dy * x).
Each program owns BLOCK_A tile-rows (see _tiles). When a whole tile-row fits one block
(SINGLE) x (and dy) are read once and kept in registers; otherwise a first sweep over row
chunks reduces and a second one (mostly from L2) writes.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from .. import checks, ops, reference
from . import _launch
from ._tiles import (acc_zeros, chunk_offsets, chunk_offsets2, excite_sweep, load_acc, per_pixel, plane_base,
                     program_units, store_excited, tile_counts, tile_offsets, tile_sum, units_at)


@triton.autotune(**_launch.AUTOTUNE)
@triton.jit
def _gather_excite_kernel(
    x, res, y, g, N, C, H, W, EH, EW, TH, TW,
    s_xn, s_xc, s_xh, s_xw,  # x's strides, also y's (y = empty_like(x))
    s_rn, s_rc, s_rh, s_rw,
    s_gn, s_gc, s_gh, s_gw,  # g's strides (MEANS)
    HAS_RES: tl.constexpr, RELU: tl.constexpr, MEANS: tl.constexpr, F64: tl.constexpr, SINGLE: tl.constexpr,
    CL: tl.constexpr, VEC: tl.constexpr,
    BLOCK_A: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr,
    PERSIST: tl.constexpr,
):
    if PERSIST:  # channels_last: each program walks grid positions (n * TH + tr, channel block)
        ncb = tl.cdiv(C, BLOCK_A)
        for w in range(tl.program_id(0), N * TH * ncb, tl.num_programs(0)):
            n, c, tr, valid = units_at(w // ncb, w % ncb, N, C, TH, CL, VEC, BLOCK_A)
            _gather_excite_units(x, res, y, g, n, c, tr, valid, H, W, EH, EW, TW, s_xn, s_xc, s_xh, s_xw,
                                 s_rn, s_rc, s_rh, s_rw, s_gn, s_gc, s_gh, s_gw, HAS_RES, RELU, MEANS, F64,
                                 SINGLE, CL, VEC, BLOCK_A, BLOCK_R, BLOCK_T, BLOCK_K)
    else:
        n, c, tr, valid = program_units(N, C, TH, CL, VEC, BLOCK_A)
        _gather_excite_units(x, res, y, g, n, c, tr, valid, H, W, EH, EW, TW, s_xn, s_xc, s_xh, s_xw,
                             s_rn, s_rc, s_rh, s_rw, s_gn, s_gc, s_gh, s_gw, HAS_RES, RELU, MEANS, F64,
                             SINGLE, CL, VEC, BLOCK_A, BLOCK_R, BLOCK_T, BLOCK_K)


@triton.jit
def _gather_excite_units(
    x, res, y, g, n, c, tr, valid, H, W, EH, EW, TW,
    s_xn, s_xc, s_xh, s_xw,
    s_rn, s_rc, s_rh, s_rw,
    s_gn, s_gc, s_gh, s_gw,
    HAS_RES: tl.constexpr, RELU: tl.constexpr, MEANS: tl.constexpr, F64: tl.constexpr, SINGLE: tl.constexpr,
    CL: tl.constexpr, VEC: tl.constexpr,
    BLOCK_A: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """The forward on the units (n, c, tr, valid) of one program."""
    xb = plane_base(n, c, s_xn, s_xc)
    rb = plane_base(n, c, s_rn, s_rc)
    cnt = tile_counts(tr, H, W, EH, EW, BLOCK_T)
    if SINGLE:
        o, m = chunk_offsets(xb, tr, valid, 0, H, W, EH, EW, s_xh, s_xw, CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
        xv = load_acc(x + o, m, F64)
        mean = tile_sum(xv) / cnt
        store_excited(y, o, m, xv * per_pixel(tl.sigmoid(mean)), res, rb, tr, valid, 0, H, W, EH, EW, s_rh, s_rw,
                      HAS_RES, RELU, F64, CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
    else:
        total = acc_zeros(BLOCK_A, BLOCK_T, F64)
        for i0 in range(0, EH, BLOCK_R):
            o, m = chunk_offsets(xb, tr, valid, i0, H, W, EH, EW, s_xh, s_xw, CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
            total += tile_sum(load_acc(x + o, m, F64))
        mean = total / cnt
        excite_sweep(x, res, y, xb, rb, per_pixel(tl.sigmoid(mean)), tr, valid, H, W, EH, EW, s_xh, s_xw,
                     s_rh, s_rw, HAS_RES, RELU, F64, CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
    if MEANS:  # the tile means the output was excited with, for the output-keeping backward
        go, gm = tile_offsets(n, c, tr, valid, TW, s_gn, s_gc, s_gh, s_gw, BLOCK_T)
        tl.store(g + go, mean.to(g.dtype.element_ty), mask=gm)


@triton.autotune(**_launch.AUTOTUNE)
@triton.jit
def _gather_excite_backward_kernel(
    dy, x, dx, N, C, H, W, EH, EW, TH,
    s_xn, s_xc, s_xh, s_xw,  # x's strides, also dx's
    s_dn, s_dc, s_dh, s_dw,  # dy's strides
    F64: tl.constexpr, SINGLE: tl.constexpr, CL: tl.constexpr, VEC: tl.constexpr,
    BLOCK_A: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr,
    PERSIST: tl.constexpr,
):
    if PERSIST:  # as in the forward
        ncb = tl.cdiv(C, BLOCK_A)
        for w in range(tl.program_id(0), N * TH * ncb, tl.num_programs(0)):
            n, c, tr, valid = units_at(w // ncb, w % ncb, N, C, TH, CL, VEC, BLOCK_A)
            _gather_excite_backward_units(dy, x, dx, n, c, tr, valid, H, W, EH, EW, s_xn, s_xc, s_xh, s_xw,
                                          s_dn, s_dc, s_dh, s_dw, F64, SINGLE, CL, VEC,
                                          BLOCK_A, BLOCK_R, BLOCK_T, BLOCK_K)
    else:
        n, c, tr, valid = program_units(N, C, TH, CL, VEC, BLOCK_A)
        _gather_excite_backward_units(dy, x, dx, n, c, tr, valid, H, W, EH, EW, s_xn, s_xc, s_xh, s_xw,
                                      s_dn, s_dc, s_dh, s_dw, F64, SINGLE, CL, VEC,
                                      BLOCK_A, BLOCK_R, BLOCK_T, BLOCK_K)


@triton.jit
def _gather_excite_backward_units(
    dy, x, dx, n, c, tr, valid, H, W, EH, EW,
    s_xn, s_xc, s_xh, s_xw,
    s_dn, s_dc, s_dh, s_dw,
    F64: tl.constexpr, SINGLE: tl.constexpr, CL: tl.constexpr, VEC: tl.constexpr,
    BLOCK_A: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """The backward on the units (n, c, tr, valid) of one program."""
    xb = plane_base(n, c, s_xn, s_xc)
    db = plane_base(n, c, s_dn, s_dc)
    cnt = tile_counts(tr, H, W, EH, EW, BLOCK_T)
    if SINGLE:
        o, do, m = chunk_offsets2(xb, db, tr, valid, 0, H, W, EH, EW, s_xh, s_xw, s_dh, s_dw,
                                  CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
        xv = load_acc(x + o, m, F64)
        dyv = load_acc(dy + do, m, F64)
        sig = tl.sigmoid(tile_sum(xv) / cnt)
        coef = per_pixel(sig * (1.0 - sig) / cnt * tile_sum(dyv * xv))
        tl.store(dx + o, (dyv * per_pixel(sig) + coef).to(dx.dtype.element_ty), mask=m)
    else:
        sum_x = acc_zeros(BLOCK_A, BLOCK_T, F64)
        sum_dyx = acc_zeros(BLOCK_A, BLOCK_T, F64)
        for i0 in range(0, EH, BLOCK_R):
            o, do, m = chunk_offsets2(xb, db, tr, valid, i0, H, W, EH, EW, s_xh, s_xw, s_dh, s_dw,
                                      CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
            xv = load_acc(x + o, m, F64)
            dyv = load_acc(dy + do, m, F64)
            sum_x += tile_sum(xv)
            sum_dyx += tile_sum(dyv * xv)
        sig = tl.sigmoid(sum_x / cnt)
        coef = per_pixel(sig * (1.0 - sig) / cnt * sum_dyx)
        s = per_pixel(sig)
        for i0 in range(0, EH, BLOCK_R):  # the second sweep needs dy only
            o, do, m = chunk_offsets2(xb, db, tr, valid, i0, H, W, EH, EW, s_xh, s_xw, s_dh, s_dw,
                                      CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
            dyv = load_acc(dy + do, m, F64)
            tl.store(dx + o, (dyv * s + coef).to(dx.dtype.element_ty), mask=m)


def _gather_excite(x: torch.Tensor, extent: int, residual: torch.Tensor | None, relu: bool, means: bool):
    """The body of gather_excite_triton and gather_excite_lean_triton: (y, g), g the tile
    means in the accumulation dtype when `means` (else None)."""
    checks.check_gather_excite(x, extent, residual)
    xk = checks.kernel_input(x)
    _launch.check_device(xk)
    y = torch.empty_like(xk)
    g = None
    if means:  # laid out as the fake's empty_like(g_for_layout(g))
        g = _launch.empty_in_layout(xk.new_empty(checks.g_shape(xk.shape, extent), dtype=checks.acc_dtype(xk.dtype)),
                                    checks.is_nchw(xk))
    if xk.numel() == 0:
        return y, (None if g is None else g.zero_())  # tiles without pixels
    if not _launch.runnable(xk, y):
        return y, g
    p = _launch.plan(xk, extent, _launch.FWD_BLOCK_BYTES, (y,) + ((residual,) if residual is not None else ()))
    p = p and _launch.plan_persistent(p, xk, _launch.FWD_BLOCK_BYTES)
    if p is None:  # rows too wide for one block, or huge samples
        if g is None:
            return y.copy_(reference.gather_excite(xk, extent, residual, relu)), None
        ry, rg = reference.gather_excite_lean(xk, extent, residual, relu)
        return y.copy_(ry), g.copy_(rg)
    has_res = residual is not None
    res = residual if has_res else xk
    wrap_triton(_gather_excite_kernel)[p.grid](
        xk, res, y, y if g is None else g, xk.shape[0], xk.shape[1], p.H, p.W, p.EH, p.EW, p.TH, p.TW,
        *_launch.strides(xk), *(_launch.strides(res) if has_res else (0, 0, 0, 0)),
        *((0, 0, 0, 0) if g is None else _launch.strides(g)),
        HAS_RES=has_res, RELU=bool(relu), MEANS=g is not None, F64=xk.dtype == torch.float64, SINGLE=p.SINGLE,
        PERSIST=p.PERSIST, **p.meta(),
    )
    return y, g


@triton_op("genet_ops::gather_excite_triton", mutates_args=(), schema=_launch.schema("gather_excite"))
def gather_excite_triton(x: torch.Tensor, extent: int, residual: torch.Tensor | None = None,
                         relu: bool = False) -> torch.Tensor:
    return _gather_excite(x, extent, residual, relu, False)[0]


@triton_op("genet_ops::gather_excite_lean_triton", mutates_args=(), schema=_launch.schema("gather_excite_lean"))
def gather_excite_lean_triton(x: torch.Tensor, extent: int, residual: torch.Tensor | None = None,
                              relu: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    return _gather_excite(x, extent, residual, relu, True)


@triton_op("genet_ops::gather_excite_backward_triton", mutates_args=(), schema=_launch.schema("gather_excite_backward"))
def gather_excite_backward_triton(grad_out: torch.Tensor, x: torch.Tensor, extent: int) -> torch.Tensor:
    checks.check_gather_excite_backward(grad_out, x, extent)
    xk = checks.kernel_input(x)
    _launch.check_device(xk)
    dx = torch.empty_like(xk)
    if xk.numel() == 0 or not _launch.runnable(xk, grad_out, dx):
        return dx
    p = _launch.plan(xk, extent, _launch.BWD_BLOCK_BYTES, (dx, grad_out))
    p = p and _launch.plan_persistent(p, xk, _launch.BWD_BLOCK_BYTES)
    if p is None:
        return dx.copy_(reference.gather_excite_backward(grad_out, xk, extent))
    wrap_triton(_gather_excite_backward_kernel)[p.grid](
        grad_out, xk, dx, xk.shape[0], xk.shape[1], p.H, p.W, p.EH, p.EW, p.TH,
        *_launch.strides(xk), *_launch.strides(grad_out),
        F64=xk.dtype == torch.float64, SINGLE=p.SINGLE, PERSIST=p.PERSIST, **p.meta(),
    )
    return dx


_launch.keep_opaque(gather_excite_triton)
_launch.keep_opaque(gather_excite_lean_triton)
_launch.keep_opaque(gather_excite_backward_triton)
ops.register_gather_excite_autograd(gather_excite_triton, torch.ops.genet_ops.gather_excite_backward_triton)
