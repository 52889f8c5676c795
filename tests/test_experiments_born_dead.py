"""rectifiers.experiments.born_dead against the exact formula and a direct computation."""

from __future__ import annotations

import math

import pytest
import torch
from doctest_helpers import assert_examples_pass

from rectifiers.experiments.born_dead import BornDead, dead_probability, random_networks
from rectifiers.init import kaiming_std

pytestmark = pytest.mark.usefixtures("single_thread")


def test_dead_probability_values():
    assert dead_probability(1, 1) == 0.5
    assert dead_probability(2, 0) == 0.0
    assert dead_probability(3, 2) == pytest.approx(1 - (7 / 8) ** 2)
    depths = torch.arange(0, 4)
    expected = torch.tensor([1 - 0.75**d for d in range(4)], dtype=torch.float64)
    torch.testing.assert_close(dead_probability(2, depths), expected)


def test_dead_probability_rejects_bad_input():
    with pytest.raises(TypeError, match="width"):
        dead_probability(2.0, 3)
    with pytest.raises(ValueError, match="width"):
        dead_probability(0, 3)
    with pytest.raises(ValueError, match="depth"):
        dead_probability(2, -1)
    with pytest.raises(TypeError, match="depth must be an integer tensor"):
        dead_probability(2, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="depth"):
        dead_probability(2, torch.tensor([-1]))


def test_monte_carlo_matches_the_formula():
    x = torch.randn(1, 40, generator=torch.Generator().manual_seed(0))
    nets = 20_000
    result = random_networks(x, 2, 12, nets, seed=1)
    p = dead_probability(2, torch.arange(1, 13))
    # four standard errors of a proportion estimated from `nets` networks
    assert (result.dead_by_depth() - p).abs().max() < 4 * math.sqrt(0.25 / nets)
    # with zero biases, an all-negative layer is exactly the first zero layer
    assert torch.equal(result.zero_at, result.negative_at)


def test_leaky_networks_are_never_exactly_dead_but_shrink():
    x = torch.randn(1, 40, generator=torch.Generator().manual_seed(0))
    result = random_networks(x, 4, 30, 2_000, slope=0.01, seed=2)
    assert (result.zero_at == 31).all()
    assert torch.isfinite(result.log10_gain).all()
    # the sign pattern does not depend on the slope: all-negative layers still occur
    assert abs(result.negative_by_depth()[-1] - dead_probability(4, 30)) < 0.05
    hit = result.negative_at[:, 0] <= 30
    assert result.log10_gain[hit, 0, -1].median() < result.log10_gain[~hit, 0, -1].median() - 1


def test_gain_equals_a_direct_computation():
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    result = random_networks(x, 4, 3, 2, slope=0.1, bias="uniform", seed=7)
    g = torch.Generator().manual_seed(7)
    h = x.expand(2, 3, 5)
    for layer in range(3):
        fan_in = h.shape[-1]
        w = torch.randn(2, fan_in, 4, generator=g, dtype=torch.float64) * kaiming_std(fan_in)
        u = torch.rand(2, 1, 4, generator=g, dtype=torch.float64)
        z = torch.bmm(h, w) + (2 * u - 1) / math.sqrt(fan_in)
        h = torch.where(z > 0, z, 0.1 * z)
        expected = torch.log10(h.norm(dim=-1) / x.norm(dim=-1))
        torch.testing.assert_close(result.log10_gain[..., layer], expected)


def test_dead_at_all_inputs_is_rarer_than_at_one():
    x = torch.randn(16, 40, generator=torch.Generator().manual_seed(0))
    result = random_networks(x, 3, 10, 3_000, seed=3)
    one, every = result.dead_by_depth(), result.dead_by_depth(all_inputs=True)
    assert (every <= one).all() and every[0] < one[0]
    # a dead layer outputs zero: its gain is -inf from there on
    dead = result.zero_at[:, 0] <= 10
    assert torch.isinf(result.log10_gain[dead, 0, -1]).all()


def test_ternary_weights_make_dead_layers_more_likely():
    x = torch.randn(1, 40, generator=torch.Generator().manual_seed(0))
    gaussian = random_networks(x, 3, 10, 4_000, seed=4).dead_by_depth()[-1]
    ternary = random_networks(x, 3, 10, 4_000, ternary=True, seed=4).dead_by_depth()[-1]
    assert ternary > gaussian + 0.05


def test_random_networks_rejects_bad_input():
    x = torch.randn(1, 4)
    with pytest.raises(TypeError, match="inputs"):
        random_networks([[1.0]], 2, 3, 4)
    with pytest.raises(ValueError, match="inputs must have shape"):
        random_networks(torch.randn(4), 2, 3, 4)
    with pytest.raises(ValueError, match="width"):
        random_networks(x, 0, 3, 4)
    with pytest.raises(ValueError, match="bias must be a number or 'uniform'"):
        random_networks(x, 2, 3, 4, bias="normal")
    with pytest.raises(TypeError, match="ternary"):
        random_networks(x, 2, 3, 4, ternary=1)
    assert isinstance(random_networks(x, 2, 3, 4), BornDead)


def test_docstring_examples_run():
    from rectifiers.experiments import born_dead

    assert_examples_pass(born_dead)
