r"""Train many small MLPs at once: every seed and every activation in one computation.

A sweep such as 8 negative slopes :math:`\times` 5 seeds is 40 independent networks. Here
their parameters are stacked along a leading *model* dimension of size :math:`M`, e.g. the
weights of layer :math:`k` become one tensor of shape :math:`(M, d_{k-1}, d_k)`, and each layer
is one batched matrix product (``torch.baddbmm``) for all models. The arithmetic is the same as
in 40 separate loops and the per-model matrices are just as small; what stacking saves is the
per-step overhead (Python, autograd bookkeeping, optimizer calls) of 40 loops, so the
speed-up is bounded by the share of the loop's time that is matrix products. The book's
Performance page has both figures, measured by ``make bench`` for the 40-model sweep.

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
- SGD, Adam and AdamW update every parameter entry independently of the others, so one
  optimizer over the stacked tensors makes exactly the per-model updates.

Every hidden layer applies :math:`\phi_a(z) = z` for :math:`z > 0` and :math:`a z` otherwise,
with a per-model slope :math:`a`: fixed (ReLU is :math:`a = 0`) or learnable (PReLU, one slope
per layer or one per unit), so ReLU, Leaky ReLU and PReLU models can share one run.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rectifiers._validation import (
    check_float_tensor,
    check_non_negative_int,
    check_non_negative_real,
    check_positive_int,
)
from rectifiers.data import MNIST1D
from rectifiers.training import (
    PRELU_KINDS,
    check_activation,
    check_data,
    check_sizes,
    data_orders,
    make_optimizer,
    mlp,
)

__all__ = ["BatchedHistory", "BatchedMLP", "batched_mlp", "grid", "train_batched"]


def _parse(index: int, model: object) -> tuple[list[nn.Linear], list[float | str]]:
    """The linear layers and activation kinds of an ``mlp``-shaped ``nn.Sequential``."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"models[{index}] must be an nn.Sequential, got {type(model).__name__}")
    layers = list(model)
    linears, kinds = layers[0::2], []
    if len(layers) % 2 == 0 or not all(isinstance(layer, nn.Linear) for layer in linears):
        raise ValueError(
            f"models[{index}] must alternate Linear and activation layers and end "
            f"with a Linear layer, got {[type(layer).__name__ for layer in layers]}"
        )
    for position, act in enumerate(layers[1::2]):
        width = linears[position].out_features
        if type(act) is nn.ReLU:
            kinds.append(0.0)
        elif type(act) is nn.LeakyReLU:
            kinds.append(float(act.negative_slope))
        elif type(act) is nn.Identity:
            kinds.append(1.0)
        elif type(act) is nn.PReLU and act.num_parameters in (1, width):
            kinds.append("prelu" if act.num_parameters == 1 else "prelu_channelwise")
        else:
            raise ValueError(
                f"models[{index}][{2 * position + 1}] must be nn.ReLU, "
                f"nn.LeakyReLU, nn.Identity or nn.PReLU with 1 or {width} "
                f"parameters, got {act!r}"
            )
    return linears, kinds


class _LeakyRuns(torch.autograd.Function):
    """Leaky ReLU of (M, N, d) pre-activations with one fixed slope per run of models.

    Each run of consecutive models (``(start, stop, slope)``) is written straight into its
    slice of one output, and in backward of one gradient, by PyTorch's own ``leaky_relu``
    kernels, so values and gradients are bit for bit those of ``F.leaky_relu`` on each model
    alone. Splitting ``z`` and concatenating the pieces does the same arithmetic plus a full
    copy per layer in forward and in backward: about a tenth of a training step of 40 models
    [40, 100, 100, 10] on the 2-core machine, by the torch profiler.
    """

    @staticmethod
    def forward(ctx, z, runs):
        out = torch.empty_like(z)
        for start, stop, slope in runs:
            torch.ops.aten.leaky_relu.out(z[start:stop], slope, out=out[start:stop])
        ctx.runs = runs
        ctx.save_for_backward(z)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        grad_z = torch.empty_like(z)
        for start, stop, slope in ctx.runs:
            torch.ops.aten.leaky_relu_backward.grad_input(
                grad[start:stop], z[start:stop], slope, False, grad_input=grad_z[start:stop]
            )
        return grad_z, None


class BatchedMLP(nn.Module):
    r""":math:`M` MLPs of identical shape with stacked parameters, evaluated in one go.

    Layer :math:`k` of model :math:`m` computes :math:`z^{(m)}_k = W^{(m)}_k h^{(m)}_{k-1} +
    b^{(m)}_k` for all :math:`m` with one ``torch.baddbmm``; hidden layers then apply
    :math:`\phi(z) = \max(0, z) + a^{(m)}_k \min(0, z)`, where the slope :math:`a^{(m)}_k` is a
    fixed number or a learnable PReLU slope (per layer or per unit).

    Attributes:
        weights: ``nn.ParameterList``; entry :math:`k` has shape :math:`(M, d_k, d_{k+1})`:
            model :math:`m`'s ``nn.Linear`` weight **transposed**, so that a layer is
            :math:`h W` with no transposition in the forward or backward pass (about 10%
            faster on CPU).
        biases: ``nn.ParameterList``; entry :math:`k` has shape :math:`(M, d_{k+1})`.
        slopes: ``nn.ParameterDict`` of learnable slopes, keyed by hidden-layer index (a string),
            present only for layers where some model is PReLU. Entry shape :math:`(M, 1)`, or
            :math:`(M, d_{k+1})` when some model is channel-wise; a channel-shared model uses
            column 0, and entries of models with a fixed slope are never used.
        activations: per model, its fixed slope (a float) or ``"prelu"`` /
            ``"prelu_channelwise"``.
        seeds: per model, the seed it was built from (``None`` if unknown).
        sizes: the layer widths :math:`[d_0, \ldots, d_K]`.

    Args:
        models: :math:`M \geq 1` networks shaped like :func:`rectifiers.training.mlp` output:
            ``nn.Sequential`` of ``nn.Linear`` layers (with biases) separated by ``nn.ReLU``,
            ``nn.LeakyReLU``, ``nn.Identity`` or ``nn.PReLU`` (1 or width parameters), all with
            the same sizes and dtype; each model may use different activations. Their
            parameters are copied.
        seeds: optional per-model seeds (non-negative ints), kept for the trainer's data order.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if the models are not mlp-shaped or disagree in sizes or dtype.

    Example:
        >>> nets = [mlp([40, 16, 10], slope, seed=0) for slope in (0.0, 0.1, "prelu")]
        >>> batched = BatchedMLP(nets)
        >>> batched(torch.randn(5, 40)).shape
        torch.Size([3, 5, 10])
        >>> torch.allclose(batched(torch.ones(2, 40))[1], nets[1](torch.ones(2, 40)))
        True
    """

    def __init__(self, models, seeds=None):
        super().__init__()
        if isinstance(models, nn.Module) or not isinstance(models, Sequence) or not models:
            raise TypeError(
                "models must be a non-empty sequence (list or tuple) of "
                f"nn.Sequential, got {type(models).__name__}"
            )
        parsed = [_parse(i, model) for i, model in enumerate(models)]
        sizes = [parsed[0][0][0].in_features] + [lin.out_features for lin in parsed[0][0]]
        dtype = parsed[0][0][0].weight.dtype
        for i, (linears, _) in enumerate(parsed):
            these = [linears[0].in_features] + [lin.out_features for lin in linears]
            if these != sizes:
                raise ValueError(f"models[{i}] has sizes {these}, models[0] has {sizes}")
            if any(lin.weight.dtype != dtype or lin.bias is None for lin in linears):
                raise ValueError(f"models[{i}] must have biases and dtype {dtype} like models[0]")
        if seeds is not None:
            seeds = _check_seeds(seeds, len(models))
        self.sizes = sizes
        self.seeds = seeds
        self.activations = [kinds for _, kinds in parsed]
        with torch.no_grad():
            self.weights = nn.ParameterList(
                torch.stack([lins[k].weight.detach().t().contiguous() for lins, _ in parsed])
                for k in range(len(sizes) - 1)
            )
            self.biases = nn.ParameterList(
                torch.stack([lins[k].bias.detach().clone() for lins, _ in parsed])
                for k in range(len(sizes) - 1)
            )
        self.slopes = nn.ParameterDict()
        self._runs: list[list[tuple[int, int, float | None]]] = []
        for k in range(len(sizes) - 2):
            self._stack_slopes(
                k,
                [model[2 * k + 1] for model in models],
                [kinds[k] for _, kinds in parsed],
                sizes[k + 1],
                dtype,
            )

    def _stack_slopes(
        self,
        k: int,
        acts: list[nn.Module],
        kinds: list[float | str],
        width: int,
        dtype: torch.dtype,
    ) -> None:
        learnable = [isinstance(kind, str) for kind in kinds]
        columns = width if "prelu_channelwise" in kinds else 1
        fixed = [0.0 if isinstance(kind, str) else kind for kind in kinds]
        self.register_buffer(f"fixed_slope_{k}", torch.tensor(fixed, dtype=dtype).unsqueeze(1))
        self.register_buffer(f"learnable_{k}", torch.tensor(learnable).unsqueeze(1))
        # Row m of index picks the column of slopes[k] that each unit of model m uses:
        # its own column for channel-wise PReLU, column 0 otherwise.
        index = torch.zeros(len(kinds), columns, dtype=torch.int64)
        if any(learnable):
            values = torch.zeros(len(kinds), columns, dtype=dtype)
            for m, (act, kind) in enumerate(zip(acts, kinds)):
                if kind == "prelu_channelwise":
                    index[m] = torch.arange(columns)
                    values[m] = act.weight.detach()
                elif kind == "prelu":
                    values[m] = act.weight.detach()[0]
            self.slopes[str(k)] = nn.Parameter(values)
        self.register_buffer(f"slope_index_{k}", index)
        # Consecutive models with the same fixed slope share one fused F.leaky_relu call; a
        # run of PReLU models uses their own slopes (start, stop, slope or None).
        runs: list[tuple[int, int, float | None]] = []
        for m, kind in enumerate(kinds):
            slope = None if isinstance(kind, str) else kind
            if runs and runs[-1][2] == slope:
                runs[-1] = (runs[-1][0], m + 1, slope)
            else:
                runs.append((m, m + 1, slope))
        self._runs.append(runs)

    @property
    def num_models(self) -> int:
        """The number :math:`M` of stacked models."""
        return self.weights[0].shape[0]

    @property
    def num_hidden(self) -> int:
        """The number of hidden (activated) layers."""
        return len(self.sizes) - 2

    def slope(self, k: int):
        """The negative slopes of hidden layer ``k``, shape :math:`(M, 1)` or :math:`(M, d)`.

        Args:
            k: hidden-layer index, ``0 <= k < num_hidden``.

        Returns:
            For each model, its fixed slope or its learnable PReLU slope (one per unit for a
            channel-wise model), differentiable with respect to ``slopes``.

        Raises:
            TypeError: if ``k`` is not an int.
            ValueError: if ``k`` is out of range.
        """
        if check_non_negative_int("k", k) >= self.num_hidden:
            raise ValueError(f"k must be less than num_hidden={self.num_hidden}, got {k}")
        fixed = getattr(self, f"fixed_slope_{k}")
        if str(k) not in self.slopes:
            return fixed
        learned = self.slopes[str(k)].gather(1, getattr(self, f"slope_index_{k}"))
        return torch.where(getattr(self, f"learnable_{k}"), learned, fixed)

    def _activate(self, k: int, z: torch.Tensor) -> torch.Tensor:
        """Hidden layer ``k``'s activation of pre-activations ``z`` of shape (M, N, d)."""
        runs = self._runs[k]
        if all(slope is not None for _, _, slope in runs):
            return _LeakyRuns.apply(z, runs)
        pieces = []
        # split (not slicing) so that backward concatenates the pieces' gradients instead of
        # scattering each into a zero tensor of the full size.
        parts = z.split([stop - start for start, stop, _ in runs]) if len(runs) > 1 else [z]
        for (start, stop, slope), part in zip(runs, parts):
            if slope is not None:
                pieces.append(F.leaky_relu(part, slope))
                continue
            # PReLU: relu(z) + a (z - relu(z)) equals z for z > 0 and a z otherwise, exactly in
            # floating point, and (unlike torch.where) runs at the speed of plain arithmetic.
            a = self.slope(k)[start:stop].unsqueeze(1)
            positive = F.relu(part)
            pieces.append(positive + a * (part - positive))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    def forward_with_preactivations(self, x):
        """Logits and every hidden layer's pre-activations :math:`z_k`.

        Args:
            x: inputs of shape :math:`(N, d_0)`, shared by all models, or :math:`(M, N, d_0)`,
                one batch per model.

        Returns:
            ``(logits, pre)``: logits of shape :math:`(M, N, d_K)` and a list with one tensor of
            shape :math:`(M, N, d_k)` per hidden layer.

        Raises:
            TypeError: if ``x`` is not a floating-point tensor of the models' dtype.
            ValueError: if its shape does not fit.
        """
        self._check_dtype("x", check_float_tensor("x", x))
        if x.dim() == 2:
            x = x.expand(self.num_models, *x.shape)
        if x.dim() != 3 or x.shape[0] != self.num_models or x.shape[2] != self.sizes[0]:
            raise ValueError(
                f"x must have shape (N, {self.sizes[0]}) or "
                f"({self.num_models}, N, {self.sizes[0]}), got {tuple(x.shape)}"
            )
        pre = []
        h = x
        for k, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            z = torch.baddbmm(bias.unsqueeze(1), h, weight)
            if k == self.num_hidden:
                return z, pre
            pre.append(z)
            h = self._activate(k, z)
        raise AssertionError("unreachable: the last layer returns")  # pragma: no cover

    def forward(self, x):
        """Logits of every model.

        Args:
            x: inputs of shape :math:`(N, d_0)` (shared) or :math:`(M, N, d_0)`.

        Returns:
            Logits of shape :math:`(M, N, d_K)`.
        """
        return self.forward_with_preactivations(x)[0]

    @torch.no_grad()
    def evaluate(self, x, y):
        """Mean cross-entropy and accuracy of every model on the same data.

        Args:
            x: inputs of shape :math:`(N, d_0)`.
            y: ``torch.int64`` labels of shape :math:`(N,)`.

        Returns:
            ``(loss, accuracy)``, each of shape :math:`(M,)`, accuracy as a fraction in [0, 1].

        Raises:
            TypeError: if an argument has the wrong type, or ``x`` is not in the models' dtype.
            ValueError: if the shapes disagree.
        """
        _check_labels(self._check_examples(x), y)
        loss, accuracy, _ = self._measure(x, y)
        return loss, accuracy

    @torch.no_grad()
    def statistics(self, x):
        r"""Per-model, per-hidden-layer unit statistics on the inputs ``x`` (held-out data).

        With :math:`z_{nj}` the pre-activation of unit :math:`j` on example :math:`n` (of
        :math:`N` examples, :math:`d` units):

        - ``dead_fraction``: the fraction of units that are not positive on any example,
          :math:`\frac{1}{d} \sum_j [\max_n z_{nj} \leq 0]`;
        - ``negative_fraction``: the fraction of pre-activations that are negative,
          :math:`\frac{1}{Nd} \sum_{n,j} [z_{nj} < 0]`;
        - ``zero_fraction``: the fraction of outputs that are exactly zero,
          :math:`\frac{1}{Nd} \sum_{n,j} [\phi(z_{nj}) = 0]` (for ReLU about the negative
          fraction, for Leaky ReLU and PReLU almost never);
        - ``slope``: the mean negative slope of the layer (the fixed slope, or the mean
          learned PReLU slope).

        Args:
            x: inputs of shape :math:`(N, d_0)`.

        Returns:
            A dict of those four names to tensors of shape :math:`(M, L)`, with :math:`L` the
            number of hidden layers.

        Raises:
            TypeError: if ``x`` is not a floating-point tensor of the models' dtype.
            ValueError: if its shape does not fit.
        """
        return self._measure(self._check_examples(x), None)[2]

    def _check_dtype(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.weights[0].dtype:
            raise TypeError(
                f"{name} has dtype {x.dtype} but the models have dtype "
                f"{self.weights[0].dtype}; convert one of them"
            )
        return x

    def _check_examples(self, x: object) -> torch.Tensor:
        """``x`` must be a floating-point tensor of shape (N, d_0), N > 0, in the models' dtype."""
        self._check_dtype("x", check_float_tensor("x", x))
        if x.dim() != 2 or x.shape[1] != self.sizes[0] or x.shape[0] == 0:
            raise ValueError(
                f"x must have shape (N, {self.sizes[0]}) with N > 0, shared by all "
                f"models, got {tuple(x.shape)}"
            )
        return x

    @torch.no_grad()
    def _measure(self, x, y, chunk: int = 256):
        """Loss and accuracy (if ``y`` is given) and ``statistics``, in one pass over ``x``.

        In chunks of examples: the activations of all models for a whole test set are tens of
        megabytes, and streaming them through memory costs more than the arithmetic.
        """
        models, n, dtype = self.num_models, x.shape[0], self.weights[0].dtype
        peak = [x.new_full((models, d), -torch.inf, dtype=dtype) for d in self.sizes[1:-1]]
        negative = [torch.zeros(models, dtype=torch.int64) for _ in peak]
        zero = [torch.zeros(models, dtype=torch.int64) for _ in peak]
        loss_sum = torch.zeros(models, dtype=dtype)
        correct = torch.zeros(models, dtype=torch.int64)
        for start in range(0, n, chunk):
            logits, pre = self.forward_with_preactivations(x[start : start + chunk])
            for k, z in enumerate(pre):
                # The running maximum keeps NaN, so a unit that is NaN anywhere is not dead.
                peak[k] = torch.maximum(peak[k], z.amax(dim=1))
                negative[k] += (z < 0).sum(dim=(1, 2))
                zero[k] += (self._activate(k, z) == 0).sum(dim=(1, 2))
            if y is not None:
                labels = y[start : start + chunk]
                loss_sum += _losses(logits, labels) * len(labels)
                correct += (logits.argmax(dim=2) == labels).sum(dim=1)
        widths = self.sizes[1:-1]
        columns = {
            "dead_fraction": [(p <= 0).to(dtype).mean(dim=1) for p in peak],
            "negative_fraction": [c.to(dtype) / (n * d) for c, d in zip(negative, widths)],
            "zero_fraction": [c.to(dtype) / (n * d) for c, d in zip(zero, widths)],
            "slope": [self.slope(k).mean(dim=1) for k in range(self.num_hidden)],
        }
        stats = {
            name: torch.stack(values, dim=1) if values else x.new_zeros(models, 0, dtype=dtype)
            for name, values in columns.items()
        }
        return loss_sum / n, correct.to(dtype) / n, stats

    def unstack(self, m: int):
        """Model ``m`` as a stand-alone ``nn.Sequential``, shaped like ``mlp`` builds it.

        Fixed slope 0 becomes ``nn.ReLU``, another fixed slope ``nn.LeakyReLU``, a learnable
        slope ``nn.PReLU``. The parameters are copies: training one does not change the other.

        Args:
            m: model index, ``0 <= m < num_models``.

        Returns:
            The network, with the same dtype as the stacked parameters.

        Raises:
            TypeError: if ``m`` is not an int.
            ValueError: if ``m`` is out of range.
        """
        if check_non_negative_int("m", m) >= self.num_models:
            raise ValueError(f"m must be less than num_models={self.num_models}, got {m}")
        layers: list[nn.Module] = []
        dtype = self.weights[0].dtype
        with torch.no_grad():
            for k, (weight, bias) in enumerate(zip(self.weights, self.biases)):
                linear = nn.Linear(weight.shape[1], weight.shape[2], dtype=dtype)
                linear.weight.copy_(weight[m].t())
                linear.bias.copy_(bias[m])
                layers.append(linear)
                if k == self.num_hidden:
                    break
                kind = self.activations[m][k]
                if isinstance(kind, str):
                    slopes = self.slope(k)[m]
                    act = nn.PReLU(len(slopes) if kind == "prelu_channelwise" else 1, dtype=dtype)
                    act.weight.copy_(slopes[: act.num_parameters])
                    layers.append(act)
                else:
                    layers.append(nn.ReLU() if kind == 0 else nn.LeakyReLU(kind))
        return nn.Sequential(*layers)


def _check_seeds(seeds: object, count: int | None = None) -> list[int]:
    if isinstance(seeds, (str, bytes, torch.Tensor)) or not isinstance(seeds, Sequence):
        raise TypeError(f"seeds must be a sequence of ints, got {type(seeds).__name__}")
    seeds = [check_non_negative_int(f"seeds[{i}]", seed) for i, seed in enumerate(seeds)]
    if not seeds or (count is not None and len(seeds) != count):
        expected = "non-empty" if count is None else f"of length {count}, one per model"
        raise ValueError(f"seeds must be {expected}, got {len(seeds)} seeds")
    return seeds


def _check_labels(x: torch.Tensor, y: object) -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64:
        kind = f"dtype {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise TypeError(f"y must be a torch.int64 tensor of class indices, got {kind}")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must have shape ({x.shape[0]},), one label per example of x, got {tuple(y.shape)}"
        )
    return y


def _losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each model's mean cross-entropy, shape (M,); ``y`` of shape (N,) or (M, N)."""
    models, n, classes = logits.shape
    y = y.expand(models, n)
    return (
        F.cross_entropy(
            logits.reshape(models * n, classes), y.reshape(models * n), reduction="none"
        )
        .view(models, n)
        .mean(dim=1)
    )


def grid(activations, seeds) -> tuple[list, list[int]]:
    """Every (activation, seed) pair, activation-major, as two equally long lists.

    Results of a run over the grid reshape to ``(len(activations), len(seeds))``: model
    :math:`m` has activation ``m // len(seeds)`` and seed ``m % len(seeds)``.

    Args:
        activations: activations as accepted by ``mlp`` (slopes, ``"relu"``, ``"prelu"``,
            ``"prelu_channelwise"``).
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
    activations = [check_activation(f"activations[{i}]", a) for i, a in enumerate(activations)]
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
) -> BatchedMLP:
    """Build model :math:`m` as ``mlp(sizes, activations[m], seed=seeds[m], ...)``, then stack.

    Models with the same seed start from the same weights and biases (and, in
    :func:`train_batched`, see the same data order), so comparisons between activations are
    paired.

    Args:
        sizes: layer widths, input first and output last (two sizes: softmax regression).
        activations: one per model: a fixed negative slope, ``"relu"``, ``"prelu"`` or
            ``"prelu_channelwise"`` (see :func:`grid`).
        seeds: one non-negative int per model.
        bias_shift: added to the hidden layers' biases after initialisation.
        prelu_init: initial PReLU slope.

    Returns:
        A ``BatchedMLP`` of ``len(seeds)`` models (float32) remembering ``seeds``.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if an argument has a wrong value or the lists differ in length.

    Example:
        >>> slopes, seeds = grid([0.0, 0.01, "prelu"], range(5))
        >>> batched_mlp([40, 100, 100, 10], slopes, seeds).num_models
        15
    """
    if isinstance(activations, (str, bytes)) or not isinstance(activations, Sequence):
        raise TypeError(f"activations must be a sequence, got {type(activations).__name__}")
    activations = [check_activation(f"activations[{i}]", a) for i, a in enumerate(activations)]
    for i, activation in enumerate(activations):
        if callable(activation):
            raise TypeError(
                f"activations[{i}] must be a slope, 'relu' or one of {PRELU_KINDS} "
                "(module factories cannot be stacked)"
            )
    seeds = _check_seeds(seeds, len(activations))
    check_sizes(sizes)
    models = [
        mlp(sizes, activation, seed=seed, bias_shift=bias_shift, prelu_init=prelu_init)
        for activation, seed in zip(activations, seeds)
    ]
    return BatchedMLP(models, seeds)


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

    # Not a dataclass: field annotations would become unresolvable torch.Tensor references on
    # the API page (the book builds with nitpicky warnings as errors).
    def __init__(
        self,
        *,
        steps,
        steps_per_epoch,
        train_loss,
        test_loss,
        test_accuracy,
        dead_fraction,
        negative_fraction,
        zero_fraction,
        slope,
    ):
        self.steps = steps
        self.steps_per_epoch = steps_per_epoch
        self.train_loss = train_loss
        self.test_loss = test_loss
        self.test_accuracy = test_accuracy
        self.dead_fraction = dead_fraction
        self.negative_fraction = negative_fraction
        self.zero_fraction = zero_fraction
        self.slope = slope

    def __repr__(self) -> str:
        records, models = self.test_accuracy.shape
        return f"BatchedHistory({records} records of {models} models, steps={self.steps.tolist()})"


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
        callback: called as ``callback(step, model)`` at every record, after recording.

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
    groups = [{"params": [*model.weights, *model.biases]}]
    if len(model.slopes):
        slope_group = {"params": list(model.slopes.values())}
        if slope_weight_decay is not None:
            slope_group["weight_decay"] = slope_weight_decay
        groups.append(slope_group)
    opt = make_optimizer(groups, optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum)

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
        epoch_loss = torch.zeros(num_models, dtype=dtype)
        for batch in order.split(batch_size, dim=1):  # (M, B) example indices
            losses = _losses(model(x[batch]), y[batch])
            opt.zero_grad()
            losses.sum().backward()
            opt.step()
            epoch_loss += losses.detach()
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
