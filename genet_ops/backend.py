"""Choice of GPU backend: GENET_OPS_BACKEND=auto|cuda|triton|reference, or set_backend().

auto (default): torch.ops.genet_ops.* as registered (CUDA C++ where compiled, else
Triton); cuda / triton: that one, or an error saying why it cannot run; reference: the
pure-PyTorch implementation on every device (for debugging and comparison).
CPU and NPU tensors always take torch.ops.genet_ops.* unless reference is chosen.
"""
from __future__ import annotations

import functools
import os

import torch

BACKENDS = ("auto", "cuda", "triton", "reference")


def _validate(name: str, source: str) -> str:
    name = name.lower()
    if name not in BACKENDS:
        raise ValueError(f"genet_ops: {source} must be one of {', '.join(BACKENDS)}, got {name!r}")
    return name


_choice = _validate(os.environ.get("GENET_OPS_BACKEND", "auto"), "GENET_OPS_BACKEND")


def set_backend(name: str) -> None:
    """Choose the backend for CUDA tensors (and 'reference' for every device)."""
    global _choice
    _choice = _validate(name, "backend")


def get_backend() -> str:
    return _choice


# Why the Triton twins are off (None: they are on), set once by import genet_ops.
_triton_error: str | None = None


@functools.cache
def _triton_import_error() -> str | None:
    try:
        import triton  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a broken install must not break import genet_ops
        return f"triton cannot be imported ({type(exc).__name__}: {exc})"
    return None


def triton_available() -> bool:
    """Triton is installed and the *_triton ops registered (or not yet tried)."""
    return triton_error() is None


def triton_error() -> str | None:
    """Why the Triton kernels are off, for backend_info(); None when they are on."""
    return _triton_import_error() or _triton_error


def disable_triton(reason: str) -> None:
    """The *_triton ops could not be registered: route CUDA to the reference instead."""
    global _triton_error
    from . import ops

    _triton_error = reason
    for devices in ops.KERNELS.values():
        if devices.get("cuda") == "triton":
            devices["cuda"] = "reference"


def cuda_kernels_compiled() -> bool:
    from . import ops

    return ops.KERNELS["gather_excite"].get("cuda") == "cuda"


def select(x: torch.Tensor) -> str:
    """'op' (torch.ops.genet_ops.*), 'triton' or 'reference' for this input."""
    if _choice == "reference":
        return "reference"
    if not isinstance(x, torch.Tensor) or x.device.type != "cuda" or _choice == "auto":
        return "op"
    if _choice == "cuda":
        if not cuda_kernels_compiled():
            raise RuntimeError(
                "genet_ops: backend 'cuda' chosen but the CUDA C++ kernels are not compiled "
                "(rebuild with nvcc present, or choose GENET_OPS_BACKEND=triton)"
            )
        return "op"
    if not triton_available():
        raise RuntimeError(f"genet_ops: backend 'triton' chosen but the Triton kernels are off: {triton_error()}")
    return "triton"


def cuda_fallback(op: str, reference_kernel):
    """CUDA kernel for torch.ops.genet_ops.<op> when no CUDA C++ kernel is compiled:
    the Triton twin where Triton is installed, else the reference."""

    def kernel(*args):
        if triton_available():
            return getattr(torch.ops.genet_ops, f"{op}_triton")(*args)
        return reference_kernel(*args)

    return kernel
