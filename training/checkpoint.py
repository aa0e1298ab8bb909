"""Checkpoints: written atomically (a temporary file in the same folder, fsync, then
os.replace), holding everything a resumed run needs to continue exactly: model,
optimizer, LR scheduler, loss scaler, the epoch finished, the best accuracy so far,
the RNG states and the arguments. The data order needs no state: it is a function of
(seed, epoch) (training/data.py)."""
from __future__ import annotations

import os
import random
import tempfile

import numpy as np
import torch

LAST = "checkpoint.pth.tar"
BEST = "model_best.pth.tar"


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


def atomic_save(obj, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(output_dir: str, state: dict, is_best: bool) -> str:
    path = os.path.join(output_dir, LAST)
    atomic_save(state, path)
    if is_best:
        atomic_save(state, os.path.join(output_dir, BEST))
    return path


def load(path: str) -> dict:
    if not os.path.isfile(path):
        raise SystemExit(f"error: checkpoint {path!r} does not exist")
    try:
        # Our own files hold numpy RNG state and argparse values besides tensors.
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001  (a broken file: say which)
        raise SystemExit(f"error: checkpoint {path!r} cannot be read ({type(exc).__name__}: {exc})") from None
