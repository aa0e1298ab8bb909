#!/usr/bin/env bash
# The GPU check: one command that brings back a complete, trustworthy measurement from one
# short GPU lease, on a bare H100 / H200 machine that has Python, torch (CUDA build),
# Triton and nvcc but no package index. From the repository root:
#
#     OUT=/some/dir benchmarks/gpu_check.sh          # OUT defaults to ./gpu_check_out
#     GPU_CHECK_DRY_RUN=1 OUT=/tmp/o benchmarks/gpu_check.sh   # on a machine without a GPU
#
# It works in a scratch folder (GPU_CHECK_SCRATCH, default a fresh mktemp -d) and leaves
# exactly three files in $OUT, rewritten after every step and once more when the run ends
# or is cut off (trap), so no finished row is lost:
#   summary.json  versions (device, driver, torch, Triton, nvcc), each step's status and
#                 time, every benchmark row, correctness, A/B, tests, ptxas, bench_train;
#   table.txt     the same as tables, with the targets met or missed;
#   logs.tar.gz   every step's log, the build's ptxas report, the raw rows.jsonl.
# Benchmark rows are streamed (bench_ops --jsonl) as each case finishes.
#
# Steps, in order of value, each with its own time limit (seconds; cut to what the whole
# budget, GPU_CHECK_BUDGET_S=510 by default, has left; a step that gets under 10 s is
# skipped). Python steps stop starting cases 10 s before their limit:
#    versions          45  python / torch / Triton / nvcc / driver / device
#    build            170  setup.py build_ext --inplace for sm_90 with every core, ptxas -v
#    check_cuda        45  correctness at full size: CUDA C++, every bench shape, bf16 + fp32,
#                          NCHW + channels_last, extents 0 2 4 8, NaN-poisoned outputs, the
#                          first images against the float64 reference (bench_ops --check)
#    check_triton      80  the same for Triton, extents 0 and 2 (also fills Triton's caches)
#    bw_cuda          110  CUDA C++ forward, backward, forward+backward next to a same-size
#                          clone: WRN-16-8 stages at N=512, ResNet-50 stages at N=256, bf16
#                          then fp32, both layouts, extents 0 2 4 8; do_bench medians over
#                          rotated inputs
#    racecheck         40  compute-sanitizer on tools/sanitizer_cases.py (the 64- and
#    synccheck         25  512-thread reductions, tiles narrower than a vector, misaligned
#    memcheck          30  storage, the two-sweep paths)
#    bw_triton         90  the bandwidth table for Triton, extents 0 and 2
#    ab                60  every genet_ops._tuning knob's values side by side (skipped when
#                          the module is missing)
#    compile           90  eager, torch.compile (default mode), fused CUDA C++ and Triton, bf16,
#                          gather_excite, extents 0 then 2, the same shapes
#    memory            45  bench_memory: saved bytes and CUDA peak of a GE-WRN-16-8 training step,
#                          N=512 bf16 autocast then fp32: no GE, eager, fused keeping the input,
#                          fused keeping the output (save='auto' and 'output')
#    tests             90  pytest tests/test_parity.py test_cuda.py test_triton.py test_hardening.py
#                          -k "not emu" -m "not host" (the GPU's tests, not the CPU backends')
#    train             60  bench_train: GE-WRN-16-8, bf16, channels_last, batch 512, eager vs
#                          fused, with and without compile (if time is left)
# GPU_CHECK_DRY_RUN=1 runs what needs no GPU (versions, the build unless
# GPU_CHECK_SKIP_BUILD=1, the summary) and reports every GPU step as skipped; each skipped
# benchmark step's bench_ops command is still parsed and its case list built (in one
# Python process, gpu_check.py dry-bench), so a broken flag fails here, not on the GPU.
# tests/test_gpu_check.py checks what a dry run leaves in $OUT.
set -uo pipefail  # no -e: a failing step never stops the run

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT="${OUT:-$ROOT/gpu_check_out}"
DRY="${GPU_CHECK_DRY_RUN:-0}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-510}"
SCRATCH="${GPU_CHECK_SCRATCH:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}"
LOGS="$SCRATCH/logs"
ROWS="$SCRATCH/rows.jsonl"
STEPS="$SCRATCH/steps.jsonl"
mkdir -p "$OUT" "$LOGS" "$SCRATCH/train"
: > "$ROWS"
: > "$STEPS"
printf '{"dry_run": %s, "budget_s": %d}\n' "$([[ $DRY == 1 ]] && echo true || echo false)" "$BUDGET_S" > "$SCRATCH/run.json"
T0=$SECONDS
MAX_LOGS_BYTES=$((15 * 1024 * 1024))  # the device tool brings back files up to 16 MiB

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

log() { printf '=== [%3ds] %s\n' "$((SECONDS - T0))" "$*"; }

# Rebuild summary.json / table.txt from the scratch folder and pack the logs; run after
# every step, so that even a SIGKILL leaves the state after the last finished step.
snapshot() {
  "$PY" benchmarks/gpu_check.py summary "$SCRATCH" "$OUT" "$@" 2> "$LOGS/summary.err" || echo "gpu_check: summary failed"
  tar -czf "$OUT/logs.tar.gz.part" -C "$SCRATCH" logs rows.jsonl steps.jsonl 2> /dev/null
  if (($(stat -c %s "$OUT/logs.tar.gz.part") > MAX_LOGS_BYTES)); then  # keep each log's end
    for f in "$LOGS"/*; do
      if (($(stat -c %s "$f") > 2000000)); then tail -c 2000000 "$f" > "$f.t" && mv "$f.t" "$f"; fi
    done
    tar -czf "$OUT/logs.tar.gz.part" -C "$SCRATCH" logs rows.jsonl steps.jsonl 2> /dev/null
  fi
  mv -f "$OUT/logs.tar.gz.part" "$OUT/logs.tar.gz"
}

CHILD=""
finish() {
  trap - EXIT INT TERM
  if [[ -n "$CHILD" ]]; then kill -INT "$CHILD" 2> /dev/null && sleep 2; fi
  log "done: $OUT/summary.json, table.txt, logs.tar.gz (scratch $SCRATCH)"
  snapshot --print
}
trap finish EXIT
trap 'echo "gpu_check: interrupted"; exit 130' INT TERM

# record NAME STATUS RC SECONDS LIMIT NOTE
record() {
  local note
  note=$(printf '%s' "$6" | tr -d '\000-\037\\' | tr '"' "'")  # JSON-safe
  printf '{"step": "%s", "status": "%s", "rc": %d, "seconds": %d, "limit": %d, "note": "%s"}\n' \
    "$1" "$2" "$3" "$4" "$5" "$note" >> "$STEPS"
}

# step NAME WANT GPU CMD...: CMD under min(WANT, what the budget has left) seconds, its
# output in logs/NAME.log. GPU=1 steps are skipped in a dry run, where a bench_ops
# command still checks its case list (--dry-run). The token @DEADLINE@ in CMD becomes
# the limit minus 10 s (bench_ops --deadline: stop starting cases, exit status 3).
step() {
  local name=$1 want=$2 gpu=$3 t=$SECONDS rc=0 status note=""
  shift 3
  local left=$((BUDGET_S - (SECONDS - T0)))
  local limit=$((want < left ? want : left))
  local args=() a
  for a in "$@"; do args+=("${a//@DEADLINE@/$((limit > 20 ? limit - 10 : 10))}"); done
  if [[ $DRY == 1 && $gpu == 1 ]]; then
    # bench_ops commands are checked together at the end (one Python start, not one each)
    if [[ " ${args[*]} " == *" benchmarks/bench_ops.py "* ]]; then
      (IFS=$'\t' && printf '%s\t%s\n' "$name" "${args[*]}") >> "$SCRATCH/dry_bench.tsv"
    fi
    record "$name" skipped 0 0 0 "dry run: needs a GPU"
    log "$name: skipped (dry run: needs a GPU)"
    return 0
  fi
  if ((limit < 10)); then
    record "$name" skipped 0 0 "$limit" "time budget spent"
    log "$name: skipped, the time budget is spent"
    return 0
  fi
  log "$name (limit ${limit}s)"
  timeout --signal=INT --kill-after=15 "$limit" "${args[@]}" > "$LOGS/$name.log" 2>&1 &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=""
  case $rc in
    0) status=ok ;;
    3) status=partial note="stopped at its deadline, later cases not run" ;;
    4) status=skipped note="$(tail -n 1 "$LOGS/$name.log")" ;;
    124 | 130 | 137) status=cut note="cut off at its ${limit}s limit" ;;
    *) status=failed note="exit status $rc: $(grep -m1 -E 'Error|ERROR|FAIL|error:' "$LOGS/$name.log" | cut -c1-200)" ;;
  esac
  record "$name" "$status" "$rc" $((SECONDS - t)) "$limit" "$note"
  tail -n 3 "$LOGS/$name.log" | cut -c1-200
  log "$name: $status in $((SECONDS - t))s"
  snapshot
}

BENCH=("$PY" benchmarks/bench_ops.py --device cuda --shapes all --layouts nchw,cl --no-files --jsonl "$ROWS"
  --deadline @DEADLINE@)
SHAPES_NOTE="WRN-16-8 N=512, ResNet-50 N=256"

# ----------------------------------------------------------------- 1. versions
step versions 45 0 "$PY" benchmarks/gpu_check.py versions "$SCRATCH"
(nvidia-smi 2>&1 || echo "nvidia-smi failed") > "$LOGS/nvidia-smi.txt"

# -------------------------------------------------------------------- 2. build
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
if [[ -z "${CUDA_HOME:-}" && -x /usr/local/cuda/bin/nvcc ]]; then export CUDA_HOME=/usr/local/cuda; fi
if [[ $DRY == 1 && "${GPU_CHECK_SKIP_BUILD:-0}" == 1 ]]; then
  record build skipped 0 0 0 "GPU_CHECK_SKIP_BUILD=1: the extension in place is used"
else
  # ptxas -v: registers / spills per kernel, into the build log
  step build 170 0 env GENET_OPS_CUDA=1 NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:-} -Xptxas=-v" \
    "$PY" setup.py build_ext --inplace
  "$PY" benchmarks/gpu_check.py ptxas "$LOGS/build.log" > "$LOGS/ptxas.txt" 2>&1
fi
"$PY" -c "import torch, genet_ops, json; print(json.dumps(genet_ops.backend_info(), indent=1))" \
  > "$LOGS/backend_info.json" 2> "$LOGS/backend_info.err"

export TRITON_CACHE_AUTOTUNING=1  # Triton's autotune results on disk: the bench steps reuse check_triton's
# ------------------------------------------------------------- 3. correctness
step check_cuda 45 1 "${BENCH[@]}" --check --providers fused --dtype bfloat16,float32 --extents 0,2,4,8 --tag check
step check_triton 80 1 "${BENCH[@]}" --check --providers triton --dtype bfloat16,float32 --extents 0,2 --tag check

# ---------------------------------------------------------- 4. CUDA bandwidth
# fused_lean: the output-keeping ops (save="output"), their backward timed next to fused's
step bw_cuda 110 1 "${BENCH[@]}" --providers fused,fused_lean,clone --dtype bfloat16,float32 --extents 0,2,4,8 \
  --modes forward,backward,full --rep-ms 30 --tag bw_cuda

# ---------------------------------------------------------- 5. compute-sanitizer
SANITIZER=$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")
for tool_limit in racecheck:40 synccheck:25 memcheck:30; do
  tool=${tool_limit%%:*}
  if [[ $DRY != 1 && ! -x "$SANITIZER" ]]; then
    record "$tool" skipped 0 0 0 "compute-sanitizer not found"
    continue
  fi
  step "$tool" "${tool_limit##*:}" 1 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$SANITIZER" --tool "$tool" \
    --error-exitcode 99 --print-limit 20 "$PY" tools/sanitizer_cases.py
done

# -------------------------------------------------------- 6. Triton bandwidth
step bw_triton 90 1 "${BENCH[@]}" --providers triton,clone --dtype bfloat16,float32 --extents 0,2 \
  --modes forward,backward,full --rep-ms 30 --tag bw_triton

# ------------------------------------------------------------------ 7. A/B
step ab 60 1 "${BENCH[@]}" --ab --dtype bfloat16 --extents 0,2,4,8 --modes forward,backward --rep-ms 30 --tag ab

# ------------------------------------------------------ 8. eager vs compile
step compile 90 1 "${BENCH[@]}" --providers eager,compile,fused,triton,clone --ops gather_excite --dtype bfloat16 \
  --extents 0,2 --modes forward,full --rep-ms 30 --tag compile

# ------------------------------------------------------------- 9. memory
step memory 45 1 "$PY" benchmarks/bench_memory.py --device cuda --models ge_wrn_16_8 --batch 512 --dtypes bf16,fp32 \
  --providers none,eager,fused-input,fused-lean,fused-output --plot false --out "$SCRATCH/memory"

# ------------------------------------------------------------------ 9. tests
step tests 90 1 "$PY" -m pytest -q -rfEs -p no:cacheprovider tests/test_parity.py tests/test_cuda.py \
  tests/test_triton.py tests/test_hardening.py -k "not emu" -m "not host"

# -------------------------------------------------------------- 10. training
step train 60 1 "$PY" benchmarks/bench_train.py --device cuda --batch-sizes 512 --dtype bf16 --channels-last true \
  --compile both --out "$SCRATCH/train"
if [[ $DRY == 1 && -f "$SCRATCH/dry_bench.tsv" ]]; then
  log "dry run: checking every bench_ops command's case list"
  "$PY" benchmarks/gpu_check.py dry-bench "$SCRATCH" > "$LOGS/dry_bench.log" 2>&1 || echo "gpu_check: a bench_ops command is broken"
  tail -n 8 "$LOGS/dry_bench.log"
fi
log "all steps done ($SHAPES_NOTE)"
