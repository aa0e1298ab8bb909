#!/bin/bash
# 8 devices, evaluation of a checkpoint on the CIFAR-10 test set (default: train_full_8p.sh's best).
#   bash ./test/train_eval_8p.sh --data_path=./data [--resume=PATH]
source "$(dirname "${BASH_SOURCE[0]}")/run_case.sh"
run_case eval 8 "$@"
