"""rectifiers.experiments.weight_decay against torch.optim and the batched trainer."""

from __future__ import annotations

import math

import pytest
import torch
from doctest_helpers import assert_examples_pass

from rectifiers.batched import batched_mlp, grid, train_batched
from rectifiers.data import load_mnist1d
from rectifiers.experiments.weight_decay import (
    decay_exemption,
    decay_half_life,
    sgd_decay,
    zero_gradient_slopes,
)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9, 0.99])
@pytest.mark.parametrize(("lr", "wd"), [(0.1, 5e-4), (0.01, 1.0), (0.5, 0.9), (1.0, 1.0)])
def test_sgd_decay_matches_torch_sgd(momentum, lr, wd):
    measured = zero_gradient_slopes("sgd", [0.25, -1.0], [wd], lr=lr, steps=300, momentum=momentum)
    for j, a0 in enumerate([0.25, -1.0]):
        closed = sgd_decay(a0, lr, wd, 300, momentum=momentum)
        torch.testing.assert_close(measured[:, 0, j], closed, rtol=1e-9, atol=1e-12)


def test_sgd_decay_without_momentum_is_geometric():
    t = torch.arange(51, dtype=torch.float64)
    torch.testing.assert_close(sgd_decay(0.25, 0.1, 0.3, 50), 0.25 * 0.97**t)
    assert sgd_decay(2.0, 0.0, 0.3, 4).tolist() == [2.0] * 5
    assert sgd_decay(2.0, 0.5, 2.0, 3).tolist() == [2.0, 0.0, 0.0, 0.0]  # double root 0


def test_sgd_decay_double_root_with_momentum():
    # (1 + mu - rate)^2 = 4 mu for mu = 0.25, rate = 0: r = 0.5 twice
    closed = sgd_decay(1.0, 0.0, 0.0, 3, momentum=0.25)
    assert closed.tolist() == [1.0, 1.0, 1.0, 1.0]
    mu = 0.81  # rate = (1 - 0.9)^2 = 0.01 gives the double root r = 0.9
    closed = sgd_decay(1.0, 0.1, 0.1, 40, momentum=mu)
    measured = zero_gradient_slopes("sgd", [1.0], [0.1], lr=0.1, steps=40, momentum=mu)
    torch.testing.assert_close(measured[:, 0, 0], closed, rtol=1e-9, atol=1e-12)


def test_half_life():
    assert decay_half_life(0.1, 5e-4) == pytest.approx(math.log(2) / -math.log1p(-5e-5))
    # about (1 - momentum) ln 2 / (lr wd) = 1386
    assert decay_half_life(0.1, 5e-4, momentum=0.9) == pytest.approx(1386.3, rel=0.01)
    assert decay_half_life(0.1, 0.0) == math.inf
    # the closed form does cross a_0 / 2 within a step of the half-life
    for momentum in (0.0, 0.9):
        half = decay_half_life(0.1, 5e-4, momentum)
        path = sgd_decay(1.0, 0.1, 5e-4, int(half) + 50, momentum=momentum)
        crossed = int((path <= 0.5).nonzero()[0])
        assert abs(crossed - half) < 0.01 * half + 10


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: sgd_decay(1.0, 0.1, 0.1, 3, momentum=1.0), ValueError, "momentum"),
        (lambda: sgd_decay(1.0, -0.1, 0.1, 3), ValueError, "lr"),
        (lambda: sgd_decay(1.0, 0.1, 0.1, 3.0), TypeError, "steps"),
        (lambda: sgd_decay(1.0, 0.1, 0.1, -1), ValueError, "steps"),
        (lambda: sgd_decay("1", 0.1, 0.1, 3), TypeError, "a0"),
        (lambda: decay_half_life(0.1, -1.0), ValueError, "weight_decay"),
        (lambda: zero_gradient_slopes("rmsprop", [1.0], [0.1], lr=0.1, steps=1), ValueError,
         "optimizer"),
        (lambda: zero_gradient_slopes("adam", [1.0], [0.1], lr=0.1, steps=1, momentum=0.9),
         ValueError, "momentum"),
        (lambda: zero_gradient_slopes("sgd", 1.0, [0.1], lr=0.1, steps=1), TypeError, "a0s"),
        (lambda: zero_gradient_slopes("sgd", [1.0], [-0.1], lr=0.1, steps=1), ValueError,
         r"weight_decays\[0\]"),
    ],
)  # fmt: skip
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_adamw_zero_gradient_is_geometric_and_adam_marches():
    adamw = zero_gradient_slopes("adamw", [0.25], [0.01], lr=0.01, steps=50)[:, 0, 0]
    torch.testing.assert_close(adamw, sgd_decay(0.25, 0.01, 0.01, 50), rtol=1e-12, atol=1e-15)
    adam = zero_gradient_slopes("adam", [0.25], [1e-4], lr=0.01, steps=10)[:, 0, 0]
    # Adam normalises the L2 gradient into steps of about lr, whatever its size
    steps = adam[:-1] - adam[1:]
    assert steps[0].item() == pytest.approx(0.01, rel=1e-3)
    torch.testing.assert_close(steps, torch.full((10,), 0.01, dtype=adam.dtype), rtol=0.06, atol=0)


@pytest.fixture(scope="module")
def small_data():
    return load_mnist1d().subset(400, 200)


def test_decay_exemption_equals_separate_adamw_runs(small_data):
    """Per-model decay in one run = one train_batched run per arm with AdamW's own decay."""
    result = decay_exemption(
        small_data, [0.5], sizes=[40, 16, 16, 10], seeds=[0, 1], epochs=3, lr=1e-2, record_every=4
    )
    assert result.arms == [
        "no weight decay",
        "decay on everything, λ = 0.5",
        "slopes exempt, λ = 0.5",
    ]
    assert result.weight_decays == [(0.0, 0.0), (0.5, 0.5), (0.5, 0.0)]
    for i, (wd, slope_wd) in enumerate(result.weight_decays):
        acts, seeds = grid(["prelu_channelwise"], [0, 1])
        net = batched_mlp([40, 16, 16, 10], acts, seeds)
        history = train_batched(
            net,
            small_data,
            epochs=3,
            lr=1e-2,
            optimizer="adamw",
            weight_decay=wd,
            slope_weight_decay=slope_wd,
            record_every=4,
        )
        slopes = torch.stack([net.slope(k).detach() for k in range(2)], dim=1)
        torch.testing.assert_close(result.final_slopes[i], slopes, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(result.test_accuracy[:, i], history.test_accuracy)
        norms = torch.stack([w.detach().flatten(1).norm(dim=1) for w in net.weights], dim=1)
        torch.testing.assert_close(result.weight_norm[i], norms, rtol=1e-5, atol=0)
    assert result.mean_abs_slope.shape == (len(result.steps), 3, 2, 2)
    torch.testing.assert_close(result.mean_abs_slope[-1], result.final_slopes.abs().mean(-1))
    # the hook is gone: a later AdamW run without decay leaves a zero-gradient slope alone
    assert zero_gradient_slopes("adamw", [0.3], [0.0], lr=0.1, steps=3)[-1].item() == 0.3


def test_decay_exemption_rejects_bad_arguments(small_data):
    with pytest.raises(ValueError, match="positive"):
        decay_exemption(small_data, [0.0], epochs=1)
    with pytest.raises(ValueError, match="one width"):
        decay_exemption(small_data, [0.1], sizes=[40, 16, 8, 10], epochs=1)
    with pytest.raises(TypeError, match="weight_decays"):
        decay_exemption(small_data, 0.1, epochs=1)


def test_docstring_examples():
    from rectifiers.experiments import weight_decay

    assert_examples_pass(weight_decay)
