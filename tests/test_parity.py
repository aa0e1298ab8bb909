"""Every backend's kernels against the float64 reference: one loop (tests/parity.py),
parametrized over the backends (reference, the CPU kernels, the CUDA emulator, CUDA C++
and Triton, on a GPU or under the Triton interpreter) and each backend's cases.

test_parity: gather_excite, gather_excite_backward, excite, excite_backward, ReLU on
and off, with and without a residual, in each backend's layouts and all four dtypes.
test_lean_parity: gather_excite_lean (output and tile means), excite_lean, and
excite_lean_backward on their outputs with gather off and on; the lean forwards equal
the plain ones bit for bit. On the emulator every run also happens with the threads in
reverse order, with bitwise equal results. A backend that is missing here skips with
the reason (CUDA without a GPU; the Triton ops where Triton is off).
"""
import pytest

import parity


@pytest.mark.parametrize("backend_name,shape,extent,dtype,runs", parity.params(lean=False))
def test_parity(backend_name, shape, extent, dtype, runs, poison_outputs):
    parity.run_case(backend_name, shape, extent, dtype, runs, lean=False)


@pytest.mark.parametrize("backend_name,shape,extent,dtype,runs", parity.params(lean=True))
def test_lean_parity(backend_name, shape, extent, dtype, runs, poison_outputs):
    parity.run_case(backend_name, shape, extent, dtype, runs, lean=True)
