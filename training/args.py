"""Command line: the seed's flags in both spellings, with real booleans.

Every boolean flag works alone (``--amp``), with a value (``--amp false``, ``--amp 1``)
or negated (``--no-amp``); the seed's ``type=bool`` made ``--mlp False`` true.
Defaults that depend on the data set (epochs, milestones, model size) are None here
and resolved by resolve_defaults once the data set is known.
"""
from __future__ import annotations

import argparse

SEED_RECIPE = dict(epochs=300, milestones=[60, 120, 160, 200], depth=16, width=8, batch_size=128)
DIGITS_RECIPE = dict(epochs=15, milestones=[8, 12], depth=10, width=2, batch_size=64)

_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


def str2bool(v) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false, yes/no, 1/0), got {v!r}")


def add_bool(p, *names, default=False, help=""):
    """--flag [BOOL] and --no-flag, for every spelling in names."""
    dest = names[0].lstrip("-").replace("-", "_")
    p.add_argument(*names, dest=dest, nargs="?", const=True, default=default, type=str2bool, metavar="BOOL", help=help)
    negs = ["--no-" + n[2:] for n in names if n.startswith("--") and "_" not in n]
    p.add_argument(*negs, dest=dest, action="store_false", help=argparse.SUPPRESS)


def loss_scale(v):
    if str(v).lower() == "dynamic":
        return "dynamic"
    try:
        f = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--loss-scale must be 'dynamic' or a positive number, got {v!r}") from None
    if not f > 0:
        raise argparse.ArgumentTypeError(f"--loss-scale must be 'dynamic' or a positive number, got {v!r}")
    return f


def int_list(v):
    try:
        return [int(s) for s in str(v).replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 60,120,160,200, got {v!r}") from None


HELP_SCALING = """\
batch size and learning rate with several processes:
  --batch-size is per process under torchrun and in a single process, so
  `torchrun --nproc-per-node 8 train.py` trains with 8 x 128 = 1024 images per step.
  With --multiprocessing-distributed (the seed's scripts) it is per node and divided
  by the processes spawned there (the seed passes 1024 for 8 devices: 128 each).
  The learning rate is never scaled: the seed trains 1024 over 8 devices at lr 0.1
  like 128 on one. Scale it yourself with --lr if you want the linear rule.
  Validation is sharded over the processes and its sums all-reduced: the accuracy
  is that of the whole test set.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train GE-WideResNet (GENet) on CIFAR-10 with fused gather-excite ops; "
        "the seed's recipe (WRN-16-8 GE-θ⁻ global, SGD 0.1, 300 epochs) by default. Without "
        "--data-path and ./data/cifar-10-batches-py it trains a small GE-WRN on scikit-learn's digits.\n"
        "Boolean flags take an optional value (--amp, --amp true, --amp 0) or a --no- form (--no-amp).",
        epilog=HELP_SCALING,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    d = p.add_argument_group("data")
    d.add_argument("--data-path", "--data_path", "--DataPath", "--data", dest="data_path", default=None,
                   help="folder holding cifar-10-batches-py/ (or that folder itself); default ./data if it holds "
                   "CIFAR-10, else the embedded digits data set")
    d.add_argument("--dataset", choices=["auto", "cifar10", "digits"], default="auto",
                   help="auto: CIFAR-10 when found, else digits")
    d.add_argument("--workers", "-j", type=int, default=0,
                   help="accepted for the seed's scripts; unused (data loading runs on the device)")
    d.add_argument("--max-train-samples", "--max_train_samples", type=int, default=None, help="use the first N training images (smoke tests)")
    d.add_argument("--max-val-samples", "--max_val_samples", type=int, default=None, help="use the first N test images")

    m = p.add_argument_group("model")
    m.add_argument("--model", default=None, help="factory name (models.create_model); default ge_wrn_<depth>_<width>")
    m.add_argument("--depth", type=int, default=None, help="WRN depth (seed: 16; digits: 10)")
    m.add_argument("--width", type=int, default=None, help="WRN widening factor (seed: 8; digits: 2)")
    m.add_argument("--variant", default=None, help="theta- (θ⁻, parameter-free; the seed's), theta (θ), theta+ (θ⁺), none")
    m.add_argument("--extent", type=int, default=0, help="gather extent: 0 = global (the seed's), or 2, 4, 8")
    add_bool(m, "--extra-params", "--extra_params", default=None, help="the seed's flag: learned gather (= --variant theta)")
    add_bool(m, "--mlp", "--use-mlp", "--use_mlp", default=None, help="the seed's flag: with --extra-params, GE-θ⁺")
    add_bool(m, "--fused-ge", "--fused_ge", default=None,
             help="GE through the genet_ops fused ops; the default wherever their kernels are compiled for the "
             "device (else the eager math, said in one line). --no-fused-ge: the seed's eager PyTorch math")

    o = p.add_argument_group("optimisation (the seed's recipe)")
    o.add_argument("--epochs", type=int, default=None, help="seed: 300 (digits: 15)")
    o.add_argument("--batch-size", "--batch_size", "-b", dest="batch_size", type=int, default=None,
                   help="images per process per step (seed: 128; digits: 64); see below")
    o.add_argument("--lr", "--learning-rate", dest="lr", type=float, default=0.1, help="initial learning rate (0.1)")
    o.add_argument("--momentum", type=float, default=0.9)
    o.add_argument("--wd", "--weight-decay", "--weight_decay", dest="wd", type=float, default=5e-4)
    add_bool(o, "--nesterov", default=False)
    o.add_argument("--milestones", type=int_list, default=None, help="MultiStepLR epochs (seed: 60,120,160,200; digits: 8,12)")
    o.add_argument("--gamma", type=float, default=0.2, help="MultiStepLR factor (0.2)")
    o.add_argument("--seed", type=int, default=0, help="seeds model init, data order and augmentation")
    add_bool(o, "--deterministic", default=False, help="deterministic kernels (slower on GPU)")

    a = p.add_argument_group("precision and speed")
    add_bool(a, "--amp", default=False, help="mixed precision through torch.amp (see --opt-level)")
    a.add_argument("--opt-level", "--opt_level", dest="opt_level", default="O2", choices=["O0", "O1", "O2"],
                   help="O1: fp16 autocast + GradScaler; O2: bf16 autocast where supported, else fp16 + GradScaler")
    a.add_argument("--loss-scale", "--loss_scale", dest="loss_scale", type=loss_scale, default="dynamic",
                   help="'dynamic' or a static scale N (fp16 only)")
    add_bool(a, "--apex", default=False, help="use NVIDIA apex amp instead of torch.amp (only if installed)")
    a.add_argument("--channels-last", "--channels_last", dest="channels_last", default="auto",
                   type=lambda v: v if str(v).lower() == "auto" else str2bool(v),
                   help="auto (on for cuda and cpu), true or false")
    add_bool(a, "--compile", default=False, help="torch.compile the model")

    s = p.add_argument_group("devices and processes")
    s.add_argument("--device", default=None, help="cpu, cuda or npu (default: the best available)")
    s.add_argument("--rank", type=int, default=-1, help="node rank for --multiprocessing-distributed, else process rank")
    s.add_argument("--world-size", "--world_size", dest="world_size", type=int, default=-1,
                   help="with --multiprocessing-distributed: number of nodes; else number of processes")
    s.add_argument("--dist-url", "--dist_url", dest="dist_url", default=None,
                   help="process-group rendezvous (default env://, or a free local port when spawning)")
    s.add_argument("--dist-backend", "--dist_backend", dest="dist_backend", default=None,
                   help="default: nccl (cuda), hccl (npu), gloo (cpu)")
    add_bool(s, "--multiprocessing-distributed", "--multiprocessing_distributed", default=False,
             help="spawn one process per device on this node (the seed's scripts); torchrun is the other way")
    s.add_argument("--nproc-per-node", "--nproc_per_node", dest="nproc_per_node", type=int, default=None,
                   help="processes to spawn with --multiprocessing-distributed (default: the device count; cpu: 1)")
    s.add_argument("--dist-timeout", "--dist_timeout", dest="dist_timeout", type=float, default=10.0, metavar="MIN",
                   help="minutes a collective (or the process group's start) may wait before the run fails "
                   "instead of hanging (default 10)")
    s.add_argument("--local-rank", "--local_rank", dest="local_rank", type=int, default=None, help=argparse.SUPPRESS)

    r = p.add_argument_group("output and checkpoints")
    r.add_argument("--output-dir", "--output_dir", dest="output_dir", default=None,
                   help="checkpoints and metrics (default runs/<dataset>-<model>-<variant>-e<extent>)")
    r.add_argument("--resume", default=None, metavar="auto|none|PATH",
                   help="auto (the default): continue from the newest complete checkpoint in --output-dir if it "
                   "holds one of this run, else start afresh; none: start afresh (refused if --output-dir holds "
                   "checkpoints); PATH: continue from that checkpoint (or evaluate it with --evaluate)")
    r.add_argument("--save-every-steps", "--save_every_steps", dest="save_every_steps", type=int, default=0,
                   metavar="N", help="also write a checkpoint every N training steps (default 0: off)")
    r.add_argument("--save-every-minutes", "--save_every_minutes", dest="save_every_minutes", type=float,
                   default=10.0, metavar="M", help="also write a checkpoint when M minutes passed since the last "
                   "one (default 10; 0: off); checkpoints are always written at each epoch's end")
    r.add_argument("--keep-checkpoints", "--keep_checkpoints", dest="keep_checkpoints", type=int, default=2,
                   metavar="K", help="keep the newest K step checkpoints in --output-dir/checkpoints (default 2)")
    add_bool(r, "--override-checkpoint", "--override_checkpoint", default=False,
             help="resume even though --seed, the data set, or (mid-epoch) --batch-size or the process count "
             "differ from the checkpoint's; the run then differs from an uninterrupted one")
    add_bool(r, "--evaluate", "--eval", "-e", default=False, help="only evaluate --resume's model on the test set")
    r.add_argument("--print-freq", "--print_freq", "-p", dest="print_freq", type=int, default=20,
                   help="steps between loss checks and progress updates")
    add_bool(r, "--progress", default=True, help="tqdm progress bar on rank 0")
    add_bool(r, "--dump-replicas", "--dump_replicas", default=False,
             help="every rank writes its final weights to replica_rank<r>.pt (checks DDP)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if args.extra_params is not None or args.mlp is not None:
        implied = "theta+" if args.mlp else "theta" if args.extra_params else "theta-"
        if args.mlp and args.extra_params is False:
            p.error("--mlp needs --extra-params (GE-θ⁺); the parameter-free GE-θ⁻ has no MLP")
        if args.variant is not None:
            from models import canonical_variant

            if canonical_variant(args.variant) != implied:
                p.error(f"--variant {args.variant} contradicts --extra-params/--mlp (which mean {implied})")
        args.variant = implied
    if args.variant is not None:
        from models import canonical_variant

        try:
            args.variant = "none" if str(args.variant).lower() == "none" else canonical_variant(args.variant)
        except ValueError:
            p.error(f"--variant must be theta- (θ⁻), theta (θ), theta+ (θ⁺) or none, got {args.variant!r}")
    for name in ("epochs", "batch_size", "depth", "width", "print_freq", "keep_checkpoints"):
        v = getattr(args, name)
        if v is not None and v < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    for name in ("lr", "dist_timeout"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be a number > 0, got {getattr(args, name)}")
    for name in ("momentum", "wd", "save_every_steps", "save_every_minutes"):
        if not getattr(args, name) >= 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if not 0 < args.gamma <= 1:
        p.error(f"--gamma must be in (0, 1], got {args.gamma}")
    if args.extent < 0:
        p.error(f"--extent must be >= 0 (0 = global), got {args.extent}")
    if args.evaluate and args.resume in (None, "", "none"):
        p.error("--evaluate needs --resume CHECKPOINT (the model to evaluate)")
    if args.resume in (None, ""):
        args.resume = "auto"
    return args


def resolve_defaults(args: argparse.Namespace, dataset: str) -> argparse.Namespace:
    """Fill the data-set dependent defaults: the seed's recipe for CIFAR-10, a short one for digits."""
    recipe = SEED_RECIPE if dataset == "cifar10" else DIGITS_RECIPE
    for k, v in recipe.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.variant is None:
        args.variant = "theta-"
    if args.model is None:
        args.model = f"ge_wrn_{args.depth}_{args.width}"
    return args
