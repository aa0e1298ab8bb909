"""Shared pieces of the GE models: variant names, the GatherExcite builder, weight init."""
from __future__ import annotations

import torch.nn as nn

from genet_ops.module import GatherExcite

# The paper's three variants, by the names users type (ASCII and Unicode).
VARIANTS = {
    "theta-": (False, False),   # GE-θ⁻: parameter-free gather (the seed's model)
    "theta": (True, False),     # GE-θ: learned depthwise gather
    "theta+": (True, True),     # GE-θ⁺: learned gather + MLP
}
_ALIASES = {
    "theta-": "theta-", "theta_minus": "theta-", "minus": "theta-", "θ⁻": "theta-", "θ-": "theta-",
    "theta": "theta", "θ": "theta",
    "theta+": "theta+", "theta_plus": "theta+", "plus": "theta+", "θ⁺": "theta+", "θ+": "theta+",
}


def canonical_variant(variant: str) -> str:
    """'theta-', 'theta' or 'theta+' for any accepted spelling; ValueError otherwise."""
    key = str(variant).strip().lower() if variant is not None else ""
    if key not in _ALIASES:
        raise ValueError(f"unknown GE variant {variant!r}: choose one of theta- (θ⁻), theta (θ), theta+ (θ⁺)")
    return _ALIASES[key]


def make_ge(channels: int, variant: str, extent: int, feat_size: int, fused: bool, rd_ratio: float = 1.0 / 16,
            save: str = "auto"):
    """A GatherExcite for one block; variant 'none' (or None) gives no GE at all. save: what
    the fused ops keep for backward (GatherExcite's save)."""
    if variant is None or str(variant).lower() == "none":
        return None
    extra_params, use_mlp = VARIANTS[canonical_variant(variant)]
    return GatherExcite(
        channels, feat_size=feat_size, extra_params=extra_params, extent=extent,
        use_mlp=use_mlp, rd_ratio=rd_ratio, fused=fused, save=save,
    )


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def init_weights(model: nn.Module) -> None:
    """He init for the network's convs, BN to identity, linear bias zero (as the seed).
    The GE gather convs keep PyTorch's default init (a BatchNorm follows each)."""
    ge_convs = {id(m) for ge in model.modules() if isinstance(ge, GatherExcite) for m in ge.modules()}
    for m in model.modules():
        if id(m) in ge_convs:
            continue
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
