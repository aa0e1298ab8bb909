"""genet-ops: fused gather-excite (GENet) operators for PyTorch.

    import genet_ops
    y = genet_ops.gather_excite(x, extent=0)              # GE-θ⁻, global
    y = genet_ops.gather_excite(x, 4, residual=shortcut)  # fused residual add
    y = genet_ops.excite(x, g, extent=4)                   # GE-θ / θ⁺ with a learned gather
    genet_ops.backend_info()                               # which kernel runs where
    genet_ops.fuse_excite(model)                           # SE blocks of any model -> fused excite
"""
from __future__ import annotations

import warnings

from . import _extension, backend
from .backend import get_backend, set_backend
from .ops import excite, gather_excite
from .module import GatherExcite
from .fuse import fuse_excite

if backend.triton_available():
    try:
        from . import triton as _triton  # noqa: F401  (registers the *_triton ops)
    except Exception as exc:  # noqa: BLE001 - a torch / Triton API change must not break the package
        backend.disable_triton(f"the *_triton ops could not be registered ({type(exc).__name__}: {exc})")
        warnings.warn(f"genet_ops: Triton kernels off: {backend.triton_error()}; CUDA tensors without "
                      "compiled CUDA C++ kernels run on the reference.", RuntimeWarning, stacklevel=2)

__version__ = "0.1.0"


def backend_info() -> dict:
    """Which kernel serves each op on each device, and why the extension is or is not loaded."""
    return {
        "extension_loaded": _extension.loaded,
        "extension_error": _extension.error,
        "ascend_loaded": _extension.ascend_loaded,  # genet_ops._C_ascend (NPU kernels)
        "ascend_error": _extension.ascend_error,
        "backend": get_backend(),
        "triton": backend.triton_available(),
        "triton_error": backend.triton_error(),
        "kernels": {op: dict(devices) for op, devices in backend.KERNELS.items()},
    }


__all__ = ["gather_excite", "excite", "GatherExcite", "fuse_excite", "backend_info", "get_backend", "set_backend", "__version__"]
