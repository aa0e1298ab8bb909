"""When to save a checkpoint inside an epoch, and stopping cleanly on SIGTERM / SIGINT.

A cluster's SIGTERM before preemption (or Ctrl-C) only sets a flag: the running step
finishes, every rank learns of it at the same step, rank 0 writes a checkpoint and the
run exits with 128 + the signal number. A second signal of the same kind acts as usual
(kills the process): the checkpoint files are written atomically, so that loses at most
the save in progress.

The ranks agree after every step on two bits, "some rank was signalled" and "rank 0's
--save-every-minutes clock is due", with one MAX all-reduce of a two-element CPU tensor
(on a gloo group, so a GPU run does not wait for its device); --save-every-steps needs
no agreement (the global step is the same everywhere).
"""
from __future__ import annotations

import signal
import time

import torch
import torch.distributed as dist

from .dist import DistInfo

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """Raised once the checkpoint after a SIGTERM / SIGINT is written."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


class StopFlag:
    """Installs SIGTERM and SIGINT handlers that only record the first signal."""

    def __init__(self, log=print):
        self.signum = 0
        self._log = log
        self._previous = {}

    def install(self) -> "StopFlag":
        for s in SIGNALS:
            try:
                self._previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: no handlers, no clean stop
                pass
        return self

    def uninstall(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if not self.signum:
            self.signum = signum
            self._log(f"received {signal.Signals(signum).name}: finishing this step, then saving a checkpoint "
                      f"(send it again to stop at once)")
        signal.signal(signum, signal.SIG_DFL if signum != signal.SIGINT else signal.default_int_handler)


class SaveSchedule:
    """Decides, identically on every rank, after which steps to save and whether to stop."""

    def __init__(self, info: DistInfo, stop: StopFlag, every_steps: int, every_minutes: float):
        self.info, self.stop = info, stop
        self.every_steps, self.every_s = every_steps, every_minutes * 60.0
        self.last_save = time.monotonic()
        self.group = None
        if info.distributed:
            # the default group when it is gloo; else a gloo side group, so this never syncs a GPU
            self.group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")

    def saved(self) -> None:
        self.last_save = time.monotonic()

    def agree(self) -> tuple[bool, int]:
        """(time's save is due, signal number or 0), the same on every rank."""
        due = self.info.is_main and self.every_s > 0 and time.monotonic() - self.last_save >= self.every_s
        flags = torch.tensor([int(due), self.stop.signum], dtype=torch.int64)
        if self.info.distributed:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self.group)
        return bool(flags[0]), int(flags[1])

    def after_step(self, global_step: int) -> tuple[bool, int]:
        """(save now, signal number or 0) after the step that made global_step."""
        due, signum = self.agree()
        by_steps = self.every_steps > 0 and global_step % self.every_steps == 0
        return bool(due or by_steps or signum), signum
