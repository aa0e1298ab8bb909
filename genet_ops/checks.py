"""Argument checks, tile geometry and the output-layout rule, in Python.

They mirror csrc/genet_ops.{h,cpp} line for line: the fake (meta) functions and the
reference kernels use them, so that every backend agrees on error messages, output
shapes and output strides (torch.library.opcheck compares fake and real strides).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class TileGeom:
    N: int
    C: int
    H: int
    W: int
    eh: int  # tile height (never 0)
    ew: int  # tile width (never 0)
    th: int  # tiles along H
    tw: int  # tiles along W


def tile_geom(shape, extent: int) -> TileGeom:
    N, C, H, W = shape
    if extent == 0:
        return TileGeom(N, C, H, W, max(H, 1), max(W, 1), 1, 1)
    return TileGeom(N, C, H, W, extent, extent, math.ceil(H / extent), math.ceil(W / extent))


def g_shape(shape, extent: int) -> tuple:
    t = tile_geom(shape, extent)
    return (t.N, t.C, t.th, t.tw)


def check_x(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"genet_ops: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"genet_ops: {name} must be a 4-D (N, C, H, W) tensor, got shape {list(x.shape)}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"genet_ops: {name} must be float16, bfloat16, float32 or float64, got {x.dtype}")


def check_extent(extent) -> None:
    if isinstance(extent, bool) or not isinstance(extent, int):
        raise TypeError(f"genet_ops: extent must be an int, got {type(extent).__name__}")
    if extent < 0:
        raise ValueError(f"genet_ops: extent must be >= 0 (0 means global), got {extent}")


def check_same(t: torch.Tensor, x: torch.Tensor, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"genet_ops: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.shape != x.shape:
        raise ValueError(f"genet_ops: {name} must have x's shape {list(x.shape)}, got {list(t.shape)}")
    if t.dtype != x.dtype:
        raise ValueError(f"genet_ops: {name} must have x's dtype {x.dtype}, got {t.dtype}")
    if t.device != x.device:
        raise ValueError(f"genet_ops: {name} must be on x's device {x.device}, got {t.device}")


def check_g(g: torch.Tensor, x: torch.Tensor, extent: int) -> None:
    if not isinstance(g, torch.Tensor):
        raise TypeError(f"genet_ops: g must be a torch.Tensor, got {type(g).__name__}")
    want = g_shape(x.shape, extent)
    if tuple(g.shape) != want:
        raise ValueError(
            f"genet_ops: g must have shape {list(want)} (N, C, ceil(H/extent), ceil(W/extent)) "
            f"for x of shape {list(x.shape)} and extent {extent}, got {list(g.shape)}"
        )
    if g.dtype != x.dtype:
        raise ValueError(f"genet_ops: g must have x's dtype {x.dtype}, got {g.dtype}")
    if g.device != x.device:
        raise ValueError(f"genet_ops: g must be on x's device {x.device}, got {g.device}")


# Each op's checks, in the order every backend makes them (it decides which error a call
# with several bad arguments reports).
def check_gather_excite(x: torch.Tensor, extent: int, residual: torch.Tensor | None) -> None:
    check_x(x)
    check_extent(extent)
    if residual is not None:
        check_same(residual, x, "residual")


def check_gather_excite_backward(grad_out: torch.Tensor, x: torch.Tensor, extent: int) -> None:
    check_x(x)
    check_extent(extent)
    check_same(grad_out, x, "grad_out")


def check_excite(x: torch.Tensor, g: torch.Tensor, extent: int, residual: torch.Tensor | None) -> None:
    check_x(x)
    check_extent(extent)
    check_g(g, x, extent)
    if residual is not None:
        check_same(residual, x, "residual")


def check_excite_backward(grad_out: torch.Tensor, x: torch.Tensor, g: torch.Tensor, extent: int) -> None:
    check_x(x)
    check_extent(extent)
    check_g(g, x, extent)
    check_same(grad_out, x, "grad_out")


def kernel_input(x: torch.Tensor) -> torch.Tensor:
    """x when dense NCHW or dense channels_last, else a contiguous copy."""
    if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.contiguous()


def is_nchw(xk: torch.Tensor) -> bool:
    """The NCHW kernels run when xk is contiguous (this wins when both layouts hold)."""
    return xk.is_contiguous()


def g_for_layout(g: torch.Tensor, nchw: bool) -> torch.Tensor:
    return g.contiguous() if nchw else g.contiguous(memory_format=torch.channels_last)
