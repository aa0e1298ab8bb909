// Launch plans: how the CUDA kernels map tiles onto teams of threads. planner.h
// makes them on the host; the kernels receive one by value.
//
// A *unit* is the piece of work one team owns; a team is T = Tc x R threads (powers of
// two), Tc lanes across the contiguous direction with V-element vectors, R lanes across
// the other. Each thread handles up to item_rows x item_cols *items* (one vector each);
// when they fit in K registers per tensor (`cache`), every element is read from device
// memory once.
// Otherwise the kernel sweeps the unit twice and the second sweep is served from L2.
//
// NCHW, tw == 1 ("flat"): a unit is one tile, a contiguous run of rows x W elements
//   (the whole plane for extent 0). Tiny planes get small teams, many per block.
// NCHW, packed (knob cuda_nchw_small_plane): a unit is `pack` whole small planes read as
//   one contiguous run with vectors that may straddle two planes (packed_kernels.cuh).
// NCHW, staged (knob cuda_nchw_narrow_rows): tiles narrower than a row whose width
//   forbids wide vectors; a unit is `pack` whole planes read as one run with 16-byte
//   vectors and summed per tile in shared memory (staged_kernels.cuh).
// NCHW, tw > 1: a unit is one tile (ew >= V: Tc lanes across its columns, R across its
//   rows) or, when tiles are narrower than a vector (ew < V), one V-wide column strip
//   of a tile row holding V / ew whole tiles, with R lanes across its rows.
// NHWC: a unit is (image, tile, group of Tc * V channels); Tc lanes across channels
//   keep every access coalesced along C, R lanes across the tile's pixels. Wide tiles
//   get narrower channel groups so that the unit still fits in registers.
#pragma once

#include <cstdint>

#include "divmod.h"

namespace genet_ops {
namespace cuda {

// Float type in which reductions accumulate: double for double, else float (the
// device twin of genet_ops::acc_t, without ATen; the launchers' signatures use it).
template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};
template <typename T>
using acc_t = typename AccType<T>::type;

// Items (vectors) per thread kept in registers: x for the forward, dy for the backward.
// The kernels are instantiated for K = kItems; with the knob cuda_items_per_thread
// (tuning.h) also for K = 2 and 4, so that a plan loading 2 items does not pay the
// registers of 8.
constexpr int kItems = 8;
// Residual vectors loaded at a time while writing y (a divisor of kItems).
constexpr int kResItems = 4;
// Launch bounds' minimum of resident blocks per SM for a K-item kernel instance: 1 (what
// a 512-thread block at 128 registers allows) for the 2- and 4-item instances, which
// ptxas otherwise squeezed to 32 - 64 registers with spills (sm_90, nvcc 13.0); left
// unspecified (0) for 8 items, so the default plans compile as before.
template <int K>
constexpr int kMinBlocks = K < kItems ? 1 : 0;
// Largest team (and block): 512 threads leave each thread 128 registers.
constexpr int kMaxTeam = 512;
// Largest NHWC team with the knob cuda_nhwc_team = team128, and the bytes of each pixel
// its channel group covers at least when the unit is swept twice (two 32-byte sectors).
constexpr int kSmallTeam = 128;
constexpr int kSweepGroupBytes = 64;
constexpr int kMinBlock = 256;

// Bytes rounded up to a multiple of 16 (shared-memory layouts of 16-byte vectors).
GENET_HD inline int64_t round16(int64_t b) { return (b + 15) / 16 * 16; }

struct NchwPlan {
  int64_t units;
  int64_t H, W, plane;
  int64_t eh, ew, th, tw;
  int64_t units_per_row;  // units per tile row: 1 (flat), tw (ew >= V) or W / V (ew < V)
  int64_t unit_cols;      // 2-D: columns per unit
  int flat;
  int multi_tile;  // ew < V: a vector holds V / ew whole tiles
  int tile_cols;   // columns of one tile inside a vector (V unless multi_tile)
  int pack;        // packed or staged plan: whole planes per unit, else 0
  int staged;  // staged plan (knob cuda_nchw_narrow_rows): the unit's run goes through shared memory
  int64_t stage_bytes;  // staged: shared memory per team
  int V;
  int Tc, R, T;
  int item_rows, item_cols;  // a thread's items: rows of the unit x column vectors
  int block, teams;
  int64_t grid;
  int cache;
  int K;  // items per thread of the kernel instance: kItems, or 2 / 4 (items_instance)
  int idx32;
  int smem;
  DivMod dm_units_per_row, dm_th;
};

struct NhwcPlan {
  int64_t units;
  int64_t C, H, W;
  int64_t eh, ew, th, tw;
  int64_t channel_groups;  // groups of Tc * V channels
  int V;
  int Tc, R, T;
  int item_rows;  // a thread's items: pixels of the tile (one channel vector each)
  int block, teams;
  int64_t grid;
  int cache;
  int K;
  int idx32;
  int smem;
  DivMod dm_channel_groups, dm_tw, dm_th;
};

}  // namespace cuda
}  // namespace genet_ops
