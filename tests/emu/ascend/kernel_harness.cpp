// Runs the Ascend C kernels (csrc/ascend/kernels/genet_ops_kernels.cpp) on the CPU model
// (kernel_operator.h here) for tests/test_ascend.py, called through ctypes.
#include "kernels/genet_ops_kernels.cpp"
#include "tiling.h"

using namespace genet_ops::ascend;

#define GENET_EMU_DISPATCH(NAME, ...)                                   \
  do {                                                                  \
    if (dtype == 0) genet_##NAME##_fp16(__VA_ARGS__);                  \
    else if (dtype == 1) genet_##NAME##_bf16(__VA_ARGS__);             \
    else genet_##NAME##_fp32(__VA_ARGS__);                             \
  } while (0)

// Runs one kernel on every core the tiling uses (seed 0: cores one after another in order;
// else interleaved in a seeded random order). x is the op's input (excite_lean_backward: its
// output), aux the residual (forward) or grad_out (backward), res excite_lean_backward's
// residual, dg excite's d g or gather_excite's tile means (means != 0); g_bytes / dg_bytes
// are their sizes. counts (may be null) receives the vector instructions, DMA transfers and
// scalar waits issued and the switches between cores. Returns 0, or 1 with the error in msg.
extern "C" int genet_emu_run(int op, int dtype, int64_t N, int64_t C, int64_t H, int64_t W, int64_t extent,
                             int has_res, int relu, int gather, int means, uint8_t* x, uint8_t* aux, uint8_t* res,
                             uint8_t* g, uint8_t* out, uint8_t* dg, int64_t g_bytes, int64_t dg_bytes, int64_t cores,
                             int64_t ub, uint64_t seed, int64_t* counts, char* msg, int msglen) {
  try {
    TilingRequest rq;
    rq.N = N; rq.C = C; rq.H = H; rq.W = W; rq.extent = extent; rq.op = op;
    rq.dtype_bytes = dtype == 2 ? 4 : 2; rq.has_residual = has_res != 0; rq.core_num = cores; rq.ub_bytes = ub;
    rq.relu = relu != 0; rq.gather = gather != 0; rq.means = means != 0;
    const GenetTiling t = compute_tiling(rq);
    const int64_t bytes = N * C * H * W * rq.dtype_bytes;
    auto& regions = genet_emu::gm_regions();
    regions.clear();
    regions.push_back({x, bytes, "x", {}, {}});
    regions.push_back({out, bytes, "out", {}, {}});
    if (aux) regions.push_back({aux, bytes, "aux", {}, {}});
    if (res) regions.push_back({res, bytes, "residual", {}, {}});
    if (g) regions.push_back({g, g_bytes, "g", {}, {}});
    if (dg) regions.push_back({dg, dg_bytes, "dg", {}, {}});
    genet_emu::ub_capacity() = ub - kUbReserveBytes;  // the plan must respect its own budget
    genet_emu::counts() = {};
    genet_emu::run_cores(t.used_cores, seed, [&](int64_t) {
      if (op == GENET_OP_GE_FWD) GENET_EMU_DISPATCH(ge_fwd, x, aux, out, dg, t);
      if (op == GENET_OP_GE_BWD) GENET_EMU_DISPATCH(ge_bwd, aux, x, out, t);
      if (op == GENET_OP_EX_FWD) GENET_EMU_DISPATCH(ex_fwd, x, g, aux, out, t);
      if (op == GENET_OP_EX_BWD) GENET_EMU_DISPATCH(ex_bwd, aux, x, g, out, dg, t);
      if (op == GENET_OP_EX_LEAN_BWD) GENET_EMU_DISPATCH(ex_lean_bwd, aux, x, res, g, out, dg, t);
    });
    if (counts) {
      counts[0] = genet_emu::counts().vector;
      counts[1] = genet_emu::counts().dma;
      counts[2] = genet_emu::counts().waits;
      counts[3] = genet_emu::counts().switches;
    }
    std::snprintf(msg, msglen, "%s", describe(t).c_str());
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(msg, msglen, "%s", e.what());
    return 1;
  }
}
