"""rectifiers.init against torch.nn.init."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from doctest_helpers import assert_examples_pass
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from rectifiers.init import kaiming_init_, kaiming_std, leaky_relu_gain

pytestmark = pytest.mark.usefixtures("single_thread")

slopes = st.one_of(
    st.floats(-1e150, 1e150, allow_nan=False),
    st.integers(-1000, 1000),
    st.sampled_from([0.0, -0.0, 0.01, 0.2, 1.0, -1.0, 5e-324]),
)


@given(slope=slopes)
def test_gain_equals_torch(slope):
    assert leaky_relu_gain(slope) == nn.init.calculate_gain("leaky_relu", slope)


def test_gain_defaults_and_special_slopes():
    assert leaky_relu_gain() == nn.init.calculate_gain("leaky_relu") == math.sqrt(2.0 / 1.0001)
    assert leaky_relu_gain(0) == nn.init.calculate_gain("relu") == math.sqrt(2.0)
    assert leaky_relu_gain(1.0) == leaky_relu_gain(-1.0) == 1.0
    # Beyond 1e154 torch's formula overflows; ours falls back on sqrt(2)/|a|.
    with pytest.raises(OverflowError):
        nn.init.calculate_gain("leaky_relu", 1e200)
    assert leaky_relu_gain(1e200) == pytest.approx(math.sqrt(2.0) * 1e-200, rel=1e-15)
    assert leaky_relu_gain(-1e300) > 0.0


@given(fan_in=st.integers(1, 10**9), slope=slopes)
def test_std_equals_torch_formula(fan_in, slope):
    expected = nn.init.calculate_gain("leaky_relu", slope) / math.sqrt(fan_in)
    assert kaiming_std(fan_in, slope) == expected
    assert kaiming_std(fan_in) == nn.init.calculate_gain("relu") / math.sqrt(fan_in)


def test_std_is_the_he_variance():
    # Var(W) = 2 / ((1 + a^2) fan_in)
    assert kaiming_std(50, 0.5) ** 2 == pytest.approx(2.0 / (1.25 * 50), rel=1e-15)
    assert kaiming_std(2) == 1.0


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.3, -0.5, 3.0])
def test_empirical_std_of_a_large_layer(slope):
    torch.manual_seed(0)
    layer = kaiming_init_(nn.Linear(400, 1000), slope)
    w = layer.weight.detach().double()
    # 400,000 draws: the standard error of the sample std is std/sqrt(2n), about 0.11%, so 1%
    # is 9 standard errors (no flakiness) yet fails for any wrong fan or a missing gain.
    assert w.std().item() == pytest.approx(kaiming_std(400, slope), rel=0.01)
    assert abs(w.mean().item()) < 0.01 * kaiming_std(400, slope)
    assert torch.count_nonzero(layer.bias) == 0


def _model():
    torch.manual_seed(123)
    return nn.Sequential(
        nn.Conv1d(3, 8, 5, bias=False),
        nn.BatchNorm1d(8),
        nn.PReLU(8),
        nn.Sequential(nn.Conv2d(2, 4, (3, 2), groups=2), nn.LeakyReLU(0.2)),
        nn.ModuleDict({"deep": nn.Sequential(nn.Conv3d(4, 2, 3), nn.Linear(7, 5))}),
        nn.LayerNorm(5),
        nn.Embedding(10, 5),
        nn.ConvTranspose2d(3, 4, 2),
        nn.Linear(5, 3),
    )


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.25, -2.0])
def test_identical_to_torch_kaiming_normal_under_the_same_seed(slope):
    ours, ref = _model(), _model()
    torch.manual_seed(7)
    kaiming_init_(ours, slope)
    torch.manual_seed(7)
    for m in ref.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, a=slope, mode="fan_in", nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for (name, a), (_, b) in zip(ours.state_dict().items(), ref.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # and the generator has been advanced by exactly the same draws
    torch.manual_seed(7)
    kaiming_init_(_model(), slope)
    after_ours = torch.rand(4)
    torch.manual_seed(7)
    for m in _model().modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, a=slope, mode="fan_in", nonlinearity="leaky_relu")
    assert torch.equal(after_ours, torch.rand(4))


def test_everything_else_untouched():
    model = _model()
    with torch.no_grad():  # make the defaults distinguishable from a re-initialisation
        for p in model.parameters():
            p.uniform_(-3, 3)
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(1, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kaiming_init_(model, 0.25)
    after = model.state_dict()
    untouched = [k for k in before if k.split(".")[0] in {"1", "2", "5", "6", "7"}]
    expected = {"1.weight", "1.running_mean", "2.weight", "5.weight", "6.weight", "7.weight"}
    assert expected <= set(untouched)
    for k in untouched:
        assert torch.equal(before[k], after[k]), k
    changed = ["0.weight", "3.0.weight", "4.deep.0.weight", "4.deep.1.weight", "8.weight"]
    for k in changed:
        assert not torch.equal(before[k], after[k]), k
    for k in ["3.0.bias", "4.deep.0.bias", "4.deep.1.bias", "8.bias"]:
        assert torch.count_nonzero(after[k]) == 0, k


def test_fan_in_of_grouped_and_3d_convolutions():
    torch.manual_seed(0)
    conv = kaiming_init_(nn.Conv2d(8, 64, (3, 5), groups=4), 0.0)
    # fan_in = in_channels / groups * kernel = 2 * 15 = 30
    assert conv.weight.std().item() == pytest.approx(kaiming_std(30), rel=0.05)
    conv3 = kaiming_init_(nn.Conv3d(4, 32, 3), 0.0)
    assert conv3.weight.std().item() == pytest.approx(kaiming_std(108), rel=0.05)


def test_returns_module_and_works_under_no_grad():
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        assert kaiming_init_(layer, 0.01) is layer
    assert kaiming_init_(layer, 0.01) is layer
    assert layer.weight.requires_grad and layer.weight.grad_fn is None
    assert layer.weight.is_leaf


def test_shared_weight_drawn_once():
    a = nn.Linear(6, 6)
    b = nn.Linear(6, 6)
    b.weight = a.weight
    model = nn.Sequential(a, nn.ReLU(), b, nn.ReLU(), a)
    torch.manual_seed(3)
    kaiming_init_(model, 0.0)
    torch.manual_seed(3)
    expected = torch.empty(6, 6).normal_(0.0, kaiming_std(6))
    assert torch.equal(a.weight.detach(), expected)
    assert b.weight is a.weight


def test_empty_layers_are_skipped_quietly():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own constructor warns about these
        model = nn.Sequential(nn.Linear(0, 3), nn.Linear(3, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kaiming_init_(model, 0.0)
    assert torch.count_nonzero(model[0].bias) == 0


def test_lazy_layer_is_an_error_until_materialised():
    model = nn.Sequential(nn.LazyLinear(4))
    with pytest.raises(ValueError, match="module"):
        kaiming_init_(model, 0.0)
    model(torch.randn(2, 5))
    torch.manual_seed(0)
    kaiming_init_(model, 0.0)
    torch.manual_seed(0)
    assert torch.equal(model[0].weight.detach(), torch.empty(4, 5).normal_(0.0, kaiming_std(5)))


def _slope_calls(slope):
    return (
        lambda: leaky_relu_gain(slope),
        lambda: kaiming_std(3, slope),
        lambda: kaiming_init_(nn.Linear(2, 2), slope),
    )


@pytest.mark.parametrize("bad", [True, "0.1", None, torch.tensor(0.1)])
def test_slope_type_errors(bad):
    for call in _slope_calls(bad):
        with pytest.raises(TypeError, match="negative_slope"):
            call()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_slope_value_errors(bad):
    for call in _slope_calls(bad):
        with pytest.raises(ValueError, match="negative_slope"):
            call()


def test_fan_in_errors():
    for bad in (2.0, True, "3", None):
        with pytest.raises(TypeError, match="fan_in"):
            kaiming_std(bad)
    for bad in (0, -5):
        with pytest.raises(ValueError, match="fan_in"):
            kaiming_std(bad)


@pytest.mark.parametrize("bad", [torch.randn(3, 3), None, [nn.Linear(2, 2)]])
def test_module_type_error(bad):
    with pytest.raises(TypeError, match="module"):
        kaiming_init_(bad, 0.0)


def test_docstring_examples():
    import rectifiers.init as module

    assert_examples_pass(module)
