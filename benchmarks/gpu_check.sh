#!/usr/bin/env bash
# The GPU check of issue 3, for a bare H100 / H200 machine that already has Python,
# torch (CUDA build), Triton and nvcc, and no package index. From the repository root:
#
#     OUT=/some/dir benchmarks/gpu_check.sh          # OUT defaults to ./gpu_check_out
#
# Steps, each with a time cap that shrinks to what the budget has left (about 8 minutes
# in all, GPU_CHECK_BUDGET_S=480 by default), none of them stopping the script:
#   1. the machine: nvidia-smi, Python / torch / Triton / CUDA / driver versions;
#   2. build the extension in place for sm_90 (TORCH_CUDA_ARCH_LIST=9.0, ptxas resource
#      report in build.log) and record which kernel serves each op;
#   3. the whole test suite with CUDA (tests/test_cuda.py: both backends against the
#      float64 reference, gradcheck, opcheck, torch.compile), log in $OUT/pytest.log;
#      then compute-sanitizer memcheck over the CUDA C++ kernels on small odd shapes;
#   4. benchmarks/bench_ops.py --device cuda (eager / fused / triton / clone, bf16 and
#      fp32, WRN-16-8 and ResNet-50 stage shapes, NCHW and channels_last, forward,
#      backward, forward+backward), then the torch.compile provider on the smallest
#      shapes, and benchmarks/bench_train.py when it exists. GPU_CHECK_FULL=1 (for a run
#      with more time) adds extent 4 and compile on every WRN stage;
#   5. $OUT/<device>-<date>.json with everything (device, torch, triton, driver, steps,
#      kernels, ptxas report, benchmark rows), $OUT/table.txt per case, and a short
#      table, printed last.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT="${OUT:-$ROOT/gpu_check_out}"
mkdir -p "$OUT" "$OUT/bench"
BUDGET_S="${GPU_CHECK_BUDGET_S:-480}"
T0=$SECONDS
STEPS_FILE="$OUT/steps.tsv"
: > "$STEPS_FILE"

PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  for c in python3 python; do
    if command -v "$c" > /dev/null 2>&1 && "$c" -c "import torch" > /dev/null 2>&1; then
      PY=$(command -v "$c")
      break
    fi
  done
fi
if [[ -z "$PY" ]]; then
  echo "gpu_check: no python with torch found (set PYTHON)" >&2
  exit 2
fi

log() { printf '\n=== [%3ds] %s\n' "$((SECONDS - T0))" "$*"; }

# cap WANT RESERVE: seconds a step may take so that RESERVE seconds stay for later steps
# (0 when fewer than 30 are left: run_step then skips the step).
cap() {
  local want=$1 reserve=$2 left
  left=$((BUDGET_S - (SECONDS - T0) - reserve))
  ((left < want)) && want=$left
  ((want < 30)) && want=0
  echo "$want"
}

# run_step NAME LIMIT LOG CMD...: CMD under a time limit, all output to LOG, its tail
# to the terminal, the outcome to steps.tsv. Never stops the script.
run_step() {
  local name=$1 limit=$2 logf=$3 t=$SECONDS rc=0
  shift 3
  if ((limit <= 0)); then
    log "$name: skipped, the time budget is spent"
    printf '%s\t%d\t%d\t%d\n' "$name" -1 0 0 >> "$STEPS_FILE"
    return 0
  fi
  log "$name (limit ${limit}s, log ${logf#"$OUT"/})"
  # SIGINT first: pytest and the benchmarks then still print what they have.
  timeout --signal=INT --kill-after=20 "$limit" "$@" > "$logf" 2>&1 || rc=$?
  tail -n 12 "$logf" || true
  ((rc == 124 || rc == 130 || rc == 137)) && echo "!!! $name: cut off at its ${limit}s limit"
  printf '%s\t%d\t%d\t%d\n' "$name" "$rc" "$((SECONDS - t))" "$limit" >> "$STEPS_FILE"
  echo "--- $name: rc=$rc in $((SECONDS - t))s"
  return 0
}

# ------------------------------------------------------------------ 1. the machine
log "machine"
(nvidia-smi || echo "nvidia-smi failed") 2>&1 | tee "$OUT/nvidia-smi.txt"
(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit \
  --format=csv || true) 2>&1 | tee -a "$OUT/nvidia-smi.txt"
(command -v nvcc > /dev/null && nvcc --version || echo "nvcc not on PATH") 2>&1 | tee "$OUT/nvcc.txt"
"$PY" - > "$OUT/versions.json" 2> "$OUT/versions.err" << 'EOF' || true
import json, platform, subprocess
import torch
info = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available()}
try:
    import triton
    info["triton"] = triton.__version__
except Exception as exc:  # noqa: BLE001
    info["triton"] = f"unavailable: {exc}"
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(device_name=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
                sm_count=p.multi_processor_count, memory_gib=round(p.total_memory / 2**30, 1),
                l2_mib=round(getattr(p, "L2_cache_size", 0) / 2**20, 1), device_count=torch.cuda.device_count())
try:
    q = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                       capture_output=True, text=True, timeout=30)
    info["driver"] = q.stdout.strip().splitlines()[0] if q.stdout.strip() else None
except Exception as exc:  # noqa: BLE001
    info["driver"] = f"unknown: {exc}"
print(json.dumps(info, indent=1))
EOF
cat "$OUT/versions.json"

# ---------------------------------------------------------------------- 2. build
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
export GENET_OPS_CUDA="${GENET_OPS_CUDA:-1}"
if [[ -z "${CUDA_HOME:-}" && -x /usr/local/cuda/bin/nvcc ]]; then export CUDA_HOME=/usr/local/cuda; fi
export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:-} -Xptxas=-v"  # registers / spills per kernel, into build.log
run_step build "$(cap 240 230)" "$OUT/build.log" "$PY" setup.py build_ext --inplace
unset NVCC_APPEND_FLAGS
"$PY" - "$OUT/build.log" > "$OUT/ptxas.txt" 2>&1 << 'EOF' || true
# One line per CUDA kernel: registers, stack, spills, shared memory (sm_90).
import re, sys
fn = None
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"Compiling entry function '(\w+)' for '(sm_\d+)'", line)
    if m:
        fn = m.group(1) if "genet_ops" in m.group(1) else None
        continue
    if fn and "Used" in line and "registers" in line:
        print(f"{fn[:90]:<90} {line.split('ptxas info    :')[-1].strip()}")
    if fn and "spill" in line:
        print(f"{'':<90} {line.strip()}")
EOF
echo "ptxas: $(grep -c registers "$OUT/ptxas.txt" || true) kernels, spills: $(grep -v ' 0 bytes spill stores, 0 bytes spill loads' "$OUT/ptxas.txt" | grep -c 'spill' || true)"
# torch first: genet_ops._C links against libc10 and friends, which torch loads.
"$PY" -c "import torch, genet_ops, json; print(json.dumps(genet_ops.backend_info(), indent=1))" \
  > "$OUT/backend_info.json" 2> "$OUT/backend_info.err" || true
cat "$OUT/backend_info.json"

# ---------------------------------------------------------------------- 3. tests
# The CUDA-facing files first (both backends on the GPU), the rest of the suite after
# the benchmarks (mostly CPU tests that CI runs too). pytest-xdist, in the image,
# spreads the files over the CPUs; -v lists every result even if a step is cut off.
XDIST=()
if "$PY" -c "import xdist" > /dev/null 2>&1; then XDIST=(-n "$(($(nproc) < 12 ? $(nproc) : 12))"); fi
PYTEST=("$PY" -m pytest -v -rfEs -p no:cacheprovider --durations=15 ${XDIST[@]+"${XDIST[@]}"})
run_step "tests: CUDA and Triton" "$(cap 150 240)" "$OUT/pytest_cuda.log" "${PYTEST[@]}" \
  tests/test_cuda.py tests/test_triton.py
grep -E "^(FAILED|ERROR)" "$OUT/pytest_cuda.log" 2> /dev/null | head -n 20 || true
# Out-of-bounds and misaligned accesses of the CUDA C++ kernels on small odd shapes,
# one cudaMalloc per tensor so that memcheck sees every tensor's true bounds.
if command -v compute-sanitizer > /dev/null 2>&1; then
  run_step "memcheck" "$(cap 70 200)" "$OUT/memcheck.log" env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
    compute-sanitizer --tool memcheck --error-exitcode 99 --print-limit 20 \
    "$PY" -m pytest -q -x -p no:cacheprovider tests/test_cuda.py \
    -k "test_gpu_parity and not triton and (float32 or bfloat16) and (7x7 or 3x5 or 13x11 or 9x6 or 9x7)"
fi

# ------------------------------------------------------------------ 4. benchmarks
BENCH_HELP=""
bench_flags_ok() { # the flags bench_ops.py understands today (it is written alongside)
  for f in "$@"; do grep -q -- "$f" <<< "$BENCH_HELP" || return 1; done
}
if [[ -f benchmarks/bench_ops.py ]]; then
  BENCH_HELP=$("$PY" benchmarks/bench_ops.py --help 2>&1 || true)
  BASE=(benchmarks/bench_ops.py --device cuda --out "$OUT/bench")
  EXTRA=()
  bench_flags_ok --no-plot && EXTRA+=(--no-plot)
  if bench_flags_ok --providers --shapes --extents --layouts --modes --tag; then
    # One run per dtype and shape set: a run cut off by its limit loses only its own JSON.
    COMMON=(--extents 0 --layouts nchw,cl --modes forward,backward,full --providers eager,fused,triton,clone)
    run_step "bench bf16 wrn" "$(cap 60 160)" "$OUT/bench_bf16_wrn.log" "$PY" "${BASE[@]}" ${EXTRA[@]+"${EXTRA[@]}"} \
      --dtype bfloat16 --shapes wrn "${COMMON[@]}" --tag cuda-bf16-wrn
    run_step "bench bf16 resnet50" "$(cap 75 110)" "$OUT/bench_bf16_rn50.log" "$PY" "${BASE[@]}" ${EXTRA[@]+"${EXTRA[@]}"} \
      --dtype bfloat16 --shapes resnet50 "${COMMON[@]}" --tag cuda-bf16-rn50
    run_step "bench fp32 wrn" "$(cap 60 80)" "$OUT/bench_fp32_wrn.log" "$PY" "${BASE[@]}" ${EXTRA[@]+"${EXTRA[@]}"} \
      --dtype float32 --shapes wrn "${COMMON[@]}" --tag cuda-fp32-wrn
    run_step "bench fp32 resnet50" "$(cap 75 45)" "$OUT/bench_fp32_rn50.log" "$PY" "${BASE[@]}" ${EXTRA[@]+"${EXTRA[@]}"} \
      --dtype float32 --shapes resnet50 "${COMMON[@]}" --tag cuda-fp32-rn50
    # torch.compile (max-autotune) compiles and tunes per shape: the smallest WRN stage
    # only, unless GPU_CHECK_FULL=1 (a second run with the time for it).
    CSHAPES=(--shapes wrn --ops gather_excite,excite)
    if [[ "${GPU_CHECK_FULL:-0}" != 1 ]] && bench_flags_ok --quick; then CSHAPES=(--quick --ops gather_excite); fi
    run_step "bench bf16 vs compile" "$(cap 80 0)" "$OUT/bench_compile.log" "$PY" "${BASE[@]}" ${EXTRA[@]+"${EXTRA[@]}"} \
      --dtype bfloat16 "${CSHAPES[@]}" --extents 0 --layouts nchw --modes full \
      --providers eager,compile,fused,triton,clone --tag cuda-bf16-compile
    if [[ "${GPU_CHECK_FULL:-0}" == 1 ]]; then
      run_step "bench bf16 extent 4" "$(cap 120 0)" "$OUT/bench_bf16_e4.log" "$PY" "${BASE[@]}" ${EXTRA[@]+"${EXTRA[@]}"} \
        --dtype bfloat16 --shapes all --extents 4 --layouts nchw,cl --modes forward,backward,full \
        --providers eager,fused,triton,clone --tag cuda-bf16-e4
    fi
  else
    run_step "bench (default flags)" "$(cap 200 0)" "$OUT/bench_default.log" "$PY" "${BASE[@]}" ${EXTRA[@]+"${EXTRA[@]}"}
  fi
else
  echo "benchmarks/bench_ops.py not found: no op benchmarks" | tee "$OUT/bench_missing.txt"
fi
if [[ -f benchmarks/bench_train.py ]]; then
  TRAIN=(benchmarks/bench_train.py)
  THELP=$("$PY" benchmarks/bench_train.py --help 2>&1 || true)
  grep -q -- "--device" <<< "$THELP" && TRAIN+=(--device cuda)
  grep -q -- "--out" <<< "$THELP" && mkdir -p "$OUT/train" && TRAIN+=(--out "$OUT/train")
  grep -q -- "--quick" <<< "$THELP" && TRAIN+=(--quick)
  run_step "bench train" "$(cap 60 0)" "$OUT/bench_train.log" "$PY" "${TRAIN[@]}"
fi

# ------------------------------------------------------- 3b. the rest of the suite
run_step "tests: the rest" "$(cap 150 5)" "$OUT/pytest_rest.log" "${PYTEST[@]}" tests \
  --ignore=tests/test_cuda.py --ignore=tests/test_triton.py
grep -E "^(FAILED|ERROR)" "$OUT/pytest_rest.log" 2> /dev/null | head -n 20 || true

# ------------------------------------------------------------- 5. results, table
log "done in $((SECONDS - T0))s; results under $OUT"
"$PY" - "$OUT" << 'PYEOF' || echo "gpu_check: summary failed"
import datetime, glob, json, os, re, statistics, sys

out = sys.argv[1]


def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except Exception:  # noqa: BLE001
        return default


def lines(name):
    try:
        return [ln.rstrip() for ln in open(os.path.join(out, name), errors="replace")]
    except OSError:
        return []


versions = load(os.path.join(out, "versions.json"), {}) or {}
steps = []
for ln in lines("steps.tsv"):
    name, rc, secs, limit = ln.split("\t")
    steps.append({"step": name, "rc": int(rc), "seconds": int(secs), "limit": int(limit)})
rows, machines = [], {}
for path in sorted(glob.glob(os.path.join(out, "bench", "*.json"))):
    data = load(path)
    if not data or "rows" not in data:
        continue
    machines[os.path.basename(path)] = data.get("machine")
    rows += [dict(r, run=os.path.basename(path)) for r in data["rows"]
             if isinstance(r, dict) and {"op", "mode", "provider", "ms"} <= r.keys()]
train = {}
for path in sorted(glob.glob(os.path.join(out, "train", "*.json"))):
    data = load(path)
    if data:
        train[os.path.basename(path)] = data

device = versions.get("device_name", "unknown-gpu")
slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
date = datetime.date.today().isoformat()
pytest_logs = {name: lines(name) for name in ("pytest_cuda.log", "pytest_rest.log")}
info = load(os.path.join(out, "backend_info.json"))
result = {
    "device_name": device, "driver": versions.get("driver"), "torch": versions.get("torch"),
    "torch_cuda": versions.get("torch_cuda"), "triton": versions.get("triton"), "python": versions.get("python"),
    "date": date, "versions": versions, "steps": steps, "backend_info": info,
    "pytest_summary": {n: (ls[-1] if ls else None) for n, ls in pytest_logs.items()},
    "pytest_failures": [ln for ls in pytest_logs.values() for ln in ls if ln.startswith(("FAILED", "ERROR"))],
    "ptxas": lines("ptxas.txt"), "bench_machines": machines, "bench_rows": rows, "train": train,
}
path = os.path.join(out, f"{slug}-{date}.json")
with open(path, "w") as f:
    json.dump(result, f, indent=1, default=str)


# Issue 3's targets: forward >= 0.85 and backward >= 0.80 of a clone's bandwidth;
# forward+backward >= 2.5x eager and >= 1.2x torch.compile (where compile was timed).
def met(r):
    if r.get("ms") is None:
        return None
    if r["mode"] == "forward":
        return (r.get("frac_clone") or 0) >= 0.85
    if r["mode"] == "backward":
        return (r.get("frac_clone") or 0) >= 0.80
    return (r.get("vs_eager") or 0) >= 2.5 and (r.get("vs_compile") is None or r["vs_compile"] >= 1.2)


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


with open(os.path.join(out, "table.txt"), "w") as f:
    for r in rows:
        if r["provider"] in ("fused", "triton"):
            f.write(f"{r['op']:<13} {r['shape_name']:<8} {r['dtype']:<8} {r['layout']:<4} e{r['extent']} {r['mode']:<8} "
                    f"{r['provider']:<6} {fmt(r['ms'], '9.4f')} ms {fmt(r.get('frac_clone'), '5.2f')} xclone "
                    f"{fmt(r.get('vs_eager'), '5.2f')} x eager {fmt(r.get('vs_compile'), '5.2f')} x compile "
                    f"{'MET' if met(r) else 'miss'} [{r['run']}]\n")


def med(rs, k):
    vals = [r[k] for r in rs if r.get(k) is not None]
    return statistics.median(vals) if vals else None


# Short table: per (op, dtype, layout, extent, mode) and backend, medians over the shapes.
groups = {}
for r in rows:
    if r["provider"] in ("fused", "triton") and r.get("ms") is not None:
        groups.setdefault((r["op"], r["dtype"], r["layout"], r["extent"], r["mode"], r["provider"]), []).append(r)
print()
print(f"== genet_ops GPU check: {device}, driver {versions.get('driver')}, torch {versions.get('torch')}, "
      f"triton {versions.get('triton')}, python {versions.get('python')}")
print("   steps: " + ", ".join(f"{s['step']} rc={s['rc']} {s['seconds']}s" for s in steps))
for n, last in result["pytest_summary"].items():
    print(f"   {n}: {last}")
print(f"   failed tests: {len(result['pytest_failures'])} (see the logs)")
kern = info.get("kernels", {}) if isinstance(info, dict) else {}
print("   CUDA kernels: " + (", ".join(f"{op}={d.get('cuda')}" for op, d in kern.items()) or "unknown"))
print(f"   full results: {path}; per case: {os.path.join(out, 'table.txt')}")
print("   medians over shapes; targets: fwd >= 0.85 xclone, bwd >= 0.80 xclone, full >= 2.5x eager, >= 1.2x compile")
head = (f"{'op':<13} {'dtype':<8} {'lay':<4} {'e':>2} {'mode':<8} {'backend':<7} {'n':>2} {'ms':>8} "
        f"{'xclone':>6} {'x eager':>7} {'x comp':>6} {'met':>5}")
print(head)
print("-" * len(head))
order = {"forward": 0, "backward": 1, "full": 2}
for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3], order.get(k[4], 9), k[5])):
    rs = groups[key]
    ok = [met(r) for r in rs]
    backend = "cuda" if key[5] == "fused" else "triton"
    print(f"{key[0]:<13} {key[1]:<8} {key[2]:<4} {key[3]:>2} {key[4]:<8} {backend:<7} {len(rs):>2} "
          f"{fmt(med(rs, 'ms'), '.3f'):>8} {fmt(med(rs, 'frac_clone'), '.2f'):>6} {fmt(med(rs, 'vs_eager'), '.2f'):>7} "
          f"{fmt(med(rs, 'vs_compile'), '.2f'):>6} {sum(bool(o) for o in ok):>2}/{len(ok):<2}")
wins = {"fused": 0, "triton": 0}
pairs = {}
for r in rows:
    if r["mode"] == "full" and r["provider"] in wins and r.get("ms"):
        pairs.setdefault((r["op"], r["shape_name"], r["dtype"], r["layout"], r["extent"], r["run"]), {})[r["provider"]] = r["ms"]
for d in pairs.values():
    if len(d) == 2:
        wins["fused" if d["fused"] <= d["triton"] else "triton"] += 1
print(f"forward+backward, the faster backend per case: CUDA C++ {wins['fused']}, Triton {wins['triton']}")
for name, data in train.items():
    for r in (data.get("rows") or []) if isinstance(data, dict) else []:
        if isinstance(r, dict) and r.get("provider") in ("eager", "fused") and r.get("img_per_s"):
            vs = f" ({r['vs_eager']:.2f}x eager)" if r.get("vs_eager") else ""
            print(f"train {r.get('model', '')} batch {r.get('batch')} {r['provider']:<6} compile={r.get('compile')}: "
                  f"{r['img_per_s']:.0f} img/s{vs}")
PYEOF
