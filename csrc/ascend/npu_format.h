// Which NPU storage formats the kernels can read as they are, and the rule the launcher
// applies to every operand and output. Plain C++ (no torch_npu, no CANN include), so the
// CPU tests drive the very decision the launcher makes (tests/emu/ascend/format_seam.cpp).
//
// On Atlas A2, torch_npu keeps conv and BatchNorm outputs in private formats (NC1HWC0,
// FRACTAL_Z, ...) by default. Such a tensor can report NCHW-contiguous strides while its
// bytes are laid out differently, so strides alone would make the kernels read garbage.
// torch_npu's base formats (ND, NCHW, NHWC, NCDHW) store the bytes the strides describe.
#pragma once

#include <cstdint>

namespace genet_ops {
namespace ascend {

// aclFormat values (CANN acl/acl_base.h); the launcher static_asserts they match.
constexpr int64_t kFormatNCHW = 0;
constexpr int64_t kFormatNHWC = 1;
constexpr int64_t kFormatND = 2;
constexpr int64_t kFormatNCDHW = 30;

inline bool is_base_format(int64_t acl_format) {
  return acl_format == kFormatND || acl_format == kFormatNCHW || acl_format == kFormatNHWC ||
         acl_format == kFormatNCDHW;
}

// t as the kernels can read it: t itself when its storage format is a base format (or it is
// undefined), else cast(t, ND). `format_of(t)` and `cast(t, format)` are torch_npu's
// get_npu_format / npu_format_cast in the launcher and fakes in the CPU test.
template <typename Tensor, typename FormatOf, typename Cast>
Tensor to_base_format(const Tensor& t, FormatOf format_of, Cast cast) {
  if (!t.defined() || is_base_format(format_of(t))) return t;
  return cast(t, kFormatND);
}

}  // namespace ascend
}  // namespace genet_ops
