"""The Item API: what an exercise is, how it is checked and what it is worth.

An item lives in the trusted package, never in a notebook. The learner's notebook only defines
the object the item names; the item supplies the inputs (``Case``), computes the expected
output itself (``AutoItem.reference``) and judges the learner's output
(``AutoItem.compare``). Outputs reach ``compare`` already decoded from plain
data (see ``rectifiers.grading.wire``): tensors, numbers, containers, and for modules a
``ModuleState``.

Four ready-made kinds cover most exercises:

- ``FunctionItem``: the learner defines a function; it is called on each case's arguments.
- ``ValueItem``: the learner defines a value (a number, a tensor, a tuple of answers).
- ``ModuleItem``: the learner defines an ``nn.Module`` class; it is built with each case's
  arguments and run forward on the case's inputs; its state and outputs come back, and the trusted
  side re-computes the outputs from that state.
- ``ManualItem``: a written answer, graded by hand.

Subclass ``AutoItem`` for anything else (override ``public_cases``, ``hidden_cases``,
``reference`` and ``compare``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from .. import _validation as v
from . import wire

ITEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PYTHON_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------------------------
# Inputs


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
        >>> spec = ModuleSpec((("linear", {"in_features": 4, "out_features": 3}), ("prelu", {})), seed=0)
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


# --------------------------------------------------------------------------------------------
# Comparison


def _show(value: Any, limit: int = 6) -> str:
    """Short, deterministic description of a value for messages."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= limit:
            items = ", ".join(_show(x) for x in value.detach().reshape(-1).tolist())
            shape = "" if value.dim() == 1 else f", shape={tuple(value.shape)}"
            return f"tensor([{items}]{shape}, dtype={str(value.dtype).removeprefix('torch.')})"
        return f"tensor of shape {tuple(value.shape)} and dtype {str(value.dtype).removeprefix('torch.')}"
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
    if isinstance(expected, torch.Tensor) or isinstance(expected, np.ndarray):
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
        for index, (a, e) in enumerate(zip(actual, expected)):
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
        f"expected must be plain data, a tensor, an array or a module state, got {type(expected).__name__}"
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
    """``id(parameter) -> name`` over ``modules``; with several modules the names get an ``"<i>:"`` prefix."""
    names = {}
    for index, module in enumerate(modules):
        prefix = f"{index}:" if len(modules) > 1 else ""
        for name, parameter in module.named_parameters():
            names.setdefault(id(parameter), prefix + name)
    return names


# --------------------------------------------------------------------------------------------
# Items


class Item:
    """What every exercise has.

    Args:
        id: unique identifier (letters, digits, ``_``, ``.``, ``-``), as written in the
            notebook's ``check("<id>", globals())`` cell or in a manual cell's metadata.
        points: what the item is worth (a positive number).
        name: the global the learner defines (``None`` for written answers).
        hint: one sentence shown when the item fails.

    Attributes:
        kind: ``"auto"`` or ``"manual"``.
    """

    kind: ClassVar[str] = ""

    def __init__(self, id: str, points: float, *, name: str | None = None, hint: str = ""):
        if not isinstance(id, str):
            raise TypeError(f"id must be a str, got {type(id).__name__} {id!r}")
        if not ITEM_ID.match(id):
            raise ValueError(f"id must match {ITEM_ID.pattern}, got {id!r}")
        points = v.check_real("points", points)
        if points <= 0:
            raise ValueError(f"points must be positive, got {points!r}")
        if name is not None:
            if not isinstance(name, str):
                raise TypeError(f"name must be a str, got {type(name).__name__} {name!r}")
            if not PYTHON_NAME.match(name):
                raise ValueError(f"name must be a Python identifier, got {name!r}")
        if not isinstance(hint, str):
            raise TypeError(f"hint must be a str, got {type(hint).__name__} {hint!r}")
        self.id = id
        self.points = points
        self.name = name
        self.hint = hint

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, points={self.points!r}, name={self.name!r})"


class ManualItem(Item):
    """A written answer: a markdown cell tagged ``manual`` with metadata ``{"grading": {"id": id}}``.

    The grader reports it with status ``manual``, 0 points awarded and ``max_points`` set, and
    copies the learner's answer into the detail column for the instructor.

    Example:
        >>> ManualItem("ex.why_leaky", 2, hint="Two or three sentences.").kind
        'manual'
    """

    kind = "manual"

    def __init__(self, id: str, points: float, *, hint: str = ""):
        super().__init__(id, points, name=None, hint=hint)


class AutoItem(Item):
    """An auto-graded item. Subclasses set ``mode`` and implement the four methods below.

    ``mode`` says what the sandboxed submission does with each case: ``"call"`` calls the named
    global with the case's arguments, ``"value"`` returns the global itself, ``"module"`` builds
    the named ``nn.Module`` class with the case's arguments and runs it on the case's inputs.
    """

    kind = "auto"
    mode: ClassVar[str] = "call"
    #: For ``mode == "call"``: also send back the arguments after the call (in-place functions).
    capture_args: ClassVar[bool] = False

    def __init__(self, id: str, points: float, *, name: str, hint: str = ""):
        if name is None:
            raise TypeError("name must be a str (the global the learner defines), got None")
        super().__init__(id, points, name=name, hint=hint)

    def public_cases(self) -> list[Case]:
        """The fixed cases the notebook's check cell runs (and the grader runs again)."""
        raise NotImplementedError

    def hidden_cases(self, rng: torch.Generator) -> list[Case]:
        """Cases drawn at grading time from ``rng`` (a ``torch.Generator`` with a fresh secret seed)."""
        return []

    def reference(self, case: Case) -> Any:
        """The expected output for ``case``, computed by trusted code."""
        raise NotImplementedError

    def compare(self, student_output: Any, expected: Any) -> tuple[bool, str]:
        """``(ok, detail)`` for the learner's decoded output against ``reference``'s."""
        raise NotImplementedError

    def request(self, case: Case) -> dict:
        """The plain-data instruction sent to the submission for ``case``."""
        return {
            "mode": self.mode,
            "name": self.name,
            "args": wire.encode(tuple(case.args), module_spec_type=ModuleSpec, strict=True),
            "kwargs": wire.encode(dict(case.kwargs), module_spec_type=ModuleSpec, strict=True),
            "inputs": wire.encode(tuple(case.inputs), module_spec_type=ModuleSpec, strict=True),
            "seed": case.seed,
            "capture_args": bool(self.capture_args),
        }

    def describe(self, case: Case) -> str:
        """How messages show ``case``: its label, or the call with its arguments."""
        if case.label:
            return case.label
        if self.mode == "value":
            return f"`{self.name}`"
        shown = [_show(a) if not isinstance(a, ModuleSpec) else str(a) for a in case.args]
        shown += [
            f"{k}={_show(x) if not isinstance(x, ModuleSpec) else str(x)}"
            for k, x in case.kwargs.items()
        ]
        return f"{self.name}({', '.join(shown)})"


class FunctionItem(AutoItem):
    """The learner defines a function ``name``; each case calls it and compares with ``reference``.

    Args:
        id: the item id.
        points: what it is worth.
        name: the function the learner defines.
        reference: trusted function with the same signature as the learner's.
        public: the cases shown in the notebook's check.
        hidden: ``hidden(rng) -> list[Case]``, the cases drawn at grading time.
        hint: shown when the item fails.
        rtol: relative tolerance of ``compare_outputs``.
        atol: absolute tolerance.
        check_dtype: whether output tensor dtypes must match.
        capture_args: also compare the arguments after the call (for in-place functions): the
            output is then compared as ``{"output": ..., "args": ...}``.

    Example:
        >>> item = FunctionItem("demo.double", 1, "double", reference=lambda x: 2 * x,
        ...                     public=[Case((torch.tensor([1.0]),))])
        >>> item.compare(torch.tensor([2.0]), item.reference(item.public_cases()[0]))
        (True, '')
    """

    def __init__(
        self,
        id: str,
        points: float,
        name: str,
        *,
        reference: Callable[..., Any],
        public: Sequence[Case],
        hidden: Callable[[torch.Generator], Sequence[Case]] | None = None,
        hint: str = "",
        rtol: float = 1e-5,
        atol: float = 1e-6,
        check_dtype: bool = True,
        capture_args: bool = False,
    ):
        super().__init__(id, points, name=name, hint=hint)
        if not callable(reference):
            raise TypeError(f"reference must be callable, got {type(reference).__name__}")
        if hidden is not None and not callable(hidden):
            raise TypeError(
                f"hidden must be callable (rng -> cases) or None, got {type(hidden).__name__}"
            )
        self._public = _check_cases("public", public)
        self._reference = reference
        self._hidden = hidden
        self.rtol = v.check_non_negative_real("rtol", rtol)
        self.atol = v.check_non_negative_real("atol", atol)
        self.check_dtype = bool(check_dtype)
        self.capture_args = bool(capture_args)

    def public_cases(self) -> list[Case]:
        return list(self._public)

    def hidden_cases(self, rng: torch.Generator) -> list[Case]:
        return [] if self._hidden is None else list(_check_cases("hidden", self._hidden(rng)))

    def reference(self, case: Case) -> Any:
        built: list[torch.nn.Module] = []
        args = materialise(tuple(case.args), built)
        kwargs = materialise(dict(case.kwargs), built)
        with torch.random.fork_rng(devices=[]):
            if case.seed is not None:
                torch.manual_seed(case.seed)
            output = self._reference(*args, **kwargs)
        names = parameter_names(built)
        if self.capture_args:
            return normalise({"output": output, "args": args}, names)
        return normalise(output, names)

    def compare(self, student_output: Any, expected: Any) -> tuple[bool, str]:
        return compare_outputs(
            student_output, expected, rtol=self.rtol, atol=self.atol, check_dtype=self.check_dtype
        )


class ValueItem(AutoItem):
    """The learner defines a value ``name`` (a number, tensor, tuple of answers, ...).

    Args:
        id: the item id.
        points: what it is worth.
        name: the global the learner defines.
        expected: the right value.
        hint: shown when the item fails.
        rtol: relative tolerance.
        atol: absolute tolerance.
        check_dtype: whether tensor dtypes must match.

    Example:
        >>> item = ValueItem("demo.slope", 1, "slope", expected=0.01)
        >>> item.compare(0.01, item.reference(item.public_cases()[0]))
        (True, '')
    """

    mode = "value"

    def __init__(
        self,
        id: str,
        points: float,
        name: str,
        *,
        expected: Any,
        hint: str = "",
        rtol: float = 1e-5,
        atol: float = 1e-6,
        check_dtype: bool = True,
    ):
        super().__init__(id, points, name=name, hint=hint)
        self._expected = normalise(expected)
        self.rtol = v.check_non_negative_real("rtol", rtol)
        self.atol = v.check_non_negative_real("atol", atol)
        self.check_dtype = bool(check_dtype)

    def public_cases(self) -> list[Case]:
        return [Case()]

    def reference(self, case: Case) -> Any:
        return self._expected

    def compare(self, student_output: Any, expected: Any) -> tuple[bool, str]:
        return compare_outputs(
            student_output,
            expected,
            rtol=self.rtol,
            atol=self.atol,
            check_dtype=self.check_dtype,
            where=f"`{self.name}`",
        )


class ModuleItem(AutoItem):
    """The learner defines an ``nn.Module`` class ``name``.

    For each case the submission builds ``name(*case.args, **case.kwargs)`` (after
    ``torch.manual_seed(case.seed)`` when a seed is given) and runs it on each of
    ``case.inputs``; it sends back the module's ``state_dict`` and the outputs. The trusted side
    then checks the state with ``check_state`` and recomputes every output with ``forward`` from
    the learner's own parameters, so the learner cannot pass by returning made-up outputs.

    Args:
        id: the item id.
        points: what it is worth.
        name: the class the learner defines.
        forward: ``forward(state, *inputs) -> output``: trusted forward pass from a
            ``state_dict`` (a dict of tensors).
        public: the cases shown in the notebook's check.
        hidden: ``hidden(rng) -> list[Case]``, the cases drawn at grading time.
        check_state: ``check_state(module, case) -> (ok, detail)`` with ``module`` a
            ``ModuleState`` (``state`` dict and ``parameters``
            names): the parameters, shapes and initial values the exercise asks for; ``None``
            accepts any state.
        hint: shown when the item fails.
        rtol: relative tolerance of the output comparison.
        atol: absolute tolerance.

    Example:
        >>> item = ModuleItem("demo.scale", 1, "Scale",
        ...                   forward=lambda state, x: state["weight"] * x,
        ...                   public=[Case((3,), inputs=((torch.ones(3),),))])
        >>> item.public_cases()[0].args
        (3,)
    """

    mode = "module"

    def __init__(
        self,
        id: str,
        points: float,
        name: str,
        *,
        forward: Callable[..., Any],
        public: Sequence[Case],
        hidden: Callable[[torch.Generator], Sequence[Case]] | None = None,
        check_state: Callable[[wire.ModuleState, Case], tuple[bool, str]] | None = None,
        hint: str = "",
        rtol: float = 1e-5,
        atol: float = 1e-6,
    ):
        super().__init__(id, points, name=name, hint=hint)
        if not callable(forward):
            raise TypeError(f"forward must be callable, got {type(forward).__name__}")
        if hidden is not None and not callable(hidden):
            raise TypeError(
                f"hidden must be callable (rng -> cases) or None, got {type(hidden).__name__}"
            )
        if check_state is not None and not callable(check_state):
            raise TypeError(
                f"check_state must be callable or None, got {type(check_state).__name__}"
            )
        self._public = _check_cases("public", public)
        self._hidden = hidden
        self._forward = forward
        self._check_state = check_state
        self.rtol = v.check_non_negative_real("rtol", rtol)
        self.atol = v.check_non_negative_real("atol", atol)

    def public_cases(self) -> list[Case]:
        return list(self._public)

    def hidden_cases(self, rng: torch.Generator) -> list[Case]:
        return [] if self._hidden is None else list(_check_cases("hidden", self._hidden(rng)))

    def reference(self, case: Case) -> Case:
        # The expected outputs depend on the learner's parameters: compare() recomputes them.
        return case

    def describe(self, case: Case) -> str:
        if case.label:
            return case.label
        shown = [_show(a) for a in case.args] + [f"{k}={_show(x)}" for k, x in case.kwargs.items()]
        return f"{self.name}({', '.join(shown)})"

    def compare(self, student_output: Any, expected: Case) -> tuple[bool, str]:
        if not (isinstance(student_output, dict) and set(student_output) == {"module", "outputs"}):
            return False, "the submission did not send back a module and its outputs"
        module, outputs = student_output["module"], student_output["outputs"]
        if not isinstance(module, wire.ModuleState):
            return False, f"`{self.name}(...)` must be an nn.Module, got {_what(module)}"
        if not isinstance(outputs, list) or len(outputs) != len(expected.inputs):
            return False, "the submission sent back the wrong number of outputs"
        if self._check_state is not None:
            ok, detail = self._check_state(module, expected)
            if not ok:
                return False, detail
        for index, inputs in enumerate(expected.inputs):
            try:
                with torch.no_grad():
                    reference = normalise(self._forward(dict(module.state), *inputs))
            except Exception as error:  # noqa: BLE001 - the learner's state can make any op fail
                reason = f"{type(error).__name__}: {error}"
                return (
                    False,
                    f"forward on input {index}: the module's state does not fit ({reason})",
                )
            ok, detail = compare_outputs(
                outputs[index],
                reference,
                rtol=self.rtol,
                atol=self.atol,
                where=f"forward output {index}",
            )
            if not ok:
                return False, detail
        return True, ""


def _check_cases(what: str, cases: Any) -> tuple[Case, ...]:
    if isinstance(cases, (str, bytes)) or not isinstance(cases, Sequence):
        raise TypeError(f"{what} cases must be a sequence of Case, got {type(cases).__name__}")
    for case in cases:
        if not isinstance(case, Case):
            raise TypeError(f"{what} cases must be Case instances, got {type(case).__name__}")
    return tuple(cases)
