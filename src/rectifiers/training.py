r"""Build and train one MLP at a time: ``mlp``, ``train`` and ``evaluate``.

The loop is deliberately plain (it is the reference the batched trainer in
:mod:`rectifiers.batched` is tested against): each epoch visits the training set once in an
order drawn from a seeded ``torch.Generator``, in mini-batches of ``batch_size`` examples (the
last one may be smaller), and minimises the mean cross-entropy

.. math::
    \mathcal{L} = -\frac{1}{B} \sum_{n=1}^{B} \log \operatorname{softmax}(f(x_n))_{y_n}.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from rectifiers._validation import (
    check_activation,
    check_bool,
    check_choice,
    check_data,
    check_float_tensor,
    check_labels,
    check_module,
    check_non_negative_int,
    check_non_negative_real,
    check_positive_int,
    check_real,
    check_sizes,
)
from rectifiers.data import MNIST1D
from rectifiers.models import Residual

__all__ = [
    "ACTIVATIONS",
    "OPTIMIZERS",
    "PRELU_KINDS",
    "data_orders",
    "evaluate",
    "make_optimizer",
    "mlp",
    "train",
]

#: Names accepted by ``optimizer`` arguments.
OPTIMIZERS = ("adam", "adamw", "sgd")
#: The string activations with a learnable slope, one per layer or one per unit.
PRELU_KINDS = ("prelu", "prelu_channelwise")
#: Every activation name ``mlp`` accepts, with the module it builds: ``nn.ReLU``, ``nn.PReLU``
#: (one slope or one per unit), ``nn.ELU()``, ``nn.GELU()``, ``nn.SiLU()`` and ``nn.RReLU()``
#: (random slopes from U(1/8, 1/3) in training, their mean 11/48 in evaluation).
ACTIVATIONS = ("relu", *PRELU_KINDS, "elu", "gelu", "silu", "rrelu")


def _activation_module(
    activation: float | str | Callable[[], nn.Module], width: int, prelu_init: float
) -> nn.Module:
    if activation == "relu" or (not callable(activation) and activation == 0):
        return nn.ReLU()
    if activation == "prelu":
        return nn.PReLU(num_parameters=1, init=prelu_init)
    if activation == "prelu_channelwise":
        return nn.PReLU(num_parameters=width, init=prelu_init)
    if isinstance(activation, str):
        return {"elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU, "rrelu": nn.RReLU}[activation]()
    if callable(activation):
        return check_module("activation()", activation())
    return nn.LeakyReLU(negative_slope=activation)


def mlp(
    sizes,
    activation=0.0,
    *,
    seed: int | None = None,
    bias_shift: float = 0.0,
    prelu_init: float = 0.25,
    batch_norm: bool = False,
    residual: bool = False,
):
    r"""A multilayer perceptron: ``Linear``, activation, ..., ``Linear`` (no final activation).

    For ``sizes = [d_0, d_1, ..., d_K]`` the network computes, with :math:`h_0 = x`,

    .. math::
        z_k = W_k h_{k-1} + b_k, \qquad h_k = \phi(z_k) \quad (k < K), \qquad f(x) = z_K,

    where :math:`\phi(z) = \max(0, z) + \alpha \min(0, z)` is Leaky ReLU with negative slope
    :math:`\alpha` (ReLU for :math:`\alpha = 0`, the identity for :math:`\alpha = 1`), or PReLU,
    where :math:`\alpha` is learned, or one of the named relatives:

    - ELU, :math:`\phi(z) = z` for :math:`z > 0` and :math:`e^z - 1` otherwise;
    - GELU, :math:`\phi(z) = z\, \Phi(z)` with :math:`\Phi` the standard normal CDF;
    - SiLU, :math:`\phi(z) = z\, \sigma(z)` with :math:`\sigma` the logistic sigmoid;
    - RReLU (Xu et al. 2015), :math:`\phi(z) = z` for :math:`z \ge 0` and :math:`a z`
      otherwise, with :math:`a \sim U(1/8, 1/3)` drawn afresh per element in training mode
      and :math:`a = (1/8 + 1/3)/2 = 11/48` in evaluation mode.

    With ``batch_norm``, each hidden layer normalises :math:`z_k` before the activation,
    :math:`h_k = \phi(\mathrm{BN}(z_k))` (``nn.BatchNorm1d``: batch statistics in training,
    running statistics in evaluation). With ``residual``, each hidden layer after the first
    whose input and output widths agree adds its input, :math:`h_k = h_{k-1} + \phi(\ldots)`,
    wrapped in a :class:`rectifiers.models.Residual`. Two sizes give a linear
    (softmax-regression) model. Weights and biases get PyTorch's default ``nn.Linear``
    initialisation, drawn in the same order whatever the options, so nets built from the same
    seed share their ``Linear`` weights across activations, ``batch_norm`` and ``residual``.

    Args:
        sizes: layer widths, input first and output last, at least two positive ints.
        activation: a fixed negative slope (a real number; ``0`` gives ``nn.ReLU``, any other
            value ``nn.LeakyReLU``), a name in :data:`ACTIVATIONS`: ``"relu"``, ``"prelu"``
            (``nn.PReLU`` with one learnable slope per layer), ``"prelu_channelwise"`` (one
            slope per unit), ``"elu"``, ``"gelu"``, ``"silu"``, ``"rrelu"`` (PyTorch's modules
            with their default parameters), or a callable with no arguments that returns a
            fresh activation module for each hidden layer.
        seed: if given, the parameters are drawn from ``torch.manual_seed(seed)`` inside
            ``torch.random.fork_rng``, so the global random state is left untouched and the
            same seed always gives the same network; if ``None``, the global generator is used.
        bias_shift: a constant added to every hidden layer's bias after initialisation (not
            the output layer's). A negative shift pushes pre-activations below zero, the
            classic way to kill ReLU units.
        prelu_init: initial PReLU slope (0.25, as in He et al. 2015 and ``nn.PReLU``).
        batch_norm: put an ``nn.BatchNorm1d`` between each hidden ``Linear`` and its activation.
        residual: wrap each hidden layer after the first whose input and output widths agree
            in a ``Residual`` (a skip connection); at least one layer must qualify.

    Returns:
        An ``nn.Sequential`` mapping inputs of shape :math:`(N, d_0)` to logits of shape
        :math:`(N, d_K)`.

    Raises:
        TypeError: if an argument has the wrong type, or the factory does not return an
            ``nn.Module``.
        ValueError: if an argument has a wrong value, or ``residual`` finds no hidden layer
            of equal input and output width.

    Example:
        >>> net = mlp([40, 100, 100, 10], 0.01, seed=0)
        >>> net
        Sequential(
          (0): Linear(in_features=40, out_features=100, bias=True)
          (1): LeakyReLU(negative_slope=0.01)
          (2): Linear(in_features=100, out_features=100, bias=True)
          (3): LeakyReLU(negative_slope=0.01)
          (4): Linear(in_features=100, out_features=10, bias=True)
        )
        >>> net(torch.randn(8, 40)).shape
        torch.Size([8, 10])
        >>> deep = mlp([40] + [16] * 12 + [10], "gelu", seed=0, batch_norm=True, residual=True)
        >>> type(deep[3]).__name__, [type(layer).__name__ for layer in deep[3]]
        ('Residual', ['Linear', 'BatchNorm1d', 'GELU'])
        >>> torch.equal(deep[0].weight, mlp([40, 16, 10], 0.0, seed=0)[0].weight)
        True
    """
    sizes = check_sizes(sizes)
    activation = check_activation("activation", activation, ACTIVATIONS)
    if seed is not None:
        check_non_negative_int("seed", seed)
    bias_shift = check_real("bias_shift", bias_shift)
    prelu_init = check_real("prelu_init", prelu_init)
    batch_norm = check_bool("batch_norm", batch_norm)
    residual = check_bool("residual", residual)
    hidden = list(zip(sizes[:-2], sizes[1:-1], strict=True))
    skips = [residual and k > 0 and fan_in == fan_out for k, (fan_in, fan_out) in enumerate(hidden)]
    if residual and not any(skips):
        raise ValueError(
            "residual=True needs a hidden layer after the first with equal input and output "
            f"widths, got sizes {sizes}"
        )

    def build() -> nn.Sequential:
        layers: list[nn.Module] = []
        for (fan_in, fan_out), skip in zip(hidden, skips, strict=True):
            block = [nn.Linear(fan_in, fan_out)]
            if batch_norm:
                block.append(nn.BatchNorm1d(fan_out))
            block.append(_activation_module(activation, fan_out, prelu_init))
            layers.extend([Residual(*block)] if skip else block)
        layers.append(nn.Linear(sizes[-2], sizes[-1]))
        return nn.Sequential(*layers)

    if seed is None:
        net = build()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build()
    with torch.no_grad():
        for layer in [m for m in net.modules() if isinstance(m, nn.Linear)][:-1]:
            layer.bias.add_(bias_shift)
    return net


def make_optimizer(
    params,
    optimizer: str,
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
):
    """The ``torch.optim`` optimizer named ``optimizer``, with PyTorch's defaults otherwise.

    Args:
        params: parameters, or parameter groups (dicts; a group without ``"weight_decay"`` gets
            ``weight_decay``).
        optimizer: ``"adam"`` (``torch.optim.Adam``: weight decay added to the gradient, i.e.
            L2), ``"adamw"`` (``torch.optim.AdamW``: decoupled weight decay) or ``"sgd"``.
        lr: learning rate, positive.
        weight_decay: default weight decay, non-negative.
        momentum: SGD momentum in :math:`[0, 1)`; must be 0 for Adam and AdamW.

    Returns:
        The optimizer.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if an argument has a wrong value.

    Example:
        >>> net = mlp([40, 10])
        >>> make_optimizer(net.parameters(), "sgd", lr=0.1, momentum=0.9).defaults["momentum"]
        0.9
    """
    optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)
    if check_non_negative_real("lr", lr) == 0:
        raise ValueError("lr must be positive, got 0")
    weight_decay = check_non_negative_real("weight_decay", weight_decay)
    if check_non_negative_real("momentum", momentum) >= 1:
        raise ValueError(f"momentum must be less than 1, got {momentum!r}")
    if momentum and optimizer != "sgd":
        raise ValueError(
            f"momentum applies to optimizer='sgd' only, got momentum={momentum!r} "
            f"with optimizer={optimizer!r}"
        )
    # fused=True: one kernel per step instead of a dozen per tensor, several times faster on
    # CPU; the batched trainer's speed depends on it. Same update rule as the default.
    if optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=True
        )
    cls = torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, weight_decay=weight_decay, fused=True)


def data_orders(n: int, seed: int):
    """The order of the ``n`` training examples in each epoch, drawn from ``seed`` alone.

    One ``torch.Generator`` seeded once, a fresh permutation per epoch. Both :func:`train` and
    :func:`rectifiers.batched.train_batched` take their orders from here, which is what makes
    a batched model see exactly the mini-batches it would see trained alone.

    Args:
        n: number of training examples.
        seed: seed of the order.

    Yields:
        A ``torch.int64`` permutation of ``range(n)`` per epoch, without end.

    Example:
        >>> orders = data_orders(5, seed=0)
        >>> first, second = next(orders), next(orders)
        >>> torch.equal(first, next(data_orders(5, seed=0))), sorted(second.tolist())
        (True, [0, 1, 2, 3, 4])
    """
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield torch.randperm(n, generator=generator)


def train(
    model,
    data: MNIST1D,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 100,
    optimizer: str = "adam",
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    param_groups: list[dict] | None = None,
    seed: int = 0,
    callback=None,
):
    """Train ``model`` in place on ``data``'s training split with mini-batch cross-entropy.

    Each epoch draws a fresh permutation of the training set from a ``torch.Generator`` seeded
    once with ``seed``, so the data order depends only on ``seed`` (not on the global random
    state, nor on the model). The batched trainer uses the same orders.

    Args:
        model: maps inputs of shape :math:`(B, \\ldots)` to logits of shape :math:`(B, 10)`.
        data: an ``MNIST1D``; only its training split is used.
        epochs: number of passes over the training set.
        lr: learning rate.
        batch_size: examples per mini-batch (the last batch of an epoch may be smaller).
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (see :func:`make_optimizer`).
        momentum: SGD momentum (0 for Adam and AdamW).
        weight_decay: weight decay for every parameter, or the default for groups in
            ``param_groups`` that do not set their own.
        param_groups: optional ``torch.optim`` parameter groups (a list of dicts with
            ``"params"``), e.g. to exempt PReLU slopes from weight decay; by default, one group
            with all of ``model.parameters()``.
        seed: seed of the data order.
        callback: called as ``callback(epoch, model)`` once before training (``epoch = 0``)
            and after each epoch (``epoch = 1, ..., epochs``), e.g. to record statistics. The
            model is in training mode; :func:`evaluate` restores the mode it finds.

    Returns:
        The mean training loss of each epoch (the mean of its mini-batch losses), shape
        :math:`(\\text{epochs},)`.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if an argument has a wrong value.

    Example:
        >>> from rectifiers.data import load_mnist1d
        >>> data = load_mnist1d()
        >>> net = mlp([40, 100, 100, 10], "prelu", seed=0)
        >>> losses = train(net, data, epochs=2, lr=1e-2, seed=0)
        >>> losses.shape
        torch.Size([2])
    """
    check_module("model", model)
    data = check_data("data", data)
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    seed = check_non_negative_int("seed", seed)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    if param_groups is None:
        params: list = list(model.parameters())
    elif isinstance(param_groups, list) and all(
        isinstance(group, dict) and "params" in group for group in param_groups
    ):
        params = param_groups
    else:
        raise TypeError(
            "param_groups must be a list of dicts, each with a 'params' entry, "
            f"or None, got {type(param_groups).__name__}"
        )
    opt = make_optimizer(params, optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum)

    x, y = data.x_train, data.y_train
    orders = data_orders(len(y), seed)
    losses = torch.zeros(epochs)
    model.train()
    if callback is not None:
        callback(0, model)
    for epoch, order in zip(range(epochs), orders, strict=False):
        batch_losses = []
        for batch in order.split(batch_size):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            batch_losses.append(loss.detach())
        losses[epoch] = torch.stack(batch_losses).mean()
        if callback is not None:
            callback(epoch + 1, model)
    return losses


@torch.no_grad()
def evaluate(model, x, y) -> tuple[float, float]:
    r"""Mean cross-entropy and accuracy of ``model`` on ``(x, y)``.

    The model is put in evaluation mode for the computation and then returned to the mode it
    was in. Accuracy is the fraction of examples whose largest logit is the true class,

    .. math::
        \text{accuracy} = \frac{1}{N} \sum_{n=1}^{N} [\arg\max_c f(x_n)_c = y_n].

    Args:
        model: maps :math:`(N, \ldots)` inputs to :math:`(N, C)` logits.
        x: inputs, a floating-point tensor of shape :math:`(N, \ldots)`.
        y: ``torch.int64`` class indices of shape :math:`(N,)`.

    Returns:
        ``(loss, accuracy)`` as Python floats.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if the shapes disagree.

    Example:
        >>> from rectifiers.data import load_mnist1d
        >>> data = load_mnist1d()
        >>> loss, accuracy = evaluate(mlp([40, 10], seed=0), data.x_test, data.y_test)
        >>> 0.0 <= accuracy <= 1.0
        True
    """
    check_module("model", model)
    check_float_tensor("x", x)
    check_labels(x, y)
    was_training = model.training
    model.eval()
    try:
        logits = model(x)
    finally:
        model.train(was_training)
    loss = F.cross_entropy(logits, y)
    accuracy = (logits.argmax(dim=1) == y).to(torch.float64).mean()
    return float(loss), float(accuracy)
