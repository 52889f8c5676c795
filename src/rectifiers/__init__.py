"""Leaky ReLU and PReLU from first principles, tested against PyTorch.

One module per concept:

- :mod:`rectifiers.functional`: ``relu``, ``leaky_relu``, ``prelu`` and their gradients
- :mod:`rectifiers.init`: gains and He (Kaiming) initialisation
- :mod:`rectifiers.optim`: optimizer parameter groups that spare PReLU slopes from weight decay
- :mod:`rectifiers.diagnostics`: dead units and pre-activation recording
- :mod:`rectifiers.data`: MNIST-1D, generated locally
- :mod:`rectifiers.training`: the MLP builder and the plain training and evaluation loops
- :mod:`rectifiers.batched`: many small MLPs (seeds x slopes) trained at once, in one computation
- :mod:`rectifiers.plotting`: the chapter's figure style
- :mod:`rectifiers.grading`: exercise checks and the sandboxed ``grade-exercises`` command
"""

__version__ = "0.1.0"
