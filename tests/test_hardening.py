"""Index-width hardening: inputs whose launches would overflow a 32-bit index or a CUDA
grid must fail clearly (CUDA C++) or take the reference (Triton), never launch a fraction
of the work. The sizes involved (2^31 units) cannot be allocated here: the Triton plans
are made for meta tensors, and the CUDA launchers' check is compiled into a tiny test
extension and called with the block counts such inputs give."""
import pytest
import torch

import oracle
from oracle import ROOT


# ------------------------------------------------------------------- Triton plans
@pytest.fixture(scope="module")
def _launch():
    pytest.importorskip("triton")
    from genet_ops.triton import _launch

    return _launch


def meta(shape, channels_last=False, dtype=torch.bfloat16):
    x = torch.empty(shape, device="meta", dtype=dtype)
    return x.to(memory_format=torch.channels_last) if channels_last else x


def test_triton_plan_refuses_int32_unit_overflow(_launch):
    # NCHW, global: one unit per (n, c) plane, N*C = 2^31 units, each sample small
    assert _launch.plan(meta((2**20, 2**11, 2, 2)), 0, _launch.FWD_BLOCK_BYTES) is None
    # one unit fewer than the limit still plans
    assert _launch.plan(meta((2**20 - 1, 2**11, 2, 2)), 0, _launch.FWD_BLOCK_BYTES) is not None
    # tile-rows count too: th = 8 tile-rows per plane, N*C*TH = 2^31
    assert _launch.plan(meta((2**17, 2**11, 16, 2)), 2, _launch.BWD_BLOCK_BYTES) is None


def test_triton_plan_refuses_grid_axis1_overflow(_launch):
    # channels_last: axis 1 of the grid counts channel groups of at most 64 channels
    ok = _launch.plan(meta((1, 64 * 65535, 2, 2), True), 0, _launch.FWD_BLOCK_BYTES)
    assert ok is not None and ok.grid[1] <= 65535
    assert _launch.plan(meta((1, 64 * 65535 + 64, 2, 2), True), 0, _launch.FWD_BLOCK_BYTES) is None


# --------------------------------------------------------- CUDA launchers' grid
_GRID_CHECK = """
#include <torch/library.h>
#include "grid_check.h"
TORCH_LIBRARY(genet_grid_check, m) {
  m.def("grid_x(int blocks, str op) -> int", [](int64_t blocks, c10::string_view op) {
    return static_cast<int64_t>(genet_ops::cuda::grid_x(blocks, std::string(op).c_str()));
  });
}
"""


@pytest.fixture(scope="module")
def grid_x():
    from torch.utils import cpp_extension

    build = oracle.extension_build_dir("grid-check")
    cpp_extension.load_inline(
        name="genet_grid_check", cpp_sources=[_GRID_CHECK], extra_include_paths=[str(ROOT / "csrc" / "cuda")],
        extra_cflags=["-O0"], build_directory=str(build), is_python_module=False, verbose=False)
    return torch.ops.genet_grid_check.grid_x


def test_cuda_grid_check_passes_grids_that_fit(grid_x):
    assert grid_x(1, "gather_excite") == 1
    assert grid_x(2**31 - 1, "excite") == 2**31 - 1


def test_cuda_grid_check_raises_naming_the_op(grid_x):
    # 2^34 bf16 elements at extent 1 (tiles narrower than a vector: units = N*C*H*W/8,
    # one 512-thread team per block): 2^31 blocks, a size an H200's memory holds
    with pytest.raises(ValueError, match=r"excite_backward on this input needs 2147483648 thread blocks"):
        grid_x(2**31, "excite_backward")
    with pytest.raises(ValueError, match="split the batch"):
        grid_x(2**40, "gather_excite")
