// A CPU model of the small part of CANN's kernel_operator.h (Ascend C) that
// csrc/ascend/kernels/genet_ops_kernels.cpp uses, for tests/test_ascend.py only (never
// compiled into genet_ops). It is NOT CANN and models no timing; every instruction
// completes at once. It encodes our reading of the public docs:
//
//  * Cores: each runs on its own thread; one runs at a time and every Ascend C call is a
//    point where another core may take over (seeded random choice), so cores interleave
//    in a shuffled order. GM bytes one core writes may not be read or written by another
//    (a cross-core race), whatever the order.
//  * Vector pipe: a vector instruction may not read or overwrite UB that an earlier vector
//    instruction wrote unless a PipeBarrier<PIPE_V> (or a V_S wait) came in between.
//  * Dtypes (Atlas A2): vector arithmetic on half and float only (bfloat16_t is refused:
//    cast it to float first); Cast pairs and round modes of the A2 table (see Cast below).
//  * Counters: vector instructions, DMA transfers (DataCopyPad) and scalar waits
//    (WaitFlag) issued, for comparing kernel designs (no NPU timing exists).
//
//  * Unified Buffer: each core gets `ub_capacity` bytes; TPipe::InitBuffer carves 32-byte
//    aligned buffers out of it and fails when they do not fit.
//  * TQue<pos, depth>: InitBuffer's `num` buffers can be allocated at once, at most
//    `depth` EnQue may be outstanding (not yet DeQue'd); EnQue/DeQue are FIFO; every
//    AllocTensor hands out NaN-filled memory, so reading unwritten data shows up.
//  * DataCopyPad GM->UB: blockCount rows of blockLen bytes, GM rows srcStride bytes
//    apart; each UB row starts 32-byte aligned; with isPad the rightPadding elements
//    after a row are set to paddingValue (the rest of the 32-byte row is left as is).
//    UB->GM writes exactly blockLen bytes per row, GM rows dstStride bytes apart.
//    blockCount <= 4095, blockLen < 2^21, right padding <= 32 bytes.
//  * Vector instructions: operands must start 32-byte aligned in UB and `count` elements
//    must lie inside the operand's buffer; arithmetic is float32 (IEEE), Cast rounds to
//    nearest even; ReduceSum checks its work buffer against the documented minimum.
//  * Compare and select (the kernels' ReLU): CompareScalar writes one bit per element, LSB
//    first, and compares as IEEE does (NaN: every ordered comparison false); its count form
//    takes whole 256-byte repeats (count * sizeof(T) a multiple of 256). Not on 16-bit
//    integers; Select in VSEL_TENSOR_SCALAR_MODE takes src0 where the bit is 1, the scalar
//    where it is 0.
//  * GM: every access must fall inside a buffer the harness registered.
//  * Scalar/vector ordering: UB the vector unit read or wrote since the last
//    SetFlag/WaitFlag<V_S> may not be touched by GetValue/SetValue (a scalar read of a
//    vector result, or a scalar write under a pending vector access, would race on the
//    chip); UB written by SetValue since the last SetFlag/WaitFlag<S_V> may not be used
//    by a vector instruction.
// A violation throws std::runtime_error with what and where.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <random>
#include <thread>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#define __aicore__
#define __global__
#define __gm__
#define GM_ADDR uint8_t*
#define KERNEL_TASK_TYPE_DEFAULT(x) ((void)0)

using half = _Float16;

struct bfloat16_t {
  uint16_t bits = 0;
  bfloat16_t() = default;
  bfloat16_t(int v) : bfloat16_t(static_cast<float>(v)) {}
  bfloat16_t(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) { bits = static_cast<uint16_t>((u >> 16) | 0x40); return; }  // NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    bits = static_cast<uint16_t>(u >> 16);
  }
  explicit operator float() const {
    uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

namespace genet_emu {
struct Region { const uint8_t* p; int64_t bytes; const char* name; std::vector<int8_t> writer, reader; };
inline std::vector<Region>& gm_regions() { static std::vector<Region> r; return r; }
inline int64_t& ub_capacity() { static int64_t c = 192 * 1024; return c; }
[[noreturn]] inline void fail(const std::string& what) { throw std::runtime_error("ascendc-emu: " + what); }
struct Span { const uint8_t* p; int64_t bytes; bool write; };

// What each AI core keeps to itself (one thread per core).
struct Core {
  int64_t idx = 0;
  std::vector<Span> vec_pending;     // UB the vector unit touched since the last V_S wait
  std::vector<Span> scalar_pending;  // UB SetValue wrote since the last S_V wait
  std::vector<Span> pipe_v_pending;  // UB vector instructions wrote since the last PipeBarrier<PIPE_V>
  void* pipe = nullptr;
};
inline thread_local Core* this_core = nullptr;
inline Core& core() {
  if (this_core == nullptr) fail("an Ascend C call outside run_cores()");
  return *this_core;
}
inline int64_t& block_num() { static int64_t v = 1; return v; }

// What the kernel issued (all cores together).
struct Counts { int64_t vector = 0, dma = 0, waits = 0, switches = 0; };  // switches: hand-overs between cores mid-kernel
inline Counts& counts() { static Counts c; return c; }

// ---- cores: one thread each, one running at a time, switching at Ascend C calls.
struct Scheduler {
  std::mutex m;
  std::condition_variable cv;
  int64_t turn = -1;
  std::vector<char> live;
  std::mt19937_64 rng;
  bool interleave = true;
  bool aborted = false;
  std::string error;
  int64_t pick() {  // a random live core
    std::vector<int64_t> c;
    for (int64_t i = 0; i < int64_t(live.size()); ++i) if (live[i]) c.push_back(i);
    return c.empty() ? -1 : c[rng() % c.size()];
  }
};
inline Scheduler*& scheduler() { static Scheduler* s = nullptr; return s; }
struct Aborted {};

// Called at every Ascend C call: maybe hand over to another core, then wait for our turn.
inline void yield() {
  Scheduler* s = scheduler();
  Core& me = core();
  std::unique_lock<std::mutex> lk(s->m);
  if (s->aborted) throw Aborted{};
  if (!s->interleave || s->rng() % 4 != 0) return;
  s->turn = s->pick();
  if (s->turn != me.idx) counts().switches++;
  s->cv.notify_all();
  s->cv.wait(lk, [&] { return s->turn == me.idx || s->aborted; });
  if (s->aborted) throw Aborted{};
}

// Runs body(core) for cores 0..n-1. seed 0: one after another in order (no interleaving);
// else interleaved, starting and switching at random. Rethrows the first failure.
inline void run_cores(int64_t n, uint64_t seed, const std::function<void(int64_t)>& body) {
  Scheduler s;
  s.rng.seed(seed);
  s.interleave = seed != 0;
  s.live.assign(n, 1);
  block_num() = n;
  scheduler() = &s;
  for (Region& r : gm_regions()) { r.writer.assign(r.bytes, -1); r.reader.assign(r.bytes, -1); }
  std::vector<std::thread> threads;
  for (int64_t i = 0; i < n; ++i) {
    threads.emplace_back([&s, &body, i] {
      Core c;
      c.idx = i;
      this_core = &c;
      std::unique_lock<std::mutex> lk(s.m);
      s.cv.wait(lk, [&] { return s.turn == i || s.aborted; });
      lk.unlock();
      std::string err;
      try {
        if (!s.aborted) body(i);
      } catch (const Aborted&) {
      } catch (const std::exception& e) {
        err = "core " + std::to_string(i) + ": " + e.what();
      }
      lk.lock();
      if (!err.empty() && !s.aborted) { s.aborted = true; s.error = err; }
      s.live[i] = 0;
      s.turn = s.interleave ? s.pick() : (i + 1 < int64_t(s.live.size()) ? i + 1 : -1);
      s.cv.notify_all();
      this_core = nullptr;
    });
  }
  {
    std::lock_guard<std::mutex> lk(s.m);
    s.turn = s.interleave ? s.pick() : 0;
  }
  s.cv.notify_all();
  for (auto& t : threads) t.join();
  scheduler() = nullptr;
  if (!s.error.empty()) throw std::runtime_error(s.error);
}

inline bool overlaps(const Span& a, const uint8_t* p, int64_t bytes) { return p < a.p + a.bytes && a.p < p + bytes; }
inline void vector_access(const void* ptr, int64_t bytes, bool write, const char* op) {
  const uint8_t* p = static_cast<const uint8_t*>(ptr);
  Core& c = core();
  for (const Span& s : c.scalar_pending)
    if (overlaps(s, p, bytes))
      fail(std::string(op) + ": vector access to UB written by SetValue without SetFlag/WaitFlag<S_V>");
  for (const Span& s : c.pipe_v_pending)
    if (overlaps(s, p, bytes))
      fail(std::string(op) + ": vector " + (write ? "write over" : "read of") +
           " UB an earlier vector instruction wrote, without PipeBarrier<PIPE_V> in between");
  c.vec_pending.push_back({p, bytes, write});
  if (write) c.pipe_v_pending.push_back({p, bytes, true});  // operands are read (checked) before written
}
// One vector instruction issued (a switch point between cores).
inline void vector_issue() {
  yield();
  counts().vector++;
}
inline void scalar_access(const void* ptr, int64_t bytes, bool write, const char* op) {
  const uint8_t* p = static_cast<const uint8_t*>(ptr);
  for (const Span& s : core().vec_pending)
    if ((s.write || write) && overlaps(s, p, bytes))
      fail(std::string(op) + ": scalar access to UB the vector unit " + (s.write ? "wrote" : "reads") +
           " without SetFlag/WaitFlag<V_S>");
  if (write) core().scalar_pending.push_back({p, bytes, true});
}
// GM access by the current core: inside a registered buffer, and no byte shared with
// another core unless both only read it.
inline void check_gm(const void* p, int64_t bytes, bool write, const char* op) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  const int8_t me = static_cast<int8_t>(core().idx);
  for (Region& r : gm_regions()) {
    if (b >= r.p && b + bytes <= r.p + r.bytes) {
      for (int64_t i = b - r.p, e = i + bytes; i < e; ++i) {
        const int8_t w = r.writer[i];
        if (w >= 0 && w != me)
          fail(std::string(op) + ": " + r.name + " byte " + std::to_string(i) + " written by core " +
               std::to_string(w) + " and " + (write ? "written" : "read") + " by core " + std::to_string(me));
        if (write) {
          const int8_t rd = r.reader[i];
          if (rd != -1 && rd != me)
            fail(std::string(op) + ": " + r.name + " byte " + std::to_string(i) + " read by another core and "
                 "written by core " + std::to_string(me));
          r.writer[i] = me;
        } else {
          r.reader[i] = r.reader[i] == -1 || r.reader[i] == me ? me : int8_t(-2);
        }
      }
      return;
    }
  }
  fail(std::string(op) + ": GM access of " + std::to_string(bytes) + " bytes outside every registered buffer");
}

// Vector arithmetic dtypes on Atlas A2: half and float (bfloat16_t only through Cast).
template <typename T>
inline void arith_dtype(const char* op) {
  if (!std::is_same<T, float>::value && !std::is_same<T, half>::value)
    fail(std::string(op) + ": vector arithmetic on this dtype is not supported on Atlas A2 (only half, float)");
}
}  // namespace genet_emu

namespace AscendC {

enum class TPosition { GM, VECIN, VECOUT, VECCALC };
using QuePosition = TPosition;
enum class HardEvent { V_S, S_V, MTE2_V, V_MTE3 };
using TEventID = int32_t;
enum class RoundMode { CAST_NONE, CAST_RINT, CAST_FLOOR, CAST_CEIL, CAST_ROUND, CAST_TRUNC, CAST_ODD };
enum pipe_t { PIPE_S, PIPE_V, PIPE_MTE2, PIPE_MTE3, PIPE_ALL };
enum class CMPMODE { LT, GT, EQ, LE, GE, NE };
enum class SELMODE { VSEL_CMPMASK_SPR, VSEL_TENSOR_SCALAR_MODE, VSEL_TENSOR_TENSOR_MODE };

template <typename A, typename B>
struct IsSameType { static constexpr bool value = std::is_same<A, B>::value; };

inline int64_t GetBlockIdx() { return genet_emu::core().idx; }
inline int64_t GetBlockNum() { return genet_emu::block_num(); }
template <pipe_t p> inline void PipeBarrier() {
  genet_emu::yield();
  if (p == PIPE_V || p == PIPE_ALL) genet_emu::core().pipe_v_pending.clear();
}
template <HardEvent e> inline void SetFlag(int32_t) { genet_emu::yield(); }
template <HardEvent e> inline void WaitFlag(int32_t) {
  genet_emu::yield();
  genet_emu::counts().waits++;
  if (e == HardEvent::V_S) {  // the scalar unit waited for every vector instruction so far
    genet_emu::core().vec_pending.clear();
    genet_emu::core().pipe_v_pending.clear();
  }
  if (e == HardEvent::S_V) genet_emu::core().scalar_pending.clear();
}

class TPipe;
inline TPipe* GetTPipePtr() { return static_cast<TPipe*>(genet_emu::core().pipe); }

template <typename T>
class LocalTensor {
 public:
  LocalTensor() = default;
  LocalTensor(T* p, int64_t cap, const uint8_t* ub) : p_(p), cap_(cap), ub_(ub) {}
  LocalTensor operator[](int64_t off) const {
    if (off < 0 || off > cap_) genet_emu::fail("LocalTensor[] offset " + std::to_string(off) + " outside its buffer");
    return LocalTensor(p_ + off, cap_ - off, ub_);
  }
  T GetValue(int64_t i) const {
    genet_emu::yield();
    check(i, 1, "GetValue", false);
    genet_emu::scalar_access(p_ + i, sizeof(T), false, "GetValue");
    return p_[i];
  }
  void SetValue(int64_t i, T v) const {
    genet_emu::yield();
    check(i, 1, "SetValue", false);
    genet_emu::scalar_access(p_ + i, sizeof(T), true, "SetValue");
    p_[i] = v;
  }
  void vread(int64_t n, const char* op) const { check(0, n, op); genet_emu::vector_access(p_, n * sizeof(T), false, op); }
  void vwrite(int64_t n, const char* op) const { check(0, n, op); genet_emu::vector_access(p_, n * sizeof(T), true, op); }
  T* ptr() const { return p_; }
  int64_t cap() const { return cap_; }
  template <typename U>
  LocalTensor<U> ReinterpretCast() const {
    return LocalTensor<U>(reinterpret_cast<U*>(p_), cap_ * int64_t(sizeof(T)) / int64_t(sizeof(U)), ub_);
  }
  void check(int64_t first, int64_t count, const char* op, bool aligned = true) const {
    if (p_ == nullptr) genet_emu::fail(std::string(op) + " on an unset LocalTensor");
    if (first < 0 || count < 0 || first + count > cap_)
      genet_emu::fail(std::string(op) + ": elements [" + std::to_string(first) + ", " + std::to_string(first + count) +
                      ") outside a buffer of " + std::to_string(cap_));
    if (aligned && (reinterpret_cast<const uint8_t*>(p_) - ub_) % 32 != 0)
      genet_emu::fail(std::string(op) + ": operand not 32-byte aligned in UB");
  }

 private:
  T* p_ = nullptr;
  int64_t cap_ = 0;
  const uint8_t* ub_ = nullptr;
};

template <typename T>
class GlobalTensor {
 public:
  void SetGlobalBuffer(T* p, uint64_t = 0) { p_ = p; }
  GlobalTensor operator[](uint64_t off) const { GlobalTensor g; g.p_ = p_ + off; return g; }
  T* ptr() const { return p_; }
 private:
  T* p_ = nullptr;
};

struct DataCopyExtParams {
  uint16_t blockCount = 1;
  uint32_t blockLen = 0;
  uint32_t srcStride = 0;
  uint32_t dstStride = 0;
  uint32_t rsv = 0;
};

template <typename T>
struct DataCopyPadExtParams {
  bool isPad = false;
  uint8_t leftPadding = 0;
  uint8_t rightPadding = 0;
  T paddingValue = 0;
};

class TPipe {
 public:
  TPipe() : ub_(genet_emu::ub_capacity(), 0xff) {
    genet_emu::Core& c = genet_emu::core();
    c.pipe = this;
    c.vec_pending.clear();
    c.scalar_pending.clear();
    c.pipe_v_pending.clear();
  }
  ~TPipe() {
    if (genet_emu::this_core != nullptr && genet_emu::this_core->pipe == this) genet_emu::this_core->pipe = nullptr;
  }
  template <typename Q>
  void InitBuffer(Q& q, int32_t num, uint32_t bytes) {
    if (bytes % 32 != 0) genet_emu::fail("InitBuffer: " + std::to_string(bytes) + " bytes is not a multiple of 32");
    q.init(carve(int64_t(num) * bytes), num, bytes, ub_.data());
  }
  template <typename B>
  void InitBuffer(B& b, uint32_t bytes) {
    if (bytes % 32 != 0) genet_emu::fail("InitBuffer: " + std::to_string(bytes) + " bytes is not a multiple of 32");
    b.init(carve(bytes), bytes, ub_.data());
  }
  TEventID FetchEventID(HardEvent) { return 0; }
  int64_t used() const { return used_; }

 private:
  uint8_t* carve(int64_t bytes) {
    if (used_ + bytes > int64_t(ub_.size()))
      genet_emu::fail("Unified Buffer overflow: " + std::to_string(used_ + bytes) + " > " + std::to_string(ub_.size()) +
                      " bytes");
    uint8_t* p = ub_.data() + used_;
    used_ += bytes;
    return p;
  }
  std::vector<uint8_t> ub_;
  int64_t used_ = 0;
};

template <TPosition pos, int depth>
class TQue {
 public:
  void init(uint8_t* base, int32_t num, uint32_t bytes, const uint8_t* ub) {
    base_ = base; num_ = num; bytes_ = bytes; ub_ = ub;
    state_.assign(num, 0);
  }
  template <typename T>
  LocalTensor<T> AllocTensor() {
    for (int i = 0; i < num_; ++i) {
      if (state_[i] == 0) {
        state_[i] = 1;
        std::memset(base_ + i * bytes_, 0xff, bytes_);  // NaN: catches reads of unwritten data
        return LocalTensor<T>(reinterpret_cast<T*>(base_ + i * bytes_), bytes_ / sizeof(T), ub_);
      }
    }
    genet_emu::fail("AllocTensor: all " + std::to_string(num_) + " buffers of the queue are in use");
  }
  template <typename T>
  void EnQue(const LocalTensor<T>& t) {  // depth = how many EnQue may run ahead of DeQue
    if (int(fifo_.size()) >= depth) genet_emu::fail("EnQue: queue depth " + std::to_string(depth) + " exceeded");
    fifo_.push_back(index(t.ptr()));
    state_[fifo_.back()] = 2;
  }
  template <typename T>
  LocalTensor<T> DeQue() {
    if (fifo_.empty()) genet_emu::fail("DeQue on an empty queue");
    const int i = fifo_.front();
    fifo_.erase(fifo_.begin());
    state_[i] = 1;
    return LocalTensor<T>(reinterpret_cast<T*>(base_ + i * bytes_), bytes_ / sizeof(T), ub_);
  }
  template <typename T>
  void FreeTensor(const LocalTensor<T>& t) { state_[index(t.ptr())] = 0; }

 private:
  int index(const void* p) const {
    const int64_t off = static_cast<const uint8_t*>(p) - base_;
    if (base_ == nullptr || off < 0 || off % bytes_ != 0 || off / bytes_ >= num_)
      genet_emu::fail("tensor does not belong to this queue");
    return static_cast<int>(off / bytes_);
  }
  uint8_t* base_ = nullptr;
  int32_t num_ = 0;
  uint32_t bytes_ = 0;
  const uint8_t* ub_ = nullptr;
  std::vector<int> state_;  // 0 free, 1 allocated, 2 queued
  std::vector<int> fifo_;
};

template <TPosition pos>
class TBuf {
 public:
  void init(uint8_t* base, uint32_t bytes, const uint8_t* ub) { base_ = base; bytes_ = bytes; ub_ = ub; }
  template <typename T>
  LocalTensor<T> Get() const {
    if (base_ == nullptr) genet_emu::fail("TBuf::Get before InitBuffer");
    return LocalTensor<T>(reinterpret_cast<T*>(base_), bytes_ / sizeof(T), ub_);
  }
 private:
  uint8_t* base_ = nullptr;
  uint32_t bytes_ = 0;
  const uint8_t* ub_ = nullptr;
};

// ------------------------------------------------------------------ data movement
template <typename T>
void DataCopyPad(const LocalTensor<T>& dst, const GlobalTensor<T>& src, const DataCopyExtParams& p,
                 const DataCopyPadExtParams<T>& pad) {
  genet_emu::yield();
  genet_emu::counts().dma++;
  if (p.blockCount < 1 || p.blockCount > 4095) genet_emu::fail("DataCopyPad: blockCount " + std::to_string(p.blockCount));
  if (p.blockLen < 1 || p.blockLen > 2097151 || p.blockLen % sizeof(T)) genet_emu::fail("DataCopyPad: blockLen");
  if ((pad.leftPadding + pad.rightPadding) * sizeof(T) > 32) genet_emu::fail("DataCopyPad: padding over 32 bytes");
  const int64_t row_elems = p.blockLen / sizeof(T);
  const int64_t ub_row = ((pad.isPad ? pad.leftPadding + pad.rightPadding : 0) * int64_t(sizeof(T)) + p.blockLen + 31) / 32 * 32;
  const int64_t ub_pitch = ub_row / sizeof(T) + p.dstStride * 32 / sizeof(T);
  const uint8_t* g = reinterpret_cast<const uint8_t*>(src.ptr());
  for (int64_t r = 0; r < p.blockCount; ++r) {
    const uint8_t* row = g + r * (int64_t(p.blockLen) + p.srcStride);
    genet_emu::check_gm(row, p.blockLen, false, "DataCopyPad GM->UB");
    dst.check(r * ub_pitch, ub_row / sizeof(T), "DataCopyPad GM->UB");
    T* out = dst.ptr() + r * ub_pitch;
    int64_t c = 0;
    if (pad.isPad) for (int64_t i = 0; i < pad.leftPadding; ++i) out[c++] = pad.paddingValue;
    std::memcpy(out + c, row, p.blockLen);
    c += row_elems;
    if (pad.isPad) for (int64_t i = 0; i < pad.rightPadding; ++i) out[c++] = pad.paddingValue;
  }
}

template <typename T>
void DataCopyPad(const GlobalTensor<T>& dst, const LocalTensor<T>& src, const DataCopyExtParams& p) {
  genet_emu::yield();
  genet_emu::counts().dma++;
  if (p.blockCount < 1 || p.blockCount > 4095) genet_emu::fail("DataCopyPad UB->GM: blockCount");
  if (p.blockLen < 1 || p.blockLen > 2097151 || p.blockLen % sizeof(T)) genet_emu::fail("DataCopyPad UB->GM: blockLen");
  const int64_t ub_pitch = (int64_t(p.blockLen) + 31) / 32 * 32 / sizeof(T) + p.srcStride * 32 / sizeof(T);
  uint8_t* g = reinterpret_cast<uint8_t*>(dst.ptr());
  for (int64_t r = 0; r < p.blockCount; ++r) {
    uint8_t* row = g + r * (int64_t(p.blockLen) + p.dstStride);
    genet_emu::check_gm(row, p.blockLen, true, "DataCopyPad UB->GM");
    src.check(r * ub_pitch, p.blockLen / sizeof(T), "DataCopyPad UB->GM");
    std::memcpy(row, src.ptr() + r * ub_pitch, p.blockLen);
  }
}

// ------------------------------------------------------------------ vector unit
// Each call is one issued vector instruction (the count-form APIs: `n` elements).
#define GENET_EMU_UNARY(NAME, EXPR)                                                      \
  template <typename T>                                                                  \
  void NAME(const LocalTensor<T>& dst, const LocalTensor<T>& src, int32_t n) {           \
    genet_emu::vector_issue(); genet_emu::arith_dtype<T>(#NAME);                          \
    src.vread(n, #NAME); dst.vwrite(n, #NAME);                                            \
    for (int32_t i = 0; i < n; ++i) { const float v = float(src.ptr()[i]); dst.ptr()[i] = T(EXPR); } \
  }
GENET_EMU_UNARY(Exp, std::exp(v))
#undef GENET_EMU_UNARY

template <typename T, typename S>
void Muls(const LocalTensor<T>& dst, const LocalTensor<T>& src, S s, int32_t n) {
  genet_emu::vector_issue(); genet_emu::arith_dtype<T>("Muls");
  src.vread(n, "Muls"); dst.vwrite(n, "Muls");
  for (int32_t i = 0; i < n; ++i) dst.ptr()[i] = T(float(src.ptr()[i]) * float(s));
}
template <typename T, typename S>
void Adds(const LocalTensor<T>& dst, const LocalTensor<T>& src, S s, int32_t n) {
  genet_emu::vector_issue(); genet_emu::arith_dtype<T>("Adds");
  src.vread(n, "Adds"); dst.vwrite(n, "Adds");
  for (int32_t i = 0; i < n; ++i) dst.ptr()[i] = T(float(src.ptr()[i]) + float(s));
}
#define GENET_EMU_BINARY(NAME, OP)                                                                       \
  template <typename T>                                                                                  \
  void NAME(const LocalTensor<T>& dst, const LocalTensor<T>& a, const LocalTensor<T>& b, int32_t n) {    \
    genet_emu::vector_issue(); genet_emu::arith_dtype<T>(#NAME);                                         \
    a.vread(n, #NAME); b.vread(n, #NAME); dst.vwrite(n, #NAME);                                          \
    for (int32_t i = 0; i < n; ++i) dst.ptr()[i] = T(float(a.ptr()[i]) OP float(b.ptr()[i]));           \
  }
GENET_EMU_BINARY(Add, +)
GENET_EMU_BINARY(Sub, -)
GENET_EMU_BINARY(Mul, *)
GENET_EMU_BINARY(Div, /)
#undef GENET_EMU_BINARY

template <typename T, typename U>
void CompareScalar(const LocalTensor<U>& dst, const LocalTensor<T>& src, T scalar, CMPMODE mode, uint32_t count) {
  static_assert(std::is_same<U, uint8_t>::value, "CompareScalar: the mask is uint8_t");
  genet_emu::vector_issue(); genet_emu::arith_dtype<T>("CompareScalar");
  if ((int64_t(count) * int64_t(sizeof(T))) % 256 != 0)
    genet_emu::fail("CompareScalar: count " + std::to_string(count) + " is not whole 256-byte repeats");
  src.vread(count, "CompareScalar");
  dst.vwrite(count / 8, "CompareScalar");
  std::vector<uint8_t> bits(count / 8, 0);
  for (uint32_t i = 0; i < count; ++i) {
    const float v = float(src.ptr()[i]), s = float(scalar);
    const bool r = mode == CMPMODE::LT ? v < s : mode == CMPMODE::GT ? v > s : mode == CMPMODE::EQ ? v == s
                 : mode == CMPMODE::LE ? v <= s : mode == CMPMODE::GE ? v >= s : v != s;
    if (r) bits[i / 8] |= uint8_t(1u << (i % 8));
  }
  std::memcpy(dst.ptr(), bits.data(), bits.size());
}

template <typename T>
void Not(const LocalTensor<T>& dst, const LocalTensor<T>& src, int32_t n) {
  static_assert(std::is_same<T, uint16_t>::value || std::is_same<T, int16_t>::value, "Not: 16-bit integers");
  genet_emu::vector_issue();
  src.vread(n, "Not"); dst.vwrite(n, "Not");
  for (int32_t i = 0; i < n; ++i) dst.ptr()[i] = T(~src.ptr()[i]);
}

template <typename T, typename U>
void Select(const LocalTensor<T>& dst, const LocalTensor<U>& selMask, const LocalTensor<T>& src0, T scalar,
            SELMODE mode, uint32_t count) {
  static_assert(std::is_same<U, uint8_t>::value, "Select: the kernels pass a uint8_t mask");
  genet_emu::vector_issue(); genet_emu::arith_dtype<T>("Select");
  if (mode != SELMODE::VSEL_TENSOR_SCALAR_MODE) genet_emu::fail("Select: only VSEL_TENSOR_SCALAR_MODE is modelled");
  selMask.vread((count + 7) / 8, "Select"); src0.vread(count, "Select"); dst.vwrite(count, "Select");
  for (uint32_t i = 0; i < count; ++i)
    dst.ptr()[i] = (selMask.ptr()[i / 8] >> (i % 8)) & 1u ? src0.ptr()[i] : scalar;
}

template <typename T, typename S>
void Duplicate(const LocalTensor<T>& dst, S s, int32_t n) {
  genet_emu::vector_issue(); genet_emu::arith_dtype<T>("Duplicate");
  dst.vwrite(n, "Duplicate");
  for (int32_t i = 0; i < n; ++i) dst.ptr()[i] = T(s);
}

// Cast pairs and round modes of Atlas A2 as we read its table: widening half / bfloat16_t
// -> float with CAST_NONE only; float -> half with CAST_NONE (= CAST_RINT when inexact),
// RINT, FLOOR, CEIL, ROUND, TRUNC, ODD; float -> bfloat16_t with RINT, FLOOR, CEIL, ROUND,
// TRUNC (no CAST_NONE, no CAST_ODD). The model computes round-to-nearest-even only, so it
// accepts only the modes that mean that: CAST_RINT, and CAST_NONE where it is allowed.
template <typename D, typename S>
void Cast(const LocalTensor<D>& dst, const LocalTensor<S>& src, RoundMode mode, int32_t n) {
  genet_emu::vector_issue();
  src.vread(n, "Cast"); dst.vwrite(n, "Cast");
  constexpr bool widen = std::is_same<D, float>::value && (std::is_same<S, half>::value || std::is_same<S, bfloat16_t>::value);
  constexpr bool to_half = std::is_same<D, half>::value && std::is_same<S, float>::value;
  constexpr bool to_bf16 = std::is_same<D, bfloat16_t>::value && std::is_same<S, float>::value;
  static_assert(widen || to_half || to_bf16, "Cast pair not used by the kernels / not modelled");
  if (widen && mode != RoundMode::CAST_NONE) genet_emu::fail("Cast: half/bfloat16_t -> float takes CAST_NONE on Atlas A2");
  if (to_half && mode != RoundMode::CAST_RINT && mode != RoundMode::CAST_NONE)
    genet_emu::fail("Cast float -> half: only round-to-nearest-even (CAST_RINT / CAST_NONE) is modelled");
  if (to_bf16 && mode != RoundMode::CAST_RINT)
    genet_emu::fail(mode == RoundMode::CAST_NONE || mode == RoundMode::CAST_ODD
                        ? "Cast float -> bfloat16_t: round mode not implemented on Atlas A2 (use CAST_RINT)"
                        : "Cast float -> bfloat16_t: only CAST_RINT is modelled");
  for (int32_t i = 0; i < n; ++i) dst.ptr()[i] = D(float(src.ptr()[i]));  // round to nearest even
}

template <typename T>
void ReduceSum(const LocalTensor<T>& dst, const LocalTensor<T>& src, const LocalTensor<T>& work, int32_t n) {
  static_assert(std::is_same<T, float>::value, "the kernels reduce in fp32");
  genet_emu::vector_issue();
  src.vread(n, "ReduceSum");
  dst.check(0, 1, "ReduceSum", false);
  genet_emu::vector_access(dst.ptr(), sizeof(T), true, "ReduceSum");
  const int64_t need = ((std::max<int64_t>(1, (n + 63) / 64)) + 7) / 8 * 8;
  work.vwrite(need, "ReduceSum work");
  float acc = 0.0f;  // repeats of 64 summed in order (Atlas A2, "tensor first n" form)
  for (int32_t r = 0; r < n; r += 64) {
    float part = 0.0f;
    for (int32_t i = r; i < n && i < r + 64; ++i) part += src.ptr()[i];
    acc += part;
  }
  dst.ptr()[0] = acc;
}


// ---- repeat-form instructions (our reading of the A2 docs; strides in 32-byte blocks).
// One call = one issued instruction of `repeat` (<= 255) iterations; each iteration takes
// `mask` (<= 256 bytes' worth) consecutive elements spread over blocks blkStride apart,
// iterations repStride blocks apart.
struct BinaryRepeatParams {
  uint8_t dstBlkStride = 1, src0BlkStride = 1, src1BlkStride = 1, dstRepStride = 8, src0RepStride = 8, src1RepStride = 8;
  BinaryRepeatParams() = default;
  BinaryRepeatParams(uint8_t db, uint8_t s0b, uint8_t s1b, uint8_t dr, uint8_t s0r, uint8_t s1r)
      : dstBlkStride(db), src0BlkStride(s0b), src1BlkStride(s1b), dstRepStride(dr), src0RepStride(s0r), src1RepStride(s1r) {}
};
struct BrcbRepeatParams {
  uint16_t dstBlkStride = 1, dstRepStride = 8;
  BrcbRepeatParams(uint16_t b, uint16_t r) : dstBlkStride(b), dstRepStride(r) {}
};
}  // namespace AscendC
namespace genet_emu {
template <typename T>
inline void repeat_limits(uint64_t mask, int32_t repeat, const char* op) {
  if (mask < 1 || mask > 256 / sizeof(T)) fail(std::string(op) + ": mask " + std::to_string(mask) + " out of range");
  if (repeat < 1 || repeat > 255) fail(std::string(op) + ": repeatTimes " + std::to_string(repeat) + " out of 1..255");
}
// Element index of lane i of iteration r.
template <typename T>
inline int64_t lane(int64_t r, int64_t i, int64_t blk, int64_t rep) {
  constexpr int64_t per = 32 / sizeof(T);
  return r * rep * per + (i / per) * blk * per + i % per;
}
// Checks and records the blocks an operand's iterations touch.
template <typename T>
inline void touch(const AscendC::LocalTensor<T>& t, uint64_t mask, int32_t repeat, int64_t blk, int64_t rep, bool write,
                  const char* op) {
  constexpr int64_t per = 32 / sizeof(T);
  t.check(0, 0, op);
  for (int64_t r = 0; r < repeat; ++r)
    for (int64_t b = 0; b * per < int64_t(mask); ++b) {
      const int64_t first = lane<T>(r, b * per, blk, rep);
      const int64_t n = std::min<int64_t>(per, int64_t(mask) - b * per);
      t.check(first, n, op, false);
      vector_access(t.ptr() + first, n * sizeof(T), write, op);
    }
}
}  // namespace genet_emu
namespace AscendC {
#define GENET_EMU_BINARY_REPEAT(NAME, OP)                                                                        \
  template <typename T>                                                                                          \
  void NAME(const LocalTensor<T>& dst, const LocalTensor<T>& a, const LocalTensor<T>& b, uint64_t mask,          \
            uint8_t repeat, const BinaryRepeatParams& p) {                                                       \
    genet_emu::vector_issue(); genet_emu::arith_dtype<T>(#NAME);                                                 \
    genet_emu::repeat_limits<T>(mask, repeat, #NAME);                                                            \
    genet_emu::touch(a, mask, repeat, p.src0BlkStride, p.src0RepStride, false, #NAME);                           \
    genet_emu::touch(b, mask, repeat, p.src1BlkStride, p.src1RepStride, false, #NAME);                           \
    genet_emu::touch(dst, mask, repeat, p.dstBlkStride, p.dstRepStride, true, #NAME);                            \
    std::vector<float> v(size_t(repeat) * mask);                                                                 \
    for (int64_t r = 0; r < repeat; ++r)                                                                         \
      for (int64_t i = 0; i < int64_t(mask); ++i)                                                                \
        v[r * mask + i] = float(a.ptr()[genet_emu::lane<T>(r, i, p.src0BlkStride, p.src0RepStride)]) OP          \
                          float(b.ptr()[genet_emu::lane<T>(r, i, p.src1BlkStride, p.src1RepStride)]);            \
    for (int64_t r = 0; r < repeat; ++r)                                                                         \
      for (int64_t i = 0; i < int64_t(mask); ++i)                                                                \
        dst.ptr()[genet_emu::lane<T>(r, i, p.dstBlkStride, p.dstRepStride)] = T(v[r * mask + i]);                \
  }
GENET_EMU_BINARY_REPEAT(Add, +)
GENET_EMU_BINARY_REPEAT(Mul, *)
#undef GENET_EMU_BINARY_REPEAT

// dst[r * dstRepStride] = sum of the `mask` lanes of iteration r (dstRepStride in elements).
template <typename T>
void WholeReduceSum(const LocalTensor<T>& dst, const LocalTensor<T>& src, int32_t mask, int32_t repeat,
                    int32_t dstRepStride, int32_t srcBlkStride, int32_t srcRepStride) {
  genet_emu::vector_issue(); genet_emu::arith_dtype<T>("WholeReduceSum");
  genet_emu::repeat_limits<T>(mask, repeat, "WholeReduceSum");
  genet_emu::touch(src, mask, repeat, srcBlkStride, srcRepStride, false, "WholeReduceSum");
  dst.check(0, 0, "WholeReduceSum");
  std::vector<float> v(repeat, 0.0f);
  for (int64_t r = 0; r < repeat; ++r)
    for (int64_t i = 0; i < mask; ++i) v[r] += float(src.ptr()[genet_emu::lane<T>(r, i, srcBlkStride, srcRepStride)]);
  for (int64_t r = 0; r < repeat; ++r) {
    dst.check(r * dstRepStride, 1, "WholeReduceSum", false);
    genet_emu::vector_access(dst.ptr() + r * dstRepStride, sizeof(T), true, "WholeReduceSum");
    dst.ptr()[r * dstRepStride] = T(v[r]);
  }
}

// Iteration r broadcasts src[8r .. 8r+8) each to a whole 32-byte block of dst.
template <typename T>
void Brcb(const LocalTensor<T>& dst, const LocalTensor<T>& src, uint8_t repeat, const BrcbRepeatParams& p) {
  genet_emu::vector_issue();
  static_assert(sizeof(T) == 2 || sizeof(T) == 4, "Brcb: 16- or 32-bit elements");
  if (repeat < 1) genet_emu::fail("Brcb: repeatTimes 0");
  constexpr int64_t per = 32 / sizeof(T);
  src.vread(int64_t(repeat) * 8, "Brcb");
  for (int64_t r = 0; r < repeat; ++r)
    for (int64_t j = 0; j < 8; ++j) {
      const int64_t first = (r * p.dstRepStride + j * p.dstBlkStride) * per;
      dst.check(first, per, "Brcb", false);
      genet_emu::vector_access(dst.ptr() + first, 32, true, "Brcb");
      for (int64_t k = 0; k < per; ++k) dst.ptr()[first + k] = src.ptr()[r * 8 + j];
    }
}

}  // namespace AscendC
