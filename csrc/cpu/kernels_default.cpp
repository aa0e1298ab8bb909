// The loop kernels compiled for the compiler's baseline target (x86-64: SSE2; or the
// host ISA elsewhere) with at::vec's generic Vectorized: used on CPUs without AVX2, on
// non-x86 hosts, and when ATEN_CPU_CAPABILITY=default.
#include "isa_prelude.h"

// at::vec puts everything in `inline namespace CPU_CAPABILITY`: a name of our own keeps
// these instantiations apart from torch's and from kernels_avx2.cpp's.
#define CPU_CAPABILITY genet_default
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

namespace genet_ops::cpu::isa_default {
#include "vec_rows.h"
#include "tile_loops.h"
}  // namespace genet_ops::cpu::isa_default
