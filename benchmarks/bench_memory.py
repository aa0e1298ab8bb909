"""Activation memory of one training step: GE / SE networks without GE/SE, with eager GE/SE,
and with the fused ops keeping their input (save='input') or their defaults (save='auto',
which keeps outputs where that is safe and exact enough).

Saved bytes: the unique bytes of the tensors autograd holds between forward and backward
(torch.autograd.graph.saved_tensors_hooks, deduplicated by storage), everything included as
the issue measured it: the input batch, the parameters the layers keep (param_bytes) and,
under autocast, the low-precision copies of them (weight_cast_bytes); those two do not
grow with the batch and are also given apart. On CUDA also the peak of
torch.cuda.max_memory_allocated over forward + backward, above what was allocated before.

Models (θ⁻ global for the GE models; the batch and size the issue measured at):
    ge_wrn_16_8       N=32 at 32²   no GE = variant 'none'
    ge_resnet50       N=4 at 224²   no GE = variant 'none'
    efficientnet_b0   N=4 at 224²   torchvision; no SE = SE modules replaced by Identity;
                                    fused = genet_ops.fuse_excite(model, save=...)
    seresnet50        N=4 at 224²   timm; no SE = timm's resnet50; fused = fuse_excite
Any ge_wrn_<depth>_<width> or ge_resnet50/101/152 works too.

Providers: none, eager, fused-input (save='input', what the fused ops kept before the
output-keeping path), fused-lean (the defaults, save='auto'), and, on request,
fused-output (save='output' forced; fails with the in-place error where a model changes
the output in place, e.g. seresnet50, and the row says so).

    python benchmarks/bench_memory.py                        # all four models, fp32 and bf16, cpu
    python benchmarks/bench_memory.py --device cuda --models ge_wrn_16_8 --batch 512 --dtypes bf16
    python benchmarks/bench_memory.py --breakdown            # + bytes kept only by GE/SE, per module
    python benchmarks/bench_memory.py --small                # tiny shapes, for tests and dry runs

Writes <out>/bench_memory-<machine>-<date>.{md,json,png}.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # genet_ops, models from the checkout
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import common  # noqa: E402  (benchmarks/common.py: machine_info)
import genet_ops  # noqa: E402
import models  # noqa: E402

MiB = 2**20
PROVIDERS = ("none", "eager", "fused-input", "fused-lean", "fused-output")
DEFAULT_PROVIDERS = "none,eager,fused-input,fused-lean"
# model -> (batch, image size) as the issue measured
SHAPES = {"ge_wrn_16_8": (32, 32), "ge_resnet50": (4, 224), "efficientnet_b0": (4, 224), "seresnet50": (4, 224)}
SMALL = {"ge_wrn_16_2": (2, 32), "efficientnet_b0": (2, 16)}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_SAVE = {"fused-input": "input", "fused-lean": "auto", "fused-output": "output"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(SHAPES), help="comma-separated")
    p.add_argument("--batch", type=int, default=None, help="batch size for every model (default: per model)")
    p.add_argument("--img-size", type=int, default=None, help="input size for every model (default: per model)")
    p.add_argument("--dtypes", default="fp32,bf16", help="fp32 and/or autocast bf16 / fp16, comma-separated")
    p.add_argument("--providers", default=DEFAULT_PROVIDERS, help=f"comma-separated, of {', '.join(PROVIDERS)}")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--channels-last", default="true", help="true or false")
    p.add_argument("--forward-only", action="store_true",
                   help="skip backward (the saved bytes are counted after forward; no CUDA peak, and an output "
                        "changed in place is not caught)")
    p.add_argument("--breakdown", action="store_true", help="print the bytes only GE/SE modules keep, per module")
    p.add_argument("--small", action="store_true", help=f"tiny shapes ({', '.join(SMALL)}), for tests")
    p.add_argument("--plot", default="true", help="write the PNG (true or false)")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    return p.parse_args(argv)


# ------------------------------------------------------------------------- models
def _se_types():
    import torchvision

    types = [torchvision.ops.SqueezeExcitation]
    try:
        from timm.layers import SEModule

        types.append(SEModule)
    except ImportError:
        pass
    return tuple(types)


def _drop_se(model: nn.Module) -> nn.Module:
    """The same network with every SE module replaced by Identity."""
    se = _se_types()
    for name, m in list(model.named_modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, se):
                setattr(m, child_name, nn.Identity())
    return model


def build(name: str, provider: str, img_size: int) -> nn.Module:
    torch.manual_seed(0)
    if name.startswith("ge_"):
        return models.create_model(name, variant="none" if provider == "none" else "theta-", extent=0,
                                   fused=provider != "eager", ge_save=_SAVE.get(provider, "auto"), img_size=img_size)
    if name == "efficientnet_b0":
        import torchvision

        model = torchvision.models.efficientnet_b0()
        if provider == "none":
            return _drop_se(model)
    elif name == "seresnet50":
        import timm

        model = timm.create_model("resnet50" if provider == "none" else "seresnet50", pretrained=False)
    else:
        raise ValueError(f"bench_memory: unknown model {name!r}; use {', '.join(SHAPES)} or a ge_wrn_D_W name")
    return _fuse(model, provider)


def _fuse(model, provider):
    if provider.startswith("fused"):
        genet_ops.fuse_excite(model, save=_SAVE[provider])
    return model


def is_excite_module(name: str, module: nn.Module) -> bool:
    return isinstance(module, (genet_ops.GatherExcite, *_se_types()))


# ---------------------------------------------------------------------- measuring
class SavedBytes:
    """Records, while active, every tensor autograd saves: its storage (deduplicated by
    data pointer), its bytes and the modules running when it was saved."""

    def __init__(self, model: nn.Module, params: set):
        self.params = params
        self.storages: dict[int, int] = {}
        self.kept_params: dict[int, int] = {}
        self.casts: dict[int, int] = {}  # autocast's copies of parameters
        self.savers: dict[int, set] = defaultdict(set)
        self._stack: list[str] = []
        self._hooks = []
        for name, m in model.named_modules():
            if is_excite_module(name, m):
                self._hooks.append(m.register_forward_pre_hook(self._enter(name)))
                self._hooks.append(m.register_forward_hook(self._leave))

    def _enter(self, name):
        def hook(module, args):
            self._stack.append(name)
        return hook

    def _leave(self, module, args, output):
        self._stack.pop()

    def _pack(self, t):
        try:
            st = t.untyped_storage()
            ptr, nbytes = st.data_ptr(), st.nbytes()
        except (RuntimeError, NotImplementedError):  # no storage (e.g. a wrapper subclass)
            return t
        if nbytes == 0:
            return t
        self.storages[ptr] = nbytes
        fn = t.grad_fn
        if ptr in self.params:
            self.kept_params[ptr] = nbytes
        elif fn is not None and type(fn).__name__ == "ToCopyBackward0" and \
                type(fn.next_functions[0][0]).__name__ == "AccumulateGrad":
            self.casts[ptr] = nbytes
        self.savers[ptr].add(self._stack[-1] if self._stack else "")
        return t

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        for h in self._hooks:
            h.remove()

    @property
    def total(self) -> int:
        return sum(self.storages.values())

    def only_in_excite(self) -> dict[str, int]:
        """Bytes of the storages that only GE/SE modules keep, per module: what the GE/SE
        modules add to the network's saved activations."""
        out: dict[str, int] = defaultdict(int)
        for ptr, who in self.savers.items():
            if "" not in who:
                out[sorted(who)[0]] += self.storages[ptr]
        return dict(out)


def measure(name, provider, batch, img_size, dtype, device, channels_last, backward=True) -> dict:
    model = build(name, provider, img_size).to(device).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    params = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, img_size, img_size, generator=gen).to(device).contiguous(memory_format=fmt)
    target = torch.randint(0, 10, (batch,), generator=gen).to(device)
    row = {"model": name, "provider": provider, "batch": batch, "img_size": img_size,
           "dtype": {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype],
           "device": device.type, "channels_last": channels_last, "saved_bytes": None, "saved_mib": None,
           "param_bytes": None, "weight_cast_bytes": None, "peak_bytes": None, "only_excite": None, "note": ""}
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rec = SavedBytes(model, params)
    try:
        with rec, torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = F.cross_entropy(model(x).float(), target)
        row["saved_bytes"], row["saved_mib"] = rec.total, rec.total / MiB
        row["param_bytes"], row["weight_cast_bytes"] = sum(rec.kept_params.values()), sum(rec.casts.values())
        row["only_excite"] = rec.only_in_excite()
        if not backward:
            return row
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
            row["peak_bytes"] = torch.cuda.max_memory_allocated() - base
    except RuntimeError as exc:
        row["note"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:240]}"
    return row


# ------------------------------------------------------------------------ outputs
def _pct(v, base):
    return f"{v / MiB:.1f} ({(v / base - 1) * 100:+.1f}%)" if v is not None and base else "–"


def markdown(rows: list[dict], meta: dict) -> str:
    providers = list(dict.fromkeys(r["provider"] for r in rows))
    lines = [f"Saved activations per training step (unique bytes autograd holds between forward and backward, "
             f"MiB, parameters and their autocast copies included; in brackets: vs the same network without GE/SE). {meta['device_name']} ({meta['device']}), "
             f"torch {meta['torch']}, {meta['date']}.", ""]
    cuda = any(r["peak_bytes"] is not None for r in rows)
    head = ["model", "dtype", *providers] + (["CUDA peak: " + p for p in providers] if cuda else [])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, dtype) in dict.fromkeys((r["model"], r["dtype"]) for r in rows):
        sel = {r["provider"]: r for r in rows if r["model"] == model and r["dtype"] == dtype}
        first = next(iter(sel.values()))
        base = sel.get("none", {}).get("saved_bytes")
        cells = [f"{model}, N={first['batch']} at {first['img_size']}²", dtype]
        for p in providers:
            r = sel.get(p)
            if r is None:
                cells.append("")
            elif r["note"]:
                cells.append(f"{_pct(r['saved_bytes'], base) if r['saved_bytes'] else ''} fails: {r['note'][:80]}")
            else:
                cells.append(f"{r['saved_mib']:.1f}" if p == "none" else _pct(r["saved_bytes"], base))
        if cuda:
            pb = sel.get("none", {}).get("peak_bytes")
            cells += [_pct(sel[p]["peak_bytes"], pb) if p in sel else "" for p in providers]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def breakdown(rows: list[dict]) -> str:
    """Per (model, dtype, provider): the bytes that only GE/SE modules keep, by module."""
    lines = []
    for r in rows:
        if r["provider"] == "none" or not r["only_excite"]:
            continue
        tot = sum(r["only_excite"].values())
        lines.append(f"{r['model']} {r['dtype']} {r['provider']}: {tot / MiB:.2f} MiB kept only by GE/SE modules")
        for mod, b in sorted(r["only_excite"].items(), key=lambda kv: -kv[1]):
            if b >= 1024:
                lines.append(f"    {mod:<32} {b / MiB:9.3f} MiB")
    return "\n".join(lines)


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys((r["model"], r["dtype"]) for r in rows))
    providers = [p for p in dict.fromkeys(r["provider"] for r in rows) if p != "none"]
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(cases), 4))
    width = 0.8 / max(len(providers), 1)
    for k, p in enumerate(providers):
        xs, ys = [], []
        for i, (m, d) in enumerate(cases):
            sel = {r["provider"]: r for r in rows if r["model"] == m and r["dtype"] == d}
            base, r = sel.get("none", {}).get("saved_bytes"), sel.get(p)
            if base and r and r["saved_bytes"] and not r["note"]:
                xs.append(i + k * width)
                ys.append((r["saved_bytes"] / base - 1) * 100)
        ax.bar(xs, ys, width, label=p)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cases))])
    ax.set_xticklabels([f"{m}\n{d}" for m, d in cases], fontsize=7)
    ax.set_ylabel("saved activations vs no GE/SE (%)")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")[:40] or "machine"


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    shapes = SMALL if args.small else {m: SHAPES.get(m, (8, 32 if "wrn" in m else 224))
                                      for m in (s.strip() for s in args.models.split(",")) if m}
    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    for p in providers:
        if p not in PROVIDERS:
            raise SystemExit(f"bench_memory: unknown provider {p!r}; choose from {', '.join(PROVIDERS)}")
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for d in dtypes:
        if d not in DTYPES:
            raise SystemExit(f"bench_memory: unknown dtype {d!r}; choose from {', '.join(DTYPES)}")
    channels_last = args.channels_last.lower() in ("1", "true", "yes", "on")
    meta = common.machine_info(device.type)
    meta.update({"benchmark": "bench_memory", "argv": sys.argv[1:] if argv is None else list(argv)})
    rows = []
    for name, (batch, size) in shapes.items():
        batch, size = args.batch or batch, args.img_size or size
        for d in dtypes:
            for p in providers:
                r = measure(name, p, batch, size, DTYPES[d], device, channels_last, not args.forward_only)
                rows.append(r)
                shown = f"{r['saved_mib']:9.1f} MiB saved" if r["saved_mib"] is not None else ""
                if r["saved_mib"] is not None:
                    shown += f" (parameters {r['param_bytes'] / MiB:.1f}, their autocast copies " \
                             f"{r['weight_cast_bytes'] / MiB:.1f})"
                peak = f", CUDA peak {r['peak_bytes'] / MiB:.1f} MiB" if r["peak_bytes"] is not None else ""
                print(f"{name:<16} N={batch:<3} {size}² {d:<4} {p:<12} {shown}{peak}"
                      f"{'  ' + r['note'] if r['note'] else ''}", flush=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    table = markdown(rows, meta)
    print("\n" + table)
    if args.breakdown:
        print(breakdown(rows))
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"bench_memory-{_slug(meta['device_name'])}-{_dt.datetime.now():%Y%m%d-%H%M%S}")
    with open(stem + ".md", "w") as f:
        f.write(table)
        if args.breakdown:
            f.write("\nBytes kept only by GE/SE modules (their extra over the network without them):\n\n```\n"
                    + breakdown(rows) + "\n```\n")
    with open(stem + ".json", "w") as f:
        json.dump({"machine": meta, "rows": rows}, f, indent=1, default=str)
    if args.plot.lower() in ("1", "true", "yes", "on"):
        plot(rows, stem + ".png", f"bench_memory, {meta['device_name']}, torch {meta['torch']}")
    print(f"# wrote {stem}.md, .json{', .png' if args.plot.lower() in ('1', 'true', 'yes', 'on') else ''}")
    return rows


if __name__ == "__main__":
    main()
