"""Pure-PyTorch gather-excite: the fallback kernels and the test oracle.

Written for clarity, not speed. Every function follows docs/DESIGN.md §2: reductions in
float32 (float64 for float64 inputs), one rounding of each output to x's dtype, and
the output in x's memory format (the layout rule of genet_ops.checks). The forward
functions are differentiable with plain autograd, so tests can compare the explicit
backward formulas below against autograd of the forward. Empty inputs need no special
case: tiles with no pixels never reach an output (and give dg = 0).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import checks


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def tile_sum(v: torch.Tensor, t: checks.TileGeom) -> torch.Tensor:
    """Sum of v (N, C, H, W) over each tile -> (N, C, th, tw)."""
    pad_h, pad_w = t.th * t.eh - t.H, t.tw * t.ew - t.W
    v = F.pad(v, (0, pad_w, 0, pad_h))
    return v.reshape(t.N, t.C, t.th, t.eh, t.tw, t.ew).sum(dim=(3, 5))


def tile_count(t: checks.TileGeom, device, dtype) -> torch.Tensor:
    """|t|: the number of pixels really inside each tile -> (th, tw)."""
    rows = (t.H - torch.arange(t.th, device=device) * t.eh).clamp(max=t.eh)
    cols = (t.W - torch.arange(t.tw, device=device) * t.ew).clamp(max=t.ew)
    return torch.outer(rows, cols).to(dtype)


def expand_tiles(s: torch.Tensor, t: checks.TileGeom) -> torch.Tensor:
    """(N, C, th, tw) -> (N, C, H, W): every pixel gets its tile's value."""
    s = s.repeat_interleave(t.eh, dim=2).repeat_interleave(t.ew, dim=3)
    return s[:, :, : t.H, : t.W]


def _as_output(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """value rounded once to x's dtype, in the layout the kernels produce."""
    out = torch.empty_like(checks.kernel_input(x))
    return out.copy_(value)


def gather(x: torch.Tensor, extent: int) -> torch.Tensor:
    """g_t: the mean of each tile, in the accumulation dtype -> (N, C, th, tw)."""
    t = checks.tile_geom(x.shape, extent)
    xf = x.to(_acc_dtype(x.dtype))
    return tile_sum(xf, t) / tile_count(t, x.device, xf.dtype)


def gather_excite(x: torch.Tensor, extent: int, residual: torch.Tensor | None = None) -> torch.Tensor:
    checks.check_gather_excite(x, extent, residual)
    t = checks.tile_geom(x.shape, extent)
    xf = x.to(_acc_dtype(x.dtype))
    y = xf * expand_tiles(torch.sigmoid(gather(x, extent)), t)
    if residual is not None:
        y = y + residual.to(xf.dtype)
    return _as_output(y, x)


def gather_excite_backward(grad_out: torch.Tensor, x: torch.Tensor, extent: int) -> torch.Tensor:
    """dx_p = dy_p s_t + s_t (1 - s_t) / |t| * sum_{q in t} dy_q x_q."""
    checks.check_gather_excite_backward(grad_out, x, extent)
    t = checks.tile_geom(x.shape, extent)
    acc = _acc_dtype(x.dtype)
    xf, dy = x.to(acc), grad_out.to(acc)
    s = torch.sigmoid(gather(x, extent))
    coef = s * (1 - s) / tile_count(t, x.device, acc) * tile_sum(dy * xf, t)
    dx = dy * expand_tiles(s, t) + expand_tiles(coef, t)
    return _as_output(dx, x)


def excite(x: torch.Tensor, g: torch.Tensor, extent: int, residual: torch.Tensor | None = None) -> torch.Tensor:
    checks.check_excite(x, g, extent, residual)
    t = checks.tile_geom(x.shape, extent)
    acc = _acc_dtype(x.dtype)
    y = x.to(acc) * expand_tiles(torch.sigmoid(g.to(acc)), t)
    if residual is not None:
        y = y + residual.to(acc)
    return _as_output(y, x)


def excite_backward(grad_out: torch.Tensor, x: torch.Tensor, g: torch.Tensor, extent: int):
    """dx_p = dy_p s_t ;  dg_t = s_t (1 - s_t) sum_{p in t} dy_p x_p."""
    checks.check_excite_backward(grad_out, x, g, extent)
    t = checks.tile_geom(x.shape, extent)
    acc = _acc_dtype(x.dtype)
    dy = grad_out.to(acc)
    s = torch.sigmoid(g.to(acc))
    dx = dy * expand_tiles(s, t)
    dg = s * (1 - s) * tile_sum(dy * x.to(acc), t)
    dg_out = torch.empty_like(checks.g_for_layout(g, checks.is_nchw(checks.kernel_input(x))))
    return _as_output(dx, x), dg_out.copy_(dg)
