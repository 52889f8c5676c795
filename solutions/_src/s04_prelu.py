"""Exercise set 4: learning the slope with PReLU (source of solutions/04_prelu.ipynb)."""

from nbbuild import Notebook


def build() -> Notebook:
    nb = Notebook("04_prelu")
    nb.header(
        "Exercises: learning the slope with PReLU",
        r"""
        PReLU {cite:p}`he2015delving` makes the negative slope a parameter. These exercises
        derive the gradients that train it, for one shared slope and for one slope per
        channel, check them against autograd, watch a slope being learned, and count what the
        extra parameters cost.
        """,
    )
    nb.md(
        r"""
        ## Setup
        """
    )
    nb.code(
        r"""
        import torch
        import torch.nn.functional as F
        from myst_nb import glue
        from torch import nn

        from rectifiers.functional import leaky_relu, prelu
        from rectifiers.grading import check

        torch.set_num_threads(1)
        """
    )
    nb.md(
        r"""
        ## PReLU and its parameters

        For an input of shape $(N, C, \ldots)$ (batch, channels, then any positions),
        $$
        \operatorname{PReLU}(x)_{i,c,\ldots} =
        \begin{cases} x_{i,c,\ldots} & x_{i,c,\ldots} > 0, \\
        a_c\, x_{i,c,\ldots} & x_{i,c,\ldots} \le 0, \end{cases}
        $$
        with learnable slopes $a$. `nn.PReLU()` has a single slope shared by every element
        ($a_c = a$ for all $c$), initialised to $0.25$; `nn.PReLU(num_parameters=C)` has one
        slope per channel, the channel being dimension 1. An input with fewer than two
        dimensions has no channel dimension and takes a single slope. If a learned slope goes to
        $0$ the unit behaves like ReLU, a small positive slope gives a Leaky ReLU, and a slope
        near $1$ makes it almost linear.
        """
    )
    nb.code(
        r"""
        x = torch.tensor([-2.0, 0.0, 3.0])
        act = nn.PReLU()
        print("output:", [round(v, 4) for v in act(x).tolist()])
        print("parameters:", [(name, [round(v, 4) for v in p.tolist()]) for name, p in act.named_parameters()])
        per_channel = nn.PReLU(num_parameters=64)
        print("channel-wise slope tensor:", tuple(per_channel.weight.shape))
        """
    )

    # -- Exercise 1 -------------------------------------------------------------------------
    nb.md(
        r"""
        ## The gradient of the slope

        For a negative input the output is $a\,x$, so its derivative with respect to $a$ is
        $x$; for a positive input the output does not depend on $a$. With the upstream
        gradient $g = \partial L / \partial y$ and the chain rule, each position contributes
        $g \cdot \partial y / \partial a$, and a slope collects the contributions of **every**
        position that uses it.
        """
    )
    nb.exercise(
        "ex04-slope-grad",
        "The slope's gradient",
        ["04.prelu_slope_grad"],
        r"""
        1. Show that
           $$
           \frac{\partial L}{\partial a_c} = \sum_{i,\ \ldots\ :\ x_{i,c,\ldots} \le 0}
           g_{i,c,\ldots}\; x_{i,c,\ldots},
           $$
           the sum running over the batch and all positions of channel $c$ (over all elements
           for a shared slope).
        2. Write `prelu_slope_grad(x, weight, grad_output)`: `x` and `grad_output` have the
           same shape, $(N, C, \ldots)$ or 1-D, and `weight` is a 1-D tensor with one slope or
           $C$ slopes. Return $\partial L / \partial a$ with the shape and dtype of `weight`.
        """,
    )
    nb.solution(
        "ex04-slope-grad",
        r'''
        def prelu_slope_grad(x, weight, grad_output):
            """dL/da for PReLU: sum of grad_output * x over the non-positive positions sharing each slope."""
            # BEGIN SOLUTION
            per_position = torch.where(x > 0, torch.zeros_like(x), x) * grad_output
            if weight.numel() == 1:
                return per_position.sum().reshape(weight.shape)
            other_dims = [d for d in range(x.dim()) if d != 1]
            return per_position.sum(dim=other_dims)
            # END SOLUTION
        ''',
        text=r"""
        **1.** $y_{i,c,\ldots}$ depends on $a_c$ only through its own element:
        $\partial y_{i,c,\ldots}/\partial a_c = x_{i,c,\ldots}$ if $x_{i,c,\ldots} \le 0$ and $0$
        otherwise, and it does not depend on any other slope. The multivariate chain rule sums
        $g \cdot \partial y / \partial a_c$ over all elements, which leaves the sum over the
        non-positive elements of channel $c$. (At $x = 0$ the term is $0$ either way.)

        **2.** Build the per-position terms, then sum them over every dimension except the
        channel dimension 1, or over everything for a single slope.
        """,
    )
    nb.check("04.prelu_slope_grad")

    # -- Exercise 2 -------------------------------------------------------------------------
    nb.exercise(
        "ex04-input-grad",
        "The input's gradient",
        ["04.prelu_input_grad"],
        r"""
        The derivative with respect to the input is
        $\partial y/\partial x = 1$ for $x > 0$ and $a_c$ for $x \le 0$ (PyTorch's autograd
        uses $a_c$ at $x = 0$, as for Leaky ReLU). Write
        `prelu_input_grad(x, weight, grad_output)` that returns $\partial L/\partial x$, with
        the shape and dtype of `x`; the slopes apply along dimension 1.
        """,
    )
    nb.solution(
        "ex04-input-grad",
        r'''
        def prelu_input_grad(x, weight, grad_output):
            """dL/dx for PReLU: grad_output where x > 0, slope * grad_output where x <= 0."""
            # BEGIN SOLUTION
            if x.dim() >= 2:
                # Shape (1, C, 1, ...) so the slopes line up with dim 1.
                shape = [1] * x.dim()
                shape[1] = weight.numel()
                weight = weight.reshape(shape)
            return torch.where(x > 0, grad_output, weight * grad_output)
            # END SOLUTION
        ''',
        text=r"""
        The only subtle part is the broadcast: a 1-D tensor of $C$ slopes would line up with
        the *last* dimension, so it is reshaped to $(1, C, 1, \ldots)$ first.
        """,
    )
    nb.check("04.prelu_input_grad")
    nb.md(
        r"""
        Both formulas can be checked against autograd on a channel-wise PReLU after a
        convolution-like input of shape $(4, 3, 5)$, with a few exact zeros:
        """
    )
    nb.code(
        r"""
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64)
        x[0, :, 0] = 0.0
        weight = torch.tensor([0.25, -0.5, 1.5], dtype=torch.float64, requires_grad=True)
        g = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64)
        x.requires_grad_(True)
        F.prelu(x, weight).backward(g)
        with torch.no_grad():
            slope_error = (prelu_slope_grad(x, weight, g) - weight.grad).abs().max().item()
            input_error = (prelu_input_grad(x, weight, g) - x.grad).abs().max().item()
        print(f"largest difference from autograd: slopes {slope_error:.1e}, input {input_error:.1e}")
        """
    )

    # -- A slope that learns ------------------------------------------------------------------
    nb.md(
        r"""
        ## Watching a slope learn

        With the slope's gradient, gradient descent can fit the slope itself. Generate targets
        with a Leaky ReLU of slope $0.3$ and fit a single PReLU slope, started from PyTorch's
        $0.25$ and from two values far away, by plain gradient descent on the mean squared error
        $L = \frac1N \sum_i (\operatorname{PReLU}_a(x_i) - t_i)^2$, whose upstream gradient is
        $g_i = 2(\operatorname{PReLU}_a(x_i) - t_i)/N$:
        """
    )
    nb.code(
        r"""
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(512, generator=gen)
        target = leaky_relu(x, 0.3)
        for start in [0.25, -1.0, 2.0]:
            a = torch.tensor([start])
            for _ in range(50):
                g = 2 * (prelu(x, a) - target) / x.numel()
                a = a - 0.5 * prelu_slope_grad(x, a, g)
            print(f"slope started at {start:+.2f} ends at {a.item():.4f}")
        glue("learned_slope", round(a.item(), 4), display=False)
        """
    )
    nb.md(
        r"""
        From every starting point the slope converges to the $0.3$ that produced the targets
        (the last run ends at {glue:text}`learned_slope`): the network can set how much of the
        negative side it keeps. In a real network the same gradient flows in through the
        layers above, and nothing stops a slope from going negative or above $1$ if that
        lowers the loss.
        """
    )

    # -- Exercise 3 -------------------------------------------------------------------------
    nb.md(
        r"""
        ## What the slopes cost

        PReLU adds parameters: one per layer when shared, one per channel otherwise.
        """
    )
    nb.exercise(
        "ex04-count",
        "Counting slopes",
        ["04.count_prelu_slopes"],
        r"""
        Write `count_prelu_slopes(model)` that returns, as an `int`, the total number of
        learnable slopes in all the `nn.PReLU` modules inside `model`, however deeply they
        are nested.
        """,
    )
    nb.solution(
        "ex04-count",
        r'''
        def count_prelu_slopes(model):
            """Number of slope parameters held by the nn.PReLU modules of model."""
            # BEGIN SOLUTION
            return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.PReLU))
            # END SOLUTION
        ''',
        text=r"""
        `model.modules()` visits every submodule at any depth; counting modules instead of
        elements would give one per channel-wise PReLU, and counting all parameters would
        include the convolutions.
        """,
    )
    nb.check("04.count_prelu_slopes")
    nb.md(
        r"""
        Apply it to a small image classifier for $32 \times 32$ colour images, two
        convolution blocks and a classifier, with a channel-wise PReLU after every
        convolution and after the hidden linear layer. The final layer has no activation:
        it returns logits for `nn.CrossEntropyLoss`.
        """
    )
    nb.code(
        r"""
        class SmallCNN(nn.Module):
            def __init__(self, num_classes=10):
                super().__init__()
                self.features = nn.Sequential(
                    nn.Conv2d(3, 32, kernel_size=3, padding=1), nn.PReLU(32), nn.MaxPool2d(2),
                    nn.Conv2d(32, 64, kernel_size=3, padding=1), nn.PReLU(64), nn.MaxPool2d(2),
                )
                self.classifier = nn.Sequential(
                    nn.Flatten(), nn.Linear(64 * 8 * 8, 128), nn.PReLU(128), nn.Linear(128, num_classes),
                )

            def forward(self, x):
                return self.classifier(self.features(x))


        torch.manual_seed(0)
        cnn = SmallCNN()
        logits = cnn(torch.randn(16, 3, 32, 32))
        slopes = count_prelu_slopes(cnn)
        total = sum(p.numel() for p in cnn.parameters())
        print("logits:", tuple(logits.shape))
        print(f"PReLU slopes: {slopes} of {total} parameters ({slopes / total:.3%})")
        glue("cnn_slopes", slopes, display=False)
        glue("cnn_slope_share", round(slopes / total, 5), display=False)
        """
    )
    nb.md(
        r"""
        The {glue:text}`cnn_slopes` slopes are {glue:text}`cnn_slope_share:.3%` of the
        network's parameters, so they cost almost nothing in size or compute. What they add is
        flexibility: each channel can choose its own negative side, which can help
        convolutional networks {cite:p}`he2015delving` and can also make overfitting slightly
        easier. How weight decay treats these parameters is the topic of the last set.
        """
    )
    return nb
