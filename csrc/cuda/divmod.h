// Division by a run-time constant without a hardware divide, for decoding work units
// (host and device; no dependencies, so that host-only code can include it).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define GENET_HD __host__ __device__
#else
#define GENET_HD
#endif

namespace genet_ops {
namespace cuda {

// n / d and n % d for 0 <= n < 2^31 and 1 <= d < 2^31 without a hardware divide:
// q = (umulhi(n, m) + n) >> s with s = ceil(log2 d), m = floor(2^32 (2^s - d) / d) + 1.
struct DivMod {
  uint32_t d = 1, m = 1, s = 0;
  DivMod() = default;
  explicit DivMod(int64_t divisor) {
    d = static_cast<uint32_t>(divisor);
    s = 0;
    while ((uint64_t{1} << s) < d) ++s;
    m = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << s) - d)) / d + 1);
  }
  GENET_HD inline uint32_t div(uint32_t n) const {
#if defined(__CUDA_ARCH__)
    const uint32_t hi = __umulhi(n, m);
#else
    const uint32_t hi = static_cast<uint32_t>((static_cast<uint64_t>(n) * m) >> 32);
#endif
    return (hi + n) >> s;
  }
  // q = n / d, returns n % d.
  GENET_HD inline uint32_t divmod(uint32_t n, uint32_t& q) const {
    q = div(n);
    return n - q * d;
  }
};

}  // namespace cuda
}  // namespace genet_ops
