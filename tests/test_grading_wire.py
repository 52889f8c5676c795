"""The plain-data boundary: what crosses it survives intact, and nothing else gets through."""

from __future__ import annotations

import base64
import json
import math
import struct

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rectifiers.grading import wire
from rectifiers.grading.item import ModuleSpec


def roundtrip(value, **kwargs):
    return wire.decode(wire.loads(wire.dumps(wire.encode(value, **kwargs))[4:]))


def test_plain_values_roundtrip_with_their_types():
    value = {
        "a": [1, 2.5, None, True, "s"],
        ("t", 1): (1.0, [float("inf"), -math.inf]),
        3: {"nested": ()},
    }
    back = roundtrip(value)
    assert back == value
    assert isinstance(back[("t", 1)], tuple) and isinstance(back["a"], list)
    assert math.isnan(roundtrip(float("nan")))


@pytest.mark.parametrize("dtype", list(wire.TORCH_DTYPES.values()))
def test_tensors_roundtrip_bit_for_bit(dtype):
    source = (torch.arange(-6, 6).reshape(3, 4) * 1.7).to(dtype)
    back = roundtrip(source)
    assert back.dtype == dtype and back.shape == source.shape
    assert torch.equal(
        back.view(torch.uint8) if dtype != torch.bool else back,
        source.view(torch.uint8) if dtype != torch.bool else source,
    )


@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=0, max_size=24),
    st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]),
)
def test_float_tensors_roundtrip_any_values(values, dtype):
    source = torch.tensor(values, dtype=torch.float32).to(dtype)
    back = roundtrip(source)
    assert back.dtype == dtype and back.shape == source.shape
    assert torch.equal(
        back.view(torch.int16 if dtype in (torch.float16, torch.bfloat16) else torch.uint8),
        source.view(torch.int16 if dtype in (torch.float16, torch.bfloat16) else torch.uint8),
    )


def test_special_values():
    assert roundtrip(torch.zeros(0, 3)).shape == (0, 3)
    assert roundtrip(torch.tensor(2.5)).shape == ()
    assert roundtrip(torch.ones(4)[::2]).tolist() == [1.0, 1.0]  # non-contiguous
    parameter = roundtrip(torch.nn.Parameter(torch.ones(2)))
    assert isinstance(parameter, torch.nn.Parameter) and parameter.requires_grad
    assert roundtrip(torch.ones(2, requires_grad=True)).requires_grad
    array = roundtrip(np.arange(6, dtype=np.int16).reshape(2, 3))
    assert (
        isinstance(array, np.ndarray)
        and array.dtype == np.int16
        and array.tolist() == [[0, 1, 2], [3, 4, 5]]
    )
    assert (
        roundtrip(np.float32(1.5)) == 1.5
        and roundtrip(np.int64(3)) == 3
        and roundtrip(np.bool_(True)) is True
    )
    assert roundtrip(torch.float16) is torch.float16
    assert roundtrip(torch.Size([2, 3])) == (2, 3)
    assert roundtrip(2**70) == wire.Unsupported("int wider than 63 bits")
    assert roundtrip(object()) == wire.Unsupported("object")


def test_modules_and_parameter_references():
    module = torch.nn.Linear(3, 2)
    state = roundtrip(module)
    assert isinstance(state, wire.ModuleState) and state.type_name == "Linear"
    assert state.parameters == ("weight", "bias") and torch.equal(
        state.state["weight"], module.weight.detach()
    )
    names = {id(module.weight): "weight"}
    reference, bias = roundtrip([module.weight, module.bias], param_names=names)
    assert reference == wire.ParamRef("weight") and torch.equal(bias, module.bias.detach())


def test_module_specs_are_built_on_the_receiving_side():
    spec = ModuleSpec((("linear", {"in_features": 2, "out_features": 2}),), seed=3)
    payload = wire.encode([spec], module_spec_type=ModuleSpec)
    built = wire.decode(payload, build_module=lambda p: ModuleSpec.from_plain(p).build())
    assert isinstance(built[0], torch.nn.Linear) and torch.equal(
        built[0].weight, spec.build().weight
    )
    with pytest.raises(wire.WireError, match="not accepted"):
        wire.decode(payload)


def test_encoding_refuses_what_cannot_cross():
    with pytest.raises(wire.WireError, match="dtype"):
        wire.encode(torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(wire.WireError, match="nested deeper"):
        value: list = []
        for _ in range(wire.MAX_DEPTH + 2):
            value = [value]
        wire.encode(value)
    with pytest.raises(wire.WireError, match="MiB"):
        wire.encode([torch.zeros(wire.MAX_TENSOR_BYTES // 4 + 1)])


def _tensor_payload(**overrides):
    payload = {"dtype": "float32", "shape": [2], "data": base64.b64encode(b"\0" * 8).decode()}
    payload.update(overrides)
    return {"$tensor": payload}


@pytest.mark.parametrize(
    "value, message",
    [
        ({"$pickle": "gASV"}, "unknown tag"),
        ({"$tuple": [], "$dict": []}, "unexpected JSON value"),
        (_tensor_payload(dtype="object"), "not allowed"),
        (_tensor_payload(dtype="complex64"), "not allowed"),
        (_tensor_payload(shape=[3]), "needs 12"),
        (_tensor_payload(shape=[-2]), "bad \\$tensor shape"),
        (_tensor_payload(shape=[2**41]), "bad \\$tensor shape"),
        (_tensor_payload(data="!!!"), "not base64"),
        (_tensor_payload(extra=1), "bad \\$tensor payload"),
        (_tensor_payload(requires_grad="yes"), "flags"),
        ({"$ndarray": {"dtype": "O", "shape": [1], "data": ""}}, "not allowed"),
        ({"$float": "1e400"}, "bad \\$float"),
        ({"$dict": [[[1], 2]]}, "unhashable"),
        ({"$dict": [[1]]}, "pairs"),
        ({"$module": {"type": "X", "state": [["w", 1]], "parameters": []}}, "must be tensors"),
        ({"$module": {"type": "X"}}, "bad \\$module payload"),
        ({"$param": 3}, "bad \\$param"),
        ({"$unsupported": ["x"]}, "bad \\$unsupported"),
        ({"$dtype": "float128"}, "unknown dtype"),
        (2**64, "wider than 63 bits"),
        (float("inf"), "non-finite"),
        ("x" * (wire.MAX_STR + 1), "longer than"),
    ],
)
def test_decoding_rejects_malformed_data(value, message):
    with pytest.raises(wire.WireError, match=message):
        wire.decode(value)


def test_decoding_limits_size_and_depth():
    deep: list = []
    for _ in range(wire.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(wire.WireError, match="deeper"):
        wire.decode(deep)
    with pytest.raises(wire.WireError, match="parts"):
        wire.decode([0] * (wire.MAX_NODES + 1))
    big = base64.b64encode(b"\0" * (wire.MAX_TENSOR_BYTES // 2 + 4)).decode()
    half = {"$tensor": {"dtype": "uint8", "shape": [wire.MAX_TENSOR_BYTES // 2 + 4], "data": big}}
    with pytest.raises(wire.WireError, match="MiB"):
        wire.decode([half, half])


def test_frames():
    reader = wire.FrameReader()
    data = wire.dumps({"a": 1}) + wire.dumps([2])
    assert reader.feed(data[:3]) == [] and reader.pending == 3
    assert reader.feed(data[3:]) == [{"a": 1}, [2]] and reader.pending == 0
    with pytest.raises(wire.WireError, match="exceeds"):
        wire.FrameReader(max_bytes=10).feed(struct.pack(">I", 11) + b"x" * 11)
    for body, message in (
        (b"{", "malformed"),
        (b"NaN", "bare NaN"),
        (b"\xff", "malformed"),
        (b"[" * 100_000, "malformed"),
    ):
        with pytest.raises(wire.WireError, match=message):
            wire.FrameReader().feed(struct.pack(">I", len(body)) + body)
    with pytest.raises(ValueError):
        wire.dumps(float("nan"))
    with pytest.raises(wire.WireError, match="exceeds"):
        wire.dumps("x" * (wire.MAX_FRAME_BYTES + 1))


def test_nothing_is_ever_unpickled():
    # The wire format is JSON: a pickle payload is just bytes that do not parse.
    import pickle

    body = pickle.dumps({"score": 100})
    with pytest.raises(wire.WireError):
        wire.FrameReader().feed(struct.pack(">I", len(body)) + body)
    assert json.loads(wire.dumps({"x": 1})[4:]) == {"x": 1}


def test_strict_encoding_refuses_unsupported_values():
    # The grader's own requests must be fully representable: an unsupported input is an item bug.
    with pytest.raises(wire.WireError, match="type object cannot cross"):
        wire.encode([object()], strict=True)
    assert wire.encode([object()]) == [{"$unsupported": "object"}]


def test_absurd_shapes_with_an_empty_dimension_are_wire_errors():
    for tag in ("$tensor", "$ndarray"):
        for shape in ([2**39, 2**39, 0], [0, 2**39, 2**39, 2**39]):
            payload = {tag: {"dtype": "float32", "shape": shape, "data": ""}}
            with pytest.raises(wire.WireError, match="too large"):
                wire.decode(payload)
    assert wire.decode({"$tensor": {"dtype": "float32", "shape": [0, 5], "data": ""}}).shape == (
        0,
        5,
    )


def test_frames_carry_utf8_so_escaping_cannot_inflate_them():
    text = "\U0001f600" * 1000
    frame = wire.dumps({"cells": [[0, text]]})
    assert len(frame) < 4 * len(text) + 100  # \\ud83d\\ude00 escapes would take 12 bytes each
    assert wire.FrameReader().feed(frame) == [{"cells": [[0, text]]}]


def test_bodies_with_too_many_parts_are_refused_before_parsing():
    body = b"[" + b",".join([b"[]"] * (wire.MAX_NODES + 10)) + b"]"
    with pytest.raises(wire.WireError, match="parts"):
        wire.loads(body)
    reader = wire.FrameReader()
    assert reader.announced == 0
    reader.feed(struct.pack(">I", 1000) + b"[")
    assert reader.announced == 1000 and reader.pending == 5
