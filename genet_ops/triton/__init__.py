"""Triton kernels for the genet_ops ops (draft docstring, finalised below)."""
from . import excite, gather_excite  # noqa: F401  (register genet_ops::*_triton)
