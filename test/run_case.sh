#!/bin/bash
# What the five ModelZoo entry points in this folder share (sourced, not run): their
# arguments, the device, the train.py run, and the files ModelZoo's tooling reads after.
#
#   run_case MODE RANKS ARGS...     MODE: full | performance | eval; RANKS: 1 or 8
#
# Output, under test/output/${ASCEND_DEVICE_ID:-0}/ (GENET_TEST_OUTPUT replaces test/output):
#   train_<id>.log              train.py's output: the seed's FPS@all and "* Err@1 ... Err@5 ..." lines
#   <CaseName>.log              Network, RankSize, BatchSize, DeviceType, CaseName, ActualFPS, ...
#   train_<CaseName>_loss.txt   every training step's loss (full and performance)
#   <mode>_<R>p/                train.py's --output_dir: checkpoints, metrics.csv, steps.csv

Network="GENET"  # the seed's name, so its case logs keep their names

case_usage() {
    cat <<USAGE
usage: bash $0 --data_path=DIR [--batch_size=N] [--epochs=N] [--resume=CKPT] [--KEY=VALUE ...]
  --data_path   folder holding cifar-10-batches-py/ (required)
  --batch_size  images per step over all $2 device(s) (default $((128 * $2)): 128 per device)
  --epochs      default: $([ "$1" = performance ] && echo "2 (a throughput run)" || echo "300 (the seed's recipe)")
  --resume      eval: the checkpoint (default test/output/<id>/full_8p/model_best.pth.tar);
                full/performance: continue that run
  --device      npu, cuda or cpu (default: npu where torch_npu finds one, else cuda, else cpu)
  --output_dir  train.py's checkpoints and metrics (default test/output/<id>/<mode>_<R>p)
  anything else goes to train.py, e.g. --depth=10 --width=1 --no-fused-ge (python train.py --help)
USAGE
}

case_error() {
    echo "[Error] $*" >&2
    return 1
}

run_case() {
    local mode=$1 ranks=$2
    shift 2
    local test_dir py
    test_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    py=${PYTHON:-python3}

    local data_path="" batch_size=$((128 * ranks)) epochs=300 resume="" device="" run_dir="" extra=() para
    [ "$mode" = performance ] && epochs=2
    for para in "$@"; do
        case $para in
            -h|--help) case_usage "$mode" "$ranks"; return 0 ;;
            --data_path=*|--data-path=*) data_path=${para#*=} ;;
            --batch_size=*|--batch-size=*) batch_size=${para#*=} ;;
            --epochs=*) epochs=${para#*=} ;;
            --resume=*) resume=${para#*=} ;;
            --device=*) device=${para#*=} ;;
            --output_dir=*|--output-dir=*) run_dir=${para#*=} ;;
            --data_path|--data-path|--batch_size|--batch-size|--epochs|--resume|--device|--output_dir|--output-dir)
                case_error "$para needs a value: write $para=VALUE"; return ;;
            --*) extra+=("$para") ;;
            *) case_error "argument '$para' is not --key=value (e.g. --data_path=./data)"; return ;;
        esac
    done

    if [ -z "$data_path" ]; then
        case_error "--data_path is required: --data_path=DIR, the folder holding cifar-10-batches-py/"; return
    fi
    [ -d "$data_path" ] || { case_error "--data_path=$data_path is not a directory"; return; }
    [[ $batch_size =~ ^[1-9][0-9]*$ ]] || { case_error "--batch_size must be a positive integer, got '$batch_size'"; return; }
    if (( batch_size % ranks )); then
        case_error "--batch_size=$batch_size (images per step) must be a multiple of the $ranks devices"; return
    fi
    [[ $epochs =~ ^[1-9][0-9]*$ ]] || { case_error "--epochs must be a positive integer, got '$epochs'"; return; }

    # The device: NPU (torch_npu), else CUDA, else CPU; 8p is 8 processes of whichever.
    if [[ $device == npu* ]] || { [ -z "$device" ] && compgen -G "/dev/davinci[0-9]*" > /dev/null; }; then
        source "$test_dir/env_npu.sh"
    fi
    local probe="0 0" n_npu n_cuda count
    if [ "$device" != cpu ]; then  # count the devices (a torch import)
        probe=$("$py" -c '
import torch
try:
    import torch_npu  # noqa: F401  (registers torch.npu)
    npu = torch.npu.device_count() if torch.npu.is_available() else 0
except ImportError:
    npu = 0
print(npu, torch.cuda.device_count() if torch.cuda.is_available() else 0)' 2> /dev/null | tail -n 1)
        [[ $probe =~ ^[0-9]+\ [0-9]+$ ]] || { case_error "$py cannot import torch (set PYTHON=/path/to/python)"; return; }
    fi
    read -r n_npu n_cuda <<< "$probe"
    if [ -z "$device" ]; then
        if (( n_npu > 0 )); then device=npu; elif (( n_cuda > 0 )); then device=cuda; else device=cpu; fi
    fi
    case ${device%%:*} in
        npu) count=$n_npu ;;
        cuda|gpu) count=$n_cuda ;;
        cpu) count=$ranks ;;
        *) case_error "--device must be npu, cuda or cpu, got '$device'"; return ;;
    esac
    if (( count < ranks )); then
        case_error "${ranks}p needs $ranks $device device(s), found $count (--device=cpu runs $ranks CPU processes)"; return
    fi
    if [ "$ranks" = 1 ] && [ "${device%%:*}" = npu ] && [ -n "$ASCEND_DEVICE_ID" ] && [ -z "$ASCEND_RT_VISIBLE_DEVICES" ]; then
        export ASCEND_RT_VISIBLE_DEVICES=$ASCEND_DEVICE_ID  # 1p trains on card ASCEND_DEVICE_ID
    fi
    export RANK_SIZE=$ranks

    local dev_id=${ASCEND_DEVICE_ID:-0} tag
    case $mode in full) tag=acc ;; performance) tag=perf ;; *) tag=eval ;; esac
    local out=${GENET_TEST_OUTPUT:-$test_dir/output}/$dev_id
    local log=$out/train_$dev_id.log case_name=${Network}_bs${batch_size}_${ranks}p_$tag
    local loss_file=$out/train_${case_name}_loss.txt
    run_dir=${run_dir:-$out/${mode}_${ranks}p}
    if [ "$mode" = eval ]; then
        resume=${resume:-$out/full_8p/model_best.pth.tar}
        [ -f "$resume" ] || { case_error "--resume=$resume: no such checkpoint (train_full_8p.sh leaves one in $out/full_8p/)"; return; }
    fi
    mkdir -p "$out" || return
    rm -f "$log" "$out/$case_name.log" "$loss_file"

    local args=(--data_path="$data_path" --device="$device" --batch_size=$((batch_size / ranks)) --amp --opt_level=O2
                --seed=49 --progress=false --output_dir="$run_dir")
    if [ "$mode" = eval ]; then
        args+=(--evaluate --resume="$resume")
    else
        args+=(--epochs="$epochs")
        [ -n "$resume" ] && args+=(--resume="$resume")
    fi
    local launch=("$py")
    (( ranks > 1 )) && launch=("$py" -m torch.distributed.run --standalone --nproc-per-node="$ranks")

    echo "$Network $mode ${ranks}p on $device, batch $batch_size per step; log: $log"
    local start rc=0 e2e
    start=$(date +%s)
    "${launch[@]}" "$test_dir/../train.py" "${args[@]}" "${extra[@]}" > "$log" 2>&1 || rc=$?
    e2e=$(( $(date +%s) - start ))
    if (( rc )); then
        echo "[Error] train.py exited with status $rc; the end of $log:" >&2
        tail -n 15 "$log" >&2
        return $rc
    fi

    local fps err1 acc loss step_ms
    fps=$(grep -a 'FPS@all' "$log" | tail -n 1 | sed 's/.*FPS@all \([0-9.]*\).*/\1/')
    err1=$(grep -a '\* Err@1' "$log" | tail -n 1 | sed 's/.*\* Err@1 \([0-9.]*\).*/\1/')
    [[ $fps =~ ^[0-9.]+$ && $err1 =~ ^[0-9.]+$ ]] || { case_error "no FPS@all / * Err@1 line in $log"; return; }
    acc=$(awk -v e="$err1" 'BEGIN { printf "%.3f", 100 - e }')
    if [ "$mode" = eval ]; then
        loss=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["val_loss"])' "$run_dir/eval.json")
    else
        tail -n +2 "$run_dir/steps.csv" | cut -d, -f3 > "$loss_file"
        loss=$(tail -n 1 "$loss_file")
        step_ms=$(awk -v b="$batch_size" -v f="$fps" 'BEGIN { printf "%.2f", (f > 0 ? b * 1000 / f : 0) }')
    fi

    echo "------------------ Final result ------------------"
    echo "Final Performance images/sec : $fps"
    [ "$mode" != performance ] && echo "Final Train Accuracy : $acc"
    echo "E2E Training Duration sec : $e2e"
    {
        echo "Network = $Network"
        echo "RankSize = $ranks"
        echo "BatchSize = $batch_size"
        echo "DeviceType = $(uname -m)"
        echo "CaseName = $case_name"
        echo "ActualFPS = $fps"
        [ "$mode" != eval ] && echo "TrainingTime = $step_ms"
        [ "$mode" != performance ] && echo "TrainAccuracy = $acc"
        echo "ActualLoss = $loss"
        [ "$mode" != performance ] && echo "E2ETrainingTime = $e2e"
    } > "$out/$case_name.log"
    return 0
}
