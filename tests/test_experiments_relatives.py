"""rectifiers.experiments.relatives, normalisation and criteria against direct batched runs."""

from __future__ import annotations

import doctest

import pytest
import torch

from rectifiers.batched import batched_mlp, grid, train_batched
from rectifiers.data import load_mnist1d
from rectifiers.experiments import criteria, normalisation, relatives
from rectifiers.experiments.criteria import plateau_change
from rectifiers.experiments.normalisation import normalisation_study
from rectifiers.experiments.relatives import compare_activations, time_per_step

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def small_data():
    return load_mnist1d().subset(400, 200)


def test_compare_activations_equals_one_batched_run(small_data):
    acts = [0.0, "prelu", "rrelu", "gelu"]
    result = compare_activations(small_data, acts, [0, 1], sizes=[40, 12, 12, 10], epochs=2)
    kinds, seeds = grid(acts, [0, 1])
    net = batched_mlp([40, 12, 12, 10], kinds, seeds)
    history = train_batched(net, small_data, epochs=2, lr=1e-2)
    torch.testing.assert_close(result.test_accuracy, history.test_accuracy[-1].view(4, 2))
    torch.testing.assert_close(result.zero_fraction, history.zero_fraction[-1].view(4, 2, 2))
    torch.testing.assert_close(result.dead_fraction, history.dead_fraction[-1].view(4, 2, 2))
    _, train_acc = net.evaluate(small_data.x_train, small_data.y_train)
    torch.testing.assert_close(result.train_accuracy, train_acc.view(4, 2))
    assert result.activations == acts and result.seeds == [0, 1]
    # Only RReLU differs between training and evaluation mode
    same = result.train_mode_accuracy == result.test_accuracy
    assert same[[0, 1, 3]].all()
    assert not same[2].all()
    # ReLU's zero fraction is its share of non-positive pre-activations; PReLU's is ~0
    assert (result.zero_fraction[0] > 0.1).all() and (result.zero_fraction[1] == 0).all()


def test_time_per_step_measures_every_activation(small_data):
    times = time_per_step(small_data, [0.0, "elu"], models=2, sizes=[40, 8, 10], steps=2,
                          repeats=2)  # fmt: skip
    assert list(times) == [0.0, "elu"]
    assert all(isinstance(t, float) and t > 0 for t in times.values())
    with pytest.raises(ValueError, match="steps"):
        time_per_step(small_data, steps=0)
    with pytest.raises(TypeError, match="lr"):
        time_per_step(small_data, lr="fast")


def test_normalisation_study_equals_one_run_per_architecture(small_data):
    sizes = [40, 12, 12, 12, 10]
    result = normalisation_study(
        small_data,
        ["plain", "batch norm + residual"],
        [0.0, 0.1],
        [0, 1],
        sizes=sizes,
        epochs=2,
        batch_size=100,
    )
    assert result.architectures == ["plain", "batch norm + residual"]
    assert result.test_accuracy.shape == (2, 3, 2, 2)
    assert result.dead_fraction.shape == (2, 3, 2, 2, 3)
    kinds, seeds = grid([0.0, 0.1], [0, 1])
    for c, options in enumerate([{}, {"batch_norm": True, "residual": True}]):
        net = batched_mlp(sizes, kinds, seeds, **options)
        history = train_batched(net, small_data, epochs=2, lr=1e-2)
        torch.testing.assert_close(result.test_accuracy[c], history.test_accuracy.view(3, 2, 2))
        torch.testing.assert_close(result.dead_fraction[c],
                                   history.dead_fraction.view(3, 2, 2, 3))  # fmt: skip
    assert result.steps.tolist() == [0, 4, 8]


def test_normalisation_study_rejects_bad_architectures(small_data):
    with pytest.raises(ValueError, match="architectures"):
        normalisation_study(small_data, ["layer norm"])
    with pytest.raises(ValueError, match="non-empty"):
        normalisation_study(small_data, [])
    with pytest.raises(TypeError, match="architectures"):
        normalisation_study(small_data, "plain")


def test_plateau_change():
    acc = torch.tensor([[0.1, 0.1], [0.5, 0.2], [0.6, 0.3], [0.6, 0.4]])
    torch.testing.assert_close(
        plateau_change(acc, window=2), torch.tensor([0.3, 0.2], dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="records"):
        plateau_change(acc, window=3)
    with pytest.raises(TypeError, match="accuracy"):
        plateau_change([0.1, 0.2])


@pytest.mark.parametrize("module", [criteria, normalisation, relatives])
def test_docstring_examples(module):
    result = doctest.testmod(module, extraglobs={"torch": torch})
    assert result.failed == 0
