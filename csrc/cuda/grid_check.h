// The launchers' grids, checked before they narrow to dim3: plans count thread blocks in
// int64 (plan.h), a CUDA grid holds at most 2^31 - 1 blocks along x, and an unchecked
// narrowing would silently launch a fraction of the work. ATen-free (c10 only), so the
// .cu files, the emulator and a small test extension all include it.
#pragma once

#include <c10/util/Exception.h>

#include <cstdint>

namespace genet_ops {
namespace cuda {

constexpr int64_t kMaxGridX = (int64_t{1} << 31) - 1;

// blocks as the grid's x dimension, or a ValueError naming the op.
inline unsigned int grid_x(int64_t blocks, const char* op) {
  TORCH_CHECK_VALUE(blocks <= kMaxGridX, "genet_ops: ", op, " on this input needs ", blocks,
                    " thread blocks, more than the ", kMaxGridX,
                    " of a CUDA grid; split the batch (x.split along N) and call the op per part");
  return static_cast<unsigned int>(blocks);
}

}  // namespace cuda
}  // namespace genet_ops
