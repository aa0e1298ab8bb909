// Tiling for the Ascend C kernels. See tiling_data.h for the vocabulary and
// csrc/ascend/README.md for the design; tests/test_ascend.py checks the invariants.
#include "tiling.h"

#include <sstream>
#include <stdexcept>

namespace genet_ops {
namespace ascend {
namespace {

// The UB bytes the kernel would allocate for a block/chunk of `crows` x `ccols`
// elements with `seg_tiles` tiles per item (everything else taken from t).
int64_t ub_for(GenetTiling t, int op, int64_t crows, int64_t ccols, int64_t seg_tiles) {
  const int64_t pitch = genet_pitch(ccols, t.align);
  t.crows = crows;
  t.ccols = ccols;
  t.seg_tiles = seg_tiles;
  t.buf_elems = genet_buf_elems(crows, pitch, t.relu);
  t.row_elems = (t.mode == GENET_MODE_RESIDENT && seg_tiles > 1) ? pitch : 0;
  t.tile_elems = genet_round_up(genet_max(seg_tiles, t.plane_batch), GENET_TILE_ALIGN);
  t.red_elems = genet_red_elems(t.buf_elems);
  t.batch_elems = genet_batch_elems(t.plane_batch, pitch);
  t.mask_bytes = genet_mask_bytes(t.buf_elems, t.relu);
  return genet_ub_bytes(t, op);
}

// Largest v in [lo, hi] with ok(v), given ok(lo) and ok monotone (true then false).
template <typename F>
int64_t largest(int64_t lo, int64_t hi, F ok) {
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (ok(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

void finish(GenetTiling& t, const TilingRequest& req, int op) {
  const int64_t pitch = genet_pitch(t.ccols, t.align);
  t.buf_elems = genet_buf_elems(t.crows, pitch, t.relu);
  t.mask_bytes = genet_mask_bytes(t.buf_elems, t.relu);
  t.row_elems = (t.mode == GENET_MODE_RESIDENT && t.seg_tiles > 1) ? pitch : 0;
  t.tile_elems = genet_round_up(genet_max(t.seg_tiles, t.plane_batch), GENET_TILE_ALIGN);
  t.red_elems = genet_red_elems(t.buf_elems);
  t.nseg = genet_ceil_div(t.tw, t.seg_tiles);
  if (t.plane_batch < 1) t.plane_batch = 1;
  t.batch_elems = genet_batch_elems(t.plane_batch, pitch);
  t.items = genet_ceil_div(t.planes, t.plane_batch) * t.th * t.nseg;
  t.used_cores = genet_min(t.items, req.core_num);
  t.items_per_core = t.items / t.used_cores;
  t.big_cores = t.items % t.used_cores;
  (void)op;
}

}  // namespace

GenetTiling compute_tiling(const TilingRequest& req) {
  if (req.N < 0 || req.C < 0 || req.H < 0 || req.W < 0 || req.extent < 0)
    throw std::invalid_argument("genet_ops ascend tiling: negative size or extent");
  if (req.dtype_bytes != 2 && req.dtype_bytes != 4)
    throw std::invalid_argument("genet_ops ascend tiling: dtype must be 2 or 4 bytes");
  if (req.op < GENET_OP_GE_FWD || req.op > GENET_OP_EX_LEAN_BWD)
    throw std::invalid_argument("genet_ops ascend tiling: unknown op");
  if (req.core_num < 1)
    throw std::invalid_argument("genet_ops ascend tiling: core_num must be >= 1");
  const int op = req.op;

  GenetTiling t{};
  t.dtype_bytes = req.dtype_bytes;
  t.align = GENET_BLOCK_BYTES / req.dtype_bytes;
  const bool fwd = op == GENET_OP_GE_FWD || op == GENET_OP_EX_FWD, lean = op == GENET_OP_EX_LEAN_BWD;
  t.has_residual = (req.has_residual && (fwd || lean)) ? 1 : 0;
  t.relu = (req.relu && (fwd || lean)) ? 1 : 0;
  t.gather = (req.gather && lean) ? 1 : 0;
  t.means = (req.means && op == GENET_OP_GE_FWD) ? 1 : 0;
  t.planes = req.N * req.C;

  const bool global = req.extent == 0 || req.extent >= (req.H > req.W ? req.H : req.W);
  if (global) {  // one contiguous row of H*W elements, one tile
    t.rows = 1;
    t.cols = req.H * req.W;
    t.eh = 1;
    t.ew = genet_max(t.cols, 1);
  } else {
    t.rows = req.H;
    t.cols = req.W;
    t.eh = req.extent;
    t.ew = req.extent;
  }
  t.th = genet_max(genet_ceil_div(t.rows, t.eh), 1);
  t.tw = genet_max(genet_ceil_div(t.cols, t.ew), 1);

  if (t.planes == 0 || t.rows == 0 || t.cols == 0) {  // empty: nothing to launch
    t.mode = GENET_MODE_RESIDENT;
    t.seg_tiles = 1;
    t.plane_batch = 1;
    t.nseg = 1;
    t.items = 0;
    t.used_cores = 0;
    t.crows = t.ccols = 0;
    t.tile_elems = GENET_TILE_ALIGN;
    t.red_elems = genet_red_elems(0);
    return t;
  }

  const int64_t budget = req.ub_bytes - kUbReserveBytes;
  const int64_t tile_rows = genet_min(t.eh, t.rows);  // rows of the tallest tile
  const int64_t tile_cols = genet_min(t.ew, t.cols);  // columns of the widest tile

  // RESIDENT: a whole band segment (eh rows, seg_tiles tiles) per queue buffer, read once.
  t.mode = GENET_MODE_RESIDENT;
  auto resident_fits = [&](int64_t seg) {
    const int64_t cols = genet_min(seg * t.ew, t.cols);
    return ub_for(t, op, tile_rows, cols, seg) <= budget &&
           cols * t.dtype_bytes <= GENET_MAX_BLOCK_LEN;
  };
  if (tile_rows <= GENET_MAX_BLOCK_COUNT && resident_fits(1)) {
    t.seg_tiles = largest(1, t.tw, resident_fits);
    t.crows = tile_rows;
    t.ccols = genet_min(t.seg_tiles * t.ew, t.cols);
    // Global extent: batch planes as UB rows, as many as fit (one repeat each, <= 255),
    // without leaving cores idle. Rows must be reachable by a repeat stride (<= 255 blocks).
    const int64_t fpitch = genet_pitch(t.cols, t.align);
    if (global && fpitch <= GENET_MAX_REP_STRIDE * 8) {
      auto batch_fits = [&](int64_t pb) {
        GenetTiling b = t;
        b.plane_batch = pb;
        return ub_for(b, op, pb, t.cols, 1) <= budget;
      };
      const int64_t cap = genet_min(GENET_MAX_REPEAT, genet_ceil_div(t.planes, req.core_num));
      if (cap > 1 && batch_fits(2)) {
        t.plane_batch = largest(2, cap, batch_fits);
        t.crows = t.plane_batch;
      }
    }
    finish(t, req, op);
    return t;
  }

  // STREAM: one tile per item, read in chunks. Whole tile rows when one fits, else
  // pieces of a row (a multiple of 32 bytes wide).
  t.mode = GENET_MODE_STREAM;
  t.seg_tiles = 1;
  auto rows_fit = [&](int64_t r) { return ub_for(t, op, r, tile_cols, 1) <= budget; };
  if (rows_fit(1) && tile_cols * t.dtype_bytes <= GENET_MAX_BLOCK_LEN) {
    t.ccols = tile_cols;
    t.crows = largest(1, genet_min(tile_rows, GENET_MAX_BLOCK_COUNT), rows_fit);
  } else {
    auto cols_fit = [&](int64_t units) { return ub_for(t, op, 1, units * t.align, 1) <= budget; };
    if (!cols_fit(1)) {
      std::ostringstream os;
      os << "genet_ops ascend tiling: " << req.ub_bytes
         << " bytes of Unified Buffer cannot hold one 32-byte row per buffer";
      throw std::invalid_argument(os.str());
    }
    const int64_t max_units = genet_max(1, (tile_cols - 1) / t.align);  // strictly narrower than the tile
    t.crows = 1;
    t.ccols = largest(1, max_units, cols_fit) * t.align;
  }
  finish(t, req, op);
  return t;
}

std::string describe(const GenetTiling& t) {
  std::ostringstream os;
  os << "planes=" << t.planes << " view=" << t.rows << "x" << t.cols << " tile=" << t.eh << "x" << t.ew
     << " tiles=" << t.th << "x" << t.tw << " mode=" << (t.mode == GENET_MODE_RESIDENT ? "resident" : "stream")
     << " seg_tiles=" << t.seg_tiles << " items=" << t.items << " cores=" << t.used_cores
     << " q=" << t.items_per_core << " big=" << t.big_cores << " chunk=" << t.crows << "x" << t.ccols
     << " buf_elems=" << t.buf_elems << " row_elems=" << t.row_elems << " tile_elems=" << t.tile_elems
     << " red_elems=" << t.red_elems << " dtype_bytes=" << t.dtype_bytes << " residual=" << t.has_residual
     << " plane_batch=" << t.plane_batch << " relu=" << t.relu << " gather=" << t.gather << " means=" << t.means;
  return os.str();
}

}  // namespace ascend
}  // namespace genet_ops
