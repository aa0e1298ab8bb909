// Shared by every backend: tile geometry, argument checks and the layout rule.
// The Python fake functions (genet_ops/checks.py) mirror check_* and the layout
// rule exactly, so that fake tensors and real outputs agree on shape and strides.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

namespace genet_ops {

// How x is tiled: tiles of eh x ew pixels, th x tw of them, the last row/column
// possibly partial. extent 0 (global), or any extent >= max(H, W), is one tile
// covering the plane.
struct TileGeom {
  int64_t N, C, H, W;
  int64_t eh, ew;  // tile height/width: min(extent, H/W), never 0 (kernels divide by it)
  int64_t th, tw;  // number of tiles along H and W

  int64_t tile_rows(int64_t ty) const { return std::min(eh, H - ty * eh); }
  int64_t tile_cols(int64_t tx) const { return std::min(ew, W - tx * ew); }
};

TileGeom tile_geom(const at::Tensor& x, int64_t extent);

// The two memory layouts kernels are written for.
enum class Layout { NCHW, NHWC };

// The tensor a kernel reads for x: x itself when it is dense NCHW or dense
// channels_last, else a contiguous copy. Outputs are empty_like(this).
at::Tensor kernel_input(const at::Tensor& x);
// NCHW if xk.is_contiguous() (this wins when both hold, e.g. C == 1), else NHWC.
Layout layout_of(const at::Tensor& xk);
// t (same shape as xk) with exactly xk's strides: t itself or a copy.
at::Tensor like_layout(const at::Tensor& t, const at::Tensor& xk);
// g (N, C, th, tw) as the kernel reads it: contiguous in the layout's order.
at::Tensor g_for_layout(const at::Tensor& g, Layout layout);

// Argument checks: each error names the argument and what was expected.
void check_x(const at::Tensor& x, const char* name);
void check_extent(int64_t extent);
// residual / grad_out: same shape, dtype and device as x.
void check_same(const at::Tensor& t, const at::Tensor& x, const char* name, const char* x_name = "x");
// g: (N, C, ceil(H/e), ceil(W/e)) or (N, C, 1, 1) for e = 0, x's dtype and device.
void check_g(const at::Tensor& g, const at::Tensor& x, int64_t extent);

// g of the output-keeping backward: g's shape for out, out's accumulation dtype
// (float, double for double), out's device.
void check_means(const at::Tensor& g, const at::Tensor& out, int64_t extent);

// One op call as every backend's kernels see it: the arguments checked, x as the
// kernel reads it (kernel_input), the other operands in its layout, the outputs
// allocated by the layout rule. Backends launch nothing when empty() (dg is zeroed).
// The output-keeping backward (excite_lean_backward) reads the op's output in place of x:
// `x` is then kernel_input(out), `other` grad_out, `residual` the residual.
struct OpCall {
  at::Tensor x;         // kernel_input(x), or kernel_input(out) for excite_lean_backward
  at::Tensor other;     // residual (forward, undefined if none) or grad_out, with x's strides
  at::Tensor residual;  // excite_lean_backward: the residual (undefined if none), x's strides
  at::Tensor g;         // excite ops: g_for_layout(g); excite_lean_backward: the saved logits
  at::Tensor out;       // y or dx: empty_like(x)
  at::Tensor dg;        // excite_backward, excite_lean_backward: empty_like(g);
                        // gather_excite_lean: the tile means (accumulation dtype, g's layout)
  Layout layout;
  TileGeom t;
  bool relu = false;    // forward: out = max(y, 0); lean backward: grad_out is 0 where out <= 0
  bool gather = false;  // lean backward: dx gets gather_excite's per-tile term dg / |t|
  bool empty() const { return x.numel() == 0; }
};

OpCall prepare_gather_excite(const at::Tensor& x, int64_t extent, const std::optional<at::Tensor>& residual,
                             bool relu);
// gather_excite's call that also returns the tile means (c.dg, zero for an empty x).
OpCall prepare_gather_excite_lean(const at::Tensor& x, int64_t extent,
                                  const std::optional<at::Tensor>& residual, bool relu);
OpCall prepare_gather_excite_backward(const at::Tensor& grad_out, const at::Tensor& x, int64_t extent);
OpCall prepare_excite(const at::Tensor& x, const at::Tensor& g, int64_t extent,
                      const std::optional<at::Tensor>& residual, bool relu);
OpCall prepare_excite_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& g,
                               int64_t extent);
OpCall prepare_excite_lean_backward(const at::Tensor& grad_out, const at::Tensor& out,
                                    const std::optional<at::Tensor>& residual, const at::Tensor& g,
                                    int64_t extent, bool relu, bool gather);

// A backend whose forward kernels have no ReLU epilogue yet applies it after them: the
// same values (NaN kept, as torch.relu), one more pass over the output.
inline void relu_after(const OpCall& c) {
  if (c.relu && !c.empty()) c.out.clamp_min_(0);
}

// Float type in which reductions accumulate: double for double, else float.
template <typename scalar_t>
struct Acc { using type = float; };
template <>
struct Acc<double> { using type = double; };
template <typename scalar_t>
using acc_t = typename Acc<scalar_t>::type;

}  // namespace genet_ops
