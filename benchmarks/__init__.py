"""``make bench``: measured budgets for the notebooks, the tests, the training and the grader.

Run ``.venv/bin/python -m benchmarks --help`` from the repository root. Each benchmark is one
module with a ``run(options)`` function that returns its part of ``_build/bench.json``:

- :mod:`benchmarks.notebooks`: every notebook in ``chapters/`` and ``solutions/``, fresh kernels;
- :mod:`benchmarks.training`: the batched trainer against a plain loop over the same models;
- :mod:`benchmarks.kernels`: from-scratch ``leaky_relu``/``prelu`` against PyTorch's kernels;
- :mod:`benchmarks.make_test`: the whole ``make test``;
- :mod:`benchmarks.book`: a cached ``make book`` after a prose-only edit (on a copy);
- :mod:`benchmarks.grading`: ``grade-exercises`` on one submission and on a class of 30.

A benchmark whose subject does not exist yet raises :class:`benchmarks._core.Missing`; it is
recorded as missing, never given a number. ``benchmarks/README.md`` documents every key.
"""
