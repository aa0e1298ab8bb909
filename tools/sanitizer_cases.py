"""Small standalone workload for compute-sanitizer (racecheck, synccheck, memcheck) over
the CUDA C++ kernels: each case runs gather_excite and excite, forward and backward
(residual on), the output-keeping ops (gather_excite_lean with the ReLU epilogue, which
also writes the tile means; excite with ReLU; excite_lean_backward with every relu /
gather flag), and checks the values against the float64 reference.

    compute-sanitizer --tool racecheck python tools/sanitizer_cases.py
    python tools/sanitizer_cases.py --device cpu      # the same calls on the CPU kernels

Run with PYTORCH_NO_CUDA_MEMORY_CACHING=1 under memcheck: one cudaMalloc per tensor, so
memcheck sees each tensor's true bounds. Shapes stay small (the sanitizers slow kernels
down 10-100x) but reach the plans that matter. Which plan each case takes, for bfloat16
(V = 8 elements per 16-byte vector, K = 8 items per thread; csrc/cuda/planner.h's default
plans, each comment below checked with the CUDA emulator's emu_plan): NCHW flat units
read cv = ceil(H*W / V) vectors with a team of min(pow2(ceil(cv / K)), 512) threads,
cached while ceil(cv / team) <= K; NHWC teams are Tc x R with R grown (and Tc halved)
until ceil(pixels / R) <= K.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # genet_ops from the checkout

import torch  # noqa: E402

# (name, shape, extent, layout, dtype, storage offset in elements): the plan it reaches (bfloat16 unless said)
CASES = [
    # NCHW flat, 56x56 plane: cv = 392 -> 64-thread team, shared-memory reduction, cached
    ("nchw-team64", (2, 8, 56, 56), 0, "nchw", torch.bfloat16, 0),
    # NCHW flat, 132x132 plane: cv = 2178 -> 512-thread team, 5 items per thread, cached
    ("nchw-team512", (2, 4, 132, 132), 0, "nchw", torch.bfloat16, 0),
    # NCHW flat, 192x192 plane: cv = 4608 -> 512 threads x 9 items > K: the two-sweep path
    ("nchw-two-sweep", (2, 2, 192, 192), 0, "nchw", torch.bfloat16, 0),
    # NCHW, extent 2 on W = 16: tiles narrower than a vector (multi_tile: 4 tiles per vector)
    ("nchw-narrow-tiles", (2, 8, 16, 16), 2, "nchw", torch.bfloat16, 0),
    # the same in float32 (V = 4: 2 tiles per vector), extent 1 (one pixel per tile) too
    ("nchw-narrow-tiles-f32", (2, 8, 16, 16), 2, "nchw", torch.float32, 0),
    ("nchw-extent1", (2, 4, 8, 16), 1, "nchw", torch.bfloat16, 0),
    # NCHW odd planes (7x7: V = 1) and partial tiles along both axes
    ("nchw-7x7", (3, 16, 7, 7), 0, "nchw", torch.bfloat16, 0),
    ("nchw-13x11-e4", (2, 5, 13, 11), 4, "nchw", torch.bfloat16, 0),
    # storage offset of one element: misaligned for every vector width (V = 1), both layouts
    ("nchw-misaligned", (2, 8, 16, 16), 0, "nchw", torch.bfloat16, 1),
    ("nhwc-misaligned", (2, 64, 8, 8), 2, "cl", torch.bfloat16, 1),
    # NHWC global 56x56, C = 256: Tc = 1 x R = 512 threads, 7 items: the 512-thread team
    ("nhwc-team512", (2, 256, 56, 56), 0, "cl", torch.bfloat16, 0),
    # NHWC extent 4 (16 pixels per tile), C = 256: Tc = 32 x R = 2, a 64-thread team
    ("nhwc-team64", (2, 256, 16, 16), 4, "cl", torch.bfloat16, 0),
    # NHWC global 112x112, C = 64: more than 512 x K pixels -> Tc = 8 x R = 64, the two-sweep path
    ("nhwc-two-sweep", (1, 64, 112, 112), 0, "cl", torch.bfloat16, 0),
    # NHWC with C not a multiple of any vector width, partial tiles
    ("nhwc-odd", (2, 13, 9, 7), 3, "cl", torch.float32, 0),
]
# The alternative plans of genet_ops._tuning (csrc/cuda/tuning.h): (case as above, knob, value).
KNOB_CASES = [
    # 7x7 planes, 8 per unit with 16-byte loads (packed_kernels.cuh)
    (("nchw-7x7-packed", (2, 8, 7, 7), 0, "nchw", torch.bfloat16, 0), "cuda_nchw_small_plane", "packed"),
    # 14x14 at extent 2, two planes per unit staged in shared memory (staged_kernels.cuh)
    (("nchw-14x14-e2-staged", (2, 4, 14, 14), 2, "nchw", torch.bfloat16, 0), "cuda_nchw_narrow_rows", "staged"),
    # channels_last 14x14 global, C = 256: 128-thread teams
    (("nhwc-team128", (2, 256, 14, 14), 0, "cl", torch.bfloat16, 0), "cuda_nhwc_team", "team128"),
    # 2- and 4-item kernel instances
    (("nchw-fit-items", (2, 8, 16, 16), 2, "nchw", torch.bfloat16, 0), "cuda_items_per_thread", "fit"),
]


def make(shape, layout, dtype, offset, device, gen):
    """A tensor of `shape` and layout whose storage starts `offset` elements in."""
    n = torch.Size(shape).numel()
    base = torch.randn(n + offset, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)
    if layout == "cl":
        N, C, H, W = shape
        return base[offset:].view(N, H, W, C).permute(0, 3, 1, 2)
    return base[offset:].view(shape)


def run_case(name, shape, extent, layout, dtype, offset, device) -> list[str]:
    """Both ops forward and backward; the mismatches against the float64 reference."""
    from genet_ops import reference

    gen = torch.Generator().manual_seed(0)
    x, res, dy = (make(shape, layout, dtype, offset, device, gen) for _ in range(3))
    N, C, H, W = shape
    gs = (N, C, 1, 1) if extent == 0 else (N, C, -(-H // extent), -(-W // extent))
    g = make(gs, "nchw", dtype, offset, device, gen)
    ops = torch.ops.genet_ops
    got = {
        "gather_excite": ops.gather_excite(x, extent, res),
        "gather_excite_backward": ops.gather_excite_backward(dy, x, extent),
        "excite": ops.excite(x, g, extent, res),
        "excite_relu": ops.excite(x, g, extent, res, True),
        "excite_backward": ops.excite_backward(dy, x, g, extent),
        "gather_excite_lean": ops.gather_excite_lean(x, extent, res, True),
    }
    out, means = got["gather_excite_lean"]
    for relu in (False, True):
        for gather in (False, True):
            got[f"excite_lean_backward_relu{int(relu)}_gather{int(gather)}"] = ops.excite_lean_backward(
                dy, out, res, means, extent, relu, gather)
    d = [t.double() for t in (x, res, dy, g)]
    want = {
        "gather_excite": reference.gather_excite(d[0], extent, d[1]),
        "gather_excite_backward": reference.gather_excite_backward(d[2], d[0], extent),
        "excite": reference.excite(d[0], d[3], extent, d[1]),
        "excite_relu": reference.excite(d[0], d[3], extent, d[1], True),
        "excite_backward": reference.excite_backward(d[2], d[0], d[3], extent),
        "gather_excite_lean": reference.gather_excite_lean(d[0], extent, d[1], True),
    }
    for relu in (False, True):  # from the kernel's own output and means, as autograd runs it
        for gather in (False, True):
            want[f"excite_lean_backward_relu{int(relu)}_gather{int(gather)}"] = reference.excite_lean_backward(
                d[2], out.double(), d[1], means.double(), extent, relu, gather)
    tol = 5e-2 if dtype != torch.float32 else 1e-4
    bad = []
    for op, out in got.items():
        for i, (o, w) in enumerate(zip(out if isinstance(out, tuple) else (out,),
                                       want[op] if isinstance(want[op], tuple) else (want[op],))):
            err = (o.double() - w).abs().max().item()
            if not err <= tol * (1 + w.abs().max().item()):
                bad.append(f"{name}: {op}[{i}] max error {err:.3g}")
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    args = ap.parse_args(argv)
    import contextlib

    import genet_ops
    from genet_ops import _tuning

    wanted = {c for c in args.cases.split(",") if c}
    kernels = genet_ops.backend_info()["kernels"]["gather_excite"]
    print(f"# genet_ops kernels: {kernels}; device {args.device}", flush=True)
    bad = []
    runs = [(c, None, None) for c in CASES] + KNOB_CASES
    for (name, shape, extent, layout, dtype, offset), knob, value in runs:
        if wanted and name not in wanted:
            continue
        with _tuning.using(knob, value) if knob else contextlib.nullcontext():
            errs = run_case(name, shape, extent, layout, dtype, offset, args.device)
            if args.device == "cuda":
                torch.cuda.synchronize()
        print(f"{'ok  ' if not errs else 'FAIL'} {name} {tuple(shape)} e{extent} {layout} "
              f"{str(dtype).replace('torch.', '')} offset {offset}{f' {knob}={value}' if knob else ''}", flush=True)
        bad += errs
    for line in bad:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
