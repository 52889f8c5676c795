"""Exercise set 6: weight decay and the PReLU slope (source of solutions/06_regularisation.ipynb)."""

from nbbuild import Notebook


def build() -> Notebook:
    nb = Notebook("06_regularisation")
    nb.header(
        "Exercises: weight decay and the PReLU slope",
        r"""
        PReLU's slopes are parameters, so an optimizer with weight decay shrinks them like any
        weight, towards $0$, which turns PReLU back into ReLU. These exercises compute how fast
        that happens, build optimizer parameter groups that exempt the slopes, and look at why
        the common name-based recipe fails without a word.
        """,
    )
    nb.md(
        r"""
        ## Setup
        """
    )
    nb.code(
        r"""
        import math

        import torch
        from myst_nb import glue
        from torch import nn

        from rectifiers.batched import batched_mlp, train_batched
        from rectifiers.data import load_mnist1d
        from rectifiers.grading import check
        from rectifiers.optim import param_groups

        torch.set_num_threads(1)
        """
    )

    # -- Exercise 1 -------------------------------------------------------------------------
    nb.md(
        r"""
        ## How weight decay moves a slope

        SGD with weight decay $\lambda$ adds $\lambda\theta$ to the gradient of every decayed
        parameter $\theta$, so with learning rate $\eta$ one step is
        $$
        \theta \leftarrow \theta - \eta\left(\nabla_\theta L + \lambda\,\theta\right).
        $$
        AdamW {cite:p}`loshchilov2019decoupled` decouples the two parts: it shrinks
        $\theta \leftarrow \theta - \eta\lambda\theta$ and then takes its usual Adam step.
        Either way the decay pulls every decayed parameter towards $0$.
        """
    )
    nb.exercise(
        "ex06-decay",
        "A slope under weight decay alone",
        ["06.decayed_slope"],
        r"""
        Suppose a PReLU slope starts at $a_0$ and its data gradient is $0$ for a while (for
        example because its unit's inputs are all positive). Show that after $T$ steps of SGD
        with weight decay
        $$a_T = a_0\,(1 - \eta\lambda)^T,$$
        and write `decayed_slope(a0, lr, weight_decay, steps)` that returns $a_T$ as a Python
        `float`.
        """,
    )
    nb.solution(
        "ex06-decay",
        r'''
        def decayed_slope(a0, lr, weight_decay, steps):
            """PReLU slope after `steps` SGD steps with weight decay and no data gradient."""
            # BEGIN SOLUTION
            return a0 * (1.0 - lr * weight_decay) ** steps
            # END SOLUTION
        ''',
        text=r"""
        With $\nabla_a L = 0$ one step is $a \leftarrow a - \eta\lambda a = (1 - \eta\lambda)\,a$.
        The factor is the same at every step, so $T$ steps multiply $a_0$ by
        $(1 - \eta\lambda)^T$. It is close to $e^{-\eta\lambda T}$ when $\eta\lambda$ is small,
        but not equal to it. AdamW gives the same formula here: with a zero gradient its Adam
        step is exactly $0$ and only the decoupled shrinking remains.
        """,
    )
    nb.check("06.decayed_slope")
    nb.md(
        r"""
        Check the formula against PyTorch's optimizers. A PReLU that only ever sees positive
        inputs has a zero slope gradient, so its slope moves by weight decay alone:
        """
    )
    nb.code(
        r"""
        def run_optimizer(make_optimizer, steps=100):
            act = nn.PReLU()
            opt = make_optimizer(act.parameters())
            x = torch.rand(32) + 0.1  # positive inputs: d(loss)/d(slope) = 0
            for _ in range(steps):
                opt.zero_grad()
                act(x).sum().backward()
                opt.step()
            return act.weight.item()


        sgd = run_optimizer(lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.05))
        adamw = run_optimizer(lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.05))
        print(f"formula {decayed_slope(0.25, 0.1, 0.05, 100):.6f}  SGD {sgd:.6f}  AdamW {adamw:.6f}")
        """
    )
    nb.md(
        r"""
        Typical settings decay slowly per step, but runs are long. The number of steps after
        which an unsupported slope has halved is
        $T_{1/2} = \ln 2 / \left(-\ln(1 - \eta\lambda)\right)$:
        """
    )
    nb.code(
        r"""
        for name, lr, wd in [("SGD", 0.1, 5e-4), ("AdamW", 1e-3, 1e-2), ("AdamW, strong decay", 1e-3, 0.1)]:
            half_life = math.log(2) / -math.log1p(-lr * wd)
            print(f"{name:>20}: lr {lr:g}, weight decay {wd:g} -> half-life {half_life:,.0f} steps")
        """
    )
    nb.md(
        r"""
        Tens of thousands of steps is well within a real training run, so a slope that the
        data support only weakly drifts towards ReLU. The data gradient pushes back, which is
        why the effect on a trained network is smaller than in this gradient-free setting, but
        it is a pull that nobody asked for.
        """
    )

    # -- Exercise 2 -------------------------------------------------------------------------
    nb.md(
        r"""
        ## Parameter groups by module type

        `torch.optim` optimizers accept a list of *parameter groups*, dicts with a `"params"`
        list and options such as `"weight_decay"` that override the defaults for those
        parameters. The usual convention decays weight matrices and kernels, and exempts
        PReLU slopes, biases and the scales and shifts of normalisation layers.
        """
    )
    nb.exercise(
        "ex06-groups",
        "Groups that spare the slopes",
        ["06.no_decay_param_groups"],
        r"""
        Write `no_decay_param_groups(model, weight_decay)` that returns
        ```python
        [{"params": decayed, "weight_decay": weight_decay},
         {"params": undecayed, "weight_decay": 0.0}]
        ```
        where `undecayed` holds every parameter of every `nn.PReLU` module, every parameter
        of every normalisation layer (`nn.BatchNorm1d`, `nn.BatchNorm2d`, `nn.LayerNorm`,
        `nn.GroupNorm`), and every bias (a parameter a module registers under the name
        `bias`), and `decayed` holds all other parameters. Decide by **module type**, not by
        the parameter's name in `model.named_parameters()`; both entries must be lists, and
        every parameter must appear exactly once.
        """,
    )
    nb.solution(
        "ex06-groups",
        r'''
        def no_decay_param_groups(model, weight_decay):
            """Two optimizer groups: decayed weights; undecayed PReLU slopes, norms and biases."""
            # BEGIN SOLUTION
            exempt_types = (nn.PReLU, nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)
            undecayed_ids = set()
            for module in model.modules():
                # recurse=False: only the parameters this module registers itself.
                for name, param in module.named_parameters(recurse=False):
                    if isinstance(module, exempt_types) or name == "bias":
                        undecayed_ids.add(id(param))
            decayed, undecayed = [], []
            for param in model.parameters():  # each parameter once, even if shared
                (undecayed if id(param) in undecayed_ids else decayed).append(param)
            return [
                {"params": decayed, "weight_decay": weight_decay},
                {"params": undecayed, "weight_decay": 0.0},
            ]
            # END SOLUTION
        ''',
        text=r"""
        Each module is asked for its *own* parameters (`recurse=False`), so the decision uses
        the type of the module that owns the parameter and the name it gave it (`bias`), never
        the dotted path, which depends on where the module sits. Collecting the final lists
        from `model.parameters()` puts a shared parameter in one group only.
        """,
    )
    nb.check("06.no_decay_param_groups")
    nb.md(
        r"""
        On a network with PReLU and batch normalisation, your groups match the package's
        `param_groups` and go straight into an optimizer:
        """
    )
    nb.code(
        r"""
        net = nn.Sequential(nn.Linear(40, 64), nn.BatchNorm1d(64), nn.PReLU(64), nn.Linear(64, 10))
        names = {id(p): n for n, p in net.named_parameters()}
        for group, reference in zip(no_decay_param_groups(net, 1e-2), param_groups(net, 1e-2)):
            print(f"weight_decay {group['weight_decay']:g}: {sorted(names[id(p)] for p in group['params'])}"
                  f"  same as the package: {[id(p) for p in group['params']] == [id(p) for p in reference['params']]}")
        opt = torch.optim.AdamW(no_decay_param_groups(net, 1e-2), lr=1e-3)
        print("optimizer groups:", [len(g["params"]) for g in opt.param_groups])
        """
    )

    # -- Exercise 3 (written) ----------------------------------------------------------------
    nb.md(
        r"""
        ## The name-based recipe

        A recipe that circulates widely groups the parameters by name:

        ```python
        decay, no_decay = [], []
        for name, param in model.named_parameters():
            if "prelu" in name.lower():
                no_decay.append(param)
            else:
                decay.append(param)
        ```

        Apply it to two models with the same layers: one written as a class with an attribute
        called `prelu`, and one built with `nn.Sequential`, the way most small models are.
        """
    )
    nb.code(
        r"""
        def name_based_groups(model):
            decay, no_decay = [], []
            for name, param in model.named_parameters():
                (no_decay if "prelu" in name.lower() else decay).append(name)
            return decay, no_decay


        class Named(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1, self.prelu, self.fc2 = nn.Linear(40, 64), nn.PReLU(), nn.Linear(64, 10)

            def forward(self, x):
                return self.fc2(self.prelu(self.fc1(x)))


        for model in [Named(), nn.Sequential(nn.Linear(40, 64), nn.PReLU(), nn.Linear(64, 10))]:
            decay, no_decay = name_based_groups(model)
            print(f"{type(model).__name__:>10}: decayed {decay}, not decayed {no_decay}")
        """
    )
    nb.md(
        r"""
        In the `nn.Sequential` the slope is called `1.weight`, so the recipe decays it with
        everything else. The consequence in training: the package's batched trainer trains the
        40-64-64-10 PReLU network of exercise set 3 on MNIST-1D for three seeds at once, for ten epochs with
        AdamW and a strong weight decay of $0.5$ on weights and biases, once with the slopes
        decayed as well (what the recipe does here) and once with them exempt. All slopes start
        at $0.25$; these are the learned ones, per seed:
        """
    )
    nb.code(
        r"""
        data = load_mnist1d()
        learned = {}
        for label, slope_decay in [("slopes decayed", None), ("slopes exempt", 0.0)]:
            nets = batched_mlp([40, 64, 64, 10], ["prelu"] * 3, seeds=[0, 1, 2])
            train_batched(nets, data, epochs=10, lr=1e-2, batch_size=200, optimizer="adamw",
                          weight_decay=0.5, slope_weight_decay=slope_decay)
            learned[label] = torch.stack([nets.slope(k).reshape(3) for k in range(2)], dim=1)
            for seed, (first, second) in enumerate(learned[label].tolist()):
                print(f"{label:>15}, seed {seed}: layer 1 {first:+.3f}, layer 2 {second:+.3f}")
        for label, key in [("slopes decayed", "decayed"), ("slopes exempt", "exempt")]:
            means = learned[label].mean(dim=0)
            glue(f"layer1_{key}", round(means[0].item(), 2), display=False)
            glue(f"layer2_{key}", round(means[1].item(), 2), display=False)
        """
    )
    nb.md(
        r"""
        In the second hidden layer the data push the slopes up, to {glue:text}`layer2_exempt` on
        average when they are exempt, while the decayed ones stop at
        {glue:text}`layer2_decayed`, in every seed clearly closer to the ReLU value $0$. In the
        first layer the data drive the slopes negative in both runs (averages
        {glue:text}`layer1_decayed` and {glue:text}`layer1_exempt`): there the data gradient
        dominates and the decay changes little. The decay does not stop training, it quietly
        biases the very parameter PReLU adds.
        """
    )
    nb.exercise(
        "ex06-names",
        "Why the name test fails silently",
        ["06.name_grouping"],
        r"""
        In three to five sentences: where do the names in `named_parameters()` come from, and
        why does `"prelu" in name` find nothing in an `nn.Sequential`? What happens to the
        slopes as a result, and why does nothing warn you? What is the robust alternative?
        """,
    )
    nb.written(
        "06.name_grouping",
        "ex06-names",
        r"""
        **Model answer.** A parameter's name is the path of *attribute names* from the model to
        it plus the parameter's own name, e.g. `prelu.weight` when the PReLU is stored in an
        attribute called `prelu`; it says nothing about the module's type. `nn.Sequential`
        names its children by position, so the slope is called `1.weight` and the substring
        test never matches. The `no_decay` list ends up empty, the slopes go into the decayed
        group, and weight decay pulls them towards $0$, that is, towards ReLU (in the run
        above the second layer's slopes ended about half as large). Nothing raises an error, because an empty parameter group and a
        decayed slope are both perfectly valid optimizer settings; only inspecting the groups
        reveals it. (The same test can also match parameters that are not slopes, such as a
        linear layer stored as `prelu_proj`.) The robust way is to decide by module type,
        `isinstance(module, nn.PReLU)`, over `model.modules()`, and to check that every
        parameter lands in exactly one group.

        **Rubric (2 points).**

        - 1 point: names come from attribute names or positions, not types; in `nn.Sequential`
          they are indices like `1.weight`, so nothing matches and the slopes are decayed
          towards $0$ (towards ReLU).
        - 1 point: why it is silent (valid but empty group, no error) and the fix (group by
          module type, e.g. `isinstance(m, nn.PReLU)`, and check the groups).
        """,
    )
    return nb
