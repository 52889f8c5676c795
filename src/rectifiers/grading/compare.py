"""The comparison rules: how a decoded submission output is judged against the trusted one.

``compare_outputs`` is the rule every ready-made item uses (shapes, dtypes, tolerances, NaN,
containers and module states); ``normalise`` passes a trusted value through the wire so that it
has exactly the form a decoded submission output has. ``show`` and ``what`` are the short value
descriptions the messages use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from . import wire
from .cases import ModuleSpec


def _show(value: Any, limit: int = 6) -> str:
    """Short, deterministic description of a value for messages."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= limit:
            items = ", ".join(_show(x) for x in value.detach().reshape(-1).tolist())
            shape = "" if value.dim() == 1 else f", shape={tuple(value.shape)}"
            return f"tensor([{items}]{shape}, dtype={str(value.dtype).removeprefix('torch.')})"
        dtype = str(value.dtype).removeprefix("torch.")
        return f"tensor of shape {tuple(value.shape)} and dtype {dtype}"
    if isinstance(value, np.ndarray):
        return f"ndarray of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_show(x) for x in value[:limit]) + (", ..." if len(value) > limit else "")
        return (
            f"[{inner}]"
            if isinstance(value, list)
            else f"({inner}{',' if len(value) == 1 else ''})"
        )
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_show(x)}" for k, x in list(value.items())[:limit]) + "}"
    if isinstance(value, wire.ModuleState):
        return f"a {value.type_name} module"
    if isinstance(value, wire.Unsupported):
        return f"a value of type {value.type_name}"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return repr(value)


def _what(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "a tensor"
    if isinstance(value, wire.Unsupported):
        return f"a value of type {value.type_name} (which the grader cannot check)"
    if isinstance(value, wire.ModuleState):
        return f"a {value.type_name} module"
    return f"{_article(type(value).__name__)} {type(value).__name__}"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def compare_outputs(
    actual: Any,
    expected: Any,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    check_dtype: bool = True,
    where: str = "the output",
) -> tuple[bool, str]:
    """Compare decoded plain data with the trusted expectation, recursively.

    Tensors must match in shape (and dtype, unless ``check_dtype`` is false) and be close:

    .. math::
        |a - e| \\le \\text{atol} + \\text{rtol} \\cdot |e|

    elementwise, with NaN only where NaN is expected. Floats use the same rule; ints, bools,
    strings, ``None`` and dtypes must be equal; lists and tuples match element by element (either
    kind is accepted for the other); dicts must have the same keys.

    Args:
        actual: the learner's output, decoded.
        expected: the trusted expected output.
        rtol: relative tolerance.
        atol: absolute tolerance.
        check_dtype: whether tensor dtypes must be equal.
        where: how the message names the compared value.

    Returns:
        ``(ok, detail)``: ``detail`` explains the first difference ("" when ``ok``).

    Example:
        >>> compare_outputs(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]))
        (False, 'the output: values differ: at index (1,) got 2, expected 2.5 (max abs error 0.5)')
    """
    if isinstance(expected, (torch.Tensor, np.ndarray)):
        kind = torch.Tensor if isinstance(expected, torch.Tensor) else np.ndarray
        if not isinstance(actual, kind):
            noun = "a tensor" if kind is torch.Tensor else "a numpy array"
            return False, f"{where}: expected {noun}, got {_what(actual)}"
        a = torch.from_numpy(actual) if kind is np.ndarray else actual.detach()
        e = torch.from_numpy(expected) if kind is np.ndarray else expected.detach()
        if tuple(a.shape) != tuple(e.shape):
            return False, f"{where}: expected shape {tuple(e.shape)}, got {tuple(a.shape)}"
        if check_dtype and a.dtype != e.dtype:
            return False, f"{where}: expected dtype {e.dtype}, got {a.dtype}"
        return _close_tensors(a, e, rtol, atol, where)
    if (
        isinstance(expected, bool)
        or expected is None
        or isinstance(expected, (str, torch.dtype, wire.ParamRef))
    ):
        if type(actual) is type(expected) and actual == expected:
            return True, ""
        return False, f"{where}: expected {_show(expected)}, got {_show(actual)}"
    if isinstance(expected, int):
        if type(actual) is int and actual == expected:
            return True, ""
        return False, f"{where}: expected {_show(expected)}, got {_show(actual)}"
    if isinstance(expected, float):
        if isinstance(actual, bool) or not isinstance(actual, (int, float)):
            return False, f"{where}: expected a number, got {_what(actual)}"
        if (math.isnan(expected) and math.isnan(actual)) or math.isclose(
            actual, expected, rel_tol=rtol, abs_tol=atol
        ):
            return True, ""
        return False, f"{where}: expected {_show(expected)}, got {_show(float(actual))}"
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)):
            return False, f"{where}: expected a sequence of {len(expected)}, got {_what(actual)}"
        if len(actual) != len(expected):
            return False, f"{where}: expected {len(expected)} elements, got {len(actual)}"
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            ok, detail = compare_outputs(
                a, e, rtol=rtol, atol=atol, check_dtype=check_dtype, where=f"{where}[{index}]"
            )
            if not ok:
                return ok, detail
        return True, ""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return False, f"{where}: expected a dict, got {_what(actual)}"
        if set(actual) != set(expected):
            missing = sorted(map(str, set(expected) - set(actual)))
            extra = sorted(map(str, set(actual) - set(expected)))
            return False, f"{where}: keys differ (missing {missing}, unexpected {extra})"
        for key in expected:
            ok, detail = compare_outputs(
                actual[key],
                expected[key],
                rtol=rtol,
                atol=atol,
                check_dtype=check_dtype,
                where=f"{where}[{key!r}]",
            )
            if not ok:
                return ok, detail
        return True, ""
    if isinstance(expected, wire.ModuleState):
        if not isinstance(actual, wire.ModuleState):
            return False, f"{where}: expected a module, got {_what(actual)}"
        return compare_outputs(
            actual.state,
            expected.state,
            rtol=rtol,
            atol=atol,
            check_dtype=check_dtype,
            where=f"{where} state",
        )
    raise TypeError(
        "expected must be plain data, a tensor, an array or a module state, "
        f"got {type(expected).__name__}"
    )


def _close_tensors(
    a: torch.Tensor, e: torch.Tensor, rtol: float, atol: float, where: str
) -> tuple[bool, str]:
    if not e.dtype.is_floating_point:
        equal = a.to(torch.float64) == e.to(torch.float64) if a.dtype != e.dtype else a == e
        if bool(equal.all()):
            return True, ""
        index = tuple(int(i) for i in torch.nonzero(~equal)[0])
        got, want = _show(a[index].item()), _show(e[index].item())
        return False, f"{where}: values differ: at index {index} got {got}, expected {want}"
    a64, e64 = a.to(torch.float64), e.to(torch.float64)
    close = torch.isclose(a64, e64, rtol=rtol, atol=atol, equal_nan=True)
    if bool(close.all()):
        return True, ""
    error = (a64 - e64).abs().nan_to_num(nan=math.inf)
    error = torch.where(close, torch.zeros_like(error), error)
    index = tuple(int(i) for i in torch.unravel_index(torch.argmax(error), e.shape))
    worst = float(error.max())
    return False, (
        f"{where}: values differ: at index {index} got {_show(a64[index].item())}, "
        f"expected {_show(e64[index].item())} (max abs error {_show(worst)})"
    )


def normalise(value: Any, param_names: Mapping[int, str] | None = None) -> Any:
    """Pass a trusted value through the wire so it has the same form as a decoded submission output.

    Modules become ``ModuleState``, parameters of the modules in
    ``param_names`` become ``ParamRef``, ``torch.Size`` becomes a
    tuple and numpy scalars become Python numbers.
    """
    return wire.decode(
        wire.encode(value, module_spec_type=ModuleSpec, param_names=dict(param_names or {}))
    )
