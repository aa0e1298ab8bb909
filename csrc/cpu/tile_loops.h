// The CPU kernels of the ops, per memory layout, and their dtype dispatch.
//
// Work units (split over threads with at::parallel_for, a few per thread's chunk):
//   NCHW: (plane n*C+c, tile row ty). A tile row is eh*W contiguous elements. When a
//         tile spans the whole row width (tw == 1, e.g. extent 0) it is reduced flat;
//         else its rows are summed into per-column accumulators, then per tile.
//   NHWC: (n, tile row ty, block of channels). Each pixel holds a contiguous run of
//         channels, so the inner loops are vectorised over channels, with one
//         accumulator row per tile of the tile row.
// Forward: a first sweep sums each tile, a second sweep (from cache) scales it.
// Backward: one sweep sums x and dy*x per tile, a second writes dx from dy (in cache).
// The forwards end with ReLU when asked (Args::relu); gather_excite also writes the
// tile means for gather_excite_lean (Args::dg).
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

// NCHW units are processed in batches of about kBatchElems elements: a first sweep
// over the batch gathers every tile, one vectorised sigmoid covers all its tiles (small
// planes have a tile or two each), the per-tile values are spread to per-column tables
// (one row of ldw per unit), and the second sweep finds the batch still in L1 (8 KiB of
// float per tensor: the best batch size for the small planes where batching matters,
// docs/STATUS.md). Keeping these phases apart also keeps scalar stores away from the
// vector loads that read them. A unit bigger than a batch is a batch of its own (in L2).
constexpr int64_t kBatchElems = 2048;

inline int64_t batch_units(int64_t elems_per_unit) {
  return std::max<int64_t>(1, kBatchElems / std::max<int64_t>(elems_per_unit, 1));
}

// Walks NCHW units b0, b0 + 1, ... = (plane, tile row ty) in memory order: tile rows
// tile each plane and planes follow each other, so the next unit starts where this
// one's rows end (no divisions per unit).
struct NchwWalk {
  const TileGeom* t;
  int64_t ty, off;
  NchwWalk(const TileGeom& g, int64_t u) : t(&g), ty(u % g.th), off((u / g.th) * g.H * g.W + (u % g.th) * g.eh * g.W) {}
  int64_t rows() const { return t->tile_rows(ty); }
  int64_t len() const { return rows() * t->W; }
  void next() {
    off += len();
    if (++ty == t->th) ty = 0;
  }
};

// Every tile has eh x min(ew, W) pixels (no partial tiles): the tile means of a whole
// batch then divide by one number, inside the vectorised sigmoid.
inline bool uniform_tiles(const TileGeom& t) {
  return t.H % t.eh == 0 && (t.tw == 1 || t.W % t.ew == 0);
}

// g[k] = sigmoid(g[k] / |tile k|) over the tiles of units [b0, b1) (tw per unit); the
// means g[k] / |tile k| also go to `means` where given (gather_excite_lean). The same
// division either way, so the means are exactly what the sigmoid saw.
template <typename A>
inline void sigmoid_of_means(A* g, A* means, int64_t b0, int64_t b1, const TileGeom& t) {
  const int64_t n = (b1 - b0) * t.tw;
  if (uniform_tiles(t) && means == nullptr) return sigmoid_row(g, g, A(t.eh * std::min(t.ew, t.W)), n);
  NchwWalk u(t, b0);
  for (int64_t k = 0; k < b1 - b0; ++k, u.next())
    for (int64_t tx = 0; tx < t.tw; ++tx) g[k * t.tw + tx] /= A(u.rows() * t.tile_cols(tx));
  if (means != nullptr) std::copy_n(g, n, means);
  sigmoid_row(g, g, A(1), n);
}

// c[k] = s[k] (1 - s[k]) / |tile k| * c[k]: the constant term of gather_excite's dx.
template <typename A>
inline void backward_constants(A* c, const A* s, int64_t b0, int64_t b1, const TileGeom& t) {
  const int64_t n = (b1 - b0) * t.tw;
  if (uniform_tiles(t)) {
    const A cnt = A(t.eh * std::min(t.ew, t.W));
    for (int64_t k = 0; k < n; ++k) c[k] = s[k] * (A(1) - s[k]) / cnt * c[k];
    return;
  }
  NchwWalk u(t, b0);
  for (int64_t k = 0; k < b1 - b0; ++k, u.next()) {
    for (int64_t tx = 0; tx < t.tw; ++tx) {
      const int64_t j = k * t.tw + tx;
      c[j] = s[j] * (A(1) - s[j]) / A(u.rows() * t.tile_cols(tx)) * c[j];
    }
  }
}

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

// Where NHWC unit u's g values start: g is (N, th, tw, C) in memory, like x.
inline int64_t g_offset(const NhwcUnit& u, const TileGeom& t) { return (u.n * t.th + u.ty) * t.tw * t.C + u.c0; }

// NHWC pixels go one after the other - a sequential stream - while a tile row's
// per-channel accumulators sit in L1; for wide channel runs (kWideChannels or more) they
// go through the register-accumulating group primitives of vec_rows.h, kPixGroup pixels
// at a time: groups pay off only for very wide channel runs (docs/STATUS.md has where the
// threshold was measured).
constexpr int64_t kWideChannels = 1024;
constexpr int64_t kPixGroup = 4;

inline int64_t pixel_group(const NhwcUnit& u) { return u.nc >= kWideChannels ? kPixGroup : 1; }

// Calls f(tx, p, np) for the pixels of an NHWC unit: in each row, tile tx's pixels in
// groups of np <= group, the first at element offset p (channel c0), C elements apart.
template <typename F>
inline void for_groups(const TileGeom& t, const NhwcUnit& u, int64_t group, F&& f) {
  for (int64_t r = 0; r < u.rows; ++r) {
    int64_t p = u.off + r * t.W * t.C;
    for (int64_t tx = 0; tx < t.tw; ++tx) {
      const int64_t cols = t.tile_cols(tx);
      for (int64_t k = 0; k < cols; k += group) {
        const int64_t np = std::min(group, cols - k);
        f(tx, p, np);
        p += np * t.C;
      }
    }
  }
}

// Per-tile sums of per-column accumulators: out[tx] = sum of col over tile tx's columns.
// Fixed small widths get loops of constant length, which the compiler unrolls.
template <int EW, typename A>
inline void group_sums(A* out, const A* col, int64_t groups) {
  for (int64_t tx = 0; tx < groups; ++tx) {
    A s = 0;
    for (int j = 0; j < EW; ++j) s += col[tx * EW + j];
    out[tx] = s;
  }
}

template <typename A>
inline void tile_sums(A* out, const A* col, const TileGeom& t) {
  if (t.W % t.ew == 0) {
    switch (t.ew) {
      case 2: return group_sums<2>(out, col, t.tw);
      case 4: return group_sums<4>(out, col, t.tw);
      case 8: return group_sums<8>(out, col, t.tw);
      default: break;
    }
  }
  for (int64_t tx = 0; tx < t.tw; ++tx) {
    const A* c = col + tx * t.ew;
    A s = 0;
    for (int64_t j = 0; j < t.tile_cols(tx); ++j) s += c[j];
    out[tx] = s;
  }
}

// col[j] = per_tile[tile of column j], for j < W.
template <int EW, typename A>
inline void group_spread(A* col, const A* v, int64_t groups) {
  for (int64_t tx = 0; tx < groups; ++tx)
    for (int j = 0; j < EW; ++j) col[tx * EW + j] = v[tx];
}

template <typename A>
inline void expand_cols(A* col, const A* per_tile, const TileGeom& t) {
  if (t.W % t.ew == 0) {
    switch (t.ew) {
      case 2: return group_spread<2>(col, per_tile, t.tw);
      case 4: return group_spread<4>(col, per_tile, t.tw);
      case 8: return group_spread<8>(col, per_tile, t.tw);
      default: break;
    }
  }
  for (int64_t tx = 0; tx < t.tw; ++tx) std::fill_n(col + tx * t.ew, t.tile_cols(tx), per_tile[tx]);
}

// scol row k = the tile values of NCHW unit k spread over its columns, for n units
// (only for tiled rows: a flat row uses its one value directly).
template <typename A>
inline void expand_units(A* scol, const A* per_tile, int64_t n, int64_t ldw, const TileGeom& t) {
  for (int64_t k = 0; k < n; ++k) expand_cols(scol + k * ldw, per_tile + k * t.tw, t);
}

// y = x * s (+ res) over NCHW units [b0, b1), then ReLU with kRelu: s[k] for a flat
// row, else the column table scol (expand_units).
template <bool kRelu, typename T, typename A>
inline void scale_units(T* y, const T* x, const T* res, const A* s, const A* scol, int64_t ldw, int64_t b0,
                        int64_t b1, const TileGeom& t) {
  NchwWalk u(t, b0);
  for (int64_t k = 0; k < b1 - b0; ++k, u.next()) {
    if (t.tw == 1) {
      scale_row<kRelu>(y + u.off, x + u.off, res ? res + u.off : nullptr, Bcast<A>(s[k]), u.len());
      continue;
    }
    const Cols<A> sk{scol + k * ldw};
    for (int64_t r = 0; r < u.rows(); ++r) {
      const int64_t o = u.off + r * t.W;
      scale_row<kRelu>(y + o, x + o, res ? res + o : nullptr, sk, t.W);
    }
  }
}

template <typename T, typename A>
inline void scale_units(bool relu, T* y, const T* x, const T* res, const A* s, const A* scol, int64_t ldw,
                        int64_t b0, int64_t b1, const TileGeom& t) {
  if (relu)
    scale_units<true>(y, x, res, s, scol, ldw, b0, b1, t);
  else
    scale_units<false>(y, x, res, s, scol, ldw, b0, b1, t);
}

// y = x * s (+ res) over NHWC unit u, then ReLU with kRelu; s per tile in rows of ld
// (pixels as for_groups).
template <bool kRelu, typename T, typename A>
inline void scale_unit(T* y, const T* x, const T* res, const A* s, int64_t ld, const NhwcUnit& u, int64_t grp,
                       const TileGeom& t) {
  for_groups(t, u, grp, [&](int64_t tx, int64_t p, int64_t np) {
    const A* st = s + tx * ld;
    if (grp > 1)
      scale_pixels<kRelu>(y + p, x + p, res ? res + p : nullptr, st, np, t.C, u.nc);
    else
      scale_row<kRelu>(y + p, x + p, res ? res + p : nullptr, Cols<A>{st}, u.nc);
  });
}

template <typename T, typename A>
inline void scale_unit(bool relu, T* y, const T* x, const T* res, const A* s, int64_t ld, const NhwcUnit& u,
                       int64_t grp, const TileGeom& t) {
  if (relu)
    scale_unit<true>(y, x, res, s, ld, u, grp, t);
  else
    scale_unit<false>(y, x, res, s, ld, u, grp, t);
}

// --------------------------------------------------------------------- gather_excite

template <typename T>
void gather_excite_nchw(const Args& a) {
  using A = acc_t<T>;
  const TileGeom t = a.t;
  const T* x = cptr<T>(a.x);
  const T* res = cptr<T>(a.other);
  T* y = mptr<T>(a.out);
  A* means = mptr<A>(a.dg);  // gather_excite_lean: the tile means, laid out like g (else null)
  const int64_t per = batch_units(t.eh * t.W);
  const bool tiled = t.tw > 1;  // else a tile row is one tile, reduced flat
  const int64_t ldw = tiled ? round_up_step<T>(t.W) : 0;
  at::parallel_for(0, t.N * t.C * t.th, grain(t.eh * t.W), [&](int64_t begin, int64_t end) {
    AccRow<T> col(ldw), gb(per * t.tw), sb(per * ldw);
    A* g = gb.data();
    for (int64_t b0 = begin; b0 < end; b0 += per) {
      const int64_t b1 = std::min(end, b0 + per);
      NchwWalk u(t, b0);
      for (int64_t k = 0; k < b1 - b0; ++k, u.next()) {  // sweep 1: tile sums
        if (!tiled) {
          g[k] = sum_flat(x + u.off, u.len());
          continue;
        }
        col_sums(col.data(), x + u.off, u.rows(), t.W);
        tile_sums(g + k * t.tw, col.data(), t);
      }
      sigmoid_of_means(g, means ? means + b0 * t.tw : nullptr, b0, b1, t);
      if (tiled) expand_units(sb.data(), g, b1 - b0, ldw, t);
      scale_units(a.relu, y, x, res, g, sb.data(), ldw, b0, b1, t);  // sweep 2: y = act(x * s (+ residual))
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
  A* means = mptr<A>(a.dg);  // gather_excite_lean: the tile means, laid out like g (else null)
  at::parallel_for(0, NhwcUnit::count(t, cb), grain(t.eh * t.W * cb), [&](int64_t begin, int64_t end) {
    const int64_t ld = round_up_step<T>(cb);  // stride of one tile's accumulator row
    AccRow<T> acc(t.tw * ld), sc(t.tw * ld);
    for (int64_t i = begin; i < end; ++i) {
      const NhwcUnit u(t, cb, i);
      acc.zero(t.tw * ld);
      const int64_t grp = pixel_group(u);
      for_groups(t, u, grp, [&](int64_t tx, int64_t p, int64_t np) {
        if (grp > 1)
          add_pixels(acc.data() + tx * ld, x + p, np, t.C, u.nc);
        else
          add_row(acc.data() + tx * ld, x + p, u.nc);
      });
      for (int64_t tx = 0; tx < t.tw; ++tx) {
        const A cnt = A(u.rows * t.tile_cols(tx));
        const A* sum = acc.data() + tx * ld;
        if (means != nullptr) {
          A* m = means + g_offset(u, t) + tx * t.C;
          for (int64_t j = 0; j < u.nc; ++j) m[j] = sum[j] / cnt;  // the division sigmoid_row makes
        }
        sigmoid_row(sc.data() + tx * ld, sum, cnt, u.nc);
      }
      scale_unit(a.relu, y, x, res, sc.data(), ld, u, grp, t);
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
  const int64_t per = batch_units(t.eh * t.W);
  const bool tiled = t.tw > 1;
  const int64_t ldw = tiled ? round_up_step<T>(t.W) : 0;
  at::parallel_for(0, t.N * t.C * t.th, grain(t.eh * t.W), [&](int64_t begin, int64_t end) {
    AccRow<T> colx(ldw), cold(ldw), sb(per * t.tw), cb(per * t.tw), scol(per * ldw), ccol(per * ldw);
    A* s = sb.data();  // per tile: sum of x, then s
    A* c = cb.data();  // per tile: sum of dy * x, then the constant term of dx
    for (int64_t b0 = begin; b0 < end; b0 += per) {
      const int64_t b1 = std::min(end, b0 + per);
      NchwWalk u(t, b0);
      for (int64_t k = 0; k < b1 - b0; ++k, u.next()) {  // sweep 1: sum x and dy * x per tile
        if (!tiled) {
          sum2_flat(x + u.off, dy + u.off, u.len(), s[k], c[k]);
          continue;
        }
        col_sums2(colx.data(), cold.data(), x + u.off, dy + u.off, u.rows(), t.W);
        tile_sums(s + k * t.tw, colx.data(), t);
        tile_sums(c + k * t.tw, cold.data(), t);
      }
      sigmoid_of_means(s, static_cast<A*>(nullptr), b0, b1, t);
      backward_constants(c, s, b0, b1, t);
      if (tiled) {
        expand_units(scol.data(), s, b1 - b0, ldw, t);
        expand_units(ccol.data(), c, b1 - b0, ldw, t);
      }
      u = NchwWalk(t, b0);
      for (int64_t k = 0; k < b1 - b0; ++k, u.next()) {  // sweep 2: dx = dy * s + c
        if (!tiled) {
          affine_row(dx + u.off, dy + u.off, Bcast<A>(s[k]), Bcast<A>(c[k]), u.len());
          continue;
        }
        const Cols<A> sk{scol.data() + k * ldw}, ck{ccol.data() + k * ldw};
        for (int64_t r = 0; r < u.rows(); ++r) {
          const int64_t o = u.off + r * t.W;
          affine_row(dx + o, dy + o, sk, ck, t.W);
        }
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
      const int64_t grp = pixel_group(u);
      for_groups(t, u, grp, [&](int64_t tx, int64_t p, int64_t np) {
        if (grp > 1)
          add2_pixels(ax.data() + tx * ld, ad.data() + tx * ld, x + p, dy + p, np, t.C, u.nc);
        else
          add2_row(ax.data() + tx * ld, ad.data() + tx * ld, x + p, dy + p, u.nc);
      });
      for (int64_t tx = 0; tx < t.tw; ++tx) {
        const A cnt = A(u.rows * t.tile_cols(tx));
        A* s = ax.data() + tx * ld;
        A* c = ad.data() + tx * ld;
        sigmoid_row(s, s, cnt, u.nc);
        for (int64_t j = 0; j < u.nc; ++j) c[j] = s[j] * (A(1) - s[j]) / cnt * c[j];
      }
      for_groups(t, u, grp, [&](int64_t tx, int64_t p, int64_t np) {
        const A* s = ax.data() + tx * ld;
        const A* c = ad.data() + tx * ld;
        if (grp > 1)
          affine_pixels(dx + p, dy + p, s, c, np, t.C, u.nc);
        else
          affine_row(dx + p, dy + p, Cols<A>{s}, Cols<A>{c}, u.nc);
      });
    }
  });
}

// ---------------------------------------------------------------------------- excite

// s of one tile row from g (laid out like x; x's dtype, or the accumulation dtype A for
// excite_lean_backward): n values, widened and squashed.
template <typename A, typename G>
inline void sigmoid_of_g(A* out, const G* g, int64_t n) {
  for (int64_t j = 0; j < n; ++j) out[j] = static_cast<A>(g[j]);
  sigmoid_row(out, out, A(1), n);
}

// s of NHWC unit u's tiles, one row of ld per tile, from its g values gu.
template <typename A, typename G>
inline void sigmoid_of_g_unit(A* s, int64_t ld, const G* gu, const NhwcUnit& u, const TileGeom& t) {
  for (int64_t tx = 0; tx < t.tw; ++tx) sigmoid_of_g(s + tx * ld, gu + tx * t.C, u.nc);
}

template <typename T>
void excite_nchw(const Args& a) {
  using A = acc_t<T>;
  const TileGeom t = a.t;
  const T* x = cptr<T>(a.x);
  const T* res = cptr<T>(a.other);
  const T* g = cptr<T>(a.g);
  T* y = mptr<T>(a.out);
  const int64_t per = batch_units(t.eh * t.W);
  const bool tiled = t.tw > 1;
  const int64_t ldw = tiled ? round_up_step<T>(t.W) : 0;
  at::parallel_for(0, t.N * t.C * t.th, grain(t.eh * t.W), [&](int64_t begin, int64_t end) {
    AccRow<T> sb(per * t.tw), scol(per * ldw);
    A* s = sb.data();
    for (int64_t b0 = begin; b0 < end; b0 += per) {
      const int64_t b1 = std::min(end, b0 + per);
      sigmoid_of_g(s, g + b0 * t.tw, (b1 - b0) * t.tw);  // g rows (plane, ty) = units
      if (tiled) expand_units(scol.data(), s, b1 - b0, ldw, t);
      scale_units(a.relu, y, x, res, s, scol.data(), ldw, b0, b1, t);
    }
  });
}

template <typename T>
void excite_nhwc(const Args& a) {
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
      sigmoid_of_g_unit(sc.data(), ld, g + g_offset(u, t), u, t);
      scale_unit(a.relu, y, x, res, sc.data(), ld, u, pixel_group(u), t);
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
  const T* no_res = nullptr;  // the one-sweep backward from the input: out = x, no residual
  const int64_t per = batch_units(t.eh * t.W);
  const bool tiled = t.tw > 1;
  const int64_t ldw = tiled ? round_up_step<T>(t.W) : 0;
  at::parallel_for(0, t.N * t.C * t.th, grain(t.eh * t.W), [&](int64_t begin, int64_t end) {
    AccRow<T> sb(per * t.tw), sums(per * t.tw), scol(per * ldw), cold(ldw);
    A* s = sb.data();
    A* sum = sums.data();
    for (int64_t b0 = begin; b0 < end; b0 += per) {
      const int64_t b1 = std::min(end, b0 + per);
      sigmoid_of_g(s, g + b0 * t.tw, (b1 - b0) * t.tw);
      if (tiled) expand_units(scol.data(), s, b1 - b0, ldw, t);
      NchwWalk u(t, b0);
      for (int64_t k = 0; k < b1 - b0; ++k, u.next()) {  // one sweep: dx, and sum dy * x per tile
        if (!tiled) {
          sum[k] = lean_flat<false, false, true>(dx + u.off, dy + u.off, x + u.off, no_res, s[k], u.len());
          continue;
        }
        lean_cols<false, false, true>(dx + u.off, cold.data(), dy + u.off, x + u.off, no_res, scol.data() + k * ldw,
                                      u.rows(), t.W);
        tile_sums(sum + k * t.tw, cold.data(), t);
      }
      T* d = dg + b0 * t.tw;
      for (int64_t k = 0; k < (b1 - b0) * t.tw; ++k) d[k] = static_cast<T>(s[k] * (A(1) - s[k]) * sum[k]);
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
  const T* no_res = nullptr;  // the one-sweep backward from the input: out = x, no residual
  at::parallel_for(0, NhwcUnit::count(t, cb), grain(t.eh * t.W * cb), [&](int64_t begin, int64_t end) {
    const int64_t ld = round_up_step<T>(cb);
    AccRow<T> sc(t.tw * ld), ad(t.tw * ld);
    for (int64_t i = begin; i < end; ++i) {
      const NhwcUnit u(t, cb, i);
      const int64_t gofs = g_offset(u, t);
      sigmoid_of_g_unit(sc.data(), ld, g + gofs, u, t);
      ad.zero(t.tw * ld);
      const int64_t grp = pixel_group(u);
      for_groups(t, u, grp, [&](int64_t tx, int64_t p, int64_t np) {
        const A* s = sc.data() + tx * ld;
        if (grp > 1)
          lean_pixels<false, false, true>(dx + p, ad.data() + tx * ld, dy + p, x + p, no_res, s, np, t.C, u.nc);
        else
          lean_row<false, false, true>(dx + p, ad.data() + tx * ld, dy + p, x + p, no_res, s, u.nc);
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

// ------------------------------------------------------------ excite_lean_backward
// From the op's output instead of its input: dp = dy (0 where out <= 0 with ReLU),
// z = out - r;  dg = (1 - s) sum_t(dp z);  dx = dp s (+ dg / |t| with gather).
// Without gather one sweep writes dx and sums (as excite_backward); with gather a
// first sweep sums, a second writes dx from dy (and out, with ReLU) in cache (as
// gather_excite_backward). g and dg are in the accumulation dtype.

// dg[k] = (1 - s[k]) sum[k] for the tiles of NCHW units [b0, b1); with gather, sum[k]
// then becomes dg[k] / |tile k|, the per-tile term of dx.
template <typename A>
inline void lean_tile_grads(A* dg, A* sum, const A* s, int64_t b0, int64_t b1, const TileGeom& t, bool gather) {
  const int64_t n = (b1 - b0) * t.tw;
  for (int64_t k = 0; k < n; ++k) dg[k] = (A(1) - s[k]) * sum[k];
  if (!gather) return;
  if (uniform_tiles(t)) {
    const A cnt = A(t.eh * std::min(t.ew, t.W));
    for (int64_t k = 0; k < n; ++k) sum[k] = dg[k] / cnt;
    return;
  }
  NchwWalk u(t, b0);
  for (int64_t k = 0; k < b1 - b0; ++k, u.next())
    for (int64_t tx = 0; tx < t.tw; ++tx) sum[k * t.tw + tx] = dg[k * t.tw + tx] / A(u.rows() * t.tile_cols(tx));
}

template <typename T, bool kRelu, bool kRes>
void lean_backward_nchw(const Args& a) {
  using A = acc_t<T>;
  const TileGeom t = a.t;
  const T* out = cptr<T>(a.x);
  const T* dy = cptr<T>(a.other);
  const T* r = cptr<T>(a.res);
  const A* g = cptr<A>(a.g);
  T* dx = mptr<T>(a.out);
  A* dg = mptr<A>(a.dg);
  const bool gather = a.gather;
  const int64_t per = batch_units(t.eh * t.W);
  const bool tiled = t.tw > 1;
  const int64_t ldw = tiled ? round_up_step<T>(t.W) : 0;
  at::parallel_for(0, t.N * t.C * t.th, grain(t.eh * t.W), [&](int64_t begin, int64_t end) {
    AccRow<T> sb(per * t.tw), sums(per * t.tw), scol(per * ldw), ccol(gather ? per * ldw : 0), cold(ldw);
    A* s = sb.data();
    A* sum = sums.data();  // per tile: sum of dp * z, then (gather) dx's per-tile term
    for (int64_t b0 = begin; b0 < end; b0 += per) {
      const int64_t b1 = std::min(end, b0 + per);
      sigmoid_of_g(s, g + b0 * t.tw, (b1 - b0) * t.tw);
      if (tiled) expand_units(scol.data(), s, b1 - b0, ldw, t);
      NchwWalk u(t, b0);
      for (int64_t k = 0; k < b1 - b0; ++k, u.next()) {  // sweep 1: sums (and dx without gather)
        const int64_t o = u.off;
        const T* ro = kRes ? r + o : nullptr;
        if (!tiled) {
          sum[k] = gather ? lean_flat<kRelu, kRes, false>(dx + o, dy + o, out + o, ro, s[k], u.len())
                          : lean_flat<kRelu, kRes, true>(dx + o, dy + o, out + o, ro, s[k], u.len());
          continue;
        }
        if (gather)
          lean_cols<kRelu, kRes, false>(dx + o, cold.data(), dy + o, out + o, ro, nullptr, u.rows(), t.W);
        else
          lean_cols<kRelu, kRes, true>(dx + o, cold.data(), dy + o, out + o, ro, scol.data() + k * ldw, u.rows(), t.W);
        tile_sums(sum + k * t.tw, cold.data(), t);
      }
      lean_tile_grads(dg + b0 * t.tw, sum, s, b0, b1, t, gather);
      if (!gather) continue;
      if (tiled) expand_units(ccol.data(), sum, b1 - b0, ldw, t);
      u = NchwWalk(t, b0);
      for (int64_t k = 0; k < b1 - b0; ++k, u.next()) {  // sweep 2: dx = dp * s + dg / |t|
        if (!tiled) {
          affine_row<kRelu>(dx + u.off, dy + u.off, Bcast<A>(s[k]), Bcast<A>(sum[k]), u.len(), out + u.off);
          continue;
        }
        const Cols<A> sk{scol.data() + k * ldw}, ck{ccol.data() + k * ldw};
        for (int64_t r0 = 0; r0 < u.rows(); ++r0) {
          const int64_t o = u.off + r0 * t.W;
          affine_row<kRelu>(dx + o, dy + o, sk, ck, t.W, out + o);
        }
      }
    }
  });
}

template <typename T, bool kRelu, bool kRes>
void lean_backward_nhwc(const Args& a) {
  using A = acc_t<T>;
  const TileGeom t = a.t;
  const int64_t cb = a.cblock;
  const T* out = cptr<T>(a.x);
  const T* dy = cptr<T>(a.other);
  const T* r = cptr<T>(a.res);
  const A* g = cptr<A>(a.g);
  T* dx = mptr<T>(a.out);
  A* dg = mptr<A>(a.dg);
  const bool gather = a.gather;
  at::parallel_for(0, NhwcUnit::count(t, cb), grain(t.eh * t.W * cb), [&](int64_t begin, int64_t end) {
    const int64_t ld = round_up_step<T>(cb);
    AccRow<T> sc(t.tw * ld), ad(t.tw * ld);  // s; sums of dp * z, then (gather) dx's per-tile term
    for (int64_t i = begin; i < end; ++i) {
      const NhwcUnit u(t, cb, i);
      const int64_t gofs = g_offset(u, t);
      sigmoid_of_g_unit(sc.data(), ld, g + gofs, u, t);
      ad.zero(t.tw * ld);
      const int64_t grp = pixel_group(u);
      for_groups(t, u, grp, [&](int64_t tx, int64_t p, int64_t np) {  // sweep 1
        const A* s = sc.data() + tx * ld;
        A* acc = ad.data() + tx * ld;
        const T* rp = kRes ? r + p : nullptr;
        if (gather) {
          if (grp > 1)
            lean_pixels<kRelu, kRes, false>(dx + p, acc, dy + p, out + p, rp, s, np, t.C, u.nc);
          else
            lean_row<kRelu, kRes, false>(dx + p, acc, dy + p, out + p, rp, s, u.nc);
        } else {
          if (grp > 1)
            lean_pixels<kRelu, kRes, true>(dx + p, acc, dy + p, out + p, rp, s, np, t.C, u.nc);
          else
            lean_row<kRelu, kRes, true>(dx + p, acc, dy + p, out + p, rp, s, u.nc);
        }
      });
      for (int64_t tx = 0; tx < t.tw; ++tx) {
        const A* s = sc.data() + tx * ld;
        A* sum = ad.data() + tx * ld;
        A* d = dg + gofs + tx * t.C;
        for (int64_t j = 0; j < u.nc; ++j) d[j] = (A(1) - s[j]) * sum[j];
        if (gather) {
          const A cnt = A(u.rows * t.tile_cols(tx));
          for (int64_t j = 0; j < u.nc; ++j) sum[j] = d[j] / cnt;
        }
      }
      if (!gather) continue;
      for_groups(t, u, grp, [&](int64_t tx, int64_t p, int64_t np) {  // sweep 2: dx = dp * s + dg / |t|
        const A* s = sc.data() + tx * ld;
        const A* c = ad.data() + tx * ld;
        if (grp > 1)
          affine_pixels<kRelu>(dx + p, dy + p, s, c, np, t.C, u.nc, out + p);
        else
          affine_row<kRelu>(dx + p, dy + p, Cols<A>{s}, Cols<A>{c}, u.nc, out + p);
      });
    }
  });
}

// Calls f(relu, res) with both flags as std::bool_constant, so each combination gets
// loops of its own.
template <typename F>
inline void with_flags(bool relu, bool res, F&& f) {
  using Y = std::true_type;
  using N = std::false_type;
  if (relu && res)
    f(Y{}, Y{});
  else if (relu)
    f(Y{}, N{});
  else if (res)
    f(N{}, Y{});
  else
    f(N{}, N{});
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
void excite_lean_backward(const Args& a) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.dtype, "excite_lean_backward_cpu", [&] {
    detail::with_flags(a.relu, a.res != nullptr, [&](auto relu, auto res) {
      constexpr bool kRelu = decltype(relu)::value, kRes = decltype(res)::value;
      if (a.layout == Layout::NCHW)
        detail::lean_backward_nchw<scalar_t, kRelu, kRes>(a);
      else
        detail::lean_backward_nhwc<scalar_t, kRelu, kRes>(a);
    });
  });
}

#undef GENET_OPS_CPU_DISPATCH
