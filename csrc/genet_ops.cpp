// Schemas of the genet_ops library and the shared checks every kernel calls.
// Backends register kernels with TORCH_LIBRARY_IMPL in csrc/<backend>/.
#include "genet_ops.h"

#include <Python.h>
#include <torch/library.h>

#include <sstream>

namespace genet_ops {

// ceil(a / e) for a >= 0, e >= 1, without the overflow of (a + e - 1) / e: any extent up
// to 2**63 - 1 is safe.
static int64_t ceil_div(int64_t a, int64_t e) { return a == 0 ? 0 : (a - 1) / e + 1; }

TileGeom tile_geom(const at::Tensor& x, int64_t extent) {
  TileGeom t;
  t.N = x.size(0);
  t.C = x.size(1);
  t.H = x.size(2);
  t.W = x.size(3);
  // extent 0 is global. An extent >= max(H, W) comes out global too (one tile of H x W
  // pixels), since the tile size is clamped to the plane before any other arithmetic.
  const int64_t eh = extent == 0 ? t.H : std::min(extent, t.H);
  const int64_t ew = extent == 0 ? t.W : std::min(extent, t.W);
  t.eh = std::max<int64_t>(eh, 1);
  t.ew = std::max<int64_t>(ew, 1);
  t.th = extent == 0 ? 1 : ceil_div(t.H, extent);
  t.tw = extent == 0 ? 1 : ceil_div(t.W, extent);
  return t;
}

at::Tensor kernel_input(const at::Tensor& x) {
  if (x.is_contiguous() || x.is_contiguous(at::MemoryFormat::ChannelsLast)) return x;
  return x.contiguous();
}

Layout layout_of(const at::Tensor& xk) {
  return xk.is_contiguous() ? Layout::NCHW : Layout::NHWC;
}

at::Tensor like_layout(const at::Tensor& t, const at::Tensor& xk) {
  if (t.strides() == xk.strides()) return t;
  at::Tensor out = at::empty_like(xk);
  out.copy_(t);
  return out;
}

at::Tensor g_for_layout(const at::Tensor& g, Layout layout) {
  return layout == Layout::NCHW ? g.contiguous()
                                : g.contiguous(at::MemoryFormat::ChannelsLast);
}

static std::string shape_str(at::IntArrayRef s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

void check_x(const at::Tensor& x, const char* name) {
  TORCH_CHECK_VALUE(x.dim() == 4, "genet_ops: ", name,
                    " must be a 4-D (N, C, H, W) tensor, got shape ", shape_str(x.sizes()));
  const auto dt = x.scalar_type();
  TORCH_CHECK_VALUE(dt == at::kFloat || dt == at::kDouble || dt == at::kHalf || dt == at::kBFloat16,
                    "genet_ops: ", name,
                    " must be float16, bfloat16, float32 or float64, got ", dt);
}

void check_extent(int64_t extent) {
  TORCH_CHECK_VALUE(extent >= 0, "genet_ops: extent must be >= 0 (0 means global), got ", extent);
}

void check_same(const at::Tensor& t, const at::Tensor& x, const char* name, const char* x_name) {
  TORCH_CHECK_VALUE(t.sizes() == x.sizes(), "genet_ops: ", name, " must have ", x_name, "'s shape ",
                    shape_str(x.sizes()), ", got ", shape_str(t.sizes()));
  TORCH_CHECK_VALUE(t.scalar_type() == x.scalar_type(), "genet_ops: ", name, " must have ", x_name,
                    "'s dtype ", x.scalar_type(), ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == x.device(), "genet_ops: ", name, " must be on ", x_name, "'s device ",
                    x.device(), ", got ", t.device());
}

void check_g(const at::Tensor& g, const at::Tensor& x, int64_t extent) {
  const TileGeom t = tile_geom(x, extent);
  const std::vector<int64_t> want{t.N, t.C, t.th, t.tw};
  TORCH_CHECK_VALUE(g.sizes() == at::IntArrayRef(want), "genet_ops: g must have shape ",
                    shape_str(want), " (N, C, ceil(H/extent), ceil(W/extent)) for x of shape ",
                    shape_str(x.sizes()), " and extent ", extent, ", got ", shape_str(g.sizes()));
  TORCH_CHECK_VALUE(g.scalar_type() == x.scalar_type(), "genet_ops: g must have x's dtype ",
                    x.scalar_type(), ", got ", g.scalar_type());
  TORCH_CHECK_VALUE(g.device() == x.device(), "genet_ops: g must be on x's device ", x.device(),
                    ", got ", g.device());
}

void check_means(const at::Tensor& g, const at::Tensor& out, int64_t extent) {
  const TileGeom t = tile_geom(out, extent);
  const std::vector<int64_t> want{t.N, t.C, t.th, t.tw};
  TORCH_CHECK_VALUE(g.sizes() == at::IntArrayRef(want), "genet_ops: g must have shape ",
                    shape_str(want), " (N, C, ceil(H/extent), ceil(W/extent)) for out of shape ",
                    shape_str(out.sizes()), " and extent ", extent, ", got ", shape_str(g.sizes()));
  const auto acc = out.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK_VALUE(g.scalar_type() == acc, "genet_ops: g must be ", acc,
                    " (the accumulation dtype of out's ", out.scalar_type(), "), got ", g.scalar_type());
  TORCH_CHECK_VALUE(g.device() == out.device(), "genet_ops: g must be on out's device ", out.device(),
                    ", got ", g.device());
}

// The checks in the order every op makes them, then the layout rule. `other` is the
// residual or grad_out (null if absent), `g` excite's gate (null for gather_excite).
static OpCall prepare(const at::Tensor& x, int64_t extent, const at::Tensor* other, const char* other_name,
                      const at::Tensor* g, bool with_dg) {
  check_x(x, "x");
  check_extent(extent);
  if (g != nullptr) check_g(*g, x, extent);
  if (other != nullptr) check_same(*other, x, other_name);
  OpCall c;
  c.x = kernel_input(x);
  c.layout = layout_of(c.x);
  c.t = tile_geom(c.x, extent);
  c.out = at::empty_like(c.x);
  if (g != nullptr) c.g = g_for_layout(*g, c.layout);
  if (with_dg) {
    c.dg = at::empty_like(c.g);
    if (c.empty()) c.dg.zero_();  // no tile, no gradient
  }
  if (other != nullptr && !c.empty()) c.other = like_layout(*other, c.x);
  return c;
}

OpCall prepare_gather_excite(const at::Tensor& x, int64_t extent, const std::optional<at::Tensor>& residual,
                             bool relu) {
  OpCall c = prepare(x, extent, residual ? &*residual : nullptr, "residual", nullptr, false);
  c.relu = relu;
  return c;
}

OpCall prepare_gather_excite_lean(const at::Tensor& x, int64_t extent,
                                  const std::optional<at::Tensor>& residual, bool relu) {
  OpCall c = prepare_gather_excite(x, extent, residual, relu);
  const auto acc = c.x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor means = at::empty({c.t.N, c.t.C, c.t.th, c.t.tw}, c.x.options().dtype(acc));
  c.dg = g_for_layout(means, c.layout);
  if (c.empty()) c.dg.zero_();  // tiles without pixels
  return c;
}

OpCall prepare_gather_excite_backward(const at::Tensor& grad_out, const at::Tensor& x, int64_t extent) {
  return prepare(x, extent, &grad_out, "grad_out", nullptr, false);
}

OpCall prepare_excite(const at::Tensor& x, const at::Tensor& g, int64_t extent,
                      const std::optional<at::Tensor>& residual, bool relu) {
  OpCall c = prepare(x, extent, residual ? &*residual : nullptr, "residual", &g, false);
  c.relu = relu;
  return c;
}

OpCall prepare_excite_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& g,
                               int64_t extent) {
  return prepare(x, extent, &grad_out, "grad_out", &g, true);
}

OpCall prepare_excite_lean_backward(const at::Tensor& grad_out, const at::Tensor& out,
                                    const std::optional<at::Tensor>& residual, const at::Tensor& g,
                                    int64_t extent, bool relu, bool gather) {
  check_x(out, "out");
  check_extent(extent);
  check_means(g, out, extent);
  check_same(grad_out, out, "grad_out", "out");
  if (residual) check_same(*residual, out, "residual", "out");
  OpCall c;
  c.x = kernel_input(out);
  c.layout = layout_of(c.x);
  c.t = tile_geom(c.x, extent);
  c.out = at::empty_like(c.x);
  c.g = g_for_layout(g, c.layout);
  c.dg = at::empty_like(c.g);
  c.relu = relu;
  c.gather = gather;
  if (c.empty()) {
    c.dg.zero_();  // no tile, no gradient
    return c;
  }
  c.other = like_layout(grad_out, c.x);
  if (residual) c.residual = like_layout(*residual, c.x);
  return c;
}

}  // namespace genet_ops

// genet_ops._C_ascend compiles this file for the shared checks only (GENET_OPS_CHECKS_ONLY):
// the schemas and the module entry belong to genet_ops._C.
#ifndef GENET_OPS_CHECKS_ONLY
TORCH_LIBRARY(genet_ops, m) {
  m.def("gather_excite(Tensor x, int extent, Tensor? residual=None, bool relu=False) -> Tensor");
  m.def("gather_excite_backward(Tensor grad_out, Tensor x, int extent) -> Tensor");
  m.def("excite(Tensor x, Tensor g, int extent, Tensor? residual=None, bool relu=False) -> Tensor");
  m.def("excite_backward(Tensor grad_out, Tensor x, Tensor g, int extent) -> (Tensor, Tensor)");
  // The output-keeping ops (docs/DESIGN.md §2): the same forward kernels, whose autograd
  // keeps (out, residual, g) instead of x; gather_excite_lean also returns the tile means.
  m.def("gather_excite_lean(Tensor x, int extent, Tensor? residual=None, bool relu=False) -> (Tensor, Tensor)");
  m.def("excite_lean(Tensor x, Tensor g, int extent, Tensor? residual=None, bool relu=False) -> Tensor");
  m.def("excite_lean_backward(Tensor grad_out, Tensor out, Tensor? residual, Tensor g, int extent, bool relu, "
        "bool gather) -> (Tensor, Tensor)");
}

// `import genet_ops._C` loads the library; the ops live in torch.ops.genet_ops.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
#endif  // GENET_OPS_CHECKS_ONLY
