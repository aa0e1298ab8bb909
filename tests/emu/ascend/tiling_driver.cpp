// Tiling driver for tests/test_ascend.py (test_tiling_*): reads one request per line on
// stdin, computes the tiling (csrc/ascend/tiling.cpp), replays what every AI core would do
// with the index arithmetic of csrc/ascend/tiling_data.h and prints OK / FAIL / THROW.
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
  CHECK(t.items == (t.planes + t.plane_batch - 1) / t.plane_batch * t.th * t.nseg, "items != ceil(planes/plane_batch)*th*nseg");
  CHECK(t.plane_batch == 1 || (global && t.mode == GENET_MODE_RESIDENT && t.plane_batch <= GENET_MAX_REPEAT), "plane_batch");
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
    const int64_t fq = 2 * t.tile_elems * 4;  // a double-buffered queue of fp32 tiles (lean g / dg, means)
    const int64_t work = T == 4 ? 0 : 2 * t.buf_elems * 4, row = t.row_elems * 4;  // fp32: none
    int64_t want = 0;
    if (op == 0) want = q * (2 + t.has_residual) + work + 2 * row + tiles + red + (t.means ? fq : 0);  // x[,res] -> y[, means]
    if (op == 1) want = q * 3 + work + 4 * row + tiles + red;                             // dy, x -> dx
    if (op == 2) want = q * (2 + t.has_residual) + work + 1 * row + tiles + gq + red;     // x[,res], g -> y
    if (op == 3) want = q * 3 + work + 2 * row + tiles + 2 * gq + red;                    // dy, x, g -> dx, dg
    if (op == 4) want = q * (3 + t.has_residual) + work + 3 * row + tiles + 2 * fq + red; // dy, out[,res], g -> dx, dg
    if (t.relu) want += (t.buf_elems / 8 + 31) / 32 * 32;  // the select mask: a bit per lane
    if (t.plane_batch > 1)  // Brcb blocks (8 fp32 per row) + one row-sum vector per 64-lane strip
      want += (8 + (genet_pitch(t.cols, t.align) + 63) / 64) * ((t.plane_batch + 7) / 8 * 8) * 4;
    CHECK(ub == want, "genet_ub_bytes " << ub << " != the kernel's buffers " << want);
  }
  CHECK(ub <= rq.ub_bytes - kUbReserveBytes, "UB " << ub << " > budget " << rq.ub_bytes - kUbReserveBytes);
  CHECK(t.align * T == 32, "align");
  CHECK(aligned(t.buf_elems, T) && aligned(t.buf_elems, 4), "buf_elems not 32B aligned");
  CHECK(aligned(t.row_elems, 4), "row_elems not 32B aligned");
  CHECK(aligned(t.tile_elems, T) && aligned(t.tile_elems, 4), "tile_elems not 32B aligned");
  CHECK(aligned(t.red_elems, 4), "red_elems not 32B aligned");
  CHECK(t.red_elems >= genet_red_elems(t.buf_elems), "ReduceSum work too small");
  CHECK(t.seg_tiles <= t.tile_elems && t.plane_batch <= t.tile_elems, "tile arrays too small");
  CHECK(t.has_residual == ((rq.has_residual && (op == 0 || op == 2 || op == 4)) ? 1 : 0), "has_residual");
  CHECK(t.relu == ((rq.relu && (op == 0 || op == 2 || op == 4)) ? 1 : 0), "relu");
  CHECK(t.gather == ((rq.gather && op == 4) ? 1 : 0) && t.means == ((rq.means && op == 0) ? 1 : 0), "gather / means");
  // with ReLU the mask instructions run over whole 64-lane repeats of every buffer
  if (t.relu) CHECK(t.buf_elems % 64 == 0 && t.mask_bytes * 8 >= t.buf_elems, "ReLU buffers not whole 64-lane repeats");
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
        // the tile this element belongs to in the block: its column, or with plane batches its row
        const int64_t batched = t.plane_batch > 1 ? r0 + r : 0;
        const int64_t k = t.plane_batch > 1 ? r0 + r : (c0 + c) / t.ew;
        CHECK(plane == b.plane + batched && ty == b.ty && tx == b.tx0 + (t.plane_batch > 1 ? 0 : k),
              "element " << idx << " in tile (" << ty << "," << tx << ") handled as (" << b.ty << ","
                         << b.tx0 + k << ")");
        tile_count[(plane * TH + ty) * TW + tx]++;
        (void)k;
      }
    }
  };
  for (int64_t i = 0; i < t.items; ++i) {
    const GenetBlock b = genet_block(t, i);
    if (t.plane_batch > 1) {  // rows = planes, one whole-plane tile each, g contiguous
      CHECK(global && b.rows == b.ntiles && b.cols == t.cols && b.rows <= GENET_MAX_REPEAT, "plane batch shape");
      CHECK(genet_pitch(b.cols, t.align) <= GENET_MAX_REP_STRIDE * 8, "plane batch row pitch over the repeat stride");
      CHECK(b.g_offset == b.plane && b.gm_offset == b.plane * t.cols, "plane batch offsets");
      for (int64_t k = 0; k < b.ntiles; ++k) if (b.plane + k < (int64_t)tile_seen.size()) tile_seen[b.plane + k]++;
      CHECK(b.rows <= t.crows, "block larger than crows");
      visit(b, 0, b.rows, 0, b.cols, b.gm_offset);
      if (!fail.empty()) return;
      continue;
    }
    CHECK(b.ntiles >= 1 && b.ntiles <= std::max(t.seg_tiles, t.plane_batch), "ntiles");
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
        const int64_t want = std::min(EH, H - ty * EH) * std::min(EW, W - tx * EW);  // |t| of docs/DESIGN.md §2
        CHECK(tile_seen[g] == 1, "tile " << g << " seen " << int(tile_seen[g]));
        CHECK(tile_count[g] == want, "tile " << g << " has " << tile_count[g] << " pixels, |t| = " << want);
      }
}

int main() {
  // one request per line: N C H W extent op dtype_bytes residual cores ub_bytes [relu gather means]
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    std::istringstream in(line);
    TilingRequest rq;
    int res = 0, relu = 0, gather = 0, means = 0;
    in >> rq.N >> rq.C >> rq.H >> rq.W >> rq.extent >> rq.op >> rq.dtype_bytes >> res >> rq.core_num >> rq.ub_bytes;
    in >> relu >> gather >> means;  // optional: absent reads as 0
    rq.has_residual = res != 0;
    rq.relu = relu != 0;
    rq.gather = gather != 0;
    rq.means = means != 0;
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
