"""Shared test setup.

Without a GPU, Triton kernels run under its interpreter: TRITON_INTERPRET must be set
before triton is first imported, which importing genet_ops does.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import genet_ops  # noqa: E402  (after TRITON_INTERPRET)


def pytest_report_header(config):
    info = genet_ops.backend_info()
    lines = [f"genet_ops: extension loaded={info['extension_loaded']} ({info['extension_error'] or 'ok'})"]
    lines += [f"  {op}: {devices}" for op, devices in info["kernels"].items()]
    return lines


@pytest.fixture
def poison_outputs():
    """Fill every fresh allocation (torch.empty and at::empty in kernels) with NaN, so
    an output element a kernel forgets to write fails the comparison."""
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    yield
    torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
    torch.utils.deterministic.fill_uninitialized_memory = prev_fill


@pytest.fixture(scope="session")
def cuda_emu():
    """torch.ops.genet_ops_emu: the CUDA kernels' source run on the CPU (tests/parity.py)."""
    import parity

    return parity.load_cuda_emu()
