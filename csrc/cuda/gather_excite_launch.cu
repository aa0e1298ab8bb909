// Launchers of the gather_excite kernels (gather_excite_kernels.cuh), instantiated for
// every dtype and layout. Nothing here includes ATen: this file compiles quickly.
#include "gather_excite_kernels.cuh"
#include "packed_kernels.cuh"
#include "staged_kernels.cuh"
#include "launch_common.cuh"

namespace genet_ops {
namespace cuda {

template <typename T, typename Plan>
void launch_gather_excite(const T* x, const T* res, T* y, acc_t<T>* means, bool relu, const Plan& P,
                          stream_t stream) {
  with_vec_items<T>(P, [&](auto vc, auto kc) {
    constexpr int V = decltype(vc)::value;
    constexpr int K = decltype(kc)::value;
    if constexpr (std::is_same_v<Plan, NchwPlan>) {  // the alternative NCHW plans (V >= 2)
      if constexpr (V > 1) {
        if (P.staged)
          return launch_plan("gather_excite", &ge_staged_fwd_kernel<T, V, K>, P, stream, x, res, y, means, relu, P);
        if (P.pack)
          return launch_plan("gather_excite", &ge_packed_fwd_kernel<T, V, K>, P, stream, x, res, y, means, relu, P);
      }
    }
    launch_plan("gather_excite", &ge_fwd_kernel<typename WalkFor<Plan, V>::type, T, K>, P, stream, x, res, y, means,
                relu, P);
  });
}

template <typename T, typename Plan>
void launch_gather_excite_backward(const T* dy, const T* x, T* dx, const Plan& P, stream_t stream) {
  with_vec_items<T>(P, [&](auto vc, auto kc) {
    constexpr int V = decltype(vc)::value;
    constexpr int K = decltype(kc)::value;
    if constexpr (std::is_same_v<Plan, NchwPlan>) {  // the alternative NCHW plans (V >= 2)
      if constexpr (V > 1) {
        if (P.staged) return launch_plan("gather_excite_backward", &ge_staged_bwd_kernel<T, V, K>, P, stream, dy, x, dx, P);
        if (P.pack) return launch_plan("gather_excite_backward", &ge_packed_bwd_kernel<T, V, K>, P, stream, dy, x, dx, P);
      }
    }
    launch_plan("gather_excite_backward", &ge_bwd_kernel<typename WalkFor<Plan, V>::type, T, K>, P, stream, dy, x, dx, P);
  });
}

#define GENET_INSTANTIATE(T, Plan)                                                                    \
  template void launch_gather_excite<T, Plan>(const T*, const T*, T*, acc_t<T>*, bool, const Plan&, stream_t); \
  template void launch_gather_excite_backward<T, Plan>(const T*, const T*, T*, const Plan&, stream_t);
GENET_FOR_EACH_TYPE_AND_PLAN(GENET_INSTANTIATE)
#undef GENET_INSTANTIATE

}  // namespace cuda
}  // namespace genet_ops
