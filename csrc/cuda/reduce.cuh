// Team reductions. A team is T consecutive threads of a block (T a power of two that
// divides blockDim); team lane tt = r * stride + c. team_allreduce sums each value over
// the lanes that share c and hands every lane the total: NCHW teams reduce over all
// lanes (stride 1), NHWC teams over their pixel lanes (stride = channel lanes).
//
// Deterministic: a fixed shuffle tree inside a warp, then a fixed-order sum over the
// team's warps through shared memory. Every thread of the block must call it with the
// same T and stride (it may __syncthreads).
#pragma once

#include "device_common.cuh"

namespace genet_ops {
namespace cuda {

#ifdef GENET_EMU
#define GENET_DECLARE_SMEM(name) unsigned char* name = ::gemu::smem_ptr()
#else
#define GENET_DECLARE_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

// Slot i takes part when (i % PER) is a multiple of tile_cols: callers that hold one
// partial per group of tile_cols columns reduce only the group heads.
template <int PER>
__device__ __forceinline__ bool slot_on(int i, int tile_cols) {
  return ((i % PER) & (tile_cols - 1)) == 0;
}

template <int PER, int NV, typename A>
__device__ __forceinline__ void team_allreduce(A (&v)[NV], int T, int stride, int tile_cols, A* smem) {
  // 1) inside the warp: butterfly over the lanes that share c.
  const int wl = T < 32 ? T : 32;
  for (int off = stride; off < wl; off <<= 1) {
#pragma unroll
    for (int i = 0; i < NV; ++i)
      if (slot_on<PER>(i, tile_cols)) v[i] += __shfl_xor_sync(0xffffffffu, v[i], off);
  }
  if (T <= 32) return;

  // 2) across the team's warps: holders (the lanes of each group of S that carry a
  //    warp partial) write, finishers sum the NG partials in order, everyone reads.
  const int bd = blockDim.x;
  const int tid = threadIdx.x;
  const int tt = tid & (T - 1);
  const int base = tid - tt;
  const int S = stride > 32 ? stride : 32;
  const int NG = T / S;
  const int c = tt & (stride - 1);
  if ((tt & (S - 1)) < stride) {
#pragma unroll
    for (int i = 0; i < NV; ++i)
      if (slot_on<PER>(i, tile_cols)) smem[i * bd + tid] = v[i];
  }
  __syncthreads();
  for (int f = tt; f < stride * NV; f += T) {
    const int i = f / stride;
    const int cc = f & (stride - 1);
    if (!slot_on<PER>(i, tile_cols)) continue;
    A sum = smem[i * bd + base + cc];
    for (int gg = 1; gg < NG; ++gg) sum += smem[i * bd + base + gg * S + cc];
    smem[i * bd + base + cc] = sum;  // only this finisher reads the gg = 0 slot
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < NV; ++i)
    if (slot_on<PER>(i, tile_cols)) v[i] = smem[i * bd + base + c];
  __syncthreads();  // the caller may reuse the shared memory
}

}  // namespace cuda
}  // namespace genet_ops
