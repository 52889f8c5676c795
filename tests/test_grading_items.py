"""The Item API, the comparison rules, the registry and the submission-side probe."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rectifiers.grading import item as it
from rectifiers.grading import probe, wire
from rectifiers.grading.items import (
    EXAMPLES,
    REGISTRY,
    RegistryError,
    _collect,
    combined,
    find_item,
)
from rectifiers.grading.items import examples as ex

# --------------------------------------------------------------------------------------------
# compare_outputs


@pytest.mark.parametrize(
    "actual, expected",
    [
        (torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-7])),
        (torch.tensor([float("nan"), 1.0]), torch.tensor([float("nan"), 1.0])),
        (torch.tensor([1, 2]), torch.tensor([1, 2])),
        (np.array([1.0, 2.0]), np.array([1.0, 2.0])),
        (0.1 + 0.2, 0.3),
        (3, 3.0),
        (float("nan"), float("nan")),
        ([1, (2.0, "a")], (1, [2.0, "a"])),
        ({"a": None, "b": True}, {"a": None, "b": True}),
        (torch.float32, torch.float32),
        (wire.ParamRef("0.weight"), wire.ParamRef("0.weight")),
        (wire.ModuleState("A", {"w": torch.ones(1)}), wire.ModuleState("B", {"w": torch.ones(1)})),
    ],
)
def test_equal_enough_values_pass(actual, expected):
    assert it.compare_outputs(actual, expected) == (True, "")


@pytest.mark.parametrize(
    "actual, expected, fragment",
    [
        ([1.0, 2.0], torch.tensor([1.0, 2.0]), "expected a tensor, got a list"),
        (torch.ones(2), torch.ones(3), "expected shape (3,), got (2,)"),
        (torch.ones(2), torch.ones(2, dtype=torch.float64), "expected dtype torch.float64"),
        (
            torch.tensor([1.0, 5.0]),
            torch.tensor([1.0, 2.0]),
            "at index (1,) got 5, expected 2 (max abs error 3)",
        ),
        (torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]), "at index (1,) got nan"),
        (torch.tensor([1, 3]), torch.tensor([1, 2]), "at index (1,) got 3, expected 2"),
        (torch.ones(2), np.ones(2), "expected a numpy array"),
        (True, 1.0, "expected a number, got a bool"),
        (wire.Unsupported("Foo"), 1.0, "type Foo"),
        (1.5, 1.0, "expected 1, got 1.5"),
        (1, True, "expected True, got 1"),
        (2, 3, "expected 3, got 2"),
        (1.0, 1, "expected 1, got 1"),
        ("a", "b", "expected 'b', got 'a'"),
        ([1], [1, 2], "expected 2 elements, got 1"),
        (1, [1], "expected a sequence"),
        ([1, 2], [1, 3], "the output[1]"),
        ({"a": 1}, {"b": 1}, "missing ['b'], unexpected ['a']"),
        ([], {"a": 1}, "expected a dict"),
        ({"a": 1}, {"a": 2}, "the output['a']"),
        (torch.ones(1), wire.ModuleState("A", {}), "expected a module"),
        (wire.ParamRef("a"), wire.ParamRef("b"), "ParamRef(name='b')"),
    ],
)
def test_differences_are_explained(actual, expected, fragment):
    ok, detail = it.compare_outputs(actual, expected)
    assert not ok and fragment in detail, detail


def test_tolerances_and_dtype_option():
    assert it.compare_outputs(torch.tensor([1.1]), torch.tensor([1.0]), rtol=0, atol=0.2)[0]
    assert not it.compare_outputs(torch.tensor([1.1]), torch.tensor([1.0]), rtol=0, atol=0.05)[0]
    assert it.compare_outputs(torch.ones(2), torch.ones(2, dtype=torch.float64), check_dtype=False)[
        0
    ]
    assert it.compare_outputs(torch.tensor([1, 2]), torch.tensor([1.0, 2.0]), check_dtype=False)[0]
    with pytest.raises(TypeError, match="plain data"):
        it.compare_outputs(1, object())


# --------------------------------------------------------------------------------------------
# Items


def test_item_arguments_are_checked():
    with pytest.raises(TypeError, match="id must be a str"):
        it.ManualItem(3, 1)
    with pytest.raises(ValueError, match="id must match"):
        it.ManualItem("has space", 1)
    with pytest.raises(TypeError, match="points must be a real number"):
        it.ManualItem("a", True)
    with pytest.raises(ValueError, match="points must be positive"):
        it.ManualItem("a", 0)
    with pytest.raises(TypeError, match="hint must be a str"):
        it.ManualItem("a", 1, hint=None)
    with pytest.raises(ValueError, match="Python identifier"):
        it.FunctionItem("a", 1, "not-a-name", reference=abs, public=[])
    with pytest.raises(TypeError, match="name must be a str"):
        it.FunctionItem("a", 1, 5, reference=abs, public=[])
    with pytest.raises(TypeError, match="name must be a str .the global"):
        it.AutoItem("a", 1, name=None)
    with pytest.raises(TypeError, match="reference must be callable"):
        it.FunctionItem("a", 1, "f", reference=1, public=[])
    with pytest.raises(TypeError, match="hidden must be callable"):
        it.FunctionItem("a", 1, "f", reference=abs, public=[], hidden=[])
    with pytest.raises(TypeError, match="public cases must be a sequence"):
        it.FunctionItem("a", 1, "f", reference=abs, public="x")
    with pytest.raises(TypeError, match="must be Case instances"):
        it.FunctionItem("a", 1, "f", reference=abs, public=[(1,)])
    with pytest.raises(ValueError, match="rtol must be non-negative"):
        it.FunctionItem("a", 1, "f", reference=abs, public=[], rtol=-1)
    with pytest.raises(TypeError, match="forward must be callable"):
        it.ModuleItem("a", 1, "M", forward=None, public=[])
    with pytest.raises(TypeError, match="check_state must be callable"):
        it.ModuleItem("a", 1, "M", forward=abs, public=[], check_state=3)
    with pytest.raises(TypeError, match="hidden must be callable"):
        it.ModuleItem("a", 1, "M", forward=abs, public=[], hidden=3)
    with pytest.raises(TypeError, match="hidden cases must be a sequence"):
        it.FunctionItem(
            "a", 1, "f", reference=abs, public=[], hidden=lambda rng: None
        ).hidden_cases(torch.Generator())


def test_base_auto_item_must_be_subclassed():
    item = it.AutoItem("a", 1, name="f")
    with pytest.raises(NotImplementedError):
        item.public_cases()
    with pytest.raises(NotImplementedError):
        item.reference(it.Case())
    with pytest.raises(NotImplementedError):
        item.compare(1, 1)
    assert item.hidden_cases(torch.Generator()) == []
    assert repr(item) == "AutoItem(id='a', points=1.0, name='f')"


def test_module_spec():
    spec = it.ModuleSpec(
        (("linear", {"in_features": 4, "out_features": 3}), ("prelu", {"num_parameters": 3})),
        seed=2,
    )
    a, b = spec.build(), spec.build()
    assert [n for n, _ in a.named_parameters()] == ["0.weight", "0.bias", "1.weight"]
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert it.ModuleSpec.from_plain(spec.to_plain()) == spec
    assert str(spec) == "Sequential(Linear(in_features=4, out_features=3), PReLU(num_parameters=3))"
    assert isinstance(it.ModuleSpec((("relu", {}),)).build(), torch.nn.ReLU)
    with pytest.raises(ValueError, match="layer kind must be one of"):
        it.ModuleSpec((("lstm", {}),))
    with pytest.raises(ValueError, match="does not take"):
        it.ModuleSpec((("relu", {"inplace": True}),))
    with pytest.raises(TypeError, match="number or bool"):
        it.ModuleSpec((("leaky_relu", {"negative_slope": "0.1"}),))
    with pytest.raises(TypeError, match="non-empty tuple"):
        it.ModuleSpec([("relu", {})])
    with pytest.raises(TypeError, match="pair"):
        it.ModuleSpec(("relu",))
    with pytest.raises(ValueError, match="seed must be non-negative"):
        it.ModuleSpec((("relu", {}),), seed=-1)
    for payload in (
        {"layers": "x", "seed": 0},
        {"layers": [["relu"]], "seed": 0},
        {"layers": [["lstm", {}]], "seed": 0},
    ):
        with pytest.raises(wire.WireError):
            it.ModuleSpec.from_plain(payload)


def _param_groups(model, weight_decay):
    decay = [p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]
    rest = [p for n, p in model.named_parameters() if not (n.endswith("weight") and p.dim() > 1)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


SPEC = it.ModuleSpec((("linear", {"in_features": 3, "out_features": 2}), ("prelu", {})), seed=1)
GROUPS = it.FunctionItem(
    "demo.groups", 1, "param_groups", reference=_param_groups, public=[it.Case((SPEC, 0.1))]
)


def test_function_item_with_a_module_argument_compares_parameter_references():
    case = GROUPS.public_cases()[0]
    expected = GROUPS.reference(case)
    assert expected[0]["params"] == [wire.ParamRef("0.weight")]
    good = wire.decode(
        probe.handle({"param_groups": _param_groups}, GROUPS.request(case))["output"]
    )
    assert GROUPS.compare(good, expected) == (True, "")

    def swapped(m, wd):
        return [
            {"params": [m[0].bias], "weight_decay": wd},
            {"params": [m[0].weight, m[1].weight], "weight_decay": 0.0},
        ]

    bad = wire.decode(probe.handle({"param_groups": swapped}, GROUPS.request(case))["output"])
    ok, detail = GROUPS.compare(bad, expected)
    assert not ok and "ParamRef" in detail
    assert (
        GROUPS.describe(case)
        == "param_groups(Sequential(Linear(in_features=3, out_features=2), PReLU()), 0.1)"
    )


def test_references_cannot_change_the_cases():
    item = it.FunctionItem(
        "demo.neg", 1, "neg_", reference=lambda t: t.neg_(), public=[it.Case((torch.ones(2),))]
    )
    case = item.public_cases()[0]
    item.reference(case)
    item.reference(case)
    assert torch.equal(case.args[0], torch.ones(2))


def test_in_place_items_compare_the_arguments_after_the_call():
    def fill_(t, value):
        t.fill_(value)

    item = it.FunctionItem(
        "demo.fill",
        1,
        "fill_",
        reference=fill_,
        capture_args=True,
        public=[it.Case((torch.zeros(2), 3.0))],
    )
    case = item.public_cases()[0]
    expected = item.reference(case)
    assert expected["output"] is None and torch.equal(expected["args"][0], torch.full((2,), 3.0))
    good = wire.decode(probe.handle({"fill_": fill_}, item.request(case))["output"])
    assert item.compare(good, expected)[0]
    lazy = wire.decode(probe.handle({"fill_": lambda t, v: None}, item.request(case))["output"])
    assert not item.compare(lazy, expected)[0]


def test_seeded_cases_reproduce_randomness_on_both_sides():
    item = it.FunctionItem(
        "demo.noise", 1, "noise", reference=lambda n: torch.randn(n), public=[it.Case((3,), seed=5)]
    )
    case = item.public_cases()[0]
    reply = probe.handle({"noise": lambda n: torch.randn(n)}, item.request(case))
    assert item.compare(wire.decode(reply["output"]), item.reference(case)) == (True, "")


def test_value_item():
    item = it.ValueItem("demo.v", 1, "answer", expected=(0.5, torch.tensor([1, 2])), hint="h")
    case = item.public_cases()[0]
    assert item.hidden_cases(torch.Generator()) == [] and item.describe(case) == "`answer`"
    assert item.compare((0.5, torch.tensor([1, 2])), item.reference(case)) == (True, "")
    ok, detail = item.compare([0.5, torch.tensor([1, 3])], item.reference(case))
    assert not ok and detail.startswith("`answer`[1]")


# --------------------------------------------------------------------------------------------
# The example items: their references are right, their hidden cases are fresh


def test_example_references_agree_with_autograd():
    x = torch.tensor([-2.0, 0.0, 0.5], requires_grad=True)
    F.leaky_relu(x, 0.2).sum().backward()
    assert torch.equal(ex._leaky_relu_grad_reference(x.detach(), 0.2), x.grad)
    assert torch.equal(ex._leaky_relu_reference(x.detach(), 0.2), F.leaky_relu(x.detach(), 0.2))


def test_example_hidden_cases_depend_on_the_seed():
    def draw(seed):
        return ex.LEAKY_RELU.hidden_cases(torch.Generator().manual_seed(seed))

    first, again, other = draw(1), draw(1), draw(2)
    assert len(first) == 6
    assert all(
        torch.equal(a.args[0], b.args[0]) and a.kwargs == b.kwargs
        for a, b in zip(first, again, strict=True)
    )
    assert any(
        a.args[0].shape != b.args[0].shape or not torch.equal(a.args[0], b.args[0])
        for a, b in zip(first, other, strict=True)
    )
    assert len(ex.PRELU_MODULE.hidden_cases(torch.Generator().manual_seed(1))) == 3


class _GoodPReLU(torch.nn.Module):
    def __init__(self, num_parameters=1, init=0.25):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.full((num_parameters,), float(init)))

    def forward(self, x):
        return F.prelu(x, self.weight)


class _BufferPReLU(_GoodPReLU):
    def __init__(self, num_parameters=1, init=0.25):
        torch.nn.Module.__init__(self)
        self.register_buffer("weight", torch.full((num_parameters,), float(init)))


class _WrongInit(_GoodPReLU):
    def __init__(self, num_parameters=1, init=0.25):
        super().__init__(num_parameters, 0.5)


class _WrongShape(_GoodPReLU):
    def __init__(self, num_parameters=1, init=0.25):
        super().__init__(num_parameters + 1, init)

    def forward(self, x):
        return F.prelu(x, self.weight[:1])


class _WrongForward(_GoodPReLU):
    def forward(self, x):
        return x


class _Crash(_GoodPReLU):
    def forward(self, x):
        return torch.zeros(1)


@pytest.mark.parametrize(
    "cls, fragment",
    [
        (_GoodPReLU, ""),
        (_BufferPReLU, "exactly one parameter"),
        (_WrongInit, "start with every slope equal to init"),
        (_WrongShape, "must have shape"),
        (_WrongForward, "forward output 0"),
        (_Crash, "forward output 0: expected shape"),
    ],
)
def test_module_item_recomputes_outputs_from_the_learners_state(cls, fragment):
    cases = ex.PRELU_MODULE.public_cases() + ex.PRELU_MODULE.hidden_cases(
        torch.Generator().manual_seed(0)
    )
    results = []
    for case in cases:
        reply = probe.handle({"ChannelPReLU": cls}, ex.PRELU_MODULE.request(case))
        assert reply["status"] == "ok", reply
        results.append(
            ex.PRELU_MODULE.compare(wire.decode(reply["output"]), ex.PRELU_MODULE.reference(case))
        )
    if not fragment:
        assert all(ok for ok, _ in results), results
    else:
        assert any(not ok and fragment in detail for ok, detail in results), results


def test_module_item_rejects_what_is_not_a_module_and_states_that_do_not_fit():
    item = ex.PRELU_MODULE
    case = item.public_cases()[0]
    assert "must be an nn.Module" in item.compare({"module": 3, "outputs": [1]}, case)[1]
    assert "did not send back a module" in item.compare([1], case)[1]
    assert (
        "wrong number of outputs"
        in item.compare({"module": wire.ModuleState("X"), "outputs": []}, case)[1]
    )
    odd = it.ModuleItem(
        "demo.m", 1, "M", forward=lambda state, x: state["missing"] * x, public=[case]
    )
    ok, detail = odd.compare(
        {"module": wire.ModuleState("X", {}), "outputs": [torch.zeros(1)]}, case
    )
    assert not ok and "does not fit (KeyError" in detail
    assert item.describe(it.Case((), {"num_parameters": 2})) == "ChannelPReLU(num_parameters=2)"
    assert item.describe(it.Case(label="custom")) == "custom"


# --------------------------------------------------------------------------------------------
# The probe (what a submission's process does with a request)


def test_probe_statuses():
    request = ex.LEAKY_RELU.request(ex.LEAKY_RELU.public_cases()[0])
    assert probe.handle({}, request) == {"status": "missing"}
    assert probe.handle({"leaky_relu": 3}, request)["message"] == "`leaky_relu` is not a function"

    def stub(x, negative_slope=0.01):
        raise NotImplementedError("Exercise ex.leaky_relu: replace this line")

    assert probe.handle({"leaky_relu": stub}, request)["status"] == "not_implemented"

    def broken(x, negative_slope=0.01):
        raise ValueError("x" * 1000)

    reply = probe.handle({"leaky_relu": broken}, request)
    assert reply["type"] == "ValueError" and len(reply["message"]) == probe.MESSAGE_LIMIT

    def quits(x, negative_slope=0.01):
        raise SystemExit(4)

    assert probe.handle({"leaky_relu": quits}, request)["type"] == "SystemExit"
    assert (
        probe.handle(
            {"leaky_relu": lambda *a, **k: torch.zeros(2, dtype=torch.complex64)}, request
        )["type"]
        == "UnsupportedOutput"
    )

    def hungry(x, negative_slope=0.01):
        raise MemoryError()

    assert probe.handle({"leaky_relu": hungry}, request) == {
        "status": "error",
        "type": "MemoryError",
        "message": "out of memory",
    }

    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError

    def odd(x, negative_slope=0.01):
        raise Unprintable()

    assert probe.handle({"leaky_relu": odd}, request)["message"] == "<unprintable>"
    module_request = ex.PRELU_MODULE.request(ex.PRELU_MODULE.public_cases()[0])
    assert (
        probe.handle({"ChannelPReLU": lambda: 1}, module_request)["message"]
        == "`ChannelPReLU` is not a class"
    )
    assert (
        probe.handle({"x": 1}, {**request, "name": "x", "mode": "teleport"})["message"]
        == "unknown mode 'teleport'"
    )


# --------------------------------------------------------------------------------------------
# The registry


def _module(name, notebook, items):
    return name, types.SimpleNamespace(NOTEBOOK=notebook, ITEMS=items)


def test_registry_rules():
    a, b = it.ManualItem("x.a", 1), it.ManualItem("x.b", 1)
    assert _collect([_module("m1", "01_x", [a]), _module("m2", "02_y", [b])]) == {
        "01_x": [a],
        "02_y": [b],
    }
    with pytest.raises(RegistryError, match="NOTEBOOK as a str"):
        _collect([_module("m1", None, [a])])
    with pytest.raises(RegistryError, match="list of Item"):
        _collect([_module("m1", "01_x", [1])])
    with pytest.raises(RegistryError, match="registered twice"):
        _collect([_module("m1", "01_x", [a]), _module("m2", "01_x", [b])])
    with pytest.raises(RegistryError, match="already used in m1"):
        _collect([_module("m1", "01_x", [a]), _module("m2", "02_y", [a])])
    with pytest.raises(RegistryError, match="two registries"):
        combined({"n": []}, {"n": []})


def test_registry_contents():
    assert list(EXAMPLES) == ["00_examples"]
    assert "00_examples" not in REGISTRY
    for notebook in REGISTRY:
        assert notebook[:2].isdigit() and notebook[2] == "_"
    assert find_item("ex.leaky_relu") is ex.LEAKY_RELU
    with pytest.raises(KeyError):
        find_item("no.such.item")
    ids = [item.id for items in combined(REGISTRY, EXAMPLES).values() for item in items]
    assert len(ids) == len(set(ids))
    for items in REGISTRY.values():
        for entry in items:
            if entry.kind == "auto":
                assert entry.public_cases(), f"{entry.id} has no public cases"
                for case in entry.public_cases():
                    entry.request(case)  # every public case can cross the boundary
    assert math.isclose(sum(i.points for i in EXAMPLES["00_examples"]), 10)


def test_course_item_helpers_build_what_they_say():
    from rectifiers.grading.items._common import ELEMENTWISE, mlp_spec, per_case_function

    spec = mlp_spec((4, 6, 2), [("prelu", {})], seed=3)
    assert spec == it.ModuleSpec(
        (
            ("linear", {"in_features": 4, "out_features": 6}),
            ("prelu", {}),
            ("linear", {"in_features": 6, "out_features": 2}),
        ),
        seed=3,
    )
    with pytest.raises(ValueError, match="activations must have len"):
        mlp_spec((4, 6, 2), [])
    item = per_case_function(
        "demo.double",
        1,
        lambda x: 2 * x,
        public=[],
        hidden=lambda rng: [],
        hint="",
        tolerance=ELEMENTWISE,
    )
    assert (item.name, item.credit, item.rtol, item.atol) == ("double", "cases", 1e-6, 1e-7)
