// Ascend C vector kernels for genet_ops: gather_excite, excite and their backward ops, and
// the output-keeping backward excite_lean_backward, for float16, bfloat16 and float32 inputs
// with float32 arithmetic, NCHW-contiguous. Semantics: docs/DESIGN.md §2 and
// genet_ops/reference.py. Never compiled by CANN nor run on an NPU: only against the CPU
// model in tests/emu/ascend (see csrc/ascend/README.md).
//
// Built by csrc/ascend/CMakeLists.txt with CANN's ascendc_library() for Atlas A2/A3
// (Ascend910B*/Ascend910_93*); the host side is csrc/ascend/launcher.cpp. What has been
// checked, and where, is in csrc/ascend/README.md.
//
// Shape of the work (tiling_data.h has the vocabulary, tiling.cpp the choices):
//  * AI vector cores take contiguous ranges of items, an item being one (plane, band of
//    tiles, segment of tiles); global extent makes a plane one row and one tile, and an
//    item a batch of whole (n, c) planes, one UB row each (ComputeRows).
//  * RESIDENT mode: an item's block fits a queue buffer. It is copied in once
//    (DataCopyPad, one 32-byte-aligned UB row per view row, zero right padding),
//    converted to fp32, reduced per tile, scaled by s_t = sigmoid(mean), written back.
//    The next item's copy-in is issued before this item's compute (TQue depth 2), so
//    MTE2, the vector unit and MTE3 overlap across items.
//  * STREAM mode: one tile per item, too big for UB: chunks of whole tile rows (or of
//    32-byte multiples of one row). gather_excite reads the tile twice (sum, then
//    scale); excite never needs two sweeps (dx is elementwise, dg accumulates).
//  * Sums accumulate in fp32 (ReduceSum on fp32 buffers, fp32 accumulators); each
//    output element is rounded once (RoundMode::CAST_RINT) to the input dtype.
//  * ReLU (forward epilogue, and the lean backward's mask) is a compare and a select, not a
//    max: `v < 0 ? 0 : v` keeps NaN whatever the vector unit's max does with NaN.
#include "kernel_operator.h"

#define GENET_FN __aicore__ inline
#include "../tiling_data.h"

using namespace AscendC;

namespace {

constexpr int32_t kSlot = 8;  // one 32-byte slot of fp32 in the ReduceSum area

__aicore__ inline void VectorToScalar() {  // scalar reads what the vector unit wrote
  TEventID id = GetTPipePtr()->FetchEventID(HardEvent::V_S);
  SetFlag<HardEvent::V_S>(id);
  WaitFlag<HardEvent::V_S>(id);
}

__aicore__ inline void ScalarToVector() {  // vector reads what the scalar unit wrote
  TEventID id = GetTPipePtr()->FetchEventID(HardEvent::S_V);
  SetFlag<HardEvent::S_V>(id);
  WaitFlag<HardEvent::S_V>(id);
}

template <typename T>
__aicore__ inline void ToFloat(const LocalTensor<float>& dst, const LocalTensor<T>& src, int32_t n) {
  if constexpr (IsSameType<T, float>::value) {
    Muls(dst, src, 1.0f, n);
  } else {
    Cast(dst, src, RoundMode::CAST_NONE, n);  // exact: fp16/bf16 -> fp32
  }
}

template <bool kFirst, typename A, typename B>
struct Pick { using type = A; };
template <typename A, typename B>
struct Pick<false, A, B> { using type = B; };

template <typename T>
__aicore__ inline void FromFloat(const LocalTensor<T>& dst, const LocalTensor<float>& src, int32_t n) {
  if constexpr (IsSameType<T, float>::value) {
    Muls(dst, src, 1.0f, n);
  } else {
    Cast(dst, src, RoundMode::CAST_RINT, n);  // round to nearest even, as torch does
  }
}

template <typename T, int OP>
class GenetKernel {
 public:
  static constexpr bool kLean = OP == GENET_OP_EX_LEAN_BWD;
  static constexpr bool kExcite = OP == GENET_OP_EX_FWD || OP == GENET_OP_EX_BWD || kLean;  // reads g
  static constexpr bool kForward = OP == GENET_OP_GE_FWD || OP == GENET_OP_EX_FWD;
  static constexpr bool kFloat = IsSameType<T, float>::value;
  using G = typename Pick<kLean, float, T>::type;               // g as read: the lean backward's is fp32
  using D = typename Pick<OP == GENET_OP_EX_BWD, T, float>::type;  // dg / the tile means as written

  __aicore__ inline GenetKernel() {}

  // x: the input (excite_lean_backward: the op's output); aux: residual (forward ops, may be
  // null) or grad_out (backward ops); res: excite_lean_backward's residual (may be null);
  // g: excite's gate (N, C, th, tw); out: y or dx; dg: d g, or gather_excite's tile means.
  __aicore__ inline void Init(GM_ADDR x, GM_ADDR aux, GM_ADDR res, GM_ADDR g, GM_ADDR out, GM_ADDR dg,
                              const GenetTiling& t) {
    t_ = t;
    hasAux_ = kForward ? t.has_residual != 0 : true;
    hasRes_ = kLean && t.has_residual != 0;
    hasDg_ = OP == GENET_OP_EX_BWD || kLean || (OP == GENET_OP_GE_FWD && t.means != 0);
    xGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(x));
    outGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(out));
    if (hasAux_) auxGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(aux));
    if (hasRes_) resGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(res));
    if constexpr (kExcite) gGm_.SetGlobalBuffer(reinterpret_cast<__gm__ G*>(g));
    if (hasDg_) dgGm_.SetGlobalBuffer(reinterpret_cast<__gm__ D*>(dg));

    // Exactly the buffers genet_ub_bytes() counts (the unit test tallies them too).
    const uint32_t block = static_cast<uint32_t>(t.buf_elems * sizeof(T));
    pipe_.InitBuffer(qX_, GENET_BUFFER_NUM, block);
    if (hasAux_) pipe_.InitBuffer(qAux_, GENET_BUFFER_NUM, block);
    if (hasRes_) pipe_.InitBuffer(qRes_, GENET_BUFFER_NUM, block);
    pipe_.InitBuffer(qOut_, GENET_BUFFER_NUM, block);
    if constexpr (!kFloat) {  // fp32 computes in its input queue buffers (LoadToFloat)
      pipe_.InitBuffer(workA_, static_cast<uint32_t>(t.buf_elems * sizeof(float)));
      pipe_.InitBuffer(workB_, static_cast<uint32_t>(t.buf_elems * sizeof(float)));
      wA_ = workA_.Get<float>();
      wB_ = workB_.Get<float>();
    }
    if (t.row_elems > 0)
      pipe_.InitBuffer(rowBuf_, static_cast<uint32_t>(genet_row_buffers(OP) * t.row_elems * sizeof(float)));
    pipe_.InitBuffer(tileBuf_, static_cast<uint32_t>(GENET_TILE_ARRAYS * t.tile_elems * sizeof(float)));
    if constexpr (kExcite)
      pipe_.InitBuffer(qG_, GENET_BUFFER_NUM, static_cast<uint32_t>(t.tile_elems * sizeof(G)));
    if (hasDg_) pipe_.InitBuffer(qDg_, GENET_BUFFER_NUM, static_cast<uint32_t>(t.tile_elems * sizeof(D)));
    pipe_.InitBuffer(redBuf_, static_cast<uint32_t>((t.red_elems + GENET_RED_SLOTS) * sizeof(float)));
    if (t.mask_bytes > 0) {
      pipe_.InitBuffer(maskBuf_, static_cast<uint32_t>(t.mask_bytes));
      mask_ = maskBuf_.Get<uint8_t>();
    }
    if (t.batch_elems > 0) {
      pipe_.InitBuffer(batchBuf_, static_cast<uint32_t>(t.batch_elems * sizeof(float)));
      LocalTensor<float> batch = batchBuf_.Get<float>();
      bcast_ = batch[0];
      rowSum_ = batch[8 * genet_round_up(t.plane_batch, 8)];
    }

    LocalTensor<float> tiles = tileBuf_.Get<float>();
    tMean_ = tiles[0];
    tSig_ = tiles[t.tile_elems];
    tTmp_ = tiles[2 * t.tile_elems];
    tOne_ = tiles[3 * t.tile_elems];
    tAux_ = tiles[4 * t.tile_elems];
    LocalTensor<float> red = redBuf_.Get<float>();
    redWork_ = red[0];
    redDst_ = red[t.red_elems];
    accA_ = red[t.red_elems + kSlot];
    accB_ = red[t.red_elems + 2 * kSlot];
    if (t.row_elems > 0) {
      LocalTensor<float> rows = rowBuf_.Get<float>();
      // GE_FWD: colX, srow | GE_BWD: colX, colD, srow, crow | EX_FWD: srow | EX_BWD: colD, srow
      // | EX_LEAN_BWD: colD, srow, crow
      if constexpr (OP == GENET_OP_GE_FWD) { colX_ = rows[0]; srow_ = rows[t.row_elems]; }
      if constexpr (OP == GENET_OP_GE_BWD) {
        colX_ = rows[0]; colD_ = rows[t.row_elems]; srow_ = rows[2 * t.row_elems]; crow_ = rows[3 * t.row_elems];
      }
      if constexpr (OP == GENET_OP_EX_FWD) { srow_ = rows[0]; }
      if constexpr (OP == GENET_OP_EX_BWD) { colD_ = rows[0]; srow_ = rows[t.row_elems]; }
      if constexpr (kLean) { colD_ = rows[0]; srow_ = rows[t.row_elems]; crow_ = rows[2 * t.row_elems]; }
    }
  }

  __aicore__ inline void Process() {
    const int64_t core = GetBlockIdx();
    if (core >= t_.used_cores) return;
    int64_t begin, end;
    genet_core_range(t_, core, begin, end);
    if (begin >= end) return;
    if (t_.mode == GENET_MODE_RESIDENT) {
      LoadBlock(genet_block(t_, begin));
      for (int64_t i = begin; i < end; ++i) {
        const GenetBlock b = genet_block(t_, i);
        if (i + 1 < end) LoadBlock(genet_block(t_, i + 1));  // prefetch: overlaps this compute
        ComputeBlock(b);
        Release();
        StoreBlock(b);
      }
    } else {
      for (int64_t i = begin; i < end; ++i) StreamTile(genet_block(t_, i));
    }
  }

 private:
  // ----------------------------------------------------------------- copies
  __aicore__ inline void LoadRect(TQue<QuePosition::VECIN, 2>& q, const GlobalTensor<T>& gm,
                                  int64_t offset, int64_t rows, int64_t cols) {
    const int64_t pitch = genet_pitch(cols, t_.align);
    LocalTensor<T> l = q.template AllocTensor<T>();
    DataCopyExtParams cp{static_cast<uint16_t>(rows), static_cast<uint32_t>(cols * sizeof(T)),
                         static_cast<uint32_t>((t_.cols - cols) * sizeof(T)), 0, 0};
    DataCopyPadExtParams<T> pad;  // zero right padding up to the 32-byte row end
    pad.isPad = true;
    pad.leftPadding = 0;
    pad.rightPadding = static_cast<uint8_t>(pitch - cols);
    DataCopyPad(l, gm[offset], cp, pad);
    q.EnQue(l);
  }

  __aicore__ inline void StoreRect(int64_t offset, int64_t rows, int64_t cols) {
    LocalTensor<T> y = qOut_.template DeQue<T>();
    DataCopyExtParams cp{static_cast<uint16_t>(rows), static_cast<uint32_t>(cols * sizeof(T)), 0,
                         static_cast<uint32_t>((t_.cols - cols) * sizeof(T)), 0};
    DataCopyPad(outGm_[offset], y, cp);
    qOut_.FreeTensor(y);
  }

  __aicore__ inline void LoadG(int64_t offset, int64_t n) {
    LocalTensor<G> l = qG_.template AllocTensor<G>();
    DataCopyExtParams cp{1, static_cast<uint32_t>(n * sizeof(G)), 0, 0, 0};
    DataCopyPadExtParams<G> pad;
    pad.isPad = false;
    pad.leftPadding = 0;
    pad.rightPadding = 0;
    DataCopyPad(l, gGm_[offset], cp, pad);
    qG_.EnQue(l);
  }

  // s_t = sigmoid(g_t) for excite: g segment -> tSig_ (fp32).
  __aicore__ inline void GateFromG(int32_t n) {
    LocalTensor<G> gl = qG_.template DeQue<G>();
    ToFloat(tMean_, gl, n);
    qG_.FreeTensor(gl);
    PipeBarrier<PIPE_V>();
    Sigmoid(tSig_, tMean_, n);
  }

  __aicore__ inline void EmitDg(int32_t n) {  // tAux_ (fp32, scalar-written) -> qDg_
    ScalarToVector();
    EmitTiles(tAux_, n);
  }

  // v[0, n) (fp32, vector-readable) -> qDg_ as dg's dtype: dg, or gather_excite's tile means.
  __aicore__ inline void EmitTiles(const LocalTensor<float>& v, int32_t n) {
    LocalTensor<D> d = qDg_.template AllocTensor<D>();
    FromFloat(d, v, n);
    qDg_.EnQue(d);
  }

  __aicore__ inline void StoreDg(int64_t offset, int64_t n) {
    LocalTensor<D> d = qDg_.template DeQue<D>();
    DataCopyExtParams cp{1, static_cast<uint32_t>(n * sizeof(D)), 0, 0, 0};
    DataCopyPad(dgGm_[offset], d, cp);
    qDg_.FreeTensor(d);
  }

  // ------------------------------------------------------------ vector helpers
  // 1 / (1 + exp(-v)) on fp32 tile arrays (n <= tile_elems).
  __aicore__ inline void Sigmoid(const LocalTensor<float>& dst, const LocalTensor<float>& src, int32_t n) {
    Muls(tTmp_, src, -1.0f, n);
    PipeBarrier<PIPE_V>();
    Exp(tTmp_, tTmp_, n);
    PipeBarrier<PIPE_V>();
    Adds(tTmp_, tTmp_, 1.0f, n);
    Duplicate(tOne_, 1.0f, n);
    PipeBarrier<PIPE_V>();
    Div(dst, tOne_, tTmp_, n);
    PipeBarrier<PIPE_V>();
  }

  // col[c] = sum over the block's rows of w[r * pitch + c] (fp32).
  __aicore__ inline void ColumnSums(const LocalTensor<float>& col, const LocalTensor<float>& w, int64_t rows,
                                    int32_t pitch) {
    Muls(col, w, 1.0f, pitch);
    for (int64_t r = 1; r < rows; ++r) {
      PipeBarrier<PIPE_V>();
      Add(col, col, w[r * pitch], pitch);
    }
    PipeBarrier<PIPE_V>();
  }

  // sum of col[c0, c1) on the scalar unit (after VectorToScalar()).
  __aicore__ inline float SumRange(const LocalTensor<float>& col, int64_t c0, int64_t c1) {
    float acc = 0.0f;
    for (int64_t c = c0; c < c1; ++c) acc += col.GetValue(c);
    return acc;
  }

  __aicore__ inline void FillRange(const LocalTensor<float>& row, int64_t c0, int64_t c1, float v) {
    for (int64_t c = c0; c < c1; ++c) row.SetValue(c, v);
  }

  // dst row r = src row r (* or +) row[0, pitch) for every row (fp32): the band's column
  // broadcasts. One repeat-form instruction per 64-lane strip and 255 rows (row repeat
  // stride 0); rows too wide for a repeat stride take one instruction each.
  template <bool kMul>
  __aicore__ inline void EachRow(const LocalTensor<float>& dst, const LocalTensor<float>& src,
                                 const LocalTensor<float>& row, int64_t rows, int32_t pitch) {
    if (pitch <= GENET_MAX_REP_STRIDE * 8) {
      RepeatRows<kMul>(dst, src, row, rows, pitch, 1, 0);
      return;
    }
    for (int64_t r = 0; r < rows; ++r) {
      if constexpr (kMul) Mul(dst[r * pitch], src[r * pitch], row, pitch);
      else Add(dst[r * pitch], src[r * pitch], row, pitch);
    }
    PipeBarrier<PIPE_V>();
  }

  // dst row r = src row r (* or +) src1's row for r, rows `pitch` fp32 apart (pitch <= 2 040):
  // src1's row r starts s1Rep blocks after row r - 1 and its lanes lie s1Blk blocks apart.
  template <bool kMul>
  __aicore__ inline void RepeatRows(const LocalTensor<float>& dst, const LocalTensor<float>& src,
                                    const LocalTensor<float>& src1, int64_t rows, int32_t pitch, uint8_t s1Blk,
                                    uint8_t s1Rep) {
    const uint8_t rep = static_cast<uint8_t>(pitch / 8);
    const BinaryRepeatParams p(1, 1, s1Blk, rep, rep, s1Rep);
    for (int64_t r0 = 0; r0 < rows; r0 += GENET_MAX_REPEAT) {
      const uint8_t n = static_cast<uint8_t>(genet_min(GENET_MAX_REPEAT, rows - r0));
      for (int32_t k = 0; k * GENET_LANES < pitch; ++k) {
        const int32_t lanes = pitch - k * GENET_LANES < GENET_LANES ? pitch - k * GENET_LANES : GENET_LANES;
        const int64_t at = r0 * pitch + k * GENET_LANES;
        const LocalTensor<float> b = src1[r0 * s1Rep * 8 + k * GENET_LANES * s1Blk];
        if constexpr (kMul) Mul(dst[at], src[at], b, lanes, n, p);
        else Add(dst[at], src[at], b, lanes, n, p);
      }
    }
    PipeBarrier<PIPE_V>();
  }

  // The next input of q as fp32 in w (wA_ or wB_): half / bfloat16 are cast into the work
  // buffer; fp32 is used where it landed (w becomes that queue buffer, no copy), held until
  // Release() at the end of the item or chunk.
  __aicore__ inline void LoadToFloat(TQue<QuePosition::VECIN, 2>& q, LocalTensor<float>& w, int32_t n) {
    LocalTensor<T> l = q.template DeQue<T>();
    if constexpr (kFloat) {
      w = l;  // the lean backward may hold three (out, residual, grad_out)
      heldQ_[held_] = &q;
      heldT_[held_++] = l;
    } else {
      ToFloat(w, l, n);
      q.FreeTensor(l);
      PipeBarrier<PIPE_V>();
    }
  }

  __aicore__ inline void Release() {
    for (int32_t i = 0; i < held_; ++i) heldQ_[i]->FreeTensor(heldT_[i]);
    held_ = 0;
  }

  __aicore__ inline void EmitOut(const LocalTensor<float>& w, int32_t n) {
    LocalTensor<T> y = qOut_.template AllocTensor<T>();
    FromFloat(y, w, n);
    qOut_.EnQue(y);
  }

  // ReduceSum of w[0, n) into acc[0] (fp32), without leaving the vector pipe.
  __aicore__ inline void Accumulate(const LocalTensor<float>& acc, const LocalTensor<float>& w, int32_t n) {
    ReduceSum(redDst_, w, redWork_, n);
    PipeBarrier<PIPE_V>();
    Add(acc, acc, redDst_, 1);
    PipeBarrier<PIPE_V>();
  }

  // Backward ops: wB_ = dy, wA_ = x * dy (x in wA_).
  __aicore__ inline void TimesDy(int32_t n) {
    LoadToFloat(qAux_, wB_, n);
    Mul(wA_, wA_, wB_, n);
    PipeBarrier<PIPE_V>();
  }

  // gather_excite_backward, one tile: dx = dy * s + coef, dy in wB_ -> qOut_.
  __aicore__ inline void EmitDx(float s, float coef, int32_t n) {
    Muls(wB_, wB_, s, n);
    PipeBarrier<PIPE_V>();
    Adds(wB_, wB_, coef, n);
    PipeBarrier<PIPE_V>();
    EmitOut(wB_, n);
  }

  // sigmoid(sum / cnt) for one tile, from the scalar side back to it.
  __aicore__ inline float SigmoidOfMean(float sum, float cnt) {
    tMean_.SetValue(0, sum / cnt);
    ScalarToVector();
    Sigmoid(tSig_, tMean_, 1);
    VectorToScalar();
    return tSig_.GetValue(0);
  }

  // ReLU as `u < 0 ? 0 : v` (forward, mode LT, u = v) or the lean backward's mask `out <= 0 ?
  // 0 : dy` (mode LE): MaskFrom sets a bit per lane where u is NOT below / at most 0 (NaN
  // compares false, so its bit is set and NaN passes), ZeroUnmasked keeps v there and writes 0
  // elsewhere. Both run over whole 64-lane repeats (the buffers are rounded up for it,
  // genet_buf_elems); the lanes past n are never stored or summed.
  __aicore__ inline void MaskFrom(const LocalTensor<float>& u, CMPMODE zeroWhen, int32_t n) {
    const int32_t n64 = static_cast<int32_t>(genet_round_up(n, GENET_MASK_LANES));
    CompareScalar(mask_, u, 0.0f, zeroWhen, static_cast<uint32_t>(n64));
    PipeBarrier<PIPE_V>();
    LocalTensor<uint16_t> bits = mask_.template ReinterpretCast<uint16_t>();
    Not(bits, bits, n64 / 16);  // the bits of the lanes to keep
    PipeBarrier<PIPE_V>();
  }

  __aicore__ inline void ZeroUnmasked(const LocalTensor<float>& v, int32_t n) {
    const int32_t n64 = static_cast<int32_t>(genet_round_up(n, GENET_MASK_LANES));
    Select(v, mask_, v, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, static_cast<uint32_t>(n64));
    PipeBarrier<PIPE_V>();
  }

  // y = wA (+ residual), then ReLU when asked -> qOut_ (forward ops).
  __aicore__ inline void EmitWithResidual(int32_t n) {
    if (hasAux_) {
      LoadToFloat(qAux_, wB_, n);
      Add(wA_, wA_, wB_, n);
      PipeBarrier<PIPE_V>();
    }
    if (t_.relu) {
      MaskFrom(wA_, CMPMODE::LT, n);
      ZeroUnmasked(wA_, n);
    }
    EmitOut(wA_, n);
  }

  // excite_lean_backward's operands of one block or chunk: wB_ = dp (grad_out, 0 where
  // out <= 0 with relu) and, withZ, wA_ = dp * z with z = out - residual (or out). Without z
  // (the second sweep of a gathered STREAM tile) out is read only for the mask.
  __aicore__ inline void LeanOperands(int32_t n, bool withZ) {
    if (withZ || t_.relu) LoadToFloat(qX_, wA_, n);  // out
    if (t_.relu) MaskFrom(wA_, CMPMODE::LE, n);
    if (withZ && hasRes_) {
      LoadToFloat(qRes_, wB_, n);
      Sub(wA_, wA_, wB_, n);
      PipeBarrier<PIPE_V>();
    }
    LoadToFloat(qAux_, wB_, n);  // grad_out
    if (t_.relu) ZeroUnmasked(wB_, n);
    if (withZ) {
      Mul(wA_, wA_, wB_, n);
      PipeBarrier<PIPE_V>();
    }
  }

  // dst = (1 - s) * v for the first n tiles (s in tSig_): the lean backward's dg.
  __aicore__ inline void LeanGradient(const LocalTensor<float>& dst, const LocalTensor<float>& v, int32_t n) {
    Muls(tTmp_, tSig_, -1.0f, n);
    PipeBarrier<PIPE_V>();
    Adds(tTmp_, tTmp_, 1.0f, n);
    PipeBarrier<PIPE_V>();
    Mul(dst, tTmp_, v, n);
    PipeBarrier<PIPE_V>();
  }

  // Forward ops, RESIDENT: y = x * s_t (+ residual), x in wA_, s_t in tSig_ (vector-written).
  __aicore__ inline void ExciteBlock(const GenetBlock& b, int32_t pitch, int32_t n) {
    VectorToScalar();
    if (b.ntiles == 1) {
      Muls(wA_, wA_, tSig_.GetValue(0), n);
    } else {
      for (int64_t k = 0; k < b.ntiles; ++k) {
        int64_t c0, c1;
        genet_tile_cols(t_, b, k, c0, c1);
        FillRange(srow_, c0, c1, tSig_.GetValue(k));
      }
      ScalarToVector();
      EachRow<true>(wA_, wA_, srow_, b.rows, pitch);
    }
    PipeBarrier<PIPE_V>();
    EmitWithResidual(n);
  }

  // ------------------------------------------------ plane batches (RESIDENT)
  // A block of `rows` planes, one UB row of `pitch` fp32 each (zero padded), one tile each.
  // Repeat-form instructions take every row at once: one per 64-lane strip of the rows.

  // rowSum_[r] = sum of row r of w.
  __aicore__ inline void RowSums(const LocalTensor<float>& w, int32_t rows, int32_t pitch) {
    const int32_t p8 = static_cast<int32_t>(genet_round_up(t_.plane_batch, 8));
    const int32_t strips = static_cast<int32_t>(genet_ceil_div(pitch, GENET_LANES));
    for (int32_t k = 0; k < strips; ++k) {
      const int32_t lanes = pitch - k * GENET_LANES < GENET_LANES ? pitch - k * GENET_LANES : GENET_LANES;
      WholeReduceSum(rowSum_[k * p8], w[k * GENET_LANES], lanes, rows, 1, 1, pitch / 8);
    }
    PipeBarrier<PIPE_V>();
    for (int32_t k = 1; k < strips; ++k) {
      Add(rowSum_, rowSum_, rowSum_[k * p8], rows);
      PipeBarrier<PIPE_V>();
    }
  }

  // dst row r = src row r * v[r] (kMul) or + v[r], v broadcast per row with Brcb.
  template <bool kMul>
  __aicore__ inline void RowApply(const LocalTensor<float>& dst, const LocalTensor<float>& src,
                                  const LocalTensor<float>& v, int32_t rows, int32_t pitch) {
    Brcb(bcast_, v, static_cast<uint8_t>(genet_ceil_div(rows, 8)), BrcbRepeatParams(1, 8));
    PipeBarrier<PIPE_V>();
    RepeatRows<kMul>(dst, src, bcast_, rows, pitch, 0, 1);  // src1: row r's broadcast block
  }

  __aicore__ inline void ComputeRows(const GenetBlock& b) {
    const int32_t pitch = static_cast<int32_t>(genet_pitch(b.cols, t_.align));
    const int32_t rows = static_cast<int32_t>(b.rows);
    const int32_t n = rows * pitch;
    const float inv = 1.0f / static_cast<float>(b.cols);  // every row is one whole plane
    if constexpr (kExcite) GateFromG(rows);  // tSig_ = sigmoid(g)
    if constexpr (!kLean) LoadToFloat(qX_, wA_, n);  // the lean backward reads its operands itself
    if constexpr (OP == GENET_OP_GE_FWD) {  // y = x * s (+ residual)
      RowSums(wA_, rows, pitch);
      Muls(tMean_, rowSum_, inv, rows);
      PipeBarrier<PIPE_V>();
      if (hasDg_) EmitTiles(tMean_, rows);  // gather_excite_lean: the means
      Sigmoid(tSig_, tMean_, rows);
      RowApply<true>(wA_, wA_, tSig_, rows, pitch);
      EmitWithResidual(n);
    }
    if constexpr (OP == GENET_OP_GE_BWD) {  // dx = dy * s + s (1 - s) * mean(dy * x)
      RowSums(wA_, rows, pitch);
      Muls(tMean_, rowSum_, inv, rows);
      TimesDy(n);  // wB_ = dy, wA_ = x * dy
      RowSums(wA_, rows, pitch);
      Muls(tAux_, rowSum_, inv, rows);
      PipeBarrier<PIPE_V>();
      Sigmoid(tSig_, tMean_, rows);
      Gradient(tAux_, tAux_, rows);
      RowApply<true>(wA_, wB_, tSig_, rows, pitch);
      RowApply<false>(wA_, wA_, tAux_, rows, pitch);
      EmitOut(wA_, n);
    }
    if constexpr (OP == GENET_OP_EX_FWD) {  // y = x * sigmoid(g) (+ residual)
      RowApply<true>(wA_, wA_, tSig_, rows, pitch);
      EmitWithResidual(n);
    }
    if constexpr (OP == GENET_OP_EX_BWD) {  // dx = dy * s ; dg = s (1 - s) * sum(dy * x)
      TimesDy(n);
      RowSums(wA_, rows, pitch);
      Gradient(tAux_, rowSum_, rows);
      RowApply<true>(wB_, wB_, tSig_, rows, pitch);
      EmitOut(wB_, n);
      EmitTiles(tAux_, rows);
    }
    if constexpr (kLean) {  // dx = dp * s (+ dg / |t|) ; dg = (1 - s) * sum(dp * z)
      LeanOperands(n, true);  // wA_ = dp * z, wB_ = dp
      RowSums(wA_, rows, pitch);
      LeanGradient(tAux_, rowSum_, rows);
      RowApply<true>(wA_, wB_, tSig_, rows, pitch);
      if (t_.gather) {
        Muls(tTmp_, tAux_, inv, rows);
        PipeBarrier<PIPE_V>();
        RowApply<false>(wA_, wA_, tTmp_, rows, pitch);
      }
      EmitOut(wA_, n);
      EmitTiles(tAux_, rows);
    }
  }

  // dst = s (1 - s) * v for the first n tiles (s in tSig_), on the vector unit.
  __aicore__ inline void Gradient(const LocalTensor<float>& dst, const LocalTensor<float>& v, int32_t n) {
    Muls(tTmp_, tSig_, -1.0f, n);
    PipeBarrier<PIPE_V>();
    Adds(tTmp_, tTmp_, 1.0f, n);
    PipeBarrier<PIPE_V>();
    Mul(tTmp_, tTmp_, tSig_, n);
    PipeBarrier<PIPE_V>();
    Mul(dst, tTmp_, v, n);
    PipeBarrier<PIPE_V>();
  }

  // --------------------------------------------------------- RESIDENT mode
  __aicore__ inline void LoadBlock(const GenetBlock& b) {
    if constexpr (kLean) {
      LoadRect(qAux_, auxGm_, b.gm_offset, b.rows, b.cols);  // grad_out
      LoadRect(qX_, xGm_, b.gm_offset, b.rows, b.cols);      // out
      if (hasRes_) LoadRect(qRes_, resGm_, b.gm_offset, b.rows, b.cols);
    } else if constexpr (OP == GENET_OP_GE_BWD || OP == GENET_OP_EX_BWD) {
      LoadRect(qAux_, auxGm_, b.gm_offset, b.rows, b.cols);  // grad_out
      LoadRect(qX_, xGm_, b.gm_offset, b.rows, b.cols);
    } else {
      LoadRect(qX_, xGm_, b.gm_offset, b.rows, b.cols);
      if (hasAux_) LoadRect(qAux_, auxGm_, b.gm_offset, b.rows, b.cols);  // residual
    }
    if constexpr (kExcite) LoadG(b.g_offset, b.ntiles);
  }

  __aicore__ inline void StoreBlock(const GenetBlock& b) {
    StoreRect(b.gm_offset, b.rows, b.cols);
    if (hasDg_) StoreDg(b.g_offset, b.ntiles);
  }

  __aicore__ inline void ComputeBlock(const GenetBlock& b) {
    const int32_t pitch = static_cast<int32_t>(genet_pitch(b.cols, t_.align));
    const int32_t n = static_cast<int32_t>(b.rows) * pitch;
    const int32_t nt = static_cast<int32_t>(b.ntiles);
    const bool one = b.ntiles == 1;  // one tile: whole-block vector ops, no column sums
    if (t_.plane_batch > 1) {
      ComputeRows(b);
      return;
    }

    if constexpr (OP == GENET_OP_GE_FWD) {
      LoadToFloat(qX_, wA_, n);
      if (one) {
        ReduceSum(redDst_, wA_, redWork_, n);  // zero padding adds nothing
        VectorToScalar();
        tMean_.SetValue(0, redDst_.GetValue(0) / static_cast<float>(b.rows * b.cols));
      } else {
        ColumnSums(colX_, wA_, b.rows, pitch);
        VectorToScalar();
        for (int64_t k = 0; k < b.ntiles; ++k) {
          int64_t c0, c1;
          genet_tile_cols(t_, b, k, c0, c1);
          tMean_.SetValue(k, SumRange(colX_, c0, c1) / static_cast<float>(b.rows * (c1 - c0)));
        }
      }
      ScalarToVector();
      if (hasDg_) EmitTiles(tMean_, nt);  // gather_excite_lean: the means
      Sigmoid(tSig_, tMean_, nt);
      ExciteBlock(b, pitch, n);
    }

    if constexpr (OP == GENET_OP_GE_BWD) {
      // dx = dy * s_t + s_t (1 - s_t) / |t| * sum_t(dy * x)
      LoadToFloat(qX_, wA_, n);
      if (one) {
        ReduceSum(redDst_, wA_, redWork_, n);
        PipeBarrier<PIPE_V>();
        TimesDy(n);
        ReduceSum(accA_, wA_, redWork_, n);
        VectorToScalar();
        const float cnt = static_cast<float>(b.rows * b.cols);
        const float sumDyx = accA_.GetValue(0);
        const float s = SigmoidOfMean(redDst_.GetValue(0), cnt);
        EmitDx(s, s * (1.0f - s) / cnt * sumDyx, n);
      } else {
        ColumnSums(colX_, wA_, b.rows, pitch);
        TimesDy(n);
        ColumnSums(colD_, wA_, b.rows, pitch);
        VectorToScalar();
        for (int64_t k = 0; k < b.ntiles; ++k) {
          int64_t c0, c1;
          genet_tile_cols(t_, b, k, c0, c1);
          const float cnt = static_cast<float>(b.rows * (c1 - c0));
          tMean_.SetValue(k, SumRange(colX_, c0, c1) / cnt);
          tAux_.SetValue(k, SumRange(colD_, c0, c1) / cnt);
        }
        ScalarToVector();
        Sigmoid(tSig_, tMean_, nt);
        VectorToScalar();
        for (int64_t k = 0; k < b.ntiles; ++k) {
          int64_t c0, c1;
          genet_tile_cols(t_, b, k, c0, c1);
          const float s = tSig_.GetValue(k);
          FillRange(srow_, c0, c1, s);
          FillRange(crow_, c0, c1, s * (1.0f - s) * tAux_.GetValue(k));
        }
        ScalarToVector();
        EachRow<true>(wA_, wB_, srow_, b.rows, pitch);  // wA = dy * s
        EachRow<false>(wA_, wA_, crow_, b.rows, pitch);
        EmitOut(wA_, n);
      }
    }

    if constexpr (OP == GENET_OP_EX_FWD) {
      GateFromG(nt);
      LoadToFloat(qX_, wA_, n);
      ExciteBlock(b, pitch, n);
    }

    if constexpr (OP == GENET_OP_EX_BWD) {
      // dx = dy * s_t ; dg_t = s_t (1 - s_t) * sum_t(dy * x)
      GateFromG(nt);
      LoadToFloat(qX_, wA_, n);
      TimesDy(n);
      if (one) {
        ReduceSum(redDst_, wA_, redWork_, n);
        VectorToScalar();
        const float s = tSig_.GetValue(0);
        tAux_.SetValue(0, s * (1.0f - s) * redDst_.GetValue(0));
        Muls(wB_, wB_, s, n);
      } else {
        ColumnSums(colD_, wA_, b.rows, pitch);
        VectorToScalar();
        for (int64_t k = 0; k < b.ntiles; ++k) {
          int64_t c0, c1;
          genet_tile_cols(t_, b, k, c0, c1);
          const float s = tSig_.GetValue(k);
          tAux_.SetValue(k, s * (1.0f - s) * SumRange(colD_, c0, c1));
          FillRange(srow_, c0, c1, s);
        }
        ScalarToVector();
        EachRow<true>(wB_, wB_, srow_, b.rows, pitch);
      }
      PipeBarrier<PIPE_V>();
      EmitOut(wB_, n);
      EmitDg(nt);
    }

    if constexpr (kLean) {
      // dx = dp * s_t (+ dg_t / |t|) ; dg_t = (1 - s_t) * sum_t(dp * z)
      GateFromG(nt);
      LeanOperands(n, true);  // wA_ = dp * z, wB_ = dp
      if (one) {
        ReduceSum(redDst_, wA_, redWork_, n);
        VectorToScalar();
        const float s = tSig_.GetValue(0);
        const float dg = (1.0f - s) * redDst_.GetValue(0);
        tAux_.SetValue(0, dg);
        Muls(wB_, wB_, s, n);
        if (t_.gather) {
          PipeBarrier<PIPE_V>();
          Adds(wB_, wB_, dg / static_cast<float>(b.rows * b.cols), n);
        }
      } else {
        ColumnSums(colD_, wA_, b.rows, pitch);
        VectorToScalar();
        for (int64_t k = 0; k < b.ntiles; ++k) {
          int64_t c0, c1;
          genet_tile_cols(t_, b, k, c0, c1);
          const float s = tSig_.GetValue(k);
          const float dg = (1.0f - s) * SumRange(colD_, c0, c1);
          tAux_.SetValue(k, dg);
          FillRange(srow_, c0, c1, s);
          if (t_.gather) FillRange(crow_, c0, c1, dg / static_cast<float>(b.rows * (c1 - c0)));
        }
        ScalarToVector();
        EachRow<true>(wB_, wB_, srow_, b.rows, pitch);
        if (t_.gather) EachRow<false>(wB_, wB_, crow_, b.rows, pitch);
      }
      PipeBarrier<PIPE_V>();
      EmitOut(wB_, n);
      EmitDg(nt);
    }
  }

  // ----------------------------------------------------------- STREAM mode
  // Phases of a sweep over a tile's chunks: which streams are read, what is computed.
  enum Phase { kSum, kApply };

  __aicore__ inline void LoadChunk(const GenetChunk& k, Phase phase) {
    if constexpr (kLean) {  // the gathered tile's second sweep needs grad_out (and out for the mask)
      const bool second = t_.gather && phase == kApply;
      LoadRect(qAux_, auxGm_, k.gm_offset, k.rows, k.cols);
      if (!second || t_.relu) LoadRect(qX_, xGm_, k.gm_offset, k.rows, k.cols);
      if (!second && hasRes_) LoadRect(qRes_, resGm_, k.gm_offset, k.rows, k.cols);
      return;
    }
    const bool wantX = !(OP == GENET_OP_GE_BWD && phase == kApply);  // gather_excite dx needs only dy
    const bool wantAux = hasAux_ && !(OP == GENET_OP_GE_FWD && phase == kSum);
    if (wantAux && !kForward) LoadRect(qAux_, auxGm_, k.gm_offset, k.rows, k.cols);
    if (wantX) LoadRect(qX_, xGm_, k.gm_offset, k.rows, k.cols);
    if (wantAux && kForward) LoadRect(qAux_, auxGm_, k.gm_offset, k.rows, k.cols);
  }

  __aicore__ inline void ComputeChunk(const GenetChunk& k, Phase phase, float s, float coef) {
    const int32_t n = static_cast<int32_t>(k.rows * genet_pitch(k.cols, t_.align));
    if constexpr (kLean) {  // kSum (gathered tiles): accB += sum dp * z ; kApply: dx = dp * s (+ coef)
      const bool withZ = phase == kSum || !t_.gather;
      LeanOperands(n, withZ);
      if (withZ) Accumulate(accB_, wA_, n);
      if (phase == kSum) return;
      Muls(wB_, wB_, s, n);
      PipeBarrier<PIPE_V>();
      if (t_.gather) {
        Adds(wB_, wB_, coef, n);
        PipeBarrier<PIPE_V>();
      }
      EmitOut(wB_, n);
      return;
    }
    if (phase == kSum) {  // gather_excite ops only: accA += sum x ; accB += sum dy * x
      LoadToFloat(qX_, wA_, n);
      Accumulate(accA_, wA_, n);
      if constexpr (OP == GENET_OP_GE_BWD) {
        TimesDy(n);
        Accumulate(accB_, wA_, n);
      }
      return;
    }
    if constexpr (kForward) {  // y = x * s (+ residual)
      LoadToFloat(qX_, wA_, n);
      Muls(wA_, wA_, s, n);
      PipeBarrier<PIPE_V>();
      EmitWithResidual(n);
    }
    if constexpr (OP == GENET_OP_GE_BWD) {  // dx = dy * s + coef
      LoadToFloat(qAux_, wB_, n);
      EmitDx(s, coef, n);
    }
    if constexpr (OP == GENET_OP_EX_BWD) {  // dx = dy * s ; accB += sum dy * x
      LoadToFloat(qX_, wA_, n);
      TimesDy(n);
      Accumulate(accB_, wA_, n);
      Muls(wB_, wB_, s, n);
      PipeBarrier<PIPE_V>();
      EmitOut(wB_, n);
    }
  }

  __aicore__ inline void Sweep(const GenetBlock& b, Phase phase, float s, float coef) {
    const int64_t chunks = genet_chunks(t_, b);
    LoadChunk(genet_chunk(t_, b, 0), phase);
    for (int64_t c = 0; c < chunks; ++c) {
      const GenetChunk k = genet_chunk(t_, b, c);
      if (c + 1 < chunks) LoadChunk(genet_chunk(t_, b, c + 1), phase);  // prefetch
      ComputeChunk(k, phase, s, coef);
      Release();
      if (phase == kApply) StoreRect(k.gm_offset, k.rows, k.cols);
    }
  }

  __aicore__ inline void StreamTile(const GenetBlock& b) {  // b is a single tile
    const float cnt = static_cast<float>(b.rows * b.cols);
    float s = 0.0f, coef = 0.0f;
    Duplicate(accA_, 0.0f, kSlot);
    Duplicate(accB_, 0.0f, kSlot);
    PipeBarrier<PIPE_V>();
    float dg = 0.0f;
    if constexpr (kExcite) {
      LoadG(b.g_offset, 1);
      GateFromG(1);
      VectorToScalar();
      s = tSig_.GetValue(0);
      if constexpr (kLean) {
        if (t_.gather) {  // first sweep: sum dp * z, for dg and its share of dx
          Sweep(b, kSum, 0.0f, 0.0f);
          VectorToScalar();
          dg = (1.0f - s) * accB_.GetValue(0);
          coef = dg / cnt;
        }
      }
    } else {
      Sweep(b, kSum, 0.0f, 0.0f);  // first sweep: the tile's sums
      VectorToScalar();
      const float sumX = accA_.GetValue(0), sumDyx = accB_.GetValue(0);
      s = SigmoidOfMean(sumX, cnt);
      coef = s * (1.0f - s) / cnt * sumDyx;
      if (hasDg_) EmitTiles(tMean_, 1);  // gather_excite_lean: the mean (SigmoidOfMean wrote it)
    }
    Sweep(b, kApply, s, coef);  // second (or only) sweep: write
    if constexpr (OP == GENET_OP_EX_BWD) {
      VectorToScalar();
      tAux_.SetValue(0, s * (1.0f - s) * accB_.GetValue(0));
      EmitDg(1);
    }
    if constexpr (kLean) {
      VectorToScalar();
      tAux_.SetValue(0, t_.gather ? dg : (1.0f - s) * accB_.GetValue(0));
      EmitDg(1);
    }
    if (hasDg_) StoreDg(b.g_offset, 1);
  }

  TPipe pipe_;
  // Every queue holds GENET_BUFFER_NUM (2) buffers (InitBuffer): double buffering. The
  // queue *depth* (consecutive EnQue without DeQue) is 2 for inputs, which are preloaded
  // one item ahead, and 1 for outputs, as the Ascend C docs recommend.
  TQue<QuePosition::VECIN, 2> qX_, qAux_, qRes_, qG_;
  TQue<QuePosition::VECOUT, 1> qOut_, qDg_;
  TBuf<QuePosition::VECCALC> workA_, workB_, rowBuf_, tileBuf_, redBuf_, batchBuf_, maskBuf_;
  GlobalTensor<T> xGm_, auxGm_, resGm_, outGm_;
  GlobalTensor<G> gGm_;
  GlobalTensor<D> dgGm_;
  LocalTensor<uint8_t> mask_;  // ReLU: one bit per fp32 lane of a buffer
  LocalTensor<float> wA_, wB_, colX_, colD_, srow_, crow_;
  LocalTensor<float> tMean_, tSig_, tTmp_, tOne_, tAux_;
  LocalTensor<float> redWork_, redDst_, accA_, accB_;
  LocalTensor<float> bcast_, rowSum_;  // plane batches: per-row broadcast blocks, row sums
  TQue<QuePosition::VECIN, 2>* heldQ_[3] = {nullptr, nullptr, nullptr};  // fp32: input buffers in use as wA_ / wB_
  LocalTensor<float> heldT_[3];
  int32_t held_ = 0;
  GenetTiling t_;
  bool hasAux_ = false;
  bool hasRes_ = false;  // excite_lean_backward with a residual
  bool hasDg_ = false;   // writes dg, or gather_excite's tile means
};

template <typename T, int OP>
__aicore__ inline void RunGenet(GM_ADDR x, GM_ADDR aux, GM_ADDR res, GM_ADDR g, GM_ADDR out, GM_ADDR dg,
                                const GenetTiling& t) {
  GenetKernel<T, OP> k;
  k.Init(x, aux, res, g, out, dg, t);
  k.Process();
}

}  // namespace

// ------------------------------------------------------------------ entries
// One kernel per (op, dtype). The generated host functions are
// aclrtlaunch_<name>(blockDim, stream, <GM pointers as void*>..., GenetTiling*).
#define GENET_KERNELS(T, SUFFIX)                                                                       \
  extern "C" __global__ __aicore__ void genet_ge_fwd_##SUFFIX(GM_ADDR x, GM_ADDR residual, GM_ADDR y,   \
                                                              GM_ADDR means, GenetTiling tiling) {     \
    KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);                                                    \
    RunGenet<T, GENET_OP_GE_FWD>(x, residual, nullptr, nullptr, y, means, tiling);                     \
  }                                                                                                    \
  extern "C" __global__ __aicore__ void genet_ge_bwd_##SUFFIX(GM_ADDR grad_out, GM_ADDR x, GM_ADDR dx,  \
                                                              GenetTiling tiling) {                    \
    KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);                                                    \
    RunGenet<T, GENET_OP_GE_BWD>(x, grad_out, nullptr, nullptr, dx, nullptr, tiling);                  \
  }                                                                                                    \
  extern "C" __global__ __aicore__ void genet_ex_fwd_##SUFFIX(GM_ADDR x, GM_ADDR g, GM_ADDR residual,   \
                                                              GM_ADDR y, GenetTiling tiling) {         \
    KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);                                                    \
    RunGenet<T, GENET_OP_EX_FWD>(x, residual, nullptr, g, y, nullptr, tiling);                         \
  }                                                                                                    \
  extern "C" __global__ __aicore__ void genet_ex_bwd_##SUFFIX(GM_ADDR grad_out, GM_ADDR x, GM_ADDR g,   \
                                                              GM_ADDR dx, GM_ADDR dg,                  \
                                                              GenetTiling tiling) {                    \
    KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);                                                    \
    RunGenet<T, GENET_OP_EX_BWD>(x, grad_out, nullptr, g, dx, dg, tiling);                             \
  }                                                                                                    \
  extern "C" __global__ __aicore__ void genet_ex_lean_bwd_##SUFFIX(GM_ADDR grad_out, GM_ADDR out,       \
                                                                   GM_ADDR residual, GM_ADDR g,        \
                                                                   GM_ADDR dx, GM_ADDR dg,             \
                                                                   GenetTiling tiling) {               \
    KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);                                                    \
    RunGenet<T, GENET_OP_EX_LEAN_BWD>(out, grad_out, residual, g, dx, dg, tiling);                     \
  }

GENET_KERNELS(half, fp16)
GENET_KERNELS(bfloat16_t, bf16)
GENET_KERNELS(float, fp32)
