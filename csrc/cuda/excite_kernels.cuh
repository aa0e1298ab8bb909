// excite forward and backward kernels, for either layout (W = NchwWalk<V> or
// NhwcWalk<V>, tiles.cuh), on the same units as gather_excite. The forward is one
// streaming pass: y = x * sigmoid(g[tile]) (+ residual), max(y, 0) when relu. The backward is one pass too:
// it writes dx = dy * s as it goes and reduces sum(dy * x) per tile for
// dg = s (1 - s) * sum(dy * x). Each chunk of K items issues its loads before any use.
#pragma once

#include "tiles.cuh"

namespace genet_ops {
namespace cuda {

// s per vector slot: sigmoid(g) of the slot's tile (slots that share a tile share it).
template <typename W, typename T, int V, typename A>
__device__ __forceinline__ void tile_sigmoid(A (&s)[V], const T* g, const W& w) {
#pragma unroll
  for (int i = 0; i < V; ++i) {
    if (slot_on<V>(i, w.tile_cols())) {
      const int64_t o = w.g_offset(i);
      s[i] = o >= 0 ? sigmoid_acc(static_cast<A>(g[o])) : A(0);
    } else {
      s[i] = s[i - 1];
    }
  }
}

template <typename W, typename T, int K>
__global__ void __launch_bounds__(kMaxTeam, kMinBlocks<K>) excite_fwd_kernel(const T* __restrict__ x, const T* __restrict__ g,
                                                              const T* __restrict__ res, T* __restrict__ y,
                                                              const bool relu, const typename W::Plan P) {
  using A = acc_t<T>;
  constexpr int V = W::kV;
  W w(P);
  const int nitems = w.nitems();
  A s[V];
  tile_sigmoid<W, T, V>(s, g, w);

  for (int k0 = 0; k0 < nitems; k0 += K) {
    int64_t off[K];
    w.template offsets<K>(off, k0);
    Vec<T, V> xv[K];
    load_items(xv, x, off);
    store_scaled<K>(y, res, off, xv, s, relu);
  }
}

template <typename W, typename T, int K>
__global__ void __launch_bounds__(kMaxTeam, kMinBlocks<K>) excite_bwd_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                                              const T* __restrict__ g, T* __restrict__ dx,
                                                              T* __restrict__ dg, const typename W::Plan P) {
  using A = acc_t<T>;
  constexpr int V = W::kV;
  W w(P);
  const int nitems = w.nitems();
  A s[V], acc[V];
  tile_sigmoid<W, T, V>(s, g, w);
#pragma unroll
  for (int i = 0; i < V; ++i) acc[i] = A(0);

  for (int k0 = 0; k0 < nitems; k0 += K) {
    int64_t off[K];
    w.template offsets<K>(off, k0);
    Vec<T, V> xv[K], dv[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      xv[k] = load_or_zero<T, V>(x, off[k]);
      dv[k] = load_or_zero<T, V>(dy, off[k]);
    }
#pragma unroll
    for (int k = 0; k < K; ++k) {
      Vec<T, V> out;
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const A d = static_cast<A>(dv[k].get(i));
        out.set(i, static_cast<T>(d * s[i]));
        acc[i] += d * static_cast<A>(xv[k].get(i));
      }
      if (off[k] >= 0) store_vec<T, V>(dx + off[k], out);
    }
  }
  reduce_tiles(acc, w);
  if (w.writes_g()) {
#pragma unroll
    for (int i = 0; i < V; ++i)
      if (slot_on<V>(i, w.tile_cols())) dg[w.g_offset(i)] = static_cast<T>(s[i] * (A(1) - s[i]) * acc[i]);
  }
}

}  // namespace cuda
}  // namespace genet_ops
