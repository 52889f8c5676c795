"""rectifiers.experiments.signal_depth against direct, unscaled float64 computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from doctest_helpers import assert_examples_pass

from rectifiers.experiments.signal_depth import (
    INITS,
    default_init_signal,
    factor_per_layer,
    log_second_moments,
)
from rectifiers.init import kaiming_std

pytestmark = pytest.mark.usefixtures("single_thread")


def test_factor_per_layer_on_a_known_sequence():
    # E[y^2] = 3 * 2^l: every estimate of the factor is exactly 2
    log_m = torch.log(3 * 2.0 ** torch.arange(6, dtype=torch.float64))
    for value in factor_per_layer(log_m).values():
        assert value.item() == pytest.approx(2.0, rel=1e-12)
    # E[y^2] = 1, 4, 4: ratios 4 and 1
    factors = factor_per_layer(torch.tensor([0.0, math.log(4), math.log(4)]))
    assert factors["geometric"].item() == pytest.approx(2.0)
    assert factors["arithmetic"].item() == pytest.approx(2.5)
    assert factors["fitted"].item() == pytest.approx(2.0)


def test_factor_per_layer_rejects_bad_input():
    with pytest.raises(TypeError, match="log_moment"):
        factor_per_layer([1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2 layers"):
        factor_per_layer(torch.zeros(3, 1))


def _direct_second_moments(slopes, depth, width, batch, seeds, generator):
    """The same experiment without the rescaling trick, in float64, one network at a time."""
    inits = list(INITS)
    x = torch.randn(seeds, batch, width, generator=generator)
    out = torch.zeros(len(inits), len(slopes), seeds, depth, dtype=torch.float64)
    h = {(i, j): x.double().clone() for i in range(len(inits)) for j in range(len(slopes))}
    for layer in range(depth):
        w = torch.empty(len(inits), seeds, width, width)
        w[:2].normal_(generator=generator)
        w[2].uniform_(-math.sqrt(3), math.sqrt(3), generator=generator)
        for i, name in enumerate(inits):
            for j, a in enumerate(slopes):
                std = INITS[name](a, width)
                y = torch.bmm(h[i, j], std * w[i].double())
                out[i, j, :, layer] = y.square().mean(dim=(1, 2))
                h[i, j] = F.leaky_relu(y, a)
    return out.log()


def test_log_second_moments_equals_the_unscaled_computation():
    slopes = [0.0, 0.3, 1.0]
    result = log_second_moments(
        slopes, depth=6, width=32, batch=16, seeds=3, generator=torch.Generator().manual_seed(4)
    )
    direct = _direct_second_moments(slopes, 6, 32, 16, 3, torch.Generator().manual_seed(4))
    assert result.log_moment.shape == (3, 3, 3, 6)
    # float32 products against float64 ones: agreement to float32 rounding
    torch.testing.assert_close(result.log_moment, direct, rtol=0, atol=1e-4)
    assert result.inits == list(INITS) and result.slopes == slopes
    assert result.theory[2, 2].item() == pytest.approx(1 / 3)
    assert result.theory[1, 1].item() == pytest.approx(1.09)


def test_log_second_moments_factors_match_theory_on_average():
    result = log_second_moments([0.0, 0.5], depth=20, width=128, batch=32, seeds=4)
    geometric = result.factors()["geometric"].mean(-1)  # over the seeds
    torch.testing.assert_close(geometric, result.theory, rtol=0.05, atol=0)


def test_log_second_moments_subset_and_order_of_inits():
    full = log_second_moments([0.1], depth=3, width=8, batch=4, seeds=2)
    one = log_second_moments([0.1], ["PyTorch default"], depth=3, width=8, batch=4, seeds=2)
    assert one.log_moment.shape == (1, 1, 2, 3)
    assert one.inits == ["PyTorch default"]
    # a different random stream (fewer draws per layer), but the same theory
    assert one.theory.item() == full.theory[2, 0].item()


def test_log_second_moments_slopes_share_their_draws():
    # layer 1 sees the same input and the same unit-variance weights for every slope, so with
    # the matched gain log E[y_1^2] differs between slopes 0 and 1 by log(Var ratio) = log 2
    result = log_second_moments([0.0, 1.0], ["matched gain"], depth=1, width=16, batch=4, seeds=2)
    gap = result.log_moment[0, 0, :, 0] - result.log_moment[0, 1, :, 0]
    torch.testing.assert_close(gap, torch.full((2,), math.log(2), dtype=torch.float64))
    assert kaiming_std(16, 0.0) == pytest.approx(math.sqrt(2) * kaiming_std(16, 1.0))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"slopes": "0.1"}, TypeError, "slopes"),
        ({"slopes": []}, ValueError, "slopes"),
        ({"slopes": [True]}, TypeError, r"slopes\[0\]"),
        ({"inits": "matched gain"}, TypeError, "inits"),
        ({"inits": ["Xavier"]}, ValueError, "Xavier"),
        ({"depth": 0}, ValueError, "depth"),
        ({"width": 2.0}, TypeError, "width"),
        ({"generator": 0}, TypeError, "generator"),
    ],
)
def test_log_second_moments_rejects_bad_arguments(kwargs, error, match):
    arguments = {"slopes": [0.0], "depth": 2, "width": 4, "batch": 2, "seeds": 1} | kwargs
    with pytest.raises(error, match=match):
        log_second_moments(**arguments)


def _direct_default_stack(slope, depth, width, batch, bias, generator):
    """One seed of default_init_signal, in float64 with torch.func.jvp for the sensitivity."""
    bound = 1 / math.sqrt(width)
    x = torch.randn(1, batch, width, generator=generator).double()[0]
    dx = torch.randn(1, batch, width, generator=generator).double()[0]
    layers = []
    for _ in range(depth):
        w = torch.empty(1, width, width).uniform_(-bound, bound, generator=generator)[0]
        b = torch.empty(1, width).uniform_(-bound, bound, generator=generator)[0]
        layers.append((w.double(), b.double() * bias))

    def upto(k):
        def run(inputs):
            h = inputs
            for i, (w, b) in enumerate(layers[: k + 1]):
                y = F.linear(h, w, b)
                h = F.leaky_relu(y, slope) if i < k else y
            return h

        return run

    moments, sensitivity, spread = [], [], []
    for k in range(depth):
        y, dy = torch.func.jvp(upto(k), (x,), (dx,))
        moments.append(y.square().mean())
        sensitivity.append(dy.square().mean() / dx.square().mean())
        spread.append(y.var(dim=0, correction=0).mean() / y.square().mean())
    return torch.stack(moments), torch.stack(sensitivity), torch.stack(spread)


@pytest.mark.parametrize("bias", [0.0, 1.0])
def test_default_init_signal_equals_direct_computation(bias):
    result = default_init_signal(
        [0.2], depth=5, width=24, batch=6, seeds=1, generator=torch.Generator().manual_seed(7)
    )
    moments, sensitivity, spread = _direct_default_stack(
        0.2, 5, 24, 6, bias, torch.Generator().manual_seed(7)
    )
    setting = int(bias)
    torch.testing.assert_close(result.second_moment[setting, 0, 0], moments, rtol=1e-5, atol=0)
    torch.testing.assert_close(
        result.log_sensitivity[setting, 0, 0].exp(), sensitivity, rtol=1e-5, atol=0
    )
    torch.testing.assert_close(result.input_spread[setting, 0, 0], spread, rtol=1e-4, atol=0)


def test_default_biases_keep_the_size_but_not_the_input():
    result = default_init_signal([0.0, 1.0], depth=30, width=64, batch=16, seeds=2)
    zero, default = 0, 1
    last = result.second_moment[..., -1].mean(-1)  # (bias, slope)
    # without biases ReLU's signal shrinks by about 1/6 per layer: tiny after 30 layers
    assert last[zero, 0] < 1e-20
    # the biases hold it near their own variance 1/(3n) or above
    assert last[default, 0] > 1 / (3 * 64) / 10
    # yet the input-dependent share collapses to float32 rounding level with biases only
    assert result.input_spread[default, 0, :, -1].max() < 1e-10
    assert result.input_spread[zero, 0, :, -1].min() > 1e-3
    # the sensitivity shrinks by about (1 + a^2) / 6 per layer in both settings
    factor = result.sensitivity_factor().mean(-1)
    torch.testing.assert_close(factor, result.theory.expand(2, 2), rtol=0.05, atol=0)


def test_default_init_signal_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch"):
        default_init_signal([0.0], batch=1)
    with pytest.raises(TypeError, match="slopes"):
        default_init_signal(0.0)
    with pytest.raises(TypeError, match="generator"):
        default_init_signal([0.0], generator="seed")


def test_docstring_examples():
    from rectifiers.experiments import signal_depth

    assert_examples_pass(signal_depth)
