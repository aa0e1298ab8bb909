// Vectorised row primitives the tile loops are built from: loads that widen any input
// dtype to its accumulation type (acc_t), sums, and the scale / affine writes.
// Each runs whole vector steps, then the last n % kStep elements one by one: rows are
// often short (7x7 planes, odd channel counts), where a scalar tail is cheaper than a
// padded partial vector.
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

// Where the whole vector steps of a row of n elements end.
template <typename T>
inline int64_t full_steps(int64_t n) {
  return n - n % VecIO<T>::kStep;
}

template <typename T>
inline int64_t round_up_step(int64_t n) {
  constexpr int64_t k = VecIO<T>::kStep;
  return (n + k - 1) / k * k;
}

template <typename T>
inline acc_t<T> widen(T v) {
  return static_cast<acc_t<T>>(v);
}

// Sum of the lanes of acc[0..kV).
template <typename V>
inline typename V::value_type lanes_sum(V* acc, int kv) {
  for (int k = 1; k < kv; ++k) acc[0] += acc[k];
  return at::vec::vec_reduce_all<typename V::value_type>([](const V& a, const V& b) { return a + b; }, acc[0]);
}

// A per-thread row of accumulators (acc_t), padded to whole vector steps so that the
// vectorised sigmoid may run over it without a tail.
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
  A s;
  explicit Bcast(A s_) : v(s_), s(s_) {}
  at::vec::Vectorized<A> at(int64_t) const { return v; }
  A one(int64_t) const { return s; }
};
template <typename A>
struct Cols {
  const A* p;
  at::vec::Vectorized<A> at(int64_t i) const { return at::vec::Vectorized<A>::loadu(p + i); }
  A one(int64_t i) const { return p[i]; }
};

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

// ReLU as torch.relu: 0 where v < 0, NaN kept (forward epilogue).
template <typename V>
inline V relu_v(const V& v) {
  return V::blendv(v, V(0), v < V(0));
}
template <typename A>
inline A relu_s(A v) {
  return v < A(0) ? A(0) : v;
}

// ReLU's backward mask: d, or 0 where the output o <= 0 (NaN passes, as torch's
// threshold backward).
template <typename V>
inline V mask_v(const V& d, const V& o) {
  return V::blendv(d, V(0), o <= V(0));
}
template <typename A>
inline A mask_s(A d, A o) {
  return o <= A(0) ? A(0) : d;
}

// ------------------------------------------------------------------ whole-row reductions

// sum x. Two independent accumulators per lane hide the add latency.
template <typename T>
inline acc_t<T> sum_flat(const T* x, int64_t n) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  constexpr int64_t S = IO::kStep;
  const int64_t nf = full_steps<T>(n);
  V acc0[IO::kV], acc1[IO::kV], xv[IO::kV];
  for (int k = 0; k < IO::kV; ++k) acc0[k] = acc1[k] = V(0);
  int64_t i = 0;
  for (; i + 2 * S <= nf; i += 2 * S) {
    IO::load(x + i, xv);
    for (int k = 0; k < IO::kV; ++k) acc0[k] += xv[k];
    IO::load(x + i + S, xv);
    for (int k = 0; k < IO::kV; ++k) acc1[k] += xv[k];
  }
  if (i < nf) {
    IO::load(x + i, xv);
    for (int k = 0; k < IO::kV; ++k) acc0[k] += xv[k];
  }
  for (int k = 0; k < IO::kV; ++k) acc0[k] += acc1[k];
  acc_t<T> s = lanes_sum(acc0, IO::kV);
  for (i = nf; i < n; ++i) s += widen(x[i]);
  return s;
}

// sx = sum x, sdyx = sum dy * x, in one sweep.
template <typename T>
inline void sum2_flat(const T* x, const T* dy, int64_t n, acc_t<T>& sx, acc_t<T>& sdyx) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  const int64_t nf = full_steps<T>(n);
  V ax[IO::kV], ad[IO::kV], xv[IO::kV], dv[IO::kV];
  for (int k = 0; k < IO::kV; ++k) ax[k] = ad[k] = V(0);
  for (int64_t i = 0; i < nf; i += IO::kStep) {
    IO::load(x + i, xv);
    IO::load(dy + i, dv);
    for (int k = 0; k < IO::kV; ++k) {
      ax[k] += xv[k];
      ad[k] = at::vec::fmadd(dv[k], xv[k], ad[k]);
    }
  }
  sx = lanes_sum(ax, IO::kV);
  sdyx = lanes_sum(ad, IO::kV);
  for (int64_t i = nf; i < n; ++i) {
    sx += widen(x[i]);
    sdyx += widen(dy[i]) * widen(x[i]);
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
  const int64_t wf = full_steps<T>(w);
  V acc[IO::kV], xv[IO::kV];
  for (int64_t j = 0; j < wf; j += IO::kStep) {
    for (int k = 0; k < IO::kV; ++k) acc[k] = V(0);
    for (int64_t r = 0; r < rows; ++r) {
      IO::load(x + r * w + j, xv);
      for (int k = 0; k < IO::kV; ++k) acc[k] += xv[k];
    }
    for (int k = 0; k < IO::kV; ++k) acc[k].store(col + j + k * V::size());
  }
  for (int64_t j = wf; j < w; ++j) {
    acc_t<T> s = 0;
    for (int64_t r = 0; r < rows; ++r) s += widen(x[r * w + j]);
    col[j] = s;
  }
}

// cx[j] = sum_r x[r][j], cd[j] = sum_r dy[r][j] * x[r][j]
template <typename T>
inline void col_sums2(acc_t<T>* cx, acc_t<T>* cd, const T* x, const T* dy, int64_t rows, int64_t w) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  const int64_t wf = full_steps<T>(w);
  V ax[IO::kV], ad[IO::kV], xv[IO::kV], dv[IO::kV];
  for (int64_t j = 0; j < wf; j += IO::kStep) {
    for (int k = 0; k < IO::kV; ++k) ax[k] = ad[k] = V(0);
    for (int64_t r = 0; r < rows; ++r) {
      IO::load(x + r * w + j, xv);
      IO::load(dy + r * w + j, dv);
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
  for (int64_t j = wf; j < w; ++j) {
    acc_t<T> sx = 0, sd = 0;
    for (int64_t r = 0; r < rows; ++r) {
      sx += widen(x[r * w + j]);
      sd += widen(dy[r * w + j]) * widen(x[r * w + j]);
    }
    cx[j] = sx;
    cd[j] = sd;
  }
}

// ------------------------------------------------------- NHWC, wide channel runs
// For a group of np pixels (a few, of one tile in one row; n channels each, `ld`
// elements apart): chunk of channels by chunk (kChunkV vectors of acc_t, 128 bytes of
// float), over the group's pixels inside a chunk, so that per-tile accumulators and
// scales stay in registers across the group instead of going through memory per pixel.
// Pays off when a tile's accumulators no longer sit in L1 (many channels, see
// tile_loops.h kWideChannels); a handful of pixels keeps the strided streams few.

constexpr int kChunkV = 4;

// Steps per chunk for T (float, double: 4 steps; bfloat16, float16: 2 steps of 2 vectors).
template <typename T>
constexpr int64_t chunk_steps() {
  return kChunkV / VecIO<T>::kV;
}

// Calls body(j, steps) over [0, full_steps(n)) in chunks of chunk_steps<T>() vector steps,
// then in single steps; the caller does the scalar tail [full_steps(n), n).
template <typename T, typename F>
inline void for_chunks(int64_t n, F&& body) {
  constexpr int64_t S = VecIO<T>::kStep, U = chunk_steps<T>();
  const int64_t nf = full_steps<T>(n);
  int64_t j = 0;
  for (; j + U * S <= nf; j += U * S) body(j, std::integral_constant<int64_t, U>());
  for (; j < nf; j += S) body(j, std::integral_constant<int64_t, 1>());
}

// acc[j] += sum_k x[k * ld + j]: sweep 1 of gather_excite's forward.
template <typename T>
inline void add_pixels(acc_t<T>* acc, const T* x, int64_t np, int64_t ld, int64_t n) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  for_chunks<T>(n, [&](int64_t j, auto steps) {
    constexpr int64_t U = decltype(steps)::value, Q = U * IO::kV;
    V s[Q], xv[IO::kV];
    for (int64_t q = 0; q < Q; ++q) s[q] = V(0);
    for (int64_t k = 0; k < np; ++k) {
      for (int64_t u = 0; u < U; ++u) {
        IO::load(x + k * ld + j + u * IO::kStep, xv);
        for (int v = 0; v < IO::kV; ++v) s[u * IO::kV + v] += xv[v];
      }
    }
    for (int64_t q = 0; q < Q; ++q) (V::loadu(acc + j + q * V::size()) + s[q]).store(acc + j + q * V::size());
  });
  for (int64_t j = full_steps<T>(n); j < n; ++j) {
    acc_t<T> sum = 0;
    for (int64_t k = 0; k < np; ++k) sum += widen(x[k * ld + j]);
    acc[j] += sum;
  }
}

// ax[j] += sum_k x, ad[j] += sum_k dy * x: sweep 1 of gather_excite's backward.
template <typename T>
inline void add2_pixels(acc_t<T>* ax, acc_t<T>* ad, const T* x, const T* dy, int64_t np, int64_t ld, int64_t n) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  for_chunks<T>(n, [&](int64_t j, auto steps) {
    constexpr int64_t U = decltype(steps)::value, Q = U * IO::kV;
    V sx[Q], sd[Q], xv[IO::kV], dv[IO::kV];
    for (int64_t q = 0; q < Q; ++q) sx[q] = sd[q] = V(0);
    for (int64_t k = 0; k < np; ++k) {
      for (int64_t u = 0; u < U; ++u) {
        IO::load(x + k * ld + j + u * IO::kStep, xv);
        IO::load(dy + k * ld + j + u * IO::kStep, dv);
        for (int v = 0; v < IO::kV; ++v) {
          sx[u * IO::kV + v] += xv[v];
          sd[u * IO::kV + v] = at::vec::fmadd(dv[v], xv[v], sd[u * IO::kV + v]);
        }
      }
    }
    for (int64_t q = 0; q < Q; ++q) {
      const int64_t o = j + q * V::size();
      (V::loadu(ax + o) + sx[q]).store(ax + o);
      (V::loadu(ad + o) + sd[q]).store(ad + o);
    }
  });
  for (int64_t j = full_steps<T>(n); j < n; ++j) {
    acc_t<T> sx = 0, sd = 0;
    for (int64_t k = 0; k < np; ++k) {
      sx += widen(x[k * ld + j]);
      sd += widen(dy[k * ld + j]) * widen(x[k * ld + j]);
    }
    ax[j] += sx;
    ad[j] += sd;
  }
}

// y = x * s (+ r) per pixel, s per channel, then ReLU with kRelu: sweep 2 of both forwards.
template <bool kRelu, typename T>
inline void scale_pixels(T* y, const T* x, const T* r, const acc_t<T>* s, int64_t np, int64_t ld, int64_t n) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  for_chunks<T>(n, [&](int64_t j, auto steps) {
    constexpr int64_t U = decltype(steps)::value, Q = U * IO::kV;
    V sv[Q], xv[IO::kV], rv[IO::kV];
    for (int64_t q = 0; q < Q; ++q) sv[q] = V::loadu(s + j + q * V::size());
    for (int64_t k = 0; k < np; ++k) {
      for (int64_t u = 0; u < U; ++u) {
        const int64_t o = k * ld + j + u * IO::kStep;
        IO::load(x + o, xv);
        if (r) {
          IO::load(r + o, rv);
          for (int v = 0; v < IO::kV; ++v) xv[v] = at::vec::fmadd(xv[v], sv[u * IO::kV + v], rv[v]);
        } else {
          for (int v = 0; v < IO::kV; ++v) xv[v] = xv[v] * sv[u * IO::kV + v];
        }
        if constexpr (kRelu)
          for (int v = 0; v < IO::kV; ++v) xv[v] = relu_v(xv[v]);
        IO::store(y + o, xv);
      }
    }
  });
  for (int64_t j = full_steps<T>(n); j < n; ++j) {
    for (int64_t k = 0; k < np; ++k) {
      const int64_t o = k * ld + j;
      const acc_t<T> v = r ? widen(x[o]) * s[j] + widen(r[o]) : widen(x[o]) * s[j];
      y[o] = static_cast<T>(kRelu ? relu_s(v) : v);
    }
  }
}

// dx = dy * s + c per pixel, s and c per channel: sweep 2 of gather_excite's backward
// (kMask: dy masked by the ReLU output `out` first, as affine_row).
template <bool kMask = false, typename T>
inline void affine_pixels(T* dx, const T* dy, const acc_t<T>* s, const acc_t<T>* c, int64_t np, int64_t ld,
                          int64_t n, const T* out = nullptr) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  for_chunks<T>(n, [&](int64_t j, auto steps) {
    constexpr int64_t U = decltype(steps)::value, Q = U * IO::kV;
    V sv[Q], cv[Q], dv[IO::kV], ov[IO::kV];
    for (int64_t q = 0; q < Q; ++q) {
      sv[q] = V::loadu(s + j + q * V::size());
      cv[q] = V::loadu(c + j + q * V::size());
    }
    for (int64_t k = 0; k < np; ++k) {
      for (int64_t u = 0; u < U; ++u) {
        const int64_t o = k * ld + j + u * IO::kStep;
        IO::load(dy + o, dv);
        if constexpr (kMask) {
          IO::load(out + o, ov);
          for (int v = 0; v < IO::kV; ++v) dv[v] = mask_v(dv[v], ov[v]);
        }
        for (int v = 0; v < IO::kV; ++v) dv[v] = at::vec::fmadd(dv[v], sv[u * IO::kV + v], cv[u * IO::kV + v]);
        IO::store(dx + o, dv);
      }
    }
  });
  for (int64_t j = full_steps<T>(n); j < n; ++j) {
    for (int64_t k = 0; k < np; ++k) {
      const int64_t o = k * ld + j;
      const acc_t<T> d = kMask ? mask_s(widen(dy[o]), widen(out[o])) : widen(dy[o]);
      dx[o] = static_cast<T>(d * s[j] + c[j]);
    }
  }
}

// ------------------------------------------------------- NHWC, one pixel at a time

// acc[0, n) += x[0, n)
template <typename T>
inline void add_row(acc_t<T>* acc, const T* x, int64_t n) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  const int64_t nf = full_steps<T>(n);
  V xv[IO::kV];
  for (int64_t i = 0; i < nf; i += IO::kStep) {
    IO::load(x + i, xv);
    for (int k = 0; k < IO::kV; ++k) {
      acc_t<T>* a = acc + i + k * V::size();
      (V::loadu(a) + xv[k]).store(a);
    }
  }
  for (int64_t i = nf; i < n; ++i) acc[i] += widen(x[i]);
}

// ax += x, adyx += dy * x
template <typename T>
inline void add2_row(acc_t<T>* ax, acc_t<T>* adyx, const T* x, const T* dy, int64_t n) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  const int64_t nf = full_steps<T>(n);
  V xv[IO::kV], dv[IO::kV];
  for (int64_t i = 0; i < nf; i += IO::kStep) {
    IO::load(x + i, xv);
    IO::load(dy + i, dv);
    for (int k = 0; k < IO::kV; ++k) {
      const int64_t o = i + k * V::size();
      (V::loadu(ax + o) + xv[k]).store(ax + o);
      at::vec::fmadd(dv[k], xv[k], V::loadu(adyx + o)).store(adyx + o);
    }
  }
  for (int64_t i = nf; i < n; ++i) {
    ax[i] += widen(x[i]);
    adyx[i] += widen(dy[i]) * widen(x[i]);
  }
}


// ------------------------------------------------------------------- writes

// y = x * s (+ r), then ReLU with kRelu: the forward of both ops. S is Bcast or Cols.
template <bool kRelu, typename T, typename S>
inline void scale_row(T* y, const T* x, const T* r, const S& s, int64_t n) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  using A = acc_t<T>;
  const int64_t nf = full_steps<T>(n);
  const auto act_v = [](const V& v) { return kRelu ? relu_v(v) : v; };
  const auto act_s = [](A v) { return kRelu ? relu_s(v) : v; };
  V xv[IO::kV], rv[IO::kV];
  if (r) {
    for (int64_t i = 0; i < nf; i += IO::kStep) {
      IO::load(x + i, xv);
      IO::load(r + i, rv);
      for (int k = 0; k < IO::kV; ++k) xv[k] = act_v(at::vec::fmadd(xv[k], s.at(i + k * V::size()), rv[k]));
      IO::store(y + i, xv);
    }
    for (int64_t i = nf; i < n; ++i) y[i] = static_cast<T>(act_s(widen(x[i]) * s.one(i) + widen(r[i])));
    return;
  }
  for (int64_t i = 0; i < nf; i += IO::kStep) {
    IO::load(x + i, xv);
    for (int k = 0; k < IO::kV; ++k) xv[k] = act_v(xv[k] * s.at(i + k * V::size()));
    IO::store(y + i, xv);
  }
  for (int64_t i = nf; i < n; ++i) y[i] = static_cast<T>(act_s(widen(x[i]) * s.one(i)));
}

// dx = dy * s + c: gather_excite's backward. With kMask, dy is first masked by the
// ReLU output `out` (excite_lean_backward with relu and gather).
template <bool kMask = false, typename T, typename S>
inline void affine_row(T* dx, const T* dy, const S& s, const S& c, int64_t n, const T* out = nullptr) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  const int64_t nf = full_steps<T>(n);
  V dv[IO::kV], ov[IO::kV];
  for (int64_t i = 0; i < nf; i += IO::kStep) {
    IO::load(dy + i, dv);
    if constexpr (kMask) {
      IO::load(out + i, ov);
      for (int k = 0; k < IO::kV; ++k) dv[k] = mask_v(dv[k], ov[k]);
    }
    for (int k = 0; k < IO::kV; ++k) {
      const int64_t o = i + k * V::size();
      dv[k] = at::vec::fmadd(dv[k], s.at(o), c.at(o));
    }
    IO::store(dx + i, dv);
  }
  for (int64_t i = nf; i < n; ++i) {
    const acc_t<T> d = kMask ? mask_s(widen(dy[i]), widen(out[i])) : widen(dy[i]);
    dx[i] = static_cast<T>(d * s.one(i) + c.one(i));
  }
}

// ------------------------------ excite's one-sweep backward, from its input or its output
// Each pixel contributes dp * z to its tile's sum, with dp = dy (masked by ReLU's output
// with kRelu) and z = out - r (out without a residual, kRes false). With kWrite the same
// sweep also writes dx = dp * s (excite's dx; gather_excite's needs the tile sums first).
// excite_backward is the case out = x, r = null, neither kRelu nor kRes: sum dy * x.

// dp and z of one vector step at offset o.
template <bool kRelu, bool kRes, typename T>
inline void lean_load(const T* dy, const T* out, const T* r, int64_t o, typename VecIO<T>::V* dp,
                      typename VecIO<T>::V* z) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  IO::load(dy + o, dp);
  IO::load(out + o, z);
  if constexpr (kRelu)
    for (int k = 0; k < IO::kV; ++k) dp[k] = mask_v(dp[k], z[k]);
  if constexpr (kRes) {
    V rv[IO::kV];
    IO::load(r + o, rv);
    for (int k = 0; k < IO::kV; ++k) z[k] = z[k] - rv[k];
  }
}

// The same for one element.
template <bool kRelu, bool kRes, typename T>
inline void lean_one(const T* dy, const T* out, const T* r, int64_t o, acc_t<T>& dp, acc_t<T>& z) {
  dp = widen(dy[o]);
  z = widen(out[o]);
  if constexpr (kRelu) dp = mask_s(dp, z);
  if constexpr (kRes) z -= widen(r[o]);
}

// Returns sum dp * z over a row of n (a tile that is a whole NCHW row); dx = dp * s with kWrite.
template <bool kRelu, bool kRes, bool kWrite, typename T>
inline acc_t<T> lean_flat(T* dx, const T* dy, const T* out, const T* r, acc_t<T> s, int64_t n) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  const int64_t nf = full_steps<T>(n);
  const V sv(s);
  V acc[IO::kV], dp[IO::kV], z[IO::kV];
  for (int k = 0; k < IO::kV; ++k) acc[k] = V(0);
  for (int64_t i = 0; i < nf; i += IO::kStep) {
    lean_load<kRelu, kRes>(dy, out, r, i, dp, z);
    for (int k = 0; k < IO::kV; ++k) acc[k] = at::vec::fmadd(dp[k], z[k], acc[k]);
    if constexpr (kWrite) {
      for (int k = 0; k < IO::kV; ++k) dp[k] = dp[k] * sv;
      IO::store(dx + i, dp);
    }
  }
  acc_t<T> sum = lanes_sum(acc, IO::kV);
  for (int64_t i = nf; i < n; ++i) {
    acc_t<T> d, z1;
    lean_one<kRelu, kRes>(dy, out, r, i, d, z1);
    sum += d * z1;
    if constexpr (kWrite) dx[i] = static_cast<T>(d * s);
  }
  return sum;
}

// cd[j] = sum_r dp[r][j] * z[r][j] over an NCHW tile row (rows x w); dx = dp * s[j] with kWrite.
template <bool kRelu, bool kRes, bool kWrite, typename T>
inline void lean_cols(T* dx, acc_t<T>* cd, const T* dy, const T* out, const T* r, const acc_t<T>* s, int64_t rows,
                      int64_t w) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  const int64_t wf = full_steps<T>(w);
  V ad[IO::kV], sv[IO::kV], dp[IO::kV], z[IO::kV];
  for (int64_t j = 0; j < wf; j += IO::kStep) {
    for (int k = 0; k < IO::kV; ++k) {
      ad[k] = V(0);
      if constexpr (kWrite) sv[k] = V::loadu(s + j + k * V::size());
    }
    for (int64_t r0 = 0; r0 < rows; ++r0) {
      const int64_t o = r0 * w + j;
      lean_load<kRelu, kRes>(dy, out, r, o, dp, z);
      for (int k = 0; k < IO::kV; ++k) ad[k] = at::vec::fmadd(dp[k], z[k], ad[k]);
      if constexpr (kWrite) {
        for (int k = 0; k < IO::kV; ++k) dp[k] = dp[k] * sv[k];
        IO::store(dx + o, dp);
      }
    }
    for (int k = 0; k < IO::kV; ++k) ad[k].store(cd + j + k * V::size());
  }
  for (int64_t j = wf; j < w; ++j) {
    acc_t<T> sd = 0;
    for (int64_t r0 = 0; r0 < rows; ++r0) {
      acc_t<T> d, z1;
      lean_one<kRelu, kRes>(dy, out, r, r0 * w + j, d, z1);
      sd += d * z1;
      if constexpr (kWrite) dx[r0 * w + j] = static_cast<T>(d * s[j]);
    }
    cd[j] = sd;
  }
}

// ad[j] += dp[j] * z[j] for one NHWC pixel's n channels; dx = dp * s[j] with kWrite.
template <bool kRelu, bool kRes, bool kWrite, typename T>
inline void lean_row(T* dx, acc_t<T>* ad, const T* dy, const T* out, const T* r, const acc_t<T>* s, int64_t n) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  const int64_t nf = full_steps<T>(n);
  V dp[IO::kV], z[IO::kV];
  for (int64_t i = 0; i < nf; i += IO::kStep) {
    lean_load<kRelu, kRes>(dy, out, r, i, dp, z);
    for (int k = 0; k < IO::kV; ++k) {
      const int64_t j = i + k * V::size();
      at::vec::fmadd(dp[k], z[k], V::loadu(ad + j)).store(ad + j);
      if constexpr (kWrite) dp[k] = dp[k] * V::loadu(s + j);
    }
    if constexpr (kWrite) IO::store(dx + i, dp);
  }
  for (int64_t i = nf; i < n; ++i) {
    acc_t<T> d, z1;
    lean_one<kRelu, kRes>(dy, out, r, i, d, z1);
    ad[i] += d * z1;
    if constexpr (kWrite) dx[i] = static_cast<T>(d * s[i]);
  }
}

// The same for a group of np pixels `ld` elements apart, a chunk of channels at a time
// (accumulators and scales in registers, as the other wide-channel primitives).
template <bool kRelu, bool kRes, bool kWrite, typename T>
inline void lean_pixels(T* dx, acc_t<T>* ad, const T* dy, const T* out, const T* r, const acc_t<T>* s, int64_t np,
                        int64_t ld, int64_t n) {
  using IO = VecIO<T>;
  using V = typename IO::V;
  for_chunks<T>(n, [&](int64_t j, auto steps) {
    constexpr int64_t U = decltype(steps)::value, Q = U * IO::kV;
    V sd[Q], sv[Q], dp[IO::kV], z[IO::kV];
    for (int64_t q = 0; q < Q; ++q) {
      sd[q] = V(0);
      if constexpr (kWrite) sv[q] = V::loadu(s + j + q * V::size());
    }
    for (int64_t k = 0; k < np; ++k) {
      for (int64_t u = 0; u < U; ++u) {
        const int64_t o = k * ld + j + u * IO::kStep;
        lean_load<kRelu, kRes>(dy, out, r, o, dp, z);
        for (int v = 0; v < IO::kV; ++v) sd[u * IO::kV + v] = at::vec::fmadd(dp[v], z[v], sd[u * IO::kV + v]);
        if constexpr (kWrite) {
          for (int v = 0; v < IO::kV; ++v) dp[v] = dp[v] * sv[u * IO::kV + v];
          IO::store(dx + o, dp);
        }
      }
    }
    for (int64_t q = 0; q < Q; ++q) (V::loadu(ad + j + q * V::size()) + sd[q]).store(ad + j + q * V::size());
  });
  for (int64_t j = full_steps<T>(n); j < n; ++j) {
    acc_t<T> sum = 0;
    for (int64_t k = 0; k < np; ++k) {
      acc_t<T> d, z1;
      lean_one<kRelu, kRes>(dy, out, r, k * ld + j, d, z1);
      sum += d * z1;
      if constexpr (kWrite) dx[k * ld + j] = static_cast<T>(d * s[j]);
    }
    ad[j] += sum;
  }
}
