"""The inputs of an auto-graded item: ``Case`` and ``ModuleSpec``, and how the trusted side
builds them.

A case is plain data (numbers, tensors, containers and ``ModuleSpec``) so that it crosses the
sandbox boundary unchanged (``rectifiers.grading.wire``); the grader and the submission each
build their own copy of it with ``materialise``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import _validation as v
from . import wire

_LAYERS: dict[str, tuple[Callable[..., torch.nn.Module], frozenset[str]]] = {
    "linear": (torch.nn.Linear, frozenset({"in_features", "out_features", "bias"})),
    "conv1d": (
        torch.nn.Conv1d,
        frozenset({"in_channels", "out_channels", "kernel_size", "stride", "padding", "bias"}),
    ),
    "relu": (torch.nn.ReLU, frozenset()),
    "leaky_relu": (torch.nn.LeakyReLU, frozenset({"negative_slope"})),
    "prelu": (torch.nn.PReLU, frozenset({"num_parameters", "init"})),
    "batchnorm1d": (torch.nn.BatchNorm1d, frozenset({"num_features"})),
    "flatten": (torch.nn.Flatten, frozenset()),
    "dropout": (torch.nn.Dropout, frozenset({"p"})),
}


@dataclass(frozen=True)
class ModuleSpec:
    """A small network described as plain data, built identically on both sides of the boundary.

    Used as an argument of a ``Case`` when the learner's function takes a module (for
    example ``param_groups(model, weight_decay)``). The grader and the submission both build it
    with ``build`` from the same seed, so they start from the same parameters; a parameter
    of it that the learner returns comes back as a ``ParamRef``.

    Args:
        layers: ``(kind, kwargs)`` pairs; kinds are ``linear``, ``conv1d``, ``relu``,
            ``leaky_relu``, ``prelu``, ``batchnorm1d``, ``flatten`` and ``dropout``, with the
            keyword arguments of the matching ``torch.nn`` class.
        seed: the seed of the parameters' initialisation.

    Example:
        >>> layers = (("linear", {"in_features": 4, "out_features": 3}), ("prelu", {}))
        >>> spec = ModuleSpec(layers, seed=0)
        >>> [name for name, _ in spec.build().named_parameters()]
        ['0.weight', '0.bias', '1.weight']
    """

    layers: tuple[tuple[str, Mapping[str, Any]], ...]
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.layers, tuple) or not self.layers:
            raise TypeError(
                f"layers must be a non-empty tuple of (kind, kwargs) pairs, got {self.layers!r}"
            )
        for layer in self.layers:
            if not (isinstance(layer, tuple) and len(layer) == 2 and isinstance(layer[1], Mapping)):
                raise TypeError(f"each layer must be a (kind, kwargs) pair, got {layer!r}")
            kind, kwargs = layer
            if kind not in _LAYERS:
                raise ValueError(f"layer kind must be one of {sorted(_LAYERS)}, got {kind!r}")
            unknown = set(kwargs) - _LAYERS[kind][1]
            if unknown:
                raise ValueError(f"layer {kind!r} does not take {sorted(unknown)}")
            for key, value in kwargs.items():
                if not isinstance(value, (int, float, bool)):
                    raise TypeError(
                        f"layer {kind!r} argument {key} must be a number or bool, got {value!r}"
                    )
        v.check_non_negative_int("seed", self.seed)

    def build(self) -> torch.nn.Module:
        """The module: the single layer, or an ``nn.Sequential`` of the layers."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            layers = [_LAYERS[kind][0](**dict(kwargs)) for kind, kwargs in self.layers]
        return layers[0] if len(layers) == 1 else torch.nn.Sequential(*layers)

    def to_plain(self) -> dict:
        """Wire payload."""
        return {"layers": [[kind, dict(kwargs)] for kind, kwargs in self.layers], "seed": self.seed}

    @classmethod
    def from_plain(cls, payload: Any) -> ModuleSpec:
        """Inverse of ``to_plain``, checking the payload."""
        if (
            type(payload) is not dict
            or set(payload) != {"layers", "seed"}
            or type(payload["layers"]) is not list
        ):
            raise wire.WireError("bad $modulespec payload")
        layers = []
        for layer in payload["layers"]:
            if (
                type(layer) is not list
                or len(layer) != 2
                or type(layer[0]) is not str
                or type(layer[1]) is not dict
            ):
                raise wire.WireError("bad $modulespec layer")
            layers.append((layer[0], layer[1]))
        try:
            return cls(tuple(layers), payload["seed"])
        except (TypeError, ValueError) as error:
            raise wire.WireError(f"bad $modulespec: {error}") from None

    def __str__(self) -> str:
        parts = [
            f"{_LAYERS[k][0].__name__}({', '.join(f'{a}={b!r}' for a, b in kw.items())})"
            for k, kw in self.layers
        ]
        return parts[0] if len(parts) == 1 else f"Sequential({', '.join(parts)})"


@dataclass(frozen=True)
class Case:
    """One input for an auto-graded item (plain data; tensors and ``ModuleSpec`` allowed).

    Args:
        args: positional arguments (for a ``ModuleItem``: of the constructor).
        kwargs: keyword arguments (likewise).
        inputs: for a ``ModuleItem``, the forward calls: a tuple of argument tuples.
        seed: if set, ``torch.manual_seed(seed)`` runs right before the call (or the
            construction), so randomness inside the learner's code is reproducible.
        label: a short description shown instead of the arguments in messages.
    """

    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple = ()
    seed: int | None = None
    label: str | None = None


def materialise(value: Any, built: list[torch.nn.Module] | None = None) -> Any:
    """A fresh copy of a case's arguments: each ``ModuleSpec`` built (and recorded in
    ``built``), each tensor and array cloned, so a reference that works in place cannot change
    the case itself."""
    if isinstance(value, ModuleSpec):
        module = value.build()
        if built is not None:
            built.append(module)
        return module
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, tuple):
        return tuple(materialise(x, built) for x in value)
    if isinstance(value, list):
        return [materialise(x, built) for x in value]
    if isinstance(value, Mapping):
        return {k: materialise(x, built) for k, x in value.items()}
    return value


def parameter_names(modules: Sequence[torch.nn.Module]) -> dict[int, str]:
    """``id(parameter) -> name`` over ``modules``.

    With several modules the names get an ``"<i>:"`` prefix.
    """
    names = {}
    for index, module in enumerate(modules):
        prefix = f"{index}:" if len(modules) > 1 else ""
        for name, parameter in module.named_parameters():
            names.setdefault(id(parameter), prefix + name)
    return names


def _check_cases(what: str, cases: Any) -> tuple[Case, ...]:
    if isinstance(cases, (str, bytes)) or not isinstance(cases, Sequence):
        raise TypeError(f"{what} cases must be a sequence of Case, got {type(cases).__name__}")
    for case in cases:
        if not isinstance(case, Case):
            raise TypeError(f"{what} cases must be Case instances, got {type(case).__name__}")
    return tuple(cases)
