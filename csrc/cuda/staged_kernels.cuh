// gather_excite forward and backward on the staged NCHW plan (planner.h, knob
// cuda_nchw_narrow_rows = staged): for tiles narrower than the plane on rows whose
// width forbids wide vectors (W = 14: 4-byte loads for bf16, teams of 1 - 2 threads), a
// unit is `pack` whole planes, one contiguous run read with V-wide vectors (16 bytes)
// by a team. The team stages the run in shared memory, sums each tile there in a fixed
// order (deterministic), and scales its vectors (still in registers) by each element's
// tile sigmoid. Which tile each element of a run belongs to is the same for every unit:
// the block builds that map once.
//
// Shared memory: [tile of each run element: L uint16] then per team
// [x: L elements][dy: L elements, backward][s per tile][coefficient per tile, backward],
// each part 16-byte aligned (planner.h, staged_layout).
#pragma once

#include "tiles.cuh"

namespace genet_ops {
namespace cuda {

// Launch bounds' minimum of resident blocks per SM (plan.h, kMinBlocks): 1 for every
// instance; left unspecified, the 8-item ones below 16-byte vectors spilled at 64
// registers (sm_90, nvcc 13.0).
constexpr int kStagedMinBlocks = 1;

// The block's map from run element to tile (pl * th + ty) * tw + tx; then a barrier.
__device__ __forceinline__ uint16_t* staged_tile_map(const NchwPlan& P, unsigned char* smem) {
  uint16_t* tile = reinterpret_cast<uint16_t*>(smem);
  const int L = static_cast<int>(P.pack * P.plane);
  for (int o = threadIdx.x; o < L; o += blockDim.x) {
    const int pl = o / static_cast<int>(P.plane);
    const int rem = o - pl * static_cast<int>(P.plane);
    const int r = rem / static_cast<int>(P.W), c = rem - r * static_cast<int>(P.W);
    tile[o] = static_cast<uint16_t>((pl * P.th + r / P.eh) * P.tw + c / P.ew);
  }
  __syncthreads();
  return tile;
}

// This team's vectors of the run: offsets in the tensor (-1: none) and in the run.
template <int V, int K>
__device__ __forceinline__ void staged_items(const NchwPlan& P, const TeamPos& q, int64_t (&off)[K], int (&ro)[K]) {
  const int64_t base = q.u * P.pack * P.plane;
  const int nvec = static_cast<int>(P.pack * P.plane / V);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int j = q.tt + k * P.T;
    const bool on = q.on && k < P.item_cols && j < nvec;
    ro[k] = j * V;
    off[k] = on ? base + j * V : -1;
  }
}

template <typename T, int V, int K>
__device__ __forceinline__ void stage(T* buf, const Vec<T, V> (&v)[K], const int64_t (&off)[K], const int (&ro)[K]) {
#pragma unroll
  for (int k = 0; k < K; ++k)
    if (off[k] >= 0) store_vec<T, V>(buf + ro[k], v[k]);
}

// Tile sg of the unit: its first element in the run and its rows, columns, pixels.
struct StagedTile {
  int first, rows, cols;
  __device__ __forceinline__ StagedTile(const NchwPlan& P, int sg) {
    const int tx = sg % static_cast<int>(P.tw);
    const int rest = sg / static_cast<int>(P.tw);
    const int ty = rest % static_cast<int>(P.th), pl = rest / static_cast<int>(P.th);
    rows = static_cast<int>(imin(P.eh, P.H - ty * P.eh));
    cols = static_cast<int>(imin(P.ew, P.W - tx * P.ew));
    first = static_cast<int>(pl * P.plane + ty * P.eh * P.W + tx * P.ew);
  }
};

template <typename T, int V, int K>
__global__ void __launch_bounds__(kMaxTeam, kStagedMinBlocks)
    ge_staged_fwd_kernel(const T* __restrict__ x, const T* __restrict__ res, T* __restrict__ y,
                         acc_t<T>* __restrict__ means, const bool relu, const NchwPlan P) {
  using A = acc_t<T>;
  GENET_DECLARE_SMEM(smem_raw);
  const TeamPos q = team_pos(P.T, P.Tc, P.teams, P.units);
  const int L = static_cast<int>(P.pack * P.plane);
  const int nseg = static_cast<int>(P.pack * P.th * P.tw);
  unsigned char* mine = smem_raw + round16(2 * L) + (threadIdx.x / P.T) * P.stage_bytes;
  T* xs = reinterpret_cast<T*>(mine);
  A* ss = reinterpret_cast<A*>(mine + round16(int64_t{L} * sizeof(T)));
  int64_t off[K];
  int ro[K];
  staged_items<V, K>(P, q, off, ro);
  Vec<T, V> xc[K];
  load_items(xc, x, off);
  const uint16_t* tile = staged_tile_map(P, smem_raw);
  stage(xs, xc, off, ro);
  __syncthreads();
  for (int sg = q.tt; q.on && sg < nseg; sg += P.T) {
    const StagedTile tl(P, sg);
    A sum = A(0);
    for (int r = 0; r < tl.rows; ++r)
      for (int c = 0; c < tl.cols; ++c) sum += static_cast<A>(xs[tl.first + r * P.W + c]);
    const A mean = div_acc(sum, static_cast<A>(tl.rows * tl.cols));
    if (means != nullptr) means[q.u * nseg + sg] = mean;  // g (N, C, th, tw): the unit's tiles in a row
    ss[sg] = sigmoid_acc(mean);
  }
  __syncthreads();
  store_scaled_by<K>(y, res, off, xc, [&](int k, int i) { return ss[tile[ro[k] + i]]; }, relu);
}

template <typename T, int V, int K>
__global__ void __launch_bounds__(kMaxTeam, kStagedMinBlocks)
    ge_staged_bwd_kernel(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx, const NchwPlan P) {
  using A = acc_t<T>;
  GENET_DECLARE_SMEM(smem_raw);
  const TeamPos q = team_pos(P.T, P.Tc, P.teams, P.units);
  const int L = static_cast<int>(P.pack * P.plane);
  const int nseg = static_cast<int>(P.pack * P.th * P.tw);
  const int64_t run_bytes = round16(int64_t{L} * sizeof(T));
  unsigned char* mine = smem_raw + round16(2 * L) + (threadIdx.x / P.T) * P.stage_bytes;
  T* xs = reinterpret_cast<T*>(mine);
  T* ds = reinterpret_cast<T*>(mine + run_bytes);
  A* ss = reinterpret_cast<A*>(mine + 2 * run_bytes);
  A* cs = ss + nseg;
  int64_t off[K];
  int ro[K];
  staged_items<V, K>(P, q, off, ro);
  Vec<T, V> xl[K], dc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    xl[k] = load_or_zero<T, V>(x, off[k]);
    dc[k] = load_or_zero<T, V>(dy, off[k]);
  }
  const uint16_t* tile = staged_tile_map(P, smem_raw);
  stage(xs, xl, off, ro);
  stage(ds, dc, off, ro);
  __syncthreads();
  for (int sg = q.tt; q.on && sg < nseg; sg += P.T) {
    const StagedTile tl(P, sg);
    A sx = A(0), sdx = A(0);
    for (int r = 0; r < tl.rows; ++r) {
      for (int c = 0; c < tl.cols; ++c) {
        const int o = tl.first + r * static_cast<int>(P.W) + c;
        const A xv = static_cast<A>(xs[o]);
        sx += xv;
        sdx += static_cast<A>(ds[o]) * xv;
      }
    }
    const A count = static_cast<A>(tl.rows * tl.cols);
    const A s = sigmoid_acc(div_acc(sx, count));
    ss[sg] = s;
    cs[sg] = div_acc(s * (A(1) - s) * sdx, count);
  }
  __syncthreads();
#pragma unroll
  for (int k = 0; k < K; ++k) {
    if (off[k] < 0) continue;
    Vec<T, V> out;
#pragma unroll
    for (int i = 0; i < V; ++i) {
      const int sg = tile[ro[k] + i];
      out.set(i, static_cast<T>(static_cast<A>(dc[k].get(i)) * ss[sg] + cs[sg]));
    }
    store_vec<T, V>(dx + off[k], out);
  }
}

}  // namespace cuda
}  // namespace genet_ops
