"""genet_ops.GatherExcite takes timm's constructor arguments (act_layer, norm_layer,
gate_layer, add_maxpool, device, dtype) with timm's meaning, runs the fused ops only for
a sigmoid gate without add_maxpool, and takes numpy integers for extent (never bool).
Where timm's GatherExcite computes the same function (the parameter-free global gather,
with and without add_maxpool, any gate) the outputs are compared with timm's own module."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import genet_ops.module
from genet_ops import GatherExcite

timm_layers = pytest.importorskip("timm.layers", reason="timm (requirements.txt) is not installed")

F64 = dict(dtype=torch.float64)


@pytest.fixture
def op_calls(monkeypatch):
    """Counts calls of the fused ops from inside GatherExcite."""
    calls = []
    for name in ("gather_excite", "excite"):
        real = getattr(genet_ops.module, name)
        monkeypatch.setattr(genet_ops.module, name, lambda *a, _r=real, _n=name, **k: calls.append(_n) or _r(*a, **k))
    return calls


@pytest.mark.parametrize("gate", ["sigmoid", "hard_sigmoid", "tanh"])
@pytest.mark.parametrize("add_maxpool", [False, True])
def test_global_parameter_free_equals_timm(gate, add_maxpool, op_calls):
    x = torch.randn(3, 8, 7, 5, **F64)
    ref = timm_layers.GatherExcite(8, extent=0, use_mlp=False, add_maxpool=add_maxpool, gate_layer=gate)
    ours = GatherExcite(8, extent=0, add_maxpool=add_maxpool, gate_layer=gate)
    want = ref(x)
    for fused in (True, False):
        ours.fused = fused
        op_calls.clear()
        torch.testing.assert_close(ours(x), want, rtol=1e-12, atol=1e-12)
        assert op_calls == (["gather_excite"] if fused and gate == "sigmoid" and not add_maxpool else [])
    assert ours.fusable == (gate == "sigmoid" and not add_maxpool)


def test_tiled_add_maxpool_is_mean_plus_max_over_our_tiles():
    x = torch.randn(2, 4, 7, 6, **F64)
    m = GatherExcite(4, extent=3, add_maxpool=True)
    assert not m.fusable and "add_maxpool=True" in repr(m)
    for i, j in [(0, 0), (6, 5), (4, 2)]:
        t = x[:, :, i // 3 * 3: i // 3 * 3 + 3, j // 3 * 3: j // 3 * 3 + 3]
        g = 0.5 * t.mean((2, 3)) + 0.5 * t.amax((2, 3))
        torch.testing.assert_close(m(x)[:, :, i, j], x[:, :, i, j] * torch.sigmoid(g))
    # timm's tiled θ⁻ pools overlapping windows: a different function (README, "timm").
    ref = timm_layers.GatherExcite(4, extent=2, use_mlp=False)
    assert not torch.allclose(ref(x), GatherExcite(4, extent=2)(x))


@pytest.mark.parametrize("gate", ["sigmoid", nn.Sigmoid, "hard_sigmoid", nn.Hardsigmoid])
def test_learned_gather_with_any_gate_fused_equals_eager(gate, op_calls):
    torch.manual_seed(0)
    m = GatherExcite(8, extent=4, extra_params=True, use_mlp=True, act_layer="silu", gate_layer=gate, **F64)
    x = torch.randn(2, 8, 9, 9, **F64, requires_grad=True)
    out = {}
    for fused in (False, True):
        m.fused = fused
        op_calls.clear()
        y = m(x)
        out[fused] = (y, torch.autograd.grad(y.square().sum(), [x, *m.parameters()]))
        sigmoid = gate in ("sigmoid", nn.Sigmoid)
        assert op_calls == (["excite"] if fused and sigmoid else [])
    torch.testing.assert_close(out[True], out[False], rtol=1e-10, atol=1e-10)
    gate_type = nn.Sigmoid if gate in ("sigmoid", nn.Sigmoid) else nn.Hardsigmoid
    assert type(m.gate) is gate_type and type(m.gather.act1) is nn.SiLU and type(m.mlp.act1) is nn.SiLU


def test_timm_sigmoid_class_is_fusable():
    assert GatherExcite(4, gate_layer=timm_layers.activations.Sigmoid).fusable


def test_norm_layer_device_dtype():
    m = GatherExcite(6, extent=2, extra_params=True, norm_layer=None)
    assert [n for n, _ in m.gather.named_children()] == ["conv1"]
    m = GatherExcite(6, extent=4, extra_params=True, norm_layer=nn.InstanceNorm2d)
    assert [type(c).__name__ for c in m.gather.children()] == ["Conv2d", "InstanceNorm2d", "ReLU", "Conv2d",
                                                              "InstanceNorm2d"]
    m = GatherExcite(6, feat_size=(5, 4), extra_params=True, use_mlp=True, dtype=torch.float64, device="meta")
    assert {(p.dtype, p.device.type) for p in m.state_dict().values() if p.is_floating_point()} == {
        (torch.float64, "meta")}
    # the defaults keep the state_dict keys checkpoints already have
    assert list(GatherExcite(6, extent=4, extra_params=True, use_mlp=True).state_dict()) == [
        f"gather.{k}" for k in ("conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                                "bn1.num_batches_tracked", "conv2.weight", "bn2.weight", "bn2.bias",
                                "bn2.running_mean", "bn2.running_var", "bn2.num_batches_tracked")
    ] + ["mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]


def test_integer_like_extent_and_bad_layers():
    for v in (np.int64(4), np.int32(4), torch.tensor(4)):
        m = GatherExcite(np.int64(8), extent=v)
        assert m.extent == 4 and type(m.extent) is int and m.channels == 8 and type(m.channels) is int
    assert GatherExcite(8, feat_size=np.int64(5), extra_params=True).feat_size == (5, 5)
    for bad in (True, False, 2.0, "4", np.float64(4)):
        with pytest.raises(ValueError, match="extent"):
            GatherExcite(8, extent=bad)
    with pytest.raises(ValueError, match="channels"):
        GatherExcite(True)
    with pytest.raises(ValueError, match="gate_layer 'nope'"):
        GatherExcite(8, gate_layer="nope")
    with pytest.raises(ValueError, match="act_layer must be a layer class"):
        GatherExcite(8, act_layer=nn.ReLU())
    with pytest.raises(ValueError, match="norm_layer must be a layer class such as nn.BatchNorm2d"):
        GatherExcite(8, extent=2, extra_params=True, norm_layer="batchnorm")
