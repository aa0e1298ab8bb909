// Host helpers of the CUDA op wrappers (gather_excite_cuda.cpp, excite_cuda.cpp):
// device guard and current stream, the dispatch key they register for, pointers.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "launchers.h"
#include "planner.h"

#ifndef GENET_EMU
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace genet_ops {
namespace cuda {

#ifdef GENET_EMU
// Under the emulator the same op wrappers serve CPU tensors (tests/emu/cuda).
#define GENET_DISPATCH_KEY CPU
inline stream_t current_stream() { return 0; }
struct DeviceScope {
  explicit DeviceScope(const at::Tensor&) {}
};
inline void check_on_device(const at::Tensor&, const char*) {}
#else
#define GENET_DISPATCH_KEY CUDA
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

}  // namespace cuda
}  // namespace genet_ops
