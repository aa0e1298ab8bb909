// Stand-in (see the README in emu/host): at_npu::native::OpCommand::RunOpApi.
#pragma once
#include <functional>
#include <string>
namespace at_npu {
namespace native {
using PROC_FUNC = std::function<int()>;
struct OpCommand {
  static void RunOpApi(const std::string& op_name, PROC_FUNC func, bool sync = false);
};
}  // namespace native
}  // namespace at_npu
