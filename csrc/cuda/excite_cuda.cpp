// The CUDA kernels of genet_ops::excite and genet_ops::excite_backward, as ops:
// argument checks, layout, plan (planner.h), launch on the current stream of x's
// device (excite_launch.cu), registration for the CUDA dispatch key.
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
    const NchwPlan P = plan_nchw(t, es, addrs, kItems, 0, as);
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
    const NchwPlan P = plan_nchw(t, es, addrs, kItems, 1, as);
    launch_excite_backward<T>(dyp, xp, gp, dxp, dgp, P, stream);
  } else {
    const NhwcPlan P = plan_nhwc(t, es, addrs, kItems, 1, as);
    launch_excite_backward<T>(dyp, xp, gp, dxp, dgp, P, stream);
  }
}

at::Tensor excite_cuda(const at::Tensor& x, const at::Tensor& g, int64_t extent,
                       const std::optional<at::Tensor>& residual) {
  check_x(x, "x");
  check_extent(extent);
  check_g(g, x, extent);
  if (residual.has_value()) check_same(*residual, x, "residual");
  check_on_device(x, "x");
  const DeviceScope scope(x);
  const at::Tensor xk = kernel_input(x);
  const Layout layout = layout_of(xk);
  const at::Tensor gk = g_for_layout(g, layout);
  const at::Tensor rk = residual.has_value() ? like_layout(*residual, xk) : at::Tensor();
  at::Tensor y = at::empty_like(xk);
  if (xk.numel() == 0) return y;
  const TileGeom t = tile_geom(xk, extent);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xk.scalar_type(), "excite_cuda",
                                  [&] { run_excite<scalar_t>(xk, gk, rk, y, t, layout); });
  return y;
}

std::tuple<at::Tensor, at::Tensor> excite_backward_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                                        const at::Tensor& g, int64_t extent) {
  check_x(x, "x");
  check_extent(extent);
  check_g(g, x, extent);
  check_same(grad_out, x, "grad_out");
  check_on_device(x, "x");
  const DeviceScope scope(x);
  const at::Tensor xk = kernel_input(x);
  const Layout layout = layout_of(xk);
  const at::Tensor gk = g_for_layout(g, layout);
  const at::Tensor dyk = like_layout(grad_out, xk);
  at::Tensor dx = at::empty_like(xk);
  at::Tensor dg = at::empty_like(gk);
  if (xk.numel() == 0) {
    dg.zero_();
    return {dx, dg};
  }
  const TileGeom t = tile_geom(xk, extent);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xk.scalar_type(), "excite_backward_cuda",
                                  [&] { run_excite_backward<scalar_t>(dyk, xk, gk, dx, dg, t, layout); });
  return {dx, dg};
}

}  // namespace cuda
}  // namespace genet_ops

TORCH_LIBRARY_IMPL(genet_ops, GENET_DISPATCH_KEY, m) {
  m.impl("excite", &genet_ops::cuda::excite_cuda);
  m.impl("excite_backward", &genet_ops::cuda::excite_backward_cuda);
}
