#!/bin/bash
# 1 device, accuracy: the seed's recipe (AMP O2, 300 epochs, batch 128).
#   bash ./test/train_full_1p.sh --data_path=./data
source "$(dirname "${BASH_SOURCE[0]}")/run_case.sh"
run_case full 1 "$@"
