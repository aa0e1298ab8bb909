// The tiling that the host computes and the Ascend C kernels receive, and the index
// arithmetic both sides share (which item a core takes, where a block or chunk lies,
// how many bytes of Unified Buffer the kernel allocates).
//
// This header has no Ascend and no torch includes: the kernel file includes it after
// kernel_operator.h with GENET_FN defined as `__aicore__ inline`, the host launcher and
// the CPU unit test (tests/test_ascend.py) include it as plain C++. So the traversal the
// unit test checks on the CPU is the very code the kernels run.
//
// Vocabulary (see csrc/ascend/README.md for the picture):
//   view    the plane as the kernels see it: `rows` x `cols` elements, row-major, tiles of
//           `eh` x `ew` elements, `th` x `tw` of them. Global extent (extent 0, or
//           extent >= max(H, W)) views the plane as ONE row of H*W elements holding ONE
//           tile, so it streams contiguously; a tiled extent e views it as H x W, tiles e x e.
//   band    one row of tiles of one plane (eh rows of the view).
//   segment `seg_tiles` consecutive tiles of a band (the last segment may hold fewer).
//   item    one (plane, band, segment): the unit of work split across the AI cores; with
//           global extent and plane_batch > 1, `plane_batch` consecutive planes instead,
//           one UB row (and one tile) each, reduced and scaled with repeat-form vector
//           instructions that take every row at once.
//   block   the rectangle of the view an item covers.
//   chunk   mode STREAM only: the piece of a block that one queue buffer holds.
//   mode    RESIDENT (0): a whole block fits one queue buffer; it is read once.
//           STREAM (1): one tile does not fit; each item is one tile, read in chunks of
//           at most `crows` x `ccols` (gather_excite and its backward read it twice: a
//           first sweep sums, a second one writes).
#ifndef GENET_OPS_ASCEND_TILING_DATA_H
#define GENET_OPS_ASCEND_TILING_DATA_H

#ifndef GENET_FN
#define GENET_FN inline
#endif

// The five kernels. (Plain ints: they are template arguments on the device side.)
#define GENET_OP_GE_FWD 0       // gather_excite (and gather_excite_lean: also writes the tile means)
#define GENET_OP_GE_BWD 1       // gather_excite_backward
#define GENET_OP_EX_FWD 2       // excite (and excite_lean)
#define GENET_OP_EX_BWD 3       // excite_backward
#define GENET_OP_EX_LEAN_BWD 4  // excite_lean_backward: reads grad_out, out, residual, g (fp32)

#define GENET_MODE_RESIDENT 0
#define GENET_MODE_STREAM 1

#define GENET_BUFFER_NUM 2          // every TQue is double-buffered
#define GENET_BLOCK_BYTES 32        // UB addresses and DataCopyPad rows are 32-byte aligned
#define GENET_MAX_BLOCK_COUNT 4095  // DataCopyPad blockCount (12 bits on Atlas A2/A3)
#define GENET_MAX_BLOCK_LEN 2097151 // DataCopyPad blockLen in bytes (21 bits)
#define GENET_TILE_ALIGN 16         // per-segment tile arrays: 32 bytes of fp16, 64 of fp32
#define GENET_TILE_ARRAYS 5         // fp32 tile arrays: mean, sigmoid, tmp, ones, aux
#define GENET_RED_SLOTS 32          // fp32 words after the ReduceSum work area: 4 slots of 8
#define GENET_MAX_REPEAT 255        // repeatTimes of one vector instruction
#define GENET_MAX_REP_STRIDE 255    // repeat stride in 32-byte blocks (uint8)
#define GENET_LANES 64              // fp32 elements one repeat covers (256 bytes)
#define GENET_MASK_LANES 64         // count-form CompareScalar takes whole 256-byte repeats of fp32

// Passed to each kernel by value (the generated aclrtlaunch_* host function takes a
// pointer to it). All int64 so host and device agree on the layout without padding.
struct GenetTiling {
  int64_t planes;          // N * C
  int64_t rows, cols;      // the view of one plane
  int64_t eh, ew, th, tw;  // tiles in the view
  int64_t seg_tiles;       // tiles per segment (1 in STREAM mode)
  int64_t nseg;            // segments per band: ceil(tw / seg_tiles)
  int64_t items;           // planes * th * nseg
  int64_t used_cores;      // blockDim of the launch: min(items, cores)
  int64_t items_per_core;  // q: every core takes q items ...
  int64_t big_cores;       // ... and the first big_cores of them one more
  int64_t mode;            // GENET_MODE_*
  int64_t crows, ccols;    // the largest block (RESIDENT) or chunk (STREAM)
  int64_t align;           // elements of the I/O dtype per 32 bytes
  int64_t dtype_bytes;     // 2 (fp16, bf16) or 4 (fp32)
  int64_t buf_elems;       // elements per queue buffer and per fp32 work buffer
  int64_t row_elems;       // fp32 elements per row buffer (0 unless RESIDENT with seg_tiles > 1)
  int64_t tile_elems;      // elements per tile array (a multiple of GENET_TILE_ALIGN)
  int64_t red_elems;       // fp32 ReduceSum work elements for a count of buf_elems
  int64_t has_residual;    // 0 / 1 (forward ops, excite_lean_backward)
  int64_t plane_batch;     // planes per item (global extent, RESIDENT); 1 = one plane or band per item
  int64_t batch_elems;     // fp32 elements of the plane-batch buffer (row broadcasts + row sums), 0 if none
  int64_t relu;            // forward ops: ReLU after the residual add; excite_lean_backward: grad 0 where out <= 0
  int64_t gather;          // excite_lean_backward: dx also gets dg_t / |t| (gather_excite's lean backward)
  int64_t means;           // gather_excite: also write the tile means (fp32) to the fifth pointer
  int64_t mask_bytes;      // bytes of the select-mask buffer (relu only, else 0)
};

// One item's rectangle in the view.
struct GenetBlock {
  int64_t plane, ty, tx0, ntiles;  // which band, first tile of the segment, tiles in it
  int64_t row0, rows, col0, cols;  // the rectangle, in view coordinates
  int64_t gm_offset;               // element offset of (row0, col0) in x
  int64_t g_offset;                // element offset of tile (ty, tx0) in g / dg
};

GENET_FN int64_t genet_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
GENET_FN int64_t genet_round_up(int64_t a, int64_t b) { return genet_ceil_div(a, b) * b; }
GENET_FN int64_t genet_min(int64_t a, int64_t b) { return a < b ? a : b; }
GENET_FN int64_t genet_max(int64_t a, int64_t b) { return a > b ? a : b; }

// Elements per UB row of `cols` elements after DataCopyPad (rows start 32-byte aligned).
GENET_FN int64_t genet_pitch(int64_t cols, int64_t align) { return genet_round_up(cols, align); }

// fp32 ReduceSum (the "first n elements" form) needs ceil(count / 64) words of work,
// rounded up to a 32-byte block (CANN docs, ReduceSum, "sharedTmpBuffer").
GENET_FN int64_t genet_red_elems(int64_t count) {
  return genet_round_up(genet_max(1, genet_ceil_div(count, 64)), 8);
}

// Input streams of one op (x, residual, grad_out) read through VECIN queues.
GENET_FN int64_t genet_inputs(int op, int64_t has_residual) {
  return (op == GENET_OP_GE_FWD || op == GENET_OP_EX_FWD) ? 1 + has_residual
       : op == GENET_OP_EX_LEAN_BWD ? 2 + has_residual  // grad_out, out [, residual]
       : 2;
}

// fp32 row buffers an op needs when a block holds several tiles across its columns.
GENET_FN int64_t genet_row_buffers(int op) {
  return op == GENET_OP_GE_FWD ? 2   // column sums of x, s broadcast
       : op == GENET_OP_GE_BWD ? 4   // column sums of x and dy*x, s and coef broadcast
       : op == GENET_OP_EX_FWD ? 1   // s broadcast
       : op == GENET_OP_EX_BWD ? 2   // column sums of dy*x, s broadcast
       : 3;                          // lean: column sums of dp*z, s and dg/|t| broadcast
}

// Elements per queue / work buffer for blocks of `rows` rows of `pitch` elements. With a
// ReLU the mask instructions run over whole 64-lane (256-byte fp32) repeats, so the buffers
// round up to 64 elements (the lanes past the block are computed on and never stored).
GENET_FN int64_t genet_buf_elems(int64_t rows, int64_t pitch, int64_t relu) {
  return relu ? genet_round_up(rows * pitch, GENET_MASK_LANES) : rows * pitch;
}

// The select mask (one bit per fp32 lane of a buffer), 32-byte aligned; 0 without ReLU.
GENET_FN int64_t genet_mask_bytes(int64_t buf_elems, int64_t relu) {
  return relu ? genet_round_up(buf_elems / 8, GENET_BLOCK_BYTES) : 0;
}

// Bytes of one element of g as the kernel reads it / of dg (or the means) as it writes them.
GENET_FN int64_t genet_g_bytes(int op, int64_t dtype_bytes) { return op == GENET_OP_EX_LEAN_BWD ? 4 : dtype_bytes; }
GENET_FN int64_t genet_dg_bytes(int op, int64_t dtype_bytes) { return op == GENET_OP_EX_BWD ? dtype_bytes : 4; }

// Bytes of Unified Buffer the kernel allocates with TPipe::InitBuffer for this tiling.
// The kernel's Init follows this sum term by term.
GENET_FN int64_t genet_ub_bytes(const GenetTiling& t, int op) {
  const int64_t T = t.dtype_bytes;
  const int64_t streams = genet_inputs(op, t.has_residual) + 1;  // + the output
  int64_t bytes = streams * GENET_BUFFER_NUM * t.buf_elems * T;   // TQue VECIN / VECOUT
  if (T != 4) bytes += 2 * t.buf_elems * 4;                       // two fp32 work buffers (fp32 uses its inputs')
  bytes += genet_row_buffers(op) * t.row_elems * 4;               // fp32 row buffers
  bytes += GENET_TILE_ARRAYS * t.tile_elems * 4;                  // fp32 tile arrays
  if (op == GENET_OP_EX_FWD || op == GENET_OP_EX_BWD || op == GENET_OP_EX_LEAN_BWD)
    bytes += GENET_BUFFER_NUM * t.tile_elems * genet_g_bytes(op, T);   // g queue
  if (op == GENET_OP_EX_BWD || op == GENET_OP_EX_LEAN_BWD || (op == GENET_OP_GE_FWD && t.means))
    bytes += GENET_BUFFER_NUM * t.tile_elems * genet_dg_bytes(op, T);  // dg / means queue
  bytes += (t.red_elems + GENET_RED_SLOTS) * 4;                   // ReduceSum work + slots
  bytes += t.batch_elems * 4;                                     // plane-batch rows
  bytes += t.mask_bytes;                                          // ReLU select mask
  return bytes;
}

// Items [begin, end) of core `core` (0 <= core < used_cores): contiguous ranges, sizes
// differing by at most one.
GENET_FN void genet_core_range(const GenetTiling& t, int64_t core, int64_t& begin, int64_t& end) {
  const int64_t q = t.items_per_core, big = t.big_cores;
  begin = core * q + genet_min(core, big);
  end = begin + q + (core < big ? 1 : 0);
}

// Plane batches: fp32 elements of the batch buffer for `pb` rows of `pitch` fp32: one
// 32-byte broadcast block per row (Brcb), then one row-sum vector per 64-lane strip.
GENET_FN int64_t genet_batch_elems(int64_t pb, int64_t pitch) {
  const int64_t p8 = genet_round_up(pb, 8);
  return pb > 1 ? (8 + genet_ceil_div(pitch, GENET_LANES)) * p8 : 0;
}

GENET_FN GenetBlock genet_block(const GenetTiling& t, int64_t item) {
  GenetBlock b;
  if (t.plane_batch > 1) {  // rows = planes, one tile each (global extent: rows == 1, th == tw == 1)
    b.plane = item * t.plane_batch;
    b.ty = 0;
    b.tx0 = 0;
    b.ntiles = genet_min(t.plane_batch, t.planes - b.plane);
    b.row0 = 0;
    b.rows = b.ntiles;
    b.col0 = 0;
    b.cols = t.cols;
    b.gm_offset = b.plane * t.cols;
    b.g_offset = b.plane;
    return b;
  }
  const int64_t s = item % t.nseg;
  const int64_t band = item / t.nseg;  // plane * th + ty
  b.plane = band / t.th;
  b.ty = band % t.th;
  b.tx0 = s * t.seg_tiles;
  b.ntiles = genet_min(t.seg_tiles, t.tw - b.tx0);
  b.row0 = b.ty * t.eh;
  b.rows = genet_min(t.eh, t.rows - b.row0);
  b.col0 = b.tx0 * t.ew;
  b.cols = genet_min(b.ntiles * t.ew, t.cols - b.col0);
  b.gm_offset = b.plane * t.rows * t.cols + b.row0 * t.cols + b.col0;
  b.g_offset = band * t.tw + b.tx0;
  return b;
}

// Columns [c0, c1) of tile k (0 <= k < b.ntiles) inside block b.
GENET_FN void genet_tile_cols(const GenetTiling& t, const GenetBlock& b, int64_t k, int64_t& c0, int64_t& c1) {
  c0 = k * t.ew;
  c1 = genet_min(c0 + t.ew, b.cols);
}

// STREAM mode: chunks of block b, row-major over (chunk row, chunk column).
GENET_FN int64_t genet_chunks(const GenetTiling& t, const GenetBlock& b) {
  return genet_ceil_div(b.rows, t.crows) * genet_ceil_div(b.cols, t.ccols);
}

struct GenetChunk {
  int64_t row0, rows, col0, cols;  // relative to the block
  int64_t gm_offset;               // element offset in x
};

GENET_FN GenetChunk genet_chunk(const GenetTiling& t, const GenetBlock& b, int64_t c) {
  GenetChunk k;
  const int64_t per_row = genet_ceil_div(b.cols, t.ccols);
  k.row0 = (c / per_row) * t.crows;
  k.col0 = (c % per_row) * t.ccols;
  k.rows = genet_min(t.crows, b.rows - k.row0);
  k.cols = genet_min(t.ccols, b.cols - k.col0);
  k.gm_offset = b.gm_offset + k.row0 * t.cols + k.col0;
  return k;
}

#endif  // GENET_OPS_ASCEND_TILING_DATA_H
