// The CUDA kernels of genet_ops::gather_excite, gather_excite_backward and
// gather_excite_lean (gather_excite's kernels, also writing the tile means), as ops: the shared preparation (genet_ops.h), plan (planner.h), launch on the current
// stream of x's device (gather_excite_launch.cu), registration for the CUDA dispatch key.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "ops_common.h"

namespace genet_ops {
namespace cuda {

// gather_excite and gather_excite_lean: c.other is the residual; c.dg, where defined,
// receives the tile means (gather_excite_lean).
template <typename T>
static void run_gather_excite(OpCall& c) {
  const uintptr_t addrs = addr_of(c.x) | addr_of(c.other) | addr_of(c.out);
  const int es = sizeof(T), as = sizeof(acc_t<T>);
  const T* xp = c.x.const_data_ptr<T>();
  const T* rp = ptr_or_null<T>(c.other);
  T* yp = c.out.mutable_data_ptr<T>();
  acc_t<T>* means = c.dg.defined() ? c.dg.mutable_data_ptr<acc_t<T>>() : nullptr;
  const stream_t stream = current_stream();
  if (c.layout == Layout::NCHW) {
    const NchwPlan P = plan_nchw(c.t, es, addrs, kItems, 1, as, true);
    launch_gather_excite<T>(xp, rp, yp, means, c.relu, P, stream);
  } else {
    const NhwcPlan P = plan_nhwc(c.t, es, addrs, kItems, 1, as);
    launch_gather_excite<T>(xp, rp, yp, means, c.relu, P, stream);
  }
}

template <typename T>
static void run_gather_excite_backward(const at::Tensor& dyk, const at::Tensor& xk, at::Tensor& dx,
                                       const TileGeom& t, Layout layout) {
  const uintptr_t addrs = addr_of(dyk) | addr_of(xk) | addr_of(dx);
  const int es = sizeof(T), as = sizeof(acc_t<T>);
  const T* dyp = dyk.const_data_ptr<T>();
  const T* xp = xk.const_data_ptr<T>();
  T* dxp = dx.mutable_data_ptr<T>();
  const stream_t stream = current_stream();
  if (layout == Layout::NCHW) {
    const NchwPlan P = plan_nchw(t, es, addrs, kItems, 2, as, true);
    launch_gather_excite_backward<T>(dyp, xp, dxp, P, stream);
  } else {
    const NhwcPlan P = plan_nhwc(t, es, addrs, kItems, 2, as);
    launch_gather_excite_backward<T>(dyp, xp, dxp, P, stream);
  }
}

at::Tensor gather_excite_cuda(const at::Tensor& x, int64_t extent, const std::optional<at::Tensor>& residual,
                              bool relu) {
  check_on_device(x, "x");
  const DeviceScope scope(x);
  OpCall c = prepare_gather_excite(x, extent, residual, relu);
  if (c.empty()) return c.out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.x.scalar_type(), "gather_excite_cuda",
                                  [&] { run_gather_excite<scalar_t>(c); });
  return c.out;
}

std::tuple<at::Tensor, at::Tensor> gather_excite_lean_cuda(const at::Tensor& x, int64_t extent,
                                                           const std::optional<at::Tensor>& residual, bool relu) {
  check_on_device(x, "x");
  const DeviceScope scope(x);
  OpCall c = prepare_gather_excite_lean(x, extent, residual, relu);
  if (c.empty()) return {c.out, c.dg};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.x.scalar_type(), "gather_excite_lean_cuda",
                                  [&] { run_gather_excite<scalar_t>(c); });
  return {c.out, c.dg};
}

at::Tensor gather_excite_backward_cuda(const at::Tensor& grad_out, const at::Tensor& x, int64_t extent) {
  check_on_device(x, "x");
  const DeviceScope scope(x);
  OpCall c = prepare_gather_excite_backward(grad_out, x, extent);
  if (c.empty()) return c.out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.x.scalar_type(), "gather_excite_backward_cuda",
                                  [&] { run_gather_excite_backward<scalar_t>(c.other, c.x, c.out, c.t, c.layout); });
  return c.out;
}

}  // namespace cuda
}  // namespace genet_ops

TORCH_LIBRARY_IMPL(genet_ops, GENET_DISPATCH_KEY, m) {
  m.impl("gather_excite", &genet_ops::cuda::gather_excite_cuda);
  m.impl("gather_excite_backward", &genet_ops::cuda::gather_excite_backward_cuda);
  m.impl("gather_excite_lean", &genet_ops::cuda::gather_excite_lean_cuda);
}
