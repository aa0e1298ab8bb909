"""Host side of the Triton kernels: block sizes and grid per input, autotune configs,
stride arguments, and what changes under the Triton interpreter (TRITON_INTERPRET=1).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import triton
from torch._subclasses.fake_tensor import is_fake
from torch._subclasses.functional_tensor import FunctionalTensor, FunctionalTensorMode

from .. import _tuning, checks

INTERPRET: bool = bool(triton.knobs.runtime.interpret)

# Bytes of each loaded tensor in one [A, R, T, K] block: 8 KiB is 4096 bf16 or 2048 fp32
# elements, 8 to 16 per thread at 4 to 8 warps. The backward kernels hold two loaded
# tensors (x and dy), so half of that.
FWD_BLOCK_BYTES = 8192
BWD_BLOCK_BYTES = 4096
# channels_last: channels per program (one 128-byte line of bf16 per pixel).
CL_CHANNELS = 64
# Pack fewer units per program rather than launch fewer programs than this (2 per SM of
# a 132-SM Hopper part); not under the interpreter, where fewer programs only run faster.
MIN_PROGRAMS = 0 if INTERPRET else 264
# Widest access per thread: 16 bytes.
VEC_BYTES = 16
# Rows wider than this (padded to tiles of a power-of-two width) do not fit one block;
# such inputs (global extent on W > 16384) take the reference kernels, as do samples
# whose offsets do not fit int32 and launches whose unit counts do not (program_units
# in _tiles.py computes N*C*TH, the unit index and N*TH in int32).
MAX_ROW = 16384
INT32_LIMIT = 2**31
# CUDA grids hold at most 2**31 - 1 programs along axis 0 and 65535 along axis 1.
MAX_GRID = (2**31 - 1, 65535)

# Shape class of a launch (a missing name, e.g. SINGLE for excite, is skipped by the autotuner).
AUTOTUNE_KEY = ["BLOCK_A", "BLOCK_R", "BLOCK_T", "BLOCK_K", "CL", "VEC", "SINGLE", "HAS_RES", "PERSIST", "RELU",
                "MEANS", "GATHER"]

# Knob triton_cl_global = persistent (plan_persistent): channels per program (one 32-byte
# sector of each pixel), and the bytes of x that all persistent programs together may have
# between their two sweeps, well inside a Hopper part's 50 MB L2.
PERSIST_GROUP_BYTES = 32
PERSIST_L2_BYTES = 32 << 20
# Persistent programs under the interpreter: few, so that each walks several positions.
PERSIST_INTERPRET_PROGRAMS = 3


def autotune_configs() -> list:
    """A handful of launch configs; one under the interpreter, where timing means nothing."""
    if INTERPRET:
        return [triton.Config({}, num_warps=4)]
    return [triton.Config({}, num_warps=w) for w in (2, 4, 8)]


def prune_configs(configs, named_args, **kwargs) -> list:
    """Keep the warp counts that give each thread between VEC (a whole 16-byte access)
    and 32 elements of the block; else the fewest warps."""
    a = {**named_args, **kwargs}
    elems = a["BLOCK_A"] * a["BLOCK_R"] * a["BLOCK_T"] * a["BLOCK_K"]
    keep = [c for c in configs if a["VEC"] <= elems // (32 * c.num_warps) <= 32]
    return keep or [min(configs, key=lambda c: c.num_warps)]


AUTOTUNE = dict(configs=autotune_configs(), key=AUTOTUNE_KEY, prune_configs_by={"early_config_prune": prune_configs})


@dataclass(frozen=True)
class Plan:
    CL: bool  # channels_last kernels (the channel axis is contiguous)
    H: int  # the plane as the kernel sees it: (1, H*W) for a flattened NCHW plane
    W: int
    EH: int  # tile height, clamped to H (e >= H is the same single tile-row)
    EW: int  # tile width, clamped to W
    TH: int
    TW: int
    BLOCK_A: int
    BLOCK_R: int
    BLOCK_T: int
    BLOCK_K: int
    SINGLE: bool  # a whole tile-row fits one block: each tile is read once
    VEC: int  # elements per access on the contiguous axis that the compiler may assume
    grid: tuple
    PERSIST: bool = False  # gather_excite kernels: programs walk grid positions (plan_persistent)

    def meta(self) -> dict:
        return dict(CL=self.CL, VEC=self.VEC, BLOCK_A=self.BLOCK_A, BLOCK_R=self.BLOCK_R,
                    BLOCK_T=self.BLOCK_T, BLOCK_K=self.BLOCK_K)


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def plan(xk: torch.Tensor, extent: int, block_bytes: int, others=()) -> Plan | None:
    """Block shape, vector width and grid for the kernel input xk (dense NCHW or
    channels_last), whose pixel-shaped tensors (y, dx, residual, dy) are xk and others;
    None (the caller runs the reference) when a row is too wide for one block, a sample
    too large for int32 offsets, the units too many for int32 or the grid too large."""
    N, C, H, W = (int(s) for s in xk.shape)
    t = checks.tile_geom((N, C, H, W), extent)
    tensors = (xk, *others)
    if any(sum((int(sz) - 1) * abs(int(st)) for sz, st in zip(u.shape[1:], u.stride()[1:])) >= INT32_LIMIT
           for u in tensors):
        return None
    if N * C * t.th >= INT32_LIMIT:  # NCHW unit indices (channels_last: N*TH and C, smaller)
        return None
    block = block_bytes // xk.element_size()
    cl = not checks.is_nchw(xk)
    EH, EW = min(t.eh, H), min(t.ew, W)
    flat = False
    if not cl and t.th == t.tw == 1 and H > 1 and _pow2(H * W) <= block and all(_flat_planes(u) for u in tensors):
        # one tile per plane, each plane contiguous: see it as one row of H*W pixels, so
        # that accesses run over whole planes (tiny odd planes such as 7x7 included)
        H, W = 1, H * W
        EH, EW = H, W
        flat = True
    BLOCK_K, BLOCK_T = _pow2(EW), _pow2(t.tw)
    cols = BLOCK_K * BLOCK_T
    if cols > MAX_ROW:
        return None
    rows = _pow2(EH)
    if cl:
        BLOCK_A = max(1, min(_pow2(C), CL_CHANNELS, block // cols))
        min_a = min(BLOCK_A, 32 // xk.element_size())  # whole 32-byte sectors of each pixel
        while BLOCK_A > min_a and N * t.th * triton.cdiv(C, BLOCK_A) < MIN_PROGRAMS:
            BLOCK_A //= 2
        BLOCK_R = max(1, min(rows, block // (BLOCK_A * cols)))
        grid = (N * t.th, triton.cdiv(C, BLOCK_A))
        vec = _vec(tensors, 1, min(BLOCK_A, VEC_BYTES // xk.element_size()), (C,))
    else:
        BLOCK_R = max(1, min(rows, block // cols))
        units = N * C * t.th
        BLOCK_A = max(1, min(_pow2(units), block // (BLOCK_R * cols))) if BLOCK_R >= EH else 1
        while BLOCK_A > 1 and triton.cdiv(units, BLOCK_A) < MIN_PROGRAMS:
            BLOCK_A //= 2
        grid = (triton.cdiv(units, BLOCK_A),)
        # a flattened plane never steps along H: its stride does not matter
        vec = _vec(tensors, 3, min(BLOCK_K, VEC_BYTES // xk.element_size()), (EW, W), ignore=2 if flat else None)
    if any(g > m for g, m in zip(grid, MAX_GRID)):
        return None
    return Plan(cl, H, W, EH, EW, t.th, t.tw, BLOCK_A, BLOCK_R, BLOCK_T, BLOCK_K, BLOCK_R >= EH, vec, grid)


def plan_persistent(p: Plan, xk: torch.Tensor, block_bytes: int) -> Plan:
    """Knob triton_cl_global = persistent, for the gather_excite kernels on channels_last
    planes too large for one block. The default plan reduces a plane in one sweep and
    re-reads it in a second, with every program of a large grid in flight at once: the
    re-read (about 200 MB for WRN / ResNet stages) misses the L2. Here a fixed number of
    programs walk the (image, channel group) positions in order, with groups of one
    32-byte sector per pixel, so that the planes between the two sweeps of all programs
    together stay within PERSIST_L2_BYTES and the second sweep hits the L2."""
    if _tuning.get("triton_cl_global") != "persistent" or not p.CL or p.TH != 1 or p.TW != 1 or p.SINGLE:
        return p
    N, C = int(xk.shape[0]), int(xk.shape[1])
    es = xk.element_size()
    a = max(p.VEC, min(p.BLOCK_A, PERSIST_GROUP_BYTES // es))  # VEC divides C and a
    cols = p.BLOCK_K * p.BLOCK_T
    r = max(1, min(_pow2(p.EH), block_bytes // es // (a * cols)))
    positions = N * triton.cdiv(C, a)
    if INTERPRET or xk.device.type != "cuda":
        programs = PERSIST_INTERPRET_PROGRAMS
    else:
        sms = torch.cuda.get_device_properties(xk.device).multi_processor_count
        programs = max(sms, PERSIST_L2_BYTES // (a * p.H * p.W * es))
    return replace(p, BLOCK_A=a, BLOCK_R=r, SINGLE=r >= p.EH, PERSIST=True, grid=(min(positions, programs),))


def _flat_planes(t: torch.Tensor) -> bool:
    """Each (n, c) plane of t is H*W consecutive elements."""
    return int(t.stride(3)) == 1 and int(t.stride(2)) == int(t.shape[3])


def _vec(tensors, dim: int, limit: int, extents, ignore: int | None = None) -> int:
    """The widest power of two v <= limit such that, in every tensor, axis `dim` has
    stride 1 and every other stride and the storage offset are multiples of v, and v
    divides every extent: then each v-run on that axis is v aligned elements, all in or
    all out of bounds."""
    v = limit
    while v > 1:
        if all(e % v == 0 for e in extents) and all(_aligned(t, dim, v, ignore) for t in tensors):
            return v
        v //= 2
    return 1


def _aligned(t: torch.Tensor, dim: int, v: int, ignore: int | None) -> bool:
    if int(t.stride(dim)) != 1 or int(t.storage_offset()) % v:
        return False
    return all(int(st) % v == 0 for d, (sz, st) in enumerate(zip(t.shape, t.stride()))
               if d not in (dim, ignore) and sz > 1)


def strides(t: torch.Tensor) -> tuple:
    return tuple(int(s) for s in t.stride())


def check_device(xk: torch.Tensor) -> None:
    if not INTERPRET and runnable(xk) and xk.device.type != "cuda":
        raise RuntimeError(
            f"genet_ops: the Triton kernels run on CUDA tensors (or anywhere under TRITON_INTERPRET=1), "
            f"got x on {xk.device}"
        )


def runnable(*tensors: torch.Tensor) -> bool:
    """Whether a kernel launch can happen now. Compiled kernels are traced through
    wrap_triton on fake tensors; interpreted ones cannot be (they read memory), so there
    the fake kernel only allocates the outputs, and keep_opaque() below keeps the op
    whole in compiled graphs, to run on real tensors."""
    if not INTERPRET:
        return True
    return not any(is_fake(t) or isinstance(t, FunctionalTensor) or t.device.type == "meta" for t in tensors)


def keep_opaque(op) -> None:
    """Under the interpreter, don't let AOTAutograd decompose the triton_op into its
    kernels (it cannot trace an interpreted kernel): it stays one op in the graph."""
    if INTERPRET:
        op.register_torch_dispatch(
            FunctionalTensorMode, lambda mode, op_, types, args, kwargs: mode.__torch_dispatch__(op_, types, args, kwargs)
        )


def empty_in_layout(g: torch.Tensor, nchw: bool) -> torch.Tensor:
    """torch.empty_like(checks.g_for_layout(g, nchw)) without copying g."""
    fmt = torch.contiguous_format if nchw else torch.channels_last
    return torch.empty_like(g) if g.is_contiguous(memory_format=fmt) else torch.empty_like(g, memory_format=fmt)


def schema(op: str) -> str:
    """The argument list of genet_ops::<op>, for its Triton twin."""
    from .. import ops

    return "(" + ops.SCHEMAS[op].split("(", 1)[1]
