// Shared by the launcher files: vector-width dispatch, the layout's walk, the list of
// instantiations, the shared-memory opt-in.
#pragma once

#include <type_traits>

#include "grid_check.h"
#include "launchers.h"
#include "tiles.cuh"

namespace genet_ops {
namespace cuda {

// Calls f(std::integral_constant<int, V>) for the plan's vector width; widths above
// 16 bytes / sizeof(T) never occur and are not instantiated.
template <typename T, typename F>
inline void with_vec(int V, F&& f) {
  constexpr int vmax = 16 / static_cast<int>(sizeof(T));
  if constexpr (vmax >= 8) {
    if (V == 8) return f(std::integral_constant<int, 8>{});
  }
  if constexpr (vmax >= 4) {
    if (V == 4) return f(std::integral_constant<int, 4>{});
  }
  if constexpr (vmax >= 2) {
    if (V == 2) return f(std::integral_constant<int, 2>{});
  }
  return f(std::integral_constant<int, 1>{});  // the planner only picks widths it instantiates
}

// Calls f(std::integral_constant<int, K>) for the plan's items per thread (plan.h).
template <typename F>
inline void with_items(int K, F&& f) {
  if (K == 2) return f(std::integral_constant<int, 2>{});
  if (K == 4) return f(std::integral_constant<int, 4>{});
  return f(std::integral_constant<int, kItems>{});
}

// with_vec and with_items together: f(V, K) as integral constants.
template <typename T, typename Plan, typename F>
inline void with_vec_items(const Plan& P, F&& f) {
  with_vec<T>(P.V, [&](auto vc) { with_items(P.K, [&](auto kc) { f(vc, kc); }); });
}

template <typename Plan, int V>
struct WalkFor;
template <int V>
struct WalkFor<NchwPlan, V> {
  using type = NchwWalk<V>;
};
template <int V>
struct WalkFor<NhwcPlan, V> {
  using type = NhwcWalk<V>;
};

// INST(T, Plan) for both layouts and every dtype the op files dispatch (floating types,
// Half, BFloat16): the one list both launcher files instantiate.
#define GENET_FOR_EACH_TYPE_AND_PLAN(INST)                    \
  INST(float, NchwPlan) INST(float, NhwcPlan)                 \
  INST(double, NchwPlan) INST(double, NhwcPlan)               \
  INST(c10::Half, NchwPlan) INST(c10::Half, NhwcPlan)         \
  INST(c10::BFloat16, NchwPlan) INST(c10::BFloat16, NhwcPlan)

// Dynamic shared memory above the default 48 KB needs an opt-in per kernel.
template <typename Kernel>
inline void allow_smem(Kernel kernel, int bytes) {
  if (bytes > 48 * 1024) GENET_SET_SMEM(kernel, bytes);
  (void)kernel;
}

// Launches kernel(args...) on the plan's grid, block and dynamic shared memory.
template <typename Kernel, typename Plan, typename... Args>
inline void launch_plan(const char* op, Kernel kernel, const Plan& P, stream_t stream, Args... args) {
  allow_smem(kernel, P.smem);
  GENET_LAUNCH(kernel, grid_x(P.grid, op), P.block, P.smem, stream, args...);
}

}  // namespace cuda
}  // namespace genet_ops
