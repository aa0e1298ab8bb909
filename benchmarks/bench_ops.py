"""Microbenchmarks of the genet_ops ops: forward, backward and forward+backward ("full")
of gather_excite and excite, per provider, on the WRN-16-8 and ResNet-50 stage shapes.

    python benchmarks/bench_ops.py                      # CPU, everything (~10 min on 2 idle cores)
    python benchmarks/bench_ops.py --quick              # a small subset, a minute or two
    python benchmarks/bench_ops.py --device cuda        # adds the triton provider
    python benchmarks/bench_ops.py --shapes wrn --extents 0 --layouts nchw --modes full
    python benchmarks/bench_ops.py --device cuda --check # correctness at full size, no timing
    python benchmarks/bench_ops.py --device cuda --ab    # each genet_ops._tuning knob's values

Shapes: the WRN-16-8 and ResNet-50 stages, at N = 512 (WRN) and 256 (ResNet-50) on a
GPU, the batches people train with; N = 128 and 32 on the CPU.

Providers (PROVIDERS below; add one for a new device there):
  eager      the code a user writes: x * sigmoid(x.mean((2, 3), keepdim=True)) for extent 0,
             avg_pool2d(ceil_mode=True) + nearest interpolate (cropped) for extent e; + residual
  compile    torch.compile of eager (default mode)
  fused      torch.ops.genet_ops.<op>: the compiled kernel of the device (C++ on CPU)
  fused_lean genet_ops.<op>(..., save="output"): the same forward kernel (gather_excite_lean also
             writes the tile means), backward by excite_lean_backward from the output
  triton     torch.ops.genet_ops.<op>_triton (CUDA only)
  reference  genet_ops.reference (pure PyTorch, the test oracle; only when asked for)
  clone      x.clone(): the copy every GB/s is compared with (docs/DESIGN.md §5)

Prints a table (ms, GB/s, fraction of clone's GB/s, speedup vs eager and vs compile) and
writes <out>/<device>-<date>.{csv,json,png}; the JSON holds the machine's description.
--jsonl PATH also appends every row to PATH as soon as its case is done, so a run that
is cut off keeps what it finished (benchmarks/gpu_check.sh reads it); --deadline S stops
starting new cases after S seconds (exit status 3).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # genet_ops from the checkout
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import common  # noqa: E402

# Stage shapes (C, H, W) and the batch per device class.
STAGES = {
    "wrn": [("wrn-s1", (128, 32, 32)), ("wrn-s2", (256, 16, 16)), ("wrn-s3", (512, 8, 8))],
    "resnet50": [("rn50-s1", (256, 56, 56)), ("rn50-s2", (512, 28, 28)),
                 ("rn50-s3", (1024, 14, 14)), ("rn50-s4", (2048, 7, 7))],
}
BATCH = {"cpu": {"wrn": 128, "resnet50": 32}, "gpu": {"wrn": 512, "resnet50": 256}}


def shapes_for(which: str, device: str) -> list[tuple[str, tuple]]:
    """[(name, (N, C, H, W))] of the stage set `which` (wrn, resnet50, all) on `device`."""
    batch = BATCH["cpu" if device == "cpu" else "gpu"]
    nets = ["wrn", "resnet50"] if which == "all" else [which]
    return [(name, (batch[net], *chw)) for net in nets for name, chw in STAGES[net]]


QUICK_SHAPES = ["wrn-s3", "rn50-s4"]
MODES = ("forward", "backward", "full")
OPS = ("gather_excite", "excite")


# ----------------------------------------------------------------- the eager code
# Deliberately the code a user writes (mean / pooling, interpolate, in x's dtype), not
# genet_ops.reference (float32 accumulation, one rounding: the test oracle): it is the
# baseline the fused ops must beat.
def eager_gather_excite(x, extent: int, residual=None):
    H, W = x.shape[-2:]
    if extent == 0 or extent >= max(H, W):
        y = x * torch.sigmoid(x.mean((2, 3), keepdim=True))
    else:
        s = torch.sigmoid(F.avg_pool2d(x, extent, extent, ceil_mode=True))
        y = x * F.interpolate(s, scale_factor=extent, mode="nearest")[:, :, :H, :W]
    return y if residual is None else y + residual


def eager_excite(x, g, extent: int, residual=None):
    H, W = x.shape[-2:]
    s = torch.sigmoid(g)
    if s.shape[-2:] != (1, 1):
        s = F.interpolate(s, scale_factor=extent, mode="nearest")[:, :, :H, :W]
    y = x * s
    return y if residual is None else y + residual


EAGER = {"gather_excite": eager_gather_excite, "excite": eager_excite}


# -------------------------------------------------------------------- providers
@dataclass
class Case:
    op: str
    shape_name: str
    shape: tuple
    dtype: torch.dtype
    layout: str  # "nchw" | "cl"
    extent: int
    residual: bool
    device: str


class Provider:
    """A way to run an op. unavailable() says why it cannot run here (None: it can);
    make() returns fn(x, [g,] [residual]) -> y for one case."""

    name = ""

    def unavailable(self, device: str, op: str) -> str | None:
        return None

    def impl(self, device: str, op: str) -> str:
        return self.name

    def make(self, case: Case):
        raise NotImplementedError

    def context(self):
        """Entered around this provider's warm-up and timing (an A/B variant sets its knob)."""
        return contextlib.nullcontext()

    def tags(self) -> dict:
        """Extra row fields (an A/B variant's knob and value)."""
        return {}


def _bind(fn, case: Case):
    """fn(x, [g], extent, residual) -> a callable taking the case's tensors."""
    e = case.extent
    if case.op == "excite":
        return (lambda x, g, r: fn(x, g, e, r)) if case.residual else (lambda x, g: fn(x, g, e))
    return (lambda x, r: fn(x, e, r)) if case.residual else (lambda x: fn(x, e))


class Eager(Provider):
    name = "eager"

    def make(self, case):
        return _bind(EAGER[case.op], case)


class Compile(Provider):
    name = "compile"

    def make(self, case):
        torch._dynamo.reset()  # one case's graphs at a time: no recompile limit, no stale guards
        return _bind(torch.compile(EAGER[case.op], dynamic=False), case)  # default mode, what users run


class Fused(Provider):
    name = "fused"

    def _kernel(self, device, op):
        import genet_ops

        return genet_ops.backend_info()["kernels"][op].get(device, "reference")

    def unavailable(self, device, op):
        import genet_ops

        info = genet_ops.backend_info()
        if not info["extension_loaded"]:
            return f"extension not loaded ({info['extension_error']})"
        if self._kernel(device, op) == "reference":
            return f"no compiled {op} kernel for {device}"
        return None

    def impl(self, device, op):
        return self._kernel(device, op)

    def make(self, case):
        return _bind(getattr(torch.ops.genet_ops, case.op), case)


class FusedLean(Fused):
    """fused with save='output' (the public wrappers): gather_excite_lean / excite_lean, whose
    backward, excite_lean_backward, reads the output and the residual instead of x. Timed
    next to fused, whose backward keeps the input."""

    name = "fused_lean"
    LEAN = {"gather_excite": "gather_excite_lean", "excite": "excite_lean"}

    def _kernel(self, device, op):
        kernels = {super(FusedLean, self)._kernel(device, o) for o in (self.LEAN[op], "excite_lean_backward")}
        return "reference" if "reference" in kernels else kernels.pop()

    def make(self, case):
        import genet_ops

        fn = getattr(genet_ops, case.op)
        return _bind(lambda *args: fn(*args, save="output"), case)


class Triton(Provider):
    name = "triton"

    def unavailable(self, device, op):
        if device != "cuda":
            return "Triton kernels run on CUDA only"
        import genet_ops  # noqa: F401  (registers the *_triton ops where triton is installed)

        if not hasattr(torch.ops.genet_ops, f"{op}_triton"):
            return f"torch.ops.genet_ops.{op}_triton is not registered (triton missing?)"
        return None

    def make(self, case):
        return _bind(getattr(torch.ops.genet_ops, f"{case.op}_triton"), case)


class Reference(Provider):
    name = "reference"

    def make(self, case):
        from genet_ops import reference

        return _bind(getattr(reference, case.op), case)


class Clone(Provider):
    """The copy baseline: forward only, same size as x."""

    name = "clone"

    def make(self, case):
        return lambda x, *rest: x.detach().clone()


PROVIDERS: dict[str, Provider] = {p.name: p for p in (Eager(), Compile(), Fused(), FusedLean(), Triton(), Reference(),
                                                     Clone())}


class Variant(Provider):
    """A provider (fused or triton) run with one genet_ops._tuning knob at one value."""

    def __init__(self, base: Provider, knob: str, value: str, default: bool):
        self.base, self.knob, self.value, self.default = base, knob, value, default
        self.name = f"{base.name}:{knob}={value}"

    def impl(self, device, op):
        return self.base.impl(device, op)

    def make(self, case):
        return self.base.make(case)

    def context(self):
        from genet_ops import _tuning

        return _tuning.using(self.knob, self.value)

    def tags(self):
        return {"knob": self.knob, "variant": self.value, "default": self.default, "base": self.base.name}


# ------------------------------------------------------------------------ running
@dataclass
class Inputs:
    tensors: list  # positional inputs of the bound fn
    dy: torch.Tensor
    x: torch.Tensor
    g_numel: int = 0
    extra: list = field(default_factory=list)


def make_inputs(case: Case) -> Inputs:
    N, C, H, W = case.shape
    fmt = torch.channels_last if case.layout == "cl" else torch.contiguous_format
    opts = dict(device=case.device, dtype=case.dtype)
    x = torch.randn(case.shape, **opts).contiguous(memory_format=fmt).requires_grad_()
    tensors = [x]
    g_numel = 0
    if case.op == "excite":
        gs = (N, C, 1, 1) if case.extent == 0 else (N, C, math.ceil(H / case.extent), math.ceil(W / case.extent))
        g = torch.randn(gs, **opts).requires_grad_()
        tensors.append(g)
        g_numel = g.numel()
    if case.residual:
        tensors.append(torch.randn(case.shape, **opts).contiguous(memory_format=fmt).requires_grad_())
    dy = torch.randn(case.shape, **opts).contiguous(memory_format=fmt)
    return Inputs(tensors, dy, x, g_numel)


def runner(mode: str, fn, inp: Inputs) -> common.Step:
    """(prepare, run): run() does one step of `mode`; prepare(), untimed, builds what it
    needs. backward gets a fresh graph per call (compiled backwards refuse retain_graph)."""
    t = inp.tensors
    if mode == "forward":
        return None, lambda: fn(*t)
    if mode == "full":
        return None, lambda: torch.autograd.grad(fn(*t), t, inp.dy)
    state = {}

    def prepare():
        state["y"] = fn(*t)

    return prepare, lambda: torch.autograd.grad(state.pop("y"), t, inp.dy)


def rotated_runner(mode: str, fn, case: Case, l2: int) -> common.Step:
    """CUDA: cycle through enough input sets that each call misses L2 (when cheap)."""
    xbytes = math.prod(case.shape) * torch.tensor([], dtype=case.dtype).element_size()
    sets = 1 if xbytes >= 4 * l2 else min(8, math.ceil(4 * l2 / xbytes))
    steps = [runner(mode, fn, make_inputs(case)) for _ in range(sets)]
    if sets == 1:
        return steps[0]
    state = {"i": 0}

    def advance():
        state["i"] = (state["i"] + 1) % sets
        return steps[state["i"]]

    if steps[0][0] is None:
        return None, lambda: advance()[1]()

    def prepare():
        advance()[0]()

    return prepare, lambda: steps[state["i"]][1]()


def bench_case(case: Case, providers: list[Provider], modes: list[str], budget_s: float, wait_s: float,
               rep_ms: float = 100) -> list[dict]:
    torch.manual_seed(0)
    inp = make_inputs(case)
    rows: list[dict] = []
    fns, notes = {}, {}
    for p in providers:
        try:
            fns[p.name] = p.make(case)
        except Exception as exc:  # noqa: BLE001 - one broken provider must not stop the run
            notes[p.name] = f"error: {type(exc).__name__}: {exc}"[:200]
    by_name = {p.name: p for p in providers}
    clone_ms = None
    busy_seen: dict[str, float | None] = {}
    results: dict[tuple[str, str], float] = {}
    reps: dict[tuple[str, str], int] = {}
    mins: dict[tuple[str, str], float] = {}
    for mode in modes:
        runs = {}
        for name, fn in fns.items():
            if name == "clone" and mode != "forward":
                continue
            try:
                with by_name[name].context():
                    if case.device == "cuda":
                        step = rotated_runner(mode, fn, case, common.l2_bytes("cuda"))
                    else:
                        step = runner(mode, fn, inp)
                    for _ in range(2):  # warm-up (and compilation); allocator and caches settle
                        if step[0] is not None:
                            step[0]()
                        step[1]()
                    common.synchronize(case.device)
                runs[name] = step
            except Exception as exc:  # noqa: BLE001
                notes[name] = f"error: {type(exc).__name__}: {exc}"[:200]
        busy = common.wait_idle(wait_s) if case.device == "cpu" and wait_s > 0 else None
        if case.device == "cuda":
            timed = {}
            for name, step in runs.items():
                with by_name[name].context():
                    timed[name] = common.time_cuda(step, rep_ms=rep_ms)
        else:
            timed = common.time_interleaved(runs, case.device, budget_s=budget_s)
        for name, (ms, n, ms_min) in timed.items():
            if name == "clone":
                clone_ms = ms if clone_ms is None else clone_ms
            results[(name, mode)] = ms
            reps[(name, mode)] = n
            mins[(name, mode)] = ms_min
        busy_seen[mode] = busy
        del runs
    xbytes = inp.x.numel() * inp.x.element_size()
    clone_gbps = 2 * xbytes / clone_ms / 1e6 if clone_ms else None
    for mode in modes:
        eager_ms = results.get(("eager", mode))
        compile_ms = results.get(("compile", mode))
        for p in providers:
            name = p.name
            if name == "clone" and mode != "forward":
                continue
            ms = results.get((name, mode))
            nbytes = 2 * xbytes if name == "clone" else common.bytes_moved(case.op, mode, inp.x, inp.g_numel, case.residual)
            gbps = nbytes / ms / 1e6 if ms else None
            rows.append({
                **case_fields(case), "mode": mode, "provider": name,
                "impl": p.impl(case.device, case.op), "ms": ms, "ms_min": mins.get((name, mode)),
                "reps": reps.get((name, mode)),
                "gbps": gbps, "frac_clone": gbps / clone_gbps if gbps and clone_gbps else None,
                "vs_eager": eager_ms / ms if ms and eager_ms and name != "clone" else None,
                "vs_compile": compile_ms / ms if ms and compile_ms and name != "clone" else None,
                "busy": None if busy_seen.get(mode) is None else round(busy_seen[mode], 2),
                "note": notes.get(name, ""),
                **p.tags(),
            })
    return rows


def case_fields(case: Case) -> dict:
    return {"op": case.op, "shape_name": case.shape_name, "shape": "x".join(map(str, case.shape)),
            "dtype": str(case.dtype).replace("torch.", ""), "layout": case.layout, "extent": case.extent,
            "residual": case.residual}


def target_check(rows: list[dict]) -> list[str]:
    """The README's CPU target, for gather_excite (the op the seed trains): fused forward +
    backward >= 2x eager and >= compile on every WRN-16-8 stage. excite is listed too,
    for information: its eager code is a single broadcast multiply, so 2x is out of reach
    by construction. Needs the eager provider in the run."""
    out = []
    for r in rows:
        if r["provider"] == "fused" and r["mode"] == "full" and r["shape_name"].startswith("wrn") and r["vs_eager"]:
            ok = (r["vs_eager"] or 0) >= 2.0 and (r["vs_compile"] or 0) >= 1.0
            verdict = ("MET " if ok else "MISS") if r["op"] == "gather_excite" else "info"
            out.append(f"{verdict} {r['op']:<13} {r['shape_name']} {r['layout']:<4} e{r['extent']}"
                       f"{' +res' if r['residual'] else ''}: {r['vs_eager']:.2f}x eager, "
                       f"{(r['vs_compile'] or float('nan')):.2f}x compile")
    return out


# ------------------------------------------------------------------- correctness
CHECK_IMAGES = 2  # images compared with the float64 oracle (the whole output is checked for NaN)
CHECK_ATOL = {torch.float32: 1e-6, torch.float16: 1e-4, torch.bfloat16: 1e-3, torch.float64: 1e-12}


@contextlib.contextmanager
def poisoned_outputs():
    """Every fresh allocation (torch.empty, at::empty in kernels) filled with NaN, so an
    output element a kernel forgets to write shows up."""
    det, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(det, warn_only=warn)
        torch.utils.deterministic.fill_uninitialized_memory = fill


def _reference_outputs(case: Case, tensors: list, dy: torch.Tensor) -> list:
    """[y, dx, (dg)] of genet_ops.reference on these tensors (any dtype)."""
    from genet_ops import reference

    x, e = tensors[0], case.extent
    res = tensors[-1] if case.residual else None
    if case.op == "excite":
        g = tensors[1]
        return [reference.excite(x, g, e, res), *reference.excite_backward(dy, x, g, e)]
    return [reference.gather_excite(x, e, res), reference.gather_excite_backward(dy, x, e)]


def check_case(case: Case, providers: list[Provider]) -> list[dict]:
    """Forward and backward of each provider at the case's full size with NaN-poisoned
    outputs; the first CHECK_IMAGES images against the float64 reference. Passes when no
    output holds a NaN and each error is at most twice the reference's own error in the
    case's dtype plus a small atol (docs/DESIGN.md §4)."""
    torch.manual_seed(0)
    inp = make_inputs(case)
    k = min(CHECK_IMAGES, case.shape[0])
    part = [t.detach()[:k] for t in inp.tensors]
    oracle = _reference_outputs(case, [t.double() for t in part], inp.dy[:k].double())
    floor = _reference_outputs(case, part, inp.dy[:k])
    names = ["y", "dx", "dg"][: len(oracle)]
    rows = []
    for p in providers:
        row = {**case_fields(case), "mode": "check", "provider": p.name, "impl": p.impl(case.device, case.op),
               "ok": False, "note": ""}
        try:
            with poisoned_outputs(), p.context():
                fn = p.make(case)
                y = fn(*inp.tensors)
                grads = torch.autograd.grad(y, inp.tensors, inp.dy)
            outs = [y.detach(), grads[0]] + ([grads[1]] if case.op == "excite" else [])
            ok = True
            for name, out, want, base in zip(names, outs, oracle, floor):
                err = (out[:k].double() - want).abs().max().item() if want.numel() else 0.0
                tol = 2 * ((base.double() - want).abs().max().item() if want.numel() else 0.0) + CHECK_ATOL[case.dtype]
                nan = bool(torch.isnan(out).any())
                row.update({f"err_{name}": err, f"tol_{name}": tol, f"nan_{name}": nan})
                ok = ok and err <= tol and not nan
            row["ok"] = ok
        except Exception as exc:  # noqa: BLE001 - report, go on with the next provider
            row["note"] = f"error: {type(exc).__name__}: {exc}"[:300]
        rows.append(row)
    return rows


def format_checks(rows: list[dict]) -> str:
    out = []
    for r in rows:
        errs = " ".join(f"{n}={r[f'err_{n}']:.2e}/{r[f'tol_{n}']:.2e}{' NaN' if r[f'nan_{n}'] else ''}"
                        for n in ("y", "dx", "dg") if f"err_{n}" in r)
        out.append(f"{'ok  ' if r['ok'] else 'FAIL'} {r['op']:<13} {r['shape_name']:<8} {r['dtype']:<8} "
                   f"{r['layout']:<4} e{r['extent']} {r['provider']:<7} {errs} {r['note']}")
    return "\n".join(out)


# ------------------------------------------------------------------------- A/B
AB_EXTENTS = {"cuda": (0, 2, 4, 8), "triton": (0, 2)}  # the extents each backend's table covers
LAYOUT_NAMES = {"nchw": "nchw", "cl": "channels_last"}  # bench name -> genet_ops._tuning's


def ab_plan(ops: list[str], shapes, layouts, extents, dtypes, device: str):
    """[(case, providers, modes)] for every genet_ops._tuning knob: its values as
    providers (values[0], the default, first) plus clone, on the cases where the knob
    applies; modes from the ops it changes. None when genet_ops._tuning is missing."""
    try:
        from genet_ops import _tuning
    except ImportError:
        return None
    plan = []
    for name, knob in _tuning.KNOBS.items():
        base = PROVIDERS["fused" if knob.backend == "cuda" else "triton"]
        variants = [Variant(base, name, v, i == 0) for i, v in enumerate(knob.values)]
        for op in ops:
            modes = [m for m, o in (("forward", op), ("backward", f"{op}_backward")) if o in knob.ops]
            if not modes or base.unavailable(device, op):
                continue
            for dtype in dtypes:
                for shape_name, shape in shapes:
                    for layout in layouts:
                        for e in extents:
                            if e in AB_EXTENTS[knob.backend] and knob.applies(LAYOUT_NAMES[layout], shape, e):
                                case = Case(op, shape_name, shape, dtype, layout, e, False, device)
                                plan.append((case, variants + [PROVIDERS["clone"]], modes))
    return plan


def ab_compare(rows: list[dict]) -> list[dict]:
    """Adds vs_default (default ms / this ms) to one case's A/B rows."""
    default = {r["mode"]: r["ms"] for r in rows if r.get("default") and r["ms"]}
    for r in rows:
        if r.get("knob") and r["ms"] and r["mode"] in default:
            r["vs_default"] = default[r["mode"]] / r["ms"]
    return rows


def ab_parity(case: Case, providers: list[Provider]) -> dict[str, float]:
    """Max |y - y_default| of each variant's forward (alternative plans must agree)."""
    torch.manual_seed(0)
    inp = make_inputs(case)
    ys = {}
    with torch.no_grad():
        for p in providers:
            if isinstance(p, Variant):
                with p.context():
                    ys[p.name] = (p.make(case)(*inp.tensors).float(), p.default)
    ref = next((y for y, d in ys.values() if d), None)
    return {n: (y - ref).abs().max().item() if ref is not None and y.numel() else 0.0 for n, (y, _) in ys.items()}


# ------------------------------------------------------------------------ CLI
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "npu"])
    ap.add_argument("--dtype", default="float32", help="comma-separated from float32, float16, bfloat16, float64")
    ap.add_argument("--shapes", default="all", choices=["wrn", "resnet50", "all"])
    ap.add_argument("--extents", default="0,4", help="comma-separated, e.g. 0,2,4")
    ap.add_argument("--layouts", default="nchw,cl", help="nchw and/or cl (channels_last)")
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--providers", default=None,
                    help=f"comma-separated from {', '.join(PROVIDERS)} (default: all available but reference, "
                         "which is the slow test oracle)")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--residual", default="no", choices=["no", "yes", "both"])
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_SHAPES)} and a smaller time budget")
    ap.add_argument("--check", action="store_true",
                    help="correctness instead of timing: the fused / triton providers at full size, NaN-poisoned "
                         "outputs, the first images against the float64 reference (exit status 1 on a failure)")
    ap.add_argument("--ab", action="store_true",
                    help="time every genet_ops._tuning knob's values side by side (CUDA; exit status 4 when "
                         "genet_ops._tuning is missing, as when no provider is available)")
    ap.add_argument("--budget", type=float, default=None, help="seconds of timing per case and mode (CPU/NPU)")
    ap.add_argument("--rep-ms", type=float, default=100,
                    help="CUDA: milliseconds of timed repetitions per case, mode and provider (do_bench's rep)")
    ap.add_argument("--wait-idle", type=float, default=0.0,
                    help="CPU: before timing each case and mode, wait up to this many seconds for other "
                         "processes to leave the CPUs (0: don't wait); the load seen goes in the 'busy' column")
    ap.add_argument("--malloc", default="steady", choices=["steady", "default"],
                    help="steady (default): pin glibc's mmap/trim thresholds at the values a training loop "
                         "settles in (common.steady_malloc), so that runs agree; default: leave them dynamic")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--tag", default=None, help="output file stem (default <device>-<date>[-quick])")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--no-files", action="store_true", help="write no CSV / JSON / PNG (with --jsonl)")
    ap.add_argument("--jsonl", default=None, help="append each row to this file as soon as its case is done")
    ap.add_argument("--deadline", type=float, default=None,
                    help="seconds after which no new case starts, the first aside (exit status 3 when cases "
                         "were left)")
    ap.add_argument("--dry-run", action="store_true", help="list the cases and providers, run nothing")
    return ap.parse_args(argv)


def plan_cases(args, device: str):
    """[(case, providers, modes)] of the run, or an exit status after an error message."""
    dtypes = [d for d in args.dtype.split(",") if d]
    ops = [o for o in args.ops.split(",") if o]
    modes = [m for m in args.modes.split(",") if m]
    extents = [int(e) for e in args.extents.split(",") if e != ""]
    layouts = [lay for lay in args.layouts.split(",") if lay]
    residuals = {"no": [False], "yes": [True], "both": [False, True]}[args.residual]
    shapes = shapes_for(args.shapes, device)
    if args.quick:
        shapes = [s for s in shapes_for("all", device) if s[0] in QUICK_SHAPES]
    bad = (set(ops) - set(OPS) | set(modes) - set(MODES) | set(layouts) - {"nchw", "cl"}
           | set(dtypes) - {"float32", "float16", "bfloat16", "float64"})
    if bad:
        print(f"bench_ops: unknown value(s) {sorted(bad)}", file=sys.stderr)
        return 2
    dtypes = [getattr(torch, d) for d in dtypes]
    if args.ab:
        plan = ab_plan(ops, shapes, layouts, extents, dtypes, device)
        if plan is None:
            print("# genet_ops._tuning is missing: no A/B cases", file=sys.stderr)
            return 4
        return plan

    default = ["fused", "triton"] if args.check else [p for p in PROVIDERS if p != "reference"]
    wanted = args.providers.split(",") if args.providers else default
    for name in wanted:
        if name not in PROVIDERS:
            print(f"bench_ops: unknown provider {name!r}", file=sys.stderr)
            return 2
    per_op: dict[str, list[Provider]] = {}
    for op in ops:
        per_op[op] = []
        for name in wanted:
            why = None if args.dry_run else PROVIDERS[name].unavailable(device, op)
            if why:
                print(f"# provider {name} skipped for {op}: {why}")
            else:
                per_op[op].append(PROVIDERS[name])
    run_modes = ["check"] if args.check else modes
    return [(Case(op, shape_name, shape, dtype, layout, extent, res, device), per_op[op], run_modes)
            for dtype in dtypes for op in ops for extent in extents for shape_name, shape in shapes
            for layout in layouts for res in residuals if per_op[op]]  # the most wanted cases first


def run_case(case: Case, providers: list[Provider], modes: list[str], args, budget: float) -> list[dict]:
    if modes == ["check"]:
        return check_case(case, providers)
    rows = bench_case(case, providers, modes, budget, args.wait_idle, args.rep_ms)
    if args.ab:
        diffs = ab_parity(case, providers)
        for r in ab_compare(rows):
            if r["provider"] in diffs:
                r["max_diff_vs_default"] = diffs[r["provider"]]
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "npu" and not args.dry_run:
        import torch_npu  # noqa: F401  (registers the npu device)
    if args.device == "cuda" and not torch.cuda.is_available() and not args.dry_run:
        print("bench_ops: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    import genet_ops  # noqa: F401  (after torch_npu: registers the kernels)

    plan = plan_cases(args, args.device)
    if isinstance(plan, int):
        return plan
    if not plan and not args.dry_run:
        print("# no cases to run: every provider asked for is unavailable here", file=sys.stderr)
        return 4
    if args.dry_run:
        names = sorted({p.name for _, ps, _ in plan for p in ps})
        print(f"# dry run: {len(plan)} cases, providers {', '.join(names) or 'none'}")
        return 0
    budget = args.budget if args.budget is not None else (0.3 if args.quick else 0.6)
    malloc = common.steady_malloc() if args.malloc == "steady" else "default"
    meta = common.machine_info(args.device)
    meta.update({"dtype": args.dtype, "argv": sys.argv[1:], "malloc": malloc})
    print(f"# {meta['device_name']} ({meta['cpu_count']} CPUs, {meta['torch_threads']} torch threads), "
          f"torch {meta['torch']}, triton {meta['triton']}, genet_ops CPU ISA {meta.get('genet_ops_cpu_isa')}, "
          f"{args.dtype}, malloc: {malloc}, {len(plan)} cases", flush=True)

    tag = args.tag or f"{args.device}-{_dt.date.today().isoformat()}{'-quick' if args.quick else ''}"
    rows: list[dict] = []
    t0 = time.perf_counter()
    left = 0
    failed = False
    for i, (case, providers, modes) in enumerate(plan):
        if i and args.deadline is not None and time.perf_counter() - t0 > args.deadline:  # the first always runs
            left = len(plan) - i
            print(f"# deadline of {args.deadline:.0f} s reached: {left} of {len(plan)} cases not run", flush=True)
            break
        case_rows = [dict(r, run=tag) for r in run_case(case, providers, modes, args, budget)]
        rows += case_rows
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.writelines(json.dumps(r, default=str) + "\n" for r in case_rows)
        if args.check:
            failed = failed or not all(r["ok"] for r in case_rows)
            print(format_checks(case_rows), flush=True)
        else:
            print(common.format_table(case_rows).split("\n", 2)[-1] if rows != case_rows
                  else common.format_table(case_rows), flush=True)
    print(f"# {time.perf_counter() - t0:.0f} s")
    checks = target_check(rows) if args.device == "cpu" and not (args.check or args.ab) else []
    for line in checks:
        print(line)
    if not args.no_files:
        os.makedirs(args.out, exist_ok=True)
        stem = os.path.join(args.out, tag)
        meta["target_check"] = checks
        common.write_csv(rows, stem + ".csv")
        common.write_json(meta, rows, stem + ".json")
        if not args.no_plot and not args.check:
            common.plot(rows, stem + ".png", f"genet_ops {args.device} ({meta['device_name']}), {args.dtype}, "
                                            f"{meta['date']}")
        print(f"# wrote {stem}.csv, .json{'' if args.no_plot or args.check else ', .png'}")
    return 1 if failed else 3 if left else 0


if __name__ == "__main__":
    sys.exit(main())
