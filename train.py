#!/usr/bin/env python
"""Train GE-WideResNet on CIFAR-10 with the seed's recipe (or on the embedded digits).

    python train.py                                  # no CIFAR-10 here: digits, a few minutes on a CPU
    python train.py --data-path ./data               # CIFAR-10, WRN-16-8 GE-θ⁻ global, 300 epochs, fused GE
    python train.py --data-path ./data --amp --opt-level O2 --compile
    torchrun --nproc-per-node 8 train.py --data-path ./data --amp
    python train.py --data-path ./data --evaluate --resume runs/.../model_best.pth.tar

`python train.py --help` lists every flag; training/ holds the pieces.
"""
from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import time
import warnings

import numpy as np
import torch

from training import amp
from training import checkpoint
from training import data
from training import dist
from training import preempt
from training import resume
from training.args import parse_args, resolve_defaults
from training.engine import TrainingDiverged, evaluate, train_one_epoch
from training.metrics import MetricsLog, write_json


def main(argv=None) -> dict:
    args = parse_args(argv)
    device_type = dist.resolve_device_type(args.device)
    if args.multiprocessing_distributed and not dist.launched_by_torchrun():
        return spawn(args, device_type)
    if dist.launched_by_torchrun():
        rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    elif args.world_size > 1:  # one process per device, started by hand
        if args.rank < 0 or args.dist_url is None:
            raise SystemExit("error: --world-size > 1 without torchrun needs --rank and --dist-url")
        rank, world = args.rank, args.world_size
        local = args.local_rank if args.local_rank is not None else rank % max(1, dist.device_count(device_type))
    else:
        rank, world, local = 0, 1, 0
    return worker(local, args, device_type, rank, world, 1)


def spawn(args, device_type: str) -> dict:
    """--multiprocessing-distributed: one process per device on this node, as the seed."""
    import torch.multiprocessing as mp

    nprocs = args.nproc_per_node or dist.device_count(device_type)
    nodes = max(args.world_size, 1)
    node_rank = max(args.rank, 0)
    if args.dist_url is None:
        if nodes > 1:
            raise SystemExit("error: --multiprocessing-distributed over several nodes needs --dist-url tcp://HOST:PORT")
        args.dist_url = f"tcp://127.0.0.1:{dist.free_port()}"
    mp.spawn(_spawned, nprocs=nprocs, args=(args, device_type, node_rank, nprocs, nodes * nprocs))
    out = os.path.join(args.output_dir, "summary.json") if args.output_dir else None
    if out and os.path.exists(out):
        import json

        with open(out) as f:
            return json.load(f)
    return {}


def _spawned(local: int, args, device_type: str, node_rank: int, nprocs: int, world: int) -> None:
    worker(local, args, device_type, node_rank * nprocs + local, world, nprocs)
    dist.leave_process()


def worker(local: int, args, device_type: str, rank: int, world: int, batch_split: int) -> dict:
    info = dist.setup(device_type, args.dist_backend, rank, world, local, args.dist_url if world > 1 else None,
                      args.dist_timeout)
    try:
        return run(args, info, batch_split)
    finally:
        dist.cleanup()


def log(info: dist.DistInfo, *msg) -> None:
    if info.is_main:
        print(*msg, flush=True)


def load_data(args, info: dist.DistInfo) -> data.Dataset:
    try:
        folder = None if args.dataset == "digits" else data.find_cifar10(args.data_path)
        if args.dataset == "cifar10" and folder is None:
            raise data.DatasetError("no CIFAR-10 under ./data/cifar-10-batches-py; pass --data-path DIR")
        if folder is None:
            ds = data.load_digits()
            if args.dataset == "auto":
                log(info, f"No CIFAR-10 found (no --data-path, no ./data/{data.CIFAR10_DIR}): training on scikit-learn's "
                          f"digits ({len(ds.train_y)} train / {len(ds.test_y)} test images upscaled to 32x32) with a small "
                          f"GE-WRN; for CIFAR-10 pass --data-path DIR holding {data.CIFAR10_DIR}/.")
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = data.load_cifar10(folder)
            for w in caught:
                log(info, f"warning: {w.message}")
    except data.DatasetError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.max_train_samples:
        ds.train_x, ds.train_y = ds.train_x[: args.max_train_samples], ds.train_y[: args.max_train_samples]
    if args.max_val_samples:
        ds.test_x, ds.test_y = ds.test_x[: args.max_val_samples], ds.test_y[: args.max_val_samples]
    return ds


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def resolve_fused(requested, device_type: str, info: dist.DistInfo) -> tuple[bool, str]:
    """(fused, the gather_excite kernel genet_ops runs on this device). --fused-ge unset:
    fused wherever that kernel is compiled (C++, CUDA, Triton, Ascend C); else the eager
    math, said in one line (fused on the pure-PyTorch reference would only be slower)."""
    import genet_ops

    bi = genet_ops.backend_info()
    kernel = bi["kernels"]["gather_excite"].get(device_type, "reference")
    if requested is None:
        requested = kernel != "reference"
        if not requested:
            if not bi["extension_loaded"]:
                import importlib.util

                built = importlib.util.find_spec("genet_ops._C") is not None
                why = bi["extension_error"] if built else "genet_ops._C is not built"
            elif device_type == "npu":
                why = bi["ascend_error"]
            else:
                why = f"built without them and Triton is off: {bi['triton_error']}"
            log(info, f"genet_ops kernels not compiled for {device_type} ({why}): GE runs in eager PyTorch "
                      f"(build them with `python setup.py build_ext --inplace`; --fused-ge forces the reference ops)")
    return requested, kernel


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def evaluate_path(args) -> str:
    """--evaluate's checkpoint: --resume PATH, or with --resume auto the newest in --output-dir."""
    if args.resume != "auto":
        return args.resume
    found = checkpoint.candidates(args.output_dir) if os.path.isdir(args.output_dir) else []
    if not found:
        raise SystemExit(f"error: --evaluate --resume auto: no checkpoint in --output-dir {args.output_dir}")
    return found[0]


def load_weights(model, ckpt, path: str, args, info: dist.DistInfo) -> bool:
    """Load ckpt's weights into model (ours, BayesWatch's or the seed's DDP checkpoint:
    models/convert.py); True when the checkpoint is not one of ours."""
    import models

    was = ckpt.get("args") if isinstance(ckpt, dict) else None
    if isinstance(was, dict) and was.get("model") not in (None, args.model):
        raise SystemExit(f"error: checkpoint {path} was trained with --model {was['model']} (--depth/--width); pass "
                         f"those (not {args.model}), or another --output-dir")
    try:
        model.load_state_dict(models.convert_state_dict(ckpt, model=model))
    except ValueError as exc:
        raise SystemExit(f"error: checkpoint {path} does not fit {args.model} --variant {args.variant} "
                         f"--extent {args.extent}: {exc}") from None
    if isinstance(was, dict) and (was.get("variant"), was.get("extent")) != (args.variant, args.extent):
        # θ⁻'s extent leaves no trace in the weights: only the saved flags can tell.
        raise SystemExit(f"error: checkpoint {path} was trained with --variant {was.get('variant')} "
                         f"--extent {was.get('extent')}; pass those (not --variant {args.variant} --extent "
                         f"{args.extent})")
    foreign = models.source_format(ckpt) != "genet-ops"
    if foreign:
        log(info, f"loaded BayesWatch/seed weights from {path} (keys converted)"
                  + ("" if args.evaluate else "; their optimizer state is not used: training starts at epoch 1"))
    return foreign


def banner(args, info: dist.DistInfo, model, precision, channels_last: bool, dev: torch.device, ops: str) -> None:
    n_params = sum(p.numel() for p in model.parameters())
    log(info, f"model {args.model} GE-{args.variant} extent {args.extent} ({n_params:,} parameters), GE "
              f"{'fused genet_ops (' + ops + ' kernels)' if args.fused_ge else 'eager PyTorch'}; device {dev.type} x "
              f"{info.world_size} process(es); precision {precision.description}; channels_last {channels_last}; "
              f"compile {args.compile}")


def run(args, info: dist.DistInfo, batch_split: int) -> dict:
    with warnings.catch_warnings():  # resolve_fused says what runs without the compiled kernels
        warnings.filterwarnings("ignore", message="genet_ops: compiled kernels not loaded")
        import genet_ops  # noqa: F401
        import models

    ds = load_data(args, info)
    resolve_defaults(args, ds.name)
    if batch_split > 1:
        per = max(1, args.batch_size // batch_split)
        log(info, f"--multiprocessing-distributed: --batch-size {args.batch_size} per node -> {per} per process")
        args.batch_size = per
    dev = info.device
    seed_everything(args.seed, args.deterministic, dev)
    if args.output_dir is None:
        args.output_dir = os.path.join("runs", f"{ds.name}-{args.model}-{args.variant}-e{args.extent}")

    args.fused_ge, kernel = resolve_fused(args.fused_ge, dev.type, info)
    try:
        model = models.create_model(args.model, variant=args.variant, extent=args.extent, fused=args.fused_ge,
                                    num_classes=ds.num_classes, img_size=ds.train_x.shape[1])
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    channels_last = args.channels_last if args.channels_last != "auto" else dev.type in ("cuda", "cpu")
    model = model.to(dev, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.wd,
                                nesterov=args.nesterov)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=args.milestones, gamma=args.gamma)
    if args.apex:
        model, optimizer, precision = amp.setup_apex(model, optimizer, args.opt_level, args.loss_scale, dev)
    else:
        precision = amp.setup(args.amp, args.opt_level, args.loss_scale, dev)

    loader_kw = dict(device=dev, mean=ds.mean, std=ds.std, seed=args.seed, rank=info.rank,
                     world_size=info.world_size, channels_last=channels_last)
    val_loader = data.DeviceLoader(ds.test_x, ds.test_y, max(args.batch_size, 256), train=False, **loader_kw)
    if args.evaluate:
        path = evaluate_path(args)
        ckpt = checkpoint.load(path)
        load_weights(model, ckpt, path, args, info)
        banner(args, info, model, precision, channels_last, dev, kernel)
        t0 = time.perf_counter()
        res = evaluate(model, val_loader, precision, info)  # ends in an all-reduce read on the host: timed
        fps = res["val_images"] / max(time.perf_counter() - t0, 1e-9)
        log(info, f"* Err@1 {res['err1']:.3f} Err@5 {res['err5']:.3f} Acc@1 {res['acc1']:.3f} Acc@5 {res['acc5']:.3f} "
                  f"({res['val_images']} test images, checkpoint {path}) FPS@all {fps:.1f}")
        if info.is_main:
            os.makedirs(args.output_dir, exist_ok=True)
            write_json(os.path.join(args.output_dir, "eval.json"), {**res, "checkpoint": path})
        return res
    try:
        train_loader = data.DeviceLoader(ds.train_x, ds.train_y, args.batch_size, train=True, flip=ds.flip,
                                         **loader_kw)
    except ValueError as exc:
        raise SystemExit(f"error: --batch-size {args.batch_size} is too large: {exc}; the largest allowed is "
                         f"{math.ceil(len(ds.train_y) / info.world_size)}") from None
    steps_per_epoch = len(train_loader)

    start_epoch, start_step, global_step, best_acc1, carry = 0, 0, 0, 0.0, None
    path, ckpt = resume.find(args, info, lambda m: log(info, m))
    resumed = ckpt is not None
    if resumed:
        foreign = load_weights(model, ckpt, path, args, info)
        if args.resume != "auto":
            resume.check_newer(args, ckpt if not foreign else {}, path)
        if not foreign and "optimizer" in ckpt:
            saved = ckpt.get("args") or {}
            resume.check_same_run(args, saved, path, ckpt.get("data"), ds.name, len(ds.train_y))
            start_epoch, start_step, global_step = resume.position(args, ckpt, steps_per_epoch, info.world_size,
                                                                   lambda m: log(info, m))
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            precision.load_state_dict(ckpt.get("scaler", {}))
            resume.apply_changes(args, saved, optimizer, scheduler, lambda m: log(info, m))
            best_acc1 = ckpt["best_acc1"]
            carry = ckpt.get("epoch_partial") if start_step else None
            checkpoint.set_rng_state(ckpt["rng"], dev)
            where = f"epoch {start_epoch + 1} step {start_step}/{steps_per_epoch}" if start_step else \
                f"the end of epoch {start_epoch}"
            log(info, f"resuming from {path}: {where} (global step {global_step})")
        if start_epoch >= args.epochs:
            log(info, f"nothing to do: {path} already finished epoch {start_epoch} of --epochs {args.epochs}; "
                      f"pass a larger --epochs to train on")
            done = os.path.join(args.output_dir, "summary.json")
            return read_json(done) if os.path.exists(done) else {"epochs": args.epochs, "nothing_to_do": True}

    net = model
    if info.distributed:
        ids = [dev.index] if dev.type in ("cuda", "npu") else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if args.compile:
        net = torch.compile(net)

    banner(args, info, model, precision, channels_last, dev, kernel)
    if info.attempt is not None:
        log(info, f"torchrun: start {info.attempt} of this job's workers (process group on a fresh prefix of the "
                  f"agent's store), --dist-timeout {args.dist_timeout:g} min")
        if int(os.environ.get("GROUP_WORLD_SIZE", "1")) > 1:
            log(info, "note: several torchrun nodes share the agent's store; for a lost node to be able to rejoin, "
                      "launch with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 (docs/TRAINING.md, faults and restarts)")
    log(info, f"data {ds.name} ({len(ds.train_y)} train / {len(ds.test_y)} test); batch {args.batch_size} per process "
              f"x {info.world_size} = {args.batch_size * info.world_size} per step, {steps_per_epoch} steps per "
              f"epoch; lr {optimizer.param_groups[0]['lr']:g} (not scaled), SGD momentum {args.momentum} wd "
              f"{args.wd:g}, MultiStepLR {args.milestones} x{args.gamma}, epochs {start_epoch + 1}..{args.epochs}; "
              f"checkpoints every {args.save_every_steps or '-'} steps / {args.save_every_minutes or '-'} min and "
              f"each epoch's end, newest {args.keep_checkpoints} kept; output {args.output_dir}")

    def write(epoch_done: int, step: int, gstep: int, partial, is_best: bool, acc1=None) -> str | None:
        if not info.is_main:
            return None
        before = checkpoint.candidates(args.output_dir)
        try:
            return checkpoint.save(args.output_dir, {
                "epoch": epoch_done, "step_in_epoch": step, "global_step": gstep, "steps_per_epoch": steps_per_epoch,
                "batch_size": args.batch_size, "world_size": info.world_size,
                "state_dict": checkpoint.unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": precision.state_dict(), "best_acc1": best_acc1, "acc1": acc1,
                "rng": checkpoint.rng_state(dev), "args": vars(args), "epoch_partial": partial,
                "data": {"name": ds.name, "train_images": len(ds.train_y)},
            }, is_best, keep=args.keep_checkpoints)
        except checkpoint.CheckpointWriteError as exc:
            prev = f"the previous checkpoint {before[0]} is intact" if before else "no earlier checkpoint exists"
            raise SystemExit(f"error: checkpoint not saved: {exc}; {prev}") from None

    stop = preempt.StopFlag(lambda m: log(info, m)).install()
    schedule = preempt.SaveSchedule(info, stop, args.save_every_steps, args.save_every_minutes)
    metrics = MetricsLog(args.output_dir, info.is_main, resume_epoch=start_epoch if resumed else None)
    res = {}
    try:
        for epoch in range(start_epoch, args.epochs):
            first = start_step if epoch == start_epoch else 0
            epoch_start = global_step - first

            def after_step(step: int, partial, epoch=epoch, epoch_start=epoch_start):
                save, signum = schedule.after_step(epoch_start + step)
                if save:
                    saved_to = write(epoch, step, epoch_start + step, partial(), False)
                    schedule.saved()
                    if saved_to:
                        log(info, f"checkpoint: epoch {epoch + 1} step {step}/{steps_per_epoch} "
                                  f"(global step {epoch_start + step}) -> {saved_to}")
                if signum:
                    raise preempt.Preempted(signum, f"epoch {epoch + 1} step {step}/{steps_per_epoch}")

            lr = optimizer.param_groups[0]["lr"]
            tr = train_one_epoch(net, train_loader, optimizer, precision, epoch, info,
                                 print_freq=args.print_freq, progress=args.progress, start_step=first,
                                 carry=carry if epoch == start_epoch else None, after_step=after_step)
            global_step = epoch_start + steps_per_epoch
            dist.broadcast_buffers(model, info)  # one set of BN statistics for validation and checkpoint
            res = evaluate(net, val_loader, precision, info)
            scheduler.step()
            is_best = res["acc1"] > best_acc1 or epoch == 0
            best_acc1 = max(best_acc1, res["acc1"])
            write(epoch + 1, 0, global_step, None, is_best, res["acc1"])
            schedule.saved()
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": tr["loss"], "train_acc1": tr["acc1"], **res,
                   "best_acc1": best_acc1, "img_per_s": tr["img_per_s"], "epoch_time_s": tr["time_s"],
                   "skipped_steps": tr["skipped_steps"],
                   "loss_scale": precision.scaler.get_scale() if precision.scaler is not None else ""}
            metrics.epoch(row, tr["step_losses"])
            log(info, f"[epoch {epoch + 1}/{args.epochs}] lr {lr:g} loss {tr['loss']:.4f} train Acc@1 {tr['acc1']:.2f} "
                      f"val Acc@1 {res['acc1']:.2f} (best {best_acc1:.2f}) * Err@1 {res['err1']:.3f} "
                      f"Err@5 {res['err5']:.3f} time {tr['time_s']:.1f}s FPS@all {tr['img_per_s']:.1f}")
            _, signum = schedule.agree()
            if signum and epoch + 1 < args.epochs:
                raise preempt.Preempted(signum, f"the end of epoch {epoch + 1}")
    except TrainingDiverged as exc:
        raise SystemExit(f"error: training stopped: {exc}") from None
    except preempt.Preempted as exc:
        name = signal.Signals(exc.signum).name
        log(info, f"stopped by {name} at {exc} (checkpoint {os.path.join(args.output_dir, checkpoint.LAST)}); "
                  f"run the same command again to continue from there")
        raise SystemExit(128 + exc.signum) from None
    finally:
        stop.uninstall()
        metrics.close()

    in_sync = dist.replicas_in_sync(model, info)
    if info.distributed:
        log(info, f"replicas in sync across {info.world_size} ranks: {'yes' if in_sync else 'NO'}")
    if args.dump_replicas:
        checkpoint.atomic_save(checkpoint.unwrap(model).state_dict(), os.path.join(args.output_dir, f"replica_rank{info.rank}.pt"))
    summary = {**res, "best_acc1": best_acc1, "epochs": args.epochs, "world_size": info.world_size,
               "replicas_in_sync": in_sync, "output_dir": args.output_dir, "dataset": ds.name, "model": args.model}
    if info.is_main:
        write_json(os.path.join(args.output_dir, "summary.json"), summary)
    if not in_sync:
        raise SystemExit("error: ranks ended with different weights (DDP out of sync)")
    return summary


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except SystemExit as exc:  # an error or a preemption: a worker leaves the same way, with its code
        dist.leave_process(exc.code)
        raise
    dist.leave_process()  # a torchrun or --rank/--dist-url worker ends here
