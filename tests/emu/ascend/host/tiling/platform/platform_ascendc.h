// Stand-in (see the README in emu/host): the PlatformAscendC calls the launcher makes.
#pragma once
#include <cstdint>
namespace platform_ascendc {
enum class CoreMemType { L0_A, L0_B, L0_C, L1, L2, UB, HBM, RESERVED };
class PlatformAscendC {
 public:
  uint32_t GetCoreNumAiv() const;
  void GetCoreMemSize(const CoreMemType& mem_type, uint64_t& size) const;
};
class PlatformAscendCManager {
 public:
  static PlatformAscendC* GetInstance();
  static PlatformAscendC* GetInstance(const char* customSocVersion);
};
}  // namespace platform_ascendc
