// Host helpers shared by the op wrappers: device guard and stream, the dispatch key
// the kernels register for, and the vector-width dispatch.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <type_traits>

#include "plan.h"

#ifndef GENET_EMU
#include <c10/cuda/CUDAGuard.h>
#endif

namespace genet_ops {
namespace cuda {

#ifdef GENET_EMU
// Under the emulator the same op wrappers serve CPU tensors (csrc/cuda/emu).
#define GENET_DISPATCH_KEY CPU
using stream_t = int;
inline stream_t current_stream() { return 0; }
struct DeviceScope {
  explicit DeviceScope(const at::Tensor&) {}
};
inline void check_on_device(const at::Tensor&, const char*) {}
#else
#define GENET_DISPATCH_KEY CUDA
using stream_t = cudaStream_t;
// Kernels run on the caller's current stream of x's device.
inline stream_t current_stream() { return at::cuda::getCurrentCUDAStream(); }
struct DeviceScope {
  c10::cuda::CUDAGuard guard;
  explicit DeviceScope(const at::Tensor& t) : guard(t.device()) {}
};
inline void check_on_device(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.is_cuda(), "genet_ops: ", name, " must be a CUDA tensor for the CUDA kernels, got ", t.device());
}
#endif

template <typename T>
inline const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

inline uintptr_t addr_of(const at::Tensor& t) {
  return t.defined() ? reinterpret_cast<uintptr_t>(t.const_data_ptr()) : 0;
}

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
  TORCH_INTERNAL_ASSERT(V == 1, "genet_ops: unexpected vector width ", V);
  return f(std::integral_constant<int, 1>{});
}

// Dynamic shared memory above the default 48 KB needs an opt-in per kernel.
template <typename Kernel>
inline void allow_smem(Kernel kernel, int bytes) {
  if (bytes > 48 * 1024) GENET_SET_SMEM(kernel, bytes);
  (void)kernel;
}

}  // namespace cuda
}  // namespace genet_ops
