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


_acc_dtype = checks.acc_dtype


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


def _finish(y: torch.Tensor, residual: torch.Tensor | None, relu: bool) -> torch.Tensor:
    """y (+ residual), then ReLU when asked: the forward's epilogue, in the accumulation dtype.
    ReLU keeps NaN (as torch.relu), since the backward masks with out <= 0."""
    if residual is not None:
        y = y + residual.to(y.dtype)
    return torch.where(y < 0, 0, y) if relu else y


def gather_excite(x: torch.Tensor, extent: int, residual: torch.Tensor | None = None,
                  relu: bool = False) -> torch.Tensor:
    checks.check_gather_excite(x, extent, residual)
    t = checks.tile_geom(x.shape, extent)
    xf = x.to(_acc_dtype(x.dtype))
    y = xf * expand_tiles(torch.sigmoid(gather(x, extent)), t)
    return _as_output(_finish(y, residual, relu), x)


def gather_excite_lean(x: torch.Tensor, extent: int, residual: torch.Tensor | None = None,
                       relu: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """gather_excite's output and the tile means g it excited with (accumulation dtype,
    laid out as g_for_layout; 0 for tiles without pixels): what the output-keeping
    backward needs instead of x."""
    checks.check_gather_excite(x, extent, residual)
    xk = checks.kernel_input(x)
    g = torch.nan_to_num(gather(x, extent), nan=0.0) if x.numel() == 0 else gather(x, extent)
    g_out = torch.empty_like(checks.g_for_layout(g, checks.is_nchw(xk))).copy_(g)
    return gather_excite(x, extent, residual, relu), g_out


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


def excite(x: torch.Tensor, g: torch.Tensor, extent: int, residual: torch.Tensor | None = None,
           relu: bool = False) -> torch.Tensor:
    checks.check_excite(x, g, extent, residual)
    t = checks.tile_geom(x.shape, extent)
    acc = _acc_dtype(x.dtype)
    y = x.to(acc) * expand_tiles(torch.sigmoid(g.to(acc)), t)
    return _as_output(_finish(y, residual, relu), x)


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


def excite_lean_backward(grad_out: torch.Tensor, out: torch.Tensor, residual: torch.Tensor | None,
                         g: torch.Tensor, extent: int, relu: bool, gather: bool):
    """The output-keeping backward of excite (gather=False) and gather_excite (gather=True),
    from out = act(x S + r) instead of x, since x S = out - r where the gradient flows:

        dp = grad_out, masked to 0 where out <= 0 when relu;  z = out - r
        dg_t = (1 - s_t) sum_{p in t} dp_p z_p;   dx_p = dp_p s_t (+ dg_t / |t| when gather)

    g holds the tile logits in the accumulation dtype (gather_excite_lean's means, or
    excite's g converted); dg comes back in that dtype and g's layout, dx in out's.
    """
    checks.check_excite_lean_backward(grad_out, out, residual, g, extent)
    t = checks.tile_geom(out.shape, extent)
    acc = _acc_dtype(out.dtype)
    dp = grad_out.to(acc)
    if relu:
        dp = torch.where(out <= 0, 0, dp)
    z = out.to(acc) if residual is None else out.to(acc) - residual.to(acc)
    s = torch.sigmoid(g)
    dg = (1 - s) * tile_sum(dp * z, t)
    dx = dp * expand_tiles(s, t)
    if gather:
        dx = dx + expand_tiles(dg / tile_count(t, out.device, acc), t)
    dg_out = torch.empty_like(checks.g_for_layout(g, checks.is_nchw(checks.kernel_input(out))))
    return _as_output(dx, out), dg_out.copy_(dg)
