"""Routing: which kernel serves each genet_ops op on each device.

Two parts, both here so that a new backend means its kernels plus this file:
- register_fallback_kernels() (called by genet_ops.ops once the schemas exist) gives
  every device key without a compiled kernel the reference kernel (on CUDA: Triton where
  installed), and records in KERNELS who serves what (genet_ops.backend_info()).
- select() applies the user's choice, GENET_OPS_BACKEND=auto|cuda|triton|reference or
  set_backend(), for the public wrappers genet_ops.gather_excite / excite.

auto (default): torch.ops.genet_ops.* as registered (CUDA C++ where compiled, else
Triton); cuda / triton: that one, or an error saying why it cannot run; reference: the
pure-PyTorch implementation on every device (for debugging and comparison).
CPU and NPU tensors always take torch.ops.genet_ops.* unless reference is chosen.
"""
from __future__ import annotations

import functools
import os

import torch

from . import reference

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
    _triton_error = reason
    for devices in KERNELS.values():
        if devices.get("cuda") == "triton":
            devices["cuda"] = "reference"


def cuda_kernels_compiled() -> bool:
    return KERNELS["gather_excite"].get("cuda") == "cuda"


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


# The pure-PyTorch kernel of each op: served wherever nothing compiled is registered.
REFERENCE_KERNELS = {
    "gather_excite": reference.gather_excite,
    "gather_excite_backward": reference.gather_excite_backward,
    "excite": reference.excite,
    "excite_backward": reference.excite_backward,
    "gather_excite_lean": reference.gather_excite_lean,
    "excite_lean": reference.excite,  # excite's kernel: only the autograd differs
    "excite_lean_backward": reference.excite_lean_backward,
}
# The ops that have a Triton twin genet_ops::<op>_triton (genet_ops/triton/).
TRITON_TWINS = {"gather_excite", "gather_excite_backward", "excite", "excite_backward",
                "gather_excite_lean", "excite_lean", "excite_lean_backward"}
# Dispatch keys that get a kernel; the name users know them by.
DEVICE_KEYS = {"cpu": "CPU", "cuda": "CUDA", "npu": "PrivateUse1"}
# What backend_info() calls the compiled kernels of each device.
_COMPILED_NAMES = {"cpu": "cpp", "cuda": "cuda", "npu": "ascend"}

# Which kernel serves each op on each device, for backend_info(); filled by
# register_fallback_kernels().
KERNELS: dict[str, dict[str, str]] = {op: {} for op in REFERENCE_KERNELS}
_impl_lib: torch.library.Library | None = None  # holds the registrations for the process


def _has_kernel(op: str, key: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"genet_ops::{op}", key)


def _cuda_fallback(op: str, reference_kernel):
    """CUDA kernel for torch.ops.genet_ops.<op> when no CUDA C++ kernel is compiled:
    the Triton twin where Triton is installed, else the reference."""

    def kernel(*args):
        if triton_available() and op in TRITON_TWINS:
            return getattr(torch.ops.genet_ops, f"{op}_triton")(*args)
        return reference_kernel(*args)

    return kernel


def register_fallback_kernels() -> None:
    """Registers a kernel for every (op, device key) that the compiled extension left
    without one, and fills KERNELS. Runs once, after the schemas are defined."""
    global _impl_lib
    if _impl_lib is not None:
        return
    _impl_lib = torch.library.Library("genet_ops", "IMPL")
    for op, kernel in REFERENCE_KERNELS.items():
        for device, key in DEVICE_KEYS.items():
            if _has_kernel(op, key):
                KERNELS[op][device] = _COMPILED_NAMES[device]
            elif device == "cuda":
                # No CUDA C++ kernel compiled: route to Triton where it can run.
                _impl_lib.impl(op, _cuda_fallback(op, kernel), key)
                KERNELS[op][device] = "triton" if triton_available() and op in TRITON_TWINS else "reference"
            else:
                _impl_lib.impl(op, kernel, key)
                KERNELS[op][device] = "reference"
