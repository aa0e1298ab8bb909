"""Argument checks, tile geometry and the output-layout rule, in Python.

They mirror csrc/genet_ops.{h,cpp} line for line: the fake (meta) functions and the
reference kernels use them, so that every backend agrees on error messages, output
shapes and output strides (torch.library.opcheck compares fake and real strides).
"""
from __future__ import annotations

import operator
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


def ceil_div(a, e: int):
    """ceil(a / e) for a >= 0, e >= 1, in integers: exact for any extent, and plain floor
    division on symbolic sizes (torch.export proves it equal to the conv arithmetic)."""
    return (a - 1) // e + 1  # floor division: 0 for a == 0


def tile_geom(shape, extent: int) -> TileGeom:
    """extent 0 is global. An extent >= max(H, W) comes out global too (one tile of H x W
    pixels): the tile size is clamped to the plane, so no tile is ever padded past it."""
    N, C, H, W = shape
    extent = operator.index(extent)
    if extent == 0:
        return TileGeom(N, C, H, W, max(H, 1), max(W, 1), 1, 1)
    return TileGeom(N, C, H, W, max(min(extent, H), 1), max(min(extent, W), 1), ceil_div(H, extent), ceil_div(W, extent))


def g_shape(shape, extent: int) -> tuple:
    """(N, C, ceil(H/e), ceil(W/e)), (N, C, 1, 1) for e = 0; no branch on the sizes."""
    N, C, H, W = shape
    extent = operator.index(extent)
    if extent == 0:
        return (N, C, 1, 1)
    return (N, C, ceil_div(H, extent), ceil_div(W, extent))


def check_x(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"genet_ops: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"genet_ops: {name} must be a 4-D (N, C, H, W) tensor, got shape {list(x.shape)}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"genet_ops: {name} must be float16, bfloat16, float32 or float64, got {x.dtype}")


# Extents are int64 in the op schemas.
MAX_EXTENT = 2**63 - 1


def check_extent(extent) -> None:
    """Any operator.index-able integer (int, numpy.int64, ...) but bool, in [0, 2**63 - 1]."""
    if isinstance(extent, bool):
        raise ValueError(f"genet_ops: extent must be an int >= 0 (0 means global), got the bool {extent}")
    try:
        e = operator.index(extent)
    except TypeError:
        raise TypeError(f"genet_ops: extent must be an int, got {type(extent).__name__}") from None
    if e < 0:
        raise ValueError(f"genet_ops: extent must be >= 0 (0 means global), got {e}")
    if e > MAX_EXTENT:
        raise ValueError(f"genet_ops: extent must be at most 2**63 - 1 (any extent >= max(H, W) is global), got {e}")


def as_extent(extent) -> int:
    """extent checked and as a plain int (the public wrappers pass this to the ops)."""
    check_extent(extent)
    return operator.index(extent)


def check_same(t: torch.Tensor, x: torch.Tensor, name: str, x_name: str = "x") -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"genet_ops: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.shape != x.shape:
        raise ValueError(f"genet_ops: {name} must have {x_name}'s shape {list(x.shape)}, got {list(t.shape)}")
    if t.dtype != x.dtype:
        raise ValueError(f"genet_ops: {name} must have {x_name}'s dtype {x.dtype}, got {t.dtype}")
    if t.device != x.device:
        raise ValueError(f"genet_ops: {name} must be on {x_name}'s device {x.device}, got {t.device}")


def check_g(g: torch.Tensor, x: torch.Tensor, extent: int, x_name: str = "x", dtype: torch.dtype | None = None) -> None:
    """g: (N, C, ceil(H/e), ceil(W/e)) for x, on x's device, in x's dtype (or `dtype`:
    the output-keeping backward's saved logits are in the accumulation dtype)."""
    if not isinstance(g, torch.Tensor):
        raise TypeError(f"genet_ops: g must be a torch.Tensor, got {type(g).__name__}")
    want = g_shape(x.shape, extent)
    if tuple(g.shape) != want:
        raise ValueError(
            f"genet_ops: g must have shape {list(want)} (N, C, ceil(H/extent), ceil(W/extent)) "
            f"for {x_name} of shape {list(x.shape)} and extent {extent}, got {list(g.shape)}"
        )
    if dtype is None and g.dtype != x.dtype:
        raise ValueError(f"genet_ops: g must have x's dtype {x.dtype}, got {g.dtype}")
    if dtype is not None and g.dtype != dtype:
        raise ValueError(f"genet_ops: g must be {dtype} (the accumulation dtype of {x_name}'s {x.dtype}), got {g.dtype}")
    if g.device != x.device:
        raise ValueError(f"genet_ops: g must be on {x_name}'s device {x.device}, got {g.device}")


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


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Where reductions accumulate: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_excite_lean_backward(grad_out: torch.Tensor, out: torch.Tensor, residual: torch.Tensor | None,
                               g: torch.Tensor, extent: int) -> None:
    check_x(out, "out")
    check_extent(extent)
    check_g(g, out, extent, "out", acc_dtype(out.dtype))
    check_same(grad_out, out, "grad_out", "out")
    if residual is not None:
        check_same(residual, out, "residual", "out")


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
