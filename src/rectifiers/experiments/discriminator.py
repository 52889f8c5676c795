r"""What a Leaky ReLU discriminator passes back to a GAN's generator.

A generator :math:`G` learns only from the gradient of the discriminator's output with respect
to a fake sample, :math:`\partial \ell / \partial \mathbf{x}`, with :math:`\mathbf{x} =
G(\mathbf{u})`. Backpropagated through a rectifier layer, that gradient is multiplied by
:math:`\phi'(z) = 1` where the pre-activation is positive and by :math:`\alpha` where it is
negative; so with ReLU (:math:`\alpha = 0`) the units that are off for a fake pass nothing
back, and with Leaky ReLU they pass :math:`\alpha` times the signal.

:func:`discriminator_gradients` trains discriminators (real MNIST-1D signals against the
outputs of an untrained generator) with several slopes and paired seeds in one batched
computation, then measures, on held-out fakes, the share of the discriminators' hidden
pre-activations that are negative, the size of the gradient that reaches the fake samples, and
how much of it arrives through negative pre-activations: the difference between the full
gradient and the gradient with every negative-side path cut, which is exactly what a ReLU
discriminator with the same weights would send back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rectifiers._validation import check_non_negative_int, check_positive_int, check_real
from rectifiers.batched import BatchedMLP, batched_mlp, grid, train_batched
from rectifiers.data import MNIST1D
from rectifiers.training import mlp

__all__ = ["DiscriminatorGradients", "discriminator_gradients", "input_gradient"]

REAL, FAKE = 1, 0


@dataclass(frozen=True)
class DiscriminatorGradients:
    r"""Measurements on held-out fakes for :math:`P` slopes and :math:`S` seeds.

    Attributes:
        slopes: the :math:`P` negative slopes of the discriminators.
        seeds: the :math:`S` seeds (the same seed: the same initial discriminator weights
            and mini-batches).
        accuracy: :math:`(P, S)` held-out accuracy of telling real from fake.
        negative: :math:`(P, S, L)` share of hidden pre-activations that are negative on the
            fakes, per hidden layer.
        grad_norm: :math:`(P, S)` median over fakes of
            :math:`\|\partial \ell / \partial \mathbf{x}\|`, the generator's loss being
            :math:`\ell = -\log D(\text{real} \mid \mathbf{x})`.
        through_negative: :math:`(P, S)` median over fakes of
            :math:`\|\mathbf{g} - \mathbf{g}_{+}\| / \|\mathbf{g}\|`, where
            :math:`\mathbf{g}_{+}` is the gradient with every path through a negative
            pre-activation cut (0 for ReLU).
        zero_gradient: :math:`(P, S)` share of fakes whose gradient is exactly zero.
    """

    slopes: list[float]
    seeds: list[int]
    accuracy: torch.Tensor
    negative: torch.Tensor
    grad_norm: torch.Tensor
    through_negative: torch.Tensor
    zero_gradient: torch.Tensor


def input_gradient(model, x, target: int, *, through_negative: bool = True):
    r"""The gradient of each model's cross-entropy for class ``target`` with respect to ``x``.

    For model :math:`m` and example :math:`n`, :math:`\mathbf{g}_{mn} = \partial
    \bigl(-\log \operatorname{softmax}(f_m(\mathbf{x}_n))_\text{target}\bigr) / \partial
    \mathbf{x}_n`. With ``through_negative=False`` the forward pass is the same but the
    backward pass treats every hidden unit's negative side as constant, i.e. multiplies by
    :math:`\phi'(z) = 0` instead of :math:`\alpha` where :math:`z \le 0`: the gradient that
    only positive pre-activations carry.

    Args:
        model: a :class:`rectifiers.batched.BatchedMLP` of :math:`M` rectifier models
            (fixed slopes or PReLU, no batch norm or skip connections).
        x: inputs of shape :math:`(N, d_0)`.
        target: the class whose negative log-probability is differentiated.
        through_negative: keep the gradient through negative pre-activations.

    Returns:
        A tensor of shape :math:`(M, N, d_0)`.

    Example:
        >>> nets = batched_mlp([4, 8, 2], [0.0, 0.2], [0, 0])
        >>> x = torch.randn(3, 4)
        >>> g = input_gradient(nets, x, 1)
        >>> torch.allclose(input_gradient(nets, x, 1, through_negative=False)[0], g[0])
        True
    """
    if not isinstance(model, BatchedMLP):
        raise TypeError(f"model must be a BatchedMLP, got {type(model).__name__}")
    if any(model.batch_norm) or any(model.residual):
        raise ValueError("input_gradient needs plain MLPs without batch norm or skips")
    target = check_non_negative_int("target", target)
    if target >= model.sizes[-1]:
        raise ValueError(f"target must be a class index below {model.sizes[-1]}, got {target}")
    model._check_examples(x)
    xs = x.detach().expand(model.num_models, *x.shape).clone().requires_grad_(True)
    with torch.enable_grad():
        h = xs
        for k in range(model.num_hidden):
            z = torch.baddbmm(model.biases[k].unsqueeze(1), h, model.weights[k])
            slope = model.slope(k).unsqueeze(1)
            if torch.isnan(slope).any():
                raise ValueError(f"hidden layer {k} has an activation without a negative slope")
            negative = slope * z
            if not through_negative:
                negative = negative.detach()
            h = torch.where(z > 0, z, negative)
        logits = torch.baddbmm(model.biases[-1].unsqueeze(1), h, model.weights[-1])
        losses = -F.log_softmax(logits, dim=-1)[..., target]
        (grad,) = torch.autograd.grad(losses.sum(), xs)
    return grad


def fake_signals(n: int, features: int, *, noise: int = 8, seed: int = 0) -> torch.Tensor:
    r"""``n`` outputs of an untrained generator: ``mlp([noise, 64, features])`` (ReLU,
    PyTorch's default initialisation) applied to standard Gaussian noise, both from ``seed``.
    """
    g = torch.Generator().manual_seed(check_non_negative_int("seed", seed))
    u = torch.randn(check_positive_int("n", n), noise, generator=g)
    generator = mlp([noise, 64, check_positive_int("features", features)], 0.0, seed=seed)
    with torch.no_grad():
        return generator(u)


# deliberately repeated: the leading parameters are slope_sweep.sweep_slopes's (see there).
def discriminator_gradients(
    data: MNIST1D,
    sizes: Sequence[int],
    slopes: Sequence[float],
    seeds: Sequence[int],
    *,
    epochs: int,
    lr: float,
    generator_seed: int = 0,
) -> DiscriminatorGradients:
    r"""Train real-against-fake discriminators and measure the gradient they send to fakes.

    The real examples are MNIST-1D's signals (training split for training, test split held
    out); the fakes are :func:`fake_signals` of an untrained generator, as many as real ones in
    each split. Discriminator :math:`(p, s)` is ``mlp(sizes, slopes[p], seed=seeds[s])`` with
    two outputs (fake, real), trained by :func:`rectifiers.batched.train_batched` with Adam.

    Args:
        data: the real signals.
        sizes: the discriminator's layer widths; the last must be 2.
        slopes: the negative slopes to compare (0 is ReLU).
        seeds: the seeds.
        epochs: passes over the real-and-fake training set.
        lr: Adam's learning rate.
        generator_seed: seed of the generator's weights and noise.

    Returns:
        A :class:`DiscriminatorGradients`.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if ``sizes`` does not end in 2.

    Example:
        >>> from rectifiers.data import load_mnist1d
        >>> data = load_mnist1d().subset(200, 100)
        >>> result = discriminator_gradients(data, [40, 16, 2], [0.0, 0.2], [0, 1],
        ...                                  epochs=1, lr=0.01)
        >>> result.grad_norm.shape, float(result.through_negative[0].max())
        (torch.Size([2, 2]), 0.0)
    """
    if list(sizes)[-1:] != [2]:
        raise ValueError(f"sizes must end in 2 outputs (fake, real), got {list(sizes)}")
    slopes = [check_real(f"slopes[{i}]", a) for i, a in enumerate(slopes)]
    n_train, n_test = len(data.y_train), len(data.y_test)
    fakes = fake_signals(n_train + n_test, data.num_features, seed=generator_seed)
    fakes = fakes.to(data.x_train.dtype)
    ones = torch.full((n_train,), REAL, dtype=torch.int64)
    zeros = torch.full((n_train,), FAKE, dtype=torch.int64)
    mixed = MNIST1D(
        torch.cat([data.x_train, fakes[:n_train]]),
        torch.cat([ones, zeros]),
        torch.cat([data.x_test, fakes[n_train:]]),
        torch.cat([ones[:n_test], zeros[:n_test]]),
    )
    per_model, per_seed = grid(slopes, seeds)
    nets = batched_mlp(sizes, per_model, per_seed)
    history = train_batched(nets, mixed, epochs=epochs, lr=lr)
    held_out = fakes[n_train:]
    with torch.no_grad():
        _, pre = nets.forward_with_preactivations(held_out)
        negative = torch.stack([(z < 0).double().mean(dim=(1, 2)) for z in pre], dim=1)
    full = input_gradient(nets, held_out, REAL).flatten(2)
    positive = input_gradient(nets, held_out, REAL, through_negative=False).flatten(2)
    norm = full.norm(dim=-1)  # (M, N)
    share = (full - positive).norm(dim=-1) / norm.clamp_min(torch.finfo(norm.dtype).tiny)
    shape = (len(slopes), len(list(seeds)))
    return DiscriminatorGradients(
        slopes=slopes,
        seeds=list(seeds),
        accuracy=history.test_accuracy[-1].double().view(shape),
        negative=negative.view(*shape, -1),
        grad_norm=norm.median(dim=1).values.double().view(shape),
        through_negative=share.median(dim=1).values.double().view(shape),
        zero_gradient=(norm == 0).double().mean(dim=1).view(shape),
    )
