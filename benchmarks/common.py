"""Shared by the op benchmarks: timing per device, the machine's description, byte
accounting (docs/DESIGN.md §5) and the table / CSV / JSON / PNG writers.

Timing rules: CPU - median of repeats with time.perf_counter after a warm-up, providers
interleaved round by round so that load from other processes hits them alike; CUDA -
triton.testing.do_bench (median), inputs rotated where they fit in L2; NPU - perf_counter
around torch.npu.synchronize().
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import statistics
import time

import torch


# ------------------------------------------------------------------------- timing
def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "npu":
        torch.npu.synchronize()  # type: ignore[attr-defined]


Step = tuple  # (prepare or None, run): prepare() is called untimed before each run()


def time_interleaved(steps: dict[str, Step], device: str, *, budget_s: float = 1.0,
                     min_rounds: int = 3, max_rounds: int = 25) -> dict[str, tuple[float, int, float]]:
    """(median ms, rounds, min ms) of each step's run(), calling the steps in turn, round
    after round, until budget_s is spent (at least min_rounds). The caller has warmed
    them up. The minimum is the run least disturbed by other processes."""
    samples: dict[str, list[float]] = {k: [] for k in steps}
    start = time.perf_counter()
    for r in range(max_rounds):
        for name, (prepare, run) in steps.items():
            if prepare is not None:
                prepare()
            synchronize(device)
            t0 = time.perf_counter()
            run()
            synchronize(device)
            samples[name].append((time.perf_counter() - t0) * 1e3)
        if r + 1 >= min_rounds and time.perf_counter() - start > budget_s:
            break
    return {k: (statistics.median(v), len(v), min(v)) for k, v in samples.items()}


def time_cuda(step: Step, rep_ms: float = 100, max_reps: int = 50) -> tuple[float, int, float | None]:
    """Median ms on CUDA: triton.testing.do_bench (it clears L2 before every call) for a
    plain step, over about rep_ms of repetitions; for a step with an untimed prepare(),
    CUDA events around run() after prepare() and an L2-clearing write, at least 5 and at
    most max_reps repetitions, fewer once rep_ms of GPU time is spent."""
    prepare, run = step
    if prepare is None:
        from triton.testing import do_bench

        ms = do_bench(run, warmup=max(rep_ms / 4, 5), rep=rep_ms, return_mode="all")
        return statistics.median(ms), len(ms), min(ms)
    flush = torch.empty(int(256e6) // 4, dtype=torch.int32, device="cuda")
    times: list[float] = []
    while len(times) < max_reps and (len(times) < 5 or sum(times) < rep_ms):
        prepare()
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), len(times), min(times)


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    return sum(vals), idle


def cpu_busy(window_s: float = 0.5) -> float | None:
    """Fraction of all CPUs that other work kept busy over window_s (we sleep meanwhile)."""
    try:
        t0, i0 = _cpu_times()
        time.sleep(window_s)
        t1, i1 = _cpu_times()
    except OSError:
        return None
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


def wait_idle(max_wait_s: float, threshold: float = 0.25) -> float | None:
    """On a shared machine: wait (up to max_wait_s) until other processes use less than
    `threshold` of the CPUs, so that timings are not someone else's. Returns the last
    load seen (None where /proc/stat is missing)."""
    deadline = time.perf_counter() + max_wait_s
    busy = cpu_busy()
    while busy is not None and busy > threshold and time.perf_counter() < deadline:
        busy = cpu_busy()
    return busy


def l2_bytes(device: str) -> int:
    if device == "cuda":
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return int(getattr(props, "L2_cache_size", 50 << 20))
    return 0


def steady_malloc() -> str:
    """Pins glibc malloc to the state a training loop settles in, so that runs agree.

    By default glibc serves big blocks with fresh mmaps (page faults on first touch) but
    raises that threshold to the size of each such block freed, up to 32 MiB, and trims
    the heap above twice that: so whether a 16 MiB tensor costs page faults depends on
    what the process freed before - a 2-3x swing between otherwise identical runs. Fixing
    the two thresholds at their steady values (32 MiB, 64 MiB) makes every provider see
    what it would see in a loop: blocks up to 32 MiB reused, bigger ones fresh pages."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        ok = libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 64 << 20) == 1
    except (OSError, AttributeError):
        ok = False
    return "glibc mmap threshold 32 MiB, trim threshold 64 MiB" if ok else "default (mallopt unavailable)"


# ------------------------------------------------------------------- bytes moved
def bytes_moved(op: str, mode: str, x: torch.Tensor, g_numel: int, residual: bool) -> int:
    """docs/DESIGN.md §5: forward reads x and writes y (2 passes; a residual adds one), backward
    reads x and dy and writes dx (3); excite also reads g (and writes dg in backward)."""
    xb = x.numel() * x.element_size()
    gb = g_numel * x.element_size() if op == "excite" else 0
    fwd = (2 + int(residual)) * xb + gb
    bwd = 3 * xb + 2 * gb
    return {"forward": fwd, "backward": bwd, "full": fwd + bwd}[mode]


# -------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str) -> dict:
    info = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": device,
        "device_name": _cpu_model(),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if device == "cuda":
        info["device_name"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    elif device == "npu":
        info["device_name"] = torch.npu.get_device_name()  # type: ignore[attr-defined]
    try:
        import genet_ops

        info["genet_ops"] = genet_ops.backend_info()
        info["genet_ops_cpu_isa"] = torch.ops.genet_ops_cpu.isa()
    except Exception as exc:  # noqa: BLE001 - the description must not fail the run
        info.setdefault("genet_ops_error", repr(exc))
    return info


# --------------------------------------------------------------------- outputs
COLUMNS = ["op", "shape_name", "shape", "dtype", "layout", "extent", "residual", "mode", "provider", "impl",
           "ms", "ms_min", "reps", "gbps", "frac_clone", "vs_eager", "vs_compile", "busy", "note"]


def _fmt(v, spec):
    return "" if v is None or v == "" else format(v, spec)


def format_table(rows: list[dict]) -> str:
    head = (f"{'op':<13} {'shape':<9} {'layout':<6} {'e':>2} {'res':>3} {'mode':<8} {'provider':<9} "
            f"{'ms':>9} {'GB/s':>7} {'xclone':>6} {'vs eager':>8} {'vs comp':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["ms"] is None:
            lines.append(f"{r['op']:<13} {r['shape_name']:<9} {r['layout']:<6} {r['extent']:>2} "
                         f"{'y' if r['residual'] else 'n':>3} {r['mode']:<8} {r['provider']:<9} "
                         f"unavailable: {r['note']}")
            continue
        lines.append(
            f"{r['op']:<13} {r['shape_name']:<9} {r['layout']:<6} {r['extent']:>2} {'y' if r['residual'] else 'n':>3} "
            f"{r['mode']:<8} {r['provider']:<9} {r['ms']:>9.3f} {_fmt(r['gbps'], '7.1f'):>7} "
            f"{_fmt(r['frac_clone'], '6.2f'):>6} {_fmt(r['vs_eager'], '7.2f') + ('x' if r['vs_eager'] else ''):>8} "
            f"{_fmt(r['vs_compile'], '6.2f') + ('x' if r['vs_compile'] else ''):>7}")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})


def write_json(meta: dict, rows: list[dict], path: str) -> None:
    with open(path, "w") as f:
        json.dump({"machine": meta, "rows": rows}, f, indent=1, default=str)


def plot(rows: list[dict], path: str, title: str) -> None:
    """One panel per (op, mode): achieved fraction of a clone's bandwidth per case and
    provider (higher is better; 1.0 = as fast as copying x once)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["ms"] is not None and r["provider"] != "clone" and r["frac_clone"]]
    ops = list(dict.fromkeys(r["op"] for r in rows))
    panels = sorted({(r["op"], r["mode"]) for r in rows},
                    key=lambda p: (ops.index(p[0]), ["forward", "backward", "full"].index(p[1])))
    if not panels:
        return
    providers = list(dict.fromkeys(r["provider"] for r in rows))
    fig, axes = plt.subplots(len(panels), 1, figsize=(14, 3.2 * len(panels)), squeeze=False)
    for ax, (op, mode) in zip(axes[:, 0], panels):
        sel = [r for r in rows if r["op"] == op and r["mode"] == mode]
        cases = list(dict.fromkeys((r["shape_name"], r["layout"], r["extent"], r["residual"]) for r in sel))
        width = 0.8 / max(len(providers), 1)
        for k, p in enumerate(providers):
            vals = {(r["shape_name"], r["layout"], r["extent"], r["residual"]): r["frac_clone"] for r in sel if r["provider"] == p}
            xs = [i + k * width for i, c in enumerate(cases) if c in vals]
            ax.bar(xs, [vals[c] for c in cases if c in vals], width, label=p)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cases))])
        ax.set_xticklabels([f"{s}\n{l} e{e}{' +r' if r else ''}" for s, l, e, r in cases], fontsize=7)
        ax.set_ylabel("fraction of clone GB/s")
        ax.set_title(f"{op} {mode}", fontsize=9)
        ax.axhline(1.0, color="k", lw=0.5)
        ax.legend(fontsize=7, ncol=len(providers))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=110)
    plt.close(fig)
