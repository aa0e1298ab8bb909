"""models/: parameter counts pinned to the seed's architecture, block structure,
fused == eager whole-model, checkpoints interchange, the factory."""
import copy

import pytest
import torch
import torchvision

import models
from genet_ops import GatherExcite


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_wrn_16_8_parameter_counts_match_the_seed():
    assert n_params(models.create_model("ge_wrn_16_8", variant="theta-", extent=0)) == 10_961_370
    assert n_params(models.create_model("ge_wrn_16_8", variant="theta", extent=0)) == 11_423_706


def test_resnet50_parameter_count_matches_torchvision_for_theta_minus():
    assert n_params(models.create_model("ge_resnet50", variant="theta-")) == n_params(torchvision.models.resnet50())


def test_wrn_has_ge_on_every_block_with_the_right_feat_size():
    m = models.create_model("ge_wrn_16_8", variant="theta", extent=0)
    ges = [mod for mod in m.modules() if isinstance(mod, GatherExcite)]
    assert [g.feat_size for g in ges] == [(32, 32)] * 2 + [(16, 16)] * 2 + [(8, 8)] * 2
    assert [g.channels for g in ges] == [128, 128, 256, 256, 512, 512]
    r = models.create_model("ge_resnet50", variant="theta", extent=0, img_size=224)
    assert sorted({g.feat_size for g in r.modules() if isinstance(g, GatherExcite)}) == [(7, 7), (14, 14), (28, 28), (56, 56)]


@pytest.mark.parametrize("name, size", [("ge_wrn_10_2", 32), ("ge_resnet50", 32)])
@pytest.mark.parametrize("variant, extent", [("theta-", 0), ("theta-", 4), ("theta", 0), ("theta", 8), ("theta+", 2)])
def test_fused_model_matches_eager(name, size, variant, extent):
    torch.manual_seed(0)
    kw = dict(img_size=size, num_classes=10)
    eager = models.create_model(name, variant=variant, extent=extent, fused=False, **kw).double()
    fused = copy.deepcopy(eager)
    models.set_fused(fused, True)
    assert all(g.fused for g in fused.modules() if isinstance(g, GatherExcite))
    if name.startswith("ge_resnet"):
        # Train-mode BN over a batch of 2 at 2x2 and 1x1 (stages 3-4 of a 32x32 input) is
        # chaotic: any 1e-16 difference grows ~10x per block (float64: 1e-16 at layer1,
        # 3e-2 at the output). Frozen BN keeps the comparison well conditioned.
        eager.eval(), fused.eval()
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    outs = []
    for m in (eager, fused):
        xx = x.clone().requires_grad_()
        y = m(xx)
        grads = torch.autograd.grad(y.square().sum(), [xx] + list(m.parameters()))
        outs.append((y, grads))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-7, atol=1e-7)
    # Gradients: relative to each tensor's largest entry (BN over a batch of 2 at 1x1
    # makes some of them differences of nearly equal numbers).
    for a, b in zip(outs[1][1], outs[0][1]):
        scale = b.abs().max().item() + 1e-30
        assert (a - b).abs().max().item() <= 1e-6 * scale


def test_checkpoint_moves_between_fused_and_eager_models():
    a = models.create_model("ge_wrn_10_1", variant="theta+", extent=2, fused=True).eval()
    b = models.create_model("ge_wrn_10_1", variant="theta+", extent=2, fused=False).eval()
    assert list(a.state_dict()) == list(b.state_dict())
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(a(x), b(x), rtol=1e-5, atol=1e-5)


def test_wrn_block_is_pre_activation_with_fused_add():
    m = models.create_model("ge_wrn_10_1")
    blk = m.block2[0]
    assert not blk.equal_in_out and blk.shortcut.stride == (2, 2)
    assert isinstance(blk.ge, GatherExcite) and blk.ge.variant == "theta-"
    assert models.create_model("ge_wrn_10_2").block1[0].shortcut is not None  # 16 -> 32 channels
    assert models.create_model("ge_wrn_10_1").block1[0].equal_in_out
    assert models.create_model("ge_wrn_16_1").block1[1].equal_in_out


def test_variant_none_and_aliases():
    assert not any(isinstance(g, GatherExcite) for g in models.create_model("ge_wrn_10_1", variant="none").modules())
    assert models.canonical_variant("θ⁺") == "theta+" and models.canonical_variant("theta_minus") == "theta-"


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("ge_wrn_15_8", {}, "6n \\+ 4"),
        ("resnet50", {}, "unknown model"),
        ("ge_wrn_16_8", {"variant": "gamma"}, "unknown GE variant"),
        ("ge_wrn_16_8", {"variant": "theta", "extent": 3}, "power of two"),
    ],
)
def test_factory_errors(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.create_model(name, **kwargs)


def test_forward_shapes_and_channels_last():
    m = models.create_model("ge_wrn_10_2", variant="theta", extent=4, num_classes=7)
    x = torch.randn(3, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    assert m.to(memory_format=torch.channels_last)(x).shape == (3, 7)
