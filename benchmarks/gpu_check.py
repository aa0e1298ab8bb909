"""The Python half of benchmarks/gpu_check.sh: the versions record, the ptxas report, and
the summary rebuilt from the streamed rows after every step (and once more when the run
ends or is cut off). Needs only the standard library, except `versions`.

    python benchmarks/gpu_check.py versions SCRATCH   # SCRATCH/versions.json
    python benchmarks/gpu_check.py ptxas BUILD_LOG    # one line per kernel, to stdout
    python benchmarks/gpu_check.py summary SCRATCH OUT [--print]
    python benchmarks/gpu_check.py dry-bench SCRATCH  # GPU_CHECK_DRY_RUN: check the bench commands

SCRATCH holds rows.jsonl (bench_ops --jsonl), steps.jsonl (one line per step),
versions.json, logs/ and train/; OUT receives summary.json and table.txt.
"""
from __future__ import annotations

import glob
import json
import os
import re
import statistics
import subprocess
import sys

# The targets of the first GPU run, per WRN-16-8 / ResNet-50 stage, bf16, both layouts.
TARGETS = {"forward": 0.85, "backward": 0.80}  # fraction of the same-run clone bandwidth
TARGET_VS_EAGER, TARGET_VS_COMPILE = 2.5, 1.2  # forward+backward speed-ups


# ---------------------------------------------------------------------- versions
def _run(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions(scratch: str) -> dict:
    """Device, driver, Python / torch / Triton / CUDA / nvcc versions (benchmarks/common.machine_info
    plus what only the GPU machine has)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch

    import common

    device = "cuda" if torch.cuda.is_available() else "cpu"
    info = common.machine_info(device)
    info.pop("genet_ops", None)  # before the build: backend_info is recorded after it
    info.pop("genet_ops_error", None)
    info.update(torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(capability=list(torch.cuda.get_device_capability(0)), sm_count=p.multi_processor_count,
                    memory_gib=round(p.total_memory / 2**30, 1), l2_mib=round(getattr(p, "L2_cache_size", 0) / 2**20, 1))
    smi = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit",
                "--format=csv,noheader"])
    info["nvidia_smi"] = smi
    info["driver"] = smi.split(",")[1].strip() if smi and "," in smi else None
    nvcc = _run(["nvcc", "--version"]) or _run([os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc"),
                                                "--version"])
    m = re.search(r"release ([\d.]+)", nvcc or "")
    info["nvcc"] = m.group(1) if m else None
    with open(os.path.join(scratch, "versions.json"), "w") as f:
        json.dump(info, f, indent=1, default=str)
    return info


# ------------------------------------------------------------------------ ptxas
def ptxas(build_log: str) -> list[str]:
    """One line per genet_ops CUDA kernel: registers, stack, spills, shared memory."""
    lines, fn = [], None
    try:
        text = open(build_log, errors="replace").read().splitlines()
    except OSError:
        return lines
    for line in text:
        m = re.search(r"Compiling entry function '(\w+)' for '(sm_\d+)'", line)
        if m:
            fn = m.group(1) if "genet_ops" in m.group(1) else None
            continue
        if fn and "Used" in line and "registers" in line:
            lines.append(f"{fn[:90]:<90} {line.split('ptxas info    :')[-1].strip()}")
        elif fn and "spill" in line:
            lines.append(f"{'':<90} {line.strip()}")
    return lines


# ----------------------------------------------------------------------- summary
def _jsonl(path: str) -> list[dict]:
    out = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut off mid-write
                    pass
    except OSError:
        pass
    return out


def _load(path: str, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def _tail(path: str, n: int) -> list[str]:
    try:
        with open(path, errors="replace") as f:
            return [ln.rstrip() for ln in f.readlines()[-n:]]
    except OSError:
        return []


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _stage_rows(rows: list[dict], provider: str) -> dict:
    """{(op, shape_name, dtype, layout, extent): {mode: row}} of one provider's timing rows."""
    out: dict = {}
    for r in rows:
        if r.get("provider") == provider and r.get("mode") in ("forward", "backward", "full") and not r.get("knob"):
            out.setdefault((r["op"], r["shape_name"], r["dtype"], r["layout"], r["extent"]), {})[r["mode"]] = r
    return out


def verdicts(rows: list[dict]) -> dict:
    """Per backend: how many bf16 stage cases meet each target, and which miss."""
    out = {}
    for provider, backend in (("fused", "cuda"), ("triton", "triton")):
        stages = _stage_rows(rows, provider)
        res = {}
        for target, mode in (("forward_vs_clone", "forward"), ("backward_vs_clone", "backward")):
            got = [(k, m[mode].get("frac_clone")) for k, m in stages.items()
                   if k[2] == "bfloat16" and mode in m and m[mode].get("frac_clone") is not None]
            res[target] = {"met": sum(v >= TARGETS[mode] for _, v in got), "of": len(got),
                           "missed": ["/".join(map(str, k)) + f" {v:.2f}" for k, v in got if v < TARGETS[mode]]}
        for target, key, goal in (("full_vs_eager", "vs_eager", TARGET_VS_EAGER),
                                  ("full_vs_compile", "vs_compile", TARGET_VS_COMPILE)):
            got = [(k, m["full"].get(key)) for k, m in stages.items()
                   if k[2] == "bfloat16" and "full" in m and m["full"].get(key) is not None]
            res[target] = {"met": sum(v >= goal for _, v in got), "of": len(got),
                           "missed": ["/".join(map(str, k)) + f" {v:.2f}" for k, v in got if v < goal]}
        out[backend] = res
    return out


def lean_vs_input(rows: list[dict]) -> dict:
    """{mode: [fused_lean ms / fused ms per case]}: the output-keeping ops against the
    input-keeping ones, case by case, for the modes both were timed in."""
    lean, base = _stage_rows(rows, "fused_lean"), _stage_rows(rows, "fused")
    out: dict = {}
    for k, m in lean.items():
        for mode, r in m.items():
            b = base.get(k, {}).get(mode)
            if b and b.get("ms") and r.get("ms"):
                out.setdefault(mode, []).append(r["ms"] / b["ms"])
    return out


def table(s: dict) -> tuple[str, str]:
    """(the whole table.txt, its short head that the run prints last)."""
    v, rows = s["versions"], s["rows"]
    head = [f"genet_ops GPU check{' (DRY RUN: no GPU step ran)' if s['dry_run'] else ''}: "
            f"{v.get('device_name')}, driver {v.get('driver')}, torch {v.get('torch')} (CUDA {v.get('torch_cuda')}), "
            f"Triton {v.get('triton')}, nvcc {v.get('nvcc')}, Python {v.get('python')}, {v.get('cpu_count')} CPUs",
            f"budget {s['budget_s']} s, used {s['elapsed_s']} s; {len(rows)} rows"]
    head.append(f"{'step':<20} {'status':<8} {'s':>4} {'limit':>5}  note")
    for st in s["steps"]:
        head.append(f"{st['step']:<20} {st['status']:<8} {st['seconds']:>4} {st['limit']:>5}  {st.get('note', '')}")
    checks = [r for r in rows if r.get("mode") == "check"]
    for backend in sorted({r["provider"] for r in checks}):
        mine = [r for r in checks if r["provider"] == backend]
        bad = [r for r in mine if not r.get("ok")]
        head.append(f"correctness {backend}: {len(mine) - len(bad)}/{len(mine)} cases ok")
        head += [f"  FAIL {r['op']} {r['shape_name']} {r['dtype']} {r['layout']} e{r['extent']} "
                 + " ".join(f"{n}={_fmt(r.get(f'err_{n}'), '.2e')}/{_fmt(r.get(f'tol_{n}'), '.2e')}"
                            f"{' NaN' if r.get(f'nan_{n}') else ''}" for n in ("y", "dx", "dg") if f"err_{n}" in r)
                 + f" {r.get('note', '')}" for r in bad[:20]]
    head.append("targets (bf16 stage cases meeting each: fwd >= 0.85 and bwd >= 0.80 x clone, "
                "fwd+bwd >= 2.5x eager and >= 1.2x compile):")
    for backend, res in s["targets"].items():
        head.append(f"  {backend:<7} " + ", ".join(f"{t} {r['met']}/{r['of']}" for t, r in res.items()))
    for knob in sorted({r["knob"] for r in rows if r.get("knob")}):
        for variant in sorted({r["variant"] for r in rows if r.get("knob") == knob and not r.get("default")}):
            vs = [r["vs_default"] for r in rows if r.get("knob") == knob and r.get("variant") == variant
                  and r.get("vs_default")]
            if vs:
                head.append(f"ab {knob}={variant}: median {statistics.median(vs):.3f}x the default over {len(vs)} "
                            f"timings (min {min(vs):.3f}, max {max(vs):.3f})")
    lean = lean_vs_input(rows)
    for mode, ratios in lean.items():
        head.append(f"fused_lean {mode} (save='output') vs fused (input-keeping): median {statistics.median(ratios):.3f}x "
                    f"fused's time over {len(ratios)} cases (min {min(ratios):.3f}, max {max(ratios):.3f})")
    for name, last in s["pytest"].items():
        head.append(f"{name}: {last}")
    for r in s["train"]:
        head.append(f"train {r.get('model')} batch {r.get('batch')} {r.get('provider')} compile={r.get('compile')}: "
                    f"{_fmt(r.get('img_per_s'), '.0f')} img/s, {_fmt(r.get('vs_eager'), '.2f')}x eager")

    for r in s.get("memory", []):
        head.append(f"memory {r.get('model')} {r.get('dtype')} {r.get('provider')}: saved "
                    f"{_fmt((r.get('saved_bytes') or 0) / 2**20, '.1f')} MiB, peak "
                    f"{_fmt((r.get('peak_bytes') or 0) / 2**20, '.1f')} MiB")

    body = ["", "bandwidth per case (ms; fraction of the same-run clone; speed-ups vs eager / compile where timed)"]
    for provider in ("fused", "fused_lean", "triton"):
        stages = _stage_rows(rows, provider)
        if not stages:
            continue
        body.append(f"{provider}: {'op':<13} {'stage':<8} {'dtype':<8} {'lay':<4} {'e':>2} "
                    f"{'fwd ms':>8} {'x':>5} {'bwd ms':>8} {'x':>5} {'full ms':>8} {'x':>5} {'xeager':>6} {'xcomp':>6}")
        for k, m in stages.items():
            f, b, u = (m.get(x, {}) for x in ("forward", "backward", "full"))
            body.append(f"{'':<{len(provider) + 2}}{k[0]:<13} {k[1]:<8} {k[2]:<8} {k[3]:<4} {k[4]:>2} "
                        f"{_fmt(f.get('ms'), '8.4f')} {_fmt(f.get('frac_clone'), '5.2f')} "
                        f"{_fmt(b.get('ms'), '8.4f')} {_fmt(b.get('frac_clone'), '5.2f')} "
                        f"{_fmt(u.get('ms'), '8.4f')} {_fmt(u.get('frac_clone'), '5.2f')} "
                        f"{_fmt(u.get('vs_eager'), '6.2f')} {_fmt(u.get('vs_compile'), '6.2f')}")
    ab = [r for r in rows if r.get("knob")]
    if ab:
        body += ["", "A/B: each knob value next to the default in the same run"]
        for r in ab:
            body.append(f"{r['knob']:<24} {r['variant']:<10} {r['op']:<13} {r['shape_name']:<8} {r['dtype']:<8} "
                        f"{r['layout']:<4} e{r['extent']} {r['mode']:<8} {_fmt(r.get('ms'), '8.4f')} ms "
                        f"{_fmt(r.get('vs_default'), '6.3f')}x default, max diff {_fmt(r.get('max_diff_vs_default'), '.2e')}")
    for backend, res in s["targets"].items():
        for t, r in res.items():
            if r["missed"]:
                body += ["", f"{backend} {t}: missed by " + ", ".join(r["missed"])]
    if s["ptxas"]:
        body += ["", "ptxas (sm_90):"] + s["ptxas"]
    short = "\n".join(head)
    return short + "\n" + "\n".join(body) + "\n", short


def summary(scratch: str, out: str) -> dict:
    logs = os.path.join(scratch, "logs")
    steps = _jsonl(os.path.join(scratch, "steps.jsonl"))
    meta = _load(os.path.join(scratch, "run.json"), {}) or {}
    train, memory = [], []
    for path in sorted(glob.glob(os.path.join(scratch, "train", "*.json"))):
        data = _load(path, {}) or {}
        train += [r for r in data.get("rows", []) if isinstance(r, dict)]
    for path in sorted(glob.glob(os.path.join(scratch, "memory", "*.json"))):
        data = _load(path, {}) or {}
        memory += [r for r in data.get("rows", []) if isinstance(r, dict)]
    s = {
        "versions": _load(os.path.join(scratch, "versions.json"), {}) or {},
        "backend_info": _load(os.path.join(logs, "backend_info.json")),
        "dry_run": meta.get("dry_run", False), "budget_s": meta.get("budget_s"),
        "elapsed_s": sum(st.get("seconds", 0) for st in steps),
        "steps": steps,
        "pytest": {os.path.basename(p): (_tail(p, 1) or [None])[0] for p in sorted(glob.glob(os.path.join(logs, "tests*.log")))},
        "sanitizer": {os.path.basename(p): [ln for ln in _tail(p, 40) if "ERROR SUMMARY" in ln or ln.startswith(("ok", "FAIL"))][-3:]
                      for p in sorted(glob.glob(os.path.join(logs, "sanitizer*.log")))},
        "ptxas": _tail(os.path.join(logs, "ptxas.txt"), 400),
        "train": train,
        "memory": memory,
        "rows": _jsonl(os.path.join(scratch, "rows.jsonl")),
    }
    s["targets"] = verdicts(s["rows"])
    text, short = table(s)
    with open(os.path.join(out, "summary.json.tmp"), "w") as f:
        json.dump(s, f, indent=1, default=str)
    os.replace(os.path.join(out, "summary.json.tmp"), os.path.join(out, "summary.json"))
    with open(os.path.join(out, "table.txt"), "w") as f:
        f.write(text)
    s["_short"] = short
    return s


# ----------------------------------------------------------------------- dry run
def dry_bench(scratch: str) -> int:
    """Each skipped benchmark step's bench_ops command with --dry-run, in this process;
    the case count (or the error) goes into that step's note. Non-zero if one failed."""
    import contextlib
    import io

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_ops

    notes, failed = {}, False
    with open(os.path.join(scratch, "dry_bench.tsv")) as f:
        for line in f:
            name, *args = line.rstrip("\n").split("\t")
            args = args[args.index("benchmarks/bench_ops.py") + 1:] if "benchmarks/bench_ops.py" in args else args
            buf = io.StringIO()
            try:
                with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                    rc = bench_ops.main(args + ["--dry-run"])
            except BaseException as exc:  # noqa: BLE001 - argparse exits, anything else: report it
                rc, buf = 2, io.StringIO(f"{type(exc).__name__}: {exc}")
            last = (buf.getvalue().strip().splitlines() or [""])[-1].lstrip("# ")
            print(f"{name}: rc={rc} {last}")
            notes[name] = (f"bench_ops --dry-run: {last}" if rc in (0, 4)
                           else f"bench_ops --dry-run FAILED (rc {rc}): {last}")
            failed = failed or rc not in (0, 4)
    path = os.path.join(scratch, "steps.jsonl")
    steps = _jsonl(path)
    for st in steps:
        if st["step"] in notes:
            st["note"] = f"{st['note']}; {notes[st['step']]}"
    with open(path, "w") as f:
        f.writelines(json.dumps(st) + "\n" for st in steps)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "versions":
        print(json.dumps(versions(argv[1]), indent=1, default=str))
    elif len(argv) >= 2 and argv[0] == "dry-bench":
        return dry_bench(argv[1])
    elif len(argv) >= 2 and argv[0] == "ptxas":
        print("\n".join(ptxas(argv[1])))
    elif len(argv) >= 3 and argv[0] == "summary":
        s = summary(argv[1], argv[2])
        if "--print" in argv:
            print(s["_short"])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
