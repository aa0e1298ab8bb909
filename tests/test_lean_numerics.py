"""The low-precision budget of what save='auto' picks, with a residual that dominates the
excited branch by 0.3, 3 and 10 (16x16 planes), through the public ops and autograd; and
that keeping the output there instead would not meet it (the rule is not vacuous).
benchmarks/bench_lean_numerics.py measures the same over more ratios."""
import pytest
import torch

import genet_ops
from oracle import assert_within_budget, eager_excite, eager_gather_excite

SHAPE = (4, 32, 16, 16)


def case(dtype, ratio, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    g = torch.randn(SHAPE[0], SHAPE[1], 1, 1, generator=gen, dtype=torch.float64)
    dy = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    branch = eager_gather_excite(x, 0)
    r = ratio * branch.pow(2).mean().sqrt() * torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    return [t.to(dtype) for t in (x, g, dy, r)]


def grads(fn, x, g, r, dy, excite):
    leaves = [x.clone().requires_grad_(), g.clone().requires_grad_()]
    y = fn(leaves[0], leaves[1]) if excite else fn(leaves[0])
    return torch.autograd.grad(y, leaves if excite else leaves[:1], dy)


def compare(dtype, ratio, excite, save, atol=None):
    x, g, dy, r = case(dtype, ratio)
    if excite:
        op = lambda xx, gg: genet_ops.excite(xx, gg, 0, residual=r, save=save)  # noqa: E731
        eager = lambda xx, gg: eager_excite(xx, gg, 0, r)  # noqa: E731
        oracle = lambda xx, gg: genet_ops.reference.excite(xx, gg, 0, r.double())  # noqa: E731
    else:
        op = lambda xx: genet_ops.gather_excite(xx, 0, residual=r, save=save)  # noqa: E731
        eager = lambda xx: eager_gather_excite(xx, 0, r)  # noqa: E731
        oracle = lambda xx: genet_ops.reference.gather_excite(xx, 0, r.double())  # noqa: E731
    got = grads(op, x, g, r, dy, excite)
    want = grads(oracle, x.double(), g.double(), r, dy.double(), excite)
    base = grads(eager, x, g, r, dy, excite)
    for name, a, w, e in zip(("dx", "dg"), got, want, base):
        assert_within_budget(a, w, e, f"{'excite' if excite else 'gather_excite'} {name} {dtype} ratio {ratio}",
                             atol=atol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("ratio", [0.3, 3, 10])
@pytest.mark.parametrize("excite", [False, True])
def test_auto_meets_the_budget(dtype, ratio, excite):
    compare(dtype, ratio, excite, "auto")


def test_keeping_the_output_with_a_dominant_residual_misses_the_budget():
    # bf16, residual 10x the branch: the lean dg is over 2x eager's error (the bare budget
    # of the issue); the §4 floor of 4 ulps of the largest dg still covers it at 10, not at 30.
    with pytest.raises(AssertionError, match="excite dg .* exceeds 2 x eager"):
        compare(torch.bfloat16, 10, True, "output", atol=0.0)
    compare(torch.bfloat16, 10, True, "input", atol=0.0)
    with pytest.raises(AssertionError, match="excite dg .* exceeds 2 x eager"):
        compare(torch.bfloat16, 30, True, "output")
