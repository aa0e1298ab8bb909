// genet_ops::_set_tuning(knob, value): how genet_ops/_tuning.py selects the alternative
// launch plans of tuning.h. Internal (underscore), not part of the op API.
#include <torch/library.h>

#include <string>

#include "tuning.h"

namespace genet_ops {
namespace cuda {

static void set_tuning(const std::string& name, int64_t value) {
  for (int i = 0; i < static_cast<int>(Knob::Count); ++i) {
    if (name != kKnobInfo[i].name) continue;
    TORCH_CHECK_VALUE(value >= 0 && value < kKnobInfo[i].nvalues, "genet_ops: tuning knob ", name,
                      " takes a value in [0, ", kKnobInfo[i].nvalues, "), got ", value);
    knob_value(static_cast<Knob>(i)) = static_cast<int>(value);
    return;
  }
  TORCH_CHECK_VALUE(false, "genet_ops: unknown CUDA tuning knob ", name);
}

}  // namespace cuda
}  // namespace genet_ops

TORCH_LIBRARY_FRAGMENT(genet_ops, m) {
  m.def("_set_tuning(str knob, int value) -> ()", &genet_ops::cuda::set_tuning);
}
