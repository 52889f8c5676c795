"""rectifiers.experiments.discriminator against autograd on one network at a time."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from doctest_helpers import assert_examples_pass

from rectifiers.batched import batched_mlp
from rectifiers.data import load_mnist1d
from rectifiers.experiments.discriminator import (
    discriminator_gradients,
    fake_signals,
    input_gradient,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def test_input_gradient_matches_autograd_on_each_network():
    nets = batched_mlp([6, 5, 5, 3], [0.0, 0.2, "prelu"], [0, 0, 1]).double()
    x = torch.randn(7, 6, dtype=torch.float64)
    grad = input_gradient(nets, x, 2)
    for m in range(3):
        net = nets.unstack(m)
        xm = x.clone().requires_grad_(True)
        loss = F.cross_entropy(net(xm), torch.full((7,), 2), reduction="sum")
        (expected,) = torch.autograd.grad(loss, xm)
        torch.testing.assert_close(grad[m], expected)


def test_cutting_the_negative_side_is_relu_backward():
    # With the negative side cut, a Leaky ReLU network's input gradient is the ReLU
    # network's backward pass applied at the leaky network's own activations: check it
    # on one layer, where that is W2^T diag(1[z > 0]) W1 times the softmax error.
    nets = batched_mlp([4, 6, 2], [0.3], [0]).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    cut = input_gradient(nets, x, 1, through_negative=False)[0]
    w1, b1, w2, b2 = nets.weights[0][0], nets.biases[0][0], nets.weights[1][0], nets.biases[1][0]
    z = x @ w1 + b1
    h = torch.where(z > 0, z, 0.3 * z)
    error = F.softmax(h @ w2 + b2, dim=1) - F.one_hot(torch.tensor([1] * 5), 2)
    expected = ((error @ w2.T) * (z > 0)) @ w1.T
    torch.testing.assert_close(cut, expected.detach())
    full = input_gradient(nets, x, 1)[0]
    assert not torch.allclose(full, cut)


def test_discriminator_gradients_on_a_small_problem():
    data = load_mnist1d().subset(300, 100)
    result = discriminator_gradients(data, [40, 16, 2], [0.0, 0.2], [0, 1], epochs=2, lr=0.01)
    assert result.accuracy.shape == (2, 2) and (result.accuracy > 0.9).all()
    assert result.negative.shape == (2, 2, 1)
    assert (result.through_negative[0] == 0).all()  # ReLU has no negative-side path
    assert (result.through_negative[1] > 0).all()
    assert ((result.zero_gradient >= 0) & (result.zero_gradient <= 1)).all()


def test_fake_signals_are_reproducible():
    a, b = fake_signals(10, 40, seed=3), fake_signals(10, 40, seed=3)
    assert a.shape == (10, 40) and torch.equal(a, b)
    assert not torch.equal(a, fake_signals(10, 40, seed=4))


def test_bad_input_is_rejected():
    data = load_mnist1d().subset(50, 20)
    with pytest.raises(ValueError, match="end in 2"):
        discriminator_gradients(data, [40, 8, 10], [0.0], [0, 1], epochs=1, lr=0.01)
    nets = batched_mlp([4, 3, 2], [0.0], [0])
    with pytest.raises(ValueError, match="target"):
        input_gradient(nets, torch.randn(2, 4), 2)
    with pytest.raises(TypeError, match="model"):
        input_gradient("nets", torch.randn(2, 4), 0)
    with pytest.raises(ValueError, match="negative slope"):
        input_gradient(batched_mlp([4, 3, 2], ["gelu"], [0]), torch.randn(2, 4), 0)


def test_docstring_examples_run():
    from rectifiers.experiments import discriminator

    assert_examples_pass(discriminator)
