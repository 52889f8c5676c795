"""rectifiers.plotting: the figure style, colours, confidence bands, labelled axes and legends."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from doctest_helpers import assert_examples_pass
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from scipy import stats  # noqa: E402

import rectifiers.plotting as plotting_module  # noqa: E402
from rectifiers.plotting import (  # noqa: E402
    COLORS,
    STYLE_FILE,
    check_figure,
    color_for,
    finish,
    label_for,
    mean_ci95,
    plot_band,
    use_style,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def restore_rcparams():
    with matplotlib.rc_context():
        yield


# --- style ----------------------------------------------------------------------------------------


def test_use_style_sets_the_book_style(restore_rcparams):
    matplotlib.rcdefaults()
    use_style()
    params = matplotlib.rcParams
    assert params["figure.dpi"] == 110 and params["savefig.dpi"] == 110
    assert params["axes.grid"] is True
    assert params["axes.spines.top"] is False and params["axes.spines.right"] is False
    assert list(params["figure.figsize"]) == [6.4, 3.8]
    assert params["axes.prop_cycle"].by_key()["color"][:3] == [
        COLORS["relu"],
        COLORS["leaky_relu"],
        COLORS["prelu"],
    ]


def test_style_file_is_package_data_with_the_colour_cycle_of_colors(restore_rcparams):
    matplotlib.rcdefaults()
    sheet = matplotlib.rc_params_from_file(STYLE_FILE, use_default_template=False)
    assert set(sheet) <= set(matplotlib.rcParams)  # every key is a real rcParam
    assert sheet["axes.prop_cycle"].by_key()["color"] == [
        matplotlib.colors.to_hex(c).upper() for c in COLORS.values()
    ]
    with matplotlib.style.context(STYLE_FILE):
        assert matplotlib.rcParams["figure.dpi"] == 110
        fig, ax = plt.subplots()
        assert not ax.spines["top"].get_visible()
        plt.close(fig)
    assert matplotlib.rcParams["figure.dpi"] == matplotlib.rcParamsDefault["figure.dpi"]


# --- colours and labels ---------------------------------------------------------------------------


def test_named_colors_are_distinct_and_consistent_with_slopes():
    assert len(set(COLORS.values())) == len(COLORS)
    assert color_for("relu") == color_for(0.0) == color_for(0)
    assert color_for("linear") == color_for(1.0)
    assert color_for("leaky_relu") == color_for(0.01)
    for name, colour in COLORS.items():
        assert color_for(name) == colour and matplotlib.colors.is_color_like(colour)


def test_sweep_slopes_get_distinct_fixed_colours():
    slopes = [0, 0.001, 0.01, 0.1, 0.2, 0.3, 0.5, 1]
    colours = [color_for(a) for a in slopes]
    assert len(set(colours)) == len(slopes)
    assert colours == [color_for(a) for a in slopes]  # the same every time
    assert color_for(1e-6) == color_for(0.001)  # clipped to the end of the map


@pytest.mark.parametrize(
    "activation, error, match",
    [
        ("elu", ValueError, "activation must be one of"),
        (1.5, ValueError, r"must lie in \[0, 1\]"),
        (-0.1, ValueError, r"must lie in \[0, 1\]"),
        (float("nan"), ValueError, "must be finite"),
        (True, TypeError, "activation must be a name"),
        (None, TypeError, "activation must be a name"),
        (torch.tensor(0.1), TypeError, "activation must be a name"),
    ],
)
def test_color_and_label_reject_bad_activations(activation, error, match):
    for function in (color_for, label_for):
        with pytest.raises(error, match=match):
            function(activation)


def test_labels():
    assert label_for(0) == label_for("relu") == "ReLU"
    assert label_for(0.01) == "Leaky ReLU (α = 0.01)"
    assert label_for("leaky_relu") == "Leaky ReLU"
    assert label_for(1) == label_for("linear") == "linear (α = 1)"
    assert label_for("prelu_channelwise") == "PReLU (channel-wise)"


# --- mean_ci95 ------------------------------------------------------------------------------------


@settings(max_examples=50)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=12))
def test_mean_ci95_matches_scipy(values):
    array = np.array(values)
    mean, half = mean_ci95(torch.tensor(values, dtype=torch.float64))
    expected = stats.t.ppf(0.975, len(values) - 1) * stats.sem(array)  # sem: ddof=1
    assert mean.item() == pytest.approx(array.mean(), abs=1e-9)
    assert half.item() == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_mean_ci95_matches_scipy_interval():
    array = np.array([0.61, 0.64, 0.58, 0.66, 0.62])
    low, high = stats.t.interval(0.95, 4, loc=array.mean(), scale=stats.sem(array))
    mean, half = mean_ci95(torch.tensor(array))
    assert (mean - half).item() == pytest.approx(low, rel=1e-12)
    assert (mean + half).item() == pytest.approx(high, rel=1e-12)


def test_mean_ci95_along_a_dimension():
    values = torch.tensor([[0.5, 0.6, 0.7, 0.8, 0.9], [1.0, 1.0, 1.0, 1.0, 1.0]])
    mean, half = mean_ci95(values, dim=1)
    torch.testing.assert_close(mean, torch.tensor([0.7, 1.0]))
    expected = 2.7764451051977987 * values[0].std() / 5**0.5  # t_{0.975, 4}
    torch.testing.assert_close(half, torch.stack([expected, torch.tensor(0.0)]))
    mean0, half0 = mean_ci95(values.T, dim=-1)
    assert mean0.shape == (5,) and half0.shape == (5,)
    assert mean_ci95(values, dim=0)[0].shape == (5,)


@pytest.mark.parametrize(
    "values, dim, error, match",
    [
        ([0.1, 0.2], 0, TypeError, "values must be a torch.Tensor"),
        (torch.tensor([1, 2]), 0, TypeError, "values must be a floating-point tensor"),
        (torch.tensor([1.0]), 0, ValueError, "at least 2 entries along dim 0"),
        (torch.zeros(3, 1), 1, ValueError, "at least 2 entries along dim 1"),
        (torch.zeros(3, 2), 2, ValueError, r"dim must be in \[-2, 1\]"),
        (torch.zeros(3, 2), 0.0, TypeError, "dim must be an int"),
        (torch.zeros(3, 2), True, TypeError, "dim must be an int"),
    ],
)
def test_mean_ci95_rejects_bad_arguments(values, dim, error, match):
    with pytest.raises(error, match=match):
        mean_ci95(values, dim)


# --- plot_band, finish, check_figure --------------------------------------------------------------


def test_plot_band_draws_a_labelled_line_and_its_band():
    fig, ax = plt.subplots()
    mean = torch.tensor([0.1, 0.5, 0.6])
    half = torch.tensor([0.0, 0.1, 0.05])
    line = plot_band(ax, torch.arange(3), mean, half, label="ReLU", color=color_for("relu"))
    assert line.get_label() == "ReLU"
    assert matplotlib.colors.same_color(line.get_color(), COLORS["relu"])
    np.testing.assert_allclose(line.get_ydata(), [0.1, 0.5, 0.6], rtol=1e-6)
    (band,) = ax.collections
    vertices = band.get_paths()[0].vertices
    assert vertices[:, 1].max() == pytest.approx(0.65) and vertices[:, 1].min() == pytest.approx(
        0.1
    )
    assert matplotlib.colors.same_color(band.get_facecolor()[0][:3], COLORS["relu"])
    # Without a colour: the band follows the line's colour from the cycle.
    second = plot_band(ax, torch.arange(3), mean, half, label="other")
    assert matplotlib.colors.same_color(
        ax.collections[1].get_facecolor()[0][:3], second.get_color()
    )


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"ax": "axes"}, TypeError, "ax must be a matplotlib Axes"),
        ({"x": [0, 1, 2]}, TypeError, "x must be a real torch.Tensor"),
        ({"x": torch.tensor([True, False, True])}, TypeError, "x must be a real"),
        ({"mean": torch.tensor([1, 2, 3])}, TypeError, "mean must be a floating-point"),
        ({"halfwidth": [0.1, 0.1, 0.1]}, TypeError, "halfwidth must be a torch.Tensor"),
        ({"mean": torch.zeros(4)}, ValueError, "equal length"),
        ({"x": torch.zeros(3, 1)}, ValueError, "1-D"),
        ({"halfwidth": torch.tensor([0.1, -0.1, 0.1])}, ValueError, "non-negative"),
        ({"label": ""}, ValueError, "label must be a non-empty label"),
        ({"label": "_hidden"}, ValueError, "does not start with '_'"),
        ({"label": None}, TypeError, "label must be a str"),
        ({"alpha": 2.0}, ValueError, r"alpha must be in \[0, 1\]"),
        ({"alpha": "0.2"}, TypeError, "alpha must be a real number"),
    ],
)
def test_plot_band_rejects_bad_arguments(change, error, match):
    fig, ax = plt.subplots()
    arguments = {
        "ax": ax,
        "x": torch.arange(3),
        "mean": torch.zeros(3),
        "halfwidth": torch.zeros(3),
        "label": "line",
        **change,
    }
    with pytest.raises(error, match=match):
        plot_band(**arguments)


def test_finish_labels_and_adds_the_legend():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="ReLU")
    assert finish(ax, xlabel="epoch", ylabel="test accuracy", title="Sweep") is ax
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("epoch", "test accuracy", "Sweep")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ReLU"]
    check_figure(fig)


def test_finish_without_legend_for_a_figure_legend():
    fig, (left, right) = plt.subplots(1, 2)
    for ax in (left, right):
        ax.plot([0, 1], [1, 0], label="PReLU")
        finish(ax, xlabel="x", ylabel="y", legend=False)
        assert ax.get_legend() is None
    with pytest.raises(ValueError, match="axes 0 .* lacks legend; axes 1"):
        check_figure(fig)
    fig.legend(*left.get_legend_handles_labels())
    check_figure(fig)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"xlabel": ""}, ValueError, "xlabel must be a non-empty label"),
        ({"ylabel": "  "}, ValueError, "ylabel must be a non-empty label"),
        ({"xlabel": None}, TypeError, "xlabel must be a str"),
        ({"title": 3}, TypeError, "title must be a str"),
        ({"legend": "yes"}, TypeError, "legend must be a bool"),
        ({"legend_loc": 1}, TypeError, "legend_loc must be a str"),
        ({"ax": plt}, TypeError, "ax must be a matplotlib Axes"),
    ],
)
def test_finish_rejects_bad_arguments(kwargs, error, match):
    fig, ax = plt.subplots()
    ax.plot([0, 1], label="line")
    arguments = {"ax": ax, "xlabel": "x", "ylabel": "y", **kwargs}
    with pytest.raises(error, match=match):
        finish(**arguments)


def test_finish_refuses_a_legend_with_nothing_labelled():
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    with pytest.raises(ValueError, match="nothing on ax has a label"):
        finish(ax, xlabel="x", ylabel="y")


def test_check_figure_lists_what_is_missing():
    fig, (a, b, c) = plt.subplots(1, 3)
    a.plot([0, 1], label="line")
    a.set_title("first")
    finish(a, xlabel="x", ylabel="y")
    b.plot([0, 1])
    b.set_xlabel("x")
    c.axis("off")  # e.g. an image panel: skipped
    with pytest.raises(ValueError) as info:
        check_figure(fig)
    assert str(info.value) == "axes 1 (untitled) lacks y label, legend"
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure"):
        check_figure(a)


def test_docstring_examples(restore_rcparams):
    assert_examples_pass(plotting_module, matplotlib=matplotlib)
