"""Error of the output-keeping (lean) backward against float64, next to eager PyTorch's and
the input-keeping backward's, for residual/branch ratios 0 (no residual), 0.3, 1, 3, 10.

The lean backward rebuilds the excited branch as z = out - r from the rounded output; when
the residual r dominates the branch x S, that difference loses the branch's low bits. This
measures by how much, per dtype, for
    gather_excite  dx  (its tile-mean term is (1 - s) T(dy z) / |t|, the part that suffers)
    excite         dx = dy S (exact either way) and dg = (1 - s) T(dy z)
on N x C planes of H x W (default 8 x 64 x 16 x 16, global extent: one tile per plane).
r = ratio * rms(x S) * (standard normal). Errors are max |. - float64 reference| over the
tensor, the worst over --seeds inputs; "x eager" is that error over eager PyTorch's in the
same dtype (the code a user writes: mean, sigmoid, multiply, add, autograd); "budget" says
whether err <= 2 x eager + the floor of docs/DESIGN.md §4 (tests/oracle.py) holds for
every seed. The kernels are whatever torch.ops.genet_ops runs on this device.

    python benchmarks/bench_lean_numerics.py
    python benchmarks/bench_lean_numerics.py --dtypes bf16 --ratios 10 --seeds 20 --extent 4

Writes <out>/bench_lean_numerics-<date>.{md,json}.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import torch  # noqa: E402

import common  # noqa: E402
import genet_ops  # noqa: E402,F401  (registers the ops)
from genet_ops import checks, reference  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
OPS = torch.ops.genet_ops


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtypes", default="bf16,fp16,fp32")
    p.add_argument("--ratios", default="0,0.3,1,3,10")
    p.add_argument("--shape", default="8,64,16,16", help="N,C,H,W")
    p.add_argument("--extent", type=int, default=0)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    return p.parse_args(argv)


def floor(oracle: torch.Tensor, dtype) -> float:
    """docs/DESIGN.md §4's floor, as tests/oracle.assert_within_budget computes it."""
    ulps = 64 if dtype in (torch.float32, torch.float64) else 4
    return ulps * torch.finfo(dtype).eps * max(1.0, oracle.abs().max().item())


def _eager(x, g, extent, r):
    """The user's eager code in x's dtype; gather_excite when g is None."""
    t = checks.tile_geom(x.shape, extent)
    if g is None:
        g = reference.tile_sum(x, t) / reference.tile_count(t, x.device, x.dtype)
    y = x * reference.expand_tiles(torch.sigmoid(g), t)
    return y if r is None else y + r


def inputs(shape, dtype, ratio, extent, seed):
    gen = torch.Generator().manual_seed(seed)
    x64 = torch.randn(shape, generator=gen, dtype=torch.float64)
    t = checks.tile_geom(shape, extent)
    g64 = torch.randn(shape[0], shape[1], t.th, t.tw, generator=gen, dtype=torch.float64)
    dy64 = torch.randn(shape, generator=gen, dtype=torch.float64)
    noise = torch.randn(shape, generator=gen, dtype=torch.float64)
    x, dy = x64.to(dtype), dy64.to(dtype)
    branch = _eager(x.double(), None, extent, None)
    r = None if ratio == 0 else (ratio * branch.pow(2).mean().sqrt() * noise).to(dtype)
    return x, g64.to(dtype), dy, r


def errors(op: str, dtype, ratio: float, extent: int, shape, seed: int) -> dict:
    """{grad: (lean err, input-keeping err, eager err, floor)} for one input."""
    x, g, dy, r = inputs(shape, dtype, ratio, extent, seed)
    excite = op == "excite"
    f64 = [t.double().requires_grad_() for t in (x, g)]
    ref = reference.excite(f64[0], f64[1], extent, None if r is None else r.double()) if excite else \
        reference.gather_excite(f64[0], extent, None if r is None else r.double())
    want = torch.autograd.grad(ref, f64 if excite else f64[:1], dy.double())
    xe, ge = x.clone().requires_grad_(), g.clone().requires_grad_()
    eager = torch.autograd.grad(_eager(xe, ge if excite else None, extent, r), [xe, ge] if excite else [xe], dy)
    if excite:
        out = OPS.excite(x, g, extent, r)
        lean = OPS.excite_lean_backward(dy, out, r, g.float(), extent, False, False)
        keep_input = OPS.excite_backward(dy, x, g, extent)
    else:
        out, gm = OPS.gather_excite_lean(x, extent, r)
        lean = OPS.excite_lean_backward(dy, out, r, gm, extent, False, True)[:1]
        keep_input = (OPS.gather_excite_backward(dy, x, extent),)
    res = {}
    for name, w, a, b, e in zip(("dx", "dg"), want, lean, keep_input, eager):
        err = [(v.double() - w).abs().max().item() for v in (a, b, e)]
        res[name] = (*err, floor(w, dtype))
    return res


def run(dtypes, ratios, extent, shape, seeds) -> list[dict]:
    rows = []
    for d in dtypes:
        for op, grads in (("gather_excite", ("dx",)), ("excite", ("dx", "dg"))):
            for ratio in ratios:
                per_seed = [errors(op, DTYPES[d], ratio, extent, shape, s) for s in range(seeds)]
                for gname in grads:
                    e = [p[gname] for p in per_seed]
                    lean, inp, eager = (max(v[i] for v in e) for i in range(3))
                    rows.append({
                        "dtype": d, "op": op, "grad": gname, "ratio": ratio, "extent": extent, "shape": list(shape),
                        "err_lean": lean, "err_input": inp, "err_eager": eager,
                        "lean_vs_eager": lean / eager if eager else None,
                        "input_vs_eager": inp / eager if eager else None,
                        # per seed, so that the floor and eager's error belong to the same input
                        "lean_in_budget": all(v[0] <= 2 * v[2] + v[3] for v in e),
                        "input_in_budget": all(v[1] <= 2 * v[2] + v[3] for v in e),
                    })
    return rows


def markdown(rows, meta) -> str:
    ratios = list(dict.fromkeys(r["ratio"] for r in rows))
    lines = [f"Lean backward error / eager PyTorch's error (same dtype), both against float64; max over "
             f"{meta['seeds']} inputs of {'x'.join(map(str, rows[0]['shape']))}, extent {rows[0]['extent']}; "
             f"✗ = outside the budget (2 x eager + floor) for some input. In brackets: the input-keeping "
             f"backward. {meta['device_name']}, torch {meta['torch']}, kernels: "
             f"{meta['genet_ops']['kernels']['excite_lean_backward']}.", "",
             "| dtype | grad | " + " | ".join(f"r/branch {q:g}" for q in ratios) + " |",
             "|---|---|" + "---|" * len(ratios)]
    for key in dict.fromkeys((r["dtype"], r["op"], r["grad"]) for r in rows):
        sel = {r["ratio"]: r for r in rows if (r["dtype"], r["op"], r["grad"]) == key}
        cells = []
        for q in ratios:
            r = sel[q]
            cells.append(f"{r['lean_vs_eager']:.2f}×{'' if r['lean_in_budget'] else ' ✗'} "
                         f"({r['input_vs_eager']:.2f}×{'' if r['input_in_budget'] else ' ✗'})")
        lines.append(f"| {key[0]} | {key[1]} {key[2]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    ratios = [float(v) for v in args.ratios.split(",")]
    rows = run(dtypes, ratios, args.extent, shape, args.seeds)
    meta = common.machine_info("cpu")
    meta.update({"benchmark": "bench_lean_numerics", "seeds": args.seeds})
    table = markdown(rows, meta)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"bench_lean_numerics-{_dt.datetime.now():%Y%m%d-%H%M%S}")
    with open(stem + ".md", "w") as f:
        f.write(table)
    with open(stem + ".json", "w") as f:
        json.dump({"machine": meta, "rows": rows}, f, indent=1, default=str)
    print(f"# wrote {stem}.md and .json")
    return rows


if __name__ == "__main__":
    main()
