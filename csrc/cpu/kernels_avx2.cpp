// The loop kernels compiled for AVX2 + FMA + F16C (256-bit at::vec), chosen at run time
// by cpu_dispatch.cpp only where the CPU has them.
//
// Why a target pragma: setup.py compiles every source with the same flags, and -mavx2
// on the command line would let the compiler use AVX2 anywhere in the extension
// (static initialisers, registration, shared inline functions), so importing it could
// fault on an older x86-64. Here only code defined after the pragma - at::vec's
// AVX2 specialisations (in at::vec::genet_avx2) and our loops (in isa_avx2) - is
// built for AVX2; every header those need outside that namespace is included
// beforehand by isa_prelude.h for the baseline. This is what ATen does with
// per-capability compiler flags, done per file so setup.py stays simple.
#include "isa_prelude.h"

#ifdef GENET_OPS_HAVE_AVX2

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
// g++ warns once that a lambda in at::vec returning __m256 "changes the ABI": every
// caller and callee of such functions lives inside this AVX2 region, so none is called
// with the other convention (tests/test_cpu_kernels.py checks where AVX code is).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

// g++ does not define the ISA macros for a target pragma; sleef.h and at::vec test them.
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#ifndef __F16C__
#define __F16C__ 1
#endif

#define CPU_CAPABILITY genet_avx2
#define CPU_CAPABILITY_AVX2
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

namespace genet_ops::cpu::isa_avx2 {
#include "vec_rows.h"
#include "tile_loops.h"
}  // namespace genet_ops::cpu::isa_avx2

#pragma GCC diagnostic pop
#pragma GCC pop_options

#endif  // GENET_OPS_HAVE_AVX2
