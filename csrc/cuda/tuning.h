// Internal knobs that switch the planner to an alternative launch plan, so that one GPU
// run can time the current plan and its alternative side by side. genet_ops/_tuning.py
// owns the names and values and sets them through the op genet_ops::_set_tuning
// (tuning.cpp); the planner reads them on every call, hence plain globals rather than
// an environment lookup. Value 0 is always the current default plan.
#pragma once

namespace genet_ops {
namespace cuda {

enum class Knob : int {
  ItemsPerThread = 0,  // 0: kernels instantiated for 8 items; 1: for the plan's 2 / 4 / 8
  NchwSmallPlane,      // 0: one unit per plane; 1: several whole planes per unit, 16-byte loads
  NhwcTeam,            // 0: NHWC teams up to 512 threads; 1: up to 128, channel groups of whole sectors
  NchwNarrowRows,      // 0: per-tile units; 1: whole planes staged in shared memory, 16-byte loads
  Count
};

struct KnobInfo {
  const char* name;  // as in genet_ops/_tuning.py KNOBS
  int nvalues;
};

inline constexpr KnobInfo kKnobInfo[] = {
    {"cuda_items_per_thread", 2},
    {"cuda_nchw_small_plane", 2},
    {"cuda_nhwc_team", 2},
    {"cuda_nchw_narrow_rows", 2},
};
static_assert(sizeof(kKnobInfo) / sizeof(kKnobInfo[0]) == static_cast<int>(Knob::Count), "one entry per knob");

inline int& knob_value(Knob k) {
  static int values[static_cast<int>(Knob::Count)] = {};
  return values[static_cast<int>(k)];
}

}  // namespace cuda
}  // namespace genet_ops
