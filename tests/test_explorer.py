"""rectifiers.explorer: the α explorer's figure is built from the sweep's numbers, exactly."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from doctest_helpers import assert_examples_pass

from rectifiers import explorer as explorer_module
from rectifiers import functional as rf
from rectifiers.explorer import slope_explorer
from rectifiers.plotting import mean_ci95

SLOPES = [0.0, 0.01, 0.1, 1.0]


def _result():
    g = torch.Generator().manual_seed(0)
    accuracy = torch.rand(4, 5, generator=g, dtype=torch.float64)
    dead = torch.rand(4, 5, 2, generator=g, dtype=torch.float64)
    return SimpleNamespace(slopes=SLOPES, accuracy=accuracy, dead=dead)


def test_doctests():
    assert_examples_pass(explorer_module)


def test_each_slider_step_shows_that_slopes_function_and_measurements():
    result = _result()
    fig = slope_explorer(result, x_range=2.0, points=5).figure
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["0", "0.01", "0.1", "1"]
    assert fig.layout.sliders[0].active == 1  # starts at the usual 0.01
    acc_mean, acc_half = mean_ci95(result.accuracy, dim=1)
    dead_mean, _ = mean_ci95(result.dead.mean(dim=2), dim=1)
    xs = torch.linspace(-2.0, 2.0, 5, dtype=torch.float64)
    for p, step in enumerate(steps):
        data, layout, traces = step.args
        assert list(traces) == [0, 1, 3, 5]
        assert data["y"][0] == pytest.approx(rf.leaky_relu(xs, SLOPES[p]).tolist())
        assert data["y"][1] == pytest.approx(rf.leaky_relu_grad(xs, SLOPES[p]).tolist())
        assert data["y"][2] == pytest.approx([float(acc_mean[p])], abs=1e-6)
        assert data["y"][3] == pytest.approx([float(dead_mean[p])], abs=1e-6)
        assert data["x"][2] == [step.label]
        assert f"{float(acc_mean[p]):.1%}" in layout["title.text"]
    # the curves over all slopes, with their 95% intervals
    assert list(fig.data[2].y) == pytest.approx(acc_mean.tolist(), abs=1e-6)
    assert list(fig.data[2].error_y.array) == pytest.approx(acc_half.tolist(), abs=1e-6)
    assert list(fig.data[4].y) == pytest.approx(dead_mean.tolist(), abs=1e-6)
    # steps differ from one another: moving the slider changes the figure
    assert steps[0].args[0]["y"][0] != steps[2].args[0]["y"][0]


def test_display_is_html_without_plotly_js_and_plotly_json():
    explorer = slope_explorer(_result())
    bundle = explorer._repr_mimebundle_()
    html = bundle["text/html"]
    assert 'id="alpha-explorer"' in html and "Plotly.newPlot" in html
    assert "https://" not in html.split("Plotly.newPlot")[0]  # no plotly.js from a CDN
    assert len(html) < 200_000  # the 4.6 MB library is not embedded
    assert bundle["application/vnd.plotly.v1+json"]["layout"]["sliders"][0]["active"] == 1
    assert bundle["text/plain"] == "<α explorer: 4 slopes>"
    assert explorer.html() == slope_explorer(_result()).html()  # reproducible output


def test_starts_at_the_first_slope_without_0_01():
    result = _result()
    result.slopes = [0.0, 0.2, 0.3, 0.5]
    assert slope_explorer(result).figure.layout.sliders[0].active == 0


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"slopes": None}, TypeError, "non-empty list"),
        ({"accuracy": torch.zeros(3, 5)}, ValueError, r"result.accuracy must have shape"),
        ({"dead": torch.zeros(4)}, ValueError, r"result.dead must have shape"),
        ({"accuracy": [[0.5]]}, TypeError, "accuracy"),
        ({"accuracy": torch.zeros(4, 1)}, ValueError, "at least 2"),
    ],
)
def test_bad_results_are_named(change, error, message):
    result = _result()
    for key, value in change.items():
        setattr(result, key, value)
    with pytest.raises(error, match=message):
        slope_explorer(result)


def test_missing_attribute_and_bad_ranges():
    with pytest.raises(TypeError, match="without .dead"):
        slope_explorer(SimpleNamespace(slopes=[0.0], accuracy=torch.zeros(1, 2)))
    with pytest.raises(ValueError, match="x_range"):
        slope_explorer(_result(), x_range=0.0)
