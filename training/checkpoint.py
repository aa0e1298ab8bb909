"""Checkpoints: written atomically, numbered by global step, the last k kept.

Layout in --output-dir:

    checkpoints/step-000001234.pth.tar   one per save (every N steps / M minutes, each epoch's end)
    checkpoint.pth.tar                   a hard link to the newest of them (the seed's name)
    model_best.pth.tar                   a hard link to the epoch-end checkpoint with the best val Acc@1

A file is written to a temporary name in the same folder, fsynced, renamed into place
and the folder fsynced: a file under its final name is always complete, so a kill
during a save leaves the previous checkpoints as they were (and a *.tmp that the next
start removes). Each checkpoint holds everything a resumed run needs to continue
exactly, mid-epoch included: model, optimizer, LR scheduler, loss scaler, the epochs
finished, the global step and the steps done in the running epoch, the best accuracy,
the RNG states and the arguments. The data order needs no state: it is a function of
(seed, epoch) (training/data.py), and the position in the epoch is the step count.
"""
from __future__ import annotations

import errno
import os
import random
import re
import shutil
import tempfile

import numpy as np
import torch

LAST = "checkpoint.pth.tar"
BEST = "model_best.pth.tar"
STEP_DIR = "checkpoints"
_STEP_RE = re.compile(r"^step-(\d+)\.pth\.tar$")
_TMP_RE = re.compile(r"^(step-\d+|checkpoint|model_best)\.pth\.tar\..+\.tmp$")


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written; the message names the file and the reason."""


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model inside DDP and/or torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def rng_state(device: torch.device) -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "npu":
        state["npu"] = torch.npu.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    elif device.type == "npu" and "npu" in state:
        torch.npu.set_rng_state(state["npu"], device)


def fsync_dir(folder: str) -> None:
    """Make a rename in folder durable (POSIX: the directory entry lives in the folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory
    finally:
        os.close(fd)


def _serialize(obj, f) -> None:
    torch.save(obj, f)
    f.flush()
    os.fsync(f.fileno())


def _reason(exc: BaseException) -> str:
    e = exc
    while e is not None:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return "no space left on device"
        e = e.__cause__ or e.__context__
    return f"{type(exc).__name__}: {exc}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_save(obj, path: str) -> None:
    """Write obj to path all or nothing; CheckpointWriteError (file and reason) on failure."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            _serialize(obj, f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except Exception as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise CheckpointWriteError(f"cannot write {path}: {_reason(exc)}") from exc
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


def _link(src: str, dst: str) -> None:
    """dst becomes src's content atomically: a hard link where the file system allows it, else a copy."""
    folder = os.path.dirname(os.path.abspath(dst))
    tmp = os.path.join(folder, f"{os.path.basename(dst)}.{os.getpid()}.link.tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    try:
        os.link(src, tmp)
    except OSError:
        try:
            shutil.copyfile(src, tmp)
        except OSError as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise CheckpointWriteError(f"cannot write {dst}: {_reason(exc)}") from exc
    os.replace(tmp, dst)
    fsync_dir(folder)


def step_path(output_dir: str, global_step: int) -> str:
    return os.path.join(output_dir, STEP_DIR, f"step-{global_step:09d}.pth.tar")


def step_files(output_dir: str) -> list[tuple[int, str]]:
    """(global step, path) of the complete step checkpoints, newest first."""
    folder = os.path.join(output_dir, STEP_DIR)
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, n)) for n in os.listdir(folder) if (m := _STEP_RE.match(n))]
    return sorted(found, reverse=True)


def newest_step(output_dir: str) -> int | None:
    files = step_files(output_dir)
    return files[0][0] if files else None


def save(output_dir: str, state: dict, is_best: bool, keep: int = 2) -> str:
    """Write state as the step checkpoint of state['global_step'], point checkpoint.pth.tar
    (and model_best.pth.tar when is_best) at it, then drop all but the newest keep."""
    newest = newest_step(output_dir)
    step = int(state["global_step"])
    if newest is not None and newest > step:  # resume logic prevents this; never go back in time
        raise CheckpointWriteError(f"{output_dir} already holds a newer checkpoint (step {newest} > {step})")
    path = step_path(output_dir, step)
    atomic_save(state, path)
    _link(path, os.path.join(output_dir, LAST))
    if is_best:
        _link(path, os.path.join(output_dir, BEST))
    for _, old in step_files(output_dir)[max(1, keep):]:
        os.unlink(old)
    return path


def remove_stale_tmp(output_dir: str) -> list[str]:
    """Delete the temporary files of writes that were killed (only our own names)."""
    removed = []
    for folder in (output_dir, os.path.join(output_dir, STEP_DIR)):
        if not os.path.isdir(folder):
            continue
        for n in os.listdir(folder):
            if _TMP_RE.match(n):
                try:
                    os.unlink(os.path.join(folder, n))
                    removed.append(n)
                except FileNotFoundError:
                    pass
    return removed


def read(path: str) -> dict:
    """torch.load, or ValueError saying why not."""
    try:
        # Our own files hold numpy RNG state and argparse values besides tensors.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001  (a broken file: say which)
        raise ValueError(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None


def load(path: str) -> dict:
    if not os.path.isfile(path):
        raise SystemExit(f"error: checkpoint {path!r} does not exist")
    try:
        return read(path)
    except ValueError as exc:
        raise SystemExit(f"error: checkpoint {path!r} cannot be read ({exc})") from None


def candidates(output_dir: str) -> list[str]:
    """The checkpoints of output_dir to resume from, newest first: the step files, then a
    checkpoint.pth.tar that is not one of them (written before step files existed)."""
    paths = [p for _, p in step_files(output_dir)]
    last = os.path.join(output_dir, LAST)
    if os.path.isfile(last) and not any(os.path.samefile(last, p) for p in paths):
        paths.append(last)
    return paths


def load_newest(output_dir: str, warn=print) -> tuple[str, dict] | None:
    """(path, state) of the newest readable checkpoint in output_dir; None when there is
    none at all. Each newer one that cannot be read gets a warning and is renamed to
    *.unreadable, so that the run's next checkpoints are the newest again."""
    paths = candidates(output_dir)
    for path in paths:
        try:
            return path, read(path)
        except ValueError as exc:
            aside = path + ".unreadable"
            os.replace(path, aside)
            warn(f"warning: checkpoint {path} cannot be read ({exc}); moved to {os.path.basename(aside)}, "
                 f"falling back to the one before")
    if paths:
        raise SystemExit(f"error: no checkpoint in {output_dir} can be read ({len(paths)} tried); "
                         f"move them away to start afresh")
    return None
