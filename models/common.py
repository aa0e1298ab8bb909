"""Shared pieces of the GE models: variant names and the GatherExcite builder."""
from __future__ import annotations

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


def make_ge(channels: int, variant: str, extent: int, feat_size: int, fused: bool, rd_ratio: float = 1.0 / 16):
    """A GatherExcite for one block; variant 'none' (or None) gives no GE at all."""
    if variant is None or str(variant).lower() == "none":
        return None
    extra_params, use_mlp = VARIANTS[canonical_variant(variant)]
    return GatherExcite(
        channels, feat_size=feat_size, extra_params=extra_params, extent=extent,
        use_mlp=use_mlp, rd_ratio=rd_ratio, fused=fused,
    )


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1
