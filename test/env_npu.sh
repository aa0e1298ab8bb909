#!/bin/bash
# Ascend environment for the test/ scripts: sourced by them where an NPU is present
# (/dev/davinci*), or when --device=npu is asked for. CANN's own set_env.sh sets the
# library and Python paths torch_npu needs; the rest are the ModelZoo defaults.

cann_conf=/etc/Ascend/ascend_cann_install.info
if [ -f "$cann_conf" ]; then
    cann_root=$(grep Install_Path "$cann_conf" | cut -d= -f2)
else
    cann_root=/usr/local/Ascend
fi
if [ -f "$cann_root/ascend-toolkit/set_env.sh" ]; then
    source "$cann_root/ascend-toolkit/set_env.sh"
elif [ -f "$cann_root/nnae/set_env.sh" ]; then
    source "$cann_root/nnae/set_env.sh"
else
    echo "env_npu.sh: no CANN set_env.sh under $cann_root (ascend-toolkit or nnae); using the environment as it is" >&2
fi

export ASCEND_SLOG_PRINT_TO_STDOUT=0   # host logs to files, not the console
export ASCEND_GLOBAL_LOG_LEVEL=3       # 0 debug, 1 info, 2 warning, 3 error
export ASCEND_GLOBAL_EVENT_ENABLE=0
export TASK_QUEUE_ENABLE=1             # asynchronous op launch
export HCCL_WHITELIST_DISABLE=1        # 8p: no HCCL trust list on one node
export HCCL_CONNECT_TIMEOUT=1200
