"""genet_ops.GatherExcite: fused == eager (outputs, input and parameter grads, BN
running stats) for every variant and extent, state_dict interchange, parameter counts,
errors for bad arguments."""
import copy

import pytest
import torch

import genet_ops
from genet_ops import GatherExcite

VARIANTS = {"theta-": {}, "theta": {"extra_params": True}, "theta+": {"extra_params": True, "use_mlp": True}}
EXTENTS = [0, 2, 4, 8]


def make_pair(variant, extent, channels, size, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    eager = GatherExcite(channels, feat_size=size, extent=extent, fused=False, **VARIANTS[variant]).to(dtype)
    fused = copy.deepcopy(eager)
    fused.fused = True
    return eager, fused


def run(m, x, res, dy):
    x = x.clone().requires_grad_()
    res = None if res is None else res.clone().requires_grad_()
    y = m(x, res)
    inputs = [x] + ([res] if res is not None else []) + list(m.parameters())
    grads = torch.autograd.grad(y, inputs, dy)
    return y, grads


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("extent", EXTENTS)
@pytest.mark.parametrize("size", [16, 15])  # 15: partial tiles at the border
def test_fused_matches_eager(variant, extent, size):
    # float64: the two paths compute the same math in another order -> ~1e-13.
    eager, fused = make_pair(variant, extent, 24, size)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 24, size, size, generator=gen, dtype=torch.float64)
    res = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    dy = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    for r in (None, res):
        ye, ge = run(eager, x, r, dy)
        yf, gf = run(fused, x, r, dy)
        torch.testing.assert_close(yf, ye, rtol=1e-10, atol=1e-10)
        for a, b in zip(gf, ge):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    # BatchNorm running statistics evolve identically.
    for (k, a), (_, b) in zip(fused.state_dict().items(), eager.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=k)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fused_matches_eager_float32_channels_last(variant):
    eager, fused = make_pair(variant, 4, 16, 16, dtype=torch.float32)
    x = torch.randn(2, 16, 16, 16).contiguous(memory_format=torch.channels_last)
    res = torch.randn(2, 16, 16, 16)
    dy = torch.randn(2, 16, 16, 16)
    ye, ge = run(eager, x, res, dy)
    yf, gf = run(fused, x, res, dy)
    torch.testing.assert_close(yf, ye, rtol=1e-5, atol=1e-5)
    for a, b in zip(gf, ge):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_autocast_bfloat16_with_float32_residual(variant):
    # Under autocast a conv output is bf16 while the shortcut may be fp32: the module
    # casts x, the residual (and g) to their promoted dtype for the op, as eager promotes.
    eager, fused = make_pair(variant, 0, 8, 8, dtype=torch.float32)
    x = torch.randn(2, 8, 8, 8).bfloat16()
    res = torch.randn(2, 8, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yf = fused(x, res)
        ye = eager(x, res)
    assert yf.dtype == ye.dtype == torch.float32
    torch.testing.assert_close(yf.float(), ye.float(), rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("extent", EXTENTS)
def test_state_dict_moves_between_fused_and_eager(variant, extent):
    a = GatherExcite(12, feat_size=8, extent=extent, fused=True, **VARIANTS[variant]).double()
    b = GatherExcite(12, feat_size=8, extent=extent, fused=False, **VARIANTS[variant]).double()
    assert list(a.state_dict()) == list(b.state_dict())
    for p in a.parameters():  # something other than the init
        torch.nn.init.normal_(p)
    b.load_state_dict(a.state_dict(), strict=True)
    a.eval(), b.eval()
    x = torch.randn(3, 12, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(a(x), b(x), rtol=1e-10, atol=1e-10)
    GatherExcite.set_fused(b, True)
    assert b.fused


def test_parameter_counts():
    C = 64
    assert sum(p.numel() for p in GatherExcite(C, extent=0).parameters()) == 0
    assert sum(p.numel() for p in GatherExcite(C, extent=4).parameters()) == 0
    # global θ: depthwise conv with kernel = feat_size (no bias) + BN (weight, bias)
    assert sum(p.numel() for p in GatherExcite(C, feat_size=16, extra_params=True).parameters()) == C * 256 + 2 * C
    # extent e: log2(e) depthwise 3x3 convs + BN each
    for e, n in [(2, 1), (4, 2), (8, 3)]:
        m = GatherExcite(C, extent=e, extra_params=True)
        assert sum(p.numel() for p in m.parameters()) == n * (9 * C + 2 * C)
    # θ⁺ adds C -> C/16 -> C 1x1 convs with bias
    m = GatherExcite(C, extent=2, extra_params=True, use_mlp=True)
    assert sum(p.numel() for p in m.mlp.parameters()) == (C * 4 + 4) + (4 * C + C)
    assert GatherExcite(C, extent=2, extra_params=True, use_mlp=True, rd_channels=7).mlp.fc1.out_channels == 7


def test_structure_of_the_learned_gather():
    m = GatherExcite(8, extent=8, extra_params=True, use_mlp=True)
    names = [n for n, _ in m.gather.named_children()]
    assert names == ["conv1", "bn1", "act1", "conv2", "bn2", "act2", "conv3", "bn3"]  # no ReLU after the last
    for i in (1, 2, 3):
        conv = getattr(m.gather, f"conv{i}")
        assert conv.kernel_size == (3, 3) and conv.stride == (2, 2) and conv.padding == (1, 1)
        assert conv.groups == 8 and conv.bias is None
    assert [type(c).__name__ for c in m.mlp] == ["ReLU", "Conv2d", "ReLU", "Conv2d"]
    g = m.gather_g(torch.randn(2, 8, 13, 13))
    assert g.shape == (2, 8, 2, 2)  # ceil(13 / 8)
    glob = GatherExcite(8, feat_size=(6, 5), extra_params=True)
    assert glob.gather.conv1.kernel_size == (6, 5) and glob.gather.conv1.padding == (0, 0)
    assert glob.gather_g(torch.randn(2, 8, 6, 5)).shape == (2, 8, 1, 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(extent=3, extra_params=True), "power of two"),
        (dict(extent=1, extra_params=True), "power of two"),
        (dict(extent=0, extra_params=True), "feat_size"),
        (dict(extent=-1), "extent"),
        (dict(extent=2.0), "extent"),
        (dict(use_mlp=True), "extra_params"),
        (dict(extent=2, extra_params=True, use_mlp=True, rd_ratio=0), "rd_ratio"),
        (dict(extent=0, extra_params=True, feat_size=0), "feat_size"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GatherExcite(16, **kwargs)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="channels"):
        GatherExcite(0)
    m = GatherExcite(8, feat_size=8, extra_params=True)
    with pytest.raises(ValueError, match="feat_size"):
        m(torch.randn(2, 8, 16, 16))
    with pytest.raises(ValueError, match=r"\(N, 8, H, W\)"):
        m(torch.randn(2, 4, 8, 8))
    with pytest.raises(ValueError, match="residual"):
        GatherExcite(8)(torch.randn(2, 8, 4, 4), residual=torch.randn(2, 8, 4, 3))


def test_exported_and_repr():
    assert genet_ops.GatherExcite is GatherExcite and "GatherExcite" in genet_ops.__all__
    r = repr(GatherExcite(8, extent=4, extra_params=True, use_mlp=True, fused=False))
    assert "theta+" in r and "extent=4" in r and "fused=False" in r
