"""Exercise set 1: why ReLU units die (source of solutions/01_motivation.ipynb)."""

from nbbuild import Notebook


def build() -> Notebook:
    nb = Notebook("01_motivation")
    nb.header(
        "Exercises: why ReLU units die",
        r"""
        A ReLU unit whose pre-activation is negative outputs zero and passes back a zero
        gradient. These exercises quantify when that happens to whole layers, measure it on a
        batch, and ask you to explain what Leaky ReLU changes.
        """,
    )

    nb.md(
        r"""
        ## Setup

        Every computation below is seeded. The networks are small, so one CPU thread is as fast
        as two and gives the same numbers on every machine.
        """
    )
    nb.code(
        r"""
        import math

        import torch
        from myst_nb import glue

        from rectifiers.data import load_mnist1d
        from rectifiers.diagnostics import dead_fraction, record_preactivations
        from rectifiers.functional import relu
        from rectifiers.grading import check
        from rectifiers.training import evaluate, mlp, train

        torch.set_num_threads(1)
        _ = torch.manual_seed(0)
        """
    )

    # -- Exercise 1 -------------------------------------------------------------------------
    nb.md(
        r"""
        ## Networks that are born dead

        ReLU is $\operatorname{ReLU}(z) = \max(0, z)$, so its derivative is $0$ for every
        $z < 0$. If all the units of one hidden layer are inactive for an input, that layer
        passes the zero vector on, everything after it sees the same constant, and the
        network's output no longer depends on the input at all. {cite:t}`lu2019dying` call a
        network in this state at initialisation *born dead* and show that it becomes likely
        when a network is deep and narrow. The first exercise derives the probability in the
        simplest setting.
        """
    )
    nb.exercise(
        "ex01-born-dead",
        "The probability of being born dead",
        ["01.born_dead_probability"],
        r"""
        Take a ReLU MLP with $L$ hidden layers of $n$ units each, **zero biases**, and weights
        drawn independently from one distribution that is symmetric about $0$ and has a
        density (a normal distribution, for example). Fix an input $x \neq 0$ and call the
        network *born dead at $x$* if some hidden layer outputs the zero vector for $x$.

        1. Given the previous layer's output $h \neq 0$, show that each unit of the next layer
           is inactive ($z_j = w_j^\top h \le 0$) with probability $\tfrac12$, independently of
           the other units of its layer.
        2. Deduce that
           $$P(\text{born dead at } x) = 1 - \left(1 - 2^{-n}\right)^{L}.$$
        3. Write `born_dead_probability(width, depth)` that returns this probability as a
           Python `float` for $n$ = `width` and $L$ = `depth`.
        """,
    )
    nb.solution(
        "ex01-born-dead",
        r'''
        def born_dead_probability(width, depth):
            """Probability that a zero-bias ReLU MLP with `depth` hidden layers of `width`
            units outputs a constant at a fixed input."""
            # BEGIN SOLUTION
            # 1 - (1 - 2**-n)**L, written with log1p/expm1: for wide layers 1 - 2**-n rounds
            # to exactly 1.0 in floating point and the direct formula would return 0.
            return -math.expm1(depth * math.log1p(-(2.0**-width)))
            # END SOLUTION
        ''',
        text=r"""
        **1.** Given $h$, the pre-activation $z_j = w_j^\top h$ depends only on the row $w_j$.
        Because the weights are symmetric, $w_j$ and $-w_j$ have the same distribution, so
        $z_j$ and $-z_j$ do too; because they have a density and $h \neq 0$, $P(z_j = 0) = 0$.
        Hence $P(z_j \le 0 \mid h) = \tfrac12$. Different units use different, independent
        rows, so given $h$ the $n$ events "unit $j$ is inactive" are independent.

        **2.** A layer outputs zero exactly when all its $n$ units are inactive, which given a
        nonzero $h$ has probability $2^{-n}$, whatever $h$ is. So each layer lets a nonzero
        signal through with probability $1 - 2^{-n}$, independently of how the earlier layers
        did it, and the network survives all $L$ layers with probability
        $(1 - 2^{-n})^L$. Being born dead is the complement.

        **3.** For wide layers $1 - 2^{-n}$ is so close to $1$ that it rounds to exactly $1.0$
        in double precision (from $n = 54$ on), and the direct formula returns $0$. Writing
        $(1 - 2^{-n})^L = \exp\left(L \log(1 - 2^{-n})\right)$ and using `math.log1p` and
        `math.expm1`, which are accurate near $0$, keeps every digit.
        """,
    )
    nb.check("01.born_dead_probability")
    nb.md(
        r"""
        The derivation assumed independence that is easy to get wrong, so compare the formula
        with a simulation: many random networks at once, each layer a batched matrix product,
        counting the networks in which some layer is all zero for one fixed input.
        """
    )
    nb.code(
        r"""
        def simulate_born_dead(width, depth, networks=10_000, in_features=5, seed=0):
            # One fixed input, fresh N(0, 1) weights per network and layer, zero biases.
            gen = torch.Generator().manual_seed(seed)
            h = torch.randn(in_features, generator=gen).expand(networks, in_features)
            dead = torch.zeros(networks, dtype=torch.bool)
            for _ in range(depth):
                w = torch.randn(networks, width, h.shape[1], generator=gen)
                h = relu(torch.einsum("nij,nj->ni", w, h))
                dead |= (h == 0).all(dim=1)
            return dead.float().mean().item()


        print(f"{'width':>5} {'depth':>5} {'formula':>8} {'simulated':>9}")
        for width, depth in [(1, 3), (2, 10), (3, 10), (4, 20), (6, 30)]:
            formula = born_dead_probability(width, depth)
            simulated = simulate_born_dead(width, depth)
            print(f"{width:>5} {depth:>5} {formula:>8.3f} {simulated:>9.3f}")
        """
    )
    nb.md(
        r"""
        With 10 000 networks the simulated fractions have a standard error of at most
        $\sqrt{0.25/10\,000} = 0.005$, and they agree with the formula to about that
        precision. For the widths used in practice the probability is negligible, while deep,
        narrow networks are almost surely dead:
        """
    )
    nb.code(
        r"""
        print(f"width 64, depth 100: {born_dead_probability(64, 100):.1e}")
        print(f"width 4,  depth 50:  {born_dead_probability(4, 50):.3f}")
        """
    )
    nb.md(
        r"""
        So with ordinary widths, death at initialisation is not the issue; units die later,
        when training pushes their pre-activations below zero for every input (large learning
        rates and unfavourable biases are the usual causes). The next exercise measures that
        on data.
        """
    )

    # -- Exercise 2 -------------------------------------------------------------------------
    nb.md(
        r"""
        ## Measuring dead units on a batch

        On a batch of $N$ examples, a unit is *dead* when its pre-activation is $\le 0$ for
        every example: its ReLU output is then $0$ throughout, and so is the gradient through
        it, so nothing that feeds it learns from this batch. $z = 0$ counts as dead because
        PyTorch's ReLU gives it output $0$ and derivative $0$.
        """
    )
    nb.exercise(
        "ex01-dead-mask",
        "Which units are dead?",
        ["01.dead_unit_mask"],
        r"""
        Write `dead_unit_mask(pre_activations)`. The argument is a floating-point tensor of
        shape $(N, \ldots)$ with the batch first; every element of one example is a unit (a
        convolution's $(N, C, L)$ output has $C \cdot L$ units). Return a `torch.bool` tensor of
        shape $(U,)$, where $U$ is the number of units, that is `True` exactly for the units
        whose pre-activation is $\le 0$ for every example:
        $$\text{dead}_u = \bigwedge_{i=1}^{N} \left[z_{i,u} \le 0\right].$$
        """,
    )
    nb.solution(
        "ex01-dead-mask",
        r'''
        def dead_unit_mask(pre_activations):
            """Bool mask over units (all dims after the first, flattened): inactive on every example."""
            # BEGIN SOLUTION
            units = pre_activations.reshape(pre_activations.shape[0], -1)
            return (units <= 0).all(dim=0)
            # END SOLUTION
        ''',
        text=r"""
        Flatten everything after the batch dimension, compare with $0$ (non-strictly: zero
        counts), and require the condition for all examples, i.e. reduce with `all` over the
        batch dimension. The mask's mean is the fraction of dead units that
        `rectifiers.diagnostics.dead_fraction` reports.
        """,
    )
    nb.check("01.dead_unit_mask")
    nb.md(
        r"""
        Now use it. The package's `mlp` builds an MNIST-1D network (here 40 inputs, two
        hidden layers of 64 units, 10 classes), and its `bias_shift` argument adds a constant
        to every hidden bias: a negative shift pushes units below zero, as an unlucky
        initialisation or a bad update can. `record_preactivations` records the input of each ReLU on
        the 4000 training signals, and the mean of your mask is the dead fraction per layer:
        """
    )
    nb.code(
        r"""
        data = load_mnist1d()


        def dead_per_layer(net, x):
            with record_preactivations(net) as pre, torch.no_grad():
                net(x)
            return [dead_unit_mask(z).float().mean().item() for z in pre.values()]


        for shift in [0.0, -1.0, -2.0, -3.0]:
            net = mlp([40, 64, 64, 10], "relu", seed=0, bias_shift=shift)
            layers = dead_per_layer(net, data.x_train)
            print(f"bias shift {shift:+.1f}: dead fraction per hidden layer", [round(f, 3) for f in layers])

        with record_preactivations(net) as pre, torch.no_grad():
            net(data.x_train)
        agree = all(dead_unit_mask(z).sum().item() / z[0].numel() == dead_fraction(z) for z in pre.values())
        print("same as rectifiers.diagnostics.dead_fraction:", agree)
        """
    )
    nb.md(
        r"""
        From a shift of $-1$ on, every unit of the second hidden layer is dead on the whole
        training set: the network then computes the same output for every input. The question
        is whether training can bring such units back. Train that network for three epochs
        (Adam, mini-batches of 250) with ReLU and, starting from the very same weights, with Leaky ReLU
        ($\alpha = 0.01$), recording the dead fraction of each hidden layer on the training set
        before training and after every epoch:
        """
    )
    nb.code(
        r"""
        def train_and_watch(activation, epochs=3):
            net = mlp([40, 64, 64, 10], activation, seed=0, bias_shift=-2.0)
            history = []
            train(net, data, epochs=epochs, lr=1e-2, batch_size=250, seed=0,
                  callback=lambda epoch, model: history.append(dead_per_layer(model, data.x_train)))
            return history, evaluate(net, data.x_test, data.y_test)[1]


        results = {name: train_and_watch(act) for name, act in [("ReLU", "relu"), ("Leaky ReLU", 0.01)]}
        for name, (history, accuracy) in results.items():
            print(f"{name:>10}: test accuracy {accuracy:.3f}")
            for epoch, layers in enumerate(history):
                print(f"{'':>12}epoch {epoch}: dead fraction per layer {[round(f, 3) for f in layers]}")
        """
    )
    nb.code(
        r"""
        glue("relu_dead_acc", round(results["ReLU"][1], 3), display=False)
        glue("leaky_dead_acc", round(results["Leaky ReLU"][1], 3), display=False)
        glue("leaky_layer2_end", round(results["Leaky ReLU"][0][-1][1], 3), display=False)
        """
    )
    nb.md(
        r"""
        The ReLU network never moves: its second layer stays dead, no gradient reaches the
        first layer, and its test accuracy is {glue:text}`relu_dead_acc`, chance level for ten
        classes. The Leaky ReLU network starts from the same dead state, yet after three epochs
        only a fraction {glue:text}`leaky_layer2_end` of its second-layer units is still never
        positive and it reaches a test accuracy of {glue:text}`leaky_dead_acc`. The
        computation that makes the difference is what the written exercise asks about.
        """
    )

    # -- Exercise 3 (written) ----------------------------------------------------------------
    nb.md(
        r"""
        ## Why Leaky ReLU helps

        Leaky ReLU keeps a small slope $\alpha > 0$ on the negative side
        {cite:p}`maas2013rectifier`:
        $$\operatorname{LeakyReLU}_\alpha(z) = \begin{cases} z & z > 0 \\ \alpha z & z \le 0. \end{cases}$$
        """
    )
    nb.exercise(
        "ex01-why-leaky",
        "Explain the difference",
        ["01.why_leaky"],
        r"""
        In four to six sentences, explain why Leaky ReLU reduces the dying-ReLU problem. Write
        the gradient of the loss with respect to a unit's incoming weights for a unit with
        pre-activation $z = w^\top h + b$, say what it is for ReLU and for Leaky ReLU when
        $z \le 0$ on every example, and connect it to what the experiment above showed. End with
        one thing Leaky ReLU does **not** fix.
        """,
    )
    nb.written(
        "01.why_leaky",
        "ex01-why-leaky",
        r"""
        **Model answer.** For one example, with $y = \phi(z)$ and $\delta = \partial L/\partial y$,
        the chain rule gives
        $\partial L/\partial w = \delta\,\phi'(z)\,h$ and $\partial L/\partial b = \delta\,\phi'(z)$.
        For ReLU $\phi'(z) = 0$ whenever $z \le 0$, so a unit that is inactive on every example
        receives exactly zero gradient on its weights and bias from every batch: nothing can
        move it back, it is dead for good, and its zero output also removes it from the
        forward pass (in the experiment a dead layer froze the whole network at chance
        accuracy). For Leaky ReLU $\phi'(z) = \alpha > 0$ for $z \le 0$, so the same unit gets
        the gradient $\alpha\,\delta\,h$: small, but not zero, so its weights keep changing and
        updates can push $z$ back above zero (the Leaky network above recovered from the same
        dead start); its output $\alpha z$ also still carries information forward. It does not
        fix the causes: a too-large learning rate, poor initialisation or badly scaled data
        still hurt training, the recovery signal is scaled down by $\alpha$, and in many
        settings plain ReLU trains just as well {cite:p}`pedamonti2018comparison`.

        **Rubric (3 points).**

        - 1 point: the ReLU gradient with respect to the incoming weights (or bias) is exactly
          zero when $z \le 0$ for all examples, so the unit cannot recover (saying only "the
          output is zero" earns nothing).
        - 1 point: with Leaky ReLU the derivative on the negative side is $\alpha$, so the
          gradient $\alpha\,\delta\,h$ is nonzero and the unit can be pushed back into the
          positive region.
        - 1 point: one correct limitation (it reduces rather than removes the risk; the
          recovery signal is small; learning rate, initialisation and data scaling still
          matter; gains over ReLU are often small).
        """,
    )
    return nb
