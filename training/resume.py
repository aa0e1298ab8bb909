"""Which checkpoint a run continues from, and what it keeps of the flags given now.

--resume auto (the default) takes the newest readable checkpoint in --output-dir and
starts afresh when there is none, so a torchrun restart, a re-submitted job or the same
command typed again continues where the last checkpoint left off. Rank 0 chooses and
tells the other ranks, so all of them load the same file.

Against the checkpoint's saved arguments, the flags given now are:
  * refused: another model, variant or extent (the weights would not fit);
  * refused unless --override-checkpoint: another --seed or data set (data order and
    augmentation follow them), and, in the middle of an epoch, another --batch-size
    or number of processes (the position in the epoch is a step count);
  * applied from the checkpoint's step on, with a line saying so: --lr, --milestones,
    --gamma, --momentum, --wd, --nesterov, --epochs; --batch-size and the process
    count at an epoch's end.
Nothing good is overwritten: a run refuses to write into an --output-dir whose newest
checkpoint is newer than the one it starts from.
"""
from __future__ import annotations

import bisect
import collections
import os

import torch.distributed as dist

from . import checkpoint
from .dist import DistInfo

REFUSED = ("model", "variant", "extent")
SAME_RUN = ("seed",)
APPLIED = (("lr", "lr"), ("momentum", "momentum"), ("wd", "weight_decay"), ("nesterov", "nesterov"))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _show(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def find(args, info: DistInfo, log) -> tuple[str | None, dict | None]:
    """(path, state) to resume from, or (None, None) to start afresh; the same on every rank."""
    out = args.output_dir
    mode = args.resume
    path, state = None, None
    if info.is_main:
        removed = checkpoint.remove_stale_tmp(out) if os.path.isdir(out) else []
        if removed:
            log(f"removed {len(removed)} temporary file(s) of interrupted checkpoint writes in {out}")
        if mode == "auto":
            found = checkpoint.load_newest(out, warn=log) if os.path.isdir(out) else None
            if found:
                path, state = found
        elif mode == "none":
            newest = checkpoint.candidates(out) if os.path.isdir(out) else []
            if newest:
                raise SystemExit(f"error: --resume none, but --output-dir {out} holds checkpoints ({newest[0]}) "
                                 f"that this run would overwrite; pass another --output-dir, or --resume auto "
                                 f"to continue them")
        else:
            path, state = mode, checkpoint.load(mode)
    if info.distributed:
        box = [path]
        dist.broadcast_object_list(box, src=0)
        path = box[0]
        if not info.is_main and path is not None:
            try:
                state = checkpoint.read(path)
            except (ValueError, FileNotFoundError) as exc:
                raise SystemExit(f"error: rank {info.rank} cannot read checkpoint {path} that rank 0 resumes from "
                                 f"({exc}); --output-dir must be on a file system every node sees") from None
    return path, state


def check_newer(args, state: dict, path: str) -> None:
    """Refuse to continue an older checkpoint into an --output-dir that holds a newer one."""
    newest = checkpoint.newest_step(args.output_dir)
    step = state.get("global_step", 0) if isinstance(state, dict) else 0
    if newest is not None and newest > step:
        raise SystemExit(f"error: --output-dir {args.output_dir} holds a newer checkpoint (step {newest}) than "
                         f"--resume {path} (step {step}); continuing would overwrite it: pass --resume auto to "
                         f"continue the newest, or another --output-dir")


def check_same_run(args, saved: dict, path: str, data: dict | None, ds_name: str, n_train: int) -> None:
    """One-line errors for a checkpoint of another run."""
    for name in REFUSED:
        if name in saved and saved[name] != getattr(args, name):
            raise SystemExit(f"error: checkpoint {path} is of another run ({_flag(name)} {_show(saved[name])}, "
                             f"not {_show(getattr(args, name))}); pass its flags, or another --output-dir")
    if args.override_checkpoint:
        return
    diffs = [f"{_flag(n)} {_show(saved[n])}, not {_show(getattr(args, n))}" for n in SAME_RUN
             if n in saved and saved[n] != getattr(args, n)]
    if data and (data.get("name"), data.get("train_images")) != (ds_name, n_train):
        diffs.append(f"data {data.get('name')} with {data.get('train_images')} training images, not {ds_name} "
                     f"with {n_train}")
    if diffs:
        raise SystemExit(f"error: checkpoint {path} is of another run ({'; '.join(diffs)}); pass its flags, "
                         f"another --output-dir, or --override-checkpoint to continue it anyway")


def position(args, state: dict, steps_per_epoch: int, world_size: int, log) -> tuple[int, int, int]:
    """(epochs finished, steps done in the running epoch, global step) to continue from."""
    epoch = int(state.get("epoch", 0))
    step = int(state.get("step_in_epoch", 0))
    global_step = int(state.get("global_step", epoch * steps_per_epoch))
    was_bs = state.get("batch_size", args.batch_size)
    was_world = state.get("world_size", world_size)
    changed = (was_bs, was_world) != (args.batch_size, world_size)
    if changed and step:
        what = f"--batch-size {was_bs} x {was_world} process(es), not {args.batch_size} x {world_size}"
        if not args.override_checkpoint:
            raise SystemExit(f"error: checkpoint {args.resume} stopped inside epoch {epoch + 1} (step {step}) with "
                             f"{what}; resume with those, or pass --override-checkpoint to go on from the nearest "
                             f"step of the new size")
        step = step * was_bs * was_world // (args.batch_size * world_size)
        log(f"--override-checkpoint: {what}: epoch {epoch + 1} goes on at step {step} of {steps_per_epoch}")
    elif changed:
        log(f"resume: batch {args.batch_size} x {world_size} process(es) from epoch {epoch + 1} on "
            f"(checkpoint: {was_bs} x {was_world})")
    if step >= steps_per_epoch:  # a mid-epoch position past the end of a shorter epoch
        epoch, step = epoch + 1, 0
    last = epoch + (1 if step else 0)
    if args.epochs < last:
        raise SystemExit(f"error: --epochs {args.epochs} is below the {last} epoch(s) checkpoint {args.resume} "
                         f"already trained; pass --epochs {last} or more to continue it")
    return epoch, step, global_step


def apply_changes(args, saved: dict, optimizer, scheduler, log) -> None:
    """Apply --lr, --milestones, --gamma, --momentum, --wd, --nesterov that differ from the
    checkpoint's: from this step on the optimizer follows the flags given now."""
    notes = []
    sched_changed = any(n in saved and saved[n] != getattr(args, n) for n in ("lr", "milestones", "gamma"))
    if sched_changed:
        milestones = sorted(args.milestones)
        scheduler.milestones = collections.Counter(milestones)
        scheduler.gamma = args.gamma
        scheduler.base_lrs = [args.lr for _ in optimizer.param_groups]
        lr_now = args.lr * args.gamma ** bisect.bisect_right(milestones, scheduler.last_epoch)
        for g in optimizer.param_groups:
            g["initial_lr"], g["lr"] = args.lr, lr_now
        scheduler._last_lr = [lr_now for _ in optimizer.param_groups]
        notes += [f"{_flag(n)} {_show(getattr(args, n))} (checkpoint: {_show(saved[n])})"
                  for n in ("lr", "milestones", "gamma") if n in saved and saved[n] != getattr(args, n)]
        notes.append(f"lr now {lr_now:g}")
    for name, key in APPLIED[1:]:
        if name in saved and saved[name] != getattr(args, name):
            for g in optimizer.param_groups:
                g[key] = getattr(args, name)
            notes.append(f"{_flag(name)} {_show(getattr(args, name))} (checkpoint: {_show(saved[name])})")
    if notes:
        log("resume: from the checkpoint's step on, " + "; ".join(notes))
