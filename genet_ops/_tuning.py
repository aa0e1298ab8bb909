"""Internal knobs that select alternative launch plans of the GPU kernels (not public API).

Each knob targets one spot where a static reading of the planners predicts less than
copy bandwidth. values[0] is the current default plan; the others are alternatives
that pass the same parity tests, kept behind the knob until a GPU run times both side
by side (benchmarks/gpu_check.sh) and picks the default by measurement.

    from genet_ops import _tuning
    with _tuning.using("cuda_nchw_small_plane", "packed"):
        y = genet_ops.gather_excite(x, 0)

CUDA knobs live in the C++ planner (csrc/cuda/tuning.h) as plain globals, set through
the op genet_ops::_set_tuning; Triton knobs are read by genet_ops/triton/_launch.py
when it plans a launch. A knob changes only plans where applies() can be true; elsewhere
every value runs the default plan.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["KNOBS", "Knob", "add_sink", "get", "set", "using"]


@dataclass(frozen=True)
class Knob:
    values: tuple  # tuple[str, ...]; values[0] is the current default
    backend: str  # "cuda" | "triton"
    ops: tuple  # op names (genet_ops.ops.SCHEMAS) whose plan the knob can change
    applies: Callable[[str, tuple, int], bool]  # (layout "nchw" | "channels_last", (N, C, H, W), extent)
    doc: str  # one line: what the alternative does and why


def _one_tile_per_plane(shape, extent: int) -> bool:
    _, _, h, w = shape
    return extent == 0 or extent >= max(h, w)


def _small_odd_plane(layout: str, shape, extent: int) -> bool:
    # planes the default plan reads with vectors narrower than 16 bytes (H*W not a
    # multiple of 8) and that fit a packed unit in every dtype (csrc/cuda/planner.h)
    _, _, h, w = shape
    return layout == "nchw" and _one_tile_per_plane(shape, extent) and 8 <= h * w <= 256 and (h * w) % 8 != 0


_ALL_OPS = ("gather_excite", "gather_excite_backward", "excite", "excite_backward", "gather_excite_lean",
            "excite_lean", "excite_lean_backward")
# gather_excite_lean runs gather_excite's forward kernels, the packed and staged ones too.
_GATHER_EXCITE_OPS = ("gather_excite", "gather_excite_backward", "gather_excite_lean")

KNOBS: dict = {
    "cuda_items_per_thread": Knob(
        values=("max", "fit"),
        backend="cuda",
        ops=_ALL_OPS,
        applies=lambda layout, shape, extent: True,
        doc="fit: kernels instantiated for 2 / 4 / 8 items per thread as the plan needs, so registers "
            "(and occupancy) follow the plan instead of the 8-item maximum",
    ),
    "cuda_nchw_small_plane": Knob(
        values=("per_plane", "packed"),
        backend="cuda",
        ops=_GATHER_EXCITE_OPS,
        applies=_small_odd_plane,
        doc="packed: a team reads 2-8 whole small planes (e.g. 7x7) as one contiguous run with 16-byte "
            "loads and sums each plane in registers, instead of 2- or 4-byte loads per plane",
    ),
    "cuda_nchw_narrow_rows": Knob(
        values=("per_tile", "staged"),
        backend="cuda",
        ops=_GATHER_EXCITE_OPS,
        applies=lambda layout, shape, extent: (layout == "nchw" and 0 < extent < shape[3] and shape[3] % 8 != 0
                                               and shape[2] * shape[3] <= 4096),
        doc="staged: tiles on rows too narrow for wide vectors (W = 14: 4-byte loads, 1-2-thread teams) are "
            "read as whole planes with 16-byte loads and summed per tile in shared memory",
    ),
    "cuda_nhwc_team": Knob(
        values=("max512", "team128"),
        backend="cuda",
        ops=_ALL_OPS,
        applies=lambda layout, shape, extent: (layout == "channels_last"
                                               and min(extent or shape[2], shape[2]) * min(extent or shape[3], shape[3])
                                               >= 196),
        doc="team128: channels_last teams of at most 128 threads (four blocks per SM instead of one 512-thread "
            "block at ~126 registers); tiles too large for them are swept twice in 64-byte channel groups",
    ),
    "triton_cl_global": Knob(
        values=("two_sweep", "persistent"),
        backend="triton",
        ops=("gather_excite", "gather_excite_backward"),
        applies=lambda layout, shape, extent: (layout == "channels_last" and _one_tile_per_plane(shape, extent)
                                               and shape[2] * shape[3] >= 100),
        doc="persistent: on channels_last planes too large for one block, a fixed number of programs walk "
            "32-byte channel groups in order, so the second sweep re-reads x from L2 instead of HBM",
    ),
}

_values: dict = {name: k.values[0] for name, k in KNOBS.items()}
# Setters of compiled planners that mirror the CUDA knobs: (name, value index) -> None.
_sinks: list = []


def _knob(name: str) -> Knob:
    if name not in KNOBS:
        raise ValueError(f"genet_ops._tuning: unknown knob {name!r}; knobs: {sorted(KNOBS)}")
    return KNOBS[name]


def _cuda_sink(name: str, index: int) -> None:
    ns = torch.ops.genet_ops
    if hasattr(ns, "_set_tuning"):  # only when _C was built with the CUDA sources
        ns._set_tuning(name, index)


def add_sink(setter: Callable[[str, int], None]) -> None:
    """Mirror the CUDA knobs into another compiled planner too (the tests' CUDA
    emulator); it receives every knob's current value at once."""
    _sinks.append(setter)
    for name, k in KNOBS.items():
        if k.backend == "cuda":
            setter(name, k.values.index(_values[name]))


def set(name: str, value: str) -> None:  # noqa: A001  (the interface's name)
    k = _knob(name)
    if value not in k.values:
        raise ValueError(f"genet_ops._tuning: knob {name!r} has no value {value!r}; values: {k.values}")
    if k.backend == "cuda":
        for sink in [_cuda_sink, *_sinks]:
            sink(name, k.values.index(value))
    _values[name] = value


def get(name: str) -> str:
    _knob(name)
    return _values[name]


@contextlib.contextmanager
def using(name: str, value: str):
    """Run the block with knob `name` at `value`, then restore the previous value."""
    before = get(name)
    set(name, value)
    try:
        yield
    finally:
        set(name, before)
