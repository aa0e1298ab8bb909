"""Loads the compiled kernels (genet_ops._C) if they are there and wanted, and the Ascend
kernels (genet_ops._C_ascend, a module of its own) where they were built.

GENET_OPS_LOAD_EXTENSION=0 skips both, so the reference path can be tested on a machine
where they are built.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import warnings

import torch  # noqa: F401  (loads libc10/libtorch, which _C links against)

loaded = False
error: str | None = None
ascend_loaded = False
ascend_error: str | None = None


def load_ascend(find_spec=importlib.util.find_spec, import_module=importlib.import_module):
    """(loaded, why not) for genet_ops._C_ascend. Not built is the normal case off CANN
    machines and stays quiet; built but not loading (an undefined symbol, a torch_npu that
    fails) warns once: the NPU ops then run on the reference, _C is unaffected."""
    name = f"{__package__}._C_ascend"
    if find_spec(name) is None:
        return False, "not built (needs CANN and torch_npu, see csrc/ascend/README.md)"
    try:
        import_module("torch_npu")  # the NPU device; _C_ascend links libtorch_npu
        import_module(name)  # registers the PrivateUse1 kernels
        return True, None
    except Exception as exc:  # ImportError (undefined symbol, missing lib), or torch_npu's own errors
        why = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"genet_ops: the Ascend kernels ({name}) did not load ({why}); NPU ops run on the "
                      "pure-PyTorch reference, the CPU/CUDA kernels are unaffected.", RuntimeWarning, stacklevel=2)
        return False, why


if os.environ.get("GENET_OPS_LOAD_EXTENSION", "1") == "0":
    error = ascend_error = "disabled by GENET_OPS_LOAD_EXTENSION=0"
else:
    try:
        from . import _C  # noqa: F401  (registers the schemas and kernels)

        loaded = True
    except ImportError as exc:  # not built, or built against another torch
        error = f"{type(exc).__name__}: {exc}"
    ascend_loaded, ascend_error = load_ascend()

if not loaded:
    warnings.warn(
        f"genet_ops: compiled kernels not loaded ({error}); the ops run on the pure-PyTorch "
        "reference. Build them with `python setup.py build_ext --inplace`.",
        RuntimeWarning,
        stacklevel=2,
    )
