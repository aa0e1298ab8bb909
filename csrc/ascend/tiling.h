// Host-side tiling for the Ascend C kernels: plain C++ (no torch, no CANN), shared by
// the PrivateUse1 launcher (launcher.cpp) and the CPU unit test (tests/test_ascend.py).
#pragma once

#include <cstdint>
#include <string>

#include "tiling_data.h"

namespace genet_ops {
namespace ascend {

struct TilingRequest {
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t extent = 0;          // 0 = global (also any extent >= max(H, W))
  int op = GENET_OP_GE_FWD;    // GENET_OP_*
  int64_t dtype_bytes = 2;     // 2 (fp16 / bf16) or 4 (fp32)
  bool has_residual = false;   // forward ops and excite_lean_backward
  bool relu = false;           // forward ops and excite_lean_backward
  bool gather = false;         // excite_lean_backward only
  bool means = false;          // gather_excite only: also write the tile means
  int64_t core_num = 1;        // vector cores (AIV) the launch may use
  int64_t ub_bytes = 0;        // Unified Buffer bytes per core
};

// Bytes of UB left out of the plan (headroom for the runtime; the kernels use none of it).
constexpr int64_t kUbReserveBytes = 8 * 1024;

// The tiling for one launch. Throws std::invalid_argument when the request is malformed
// (negative sizes, dtype not 2/4 bytes, no cores) or when not even one aligned row of
// 32 bytes fits the UB budget. An empty tensor gives items == 0 and used_cores == 0:
// the launcher returns without launching.
GenetTiling compute_tiling(const TilingRequest& req);

// One line describing a tiling, for error messages and the unit test.
std::string describe(const GenetTiling& t);

}  // namespace ascend
}  // namespace genet_ops
