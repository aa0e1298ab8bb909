// Device helpers shared by the CUDA kernels: the launch macro, 16-byte vectors, the
// scaled store of y, sigmoid and division in the accumulation type, work-unit decoding.
// Deliberately free of ATen, so that the .cu files compile quickly (the op glue is in
// the .cpp files).
//
// Everything here also compiles as plain C++ under GENET_EMU (tests/emu/cuda/), where a
// host emulator runs the same kernels on CPU tensors so that their indexing and
// reductions are tested on machines without a GPU.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#ifdef GENET_EMU
#include "emu.h"  // tests/emu/cuda, on the emulator build's include path
#else
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>
#endif

#include "plan.h"

namespace genet_ops {
namespace cuda {

#ifdef GENET_EMU
#define GENET_LAUNCH(kernel, grid, block, smem, stream, ...) \
  ::gemu::launch((grid), (block), (smem), (kernel), __VA_ARGS__)
#define GENET_SET_SMEM(kernel, bytes) ((void)0)
#else
// Every launch is followed by a launch check (bad configuration, missing image for
// this GPU, ...): errors surface at the op, not at some later synchronisation.
#define GENET_LAUNCH(kernel, grid, block, smem, stream, ...)   \
  do {                                                         \
    (kernel)<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__); \
    C10_CUDA_KERNEL_LAUNCH_CHECK();                            \
  } while (0)
// Raise a kernel's dynamic shared-memory limit above the default 48 KB.
#define GENET_SET_SMEM(kernel, bytes)                                                     \
  C10_CUDA_CHECK(cudaFuncSetAttribute((kernel), cudaFuncAttributeMaxDynamicSharedMemorySize, \
                                      (int)(bytes)))
#endif

// V elements of T as raw machine words: one 16-byte (or narrower) access. Kept as
// words (not as V separate T) so that a cached vector of 16-bit values occupies
// V / 2 registers, and elements are unpacked only where they are used.
template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
  static constexpr int kBytes = static_cast<int>(sizeof(T)) * V;
  using word_t = std::conditional_t<(kBytes >= 4), uint32_t, uint16_t>;
  static constexpr int kWords = kBytes >= 4 ? kBytes / 4 : 1;
  word_t w[kWords];

  __device__ __forceinline__ T get(int i) const {
    T t;
    memcpy(&t, reinterpret_cast<const char*>(w) + i * sizeof(T), sizeof(T));
    return t;
  }
  __device__ __forceinline__ void set(int i, T t) { memcpy(reinterpret_cast<char*>(w) + i * sizeof(T), &t, sizeof(T)); }
  __device__ __forceinline__ static Vec zero() {
    Vec z;
#pragma unroll
    for (int i = 0; i < kWords; ++i) z.w[i] = 0;
    return z;
  }
};

// Under the emulator, a vector access at an address the GPU would fault on is an error.
#ifdef GENET_EMU
#define GENET_CHECK_ALIGNED(p, bytes) ::gemu::check_aligned((p), (bytes))
#else
#define GENET_CHECK_ALIGNED(p, bytes) ((void)0)
#endif

template <typename T, int V>
__device__ __forceinline__ Vec<T, V> load_vec(const T* p) {
  GENET_CHECK_ALIGNED(p, sizeof(Vec<T, V>));
  return *reinterpret_cast<const Vec<T, V>*>(p);
}

// The vector at p, or zeros when off < 0 (an item outside the unit).
template <typename T, int V>
__device__ __forceinline__ Vec<T, V> load_or_zero(const T* p, int64_t off) {
  return off >= 0 ? load_vec<T, V>(p + off) : Vec<T, V>::zero();
}

// The K vectors at off (zeros for off < 0), all loads issued before any use.
template <int K, typename T, int V>
__device__ __forceinline__ void load_items(Vec<T, V> (&v)[K], const T* p, const int64_t (&off)[K]) {
#pragma unroll
  for (int k = 0; k < K; ++k) v[k] = load_or_zero<T, V>(p, off[k]);
}

template <typename T, int V>
__device__ __forceinline__ void store_vec(T* p, const Vec<T, V>& v) {
  GENET_CHECK_ALIGNED(p, sizeof(Vec<T, V>));
  *reinterpret_cast<Vec<T, V>*>(p) = v;
}

// The forward's ReLU epilogue in the accumulation type, before the one rounding: NaN
// passes (v < 0 is false for it), as torch.relu.
template <typename A>
__device__ __forceinline__ A relu_if(A v, bool relu) {
  return relu && v < A(0) ? A(0) : v;
}

// y = x * scale(k, i) (+ res), then max(., 0) when relu, for the K items at off, skipping
// items outside the unit (off < 0). relu is uniform over the launch, so the branch costs
// a select per element. The residual is loaded kResItems vectors at a time (at most K),
// to bound the live registers.
template <int K, typename T, int V, typename Scale>
__device__ __forceinline__ void store_scaled_by(T* y, const T* res, const int64_t (&off)[K],
                                                const Vec<T, V> (&xv)[K], const Scale& scale, bool relu) {
  using A = decltype(scale(0, 0));
  if (res != nullptr) {
    constexpr int RI = K < kResItems ? K : kResItems;
#pragma unroll
    for (int k1 = 0; k1 < K; k1 += RI) {
      Vec<T, V> rv[RI];
#pragma unroll
      for (int j = 0; j < RI; ++j) rv[j] = load_or_zero<T, V>(res, off[k1 + j]);
#pragma unroll
      for (int j = 0; j < RI; ++j) {
        const int k = k1 + j;
        if (off[k] < 0) continue;
        Vec<T, V> out;
#pragma unroll
        for (int i = 0; i < V; ++i)
          out.set(i, static_cast<T>(relu_if(static_cast<A>(xv[k].get(i)) * scale(k, i) + static_cast<A>(rv[j].get(i)), relu)));
        store_vec<T, V>(y + off[k], out);
      }
    }
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (off[k] < 0) continue;
      Vec<T, V> out;
#pragma unroll
      for (int i = 0; i < V; ++i) out.set(i, static_cast<T>(relu_if(static_cast<A>(xv[k].get(i)) * scale(k, i), relu)));
      store_vec<T, V>(y + off[k], out);
    }
  }
}

// store_scaled_by with one scale per vector slot, the same for every item.
template <int K, typename T, int V, typename A>
__device__ __forceinline__ void store_scaled(T* y, const T* res, const int64_t (&off)[K],
                                             const Vec<T, V> (&xv)[K], const A (&s)[V], bool relu) {
  store_scaled_by<K>(y, res, off, xv, [&](int, int i) { return s[i]; }, relu);
}

// Division in the accumulation type without a slow-path subroutine call for float
// (a call would make every register live across it spill): __fdividef is within
// 2 ulp. Doubles divide exactly.
__device__ __forceinline__ float div_acc(float a, float b) { return __fdividef(a, b); }
__device__ __forceinline__ double div_acc(double a, double b) { return a / b; }

__device__ __forceinline__ float sigmoid_acc(float g) {
  // Precise expf (the extension is built without --use_fast_math): the sigmoid runs
  // once per tile, never per element. __fdividef(1, inf) is 0, as it should be.
  return __fdividef(1.0f, 1.0f + expf(-g));
}
__device__ __forceinline__ double sigmoid_acc(double g) { return 1.0 / (1.0 + exp(-g)); }

// Unit index -> (quotient, remainder) with the 32-bit fast path when the plan allows.
__device__ __forceinline__ int64_t split(int64_t u, const DivMod& dm, bool idx32, int64_t& q) {
  if (idx32) {
    uint32_t q32;
    const uint32_t r = dm.divmod(static_cast<uint32_t>(u), q32);
    q = q32;
    return r;
  }
  q = u / static_cast<int64_t>(dm.d);
  return u - q * static_cast<int64_t>(dm.d);
}

}  // namespace cuda
}  // namespace genet_ops
