"""Leaky ReLU and PReLU from first principles, tested against PyTorch.

One module per concept:

- :mod:`rectifiers.functional`: ``relu``, ``leaky_relu``, ``prelu`` and their gradients
- :mod:`rectifiers.init`: gains and He (Kaiming) initialisation
- :mod:`rectifiers.optim`: optimizer parameter groups that spare PReLU slopes from weight decay
- :mod:`rectifiers.diagnostics`: dead units and pre-activation recording
- :mod:`rectifiers.data`: MNIST-1D, generated locally
- :mod:`rectifiers.training`: the MLP builder and the plain training and evaluation loops
- :mod:`rectifiers.models`: small reference models (the source material's CNN) and skip connections
- :mod:`rectifiers.stacked`: many MLPs of one shape (seeds x slopes) as one module, ``BatchedMLP``
- :mod:`rectifiers.batched`: builds such a stack and trains all its models at once
- :mod:`rectifiers.experiments`: the computations behind the chapters' figures and tables
- :mod:`rectifiers.plotting`: the chapter's figure style
- :mod:`rectifiers.explorer`: the interactive α explorer of a slope sweep
- :mod:`rectifiers.tables`: results tables for the book
- :mod:`rectifiers.grading`: exercise checks and the sandboxed ``grade-exercises`` command
"""

__version__ = "0.1.0"
