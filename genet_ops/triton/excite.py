"""genet_ops::excite_triton, genet_ops::excite_lean_triton and genet_ops::excite_backward_triton.

Forward: y = x * sigmoid(g_t) (+ residual), then ReLU when relu; g given per tile.
excite_lean_triton is the same kernel under the output-keeping op's name (only its
autograd differs; its backward is genet_ops::excite_lean_backward_triton, in lean.py).
Backward: dx = dy * s_t ;  dg_t = s_t (1 - s_t) * sum_t(dy * x).
s is known before any pixel is read, so both kernels stream over row chunks once:
x is read once, dy once, and dg is written at the end.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from .. import checks, ops, reference
from . import _launch
from ._tiles import (acc_zeros, chunk_offsets2, excite_sweep, load_acc, per_pixel, plane_base, program_units,
                     tile_offsets, tile_sum)


@triton.autotune(**_launch.AUTOTUNE)
@triton.jit
def _excite_kernel(
    x, g, res, y, N, C, H, W, EH, EW, TH, TW,
    s_xn, s_xc, s_xh, s_xw,  # x's strides, also y's
    s_gn, s_gc, s_gh, s_gw,
    s_rn, s_rc, s_rh, s_rw,
    HAS_RES: tl.constexpr, RELU: tl.constexpr, F64: tl.constexpr, CL: tl.constexpr, VEC: tl.constexpr,
    BLOCK_A: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr,
):
    n, c, tr, valid = program_units(N, C, TH, CL, VEC, BLOCK_A)
    go, gm = tile_offsets(n, c, tr, valid, TW, s_gn, s_gc, s_gh, s_gw, BLOCK_T)
    s = per_pixel(tl.sigmoid(load_acc(g + go, gm, F64)))
    xb = plane_base(n, c, s_xn, s_xc)
    rb = plane_base(n, c, s_rn, s_rc)
    excite_sweep(x, res, y, xb, rb, s, tr, valid, H, W, EH, EW, s_xh, s_xw, s_rh, s_rw,
                 HAS_RES, RELU, F64, CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)


@triton.autotune(**_launch.AUTOTUNE)
@triton.jit
def _excite_backward_kernel(
    dy, x, g, dx, dg, N, C, H, W, EH, EW, TH, TW,
    s_xn, s_xc, s_xh, s_xw,  # x's strides, also dx's
    s_dn, s_dc, s_dh, s_dw,  # dy's strides
    s_gn, s_gc, s_gh, s_gw,
    s_qn, s_qc, s_qh, s_qw,  # dg's strides
    F64: tl.constexpr, CL: tl.constexpr, VEC: tl.constexpr,
    BLOCK_A: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr,
):
    n, c, tr, valid = program_units(N, C, TH, CL, VEC, BLOCK_A)
    go, gm = tile_offsets(n, c, tr, valid, TW, s_gn, s_gc, s_gh, s_gw, BLOCK_T)
    sig = tl.sigmoid(load_acc(g + go, gm, F64))
    s = per_pixel(sig)
    xb = plane_base(n, c, s_xn, s_xc)
    db = plane_base(n, c, s_dn, s_dc)
    sum_dyx = acc_zeros(BLOCK_A, BLOCK_T, F64)
    for i0 in range(0, EH, BLOCK_R):
        o, do, m = chunk_offsets2(xb, db, tr, valid, i0, H, W, EH, EW, s_xh, s_xw, s_dh, s_dw,
                                  CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
        dyv = load_acc(dy + do, m, F64)
        xv = load_acc(x + o, m, F64)
        tl.store(dx + o, (dyv * s).to(dx.dtype.element_ty), mask=m)
        sum_dyx += tile_sum(dyv * xv)
    qo, qm = tile_offsets(n, c, tr, valid, TW, s_qn, s_qc, s_qh, s_qw, BLOCK_T)
    tl.store(dg + qo, (sig * (1.0 - sig) * sum_dyx).to(dg.dtype.element_ty), mask=qm)


def _excite(x: torch.Tensor, g: torch.Tensor, extent: int, residual: torch.Tensor | None, relu: bool) -> torch.Tensor:
    """The body of excite_triton and excite_lean_triton."""
    checks.check_excite(x, g, extent, residual)
    xk = checks.kernel_input(x)
    _launch.check_device(xk)
    y = torch.empty_like(xk)
    if xk.numel() == 0 or not _launch.runnable(xk, g, y):
        return y
    p = _launch.plan(xk, extent, _launch.FWD_BLOCK_BYTES, (y,) + ((residual,) if residual is not None else ()))
    if p is None:  # rows too wide for one block, or huge samples
        return y.copy_(reference.excite(xk, g, extent, residual, relu))
    has_res = residual is not None
    res = residual if has_res else xk
    wrap_triton(_excite_kernel)[p.grid](
        xk, g, res, y, xk.shape[0], xk.shape[1], p.H, p.W, p.EH, p.EW, p.TH, p.TW,
        *_launch.strides(xk), *_launch.strides(g), *(_launch.strides(res) if has_res else (0, 0, 0, 0)),
        HAS_RES=has_res, RELU=bool(relu), F64=xk.dtype == torch.float64, **p.meta(),
    )
    return y


@triton_op("genet_ops::excite_triton", mutates_args=(), schema=_launch.schema("excite"))
def excite_triton(x: torch.Tensor, g: torch.Tensor, extent: int, residual: torch.Tensor | None = None,
                  relu: bool = False) -> torch.Tensor:
    return _excite(x, g, extent, residual, relu)


@triton_op("genet_ops::excite_lean_triton", mutates_args=(), schema=_launch.schema("excite_lean"))
def excite_lean_triton(x: torch.Tensor, g: torch.Tensor, extent: int, residual: torch.Tensor | None = None,
                       relu: bool = False) -> torch.Tensor:
    return _excite(x, g, extent, residual, relu)


@triton_op("genet_ops::excite_backward_triton", mutates_args=(), schema=_launch.schema("excite_backward"))
def excite_backward_triton(grad_out: torch.Tensor, x: torch.Tensor, g: torch.Tensor, extent: int) -> tuple[torch.Tensor, torch.Tensor]:
    checks.check_excite_backward(grad_out, x, g, extent)
    xk = checks.kernel_input(x)
    _launch.check_device(xk)
    dx = torch.empty_like(xk)
    dg = _launch.empty_in_layout(g, checks.is_nchw(xk))
    if xk.numel() == 0:
        return dx, dg.zero_()
    if not _launch.runnable(xk, grad_out, g, dx, dg):
        return dx, dg
    p = _launch.plan(xk, extent, _launch.BWD_BLOCK_BYTES, (dx, grad_out))
    if p is None:
        rdx, rdg = reference.excite_backward(grad_out, xk, g, extent)
        return dx.copy_(rdx), dg.copy_(rdg)
    wrap_triton(_excite_backward_kernel)[p.grid](
        grad_out, xk, g, dx, dg, xk.shape[0], xk.shape[1], p.H, p.W, p.EH, p.EW, p.TH, p.TW,
        *_launch.strides(xk), *_launch.strides(grad_out), *_launch.strides(g), *_launch.strides(dg),
        F64=xk.dtype == torch.float64, **p.meta(),
    )
    return dx, dg


_launch.keep_opaque(excite_triton)
_launch.keep_opaque(excite_lean_triton)
_launch.keep_opaque(excite_backward_triton)
ops.register_excite_autograd(excite_triton, torch.ops.genet_ops.excite_backward_triton)
