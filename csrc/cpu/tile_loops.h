// The CPU kernels of the four ops, per memory layout, and their dtype dispatch.
//
// Work units (split over threads with at::parallel_for, a few per thread's chunk):
//   NCHW: (plane n*C+c, tile row ty). A tile row is eh*W contiguous elements. When a
//         tile spans the whole row width (tw == 1, e.g. extent 0) it is reduced flat;
//         else its rows are summed into per-column accumulators, then per tile.
//   NHWC: (n, tile row ty, block of channels). Each pixel holds a contiguous run of
//         channels, so the inner loops are vectorised over channels with one
//         accumulator row per tile of the tile row.
// Forward: a first sweep sums each tile, a second sweep (from cache) scales it.
// Backward: one sweep sums x and dy*x per tile, a second writes dx from dy (in cache).
//
// Included only by kernels_default.cpp / kernels_avx2.cpp, inside the namespace of
// that ISA, after at::vec and vec_rows.h.
#pragma once

namespace detail {

// Enough units per task that a thread gets at::internal::GRAIN_SIZE elements or more:
// small tensors run on the calling thread, without waking the pool.
inline int64_t grain(int64_t elems_per_unit) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(elems_per_unit, 1));
}

template <typename T>
const T* cptr(const void* p) {
  return static_cast<const T*>(p);
}
template <typename T>
T* mptr(void* p) {
  return static_cast<T*>(p);
}

// NCHW unit u = (plane, ty): offset of its first element, rows in it.
struct NchwUnit {
  int64_t plane, ty, rows, off;
  NchwUnit(const TileGeom& t, int64_t u)
      : plane(u / t.th), ty(u % t.th), rows(t.tile_rows(u % t.th)),
        off((u / t.th) * t.H * t.W + (u % t.th) * t.eh * t.W) {}
};

// NHWC unit u = (n, ty, channel block): first channel c0, nc channels, rows, and the
// offset of pixel (ty * eh, 0) channel c0.
struct NhwcUnit {
  int64_t n, ty, c0, nc, rows, off;
  NhwcUnit(const TileGeom& t, int64_t cb, int64_t u) {
    const int64_t ncb = (t.C + cb - 1) / cb;
    c0 = (u % ncb) * cb;
    nc = std::min(cb, t.C - c0);
    ty = (u / ncb) % t.th;
    n = u / ncb / t.th;
    rows = t.tile_rows(ty);
    off = (n * t.H + ty * t.eh) * t.W * t.C + c0;
  }
  static int64_t count(const TileGeom& t, int64_t cb) { return t.N * t.th * ((t.C + cb - 1) / cb); }
};

// Calls f(tx, p) for every pixel of an NHWC unit, tile by tile within each row; p is the
// element offset of the pixel's channel c0.
template <typename F>
inline void for_pixels(const TileGeom& t, const NhwcUnit& u, F&& f) {
  for (int64_t r = 0; r < u.rows; ++r) {
    int64_t p = u.off + r * t.W * t.C;
    for (int64_t tx = 0; tx < t.tw; ++tx) {
      const int64_t cols = t.tile_cols(tx);
      for (int64_t w = 0; w < cols; ++w, p += t.C) f(tx, p);
    }
  }
}

// Per-tile sums of per-column accumulators: out[tx] = sum of col over tile tx's columns.
template <typename A>
inline void tile_sums(A* out, const A* col, const TileGeom& t) {
  for (int64_t tx = 0; tx < t.tw; ++tx) {
    const A* c = col + tx * t.ew;
    A s = 0;
    for (int64_t j = 0; j < t.tile_cols(tx); ++j) s += c[j];
    out[tx] = s;
  }
}

// col[j] = per_tile[tile of column j], for j < W.
template <typename A>
inline void expand_cols(A* col, const A* per_tile, const TileGeom& t) {
  for (int64_t tx = 0; tx < t.tw; ++tx) std::fill_n(col + tx * t.ew, t.tile_cols(tx), per_tile[tx]);
}

// --------------------------------------------------------------------- gather_excite

template <typename T>
void gather_excite_nchw(const Args& a) {
  using A = acc_t<T>;
  const TileGeom t = a.t;
  const T* x = cptr<T>(a.x);
  const T* res = cptr<T>(a.other);
  T* y = mptr<T>(a.out);
  at::parallel_for(0, t.N * t.C * t.th, grain(t.eh * t.W), [&](int64_t begin, int64_t end) {
    const int64_t ncol = t.tw > 1 ? t.W : 0;
    AccRow<T> col(ncol), scol(ncol), tile(t.tw > 1 ? t.tw : 0);
    for (int64_t i = begin; i < end; ++i) {
      const NchwUnit u(t, i);
      const T* xu = x + u.off;
      const T* ru = res ? res + u.off : nullptr;
      T* yu = y + u.off;
      if (t.tw == 1) {
        const int64_t len = u.rows * t.W;
        const A s = sigmoid(sum_flat(xu, len) / A(len));
        scale_row(yu, xu, ru, Bcast<A>(s), len);
        continue;
      }
      col.zero(t.W);
      for (int64_t r = 0; r < u.rows; ++r) add_row(col.data(), xu + r * t.W, t.W);
      tile_sums(tile.data(), col.data(), t);
      for (int64_t tx = 0; tx < t.tw; ++tx) tile.data()[tx] /= A(u.rows * t.tile_cols(tx));
      sigmoid_row(tile.data(), tile.data(), A(1), t.tw);
      expand_cols(scol.data(), tile.data(), t);
      for (int64_t r = 0; r < u.rows; ++r) {
        const int64_t o = r * t.W;
        scale_row(yu + o, xu + o, ru ? ru + o : nullptr, Cols<A>{scol.data()}, t.W);
      }
    }
  });
}

template <typename T>
void gather_excite_nhwc(const Args& a) {
  using A = acc_t<T>;
  const TileGeom t = a.t;
  const int64_t cb = a.cblock;
  const T* x = cptr<T>(a.x);
  const T* res = cptr<T>(a.other);
  T* y = mptr<T>(a.out);
  at::parallel_for(0, NhwcUnit::count(t, cb), grain(t.eh * t.W * cb), [&](int64_t begin, int64_t end) {
    const int64_t ld = round_up_step<T>(cb);  // stride of one tile's accumulator row
    AccRow<T> acc(t.tw * ld), sc(t.tw * ld);
    for (int64_t i = begin; i < end; ++i) {
      const NhwcUnit u(t, cb, i);
      acc.zero(t.tw * ld);
      for_pixels(t, u, [&](int64_t tx, int64_t p) { add_row(acc.data() + tx * ld, x + p, u.nc); });
      for (int64_t tx = 0; tx < t.tw; ++tx)
        sigmoid_row(sc.data() + tx * ld, acc.data() + tx * ld, A(u.rows * t.tile_cols(tx)), u.nc);
      for_pixels(t, u, [&](int64_t tx, int64_t p) {
        scale_row(y + p, x + p, res ? res + p : nullptr, Cols<A>{sc.data() + tx * ld}, u.nc);
      });
    }
  });
}

// dx = dy * s + s (1 - s) / |t| * sum_t(dy * x)
template <typename T>
void gather_excite_backward_nchw(const Args& a) {
  using A = acc_t<T>;
  const TileGeom t = a.t;
  const T* x = cptr<T>(a.x);
  const T* dy = cptr<T>(a.other);
  T* dx = mptr<T>(a.out);
  at::parallel_for(0, t.N * t.C * t.th, grain(t.eh * t.W), [&](int64_t begin, int64_t end) {
    const int64_t ncol = t.tw > 1 ? t.W : 0, ntile = t.tw > 1 ? t.tw : 0;
    AccRow<T> colx(ncol), cold(ncol), scol(ncol), ccol(ncol), ts(ntile), tc(ntile);
    for (int64_t i = begin; i < end; ++i) {
      const NchwUnit u(t, i);
      const T* xu = x + u.off;
      const T* du = dy + u.off;
      T* dxu = dx + u.off;
      if (t.tw == 1) {
        const int64_t len = u.rows * t.W;
        A sx, sdyx;
        sum2_flat(xu, du, len, sx, sdyx);
        const A cnt = A(len);
        const A s = sigmoid(sx / cnt);
        const A c = s * (A(1) - s) / cnt * sdyx;
        affine_row(dxu, du, Bcast<A>(s), Bcast<A>(c), len);
        continue;
      }
      colx.zero(t.W);
      cold.zero(t.W);
      for (int64_t r = 0; r < u.rows; ++r) add2_row(colx.data(), cold.data(), xu + r * t.W, du + r * t.W, t.W);
      A* s = ts.data();
      A* c = tc.data();
      tile_sums(s, colx.data(), t);
      tile_sums(c, cold.data(), t);
      for (int64_t tx = 0; tx < t.tw; ++tx) s[tx] /= A(u.rows * t.tile_cols(tx));
      sigmoid_row(s, s, A(1), t.tw);
      for (int64_t tx = 0; tx < t.tw; ++tx) c[tx] = s[tx] * (A(1) - s[tx]) / A(u.rows * t.tile_cols(tx)) * c[tx];
      expand_cols(scol.data(), s, t);
      expand_cols(ccol.data(), c, t);
      for (int64_t r = 0; r < u.rows; ++r) {
        const int64_t o = r * t.W;
        affine_row(dxu + o, du + o, Cols<A>{scol.data()}, Cols<A>{ccol.data()}, t.W);
      }
    }
  });
}

template <typename T>
void gather_excite_backward_nhwc(const Args& a) {
  using A = acc_t<T>;
  const TileGeom t = a.t;
  const int64_t cb = a.cblock;
  const T* x = cptr<T>(a.x);
  const T* dy = cptr<T>(a.other);
  T* dx = mptr<T>(a.out);
  at::parallel_for(0, NhwcUnit::count(t, cb), grain(t.eh * t.W * cb), [&](int64_t begin, int64_t end) {
    const int64_t ld = round_up_step<T>(cb);
    AccRow<T> ax(t.tw * ld), ad(t.tw * ld);  // sums of x and dy*x; then s and the constant
    for (int64_t i = begin; i < end; ++i) {
      const NhwcUnit u(t, cb, i);
      ax.zero(t.tw * ld);
      ad.zero(t.tw * ld);
      for_pixels(t, u, [&](int64_t tx, int64_t p) {
        add2_row(ax.data() + tx * ld, ad.data() + tx * ld, x + p, dy + p, u.nc);
      });
      for (int64_t tx = 0; tx < t.tw; ++tx) {
        const A cnt = A(u.rows * t.tile_cols(tx));
        A* s = ax.data() + tx * ld;
        A* c = ad.data() + tx * ld;
        sigmoid_row(s, s, cnt, u.nc);
        for (int64_t j = 0; j < u.nc; ++j) c[j] = s[j] * (A(1) - s[j]) / cnt * c[j];
      }
      for_pixels(t, u, [&](int64_t tx, int64_t p) {
        affine_row(dx + p, dy + p, Cols<A>{ax.data() + tx * ld}, Cols<A>{ad.data() + tx * ld}, u.nc);
      });
    }
  });
}

// ---------------------------------------------------------------------------- excite

// s of one tile row from g (laid out like x): n values, widened and squashed.
template <typename T>
inline void sigmoid_of_g(acc_t<T>* out, const T* g, int64_t n) {
  for (int64_t j = 0; j < n; ++j) out[j] = static_cast<acc_t<T>>(g[j]);
  sigmoid_row(out, out, acc_t<T>(1), n);
}

template <typename T>
void excite_nchw(const Args& a) {
  using A = acc_t<T>;
  const TileGeom t = a.t;
  const T* x = cptr<T>(a.x);
  const T* res = cptr<T>(a.other);
  const T* g = cptr<T>(a.g);
  T* y = mptr<T>(a.out);
  at::parallel_for(0, t.N * t.C * t.th, grain(t.eh * t.W), [&](int64_t begin, int64_t end) {
    AccRow<T> s(t.tw), scol(t.tw > 1 ? t.W : 0);
    for (int64_t i = begin; i < end; ++i) {
      const NchwUnit u(t, i);
      const T* ru = res ? res + u.off : nullptr;
      sigmoid_of_g(s.data(), g + i * t.tw, t.tw);  // g row (plane, ty) is unit i's
      if (t.tw == 1) {
        scale_row(y + u.off, x + u.off, ru, Bcast<A>(s.data()[0]), u.rows * t.W);
        continue;
      }
      expand_cols(scol.data(), s.data(), t);
      for (int64_t r = 0; r < u.rows; ++r) {
        const int64_t o = u.off + r * t.W;
        scale_row(y + o, x + o, res ? res + o : nullptr, Cols<A>{scol.data()}, t.W);
      }
    }
  });
}

template <typename T>
void excite_nhwc(const Args& a) {
  using A = acc_t<T>;
  const TileGeom t = a.t;
  const int64_t cb = a.cblock;
  const T* x = cptr<T>(a.x);
  const T* res = cptr<T>(a.other);
  const T* g = cptr<T>(a.g);
  T* y = mptr<T>(a.out);
  at::parallel_for(0, NhwcUnit::count(t, cb), grain(t.eh * t.W * cb), [&](int64_t begin, int64_t end) {
    const int64_t ld = round_up_step<T>(cb);
    AccRow<T> sc(t.tw * ld);
    for (int64_t i = begin; i < end; ++i) {
      const NhwcUnit u(t, cb, i);
      const T* gu = g + (u.n * t.th + u.ty) * t.tw * t.C + u.c0;
      for (int64_t tx = 0; tx < t.tw; ++tx) sigmoid_of_g(sc.data() + tx * ld, gu + tx * t.C, u.nc);
      for_pixels(t, u, [&](int64_t tx, int64_t p) {
        scale_row(y + p, x + p, res ? res + p : nullptr, Cols<A>{sc.data() + tx * ld}, u.nc);
      });
    }
  });
}

// dx = dy * s ;  dg = s (1 - s) * sum_t(dy * x)
template <typename T>
void excite_backward_nchw(const Args& a) {
  using A = acc_t<T>;
  const TileGeom t = a.t;
  const T* x = cptr<T>(a.x);
  const T* dy = cptr<T>(a.other);
  const T* g = cptr<T>(a.g);
  T* dx = mptr<T>(a.out);
  T* dg = mptr<T>(a.dg);
  at::parallel_for(0, t.N * t.C * t.th, grain(t.eh * t.W), [&](int64_t begin, int64_t end) {
    const int64_t ncol = t.tw > 1 ? t.W : 0;
    AccRow<T> s(t.tw), scol(ncol), cold(ncol), sums(t.tw);
    for (int64_t i = begin; i < end; ++i) {
      const NchwUnit u(t, i);
      A* sv = s.data();
      sigmoid_of_g(sv, g + i * t.tw, t.tw);
      if (t.tw == 1) {
        const A sum = excite_bwd_flat(dx + u.off, dy + u.off, x + u.off, sv[0], u.rows * t.W);
        dg[i] = static_cast<T>(sv[0] * (A(1) - sv[0]) * sum);
        continue;
      }
      expand_cols(scol.data(), sv, t);
      cold.zero(t.W);
      for (int64_t r = 0; r < u.rows; ++r) {
        const int64_t o = u.off + r * t.W;
        excite_bwd_row(dx + o, cold.data(), dy + o, x + o, Cols<A>{scol.data()}, t.W);
      }
      tile_sums(sums.data(), cold.data(), t);
      for (int64_t tx = 0; tx < t.tw; ++tx)
        dg[i * t.tw + tx] = static_cast<T>(sv[tx] * (A(1) - sv[tx]) * sums.data()[tx]);
    }
  });
}

template <typename T>
void excite_backward_nhwc(const Args& a) {
  using A = acc_t<T>;
  const TileGeom t = a.t;
  const int64_t cb = a.cblock;
  const T* x = cptr<T>(a.x);
  const T* dy = cptr<T>(a.other);
  const T* g = cptr<T>(a.g);
  T* dx = mptr<T>(a.out);
  T* dg = mptr<T>(a.dg);
  at::parallel_for(0, NhwcUnit::count(t, cb), grain(t.eh * t.W * cb), [&](int64_t begin, int64_t end) {
    const int64_t ld = round_up_step<T>(cb);
    AccRow<T> sc(t.tw * ld), ad(t.tw * ld);
    for (int64_t i = begin; i < end; ++i) {
      const NhwcUnit u(t, cb, i);
      const int64_t gofs = (u.n * t.th + u.ty) * t.tw * t.C + u.c0;
      for (int64_t tx = 0; tx < t.tw; ++tx) sigmoid_of_g(sc.data() + tx * ld, g + gofs + tx * t.C, u.nc);
      ad.zero(t.tw * ld);
      for_pixels(t, u, [&](int64_t tx, int64_t p) {
        excite_bwd_row(dx + p, ad.data() + tx * ld, dy + p, x + p, Cols<A>{sc.data() + tx * ld}, u.nc);
      });
      for (int64_t tx = 0; tx < t.tw; ++tx) {
        const A* s = sc.data() + tx * ld;
        const A* sum = ad.data() + tx * ld;
        T* d = dg + gofs + tx * t.C;
        for (int64_t j = 0; j < u.nc; ++j) d[j] = static_cast<T>(s[j] * (A(1) - s[j]) * sum[j]);
      }
    }
  });
}

}  // namespace detail

// ------------------------------------------------------------- entry points (Kernels)

#define GENET_OPS_CPU_DISPATCH(a, name, nchw, nhwc)                                   \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, (a).dtype, name, [&] { \
    if ((a).layout == Layout::NCHW)                                                  \
      detail::nchw<scalar_t>(a);                                                     \
    else                                                                             \
      detail::nhwc<scalar_t>(a);                                                     \
  })

void gather_excite(const Args& a) {
  GENET_OPS_CPU_DISPATCH(a, "gather_excite_cpu", gather_excite_nchw, gather_excite_nhwc);
}
void gather_excite_backward(const Args& a) {
  GENET_OPS_CPU_DISPATCH(a, "gather_excite_backward_cpu", gather_excite_backward_nchw,
                         gather_excite_backward_nhwc);
}
void excite(const Args& a) { GENET_OPS_CPU_DISPATCH(a, "excite_cpu", excite_nchw, excite_nhwc); }
void excite_backward(const Args& a) {
  GENET_OPS_CPU_DISPATCH(a, "excite_backward_cpu", excite_backward_nchw, excite_backward_nhwc);
}

#undef GENET_OPS_CPU_DISPATCH
