r"""One figure style for the whole book, and the few helpers every results figure needs.

Every figure has labelled axes and a legend: :func:`plot_band` insists on a label and
:func:`finish` on axis labels, so the short path is also the complete one, and
:func:`check_figure` says what a figure lacks. Each activation keeps its colour across all
chapters (:func:`color_for`). Results over seeds are shown as a mean with a 95% confidence band
from Student's *t* distribution (:func:`mean_ci95`): with 5 seeds a normal-theory band
(:math:`\pm 1.96` standard errors) would be about 30% too narrow.
"""

from __future__ import annotations

import importlib.resources
import math
import numbers

import matplotlib
import matplotlib.colors
import matplotlib.style
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import stats

from rectifiers._validation import check_choice, check_float_tensor, check_real

__all__ = [
    "COLORS",
    "STYLE_FILE",
    "check_figure",
    "color_for",
    "finish",
    "label_for",
    "mean_ci95",
    "plot_band",
    "use_style",
]

#: Colour of each named activation (Okabe-Ito colour-blind-safe palette). Leaky ReLU's is
#: that of its usual slope 0.01 under :func:`color_for`.
COLORS = {
    "relu": "#D55E00",
    "leaky_relu": "#0072B2",
    "prelu": "#009E73",
    "prelu_channelwise": "#CC79A7",
    "linear": "#7F7F7F",
}

# Slopes strictly between 0 and 1 are coloured along this map by log10(slope) over
# [-3, 0], so that 0.001, 0.01 and 0.1 are as far apart as 0.1 and 1.
_SLOPE_CMAP = matplotlib.colors.LinearSegmentedColormap.from_list(
    "slopes",
    [
        (0.0, "#56B4E9"),
        (1 / 3, COLORS["leaky_relu"]),
        (2 / 3, "#332288"),
        (0.83, "#AA4499"),
        (1.0, "#E69F00"),
    ],
)

#: Path of the book's matplotlib style sheet, ``book.mplstyle``, shipped with the package: fits
#: the page width at 110 dpi, no top or right spines, a light grid, the activation colours
#: first in the colour cycle. ``matplotlib.style.context(STYLE_FILE)`` applies it to a block.
#:
#: :meta hide-value:
STYLE_FILE = str(importlib.resources.files("rectifiers") / "book.mplstyle")


def use_style() -> None:
    """Apply the book's style sheet (:data:`STYLE_FILE`) for the rest of the session.

    Call it once at the top of a notebook.

    Example:
        >>> use_style()
        >>> matplotlib.rcParams["figure.dpi"]
        110.0
    """
    matplotlib.style.use(STYLE_FILE)


def _activation_kind(activation: object) -> str | float:
    if isinstance(activation, str):
        return check_choice("activation", activation, tuple(COLORS))
    if isinstance(activation, numbers.Real) and not isinstance(activation, bool):
        slope = check_real("activation", activation)
        if not 0 <= slope <= 1:
            raise ValueError(f"activation as a negative slope must lie in [0, 1], got {slope!r}")
        # The endpoints are named activations: slope 0 is ReLU, slope 1 the linear model.
        return {0: "relu", 1: "linear"}.get(slope, slope)
    raise TypeError(
        f"activation must be a name ({', '.join(COLORS)}) or a negative slope "
        f"(a real number), got {type(activation).__name__} {activation!r}"
    )


def color_for(activation: str | float) -> str:
    r"""The colour of an activation, the same in every figure of the book.

    A slope of 0 is ReLU's colour and 1 the linear model's; a slope :math:`0 < \alpha < 1` is
    placed on a colour map by :math:`\log_{10} \alpha` (clipped to :math:`[-3, 0]`), with 0.01
    at the ``"leaky_relu"`` colour.

    Args:
        activation: ``"relu"``, ``"leaky_relu"``, ``"prelu"``, ``"prelu_channelwise"``,
            ``"linear"``, or a negative slope in :math:`[0, 1]`.

    Returns:
        A colour as a ``"#rrggbb"`` string.

    Raises:
        TypeError: if ``activation`` is neither a string nor a real number.
        ValueError: for an unknown name or a slope outside :math:`[0, 1]`.

    Example:
        >>> color_for("prelu")
        '#009E73'
        >>> color_for(0.0) == color_for("relu"), color_for(0.01) == color_for("leaky_relu")
        (True, True)
    """
    kind = _activation_kind(activation)
    if isinstance(kind, str):
        return COLORS[kind]
    if math.isclose(kind, 0.01):
        return COLORS["leaky_relu"]
    position = min(max((math.log10(kind) + 3) / 3, 0.0), 1.0)
    return matplotlib.colors.to_hex(_SLOPE_CMAP(position)).upper()


def label_for(activation: str | float) -> str:
    """The legend label of an activation, the same in every figure of the book.

    Args:
        activation: as for :func:`color_for`.

    Returns:
        E.g. ``"ReLU"``, ``"Leaky ReLU (α = 0.1)"``, ``"PReLU"``.

    Raises:
        TypeError: if ``activation`` is neither a string nor a real number.
        ValueError: for an unknown name or a slope outside :math:`[0, 1]`.

    Example:
        >>> [label_for(a) for a in (0.0, 0.1, 1.0, "prelu")]
        ['ReLU', 'Leaky ReLU (α = 0.1)', 'linear (α = 1)', 'PReLU']
    """
    kind = _activation_kind(activation)
    names = {
        "relu": "ReLU",
        "leaky_relu": "Leaky ReLU",
        "prelu": "PReLU",
        "prelu_channelwise": "PReLU (channel-wise)",
        "linear": "linear (α = 1)",
    }
    if isinstance(kind, str):
        return names[kind]
    return f"Leaky ReLU (α = {kind:g})"


def mean_ci95(values, dim: int = 0):
    r"""Mean and half-width of the 95% Student-*t* confidence interval along ``dim``.

    For :math:`n` values (e.g. one per seed) with mean :math:`\bar{x}` and sample standard
    deviation :math:`s` (with Bessel's correction),

    .. math::
        \bar{x} \pm t_{0.975,\, n-1} \frac{s}{\sqrt{n}},

    where :math:`t_{0.975,\, n-1}` is the 97.5% quantile of Student's *t* distribution with
    :math:`n - 1` degrees of freedom (2.776 for :math:`n = 5`).

    Args:
        values: a floating-point tensor with at least 2 entries along ``dim``.
        dim: the dimension to reduce (e.g. the seeds' dimension); negative counts from the end.

    Returns:
        ``(mean, halfwidth)``, tensors of ``values``' shape without ``dim``.

    Raises:
        TypeError: if ``values`` is not a floating-point tensor or ``dim`` not an int.
        ValueError: if ``dim`` is out of range or has fewer than 2 entries.

    Example:
        >>> mean, half = mean_ci95(torch.tensor([0.60, 0.62, 0.61, 0.63, 0.59]))
        >>> round(float(mean), 3), round(float(half), 4)
        (0.61, 0.0196)
    """
    check_float_tensor("values", values)
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"dim must be an int, got {type(dim).__name__} {dim!r}")
    if not -values.dim() <= dim < values.dim():
        raise ValueError(
            f"dim must be in [{-values.dim()}, {values.dim() - 1}] for values of "
            f"shape {tuple(values.shape)}, got {dim}"
        )
    n = values.shape[dim]
    if n < 2:
        raise ValueError(
            f"values must have at least 2 entries along dim {dim} for a confidence "
            f"interval, got {n}"
        )
    quantile = float(stats.t.ppf(0.975, n - 1))
    mean = values.mean(dim=dim)
    halfwidth = quantile * values.std(dim=dim, correction=1) / math.sqrt(n)
    return mean, halfwidth


def _check_axes(name: str, ax: object) -> Axes:
    if not isinstance(ax, Axes):
        raise TypeError(f"{name} must be a matplotlib Axes, got {type(ax).__name__}")
    return ax


def _check_label(name: str, label: object) -> str:
    if not isinstance(label, str):
        raise TypeError(f"{name} must be a str, got {type(label).__name__} {label!r}")
    if not label.strip() or label.startswith("_"):
        raise ValueError(
            f"{name} must be a non-empty label that does not start with '_' "
            f"(matplotlib hides those from legends), got {label!r}"
        )
    return label


def plot_band(
    ax,
    x,
    mean,
    halfwidth,
    *,
    label: str,
    color: str | None = None,
    alpha: float = 0.2,
):
    r"""Plot ``mean`` as a line and ``mean ± halfwidth`` as a shaded band of the same colour.

    Args:
        ax: the matplotlib ``Axes`` to draw on.
        x: positions, a real tensor of shape :math:`(T,)`.
        mean: a floating-point tensor of shape :math:`(T,)`, e.g. from :func:`mean_ci95`.
        halfwidth: a non-negative floating-point tensor of shape :math:`(T,)`.
        label: the legend entry (required: every line of the book is in a legend).
        color: a matplotlib colour, e.g. from :func:`color_for`; default: the next colour of
            the cycle.
        alpha: opacity of the band, in :math:`[0, 1]`.

    Returns:
        The line (a ``matplotlib.lines.Line2D``).

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if shapes differ, ``halfwidth`` is negative, ``label`` is empty or
            ``alpha`` is outside :math:`[0, 1]`.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> fig, ax = plt.subplots()
        >>> acc = torch.tensor([[0.1, 0.5, 0.6], [0.1, 0.4, 0.6], [0.1, 0.5, 0.7]])
        >>> line = plot_band(ax, torch.arange(3), *mean_ci95(acc), label="ReLU",
        ...                  color=color_for("relu"))
        >>> line.get_label()
        'ReLU'
    """
    _check_axes("ax", ax)
    if not isinstance(x, torch.Tensor) or x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"x must be a real torch.Tensor, got {type(x).__name__}")
    for name, value in (("mean", mean), ("halfwidth", halfwidth)):
        check_float_tensor(name, value)
    if not (x.dim() == mean.dim() == halfwidth.dim() == 1) or not (
        x.shape == mean.shape == halfwidth.shape
    ):
        raise ValueError(
            f"x, mean and halfwidth must be 1-D of equal length, got shapes "
            f"{tuple(x.shape)}, {tuple(mean.shape)}, {tuple(halfwidth.shape)}"
        )
    if (halfwidth < 0).any():
        raise ValueError("halfwidth must be non-negative")
    _check_label("label", label)
    if check_real("alpha", alpha) < 0 or alpha > 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    xs, m, h = (t.detach().cpu().double().numpy() for t in (x, mean, halfwidth))
    (line,) = ax.plot(xs, m, label=label, color=color)
    ax.fill_between(xs, m - h, m + h, color=line.get_color(), alpha=alpha, linewidth=0)
    return line


def finish(
    ax,
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    legend: bool = True,
    legend_loc: str = "best",
):
    """Label the axes and add the legend: the last call for every axes of the book.

    Args:
        ax: the matplotlib ``Axes``.
        xlabel: x-axis label, with units where there are any (e.g. ``"epoch"``).
        ylabel: y-axis label.
        title: optional title.
        legend: add a legend of the labelled artists (set ``False`` only for an axes whose
            legend is drawn elsewhere, e.g. by ``fig.legend``).
        legend_loc: the legend's ``loc``.

    Returns:
        ``ax``.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if a label is empty, or ``legend`` is true and nothing on ``ax`` has a
            label.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> fig, ax = plt.subplots()
        >>> _ = ax.plot([0, 1], [0, 1], label="identity")
        >>> finish(ax, xlabel="x", ylabel="y").get_legend() is not None
        True
    """
    _check_axes("ax", ax)
    ax.set_xlabel(_check_label("xlabel", xlabel))
    ax.set_ylabel(_check_label("ylabel", ylabel))
    if title is not None:
        ax.set_title(_check_label("title", title))
    if not isinstance(legend, bool):
        raise TypeError(f"legend must be a bool, got {type(legend).__name__}")
    if not isinstance(legend_loc, str):
        raise TypeError(f"legend_loc must be a str, got {type(legend_loc).__name__}")
    if legend:
        handles, _ = ax.get_legend_handles_labels()
        if not handles:
            raise ValueError("legend=True but nothing on ax has a label: pass label= when plotting")
        ax.legend(loc=legend_loc)
    return ax


def check_figure(fig) -> None:
    """Check that every axes of ``fig`` has both axis labels and a legend.

    A figure-level legend (``fig.legend``) counts for all its axes. Axes that are switched
    off (``ax.axis("off")``) are skipped.

    Args:
        fig: the matplotlib ``Figure``.

    Raises:
        TypeError: if ``fig`` is not a matplotlib ``Figure``.
        ValueError: listing every axes that lacks a label or a legend.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> fig, ax = plt.subplots()
        >>> _ = ax.plot([0, 1], [1, 0], label="line")
        >>> _ = finish(ax, xlabel="x", ylabel="y")
        >>> check_figure(fig)  # passes silently
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    problems = []
    for index, ax in enumerate(fig.axes):
        if not ax.axison:
            continue
        missing = [
            what
            for what, ok in (
                ("x label", ax.get_xlabel()),
                ("y label", ax.get_ylabel()),
                ("legend", ax.get_legend() or fig.legends),
            )
            if not ok
        ]
        if missing:
            problems.append(
                f"axes {index} ({ax.get_title() or 'untitled'}) lacks " + ", ".join(missing)
            )
    if problems:
        raise ValueError("; ".join(problems))
