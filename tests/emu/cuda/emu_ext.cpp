// The CUDA op wrappers and kernels of csrc/cuda, compiled as plain C++ and run on CPU
// tensors by the emulator in emu.h: torch.ops.genet_ops_emu.{gather_excite, ...} have
// the schemas of torch.ops.genet_ops and execute the very kernel source that nvcc
// compiles, thread by thread. tests/test_cuda.py builds this with
// torch.utils.cpp_extension.load to check the kernels' logic without a GPU.
//
// Renaming the token genet_ops gives the emulated ops their own op namespace (and C++
// namespace), so they load next to genet_ops._C without clashing.
#define GENET_EMU 1
#define genet_ops genet_ops_emu
#define PyInit__C PyInit__genet_ops_emu_unused

// The op wrappers (ATen) first, then the kernels and launchers (emu.h's macros).
// (found through the include paths csrc/ and csrc/cuda/ that tests/test_cuda.py passes)
#include "genet_ops.cpp"
#include "excite_cuda.cpp"
#include "gather_excite_cuda.cpp"
#include "tuning.cpp"
#include "excite_launch.cu"
#include "excite_lean_launch.cu"
#include "gather_excite_launch.cu"

namespace {

// The plan a kernel would run with, for tests that must reach every code path:
// [layout (0 NCHW, 1 NHWC), V, Tc, R, T, items per thread, cache, block, flat or 0, multi_tile or 0,
//  items of the kernel instance K, planes per unit (packed or staged) or 0, staged];
// NCHW plans as gather_excite's.
std::vector<int64_t> emu_plan(const at::Tensor& x, int64_t extent, int64_t nvals) {
  using namespace genet_ops::cuda;
  const at::Tensor xk = genet_ops::kernel_input(x);
  const genet_ops::TileGeom t = genet_ops::tile_geom(xk, extent);
  const int es = static_cast<int>(xk.element_size());
  const int as = xk.scalar_type() == at::kDouble ? 8 : 4;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(xk.const_data_ptr());
  if (genet_ops::layout_of(xk) == genet_ops::Layout::NCHW) {
    const NchwPlan P = plan_nchw(t, es, addr, kItems, static_cast<int>(nvals), as, true);
    return {0, P.V, P.Tc, P.R, P.T, int64_t{P.item_rows} * P.item_cols, P.cache,
            P.block, P.flat, P.multi_tile, P.K, P.pack, P.staged};
  }
  const NhwcPlan P = plan_nhwc(t, es, addr, kItems, static_cast<int>(nvals), as);
  return {1, P.V, P.Tc, P.R, P.T, P.item_rows, P.cache, P.block, 0, 0, P.K, 0, 0};
}

// 32-bit fast division against the plain one, for n in [n0, n0 + count).
bool emu_check_divmod(int64_t d, int64_t n0, int64_t count) {
  const genet_ops::cuda::DivMod dm(d);
  for (int64_t n = n0; n < n0 + count; ++n) {
    uint32_t q;
    const uint32_t r = dm.divmod(static_cast<uint32_t>(n), q);
    if (q != n / d || r != n % d) return false;
  }
  return true;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(genet_ops, m) {
  m.def("emu_set_reverse(bool reverse) -> ()", [](bool reverse) { gemu::set_reverse(reverse); });
  m.def("emu_plan(Tensor x, int extent, int nvals) -> int[]", &emu_plan);
  m.def("emu_check_divmod(int d, int n0, int count) -> bool", &emu_check_divmod);
  m.def("emu_force_idx64(bool force) -> ()", [](bool force) { genet_ops::cuda::emu_force_idx64() = force; });
}
