// Stand-in (see the README in emu/host): torch_npu's storage-format calls the launcher makes.
#pragma once
#include <ATen/ATen.h>
namespace at_npu {
namespace native {
int64_t get_npu_format(const at::Tensor& tensor);
at::Tensor npu_format_cast(const at::Tensor& tensor, int64_t acl_format);
at::Tensor empty_with_format(c10::IntArrayRef sizes, const c10::TensorOptions& options, int64_t format,
                             bool keep_format = false);
}  // namespace native
}  // namespace at_npu
