"""What the submission's side does with one request: look up the learner's object, run it, encode.

The same code serves the notebook's ``check`` (in the learner's kernel) and the grader's
sandboxed process, so a public check and the grader see the learner's object in the same way.
The reply is plain data; on the grader's side it is untrusted and decoded strictly.

Reply forms (``status`` first):

- ``{"status": "ok", "output": <wire value>}``
- ``{"status": "missing"}``: the name is not defined
- ``{"status": "not_implemented", "message": ...}``: the learner's code raised
  ``NotImplementedError``
- ``{"status": "error", "type": <exception class name>, "message": ...}``
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch

from . import wire
from .item import ModuleSpec, parameter_names

MESSAGE_LIMIT = 500


def _message(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:  # noqa: BLE001 - a learner's exception can fail to print
        text = "<unprintable>"
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def handle(namespace: Mapping[str, Any], request: Mapping[str, Any]) -> dict:
    """Run ``request`` (see ``rectifiers.grading.item.AutoItem.request``) against ``namespace``."""
    name = request["name"]
    if name not in namespace:
        return {"status": "missing"}
    target = namespace[name]
    built: list[torch.nn.Module] = []

    def build(payload: Any) -> torch.nn.Module:
        module = ModuleSpec.from_plain(payload).build()
        built.append(module)
        return module

    try:
        decoder = wire.Decoder(build_module=build)
        args = decoder.decode(request["args"])
        kwargs = decoder.decode(request["kwargs"])
        inputs = decoder.decode(request["inputs"])
        mode = request["mode"]
        seed = request.get("seed")
        seeded = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
        with seeded:
            if seed is not None:
                torch.manual_seed(seed)
            if mode == "value":
                output: Any = target
            elif mode == "call":
                if not callable(target):
                    return {
                        "status": "error",
                        "type": "TypeError",
                        "message": f"`{name}` is not a function",
                    }
                output = target(*args, **kwargs)
                if request.get("capture_args"):
                    output = {"output": output, "args": args}
            elif mode == "module":
                if not isinstance(target, type):
                    return {
                        "status": "error",
                        "type": "TypeError",
                        "message": f"`{name}` is not a class",
                    }
                module = target(*args, **kwargs)
                outputs = (
                    [module(*call) for call in inputs]
                    if isinstance(module, torch.nn.Module)
                    else []
                )
                output = {"module": module, "outputs": outputs}
            else:
                return {
                    "status": "error",
                    "type": "ValueError",
                    "message": f"unknown mode {mode!r}",
                }
        return {"status": "ok", "output": wire.encode(output, param_names=parameter_names(built))}
    except NotImplementedError as error:
        return {"status": "not_implemented", "message": _message(error)}
    except wire.WireError as error:
        message = f"the result cannot be checked: {_message(error)}"
        return {"status": "error", "type": "UnsupportedOutput", "message": message}
    except (Exception, SystemExit) as error:  # noqa: BLE001 - learner code can raise anything
        if isinstance(error, MemoryError):
            return {
                "status": "error",
                "type": "MemoryError",
                "message": _message(error) or "out of memory",
            }
        return {"status": "error", "type": type(error).__name__[:100], "message": _message(error)}
