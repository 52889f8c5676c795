"""Exercise set 2: Leaky ReLU and its derivative (source of solutions/02_derivatives.ipynb)."""

from nbbuild import Notebook


def build() -> Notebook:
    nb = Notebook("02_derivatives")
    nb.header(
        "Exercises: Leaky ReLU and its derivative",
        r"""
        Leaky ReLU replaces ReLU's flat negative side by a line of slope $\alpha$. Here you
        implement it from its definition, see ReLU fall out as the case $\alpha = 0$, evaluate
        it by hand, and write its derivative with the convention PyTorch's autograd uses at
        the kink.
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
        from torch import nn

        from rectifiers.functional import relu
        from rectifiers.grading import check
        """
    )

    # -- Exercise 1 -------------------------------------------------------------------------
    nb.md(
        r"""
        ## The definition

        For a negative slope $\alpha$ (PyTorch's `negative_slope`, often $0.01$),
        $$
        \operatorname{LeakyReLU}_\alpha(x) =
        \begin{cases} x & x > 0, \\ \alpha x & x \le 0, \end{cases}
        $$
        applied to every element of a tensor. Positive inputs pass unchanged; negative inputs
        stay negative but are scaled down instead of being set to zero.
        """
    )
    nb.exercise(
        "ex02-from-scratch",
        "Leaky ReLU from its definition",
        ["02.leaky_relu_from_scratch"],
        r"""
        Write `leaky_relu_from_scratch(x, negative_slope)` for a floating-point tensor `x` of any
        shape and a real `negative_slope`, straight from the definition (no
        `torch.nn.functional`). Return a new tensor with the shape and dtype of `x`. Your
        function must be right for **every** real slope, including negative slopes and slopes
        above $1$, which the grader tries.
        """,
    )
    nb.solution(
        "ex02-from-scratch",
        r'''
        def leaky_relu_from_scratch(x, negative_slope):
            """x where x > 0, negative_slope * x elsewhere (elementwise)."""
            # BEGIN SOLUTION
            return torch.where(x > 0, x, negative_slope * x)
            # END SOLUTION
        ''',
        text=r"""
        A comparison selects the branch, exactly as the definition reads. The tempting
        one-liner $\max(x, \alpha x)$ is the same function only for $\alpha \le 1$; the cell
        after the check shows where it goes wrong.
        """,
    )
    nb.check("02.leaky_relu_from_scratch")
    nb.md(
        r"""
        Why not $\max(x, \alpha x)$? For $\alpha \le 1$ the larger of the two is $x$ when
        $x > 0$ and $\alpha x$ when $x < 0$, which is the definition (a negative slope
        included: then $\alpha x > 0 > x$ on the negative side). For $\alpha > 1$ the
        inequalities flip: the maximum takes $\alpha x$ on the positive side and $x$ on the
        negative side, a different function:
        """
    )
    nb.code(
        r"""
        x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])
        for slope in [0.1, -0.5, 2.0]:
            by_max = torch.maximum(x, slope * x)
            ours = leaky_relu_from_scratch(x, slope)
            print(f"slope {slope:+.1f}: definition {[round(v, 2) + 0.0 for v in ours.tolist()]}"
                  f"  max(x, a*x) {[round(v, 2) + 0.0 for v in by_max.tolist()]}"
                  f"  equal: {torch.equal(ours, by_max)}")
        """
    )

    # -- Exercise 2 -------------------------------------------------------------------------
    nb.md(
        r"""
        ## ReLU is the special case $\alpha = 0$

        ReLU is usually written $\operatorname{ReLU}(x) = \max(0, x)$, that is $0$ for
        $x < 0$ and $x$ otherwise.
        """
    )
    nb.exercise(
        "ex02-relu-special",
        "ReLU as a Leaky ReLU",
        ["02.relu_as_leaky"],
        r"""
        1. Show that $\operatorname{LeakyReLU}_0(x) = \operatorname{ReLU}(x)$ for every real
           $x$.
        2. Write `relu_as_leaky(x)` that computes ReLU **by calling your
           `leaky_relu_from_scratch`** with the right slope.
        """,
    )
    nb.solution(
        "ex02-relu-special",
        r'''
        def relu_as_leaky(x):
            """ReLU, computed as Leaky ReLU with slope 0."""
            # BEGIN SOLUTION
            return leaky_relu_from_scratch(x, 0.0)
            # END SOLUTION
        ''',
        text=r"""
        **1.** For $x > 0$ both functions return $x$. For $x \le 0$, Leaky ReLU returns
        $0 \cdot x = 0$ and ReLU returns $\max(0, x) = 0$. So the two agree everywhere. (In
        floating point $0 \cdot x$ is $-0$ for negative $x$; $-0$ and $0$ compare equal, so
        the values are the same numbers.)
        """,
    )
    nb.check("02.relu_as_leaky")
    nb.md(
        r"""
        On a grid of inputs the two agree exactly with PyTorch's ReLU, and at the other end of
        the range, $\alpha = 1$, Leaky ReLU is the identity, a linear function with no
        nonlinearity left. Between the two, the slope sets how much of the negative side gets
        through: $0.001$ is a very small leak, $0.01$ the common default, $0.1$ a strong one.
        """
    )
    nb.code(
        r"""
        grid = torch.linspace(-3, 3, 601)
        print("alpha = 0 equals ReLU:       ", torch.equal(relu_as_leaky(grid), relu(grid)))
        print("alpha = 1 equals identity:   ", torch.equal(leaky_relu_from_scratch(grid, 1.0), grid))
        for slope in [0.0, 0.001, 0.01, 0.1, 1.0]:
            value = leaky_relu_from_scratch(torch.tensor(-2.0), slope).item() + 0.0  # + 0.0 turns -0 into 0
            print(f"alpha = {slope:<5}: output at x = -2 is {value:+.3f}")
        """
    )

    # -- Exercise 3 -------------------------------------------------------------------------
    nb.md(
        r"""
        ## Outputs by hand
        """
    )
    nb.exercise(
        "ex02-by-hand",
        "Evaluate it by hand",
        ["02.leaky_outputs"],
        r"""
        Without running any code, compute $\operatorname{LeakyReLU}_{0.1}(x)$ for
        $x = (-4,\ -1.5,\ 0,\ 0.5,\ 3)$. Store the five results, in this order, as a tuple of
        Python floats named `leaky_outputs`.
        """,
    )
    nb.solution(
        "ex02-by-hand",
        r"""
        # BEGIN SOLUTION
        leaky_outputs = (-0.4, -0.15, 0.0, 0.5, 3.0)
        # END SOLUTION
        """,
        text=r"""
        The negative inputs are multiplied by $0.1$: $-4 \mapsto -0.4$ and $-1.5 \mapsto -0.15$.
        Zero stays $0$ (it takes the $\alpha x$ branch, and $0.1 \cdot 0 = 0$), and the positive
        inputs pass unchanged.
        """,
    )
    nb.check("02.leaky_outputs")
    nb.md(
        r"""
        PyTorch offers Leaky ReLU in two forms with the same result: the module
        `nn.LeakyReLU(negative_slope)`, handy inside `nn.Sequential`, and the function
        `F.leaky_relu(x, negative_slope)`, handy inside a custom `forward`. Both confirm the
        hand computation, and the same holds for the small example
        $x = (-5, -1, 0, 2)$ with the default slope $0.01$:
        """
    )
    nb.code(
        r"""
        x = torch.tensor([-4.0, -1.5, 0.0, 0.5, 3.0])
        module_form = nn.LeakyReLU(negative_slope=0.1)(x)
        function_form = F.leaky_relu(x, negative_slope=0.1)
        print("module:  ", [round(v, 4) for v in module_form.tolist()])
        print("function:", [round(v, 4) for v in function_form.tolist()])
        print("by hand: ", list(leaky_outputs))
        print("default slope on (-5, -1, 0, 2):",
              [round(v, 4) for v in nn.LeakyReLU()(torch.tensor([-5.0, -1.0, 0.0, 2.0])).tolist()])
        """
    )

    # -- Exercise 4 -------------------------------------------------------------------------
    nb.md(
        r"""
        ## The derivative

        Away from $0$ the derivative follows from the two linear pieces:
        $$
        \frac{d}{dx}\operatorname{LeakyReLU}_\alpha(x) =
        \begin{cases} 1 & x > 0, \\ \alpha & x < 0. \end{cases}
        $$
        At $x = 0$ the left and right slopes differ, so the derivative is undefined, as for
        ReLU; automatic differentiation has to pick a value (a *subgradient*, anything between
        $\alpha$ and $1$ is one). The important difference from ReLU is the negative side:
        ReLU's derivative is $0$ there, Leaky ReLU's is $\alpha$, so a negative pre-activation
        still passes a gradient back.
        """
    )
    nb.exercise(
        "ex02-derivative",
        "The derivative, with autograd's convention",
        ["02.leaky_relu_derivative"],
        r"""
        Find out (with a few lines of autograd) which value PyTorch uses at $x = 0$, then write
        `leaky_relu_derivative(x, negative_slope)` that returns the elementwise derivative with
        that convention, as a tensor with the shape and dtype of `x`.
        """,
    )
    nb.solution(
        "ex02-derivative",
        r'''
        def leaky_relu_derivative(x, negative_slope):
            """1 where x > 0, negative_slope where x <= 0 (autograd's choice at 0)."""
            # BEGIN SOLUTION
            return torch.where(x > 0, torch.ones_like(x), torch.full_like(x, negative_slope))
            # END SOLUTION
        ''',
        text=r"""
        Autograd tests $x > 0$, so $x = 0$ (and $-0$) takes the negative side: the derivative
        there is $\alpha$. The cell after the check shows it.
        """,
    )
    nb.check("02.leaky_relu_derivative")
    nb.md(
        r"""
        The derivative autograd computes for `F.leaky_relu` is the same tensor, zero included,
        while ReLU's autograd derivative at $0$ is $0$, its own negative-side value:
        """
    )
    nb.code(
        r"""
        x = torch.tensor([-2.0, -0.0, 0.0, 1e-6, 3.0], requires_grad=True)
        F.leaky_relu(x, 0.2).sum().backward()
        print("autograd, leaky (0.2):", [round(v, 4) for v in x.grad.tolist()])
        print("yours:                ", [round(v, 4) for v in leaky_relu_derivative(x.detach(), 0.2).tolist()])
        x.grad = None
        F.relu(x).sum().backward()
        print("autograd, ReLU:       ", [round(v, 4) for v in x.grad.tolist()])
        """
    )
    return nb
