"""The genet_ops custom ops: schemas, fake functions, autograd, and the public wrappers.

torch.ops.genet_ops.{gather_excite, excite} run the best compiled kernel for the
tensor's device (C++ on CPU, CUDA C++ on CUDA, Ascend C on NPU), or the reference
where none is compiled. genet_ops.gather_excite / genet_ops.excite add the choice of
GPU backend (genet_ops.set_backend, GENET_OPS_BACKEND).
"""
from __future__ import annotations

import torch

from . import _extension, backend, checks, reference
from ._autograd import register_excite_autograd, register_gather_excite_autograd

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
# Every order, forward mode and torch.func: see _autograd. The Triton twins register
# through the same two functions.
register_gather_excite_autograd("genet_ops::gather_excite", "genet_ops::gather_excite_backward")
register_excite_autograd("genet_ops::excite", "genet_ops::excite_backward")


# --------------------------------------------------------------------- public API
def gather_excite(x: torch.Tensor, extent: int = 0, residual: torch.Tensor | None = None) -> torch.Tensor:
    """Parameter-free gather-excite (GE-θ⁻): y = x * sigmoid(tile_mean(x)) (+ residual).

    extent 0 gathers over the whole plane; extent e over non-overlapping e x e tiles
    (the last ones partial); any extent >= max(H, W) is global. Differentiable in x and
    residual to every order, in forward mode and under torch.func (see the README).
    """
    extent = checks.as_extent(extent)
    impl = backend.select(x)
    if impl == "reference":
        return reference.gather_excite(x, extent, residual)
    if impl == "triton":
        return torch.ops.genet_ops.gather_excite_triton(x, extent, residual)
    return torch.ops.genet_ops.gather_excite(x, extent, residual)


def excite(x: torch.Tensor, g: torch.Tensor, extent: int = 0, residual: torch.Tensor | None = None) -> torch.Tensor:
    """Excite with a gathered g (GE-θ, GE-θ⁺): y = x * sigmoid(g[tile]) (+ residual).

    g has shape (N, C, ceil(H/extent), ceil(W/extent)), or (N, C, 1, 1) for extent 0.
    Differentiable in x, g and residual to every order, in forward mode and under torch.func.
    """
    extent = checks.as_extent(extent)
    impl = backend.select(x)
    if impl == "reference":
        return reference.excite(x, g, extent, residual)
    if impl == "triton":
        return torch.ops.genet_ops.excite_triton(x, g, extent, residual)
    return torch.ops.genet_ops.excite(x, g, extent, residual)
