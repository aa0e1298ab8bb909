// Launchers of the excite kernels (excite_kernels.cuh), instantiated for every dtype
// and layout. Nothing here includes ATen: this file compiles quickly.
#include "excite_kernels.cuh"
#include "launch_common.cuh"

namespace genet_ops {
namespace cuda {

template <typename T, typename Plan>
void launch_excite(const T* x, const T* g, const T* res, T* y, bool relu, const Plan& P, stream_t stream) {
  with_vec_items<T>(P, [&](auto vc, auto kc) {
    constexpr int V = decltype(vc)::value;
    constexpr int K = decltype(kc)::value;
    auto kernel = &excite_fwd_kernel<typename WalkFor<Plan, V>::type, T, K>;
    GENET_LAUNCH(kernel, grid_x(P.grid, "excite"), P.block, 0, stream, x, g, res, y, relu, P);
  });
}

template <typename T, typename Plan>
void launch_excite_backward(const T* dy, const T* x, const T* g, T* dx, T* dg, const Plan& P, stream_t stream) {
  with_vec_items<T>(P, [&](auto vc, auto kc) {
    constexpr int V = decltype(vc)::value;
    constexpr int K = decltype(kc)::value;
    auto kernel = &excite_bwd_kernel<typename WalkFor<Plan, V>::type, T, K>;
    allow_smem(kernel, P.smem);
    GENET_LAUNCH(kernel, grid_x(P.grid, "excite_backward"), P.block, P.smem, stream, dy, x, g, dx, dg, P);
  });
}

#define GENET_INSTANTIATE(T, Plan)                                                                      \
  template void launch_excite<T, Plan>(const T*, const T*, const T*, T*, bool, const Plan&, stream_t); \
  template void launch_excite_backward<T, Plan>(const T*, const T*, const T*, T*, T*, const Plan&, stream_t);
GENET_FOR_EACH_TYPE_AND_PLAN(GENET_INSTANTIATE)
#undef GENET_INSTANTIATE

}  // namespace cuda
}  // namespace genet_ops
