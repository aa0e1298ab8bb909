"""The genet_ops custom ops: schemas, fake functions, autograd, and the public wrappers.

torch.ops.genet_ops.{gather_excite, excite} run the best compiled kernel for the
tensor's device (C++ on CPU, CUDA C++ on CUDA, Ascend C on NPU), or the reference
where none is compiled. genet_ops.gather_excite / genet_ops.excite add the choice of
GPU backend (genet_ops.set_backend, GENET_OPS_BACKEND).
"""
from __future__ import annotations

import torch

from . import _extension, backend, checks, reference
from ._autograd import register_excite_autograd, register_gather_excite_autograd, register_lean_autograd

# One schema per op. csrc/genet_ops.cpp declares the same strings (a test checks).
SCHEMAS = {
    "gather_excite": "gather_excite(Tensor x, int extent, Tensor? residual=None, bool relu=False) -> Tensor",
    "gather_excite_backward": "gather_excite_backward(Tensor grad_out, Tensor x, int extent) -> Tensor",
    "excite": "excite(Tensor x, Tensor g, int extent, Tensor? residual=None, bool relu=False) -> Tensor",
    "excite_backward": "excite_backward(Tensor grad_out, Tensor x, Tensor g, int extent) -> (Tensor, Tensor)",
    # Output-keeping twins (docs/DESIGN.md §2): their autograd keeps (out, residual, g), not x.
    "gather_excite_lean": "gather_excite_lean(Tensor x, int extent, Tensor? residual=None, bool relu=False) -> (Tensor, Tensor)",
    "excite_lean": "excite_lean(Tensor x, Tensor g, int extent, Tensor? residual=None, bool relu=False) -> Tensor",
    "excite_lean_backward": "excite_lean_backward(Tensor grad_out, Tensor out, Tensor? residual, Tensor g, int extent, "
                            "bool relu, bool gather) -> (Tensor, Tensor)",
}
if not _extension.loaded:
    _def_lib = torch.library.Library("genet_ops", "DEF")
    for _schema in SCHEMAS.values():
        _def_lib.define(_schema)

# Reference (or Triton) kernels wherever no compiled kernel is registered; genet_ops.backend.
backend.register_fallback_kernels()


# ----------------------------------------------------------------------------- fake
@torch.library.register_fake("genet_ops::gather_excite")
def _gather_excite_fake(x, extent, residual=None, relu=False):
    checks.check_gather_excite(x, extent, residual)
    return torch.empty_like(checks.kernel_input(x))


@torch.library.register_fake("genet_ops::gather_excite_lean")
def _gather_excite_lean_fake(x, extent, residual=None, relu=False):
    checks.check_gather_excite(x, extent, residual)
    xk = checks.kernel_input(x)
    g = x.new_empty(checks.g_shape(x.shape, extent), dtype=checks.acc_dtype(x.dtype))
    return torch.empty_like(xk), torch.empty_like(checks.g_for_layout(g, checks.is_nchw(xk)))


@torch.library.register_fake("genet_ops::gather_excite_backward")
def _gather_excite_backward_fake(grad_out, x, extent):
    checks.check_gather_excite_backward(grad_out, x, extent)
    return torch.empty_like(checks.kernel_input(x))


@torch.library.register_fake("genet_ops::excite")
def _excite_fake(x, g, extent, residual=None, relu=False):
    checks.check_excite(x, g, extent, residual)
    return torch.empty_like(checks.kernel_input(x))


torch.library.register_fake("genet_ops::excite_lean")(_excite_fake)


@torch.library.register_fake("genet_ops::excite_lean_backward")
def _excite_lean_backward_fake(grad_out, out, residual, g, extent, relu, gather):
    checks.check_excite_lean_backward(grad_out, out, residual, g, extent)
    ok = checks.kernel_input(out)
    return torch.empty_like(ok), torch.empty_like(checks.g_for_layout(g, checks.is_nchw(ok)))


@torch.library.register_fake("genet_ops::excite_backward")
def _excite_backward_fake(grad_out, x, g, extent):
    checks.check_excite_backward(grad_out, x, g, extent)
    xk = checks.kernel_input(x)
    return torch.empty_like(xk), torch.empty_like(checks.g_for_layout(g, checks.is_nchw(xk)))


# ------------------------------------------------------------------------- autograd
# Every order, forward mode and torch.func: see _autograd. The Triton twins register
# through the same two functions.
register_gather_excite_autograd("genet_ops::gather_excite", "genet_ops::gather_excite_backward")
register_excite_autograd("genet_ops::excite", "genet_ops::excite_backward")
register_lean_autograd("genet_ops::gather_excite_lean", "genet_ops::excite_lean", "genet_ops::excite_lean_backward")


# --------------------------------------------------------------------- public API
SAVE_MODES = ("auto", "output", "input")


def keeps_output(x: torch.Tensor, residual: torch.Tensor | None, save: str = "auto") -> bool:
    """Whether a call keeps (output, residual, tile logits) for backward instead of x.

    'output' always, 'input' never; 'auto' keeps the output unless a float16 / bfloat16
    call has a residual: there out - residual, rounded to 8 or 11 bits, loses the excited
    branch's precision when the residual dominates it (docs/DESIGN.md §4).
    """
    if save not in SAVE_MODES:
        raise ValueError(f"genet_ops: save must be one of {', '.join(SAVE_MODES)}, got {save!r}")
    if save != "auto":
        return save == "output"
    return residual is None or x.dtype in (torch.float32, torch.float64)


def _wants_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def _op(name: str, impl: str):
    if impl == "triton" and name in backend.TRITON_TWINS:
        return getattr(torch.ops.genet_ops, f"{name}_triton")
    return getattr(torch.ops.genet_ops, name)


def gather_excite(x: torch.Tensor, extent: int = 0, residual: torch.Tensor | None = None, *,
                  relu: bool = False, save: str = "auto") -> torch.Tensor:
    """Parameter-free gather-excite (GE-θ⁻): y = x * sigmoid(tile_mean(x)) (+ residual),
    then ReLU when relu=True.

    extent 0 gathers over the whole plane; extent e over non-overlapping e x e tiles
    (the last ones partial); any extent >= max(H, W) is global. Differentiable in x and
    residual to every order, in forward mode and under torch.func (docs/STATUS.md).
    save: what backward keeps, 'auto' (the output where exact enough, see keeps_output),
    'output' or 'input' (x, as eager PyTorch does).
    """
    extent = checks.as_extent(extent)
    lean = keeps_output(x, residual, save)
    impl = backend.select(x)
    if impl == "reference":
        return reference.gather_excite(x, extent, residual, relu)
    if lean and _wants_grad(x, residual):
        return _op("gather_excite_lean", impl)(x, extent, residual, relu)[0]
    return _op("gather_excite", impl)(x, extent, residual, relu)


def excite(x: torch.Tensor, g: torch.Tensor, extent: int = 0, residual: torch.Tensor | None = None, *,
           relu: bool = False, save: str = "auto") -> torch.Tensor:
    """Excite with a gathered g (GE-θ, GE-θ⁺): y = x * sigmoid(g[tile]) (+ residual), then
    ReLU when relu=True.

    g has shape (N, C, ceil(H/extent), ceil(W/extent)), or (N, C, 1, 1) for extent 0.
    Differentiable in x, g and residual to every order, in forward mode and under torch.func.
    save: as for gather_excite.
    """
    extent = checks.as_extent(extent)
    lean = keeps_output(x, residual, save)
    impl = backend.select(x)
    if impl == "reference":
        return reference.excite(x, g, extent, residual, relu)
    if lean and _wants_grad(x, g, residual):
        return _op("excite_lean", impl)(x, g, extent, residual, relu)
    return _op("excite", impl)(x, g, extent, residual, relu)
