"""Checkpoints from elsewhere -> state dicts for models.create_model.

    sd = models.convert_state_dict(torch.load(path, map_location="cpu"), model=model)
    model.load_state_dict(sd)          # strict

Recognised formats (the key layout decides, not the file):
  * ours: GEWideResNet / GEResNet keys (``block1.0.ge.gather.conv1.weight``), or train.py's
    checkpoint dict holding them under 'state_dict';
  * BayesWatch/pytorch-GENet (the seed's model code): ``block1.layer.0.convShortcut.weight``,
    ``...downop.dwconv.weight``, top-level ``bn1.``; bare, or in their train.py's
    ``{'epoch', 'state_dict', 'error_history'}``;
  * the seed (the Ascend ModelZoo port of BayesWatch): the same keys with the ``module.``
    of its DistributedDataParallel wrapper in front (``_orig_mod.`` of torch.compile is
    dropped too).

The BayesWatch -> ours key map (read off their blocks.py / wideresnet.py):
    blockK.layer.I.X             -> blockK.I.X
    convShortcut                 -> shortcut
    bn1. (top level)             -> bn.
    downop.dwconv / downop.bn    -> ge.gather.conv1 / ge.gather.bn1      (one Downblock: extent 0 or 2)
    downop.J.dwconv / downop.J.bn-> ge.gather.conv{J+1} / ge.gather.bn{J+1}  (extent 4, 8)
    mlp.0 / mlp.2                -> ge.mlp.fc1 / ge.mlp.fc2
θ⁻ and θ (any extent) then load with strict=True and give the same logits. BayesWatch's
θ⁺ does not: its MLP has no biases and no ReLU between the gather and the first 1x1
conv, ours (the authors' prototxt) has both. Rather than silently loading weights into
a different function, such checkpoints are refused with a ValueError that says so.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Optional

import torch

__all__ = ["convert_state_dict", "infer_wrn_flags", "source_format"]

_WRAPPERS = ("module.", "_orig_mod.")  # DDP / DataParallel, torch.compile
_BW_BLOCK = re.compile(r"^block(\d+)\.layer\.(\d+)\.(.+)$")
_BW_IN_BLOCK = [  # (pattern, replacement) on the part after blockK.layer.I.
    (re.compile(r"^(bn1|conv1|bn2|conv2)\.(.+)$"), r"\1.\2"),
    (re.compile(r"^convShortcut\.(.+)$"), r"shortcut.\1"),
    (re.compile(r"^downop\.dwconv\.(.+)$"), r"ge.gather.conv1.\1"),
    (re.compile(r"^downop\.bn\.(.+)$"), r"ge.gather.bn1.\1"),
    (re.compile(r"^downop\.(\d+)\.dwconv\.(.+)$"), lambda m: f"ge.gather.conv{int(m[1]) + 1}.{m[2]}"),
    (re.compile(r"^downop\.(\d+)\.bn\.(.+)$"), lambda m: f"ge.gather.bn{int(m[1]) + 1}.{m[2]}"),
    (re.compile(r"^mlp\.0\.(.+)$"), r"ge.mlp.fc1.\1"),
    (re.compile(r"^mlp\.2\.(.+)$"), r"ge.mlp.fc2.\1"),
]
_BW_TOP = [
    (re.compile(r"^bn1\.(.+)$"), r"bn.\1"),
    (re.compile(r"^(conv1|fc)\.(.+)$"), r"\1.\2"),
]
_SHOW = 5  # how many unmatched keys an error lists per side


def _state_dict_of(obj) -> dict:
    """The weights inside a checkpoint object, wrapper prefixes removed."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"convert_state_dict: expected a state dict or a checkpoint dict with 'state_dict', "
                         f"got {type(obj).__name__}{' (empty)' if isinstance(obj, Mapping) else ''}")
    sd = dict(obj)
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPERS:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                changed = True
    return sd


def _is_bayeswatch(sd: dict) -> bool:
    # Their residual blocks sit under blockK.layer.I; no model of ours has that prefix
    # (our GE-ResNet has a top-level bn1 too, so that key proves nothing).
    return any(_BW_BLOCK.match(k) for k in sd)


def _apply(rules, key: str) -> Optional[str]:
    for pat, repl in rules:
        if pat.match(key):
            return pat.sub(repl, key)
    return None


def _from_bayeswatch(sd: dict) -> dict:
    out, unmapped = {}, []
    for key, value in sd.items():
        m = _BW_BLOCK.match(key)
        rest = _apply(_BW_IN_BLOCK, m[3]) if m else _apply(_BW_TOP, key)
        if rest is None:
            unmapped.append(key)
            continue
        out[f"block{m[1]}.{m[2]}.{rest}" if m else rest] = value
    if unmapped:
        raise ValueError(f"convert_state_dict: BayesWatch/seed checkpoint keys with no counterpart in our models: "
                         f"{unmapped[:_SHOW]}{' ...' if len(unmapped) > _SHOW else ''}; the other keys fit "
                         f"{_flags_text(infer_wrn_flags(out))}")
    mlp = sorted(k for k in out if ".ge.mlp." in k)
    if mlp:
        has_gather = any(".ge.gather." in k for k in out)
        what = ("their GE-θ⁺ (learned gather + MLP): their MLP's 1x1 convs have no biases and there is no ReLU "
                "between the gather and the first conv; our θ⁺ (the authors' prototxt) has both, so these weights "
                "would compute a different function here" if has_gather else
                "an MLP on the parameter-free gather (their mlp=True, extra_params=False), which our models do not "
                "have (θ⁺ here always has the learned gather)")
        raise ValueError(f"convert_state_dict: this BayesWatch/seed checkpoint ({mlp[0]} ...) is {what}; "
                         f"only their θ⁻ (extra_params=False, mlp=False) and θ (extra_params=True, mlp=False) "
                         f"checkpoints convert")
    # Checkpoints from before PyTorch 0.4.1 have no BatchNorm step counter; it is unused in eval
    # and with momentum set, so start it at 0.
    for key in [k for k in out if k.endswith(".running_var")]:
        out.setdefault(key[: -len("running_var")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
    return out


def infer_wrn_flags(state_dict) -> dict:
    """The GE-WideResNet settings an (our-format) state dict was built with, as far as the
    weights tell: depth, width, num_classes, variant, and extent (None for θ⁻, which has no
    parameters to tell it by); img_size too for the global learned gather. {} if it is not a WRN."""
    sd = state_dict
    if "block1.0.conv1.weight" not in sd or "fc.weight" not in sd:
        return {}
    n = len({k.split(".")[1] for k in sd if k.startswith("block1.")})
    flags = {"depth": 6 * n + 4, "width": sd["block1.0.conv1.weight"].shape[0] // 16,
             "num_classes": sd["fc.weight"].shape[0], "variant": "theta-", "extent": None}
    convs = sorted(k for k in sd if re.match(r"^block1\.0\.ge\.gather\.conv\d+\.weight$", k))
    if convs:
        flags["variant"] = "theta+" if "block1.0.ge.mlp.fc1.weight" in sd else "theta"
        kernel = sd[convs[0]].shape[-1]
        if len(convs) == 1 and kernel != 3:  # the global gather's kernel is the feature size
            flags["extent"], flags["img_size"] = 0, kernel
        else:
            flags["extent"] = 2 ** len(convs)
    return flags


def _flags_text(flags: dict) -> str:
    if not flags:
        return "not a GE-WideResNet state dict, so no train.py flags can be read off it"
    s = f"--depth {flags['depth']} --width {flags['width']} --variant {flags['variant']}"
    s += " (any --extent: θ⁻ has no parameters that depend on it)" if flags["extent"] is None else \
        f" --extent {flags['extent']}"
    return s + f", {flags['num_classes']} classes"


def _check_fits(sd: dict, model: torch.nn.Module, source: str) -> None:
    want = model.state_dict()
    extra = [k for k in sd if k not in want]
    missing = [k for k in want if k not in sd]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(want[k].shape)}" for k in sd
              if k in want and sd[k].shape != want[k].shape]
    if not (extra or missing or shapes):
        return
    parts = []
    if extra:
        parts.append(f"in the checkpoint only: {extra[:_SHOW]}{' ...' if len(extra) > _SHOW else ''}")
    if missing:
        parts.append(f"in the model only: {missing[:_SHOW]}{' ...' if len(missing) > _SHOW else ''}")
    if shapes:
        parts.append(f"shapes differ (checkpoint vs model): {shapes[:_SHOW]}")
    raise ValueError(f"convert_state_dict: the {source} checkpoint does not fit {type(model).__name__}: "
                     f"{'; '.join(parts)}. The checkpoint fits {_flags_text(infer_wrn_flags(sd))}")


def convert_state_dict(state_dict, model: Optional[torch.nn.Module] = None) -> dict:
    """Our state dict for a checkpoint in any recognised format (see the module docstring).

    state_dict: a state dict, or a checkpoint dict holding one under 'state_dict'.
    model: if given, the result is checked against model.state_dict() (keys and shapes), so
        that load_state_dict(strict=True) succeeds; otherwise a ValueError lists the first
        unmatched keys on both sides and the model flags the checkpoint would fit.
    """
    sd = _state_dict_of(state_dict)
    source = "genet-ops"
    if _is_bayeswatch(sd):
        sd, source = _from_bayeswatch(sd), "BayesWatch/seed"
    if model is not None:
        _check_fits(sd, model, source)
    return sd


def source_format(state_dict) -> str:
    """'bayeswatch' (BayesWatch or the seed) or 'genet-ops' for a checkpoint or state dict."""
    return "bayeswatch" if _is_bayeswatch(_state_dict_of(state_dict)) else "genet-ops"
