"""Plain data across the sandbox boundary: encoding, strict decoding and framing.

The grader never unpickles anything a submission produced. Values travel as JSON with a few
tagged forms, and the trusted side rebuilds them with ``decode``, which checks every node
(known tags only, dtypes from an allow-list, shapes that match the byte count, bounded size and
depth) and raises ``WireError`` on anything else.

=====================  ==============================================================
Python value           wire form
=====================  ==============================================================
``None``, bool, str    JSON ``null``, ``true``/``false``, string
int                    JSON number (at most 63 bits)
float                  JSON number, or ``{"$float": "nan" | "inf" | "-inf"}``
list                   JSON array
tuple                  ``{"$tuple": [...]}``
dict                   ``{"$dict": [[key, value], ...]}``
``torch.Tensor``       ``{"$tensor": {"dtype", "shape", "data" (base64), ...}}``
``numpy.ndarray``      ``{"$ndarray": {"dtype", "shape", "data"}}``
``torch.dtype``        ``{"$dtype": "float32"}``
``nn.Module``          ``{"$module": {"type", "state": [[name, tensor], ...], "parameters"}}``
a module's parameter   ``{"$param": "0.weight"}`` (a parameter of a module the grader sent)
module to build        ``{"$modulespec": {...}}`` (grader to submission only)
anything else          ``{"$unsupported": "<type name>"}``
=====================  ==============================================================

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

#: Largest frame either side accepts (bytes of JSON, tensors included as base64).
MAX_FRAME_BYTES = 48 * 2**20
#: Largest total of raw tensor/array bytes in one decoded value.
MAX_TENSOR_BYTES = 32 * 2**20
#: Most nodes (containers and scalars) in one decoded value.
MAX_NODES = 200_000
#: Deepest nesting accepted.
MAX_DEPTH = 48
#: Longest string accepted.
MAX_STR = 1_000_000

_INT_LIMIT = 2**63

TORCH_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
NUMPY_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name)
    for name in (
        "float16",
        "float32",
        "float64",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "bool",
    )
}
_TORCH_NAMES = {dtype: name for name, dtype in TORCH_DTYPES.items()}


class WireError(ValueError):
    """Data from the other side of the boundary broke the wire format."""


@dataclass(frozen=True)
class ParamRef:
    """A parameter of a module the grader sent, returned by the submission.

    Named as in ``named_parameters``.
    """

    name: str


@dataclass(frozen=True)
class Unsupported:
    """The submission returned a value of a type that cannot cross the boundary."""

    type_name: str


@dataclass(frozen=True)
class ModuleState:
    """An ``nn.Module`` the submission built: its class name, ``state_dict`` and parameter names."""

    type_name: str
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    parameters: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# Encoding (runs on both sides; on the submission side its output is untrusted by construction)


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    if flat.numel() == 0:
        return b""
    # A uint8 view is dtype-agnostic (bfloat16 has no numpy equivalent).
    return flat.view(torch.uint8).numpy().tobytes()


class _Budget:
    """What one ``encode`` or ``decode`` of a value may use: ``MAX_NODES`` parts nested at most
    ``MAX_DEPTH`` deep, and ``MAX_TENSOR_BYTES`` of tensor data in all."""

    def __init__(self) -> None:
        self._nodes = 0
        self._bytes = 0

    def _visit(self, depth: int) -> None:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise WireError(f"value has more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            raise WireError(f"value is nested deeper than {MAX_DEPTH} levels")

    def _count(self, n: int) -> None:
        self._bytes += n
        if self._bytes > MAX_TENSOR_BYTES:
            raise WireError(f"tensors larger than {MAX_TENSOR_BYTES // 2**20} MiB in total")


class Encoder(_Budget):
    """Turns a Python value into wire form.

    Args:
        module_spec_type: the class whose instances are sent as ``{"$modulespec": ...}``
            (the grader side passes ``rectifiers.grading.item.ModuleSpec``).
        param_names: maps ``id(parameter)`` to its name for parameters of modules the grader
            sent, so that returning one of them is encoded as a reference.
        strict: raise ``WireError`` for a value of an unsupported type instead of sending
            ``{"$unsupported": ...}`` (the grader's own requests must be fully representable).
    """

    def __init__(
        self,
        module_spec_type: type | None = None,
        param_names: dict[int, str] | None = None,
        strict: bool = False,
    ):
        self._module_spec_type = module_spec_type
        self._param_names = param_names or {}
        self._strict = strict
        super().__init__()

    def encode(self, value: Any, depth: int = 0) -> Any:
        self._visit(depth)
        if value is None:
            return None
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, str):
            if len(value) > MAX_STR:
                raise WireError(f"string longer than {MAX_STR} characters")
            return str(value)
        if isinstance(value, (int, np.integer)):
            number = int(value)
            if abs(number) >= _INT_LIMIT:
                return {"$unsupported": "int wider than 63 bits"}
            return number
        if isinstance(value, (float, np.floating)):
            number = float(value)
            if math.isnan(number):
                return {"$float": "nan"}
            if math.isinf(number):
                return {"$float": "inf" if number > 0 else "-inf"}
            return number
        if isinstance(value, torch.Tensor):
            if id(value) in self._param_names:
                return {"$param": self._param_names[id(value)]}
            return {"$tensor": self._tensor(value)}
        if isinstance(value, np.ndarray):
            return {"$ndarray": self._array(value)}
        if isinstance(value, torch.dtype):
            name = _TORCH_NAMES.get(value)
            return {"$dtype": name} if name else {"$unsupported": f"dtype {value}"}
        if isinstance(value, torch.nn.Module):
            state = [[name, {"$tensor": self._tensor(t)}] for name, t in value.state_dict().items()]
            parameters = [name for name, _ in value.named_parameters()]
            return {
                "$module": {
                    "type": type(value).__qualname__[:200],
                    "state": state,
                    "parameters": parameters,
                }
            }
        if self._module_spec_type is not None and isinstance(value, self._module_spec_type):
            return {"$modulespec": value.to_plain()}
        if isinstance(value, torch.Size):
            return {"$tuple": [self.encode(v, depth + 1) for v in value]}
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(v, depth + 1) for v in value]}
        if isinstance(value, list):
            return [self.encode(v, depth + 1) for v in value]
        if isinstance(value, dict):
            return {
                "$dict": [
                    [self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()
                ]
            }
        if self._strict:
            raise WireError(f"a value of type {type(value).__qualname__} cannot cross the boundary")
        return {"$unsupported": type(value).__qualname__[:200]}

    def _tensor(self, tensor: torch.Tensor) -> dict:
        name = _TORCH_NAMES.get(tensor.dtype)
        if name is None:
            raise WireError(f"tensor dtype {tensor.dtype} cannot cross the boundary")
        if tensor.layout != torch.strided or tensor.device.type == "meta":
            raise WireError("only dense tensors with data can cross the boundary")
        self._count(tensor.numel() * tensor.element_size())
        return {
            "dtype": name,
            "shape": [int(d) for d in tensor.shape],
            "data": base64.b64encode(_tensor_bytes(tensor)).decode("ascii"),
            "requires_grad": bool(tensor.requires_grad),
            "parameter": isinstance(tensor, torch.nn.Parameter),
        }

    def _array(self, array: np.ndarray) -> dict:
        if array.dtype.name not in NUMPY_DTYPES:
            raise WireError(f"array dtype {array.dtype} cannot cross the boundary")
        self._count(array.nbytes)
        return {
            "dtype": array.dtype.name,
            "shape": [int(d) for d in array.shape],
            "data": base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii"),
        }


def encode(value: Any, **kwargs: Any) -> Any:
    """Wire form of ``value`` (see the module docstring); keyword arguments go to ``Encoder``."""
    return Encoder(**kwargs).encode(value)


# --------------------------------------------------------------------------------------------
# Strict decoding (the trusted side's only way in)


class Decoder(_Budget):
    """Rebuilds a value from wire form, checking everything.

    Args:
        build_module: called with the plain ``$modulespec`` payload to build a module
            (only the submission side receives specs; ``None`` rejects the tag).
        param_lookup: maps a ``$param`` name to the parameter it refers to (submission side);
            ``None`` decodes the tag as ``ParamRef``.
    """

    def __init__(
        self,
        build_module: Callable[[Any], torch.nn.Module] | None = None,
        param_lookup: Callable[[str], torch.Tensor] | None = None,
    ):
        self._build_module = build_module
        self._param_lookup = param_lookup
        super().__init__()

    def decode(self, value: Any, depth: int = 0) -> Any:
        self._visit(depth)
        kind = type(value)
        if value is None or kind is bool:
            return value
        if kind is int:
            if abs(value) >= _INT_LIMIT:
                raise WireError("integer wider than 63 bits")
            return value
        if kind is float:
            if not math.isfinite(value):
                raise WireError("non-finite float outside a $float tag")
            return value
        if kind is str:
            if len(value) > MAX_STR:
                raise WireError(f"string longer than {MAX_STR} characters")
            return value
        if kind is list:
            return [self.decode(v, depth + 1) for v in value]
        if kind is not dict or len(value) != 1:
            raise WireError(f"unexpected JSON value of type {kind.__name__}")
        ((tag, payload),) = value.items()
        if tag == "$float":
            floats = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
            if payload not in floats:
                raise WireError(f"bad $float payload {payload!r:.40}")
            return floats[payload]
        if tag == "$tuple":
            return tuple(self.decode(v, depth + 1) for v in _expect_list(payload, tag))
        if tag == "$dict":
            result = {}
            for pair in _expect_list(payload, tag):
                if type(pair) is not list or len(pair) != 2:
                    raise WireError("$dict entries must be [key, value] pairs")
                key = self.decode(pair[0], depth + 1)
                try:
                    hash(key)
                except TypeError:
                    raise WireError("unhashable $dict key") from None
                result[key] = self.decode(pair[1], depth + 1)
            return result
        if tag in ("$tensor", "$ndarray"):
            try:
                return self._tensor(payload) if tag == "$tensor" else self._array(payload)
            except WireError:
                raise
            except (RuntimeError, ValueError, TypeError, OverflowError, MemoryError) as error:
                # Whatever torch or numpy refuse to build is a bad value, not a grader crash.
                raise WireError(f"{tag} cannot be rebuilt ({type(error).__name__})") from None
        if tag == "$dtype":
            if payload not in TORCH_DTYPES:
                raise WireError(f"unknown dtype {payload!r:.40}")
            return TORCH_DTYPES[payload]
        if tag == "$param":
            if type(payload) is not str or len(payload) > 1000:
                raise WireError("bad $param payload")
            return self._param_lookup(payload) if self._param_lookup else ParamRef(payload)
        if tag == "$module":
            if type(payload) is not dict or set(payload) != {"type", "state", "parameters"}:
                raise WireError("bad $module payload")
            parameters = payload["parameters"]
            if (
                type(parameters) is not list
                or any(type(p) is not str for p in parameters)
                or len(parameters) > 10_000
            ):
                raise WireError("bad $module parameter names")
            if type(payload["type"]) is not str or len(payload["type"]) > 200:
                raise WireError("bad $module type name")
            state = {}
            for entry in _expect_list(payload["state"], "$module state"):
                if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not str:
                    raise WireError("$module state entries must be [name, tensor] pairs")
                tensor = self.decode(entry[1], depth + 1)
                if not isinstance(tensor, torch.Tensor):
                    raise WireError("$module state values must be tensors")
                state[entry[0]] = tensor
            return ModuleState(payload["type"], state, tuple(parameters))
        if tag == "$modulespec":
            if self._build_module is None:
                raise WireError("$modulespec is not accepted here")
            return self._build_module(payload)
        if tag == "$unsupported":
            if type(payload) is not str or len(payload) > 200:
                raise WireError("bad $unsupported payload")
            return Unsupported(payload)
        raise WireError(f"unknown tag {tag!r:.40}")

    def _raw(self, payload: Any, tag: str, itemsize: int) -> tuple[list[int], bytes]:
        shape = payload.get("shape")
        if (
            type(shape) is not list
            or len(shape) > 16
            or any(type(d) is not int or not 0 <= d < 2**40 for d in shape)
        ):
            raise WireError(f"bad {tag} shape")
        if math.prod(max(d, 1) for d in shape) > MAX_TENSOR_BYTES:
            # An empty dimension makes the data empty, but torch and numpy still compute the
            # strides from the others: absurd sizes overflow there instead of here.
            raise WireError(f"{tag} shape {shape} is too large")
        data = payload.get("data")
        if type(data) is not str:
            raise WireError(f"bad {tag} data")
        try:
            raw = base64.b64decode(data, validate=True)
        except ValueError:
            raise WireError(f"{tag} data is not base64") from None
        self._count(len(raw))
        if len(raw) != math.prod(shape) * itemsize:
            needed = math.prod(shape) * itemsize
            raise WireError(f"{tag} data has {len(raw)} bytes, shape {shape} needs {needed}")
        return shape, raw

    def _tensor(self, payload: Any) -> torch.Tensor:
        if type(payload) is not dict or not {"dtype", "shape", "data"} <= set(payload) <= {
            "dtype",
            "shape",
            "data",
            "requires_grad",
            "parameter",
        }:
            raise WireError("bad $tensor payload")
        dtype = TORCH_DTYPES.get(payload["dtype"]) if type(payload["dtype"]) is str else None
        if dtype is None:
            raise WireError(f"tensor dtype {payload['dtype']!r:.40} is not allowed")
        itemsize = torch.empty((), dtype=dtype).element_size()
        shape, raw = self._raw(payload, "$tensor", itemsize)
        if raw:
            tensor = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)
        else:
            tensor = torch.empty(shape, dtype=dtype)
        flags = (payload.get("requires_grad", False), payload.get("parameter", False))
        if any(type(f) is not bool for f in flags):
            raise WireError("bad $tensor flags")
        if flags[1] and dtype.is_floating_point:
            return torch.nn.Parameter(tensor, requires_grad=flags[0])
        if flags[0] and dtype.is_floating_point:
            tensor.requires_grad_(True)
        return tensor

    def _array(self, payload: Any) -> np.ndarray:
        if type(payload) is not dict or set(payload) != {"dtype", "shape", "data"}:
            raise WireError("bad $ndarray payload")
        dtype = NUMPY_DTYPES.get(payload["dtype"]) if type(payload["dtype"]) is str else None
        if dtype is None:
            raise WireError(f"array dtype {payload['dtype']!r:.40} is not allowed")
        shape, raw = self._raw(payload, "$ndarray", dtype.itemsize)
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _expect_list(payload: Any, tag: str) -> list:
    if type(payload) is not list:
        raise WireError(f"{tag} payload must be a list")
    return payload


def decode(value: Any, **kwargs: Any) -> Any:
    """Rebuild a value from wire form; raises ``WireError`` on anything unexpected."""
    return Decoder(**kwargs).decode(value)


# --------------------------------------------------------------------------------------------
# Frames


def _reject_constant(name: str) -> None:
    raise WireError(f"bare {name} is not valid here")


def dumps(message: Any) -> bytes:
    """One frame: length prefix and compact JSON.

    Non-ASCII text travels as UTF-8, not as ``\\uXXXX`` escapes, so a message is never more than
    a few bytes per character larger than its text (escaping made a notebook under the size
    limit grow past the frame limit).
    """
    body = json.dumps(message, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode(
        "utf-8", errors="surrogatepass"
    )
    if len(body) > MAX_FRAME_BYTES:
        raise WireError(f"message of {len(body)} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
    return struct.pack(">I", len(body)) + body


def loads(body: bytes) -> Any:
    """Parse one frame body strictly (no NaN literals, bounded recursion and size).

    A body that could hold more than about ``2 * MAX_NODES`` containers and scalars is refused
    before parsing: a few megabytes of ``[[],[],...]`` would otherwise become hundreds of
    megabytes of Python objects in the grader.
    """
    if len(body) > 2 * MAX_NODES and (
        body.count(b",") + body.count(b"[") + body.count(b"{") > 2 * MAX_NODES
    ):
        raise WireError(f"message has more than {2 * MAX_NODES} parts")
    try:
        return json.loads(
            body.decode("utf-8", errors="surrogatepass"), parse_constant=_reject_constant
        )
    except WireError:
        raise
    except (ValueError, RecursionError, MemoryError) as error:
        raise WireError(f"malformed message: {type(error).__name__}") from None


class FrameReader:
    """Splits a byte stream into frames, refusing any frame above ``max_bytes``."""

    def __init__(self, max_bytes: int = MAX_FRAME_BYTES):
        self._buffer = bytearray()
        self._max = max_bytes

    def feed(self, data: bytes) -> list[Any]:
        """Add bytes; return the messages completed by them (raises ``WireError``)."""
        self._buffer += data
        messages = []
        while len(self._buffer) >= 4:
            (size,) = struct.unpack(">I", self._buffer[:4])
            if size > self._max:
                raise WireError(f"frame of {size} bytes exceeds the {self._max} byte limit")
            if len(self._buffer) < 4 + size:
                break
            body = bytes(self._buffer[4 : 4 + size])
            del self._buffer[: 4 + size]
            messages.append(loads(body))
        return messages

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buffer)

    @property
    def announced(self) -> int:
        """The size of the frame being received (0 before its length prefix is complete)."""
        if len(self._buffer) < 4:
            return 0
        return struct.unpack(">I", self._buffer[:4])[0]
