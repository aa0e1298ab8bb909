// What the op entry points (ops_cpu.cpp) hand to the loop
// kernels, and the per-ISA kernel tables. Nothing here depends on the instruction set.
#pragma once

#include "genet_ops.h"

namespace genet_ops::cpu {

// One kernel call: raw pointers into an OpCall's tensors (x's layout throughout, g / dg
// contiguous in that layout's order).
struct Args {
  TileGeom t;
  Layout layout;
  at::ScalarType dtype;
  const void* x = nullptr;       // x, or out for excite_lean_backward
  const void* other = nullptr;   // residual (forward, may be null) or grad_out (backward)
  const void* res = nullptr;     // excite_lean_backward: the residual (may be null)
  const void* g = nullptr;       // excite ops (x's dtype); excite_lean_backward (accumulation dtype)
  void* out = nullptr;           // y or dx
  void* dg = nullptr;            // excite_backward, excite_lean_backward; gather_excite: the tile
                                 // means for gather_excite_lean (accumulation dtype), else null
  int64_t cblock = 0;            // NHWC: channels per work unit (see channel_block)
  bool relu = false;             // forward: ReLU epilogue; lean backward: dy masked where out <= 0
  bool gather = false;           // excite_lean_backward: dx gets the per-tile term dg / |t|
};

using KernelFn = void (*)(const Args&);

struct Kernels {
  const char* isa;
  KernelFn gather_excite;
  KernelFn gather_excite_backward;
  KernelFn excite;
  KernelFn excite_backward;
  KernelFn excite_lean_backward;
};

// Each ISA translation unit (kernels_default.cpp, kernels_avx2.cpp) defines these in
// its own namespace; only the table below refers to them.
#define GENET_OPS_DECLARE_ISA(ns)                 \
  namespace ns {                                  \
  void gather_excite(const Args& a);              \
  void gather_excite_backward(const Args& a);     \
  void excite(const Args& a);                     \
  void excite_backward(const Args& a);            \
  void excite_lean_backward(const Args& a);       \
  }
GENET_OPS_DECLARE_ISA(isa_default)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GENET_OPS_HAVE_AVX2 1
GENET_OPS_DECLARE_ISA(isa_avx2)
#endif
#undef GENET_OPS_DECLARE_ISA

// The kernels for this CPU, chosen once (cpu_dispatch.cpp).
const Kernels& kernels();

// The kernel call for a prepared op; without block_channels an NHWC unit covers all
// channels (ops that sweep each tile once need no cache blocking).
Args make_args(const OpCall& c, bool block_channels = true);

// NHWC: how many channels one work unit covers, so that the tile row it sweeps twice
// (x in forward, grad_out (and out) in backward) stays in cache between the sweeps.
int64_t channel_block(const TileGeom& t, int64_t elem_size);

}  // namespace genet_ops::cpu
