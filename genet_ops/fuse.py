"""fuse_excite: the fused excite op in any squeeze-and-excitation network.

An SE block computes ``x * sigmoid(g)`` with g = MLP(global mean of x): exactly
``genet_ops.excite(x, g, extent=0)``, which does the broadcast multiply (and its
backward, with the global sum for dg) in one pass instead of eager's several.

    converted = genet_ops.fuse_excite(model)   # e.g. ['features.1.0.block.1', ...]

Recognised (by type, never by class name), where the gate is a sigmoid:
  * torchvision.ops.SqueezeExcitation (EfficientNet, RegNet, MobileNetV3);
  * timm's SEModule (= SqueezeExcite in timm.layers), EffectiveSEModule, and the
    EfficientNet-family SqueezeExcite (timm.models._efficientnet_blocks).
Each is changed in place: the same object gets a subclass of its own type whose forward
computes the same g with the module's own layers and calls the fused op, so parameters,
buffers, state_dict keys, hooks and isinstance checks are unchanged. SE modules with
another gate (MobileNetV3's hardsigmoid, EffectiveSE's default hard_sigmoid) are left as
they are and named in one warning. torchvision and timm are not imported here: a model
built with them has imported them already.

What the fused op keeps for backward (``save``): with 'output' it keeps the SE module's
output instead of its input, which costs no memory where the next layer keeps that output
anyway (a conv keeps its input), but is wrong to keep if the output is changed in place
afterwards (autograd then raises an error naming save='input'). 'input' keeps the input,
as eager does. 'auto' (the default) keeps the output only for SE modules in a block known
not to change it in place, decided by the block's type (_LEAN_BLOCKS): the SE output goes
straight into a conv or a norm there. Known safe:
  * torchvision: EfficientNet's MBConv (SE inside its ``block``, before the projection
    conv) and RegNet's BottleneckTransform (``se`` before the 1x1 conv ``c``);
  * timm's EfficientNet-family blocks (DepthwiseSeparableConv, InvertedResidual,
    UniversalInvertedResidual, CondConvResidual, EdgeResidual: ``x = self.se(x)`` then a
    pointwise conv) and timm's RegNet Bottleneck / PreBottleneck (``se`` before a conv or
    norm).
Everything else keeps the input, timm's SE-ResNets in particular
(``x = self.se(x); x += shortcut``).
"""
from __future__ import annotations

import re
import sys
import warnings

import torch
import torch.nn as nn

from .ops import SAVE_MODES, excite

__all__ = ["fuse_excite", "is_sigmoid"]


def _type(module: str, name: str):
    mod = sys.modules.get(module)
    return getattr(mod, name, None) if mod is not None else None


def is_sigmoid(gate) -> bool:
    """True for a module computing the logistic sigmoid: nn.Sigmoid or timm's Sigmoid."""
    timm_sigmoid = _type("timm.layers.activations", "Sigmoid")
    return type(gate) is nn.Sigmoid or (timm_sigmoid is not None and type(gate) is timm_sigmoid)


def _squeeze(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's squeeze: the global mean, averaged with the global max under add_maxpool."""
    s = x.mean((2, 3), keepdim=True)
    if getattr(m, "add_maxpool", False):
        s = 0.5 * s + 0.5 * x.amax((2, 3), keepdim=True)
    return s


# (module, class name, gate attribute, g) for every SE type we fuse; g is the block's
# pre-gate logits, written with the module's own layers in the block's own order.
_KINDS = [
    ("torchvision.ops.misc", "SqueezeExcitation", "scale_activation",
     lambda m, x: m.fc2(m.activation(m.fc1(m.avgpool(x))))),
    ("timm.layers.squeeze_excite", "SEModule", "gate",
     lambda m, x: m.fc2(m.act(m.bn(m.fc1(_squeeze(m, x)))))),
    ("timm.layers.squeeze_excite", "EffectiveSEModule", "gate",
     lambda m, x: m.fc(_squeeze(m, x))),
    ("timm.models._efficientnet_blocks", "SqueezeExcite", "gate",
     lambda m, x: m.conv_expand(m.act1(m.conv_reduce(x.mean((2, 3), keepdim=True))))),
]
_FUSED_TYPES: dict = {}  # original class -> its fused subclass

# (module, block class, where the SE sits in it): blocks whose SE output goes straight into
# a conv or a norm, never changed in place, so the fused op may keep it (save='auto').
_LEAN_BLOCKS = [
    ("torchvision.models.efficientnet", "MBConv", r"block\.\d+"),
    ("torchvision.models.regnet", "BottleneckTransform", r"se"),
    *[("timm.models._efficientnet_blocks", name, r"se") for name in (
        "DepthwiseSeparableConv", "InvertedResidual", "UniversalInvertedResidual", "CondConvResidual",
        "EdgeResidual")],
    ("timm.models.regnet", "Bottleneck", r"se"),
    ("timm.models.regnet", "PreBottleneck", r"se"),
]


def _lean_safe(model: nn.Module, name: str) -> bool:
    """Whether the SE module at name sits where _LEAN_BLOCKS says its output is not
    changed in place: the nearest enclosing module of a listed type, at a listed path."""
    blocks = [(c, re.compile(path)) for mod, cls, path in _LEAN_BLOCKS if (c := _type(mod, cls)) is not None]
    parts = name.split(".") if name else []
    for i in range(len(parts) - 1, -1, -1):
        parent = model.get_submodule(".".join(parts[:i]))
        for cls, path in blocks:
            if type(parent) is cls:
                return path.fullmatch(".".join(parts[i:])) is not None
    return False


def _fused_type(cls, g_fn):
    if cls not in _FUSED_TYPES:
        def forward(self, x):
            g = g_fn(self, x)
            # g's dtype differs from x's under autocast
            return excite(x, g.to(x.dtype), 0, save=self.genet_save)

        _FUSED_TYPES[cls] = type(f"Fused{cls.__name__}", (cls,), {
            "forward": forward, "__doc__": f"{cls.__name__} whose x * sigmoid(g) is genet_ops.excite (fuse_excite)."})
    return _FUSED_TYPES[cls]


def fuse_excite(model: nn.Module, save: str = "auto") -> list:
    """Make every sigmoid-gated SE module in model (itself included) use the fused excite,
    in place; returns the names (as in named_modules) of the modules converted. Others are
    left alone and named in a warning. Running it twice converts nothing new.

    save: what each fused op keeps for backward: 'auto' (its output where the enclosing
    block is known not to change it in place, see the module docstring; else its input),
    'output' everywhere, or 'input' everywhere (as eager PyTorch). Each converted module
    holds its choice in ``genet_save``."""
    if save not in SAVE_MODES:
        raise ValueError(f"fuse_excite: save must be one of {', '.join(SAVE_MODES)}, got {save!r}")
    kinds = [(c, gate, g) for mod, name, gate, g in _KINDS if (c := _type(mod, name)) is not None]
    fused = tuple(_FUSED_TYPES.values())
    converted, left = [], []
    for name, m in model.named_modules():
        if isinstance(m, fused):
            continue
        for cls, gate_attr, g_fn in kinds:
            if type(m) is cls:
                gate = getattr(m, gate_attr)
                if is_sigmoid(gate):
                    m.__class__ = _fused_type(cls, g_fn)
                    # 'auto' is the op's own rule (no residual: the output) where safe.
                    m.genet_save = save if save != "auto" else "auto" if _lean_safe(model, name) else "input"
                    converted.append(name)
                else:
                    left.append(f"{name or '<model>'} ({cls.__name__}, gate {type(gate).__name__})")
                break
    if left:
        warnings.warn(f"fuse_excite: {len(left)} SE module(s) left alone, their gate is not a sigmoid: "
                      f"{', '.join(left[:8])}{' ...' if len(left) > 8 else ''}", stacklevel=2)
    return converted
