"""genet-ops: fused gather-excite (GENet) operators for PyTorch.

    import genet_ops
    y = genet_ops.gather_excite(x, extent=0)              # GE-θ⁻, global
    y = genet_ops.gather_excite(x, 4, residual=shortcut)  # fused residual add
    y = genet_ops.excite(x, g, extent=4)                   # GE-θ / θ⁺ with a learned gather
    genet_ops.backend_info()                               # which kernel runs where
"""
from __future__ import annotations

from . import _extension, backend
from .backend import get_backend, set_backend
from .ops import excite, gather_excite
from .module import GatherExcite

if backend.triton_available():
    from . import triton as _triton  # noqa: F401  (registers the *_triton ops)

__version__ = "0.1.0"


def backend_info() -> dict:
    """Which kernel serves each op on each device, and why the extension is or is not loaded."""
    return {
        "extension_loaded": _extension.loaded,
        "extension_error": _extension.error,
        "backend": get_backend(),
        "triton": backend.triton_available(),
        "kernels": {op: dict(devices) for op, devices in backend.KERNELS.items()},
    }


__all__ = ["gather_excite", "excite", "GatherExcite", "backend_info", "get_backend", "set_backend", "__version__"]
