// Stand-in (see the README in emu/host): c10_npu::getCurrentNPUStream().stream(bool).
#pragma once
#include "acl/acl_base.h"
namespace c10_npu {
struct NPUStream {
  aclrtStream stream(bool need_empty = true) const;
};
NPUStream getCurrentNPUStream(signed char device_index = -1);
}  // namespace c10_npu
