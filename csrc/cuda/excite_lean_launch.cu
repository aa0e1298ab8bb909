// Launcher of the excite_lean_backward kernels (excite_lean_kernels.cuh), instantiated for
// every dtype and layout, and for relu and gather as template flags (four kernels per
// plan). Nothing here includes ATen: this file compiles quickly.
#include "excite_lean_kernels.cuh"
#include "launch_common.cuh"

namespace genet_ops {
namespace cuda {

// Calls f(std::bool_constant<relu>, std::bool_constant<gather>).
template <typename F>
inline void with_flags(bool relu, bool gather, F&& f) {
  if (relu) {
    if (gather) return f(std::true_type{}, std::true_type{});
    return f(std::true_type{}, std::false_type{});
  }
  if (gather) return f(std::false_type{}, std::true_type{});
  return f(std::false_type{}, std::false_type{});
}

template <typename T, typename Plan>
void launch_excite_lean_backward(const T* dy, const T* out, const T* res, const acc_t<T>* g, T* dx, acc_t<T>* dg,
                                 bool relu, bool gather, const Plan& P, stream_t stream) {
  with_vec_items<T>(P, [&](auto vc, auto kc) {
    constexpr int V = decltype(vc)::value;
    constexpr int K = decltype(kc)::value;
    with_flags(relu, gather, [&](auto rc, auto gc) {
      auto kernel = &excite_lean_bwd_kernel<typename WalkFor<Plan, V>::type, T, K, decltype(rc)::value,
                                            decltype(gc)::value>;
      launch_plan("excite_lean_backward", kernel, P, stream, dy, out, res, g, dx, dg, P);
    });
  });
}

#define GENET_INSTANTIATE(T, Plan)                                                                             \
  template void launch_excite_lean_backward<T, Plan>(const T*, const T*, const T*, const acc_t<T>*, T*, acc_t<T>*, \
                                                     bool, bool, const Plan&, stream_t);
GENET_FOR_EACH_TYPE_AND_PLAN(GENET_INSTANTIATE)
#undef GENET_INSTANTIATE

}  // namespace cuda
}  // namespace genet_ops
