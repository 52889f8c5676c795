"""rectifiers.models: the source material's SmallCNN."""

import pytest
import torch
from doctest_helpers import assert_examples_pass
from torch import nn

import rectifiers.models
from rectifiers.models import SmallCNN


def test_layers_shapes_and_parameter_count():
    torch.manual_seed(0)
    model = SmallCNN()
    slopes = [m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert slopes == [0.01, 0.01, 0.01]
    assert not isinstance(list(model.classifier)[-1], nn.LeakyReLU)  # logits, no activation
    assert model(torch.randn(16, 3, 32, 32)).shape == (16, 10)
    # conv 3*32*9+32, conv 32*64*9+64, linear 4096*128+128, linear 128*10+10
    assert sum(p.numel() for p in model.parameters()) == 896 + 18_496 + 524_416 + 1_290


def test_arguments_are_used():
    model = SmallCNN(num_classes=3, negative_slope=0.2)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    assert {m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)} == {0.2}


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_classes": 0}, ValueError, "num_classes"),
        ({"num_classes": 2.0}, TypeError, "num_classes"),
        ({"negative_slope": float("nan")}, ValueError, "negative_slope"),
        ({"negative_slope": "0.1"}, TypeError, "negative_slope"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SmallCNN(**kwargs)


def test_docstring_examples():
    assert_examples_pass(rectifiers.models)
