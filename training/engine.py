"""One training epoch and one evaluation pass.

The training loop never waits on the device except every --print-freq steps (to
check the loss is finite and update the progress bar), once at warm-up end and once at
the epoch's end (to time it). Losses and correct counts accumulate on the device.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from . import dist


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf (or loss scaling collapsed): the run cannot go on."""


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "npu":
        torch.npu.synchronize(device)


def _progress(total, desc, enabled):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=1.0)


def train_one_epoch(model, loader, optimizer, precision, epoch: int, info: dist.DistInfo, *,
                    print_freq: int = 20, progress: bool = True, warmup_steps: int = 5,
                    min_loss_scale: float = 2.0**-16, start_step: int = 0, carry: dict | None = None,
                    after_step=None) -> dict:
    """Returns loss, acc1 (over all ranks), img/s over all ranks, per-step losses, skipped steps.

    start_step / carry: continue an epoch a checkpoint left at step start_step; carry is
    the partial() that checkpoint saved. after_step(step, partial): called on every rank
    after each step but the epoch's last (step counted from the epoch's start);
    partial() (a collective) returns this epoch's accumulators so far; an exception it
    raises (preemption) ends the epoch.
    """
    model.train()
    loader.set_epoch(epoch, start_step)
    dev = info.device
    n_steps = len(loader)
    warm = warmup_steps if n_steps - start_step > 2 * warmup_steps else 0
    carry = carry or {}
    prior_losses = list(carry.get("step_losses", [])) if info.is_main else []
    prior_sums = carry.get("sums", [0.0, 0.0, 0.0]) if info.is_main else [0.0, 0.0, 0.0]
    step_losses = []
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    seen = 0
    checked = 0
    skipped = int(carry.get("skipped_steps", 0)) if info.is_main else 0
    bar = _progress(n_steps, f"epoch {epoch + 1}", progress and info.is_main)
    if bar is not None and start_step:
        bar.update(start_step)

    def sums() -> torch.Tensor:
        own = torch.stack(step_losses).sum().item() if step_losses else 0.0
        t = torch.tensor([own, float(correct.item()), float(seen)], dtype=torch.float64, device=dev)
        t += torch.tensor(prior_sums, dtype=torch.float64, device=dev)
        return dist.all_reduce_sum(t, info)

    def losses() -> list:
        return prior_losses + (torch.stack(step_losses).cpu().tolist() if step_losses else [])

    def partial() -> dict:
        return {"step_losses": losses(), "sums": sums().tolist(), "skipped_steps": skipped}

    t0 = time.perf_counter()
    timed_images = 0
    for step, (x, y) in enumerate(loader, start=start_step):
        if step - start_step == warm and warm:
            synchronize(dev)
            t0 = time.perf_counter()
        with precision.autocast():
            out = model(x)
            loss = F.cross_entropy(out, y)
        optimizer.zero_grad(set_to_none=True)
        scale_before = precision.scaler.get_scale() if precision.scaler is not None else None
        precision.backward_and_step(loss, optimizer)
        if precision.scaler is not None and precision.scaler.get_scale() < scale_before:
            skipped += 1  # GradScaler absorbed an overflow: step skipped, scale halved
        step_losses.append(loss.detach().float())
        correct += (out.detach().argmax(1) == y).sum()
        seen += y.shape[0]
        if step - start_step >= warm:
            timed_images += y.shape[0]
        if (step + 1) % print_freq == 0 or step + 1 == n_steps:
            recent = torch.stack(step_losses[checked:])
            _check_finite(recent, start_step + checked, epoch, precision, optimizer)
            if precision.scaler is not None and precision.scaler.get_scale() < min_loss_scale:
                raise TrainingDiverged(
                    f"epoch {epoch + 1}, step {step + 1}: the fp16 loss scale fell to {precision.scaler.get_scale():g} "
                    f"(every step overflows); GradScaler cannot absorb this. Lower --lr or use --opt-level O2 (bf16)."
                )
            checked = len(step_losses)
            if bar is not None:
                bar.update(step + 1 - bar.n)
                bar.set_postfix(loss=f"{recent.mean().item():.4f}", refresh=False)
        if after_step is not None and step + 1 < n_steps:
            after_step(step + 1, partial)
    synchronize(dev)
    elapsed = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    total = sums()
    return {
        "loss": total[0].item() / max(1, n_steps * info.world_size),
        "acc1": 100.0 * total[1].item() / max(1.0, total[2].item()),
        "images": int(total[2].item()),
        "img_per_s": timed_images * info.world_size / elapsed if elapsed > 0 else float("nan"),
        "time_s": elapsed,
        "step_losses": losses(),
        "skipped_steps": skipped,
    }


def _check_finite(losses: torch.Tensor, first_step: int, epoch: int, precision, optimizer) -> None:
    bad = (~torch.isfinite(losses)).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        lr = optimizer.param_groups[0]["lr"]
        raise TrainingDiverged(
            f"loss is {losses[i].item()} at epoch {epoch + 1}, step {first_step + i + 1} "
            f"(lr {lr:g}, precision {precision.description}). A non-finite loss is not a gradient "
            f"overflow that loss scaling can absorb: the model has diverged. Stopping; resume from the last "
            f"checkpoint with a lower --lr, or try another --opt-level."
        )


@torch.no_grad()
def evaluate(model, loader, precision, info: dist.DistInfo) -> dict:
    """Loss, top-1/top-5 accuracy and error (%) over the whole test set: every rank
    takes its shard, the sums are all-reduced."""
    model.eval()
    dev = info.device
    sums = torch.zeros(4, dtype=torch.float64, device=dev)  # loss, top1, top5, n
    for x, y in loader:
        with precision.autocast():
            out = model(x)
        out = out.float()
        k = min(5, out.shape[1])
        top = out.topk(k, dim=1).indices
        hit = top == y[:, None]
        sums += torch.stack([
            F.cross_entropy(out, y, reduction="sum").double(),
            hit[:, :1].sum().double(),
            hit.any(1).sum().double(),
            torch.tensor(float(y.shape[0]), dtype=torch.float64, device=dev),
        ])
    dist.all_reduce_sum(sums, info)
    loss, c1, c5, n = sums.tolist()
    n = max(n, 1.0)
    acc1, acc5 = 100.0 * c1 / n, 100.0 * c5 / n
    res = {"val_loss": loss / n, "acc1": acc1, "acc5": acc5, "err1": 100.0 - acc1, "err5": 100.0 - acc5,
           "val_images": int(n), "correct1": int(c1)}
    if not math.isfinite(res["val_loss"]):
        res["val_loss"] = float("nan")
    return res
