"""rectifiers.experiments.slope_sweep against networks trained one at a time."""

from __future__ import annotations

import pytest
import torch
from doctest_helpers import assert_examples_pass

from rectifiers.experiments.slope_sweep import agreement, perturbed, sweep_slopes
from rectifiers.training import evaluate, mlp, train

pytestmark = pytest.mark.usefixtures("single_thread")

SIZES = [40, 12, 10]


# deliberately repeated in test_experiments_dying.py: pytest's pattern of a module
# cutting conftest.py's MNIST-1D to the size its checks need, then running its experiment once.
@pytest.fixture(scope="module")
def data(data):
    return data.subset(300, 200)


@pytest.fixture(scope="module")
def sweep(data):
    return sweep_slopes(
        data, SIZES, [0.0, 0.1, 1.0], [0, 1, 2], epochs=2, lr=0.01, epsilons=[0.0, 1e-3]
    )


def test_shapes(sweep):
    assert sweep.accuracy.shape == (3, 3)
    assert sweep.negative.shape == sweep.dead.shape == (3, 3, 1)
    assert sweep.control_agreement.shape == (2, 3)
    assert sweep.seed_agreement.shape == (3,)
    assert sweep.linear_accuracy.shape == (3,)
    assert sweep.steps == 2 * 3
    assert sweep.nets.num_models == 3 * 3 + 2 * 3


def test_relu_rows_agree_with_themselves(sweep):
    assert (sweep.agreement[0] == 1).all() and (sweep.agreement_at_init[0] == 1).all()
    # epsilon = 0 is an exact copy trained on the same batches: the same predictions
    assert (sweep.control_agreement_at_init[0] == 1).all()
    assert (sweep.control_agreement[0] == 1).all()
    torch.testing.assert_close(sweep.control_accuracy[0], sweep.accuracy[0])


def test_models_match_one_by_one_training(sweep, data):
    # slope 0.1, seed 1, and the epsilon = 1e-3 control of seed 2, trained alone
    for index, net in (
        (1 * 3 + 1, mlp(SIZES, 0.1, seed=1)),
        (9 + 3 + 2, perturbed(mlp(SIZES, 0.0, seed=2), 1e-3, 1000 + 1000 + 2)),
    ):
        train(net, data, epochs=2, lr=0.01, seed=[1, 2][index > 9])
        _, accuracy = evaluate(net, data.x_test, data.y_test)
        flat = torch.cat([sweep.accuracy.flatten(), sweep.control_accuracy.flatten()])
        assert flat[index].item() == pytest.approx(accuracy, abs=1 / 200)


def test_agreement_and_perturbed():
    a = torch.tensor([[0, 1, 2, 3], [0, 0, 0, 0]])
    torch.testing.assert_close(
        agreement(a, torch.tensor([0, 1, 0, 0])), torch.tensor([0.5, 0.75], dtype=torch.float64)
    )
    net = mlp([50, 40, 20], 0.0, seed=0)
    copy = perturbed(net, 0.1, seed=3)
    again = perturbed(net, 0.1, seed=3)
    ratios = []
    for p, q, r in zip(net.parameters(), copy.parameters(), again.parameters(), strict=True):
        assert torch.equal(q, r)  # the same seed gives the same noise
        ratios.append((q / p - 1).detach().flatten())
    assert 0.09 < torch.cat(ratios).std() < 0.11  # relative noise of size 0.1
    assert torch.equal(perturbed(net, 0.0, seed=1)[0].weight, net[0].weight)


def test_bad_input_is_rejected(data):
    with pytest.raises(ValueError, match="start with 0"):
        sweep_slopes(data, SIZES, [0.1, 0.0], [0, 1], epochs=1, lr=0.01)
    with pytest.raises(ValueError, match="two seeds"):
        sweep_slopes(data, SIZES, [0.0], [0], epochs=1, lr=0.01)
    with pytest.raises(ValueError, match="epsilons"):
        sweep_slopes(data, SIZES, [0.0], [0, 1], epochs=1, lr=0.01, epsilons=[-1.0])
    with pytest.raises(TypeError, match="net"):
        perturbed("net", 0.1, 0)
    with pytest.raises(ValueError, match="epsilon"):
        perturbed(mlp([2, 2], 0.0), -0.1, 0)
    with pytest.raises(TypeError, match="predictions"):
        agreement(torch.zeros(3), torch.zeros(3, dtype=torch.int64))


def test_docstring_examples_run():
    from rectifiers.experiments import slope_sweep

    assert_examples_pass(slope_sweep)
