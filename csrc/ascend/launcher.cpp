// PrivateUse1 (torch_npu) kernels of the genet_ops library: the shared preparation
// (genet_ops.h), storage formats (npu_format.h), tiling, and the launch of the Ascend C
// kernels (kernels/genet_ops_kernels.cpp) on the current NPU stream through torch_npu's
// task queue. Built into its own module, genet_ops._C_ascend (csrc/ascend/build.py), so a
// link or load failure here never takes the CPU / CUDA kernels in genet_ops._C with it.
//
// Layout: the kernels read NCHW. A channels_last x (and residual / grad_out / g) is
// copied to NCHW-contiguous, the kernel writes an NCHW result, and that is copied into a
// channels_last output, so outputs keep the layout rule every backend follows
// (empty_like(kernel_input(x)), and g_for_layout for excite_backward's dg), which is what
// the fake functions in genet_ops/ops.py promise.
// Dtypes: float16, bfloat16, float32. float64 is refused with a message naming the
// workaround (GENET_OPS_BACKEND=reference).
// ReLU is the kernels' epilogue (GenetTiling::relu), gather_excite_lean is the gather_excite
// kernel also writing the tile means, excite_lean_backward has its own kernel. None of this
// has been compiled by CANN or run on an NPU (csrc/ascend/README.md says what was checked).
#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <cstdlib>
#include <functional>
#include <mutex>
#include <tuple>
#include <vector>

#include "acl/acl_base.h"
#include "torch_npu/csrc/core/npu/NPUFormat.h"
#include "torch_npu/csrc/core/npu/NPUStream.h"
#include "torch_npu/csrc/framework/OpCommand.h"
#include "tiling/platform/platform_ascendc.h"

#include "genet_ops.h"
#include "npu_format.h"
#include "tiling.h"

#include "aclrtlaunch_genet_ex_bwd_bf16.h"
#include "aclrtlaunch_genet_ex_bwd_fp16.h"
#include "aclrtlaunch_genet_ex_bwd_fp32.h"
#include "aclrtlaunch_genet_ex_fwd_bf16.h"
#include "aclrtlaunch_genet_ex_fwd_fp16.h"
#include "aclrtlaunch_genet_ex_fwd_fp32.h"
#include "aclrtlaunch_genet_ex_lean_bwd_bf16.h"
#include "aclrtlaunch_genet_ex_lean_bwd_fp16.h"
#include "aclrtlaunch_genet_ex_lean_bwd_fp32.h"
#include "aclrtlaunch_genet_ge_bwd_bf16.h"
#include "aclrtlaunch_genet_ge_bwd_fp16.h"
#include "aclrtlaunch_genet_ge_bwd_fp32.h"
#include "aclrtlaunch_genet_ge_fwd_bf16.h"
#include "aclrtlaunch_genet_ge_fwd_fp16.h"
#include "aclrtlaunch_genet_ge_fwd_fp32.h"

namespace genet_ops {
namespace ascend {
namespace {

struct Platform {
  int64_t cores = 0;  // AI vector cores
  int64_t ub = 0;     // Unified Buffer bytes per core
};

const Platform& platform() {
  static Platform p;
  static std::once_flag once;
  std::call_once(once, [] {
    auto* info = platform_ascendc::PlatformAscendCManager::GetInstance();
    TORCH_CHECK(info != nullptr, "genet_ops: cannot read the Ascend platform info (PlatformAscendCManager)");
    p.cores = static_cast<int64_t>(info->GetCoreNumAiv());
    uint64_t ub = 0;
    info->GetCoreMemSize(platform_ascendc::CoreMemType::UB, ub);
    p.ub = static_cast<int64_t>(ub);
    TORCH_CHECK(p.cores > 0 && p.ub > 0, "genet_ops: Ascend platform reports ", p.cores, " vector cores and ",
                p.ub, " bytes of UB");
  });
  return p;
}

// GENET_OPS_ASCEND_UB_BYTES caps the UB budget (testing the segment / STREAM paths on
// small shapes); GENET_OPS_ASCEND_CORES caps the cores. Both default to the hardware.
int64_t env_cap(const char* name, int64_t hw) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return hw;
  const long long cap = std::atoll(v);
  return cap > 0 && cap < hw ? cap : hw;
}

// The flags of one launch (GenetTiling::relu / gather / means).
struct Flags {
  bool relu = false, gather = false, means = false;
};

GenetTiling plan(const at::Tensor& x, int64_t extent, int op, bool residual, Flags f = {}) {
  TilingRequest rq;
  rq.N = x.size(0);
  rq.C = x.size(1);
  rq.H = x.size(2);
  rq.W = x.size(3);
  rq.extent = extent;
  rq.op = op;
  rq.dtype_bytes = x.element_size();
  rq.has_residual = residual;
  rq.relu = f.relu;
  rq.gather = f.gather;
  rq.means = f.means;
  rq.core_num = env_cap("GENET_OPS_ASCEND_CORES", platform().cores);
  rq.ub_bytes = env_cap("GENET_OPS_ASCEND_UB_BYTES", platform().ub);
  try {
    return compute_tiling(rq);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, e.what());
  }
  return GenetTiling{};  // not reached
}

void check_dtype(const at::Tensor& x) {
  const auto dt = x.scalar_type();
  TORCH_CHECK_VALUE(dt == at::kHalf || dt == at::kBFloat16 || dt == at::kFloat,
                    "genet_ops: the Ascend kernels support float16, bfloat16 and float32; got ", dt,
                    " on ", x.device(), ". Set GENET_OPS_BACKEND=reference (or genet_ops.set_backend('reference')) "
                    "to run the pure-PyTorch implementation instead.");
}

static_assert(kFormatND == ACL_FORMAT_ND && kFormatNCHW == ACL_FORMAT_NCHW && kFormatNHWC == ACL_FORMAT_NHWC &&
                  kFormatNCDHW == ACL_FORMAT_NCDHW,
              "npu_format.h disagrees with CANN's aclFormat");

// Tensors on other devices have no NPU format: they reach prepare_*'s device check as they are.
int64_t storage_format(const at::Tensor& t) {
  return t.is_privateuseone() ? at_npu::native::get_npu_format(t) : kFormatND;
}

// An operand in a private NPU format (NC1HWC0, ...) cast to ND; base formats as they are.
at::Tensor readable(const at::Tensor& t) {
  return to_base_format(t, storage_format,
                        [](const at::Tensor& u, int64_t f) { return at_npu::native::npu_format_cast(u, f); });
}

c10::optional<at::Tensor> readable(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? c10::optional<at::Tensor>(readable(*t)) : c10::nullopt;
}

// An output the kernel writes: reallocated as ND if empty_like gave it a private format.
void make_nd(at::Tensor& t) {
  t = to_base_format(t, storage_format, [](const at::Tensor& u, int64_t f) {
                       return at_npu::native::empty_with_format(u.sizes(), u.options(), f);
                     });
}

// The prepared call with outputs the kernel can write as NCHW bytes.
OpCall prepared(OpCall c) {
  make_nd(c.out);
  make_nd(c.dg);
  if (c.empty() && c.dg.defined()) c.dg.zero_();  // as prepare_* left it: no tile, no gradient
  return c;
}

void* ptr(const at::Tensor& t) { return t.defined() ? const_cast<void*>(t.data_ptr()) : nullptr; }

// Runs `launch` in order on the current NPU stream, through torch_npu's task queue (so it
// is ordered after ops torch_npu queued before it). `keep` holds the tensors alive until
// the launch has been issued. A non-zero return (an ACL error, or a kernel whose binary was
// not registered: the generated aclrtlaunch_* returns an error code) makes torch_npu raise
// naming `name`: at once with ASCEND_LAUNCH_BLOCKING=1 or without the task queue, else at
// the next synchronisation, like every NPU kernel error.
void enqueue(const char* name, std::vector<at::Tensor> keep, std::function<uint32_t(aclrtStream)> launch) {
  aclrtStream stream = c10_npu::getCurrentNPUStream().stream(false);
  // GENET_OPS_ASCEND_FAIL_LAUNCH=1 (testing only): report an ACL error (ACL_ERROR_INVALID_PARAM)
  // instead of launching, so the NPU tests can check that a failed launch raises.
  const char* inject = std::getenv("GENET_OPS_ASCEND_FAIL_LAUNCH");
  const bool fail = inject != nullptr && inject[0] == '1';
  auto call = [stream, fail, keep = std::move(keep), launch = std::move(launch)]() -> int {
    return fail ? 100000 : static_cast<int>(launch(stream));
  };
  at_npu::native::OpCommand::RunOpApi(name, call);
}

#define GENET_SELECT(OPNAME, DT, ...)                                                         \
  switch (DT) {                                                                               \
    case at::kHalf: return ACLRT_LAUNCH_KERNEL(genet_##OPNAME##_fp16)(__VA_ARGS__);           \
    case at::kBFloat16: return ACLRT_LAUNCH_KERNEL(genet_##OPNAME##_bf16)(__VA_ARGS__);       \
    default: return ACLRT_LAUNCH_KERNEL(genet_##OPNAME##_fp32)(__VA_ARGS__);                  \
  }

// --------------------------------------------------------------------- ops
// Each op first brings every operand to a base storage format (readable), then prepares
// its call on the NCHW-contiguous x, so that prepare_* brings residual / grad_out / g to
// NCHW too (copying only what is not already), and copies its outputs back into the
// layout rule's strides of the caller's x (xk) at the end.
// gather_excite, and gather_excite_lean (means: the same kernel also writes the tile means
// into c.dg, fp32, NCHW order).
void launch_gather_excite(const OpCall& c, int64_t extent, bool means) {
  if (c.empty()) return;
  const GenetTiling t = plan(c.x, extent, GENET_OP_GE_FWD, c.other.defined(), Flags{c.relu, false, means});
  const auto dt = c.x.scalar_type();
  const at::Tensor m = means ? c.dg : at::Tensor();
  enqueue(means ? "genet_gather_excite_lean" : "genet_gather_excite", {c.x, c.other, c.out, m},
          [=](aclrtStream s) -> uint32_t {
            GenetTiling tl = t;
            GENET_SELECT(ge_fwd, dt, static_cast<uint32_t>(tl.used_cores), s, ptr(c.x), ptr(c.other), ptr(c.out),
                         ptr(m), &tl)
          });
}

at::Tensor gather_excite_npu(const at::Tensor& x, int64_t extent, const c10::optional<at::Tensor>& residual,
                             bool relu) {
  const c10::OptionalDeviceGuard guard(at::device_of(x));
  const at::Tensor xk = kernel_input(readable(x));
  const OpCall c = prepared(prepare_gather_excite(xk.contiguous(), extent, readable(residual), relu));
  check_dtype(c.x);
  launch_gather_excite(c, extent, false);
  return like_layout(c.out, xk);
}

std::tuple<at::Tensor, at::Tensor> gather_excite_lean_npu(const at::Tensor& x, int64_t extent,
                                                          const c10::optional<at::Tensor>& residual, bool relu) {
  const c10::OptionalDeviceGuard guard(at::device_of(x));
  const at::Tensor xk = kernel_input(readable(x));
  const OpCall c = prepared(prepare_gather_excite_lean(xk.contiguous(), extent, readable(residual), relu));
  check_dtype(c.x);
  launch_gather_excite(c, extent, true);
  // the means in the layout rule's strides: those of g_for_layout for the caller's layout
  return {like_layout(c.out, xk), like_layout(c.dg, g_for_layout(c.dg, layout_of(xk)))};
}

at::Tensor gather_excite_backward_npu(const at::Tensor& grad_out, const at::Tensor& x, int64_t extent) {
  const c10::OptionalDeviceGuard guard(at::device_of(x));
  const at::Tensor xk = kernel_input(readable(x));
  const OpCall c = prepared(prepare_gather_excite_backward(readable(grad_out), xk.contiguous(), extent));
  check_dtype(c.x);
  if (!c.empty()) {
    const GenetTiling t = plan(c.x, extent, GENET_OP_GE_BWD, false);
    const auto dt = x.scalar_type();
    enqueue("genet_gather_excite_backward", {c.other, c.x, c.out}, [=](aclrtStream s) -> uint32_t {
      GenetTiling tl = t;
      GENET_SELECT(ge_bwd, dt, static_cast<uint32_t>(tl.used_cores), s, ptr(c.other), ptr(c.x), ptr(c.out), &tl)
    });
  }
  return like_layout(c.out, xk);
}

at::Tensor excite_npu(const at::Tensor& x, const at::Tensor& g, int64_t extent,
                      const c10::optional<at::Tensor>& residual, bool relu) {
  const c10::OptionalDeviceGuard guard(at::device_of(x));
  const at::Tensor xk = kernel_input(readable(x));
  const OpCall c = prepared(prepare_excite(xk.contiguous(), readable(g), extent, readable(residual), relu));
  check_dtype(c.x);
  if (!c.empty()) {
    const GenetTiling t = plan(c.x, extent, GENET_OP_EX_FWD, c.other.defined(), Flags{c.relu, false, false});
    const auto dt = x.scalar_type();
    enqueue("genet_excite", {c.x, c.g, c.other, c.out}, [=](aclrtStream s) -> uint32_t {
      GenetTiling tl = t;
      GENET_SELECT(ex_fwd, dt, static_cast<uint32_t>(tl.used_cores), s, ptr(c.x), ptr(c.g), ptr(c.other),
                   ptr(c.out), &tl)
    });
  }
  return like_layout(c.out, xk);
}

std::tuple<at::Tensor, at::Tensor> excite_backward_npu(const at::Tensor& grad_out, const at::Tensor& x,
                                                       const at::Tensor& g, int64_t extent) {
  const c10::OptionalDeviceGuard guard(at::device_of(x));
  const at::Tensor xk = kernel_input(readable(x));
  const at::Tensor gb = readable(g);
  const OpCall c = prepared(prepare_excite_backward(readable(grad_out), xk.contiguous(), gb, extent));
  check_dtype(c.x);
  if (!c.empty()) {
    const GenetTiling t = plan(c.x, extent, GENET_OP_EX_BWD, false);
    const auto dt = x.scalar_type();
    enqueue("genet_excite_backward", {c.other, c.x, c.g, c.out, c.dg}, [=](aclrtStream s) -> uint32_t {
      GenetTiling tl = t;
      GENET_SELECT(ex_bwd, dt, static_cast<uint32_t>(tl.used_cores), s, ptr(c.other), ptr(c.x), ptr(c.g),
                   ptr(c.out), ptr(c.dg), &tl)
    });
  }
  // dg in the layout rule's strides: those of g_for_layout(g) for the caller's layout.
  return {like_layout(c.out, xk), like_layout(c.dg, g_for_layout(gb, layout_of(xk)))};
}

// The output-keeping backward of excite_lean (gather false) and gather_excite_lean (gather
// true): reads grad_out, out, the residual (optional) and g (fp32); writes dx and dg (fp32).
std::tuple<at::Tensor, at::Tensor> excite_lean_backward_npu(const at::Tensor& grad_out, const at::Tensor& out,
                                                            const c10::optional<at::Tensor>& residual,
                                                            const at::Tensor& g, int64_t extent, bool relu,
                                                            bool gather) {
  const c10::OptionalDeviceGuard guard(at::device_of(out));
  const at::Tensor ok = kernel_input(readable(out));
  const at::Tensor gb = readable(g);
  const OpCall c = prepared(prepare_excite_lean_backward(readable(grad_out), ok.contiguous(), readable(residual), gb,
                                                         extent, relu, gather));
  check_dtype(c.x);
  if (!c.empty()) {
    const GenetTiling t =
        plan(c.x, extent, GENET_OP_EX_LEAN_BWD, c.residual.defined(), Flags{c.relu, c.gather, false});
    const auto dt = c.x.scalar_type();
    enqueue("genet_excite_lean_backward", {c.other, c.x, c.residual, c.g, c.out, c.dg}, [=](aclrtStream s) -> uint32_t {
      GenetTiling tl = t;
      GENET_SELECT(ex_lean_bwd, dt, static_cast<uint32_t>(tl.used_cores), s, ptr(c.other), ptr(c.x),
                   ptr(c.residual), ptr(c.g), ptr(c.out), ptr(c.dg), &tl)
    });
  }
  return {like_layout(c.out, ok), like_layout(c.dg, g_for_layout(gb, layout_of(ok)))};
}

#undef GENET_SELECT

}  // namespace
}  // namespace ascend
}  // namespace genet_ops

TORCH_LIBRARY_IMPL(genet_ops, PrivateUse1, m) {
  m.impl("gather_excite", &genet_ops::ascend::gather_excite_npu);
  m.impl("gather_excite_backward", &genet_ops::ascend::gather_excite_backward_npu);
  m.impl("excite", &genet_ops::ascend::excite_npu);
  m.impl("excite_backward", &genet_ops::ascend::excite_backward_npu);
  m.impl("excite_lean", &genet_ops::ascend::excite_npu);  // excite's kernel; only its autograd differs
  m.impl("gather_excite_lean", &genet_ops::ascend::gather_excite_lean_npu);
  m.impl("excite_lean_backward", &genet_ops::ascend::excite_lean_backward_npu);
}
