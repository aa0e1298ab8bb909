// CPU kernels of genet_ops::excite and excite_backward: the shared checks and layout
// rule (genet_ops.h), then the loops of this CPU's ISA (tile_loops.h).
#include <torch/library.h>

#include "cpu_kernels.h"

namespace genet_ops::cpu {
namespace {

at::Tensor excite_cpu(const at::Tensor& x, const at::Tensor& g, int64_t extent,
                      const std::optional<at::Tensor>& residual) {
  check_x(x, "x");
  check_extent(extent);
  check_g(g, x, extent);
  if (residual) check_same(*residual, x, "residual");
  const at::Tensor xk = kernel_input(x);
  at::Tensor y = at::empty_like(xk);
  if (xk.numel() == 0) return y;
  Args a = make_args(xk, extent);
  const at::Tensor gk = g_for_layout(g, a.layout);
  const at::Tensor rk = residual ? like_layout(*residual, xk) : at::Tensor();
  a.g = gk.data_ptr();
  a.other = rk.defined() ? rk.data_ptr() : nullptr;
  a.out = y.data_ptr();
  a.cblock = std::max<int64_t>(a.t.C, 1);  // one sweep per tile: no need to block channels
  kernels().excite(a);
  return y;
}

std::tuple<at::Tensor, at::Tensor> excite_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                                       const at::Tensor& g, int64_t extent) {
  check_x(x, "x");
  check_extent(extent);
  check_g(g, x, extent);
  check_same(grad_out, x, "grad_out");
  const at::Tensor xk = kernel_input(x);
  const Layout layout = layout_of(xk);
  const at::Tensor gk = g_for_layout(g, layout);
  at::Tensor dx = at::empty_like(xk);
  at::Tensor dg = at::empty_like(gk);
  if (xk.numel() == 0) return {dx, dg.zero_()};
  const at::Tensor dyk = like_layout(grad_out, xk);
  Args a = make_args(xk, extent);
  a.g = gk.data_ptr();
  a.other = dyk.data_ptr();
  a.out = dx.data_ptr();
  a.dg = dg.data_ptr();
  a.cblock = std::max<int64_t>(a.t.C, 1);
  kernels().excite_backward(a);
  return {dx, dg};
}

}  // namespace
}  // namespace genet_ops::cpu

TORCH_LIBRARY_IMPL(genet_ops, CPU, m) {
  m.impl("excite", &genet_ops::cpu::excite_cpu);
  m.impl("excite_backward", &genet_ops::cpu::excite_backward_cpu);
}
