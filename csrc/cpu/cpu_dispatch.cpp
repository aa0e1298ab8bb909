// Which loop kernels run on this CPU, and the small helpers the op entry points share.
#include <ATen/Version.h>
#include <torch/library.h>

#include "cpu_kernels.h"

namespace genet_ops::cpu {

namespace {

Kernels choose() {
#ifdef GENET_OPS_HAVE_AVX2
  // torch's choice (so ATEN_CPU_CAPABILITY=default also turns ours off), and the CPU
  // really has every extension kernels_avx2.cpp is compiled for.
  const std::string cap = at::get_cpu_capability();
  __builtin_cpu_init();
  if ((cap == "AVX2" || cap == "AVX512") && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    return {"avx2", isa_avx2::gather_excite, isa_avx2::gather_excite_backward, isa_avx2::excite,
            isa_avx2::excite_backward, isa_avx2::excite_lean_backward};
  }
#endif
  return {"default", isa_default::gather_excite, isa_default::gather_excite_backward,
          isa_default::excite, isa_default::excite_backward, isa_default::excite_lean_backward};
}

std::string isa_name() { return kernels().isa; }

}  // namespace

const Kernels& kernels() {
  static const Kernels table = choose();
  return table;
}

Args make_args(const OpCall& c, bool block_channels) {
  const auto ptr = [](const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; };
  Args a;
  a.t = c.t;
  a.layout = c.layout;
  a.dtype = c.x.scalar_type();
  a.x = c.x.data_ptr();
  a.other = ptr(c.other);
  a.res = ptr(c.residual);
  a.g = ptr(c.g);
  a.out = c.out.data_ptr();
  a.dg = ptr(c.dg);
  a.relu = c.relu;
  a.gather = c.gather;
  a.cblock = block_channels ? channel_block(a.t, c.x.element_size()) : std::max<int64_t>(a.t.C, 1);
  return a;
}

int64_t channel_block(const TileGeom& t, int64_t elem_size) {
  // Blocking turns each pixel's contiguous channels into short strided runs, which the
  // prefetchers follow badly, so that a whole tile row re-read from the last-level cache
  // beats smaller blocks re-read from L2 (docs/STATUS.md, measurements behind code
  // choices). So blocks only keep giant tile rows within a last-level cache. Blocks are
  // 32 channels or more.
  constexpr int64_t kBudget = int64_t(8) << 20;
  constexpr int64_t kMin = 32;
  const int64_t per_channel = std::max<int64_t>(t.eh * t.W * elem_size, 1);
  if (per_channel * t.C <= kBudget || t.C <= kMin) return std::max<int64_t>(t.C, 1);
  const int64_t cb = std::max(kMin, kBudget / per_channel / kMin * kMin);
  return std::min(cb, t.C);
}

}  // namespace genet_ops::cpu

// torch.ops.genet_ops_cpu.isa(): "avx2" or "default", for backend_info and tests. In a
// namespace of its own so the genet_ops schemas stay exactly the documented ops.
TORCH_LIBRARY(genet_ops_cpu, m) { m.def("isa() -> str", &genet_ops::cpu::isa_name); }
