#!/bin/bash
# 1 device, throughput: the seed's recipe for 2 epochs; FPS@all of the last one.
#   bash ./test/train_performance_1p.sh --data_path=./data
source "$(dirname "${BASH_SOURCE[0]}")/run_case.sh"
run_case performance 1 "$@"
