// The CUDA kernels of genet_ops::excite and genet_ops::excite_backward, as ops: the
// shared preparation (genet_ops.h), plan (planner.h), launch on the current stream of
// x's device (excite_launch.cu), registration for the CUDA dispatch key.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "ops_common.h"

namespace genet_ops {
namespace cuda {

template <typename T>
static void run_excite(const at::Tensor& xk, const at::Tensor& gk, const at::Tensor& rk, at::Tensor& y,
                       const TileGeom& t, Layout layout) {
  // g is read one element per tile and lane: it takes no part in the vector width.
  const uintptr_t addrs = addr_of(xk) | addr_of(rk) | addr_of(y);
  const int es = sizeof(T), as = sizeof(acc_t<T>);
  const T* xp = xk.const_data_ptr<T>();
  const T* gp = gk.const_data_ptr<T>();
  const T* rp = ptr_or_null<T>(rk);
  T* yp = y.mutable_data_ptr<T>();
  const stream_t stream = current_stream();
  if (layout == Layout::NCHW) {
    const NchwPlan P = plan_nchw(t, es, addrs, kItems, 0, as, false);
    launch_excite<T>(xp, gp, rp, yp, P, stream);
  } else {
    const NhwcPlan P = plan_nhwc(t, es, addrs, kItems, 0, as);
    launch_excite<T>(xp, gp, rp, yp, P, stream);
  }
}

template <typename T>
static void run_excite_backward(const at::Tensor& dyk, const at::Tensor& xk, const at::Tensor& gk, at::Tensor& dx,
                                at::Tensor& dg, const TileGeom& t, Layout layout) {
  const uintptr_t addrs = addr_of(dyk) | addr_of(xk) | addr_of(dx);
  const int es = sizeof(T), as = sizeof(acc_t<T>);
  const T* dyp = dyk.const_data_ptr<T>();
  const T* xp = xk.const_data_ptr<T>();
  const T* gp = gk.const_data_ptr<T>();
  T* dxp = dx.mutable_data_ptr<T>();
  T* dgp = dg.mutable_data_ptr<T>();
  const stream_t stream = current_stream();
  if (layout == Layout::NCHW) {
    const NchwPlan P = plan_nchw(t, es, addrs, kItems, 1, as, false);
    launch_excite_backward<T>(dyp, xp, gp, dxp, dgp, P, stream);
  } else {
    const NhwcPlan P = plan_nhwc(t, es, addrs, kItems, 1, as);
    launch_excite_backward<T>(dyp, xp, gp, dxp, dgp, P, stream);
  }
}

at::Tensor excite_cuda(const at::Tensor& x, const at::Tensor& g, int64_t extent,
                       const std::optional<at::Tensor>& residual, bool relu) {
  check_on_device(x, "x");
  const DeviceScope scope(x);
  OpCall c = prepare_excite(x, g, extent, residual, relu);
  if (c.empty()) return c.out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.x.scalar_type(), "excite_cuda",
                                  [&] { run_excite<scalar_t>(c.x, c.g, c.other, c.out, c.t, c.layout); });
  relu_after(c);
  return c.out;
}

std::tuple<at::Tensor, at::Tensor> excite_backward_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                                        const at::Tensor& g, int64_t extent) {
  check_on_device(x, "x");
  const DeviceScope scope(x);
  OpCall c = prepare_excite_backward(grad_out, x, g, extent);
  if (c.empty()) return {c.out, c.dg};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.x.scalar_type(), "excite_backward_cuda", [&] {
    run_excite_backward<scalar_t>(c.other, c.x, c.g, c.out, c.dg, c.t, c.layout);
  });
  return {c.out, c.dg};
}

}  // namespace cuda
}  // namespace genet_ops

TORCH_LIBRARY_IMPL(genet_ops, GENET_DISPATCH_KEY, m) {
  m.impl("excite", &genet_ops::cuda::excite_cuda);
  m.impl("excite_backward", &genet_ops::cuda::excite_backward_cuda);
  m.impl("excite_lean", &genet_ops::cuda::excite_cuda);  // excite's kernel; only its autograd differs
}
