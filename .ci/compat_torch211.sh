#!/usr/bin/env bash
# CI: the GPU image's versions (torch 2.11.0+cu130, Triton 3.6.0) in a second venv, so that
# an API that differs from our pinned torch fails here, on the CPU, not in a GPU lease:
# build the extension with the CUDA sources against torch 2.11 (in a copy of the tree, so
# the checkout keeps its extension built against the pinned torch), then the Triton tests
# under TRITON_INTERPRET=1 (tests/conftest.py sets it), a GPU-check dry run and a quick
# CPU subset, and the autograd tests (they use torch.func internals). COMPAT_VENV chooses
# the venv (default .venv211, made if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV="${COMPAT_VENV:-$ROOT/.venv211}"

start=$(date +%s)
[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
# numpy < 2.4: Triton 3.6's interpreter calls int() on 1-element arrays, which numpy 2.4
# refuses (only the interpreter does; on a GPU it is not used)
"$VENV/bin/python" -m pip install -q torch==2.11.0 torchvision==0.26.0 triton==3.6.0 numpy==2.3.5 ninja==1.13.2 \
  pytest==9.2.0
echo "compat: venv with torch 2.11 took $(($(date +%s) - start)) s"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
tar -C "$ROOT" --exclude=./.git --exclude=./.venv --exclude="./$(basename "$VENV")" --exclude=./build \
  --exclude='*.so' --exclude=__pycache__ -cf - . | tar -C "$WORK" -xf -
cd "$WORK"
. "$VENV/bin/activate"

start=$(date +%s)
if ! GENET_OPS_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=2 python setup.py build_ext --inplace > build.log 2>&1; then
  tail -60 build.log
  echo "compat: the build against torch 2.11 failed"
  exit 1
fi
echo "compat: build (CUDA sources, sm_90) took $(($(date +%s) - start)) s"
python - << 'PYEOF'
import json, torch, triton, genet_ops
info = genet_ops.backend_info()
print(f"compat: torch {torch.__version__}, triton {triton.__version__}:", json.dumps(info))
assert info["extension_loaded"], info["extension_error"]
assert info["kernels"]["gather_excite"]["cuda"] == "cuda", "the CUDA kernels were not compiled"
assert info["triton"], info["triton_error"]
PYEOF

start=$(date +%s)
python -m pytest -q -p no:cacheprovider tests/test_triton.py tests/test_gpu_check.py tests/test_hardening.py tests/test_autograd.py \
  tests/test_ops.py tests/test_parity.py -k "not cuda_emu"
echo "compat: tests took $(($(date +%s) - start)) s"
