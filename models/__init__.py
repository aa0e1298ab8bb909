"""GE models and a factory by name.

    import models
    model = models.create_model("ge_wrn_16_8", variant="theta-", extent=0)   # the seed's model
    model = models.create_model("ge_resnet50", variant="theta+", extent=8, num_classes=1000)
    models.list_models()

Names: ge_wrn_<depth>_<width> (CIFAR WideResNet, any depth = 6n + 4 and width),
ge_resnet50 / ge_resnet101 / ge_resnet152 (ImageNet bottleneck ResNets).
Keyword arguments: variant ('theta-', 'theta', 'theta+', or 'none' for no GE), extent
(0 = global, or 2, 4, 8), fused (genet_ops ops, default True, or eager PyTorch),
num_classes, img_size (the input size, needed by the global learned gather), in_chans,
ge_save (what the fused GE ops keep for backward: 'auto', 'output' or 'input'; GatherExcite's save).

convert_state_dict(checkpoint, model=None) turns our, BayesWatch's and the seed's
checkpoints into a state dict for these models (models/convert.py).
"""
from __future__ import annotations

import re

from genet_ops.module import GatherExcite

from .common import VARIANTS, canonical_variant
from .convert import convert_state_dict, infer_wrn_flags, source_format
from .resnet import GEResNet
from .wideresnet import GEWideResNet

__all__ = ["create_model", "list_models", "set_fused", "GEWideResNet", "GEResNet", "canonical_variant", "VARIANTS",
           "convert_state_dict", "infer_wrn_flags", "source_format"]

_RESNET_LAYERS = {"ge_resnet50": (3, 4, 6, 3), "ge_resnet101": (3, 4, 23, 3), "ge_resnet152": (3, 8, 36, 3)}
_WRN = re.compile(r"^ge_wrn_(\d+)_(\d+)$")


def list_models():
    return ["ge_wrn_<depth>_<width> (e.g. ge_wrn_16_8, ge_wrn_28_10)"] + sorted(_RESNET_LAYERS)


def create_model(name: str, variant: str = "theta-", extent: int = 0, fused: bool = True, **kwargs):
    """Build a GE model by name; see the module docstring."""
    key = name.lower().replace("-", "_")
    m = _WRN.match(key)
    if m:
        kwargs.setdefault("num_classes", 10)
        return GEWideResNet(int(m.group(1)), int(m.group(2)), variant=variant, extent=extent, fused=fused, **kwargs)
    if key in _RESNET_LAYERS:
        kwargs.setdefault("num_classes", 1000)
        return GEResNet(_RESNET_LAYERS[key], variant=variant, extent=extent, fused=fused, **kwargs)
    raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")


def set_fused(model, fused: bool = True):
    """Switch every GatherExcite in model between the genet_ops ops and eager PyTorch."""
    return GatherExcite.set_fused(model, fused)
