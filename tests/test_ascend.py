"""Ascend NPU backend tests.

1. The tiling (csrc/ascend/tiling.{h,cpp} and the index arithmetic in tiling_data.h that
   the Ascend C kernels run) is plain C++: a small driver compiled here with g++ replays
   what every AI core would do for many shapes and checks the invariants (every element
   and every tile assigned exactly once, chunks and blocks inside their buffers, the UB
   budget, 32-byte alignment, the DataCopyPad limits, the mapping back to NCHW and to g).
   This runs on any machine with a C++ compiler.
2. The real NPU path (the compiled Ascend C kernels behind torch.ops.genet_ops.* on
   PrivateUse1) is compared with genet_ops.reference. It runs only where torch_npu imports
   and an NPU is present; elsewhere it skips and says why.
"""
from __future__ import annotations

import itertools
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import genet_ops
from genet_ops import reference

ROOT = Path(__file__).resolve().parents[1]
ASCEND = ROOT / "csrc" / "ascend"

OPS = {"ge_fwd": 0, "ge_bwd": 1, "ex_fwd": 2, "ex_bwd": 3}
KB = 1024
UB_A2 = 192 * KB  # Atlas A2 (Ascend910B*) Unified Buffer per vector core

# --------------------------------------------------------------------------- driver
DRIVER = r"""
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tiling.h"

using namespace genet_ops::ascend;

static std::string fail;
#define CHECK(cond, msg)                                                        \
  do {                                                                          \
    if (!(cond) && fail.empty()) {                                              \
      std::ostringstream os_;                                                   \
      os_ << msg;                                                               \
      fail = os_.str();                                                         \
    }                                                                           \
  } while (0)

static bool aligned(int64_t elems, int64_t bytes) { return (elems * bytes) % 32 == 0; }

// Replays the kernels' traversal for one request and checks every invariant.
static void check(const TilingRequest& rq, const GenetTiling& t) {
  const int op = rq.op;
  const int64_t T = rq.dtype_bytes;
  const int64_t N = rq.N, C = rq.C, H = rq.H, W = rq.W, e = rq.extent;
  const bool global = e == 0 || e >= std::max(H, W);
  const int64_t TH = global ? 1 : (H + e - 1) / e, TW = global ? 1 : (W + e - 1) / e;
  const int64_t EH = global ? std::max<int64_t>(H, 1) : e, EW = global ? std::max<int64_t>(W, 1) : e;
  const int64_t total = N * C * H * W;

  if (total == 0) {
    CHECK(t.items == 0 && t.used_cores == 0, "empty input must launch nothing");
    return;
  }
  // ---- work split
  CHECK(t.used_cores >= 1 && t.used_cores <= rq.core_num, "used_cores out of range");
  CHECK(t.items == t.planes * t.th * t.nseg, "items != planes*th*nseg");
  CHECK(t.nseg == (t.tw + t.seg_tiles - 1) / t.seg_tiles, "nseg");
  CHECK(t.used_cores == std::min(t.items, rq.core_num), "cores idle while items wait");
  std::vector<int> item_seen(t.items, 0);
  int64_t prev_end = 0, smin = INT64_MAX, smax = 0;
  for (int64_t core = 0; core < t.used_cores; ++core) {
    int64_t b, en;
    genet_core_range(t, core, b, en);
    CHECK(b == prev_end, "core ranges not contiguous at core " << core);
    CHECK(en > b, "core " << core << " gets no item");
    prev_end = en;
    smin = std::min(smin, en - b);
    smax = std::max(smax, en - b);
    for (int64_t i = b; i < en && i < t.items; ++i) item_seen[i]++;
  }
  CHECK(prev_end == t.items, "core ranges do not end at items");
  CHECK(smax - smin <= 1, "unbalanced split " << smin << ".." << smax);
  for (int64_t i = 0; i < t.items; ++i) CHECK(item_seen[i] == 1, "item " << i << " seen " << item_seen[i]);

  // ---- buffers: alignment and the UB budget
  const int64_t ub = genet_ub_bytes(t, op);
  {  // independent tally of the kernel's InitBuffer calls (genet_ops_kernels.cpp, Init)
    const int64_t q = 2 * t.buf_elems * T;  // one double-buffered TQue of blocks
    const int64_t tiles = 5 * t.tile_elems * 4, gq = 2 * t.tile_elems * T, red = (t.red_elems + 32) * 4;
    const int64_t work = 2 * t.buf_elems * 4, row = t.row_elems * 4;
    int64_t want = 0;
    if (op == 0) want = q * (2 + t.has_residual) + work + 2 * row + tiles + red;          // x[,res] -> y
    if (op == 1) want = q * 3 + work + 4 * row + tiles + red;                             // dy, x -> dx
    if (op == 2) want = q * (2 + t.has_residual) + work + 1 * row + tiles + gq + red;     // x[,res], g -> y
    if (op == 3) want = q * 3 + work + 2 * row + tiles + 2 * gq + red;                    // dy, x, g -> dx, dg
    CHECK(ub == want, "genet_ub_bytes " << ub << " != the kernel's buffers " << want);
  }
  CHECK(ub <= rq.ub_bytes - kUbReserveBytes, "UB " << ub << " > budget " << rq.ub_bytes - kUbReserveBytes);
  CHECK(t.align * T == 32, "align");
  CHECK(aligned(t.buf_elems, T) && aligned(t.buf_elems, 4), "buf_elems not 32B aligned");
  CHECK(aligned(t.row_elems, 4), "row_elems not 32B aligned");
  CHECK(aligned(t.tile_elems, T) && aligned(t.tile_elems, 4), "tile_elems not 32B aligned");
  CHECK(aligned(t.red_elems, 4), "red_elems not 32B aligned");
  CHECK(t.red_elems >= genet_red_elems(t.buf_elems), "ReduceSum work too small");
  CHECK(t.seg_tiles <= t.tile_elems, "tile arrays too small");
  CHECK(t.has_residual == ((rq.has_residual && (op == 0 || op == 2)) ? 1 : 0), "has_residual");
  if (t.mode == GENET_MODE_STREAM) CHECK(t.seg_tiles == 1, "STREAM items are single tiles");

  // ---- every element of x exactly once (per sweep), inside its tile; every tile once
  std::vector<unsigned char> seen(total, 0);
  std::vector<int64_t> tile_count(N * C * TH * TW, 0);
  std::vector<unsigned char> tile_seen(N * C * TH * TW, 0);
  auto visit = [&](const GenetBlock& b, int64_t r0, int64_t rows, int64_t c0, int64_t cols, int64_t gm) {
    const int64_t pitch = genet_pitch(cols, t.align);
    CHECK(rows >= 1 && cols >= 1, "empty block/chunk");
    CHECK(rows * pitch <= t.buf_elems, "block " << rows << "x" << cols << " (pitch " << pitch
                                                 << ") exceeds buf_elems " << t.buf_elems);
    CHECK(aligned(pitch, T) && aligned(pitch, 4), "row pitch not 32B aligned");
    CHECK(rows <= GENET_MAX_BLOCK_COUNT, "DataCopyPad blockCount " << rows);
    CHECK(cols * T <= GENET_MAX_BLOCK_LEN, "DataCopyPad blockLen " << cols * T);
    CHECK((t.cols - cols) * T < (int64_t(1) << 32), "DataCopyPad stride");
    CHECK(pitch - cols < t.align, "right padding over 32 bytes");
    CHECK(gm == b.gm_offset + r0 * t.cols + c0, "chunk gm_offset");
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t idx = gm + r * t.cols + c;
        if (idx < 0 || idx >= total) { CHECK(false, "index out of x"); return; }
        seen[idx]++;
        const int64_t plane = idx / (H * W), hw = idx % (H * W), h = hw / W, w = hw % W;
        const int64_t ty = h / EH, tx = w / EW;
        // the tile this element belongs to in the block (column within the block)
        const int64_t k = (c0 + c) / t.ew;
        CHECK(plane == b.plane && ty == b.ty && tx == b.tx0 + k,
              "element " << idx << " in tile (" << ty << "," << tx << ") handled as (" << b.ty << ","
                         << b.tx0 + k << ")");
        tile_count[(plane * TH + ty) * TW + tx]++;
      }
    }
  };
  for (int64_t i = 0; i < t.items; ++i) {
    const GenetBlock b = genet_block(t, i);
    CHECK(b.ntiles >= 1 && b.ntiles <= t.seg_tiles, "ntiles");
    CHECK(b.rows >= 1 && b.cols >= 1, "block empty");
    CHECK(b.row0 + b.rows <= t.rows && b.col0 + b.cols <= t.cols, "block outside the view");
    // tile columns partition the block columns
    int64_t next = 0;
    for (int64_t k = 0; k < b.ntiles; ++k) {
      int64_t c0, c1;
      genet_tile_cols(t, b, k, c0, c1);
      CHECK(c0 == next && c1 > c0, "tile columns do not partition the block");
      next = c1;
      const int64_t g = b.g_offset + k;
      CHECK(g == (b.plane * TH + b.ty) * TW + b.tx0 + k, "g_offset");
      if (g >= 0 && g < (int64_t)tile_seen.size()) tile_seen[g]++;
    }
    CHECK(next == b.cols, "tile columns do not cover the block");
    if (t.mode == GENET_MODE_RESIDENT) {
      CHECK(b.rows <= t.crows && b.cols <= t.ccols, "block larger than crows x ccols");
      if (b.ntiles > 1) CHECK(genet_pitch(b.cols, t.align) <= t.row_elems, "row buffers too small");
      visit(b, 0, b.rows, 0, b.cols, b.gm_offset);
    } else {
      const int64_t n = genet_chunks(t, b);
      for (int64_t c = 0; c < n; ++c) {
        const GenetChunk k = genet_chunk(t, b, c);
        CHECK(k.row0 + k.rows <= b.rows && k.col0 + k.cols <= b.cols, "chunk outside its block");
        visit(b, k.row0, k.rows, k.col0, k.cols, k.gm_offset);
      }
    }
    if (!fail.empty()) return;
  }
  for (int64_t i = 0; i < total; ++i) CHECK(seen[i] == 1, "element " << i << " seen " << int(seen[i]));
  for (int64_t n = 0; n < N * C; ++n)
    for (int64_t ty = 0; ty < TH; ++ty)
      for (int64_t tx = 0; tx < TW; ++tx) {
        const int64_t g = (n * TH + ty) * TW + tx;
        const int64_t want = std::min(EH, H - ty * EH) * std::min(EW, W - tx * EW);  // |t| of DESIGN §2
        CHECK(tile_seen[g] == 1, "tile " << g << " seen " << int(tile_seen[g]));
        CHECK(tile_count[g] == want, "tile " << g << " has " << tile_count[g] << " pixels, |t| = " << want);
      }
}

int main() {
  // one request per line: N C H W extent op dtype_bytes residual cores ub_bytes
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    std::istringstream in(line);
    TilingRequest rq;
    int res = 0;
    in >> rq.N >> rq.C >> rq.H >> rq.W >> rq.extent >> rq.op >> rq.dtype_bytes >> res >> rq.core_num >> rq.ub_bytes;
    rq.has_residual = res != 0;
    fail.clear();
    try {
      const GenetTiling t = compute_tiling(rq);
      check(rq, t);
      if (fail.empty()) std::cout << "OK " << describe(t) << "\n";
      else std::cout << "FAIL " << fail << " | " << describe(t) << "\n";
    } catch (const std::exception& ex) {
      std::cout << "THROW " << ex.what() << "\n";
    }
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def tiling_driver(tmp_path_factory):
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++/c++/clang++) on PATH to build the tiling test driver")
    out = tmp_path_factory.mktemp("ascend_tiling")
    src = out / "driver.cpp"
    src.write_text(DRIVER)
    exe = out / "driver"
    cmd = [cxx, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(ASCEND),
           str(src), str(ASCEND / "tiling.cpp"), "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"compiling the tiling driver failed:\n{' '.join(cmd)}\n{proc.stderr}"

    def run(cases):
        text = "\n".join(" ".join(str(int(v)) for v in c) for c in cases) + "\n"
        proc = subprocess.run([str(exe)], input=text, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert len(lines) == len(cases)
        return lines

    return run


def _case(N, C, H, W, extent, op="ge_fwd", dtype_bytes=2, residual=0, cores=48, ub=UB_A2):
    return (N, C, H, W, extent, OPS[op], dtype_bytes, residual, cores, ub)


def _assert_ok(cases, lines):
    bad = [f"{c} -> {l}" for c, l in zip(cases, lines) if not l.startswith("OK ")]
    assert not bad, "tiling invariants violated:\n" + "\n".join(bad[:20])


def _field(line, name):
    for tok in line.split():
        if tok.startswith(name + "="):
            return tok.split("=", 1)[1]
    raise KeyError(name)


SIZES = [1, 2, 3, 5, 7, 8, 16, 17, 31, 32, 33, 56, 100, 112]
EXTENTS = [0, 1, 2, 3, 4, 5, 7, 8, 16, 32, 64, 1000]


def test_tiling_grid(tiling_driver):
    """Every op x dtype x residual x extent over a grid of plane sizes, Atlas A2 UB."""
    cases = []
    for H, W in itertools.product(SIZES, SIZES):
        for extent in EXTENTS:
            for op in OPS:
                for dtype_bytes in (2, 4):
                    residual = int(op in ("ge_fwd", "ex_fwd") and (H + W + extent) % 2 == 0)
                    cases.append(_case(2, 3, H, W, extent, op, dtype_bytes, residual, cores=7))
    _assert_ok(cases, tiling_driver(cases))


def test_tiling_random(tiling_driver):
    """Random shapes, core counts and (small) UB sizes, which force segments and STREAM chunks."""
    rng = random.Random(5)
    cases = []
    for _ in range(1500):
        N, C = rng.randint(1, 3), rng.randint(1, 5)
        H, W = rng.choice([rng.randint(1, 40), rng.randint(1, 300)]), rng.choice([rng.randint(1, 40), rng.randint(1, 300)])
        extent = rng.choice([0, 0, rng.randint(1, 9), rng.randint(1, 64), rng.randint(1, 400)])
        op = rng.choice(list(OPS))
        ub = rng.choice([UB_A2, 256 * KB, 24 * KB, 12 * KB, 10 * KB])
        cores = rng.choice([1, 2, 7, 20, 40, 48])
        cases.append(_case(N, C, H, W, extent, op, rng.choice([2, 4]), rng.randint(0, 1), cores, ub))
    _assert_ok(cases, tiling_driver(cases))


def test_tiling_big_and_odd(tiling_driver):
    """Planes bigger than UB (two-sweep chunks), very wide and very tall planes, edge tiles."""
    cases = [
        _case(1, 2, 2048, 2048, 0),            # 4 Mi elements per plane: STREAM, 1-row chunks
        _case(1, 1, 1, 300000, 0, "ge_bwd", 4),
        _case(1, 1, 300000, 1, 5, "ex_bwd"),   # tall and thin, tiled
        _case(1, 1, 3, 200000, 4, "ge_fwd", 4),  # very wide rows: band split into segments
        _case(1, 1, 5000, 3, 4, "ge_bwd", 2),
        _case(1, 1, 4500, 4400, 4200, "ge_fwd", 4),  # tiles taller than DataCopyPad's 4095 rows
        _case(1, 1, 300, 300, 200, "ex_fwd", 2, 1, 48, 24 * KB),  # tile rows wider than UB
        _case(2, 2, 113, 227, 112, "ex_bwd", 4, 0, 3, 12 * KB),
        _case(1, 1, 1, 1, 0), _case(1, 1, 1, 1, 1), _case(3, 1, 1, 7, 2),
    ]
    _assert_ok(cases, tiling_driver(cases))


def test_tiling_empty_and_errors(tiling_driver):
    cases = [_case(0, 3, 8, 8, 0), _case(2, 0, 8, 8, 2), _case(2, 3, 0, 8, 0), _case(2, 3, 8, 0, 4),
             _case(2, 3, 8, 8, 0, ub=8 * KB + 64)]
    lines = tiling_driver(cases)
    assert all(l.startswith("OK ") and _field(l, "items") == "0" and _field(l, "cores") == "0" for l in lines[:4]), lines
    assert lines[4].startswith("THROW") and "Unified Buffer" in lines[4], lines[4]


def test_tiling_design_expectations(tiling_driver):
    """The seed's shapes (WRN-16-8 on CIFAR, global GE): one plane per item, read once,
    all 48 vector cores busy; tiled extents keep whole bands resident."""
    cases = [_case(128, C, S, S, 0, op, 2, int(op == "ge_fwd"))
             for C, S in ((128, 32), (256, 16), (512, 8)) for op in OPS]
    lines = tiling_driver(cases)
    _assert_ok(cases, lines)
    for c, l in zip(cases, lines):
        assert _field(l, "mode") == "resident", l
        assert _field(l, "cores") == "48", l
        assert _field(l, "view") == f"1x{c[2] * c[3]}", l
    (l,) = tiling_driver([_case(8, 64, 56, 56, 4, "ge_bwd", 2)])
    assert _field(l, "mode") == "resident" and _field(l, "seg_tiles") == "14", l
    (l,) = tiling_driver([_case(1, 1, 512, 512, 0, "ge_fwd", 2)])  # 256 Ki elements > UB
    assert _field(l, "mode") == "stream", l


# ------------------------------------------- the kernels on a CPU stand-in of Ascend C
# kernels/genet_ops_kernels.cpp compiled with g++ against csrc/ascend/emu/kernel_operator.h
# (our functional model of the Ascend C calls the kernels make; NOT CANN, no timing, no
# concurrency, cores run one after another). This checks the kernels' index arithmetic,
# buffer use and math against genet_ops.reference; it cannot check the real compiler,
# the real API or the hardware.
HARNESS = r"""
#include "kernels/genet_ops_kernels.cpp"
#include "tiling.h"

using namespace genet_ops::ascend;

#define GENET_EMU_DISPATCH(NAME, ...)                                   \
  do {                                                                  \
    if (dtype == 0) genet_##NAME##_fp16(__VA_ARGS__);                  \
    else if (dtype == 1) genet_##NAME##_bf16(__VA_ARGS__);             \
    else genet_##NAME##_fp32(__VA_ARGS__);                             \
  } while (0)

extern "C" int genet_emu_run(int op, int dtype, int64_t N, int64_t C, int64_t H, int64_t W, int64_t extent,
                             int has_res, uint8_t* x, uint8_t* aux, uint8_t* g, uint8_t* out, uint8_t* dg,
                             int64_t g_elems, int64_t cores, int64_t ub, char* msg, int msglen) {
  try {
    TilingRequest rq;
    rq.N = N; rq.C = C; rq.H = H; rq.W = W; rq.extent = extent; rq.op = op;
    rq.dtype_bytes = dtype == 2 ? 4 : 2; rq.has_residual = has_res != 0; rq.core_num = cores; rq.ub_bytes = ub;
    const GenetTiling t = compute_tiling(rq);
    const int64_t bytes = N * C * H * W * rq.dtype_bytes, gbytes = g_elems * rq.dtype_bytes;
    auto& regions = genet_emu::gm_regions();
    regions.clear();
    regions.push_back({x, bytes, "x"});
    regions.push_back({out, bytes, "out"});
    if (aux) regions.push_back({aux, bytes, "aux"});
    if (g) regions.push_back({g, gbytes, "g"});
    if (dg) regions.push_back({dg, gbytes, "dg"});
    genet_emu::ub_capacity() = ub - kUbReserveBytes;  // the plan must respect its own budget
    genet_emu::block_num() = t.used_cores;
    for (int64_t core = 0; core < t.used_cores; ++core) {
      genet_emu::block_idx() = core;
      if (op == GENET_OP_GE_FWD) GENET_EMU_DISPATCH(ge_fwd, x, aux, out, t);
      if (op == GENET_OP_GE_BWD) GENET_EMU_DISPATCH(ge_bwd, aux, x, out, t);
      if (op == GENET_OP_EX_FWD) GENET_EMU_DISPATCH(ex_fwd, x, g, aux, out, t);
      if (op == GENET_OP_EX_BWD) GENET_EMU_DISPATCH(ex_bwd, aux, x, g, out, dg, t);
    }
    std::snprintf(msg, msglen, "%s", describe(t).c_str());
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(msg, msglen, "%s", e.what());
    return 1;
  }
}
"""


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    import ctypes

    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler on PATH to build the Ascend C stand-in")
    out = tmp_path_factory.mktemp("ascend_emu")
    (out / "harness.cpp").write_text(HARNESS)
    lib = out / "libgenet_emu.so"
    cmd = [cxx, "-std=c++17", "-O1", "-g", "-shared", "-fPIC", "-Wall", "-Wno-unused-function",
           "-I", str(ASCEND / "emu"), "-I", str(ASCEND), str(out / "harness.cpp"), str(ASCEND / "tiling.cpp"),
           "-o", str(lib)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and "_Float16" in proc.stderr:
        pytest.skip(f"{cxx} lacks _Float16, which the stand-in uses for half")
    assert proc.returncode == 0, f"compiling the kernels against the stand-in failed:\n{proc.stderr}"
    dll = ctypes.CDLL(str(lib))
    f = dll.genet_emu_run
    i64, vp = ctypes.c_int64, ctypes.c_void_p
    f.argtypes = [ctypes.c_int, ctypes.c_int, i64, i64, i64, i64, i64, ctypes.c_int, vp, vp, vp, vp, vp, i64, i64, i64,
                  ctypes.c_char_p, ctypes.c_int]
    f.restype = ctypes.c_int

    def run(op, x, extent, aux=None, g=None, cores=7, ub=UB_A2):
        """Runs one kernel over every core; returns (out, dg or None, tiling description)."""
        from genet_ops import checks
        dtype = {torch.float16: 0, torch.bfloat16: 1, torch.float32: 2}[x.dtype]
        out_t = torch.empty_like(x).fill_(float("nan"))
        gshape = checks.g_shape(x.shape, extent)
        dg = torch.full(gshape, float("nan"), dtype=x.dtype) if op == "ex_bwd" else None
        ptr = lambda t: None if t is None else t.data_ptr()
        msg = ctypes.create_string_buffer(4096)
        gel = 1
        for s in gshape:
            gel *= s
        rc = f(OPS[op], dtype, *x.shape, extent, int(aux is not None and op in ("ge_fwd", "ex_fwd")), ptr(x), ptr(aux),
               ptr(g), ptr(out_t), ptr(dg), gel, cores, ub, msg, len(msg))
        text = msg.value.decode()
        assert rc == 0, text
        return out_t, dg, text

    return run


EMU_TOL = {torch.float32: dict(atol=2e-5, rtol=2e-5), torch.float16: dict(atol=1e-3, rtol=1e-3),
           torch.bfloat16: dict(atol=8e-3, rtol=8e-3)}
EMU_SHAPES = [((2, 3, 8, 8), 0), ((2, 3, 8, 8), 2), ((2, 5, 7, 9), 3), ((1, 2, 33, 17), 4), ((3, 4, 32, 32), 0),
              ((1, 2, 5, 5), 1), ((2, 2, 9, 9), 100), ((1, 3, 6, 40), 8), ((1, 1, 1, 1), 0), ((2, 1, 3, 70), 5)]


def _emu_check(emu, shape, extent, dtype, ub, cores=7):
    torch.manual_seed(hash((shape, extent)) % 2**31)
    from genet_ops import checks
    x = torch.randn(shape).to(dtype)
    res = torch.randn(shape).to(dtype)
    dy = torch.randn(shape).to(dtype)
    g = torch.randn(checks.g_shape(shape, extent)).to(dtype)
    tol = EMU_TOL[dtype]

    def close(a, b, what, desc):
        torch.testing.assert_close(a.float(), b.float(), **tol, msg=lambda m: f"{what} [{desc}]\n{m}")

    y, _, d = emu("ge_fwd", x, extent, cores=cores, ub=ub)
    close(y, reference.gather_excite(x, extent), "gather_excite", d)
    y, _, d = emu("ge_fwd", x, extent, aux=res, cores=cores, ub=ub)
    close(y, reference.gather_excite(x, extent, res), "gather_excite+residual", d)
    dx, _, d = emu("ge_bwd", x, extent, aux=dy, cores=cores, ub=ub)
    close(dx, reference.gather_excite_backward(dy, x, extent), "gather_excite_backward", d)
    y, _, d = emu("ex_fwd", x, extent, g=g, cores=cores, ub=ub)
    close(y, reference.excite(x, g, extent), "excite", d)
    y, _, d = emu("ex_fwd", x, extent, aux=res, g=g, cores=cores, ub=ub)
    close(y, reference.excite(x, g, extent, res), "excite+residual", d)
    dx, dg, d = emu("ex_bwd", x, extent, aux=dy, g=g, cores=cores, ub=ub)
    rdx, rdg = reference.excite_backward(dy, x, g, extent)
    close(dx, rdx, "excite_backward dx", d)
    close(dg, rdg, "excite_backward dg", d)
    return d


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape,extent", EMU_SHAPES)
def test_kernels_on_cpu_standin_resident(emu, shape, extent, dtype):
    """Atlas A2 UB: whole bands / planes resident, several tiles per block where tiled."""
    _emu_check(emu, shape, extent, dtype, UB_A2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape,extent,ub", [
    ((1, 2, 40, 40), 0, 24 * KB),     # plane > budget: STREAM, two sweeps, multi-row chunks
    ((1, 2, 70, 70), 0, 12 * KB),     # STREAM, 1-row chunks narrower than the row
    ((2, 2, 50, 44), 30, 12 * KB),    # tiled STREAM with edge tiles
    ((1, 3, 12, 200), 3, 10 * KB),    # RESIDENT, bands split into segments
    ((2, 2, 33, 65), 8, 11 * KB),     # segments with a partial last tile
])
def test_kernels_on_cpu_standin_small_ub(emu, shape, extent, ub, dtype):
    """A small UB budget forces segments and STREAM chunks on small shapes."""
    d = _emu_check(emu, shape, extent, dtype, ub, cores=3)
    assert "items=" in d


def test_kernels_on_cpu_standin_modes_covered(emu):
    """The small-UB cases above really reach both modes and multi-tile segments."""
    x = torch.randn(1, 2, 40, 40)
    assert "mode=stream" in emu("ge_fwd", x, 0, ub=24 * KB)[2]
    d = emu("ge_bwd", torch.randn(1, 3, 12, 200), 3, aux=torch.randn(1, 3, 12, 200), ub=10 * KB)[2]
    assert "mode=resident" in d and _field(d, "seg_tiles") not in ("1", str(-(-200 // 3))), d


def test_kernels_on_cpu_standin_refuses_tiny_ub(emu):
    """A UB that cannot hold one 32-byte row per buffer is refused with a message."""
    with pytest.raises(AssertionError, match="Unified Buffer"):
        emu("ge_fwd", torch.randn(1, 1, 8, 8), 0, ub=8 * KB + 64)


def test_cpu_standin_detects_a_kernel_bug(tmp_path):
    """Meta-test: the same harness, on a kernel with its zero padding removed (a real
    class of bug: padded lanes leak into the tile sums), must fail."""
    import ctypes

    cxx = os.environ.get("CXX") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    bad = tmp_path / "ascend"
    shutil.copytree(ASCEND, bad)
    src = (bad / "kernels" / "genet_ops_kernels.cpp").read_text()
    needle = "pad.rightPadding = static_cast<uint8_t>(pitch - cols);"
    assert needle in src
    (bad / "kernels" / "genet_ops_kernels.cpp").write_text(src.replace(needle, "pad.rightPadding = 0;"))
    (tmp_path / "harness.cpp").write_text(HARNESS)
    lib = tmp_path / "libbad.so"
    proc = subprocess.run([cxx, "-std=c++17", "-O1", "-shared", "-fPIC", "-I", str(bad / "emu"), "-I", str(bad),
                           str(tmp_path / "harness.cpp"), str(bad / "tiling.cpp"), "-o", str(lib)],
                          capture_output=True, text=True)
    if proc.returncode != 0 and "_Float16" in proc.stderr:
        pytest.skip("compiler lacks _Float16")
    assert proc.returncode == 0, proc.stderr
    f = ctypes.CDLL(str(lib)).genet_emu_run
    # extent 11 on 12 x 10: one tile per band, 11 rows of 10 fp16 (20 bytes, padded to 32)
    x = torch.randn(1, 3, 12, 10).half()
    out = torch.empty_like(x)
    msg = ctypes.create_string_buffer(4096)
    i64 = ctypes.c_int64
    f.argtypes = [ctypes.c_int, ctypes.c_int, i64, i64, i64, i64, i64, ctypes.c_int] + [ctypes.c_void_p] * 5 + \
                 [i64, i64, i64, ctypes.c_char_p, ctypes.c_int]
    assert f(0, 0, 1, 3, 12, 10, 11, 0, x.data_ptr(), None, None, out.data_ptr(), None, 3, 3, UB_A2, msg, 4096) == 0
    ok = torch.allclose(out.float(), reference.gather_excite(x, 11).float(), atol=1e-3, rtol=1e-3)
    assert not ok, "the stand-in did not notice garbage in the padded lanes"


def _aclrtlaunch_headers(out_dir: Path) -> list[str]:
    """Writes aclrtlaunch_<kernel>.h for every kernel entry, as CANN's generator does:
    GM pointers become void*, the tiling struct a pointer, blockDim and stream come first.
    The entries are read from the preprocessed kernel source (macros expanded)."""
    import re

    cxx = os.environ.get("CXX") or shutil.which("g++")
    pre = subprocess.run([cxx, "-std=c++17", "-E", "-P", "-I", str(ASCEND / "emu"), "-I", str(ASCEND),
                          str(ASCEND / "kernels" / "genet_ops_kernels.cpp")], capture_output=True, text=True)
    assert pre.returncode == 0, pre.stderr
    names = []
    for name, params in re.findall(r'extern "C"\s+void\s+(genet_\w+)\s*\(([^)]*)\)', pre.stdout):
        args = []
        for p in params.split(","):
            p = " ".join(p.split())
            typ, arg = p.rsplit(" ", 1)
            typ = "void*" if typ.endswith("*") else (typ + "*" if typ == "GenetTiling" else typ)
            args.append(f"{typ} {arg}")
        (out_dir / f"aclrtlaunch_{name}.h").write_text(
            f'#pragma once\n#include "acl/acl_base.h"\n#include <stdint.h>\nstruct GenetTiling;\n'
            f"#ifndef ACLRT_LAUNCH_KERNEL\n#define ACLRT_LAUNCH_KERNEL(kernel_func) aclrtlaunch_##kernel_func\n#endif\n"
            f'extern "C" uint32_t aclrtlaunch_{name}(uint32_t blockDim, aclrtStream stream, {", ".join(args)});\n')
        names.append(name)
    return names


def test_launcher_compiles_against_stubs(tmp_path):
    """csrc/ascend/launcher.cpp compiles (-fsyntax-only) against this torch's headers, with
    stand-ins for torch_npu and CANN (csrc/ascend/emu/host) and aclrtlaunch headers
    generated from the kernel entries: the launcher's calls match the kernels' signatures.
    Not a substitute for building on a CANN machine."""
    from torch.utils import cpp_extension

    cxx = os.environ.get("CXX") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    names = _aclrtlaunch_headers(tmp_path)
    assert sorted(names) == sorted(f"genet_{op}_{dt}" for op in OPS for dt in ("fp16", "bf16", "fp32"))
    incs = [str(tmp_path), str(ASCEND / "emu" / "host"), str(ASCEND), str(ROOT / "csrc")] + cpp_extension.include_paths()
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    cmd = [cxx, "-std=c++20", "-fsyntax-only", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror",
           f"-D_GLIBCXX_USE_CXX11_ABI={abi}"] + [f"-I{d}" for d in incs] + [str(ASCEND / "launcher.cpp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]


# ------------------------------------------------------------- the build guard
def _load_build_py():
    import importlib.util

    spec = importlib.util.spec_from_file_location("genet_ascend_build_test", ASCEND / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("env,expect", [
    ({"GENET_OPS_ASCEND": "0"}, "GENET_OPS_ASCEND=0"),
    ({}, "no CANN toolkit"),
    ({"ASCEND_HOME_PATH": "{tmp}"}, "SOC_VERSION is not set"),
    ({"ASCEND_TOOLKIT_HOME": "{tmp}", "SOC_VERSION": "Ascend310P3"}, "not an Atlas A2/A3 SoC"),
])
def test_build_guard_says_why(monkeypatch, tmp_path, env, expect):
    """setup.py's Ascend hook skips with ONE line saying why, and adds nothing."""
    build = _load_build_py()
    for var in ("GENET_OPS_ASCEND", "ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME", "SOC_VERSION"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v.format(tmp=tmp_path))
    lines = []
    assert build.configure(str(ROOT), lines.append) is None
    assert len(lines) == 1 and lines[0].startswith("Ascend kernels skipped: ") and expect in lines[0], lines
    monkeypatch.setenv("GENET_OPS_ASCEND", "1")
    if expect != "GENET_OPS_ASCEND=0":
        with pytest.raises(SystemExit, match="GENET_OPS_ASCEND=1 but"):
            build.configure(str(ROOT), lines.append)


def test_build_guard_torch_npu(monkeypatch, tmp_path):
    """With CANN and an A2 SoC named but no torch_npu (this machine), it still skips."""
    build = _load_build_py()
    monkeypatch.setenv("ASCEND_HOME_PATH", str(tmp_path))
    monkeypatch.setenv("SOC_VERSION", "Ascend910B3")
    monkeypatch.delenv("GENET_OPS_ASCEND", raising=False)
    reason = build.why_not()
    if reason is None:
        pytest.skip("torch_npu imports and cmake is present here: the guard would build")
    assert "torch_npu" in reason or "cmake" in reason, reason


# ------------------------------------------------------------------ the NPU path
def _npu_skip_reason() -> str | None:
    try:
        import torch_npu  # noqa: F401
    except Exception as exc:  # ImportError, or torch_npu failing to find CANN
        return f"torch_npu does not import here ({type(exc).__name__}: {exc}); the Ascend path needs CANN and an NPU"
    if not (hasattr(torch, "npu") and torch.npu.is_available() and torch.npu.device_count() > 0):
        return "torch_npu imports but no NPU is available"
    return None


_NPU_SKIP = _npu_skip_reason()
requires_npu = pytest.mark.skipif(_NPU_SKIP is not None, reason=_NPU_SKIP or "")


def _ascend_compiled() -> bool:
    return genet_ops.backend_info()["kernels"]["gather_excite"].get("npu") == "ascend"


NPU_DTYPES = [(torch.float32, 1e-5, 1e-5), (torch.float16, 2e-3, 2e-3), (torch.bfloat16, 2e-2, 2e-2)]
NPU_SHAPES = [((2, 3, 8, 8), 0), ((2, 3, 8, 8), 2), ((2, 5, 7, 9), 3), ((1, 2, 33, 17), 4), ((2, 4, 32, 32), 0),
              ((1, 2, 5, 5), 1), ((1, 1, 300, 300), 0), ((1, 2, 64, 640), 8), ((1, 1, 9, 9), 100)]


@requires_npu
def test_npu_kernels_are_compiled():
    assert _ascend_compiled(), (
        "genet_ops on this NPU machine runs the reference, not the Ascend C kernels: "
        f"{genet_ops.backend_info()} (rebuild with CANN, see csrc/ascend/README.md)")


@requires_npu
@pytest.mark.parametrize("dtype,atol,rtol", NPU_DTYPES)
@pytest.mark.parametrize("shape,extent", NPU_SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_npu_parity(shape, extent, dtype, atol, rtol, channels_last):
    dev = "npu"
    torch.manual_seed(0)
    mf = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(shape, device=dev, dtype=dtype).to(memory_format=mf)
    res = torch.randn(shape, device=dev, dtype=dtype).to(memory_format=mf)
    dy = torch.randn(shape, device=dev, dtype=dtype).to(memory_format=mf)
    from genet_ops import checks
    g = torch.randn(checks.g_shape(shape, extent), device=dev, dtype=dtype)
    ops = torch.ops.genet_ops

    def close(a, b):
        assert a.shape == b.shape and a.stride() == b.stride(), (a.stride(), b.stride())
        torch.testing.assert_close(a.float().cpu(), b.float().cpu(), atol=atol, rtol=rtol)

    close(ops.gather_excite(x, extent), reference.gather_excite(x, extent))
    close(ops.gather_excite(x, extent, res), reference.gather_excite(x, extent, res))
    close(ops.gather_excite_backward(dy, x, extent), reference.gather_excite_backward(dy, x, extent))
    close(ops.excite(x, g, extent), reference.excite(x, g, extent))
    close(ops.excite(x, g, extent, res), reference.excite(x, g, extent, res))
    dx, dg = ops.excite_backward(dy, x, g, extent)
    rdx, rdg = reference.excite_backward(dy, x, g, extent)
    close(dx, rdx)
    close(dg, rdg)


@requires_npu
def test_npu_opcheck_and_empty():
    x = torch.randn(2, 3, 9, 7, device="npu")
    g = torch.randn(2, 3, 3, 3, device="npu")
    torch.library.opcheck(torch.ops.genet_ops.gather_excite.default, (x, 3))
    torch.library.opcheck(torch.ops.genet_ops.excite.default, (x, g, 3))
    e = torch.randn(0, 3, 8, 8, device="npu")
    assert torch.ops.genet_ops.gather_excite(e, 0).shape == e.shape


def test_npu_path_status_is_reported():
    """Runs everywhere: says which NPU kernel the package would use, so a skipped NPU
    run is visible in the log rather than silent."""
    info = genet_ops.backend_info()
    assert info["kernels"]["gather_excite"]["npu"] in ("ascend", "reference")
    if _NPU_SKIP is not None:
        assert info["kernels"]["gather_excite"]["npu"] == "reference"
