"""genet_ops._tuning: the internal knobs that select alternative launch plans.

The interface (unknown knob / value errors, using() restores), and every value of every
knob against the float64 reference on small shapes where the knob applies: CUDA knobs
on the CUDA kernel emulator (tests/emu/cuda, conftest's cuda_emu fixture), Triton knobs
under the Triton interpreter. Each alternative is also checked to really change the
plan, so that a knob that stopped reaching its planner fails here.
"""
import pytest
import torch

from genet_ops import checks, _tuning, ops, reference
from genet_ops.triton import _launch
import oracle
from oracle import assert_within_budget
from parity import TRITON_ATOL, check_emu_both_orders, check_four_ops, emu_fns, make, triton_device, triton_floor

CUDA_KNOBS = [n for n, k in _tuning.KNOBS.items() if k.backend == "cuda"]
TRITON_KNOBS = [n for n, k in _tuning.KNOBS.items() if k.backend == "triton"]
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
# Small shapes, (shape, extent); each knob runs on those where it applies.
SHAPES = [
    ((2, 4, 7, 7), 0),      # 49-element planes: 2-byte loads by default
    ((3, 3, 7, 7), 0),      # planes per unit that do not divide N * C
    ((1, 6, 5, 5), 9),      # extent beyond the plane
    ((2, 2, 14, 14), 0),
    ((1, 2, 14, 14), 2),    # tiles narrower than a vector
    ((1, 2, 14, 14), 4),
    ((1, 16, 9, 6), 2),
    ((1, 16, 14, 14), 0),
    ((1, 8, 24, 24), 0),
    ((2, 32, 10, 10), 0),   # channels_last: several channel groups per image
    ((1, 16, 36, 36), 0),   # channels_last: past the registers of a 128-thread team
    ((2, 3, 10, 14), 3),    # partial tiles both ways
]


def make_triton(shape, dtype, layout, seed=0):
    """A Triton test input in a knob's layout ("nchw" or "channels_last")."""
    return oracle.make(shape, dtype, "contiguous" if layout == "nchw" else layout, seed, triton_device())


def _layout_name(layout):
    return "nchw" if layout in ("contiguous", "misaligned") else "channels_last"


# ------------------------------------------------------------------------ interface
def test_tuning_knobs_are_well_formed():
    assert CUDA_KNOBS, "no CUDA knob"
    for name, k in _tuning.KNOBS.items():
        assert k.backend in ("cuda", "triton"), name
        assert len(k.values) >= 2 and len(set(k.values)) == len(k.values), name
        assert k.ops and set(k.ops) <= set(ops.SCHEMAS), name
        assert isinstance(k.doc, str) and k.doc and "\n" not in k.doc, name
        assert _tuning.get(name) == k.values[0], f"{name} is not at its default"
        assert isinstance(k.applies("nchw", (2, 3, 7, 7), 0), bool)


def test_tuning_unknown_knob_or_value_names_it():
    with pytest.raises(ValueError, match="no_such_knob"):
        _tuning.set("no_such_knob", "x")
    with pytest.raises(ValueError, match="no_such_knob"):
        _tuning.get("no_such_knob")
    name = next(iter(_tuning.KNOBS))
    with pytest.raises(ValueError, match=f"{name}.*bogus"):
        _tuning.set(name, "bogus")
    assert _tuning.get(name) == _tuning.KNOBS[name].values[0]


@pytest.mark.parametrize("name", list(_tuning.KNOBS))
def test_tuning_using_restores(name):
    values = _tuning.KNOBS[name].values
    with _tuning.using(name, values[1]):
        assert _tuning.get(name) == values[1]
        with _tuning.using(name, values[0]):
            assert _tuning.get(name) == values[0]
        assert _tuning.get(name) == values[1]
    assert _tuning.get(name) == values[0]
    with pytest.raises(RuntimeError, match="inside"):
        with _tuning.using(name, values[1]):
            raise RuntimeError("inside")
    assert _tuning.get(name) == values[0]


def test_tuning_compiled_setter_checks_its_arguments():
    ns = torch.ops.genet_ops
    if not hasattr(ns, "_set_tuning"):
        pytest.skip("genet_ops._C built without the CUDA sources")
    with pytest.raises(ValueError, match="unknown CUDA tuning knob nope"):
        ns._set_tuning("nope", 0)
    with pytest.raises(ValueError, match="cuda_items_per_thread"):
        ns._set_tuning("cuda_items_per_thread", 7)


# ------------------------------------------------------------- CUDA knobs (emulator)
def _cases(name):
    k = _tuning.KNOBS[name]
    return [(name, v, s, e) for v in k.values for s, e in SHAPES
            if k.applies("nchw", s, e) or k.applies("channels_last", s, e)]


def _ids(v):
    return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)


@pytest.mark.parametrize("name,value,shape,extent", [c for n in CUDA_KNOBS for c in _cases(n)], ids=_ids)
def test_tuning_cuda_knob_emu_parity(cuda_emu, name, value, shape, extent, poison_outputs):
    k = _tuning.KNOBS[name]
    with _tuning.using(name, value):
        for dtype in DTYPES:
            for i, layout in enumerate(("contiguous", "channels_last", "misaligned")):
                if not k.applies(_layout_name(layout), shape, extent):
                    continue
                for with_res in (False, True):
                    check_emu_both_orders(cuda_emu, shape, extent, dtype, layout, with_res, relu=with_res)
                # the output-keeping ops on the same plans: the means from the alternative
                # forward kernels, the lean backward on the knob's plan
                check_emu_both_orders(cuda_emu, shape, extent, dtype, layout, i % 2 == 0, relu=i % 2 == 1, lean=True)


def _plan(cuda_emu, shape, extent, dtype, layout, nvals=1):
    """emu_plan as a dict (tests/emu/cuda/emu_ext.cpp)."""
    keys = ["layout", "V", "Tc", "R", "T", "items", "cache", "block", "flat", "multi_tile", "K", "pack", "staged"]
    return dict(zip(keys, cuda_emu.emu_plan(make(shape, dtype, layout, 0), extent, nvals)))


def test_tuning_items_per_thread_changes_the_instance(cuda_emu):
    """fit instantiates the kernel for the smallest of 2, 4, 8 items that holds the plan."""
    for shape, extent, dtype in [((1, 2, 14, 14), 2, torch.bfloat16), ((1, 16, 9, 6), 2, torch.float32),
                                 ((2, 4, 8, 8), 0, torch.bfloat16), ((2, 4, 7, 7), 0, torch.float32)]:
        for layout in ("contiguous", "channels_last"):
            assert _plan(cuda_emu, shape, extent, dtype, layout)["K"] == 8
            with _tuning.using("cuda_items_per_thread", "fit"):
                p = _plan(cuda_emu, shape, extent, dtype, layout)
            assert p["K"] == min(k for k in (2, 4, 8) if k >= p["items"]), (shape, layout, p)
    with _tuning.using("cuda_items_per_thread", "fit"):  # 14x14 bf16, extent 2: 2-row tiles of one vector
        assert _plan(cuda_emu, (1, 2, 14, 14), 2, torch.bfloat16, "contiguous")["K"] == 2


def test_tuning_small_plane_packs_whole_planes(cuda_emu):
    """packed: 7x7 planes go from scalar loads to 16-byte vectors over 8 (bf16) or 4 (fp32)
    planes per unit; it falls back to the per-plane plan where planes cannot pack."""
    for dtype, V, pack in [(torch.bfloat16, 8, 8), (torch.float32, 4, 4), (torch.float64, 2, 2)]:
        assert _plan(cuda_emu, (2, 4, 7, 7), 0, dtype, "contiguous")["V"] == 1
        with _tuning.using("cuda_nchw_small_plane", "packed"):
            for nvals in (1, 2):
                p = _plan(cuda_emu, (2, 4, 7, 7), 0, dtype, "contiguous", nvals)
                assert (p["V"], p["pack"], p["T"], p["items"]) == (V, pack, 8, 7), p
    with _tuning.using("cuda_nchw_small_plane", "packed"):
        assert _plan(cuda_emu, (3, 3, 7, 7), 0, torch.float32, "contiguous")["pack"] == 0  # 9 planes: no whole units
        assert _plan(cuda_emu, (2, 4, 7, 7), 0, torch.float32, "misaligned")["pack"] == 0
        assert _plan(cuda_emu, (1, 6, 5, 5), 9, torch.bfloat16, "contiguous")["pack"] == 2
        assert _plan(cuda_emu, (2, 2, 14, 14), 0, torch.bfloat16, "contiguous")["pack"] == 2
        assert _plan(cuda_emu, (2, 2, 14, 14), 0, torch.float32, "contiguous")["pack"] == 0  # 16-byte loads already


def test_tuning_cuda_knobs_combine(cuda_emu, poison_outputs):
    """Both CUDA alternatives at once: the packed kernels instantiated for fewer items."""
    with _tuning.using("cuda_nchw_small_plane", "packed"), _tuning.using("cuda_items_per_thread", "fit"):
        for dtype in (torch.float32, torch.bfloat16):
            for shape in ((2, 4, 7, 7), (2, 4, 5, 5), (1, 8, 3, 3)):
                p = _plan(cuda_emu, shape, 0, dtype, "contiguous")
                assert p["pack"] and p["K"] == min(k for k in (2, 4, 8) if k >= p["items"]), p
                check_four_ops(emu_fns(cuda_emu), shape, 0, dtype, "contiguous", True)



def test_tuning_narrow_rows_stages_whole_planes(cuda_emu):
    """staged: 14x14 bf16 at extents 2 and 4 goes from 4-byte loads to 16-byte loads over
    two planes per unit; elsewhere the per-tile plan stays."""
    for extent in (2, 4):
        assert _plan(cuda_emu, (1, 2, 14, 14), extent, torch.bfloat16, "contiguous")["V"] == 2
        with _tuning.using("cuda_nchw_narrow_rows", "staged"):
            for nvals in (1, 2):
                p = _plan(cuda_emu, (1, 2, 14, 14), extent, torch.bfloat16, "contiguous", nvals)
                assert (p["staged"], p["V"], p["pack"], p["T"], p["items"]) == (1, 8, 2, 8, 7), p
    with _tuning.using("cuda_nchw_narrow_rows", "staged"):
        p = _plan(cuda_emu, (1, 3, 14, 14), 2, torch.bfloat16, "contiguous")  # 3 planes: no pairs, 8-byte loads
        assert (p["staged"], p["V"], p["pack"]) == (1, 4, 1), p
        assert not _plan(cuda_emu, (1, 2, 14, 14), 2, torch.bfloat16, "misaligned")["staged"]
        assert not _plan(cuda_emu, (1, 2, 16, 16), 2, torch.bfloat16, "contiguous")["staged"]  # 16-byte rows already


def test_tuning_nhwc_team_caps_the_team(cuda_emu):
    for dtype in (torch.bfloat16, torch.float32):
        es = torch.tensor([], dtype=dtype).element_size()
        big = _plan(cuda_emu, (1, 256, 14, 14), 0, dtype, "channels_last")
        assert big["T"] == 512 and big["cache"], big
        with _tuning.using("cuda_nhwc_team", "team128"):
            p = _plan(cuda_emu, (1, 256, 14, 14), 0, dtype, "channels_last")
            assert p["T"] <= 128 and p["cache"], p
            p = _plan(cuda_emu, (1, 64, 36, 36), 0, dtype, "channels_last", 2)
            assert p["T"] == 128 and not p["cache"] and p["Tc"] * p["V"] * es >= 64, p
        assert _plan(cuda_emu, (1, 64, 36, 36), 0, dtype, "channels_last", 2)["cache"]


# ----------------------------------------------------------- Triton knobs (interpreter)
@pytest.mark.parametrize("name,value,shape,extent", [c for n in TRITON_KNOBS for c in _cases(n)], ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_tuning_triton_knob_parity(name, value, shape, extent, dtype, poison_outputs):
    k = _tuning.KNOBS[name]
    tg = torch.ops.genet_ops
    with _tuning.using(name, value):
        for layout in ("nchw", "channels_last"):
            if not k.applies(layout, shape, extent):
                continue
            x, res, dy = (make_triton(shape, dtype, layout, seed) for seed in (0, 1, 2))
            what = f"{name}={value} {shape} e={extent} {dtype} {layout}"
            x64, r64, dy64 = x.double(), res.double(), dy.double()
            y = tg.gather_excite_triton(x, extent, res)
            assert_within_budget(y, reference.gather_excite(x64, extent, r64),
                                 triton_floor(reference.gather_excite, x, extent, res), what, TRITON_ATOL[dtype])
            dx = tg.gather_excite_backward_triton(dy, x, extent)
            assert_within_budget(dx, reference.gather_excite_backward(dy64, x64, extent),
                                 triton_floor(reference.gather_excite_backward, dy, x, extent), "backward " + what,
                                 TRITON_ATOL[dtype])
            assert dx.stride() == x.stride() and y.stride() == x.stride(), what


def test_tuning_triton_persistent_walks_several_positions():
    x = make_triton((2, 32, 10, 10), torch.float32, "channels_last")
    p = _launch.plan(checks.kernel_input(x), 0, _launch.FWD_BLOCK_BYTES)
    assert not p.SINGLE and not _launch.plan_persistent(p, x, _launch.FWD_BLOCK_BYTES).PERSIST
    with _tuning.using("triton_cl_global", "persistent"):
        q = _launch.plan_persistent(p, x, _launch.FWD_BLOCK_BYTES)
        assert q.PERSIST and q.BLOCK_A == 8 and q.grid == (_launch.PERSIST_INTERPRET_PROGRAMS,)
        # NCHW and planes that fit one block keep their plan
        xn = make_triton((2, 32, 10, 10), torch.float32, "nchw")
        assert not _launch.plan_persistent(_launch.plan(xn, 0, _launch.FWD_BLOCK_BYTES), xn, _launch.FWD_BLOCK_BYTES).PERSIST
