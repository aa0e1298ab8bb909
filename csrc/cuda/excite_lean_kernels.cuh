// excite_lean_backward kernels: the output-keeping backward of excite (GATHER = false)
// and of gather_excite (GATHER = true), for either layout (W = NchwWalk<V> or
// NhwcWalk<V>, tiles.cuh), on the units and plans of excite_backward. They read grad_out,
// the op's output and its residual instead of x, since x * s = out - residual wherever
// the gradient flows (docs/DESIGN.md §2):
//   dp = grad_out, 0 where out <= 0 when RELU (NaN passes);   z = out - residual
//   dg = (1 - s) * sum_t(dp * z)  (acc_t, g's layout);   dx = dp * s (+ dg / |t| if GATHER)
// excite's (GATHER = false) is one pass, as excite_backward: dx is written as it goes.
// gather_excite's needs dg before dx, so it runs as gather_excite_backward: sweep 1
// reduces and keeps dp in registers, sweep 2 writes dx from them (past the register
// budget it re-reads grad_out, and out for the mask, from L2). grad_out, out and the
// residual are loaded kResItems vectors at a time, to bound the live registers.
#pragma once

#include "excite_kernels.cuh"  // tile_sigmoid

namespace genet_ops {
namespace cuda {

// grad_out with the ReLU mask of out (0 where out <= 0; NaN passes, as torch's threshold
// backward): a selection, exact in T, so dp is kept in T's vectors.
template <bool RELU, typename T, int V>
__device__ __forceinline__ Vec<T, V> relu_masked(const Vec<T, V>& d, const Vec<T, V>& o) {
  if constexpr (!RELU) return d;
  using A = acc_t<T>;
  Vec<T, V> r = d;
#pragma unroll
  for (int i = 0; i < V; ++i)
    if (static_cast<A>(o.get(i)) <= A(0)) r.set(i, static_cast<T>(0.0f));
  return r;
}

// dx = dp * s (+ cf) for items [k0, k0 + N) of the K at off, skipping items outside the unit.
template <bool ADD, int N, int K, typename T, int V, typename A>
__device__ __forceinline__ void lean_store_dx(T* dx, const int64_t (&off)[K], int k0, const Vec<T, V> (&dc)[K],
                                              const A (&s)[V], const A (&cf)[V]) {
#pragma unroll
  for (int k = k0; k < k0 + N; ++k) {
    if (off[k] < 0) continue;
    Vec<T, V> o;
#pragma unroll
    for (int i = 0; i < V; ++i) {
      const A d = static_cast<A>(dc[k].get(i)) * s[i];
      o.set(i, static_cast<T>(ADD ? d + cf[i] : d));
    }
    store_vec<T, V>(dx + off[k], o);
  }
}

// The K items at off: dp into dc, and dp * (out - residual) added to acc per slot. STORE
// (excite's one pass) also writes dx = dp * s group by group, so that a group's vectors
// die before the next group's loads.
template <bool RELU, bool STORE, int K, typename T, int V, typename A>
__device__ __forceinline__ void lean_reduce_items(Vec<T, V> (&dc)[K], A (&acc)[V], const T* dy, const T* out,
                                                  const T* res, const int64_t (&off)[K], T* dx, const A (&s)[V]) {
  constexpr int RI = K < kResItems ? K : kResItems;
#pragma unroll
  for (int k1 = 0; k1 < K; k1 += RI) {
    Vec<T, V> ov[RI], rv[RI];
#pragma unroll
    for (int j = 0; j < RI; ++j) {
      dc[k1 + j] = load_or_zero<T, V>(dy, off[k1 + j]);
      ov[j] = load_or_zero<T, V>(out, off[k1 + j]);
      rv[j] = res != nullptr ? load_or_zero<T, V>(res, off[k1 + j]) : Vec<T, V>::zero();
    }
#pragma unroll
    for (int j = 0; j < RI; ++j) {
      dc[k1 + j] = relu_masked<RELU>(dc[k1 + j], ov[j]);
#pragma unroll
      for (int i = 0; i < V; ++i)
        acc[i] += static_cast<A>(dc[k1 + j].get(i)) * (static_cast<A>(ov[j].get(i)) - static_cast<A>(rv[j].get(i)));
    }
    if constexpr (STORE) lean_store_dx<false, RI>(dx, off, k1, dc, s, s);
  }
}

// dp of the K items at off again (the second sweep past the register budget).
template <bool RELU, int K, typename T, int V>
__device__ __forceinline__ void lean_load_grad(Vec<T, V> (&dc)[K], const T* dy, const T* out, const int64_t (&off)[K]) {
  load_items(dc, dy, off);
  if constexpr (RELU) {
    Vec<T, V> ov[K];
    load_items(ov, out, off);
#pragma unroll
    for (int k = 0; k < K; ++k) dc[k] = relu_masked<RELU>(dc[k], ov[k]);
  }
}

// Launch bounds' minimum of resident blocks per SM (plan.h, kMinBlocks): 1 for every
// instance; with the bare bound ptxas gave some 8-item instances of narrow vectors fewer
// registers than they hold and spilled (csrc/cuda/README.md).
constexpr int kLeanMinBlocks = 1;

template <typename W, typename T, int K, bool RELU, bool GATHER>
__global__ void __launch_bounds__(kMaxTeam, kLeanMinBlocks)
    excite_lean_bwd_kernel(const T* __restrict__ dy, const T* __restrict__ out, const T* __restrict__ res,
                           const acc_t<T>* __restrict__ g, T* __restrict__ dx, acc_t<T>* __restrict__ dg,
                           const typename W::Plan P) {
  using A = acc_t<T>;
  constexpr int V = W::kV;
  W w(P);
  const int nitems = w.nitems();
  A s[V], acc[V];
  tile_sigmoid(s, g, w);
#pragma unroll
  for (int i = 0; i < V; ++i) acc[i] = A(0);

  Vec<T, V> dc[K];  // dp; GATHER keeps it for the second sweep
  for (int k0 = 0; k0 < nitems; k0 += K) {
    int64_t off[K];
    w.template offsets<K>(off, k0);
    lean_reduce_items<RELU, !GATHER>(dc, acc, dy, out, res, off, dx, s);
  }
  reduce_tiles(acc, w);
#pragma unroll
  for (int i = 0; i < V; ++i) acc[i] = (A(1) - s[i]) * acc[i];  // dg in the slots that head a tile
  if (w.writes_g()) {
#pragma unroll
    for (int i = 0; i < V; ++i)
      if (slot_on<V>(i, w.tile_cols())) dg[w.g_offset(i)] = acc[i];
  }
  if constexpr (GATHER) {
    A cf[V];
    const A count = static_cast<A>(w.count());
#pragma unroll
    for (int i = 0; i < V; ++i) cf[i] = div_acc(acc[i], count);
    spread_heads<V>(cf, w.tile_cols());
    w.restart();
    for (int k0 = 0; k0 < nitems; k0 += K) {
      int64_t off[K];
      w.template offsets<K>(off, k0);
      if (!P.cache) lean_load_grad<RELU>(dc, dy, out, off);
      lean_store_dx<true, K>(dx, off, 0, dc, s, cf);
    }
  }
}

}  // namespace cuda
}  // namespace genet_ops
