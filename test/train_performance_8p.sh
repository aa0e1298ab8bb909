#!/bin/bash
# 8 devices, throughput: 8 processes (torchrun), 1024 images per step, 2 epochs.
#   bash ./test/train_performance_8p.sh --data_path=./data
source "$(dirname "${BASH_SOURCE[0]}")/run_case.sh"
run_case performance 8 "$@"
