r"""Many MLPs of one shape as one module: parameters stacked along a leading model dimension.

A sweep such as 8 negative slopes :math:`\times` 5 seeds is 40 independent networks. Here
their parameters are stacked along a leading *model* dimension of size :math:`M`, e.g. the
weights of layer :math:`k` become one tensor of shape :math:`(M, d_{k-1}, d_k)`, and each layer
is one batched matrix product (``torch.baddbmm``) for all models. The arithmetic is the same as
in 40 separate models and the per-model matrices are just as small; what stacking saves is the
per-step overhead (Python, autograd bookkeeping, optimizer calls) of 40 loops. The trainer is
:func:`rectifiers.batched.train_batched`; both are documented under :mod:`rectifiers.batched`.

Each hidden layer of each model may use its own activation (fixed slope, PReLU, ELU, GELU,
SiLU, RReLU), and all models share the layer widths, batch normalisation and skip
connections, so one stack holds e.g. ReLU, Leaky ReLU and PReLU versions of a deep residual
MLP with batch norm, every one from several seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rectifiers._stacking import (
    RRELU_LOWER,
    RRELU_UPPER,
    SMOOTH,
    Layout,
    LeakyRuns,
    losses,
    parse,
    rectify,
    runs_of,
)
from rectifiers._validation import check_float_tensor, check_labels, check_non_negative_int
from rectifiers.diagnostics import dead_fraction_of_peaks
from rectifiers.models import Residual
from rectifiers.training import PRELU_KINDS

__all__ = ["BatchedMLP", "losses"]

#: The slope statistics report for RReLU: the mean of U(1/8, 1/3), its evaluation slope.
RRELU_SLOPE = (RRELU_LOWER + RRELU_UPPER) / 2


def _module(kind: float | str, width: int, dtype: torch.dtype) -> nn.Module:
    """A fresh activation module of ``kind`` (PReLU slopes are set by the caller)."""
    if kind in PRELU_KINDS:
        return nn.PReLU(width if kind == "prelu_channelwise" else 1, dtype=dtype)
    if isinstance(kind, str):
        return {"elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU, "rrelu": nn.RReLU}[kind]()
    return nn.ReLU() if kind == 0 else nn.LeakyReLU(kind)


class BatchedMLP(nn.Module):
    r""":math:`M` MLPs of identical shape with stacked parameters, evaluated in one go.

    Layer :math:`k` of model :math:`m` computes :math:`z^{(m)}_k = W^{(m)}_k h^{(m)}_{k-1} +
    b^{(m)}_k` for all :math:`m` with one ``torch.baddbmm``. A hidden layer then computes

    .. math::
        u^{(m)}_k = \mathrm{BN}^{(m)}_k(z^{(m)}_k) \text{ (with batch norm) or } z^{(m)}_k,
        \qquad h^{(m)}_k = [h^{(m)}_{k-1} +]\ \phi^{(m)}_k(u^{(m)}_k),

    with the skip term only in residual layers. The activation :math:`\phi^{(m)}_k` is model
    :math:`m`'s own: :math:`\max(0, u) + a \min(0, u)` with a fixed slope :math:`a` (ReLU is
    :math:`a = 0`) or a learnable PReLU slope (per layer or per unit), ELU, GELU, SiLU, or
    RReLU (a slope drawn from :math:`U(1/8, 1/3)` per element in training mode, the mean slope
    :math:`11/48` in evaluation mode, as ``nn.RReLU``). Batch norm is ``nn.BatchNorm1d`` per
    model: in training mode each model normalises by its own batch mean and (biased) variance
    over the :math:`N` examples and updates its own running statistics; in evaluation mode
    it uses them. ``model.train()`` and ``model.eval()`` switch the mode, as for any module.

    Attributes:
        weights: ``nn.ParameterList``; entry :math:`k` has shape :math:`(M, d_k, d_{k+1})`:
            model :math:`m`'s ``nn.Linear`` weight **transposed**, so that a layer is
            :math:`h W` with no transposition in the forward or backward pass (about 10%
            faster on CPU).
        biases: ``nn.ParameterList``; entry :math:`k` has shape :math:`(M, d_{k+1})`.
        slopes: ``nn.ParameterDict`` of learnable slopes, keyed by hidden-layer index (a string),
            present only for layers where some model is PReLU. Entry shape :math:`(M, 1)`, or
            :math:`(M, d_{k+1})` when some model is channel-wise; a channel-shared model uses
            column 0, and entries of models with another activation are never used.
        norm_weights, norm_biases: ``nn.ParameterDict`` of the batch-norm scale and shift,
            keyed by hidden-layer index, entry shape :math:`(M, d_{k+1})`; the running
            statistics are the buffers ``running_mean_{k}`` and ``running_var_{k}`` (same
            shape) and ``num_batches_tracked_{k}``.
        activations: per model, per hidden layer, its fixed slope (a float) or one of
            ``"prelu"``, ``"prelu_channelwise"``, ``"elu"``, ``"gelu"``, ``"silu"``,
            ``"rrelu"``.
        batch_norm: per hidden layer, whether it has batch norm (the same for every model).
        residual: per hidden layer, whether it has a skip connection (the same for every model).
        seeds: per model, the seed it was built from (``None`` if unknown).
        sizes: the layer widths :math:`[d_0, \ldots, d_K]`.
        generator: the ``torch.Generator`` RReLU draws its training-mode slopes from
            (``None``: the global one); :func:`rectifiers.batched.train_batched` sets it.

    Args:
        models: :math:`M \geq 1` networks shaped like :func:`rectifiers.training.mlp` output:
            an ``nn.Sequential`` of hidden layers, each ``nn.Linear`` (with bias), optionally
            ``nn.BatchNorm1d`` and an activation (``nn.ReLU``, ``nn.LeakyReLU``,
            ``nn.Identity``, ``nn.PReLU`` with 1 or width parameters, or ``nn.ELU``,
            ``nn.GELU``, ``nn.SiLU``, ``nn.RReLU`` with their default parameters), each
            optionally wrapped in a :class:`rectifiers.models.Residual`, then an output
            ``nn.Linear``. All models have the same sizes, dtype, batch norms and skips; each
            may use different activations. Their parameters and running statistics are copied.
        seeds: optional per-model seeds (non-negative ints), kept for the trainer's data order.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if the models are not mlp-shaped or disagree in sizes, dtype, batch norm
            or skip connections.

    Example:
        >>> from rectifiers.training import mlp
        >>> nets = [mlp([40, 16, 10], slope, seed=0) for slope in (0.0, 0.1, "prelu", "gelu")]
        >>> batched = BatchedMLP(nets)
        >>> batched(torch.randn(5, 40)).shape
        torch.Size([4, 5, 10])
        >>> torch.allclose(batched(torch.ones(2, 40))[3], nets[3](torch.ones(2, 40)))
        True
        >>> deep = [mlp([40] + [16] * 10 + [10], a, seed=1, batch_norm=True, residual=True)
        ...         for a in ("rrelu", "elu")]
        >>> stacked = BatchedMLP(deep).eval()
        >>> x = torch.randn(3, 40)
        >>> torch.allclose(stacked(x)[0], deep[0].eval()(x), atol=1e-6)
        True
        >>> logits, pre = stacked.forward_with_preactivations(x)
        >>> len(pre), tuple(pre[0].shape)
        (10, (2, 3, 16))
    """

    def __init__(self, models, seeds=None):
        super().__init__()
        if isinstance(models, nn.Module) or not isinstance(models, Sequence) or not models:
            raise TypeError(
                "models must be a non-empty sequence (list or tuple) of "
                f"nn.Sequential, got {type(models).__name__}"
            )
        parsed = [parse(i, model) for i, model in enumerate(models)]
        first, output = parsed[0]
        linears0 = [layer.linear for layer in first] + [output]
        sizes = [linears0[0].in_features] + [lin.out_features for lin in linears0]
        dtype = linears0[0].weight.dtype
        self.batch_norm = [layer.norm is not None for layer in first]
        self.residual = [layer.residual for layer in first]
        norm_settings = [_norm_settings(layer) for layer in first]
        for i, (layouts, last) in enumerate(parsed):
            linears = [layer.linear for layer in layouts] + [last]
            these = [linears[0].in_features] + [lin.out_features for lin in linears]
            if these != sizes:
                raise ValueError(f"models[{i}] has sizes {these}, models[0] has {sizes}")
            if any(lin.weight.dtype != dtype or lin.bias is None for lin in linears):
                raise ValueError(f"models[{i}] must have biases and dtype {dtype} like models[0]")
            if [_norm_settings(layer) for layer in layouts] != norm_settings:
                raise ValueError(
                    f"models[{i}] must have batch norms (with eps and momentum) where models[0] "
                    f"has them: {norm_settings} (None: no batch norm)"
                )
            if [layer.residual for layer in layouts] != self.residual:
                raise ValueError(
                    f"models[{i}] must have skip connections where models[0] has them: "
                    f"{self.residual}"
                )
        if seeds is not None:
            seeds = _check_seeds(seeds, len(models))
        self.sizes = sizes
        self.seeds = seeds
        self.generator: torch.Generator | None = None
        self.activations = [[layer.kind for layer in layouts] for layouts, _ in parsed]
        self._norm_settings = norm_settings
        with torch.no_grad():
            columns = [[layer.linear for layer in layouts] + [last] for layouts, last in parsed]
            self.weights = nn.ParameterList(
                torch.stack([lins[k].weight.detach().t().contiguous() for lins in columns])
                for k in range(len(sizes) - 1)
            )
            self.biases = nn.ParameterList(
                torch.stack([lins[k].bias.detach().clone() for lins in columns])
                for k in range(len(sizes) - 1)
            )
        self.slopes = nn.ParameterDict()
        self.norm_weights = nn.ParameterDict()
        self.norm_biases = nn.ParameterDict()
        self._runs: list[list[tuple[int, int, float | str]]] = []
        self._slope_cache: dict[tuple, torch.Tensor] = {}
        for k in range(len(sizes) - 2):
            layers = [layouts[k] for layouts, _ in parsed]
            self._stack_slopes(k, layers, sizes[k + 1], dtype)
            if self.batch_norm[k]:
                self._stack_norms(k, [layer.norm for layer in layers])

    def _stack_slopes(self, k: int, layers: list[Layout], width: int, dtype: torch.dtype) -> None:
        kinds = [layer.kind for layer in layers]
        learnable = [kind in PRELU_KINDS for kind in kinds]
        columns = width if "prelu_channelwise" in kinds else 1
        # The slope statistics report: the fixed slope, RReLU's mean slope, NaN for the
        # activations that have no negative slope (ELU, GELU, SiLU).
        fixed = [
            kind
            if isinstance(kind, float)
            else RRELU_SLOPE
            if kind == "rrelu"
            else 0.0
            if kind in PRELU_KINDS
            else float("nan")
            for kind in kinds
        ]
        self.register_buffer(f"fixed_slope_{k}", torch.tensor(fixed, dtype=dtype).unsqueeze(1))
        self.register_buffer(f"learnable_{k}", torch.tensor(learnable).unsqueeze(1))
        # Row m of index picks the column of slopes[k] that each unit of model m uses:
        # its own column for channel-wise PReLU, column 0 otherwise.
        index = torch.zeros(len(kinds), columns, dtype=torch.int64)
        if any(learnable):
            values = torch.zeros(len(kinds), columns, dtype=dtype)
            for m, (layer, kind) in enumerate(zip(layers, kinds, strict=True)):
                act = layer.act
                if kind == "prelu_channelwise":
                    index[m] = torch.arange(columns)
                    values[m] = act.weight.detach()
                elif kind == "prelu":
                    values[m] = act.weight.detach()[0]
            self.slopes[str(k)] = nn.Parameter(values)
        self.register_buffer(f"slope_index_{k}", index)
        # Consecutive models with the same activation share one call (start, stop, kind).
        self._runs.append(runs_of(kinds))

    def _stack_norms(self, k: int, norms: list[nn.BatchNorm1d]) -> None:
        with torch.no_grad():
            self.norm_weights[str(k)] = nn.Parameter(
                torch.stack([n.weight.detach() for n in norms])
            )
            self.norm_biases[str(k)] = nn.Parameter(torch.stack([n.bias.detach() for n in norms]))
            self.register_buffer(
                f"running_mean_{k}", torch.stack([n.running_mean.clone() for n in norms])
            )
            self.register_buffer(
                f"running_var_{k}", torch.stack([n.running_var.clone() for n in norms])
            )
        # All models step together, so one count serves all (nn.BatchNorm1d keeps one each).
        counts = {int(n.num_batches_tracked) for n in norms}
        self.register_buffer(f"num_batches_tracked_{k}", torch.tensor(max(counts)))

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
            For each model, its fixed slope, its learnable PReLU slope (one per unit for a
            channel-wise model, differentiable with respect to ``slopes``), RReLU's mean slope
            :math:`11/48`, or NaN for ELU, GELU and SiLU (which have no negative slope).

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

    def _normalize(self, k: int, z: torch.Tensor) -> torch.Tensor:
        """Each model's ``nn.BatchNorm1d`` of ``z`` (M, N, d), as one ``F.batch_norm`` call.

        Laid out as (N, M * d), every (model, unit) pair is one channel of one batch norm, so
        a model's statistics are its own, in PyTorch's fused kernel and its backward.
        """
        models, n, width = z.shape
        eps, momentum = self._norm_settings[k]
        if self.training:
            getattr(self, f"num_batches_tracked_{k}").add_(1)
        out = F.batch_norm(
            z.transpose(0, 1).reshape(n, models * width),
            getattr(self, f"running_mean_{k}").view(-1),
            getattr(self, f"running_var_{k}").view(-1),
            self.norm_weights[str(k)].view(-1),
            self.norm_biases[str(k)].view(-1),
            training=self.training,
            momentum=momentum,
            eps=eps,
        )
        return out.view(n, models, width).transpose(0, 1)

    def _run_slopes(self, k, runs, dtype) -> torch.Tensor:
        """Each model's fixed slope as an (M, 1, 1) tensor, converted from the Python floats.

        Not from the ``fixed_slope`` buffer: after ``.double()`` that holds float32 roundings
        of the slopes, while ``F.leaky_relu`` rounds each slope to the tensor's own dtype.
        """
        key = (k, dtype, self.training)
        if key not in self._slope_cache:
            values = [slope for start, stop, slope in runs for _ in range(stop - start)]
            self._slope_cache[key] = torch.tensor(values, dtype=dtype).view(-1, 1, 1)
        return self._slope_cache[key]

    def _activate(self, k: int, z: torch.Tensor) -> torch.Tensor:
        """Hidden layer ``k``'s activation of (normalised) pre-activations ``z`` (M, N, d)."""
        runs = self._runs[k]
        if not self.training:
            # In evaluation mode RReLU is Leaky ReLU with the mean slope, as F.rrelu computes it.
            runs = [(a, b, RRELU_SLOPE if kind == "rrelu" else kind) for a, b, kind in runs]
        if all(isinstance(kind, float) for _, _, kind in runs):
            return LeakyRuns.apply(z, self._run_slopes(k, runs, z.dtype), runs)
        pieces = []
        # split (not slicing) so that backward concatenates the pieces' gradients instead of
        # scattering each into a zero tensor of the full size.
        parts = z.split([stop - start for start, stop, _ in runs]) if len(runs) > 1 else [z]
        for (start, stop, kind), part in zip(runs, parts, strict=True):
            if isinstance(kind, float):
                pieces.append(F.leaky_relu(part, kind))
            elif kind == "prelu":
                pieces.append(rectify(part, self.slope(k)[start:stop].unsqueeze(1)))
            elif kind == "rrelu":
                noise = torch.empty_like(part).uniform_(
                    RRELU_LOWER, RRELU_UPPER, generator=self.generator
                )
                pieces.append(rectify(part, noise))
            else:
                pieces.append(SMOOTH[kind](part))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    def forward_with_preactivations(self, x):
        """Logits and every hidden layer's pre-activations, the inputs of its activation.

        The pre-activation of hidden layer :math:`k` is :math:`z_k = W_k h_{k-1} + b_k`, or
        :math:`\\mathrm{BN}(z_k)` in a layer with batch norm: what the activation sees, so a
        unit whose entries are all :math:`\\le 0` is dead. The tensors are part of the
        autograd graph: call ``retain_grad()`` on them before ``backward()`` to read the
        gradient that reaches each layer.

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
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``forward_with_preactivations`` of checked inputs of shape (M, N, d_0)."""
        pre = []
        h = x
        for k in range(self.num_hidden):
            z = torch.baddbmm(self.biases[k].unsqueeze(1), h, self.weights[k])
            if self.batch_norm[k]:
                z = self._normalize(k, z)
            pre.append(z)
            out = self._activate(k, z)
            h = h + out if self.residual[k] else out
        return torch.baddbmm(self.biases[-1].unsqueeze(1), h, self.weights[-1]), pre

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
        """Mean cross-entropy and accuracy of every model on the same data, in evaluation mode.

        As :func:`rectifiers.training.evaluate`, the models are put in evaluation mode (batch
        norm's running statistics, RReLU's mean slope) and then returned to the mode they were
        in.

        Args:
            x: inputs of shape :math:`(N, d_0)`.
            y: ``torch.int64`` labels of shape :math:`(N,)`.

        Returns:
            ``(loss, accuracy)``, each of shape :math:`(M,)`, accuracy as a fraction in [0, 1].

        Raises:
            TypeError: if an argument has the wrong type, or ``x`` is not in the models' dtype.
            ValueError: if the shapes disagree.
        """
        check_labels(self._check_examples(x), y)
        loss, accuracy, _ = self._measure(x, y)
        return loss, accuracy

    @torch.no_grad()
    def statistics(self, x):
        r"""Per-model, per-hidden-layer unit statistics on the inputs ``x``, in evaluation mode.

        With :math:`z_{nj}` the pre-activation (see :meth:`forward_with_preactivations`) of
        unit :math:`j` on example :math:`n` (of :math:`N` examples, :math:`d` units):

        - ``dead_fraction``: the fraction of units that are not positive on any example,
          :math:`\frac{1}{d} \sum_j [\max_n z_{nj} \leq 0]`;
        - ``negative_fraction``: the fraction of pre-activations that are negative,
          :math:`\frac{1}{Nd} \sum_{n,j} [z_{nj} < 0]`;
        - ``zero_fraction``: the fraction of outputs that are exactly zero,
          :math:`\frac{1}{Nd} \sum_{n,j} [\phi(z_{nj}) = 0]` (for ReLU about the negative
          fraction, for Leaky ReLU and PReLU almost never);
        - ``slope``: the mean negative slope of the layer (see :meth:`slope`).

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

        In evaluation mode, restored afterwards. In chunks of examples: the activations of all
        models for a whole test set are tens of megabytes, and streaming them through memory
        costs more than the arithmetic.
        """
        was_training = self.training
        self.eval()
        try:
            return self._measure_chunks(x, y, chunk)
        finally:
            self.train(was_training)

    def _measure_chunks(self, x, y, chunk):
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
                loss_sum += losses(logits, labels) * len(labels)
                correct += (logits.argmax(dim=2) == labels).sum(dim=1)
        widths = self.sizes[1:-1]
        columns = {
            "dead_fraction": [dead_fraction_of_peaks(p, dtype) for p in peak],
            "negative_fraction": [
                c.to(dtype) / (n * d) for c, d in zip(negative, widths, strict=True)
            ],
            "zero_fraction": [c.to(dtype) / (n * d) for c, d in zip(zero, widths, strict=True)],
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
        slope ``nn.PReLU``, the named activations their modules (``nn.ELU()``, ``nn.GELU()``,
        ``nn.SiLU()``, ``nn.RReLU()``); batch norms become ``nn.BatchNorm1d`` with the model's
        parameters and running statistics, skip connections ``Residual``. The parameters are
        copies: training one does not change the other. The network is in the stack's mode
        (training or evaluation).

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
            for k, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
                linear = nn.Linear(weight.shape[1], weight.shape[2], dtype=dtype)
                linear.weight.copy_(weight[m].t())
                linear.bias.copy_(bias[m])
                if k == self.num_hidden:
                    layers.append(linear)
                    break
                block: list[nn.Module] = [linear]
                if self.batch_norm[k]:
                    block.append(self._unstack_norm(k, m, dtype))
                kind = self.activations[m][k]
                act = _module(kind, weight.shape[2], dtype)
                if kind in PRELU_KINDS:
                    act.weight.copy_(self.slope(k)[m][: act.num_parameters])
                block.append(act)
                layers.extend([Residual(*block)] if self.residual[k] else block)
        return nn.Sequential(*layers).train(self.training)

    def _unstack_norm(self, k: int, m: int, dtype: torch.dtype) -> nn.BatchNorm1d:
        eps, momentum = self._norm_settings[k]
        norm = nn.BatchNorm1d(self.sizes[k + 1], eps=eps, momentum=momentum, dtype=dtype)
        norm.weight.copy_(self.norm_weights[str(k)][m])
        norm.bias.copy_(self.norm_biases[str(k)][m])
        norm.running_mean.copy_(getattr(self, f"running_mean_{k}")[m])
        norm.running_var.copy_(getattr(self, f"running_var_{k}")[m])
        norm.num_batches_tracked.copy_(getattr(self, f"num_batches_tracked_{k}"))
        return norm


def _norm_settings(layer: Layout) -> tuple[float, float] | None:
    return None if layer.norm is None else (float(layer.norm.eps), float(layer.norm.momentum))


def _check_seeds(seeds: object, count: int | None = None) -> list[int]:
    if isinstance(seeds, (str, bytes, torch.Tensor)) or not isinstance(seeds, Sequence):
        raise TypeError(f"seeds must be a sequence of ints, got {type(seeds).__name__}")
    seeds = [check_non_negative_int(f"seeds[{i}]", seed) for i, seed in enumerate(seeds)]
    if not seeds or (count is not None and len(seeds) != count):
        expected = "non-empty" if count is None else f"of length {count}, one per model"
        raise ValueError(f"seeds must be {expected}, got {len(seeds)} seeds")
    return seeds
