// The CUDA kernels of genet_ops::excite, excite_backward, excite_lean (excite's kernel)
// and excite_lean_backward, as ops: the shared preparation (genet_ops.h), plan
// (planner.h), launch on the current stream of x's device (excite_launch.cu,
// excite_lean_launch.cu), registration for the CUDA dispatch key.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "ops_common.h"

namespace genet_ops {
namespace cuda {

template <typename T>
static void run_excite(const at::Tensor& xk, const at::Tensor& gk, const at::Tensor& rk, at::Tensor& y,
                       const TileGeom& t, Layout layout, bool relu) {
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
    launch_excite<T>(xp, gp, rp, yp, relu, P, stream);
  } else {
    const NhwcPlan P = plan_nhwc(t, es, addrs, kItems, 0, as);
    launch_excite<T>(xp, gp, rp, yp, relu, P, stream);
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

// The output-keeping backward: c.x is the op's output, c.other grad_out, c.residual the
// residual (or undefined); g and dg in the accumulation type.
template <typename T>
static void run_excite_lean_backward(OpCall& c) {
  const uintptr_t addrs = addr_of(c.other) | addr_of(c.x) | addr_of(c.residual) | addr_of(c.out);
  const int es = sizeof(T), as = sizeof(acc_t<T>);
  const T* dyp = c.other.const_data_ptr<T>();
  const T* outp = c.x.const_data_ptr<T>();
  const T* rp = ptr_or_null<T>(c.residual);
  const acc_t<T>* gp = c.g.const_data_ptr<acc_t<T>>();
  T* dxp = c.out.mutable_data_ptr<T>();
  acc_t<T>* dgp = c.dg.mutable_data_ptr<acc_t<T>>();
  const stream_t stream = current_stream();
  if (c.layout == Layout::NCHW) {
    const NchwPlan P = plan_nchw(c.t, es, addrs, kItems, 1, as, false);
    launch_excite_lean_backward<T>(dyp, outp, rp, gp, dxp, dgp, c.relu, c.gather, P, stream);
  } else {
    const NhwcPlan P = plan_nhwc(c.t, es, addrs, kItems, 1, as);
    launch_excite_lean_backward<T>(dyp, outp, rp, gp, dxp, dgp, c.relu, c.gather, P, stream);
  }
}

at::Tensor excite_cuda(const at::Tensor& x, const at::Tensor& g, int64_t extent,
                       const std::optional<at::Tensor>& residual, bool relu) {
  check_on_device(x, "x");
  const DeviceScope scope(x);
  OpCall c = prepare_excite(x, g, extent, residual, relu);
  if (c.empty()) return c.out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.x.scalar_type(), "excite_cuda",
                                  [&] { run_excite<scalar_t>(c.x, c.g, c.other, c.out, c.t, c.layout, c.relu); });
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

std::tuple<at::Tensor, at::Tensor> excite_lean_backward_cuda(const at::Tensor& grad_out, const at::Tensor& out,
                                                             const std::optional<at::Tensor>& residual,
                                                             const at::Tensor& g, int64_t extent, bool relu,
                                                             bool gather) {
  check_on_device(out, "out");
  const DeviceScope scope(out);
  OpCall c = prepare_excite_lean_backward(grad_out, out, residual, g, extent, relu, gather);
  if (c.empty()) return {c.out, c.dg};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.x.scalar_type(), "excite_lean_backward_cuda",
                                  [&] { run_excite_lean_backward<scalar_t>(c); });
  return {c.out, c.dg};
}

}  // namespace cuda
}  // namespace genet_ops

TORCH_LIBRARY_IMPL(genet_ops, GENET_DISPATCH_KEY, m) {
  m.impl("excite", &genet_ops::cuda::excite_cuda);
  m.impl("excite_backward", &genet_ops::cuda::excite_backward_cuda);
  m.impl("excite_lean", &genet_ops::cuda::excite_cuda);  // excite's kernel; only its autograd differs
  m.impl("excite_lean_backward", &genet_ops::cuda::excite_lean_backward_cuda);
}
