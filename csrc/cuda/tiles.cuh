// Device side of the launch plans (plan.h): which unit a team owns, where its items
// lie, and the per-column bookkeeping for tiles narrower than a vector.
#pragma once

#include "plan.h"
#include "reduce.cuh"

namespace genet_ops {
namespace cuda {

__device__ __forceinline__ int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// Where a thread sits in its team and which unit the team owns.
struct TeamPos {
  int tt;      // lane in the team
  int c_l;     // lane across the contiguous direction (columns / channels)
  int r_l;     // lane across rows / pixels
  int64_t u;   // unit index
  bool on;     // the unit exists (the last block may have idle teams)
};

__device__ __forceinline__ TeamPos team_pos(int T, int Tc, int teams, int64_t units) {
  TeamPos q;
  const int tid = threadIdx.x;
  q.tt = tid & (T - 1);
  q.c_l = q.tt & (Tc - 1);
  q.r_l = q.tt / Tc;
  q.u = static_cast<int64_t>(blockIdx.x) * teams + tid / T;
  q.on = q.u < units;
  return q;
}

// ------------------------------------------------------------------------------ NCHW
struct NchwUnit {
  int64_t base;   // offset of the unit's first element
  int64_t rows;   // rows of the unit (1 when flat)
  int64_t cols;   // elements per row of the unit
  int64_t gidx;   // offset in g (N, C, th, tw contiguous) of the unit's first tile
  int64_t count;  // pixels in each of the unit's tiles
};

__device__ __forceinline__ NchwUnit nchw_unit(const NchwPlan& P, const TeamPos& q) {
  NchwUnit U{0, 0, 0, 0, 1};
  if (!q.on) return U;
  int64_t t, p;
  const int64_t cu = split(q.u, P.dm_units_per_row, P.idx32, t);  // t = plane * th + ty
  const int64_t ty = split(t, P.dm_th, P.idx32, p);
  const int64_t rows = imin(P.eh, P.H - ty * P.eh);
  U.base = p * P.plane + ty * P.eh * P.W;
  if (P.flat) {
    U.rows = 1;
    U.cols = rows * P.W;
    U.count = U.cols;
    U.gidx = t;  // tw == 1
  } else {
    U.base += cu * P.unit_cols;
    U.rows = rows;
    U.cols = imin(P.unit_cols, P.W - cu * P.unit_cols);
    U.count = rows * (P.multi_tile ? P.tile_cols : U.cols);
    U.gidx = t * P.tw + (P.multi_tile ? cu * (P.V / P.tile_cols) : cu);
  }
  return U;
}

// Item walk of one NCHW thread: rows r_l + rr * R, column vectors c_l + cc * Tc.
struct NchwItems {
  int rr = 0, cc = 0;
  __device__ __forceinline__ void next(int item_cols) {
    if (++cc == item_cols) {
      cc = 0;
      ++rr;
    }
  }
  // Offset of the current item, or -1 when it lies outside the unit.
  __device__ __forceinline__ int64_t offset(const NchwPlan& P, const NchwUnit& U, const TeamPos& q, int V) const {
    const int64_t row = q.r_l + static_cast<int64_t>(rr) * P.R;
    const int64_t col = static_cast<int64_t>(q.c_l + cc * P.Tc) * V;
    if (row >= U.rows || col >= U.cols) return -1;
    return U.base + row * P.W + col;
  }
};

// Sum each run of tile_cols consecutive columns into its first slot (per half of size V).
template <int V, int NV, typename A>
__device__ __forceinline__ void group_columns(A (&acc)[NV], int tile_cols) {
#pragma unroll
  for (int w = 1; w < V; w <<= 1) {
    if (w < tile_cols) {
#pragma unroll
      for (int i = 0; i < NV; i += 2 * w) acc[i] += acc[i + w];
    }
  }
}

// ------------------------------------------------------------------------------ NHWC
struct NhwcUnit {
  int64_t pix0;   // pixel index (n * H + i) * W + j of the tile's top-left pixel
  int64_t gbase;  // offset in g (N, th, tw, C contiguous) of the tile's channel 0
  int64_t c;      // first channel of this lane
  int rows, cols;
  int64_t count;
  bool lane_on;   // the unit exists and this lane's channels are inside C
};

__device__ __forceinline__ NhwcUnit nhwc_unit(const NhwcPlan& P, const TeamPos& q, int V) {
  NhwcUnit U{0, 0, 0, 0, 1, 1, false};
  if (!q.on) return U;
  int64_t t, t2, n;
  const int64_t cg = split(q.u, P.dm_channel_groups, P.idx32, t);  // t = (n * th + ty) * tw + tx
  const int64_t tx = split(t, P.dm_tw, P.idx32, t2);
  const int64_t ty = split(t2, P.dm_th, P.idx32, n);
  U.rows = static_cast<int>(imin(P.eh, P.H - ty * P.eh));
  U.cols = static_cast<int>(imin(P.ew, P.W - tx * P.ew));
  U.count = static_cast<int64_t>(U.rows) * U.cols;
  U.pix0 = (n * P.H + ty * P.eh) * P.W + tx * P.ew;
  U.gbase = t * P.C;
  U.c = (cg * P.Tc + q.c_l) * V;
  U.lane_on = U.c < P.C;
  return U;
}

// Pixel walk of one NHWC thread: pixels r_l, r_l + R, ... of the tile, row-major.
struct NhwcItems {
  int i, j, di, dj;
  __device__ __forceinline__ NhwcItems(const NhwcPlan& P, const NhwcUnit& U, const TeamPos& q) {
    i = q.r_l / U.cols;
    j = q.r_l - i * U.cols;
    di = P.R / U.cols;
    dj = P.R - di * U.cols;
  }
  __device__ __forceinline__ void next(const NhwcUnit& U) {
    i += di;
    j += dj;
    if (j >= U.cols) {
      j -= U.cols;
      ++i;
    }
  }
  __device__ __forceinline__ int64_t offset(const NhwcPlan& P, const NhwcUnit& U) const {
    if (!U.lane_on || i >= U.rows) return -1;
    return (U.pix0 + static_cast<int64_t>(i) * P.W + j) * P.C + U.c;
  }
};

// --------------------------------------------------------------------------- walks
// What the kernels need of a layout, behind one interface: the team's unit, the next
// K items' offsets (-1 for none), the reduction's lane stride and column grouping,
// and where each vector slot's tile lives in g / dg.
template <int V>
struct NchwWalk {
  using Plan = NchwPlan;
  static constexpr int kV = V;
  const NchwPlan& P;
  const TeamPos q;
  const NchwUnit U;
  NchwItems it;
  __device__ __forceinline__ explicit NchwWalk(const NchwPlan& plan)
      : P(plan), q(team_pos(plan.T, plan.Tc, plan.teams, plan.units)), U(nchw_unit(plan, q)) {}
  __device__ __forceinline__ int nitems() const { return P.item_rows * P.item_cols; }
  __device__ __forceinline__ int stride() const { return 1; }
  __device__ __forceinline__ int tile_cols() const { return P.tile_cols; }
  __device__ __forceinline__ int64_t count() const { return U.count; }
  __device__ __forceinline__ void restart() { it = NchwItems(); }
  template <int K>
  __device__ __forceinline__ void offsets(int64_t (&off)[K], int k0) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      off[k] = k0 + k < nitems() ? it.offset(P, U, q, V) : -1;
      it.next(P.item_cols);
    }
  }
  // Slot i heads a group of tile_cols columns: its tile's offset in g (N, C, th, tw).
  __device__ __forceinline__ int64_t g_offset(int i) const { return q.on ? U.gidx + i / P.tile_cols : -1; }
  __device__ __forceinline__ bool writes_g() const { return q.on && q.tt == 0; }
};

template <int V>
struct NhwcWalk {
  using Plan = NhwcPlan;
  static constexpr int kV = V;
  const NhwcPlan& P;
  const TeamPos q;
  const NhwcUnit U;
  NhwcItems it;
  __device__ __forceinline__ explicit NhwcWalk(const NhwcPlan& plan)
      : P(plan), q(team_pos(plan.T, plan.Tc, plan.teams, plan.units)), U(nhwc_unit(plan, q, V)), it(plan, U, q) {}
  __device__ __forceinline__ int nitems() const { return P.item_rows; }
  __device__ __forceinline__ int stride() const { return P.Tc; }
  __device__ __forceinline__ int tile_cols() const { return 1; }
  __device__ __forceinline__ int64_t count() const { return U.count; }
  __device__ __forceinline__ void restart() { it = NhwcItems(P, U, q); }
  template <int K>
  __device__ __forceinline__ void offsets(int64_t (&off)[K], int k0) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      off[k] = k0 + k < nitems() ? it.offset(P, U) : -1;
      it.next(U);
    }
  }
  // Channel U.c + i of the tile, in g (N, th, tw, C).
  __device__ __forceinline__ int64_t g_offset(int i) const { return U.lane_on ? U.gbase + U.c + i : -1; }
  __device__ __forceinline__ bool writes_g() const { return U.lane_on && q.r_l == 0; }
};

// Each tile's total over the team, in every lane's slot that heads the tile: the thread
// first sums the columns of a tile inside each vector, then the team sums over lanes.
template <typename W, int NV, typename A>
__device__ __forceinline__ void reduce_tiles(A (&acc)[NV], const W& w) {
  GENET_DECLARE_SMEM(smem_raw);
  group_columns<W::kV>(acc, w.tile_cols());
  team_allreduce<W::kV>(acc, w.P.T, w.stride(), w.tile_cols(), reinterpret_cast<A*>(smem_raw));
}

// Slots that head a tile keep their value; the others copy their left neighbour.
template <int V, typename A>
__device__ __forceinline__ void spread_heads(A (&v)[V], int tile_cols) {
#pragma unroll
  for (int i = 1; i < V; ++i)
    if (!slot_on<V>(i, tile_cols)) v[i] = v[i - 1];
}

}  // namespace cuda
}  // namespace genet_ops
