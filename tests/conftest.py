"""Shared test settings and the fixtures more than one test module uses.

Keep this file small: a helper that one module uses belongs in that module.
"""

from pathlib import Path

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


@pytest.fixture(scope="session")
def data():
    """MNIST-1D as ``load_mnist1d()`` gives it, loaded once for the whole run.

    Tests must not change it in place. A module that trains on fewer examples overrides it with
    a module fixture ``def data(data): return data.subset(n_train, n_test)``.
    """
    from rectifiers.data import load_mnist1d

    return load_mnist1d()


@pytest.fixture(scope="module")
def built_html() -> Path:
    """The built book's HTML folder (``_build/html``); the test fails if the book is not built."""
    # Imported here, not at the top: only the tests of the built book need its helpers.
    from browser_helpers import html_dir, missing_build_message

    html = html_dir()
    problem = missing_build_message(html)
    if problem:
        pytest.fail(problem)
    return html
