"""End-to-end training throughput (img/s) of GE-WRN-16-8 θ⁻ (the seed's model): GE in
eager PyTorch vs the fused genet_ops ops, each with and without torch.compile, at batch
128 and 512, the way train.py trains (SGD step, on-device uint8 data with random crop +
flip + normalisation, channels_last and bf16 autocast on CUDA).

`--model efficientnet_b0` or `--model regnet_y_400mf` times a torchvision SE network
instead (10 classes, `--img-size`, default 224): eager is torchvision's model as it is,
fused the same model after genet_ops.fuse_excite (its SE blocks on the excite op).
`--se-breakdown` adds, for those, forward + backward of each SE module alone (eager vs
fused, on the input the model gives it) and of the whole model: SE's share of a step.

    python benchmarks/bench_train.py                         # the best device here
    python benchmarks/bench_train.py --device cpu --steps 2 --warmup 1
    python benchmarks/bench_train.py --device cuda           # bf16 + channels_last
    python benchmarks/bench_train.py --device cuda --quick   # no compile, fewer steps
    python benchmarks/bench_train.py --device cuda --model efficientnet_b0 --batch-sizes 128

Every configuration: `--warmup` untimed steps per provider (torch.compile compiles
there), then `--steps` timed steps, each synchronised, eager and fused interleaved step by
step so that other load hits both alike; img/s = batch / median step time. The data
loader's own throughput (the augmentation alone) is measured too ("loader" rows).
Writes <out>/bench_train-<device>-<date>.{json,csv}; the JSON holds the machine
description (benchmarks/common.machine_info). Timings belong here, never in tests.
"""
from __future__ import annotations

import argparse
import copy
import csv
import datetime as _dt
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # genet_ops, models, training from the checkout
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import common  # noqa: E402  (benchmarks/common.py: machine_info, wait_idle, synchronize)
import genet_ops  # noqa: E402
import models  # noqa: E402
from training import data  # noqa: E402
from training import dist  # noqa: E402

SE_MODELS = ("efficientnet_b0", "regnet_y_400mf")  # torchvision SE networks: eager vs fuse_excite
COLUMNS = ["model", "variant", "extent", "provider", "compile", "batch", "dtype", "channels_last", "device",
           "img_per_s", "ms_per_step", "steps", "warmup_s", "vs_eager", "busy", "note"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cpu, cuda or npu (default: the best available)")
    p.add_argument("--model", default="ge_wrn_16_8", help=f"a models.create_model name, or one of {', '.join(SE_MODELS)}")
    p.add_argument("--img-size", type=int, default=None, help="input size (default: 32 for GE-WRN, 224 otherwise)")
    p.add_argument("--variant", default="theta-")
    p.add_argument("--extent", type=int, default=0)
    p.add_argument("--batch-sizes", default="128,512", help="comma-separated")
    p.add_argument("--providers", default="eager,fused",
                   help="eager (PyTorch GE), fused (genet_ops ops, their defaults), fused-input (the fused ops "
                        "keeping their input, save='input': the step before the output-keeping ops)")
    p.add_argument("--compile", default="both", choices=["both", "off", "only"], help="torch.compile variants")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: cuda 30, cpu 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps (default: cuda 10, cpu 1)")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="autocast dtype (auto: bf16 on cuda/npu, fp32 on cpu)")
    p.add_argument("--channels-last", default="auto", help="auto (cuda and cpu), true or false")
    p.add_argument("--quick", action="store_true", help="no compile, fewer steps (the GPU check's one-minute slot)")
    p.add_argument("--se-breakdown", action="store_true",
                   help=f"{'/'.join(SE_MODELS)}: also time each SE module alone, eager vs fused")
    p.add_argument("--wait-idle", type=float, default=60.0, help="cpu: wait up to N s for other load to settle")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    return p.parse_args(argv)


def make_loader(n_images: int, batch: int, device, channels_last: bool, size: int = 32):
    """train.py's on-device loader over random uint8 images (CIFAR-sized by default)."""
    rng = np.random.RandomState(0)
    x = rng.randint(0, 256, (n_images, size, size, 3)).astype(np.uint8)
    y = rng.randint(0, 10, n_images).astype(np.int64)
    return data.DeviceLoader(x, y, batch, device, train=True, mean=data.CIFAR10_MEAN, std=data.CIFAR10_STD,
                           flip=True, channels_last=channels_last)


def batches(loader):
    """Endless batches, a new epoch (new permutation and crops) whenever one runs out."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def make_step(args, device, provider, compiled, batch, dtype, channels_last):
    """One training step of a fresh model (same seed for every provider) as a closure."""
    torch.manual_seed(0)
    if args.model in SE_MODELS:
        import torchvision

        model = getattr(torchvision.models, args.model)(num_classes=10)
        if provider.startswith("fused"):
            genet_ops.fuse_excite(model, save="input" if provider == "fused-input" else "auto")
    else:
        model = models.create_model(args.model, variant=args.variant, extent=args.extent,
                                    fused=provider.startswith("fused"),
                                    ge_save="input" if provider == "fused-input" else "auto")
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    net = torch.compile(model) if compiled else model
    it = batches(make_loader(max(4 * batch, 2048 if args.img_size <= 64 else 256), batch, device, channels_last,
                             args.img_size))
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None

    def step():
        x, y = next(it)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

    return step


def bench_providers(args, device, providers, compiled, batch, dtype, channels_last):
    """Warm every provider up, then time their steps interleaved (eager, fused, eager,
    fused, ...) so that load from other processes hits them alike; median per provider."""
    steps, warm, out = {}, {}, {}
    for p in providers:
        try:
            steps[p] = make_step(args, device, p, compiled, batch, dtype, channels_last)
            t0 = time.perf_counter()
            for _ in range(args.warmup):
                steps[p]()
            common.synchronize(device.type)
            warm[p] = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001  (out of memory, compile failure: record and go on)
            steps.pop(p, None)
            out[p] = {"img_per_s": None, "ms_per_step": None, "steps": 0, "warmup_s": None, "busy": None,
                      "note": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
    busy = common.wait_idle(args.wait_idle) if device.type == "cpu" else None
    times = {p: [] for p in steps}
    for _ in range(args.steps):
        for p, step in steps.items():
            t = time.perf_counter()
            step()
            common.synchronize(device.type)
            times[p].append(time.perf_counter() - t)
    for p, ts in times.items():
        ms = statistics.median(ts) * 1e3
        out[p] = {"img_per_s": batch / (ms / 1e3), "ms_per_step": ms, "steps": args.steps, "warmup_s": warm[p],
                  "busy": busy, "note": ""}
    return out


def bench_se_modules(args, device, batch, channels_last):
    """Forward + backward of every SE module alone, eager and fused (timed interleaved),
    on the input the model feeds it, and of the whole model: what share of a step SE is."""
    import torchvision

    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = getattr(torchvision.models, args.model)(num_classes=10).to(device, memory_format=fmt)
    seen = []
    hooks = [m.register_forward_hook(lambda mod, i, o: seen.append((mod, i[0].detach())))
             for m in model.modules() if type(m) is torchvision.ops.SqueezeExcitation]
    x = torch.randn(batch, 3, args.img_size, args.img_size, device=device).contiguous(memory_format=fmt)
    model(x)
    for h in hooks:
        h.remove()

    def fwd_bwd(module, inp):
        y = module(inp)
        y.backward(torch.ones_like(y))

    rows = []
    for i, (se, inp) in enumerate(seen):
        fused = copy.deepcopy(se)
        genet_ops.fuse_excite(fused)
        steps = {p: (None, lambda m=m, t=inp.clone().requires_grad_(): fwd_bwd(m, t))
                 for p, m in (("eager", se), ("fused", fused))}
        for _, run in steps.values():
            run()
        res = common.time_interleaved(steps, device.type, budget_s=0.3)
        rows.append({"module": i, "shape": list(inp.shape), **{p: res[p][0] for p in steps}})
    whole = common.time_interleaved({"model": (None, lambda: fwd_bwd(model, x))}, device.type, budget_s=2.0)
    return rows, whole["model"][0]


def bench_loader(device, batch, channels_last, steps, size):
    loader = make_loader(max(8 * batch, 8192 if size <= 64 else 512), batch, device, channels_last, size)
    it = batches(loader)
    for _ in range(3):
        next(it)
    common.synchronize(device.type)
    t = time.perf_counter()
    for _ in range(steps):
        next(it)
    common.synchronize(device.type)
    dt = (time.perf_counter() - t) / steps
    return {"img_per_s": batch / dt, "ms_per_step": dt * 1e3, "steps": steps, "warmup_s": 0.0, "busy": None}


def main(argv=None):
    args = parse_args(argv)
    device_type = dist.resolve_device_type(args.device)
    device = torch.device(device_type, 0) if device_type != "cpu" else torch.device("cpu")
    if device_type == "cuda":
        torch.cuda.set_device(0)
        torch.backends.cudnn.benchmark = True
    gpu = device_type != "cpu"
    args.steps = args.steps or ((10 if args.quick else 30) if gpu else 3)
    args.warmup = args.warmup or ((5 if args.quick else 10) if gpu else 1)
    if args.quick:
        args.compile = "off"
    if args.model in SE_MODELS:
        args.variant, args.extent = "SE", 0  # what the rows say: SE blocks, global excite
    args.img_size = args.img_size or (224 if args.model in SE_MODELS else 32)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}.get(
        args.dtype, torch.bfloat16 if gpu else torch.float32)
    cl = args.channels_last
    channels_last = device_type in ("cuda", "cpu") if cl == "auto" else cl.lower() in ("1", "true", "yes", "on")
    compiles = {"both": [False, True], "off": [False], "only": [True]}[args.compile]
    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    meta = common.machine_info(device_type)
    meta.update({"benchmark": "bench_train", "argv": sys.argv[1:], "model": args.model, "variant": args.variant,
                 "extent": args.extent, "img_size": args.img_size, "dtype": str(dtype).replace("torch.", ""),
                 "channels_last": channels_last})
    print(f"# {meta['device_name']} ({device_type}), torch {torch.__version__}, {args.model} "
          f"{'SE blocks' if args.model in SE_MODELS else 'GE-' + args.variant} "
          f"extent {args.extent}, {args.img_size}x{args.img_size}, {meta['dtype']}, channels_last {channels_last}, "
          f"{args.warmup} warm-up + {args.steps} timed steps per configuration", flush=True)
    base = dict(model=args.model, variant=args.variant, extent=args.extent, dtype=meta["dtype"],
                channels_last=channels_last, device=device_type)
    rows = []
    for batch in batch_sizes:
        r = bench_loader(device, batch, channels_last, max(args.steps, 10), args.img_size)
        rows.append({**base, "provider": "loader", "compile": False, "batch": batch, **r,
                     "note": "data loading + augmentation alone"})
        print(f"batch {batch:4d} loader            {r['img_per_s']:12.1f} img/s", flush=True)
        for compiled in compiles:
            res = bench_providers(args, device, providers, compiled, batch, dtype, channels_last)
            eager_ips = res.get("eager", {}).get("img_per_s")
            for provider in providers:
                r = res[provider]
                vs = r["img_per_s"] / eager_ips if eager_ips and r["img_per_s"] and provider != "eager" else None
                rows.append({**base, "provider": provider, "compile": compiled, "batch": batch, **r, "vs_eager": vs})
                shown = f"{r['img_per_s']:12.1f} img/s" if r["img_per_s"] else f"failed: {r['note']}"
                extra = f"  ({vs:.2f}x eager)" if vs else ""
                print(f"batch {batch:4d} {provider:<6} compile={str(compiled):<5} {shown}{extra}", flush=True)
            if device_type == "cpu" and res and next(iter(res.values())).get("busy") is not None:
                print(f"           (other processes kept {next(iter(res.values()))['busy']:.0%} of the CPUs busy "
                      f"just before timing)", flush=True)
            if device_type == "cuda":
                torch.cuda.empty_cache()
        if args.se_breakdown and args.model in SE_MODELS:
            se_rows, model_ms = bench_se_modules(args, device, batch, channels_last)
            for r in se_rows:
                print(f"batch {batch:4d} SE module {r['module']:2d} {str(r['shape']):<22} eager {r['eager']:8.3f} ms  "
                      f"fused {r['fused']:8.3f} ms  ({r['eager'] / r['fused']:.2f}x)", flush=True)
            tot = {p: sum(r[p] for r in se_rows) for p in ("eager", "fused")}
            print(f"batch {batch:4d} all {len(se_rows)} SE modules fwd+bwd: eager {tot['eager']:.1f} ms, fused "
                  f"{tot['fused']:.1f} ms ({tot['eager'] / tot['fused']:.2f}x); whole model fwd+bwd {model_ms:.1f} ms "
                  f"(SE eager = {tot['eager'] / model_ms:.0%} of it)", flush=True)
            for p in ("eager", "fused"):
                rows.append({**base, "provider": f"se_modules_{p}", "compile": False, "batch": batch,
                             "ms_per_step": tot[p], "steps": None, "vs_eager": tot["eager"] / tot[p] if p == "fused" else None,
                             "note": f"forward+backward of the {len(se_rows)} SE modules alone; whole model "
                                     f"forward+backward {model_ms:.1f} ms; per module: "
                                     + "; ".join(f"{r['shape']} {r['eager']:.3f}/{r['fused']:.3f}" for r in se_rows)})

    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"bench_train-{device_type}-{_dt.datetime.now():%Y%m%d-%H%M%S}")
    with open(stem + ".json", "w") as f:
        json.dump({"machine": meta, "rows": rows}, f, indent=1, default=str)
    with open(stem + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    print(f"# wrote {stem}.json and .csv")
    return rows


if __name__ == "__main__":
    main()
