r"""Units dying during training: which units die, in which layer, and whether they come back.

:func:`track_dying` trains every (activation, seed) pair of a grid at once with the batched
trainer and records, at every record, which hidden units are dead on the held-out signals (a
unit is dead when its pre-activation is :math:`\le 0` on every one of them), the held-out
accuracy and, for PReLU, the learned slopes. :func:`layer_statistics` measures the
distribution of each hidden layer's activations and of its units' gradient norms; with
``layer_stats=True`` the tracker records those too, so a figure of the per-layer diagnostics
over training is drawn from the same run as the dead fractions.

A run's record :math:`r` of activation :math:`a`, seed :math:`s`, hidden layer :math:`l` and
unit :math:`u` is ``run.dead_units[r, a, s, l, u]``; everything else is a reduction of it or a
column recorded next to it, so a figure is one step from its data.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from rectifiers._validation import (
    check_choice,
    check_float_tensor,
    check_positive_int,
    check_real,
)
from rectifiers.batched import BatchedMLP, batched_mlp, grid, train_batched
from rectifiers.data import MNIST1D
from rectifiers.experiments.criteria import plateau_change
from rectifiers.init import kaiming_init_

__all__ = ["DyingRun", "LayerStats", "layer_statistics", "sweep_learning_rates", "track_dying"]

#: The quantiles recorded by default: the median and the 10-90% and 25-75% bands.
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class LayerStats:
    r"""Per-layer distributions at every record, for :math:`A` activations and :math:`S` seeds.

    Attributes:
        quantiles: the :math:`Q` probabilities, e.g. ``(0.1, 0.25, 0.5, 0.75, 0.9)``.
        activation: :math:`(R, A, S, L, Q)`: quantiles of the hidden layer's outputs
            :math:`\phi(z)` over all examples and units.
        grad_norm: :math:`(R, A, S, L, Q)`: quantiles over the layer's units of the gradient
            norm :math:`\|\partial \mathcal{L} / \partial \mathbf{w}_j\|` of each unit's
            incoming weights (0 for a dead ReLU unit).
    """

    quantiles: tuple[float, ...]
    activation: torch.Tensor
    grad_norm: torch.Tensor


@dataclass(frozen=True)
class DyingRun:
    r"""What :func:`track_dying` recorded: :math:`R` records of :math:`A \times S` networks.

    Shapes use :math:`R` records, :math:`A` activations, :math:`S` seeds, :math:`L` hidden
    layers of :math:`U` units each, and :math:`E` epochs.

    Attributes:
        sizes: the layer widths.
        activations: the :math:`A` activations (slopes or ``"prelu"``).
        seeds: the :math:`S` seeds; networks with the same seed share initial weights and
            mini-batches.
        lr: the learning rate (Adam).
        steps: optimizer steps at each record, :math:`(R,)`; record 0 is before training.
        steps_per_epoch: optimizer steps per epoch.
        accuracy: held-out accuracy, :math:`(R, A, S)`.
        train_loss: mean mini-batch loss of each epoch, :math:`(E, A, S)`.
        dead_units: ``bool`` :math:`(R, A, S, L, U)`: unit :math:`\le 0` on every held-out signal.
        slopes: mean negative slope of each layer (the learned one for PReLU),
            :math:`(R, A, S, L)`.
        layer_stats: a :class:`LayerStats`, or ``None`` if not recorded.
        stack: the trained networks, stacked (shared by the runs of one learning-rate sweep).
        offset: the index in ``stack`` of this run's first network.
    """

    sizes: list[int]
    activations: list
    seeds: list[int]
    lr: float
    steps: torch.Tensor
    steps_per_epoch: int
    accuracy: torch.Tensor
    train_loss: torch.Tensor
    dead_units: torch.Tensor
    slopes: torch.Tensor
    layer_stats: LayerStats | None = None
    stack: BatchedMLP | None = None
    offset: int = 0

    def network(self, activation: int, seed: int):
        """The trained network of activation index ``activation`` and seed index ``seed``.

        Returns:
            A stand-alone ``nn.Sequential`` (a copy, see ``BatchedMLP.unstack``).
        """
        if self.stack is None:
            raise ValueError("this run kept no networks (stack is None)")
        a_count, s_count = len(self.activations), len(self.seeds)
        for name, i, count in (("activation", activation, a_count), ("seed", seed, s_count)):
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < count:
                raise ValueError(f"{name} must be an index in [0, {count - 1}], got {i!r}")
        return self.stack.unstack(self.offset + activation * s_count + seed)

    @property
    def epochs(self) -> torch.Tensor:
        """The epoch of each record (a float64 tensor of shape :math:`(R,)`)."""
        return self.steps.double() / self.steps_per_epoch

    @property
    def dead(self) -> torch.Tensor:
        r"""The dead fraction of each hidden layer, :math:`(R, A, S, L)`, float64."""
        return self.dead_units.double().mean(dim=-1)

    def final_accuracy(self, window: int = 5) -> torch.Tensor:
        """Each network's mean held-out accuracy over its last ``window`` records, :math:`(A, S)`.

        Averaging a few records smooths the epoch-to-epoch noise of a single evaluation.
        """
        window = self._check_window(window, 1)
        return self.accuracy[-window:].double().mean(dim=0)

    def plateaued(self, window: int = 5, tolerance: float = 0.01) -> torch.Tensor:
        r"""Whether each network's held-out accuracy has reached a plateau, ``bool`` :math:`(A, S)`.

        The criterion: the mean accuracy over the last ``window`` records differs from the
        mean over the ``window`` records before them by less than ``tolerance``,

        .. math::
            \Bigl|\tfrac{1}{w} \textstyle\sum_{r=R-w}^{R-1} \text{acc}_r
            - \tfrac{1}{w} \sum_{r=R-2w}^{R-w-1} \text{acc}_r\Bigr| < \text{tolerance}.

        Args:
            window: records per half, at least 1 and at most half the records after step 0.
            tolerance: a positive accuracy difference (0.01 is one percentage point).
        """
        window = self._check_window(window, 2)
        if not check_real("tolerance", tolerance) > 0:
            raise ValueError(f"tolerance must be positive, got {tolerance!r}")
        return plateau_change(self.accuracy, window).abs() < tolerance

    def revived(self, start: int, stop: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Units dead at record ``start``, and how many of them are alive at record ``stop``.

        Returns:
            ``(dead_then, back)``, ``int64`` counts of shape :math:`(A, S, L)`.
        """
        records = len(self.steps)
        for name, r in (("start", start), ("stop", stop)):
            if isinstance(r, bool) or not isinstance(r, int) or not -records <= r < records:
                raise ValueError(f"{name} must be a record index in [{-records}, {records - 1}]")
        then = self.dead_units[start]
        back = then & ~self.dead_units[stop]
        return then.sum(dim=-1), back.sum(dim=-1)

    def steps_to(self, accuracy: float) -> torch.Tensor:
        """The first recorded step at which each network reached ``accuracy``, :math:`(A, S)`.

        ``inf`` where a network never did (float64, so that means and intervals work).
        """
        if not 0 < check_real("accuracy", accuracy) <= 1:
            raise ValueError(f"accuracy must be in (0, 1], got {accuracy!r}")
        reached = self.accuracy.double() >= accuracy  # (R, A, S)
        first = reached.double().argmax(dim=0)
        steps = self.steps.double()[first]
        return torch.where(reached.any(dim=0), steps, math.inf)

    def _check_window(self, window: object, halves: int) -> int:
        window = check_positive_int("window", window)
        if halves * window > len(self.steps) - 1:
            raise ValueError(
                f"window must be at most {(len(self.steps) - 1) // halves} for "
                f"{len(self.steps) - 1} records after step 0, got {window}"
            )
        return window


def _he_initialised(nets: BatchedMLP, seeds: list[int], bias_shift: float) -> BatchedMLP:
    """``nets`` with He-normal weights (ReLU's gain) drawn from each model's seed."""
    models = []
    for m, seed in enumerate(seeds):
        net = nets.unstack(m)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            kaiming_init_(net, 0.0)
        with torch.no_grad():
            for layer in list(net)[:-1:2]:  # hidden layers' linear maps
                layer.bias.add_(bias_shift)
        models.append(net)
    return BatchedMLP(models, seeds)


@torch.no_grad()
def _dead_units(model: BatchedMLP, x: torch.Tensor) -> torch.Tensor:
    """``bool`` (M, L, U): which units are :math:`\\le 0` on every row of ``x``."""
    _, pre = model.forward_with_preactivations(x)
    return torch.stack([(z <= 0).all(dim=1) for z in pre], dim=1)


def layer_statistics(model, x, y, quantiles: Sequence[float] = QUANTILES):
    r"""Quantiles of each hidden layer's activations and of its units' gradient norms.

    For model :math:`m` and hidden layer :math:`l` with outputs :math:`h_{nj} = \phi(z_{nj})`
    on the examples :math:`n` of ``x``, and the loss :math:`\mathcal{L}_m`, the mean
    cross-entropy on ``(x, y)``:

    - the activation quantiles are taken over all :math:`h_{nj}` (examples and units);
    - the gradient quantiles are taken over the units :math:`j` of
      :math:`g_j = \|\partial \mathcal{L}_m / \partial \mathbf{w}_j\|_2`, the norm of the
      gradient of unit :math:`j`'s incoming weights.

    The optimizer's ``.grad`` fields are not touched.

    Args:
        model: a :class:`rectifiers.batched.BatchedMLP` of :math:`M` models whose hidden
            layers are rectifiers (fixed slopes or PReLU), without batch norm.
        x: inputs of shape :math:`(N, d_0)` in the models' dtype.
        y: ``torch.int64`` labels of shape :math:`(N,)`.
        quantiles: :math:`Q` probabilities in :math:`[0, 1]`.

    Returns:
        ``(activation, grad_norm)``, each of shape :math:`(M, L, Q)`.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if shapes disagree or a quantile is outside :math:`[0, 1]`.

    Example:
        >>> nets = batched_mlp([40, 16, 16, 10], [0.0, 0.1], [0, 0])
        >>> act, grad = layer_statistics(nets, torch.randn(64, 40), torch.zeros(64).long())
        >>> act.shape, grad.shape
        (torch.Size([2, 2, 5]), torch.Size([2, 2, 5]))
    """
    if not isinstance(model, BatchedMLP):
        raise TypeError(f"model must be a BatchedMLP, got {type(model).__name__}")
    check_float_tensor("x", x)
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64:
        raise TypeError(f"y must be a torch.int64 tensor of labels, got {type(y).__name__}")
    if x.dim() != 2 or y.shape != (x.shape[0],):
        raise ValueError(
            f"x must have shape (N, d) and y shape (N,), got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    q = _check_quantiles(quantiles, x.dtype)
    for k in range(model.num_hidden):
        if torch.isnan(model.slope(k)).any():
            raise ValueError(
                f"layer_statistics needs rectifiers (fixed slopes or PReLU) in every model; "
                f"hidden layer {k} has an activation without a negative slope"
            )
    with torch.enable_grad():
        logits, pre = model.forward_with_preactivations(x)
        models, n, classes = logits.shape
        # The sum of the models' mean losses: model m's gradient is its own loss's alone.
        loss = F.cross_entropy(logits.reshape(-1, classes), y.repeat(models), reduction="sum") / n
        weights = list(model.weights)[: model.num_hidden]
        grads = torch.autograd.grad(loss, weights)
    activation, grad_norm = [], []
    with torch.no_grad():
        for k, (z, g) in enumerate(zip(pre, grads, strict=True)):
            h = torch.where(z > 0, z, model.slope(k).unsqueeze(1) * z)
            activation.append(torch.quantile(h.reshape(models, -1), q, dim=1).T)
            # weights[k] is (M, d_in, d_out): unit j's incoming weights are column j.
            grad_norm.append(torch.quantile(g.norm(dim=1), q, dim=1).T)
    return torch.stack(activation, dim=1), torch.stack(grad_norm, dim=1)


def _check_positive(name: str, value: object) -> float:
    if not check_real(name, value) > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return float(value)


def _check_quantiles(quantiles: object, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(quantiles, (str, bytes)) or not isinstance(quantiles, Sequence) or not quantiles:
        raise TypeError(f"quantiles must be a non-empty sequence of numbers, got {quantiles!r}")
    values = [check_real(f"quantiles[{i}]", v) for i, v in enumerate(quantiles)]
    if not all(0 <= v <= 1 for v in values):
        raise ValueError(f"quantiles must lie in [0, 1], got {list(quantiles)}")
    return torch.tensor(values, dtype=dtype)


@contextlib.contextmanager
def _per_model_lr(model: BatchedMLP, factors: torch.Tensor):
    r"""Scale each stacked model's optimizer step by its own factor while the context is open.

    ``train_batched`` takes one learning rate for all models. Adam's step is
    :math:`-\eta\, \hat m / (\sqrt{\hat v} + \epsilon)`, where the moments depend only on
    the gradients, so multiplying model :math:`m`'s step by :math:`f_m` is Adam with learning
    rate :math:`f_m \eta`. A pre-step hook keeps the parameters, a post-step hook rescales the
    step; the hooks are global to ``torch.optim`` (the trainer builds its optimizer inside), so
    they act only on an optimizer holding this model's tensors, and are removed on exit.
    """
    params = [*model.weights, *model.biases, *model.slopes.values()]
    ours = {id(p) for p in params}
    before: list[torch.Tensor] = []

    def mine(optimizer) -> bool:
        return any(id(p) in ours for group in optimizer.param_groups for p in group["params"])

    def keep(optimizer, args, kwargs):
        if mine(optimizer):
            before[:] = [p.detach().clone() for p in params]

    def rescale(optimizer, args, kwargs):
        if mine(optimizer):
            with torch.no_grad():
                for p, old in zip(params, before, strict=True):
                    f = factors.to(p.dtype).view(-1, *[1] * (p.dim() - 1))
                    p.sub_(old).mul_(f).add_(old)

    handles = [register_optimizer_step_pre_hook(keep), register_optimizer_step_post_hook(rescale)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def sweep_learning_rates(
    data: MNIST1D,
    sizes: Sequence[int],
    activations: Sequence,
    seeds: Sequence[int],
    *,
    lrs: Sequence[float],
    epochs: int,
    record_every: int | None = None,
    bias_shift: float = 0.0,
    init: str = "default",
    layer_stats: bool = False,
    stats_examples: int = 500,
    quantiles: Sequence[float] = QUANTILES,
) -> dict[float, DyingRun]:
    r""":func:`track_dying` for several learning rates, all trained in one batched run.

    Every (learning rate, activation, seed) triple is one stacked model; Adam's step of each
    model is scaled to its own learning rate (exact: Adam's moments do not depend on the
    learning rate), so the result equals one :func:`track_dying` call per learning rate up to
    floating-point rounding, while the per-step overhead is paid once.

    Args:
        data: the data set; trained on its training split, measured on its test split.
        sizes: layer widths, input first; every hidden layer must have the same width.
        activations: the :math:`A` activations (fixed slopes, ``"prelu"``, ...).
        seeds: the :math:`S` seeds.
        lrs: Adam's learning rates, positive and distinct.
        epochs: passes over the training set.
        record_every: record every this many steps; ``None``: every epoch.
        bias_shift: added to every hidden bias at initialisation (negative kills units).
        init: ``"default"`` (PyTorch's ``nn.Linear`` initialisation) or ``"he"``: He-normal
            weights with ReLU's gain :math:`\sqrt{2}` and zero biases
            (:func:`rectifiers.init.kaiming_init_`), drawn from the seed, the same for every
            activation so that networks with the same seed still start from the same weights.
        layer_stats: also record :func:`layer_statistics` on the first ``stats_examples``
            training examples.
        stats_examples: how many training examples the layer statistics use.
        quantiles: the quantiles of the layer statistics.

    Returns:
        A dict from each learning rate to its :class:`DyingRun`.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if an argument has a wrong value.

    Example:
        >>> from rectifiers.data import load_mnist1d
        >>> data = load_mnist1d().subset(300, 200)
        >>> runs = sweep_learning_rates(data, [40, 16, 10], [0.0, "prelu"], [0, 1],
        ...                             lrs=[0.01, 0.1], epochs=1)
        >>> sorted(runs), runs[0.1].accuracy.shape
        ([0.01, 0.1], torch.Size([2, 2, 2]))
    """
    if isinstance(lrs, (str, bytes)) or not isinstance(lrs, Sequence) or not lrs:
        raise TypeError(f"lrs must be a non-empty sequence of learning rates, got {lrs!r}")
    lrs = [_check_positive(f"lrs[{i}]", lr) for i, lr in enumerate(lrs)]
    if len(set(lrs)) != len(lrs):
        raise ValueError(f"lrs must be distinct, got {lrs}")
    widths = list(sizes)[1:-1]
    if len(set(widths)) > 1:
        raise ValueError(f"every hidden layer must have the same width, got sizes {list(sizes)}")
    stats_examples = check_positive_int("stats_examples", stats_examples)
    if not isinstance(layer_stats, bool):
        raise TypeError(f"layer_stats must be a bool, got {type(layer_stats).__name__}")
    q = _check_quantiles(quantiles, torch.float32)
    init = check_choice("init", init, ("default", "he"))
    per_model, per_seed = grid(list(activations) * len(lrs), seeds)
    nets = batched_mlp(sizes, per_model, per_seed, bias_shift=bias_shift)
    if init == "he":
        nets = _he_initialised(nets, per_seed, bias_shift)
    x_stats, y_stats = data.x_train[:stats_examples], data.y_train[:stats_examples]
    masks, act_q, grad_q = [], [], []

    def on_record(step: int, model: BatchedMLP) -> None:
        masks.append(_dead_units(model, data.x_test))
        if layer_stats:
            a, g = layer_statistics(model, x_stats, y_stats, q.tolist())
            act_q.append(a)
            grad_q.append(g)

    per_lr = len(activations) * len(seeds)
    factors = torch.tensor(lrs, dtype=torch.float64).repeat_interleave(per_lr) / lrs[0]
    with _per_model_lr(nets, factors):
        history = train_batched(
            nets, data, epochs=epochs, lr=lrs[0], record_every=record_every, callback=on_record
        )
    shape = (len(lrs), len(activations), len(seeds))

    def split(t: torch.Tensor) -> torch.Tensor:  # (R, M, ...) -> (lr, R, A, S, ...)
        return t.view(t.shape[0], *shape, *t.shape[2:]).transpose(0, 1)

    columns = {
        "accuracy": split(history.test_accuracy).double(),
        "train_loss": split(history.train_loss).double(),
        "dead_units": split(torch.stack(masks)),
        "slopes": split(history.slope).double(),
    }
    if layer_stats:
        columns["activation"] = split(torch.stack(act_q))
        columns["grad_norm"] = split(torch.stack(grad_q))
    runs = {}
    for i, lr in enumerate(lrs):
        stats = None
        if layer_stats:
            stats = LayerStats(tuple(q.tolist()), columns["activation"][i], columns["grad_norm"][i])
        runs[lr] = DyingRun(
            sizes=list(sizes),
            activations=list(activations),
            seeds=list(seeds),
            lr=lr,
            steps=history.steps,
            steps_per_epoch=history.steps_per_epoch,
            accuracy=columns["accuracy"][i],
            train_loss=columns["train_loss"][i],
            dead_units=columns["dead_units"][i],
            slopes=columns["slopes"][i],
            layer_stats=stats,
            stack=nets,
            offset=i * per_lr,
        )
    return runs


def track_dying(
    data: MNIST1D,
    sizes: Sequence[int],
    activations: Sequence,
    seeds: Sequence[int],
    *,
    lr: float,
    epochs: int,
    **options,
) -> DyingRun:
    r"""Train every (activation, seed) pair at once and record which units are dead.

    All :math:`A \times S` networks are built by :func:`rectifiers.batched.batched_mlp` and
    trained together by :func:`rectifiers.batched.train_batched` (Adam, mini-batches of 100),
    so networks with the same seed start from the same weights and see the same mini-batches.
    At every record (before training, then every ``record_every`` steps or every epoch) the
    held-out signals ``data.x_test`` decide which units are dead.

    Args:
        lr: Adam's learning rate.
        options: ``record_every``, ``bias_shift``, ``init``, ``layer_stats``,
            ``stats_examples`` and ``quantiles``, passed on to :func:`sweep_learning_rates`.
        (the others as in :func:`sweep_learning_rates`)

    Returns:
        A :class:`DyingRun`.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if an argument has a wrong value or the hidden widths differ.

    Example:
        >>> from rectifiers.data import load_mnist1d
        >>> data = load_mnist1d().subset(500, 200)
        >>> run = track_dying(data, [40, 32, 32, 10], [0.0, 0.1], [0, 1], lr=0.01, epochs=2)
        >>> run.dead_units.shape, run.accuracy.shape
        (torch.Size([3, 2, 2, 2, 32]), torch.Size([3, 2, 2]))
    """
    # The options go through as they are, so their defaults live in one place: the sweep's.
    runs = sweep_learning_rates(data, sizes, activations, seeds, lrs=[lr], epochs=epochs, **options)
    return runs[_check_positive("lr", lr)]
