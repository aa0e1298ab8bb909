"""Compile the Triton kernels for a CUDA target on a machine without a GPU.

The interpreter checks what the kernels compute; this checks that the real compiler
(Triton -> PTX -> ptxas cubin) accepts them, with the specialisations a real launch
would get, and reports registers, spills and whether the loads are vectorised.

    python tools/triton_aot_report.py      # a few representative launches, sm_90

Must run without TRITON_INTERPRET. Nothing is launched. An offline report for
developers, not part of the package (tests/test_triton.py runs it on two cases).
"""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, make_backend

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # genet_ops from the checkout


def compile_launch(kernel, args, kwargs, arch: int = 90, all_configs: bool = True) -> list[dict]:
    """Compile `kernel[grid](*args, **kwargs)` for sm_<arch>, once per autotune config that
    survives pruning (or for the first one only)."""
    from triton.runtime.jit import create_function_from_signature

    jit = kernel.fn if hasattr(kernel, "configs") else kernel
    configs = kernel.configs if hasattr(kernel, "configs") else [triton.Config({})]
    if hasattr(kernel, "early_config_prune") and kernel.early_config_prune and len(configs) > 1:
        configs = kernel.early_config_prune(configs, dict(zip(jit.arg_names, args)), **kwargs)
    configs = configs if all_configs else configs[:1]
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(jit.signature, jit.params, backend)
    results = []
    for cfg in configs:
        kw = {**kwargs, **cfg.all_kwargs()}
        bound, spec, _ = binder(*args, **kw)
        options, signature, constexprs, attrs = jit._pack_args(backend, kw, bound, spec, None)
        compiled = triton.compile(ASTSource(jit, signature, constexprs, attrs), target=target,
                                  options=options.__dict__)
        results.append({"kernel": jit.__name__, "num_warps": cfg.num_warps, **_usage(compiled)})
    return results


def _usage(compiled) -> dict:
    ptx = compiled.asm["ptx"]
    info = {
        "ld_v4": len(re.findall(r"ld\.global(?:\.\w+)*\.v4", ptx)),
        "ld_v2": len(re.findall(r"ld\.global(?:\.\w+)*\.v2", ptx)),
        "ld": len(re.findall(r"ld\.global", ptx)),
        "st": len(re.findall(r"st\.global", ptx)),
    }
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
        res = subprocess.run([cuobjdump, "-res-usage", f.name], capture_output=True, text=True).stdout
    m = re.search(r"REG:(\d+).*?STACK:(\d+)", res)
    if m:
        info["regs"], info["stack"] = int(m.group(1)), int(m.group(2))
    return info


@contextlib.contextmanager
def capture_launches():
    """Run the triton_op bodies on CPU tensors, recording each launch instead of running it."""
    from genet_ops.triton import _launch, excite, gather_excite, lean

    launches = []

    class _Capture:
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append((self.kernel, grid, args, kwargs))

    saved = [(m, m.wrap_triton) for m in (excite, gather_excite, lean)]
    saved_check = _launch.check_device
    try:
        for m, _ in saved:
            m.wrap_triton = _Capture
        _launch.check_device = lambda xk: None
        yield launches
    finally:
        for m, fn in saved:
            m.wrap_triton = fn
        _launch.check_device = saved_check


CASES = [
    # (shape, extent, dtype, channels_last): WRN-16-8 / ResNet-50-like planes
    ((4, 256, 56, 56), 0, torch.bfloat16, False),  # global, NCHW: whole flattened plane / two sweeps
    ((4, 512, 7, 7), 0, torch.bfloat16, False),  # tiny planes, several per program
    ((4, 128, 8, 8), 0, torch.bfloat16, True),  # tiny planes, channels_last
    ((4, 64, 56, 56), 2, torch.float16, True),  # local extent, channels_last
    ((4, 64, 28, 28), 4, torch.float32, False),  # local extent, NCHW, several tile-rows
    ((2, 64, 112, 112), 0, torch.float32, True),  # large global plane, channels_last, two sweeps
    ((2, 16, 14, 14), 0, torch.float64, False),  # float64
]


# Launches per case in representative_launches.
LAUNCHES_PER_CASE = 7


def representative_launches(cases=CASES):
    """The launches the ops make for each case: both forwards (the gather_excite one with a
    residual, the excite one with the ReLU epilogue; excite_lean runs excite's kernel), both
    backwards, gather_excite_lean (tile means, residual, ReLU) and the output-keeping
    backward with residual, ReLU and gather, and without any of them."""
    from genet_ops import checks

    ops = torch.ops.genet_ops
    with capture_launches() as launches:
        for shape, e, dtype, cl in cases:
            fmt = torch.channels_last if cl else torch.contiguous_format
            x = torch.empty(shape, dtype=dtype).to(memory_format=fmt)
            g = torch.empty(checks.g_shape(shape, e), dtype=dtype)
            means = torch.empty(checks.g_shape(shape, e), dtype=checks.acc_dtype(dtype))
            ops.gather_excite_triton(x, e, x)
            ops.gather_excite_backward_triton(x, x, e)
            ops.excite_triton(x, g, e, None, True)
            ops.excite_backward_triton(x, x, g, e)
            ops.gather_excite_lean_triton(x, e, x, True)
            ops.excite_lean_backward_triton(x, x, x, means, e, True, True)
            ops.excite_lean_backward_triton(x, x, None, means, e, False, False)
    return launches


def main(arch: int = 90, cases=CASES, all_configs: bool = True) -> list[dict]:
    assert not triton.knobs.runtime.interpret, "run without TRITON_INTERPRET"
    rows = []
    for kernel, grid, args, kwargs in representative_launches(cases):
        x = args[1] if kernel.fn.__name__.endswith("backward_kernel") else args[0]
        for r in compile_launch(kernel, args, kwargs, arch, all_configs):
            r.update(shape=tuple(x.shape), dtype=str(x.dtype).replace("torch.", ""),
                     layout="cl" if kwargs["CL"] else "nchw", grid=grid, vec=kwargs["VEC"],
                     block=(kwargs["BLOCK_A"], kwargs["BLOCK_R"], kwargs["BLOCK_T"], kwargs["BLOCK_K"]))
            rows.append(r)
            print(" ".join(f"{k}={v}" for k, v in r.items()), flush=True)
    return rows


if __name__ == "__main__":
    main()
