"""Shared test settings. Keep this file small: helpers belong in the test module that uses them."""

import pytest
import torch
from hypothesis import settings

# Tensor work has uneven timing on a shared 2-core machine: no per-example deadline, and a
# modest number of examples so the whole suite stays fast. `--hypothesis-profile=thorough`
# runs twenty times as many, for a one-off deeper search.
settings.register_profile("rectifiers", max_examples=100, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile("rectifiers")


@pytest.fixture(scope="module")
def single_thread():
    """Run a module's tests with one intra-op thread, then restore the previous count.

    On a busy 2-core machine two OpenMP threads splitting a small elementwise op spend far more
    time waiting for each other than computing (milliseconds instead of microseconds). Modules
    opt in with ``pytestmark = pytest.mark.usefixtures("single_thread")``.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
