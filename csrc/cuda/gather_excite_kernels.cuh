// gather_excite forward and backward kernels, for either layout (W = NchwWalk<V> or
// NhwcWalk<V>, tiles.cuh).
//
// Forward: sweep 1 loads the unit's x into registers (or, past the register budget,
// only reduces it), the team sums each tile, then sweep 2 writes y = x * s (+ residual),
// and max(y, 0) when relu, from the registers (or re-reads x, from L2). gather_excite_lean
// passes `means` (acc_t, g's layout): the team's head lanes also write each tile's mean
// there. The backward reduces sum(x) and
// sum(dy * x) in one sweep and keeps only dy for the second, which writes
// dx = dy * s + s (1 - s) / |t| * sum(dy * x). fp32 accumulation (fp64 for double).
//
// Every chunk of K items issues all of its loads before the first use, so that K
// 16-byte loads per thread are in flight at once.
#pragma once

#include "tiles.cuh"

namespace genet_ops {
namespace cuda {

template <typename W, typename T, int K>
__global__ void __launch_bounds__(kMaxTeam, kMinBlocks<K>)
    ge_fwd_kernel(const T* __restrict__ x, const T* __restrict__ res, T* __restrict__ y, acc_t<T>* __restrict__ means,
                  const bool relu, const typename W::Plan P) {
  using A = acc_t<T>;
  constexpr int V = W::kV;
  W w(P);
  const int nitems = w.nitems();

  Vec<T, V> xc[K];
  A acc[V];
#pragma unroll
  for (int i = 0; i < V; ++i) acc[i] = A(0);
  for (int k0 = 0; k0 < nitems; k0 += K) {
    int64_t off[K];
    w.template offsets<K>(off, k0);
    load_items(xc, x, off);
#pragma unroll
    for (int k = 0; k < K; ++k) {
#pragma unroll
      for (int i = 0; i < V; ++i) acc[i] += static_cast<A>(xc[k].get(i));
    }
  }
  reduce_tiles(acc, w);
  A s[V];
  const A count = static_cast<A>(w.count());
#pragma unroll
  for (int i = 0; i < V; ++i) acc[i] = div_acc(acc[i], count);  // the tile means
  if (means != nullptr && w.writes_g()) {
#pragma unroll
    for (int i = 0; i < V; ++i)
      if (slot_on<V>(i, w.tile_cols())) means[w.g_offset(i)] = acc[i];
  }
#pragma unroll
  for (int i = 0; i < V; ++i) s[i] = sigmoid_acc(acc[i]);
  spread_heads<V>(s, w.tile_cols());

  w.restart();
  for (int k0 = 0; k0 < nitems; k0 += K) {
    int64_t off[K];
    w.template offsets<K>(off, k0);
    if (!P.cache) load_items(xc, x, off);
    store_scaled<K>(y, res, off, xc, s, relu);
  }
}

template <typename W, typename T, int K>
__global__ void __launch_bounds__(kMaxTeam, kMinBlocks<K>)
    ge_bwd_kernel(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx, const typename W::Plan P) {
  using A = acc_t<T>;
  constexpr int V = W::kV;
  W w(P);
  const int nitems = w.nitems();

  Vec<T, V> dc[K];  // dy stays in registers; x is only reduced
  A acc[2 * V];     // [0, V): sum x per column, [V, 2V): sum dy * x
#pragma unroll
  for (int i = 0; i < 2 * V; ++i) acc[i] = A(0);
  for (int k0 = 0; k0 < nitems; k0 += K) {
    int64_t off[K];
    w.template offsets<K>(off, k0);
    Vec<T, V> xl[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      xl[k] = load_or_zero<T, V>(x, off[k]);
      dc[k] = load_or_zero<T, V>(dy, off[k]);
    }
#pragma unroll
    for (int k = 0; k < K; ++k) {
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const A xv = static_cast<A>(xl[k].get(i));
        acc[i] += xv;
        acc[V + i] += static_cast<A>(dc[k].get(i)) * xv;
      }
    }
  }
  reduce_tiles(acc, w);
  A s[V], cf[V];
  const A count = static_cast<A>(w.count());
#pragma unroll
  for (int i = 0; i < V; ++i) {
    s[i] = sigmoid_acc(div_acc(acc[i], count));
    cf[i] = div_acc(s[i] * (A(1) - s[i]) * acc[V + i], count);
  }
  spread_heads<V>(s, w.tile_cols());
  spread_heads<V>(cf, w.tile_cols());

  w.restart();
  for (int k0 = 0; k0 < nitems; k0 += K) {
    int64_t off[K];
    w.template offsets<K>(off, k0);
    if (!P.cache) load_items(dc, dy, off);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (off[k] < 0) continue;
      Vec<T, V> out;
#pragma unroll
      for (int i = 0; i < V; ++i) out.set(i, static_cast<T>(static_cast<A>(dc[k].get(i)) * s[i] + cf[i]));
      store_vec<T, V>(dx + off[k], out);
    }
  }
}

}  // namespace cuda
}  // namespace genet_ops
