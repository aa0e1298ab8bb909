// Host side of the launch plans (plan.h): vector width, team shape and grid for a
// tensor's tile geometry, layout and data pointers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>

#include "genet_ops.h"
#include "plan.h"
#include "tuning.h"

namespace genet_ops {
namespace cuda {

// Bytes of dynamic shared memory team_allreduce (reduce.cuh) needs for NV values per
// thread: none when the team fits in a warp.
inline int reduce_smem_bytes(int T, int block, int NV, int acc_size) {
  return T > 32 ? NV * block * acc_size : 0;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t pow2_ceil(int64_t v) {
  int64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

// Largest power of two V <= vmax with ok(V); 1 always qualifies.
template <typename Ok>
inline int pick_vec(int vmax, Ok ok) {
  for (int V = vmax; V > 1; V >>= 1)
    if (ok(V)) return V;
  return 1;
}

#ifdef GENET_EMU
// Lets the emulator tests reach the 64-bit unit decoding, which otherwise only a
// tensor of 2^31 work units would.
inline bool& emu_force_idx64() {
  static bool force = false;
  return force;
}
inline bool use_idx32(int64_t units) { return units < (int64_t{1} << 31) && !emu_force_idx64(); }
#else
inline bool use_idx32(int64_t units) { return units < (int64_t{1} << 31); }
#endif

// Items per thread of the kernel instance for a plan of `items` per thread: kItems by
// default; with cuda_items_per_thread = fit, the smallest of 2, 4, 8 that holds a
// cached unit (the register count then follows the plan, not the 8-item maximum).
inline int items_instance(int64_t items, bool cache) {
  if (knob_value(Knob::ItemsPerThread) == 0 || !cache) return kItems;
  return items <= 2 ? 2 : items <= 4 ? 4 : kItems;
}

inline void finish_team(int T, int64_t units, int& block, int& teams, int64_t& grid) {
  block = std::max(T, kMinBlock);
  teams = block / T;
  grid = ceil_div(units, teams);
}

// Whether every pointer in addr_or allows V-element vectors of es-byte elements.
inline bool vec_aligned(int V, uintptr_t addr_or, int es) { return addr_or % static_cast<uintptr_t>(V * es) == 0; }

// The packed alternative to a flat plan of one-tile planes whose vectors are narrower
// than vmax (e.g. 49-element planes: scalar): `pack` = V / gcd(plane, V) whole planes
// make a run of whole V-vectors. Taken for the widest such V that the pointers allow,
// that divides the N * C planes into whole units and whose run one warp holds in K
// items per thread. Returns whether it applies (and then sets V, pack, team, items).
inline bool plan_packed(NchwPlan& p, const TileGeom& t, int vmax, int K, uintptr_t addr_or, int es) {
  if (knob_value(Knob::NchwSmallPlane) == 0 || !p.flat || t.th != 1) return false;
  for (int V = vmax; V > p.V; V >>= 1) {
    const int64_t pack = V / std::gcd<int64_t>(p.plane, V);
    if (!vec_aligned(V, addr_or, es) || p.plane < V || (t.N * t.C) % pack != 0) continue;
    const int64_t cv = pack * p.plane / V;
    const int64_t Tc = pow2_ceil(ceil_div(cv, K));
    if (Tc > 32) continue;  // one warp per unit: the plane sums need shuffles only
    p.V = V;
    p.pack = static_cast<int>(pack);
    p.tile_cols = V;
    p.Tc = static_cast<int>(Tc);
    p.item_cols = static_cast<int>(ceil_div(cv, Tc));
    return true;
  }
  return false;
}

// The staged alternative to a 2-D plan whose rows forbid vectors of vmax (W = 14): units
// of `pack` whole planes, a run of whole V-vectors, staged in shared memory with each
// tile summed there (staged_kernels.cuh). Taken for the widest V the pointers allow that
// divides the N * C planes into whole units, within a team and 96 KB of shared memory.
inline bool plan_staged(NchwPlan& p, const TileGeom& t, int vmax, int K, uintptr_t addr_or, int es, int nvals,
                        int acc_size) {
  if (knob_value(Knob::NchwNarrowRows) == 0 || p.flat) return false;
  for (int V = vmax; V > p.V; V >>= 1) {
    const int64_t pack = V / std::gcd<int64_t>(p.plane, V);
    const int64_t L = pack * p.plane, nseg = pack * t.th * t.tw;
    if (!vec_aligned(V, addr_or, es) || (t.N * t.C) % pack != 0 || nseg > 65535) continue;
    const int64_t cv = L / V;
    const int64_t T = pow2_ceil(ceil_div(cv, K));
    if (T > kMaxTeam) continue;
    const int64_t stage_bytes = nvals * round16(L * es) + round16(nvals * nseg * acc_size);
    const int64_t block = std::max<int64_t>(T, kMinBlock);
    if (round16(2 * L) + block / T * stage_bytes > 96 * 1024) continue;
    p.V = V;
    p.pack = static_cast<int>(pack);
    p.staged = 1;
    p.stage_bytes = stage_bytes;
    p.Tc = static_cast<int>(T);
    p.R = 1;
    p.item_rows = 1;
    p.item_cols = static_cast<int>(ceil_div(cv, T));
    return true;
  }
  return false;
}

// es: element size; addr_or: OR of every data pointer the kernel touches with vectors;
// K: items per thread that fit the register cache; nvals: values reduced per vector
// lane (1 forward, 2 backward); acc_size: sizeof(acc_t); packable: the op has packed
// kernels (gather_excite and its backward), which the knob may then select.
inline NchwPlan plan_nchw(const TileGeom& t, int es, uintptr_t addr_or, int K, int nvals, int acc_size,
                          bool packable) {
  NchwPlan p{};
  p.H = t.H;
  p.W = t.W;
  p.plane = t.H * t.W;
  p.eh = t.eh;
  p.ew = t.ew;
  p.th = t.th;
  p.tw = t.tw;
  const int vmax = 16 / es;
  auto aligned = [&](int V) { return vec_aligned(V, addr_or, es); };
  const int64_t rows_max = std::min(t.eh, t.H);
  p.flat = t.tw == 1;
  int64_t cv;  // vectors across a unit
  if (p.flat) {
    p.V = pick_vec(vmax, [&](int V) {
      return aligned(V) && p.plane % V == 0 && (t.th == 1 || (t.eh * t.W) % V == 0);
    });
    p.units_per_row = 1;
    p.unit_cols = 0;
    p.multi_tile = 0;
    p.tile_cols = p.V;
    cv = ceil_div(rows_max * t.W, p.V);
    p.R = 1;
    p.Tc = static_cast<int>(std::min<int64_t>(pow2_ceil(ceil_div(cv, K)), kMaxTeam));
    p.item_cols = static_cast<int>(ceil_div(cv, p.Tc));
    p.item_rows = 1;
  } else {
    p.V = pick_vec(vmax, [&](int V) {
      return aligned(V) && t.W % V == 0 && (t.ew % V == 0 || V % t.ew == 0);
    });
    p.multi_tile = t.ew < p.V;
    if (p.multi_tile) {
      p.unit_cols = p.V;
      p.units_per_row = t.W / p.V;
      p.tile_cols = static_cast<int>(t.ew);
      cv = 1;
    } else {
      p.unit_cols = t.ew;
      p.units_per_row = t.tw;
      p.tile_cols = p.V;
      cv = t.ew / p.V;
    }
    p.Tc = static_cast<int>(std::min<int64_t>(pow2_ceil(cv), kMaxTeam));
    p.item_cols = static_cast<int>(ceil_div(cv, p.Tc));
    p.R = 1;
    while (ceil_div(rows_max, p.R) * p.item_cols > K && p.Tc * p.R < kMaxTeam) p.R <<= 1;
    p.item_rows = static_cast<int>(ceil_div(rows_max, p.R));
  }
  const bool packed = packable && (plan_packed(p, t, vmax, K, addr_or, es) ||
                                   plan_staged(p, t, vmax, K, addr_or, es, nvals, acc_size));
  p.T = p.Tc * p.R;
  p.cache = static_cast<int64_t>(p.item_rows) * p.item_cols <= K;
  p.K = items_instance(static_cast<int64_t>(p.item_rows) * p.item_cols, p.cache);
  p.units = packed ? t.N * t.C / p.pack : t.N * t.C * t.th * p.units_per_row;
  finish_team(p.T, p.units, p.block, p.teams, p.grid);
  p.idx32 = use_idx32(p.units);
  p.dm_units_per_row = DivMod(p.units_per_row);
  p.dm_th = DivMod(p.th);
  p.smem = p.staged ? static_cast<int>(round16(2 * p.pack * p.plane) + p.teams * p.stage_bytes)
                   : reduce_smem_bytes(p.T, p.block, nvals * p.V, acc_size);
  return p;
}

inline NhwcPlan plan_nhwc(const TileGeom& t, int es, uintptr_t addr_or, int K, int nvals, int acc_size) {
  NhwcPlan p{};
  p.C = t.C;
  p.H = t.H;
  p.W = t.W;
  p.eh = t.eh;
  p.ew = t.ew;
  p.th = t.th;
  p.tw = t.tw;
  const int vmax = 16 / es;
  p.V = pick_vec(vmax, [&](int V) { return addr_or % static_cast<uintptr_t>(V * es) == 0 && t.C % V == 0; });
  const int64_t cvec = t.C / p.V;
  const int64_t pix = std::min(t.eh, t.H) * std::min(t.ew, t.W);
  const int tc0 = static_cast<int>(std::min<int64_t>(pow2_ceil(cvec), 32));
  // cuda_nhwc_team = team128: teams of at most 128 threads, so that a 14 x 14 or larger
  // tile no longer takes a 512-thread block at ~126 registers (one block per SM, idle
  // through each reduction); the SM interleaves four such blocks instead.
  const bool small = knob_value(Knob::NhwcTeam) == 1;
  const int max_team = small ? kSmallTeam : kMaxTeam;
  // Widest channel group whose tile still fits the register cache.
  int Tc = tc0, R = 1;
  for (;;) {
    R = 1;
    while (ceil_div(pix, R) > K && Tc * R < max_team) R <<= 1;
    if (ceil_div(pix, R) <= K || Tc == 1) break;
    Tc >>= 1;
  }
  if (ceil_div(pix, R) > K) {  // too big for registers: sweep twice
    // default: the widest groups; team128: groups of two whole sectors per pixel, so
    // that the units between the sweeps stay small enough for L2 to serve the second
    Tc = small ? static_cast<int>(std::min<int64_t>(tc0, std::max(1, kSweepGroupBytes / (p.V * es)))) : tc0;
    R = max_team / Tc;
  }
  p.Tc = Tc;
  p.R = R;
  p.T = Tc * R;
  p.item_rows = static_cast<int>(ceil_div(pix, R));
  p.cache = p.item_rows <= K;
  p.K = items_instance(p.item_rows, p.cache);
  p.channel_groups = ceil_div(cvec, Tc);
  p.units = t.N * t.th * t.tw * p.channel_groups;
  finish_team(p.T, p.units, p.block, p.teams, p.grid);
  p.idx32 = use_idx32(p.units);
  p.dm_channel_groups = DivMod(p.channel_groups);
  p.dm_tw = DivMod(p.tw);
  p.dm_th = DivMod(p.th);
  p.smem = reduce_smem_bytes(p.T, p.block, nvals * p.V, acc_size);
  return p;
}

}  // namespace cuda
}  // namespace genet_ops
