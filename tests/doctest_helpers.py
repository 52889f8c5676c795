"""Running a module's docstring examples, which every module's test file does."""

from __future__ import annotations

import doctest
import math
from types import ModuleType

import torch


def assert_examples_pass(module: ModuleType, **globs: object) -> None:
    """Run ``module``'s docstring examples; fail unless it has some and every one passes.

    The examples may use ``torch``, ``nn`` and ``math`` without importing them, as the API pages
    show them; ``globs`` adds more names. doctest prints each failing example, which pytest
    shows with the failure.
    """
    names = {"torch": torch, "nn": torch.nn, "math": math, **globs}
    result = doctest.testmod(module, extraglobs=names)
    assert result.attempted > 0, f"{module.__name__} has no docstring examples"
    assert result.failed == 0, f"{result.failed} of {module.__name__}'s examples failed"
