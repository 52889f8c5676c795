r"""The α explorer: an interactive figure of a slope sweep, for the book and JupyterLab.

A slider over the negative slopes :math:`\alpha` that a sweep measured shows, for the selected
slope, :math:`\operatorname{LeakyReLU}_\alpha(x)` and its derivative, and where that slope sits
in the sweep's test accuracy and dead fraction (means over seeds with 95% confidence
intervals). Everything the figure shows is computed here from the result object; the figure is
a `Plotly <https://plotly.com/python/>`_ figure, so it runs in the reader's browser with no
kernel. The book serves ``plotly.min.js`` itself (``_ext/plotly_offline.py``); nothing is
fetched from elsewhere.

Example::

    >>> import torch
    >>> from types import SimpleNamespace
    >>> result = SimpleNamespace(slopes=[0.0, 0.1], accuracy=torch.tensor([[.5, .6], [.6, .7]]),
    ...                          dead=torch.tensor([[[.2], [.4]], [[0.], [0.]]]))
    >>> explorer = slope_explorer(result)
    >>> len(explorer.figure.layout.sliders[0].steps)
    2
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch

from rectifiers import functional as rf
from rectifiers._validation import check_float_tensor
from rectifiers.plotting import COLORS, mean_ci95

__all__ = ["SlopeExplorer", "slope_explorer"]

#: The ``id`` of the figure's ``<div>`` in the page: fixed, so outputs are reproducible.
DEFAULT_DIV_ID = "alpha-explorer"


class SlopeExplorer:
    """A Plotly figure (:attr:`figure`) that displays itself without embedding plotly.js.

    In a notebook it offers two representations: Plotly's own JSON (JupyterLab and VS Code
    render it with their Plotly extension) and an HTML ``<div>`` plus the script that draws it,
    which expects ``Plotly`` to be loaded by the page (the book loads its own copy).
    """

    def __init__(self, figure: Any, div_id: str = DEFAULT_DIV_ID):
        self.figure = figure
        self.div_id = div_id

    def html(self) -> str:
        """The figure as an HTML fragment (no plotly.js; the page must provide ``Plotly``)."""
        return self.figure.to_html(
            include_plotlyjs=False,
            full_html=False,
            div_id=self.div_id,
            config={"responsive": True, "displaylogo": False},
        )

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {
            "application/vnd.plotly.v1+json": json.loads(self.figure.to_json()),
            "text/html": self.html(),
            "text/plain": f"<α explorer: {len(self.figure.layout.sliders[0].steps)} slopes>",
        }


def _summary(name: str, values: torch.Tensor, slopes: int) -> tuple[torch.Tensor, torch.Tensor]:
    check_float_tensor(name, values)
    if values.dim() not in (2, 3) or values.shape[0] != slopes:
        raise ValueError(
            f"result.{name} must have shape (slopes, seeds) or (slopes, seeds, layers) with "
            f"{slopes} slopes, got {tuple(values.shape)}"
        )
    if values.dim() == 3:
        values = values.mean(dim=2)  # over layers: the share of all hidden units
    mean, half = mean_ci95(values.double(), dim=1)
    return mean, half


def slope_explorer(result: Any, *, x_range: float = 3.0, points: int = 241) -> SlopeExplorer:
    r"""An interactive figure of a slope sweep: Leaky ReLU, its derivative, accuracy and dead units.

    For each slope :math:`\alpha_p` the sweep measured, the slider shows
    :math:`f(x) = \max(0, x) + \alpha_p \min(0, x)` and :math:`f'(x)` (:math:`\alpha_p` for
    :math:`x \le 0`, PyTorch's convention at 0) on :math:`[-r, r]`, and marks
    :math:`\alpha_p` on the sweep's curves of test accuracy and dead fraction (mean over seeds
    :math:`\pm` the half-width of the 95% Student-*t* interval).

    Args:
        result: the sweep, any object with ``slopes`` (:math:`P` numbers), ``accuracy`` (a
            float tensor :math:`(P, S)`, a share in [0, 1]) and ``dead`` (a float tensor
            :math:`(P, S)` or :math:`(P, S, L)`, averaged over its layers), e.g.
            :class:`rectifiers.experiments.slope_sweep.SlopeSweep`; :math:`S \ge 2` seeds.
        x_range: :math:`r`, the half-width of the input axis of the function panels.
        points: number of inputs at which the function is drawn.

    Returns:
        A :class:`SlopeExplorer`; its ``figure`` is a ``plotly.graph_objects.Figure`` with four
        panels and one slider step per slope, starting at 0.01 when the sweep has it.

    Raises:
        TypeError: ``result`` lacks one of the attributes, or they are not of the types above.
        ValueError: the shapes do not match the number of slopes, or there are under 2 seeds.
    """
    from plotly.subplots import make_subplots

    for attribute in ("slopes", "accuracy", "dead"):
        if not hasattr(result, attribute):
            raise TypeError(
                f"result must have .slopes, .accuracy and .dead (a slope sweep), "
                f"got {type(result).__name__} without .{attribute}"
            )
    slopes = result.slopes
    if not isinstance(slopes, Sequence) or not slopes:
        raise TypeError(f"result.slopes must be a non-empty list of numbers, got {slopes!r}")
    slopes = [float(s) for s in slopes]
    acc_mean, acc_half = _summary("accuracy", result.accuracy, len(slopes))
    dead_mean, dead_half = _summary("dead", result.dead, len(slopes))
    if not x_range > 0 or points < 3:
        raise ValueError(f"x_range must be > 0 and points >= 3, got {x_range!r} and {points!r}")

    xs = torch.linspace(-x_range, x_range, points, dtype=torch.float64)
    labels = [f"{s:g}" for s in slopes]
    start = slopes.index(0.01) if 0.01 in slopes else 0

    def curves(p: int) -> tuple[list[float], list[float]]:
        return (
            [round(v, 6) for v in rf.leaky_relu(xs, slopes[p]).tolist()],
            [round(v, 6) for v in rf.leaky_relu_grad(xs, slopes[p]).tolist()],
        )

    def title(p: int) -> str:
        # Two short lines rather than one long one: on a phone (390 px) one line was cut off.
        return (
            f"α = {labels[p]}: test accuracy {float(acc_mean[p]):.1%} ± {float(acc_half[p]):.1%},"
            f"<br>dead units {float(dead_mean[p]):.1%}"
        )

    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=("LeakyReLU<sub>α</sub>(x)", "derivative", "test accuracy", "dead units"),
        vertical_spacing=0.2,
        horizontal_spacing=0.14,
    )
    f, df = curves(start)
    blue, red = COLORS["leaky_relu"], COLORS["relu"]
    x_list = [round(v, 6) for v in xs.tolist()]
    fig.add_scatter(x=x_list, y=f, name="f(x)", line={"color": blue}, row=1, col=1)
    fig.add_scatter(x=x_list, y=df, name="f′(x)", line={"color": blue, "shape": "hv"}, row=1, col=2)
    for row_col, mean, half, color, name in (
        ((2, 1), acc_mean, acc_half, "black", "accuracy"),
        ((2, 2), dead_mean, dead_half, red, "dead fraction"),
    ):
        fig.add_scatter(
            x=labels,
            y=[round(v, 6) for v in mean.tolist()],
            error_y={"type": "data", "array": [round(v, 6) for v in half.tolist()]},
            mode="lines+markers",
            name=f"{name}, mean ± 95% CI",
            line={"color": color},
            row=row_col[0],
            col=row_col[1],
        )
        fig.add_scatter(
            x=[labels[start]],
            y=[round(float(mean[start]), 6)],
            mode="markers",
            marker={"size": 14, "color": blue, "symbol": "circle-open", "line": {"width": 3}},
            name=f"{name} at the selected α",
            row=row_col[0],
            col=row_col[1],
        )
    steps = []
    for p in range(len(slopes)):
        f, df = curves(p)
        steps.append(
            {
                "label": labels[p],
                "method": "update",
                "args": [
                    {
                        "y": [
                            f,
                            df,
                            [round(float(acc_mean[p]), 6)],
                            [round(float(dead_mean[p]), 6)],
                        ],
                        "x": [x_list, x_list, [labels[p]], [labels[p]]],
                    },
                    {"title.text": title(p)},
                    [0, 1, 3, 5],
                ],
            }
        )
    fig.update_layout(
        title={"text": title(start), "font": {"size": 14}},
        sliders=[
            {
                "active": start,
                "steps": steps,
                "currentvalue": {"prefix": "negative slope α = "},
                # Below the bottom panels' tick labels, which turn vertical on a narrow screen.
                "pad": {"t": 75},
                "font": {"size": 11},
            }
        ],
        showlegend=False,
        height=620,
        margin={"l": 50, "r": 20, "t": 90, "b": 40},
        template="simple_white",
    )
    fig.update_xaxes(title_text="x", row=1, col=1)
    fig.update_xaxes(title_text="x", row=1, col=2)
    fig.update_xaxes(title_text="α", type="category", row=2, col=1)
    fig.update_xaxes(title_text="α", type="category", row=2, col=2)
    fig.update_yaxes(range=[-0.05, 1.05], row=1, col=2)
    fig.update_yaxes(tickformat=".0%", row=2, col=1)
    fig.update_yaxes(tickformat=".0%", row=2, col=2)
    return SlopeExplorer(fig)
