r"""Small reference models used in more than one chapter, and the MLPs' skip connection.

:class:`SmallCNN` is the source material's image classifier: two convolution blocks with
Leaky ReLU and max-pooling, a 128-unit hidden layer, and a final ``nn.Linear`` that returns
logits. Chapter 4 runs it on a random batch and explains the missing last activation;
chapter 5 initialises it with :func:`rectifiers.init.kaiming_init_`.

:class:`Residual` adds a layer's input to its output; :func:`rectifiers.training.mlp` builds
residual MLPs with it, and :class:`rectifiers.batched.BatchedMLP` stacks them.
"""

from __future__ import annotations

from torch import nn

from rectifiers._validation import check_positive_int, check_real

__all__ = ["Residual", "SmallCNN"]


class SmallCNN(nn.Module):
    r"""A CNN for :math:`3 \times 32 \times 32` images with Leaky ReLU activations.

    .. code-block:: text

        Conv2d(3, 32, 3, padding=1)  -> LeakyReLU -> MaxPool2d(2)   # 32x32 -> 16x16
        Conv2d(32, 64, 3, padding=1) -> LeakyReLU -> MaxPool2d(2)   # 16x16 -> 8x8
        Flatten -> Linear(64*8*8, 128) -> LeakyReLU -> Linear(128, num_classes)

    The last layer has no activation: its outputs are logits, which is what
    ``nn.CrossEntropyLoss`` expects (it applies the log-softmax itself).

    Args:
        num_classes: number of logits per image.
        negative_slope: the Leaky ReLU slope :math:`\alpha` of every activation.

    Shape:
        - Input: :math:`(N, 3, 32, 32)`.
        - Output: :math:`(N, \text{num\_classes})`.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if ``num_classes`` is not positive or ``negative_slope`` is not finite.

    Example:
        >>> import torch
        >>> SmallCNN()(torch.randn(16, 3, 32, 32)).shape
        torch.Size([16, 10])
    """

    def __init__(self, num_classes: int = 10, negative_slope: float = 0.01):
        super().__init__()
        num_classes = check_positive_int("num_classes", num_classes)
        negative_slope = check_real("negative_slope", negative_slope)
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=3, padding=1),
            nn.LeakyReLU(negative_slope),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.LeakyReLU(negative_slope),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 8 * 8, 128),
            nn.LeakyReLU(negative_slope),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):
        r"""Logits of shape :math:`(N, \text{num\_classes})` for images ``x`` of shape
        :math:`(N, 3, 32, 32)`."""
        return self.classifier(self.features(x))


class Residual(nn.Sequential):
    r"""A skip connection around a sequence of layers: :math:`h \mapsto h + f(h)`.

    :math:`f` is the ``nn.Sequential`` of the given layers; the input is added to its output,
    as in He et al. (2016)'s residual networks. In a residual MLP built by
    :func:`rectifiers.training.mlp` each wrapped hidden layer computes
    :math:`h_k = h_{k-1} + \phi(\mathrm{BN}(W_k h_{k-1} + b_k))`, so the gradient reaches
    earlier layers through the identity even where :math:`\phi'` is 0.

    Args:
        *layers: the modules of :math:`f`, applied in order; :math:`f` must keep the shape.

    Shape:
        - Input: :math:`(N, d)`.
        - Output: :math:`(N, d)`, the same shape.

    Example:
        >>> import torch
        >>> block = Residual(nn.Linear(4, 4), nn.ReLU())
        >>> x = torch.randn(3, 4)
        >>> torch.equal(block(x), x + torch.relu(block[0](x)))
        True
    """

    def __init__(self, *layers):
        super().__init__(*layers)

    def forward(self, x):
        """The input plus the wrapped layers' output, :math:`x + f(x)`."""
        return x + super().forward(x)
