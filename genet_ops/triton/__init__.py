"""Triton kernels for the genet_ops ops, as torch.library.triton_op custom ops.

Ops (same argument lists as the main ops in genet_ops.ops.SCHEMAS, same checks from
genet_ops.checks, same output layout as genet_ops.reference):

    genet_ops::gather_excite_triton(x, extent, residual=None, relu=False) -> y
    genet_ops::gather_excite_backward_triton(grad_out, x, extent) -> dx
    genet_ops::excite_triton(x, g, extent, residual=None, relu=False) -> y
    genet_ops::excite_backward_triton(grad_out, x, g, extent) -> (dx, dg)
    genet_ops::gather_excite_lean_triton(x, extent, residual=None, relu=False) -> (y, g)
    genet_ops::excite_lean_triton(x, g, extent, residual=None, relu=False) -> y
    genet_ops::excite_lean_backward_triton(grad_out, out, residual, g, extent, relu, gather) -> (dx, dg)

The forward ops are differentiable through genet_ops.ops.register_*_autograd (the helpers
shared with the main ops), whose backward calls the *_backward_triton ops; the *_lean_*
ones keep (out, g, residual) instead of x (lean.py). ReLU is fused into the forward
kernels' epilogue, after the residual add. Kernels are
launched through torch.library.wrap_triton, so torch.compile traces into them on a GPU.
On CUDA without compiled C++ kernels the main ops route here (genet_ops.backend);
GENET_OPS_BACKEND=triton picks them explicitly.

Dtypes: float16, bfloat16, float32 with float32 accumulation; float64 natively with
float64 accumulation. Layouts: NCHW-contiguous and channels_last natively (x is never
copied; y, dx and dg take the layout rule of genet_ops.checks); residual, grad_out and
g go to the kernels with their own strides; any other x is made contiguous first. Empty
inputs give empty outputs (dg zero). Global extent on planes wider than 16384 pixels,
samples of 2**31 elements or more, and launches of 2**31 units or more or beyond CUDA's
grid limits take the reference kernels (_launch.plan).

Design (gather_excite.py, excite.py, lean.py, _tiles.py, _launch.py): one program owns a group of
units, a unit being one tile-row of one (n, c) plane, as a [A, R, T, K] block (units, rows,
tiles of the row, columns of a tile). NCHW: A consecutive tile-rows (tiny planes: several
whole planes per program; a global extent on a contiguous plane is seen as one row of
H*W pixels). channels_last: A channels of one (n, tile-row), so each pixel's channel
vector is one coalesced access. When a tile-row fits the register budget (8 KiB per
loaded tensor forward, 4 KiB backward) each pixel is read once; otherwise the kernel
loops over row chunks (gather_excite: a reducing sweep, then an exciting one; excite and
its backward need one sweep). A host-checked vector width lets the compiler issue 16-byte
accesses. Autotune: num_warps 2, 4 or 8, pruned per block shape (_launch.prune_configs; a single
config under the interpreter).
An alternative plan for the gather_excite kernels on channels_last planes too large for
one block (persistent programs, so that the second sweep re-reads from L2) sits behind
the internal knob triton_cl_global of genet_ops._tuning (_launch.plan_persistent).

Where these kernels were verified, and where not yet: docs/STATUS.md.
"""
from . import excite, gather_excite, lean  # noqa: F401  (register genet_ops::*_triton)
