// gather_excite forward and backward on the packed NCHW plan (planner.h, knob
// cuda_nchw_small_plane = packed): a unit is `pack` whole planes of one tile each, one
// contiguous run that a team (at most a warp) reads with V-wide vectors, where the
// per-plane plan of a 7 x 7 plane could only use 2-byte loads. A plane holds at least
// V elements, so a vector straddles at most two planes: each thread splits every vector
// at the plane boundary into two partial sums, keeps one partial per plane of its unit
// (pack <= V <= 16 bytes / sizeof(T) registers: kPack<T>), and the warp's shuffle tree
// hands every lane each plane's total.
// The run stays in registers (item_cols <= K items), so x (dy) is read once.
#pragma once

#include "tiles.cuh"

namespace genet_ops {
namespace cuda {

// Planes of the unit and vector slots of an item: the item's vector starts in plane
// p0 of the unit and its first b elements (b = V when it does not cross) lie there.
template <int K>
struct PackedItems {
  int64_t off[K];
  int p0[K], b[K];
};

template <int V, int K>
__device__ __forceinline__ PackedItems<K> packed_items(const NchwPlan& P, const TeamPos& q) {
  PackedItems<K> it;
  const int64_t base = q.u * P.pack * P.plane;
  const int nvec = static_cast<int>(P.pack * P.plane / V);
  const int plane = static_cast<int>(P.plane);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const int j = q.c_l + k * P.Tc;  // vector of the run
    const bool on = q.on && k < P.item_cols && j < nvec;
    const int e0 = j * V;
    it.p0[k] = on ? e0 / plane : 0;
    it.b[k] = on ? static_cast<int>(imin(V, (it.p0[k] + 1) * plane - e0)) : V;
    it.off[k] = on ? base + e0 : -1;
  }
  return it;
}

// Planes per unit at most for element type T: pack divides V.
template <typename T>
constexpr int kPack = 16 / static_cast<int>(sizeof(T));

// acc[p0] += lo, acc[p0 + 1] += hi without indexing registers by a run-time value.
template <int PK, typename A>
__device__ __forceinline__ void add_to_planes(A (&acc)[PK], int p0, A lo, A hi) {
#pragma unroll
  for (int j = 0; j < PK; ++j) acc[j] += (j == p0 ? lo : A(0)) + (j == p0 + 1 ? hi : A(0));
}

template <int PK, typename A>
__device__ __forceinline__ A pick_plane(const A (&v)[PK], int p) {
  A r = v[0];
#pragma unroll
  for (int j = 1; j < PK; ++j) r = j == p ? v[j] : r;
  return r;
}

template <typename T, int V, int K>
__global__ void __launch_bounds__(kMaxTeam, kMinBlocks<K>)
    ge_packed_fwd_kernel(const T* __restrict__ x, const T* __restrict__ res, T* __restrict__ y,
                         acc_t<T>* __restrict__ means, const bool relu, const NchwPlan P) {
  using A = acc_t<T>;
  constexpr int PK = kPack<T>;
  const TeamPos q = team_pos(P.T, P.Tc, P.teams, P.units);
  const PackedItems<K> it = packed_items<V, K>(P, q);
  Vec<T, V> xc[K];
  load_items(xc, x, it.off);
  A acc[PK];
#pragma unroll
  for (int j = 0; j < PK; ++j) acc[j] = A(0);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    A lo = A(0), hi = A(0);
#pragma unroll
    for (int i = 0; i < V; ++i) {
      const A v = static_cast<A>(xc[k].get(i));
      lo += i < it.b[k] ? v : A(0);
      hi += i < it.b[k] ? A(0) : v;
    }
    add_to_planes(acc, it.p0[k], lo, hi);
  }
  team_allreduce<1>(acc, P.T, 1, 1, static_cast<A*>(nullptr));  // T <= 32: shuffles only
  A s[PK];
  const A count = static_cast<A>(P.plane);
  // the plane means; g (N, C, 1, 1) holds the unit's planes in a row
  const bool write_means = means != nullptr && q.on && q.tt == 0;
#pragma unroll
  for (int j = 0; j < PK; ++j) {
    const A m = div_acc(acc[j], count);
    if (write_means && j < P.pack) means[q.u * P.pack + j] = m;
    s[j] = sigmoid_acc(m);
  }
  A slo[K], shi[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    slo[k] = pick_plane(s, it.p0[k]);
    shi[k] = pick_plane(s, it.p0[k] + 1);
  }
  store_scaled_by<K>(y, res, it.off, xc, [&](int k, int i) { return i < it.b[k] ? slo[k] : shi[k]; }, relu);
}

template <typename T, int V, int K>
__global__ void __launch_bounds__(kMaxTeam, kMinBlocks<K>)
    ge_packed_bwd_kernel(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx, const NchwPlan P) {
  using A = acc_t<T>;
  constexpr int PK = kPack<T>;
  const TeamPos q = team_pos(P.T, P.Tc, P.teams, P.units);
  const PackedItems<K> it = packed_items<V, K>(P, q);
  Vec<T, V> dc[K], xl[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    xl[k] = load_or_zero<T, V>(x, it.off[k]);
    dc[k] = load_or_zero<T, V>(dy, it.off[k]);
  }
  A sx[PK], sdx[PK];  // per plane: sum x, sum dy * x
#pragma unroll
  for (int j = 0; j < PK; ++j) sx[j] = sdx[j] = A(0);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    A lo = A(0), hi = A(0), dlo = A(0), dhi = A(0);
#pragma unroll
    for (int i = 0; i < V; ++i) {
      const A xv = static_cast<A>(xl[k].get(i));
      const A dv = static_cast<A>(dc[k].get(i)) * xv;
      lo += i < it.b[k] ? xv : A(0);
      hi += i < it.b[k] ? A(0) : xv;
      dlo += i < it.b[k] ? dv : A(0);
      dhi += i < it.b[k] ? A(0) : dv;
    }
    add_to_planes(sx, it.p0[k], lo, hi);
    add_to_planes(sdx, it.p0[k], dlo, dhi);
  }
  team_allreduce<1>(sx, P.T, 1, 1, static_cast<A*>(nullptr));
  team_allreduce<1>(sdx, P.T, 1, 1, static_cast<A*>(nullptr));
  A s[PK], cf[PK];
  const A count = static_cast<A>(P.plane);
#pragma unroll
  for (int j = 0; j < PK; ++j) {
    s[j] = sigmoid_acc(div_acc(sx[j], count));
    cf[j] = div_acc(s[j] * (A(1) - s[j]) * sdx[j], count);
  }
#pragma unroll
  for (int k = 0; k < K; ++k) {
    if (it.off[k] < 0) continue;
    const A slo = pick_plane(s, it.p0[k]), shi = pick_plane(s, it.p0[k] + 1);
    const A clo = pick_plane(cf, it.p0[k]), chi = pick_plane(cf, it.p0[k] + 1);
    Vec<T, V> out;
#pragma unroll
    for (int i = 0; i < V; ++i) {
      const bool first = i < it.b[k];
      out.set(i, static_cast<T>(static_cast<A>(dc[k].get(i)) * (first ? slo : shi) + (first ? clo : chi)));
    }
    store_vec<T, V>(dx + it.off[k], out);
  }
}

}  // namespace cuda
}  // namespace genet_ops
