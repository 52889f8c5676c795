"""Argument checks shared by every public function.

Each check raises ``TypeError`` for a value of the wrong kind and ``ValueError`` for a value of
the right kind but outside what is allowed, and the message always names the argument, says what
was expected and what was received. Nothing is coerced: a bool is not a number, an integer tensor
is not a floating one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch


def _describe(value: object) -> str:
    """What ``value`` is, for an error message: a tensor's dtype and shape, else type and repr."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of dtype {value.dtype} and shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"


def check_tensor(name: str, value: object) -> torch.Tensor:
    """``value`` must be a ``torch.Tensor`` (of any dtype)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_describe(value)}")
    return value


def check_float_tensor(name: str, value: object) -> torch.Tensor:
    """``value`` must be a floating-point ``torch.Tensor``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_describe(value)}")
    if not value.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), "
            f"got dtype {value.dtype}"
        )
    return value


def check_real(name: str, value: object) -> float:
    """``value`` must be a finite real number (int or float, not bool, not a tensor)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number (int or float), got {_describe(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def check_positive_int(name: str, value: object) -> int:
    """``value`` must be an int > 0 (not bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {_describe(value)}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return int(value)


def check_non_negative_real(name: str, value: object) -> float:
    """``value`` must be a finite real number >= 0."""
    value = check_real(name, value)
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")
    return value


def check_module(name: str, value: object) -> torch.nn.Module:
    """``value`` must be a ``torch.nn.Module``."""
    if not isinstance(value, torch.nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {_describe(value)}")
    return value


def check_non_negative_int(name: str, value: object) -> int:
    """``value`` must be an int >= 0 (not bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {_describe(value)}")
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")
    return int(value)


def check_bool(name: str, value: object) -> bool:
    """``value`` must be a bool (not an int, not a tensor)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {_describe(value)}")
    return value


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """``value`` must be one of the strings in ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {choices}, got {_describe(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_sizes(sizes: object) -> list[int]:
    """``sizes`` must be a sequence of at least two positive ints (input, ..., output)."""
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise TypeError(f"sizes must be a sequence of ints, got {type(sizes).__name__} {sizes!r}")
    if len(sizes) < 2:
        raise ValueError(f"sizes must hold at least an input and an output size, got {sizes!r}")
    return [check_positive_int(f"sizes[{i}]", size) for i, size in enumerate(sizes)]


def check_activation(
    name: str, activation: object, names: tuple[str, ...]
) -> float | str | Callable[[], torch.nn.Module]:
    """``activation`` must be a real negative slope, one of ``names`` or a module factory."""
    if isinstance(activation, str):
        return check_choice(name, activation, names)
    if isinstance(activation, numbers.Real) and not isinstance(activation, bool):
        return check_real(name, activation)
    if callable(activation) and not isinstance(activation, (bool, torch.Tensor)):
        return activation
    raise TypeError(
        f"{name} must be a negative slope (a real number), one of {names} or a callable "
        f"returning an nn.Module, got {type(activation).__name__} {activation!r}"
    )


def check_data(name: str, data: object, *, flat: bool = False):
    """``data`` must be an ``MNIST1D``; with ``flat``, its inputs must be 2-D ``(N, L)``."""
    # Imported here: rectifiers.data uses this module's checks.
    from rectifiers.data import MNIST1D

    if not isinstance(data, MNIST1D):
        raise TypeError(f"{name} must be an MNIST1D (see load_mnist1d), got {type(data).__name__}")
    if flat and data.x_train.dim() != 2:
        raise ValueError(
            f"{name} must have inputs of shape (N, L), not the channels view "
            f"{tuple(data.x_train.shape)}"
        )
    return data


def check_labels(x: torch.Tensor, y: object) -> torch.Tensor:
    """``y`` must be ``torch.int64`` class indices, one per example of ``x`` (N > 0)."""
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64:
        raise TypeError(f"y must be a torch.int64 tensor of class indices, got {_describe(y)}")
    n = x.shape[0] if x.dim() else "N"
    if y.dim() != 1 or x.dim() < 1 or x.shape[0] != y.shape[0] or len(y) == 0:
        raise ValueError(
            f"y must have shape ({n},), one label per example of x (the same N > 0), "
            f"got x of shape {tuple(x.shape)} and y of shape {tuple(y.shape)}"
        )
    return y
