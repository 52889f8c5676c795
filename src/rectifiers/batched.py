r"""Train many small MLPs at once: every seed and every activation in one computation.

A sweep such as 8 negative slopes :math:`\times` 5 seeds is 40 independent networks.
:class:`BatchedMLP` (defined in ``rectifiers.stacked``) stacks their parameters along a leading
*model* dimension of size :math:`M`, e.g. the weights of layer :math:`k` become one tensor of
shape :math:`(M, d_{k-1}, d_k)`, and each layer is one batched matrix product
(``torch.baddbmm``) for all models; :func:`train_batched` trains them all with one optimizer.
The arithmetic is the same as in 40 separate loops and the per-model matrices are just as
small; what stacking saves is the per-step overhead (Python, autograd bookkeeping, optimizer
calls) of 40 loops, so the speed-up is bounded by the share of the loop's time that is matrix
products. The book's Performance page has both figures, measured by ``make bench`` for the
40-model sweep.

On a busy machine, mind the threads: with two OpenMP threads, each of the many parallel
regions of a step waits for a thread that the operating system may have parked behind another
process, and the same run can take several times longer than with one thread (the Performance
page shows it). Setting ``OMP_WAIT_POLICY=PASSIVE`` in the environment (before Python starts)
or ``torch.set_num_threads(1)`` avoids that.

The stacked training gives the same result as training each model on its own with
:func:`rectifiers.training.train` (up to floating-point rounding) because

- each model is built by :func:`rectifiers.training.mlp` from its own seed, then stacked;
- each model sees its own data order, drawn exactly as ``train`` draws it from the same seed;
- the loss is the sum of the models' own mean cross-entropies,
  :math:`\mathcal{L} = \sum_{m=1}^{M} \mathcal{L}_m`, so the gradient with respect to model
  :math:`m`'s parameters is :math:`\nabla \mathcal{L}_m` alone;
- batch norm normalises each model by its own batch statistics;
- SGD, Adam and AdamW update every parameter entry independently of the others, so one
  optimizer over the stacked tensors makes exactly the per-model updates.

Every hidden layer applies its model's own activation: :math:`\phi_a(z) = z` for :math:`z > 0`
and :math:`a z` otherwise, with a slope :math:`a` fixed (ReLU is :math:`a = 0`) or learnable
(PReLU, one slope per layer or one per unit), or ELU, GELU, SiLU or RReLU, so ReLU, Leaky
ReLU, PReLU and their relatives share one run. The one exception to exact equality is RReLU in
training mode: its slopes are random, drawn here from the trainer's generator rather than
from PyTorch's global one, so they follow the same distribution but not the same draws.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import torch

from rectifiers._validation import (
    check_activation,
    check_data,
    check_non_negative_int,
    check_non_negative_real,
    check_positive_int,
)
from rectifiers.data import MNIST1D
from rectifiers.stacked import BatchedMLP, _check_seeds, losses
from rectifiers.training import ACTIVATIONS, PRELU_KINDS, data_orders, make_optimizer, mlp

__all__ = ["BatchedHistory", "BatchedMLP", "batched_mlp", "grid", "train_batched"]


def grid(activations, seeds) -> tuple[list, list[int]]:
    """Every (activation, seed) pair, activation-major, as two equally long lists.

    Results of a run over the grid reshape to ``(len(activations), len(seeds))``: model
    :math:`m` has activation ``m // len(seeds)`` and seed ``m % len(seeds)``.

    Args:
        activations: activations as accepted by ``mlp`` (slopes or names in
            :data:`rectifiers.training.ACTIVATIONS`).
        seeds: non-negative ints.

    Returns:
        ``(per_model_activations, per_model_seeds)``.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if a list is empty or an entry has a wrong value.

    Example:
        >>> grid([0.0, "prelu"], [0, 1, 2])
        ([0.0, 0.0, 0.0, 'prelu', 'prelu', 'prelu'], [0, 1, 2, 0, 1, 2])
    """
    if isinstance(activations, (str, bytes)) or not isinstance(activations, Sequence):
        raise TypeError(f"activations must be a sequence, got {type(activations).__name__}")
    if not activations:
        raise ValueError("activations must be non-empty")
    activations = [
        check_activation(f"activations[{i}]", a, ACTIVATIONS) for i, a in enumerate(activations)
    ]
    seeds = _check_seeds(seeds)
    pairs = list(itertools.product(activations, seeds))
    return [a for a, _ in pairs], [s for _, s in pairs]


def batched_mlp(
    sizes,
    activations,
    seeds,
    *,
    bias_shift: float = 0.0,
    prelu_init: float = 0.25,
    batch_norm: bool = False,
    residual: bool = False,
) -> BatchedMLP:
    """Build model :math:`m` as ``mlp(sizes, activations[m], seed=seeds[m], ...)``, then stack.

    Models with the same seed start from the same ``Linear`` weights and biases (whatever
    their activation) and, in :func:`rectifiers.batched.train_batched`, see the same data
    order, so comparisons between activations are paired.

    Args:
        sizes: layer widths, input first and output last (two sizes: softmax regression);
            e.g. ``[40] + [16] * 15 + [10]`` for a deep narrow MLP.
        activations: one per model: a fixed negative slope or a name in
            :data:`rectifiers.training.ACTIVATIONS` (``"relu"``, ``"prelu"``,
            ``"prelu_channelwise"``, ``"elu"``, ``"gelu"``, ``"silu"``, ``"rrelu"``; see
            :func:`grid`).
        seeds: one non-negative int per model.
        bias_shift: added to the hidden layers' biases after initialisation.
        prelu_init: initial PReLU slope.
        batch_norm: batch norm between each hidden ``Linear`` and its activation (all models).
        residual: skip connections around the hidden layers after the first whose input and
            output widths agree (all models), as in :func:`rectifiers.training.mlp`.

    Returns:
        A ``BatchedMLP`` of ``len(seeds)`` models (float32) remembering ``seeds``.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if an argument has a wrong value or the lists differ in length.

    Example:
        >>> slopes, seeds = grid([0.0, 0.01, "prelu"], range(5))
        >>> batched_mlp([40, 100, 100, 10], slopes, seeds).num_models
        15
        >>> kinds, seeds = grid(["relu", "elu", "gelu", "silu", "rrelu"], range(3))
        >>> deep = batched_mlp([40] + [16] * 15 + [10], kinds, seeds, batch_norm=True)
        >>> deep.num_models, deep.num_hidden, deep.batch_norm[0]
        (15, 15, True)
    """
    if isinstance(activations, (str, bytes)) or not isinstance(activations, Sequence):
        raise TypeError(f"activations must be a sequence, got {type(activations).__name__}")
    activations = [
        check_activation(f"activations[{i}]", a, ACTIVATIONS) for i, a in enumerate(activations)
    ]
    for i, activation in enumerate(activations):
        if callable(activation):
            raise TypeError(
                f"activations[{i}] must be a slope or a name such as 'relu' or one of "
                f"{PRELU_KINDS} (module factories cannot be stacked)"
            )
    seeds = _check_seeds(seeds, len(activations))
    models = [
        mlp(
            sizes,
            activation,
            seed=seed,
            bias_shift=bias_shift,
            prelu_init=prelu_init,
            batch_norm=batch_norm,
            residual=residual,
        )
        for activation, seed in zip(activations, seeds, strict=True)
    ]
    return BatchedMLP(models, seeds)


@dataclasses.dataclass(kw_only=True, eq=False, repr=False)
class BatchedHistory:
    """What :func:`train_batched` recorded: :math:`R` records of :math:`M` models' state.

    Records are taken before training (step 0) and then at every recording point (see
    ``record_every``), always on the held-out data given to the trainer. Shapes use
    :math:`R` records, :math:`M` models, :math:`L` hidden layers and :math:`E` epochs.

    Attributes:
        steps: optimizer steps taken at each record, shape :math:`(R,)`.
        steps_per_epoch: optimizer steps per epoch (to convert steps to epochs).
        train_loss: mean mini-batch loss of each epoch, shape :math:`(E, M)`.
        test_loss: held-out mean cross-entropy, shape :math:`(R, M)`.
        test_accuracy: held-out accuracy (fraction), shape :math:`(R, M)`.
        dead_fraction: fraction of dead units, shape :math:`(R, M, L)`.
        negative_fraction: fraction of negative pre-activations, shape :math:`(R, M, L)`.
        zero_fraction: fraction of zero outputs, shape :math:`(R, M, L)`.
        slope: mean negative slope per layer, shape :math:`(R, M, L)`.
    """

    steps: torch.Tensor
    steps_per_epoch: int
    train_loss: torch.Tensor
    test_loss: torch.Tensor
    test_accuracy: torch.Tensor
    dead_fraction: torch.Tensor
    negative_fraction: torch.Tensor
    zero_fraction: torch.Tensor
    slope: torch.Tensor

    def __repr__(self) -> str:
        records, models = self.test_accuracy.shape
        return f"BatchedHistory({records} records of {models} models, steps={self.steps.tolist()})"


# The keywords are train's, in train's order, on purpose (the duplicates tool lists the two
# signatures as a pair): a sweep moves between the loop and the batched trainer unchanged.
def train_batched(
    model: BatchedMLP,
    data: MNIST1D,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 100,
    optimizer: str = "adam",
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    slope_weight_decay: float | None = None,
    seeds=None,
    record_every: int | None = None,
    callback=None,
    noise_seed: int = 0,
) -> BatchedHistory:
    """Train all models of ``model`` in place, exactly as ``train`` would train each alone.

    Model :math:`m` visits the training set in the order that
    ``rectifiers.training.train(..., seed=seeds[m])`` uses (a fresh permutation per epoch from
    a generator seeded with ``seeds[m]``), in mini-batches of ``batch_size``. One optimizer
    minimises the sum over models of each model's mean cross-entropy. Statistics (see
    :meth:`BatchedMLP.statistics`) and held-out loss and accuracy are recorded on the test
    split of ``data``.

    Args:
        model: the stacked models (see :func:`batched_mlp`).
        data: an ``MNIST1D`` with inputs of shape :math:`(N, d_0)`; the training split is
            trained on, the test split is the held-out data for recording.
        epochs: number of passes over the training set.
        lr: learning rate.
        batch_size: examples per mini-batch (the last batch of an epoch may be smaller).
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        momentum: SGD momentum (0 for Adam and AdamW).
        weight_decay: weight decay of weights and biases.
        slope_weight_decay: weight decay of learnable PReLU slopes; ``None`` means the same
            as ``weight_decay`` (what ``train`` does without ``param_groups``). Use 0 to
            exempt the slopes, as ``param_groups`` would in ``train``.
        seeds: per-model data-order seeds; by default the seeds the models were built from.
        record_every: record every this many optimizer steps (and after the last step);
            ``None`` records at the end of every epoch.
        callback: called as ``callback(step, model)`` at every record, after recording (the
            model is in training mode; its ``evaluate`` and ``statistics`` switch to
            evaluation mode and back).
        noise_seed: seed of ``model.generator``, from which RReLU draws its random slopes in
            training; the models train in training mode and are recorded in evaluation mode.

    Returns:
        A ``BatchedHistory``.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if an argument has a wrong value, or no seeds are known.

    Example:
        >>> from rectifiers.data import load_mnist1d
        >>> data = load_mnist1d().subset(1000, 500)
        >>> slopes, seeds = grid([0.0, 0.01, 0.1, "prelu"], range(5))
        >>> nets = batched_mlp([40, 100, 100, 10], slopes, seeds)
        >>> history = train_batched(nets, data, epochs=3, lr=1e-2)
        >>> history.test_accuracy.shape, history.dead_fraction.shape
        (torch.Size([4, 20]), torch.Size([4, 20, 2]))
    """
    if not isinstance(model, BatchedMLP):
        raise TypeError(f"model must be a BatchedMLP (see batched_mlp), got {type(model).__name__}")
    data = check_data("data", data, flat=True)
    if data.num_features != model.sizes[0]:
        raise ValueError(
            f"data has {data.num_features} features but the models expect {model.sizes[0]}"
        )
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    if slope_weight_decay is not None:
        slope_weight_decay = check_non_negative_real("slope_weight_decay", slope_weight_decay)
    if seeds is None:
        if model.seeds is None:
            raise ValueError("seeds must be given: the models were stacked without seeds")
        seeds = model.seeds
    seeds = _check_seeds(seeds, model.num_models)
    if record_every is not None:
        record_every = check_positive_int("record_every", record_every)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    noise_seed = check_non_negative_int("noise_seed", noise_seed)
    # Weights, biases and batch-norm parameters decay alike, as train's one default group.
    groups = [
        {
            "params": [
                *model.weights,
                *model.biases,
                *model.norm_weights.values(),
                *model.norm_biases.values(),
            ]
        }
    ]
    if len(model.slopes):
        slope_group = {"params": list(model.slopes.values())}
        if slope_weight_decay is not None:
            slope_group["weight_decay"] = slope_weight_decay
        groups.append(slope_group)
    opt = make_optimizer(groups, optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum)

    model.generator = torch.Generator().manual_seed(noise_seed)
    model.train()
    x, y = model._check_dtype("data.x_train", data.x_train), data.y_train
    x_test, y_test = data.x_test, data.y_test
    dtype = x.dtype
    n, num_models = len(y), model.num_models
    steps_per_epoch = -(-n // batch_size)
    records: list[tuple[int, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]] = []

    def record(step: int) -> None:
        records.append((step, *model._measure(x_test, y_test)))
        if callback is not None:
            callback(step, model)

    # One stream of orders per distinct seed: models sharing a seed share the order, exactly
    # as separate train(..., seed=seed) calls would draw it.
    orders = {seed: data_orders(n, seed) for seed in dict.fromkeys(seeds)}
    train_loss = torch.zeros(epochs, num_models, dtype=dtype)
    step = 0
    record(step)
    for epoch in range(epochs):
        perms = {seed: next(stream) for seed, stream in orders.items()}
        order = torch.stack([perms[seed] for seed in seeds])  # (M, n)
        # The whole epoch's examples in each model's order, gathered at once: one indexing
        # operation per epoch instead of one per step; each batch is then a view.
        x_epoch, y_epoch = x[order], y[order]  # (M, n, d_0), (M, n)
        epoch_loss = torch.zeros(num_models, dtype=dtype)
        for xb, yb in zip(
            x_epoch.split(batch_size, dim=1), y_epoch.split(batch_size, dim=1), strict=True
        ):
            batch_losses = losses(model._forward(xb)[0], yb)
            opt.zero_grad()
            batch_losses.sum().backward()
            opt.step()
            epoch_loss += batch_losses.detach()
            step += 1
            if record_every is not None and step % record_every == 0:
                record(step)
        train_loss[epoch] = epoch_loss / steps_per_epoch
        if record_every is None or (epoch == epochs - 1 and step % record_every):
            record(step)

    return BatchedHistory(
        steps=torch.tensor([r[0] for r in records]),
        steps_per_epoch=steps_per_epoch,
        train_loss=train_loss,
        test_loss=torch.stack([r[1] for r in records]),
        test_accuracy=torch.stack([r[2] for r in records]),
        **{
            name: torch.stack([r[3][name] for r in records])
            for name in ("dead_fraction", "negative_fraction", "zero_fraction", "slope")
        },
    )
