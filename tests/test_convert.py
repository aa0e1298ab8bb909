"""models.convert_state_dict: BayesWatch/pytorch-GENet and seed checkpoints load into our
GE-WideResNet and give the same logits, eager and fused; what cannot be mapped is refused
with a message naming keys and the flags that would fit; train.py --resume/--evaluate use it.

The BayesWatch side is built here, never imported: their state dicts come from renaming
our keys with the inverse of the documented map, and `bw_forward` restates their WRN's
forward pass (blocks.py / wideresnet.py: pre-activation block, GE as downop -> mlp ->
nearest interpolate -> sigmoid, final bn1 -> relu -> avg_pool2d(8) -> fc) functionally
on their keys, so the mapping is checked against what their model computes.
"""
import re

import pytest
import torch
import torch.nn.functional as F

import models
import train
from training import checkpoint

TINY = ["--depth", "10", "--width", "1", "--progress", "false", "--device", "cpu"]


# ------------------------------------------------------------- BayesWatch side
def to_bayeswatch(sd):
    """Our WRN keys -> BayesWatch's (the inverse of the map in models/convert.py)."""
    n_conv = {}
    for k in sd:
        m = re.match(r"^(block\d+\.\d+)\.ge\.gather\.conv(\d+)\.", k)
        if m:
            n_conv[m[1]] = max(n_conv.get(m[1], 0), int(m[2]))
    out = {}
    for k, v in sd.items():
        m = re.match(r"^block(\d+)\.(\d+)\.(.+)$", k)
        if not m:
            out[re.sub(r"^bn\.", "bn1.", k)] = v
            continue
        rest = m[3].replace("shortcut.", "convShortcut.")
        g = re.match(r"^ge\.gather\.(conv|bn)(\d+)\.(.+)$", rest)
        if g:
            part = "dwconv" if g[1] == "conv" else "bn"
            single = n_conv[f"block{m[1]}.{m[2]}"] == 1
            rest = f"downop.{part}.{g[3]}" if single else f"downop.{int(g[2]) - 1}.{part}.{g[3]}"
        rest = rest.replace("ge.mlp.fc1.", "mlp.0.").replace("ge.mlp.fc2.", "mlp.2.")
        out[f"block{m[1]}.layer.{m[2]}.{rest}"] = v
    return out


def _bn(sd, p, x):
    return F.batch_norm(x, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"], sd[p + "bias"],
                        False, 0.0, 1e-5)


def _bw_gather(sd, p, out, extent):
    if p + "downop.dwconv.weight" in sd:  # one Downblock: global (kernel = feature size) or extent 2
        w = sd[p + "downop.dwconv.weight"]
        glob = w.shape[-1] != 3
        y = F.conv2d(out, w, stride=1 if glob else 2, padding=0 if glob else 1, groups=out.shape[1])
        return _bn(sd, p + "downop.bn.", y)
    j, y = 0, out
    while p + f"downop.{j}.dwconv.weight" in sd:
        y = F.conv2d(y, sd[p + f"downop.{j}.dwconv.weight"], stride=2, padding=1, groups=out.shape[1])
        y = _bn(sd, p + f"downop.{j}.bn.", y)
        j += 1
        if p + f"downop.{j}.dwconv.weight" in sd:
            y = F.relu(y)
    if j:
        return y
    return F.adaptive_avg_pool2d(out, 1 if extent == 0 else out.shape[-1] // extent)


def bw_forward(sd, x, extent):
    """BayesWatch's WideResNet forward in eval mode, on their state dict keys."""
    out = F.conv2d(x, sd["conv1.weight"], padding=1)
    for K in (1, 2, 3):
        I = 0
        while f"block{K}.layer.{I}.conv1.weight" in sd:
            p = f"block{K}.layer.{I}."
            stride = 2 if K > 1 and I == 0 else 1
            pre = F.relu(_bn(sd, p + "bn1.", out))
            y = F.relu(_bn(sd, p + "bn2.", F.conv2d(pre, sd[p + "conv1.weight"], stride=stride, padding=1)))
            y = F.conv2d(y, sd[p + "conv2.weight"], padding=1)
            g = _bw_gather(sd, p, y, extent)
            y = y * torch.sigmoid(F.interpolate(g, y.shape[-1]))
            short = F.conv2d(pre, sd[p + "convShortcut.weight"], stride=stride) if p + "convShortcut.weight" in sd else out
            out = short + y
            I += 1
    out = F.avg_pool2d(F.relu(_bn(sd, "bn1.", out)), 8).flatten(1)
    return F.linear(out, sd["fc.weight"], sd["fc.bias"])


# ------------------------------------------------------------------ helpers
def random_wrn(name, variant, extent, seed=0):
    """A WRN with every parameter and BN statistic random (so a wrong key map shows)."""
    torch.manual_seed(seed)
    m = models.create_model(name, variant=variant, extent=extent, fused=False)
    with torch.no_grad():
        for k, t in m.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in k else torch.randn_like(t) * 0.3)
    return m.eval()


def logits(model, x, fused):
    models.set_fused(model, fused)
    with torch.no_grad():
        return model(x)


CASES = [("theta-", 0), ("theta-", 2), ("theta-", 8), ("theta", 0), ("theta", 2), ("theta", 4), ("theta", 8)]


@pytest.mark.parametrize("variant,extent", CASES)
def test_bayeswatch_logits_equal_eager_and_fused(variant, extent):
    src = random_wrn("ge_wrn_16_1", variant, extent).double()
    bw = to_bayeswatch(src.state_dict())
    assert any(".layer.1." in k for k in bw) and "bn1.weight" in bw
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    want = bw_forward(bw, x, extent)
    dst = models.create_model("ge_wrn_16_1", variant=variant, extent=extent).double().eval()
    dst.load_state_dict(models.convert_state_dict(bw, model=dst), strict=True)
    for fused in (False, True):
        torch.testing.assert_close(logits(dst, x, fused), want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(logits(src, x, False), want, rtol=1e-10, atol=1e-10)


def test_every_container_format_gives_the_same_state_dict():
    src = random_wrn("ge_wrn_16_1", "theta", 4)
    ours = src.state_dict()
    bw = to_bayeswatch(ours)
    containers = {
        "bayeswatch bare": bw,
        "bayeswatch train.py": {"epoch": 200, "state_dict": bw, "error_history": [5.2]},
        "seed DDP bare": {"module." + k: v for k, v in bw.items()},
        "seed DDP checkpoint": {"epoch": 300, "arch": "wrn", "best_acc1": 94.7, "optimizer": {},
                                "state_dict": {"module." + k: v for k, v in bw.items()}},
        "ours": ours,
        "ours train.py": {"state_dict": ours, "epoch": 3, "args": {}},
        "ours compiled in DDP": {"module._orig_mod." + k: v for k, v in ours.items()},
    }
    for name, obj in containers.items():
        got = models.convert_state_dict(obj, model=src)
        assert list(got) == list(ours), name
        for k in ours:
            assert torch.equal(got[k], ours[k]), (name, k)
        want = "genet-ops" if name.startswith("ours") else "bayeswatch"
        assert models.source_format(obj) == want, name


def test_missing_batchnorm_counters_are_filled():
    src = random_wrn("ge_wrn_10_1", "theta", 2)
    bw = {k: v for k, v in to_bayeswatch(src.state_dict()).items() if not k.endswith("num_batches_tracked")}
    src.load_state_dict(models.convert_state_dict(bw, model=src), strict=True)


def test_bayeswatch_theta_plus_is_refused_saying_what_differs():
    src = random_wrn("ge_wrn_10_1", "theta+", 2)
    bw = {k: v for k, v in to_bayeswatch(src.state_dict()).items() if not re.search(r"mlp\.\d\.bias$", k)}
    assert any(k.endswith("mlp.0.weight") for k in bw)
    with pytest.raises(ValueError, match=r"no biases.*no ReLU between the gather and the first conv"):
        models.convert_state_dict(bw)
    mlp_only = {k: v for k, v in bw.items() if "downop" not in k}  # their mlp=True, extra_params=False
    with pytest.raises(ValueError, match="parameter-free gather"):
        models.convert_state_dict(mlp_only)


def test_unmappable_and_mismatching_checkpoints_name_keys_and_flags():
    src = random_wrn("ge_wrn_16_1", "theta", 4)
    bw = to_bayeswatch(src.state_dict())
    with pytest.raises(ValueError, match=r"no counterpart.*block2\.layer\.0\.squeeze\.weight.*the other keys fit "
                                         r"--depth 16 --width 1 --variant theta --extent 4"):
        models.convert_state_dict({**bw, "block2.layer.0.squeeze.weight": torch.zeros(1)})
    theta_minus = models.create_model("ge_wrn_16_1", variant="theta-", extent=4)
    with pytest.raises(ValueError) as e:
        models.convert_state_dict(bw, model=theta_minus)
    msg = str(e.value)
    assert "in the checkpoint only: ['block1.0.ge.gather.conv1.weight'" in msg
    assert "--depth 16 --width 1 --variant theta --extent 4, 10 classes" in msg
    shallower = models.create_model("ge_wrn_10_1", variant="theta", extent=4)
    with pytest.raises(ValueError, match=r"in the checkpoint only: \['block1\.1\."):
        models.convert_state_dict(bw, model=shallower)
    wider = models.create_model("ge_wrn_16_2", variant="theta", extent=4)
    with pytest.raises(ValueError, match=r"shapes differ.*block1\.0\.conv1\.weight \(16, 16, 3, 3\) vs \(32, 16, 3, 3\)"):
        models.convert_state_dict(bw, model=wider)
    glob = models.convert_state_dict(to_bayeswatch(random_wrn("ge_wrn_10_1", "theta", 0).state_dict()))
    assert models.infer_wrn_flags(glob) == {"depth": 10, "width": 1, "num_classes": 10, "variant": "theta",
                                            "extent": 0, "img_size": 32}
    with pytest.raises(ValueError, match="expected a state dict"):
        models.convert_state_dict([1, 2])
    with pytest.raises(ValueError, match="empty"):
        models.convert_state_dict({"state_dict": {}})


# ----------------------------------------------------------------- train.py
def test_train_evaluates_a_seed_checkpoint_like_our_own(tmp_path):
    """--evaluate --resume on the seed's DDP checkpoint of a trained model gives exactly
    the accuracy of our own checkpoint of the same weights; a checkpoint that does not
    fit stops with the flags that would fit."""
    run = train.main([*TINY, "--epochs", "1", "--batch-size", "64", "--max-train-samples", "256",
                      "--output-dir", str(tmp_path / "run")])
    ours = torch.load(tmp_path / "run" / checkpoint.LAST, weights_only=False)
    seed = {"epoch": 1, "arch": "wrn", "best_acc1": 0.0,
            "state_dict": {"module." + k: v for k, v in to_bayeswatch(ours["state_dict"]).items()}}
    torch.save(seed, tmp_path / "seed.pth.tar")
    ev = {}
    for name in ("run/" + checkpoint.LAST, "seed.pth.tar"):
        ev[name] = train.main([*TINY, "--evaluate", "--resume", str(tmp_path / name),
                               "--output-dir", str(tmp_path / "ev")])
    a, b = ev.values()
    assert a["val_images"] == b["val_images"] == 359
    assert a["correct1"] == b["correct1"] == run["correct1"] and a["acc1"] == b["acc1"]
    with pytest.raises(SystemExit, match=r"--depth 10 --width 1 --variant theta- \(any --extent"):
        train.main([*TINY, "--variant", "theta", "--extent", "2", "--evaluate", "--resume",
                    str(tmp_path / "seed.pth.tar"), "--output-dir", str(tmp_path / "ev2")])
    with pytest.raises(SystemExit, match=r"trained with --variant theta- --extent 0; pass those"):
        train.main([*TINY, "--extent", "2", "--evaluate", "--resume", str(tmp_path / "run" / checkpoint.LAST),
                    "--output-dir", str(tmp_path / "ev3")])
