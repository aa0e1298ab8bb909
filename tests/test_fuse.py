"""genet_ops.fuse_excite: sigmoid-gated SE modules of torchvision and timm models run the
fused excite op with the same outputs and gradients as eager (float64, CPU), the same
parameters and state_dict keys; other gates are left alone and reported."""
import copy

import pytest
import torch
import torch.nn as nn
import torchvision

import genet_ops
import genet_ops.fuse
from oracle import GenetOpLog

timm = pytest.importorskip("timm", reason="timm (requirements.txt) is not installed")
from timm.layers import EffectiveSEModule, SEModule  # noqa: E402
from timm.models._efficientnet_blocks import SqueezeExcite  # noqa: E402


@pytest.fixture
def excite_calls(monkeypatch):
    calls = []
    real = genet_ops.fuse.excite
    monkeypatch.setattr(genet_ops.fuse, "excite", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    return calls


def randomize(model):
    """Random weights and BN statistics, so that every layer's part in g shows."""
    torch.manual_seed(0)
    with torch.no_grad():
        for k, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in k else torch.randn_like(t) * 0.2)
    return model


LEAN, INPUT = "genet_ops::excite_lean", "genet_ops::excite"


def check_fused_equals_eager(model, x, expect_converted, expect_ops, save="auto"):
    """fuse_excite(model, save) converts expect_converted, and the fused model runs exactly
    the ops in expect_ops (LEAN: kept the output, INPUT: kept the input) with eager's
    outputs and gradients."""
    eager = randomize(model).double().eval()
    fused = copy.deepcopy(eager)
    params_before = [id(p) for p in fused.parameters()]
    keys_before = list(fused.state_dict())
    converted = genet_ops.fuse_excite(fused, save=save)
    assert converted == expect_converted
    assert [id(p) for p in fused.parameters()] == params_before and list(fused.state_dict()) == keys_before
    assert genet_ops.fuse_excite(fused) == []  # already fused
    out = {}
    for name, m in (("eager", eager), ("fused", fused)):
        xi = x.clone().requires_grad_()
        with GenetOpLog() as log:
            y = m(xi)
        dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
        out[name] = (y, *torch.autograd.grad(y, [xi, *m.parameters()], dy))
    assert set(log.ops) == set(expect_ops), f"fused model ran {sorted(set(log.ops))}, expected {expect_ops}"
    torch.testing.assert_close(out["fused"], out["eager"], rtol=1e-10, atol=1e-10)
    return fused


def se_names(model, cls):
    return [n for n, m in model.named_modules() if type(m) is cls]


@pytest.mark.parametrize("name", ["efficientnet_b0", "regnet_y_400mf"])
def test_torchvision_models(name, excite_calls):
    model = getattr(torchvision.models, name)(num_classes=10)
    expect = se_names(model, torchvision.ops.SqueezeExcitation)
    assert len(expect) >= 10
    fused = check_fused_equals_eager(model, torch.randn(2, 3, 32, 32, dtype=torch.float64), expect, [LEAN])
    assert {fused.get_submodule(n).genet_save for n in expect} == {"auto"}  # MBConv / RegNet blocks: safe
    assert excite_calls and set(excite_calls) == {0}  # extent 0 (global) every time
    assert all(isinstance(fused.get_submodule(n), torchvision.ops.SqueezeExcitation) for n in expect)


def test_mobilenet_v3_hardsigmoid_left_alone_and_reported(excite_calls):
    model = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
    n_se = len(se_names(model, torchvision.ops.SqueezeExcitation))
    with pytest.warns(UserWarning, match=rf"{n_se} SE module\(s\) left alone.*gate Hardsigmoid"):
        assert genet_ops.fuse_excite(model) == []
    model(torch.randn(1, 3, 32, 32))
    assert excite_calls == []


def test_timm_modules_and_se_resnet(excite_calls):
    blocks = nn.Sequential(
        SEModule(16, rd_ratio=0.25, add_maxpool=True, norm_layer=nn.BatchNorm2d),
        SqueezeExcite(16, rd_ratio=0.25, act_layer=nn.SiLU),
        EffectiveSEModule(16, gate_layer="sigmoid"),
        EffectiveSEModule(16),  # default gate hard_sigmoid: left alone
    )
    with pytest.warns(UserWarning, match=r"3 \(EffectiveSEModule, gate Hardsigmoid\)"):
        # Bare SE modules: no known block around them, so they keep their input.
        check_fused_equals_eager(blocks, torch.randn(2, 16, 5, 7, dtype=torch.float64), ["0", "1", "2"], [INPUT])
    assert len(excite_calls) == 3
    se = timm.create_model("seresnet18", num_classes=10, pretrained=False)
    expect = se_names(se, SEModule)
    assert len(expect) == 8
    # x = self.se(x); x += shortcut: the output is changed in place, so 'auto' keeps the input.
    check_fused_equals_eager(se, torch.randn(2, 3, 32, 32, dtype=torch.float64), expect, [INPUT])
    eff = timm.create_model("efficientnet_b0", num_classes=10, pretrained=False)
    expect = se_names(eff, SqueezeExcite)
    assert len(expect) == 16
    check_fused_equals_eager(eff, torch.randn(2, 3, 16, 16, dtype=torch.float64), expect, [LEAN])


def test_timm_regnet_keeps_outputs():
    model = timm.create_model("regnety_002", num_classes=10, pretrained=False)
    expect = se_names(model, SEModule)
    assert len(expect) == 13
    check_fused_equals_eager(model, torch.randn(2, 3, 32, 32, dtype=torch.float64), expect, [LEAN])


def test_save_modes_override_the_allow_list():
    blocks = nn.Sequential(SEModule(16, rd_ratio=0.25), SqueezeExcite(16, rd_ratio=0.25))
    check_fused_equals_eager(blocks, torch.randn(2, 16, 5, 7, dtype=torch.float64), ["0", "1"], [LEAN], save="output")
    model = torchvision.models.regnet_y_400mf(num_classes=10)
    check_fused_equals_eager(model, torch.randn(2, 3, 32, 32, dtype=torch.float64),
                             se_names(model, torchvision.ops.SqueezeExcitation), [INPUT], save="input")
    with pytest.raises(ValueError, match="fuse_excite: save must be one of auto, output, input"):
        genet_ops.fuse_excite(nn.Sequential(), save="outputs")


def test_output_changed_in_place_raises_naming_save_input():
    """timm's SE-ResNet adds the shortcut into the SE output in place: forced to keep that
    output, backward must refuse with the way out, never give a wrong gradient."""
    torch.manual_seed(0)
    se = timm.create_model("seresnet18", num_classes=10, pretrained=False)
    genet_ops.fuse_excite(se, save="output")
    loss = se(torch.randn(2, 3, 32, 32)).sum()
    with pytest.raises(RuntimeError, match=r"changed in place.*save='input'.*fuse_excite\(model, save='input'\)"):
        loss.backward()


def test_root_module_and_recognition_by_type():
    se = torchvision.ops.SqueezeExcitation(8, 2)
    assert genet_ops.fuse_excite(se) == [""] and isinstance(se, torchvision.ops.SqueezeExcitation)

    class SqueezeExcitation(nn.Module):  # same name, another type: not touched
        def forward(self, x):
            return x

    assert genet_ops.fuse_excite(nn.Sequential(SqueezeExcitation())) == []
