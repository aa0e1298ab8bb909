"""genet_ops::excite_lean_backward_triton: the output-keeping backward of
gather_excite_lean_triton (gather=True) and excite_lean_triton (gather=False), and the
autograd registration of the three output-keeping twins.

From out = act(x S + r) instead of x (docs/DESIGN.md §2), with g the tile logits in the
accumulation dtype:
    dp = dy, 0 where out <= 0 when relu;  z = out - r
    dg_t = (1 - s_t) sum_t(dp z);  dx = dp s_t (+ dg_t / |t| when gather)
One kernel reads dy, out and r. Without gather, s is known before any pixel is read: one
sweep writes dx and reduces dg. With gather, dx needs dg: when a tile-row fits one block
(SINGLE) every tensor is read once; otherwise a reducing sweep, then one that re-reads dy
(and out for the ReLU mask) to write dx.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from .. import checks, ops, reference
from . import _launch
from ._tiles import (acc_zeros, chunk_offsets, chunk_offsets2, load_acc, per_pixel, plane_base, program_units,
                     relu_grad, tile_counts, tile_offsets, tile_sum, units_at)
from .excite import excite_lean_triton
from .gather_excite import gather_excite_lean_triton


@triton.autotune(**_launch.AUTOTUNE)
@triton.jit
def _excite_lean_backward_kernel(
    dy, out, res, g, dx, dg, N, C, H, W, EH, EW, TH, TW,
    s_on, s_oc, s_oh, s_ow,  # out's strides, also dx's
    s_dn, s_dc, s_dh, s_dw,  # dy's strides
    s_rn, s_rc, s_rh, s_rw,
    s_gn, s_gc, s_gh, s_gw,
    s_qn, s_qc, s_qh, s_qw,  # dg's strides
    HAS_RES: tl.constexpr, RELU: tl.constexpr, GATHER: tl.constexpr, F64: tl.constexpr, SINGLE: tl.constexpr,
    CL: tl.constexpr, VEC: tl.constexpr,
    BLOCK_A: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr,
    PERSIST: tl.constexpr,
):
    if PERSIST:  # channels_last, gather: each program walks grid positions, as gather_excite's kernels
        ncb = tl.cdiv(C, BLOCK_A)
        for w in range(tl.program_id(0), N * TH * ncb, tl.num_programs(0)):
            n, c, tr, valid = units_at(w // ncb, w % ncb, N, C, TH, CL, VEC, BLOCK_A)
            _lean_backward_units(dy, out, res, g, dx, dg, n, c, tr, valid, H, W, EH, EW, TW,
                                 s_on, s_oc, s_oh, s_ow, s_dn, s_dc, s_dh, s_dw, s_rn, s_rc, s_rh, s_rw,
                                 s_gn, s_gc, s_gh, s_gw, s_qn, s_qc, s_qh, s_qw,
                                 HAS_RES, RELU, GATHER, F64, SINGLE, CL, VEC, BLOCK_A, BLOCK_R, BLOCK_T, BLOCK_K)
    else:
        n, c, tr, valid = program_units(N, C, TH, CL, VEC, BLOCK_A)
        _lean_backward_units(dy, out, res, g, dx, dg, n, c, tr, valid, H, W, EH, EW, TW,
                             s_on, s_oc, s_oh, s_ow, s_dn, s_dc, s_dh, s_dw, s_rn, s_rc, s_rh, s_rw,
                             s_gn, s_gc, s_gh, s_gw, s_qn, s_qc, s_qh, s_qw,
                             HAS_RES, RELU, GATHER, F64, SINGLE, CL, VEC, BLOCK_A, BLOCK_R, BLOCK_T, BLOCK_K)


@triton.jit
def _dp_z(dy, out, res, o, do, m, rb, tr, valid, i0, H, W, EH, EW, s_rh, s_rw,
          HAS_RES: tl.constexpr, RELU: tl.constexpr, F64: tl.constexpr, CL: tl.constexpr, VEC: tl.constexpr,
          BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr):
    """dp (dy masked by the ReLU) and z = out - r on one chunk, in the accumulation type."""
    ov = load_acc(out + o, m, F64)
    dp = relu_grad(load_acc(dy + do, m, F64), ov, RELU)
    if HAS_RES:
        ro, _ = chunk_offsets(rb, tr, valid, i0, H, W, EH, EW, s_rh, s_rw, CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
        ov -= load_acc(res + ro, m, F64)
    return dp, ov


@triton.jit
def _lean_backward_units(
    dy, out, res, g, dx, dg, n, c, tr, valid, H, W, EH, EW, TW,
    s_on, s_oc, s_oh, s_ow, s_dn, s_dc, s_dh, s_dw, s_rn, s_rc, s_rh, s_rw,
    s_gn, s_gc, s_gh, s_gw, s_qn, s_qc, s_qh, s_qw,
    HAS_RES: tl.constexpr, RELU: tl.constexpr, GATHER: tl.constexpr, F64: tl.constexpr, SINGLE: tl.constexpr,
    CL: tl.constexpr, VEC: tl.constexpr,
    BLOCK_A: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """The backward on the units (n, c, tr, valid) of one program."""
    ob = plane_base(n, c, s_on, s_oc)
    db = plane_base(n, c, s_dn, s_dc)
    rb = plane_base(n, c, s_rn, s_rc)
    go, gm = tile_offsets(n, c, tr, valid, TW, s_gn, s_gc, s_gh, s_gw, BLOCK_T)
    sig = tl.sigmoid(load_acc(g + go, gm, F64))
    s = per_pixel(sig)
    if GATHER:
        cnt = tile_counts(tr, H, W, EH, EW, BLOCK_T)
        if SINGLE:  # the whole tile-row in registers: dy, out and r read once
            o, do, m = chunk_offsets2(ob, db, tr, valid, 0, H, W, EH, EW, s_oh, s_ow, s_dh, s_dw,
                                      CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
            dp, z = _dp_z(dy, out, res, o, do, m, rb, tr, valid, 0, H, W, EH, EW, s_rh, s_rw,
                          HAS_RES, RELU, F64, CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
            dgv = (1.0 - sig) * tile_sum(dp * z)
            tl.store(dx + o, (dp * s + per_pixel(dgv / cnt)).to(dx.dtype.element_ty), mask=m)
        else:
            red = acc_zeros(BLOCK_A, BLOCK_T, F64)
            for i0 in range(0, EH, BLOCK_R):
                o, do, m = chunk_offsets2(ob, db, tr, valid, i0, H, W, EH, EW, s_oh, s_ow, s_dh, s_dw,
                                          CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
                dp, z = _dp_z(dy, out, res, o, do, m, rb, tr, valid, i0, H, W, EH, EW, s_rh, s_rw,
                              HAS_RES, RELU, F64, CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
                red += tile_sum(dp * z)
            dgv = (1.0 - sig) * red
            coef = per_pixel(dgv / cnt)
            for i0 in range(0, EH, BLOCK_R):  # the second sweep needs dy (and out for the mask)
                o, do, m = chunk_offsets2(ob, db, tr, valid, i0, H, W, EH, EW, s_oh, s_ow, s_dh, s_dw,
                                          CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
                dyv = load_acc(dy + do, m, F64)
                if RELU:
                    dyv = relu_grad(dyv, load_acc(out + o, m, F64), RELU)
                tl.store(dx + o, (dyv * s + coef).to(dx.dtype.element_ty), mask=m)
    else:
        red = acc_zeros(BLOCK_A, BLOCK_T, F64)
        for i0 in range(0, EH, BLOCK_R):
            o, do, m = chunk_offsets2(ob, db, tr, valid, i0, H, W, EH, EW, s_oh, s_ow, s_dh, s_dw,
                                      CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
            dp, z = _dp_z(dy, out, res, o, do, m, rb, tr, valid, i0, H, W, EH, EW, s_rh, s_rw,
                          HAS_RES, RELU, F64, CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
            tl.store(dx + o, (dp * s).to(dx.dtype.element_ty), mask=m)
            red += tile_sum(dp * z)
        dgv = (1.0 - sig) * red
    qo, qm = tile_offsets(n, c, tr, valid, TW, s_qn, s_qc, s_qh, s_qw, BLOCK_T)
    tl.store(dg + qo, dgv.to(dg.dtype.element_ty), mask=qm)


@triton_op("genet_ops::excite_lean_backward_triton", mutates_args=(), schema=_launch.schema("excite_lean_backward"))
def excite_lean_backward_triton(grad_out: torch.Tensor, out: torch.Tensor, residual: torch.Tensor | None,
                                g: torch.Tensor, extent: int, relu: bool,
                                gather: bool) -> tuple[torch.Tensor, torch.Tensor]:
    checks.check_excite_lean_backward(grad_out, out, residual, g, extent)
    ok = checks.kernel_input(out)
    _launch.check_device(ok)
    dx = torch.empty_like(ok)
    dg = _launch.empty_in_layout(g, checks.is_nchw(ok))
    if ok.numel() == 0:
        return dx, dg.zero_()
    if not _launch.runnable(ok, grad_out, g, dx, dg):
        return dx, dg
    has_res = residual is not None
    p = _launch.plan(ok, extent, _launch.BWD_BLOCK_BYTES, (dx, grad_out) + ((residual,) if has_res else ()))
    if gather:  # two sweeps on large planes, as gather_excite's backward
        p = p and _launch.plan_persistent(p, ok, _launch.BWD_BLOCK_BYTES)
    if p is None:  # rows too wide for one block, or huge samples
        rdx, rdg = reference.excite_lean_backward(grad_out, ok, residual, g, extent, relu, gather)
        return dx.copy_(rdx), dg.copy_(rdg)
    res = residual if has_res else ok
    wrap_triton(_excite_lean_backward_kernel)[p.grid](
        grad_out, ok, res, g, dx, dg, ok.shape[0], ok.shape[1], p.H, p.W, p.EH, p.EW, p.TH, p.TW,
        *_launch.strides(ok), *_launch.strides(grad_out), *(_launch.strides(res) if has_res else (0, 0, 0, 0)),
        *_launch.strides(g), *_launch.strides(dg),
        HAS_RES=has_res, RELU=bool(relu), GATHER=bool(gather), F64=ok.dtype == torch.float64, SINGLE=p.SINGLE,
        PERSIST=p.PERSIST, **p.meta(),
    )
    return dx, dg


_launch.keep_opaque(excite_lean_backward_triton)
ops.register_lean_autograd(gather_excite_lean_triton, excite_lean_triton, torch.ops.genet_ops.excite_lean_backward_triton)
