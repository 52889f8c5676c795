"""Leaky ReLU and PReLU from first principles, tested against PyTorch.

One module per concept:

- :mod:`rectifiers.functional`: ``relu``, ``leaky_relu``, ``prelu`` and their gradients
- :mod:`rectifiers.init`: gains and He (Kaiming) initialisation
- :mod:`rectifiers.optim`: optimizer parameter groups that spare PReLU slopes from weight decay
- :mod:`rectifiers.diagnostics`: dead units and pre-activation recording
- :mod:`rectifiers.data`: MNIST-1D, generated locally
- :mod:`rectifiers.training`: training loops and the batched (many models at once) trainer
- :mod:`rectifiers.plotting`: the chapter's figure style
"""

__version__ = "0.1.0"
