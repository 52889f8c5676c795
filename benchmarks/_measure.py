"""Wall time and peak memory of a process tree: a kernel, ``make test``, the grader."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psutil


def high_water_mark(pid: int) -> int:
    """Peak resident memory of one process so far (``VmHWM``, bytes), 0 if it cannot be read.

    The kernel keeps this exactly, so a spike shorter than the sampling interval still counts.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class TreeMemory:
    """Peak resident memory of a process and its descendants while the block runs.

    A thread sums the resident set of the whole tree every ``interval`` seconds; the result is
    the larger of the highest sum and the highest single-process ``VmHWM`` seen (the sum can
    miss a short spike, ``VmHWM`` cannot, but it covers one process only). A process that
    lives less than ``interval`` may not be seen at all.

    Example::

        with TreeMemory(process.pid) as memory:
            process.wait()
        print(memory.peak_bytes)
    """

    def __init__(self, pid: int, interval: float = 0.05):
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise ValueError(f"pid must be a positive int, got {pid!r}")
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        self.pid, self.interval = pid, interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def sample(self) -> int:
        """Take one sample now (also called by the thread); returns the tree's current RSS."""
        try:
            root = psutil.Process(self.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue  # exited between listing and reading
            self.peak_bytes = max(self.peak_bytes, high_water_mark(process.pid))
        self.peak_bytes = max(self.peak_bytes, total)
        return total

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def phase_times(events: Sequence[tuple[str, float]], end: float) -> dict[str, float]:
    """Durations of consecutive phases from their start times.

    Args:
        events: ``(name, seconds since start)`` pairs in the order seen.
        end: the seconds since start at which the last phase ended.

    Returns:
        ``{name: duration}``, each phase lasting until the next one starts (the last until
        ``end``), rounded to 0.1 s.

    Example:
        >>> phase_times([("unit", 1.0), ("book", 61.0)], 100.0)
        {'unit': 60.0, 'book': 39.0}
    """
    starts = list(events)
    durations = {}
    for i, (name, start) in enumerate(starts):
        stop = starts[i + 1][1] if i + 1 < len(starts) else end
        if stop < start:
            raise ValueError(f"phase {name!r} ends before it starts ({start} > {stop})")
        durations[name] = round(stop - start, 1)
    return durations


def run_command(
    command: Sequence[str],
    *,
    cwd: Path,
    timeout: float,
    env: dict | None = None,
    markers: Sequence[tuple[str, str]] = (),
    tail_lines: int = 40,
) -> dict:
    """Run ``command``, timing it and sampling its process tree's memory.

    Output (stdout and stderr together) is read line by line; the first line containing each
    marker's text starts a phase of that name (see :func:`phase_times`). On timeout the whole
    process group is killed.

    Args:
        command: the program and its arguments.
        cwd: working folder.
        timeout: seconds before the command is killed.
        env: environment (default: this process's).
        markers: ``(phase name, text)`` pairs.
        tail_lines: how many of the last output lines to keep.

    Returns:
        ``{"seconds", "returncode", "timed_out", "peak_rss_mib", "phases", "tail"}``, where
        ``returncode`` is ``None`` after a timeout and ``tail`` is a list of lines.
    """
    start = time.perf_counter()
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    events: list[tuple[str, float]] = []
    pending = list(markers)

    def read() -> None:
        for line in process.stdout:
            tail.append(line.rstrip("\n"))
            for marker in list(pending):
                if marker[1] in line:
                    events.append((marker[0], time.perf_counter() - start))
                    pending.remove(marker)

    reader = threading.Thread(target=read, daemon=True)
    timed_out = False
    with TreeMemory(process.pid, interval=0.2) as memory:
        reader.start()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            # The command's own children (pytest workers, kernels, a browser) share its group.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    seconds = time.perf_counter() - start
    reader.join(timeout=10)
    return {
        "seconds": round(seconds, 2),
        "returncode": None if timed_out else process.returncode,
        "timed_out": timed_out,
        "peak_rss_mib": round(memory.peak_bytes / 2**20, 1),
        "phases": phase_times(events, seconds),
        "tail": list(tail),
    }
