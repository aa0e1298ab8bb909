"""The input-keeping and the output-keeping (lean) path of gather_excite on the CPU, old vs
new in one run: fused forward + backward of

  input  gather_excite(x, e, r)            + gather_excite_backward(dy, x, e)
  lean   gather_excite_lean(x, e, r)       + excite_lean_backward(dy, out, r, g, e, relu=False, gather=True)

at the WRN-16-8 stage shapes (N = 32 by default), fp32, both layouts, with a residual, on
one thread and on two. The two paths run back to back in each round, in alternating order,
so that load from other processes hits them alike; the table gives each path's median and
minimum over the rounds, the median of the per-round ratios lean / input, and the ratio
of the minimums.

Bytes from memory per call, in tensors of x's size (docs/DESIGN.md §5; the second sweep of
each op reads from cache): input = forward x, r, y + backward x, dy, dx = 6; lean = forward
x, r, y + backward out, r, dy, dx = 7. With a residual the lean backward reads r and out
where the input-keeping one reads x; without one (--residual no) both read 5.

    python benchmarks/bench_lean_cpu.py                    # WRN-16-8 stages, 1 and 2 threads
    python benchmarks/bench_lean_cpu.py --threads 1 --layouts nhwc --rounds 60
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # genet_ops from the checkout
sys.path.insert(0, HERE)

import torch  # noqa: E402

import common  # noqa: E402  (machine description, malloc settings)
import genet_ops  # noqa: E402,F401  (loads the ops)

STAGES = [("wrn-s1", (128, 32, 32)), ("wrn-s2", (256, 16, 16)), ("wrn-s3", (512, 8, 8))]
TENSORS = {"input": 6, "lean": 7}  # tensors of x's size from memory per fwd+bwd (see above)


def paths(x, r, dy, extent):
    """The two fwd+bwd steps."""
    ops = torch.ops.genet_ops

    def input_path():
        ops.gather_excite(x, extent, r)
        ops.gather_excite_backward(dy, x, extent)

    def lean_path():
        out, g = ops.gather_excite_lean(x, extent, r)
        ops.excite_lean_backward(dy, out, r, g, extent, False, True)

    return {"input": input_path, "lean": lean_path}


def time_paired(steps, rounds):
    """ms of each step per round, the two run back to back in alternating order, so that
    load from other processes hits both alike; and lean / input per round."""
    samples = {k: [] for k in steps}
    names = list(steps)
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            steps[name]()
            samples[name].append((time.perf_counter() - t0) * 1e3)
    ratios = [b / a for a, b in zip(samples["input"], samples["lean"])]
    return samples, ratios


def bench(shape, layout, extent, threads, rounds, residual):
    fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    x, r, dy = (torch.randn(shape, generator=gen).contiguous(memory_format=fmt) for _ in range(3))
    torch.set_num_threads(threads)
    steps = paths(x, r if residual else None, dy, extent)
    for run in steps.values():  # warm-up: thread pool, allocator
        run()
        run()
    samples, ratios = time_paired(steps, rounds)
    xb = x.numel() * x.element_size()
    rows = []
    for name, ms in samples.items():
        med = statistics.median(ms)
        tensors = TENSORS[name] - (0 if residual else 2 if name == "lean" else 1)
        rows.append({"path": name, "shape": "x".join(map(str, shape)), "layout": layout, "extent": extent,
                     "residual": residual, "threads": threads, "ms": med, "ms_min": min(ms), "reps": len(ms),
                     "gbps": tensors * xb / (med * 1e-3) / 1e9,
                     "lean_vs_input": statistics.median(ratios),
                     "lean_vs_input_of_mins": min(samples["lean"]) / min(samples["input"])})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--stages", nargs="+", default=[s for s, _ in STAGES], choices=[s for s, _ in STAGES])
    p.add_argument("--layouts", nargs="+", default=["nchw", "nhwc"], choices=["nchw", "nhwc"])
    p.add_argument("--extents", nargs="+", type=int, default=[0])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--rounds", type=int, default=40, help="timed rounds per case (each runs both paths)")
    p.add_argument("--residual", choices=["yes", "no", "both"], default="yes")
    p.add_argument("--out", default=os.path.join(HERE, "results"), help="folder for the CSV ('' for none)")
    args = p.parse_args(argv)

    malloc = common.steady_malloc()
    meta = common.machine_info("cpu")
    load = common.cpu_busy()  # the share of the CPUs other processes used just before the run
    print(f"# {meta['cpu_model']}, {meta['cpu_count']} CPUs, torch {meta['torch']}, "
          f"genet_ops CPU ISA {meta.get('genet_ops_cpu_isa')}, malloc: {malloc}, "
          f"CPUs busy with other work before the run: {load if load is None else f'{load:.0%}'}")
    head = (f"{'shape':<16} {'layout':<6} {'e':>2} {'res':>3} {'thr':>3} {'path':<6} {'ms':>8} {'ms_min':>8} "
            f"{'GB/s':>6} {'lean/input':>10} {'of mins':>7}")
    print(head + "\n" + "-" * len(head))
    before = torch.get_num_threads()
    rows = []
    try:
        for threads in args.threads:
            for name, chw in STAGES:
                if name not in args.stages:
                    continue
                for layout in args.layouts:
                    for extent in args.extents:
                        for residual in {"yes": [True], "no": [False], "both": [True, False]}[args.residual]:
                            case = bench((args.batch, *chw), layout, extent, threads, args.rounds, residual)
                            for r in case:
                                print(f"{r['shape']:<16} {layout:<6} {extent:>2} {'y' if residual else 'n':>3} "
                                      f"{threads:>3} {r['path']:<6} {r['ms']:>8.3f} {r['ms_min']:>8.3f} "
                                      f"{r['gbps']:>6.1f} {r['lean_vs_input']:>10.3f} "
                                      f"{r['lean_vs_input_of_mins']:>7.3f}", flush=True)
                            rows += case
    finally:
        torch.set_num_threads(before)
    for threads in args.threads:
        ratios = [r["lean_vs_input"] for r in rows if r["path"] == "lean" and r["threads"] == threads]
        print(f"# {threads} thread(s): lean / input (median of per-round ratios), median over cases "
              f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        stem = os.path.join(args.out, f"bench_lean_cpu-{_dt.datetime.now():%Y%m%d-%H%M%S}")
        with open(stem + ".csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        common.write_json(dict(meta, malloc=malloc, load_before=load), rows, stem + ".json")
        print(f"# wrote {stem}.csv and .json")


if __name__ == "__main__":
    main()
