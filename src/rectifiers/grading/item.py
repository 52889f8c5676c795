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

import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch

from .. import _validation as v
from . import wire

# The inputs and the comparison rules live in their own modules; their public names stay
# importable from here, where item definitions have always imported them.
from .cases import Case, ModuleSpec, _check_cases, materialise, parameter_names
from .compare import _show, _what, compare_outputs, normalise

__all__ = [
    "AutoItem",
    "Case",
    "FunctionItem",
    "Item",
    "ManualItem",
    "ModuleItem",
    "ModuleSpec",
    "ValueItem",
    "compare_outputs",
    "materialise",
    "normalise",
    "parameter_names",
]

ITEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PYTHON_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: How an auto-graded item's points are awarded: ``"all"`` (every case must pass, else 0) or
#: ``"cases"`` (``points * passed / total`` over its public and hidden cases).
CREDITS = ("all", "cases")


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
    """A written answer: a markdown cell tagged ``manual``, metadata ``{"grading": {"id": id}}``.

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
    #: ``"all"``: the points only when every case passes; ``"cases"``: partial credit,
    #: ``points * passed / total`` over the public and hidden cases (see ``CREDITS``).
    credit: str = "all"
    mode: ClassVar[str] = "call"
    #: For ``mode == "call"``: also send back the arguments after the call (in-place functions).
    capture_args: ClassVar[bool] = False

    def __init__(self, id: str, points: float, *, name: str, hint: str = "", credit: str = "all"):
        if name is None:
            raise TypeError("name must be a str (the global the learner defines), got None")
        super().__init__(id, points, name=name, hint=hint)
        if credit not in CREDITS:
            raise ValueError(f"credit must be one of {CREDITS}, got {credit!r}")
        self.credit = credit

    def public_cases(self) -> list[Case]:
        """The fixed cases the notebook's check cell runs (and the grader runs again)."""
        raise NotImplementedError

    def hidden_cases(self, rng: torch.Generator) -> list[Case]:
        """Cases drawn at grading time from ``rng`` (a ``torch.Generator``, fresh secret seed)."""
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


class _CasesItem(AutoItem):
    """An auto item checked on fixed public cases and on cases ``hidden(rng)`` draws at grading
    time, with output tolerances: what ``FunctionItem`` and ``ModuleItem`` share."""

    def __init__(
        self,
        id: str,
        points: float,
        name: str,
        public: Sequence[Case],
        hidden: Callable[[torch.Generator], Sequence[Case]] | None,
        hint: str,
        credit: str,
        rtol: float,
        atol: float,
    ):
        super().__init__(id, points, name=name, hint=hint, credit=credit)
        if hidden is not None and not callable(hidden):
            raise TypeError(
                f"hidden must be callable (rng -> cases) or None, got {type(hidden).__name__}"
            )
        self._public = _check_cases("public", public)
        self._hidden = hidden
        self.rtol = v.check_non_negative_real("rtol", rtol)
        self.atol = v.check_non_negative_real("atol", atol)

    def public_cases(self) -> list[Case]:
        return list(self._public)

    def hidden_cases(self, rng: torch.Generator) -> list[Case]:
        return [] if self._hidden is None else list(_check_cases("hidden", self._hidden(rng)))

    def _within_tolerance(self, output: Any, expected: Any, where: str) -> tuple[bool, str]:
        """``compare_outputs`` with the item's tolerances, for one of several outputs."""
        return compare_outputs(output, expected, rtol=self.rtol, atol=self.atol, where=where)


class FunctionItem(_CasesItem):
    """The learner defines a function ``name``; each case calls it and compares with ``reference``.

    Args:
        id: the item id.
        points: what it is worth.
        name: the function the learner defines.
        reference: trusted function with the same signature as the learner's.
        public: the cases shown in the notebook's check.
        hidden: ``hidden(rng) -> list[Case]``, the cases drawn at grading time.
        hint: shown when the item fails.
        credit: ``"all"`` (all or nothing, the default) or ``"cases"`` (partial credit in
            proportion to the cases passed).
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
        credit: str = "all",
        rtol: float = 1e-5,
        atol: float = 1e-6,
        check_dtype: bool = True,
        capture_args: bool = False,
    ):
        super().__init__(id, points, name, public, hidden, hint, credit, rtol, atol)
        if not callable(reference):
            raise TypeError(f"reference must be callable, got {type(reference).__name__}")
        self._reference = reference
        self.check_dtype = bool(check_dtype)
        self.capture_args = bool(capture_args)

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
        credit: ``"all"`` (all or nothing, the default) or ``"cases"`` (partial credit in
            proportion to the cases passed).
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
        credit: str = "all",
        rtol: float = 1e-5,
        atol: float = 1e-6,
        check_dtype: bool = True,
    ):
        super().__init__(id, points, name=name, hint=hint, credit=credit)
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


class ModuleItem(_CasesItem):
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
        credit: ``"all"`` (all or nothing, the default) or ``"cases"`` (partial credit in
            proportion to the cases passed).
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

    # deliberately repeated: the start of FunctionItem's signature. Each public item class spells
    # out all its arguments so that help() and editors show them; _CasesItem checks them once.
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
        credit: str = "all",
        rtol: float = 1e-5,
        atol: float = 1e-6,
    ):
        super().__init__(id, points, name, public, hidden, hint, credit, rtol, atol)
        if not callable(forward):
            raise TypeError(f"forward must be callable, got {type(forward).__name__}")
        if check_state is not None and not callable(check_state):
            raise TypeError(
                f"check_state must be callable or None, got {type(check_state).__name__}"
            )
        self._forward = forward
        self._check_state = check_state

    def reference(self, case: Case) -> Case:
        # The expected outputs depend on the learner's parameters: compare() recomputes them.
        return case

    def describe(self, case: Case) -> str:
        if case.label:
            return case.label
        shown = [_show(a) for a in case.args] + [f"{k}={_show(x)}" for k, x in case.kwargs.items()]
        return f"{self.name}({', '.join(shown)})"

    def _received(self, student_output: Any, expected: Case) -> tuple[wire.ModuleState, list] | str:
        """The module and the outputs the submission sent back, or why they cannot be checked."""
        if not (isinstance(student_output, dict) and set(student_output) == {"module", "outputs"}):
            return "the submission did not send back a module and its outputs"
        module, outputs = student_output["module"], student_output["outputs"]
        if not isinstance(module, wire.ModuleState):
            return f"`{self.name}(...)` must be an nn.Module, got {_what(module)}"
        if not isinstance(outputs, list) or len(outputs) != len(expected.inputs):
            return "the submission sent back the wrong number of outputs"
        return module, outputs

    def compare(self, student_output: Any, expected: Case) -> tuple[bool, str]:
        received = self._received(student_output, expected)
        if isinstance(received, str):
            return False, received
        module, outputs = received
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
            where = f"forward output {index}"
            ok, detail = self._within_tolerance(outputs[index], reference, where)
            if not ok:
                return False, detail
        return True, ""
