"""Loads the compiled kernels (genet_ops._C) if they are there and wanted.

GENET_OPS_LOAD_EXTENSION=0 skips the extension, so the reference path can be tested
on a machine where it is built.
"""
from __future__ import annotations

import os
import warnings

import torch  # noqa: F401  (loads libc10/libtorch, which _C links against)

loaded = False
error: str | None = None

if os.environ.get("GENET_OPS_LOAD_EXTENSION", "1") == "0":
    error = "disabled by GENET_OPS_LOAD_EXTENSION=0"
else:
    try:
        from . import _C  # noqa: F401  (registers the schemas and kernels)

        loaded = True
    except ImportError as exc:  # not built, or built against another torch
        error = f"{type(exc).__name__}: {exc}"

if not loaded:
    warnings.warn(
        f"genet_ops: compiled kernels not loaded ({error}); the ops run on the pure-PyTorch "
        "reference. Build them with `python setup.py build_ext --inplace`.",
        RuntimeWarning,
        stacklevel=2,
    )
