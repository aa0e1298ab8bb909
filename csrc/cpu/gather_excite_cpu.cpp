// CPU kernels of genet_ops::gather_excite and gather_excite_backward: the shared
// checks and layout rule (genet_ops.h), then the loops of this CPU's ISA (tile_loops.h).
#include <torch/library.h>

#include "cpu_kernels.h"

namespace genet_ops::cpu {
namespace {

at::Tensor gather_excite_cpu(const at::Tensor& x, int64_t extent, const std::optional<at::Tensor>& residual) {
  check_x(x, "x");
  check_extent(extent);
  if (residual) check_same(*residual, x, "residual");
  const at::Tensor xk = kernel_input(x);
  at::Tensor y = at::empty_like(xk);
  if (xk.numel() == 0) return y;
  const at::Tensor rk = residual ? like_layout(*residual, xk) : at::Tensor();
  Args a = make_args(xk, extent);
  a.other = rk.defined() ? rk.data_ptr() : nullptr;
  a.out = y.data_ptr();
  kernels().gather_excite(a);
  return y;
}

at::Tensor gather_excite_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x, int64_t extent) {
  check_x(x, "x");
  check_extent(extent);
  check_same(grad_out, x, "grad_out");
  const at::Tensor xk = kernel_input(x);
  at::Tensor dx = at::empty_like(xk);
  if (xk.numel() == 0) return dx;
  const at::Tensor dyk = like_layout(grad_out, xk);
  Args a = make_args(xk, extent);
  a.other = dyk.data_ptr();
  a.out = dx.data_ptr();
  kernels().gather_excite_backward(a);
  return dx;
}

}  // namespace
}  // namespace genet_ops::cpu

TORCH_LIBRARY_IMPL(genet_ops, CPU, m) {
  m.impl("gather_excite", &genet_ops::cpu::gather_excite_cpu);
  m.impl("gather_excite_backward", &genet_ops::cpu::gather_excite_backward_cpu);
}
