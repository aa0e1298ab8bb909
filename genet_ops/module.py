"""GatherExcite: the GENet block as an nn.Module, with timm's argument names.

Three variants (Hu et al., "Gather-Excite", NeurIPS 2018):

    GE-θ⁻   GatherExcite(C, extent=e)                                   no parameters
    GE-θ    GatherExcite(C, extent=e, extra_params=True, feat_size=S)   learned depthwise gather
    GE-θ⁺   GatherExcite(C, extent=e, extra_params=True, use_mlp=True, feat_size=S)

extent 0 gathers over the whole feature map (global), extent e over e x e tiles.

``fused=True`` runs the genet_ops custom ops (gather_excite for θ⁻; the learned
gather followed by the excite op for θ and θ⁺), ``fused=False`` the plain PyTorch
eager math of the seed. Both have exactly the same parameters, buffers and state_dict
keys, so a checkpoint moves between them; ``GatherExcite.set_fused(model, flag)``
switches every GatherExcite inside a model.

timm's constructor arguments are accepted with timm's meaning: ``act_layer`` (the
activations inside the learned gather and the MLP; default ReLU), ``norm_layer`` (the
norm after each gather conv; default BatchNorm2d, None for none), ``gate_layer`` (the gate
applied to g; default sigmoid), ``add_maxpool`` (θ⁻ only: g = (mean + max) / 2 per tile;
ignored with the learned gather, as in timm), ``device`` and ``dtype``. Layers are given
as a class (or factory) or as a name: 'sigmoid', 'hard_sigmoid', 'tanh', 'relu', 'silu',
'gelu', .... The fused ops compute x * sigmoid(g) with a plain mean: a gate other than
sigmoid, or add_maxpool, runs the eager math even when fused=True (no fused path).

``forward(x, residual=None, relu=False)`` returns ``x * sigmoid(gather(x)) (+ residual)``,
then ReLU when relu=True: passing the residual branch's shortcut (and the block's ReLU)
here lets the fused op do the add (and the ReLU) in the same pass, and keep ReLU's output
for backward instead of the pre-activation.

``save`` chooses what the fused ops keep for backward (genet_ops.gather_excite):
'auto' (default) the output where exact enough, 'output' always, 'input' the input x, as
eager PyTorch does. Keep 'input' where the module's output (or residual) is changed in
place afterwards; otherwise autograd raises an error that names this option.

The learned gather (docs/DESIGN.md §3):
  * global (extent 0): one depthwise conv with kernel = feat_size, no padding, no bias,
    then BatchNorm -> (N, C, 1, 1). feat_size is the input's spatial size and is required.
  * extent e (a power of two): log2(e) depthwise 3x3 stride-2 pad-1 convs (no bias),
    BatchNorm after each, ReLU between them, not after the last -> (N, C, ceil(H/e), ceil(W/e)).
GE-θ⁺ (as in the authors' RN50-GEPP prototxt) adds, after θ's gather: ReLU, 1x1 conv
C -> C*rd_ratio with bias, ReLU, 1x1 conv back to C with bias. BayesWatch's
pytorch-GENet θ⁺ differs: its MLP convs have no bias and there is no ReLU between the
gather and the first 1x1 conv. timm's GatherExcite differs too: there use_mlp
defaults to True and also applies to the parameter-free gather; here use_mlp
defaults to False and requires extra_params=True (θ⁻ is the paper's parameter-free form).
"""
from __future__ import annotations

import math
import operator
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fuse import is_sigmoid
from .ops import SAVE_MODES, excite, gather_excite

__all__ = ["GatherExcite"]


def _make_divisible(v: float, divisor: int = 1) -> int:
    """Nearest multiple of divisor to v, at least divisor (timm's rounding, round_limit 0)."""
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


# timm's layer names (timm.layers.create_act) for the layers GatherExcite takes by name.
_LAYERS = {
    "sigmoid": nn.Sigmoid, "hard_sigmoid": nn.Hardsigmoid, "hardsigmoid": nn.Hardsigmoid, "tanh": nn.Tanh,
    "relu": nn.ReLU, "relu6": nn.ReLU6, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU,
    "silu": nn.SiLU, "swish": nn.SiLU, "mish": nn.Mish, "hard_swish": nn.Hardswish, "hardswish": nn.Hardswish,
    "identity": nn.Identity,
}


def _layer(spec, arg: str, by_name: bool = True):
    """A layer class (or factory) from a class/factory or (activations) one of timm's names."""
    if isinstance(spec, str) and not by_name:
        raise ValueError(f"GatherExcite: {arg} must be a layer class such as nn.BatchNorm2d, got {spec!r}")
    if isinstance(spec, str):
        if spec.lower() not in _LAYERS:
            raise ValueError(f"GatherExcite: unknown {arg} {spec!r}; names: {', '.join(sorted(_LAYERS))}, "
                             f"or pass a layer class")
        return _LAYERS[spec.lower()]
    if not callable(spec) or isinstance(spec, nn.Module):
        raise ValueError(f"GatherExcite: {arg} must be a layer class (or factory) or a name, got {spec!r}")
    return spec


def _act(layer, inplace: bool) -> nn.Module:
    """layer(inplace=...) where the layer takes it, as timm's create_act_layer does."""
    try:
        return layer(inplace=inplace)
    except TypeError:
        return layer()


def _count(value, arg: str, minimum: int) -> int:
    """An int >= minimum from any operator.index-able integer (numpy ints too), never a bool."""
    try:
        if isinstance(value, bool):
            raise TypeError
        v = operator.index(value)
    except TypeError:
        v = None
    if v is None or v < minimum:
        raise ValueError(f"GatherExcite: {arg} must be an int >= {minimum}, got {value!r}")
    return v


def _tile_mean(x: torch.Tensor, extent: int) -> torch.Tensor:
    """Eager gather for θ⁻: the mean of each tile (partial tiles at the border averaged
    over the pixels they really hold) -> (N, C, ceil(H/e), ceil(W/e))."""
    if extent == 0 or (extent >= x.shape[-2] and extent >= x.shape[-1]):
        return x.mean(dim=(2, 3), keepdim=True)
    # ceil_mode windows that run past the border are clipped, and with padding=0 the
    # divisor is the clipped window's size: exactly |t|.
    k = (min(extent, x.shape[-2]), min(extent, x.shape[-1]))
    return F.avg_pool2d(x, k, k, ceil_mode=True)


def _tile_max(x: torch.Tensor, extent: int) -> torch.Tensor:
    """The max of each tile, tiles as in _tile_mean (for add_maxpool)."""
    if extent == 0 or (extent >= x.shape[-2] and extent >= x.shape[-1]):
        return x.amax(dim=(2, 3), keepdim=True)
    k = (min(extent, x.shape[-2]), min(extent, x.shape[-1]))
    return F.max_pool2d(x, k, k, ceil_mode=True)


def _expand_tiles(s: torch.Tensor, extent: int, H: int, W: int) -> torch.Tensor:
    """(N, C, th, tw) -> something broadcastable to (N, C, H, W): each pixel its tile's value."""
    if s.shape[-2] == 1 and s.shape[-1] == 1:
        return s  # global: broadcasting does the rest
    n, c, th, tw = s.shape
    s = s[:, :, :, None, :, None].expand(n, c, th, extent, tw, extent).reshape(n, c, th * extent, tw * extent)
    return s[:, :, :H, :W]


class GatherExcite(nn.Module):
    """Gather-excite block (GE-θ⁻ / GE-θ / GE-θ⁺). See the module docstring.

    Args:
        channels: number of input (and output) channels C.
        feat_size: spatial size (int or (H, W)) of the input; required for the global
            learned gather (extra_params=True, extent=0), ignored otherwise.
        extra_params: learn the gather with depthwise convs (GE-θ) instead of averaging.
        extent: 0 for global, else the tile size. Any extent >= 0 for θ⁻; 0, 2, 4, 8, ...
            (0 or a power of two >= 2) for θ and θ⁺.
        use_mlp: add the 1x1-conv MLP after the learned gather (GE-θ⁺).
        rd_ratio: MLP reduction ratio (1/16 in the paper).
        rd_channels: MLP hidden channels; overrides rd_ratio when given.
        rd_divisor: round the MLP hidden channels to a multiple of this.
        fused: run the genet_ops custom ops (True) or the plain PyTorch math (False); only
            for the sigmoid gate without add_maxpool (see ``fusable``).
        add_maxpool: θ⁻ only: gather (tile mean + tile max) / 2 (timm's); eager only.
        act_layer: activation in the learned gather and the MLP (class or name; ReLU).
        norm_layer: norm after each learned-gather conv, built as norm_layer(channels)
            (BatchNorm2d; None or False for none).
        gate_layer: the gate on g (class or name; 'sigmoid'). Others run eagerly.
        device, dtype: where and in which dtype the parameters are created.
        save: what the fused ops keep for backward, 'auto', 'output' or 'input' (see
            the module docstring); no effect on the eager math.
    """

    def __init__(
        self,
        channels: int,
        feat_size=None,
        extra_params: bool = False,
        extent: int = 0,
        use_mlp: bool = False,
        rd_ratio: float = 1.0 / 16,
        rd_channels: Optional[int] = None,
        rd_divisor: int = 1,
        fused: bool = True,
        add_maxpool: bool = False,
        act_layer=nn.ReLU,
        norm_layer=nn.BatchNorm2d,
        gate_layer="sigmoid",
        device=None,
        dtype=None,
        save: str = "auto",
    ):
        super().__init__()
        channels = _count(channels, "channels", 1)
        extent = _count(extent, "extent (0 means global)", 0)
        if use_mlp and not extra_params:
            raise ValueError(
                "GatherExcite: use_mlp=True needs extra_params=True (GE-θ⁺ = learned gather + MLP); "
                "the parameter-free GE-θ⁻ has no MLP"
            )
        dd = {"device": device, "dtype": dtype}
        act_layer = _layer(act_layer, "act_layer")
        norm_layer = _layer(norm_layer, "norm_layer", by_name=False) if norm_layer else None
        gate_layer = _layer(gate_layer, "gate_layer")
        self.channels = channels
        self.extent = extent
        self.extra_params = bool(extra_params)
        self.use_mlp = bool(use_mlp)
        self.add_maxpool = bool(add_maxpool)
        self.fused = bool(fused)
        if save not in SAVE_MODES:
            raise ValueError(f"GatherExcite: save must be one of {', '.join(SAVE_MODES)}, got {save!r}")
        self.save = save
        self.feat_size = None
        self.gather: Optional[nn.Sequential] = None
        self.mlp: Optional[nn.Sequential] = None

        if self.extra_params:
            self.gather = nn.Sequential()
            if extent == 0:
                if feat_size is None:
                    raise ValueError(
                        "GatherExcite: feat_size (the input's spatial size) is required for the global "
                        "learned gather (extra_params=True, extent=0): its depthwise conv has kernel = feat_size"
                    )
                fs = (feat_size, feat_size) if not isinstance(feat_size, (tuple, list)) else tuple(feat_size)
                if len(fs) != 2:
                    raise ValueError(f"GatherExcite: feat_size must be a positive int or (H, W), got {feat_size!r}")
                self.feat_size = tuple(_count(v, "feat_size", 1) for v in fs)
                self.gather.add_module("conv1", nn.Conv2d(channels, channels, self.feat_size, groups=channels,
                                                          bias=False, **dd))
                if norm_layer:
                    self.gather.add_module("bn1", norm_layer(channels, **dd))
            else:
                if extent < 2 or extent & (extent - 1):
                    raise ValueError(
                        f"GatherExcite: with extra_params=True, extent must be 0 (global) or a power of two "
                        f">= 2 (2, 4, 8, ...; log2(extent) stride-2 convs), got {extent}"
                    )
                n_conv = int(math.log2(extent))
                for i in range(1, n_conv + 1):
                    self.gather.add_module(
                        f"conv{i}", nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels, bias=False,
                                              **dd)
                    )
                    if norm_layer:
                        self.gather.add_module(f"bn{i}", norm_layer(channels, **dd))
                    if i < n_conv:
                        self.gather.add_module(f"act{i}", _act(act_layer, inplace=True))
            if self.use_mlp:
                if rd_channels is None:
                    if not rd_ratio > 0:
                        raise ValueError(f"GatherExcite: rd_ratio must be > 0, got {rd_ratio!r}")
                    rd_channels = _make_divisible(channels * rd_ratio, rd_divisor)
                rd_channels = _count(rd_channels, "rd_channels", 1)
                self.mlp = nn.Sequential()
                self.mlp.add_module("act0", _act(act_layer, inplace=False))
                self.mlp.add_module("fc1", nn.Conv2d(channels, rd_channels, 1, bias=True, **dd))
                self.mlp.add_module("act1", _act(act_layer, inplace=True))
                self.mlp.add_module("fc2", nn.Conv2d(rd_channels, channels, 1, bias=True, **dd))
        self.gate = gate_layer()

    @property
    def fusable(self) -> bool:
        """Whether fused=True runs the genet_ops ops: only for x * sigmoid(g) with g a plain
        mean (θ⁻) or the learned gather (θ, θ⁺)."""
        return is_sigmoid(self.gate) and not (self.add_maxpool and self.gather is None)

    @property
    def variant(self) -> str:
        return "theta+" if self.use_mlp else "theta" if self.extra_params else "theta-"

    def extra_repr(self) -> str:
        s = f"{self.channels}, variant={self.variant}, extent={self.extent}, fused={self.fused and self.fusable}"
        if self.save != "auto":
            s += f", save={self.save!r}"
        if self.add_maxpool and self.gather is None:
            s += ", add_maxpool=True"
        if self.feat_size is not None:
            s += f", feat_size={self.feat_size}"
        return s

    @staticmethod
    def set_fused(model: nn.Module, fused: bool = True) -> nn.Module:
        """Switch every GatherExcite inside model to the fused ops (True) or eager math (False)."""
        for m in model.modules():
            if isinstance(m, GatherExcite):
                m.fused = bool(fused)
        return model

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"GatherExcite: expected input of shape (N, {self.channels}, H, W), got {list(x.shape)}"
            )
        if self.feat_size is not None and tuple(x.shape[-2:]) != self.feat_size:
            raise ValueError(
                f"GatherExcite: this global learned gather was built for feat_size {self.feat_size} "
                f"(its conv kernel), but the input is {tuple(x.shape[-2:])}; build it with that feat_size"
            )

    def gather_g(self, x: torch.Tensor) -> torch.Tensor:
        """The gathered map g (before the sigmoid) for θ / θ⁺ -> (N, C, ceil(H/e), ceil(W/e))."""
        g = self.gather(x)
        if self.mlp is not None:
            g = self.mlp(g)
        return g

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None, relu: bool = False) -> torch.Tensor:
        self._check_input(x)
        if residual is not None and residual.shape != x.shape:
            raise ValueError(f"GatherExcite: residual must have the input's shape {list(x.shape)}, got {list(residual.shape)}")
        H, W = x.shape[-2:]
        if self.fused and self.fusable:
            # The ops take x, g and residual in one dtype: the one PyTorch's promotion
            # gives the eager math (bf16 x + fp32 residual -> fp32; under autocast g may
            # differ from x), so that fused and eager outputs have the same dtype.
            g = None if self.gather is None else self.gather_g(x)
            dt = x.dtype
            for t in (g, residual):
                if t is not None:
                    dt = torch.promote_types(dt, t.dtype)
            x, residual = x.to(dt), None if residual is None else residual.to(dt)
            if g is None:
                return gather_excite(x, self.extent, residual, relu=relu, save=self.save)
            return excite(x, g.to(dt), self.extent, residual, relu=relu, save=self.save)

        # Eager: the seed's math, x * gate(upsample(gather(x))), in the model's dtype with
        # PyTorch's pooling, i.e. what a user has without genet_ops; genet_ops.reference
        # (float32 accumulation, one rounding) is the oracle, not a training path.
        g = _tile_mean(x, self.extent) if self.gather is None else self.gather_g(x)
        if self.add_maxpool and self.gather is None:
            g = 0.5 * g + 0.5 * _tile_max(x, self.extent)
        y = x * _expand_tiles(self.gate(g), self.extent, H, W)
        y = y if residual is None else y + residual
        return F.relu(y) if relu else y
