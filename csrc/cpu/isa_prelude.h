// What the ISA translation units (kernels_default.cpp, kernels_avx2.cpp) include
// before at::vec. Everything here is compiled for the baseline target in every unit,
// so no inline function that other units share is ever compiled with AVX2: it lists
// the headers at::vec pulls in that sit outside its per-ISA namespace.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/native/Math.h>
#include <ATen/native/quantized/AffineQuantizerBase.h>
#include <c10/util/BFloat16-math.h>
#include <c10/util/MathConstants.h>
#include <c10/util/copysign.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <tuple>
#include <vector>

#include "cpu_kernels.h"
