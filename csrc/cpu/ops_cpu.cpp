// The genet_ops ops on the CPU: the shared preparation (genet_ops.h), then the loops of
// this CPU's ISA (tile_loops.h).
#include <torch/library.h>

#include "cpu_kernels.h"

namespace genet_ops::cpu {
namespace {

at::Tensor gather_excite_cpu(const at::Tensor& x, int64_t extent, const std::optional<at::Tensor>& residual,
                             bool relu) {
  const OpCall c = prepare_gather_excite(x, extent, residual, relu);
  if (!c.empty()) kernels().gather_excite(make_args(c));
  return c.out;
}

// gather_excite's kernel, which also writes the tile means into c.dg.
std::tuple<at::Tensor, at::Tensor> gather_excite_lean_cpu(const at::Tensor& x, int64_t extent,
                                                          const std::optional<at::Tensor>& residual, bool relu) {
  const OpCall c = prepare_gather_excite_lean(x, extent, residual, relu);
  if (!c.empty()) kernels().gather_excite(make_args(c));
  return {c.out, c.dg};
}

at::Tensor gather_excite_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x, int64_t extent) {
  const OpCall c = prepare_gather_excite_backward(grad_out, x, extent);
  if (!c.empty()) kernels().gather_excite_backward(make_args(c));
  return c.out;
}

// excite reads each tile once per sweep: no need to block channels (cblock = C).
at::Tensor excite_cpu(const at::Tensor& x, const at::Tensor& g, int64_t extent,
                      const std::optional<at::Tensor>& residual, bool relu) {
  const OpCall c = prepare_excite(x, g, extent, residual, relu);
  if (!c.empty()) kernels().excite(make_args(c, /*block_channels=*/false));
  return c.out;
}

std::tuple<at::Tensor, at::Tensor> excite_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                                       const at::Tensor& g, int64_t extent) {
  const OpCall c = prepare_excite_backward(grad_out, x, g, extent);
  if (!c.empty()) kernels().excite_backward(make_args(c, /*block_channels=*/false));
  return {c.out, c.dg};
}

// With gather the kernel sweeps each tile twice (sums, then dx) and blocks channels as
// gather_excite_backward does; without, it sweeps once, as excite_backward.
std::tuple<at::Tensor, at::Tensor> excite_lean_backward_cpu(const at::Tensor& grad_out, const at::Tensor& out,
                                                            const std::optional<at::Tensor>& residual,
                                                            const at::Tensor& g, int64_t extent, bool relu,
                                                            bool gather) {
  const OpCall c = prepare_excite_lean_backward(grad_out, out, residual, g, extent, relu, gather);
  if (!c.empty()) kernels().excite_lean_backward(make_args(c, /*block_channels=*/gather));
  return {c.out, c.dg};
}

}  // namespace
}  // namespace genet_ops::cpu

TORCH_LIBRARY_IMPL(genet_ops, CPU, m) {
  m.impl("gather_excite", &genet_ops::cpu::gather_excite_cpu);
  m.impl("gather_excite_backward", &genet_ops::cpu::gather_excite_backward_cpu);
  m.impl("excite", &genet_ops::cpu::excite_cpu);
  m.impl("excite_backward", &genet_ops::cpu::excite_backward_cpu);
  m.impl("gather_excite_lean", &genet_ops::cpu::gather_excite_lean_cpu);
  m.impl("excite_lean", &genet_ops::cpu::excite_cpu);  // excite's kernel; only its autograd differs
  m.impl("excite_lean_backward", &genet_ops::cpu::excite_lean_backward_cpu);
}
