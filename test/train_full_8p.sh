#!/bin/bash
# 8 devices, accuracy: the seed's recipe on 8 processes (torchrun), 1024 images per step (128 each).
#   bash ./test/train_full_8p.sh --data_path=./data
source "$(dirname "${BASH_SOURCE[0]}")/run_case.sh"
run_case full 8 "$@"
