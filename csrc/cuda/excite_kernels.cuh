// excite forward and backward kernels, NCHW and NHWC, on the same units as
// gather_excite (plan.h). The forward is one streaming pass: y = x * sigmoid(g[tile])
// (+ residual). The backward is one pass too: it writes dx = dy * s as it goes and
// reduces sum(dy * x) per tile for dg = s (1 - s) * sum(dy * x).
#pragma once

#include "tiles.cuh"

namespace genet_ops {
namespace cuda {

// s per column of an NCHW thread's vectors: one g per tile of the unit.
template <typename T, int V, typename A>
__device__ __forceinline__ void nchw_tile_sigmoid(A (&s)[V], const T* g, const NchwPlan& P, const NchwUnit& U,
                                                  bool on) {
#pragma unroll
  for (int i = 0; i < V; ++i) {
    if (slot_on<V>(i, P.grp))
      s[i] = on ? sigmoid_acc(static_cast<A>(g[U.gidx + i / P.grp])) : A(0);
    else
      s[i] = s[i - 1];
  }
}

template <typename T, int V>
__global__ void __launch_bounds__(kMaxTeam) excite_fwd_nchw(const T* __restrict__ x, const T* __restrict__ g,
                                                            const T* __restrict__ res, T* __restrict__ y,
                                                            const NchwPlan P) {
  using A = acc_t<T>;
  constexpr int K = kItems;
  const TeamPos q = team_pos(P.T, P.Tc, P.teams, P.units);
  const NchwUnit U = nchw_unit(P, q);
  const int nitems = P.RR * P.CC;
  A s[V];
  nchw_tile_sigmoid<T, V>(s, g, P, U, q.on);

  NchwItems it;
  for (int k0 = 0; k0 < nitems; k0 += K) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t off = k0 + k < nitems ? it.offset(P, U, q, V) : -1;
      if (off >= 0) {
        const Vec<T, V> xv = load_vec<T, V>(x + off);
        Vec<T, V> out;
        if (res != nullptr) {
          const Vec<T, V> rv = load_vec<T, V>(res + off);
#pragma unroll
          for (int i = 0; i < V; ++i)
            out.v[i] = static_cast<T>(static_cast<A>(xv.v[i]) * s[i] + static_cast<A>(rv.v[i]));
        } else {
#pragma unroll
          for (int i = 0; i < V; ++i) out.v[i] = static_cast<T>(static_cast<A>(xv.v[i]) * s[i]);
        }
        store_vec<T, V>(y + off, out);
      }
      it.next(P.CC);
    }
  }
}

template <typename T, int V>
__global__ void __launch_bounds__(kMaxTeam) excite_bwd_nchw(const T* __restrict__ dy, const T* __restrict__ x,
                                                            const T* __restrict__ g, T* __restrict__ dx,
                                                            T* __restrict__ dg, const NchwPlan P) {
  using A = acc_t<T>;
  constexpr int K = kItems;
  GENET_DECLARE_SMEM(smem_raw);
  const TeamPos q = team_pos(P.T, P.Tc, P.teams, P.units);
  const NchwUnit U = nchw_unit(P, q);
  const int nitems = P.RR * P.CC;
  A s[V], acc[V];
  nchw_tile_sigmoid<T, V>(s, g, P, U, q.on);
#pragma unroll
  for (int i = 0; i < V; ++i) acc[i] = A(0);

  NchwItems it;
  for (int k0 = 0; k0 < nitems; k0 += K) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t off = k0 + k < nitems ? it.offset(P, U, q, V) : -1;
      if (off >= 0) {
        const Vec<T, V> xv = load_vec<T, V>(x + off);
        const Vec<T, V> dv = load_vec<T, V>(dy + off);
        Vec<T, V> out;
#pragma unroll
        for (int i = 0; i < V; ++i) {
          const A d = static_cast<A>(dv.v[i]);
          out.v[i] = static_cast<T>(d * s[i]);
          acc[i] += d * static_cast<A>(xv.v[i]);
        }
        store_vec<T, V>(dx + off, out);
      }
      it.next(P.CC);
    }
  }
  group_columns<V>(acc, P.grp);
  team_allreduce<V>(acc, P.T, 1, P.grp, reinterpret_cast<A*>(smem_raw));
  if (q.on && q.tt == 0) {
#pragma unroll
    for (int i = 0; i < V; ++i)
      if (slot_on<V>(i, P.grp)) dg[U.gidx + i / P.grp] = static_cast<T>(s[i] * (A(1) - s[i]) * acc[i]);
  }
}

template <typename T, int V>
__global__ void __launch_bounds__(kMaxTeam) excite_fwd_nhwc(const T* __restrict__ x, const T* __restrict__ g,
                                                            const T* __restrict__ res, T* __restrict__ y,
                                                            const NhwcPlan P) {
  using A = acc_t<T>;
  constexpr int K = kItems;
  const TeamPos q = team_pos(P.T, P.Tc, P.teams, P.units);
  const NhwcUnit U = nhwc_unit(P, q, V);
  A s[V];
#pragma unroll
  for (int i = 0; i < V; ++i) s[i] = U.lane_on ? sigmoid_acc(static_cast<A>(g[U.gbase + U.c + i])) : A(0);

  NhwcItems it(P, U, q);
  for (int k0 = 0; k0 < P.RR; k0 += K) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t off = k0 + k < P.RR ? it.offset(P, U) : -1;
      if (off >= 0) {
        const Vec<T, V> xv = load_vec<T, V>(x + off);
        Vec<T, V> out;
        if (res != nullptr) {
          const Vec<T, V> rv = load_vec<T, V>(res + off);
#pragma unroll
          for (int i = 0; i < V; ++i)
            out.v[i] = static_cast<T>(static_cast<A>(xv.v[i]) * s[i] + static_cast<A>(rv.v[i]));
        } else {
#pragma unroll
          for (int i = 0; i < V; ++i) out.v[i] = static_cast<T>(static_cast<A>(xv.v[i]) * s[i]);
        }
        store_vec<T, V>(y + off, out);
      }
      it.next(U);
    }
  }
}

template <typename T, int V>
__global__ void __launch_bounds__(kMaxTeam) excite_bwd_nhwc(const T* __restrict__ dy, const T* __restrict__ x,
                                                            const T* __restrict__ g, T* __restrict__ dx,
                                                            T* __restrict__ dg, const NhwcPlan P) {
  using A = acc_t<T>;
  constexpr int K = kItems;
  GENET_DECLARE_SMEM(smem_raw);
  const TeamPos q = team_pos(P.T, P.Tc, P.teams, P.units);
  const NhwcUnit U = nhwc_unit(P, q, V);
  A s[V], acc[V];
#pragma unroll
  for (int i = 0; i < V; ++i) {
    s[i] = U.lane_on ? sigmoid_acc(static_cast<A>(g[U.gbase + U.c + i])) : A(0);
    acc[i] = A(0);
  }

  NhwcItems it(P, U, q);
  for (int k0 = 0; k0 < P.RR; k0 += K) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t off = k0 + k < P.RR ? it.offset(P, U) : -1;
      if (off >= 0) {
        const Vec<T, V> xv = load_vec<T, V>(x + off);
        const Vec<T, V> dv = load_vec<T, V>(dy + off);
        Vec<T, V> out;
#pragma unroll
        for (int i = 0; i < V; ++i) {
          const A d = static_cast<A>(dv.v[i]);
          out.v[i] = static_cast<T>(d * s[i]);
          acc[i] += d * static_cast<A>(xv.v[i]);
        }
        store_vec<T, V>(dx + off, out);
      }
      it.next(U);
    }
  }
  team_allreduce<V>(acc, P.T, P.Tc, 1, reinterpret_cast<A*>(smem_raw));
  if (U.lane_on && q.r_l == 0) {
#pragma unroll
    for (int i = 0; i < V; ++i) dg[U.gbase + U.c + i] = static_cast<T>(s[i] * (A(1) - s[i]) * acc[i]);
  }
}

}  // namespace cuda
}  // namespace genet_ops
