"""The output-keeping (lean) ops inside the models: exact gradients against eager (float64),
outputs changed in place, and the bytes autograd keeps (counts, not timings)."""
import copy
import os
import subprocess
import sys

import pytest
import torch

import models
from genet_ops import GatherExcite
from oracle import ROOT, GenetOpLog

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_memory  # noqa: E402


def small_resnet(**kw):
    # layer1 holds a projection block and an identity block; the others one projection each
    return models.GEResNet((2, 1, 1, 1), num_classes=10, img_size=32, **kw)


def grads_of(model, x):
    xx = x.clone().requires_grad_()
    with GenetOpLog() as log:
        y = model(xx)
        grads = torch.autograd.grad(y.square().sum(), [xx, *model.parameters()])
    return y, grads, log.ops


@pytest.mark.parametrize("make, variant, extent, lean_op", [
    (lambda **kw: models.create_model("ge_wrn_16_1", num_classes=10, **kw), "theta-", 0, "gather_excite_lean"),
    (lambda **kw: models.create_model("ge_wrn_16_1", num_classes=10, **kw), "theta+", 2, "excite_lean"),
    (small_resnet, "theta-", 0, "gather_excite_lean"),
    (small_resnet, "theta", 0, "excite_lean"),
])
def test_lean_model_gradients_equal_eager(make, variant, extent, lean_op):
    torch.manual_seed(0)
    eager = make(variant=variant, extent=extent, fused=False).double()
    lean = copy.deepcopy(eager)
    models.set_fused(lean, True)
    if isinstance(eager, models.GEResNet):
        eager.eval(), lean.eval()  # train-mode BN at 1x1 is chaotic (see test_models)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    y0, g0, _ = grads_of(eager, x)
    y1, g1, ops = grads_of(lean, x)
    assert set(ops) == {f"genet_ops::{lean_op}", "genet_ops::excite_lean_backward"}
    torch.testing.assert_close(y1, y0, rtol=1e-10, atol=1e-10)
    for a, b in zip(g1, g0):
        assert (a - b).abs().max().item() <= 1e-9 * (b.abs().max().item() + 1e-30)


def test_models_keep_their_parameters_with_any_save():
    for make in (small_resnet, lambda **kw: models.create_model("ge_wrn_10_1", **kw)):
        keys = {s: list(make(ge_save=s).state_dict()) for s in ("auto", "output", "input")}
        assert keys["auto"] == keys["output"] == keys["input"]


@pytest.mark.parametrize("learned", [False, True])
def test_output_changed_in_place(learned):
    """save='output' with the output (or residual) changed in place afterwards: backward
    raises the error naming save='input'; save='input' gives eager's gradients. (With
    relu=True the output is kept in every mode, as an eager ReLU keeps it, so only the
    residual is changed there.)"""
    torch.manual_seed(0)
    kw = dict(extra_params=True, extent=2) if learned else dict(extent=0)
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    r = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    grads = {}
    base = GatherExcite(8, **kw).double()
    for save in ("output", "input", "eager"):
        ge = copy.deepcopy(base)
        ge.fused, ge.save = save != "eager", "auto" if save == "eager" else save
        for change in ("output", "residual"):
            xx, rr = x.clone().requires_grad_(), r.clone().requires_grad_()
            rk = rr * 1.0  # a non-leaf, so it may be changed in place
            y = ge(xx, residual=rk, relu=change == "residual")
            (y if change == "output" else rk).mul_(3)
            loss = y.square().sum()
            if save == "output":
                with pytest.raises(RuntimeError, match=r"changed in place.*GatherExcite\(\.\.\., save='input'\)"):
                    loss.backward()
            else:
                grads[save, change] = torch.autograd.grad(loss, [xx, rr])
    for change in ("output", "residual"):
        torch.testing.assert_close(grads["input", change], grads["eager", change], rtol=1e-10, atol=1e-10)


def saved(model, x):
    rec = bench_memory.SavedBytes(model, set())
    with rec:
        model(x).sum()
    return rec.total


def test_saved_bytes_are_the_floor():
    """Lean GE-WRN keeps, over the same network without GE, exactly the residuals of the
    projection blocks (1x1 conv outputs nobody else keeps) and the tile means g; the
    input-keeping ops keep every block's x instead."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    nets = {s: models.create_model("ge_wrn_16_1", variant="none" if s == "none" else "theta-", ge_save=s)
            for s in ("none", "auto", "input")}
    got = {s: saved(m, x) for s, m in nets.items()}
    blocks = [b for stage in (nets["auto"].block1, nets["auto"].block2, nets["auto"].block3) for b in stage]
    shapes, s = [], 32
    for b in blocks:
        s //= b.conv1.stride[0]
        shapes.append((b.conv1.out_channels, s, not b.equal_in_out))
    proj = sum(2 * c * h * h * 4 for c, h, p in shapes if p)
    g = sum(2 * c * 4 for c, _, _ in shapes)
    x_bytes = sum(2 * c * h * h * 4 for c, h, _ in shapes)
    assert sum(p for *_, p in shapes) == 2 and len(shapes) == 6  # identity blocks in every stage
    assert got["auto"] - got["none"] == proj + g
    assert got["input"] - got["none"] == x_bytes


def test_saved_bytes_resnet_relu_keeps_relu_output():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    nets = {s: small_resnet(variant="none" if s == "none" else "theta-", ge_save=s) for s in ("none", "auto")}
    got = {s: saved(m, x) for s, m in nets.items()}
    # each block's residual is a projection except layer1[1]; sizes after the stem: 8, 8, 4, 2, 1
    proj = sum(2 * c * h * h * 4 for c, h in ((256, 8), (512, 4), (1024, 2), (2048, 1)))
    g = sum(2 * c * 4 for c in (256, 256, 512, 1024, 2048))
    assert got["auto"] - got["none"] == proj + g


def test_bench_memory_small_run(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_memory.py"), "--small", "--dtypes", "fp32",
           "--providers", "none,fused-input,fused-lean", "--breakdown", "--out", str(tmp_path)]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    files = sorted(f.suffix for f in tmp_path.iterdir())
    assert files == [".json", ".md", ".png"]
    import json

    rows = json.loads(next(tmp_path.glob("*.json")).read_text())["rows"]
    by = {(r["model"], r["provider"]): r["saved_bytes"] for r in rows}
    for m in ("ge_wrn_16_2", "efficientnet_b0"):
        assert by[m, "none"] < by[m, "fused-lean"] < by[m, "fused-input"]
    assert "| ge_wrn_16_2, N=2 at 32² | fp32 |" in next(tmp_path.glob("*.md")).read_text()
