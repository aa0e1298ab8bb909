"""Instructions the Ascend C kernels issue, per KiB of input, counted on the CPU model.

No NPU timing exists for these kernels, so this is their measure: the kernels compiled
with g++ against tests/emu/ascend/kernel_operator.h, run over all 48 vector cores of an
Atlas A2 tiling (cores one after another), counting vector instructions, DMA transfers
(DataCopyPad) and scalar waits (WaitFlag) at the WRN-16-8 (CIFAR, batch 128) and ResNet-50
(ImageNet, batch 8) stage shapes, global extent, float16 unless --dtype says otherwise.

    python benchmarks/ascend_counts.py [--ops ge_fwd,ge_bwd,ex_fwd,ex_bwd] [--dtype float32]
    # an older version of the kernels, e.g. for a before/after table:
    git archive <commit> csrc/ascend | tar -x -C /tmp/old
    python benchmarks/ascend_counts.py --ascend-dir /tmp/old/csrc/ascend
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from test_ascend import build_emu  # noqa: E402

SHAPES = {
    "WRN-16-8 stage 1": (128, 128, 32, 32), "WRN-16-8 stage 2": (128, 256, 16, 16),
    "WRN-16-8 stage 3": (128, 512, 8, 8),
    "ResNet-50 stage 1": (8, 256, 56, 56), "ResNet-50 stage 2": (8, 512, 28, 28),
    "ResNet-50 stage 3": (8, 1024, 14, 14), "ResNet-50 stage 4": (8, 2048, 7, 7),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", default="ge_fwd,ge_bwd")
    ap.add_argument("--extent", type=int, default=0)
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--ascend-dir", type=Path, default=ROOT / "csrc" / "ascend", help="kernels and tiling to count")
    ap.add_argument("--shapes", default="", help="comma-separated substrings of the shape names to keep")
    args = ap.parse_args()
    run = build_emu(Path(tempfile.mkdtemp()), args.ascend_dir)
    dtype = getattr(torch, args.dtype)
    print("| shape | op | vector / KiB | DMA / KiB | waits / KiB |\n| --- | --- | ---: | ---: | ---: |")
    for name, shape in SHAPES.items():
        if args.shapes and not any(k in name for k in args.shapes.split(",")):
            continue
        x = torch.randn(shape, dtype=dtype)
        kib = x.numel() * x.element_size() / 1024
        for op in args.ops.split(","):
            from genet_ops import checks
            aux = torch.randn_like(x) if op in ("ge_bwd", "ex_bwd", "ex_lean_bwd") else None
            gdt = torch.float32 if op == "ex_lean_bwd" else x.dtype  # the lean backward reads fp32 logits
            g = torch.randn(checks.g_shape(shape, args.extent), dtype=gdt) if op.startswith("ex") else None
            _, _, _, (vec, dma, waits, _) = run(op, x, args.extent, aux=aux, g=g, cores=48, seed=0)
            print(f"| {name} {'x'.join(map(str, shape))} | {op} | {vec / kib:.2f} | {dma / kib:.2f} | {waits / kib:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
