// Vectorised row primitives the tile loops are built from: loads that widen any input
// dtype to its accumulation type (acc_t), sums, and the scale / affine writes.
//
// Included only by an ISA translation unit (kernels_*.cpp), inside that ISA's
// namespace and after at::vec: every ISA gets its own copy of this code. The standard
// headers it needs come from isa_prelude.h.
#pragma once

// How many input elements one vector step covers, widened to kV vectors of acc_t:
// float and double load one vector of themselves; bfloat16 / float16 load one vector
// of 16-bit values and widen it to two float vectors.
template <typename T>
struct VecIO {
  using A = acc_t<T>;
  using V = at::vec::Vectorized<A>;
  static constexpr int kV = 1;
  static constexpr int64_t kStep = V::size();
  static void load(const T* p, V* v) { v[0] = V::loadu(p); }
  static void store(T* p, const V* v) { v[0].store(p); }
};

template <typename T>
struct VecIO16 {
  using A = float;
  using V = at::vec::Vectorized<float>;
  using VT = at::vec::Vectorized<T>;
  static constexpr int kV = 2;
  static constexpr int64_t kStep = VT::size();
  static void load(const T* p, V* v) {
    std::tie(v[0], v[1]) = at::vec::convert_to_float<T>(VT::loadu(p));
  }
  static void store(T* p, const V* v) { at::vec::convert_from_float<T>(v[0], v[1]).store(p); }
};
template <>
struct VecIO<at::BFloat16> : VecIO16<at::BFloat16> {};
template <>
struct VecIO<at::Half> : VecIO16<at::Half> {};

// A step of m <= kStep elements. The partial step at a row's end goes through a
// zero-filled buffer, so the lanes past m add nothing to sums, on every ISA and dtype.
template <typename T>
inline void load_n(const T* p, int64_t m, typename VecIO<T>::V* v) {
  using IO = VecIO<T>;
  if (m == IO::kStep) return IO::load(p, v);
  T buf[IO::kStep] = {};
  std::memcpy(buf, p, m * sizeof(T));
  IO::load(buf, v);
}

template <typename T>
inline void store_n(T* p, int64_t m, const typename VecIO<T>::V* v) {
  using IO = VecIO<T>;
  if (m == IO::kStep) return IO::store(p, v);
  T buf[IO::kStep];
  IO::store(buf, v);
  std::memcpy(p, buf, m * sizeof(T));
}

template <typename T>
inline int64_t round_up_step(int64_t n) {
  constexpr int64_t k = VecIO<T>::kStep;
  return (n + k - 1) / k * k;
}

// A per-thread row of accumulators (acc_t), padded to whole vector steps so that the
// row primitives below may load and store it without tails.
template <typename T>
class AccRow {
 public:
  explicit AccRow(int64_t n) : v_(round_up_step<T>(n), 0) {}
  acc_t<T>* data() { return v_.data(); }
  void zero(int64_t n) { std::fill_n(v_.begin(), round_up_step<T>(n), acc_t<T>(0)); }

 private:
  std::vector<acc_t<T>> v_;
};

// The scale of a row: one value for the whole row (Bcast) or one per column (Cols).
template <typename A>
struct Bcast {
  at::vec::Vectorized<A> v;
  explicit Bcast(A s) : v(s) {}
  at::vec::Vectorized<A> at(int64_t) const { return v; }
};
template <typename A>
struct Cols {
  const A* p;
  at::vec::Vectorized<A> at(int64_t i) const { return at::vec::Vectorized<A>::loadu(p + i); }
};

template <typename A>
inline A sigmoid(A v) {
  return A(1) / (A(1) + std::exp(-v));
}

template <typename A>
inline at::vec::Vectorized<A> sigmoid(const at::vec::Vectorized<A>& v) {
  const at::vec::Vectorized<A> one(A(1));
  return one / (one + v.neg().exp());
}

// out[i] = sigmoid(in[i] / div) for i < n; in and out padded to whole steps.
template <typename A>
inline void sigmoid_row(A* out, const A* in, A div, int64_t n) {
  using V = at::vec::Vectorized<A>;
  for (int64_t i = 0; i < n; i += V::size()) sigmoid(V::loadu(in + i) / V(div)).store(out + i);
}

// ------------------------------------------------------------------ whole-row reductions
// Two independent accumulators per lane hide the add latency.

template <typename T>
inline acc_t<T> sum_flat(const T* x, int64_t n) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  constexpr int64_t S = IO::kStep;
  V acc0[IO::kV], acc1[IO::kV], xv[IO::kV];
  for (int k = 0; k < IO::kV; ++k) acc0[k] = acc1[k] = V(0);
  int64_t i = 0;
  for (; i + 2 * S <= n; i += 2 * S) {
    IO::load(x + i, xv);
    for (int k = 0; k < IO::kV; ++k) acc0[k] += xv[k];
    IO::load(x + i + S, xv);
    for (int k = 0; k < IO::kV; ++k) acc1[k] += xv[k];
  }
  for (; i < n; i += S) {
    load_n(x + i, std::min(S, n - i), xv);
    for (int k = 0; k < IO::kV; ++k) acc0[k] += xv[k];
  }
  for (int k = 1; k < IO::kV; ++k) acc0[0] += acc0[k] + acc1[k];
  acc0[0] += acc1[0];
  acc_t<T> lanes[V::size()];
  acc0[0].store(lanes);
  acc_t<T> s = 0;
  for (int64_t l = 0; l < V::size(); ++l) s += lanes[l];
  return s;
}

// sx = sum x, sdyx = sum dy * x, in one sweep.
template <typename T>
inline void sum2_flat(const T* x, const T* dy, int64_t n, acc_t<T>& sx, acc_t<T>& sdyx) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  constexpr int64_t S = IO::kStep;
  V ax[IO::kV], ad[IO::kV], xv[IO::kV], dv[IO::kV];
  for (int k = 0; k < IO::kV; ++k) ax[k] = ad[k] = V(0);
  for (int64_t i = 0; i < n; i += S) {
    const int64_t m = std::min(S, n - i);
    load_n(x + i, m, xv);
    load_n(dy + i, m, dv);
    for (int k = 0; k < IO::kV; ++k) {
      ax[k] += xv[k];
      ad[k] = at::vec::fmadd(dv[k], xv[k], ad[k]);
    }
  }
  for (int k = 1; k < IO::kV; ++k) {
    ax[0] += ax[k];
    ad[0] += ad[k];
  }
  acc_t<T> lx[V::size()], ld[V::size()];
  ax[0].store(lx);
  ad[0].store(ld);
  sx = sdyx = 0;
  for (int64_t l = 0; l < V::size(); ++l) {
    sx += lx[l];
    sdyx += ld[l];
  }
}

// ------------------------------------------------------- column accumulators (per row)

// acc[0, n) += x[0, n)
template <typename T>
inline void add_row(acc_t<T>* acc, const T* x, int64_t n) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  V xv[IO::kV];
  for (int64_t i = 0; i < n; i += IO::kStep) {
    load_n(x + i, std::min(IO::kStep, n - i), xv);
    for (int k = 0; k < IO::kV; ++k) {
      acc_t<T>* a = acc + i + k * V::size();
      (V::loadu(a) + xv[k]).store(a);
    }
  }
}

// ax += x, adyx += dy * x
template <typename T>
inline void add2_row(acc_t<T>* ax, acc_t<T>* adyx, const T* x, const T* dy, int64_t n) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  V xv[IO::kV], dv[IO::kV];
  for (int64_t i = 0; i < n; i += IO::kStep) {
    const int64_t m = std::min(IO::kStep, n - i);
    load_n(x + i, m, xv);
    load_n(dy + i, m, dv);
    for (int k = 0; k < IO::kV; ++k) {
      const int64_t o = i + k * V::size();
      (V::loadu(ax + o) + xv[k]).store(ax + o);
      at::vec::fmadd(dv[k], xv[k], V::loadu(adyx + o)).store(adyx + o);
    }
  }
}

// ------------------------------------------------- NCHW tile rows (rows x w, row stride w)
// Column sums reduce over the rows in registers, one vector step of columns at a time,
// so no accumulator goes through memory between rows.

// col[j] = sum_r x[r][j]
template <typename T>
inline void col_sums(acc_t<T>* col, const T* x, int64_t rows, int64_t w) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  V acc[IO::kV], xv[IO::kV];
  for (int64_t j = 0; j < w; j += IO::kStep) {
    const int64_t m = std::min(IO::kStep, w - j);
    for (int k = 0; k < IO::kV; ++k) acc[k] = V(0);
    for (int64_t r = 0; r < rows; ++r) {
      load_n(x + r * w + j, m, xv);
      for (int k = 0; k < IO::kV; ++k) acc[k] += xv[k];
    }
    for (int k = 0; k < IO::kV; ++k) acc[k].store(col + j + k * V::size());
  }
}

// cx[j] = sum_r x[r][j], cd[j] = sum_r dy[r][j] * x[r][j]
template <typename T>
inline void col_sums2(acc_t<T>* cx, acc_t<T>* cd, const T* x, const T* dy, int64_t rows, int64_t w) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  V ax[IO::kV], ad[IO::kV], xv[IO::kV], dv[IO::kV];
  for (int64_t j = 0; j < w; j += IO::kStep) {
    const int64_t m = std::min(IO::kStep, w - j);
    for (int k = 0; k < IO::kV; ++k) ax[k] = ad[k] = V(0);
    for (int64_t r = 0; r < rows; ++r) {
      load_n(x + r * w + j, m, xv);
      load_n(dy + r * w + j, m, dv);
      for (int k = 0; k < IO::kV; ++k) {
        ax[k] += xv[k];
        ad[k] = at::vec::fmadd(dv[k], xv[k], ad[k]);
      }
    }
    for (int k = 0; k < IO::kV; ++k) {
      ax[k].store(cx + j + k * V::size());
      ad[k].store(cd + j + k * V::size());
    }
  }
}

// dx[r][j] = dy[r][j] * s[j] and cd[j] = sum_r dy[r][j] * x[r][j]: excite's backward.
template <typename T>
inline void excite_bwd_cols(T* dx, acc_t<T>* cd, const T* dy, const T* x, const acc_t<T>* s, int64_t rows,
                            int64_t w) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  V ad[IO::kV], sv[IO::kV], xv[IO::kV], dv[IO::kV];
  for (int64_t j = 0; j < w; j += IO::kStep) {
    const int64_t m = std::min(IO::kStep, w - j);
    for (int k = 0; k < IO::kV; ++k) {
      ad[k] = V(0);
      sv[k] = V::loadu(s + j + k * V::size());
    }
    for (int64_t r = 0; r < rows; ++r) {
      load_n(x + r * w + j, m, xv);
      load_n(dy + r * w + j, m, dv);
      for (int k = 0; k < IO::kV; ++k) {
        ad[k] = at::vec::fmadd(dv[k], xv[k], ad[k]);
        dv[k] = dv[k] * sv[k];
      }
      store_n(dx + r * w + j, m, dv);
    }
    for (int k = 0; k < IO::kV; ++k) ad[k].store(cd + j + k * V::size());
  }
}

// ------------------------------------------------------------------- writes

// y = x * s (+ r): the forward of both ops. S is Bcast or Cols.
template <typename T, typename S>
inline void scale_row(T* y, const T* x, const T* r, const S& s, int64_t n) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  V xv[IO::kV], rv[IO::kV];
  for (int64_t i = 0; i < n; i += IO::kStep) {
    const int64_t m = std::min(IO::kStep, n - i);
    load_n(x + i, m, xv);
    if (r) {
      load_n(r + i, m, rv);
      for (int k = 0; k < IO::kV; ++k) xv[k] = at::vec::fmadd(xv[k], s.at(i + k * V::size()), rv[k]);
    } else {
      for (int k = 0; k < IO::kV; ++k) xv[k] = xv[k] * s.at(i + k * V::size());
    }
    store_n(y + i, m, xv);
  }
}

// dx = dy * s + c: gather_excite's backward.
template <typename T, typename S>
inline void affine_row(T* dx, const T* dy, const S& s, const S& c, int64_t n) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  V dv[IO::kV];
  for (int64_t i = 0; i < n; i += IO::kStep) {
    const int64_t m = std::min(IO::kStep, n - i);
    load_n(dy + i, m, dv);
    for (int k = 0; k < IO::kV; ++k) {
      const int64_t o = i + k * V::size();
      dv[k] = at::vec::fmadd(dv[k], s.at(o), c.at(o));
    }
    store_n(dx + i, m, dv);
  }
}

// dx = dy * s and adyx += dy * x per column: excite's backward in one sweep.
template <typename T, typename S>
inline void excite_bwd_row(T* dx, acc_t<T>* adyx, const T* dy, const T* x, const S& s, int64_t n) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  V dv[IO::kV], xv[IO::kV], o[IO::kV];
  for (int64_t i = 0; i < n; i += IO::kStep) {
    const int64_t m = std::min(IO::kStep, n - i);
    load_n(dy + i, m, dv);
    load_n(x + i, m, xv);
    for (int k = 0; k < IO::kV; ++k) {
      const int64_t j = i + k * V::size();
      o[k] = dv[k] * s.at(j);
      at::vec::fmadd(dv[k], xv[k], V::loadu(adyx + j)).store(adyx + j);
    }
    store_n(dx + i, m, o);
  }
}

// dx = dy * s, returns sum dy * x: excite's backward for a tile that is a whole row.
template <typename T>
inline acc_t<T> excite_bwd_flat(T* dx, const T* dy, const T* x, acc_t<T> s, int64_t n) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  const V sv(s);
  V acc[IO::kV], dv[IO::kV], xv[IO::kV];
  for (int k = 0; k < IO::kV; ++k) acc[k] = V(0);
  for (int64_t i = 0; i < n; i += IO::kStep) {
    const int64_t m = std::min(IO::kStep, n - i);
    load_n(dy + i, m, dv);
    load_n(x + i, m, xv);
    for (int k = 0; k < IO::kV; ++k) {
      acc[k] = at::vec::fmadd(dv[k], xv[k], acc[k]);
      dv[k] = dv[k] * sv;
    }
    store_n(dx + i, m, dv);
  }
  for (int k = 1; k < IO::kV; ++k) acc[0] += acc[k];
  acc_t<T> lanes[V::size()];
  acc[0].store(lanes);
  acc_t<T> sum = 0;
  for (int64_t l = 0; l < V::size(); ++l) sum += lanes[l];
  return sum;
}
