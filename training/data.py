"""Data: the CIFAR-10 pickle reader, the embedded digits default, and a loader that
keeps the uint8 data set on the device and augments there.

Why on the device: at 20,000 img/s a CPU DataLoader with PIL transforms is the
bottleneck. Here the whole training set lives on the device as uint8 (CIFAR-10: 50,000 x
40 x 40 x 3 with the crop padding applied once, 240 MB); each batch is one gather that
does random crop (pad 4) and horizontal flip per sample, then a cast and normalisation.
The epoch's permutation, crop offsets and flips are drawn up front on the CPU from a
generator seeded by (seed, epoch), so they are the same on every device and every run,
independent of the number of processes, and a resumed run sees the same batches.
"""
from __future__ import annotations

import hashlib
import math
import os
import pickle
import warnings
from dataclasses import dataclass

import numpy as np
import torch

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]
CIFAR10_TEST = ["test_batch"]
# The official archive's md5 sums (as torchvision lists them).
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # the seed's normalisation
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


class DatasetError(ValueError):
    """A data file that cannot be used; the message names the file."""


@dataclass
class Dataset:
    """uint8 images (N, H, W, 3) and int64 labels (N,), as numpy arrays."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    mean: tuple
    std: tuple
    flip: bool  # horizontal flips make sense for photos, not for digits
    source: str


# ------------------------------------------------------------------------ CIFAR-10
def find_cifar10(data_path: str | None) -> str | None:
    """The cifar-10-batches-py folder under data_path (or data_path itself); with no
    data_path, ./data/cifar-10-batches-py if it exists, else None."""
    if data_path is None:
        cand = os.path.join("data", CIFAR10_DIR)
        return cand if os.path.isdir(cand) else None
    if not os.path.exists(data_path):
        raise DatasetError(f"--data-path {data_path!r} does not exist")
    if not os.path.isdir(data_path):
        raise DatasetError(f"--data-path {data_path!r} is not a directory (expected the folder holding {CIFAR10_DIR}/)")
    inner = os.path.join(data_path, CIFAR10_DIR)
    if os.path.isdir(inner):
        return inner
    if os.path.exists(os.path.join(data_path, "data_batch_1")) or os.path.exists(os.path.join(data_path, "test_batch")):
        return data_path
    raise DatasetError(
        f"no CIFAR-10 under --data-path {data_path!r}: expected {os.path.join(data_path, CIFAR10_DIR)}/ holding "
        f"{', '.join(CIFAR10_TRAIN + CIFAR10_TEST)} (the python version, cifar-10-python.tar.gz, extracted)"
    )


def _md5(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_cifar10_batch(path: str, check_md5: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 pickle -> (uint8 images (n, 32, 32, 3), int64 labels (n,)).
    Any number of images per file; a clear DatasetError naming the file otherwise."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise DatasetError(f"CIFAR-10 file missing: {path}")
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError,
            IndexError, KeyError, MemoryError, OverflowError) as exc:
        raise DatasetError(
            f"CIFAR-10 file {path} cannot be read ({type(exc).__name__}: {exc}); it is truncated or not "
            f"a CIFAR-10 python pickle: re-extract cifar-10-python.tar.gz"
        ) from None
    except OSError as exc:
        raise DatasetError(f"CIFAR-10 file {path} cannot be read: {exc}") from None
    if not isinstance(d, dict):
        raise DatasetError(f"CIFAR-10 file {path} holds a {type(d).__name__}, expected a dict with data and labels")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise DatasetError(f"CIFAR-10 file {path} has no 'data' and 'labels' entries (keys: {sorted(map(str, d))})")
    data = np.asarray(d["data"])
    labels = np.asarray(d["labels"])
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"CIFAR-10 file {path}: data has shape {data.shape}, expected (n, 3072) = n 3x32x32 images")
    if data.dtype != np.uint8:
        if not np.issubdtype(data.dtype, np.integer) or data.size and (data.min() < 0 or data.max() > 255):
            raise DatasetError(f"CIFAR-10 file {path}: data has dtype {data.dtype}, expected uint8 pixels")
        data = data.astype(np.uint8)
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise DatasetError(f"CIFAR-10 file {path}: {labels.shape} labels for {data.shape[0]} images")
    if not np.issubdtype(labels.dtype, np.integer) or labels.size and (labels.min() < 0 or labels.max() > 9):
        lo, hi = (labels.min(), labels.max()) if labels.size else (None, None)
        raise DatasetError(f"CIFAR-10 file {path}: labels must be integers in 0..9, got range {lo}..{hi}")
    if check_md5 and name in CIFAR10_MD5:
        got = _md5(path)
        if got != CIFAR10_MD5[name]:
            warnings.warn(
                f"CIFAR-10 file {path}: md5 {got} differs from the official {CIFAR10_MD5[name]}; "
                f"using it anyway ({data.shape[0]} images read)",
                stacklevel=2,
            )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # RRR..GGG..BBB.. -> NHWC
    return np.ascontiguousarray(images), labels.astype(np.int64)


def load_cifar10(folder: str) -> Dataset:
    parts = {}
    for split, names in (("train", CIFAR10_TRAIN), ("test", CIFAR10_TEST)):
        xs, ys = zip(*(read_cifar10_batch(os.path.join(folder, n)) for n in names))
        parts[split] = (np.concatenate(xs), np.concatenate(ys))
    meta = os.path.join(folder, "batches.meta")
    if os.path.exists(meta) and _md5(meta) != CIFAR10_MD5["batches.meta"]:
        warnings.warn(f"CIFAR-10 file {meta}: md5 differs from the official one (not needed for training)", stacklevel=2)
    return Dataset("cifar10", *parts["train"], *parts["test"], num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                   flip=True, source=folder)


# -------------------------------------------------------------------------- digits
def load_digits(size: int = 32) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, real data, no download), upscaled
    bilinearly to size x size, grey copied to 3 channels; fixed stratified split of
    1,437 train / 360 test images."""
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    img = torch.from_numpy(d.images).float()[:, None] * (255.0 / 16.0)  # (n, 1, 8, 8), 0..255
    img = torch.nn.functional.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)
    img = img.round().clamp(0, 255).to(torch.uint8)[:, 0, :, :, None].expand(-1, -1, -1, 3)
    x = np.ascontiguousarray(img.numpy())
    y = d.target.astype(np.int64)
    rng = np.random.RandomState(0)
    test = np.zeros(len(y), dtype=bool)
    for c in range(10):  # 20% of every class, fixed
        idx = rng.permutation(np.flatnonzero(y == c))
        test[idx[: int(round(0.2 * len(idx)))]] = True
    tx = x[~test]
    mean = float(tx.mean() / 255.0)
    std = float(tx.std() / 255.0)
    return Dataset("digits", tx, y[~test], x[test], y[test], num_classes=10, mean=(mean,) * 3, std=(std,) * 3,
                   flip=False, source="sklearn.datasets.load_digits")


# -------------------------------------------------------------------------- loader
def _epoch_generator(seed: int, epoch: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7919 + salt) % (2**63))


class DeviceLoader:
    """Batches from a uint8 NHWC data set held on `device`.

    train=True: each epoch a permutation of the whole set (the same on every rank),
    padded to a multiple of world_size like DistributedSampler and split rank::world;
    per-sample random crop (zero padding `pad`) and optional horizontal flip; the last
    incomplete batch is dropped. train=False: samples rank::world in order, no
    augmentation, every sample exactly once over all ranks.
    Yields (float32 images (B, 3, H, W), int64 labels); channels_last if asked.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, device, *, train: bool,
                 mean, std, flip: bool = True, pad: int = 4, seed: int = 0, rank: int = 0, world_size: int = 1,
                 channels_last: bool = False):
        self.n, self.h, self.w, c = images.shape
        self.device = torch.device(device)
        self.batch_size, self.train, self.flip, self.pad = batch_size, train, flip, pad if train else 0
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.channels_last = channels_last
        self.epoch = 0
        self.start_step = 0
        x = torch.from_numpy(np.ascontiguousarray(images))
        if self.pad:
            x = torch.nn.functional.pad(x.permute(0, 3, 1, 2), (pad,) * 4).permute(0, 2, 3, 1).contiguous()
        self.images = x.to(self.device)
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(self.device)
        # (u8 / 255 - mean) / std as one multiply-add
        mean64, std64 = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
        self.scale = (1.0 / (255.0 * std64)).float().view(1, c, 1, 1).to(self.device)
        self.shift = (-mean64 / std64).float().view(1, c, 1, 1).to(self.device)
        self.ar_h = torch.arange(self.h, device=self.device)
        self.ar_w = torch.arange(self.w, device=self.device)
        if train:
            self.per_rank = math.ceil(self.n / world_size)
            self.num_batches = self.per_rank // batch_size
            if self.num_batches == 0:
                raise ValueError(
                    f"batch size {batch_size} per process exceeds the {self.per_rank} training samples each of the "
                    f"{world_size} process(es) gets"
                )
        else:
            self.per_rank = len(range(rank, self.n, world_size))
            self.num_batches = math.ceil(self.per_rank / batch_size)

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """The next iteration yields epoch's batches from start_step on (a resumed epoch)."""
        self.epoch = epoch
        self.start_step = start_step

    def __len__(self) -> int:
        return self.num_batches

    def _epoch_plan(self):
        """(indices, crop offsets y, x, flips) for this rank, on the device."""
        if not self.train:
            idx = torch.arange(self.rank, self.n, self.world_size)
            return idx.to(self.device), None, None, None
        g = _epoch_generator(self.seed, self.epoch, 0)
        total = self.per_rank * self.world_size
        perm = torch.randperm(self.n, generator=g)
        if total > self.n:  # pad by repeating from the start, as DistributedSampler does
            perm = torch.cat([perm, perm[: total - self.n]])
        offsets = torch.randint(0, 2 * self.pad + 1, (total, 2), generator=g)
        flips = torch.randint(0, 2, (total,), generator=g).bool() if self.flip else torch.zeros(total, dtype=torch.bool)
        sl = slice(self.rank, total, self.world_size)
        to = lambda t: t[sl].to(self.device, non_blocking=True)
        return to(perm), to(offsets[:, 0]), to(offsets[:, 1]), to(flips)

    def __iter__(self):
        idx, oy, ox, fl = self._epoch_plan()
        bs = self.batch_size
        for b in range(self.start_step, self.num_batches):
            sl = slice(b * bs, (b + 1) * bs)
            i = idx[sl]
            if self.train:
                rows = oy[sl, None] + self.ar_h  # (B, H)
                cols = ox[sl, None] + self.ar_w  # (B, W)
                cols = torch.where(fl[sl, None], cols.flip(1), cols)
                u8 = self.images[i[:, None, None], rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
            else:
                u8 = self.images[i]
            x = u8.permute(0, 3, 1, 2).float()  # channels_last strides already
            x = torch.addcmul(self.shift, x, self.scale)
            x = x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()
            yield x, self.labels[i]
