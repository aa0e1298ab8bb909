// A small CUDA execution emulator for the kernels in csrc/cuda, used only by the
// GPU-less tests (tests/test_cuda.py builds tests/emu/cuda/emu_ext.cpp with g++).
//
// Each CUDA thread of a block runs as a cooperative fiber (ucontext); blocks run one
// after another. __syncthreads and warp shuffles are barriers at which fibers yield,
// so the kernels' indexing, vector accesses, shuffles, shared-memory reductions and
// barriers execute exactly as written. A barrier that not every thread of the block
// (or warp) reaches is reported as an error instead of hanging. Fibers can run in
// forward or reverse thread order between barriers: a missing barrier then shows up
// as a difference between the two orders.
#pragma once

#include <ucontext.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict

namespace gemu {

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct Fiber {
  ucontext_t ctx;
  bool done = false;
};

struct State {
  dim3 grid, block;
  unsigned bid = 0;
  int cur = 0;
  int nthreads = 0;
  bool reverse = false;
  std::vector<Fiber> fibers;
  std::vector<std::vector<char>> stacks;
  ucontext_t sched;
  std::function<void()> body;
  // block barrier
  int arrived = 0;
  uint64_t gen = 0;
  // warp barriers
  std::vector<int> warp_arrived;
  std::vector<uint64_t> warp_gen;
  std::vector<uint64_t> shfl;  // 32 slots of 8 bytes per warp
  uint64_t progress = 0;
  std::vector<unsigned char> smem;
  std::string fault;  // first access the GPU would fault on, reported after the block
};

inline State& st() {
  static State s;
  return s;
}

inline void set_reverse(bool r) { st().reverse = r; }

inline dim3 thread_idx() { return dim3(static_cast<unsigned>(st().cur)); }
inline dim3 block_idx() { return dim3(st().bid); }
inline dim3 block_dim() { return st().block; }
inline dim3 grid_dim() { return st().grid; }
inline unsigned char* smem_ptr() { return st().smem.data(); }

inline void yield() {
  State& s = st();
  swapcontext(&s.fibers[s.cur].ctx, &s.sched);
}

inline void syncthreads() {
  State& s = st();
  const uint64_t g = s.gen;
  ++s.progress;
  if (++s.arrived == s.nthreads) {
    s.arrived = 0;
    ++s.gen;
    return;
  }
  while (s.gen == g) yield();
}

inline void syncwarp() {
  State& s = st();
  const int w = s.cur / 32;
  const uint64_t g = s.warp_gen[w];
  ++s.progress;
  if (++s.warp_arrived[w] == 32) {
    s.warp_arrived[w] = 0;
    ++s.warp_gen[w];
    return;
  }
  while (s.warp_gen[w] == g) yield();
}

template <typename T>
inline T shfl_xor(T v, int lane_mask) {
  static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
  State& s = st();
  const int w = s.cur / 32, lane = s.cur % 32;
  std::memcpy(&s.shfl[w * 32 + lane], &v, sizeof(T));
  syncwarp();
  T r;
  std::memcpy(&r, &s.shfl[w * 32 + (lane ^ lane_mask)], sizeof(T));
  syncwarp();
  return r;
}

inline float fdividef(float a, float b) { return a / b; }

inline void check_aligned(const void* p, size_t bytes) {
  State& s = st();
  if (reinterpret_cast<uintptr_t>(p) % bytes != 0 && s.fault.empty())
    s.fault = "misaligned " + std::to_string(bytes) + "-byte access by thread " + std::to_string(s.cur) +
              " of block " + std::to_string(s.bid);
}

inline void trampoline() {
  State& s = st();
  s.body();
  s.fibers[s.cur].done = true;
}

template <typename... KArgs, typename... Args>
void launch(int64_t grid, int64_t block, size_t smem_bytes, void (*kernel)(KArgs...), Args&&... args) {
  State& s = st();
  if (block <= 0 || block > 1024 || block % 32 != 0)
    throw std::runtime_error("gemu: block size must be a multiple of 32 in [32, 1024], got " +
                             std::to_string(block));
  if (grid <= 0 || grid > INT32_MAX) throw std::runtime_error("gemu: bad grid " + std::to_string(grid));
  if (smem_bytes > 227 * 1024) throw std::runtime_error("gemu: too much shared memory");
  s.grid = dim3(static_cast<unsigned>(grid));
  s.block = dim3(static_cast<unsigned>(block));
  s.nthreads = static_cast<int>(block);
  s.fibers.assign(block, Fiber{});
  const size_t stack_size = 256 * 1024;
  while (s.stacks.size() < static_cast<size_t>(block)) s.stacks.emplace_back(stack_size);
  s.warp_arrived.assign(block / 32, 0);
  s.warp_gen.assign(block / 32, 0);
  s.shfl.assign(block, 0);
  s.body = [&]() { kernel(args...); };
  for (int64_t b = 0; b < grid; ++b) {
    s.bid = static_cast<unsigned>(b);
    // Poison shared memory: a read of a slot nobody wrote gives NaN-like garbage.
    s.smem.assign(smem_bytes + 16, 0xff);
    s.arrived = 0;
    for (int t = 0; t < s.nthreads; ++t) {
      Fiber& f = s.fibers[t];
      f.done = false;
      getcontext(&f.ctx);
      f.ctx.uc_stack.ss_sp = s.stacks[t].data();
      f.ctx.uc_stack.ss_size = stack_size;
      f.ctx.uc_link = &s.sched;
      makecontext(&f.ctx, trampoline, 0);
    }
    int alive = s.nthreads;
    while (alive > 0) {
      const uint64_t before = s.progress;
      alive = 0;
      for (int i = 0; i < s.nthreads; ++i) {
        const int t = s.reverse ? s.nthreads - 1 - i : i;
        if (s.fibers[t].done) continue;
        s.cur = t;
        swapcontext(&s.sched, &s.fibers[t].ctx);
        if (!s.fibers[t].done) ++alive;
        else ++s.progress;
      }
      if (alive > 0 && s.progress == before)
        throw std::runtime_error("gemu: deadlock, a barrier or shuffle is not reached by every thread");
    }
    if (!s.fault.empty()) {
      const std::string f = s.fault;
      s.fault.clear();
      throw std::runtime_error("gemu: " + f);
    }
  }
}

}  // namespace gemu

#define threadIdx (::gemu::thread_idx())
#define blockIdx (::gemu::block_idx())
#define blockDim (::gemu::block_dim())
#define gridDim (::gemu::grid_dim())
#define __syncthreads() ::gemu::syncthreads()
#define __syncwarp(...) ::gemu::syncwarp()
#define __shfl_xor_sync(mask, v, lane_mask) ::gemu::shfl_xor((v), (lane_mask))
#define __fdividef(a, b) ::gemu::fdividef((a), (b))
