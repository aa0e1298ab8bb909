// The kernel launchers: defined and instantiated for float, double, c10::Half and
// c10::BFloat16 in gather_excite_launch.cu, excite_launch.cu and excite_lean_launch.cu
// (nvcc), called by the op wrappers in gather_excite_cuda.cpp and excite_cuda.cpp (the
// host compiler). Each
// picks the kernel for the plan's vector width, launches it on `stream` and checks
// the launch.
#pragma once

#include "plan.h"

#ifndef GENET_EMU
#include <cuda_runtime_api.h>
#endif

namespace genet_ops {
namespace cuda {

#ifdef GENET_EMU
using stream_t = int;
#else
using stream_t = cudaStream_t;
#endif

// Plan is NchwPlan or NhwcPlan; res may be null. relu: the forward's ReLU epilogue.
// means (gather_excite_lean's tile means, acc_t, g's layout) may be null.
template <typename T, typename Plan>
void launch_gather_excite(const T* x, const T* res, T* y, acc_t<T>* means, bool relu, const Plan& P,
                          stream_t stream);
template <typename T, typename Plan>
void launch_gather_excite_backward(const T* dy, const T* x, T* dx, const Plan& P, stream_t stream);
template <typename T, typename Plan>
void launch_excite(const T* x, const T* g, const T* res, T* y, bool relu, const Plan& P, stream_t stream);
template <typename T, typename Plan>
void launch_excite_backward(const T* dy, const T* x, const T* g, T* dx, T* dg, const Plan& P, stream_t stream);
// excite_lean_backward (excite_lean_launch.cu): g and dg in acc_t; res may be null.
template <typename T, typename Plan>
void launch_excite_lean_backward(const T* dy, const T* out, const T* res, const acc_t<T>* g, T* dx, acc_t<T>* dg,
                                 bool relu, bool gather, const Plan& P, stream_t stream);

}  // namespace cuda
}  // namespace genet_ops
