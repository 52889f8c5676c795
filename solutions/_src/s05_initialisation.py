"""Exercise set 5: initialisation that matches the slope (source of solutions/05_initialisation.ipynb)."""

from nbbuild import Notebook


def build() -> Notebook:
    nb = Notebook("05_initialisation")
    nb.header(
        "Exercises: initialisation that matches the slope",
        r"""
        He (Kaiming) initialisation {cite:p}`he2015delving` scales each layer's weights so that
        signals keep their size through a deep rectifier network, and the right scale depends
        on the negative slope. You derive the gain, initialise a network with it, predict what
        a mismatched slope does over many layers, and compare the two fan modes.
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

        from rectifiers.diagnostics import record_preactivations
        from rectifiers.grading import check
        from rectifiers.init import leaky_relu_gain

        torch.set_num_threads(1)
        """
    )

    # -- Exercise 1 -------------------------------------------------------------------------
    nb.md(
        r"""
        ## The gain for a negative slope

        Take a layer $z' = W h$ with $h = \phi(z)$, where the weights $W_{jk}$ are independent,
        have mean $0$ and variance $\sigma^2$, and are independent of $h$. With
        $\text{fan\_in}$ inputs per unit,
        $$
        \mathbb{E}\big[z_j'^2\big] = \sum_{k=1}^{\text{fan\_in}} \mathbb{E}\big[W_{jk}^2\big]\,
        \mathbb{E}\big[h_k^2\big] = \text{fan\_in}\;\sigma^2\;\mathbb{E}\big[\phi(z)^2\big].
        $$
        If $z$ is symmetric about $0$, half of its second moment comes from each side, so for
        Leaky ReLU with slope $\alpha$
        $$
        \mathbb{E}\big[\phi(z)^2\big] = \mathbb{E}\big[z^2\,[z > 0]\big] +
        \alpha^2\,\mathbb{E}\big[z^2\,[z < 0]\big] = \frac{1 + \alpha^2}{2}\,\mathbb{E}\big[z^2\big].
        $$
        PyTorch writes the standard deviation as $\sigma = \text{gain}/\sqrt{\text{fan\_in}}$.
        """
    )
    nb.exercise(
        "ex05-gain",
        "The matched gain",
        ["05.matched_gain"],
        r"""
        Find the gain for which $\mathbb{E}[z'^2] = \mathbb{E}[z^2]$, and write
        `matched_gain(negative_slope)` that returns it as a Python `float`. It must hold for
        any real slope, negative or above $1$ included.
        """,
    )
    nb.solution(
        "ex05-gain",
        r'''
        def matched_gain(negative_slope):
            """He et al.'s gain for Leaky ReLU with this negative slope."""
            # BEGIN SOLUTION
            return math.sqrt(2.0 / (1.0 + negative_slope**2))
            # END SOLUTION
        ''',
        text=r"""
        Combining the two lines, $\mathbb{E}[z'^2] = \text{gain}^2\,\frac{1 + \alpha^2}{2}\,
        \mathbb{E}[z^2]$, so the second moment is kept when
        $$\text{gain} = \sqrt{\frac{2}{1 + \alpha^2}}.$$
        ReLU ($\alpha = 0$) gives the familiar $\sqrt 2$, the identity ($\alpha = 1$) gives $1$;
        only $\alpha^2$ enters, so a negative slope needs the same gain as its absolute value.
        """,
    )
    nb.check("05.matched_gain")
    nb.md(
        r"""
        PyTorch's `nn.init.calculate_gain("leaky_relu", a)` and the package's
        `leaky_relu_gain` compute the same number:
        """
    )
    nb.code(
        r"""
        for slope in [0.0, 0.01, 0.2, 1.0, -0.5]:
            ours, torch_gain = matched_gain(slope), nn.init.calculate_gain("leaky_relu", slope)
            print(f"slope {slope:+.2f}: gain {ours:.6f}  PyTorch {torch_gain:.6f}  package {leaky_relu_gain(slope):.6f}")
        """
    )

    # -- Exercise 2 -------------------------------------------------------------------------
    nb.md(
        r"""
        ## Initialising a Leaky ReLU network

        `nn.init.kaiming_normal_(weight, a=..., mode="fan_in", nonlinearity="leaky_relu")`
        draws $W \sim \mathcal{N}(0, \sigma^2)$ with $\sigma = \text{gain}(a)/\sqrt{\text{fan\_in}}$,
        where `a` is the negative slope. For a convolution the fan-in counts every input of one
        output: input channels times kernel size. The slope passed as `a` must be the one the
        activation uses: PyTorch has no way to know it.
        """
    )
    nb.exercise(
        "ex05-init",
        "Kaiming initialisation with the right slope",
        ["05.init_leaky_"],
        r"""
        Write `init_leaky_(module, negative_slope)` that, for every `nn.Linear`, `nn.Conv1d`
        and `nn.Conv2d` inside `module`, re-initialises the weight in place with
        `nn.init.kaiming_normal_` and the matching slope (default `mode="fan_in"`) and sets the
        bias, if the layer has one, to zero. Every other parameter (PReLU slopes in particular)
        must stay as it was. Return `module`.

        The grader checks your result statistically on layers with tens of thousands of
        weights: the sample standard deviation must match $\text{gain}/\sqrt{\text{fan\_in}}$
        within 3% and the weights must look normal, so a wrong slope, a missing square root,
        `fan_out`, or a uniform distribution all fail.
        """,
    )
    nb.solution(
        "ex05-init",
        r'''
        def init_leaky_(module, negative_slope):
            """Kaiming-normal weights for the given Leaky ReLU slope and zero biases, in place."""
            # BEGIN SOLUTION
            for layer in module.modules():
                if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                    nn.init.kaiming_normal_(layer.weight, a=negative_slope, nonlinearity="leaky_relu")
                    if layer.bias is not None:
                        nn.init.zeros_(layer.bias)
            return module
            # END SOLUTION
        ''',
        text=r"""
        `module.modules()` reaches every layer, however nested; `isinstance` picks the layers
        with weights to initialise and leaves the activations, PReLU included, alone. A layer
        built with `bias=False` has `bias = None`, hence the test.
        """,
    )
    nb.check("05.init_leaky_")

    # -- Exercise 3 -------------------------------------------------------------------------
    nb.md(
        r"""
        ## A slope that does not match

        What if the initialisation assumes one slope and the network uses another, for
        example He's ReLU initialisation ($\alpha = 0$) in a network with Leaky ReLU
        $\alpha = 0.5$? Consider $L$ blocks after a first linear layer,
        $z_1 = W_1 x$ and $z_{l+1} = W_{l+1}\,\phi(z_l)$ for $l = 1, \ldots, L$, with zero
        biases and every $W_l$ drawn with the gain for an *assumed* slope while $\phi$ uses the
        *actual* one.
        """
    )
    nb.exercise(
        "ex05-mismatch",
        "Growth under a mismatched slope",
        ["05.mismatch_growth"],
        r"""
        Show that the second moment is multiplied by the same factor in every block, and write
        `mismatch_growth(actual_slope, assumed_slope, depth)` that returns
        $\mathbb{E}[z_{L+1}^2] / \mathbb{E}[z_1^2]$ for $L$ = `depth` as a Python `float`.
        """,
    )
    nb.solution(
        "ex05-mismatch",
        r'''
        def mismatch_growth(actual_slope, assumed_slope, depth):
            """Factor by which E[z^2] grows over `depth` blocks when the init assumes another slope."""
            # BEGIN SOLUTION
            per_layer = (1.0 + actual_slope**2) / (1.0 + assumed_slope**2)
            return per_layer**depth
            # END SOLUTION
        ''',
        text=r"""
        From the first exercise, one block multiplies the second moment by
        $\text{gain}^2 \cdot \frac{1 + \alpha_\text{actual}^2}{2}$, and the initialisation used
        $\text{gain}^2 = \frac{2}{1 + \alpha_\text{assumed}^2}$. The factor
        $$
        r = \frac{1 + \alpha_\text{actual}^2}{1 + \alpha_\text{assumed}^2}
        $$
        does not depend on the layer, so after $L$ blocks
        $\mathbb{E}[z_{L+1}^2] = r^L\,\mathbb{E}[z_1^2]$. It is $1$ exactly when the slopes
        have the same magnitude.
        """,
    )
    nb.check("05.mismatch_growth")
    nb.md(
        r"""
        Check the prediction on a real network: 20 blocks of width 512 with Leaky ReLU
        $\alpha = 0.5$, initialised by your `init_leaky_` with the right slope, with the ReLU
        slope $0$, and with slope $1$. The package's `record_preactivations` records the input
        of every activation module (a last Leaky ReLU is appended so that $z_{L+1}$ is recorded
        too), and the measured growth is the ratio of the mean squares of the last and first
        recorded pre-activations on 128 random inputs:
        """
    )
    nb.code(
        r"""
        depth, width, actual = 20, 512, 0.5
        x = torch.randn(128, width, generator=torch.Generator().manual_seed(0))
        print(f"{'assumed slope':>13} {'predicted':>10} {'measured':>10}")
        for assumed, key in [(0.5, "matched"), (0.0, "relu"), (1.0, "one")]:
            layers = [nn.Linear(width, width)]
            for _ in range(depth):
                layers += [nn.LeakyReLU(actual), nn.Linear(width, width)]
            net = nn.Sequential(*layers, nn.LeakyReLU(actual))
            torch.manual_seed(1)
            init_leaky_(net, assumed)
            with record_preactivations(net) as pre, torch.no_grad():
                net(x)
            moments = [z.pow(2).mean().item() for z in pre.values()]
            measured = moments[-1] / moments[0]
            predicted = mismatch_growth(actual, assumed, depth)
            print(f"{assumed:>13.1f} {predicted:>10.3g} {measured:>10.3g}")
            glue(f"growth_pred_{key}", float(f"{predicted:.3g}"), display=False)
            glue(f"growth_meas_{key}", float(f"{measured:.3g}"), display=False)
        """
    )
    nb.md(
        r"""
        With the matched slope the second moment ends at {glue:text}`growth_meas_matched` times its
        starting value (predicted: {glue:text}`growth_pred_matched`). Initialising for ReLU in
        this Leaky ReLU network multiplies it by {glue:text}`growth_meas_relu` over 20 blocks
        (predicted {glue:text}`growth_pred_relu`), and assuming slope 1 shrinks it to
        {glue:text}`growth_meas_one` (predicted {glue:text}`growth_pred_one`). A factor of
        $1.25$ per layer looks harmless, but it compounds: matching the initialisation to the
        activation is what keeps a deep network's signals at a usable scale.
        """
    )

    # -- Exercise 4 (written) ----------------------------------------------------------------
    nb.md(
        r"""
        ## Fan-in or fan-out?

        `kaiming_normal_` also has `mode="fan_out"`, which divides by the number of outputs
        instead. The backward pass mirrors the forward one: the gradient reaching a layer's
        input is $W^\top g$, a sum over $\text{fan\_out}$ terms, so
        $\mathbb{E}[(W^\top g)_k^2] = \text{fan\_out}\;\sigma^2\;\mathbb{E}[g^2]$. A layer that
        widens from 64 to 1024 units shows the difference; each mode's ratio below is divided
        by $\text{gain}^2$, so $1$ means "kept":
        """
    )
    nb.code(
        r"""
        gen = torch.Generator().manual_seed(2)
        h = torch.randn(2048, 64, generator=gen)
        g = torch.randn(2048, 1024, generator=gen)
        gain2 = matched_gain(0.0) ** 2
        for mode in ["fan_in", "fan_out"]:
            weight = torch.empty(1024, 64)
            torch.manual_seed(3)
            nn.init.kaiming_normal_(weight, mode=mode, nonlinearity="relu")
            forward = (h @ weight.T).pow(2).mean() / h.pow(2).mean() / gain2
            backward = (g @ weight).pow(2).mean() / g.pow(2).mean() / gain2
            print(f"{mode:>7}: std {weight.std().item():.4f}, forward ratio {forward.item():.3f}, "
                  f"backward ratio {backward.item():.3f}")
        """
    )
    nb.exercise(
        "ex05-fan",
        "Which mode, when?",
        ["05.fan_mode"],
        r"""
        In four to six sentences: what does `mode="fan_in"` keep stable and what does
        `mode="fan_out"` keep stable, and why (refer to the sums above)? By how much do the two
        disagree for the layer above? When does the choice matter, and why do
        {cite:t}`he2015delving` conclude that either one is enough for a deep network?
        """,
    )
    nb.written(
        "05.fan_mode",
        "ex05-fan",
        r"""
        **Model answer.** A unit's pre-activation sums $\text{fan\_in}$ products, so
        $\sigma^2 = \text{gain}^2/\text{fan\_in}$ keeps the second moment of the forward
        activations from layer to layer; the gradient with respect to a layer's input sums
        $\text{fan\_out}$ products, so $\sigma^2 = \text{gain}^2/\text{fan\_out}$ keeps the
        second moment of the backpropagated gradients instead. For the $64 \to 1024$ layer the
        variances differ by $\text{fan\_out}/\text{fan\_in} = 16$ (standard deviations by $4$):
        with `fan_in` the backward ratio is about $16$, with `fan_out` the forward ratio is
        about $1/16$, as printed above. The choice matters where $\text{fan\_in}$ and
        $\text{fan\_out}$ differ a lot (expanding or contracting layers, convolutions whose
        channel count changes). Across a whole network the other direction's scale is the
        product of the per-layer ratios $\text{fan\_in}/\text{fan\_out}$, which telescopes to
        the ratio of the first and last widths, a constant that does not grow exponentially
        with depth; so keeping either direction stable is enough. PyTorch's default is
        `fan_in`, which keeps the outputs at a sensible scale at the start of training.

        **Rubric (2 points).**

        - 1 point: `fan_in` preserves the forward activations' second moment and `fan_out`
          the backward gradients', with the reason (the number of terms in each sum) and the
          factor $16$ (or $4$ in standard deviation) for the example layer.
        - 1 point: when it matters (fan-in very different from fan-out) and why either is
          enough in a deep network (the product of ratios telescopes to a constant; no
          exponential growth or decay).
        """,
    )
    return nb
