"""Metrics files, written by rank 0: metrics.csv and metrics.jsonl (one row per epoch),
steps.csv (every training step's loss)."""
from __future__ import annotations

import csv
import json
import os

EPOCH_FIELDS = ["epoch", "lr", "train_loss", "train_acc1", "val_loss", "acc1", "acc5", "err1", "err5",
                "best_acc1", "img_per_s", "epoch_time_s", "skipped_steps", "loss_scale"]


class MetricsLog:
    def __init__(self, output_dir: str, enabled: bool, resume_epoch: int | None = None):
        """resume_epoch: continue the files, keeping the rows of epochs <= resume_epoch
        (rows a crashed run wrote after its last checkpoint go); None: start afresh."""
        self.enabled = enabled
        self.dir = output_dir
        if not enabled:
            return
        os.makedirs(output_dir, exist_ok=True)
        mode = "w" if resume_epoch is None else "a"
        if resume_epoch is not None:
            for name in ("metrics.csv", "metrics.jsonl", "steps.csv"):
                _keep_epochs(os.path.join(output_dir, name), resume_epoch)
        self.csv_path = os.path.join(output_dir, "metrics.csv")
        new_csv = mode == "w" or not os.path.exists(self.csv_path)
        self._csv = open(self.csv_path, mode, newline="")
        self._writer = csv.DictWriter(self._csv, fieldnames=EPOCH_FIELDS, extrasaction="ignore")
        if new_csv:
            self._writer.writeheader()
        self._jsonl = open(os.path.join(output_dir, "metrics.jsonl"), mode)
        steps_path = os.path.join(output_dir, "steps.csv")
        new_steps = mode == "w" or not os.path.exists(steps_path)
        self._steps = open(steps_path, mode, newline="")
        if new_steps:
            self._steps.write("epoch,step,loss\n")

    def epoch(self, row: dict, step_losses) -> None:
        if not self.enabled:
            return
        self._writer.writerow(row)
        self._csv.flush()
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        for i, loss in enumerate(step_losses):
            self._steps.write(f"{row['epoch']},{i + 1},{loss!r}\n")
        self._steps.flush()

    def close(self) -> None:
        if self.enabled:
            for f in (self._csv, self._jsonl, self._steps):
                f.close()


def write_json(path: str, obj: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def _keep_epochs(path: str, last_epoch: int) -> None:
    """Drop the rows of epochs after last_epoch from a metrics file."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.read().splitlines()
    if path.endswith(".jsonl"):
        kept = [ln for ln in lines if ln.strip() and json.loads(ln).get("epoch", 0) <= last_epoch]
    else:
        kept = lines[:1] + [ln for ln in lines[1:] if ln and int(ln.split(",", 1)[0]) <= last_epoch]
    with open(path, "w") as f:
        f.write("".join(ln + "\n" for ln in kept))
