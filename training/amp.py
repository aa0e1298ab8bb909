"""Mixed precision through torch.amp, with the seed's apex-style names.

    no --amp, or O0   float32
    O1                float16 autocast + GradScaler (dynamic, or --loss-scale N static)
    O2                bfloat16 autocast where the device supports it (no scaler needed),
                      else float16 autocast + GradScaler as O1

(apex's O2 kept fp16 weights with fp32 masters; with autocast the weights stay fp32.)
A static --loss-scale N is a GradScaler whose scale is reset to N after every step:
steps with inf/NaN gradients are still skipped, the scale never moves.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "npu":
        fn = getattr(torch.npu, "is_bf16_supported", None)
        return bool(fn()) if fn else False
    return True  # CPU autocast supports bfloat16


@dataclass
class Precision:
    device_type: str
    dtype: torch.dtype | None  # autocast dtype, None = float32
    scaler: torch.amp.GradScaler | None
    static_scale: float | None
    description: str

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)  # skipped when the unscaled gradients hold inf/NaN
        self.scaler.update(self.static_scale)  # static: back to N; dynamic: halve / grow

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def _grad_scaler(device_type: str, **kwargs):
    if device_type == "npu" and hasattr(torch, "npu") and hasattr(torch.npu, "amp"):
        return torch.npu.amp.GradScaler(**kwargs)  # torch_npu's own, on older adapters
    return torch.amp.GradScaler(device_type, **kwargs)


def setup(amp: bool, opt_level: str, loss_scale, device: torch.device) -> Precision:
    dt = device.type
    if not amp or opt_level == "O0":
        return Precision(dt, None, None, None, "float32")
    if opt_level == "O2" and bf16_supported(device):
        note = "" if loss_scale == "dynamic" else f" (--loss-scale {loss_scale:g} unused: bf16 needs no loss scaling)"
        return Precision(dt, torch.bfloat16, None, None, "O2: bfloat16 autocast" + note)
    if opt_level not in ("O1", "O2"):
        raise SystemExit(f"error: --opt-level {opt_level} is not supported (O0, O1, O2)")
    if loss_scale == "dynamic":
        scaler = _grad_scaler(dt)
        static = None
        what = "dynamic loss scale"
    else:
        scaler = _grad_scaler(dt, init_scale=float(loss_scale), growth_interval=2**30)
        static = float(loss_scale)
        what = f"static loss scale {static:g}"
    why = "" if opt_level == "O1" else " (no bf16 on this device)"
    return Precision(dt, torch.float16, scaler, static, f"{opt_level}: float16 autocast + GradScaler, {what}{why}")


class ApexPrecision(Precision):
    """NVIDIA apex amp (--apex): only when installed and asked for. apex.amp.initialize
    patches model and optimizer; the loss is scaled through amp.scale_loss."""

    def __init__(self, apex_amp, opt_level: str, loss_scale, device_type: str):
        super().__init__(device_type, None, None, None, f"apex amp {opt_level}, loss scale {loss_scale}")
        self.apex_amp = apex_amp

    def backward_and_step(self, loss, optimizer):
        with self.apex_amp.scale_loss(loss, optimizer) as scaled:
            scaled.backward()
        optimizer.step()

    def state_dict(self):
        return {"apex": self.apex_amp.state_dict()}

    def load_state_dict(self, state):
        if state and "apex" in state:
            self.apex_amp.load_state_dict(state["apex"])


def setup_apex(model, optimizer, opt_level: str, loss_scale, device: torch.device):
    """(model, optimizer, ApexPrecision), or a clear error when apex is missing."""
    if device.type != "cuda":
        raise SystemExit("error: --apex needs --device cuda (apex amp is CUDA-only); drop --apex to use torch.amp")
    try:
        from apex import amp as apex_amp
    except ImportError:
        raise SystemExit("error: --apex asked for but NVIDIA apex is not installed; drop --apex to use torch.amp") from None
    model, optimizer = apex_amp.initialize(model, optimizer, opt_level=opt_level, loss_scale=loss_scale)
    return model, optimizer, ApexPrecision(apex_amp, opt_level, loss_scale, device.type)
