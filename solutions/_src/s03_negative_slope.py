"""Exercise set 3: ReLU, Leaky ReLU and PReLU side by side (source of solutions/03_negative_slope.ipynb)."""

from nbbuild import Notebook


def build() -> Notebook:
    nb = Notebook("03_negative_slope")
    nb.header(
        "Exercises: ReLU, Leaky ReLU and PReLU side by side",
        r"""
        The same network with three activations: you build it, measure how many of its
        activations are exactly zero, and train the three versions on MNIST-1D
        {cite:p}`greydanus2020scaling` to compare validation accuracy and zeros.
        """,
    )
    nb.md(
        r"""
        ## Setup

        The networks are small, so one CPU thread is as fast as two and gives the same numbers
        on every machine.
        """
    )
    nb.code(
        r"""
        import torch
        from myst_nb import glue
        from torch import nn

        from rectifiers.batched import BatchedMLP, train_batched
        from rectifiers.data import MNIST1D, load_mnist1d
        from rectifiers.grading import check
        from rectifiers.training import evaluate

        torch.set_num_threads(1)
        """
    )

    # -- Exercise 1 -------------------------------------------------------------------------
    nb.md(
        r"""
        ## One architecture, three activations

        MNIST-1D signals have 40 values and belong to 10 classes. The network for this set is
        a multilayer perceptron with two hidden layers of 64 units,
        $$
        x \in \mathbb{R}^{40} \xrightarrow{\ \text{Linear}\ } \mathbb{R}^{64}
        \xrightarrow{\ \phi\ } \xrightarrow{\ \text{Linear}\ } \mathbb{R}^{64}
        \xrightarrow{\ \phi\ } \xrightarrow{\ \text{Linear}\ } \mathbb{R}^{10},
        $$
        where $\phi$ is ReLU, Leaky ReLU with $\alpha = 0.01$, or PReLU, whose slope $a$ is a
        parameter learned with the weights {cite:p}`he2015delving`. There is no activation
        after the last layer: it outputs logits, which is what `nn.CrossEntropyLoss` expects.
        """
    )
    nb.exercise(
        "ex03-mlp",
        "The network",
        ["03.mlp"],
        r"""
        Write a class `MLP(nn.Sequential)` whose constructor takes `activation`, one of
        `"relu"`, `"leaky_relu"` and `"prelu"`, and builds, in this order: `nn.Linear(40, 64)`,
        the activation, `nn.Linear(64, 64)`, the activation, `nn.Linear(64, 10)`. Use
        `nn.ReLU()`, `nn.LeakyReLU(0.01)` or `nn.PReLU()` (one learnable slope per layer,
        PyTorch's default initial value $0.25$), with a **new** activation module for each
        hidden layer. Raise a `ValueError` for any other `activation`.

        The grader loads your network's parameters into its own copy of this architecture and
        compares the outputs, so the order of the layers and the activations both matter.
        """,
    )
    nb.solution(
        "ex03-mlp",
        r'''
        class MLP(nn.Sequential):
            """40 -> 64 -> 64 -> 10 MLP for MNIST-1D with ReLU, Leaky ReLU (0.01) or PReLU."""

            def __init__(self, activation):
                # BEGIN SOLUTION
                factories = {
                    "relu": nn.ReLU,
                    "leaky_relu": lambda: nn.LeakyReLU(negative_slope=0.01),
                    "prelu": nn.PReLU,
                }
                if activation not in factories:
                    raise ValueError(f"activation must be one of {sorted(factories)}, got {activation!r}")
                make = factories[activation]
                super().__init__(
                    nn.Linear(40, 64), make(),
                    nn.Linear(64, 64), make(),
                    nn.Linear(64, 10),
                )
                # END SOLUTION
        ''',
        text=r"""
        A dictionary of *factories* (functions that create a module) makes a fresh activation
        for each layer. With PReLU that matters: one shared `nn.PReLU` object would make both
        hidden layers learn a single slope together.
        """,
    )
    nb.check("03.mlp")
    nb.md(
        r"""
        The three versions have the same weights and biases; PReLU adds exactly one parameter
        per hidden layer:
        """
    )
    nb.code(
        r"""
        for activation in ["relu", "leaky_relu", "prelu"]:
            count = sum(p.numel() for p in MLP(activation).parameters())
            print(f"{activation:>10}: {count} parameters")
        """
    )

    # -- Exercise 2 -------------------------------------------------------------------------
    nb.md(
        r"""
        ## Counting zero activations

        ReLU outputs an exact zero for every non-positive pre-activation, so a good share of a
        ReLU network's hidden activations are zeros: that is the sparsity ReLU is known for,
        and also the state in which no gradient passes. Leaky ReLU and PReLU output $\alpha z$,
        which is zero only if $z$ itself is exactly zero.
        """
    )
    nb.exercise(
        "ex03-zeros",
        "The fraction of zero activations",
        ["03.zero_activation_fraction"],
        r"""
        Write `zero_activation_fraction(model, x)`: run `model` on the batch `x` without
        recording gradients, collect the **output** of every `nn.ReLU`, `nn.LeakyReLU` and
        `nn.PReLU` module inside `model`, and return, as a Python `float`, the number of
        entries that are exactly $0$ divided by the total number of entries of those outputs.
        It must work for any model built from such modules, not only your `MLP` (hint:
        forward hooks, `module.register_forward_hook`).
        """,
    )
    nb.solution(
        "ex03-zeros",
        r'''
        def zero_activation_fraction(model, x):
            """Share of exact zeros among the outputs of all ReLU/LeakyReLU/PReLU modules on x."""
            # BEGIN SOLUTION
            outputs = []

            def keep(module, inputs, output):
                outputs.append(output)

            hooks = [m.register_forward_hook(keep) for m in model.modules()
                     if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.PReLU))]
            try:
                with torch.no_grad():
                    model(x)
            finally:
                for hook in hooks:
                    hook.remove()
            zeros = sum(int((out == 0).sum()) for out in outputs)
            total = sum(out.numel() for out in outputs)
            return zeros / total
            # END SOLUTION
        ''',
        text=r"""
        A forward hook sees each activation module's output as the forward pass runs, whatever
        the model's structure. Removing the hooks in `finally` keeps the model clean even if
        the forward pass fails. Counting outputs rather than non-positive pre-activations is
        what makes Leaky ReLU and ReLU differ here.
        """,
    )
    nb.check("03.zero_activation_fraction")

    # -- Exercise 3 -------------------------------------------------------------------------
    nb.md(
        r"""
        ## Training the three networks

        MNIST-1D has 4000 training and 1000 test signals. To compare models without touching
        the test set, hold out the last 1000 training signals as a validation set and train on
        the first 3000. The package's `MNIST1D` container takes the two splits (its "test"
        fields hold the validation data here):
        """
    )
    nb.code(
        r"""
        data = load_mnist1d()
        split = MNIST1D(
            x_train=data.x_train[:3000], y_train=data.y_train[:3000],
            x_test=data.x_train[3000:], y_test=data.y_train[3000:],
            mean=data.mean, std=data.std,
        )
        print("train", tuple(split.x_train.shape), "validation", tuple(split.x_test.shape))
        """
    )
    nb.exercise(
        "ex03-compare",
        "Compare the three",
        ["03.comparison"],
        r"""
        Create `MLP("relu")`, `MLP("leaky_relu")` and `MLP("prelu")`, each right after
        `torch.manual_seed(0)` so that all three start from the same weights. Train them in
        the same way: Adam, learning rate $0.01$, mini-batches of 100, 10 epochs, the same data
        order. (`BatchedMLP` and `train_batched` from `rectifiers.batched` train all three at
        once, exactly as one would train each alone; `unstack(m)` gives model `m` back as an
        `nn.Sequential`.) Then store, in a dict named `comparison`,
        ```python
        comparison = {
            "relu": {"val_accuracy": ..., "zero_fraction": ...},
            "leaky_relu": {...},
            "prelu": {...},
        }
        ```
        the validation accuracy (a fraction, not a percentage) and your
        `zero_activation_fraction` on the validation inputs, as Python floats.

        The grader cannot retrain your networks in its time budget; it checks that the values
        are plausible (accuracies well above chance, ReLU with a clear share of zeros, the other
        two with almost none), which a wrong measurement or swapped entries fail.
        """,
    )
    nb.solution(
        "ex03-compare",
        r"""
        # BEGIN SOLUTION
        names = ["relu", "leaky_relu", "prelu"]
        models = []
        for name in names:
            torch.manual_seed(0)
            models.append(MLP(name))
        stacked = BatchedMLP(models, seeds=[0] * len(models))
        train_batched(stacked, split, epochs=10, lr=1e-2, batch_size=100)

        comparison = {}
        for m, name in enumerate(names):
            trained = stacked.unstack(m)
            _, accuracy = evaluate(trained, split.x_test, split.y_test)
            comparison[name] = {
                "val_accuracy": accuracy,
                "zero_fraction": zero_activation_fraction(trained, split.x_test),
            }
        # END SOLUTION
        """,
        text=r"""
        The seeds give the three networks identical initial weights (PReLU's slopes are a
        constant, so they draw no random numbers) and the same data order, so the activation is
        the only difference between the runs.
        """,
    )
    nb.check("03.comparison")
    nb.code(
        r"""
        print(f"{'activation':>10} {'val. accuracy':>13} {'zero fraction':>13}")
        for name, row in comparison.items():
            print(f"{name:>10} {row['val_accuracy']:>13.3f} {row['zero_fraction']:>13.3f}")
            glue(f"acc_{name}", round(row["val_accuracy"], 3), display=False)
            glue(f"zero_{name}", round(row["zero_fraction"], 3), display=False)
        """
    )
    nb.md(
        r"""
        The ReLU network outputs an exact zero for a fraction {glue:text}`zero_relu` of its
        hidden activations on the validation set; the Leaky ReLU and PReLU networks have
        zero fractions of {glue:text}`zero_leaky_relu` and {glue:text}`zero_prelu`: their
        units almost never sit exactly at $z = 0$. Validation accuracies are
        {glue:text}`acc_relu` (ReLU), {glue:text}`acc_leaky_relu` (Leaky ReLU) and
        {glue:text}`acc_prelu` (PReLU). One run on one seed cannot say whether a gap of this
        size is real; the chapter repeats such comparisons over many seeds. Large studies find
        the differences small as well: on MNIST, {cite:t}`pedamonti2018comparison` reports
        ReLU and Leaky ReLU performing similarly.
        """
    )
    return nb
