"""The genet_ops custom ops: schemas, fake functions, autograd, and the public wrappers.

torch.ops.genet_ops.{gather_excite, excite} run the best compiled kernel for the
tensor's device (C++ on CPU, CUDA C++ on CUDA, Ascend C on NPU), or the reference
where none is compiled. genet_ops.gather_excite / genet_ops.excite add the choice of
GPU backend (genet_ops.set_backend, GENET_OPS_BACKEND).
"""
from __future__ import annotations

import torch

from . import _extension, backend, checks, reference

# One schema per op. csrc/genet_ops.cpp declares the same strings (a test checks).
SCHEMAS = {
    "gather_excite": "gather_excite(Tensor x, int extent, Tensor? residual=None) -> Tensor",
    "gather_excite_backward": "gather_excite_backward(Tensor grad_out, Tensor x, int extent) -> Tensor",
    "excite": "excite(Tensor x, Tensor g, int extent, Tensor? residual=None) -> Tensor",
    "excite_backward": "excite_backward(Tensor grad_out, Tensor x, Tensor g, int extent) -> (Tensor, Tensor)",
}
if not _extension.loaded:
    _def_lib = torch.library.Library("genet_ops", "DEF")
    for _schema in SCHEMAS.values():
        _def_lib.define(_schema)

# Reference (or Triton) kernels wherever no compiled kernel is registered; genet_ops.backend.
backend.register_fallback_kernels()


# ----------------------------------------------------------------------------- fake
@torch.library.register_fake("genet_ops::gather_excite")
def _gather_excite_fake(x, extent, residual=None):
    checks.check_gather_excite(x, extent, residual)
    return torch.empty_like(checks.kernel_input(x))


@torch.library.register_fake("genet_ops::gather_excite_backward")
def _gather_excite_backward_fake(grad_out, x, extent):
    checks.check_gather_excite_backward(grad_out, x, extent)
    return torch.empty_like(checks.kernel_input(x))


@torch.library.register_fake("genet_ops::excite")
def _excite_fake(x, g, extent, residual=None):
    checks.check_excite(x, g, extent, residual)
    return torch.empty_like(checks.kernel_input(x))


@torch.library.register_fake("genet_ops::excite_backward")
def _excite_backward_fake(grad_out, x, g, extent):
    checks.check_excite_backward(grad_out, x, g, extent)
    xk = checks.kernel_input(x)
    return torch.empty_like(xk), torch.empty_like(checks.g_for_layout(g, checks.is_nchw(xk)))


# ------------------------------------------------------------------------- autograd
def _needs_grad(ctx, i: int) -> bool:
    # The dispatcher drops trailing arguments left at their default (residual=None),
    # so needs_input_grad can be shorter than the schema.
    return i < len(ctx.needs_input_grad) and ctx.needs_input_grad[i]


def register_gather_excite_autograd(op, backward_op) -> None:
    """d x from backward_op(grad, x, extent); d residual = grad. Shared by every
    implementation of gather_excite (the main op and the Triton op)."""

    def setup_context(ctx, inputs, output):
        x, extent, residual = inputs
        ctx.save_for_backward(x)
        ctx.extent = extent

    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        dx = backward_op(grad, x, ctx.extent) if _needs_grad(ctx, 0) else None
        dres = grad if _needs_grad(ctx, 2) else None
        return dx, None, dres

    torch.library.register_autograd(op, backward, setup_context=setup_context)


def register_excite_autograd(op, backward_op) -> None:
    """d x, d g from backward_op(grad, x, g, extent); d residual = grad."""

    def setup_context(ctx, inputs, output):
        x, g, extent, residual = inputs
        ctx.save_for_backward(x, g)
        ctx.extent = extent

    def backward(ctx, grad):
        x, g = ctx.saved_tensors
        dx = dg = None
        if _needs_grad(ctx, 0) or _needs_grad(ctx, 1):
            dx, dg = backward_op(grad, x, g, ctx.extent)
        dres = grad if _needs_grad(ctx, 3) else None
        return dx, dg, None, dres

    torch.library.register_autograd(op, backward, setup_context=setup_context)


register_gather_excite_autograd("genet_ops::gather_excite", torch.ops.genet_ops.gather_excite_backward)
register_excite_autograd("genet_ops::excite", torch.ops.genet_ops.excite_backward)


# --------------------------------------------------------------------- public API
def gather_excite(x: torch.Tensor, extent: int = 0, residual: torch.Tensor | None = None) -> torch.Tensor:
    """Parameter-free gather-excite (GE-θ⁻): y = x * sigmoid(tile_mean(x)) (+ residual).

    extent 0 gathers over the whole plane; extent e over non-overlapping e x e tiles
    (the last ones partial). Differentiable in x and residual.
    """
    impl = backend.select(x)
    if impl == "reference":
        return reference.gather_excite(x, extent, residual)
    if impl == "triton":
        return torch.ops.genet_ops.gather_excite_triton(x, extent, residual)
    return torch.ops.genet_ops.gather_excite(x, extent, residual)


def excite(x: torch.Tensor, g: torch.Tensor, extent: int = 0, residual: torch.Tensor | None = None) -> torch.Tensor:
    """Excite with a gathered g (GE-θ, GE-θ⁺): y = x * sigmoid(g[tile]) (+ residual).

    g has shape (N, C, ceil(H/extent), ceil(W/extent)), or (N, C, 1, 1) for extent 0.
    Differentiable in x, g and residual.
    """
    impl = backend.select(x)
    if impl == "reference":
        return reference.excite(x, g, extent, residual)
    if impl == "triton":
        return torch.ops.genet_ops.excite_triton(x, g, extent, residual)
    return torch.ops.genet_ops.excite(x, g, extent, residual)
