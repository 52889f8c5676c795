"""Inside the sandbox: run a submission's code cells, then answer the grader's requests.

This is the only grading code that runs in the submission's process, after its privileges are
gone. Nothing it sends is trusted: it executes the cells in order like a notebook run with errors
allowed (recording each failing cell), then, for each request, looks up the learner's object and
sends back plain data (``rectifiers.grading.probe``). The checking itself happens in the
grader's own process.

Messages go over the dedicated socket given to ``serve`` (never stdout), as frames of
``rectifiers.grading.wire``:

- grader to here: ``{"cells": [[index, source], ...]}``, then ``{"type": "probe", "nonce",
  "request"}`` any number of times, then ``{"type": "bye"}``;
- here to grader: ``{"type": "cell", "index"}`` before each cell, ``{"type": "executed",
  "errors": [{"index", "type", "message"}, ...]}``, and ``{"type": "reply", "nonce", "reply"}``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import traceback
from typing import Any

from . import probe, wire

#: Exit status of a worker whose runner broke (the submission damaged the Python runtime).
RUNNER_FAILED = 71


class Channel:
    """Blocking frame exchange over a connected stream socket."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._reader = wire.FrameReader()
        self._pending: list[Any] = []

    def send(self, message: Any) -> None:
        self._sock.sendall(wire.dumps(message))

    def receive(self) -> Any:
        while not self._pending:
            data = self._sock.recv(1 << 16)
            if not data:
                raise EOFError("the grader closed the channel")
            self._pending.extend(self._reader.feed(data))
        return self._pending.pop(0)


def make_shell() -> Any:
    """An IPython shell (magics work) without history, colours or a kernel."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "nocolor"
    return InteractiveShell.instance(config=config)


def _error(error: BaseException) -> dict:
    return {"type": type(error).__name__[:100], "message": probe._message(error)}


def serve(fd: int) -> None:
    """Run the job arriving on socket ``fd`` (see the module docstring) until the grader's bye."""
    from . import public

    channel = Channel(socket.socket(fileno=fd))
    job = channel.receive()
    public.GRADING = True
    shell = make_shell()
    errors = []
    for index, source in job["cells"]:
        channel.send({"type": "cell", "index": index})
        try:
            result = shell.run_cell(source, store_history=False)
            error = result.error_before_exec or result.error_in_exec
        except BaseException as caught:  # noqa: BLE001 - the shell normally reports errors itself
            error = caught
        if error is not None:
            errors.append({"index": index, **_error(error)})
    channel.send({"type": "executed", "errors": errors})
    while True:
        message = channel.receive()
        if message.get("type") != "probe":
            return
        try:
            reply = probe.handle(shell.user_ns, message["request"])
        except BaseException as error:  # noqa: BLE001 - e.g. KeyboardInterrupt raised by learner code
            reply = {"status": "error", **_error(error)}
        try:
            channel.send({"type": "reply", "nonce": message["nonce"], "reply": reply})
        except wire.WireError as error:
            channel.send(
                {
                    "type": "reply",
                    "nonce": message["nonce"],
                    "reply": {"status": "error", **_error(error)},
                }
            )


def main(fd: int) -> None:  # pragma: no cover - sandboxed child only
    """Entry point in the worker: serve, then leave without running interpreter teardown."""
    try:
        serve(fd)
    except EOFError:
        pass
    except BaseException:  # noqa: BLE001 - e.g. the notebook replaced built-ins the runner needs
        try:
            os.write(
                2,
                f"\nthe grading runner failed:\n{traceback.format_exc()}".encode(errors="replace"),
            )
        finally:
            os._exit(RUNNER_FAILED)
    for stream in (sys.stdout, sys.stderr):
        # BaseException: the learner may have replaced the streams with anything.
        with contextlib.suppress(BaseException):
            stream.flush()
    os._exit(0)
