#!/usr/bin/env bash
# The first check on a machine with CANN and an Atlas A2/A3 NPU. NOT run yet: no machine
# of ours has either. Needs `source <CANN>/set_env.sh`, SOC_VERSION and torch_npu.
#
#   SOC_VERSION=Ascend910B3 bash csrc/ascend/npu_check.sh [out_dir]
#
# Builds, imports and reads backend_info (every op, issue 17's gather_excite_lean /
# excite_lean / excite_lean_backward included, must say "ascend"), runs the NPU tests
# (test_npu_parity and test_npu_lean_parity: the ReLU epilogue, the tile means and the lean
# backward over relu x gather x residual; their shapes include widths
# that are not multiples of 8 or 16: 9, 17, 5; also with a small UB budget), runs them under mssanitizer (memcheck,
# racecheck) with blocking launches, probes the storage formats of real conv/BN outputs,
# times the WRN-16-8 shapes against the reference and a same-size copy, and leaves
# everything in one folder, one archive and a JSON summary. Each step runs even if an
# earlier one failed; the summary says which passed.
set -u
cd "$(dirname "$0")/../.."
OUT=${1:-npu_check_$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
declare -A RC
step() {  # step NAME command...: output in $OUT/NAME.log, exit status in the summary
  local name=$1; shift
  echo "== $name: $*" | tee "$OUT/$name.log"
  "$@" >>"$OUT/$name.log" 2>&1
  RC[$name]=$?
  echo "== $name: exit ${RC[$name]}" | tee -a "$OUT/$name.log"
}
NPU_TESTS="tests/test_ascend.py -k npu -v -p no:cacheprovider"

step env bash -c 'npu-smi info; echo SOC_VERSION=$SOC_VERSION; echo ASCEND_HOME_PATH=${ASCEND_HOME_PATH:-}; python -c "import torch, torch_npu; print(torch.__version__, torch_npu.__version__, torch.npu.is_available())"'
step build env GENET_OPS_ASCEND=1 python setup.py build_ext --inplace
step backend_info python -c 'import json, genet_ops; i = genet_ops.backend_info(); print(json.dumps(i, indent=1)); assert i["ascend_loaded"], i["ascend_error"]; bad = [op for op, k in i["kernels"].items() if k.get("npu") != "ascend"]; assert not bad, f"served by the reference on the NPU: {bad}"'
step npu_tests python -m pytest $NPU_TESTS
step npu_tests_small_ub env GENET_OPS_ASCEND_UB_BYTES=20000 python -m pytest $NPU_TESTS
step formats python - <<'PY'
# Storage formats torch_npu gives real conv / BatchNorm outputs (internal formats allowed, as
# on A2 by default), one forced NC1HWC0 tensor, and that the kernels read each right, output ND.
import torch, torch_npu, genet_ops
from genet_ops import reference
torch.npu.config.allow_internal_format = True
x = torch.randn(8, 64, 16, 16, device="npu", dtype=torch.float16)
conv = torch.nn.Conv2d(64, 64, 3, padding=1).npu().half()
bn = torch.nn.BatchNorm2d(64).npu().half()
cases = {"conv": conv(x), "bn": bn(conv(x)), "forced_nc1hwc0": torch_npu.npu_format_cast(x.clone(), 3)}
bad = []
for name, t in cases.items():
    t = t.detach()
    fmt = torch_npu.get_npu_format(t)
    y = torch.ops.genet_ops.gather_excite(t, 0)
    ok = torch.allclose(y.float().cpu(), reference.gather_excite(t.cpu().float(), 0), atol=2e-2, rtol=2e-2)
    yfmt = torch_npu.get_npu_format(y)
    print(f"{name}: input format {fmt}, output format {yfmt}, matches reference: {ok}")
    if not ok or yfmt not in (0, 2):
        bad.append(name)
assert not bad, bad
PY
step timing python - <<'PY'
# WRN-16-8 stage shapes (batch 128, global extent, fp16): Ascend kernel vs reference vs a same-size copy.
import torch, torch_npu, genet_ops
from genet_ops import reference
def t(fn, n=20):
    fn(); torch.npu.synchronize()
    s, e = torch.npu.Event(enable_timing=True), torch.npu.Event(enable_timing=True)
    s.record()
    for _ in range(n): fn()
    e.record(); torch.npu.synchronize()
    return s.elapsed_time(e) / n
ops = torch.ops.genet_ops
for C, S in ((128, 32), (256, 16), (512, 8)):
    x = torch.randn(128, C, S, S, device="npu", dtype=torch.float16)
    r, dy = torch.randn_like(x), torch.randn_like(x)
    y = torch.empty_like(x)
    out, g = ops.gather_excite_lean(x, 0, r, True)
    print(f"128x{C}x{S}x{S}: ascend {t(lambda: ops.gather_excite(x, 0)):.3f} ms, "
          f"reference {t(lambda: reference.gather_excite(x, 0)):.3f} ms, copy {t(lambda: y.copy_(x)):.3f} ms; "
          f"lean fwd (residual, relu) {t(lambda: ops.gather_excite_lean(x, 0, r, True)):.3f} ms, "
          f"input-keeping bwd {t(lambda: ops.gather_excite_backward(dy, x, 0)):.3f} ms, "
          f"lean bwd {t(lambda: ops.excite_lean_backward(dy, out, r, g, 0, True, True)):.3f} ms")
PY
# Last: the sanitizer needs instrumented kernels (GENET_OPS_ASCEND_SANITIZE=1), then the plain build again.
step sanitizer_build env GENET_OPS_ASCEND=1 GENET_OPS_ASCEND_SANITIZE=1 python setup.py build_ext --inplace
for tool in memcheck racecheck; do
  step "sanitizer_$tool" env ASCEND_LAUNCH_BLOCKING=1 mssanitizer --tool=$tool --log-file="$OUT/mssanitizer_$tool.txt" -- \
    python -m pytest $NPU_TESTS -k "parity and not channels_last"
done
step rebuild env GENET_OPS_ASCEND=1 python setup.py build_ext --inplace
python - "$OUT" "${!RC[@]}" -- "${RC[@]}" <<'PY'
import json, sys
out = sys.argv[1]; i = sys.argv.index("--")
names, codes = sys.argv[2:i], sys.argv[i + 1:]
summary = {n: {"exit": int(c), "passed": c == "0", "log": f"{n}.log"} for n, c in zip(names, codes)}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print(json.dumps(summary, indent=1))
PY
tar czf "$OUT.tar.gz" "$OUT" && echo "archive: $OUT.tar.gz"
