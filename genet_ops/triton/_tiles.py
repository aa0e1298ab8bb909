"""Triton helpers shared by the gather_excite and excite kernels: which (n, c, tile-row)
units a program owns, the addresses of one chunk of rows of those tile-rows, and the
excite step (y = x * s (+ residual)) both forward kernels end with.

Every kernel works on a 4-D block [BLOCK_A, BLOCK_R, BLOCK_T, BLOCK_K]:

- A: the program's units. A unit is one tile-row (rows tr*EH .. tr*EH+EH-1) of one
  (n, c) plane. NCHW: BLOCK_A consecutive units of the order (n, c, tr), so a program
  packs several tile-rows, or several whole planes when planes are tiny. channels_last:
  BLOCK_A consecutive channels of one (n, tr), so that each pixel's channel vector is one
  coalesced access (the channel axis is the contiguous one).
- R: a chunk of BLOCK_R rows of the tile-row (the whole tile-row when it fits).
- T, K: tile t of the row and column k inside it: w = t*EW + k. Reducing over R and K
  gives one value per (unit, tile); broadcasting back over R and K excites every pixel.

Plane-sized offsets are int64; offsets inside a sample are int32.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def to_acc(v, F64: tl.constexpr):
    """v in the accumulation type: float64 for float64 inputs, float32 for the rest (docs/DESIGN.md §2)."""
    if F64:
        return v.to(tl.float64)
    else:
        return v.to(tl.float32)


@triton.jit
def load_acc(ptr, mask, F64: tl.constexpr):
    """Masked load (0 outside), in the accumulation type."""
    return to_acc(tl.load(ptr, mask=mask, other=0.0), F64)


@triton.jit
def acc_zeros(BLOCK_A: tl.constexpr, BLOCK_T: tl.constexpr, F64: tl.constexpr):
    """[A, T] zeros in the accumulation type."""
    return to_acc(tl.zeros([BLOCK_A, BLOCK_T], dtype=tl.float32), F64)


@triton.jit
def program_units(N, C, TH, CL: tl.constexpr, VEC: tl.constexpr, BLOCK_A: tl.constexpr):
    """(n, c, tr, valid), each of shape [BLOCK_A], for this program's units."""
    return units_at(tl.program_id(0), tl.program_id(1), N, C, TH, CL, VEC, BLOCK_A)


@triton.jit
def units_at(q, cb, N, C, TH, CL: tl.constexpr, VEC: tl.constexpr, BLOCK_A: tl.constexpr):
    """program_units of the grid position (q, cb): channels_last, q over N * TH and cb
    over channel blocks; NCHW, q over blocks of units (cb unused). Persistent programs
    (gather_excite.py) call it for each position they take on."""
    a = tl.arange(0, BLOCK_A)
    if CL:
        zero = tl.zeros([BLOCK_A], dtype=tl.int32)
        n = zero + q // TH
        tr = zero + q % TH
        c0 = cb * BLOCK_A
        c = c0 + a
        # VEC divides C: a mask made of whole VEC-runs keeps channel vectors whole
        valid = c0 + (a // VEC) * VEC < C
    else:
        u = q * BLOCK_A + a  # unit = (n * C + c) * TH + tr
        valid = u < N * C * TH
        plane = u // TH
        tr = u - plane * TH
        n = plane // C
        c = plane - n * C
    return n, c, tr, valid


@triton.jit
def plane_base(n, c, s_n, s_c):
    """[A] int64 offset of each unit's (n, c) plane."""
    return n.to(tl.int64) * s_n + c.to(tl.int64) * s_c


@triton.jit
def chunk_offsets(base, tr, valid, i0, H, W, EH, EW, s_h, s_w, CL: tl.constexpr, VEC: tl.constexpr,
                  BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr):
    """Offsets [A, R, T, K] and mask of rows i0 .. i0+BLOCK_R-1 of each unit's tile-row.

    VEC (a power of two the host checked: it divides the contiguous axis' extent, the
    other strides and the storage offsets) lets the compiler issue VEC-wide accesses on
    the contiguous axis: K for NCHW, A for channels_last.
    """
    i = i0 + tl.arange(0, BLOCK_R)
    t = tl.arange(0, BLOCK_T)
    k = tl.arange(0, BLOCK_K)
    h = tr[:, None] * EH + i[None, :]  # [A, R]
    row_ok = valid[:, None] & (i[None, :] < EH) & (h < H)
    w = t[:, None] * EW + k[None, :]  # [T, K]
    if CL:
        col_ok = (k[None, :] < EW) & (w < W)
    else:
        # VEC divides EW and W: the same test on k rounded down to a VEC-run
        kv = (k // VEC) * VEC
        col_ok = (kv[None, :] < EW) & (t[:, None] * EW + kv[None, :] < W)
    offs = (base[:, None, None, None] + (h * s_h)[:, :, None, None]
            + (w * s_w)[None, None, :, :])
    if VEC > 1:
        if CL:
            offs = tl.multiple_of(offs, [VEC, 1, 1, 1])
        else:
            offs = tl.multiple_of(offs, [1, 1, 1, VEC])
    mask = row_ok[:, :, None, None] & col_ok[None, None, :, :]
    return offs, mask


@triton.jit
def chunk_offsets2(base, base2, tr, valid, i0, H, W, EH, EW, s_h, s_w, s_h2, s_w2, CL: tl.constexpr,
                   VEC: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr):
    """chunk_offsets of the same chunk in two tensors of the same shape -> (offs, offs2, mask)."""
    offs, mask = chunk_offsets(base, tr, valid, i0, H, W, EH, EW, s_h, s_w, CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
    offs2, _ = chunk_offsets(base2, tr, valid, i0, H, W, EH, EW, s_h2, s_w2, CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
    return offs, offs2, mask


@triton.jit
def tile_counts(tr, H, W, EH, EW, BLOCK_T: tl.constexpr):
    """|t| for each (unit, tile) -> [A, T] float32 (1 for tiles past the edge)."""
    t = tl.arange(0, BLOCK_T)
    rows = tl.minimum(H - tr * EH, EH)
    cols = tl.minimum(W - t * EW, EW)
    return tl.maximum(rows[:, None] * cols[None, :], 1).to(tl.float32)


@triton.jit
def tile_offsets(n, c, tr, valid, TW, s_n, s_c, s_h, s_w, BLOCK_T: tl.constexpr):
    """Offsets [A, T] and mask of each (unit, tile)'s element of a (N, C, TH, TW) tensor."""
    t = tl.arange(0, BLOCK_T)
    offs = plane_base(n, c, s_n, s_c)[:, None] + (tr * s_h)[:, None] + (t * s_w)[None, :]
    mask = valid[:, None] & (t[None, :] < TW)
    return offs, mask


@triton.jit
def tile_sum(v):
    """[A, R, T, K] -> [A, T]."""
    return tl.sum(tl.sum(v, axis=3), axis=1)


@triton.jit
def per_pixel(v):
    """[A, T] -> [A, 1, T, 1], broadcastable over a chunk."""
    return v[:, None, :, None]


@triton.jit
def store_excited(y, o, m, out, res, rb, tr, valid, i0, H, W, EH, EW, s_rh, s_rw, HAS_RES: tl.constexpr,
                  RELU: tl.constexpr, F64: tl.constexpr, CL: tl.constexpr, VEC: tl.constexpr,
                  BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr):
    """y[o] = out (+ the residual's rows i0 ..), then ReLU when RELU, rounded once to y's dtype."""
    if HAS_RES:
        ro, _ = chunk_offsets(rb, tr, valid, i0, H, W, EH, EW, s_rh, s_rw, CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
        out += load_acc(res + ro, m, F64)
    if RELU:
        out = relu(out)
    tl.store(y + o, out.to(y.dtype.element_ty), mask=m)


@triton.jit
def relu(v):
    """v < 0 ? 0 : v, so NaN stays NaN (as torch.relu; the backward masks where out <= 0)."""
    return tl.where(v < 0, 0.0, v)


@triton.jit
def relu_grad(dy, out, RELU: tl.constexpr):
    """dy where the ReLU passed its input (out > 0, or NaN as torch's threshold backward), else 0."""
    if RELU:
        dy = tl.where(out <= 0, 0.0, dy)
    return dy


@triton.jit
def excite_sweep(x, res, y, xb, rb, s, tr, valid, H, W, EH, EW, s_xh, s_xw, s_rh, s_rw, HAS_RES: tl.constexpr,
                 RELU: tl.constexpr, F64: tl.constexpr, CL: tl.constexpr, VEC: tl.constexpr,
                 BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr):
    """y = x * s (+ residual), then ReLU when RELU, over each unit's tile-row, chunk by
    chunk; s from per_pixel()."""
    for i0 in range(0, EH, BLOCK_R):
        o, m = chunk_offsets(xb, tr, valid, i0, H, W, EH, EW, s_xh, s_xw, CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
        store_excited(y, o, m, load_acc(x + o, m, F64) * s, res, rb, tr, valid, i0, H, W, EH, EW, s_rh, s_rw,
                      HAS_RES, RELU, F64, CL, VEC, BLOCK_R, BLOCK_T, BLOCK_K)
