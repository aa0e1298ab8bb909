// gather_excite forward and backward kernels, NCHW and NHWC.
//
// Forward: sweep 1 loads the unit's x into registers (or, past the register budget,
// only reduces it), the team sums each tile, then sweep 2 writes y = x * s (+ residual)
// from the registers (or re-reads x, from L2). The backward reduces sum(x) and
// sum(dy * x) in one sweep and keeps only dy for the second, which writes
// dx = dy * s + s (1 - s) / |t| * sum(dy * x). fp32 accumulation (fp64 for double).
#pragma once

#include "tiles.cuh"

namespace genet_ops {
namespace cuda {

// s (and, for the backward, the coefficient of the second term) per column: slots that
// head a tile get the tile's value, the others copy their left neighbour.
template <int V, typename A>
__device__ __forceinline__ void spread_heads(A (&v)[V], int grp) {
#pragma unroll
  for (int i = 1; i < V; ++i)
    if (!slot_on<V>(i, grp)) v[i] = v[i - 1];
}

template <typename T, int V>
__global__ void __launch_bounds__(kMaxTeam)
    ge_fwd_nchw(const T* __restrict__ x, const T* __restrict__ res, T* __restrict__ y, const NchwPlan P) {
  using A = acc_t<T>;
  constexpr int K = kItems;
  GENET_DECLARE_SMEM(smem_raw);
  const TeamPos q = team_pos(P.T, P.Tc, P.teams, P.units);
  const NchwUnit U = nchw_unit(P, q);
  const int nitems = P.RR * P.CC;

  Vec<T, V> xc[K];
  A acc[V];
#pragma unroll
  for (int i = 0; i < V; ++i) acc[i] = A(0);
  {
    NchwItems it;
    for (int k0 = 0; k0 < nitems; k0 += K) {
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int64_t off = k0 + k < nitems ? it.offset(P, U, q, V) : -1;
        if (off >= 0) {
          xc[k] = load_vec<T, V>(x + off);
#pragma unroll
          for (int i = 0; i < V; ++i) acc[i] += static_cast<A>(xc[k].v[i]);
        }
        it.next(P.CC);
      }
    }
  }
  group_columns<V>(acc, P.grp);
  team_allreduce<V>(acc, P.T, 1, P.grp, reinterpret_cast<A*>(smem_raw));
  A s[V];
#pragma unroll
  for (int i = 0; i < V; ++i) s[i] = sigmoid_acc(acc[i] / static_cast<A>(U.count));
  spread_heads<V>(s, P.grp);

  NchwItems it;
  for (int k0 = 0; k0 < nitems; k0 += K) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t off = k0 + k < nitems ? it.offset(P, U, q, V) : -1;
      if (off >= 0) {
        if (!P.cache) xc[k] = load_vec<T, V>(x + off);
        Vec<T, V> out;
        if (res != nullptr) {
          const Vec<T, V> rv = load_vec<T, V>(res + off);
#pragma unroll
          for (int i = 0; i < V; ++i)
            out.v[i] = static_cast<T>(static_cast<A>(xc[k].v[i]) * s[i] + static_cast<A>(rv.v[i]));
        } else {
#pragma unroll
          for (int i = 0; i < V; ++i) out.v[i] = static_cast<T>(static_cast<A>(xc[k].v[i]) * s[i]);
        }
        store_vec<T, V>(y + off, out);
      }
      it.next(P.CC);
    }
  }
}

template <typename T, int V>
__global__ void __launch_bounds__(kMaxTeam)
    ge_bwd_nchw(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx, const NchwPlan P) {
  using A = acc_t<T>;
  constexpr int K = kItems;
  GENET_DECLARE_SMEM(smem_raw);
  const TeamPos q = team_pos(P.T, P.Tc, P.teams, P.units);
  const NchwUnit U = nchw_unit(P, q);
  const int nitems = P.RR * P.CC;

  Vec<T, V> dc[K];  // dy stays in registers; x is only reduced
  A acc[2 * V];  // [0, V): sum x per column, [V, 2V): sum dy * x
#pragma unroll
  for (int i = 0; i < 2 * V; ++i) acc[i] = A(0);
  {
    NchwItems it;
    for (int k0 = 0; k0 < nitems; k0 += K) {
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int64_t off = k0 + k < nitems ? it.offset(P, U, q, V) : -1;
        if (off >= 0) {
          const Vec<T, V> xl = load_vec<T, V>(x + off);
          dc[k] = load_vec<T, V>(dy + off);
#pragma unroll
          for (int i = 0; i < V; ++i) {
            const A xv = static_cast<A>(xl.v[i]);
            acc[i] += xv;
            acc[V + i] += static_cast<A>(dc[k].v[i]) * xv;
          }
        }
        it.next(P.CC);
      }
    }
  }
  group_columns<V>(acc, P.grp);
  team_allreduce<V>(acc, P.T, 1, P.grp, reinterpret_cast<A*>(smem_raw));
  A s[V], cf[V];
  const A inv_count = A(1) / static_cast<A>(U.count);
#pragma unroll
  for (int i = 0; i < V; ++i) {
    s[i] = sigmoid_acc(acc[i] / static_cast<A>(U.count));
    cf[i] = s[i] * (A(1) - s[i]) * acc[V + i] * inv_count;
  }
  spread_heads<V>(s, P.grp);
  spread_heads<V>(cf, P.grp);

  NchwItems it;
  for (int k0 = 0; k0 < nitems; k0 += K) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t off = k0 + k < nitems ? it.offset(P, U, q, V) : -1;
      if (off >= 0) {
        if (!P.cache) dc[k] = load_vec<T, V>(dy + off);
        Vec<T, V> out;
#pragma unroll
        for (int i = 0; i < V; ++i) out.v[i] = static_cast<T>(static_cast<A>(dc[k].v[i]) * s[i] + cf[i]);
        store_vec<T, V>(dx + off, out);
      }
      it.next(P.CC);
    }
  }
}

template <typename T, int V>
__global__ void __launch_bounds__(kMaxTeam)
    ge_fwd_nhwc(const T* __restrict__ x, const T* __restrict__ res, T* __restrict__ y, const NhwcPlan P) {
  using A = acc_t<T>;
  constexpr int K = kItems;
  GENET_DECLARE_SMEM(smem_raw);
  const TeamPos q = team_pos(P.T, P.Tc, P.teams, P.units);
  const NhwcUnit U = nhwc_unit(P, q, V);

  Vec<T, V> xc[K];
  A acc[V];
#pragma unroll
  for (int i = 0; i < V; ++i) acc[i] = A(0);
  {
    NhwcItems it(P, U, q);
    for (int k0 = 0; k0 < P.RR; k0 += K) {
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int64_t off = k0 + k < P.RR ? it.offset(P, U) : -1;
        if (off >= 0) {
          xc[k] = load_vec<T, V>(x + off);
#pragma unroll
          for (int i = 0; i < V; ++i) acc[i] += static_cast<A>(xc[k].v[i]);
        }
        it.next(U);
      }
    }
  }
  team_allreduce<V>(acc, P.T, P.Tc, 1, reinterpret_cast<A*>(smem_raw));
  A s[V];
#pragma unroll
  for (int i = 0; i < V; ++i) s[i] = sigmoid_acc(acc[i] / static_cast<A>(U.count));

  NhwcItems it(P, U, q);
  for (int k0 = 0; k0 < P.RR; k0 += K) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t off = k0 + k < P.RR ? it.offset(P, U) : -1;
      if (off >= 0) {
        if (!P.cache) xc[k] = load_vec<T, V>(x + off);
        Vec<T, V> out;
        if (res != nullptr) {
          const Vec<T, V> rv = load_vec<T, V>(res + off);
#pragma unroll
          for (int i = 0; i < V; ++i)
            out.v[i] = static_cast<T>(static_cast<A>(xc[k].v[i]) * s[i] + static_cast<A>(rv.v[i]));
        } else {
#pragma unroll
          for (int i = 0; i < V; ++i) out.v[i] = static_cast<T>(static_cast<A>(xc[k].v[i]) * s[i]);
        }
        store_vec<T, V>(y + off, out);
      }
      it.next(U);
    }
  }
}

template <typename T, int V>
__global__ void __launch_bounds__(kMaxTeam)
    ge_bwd_nhwc(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx, const NhwcPlan P) {
  using A = acc_t<T>;
  constexpr int K = kItems;
  GENET_DECLARE_SMEM(smem_raw);
  const TeamPos q = team_pos(P.T, P.Tc, P.teams, P.units);
  const NhwcUnit U = nhwc_unit(P, q, V);

  Vec<T, V> dc[K];  // dy stays in registers; x is only reduced
  A acc[2 * V];
#pragma unroll
  for (int i = 0; i < 2 * V; ++i) acc[i] = A(0);
  {
    NhwcItems it(P, U, q);
    for (int k0 = 0; k0 < P.RR; k0 += K) {
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int64_t off = k0 + k < P.RR ? it.offset(P, U) : -1;
        if (off >= 0) {
          const Vec<T, V> xl = load_vec<T, V>(x + off);
          dc[k] = load_vec<T, V>(dy + off);
#pragma unroll
          for (int i = 0; i < V; ++i) {
            const A xv = static_cast<A>(xl.v[i]);
            acc[i] += xv;
            acc[V + i] += static_cast<A>(dc[k].v[i]) * xv;
          }
        }
        it.next(U);
      }
    }
  }
  team_allreduce<V>(acc, P.T, P.Tc, 1, reinterpret_cast<A*>(smem_raw));
  A s[V], cf[V];
  const A inv_count = A(1) / static_cast<A>(U.count);
#pragma unroll
  for (int i = 0; i < V; ++i) {
    s[i] = sigmoid_acc(acc[i] / static_cast<A>(U.count));
    cf[i] = s[i] * (A(1) - s[i]) * acc[V + i] * inv_count;
  }

  NhwcItems it(P, U, q);
  for (int k0 = 0; k0 < P.RR; k0 += K) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const int64_t off = k0 + k < P.RR ? it.offset(P, U) : -1;
      if (off >= 0) {
        if (!P.cache) dc[k] = load_vec<T, V>(dy + off);
        Vec<T, V> out;
#pragma unroll
        for (int i = 0; i < V; ++i) out.v[i] = static_cast<T>(static_cast<A>(dc[k].v[i]) * s[i] + cf[i]);
        store_vec<T, V>(dx + off, out);
      }
      it.next(U);
    }
  }
}

}  // namespace cuda
}  // namespace genet_ops
