"""rectifiers.experiments.dying against one-network-at-a-time computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from doctest_helpers import assert_examples_pass

from rectifiers.batched import batched_mlp
from rectifiers.diagnostics import dead_fraction, record_preactivations
from rectifiers.experiments.dying import (
    DyingRun,
    layer_statistics,
    sweep_learning_rates,
    track_dying,
)
from rectifiers.init import kaiming_init_
from rectifiers.training import mlp

pytestmark = pytest.mark.usefixtures("single_thread")

SIZES = [40, 24, 24, 10]


# deliberately repeated in test_experiments_slope_sweep.py: pytest's pattern of a module
# cutting conftest.py's MNIST-1D to the size its checks need, then running its experiment once.
@pytest.fixture(scope="module")
def data(data):
    return data.subset(400, 300)


@pytest.fixture(scope="module")
def run(data):
    return track_dying(
        data,
        SIZES,
        [0.0, 0.1, "prelu"],
        [0, 1],
        lr=0.05,
        epochs=3,
        record_every=2,
        bias_shift=-0.3,
        layer_stats=True,
    )


def test_shapes_and_records(run, data):
    steps_per_epoch = math.ceil(400 / 100)
    assert run.steps.tolist() == [0, 2, 4, 6, 8, 10, 12]
    assert run.steps_per_epoch == steps_per_epoch
    assert run.dead_units.shape == (7, 3, 2, 2, 24) and run.dead_units.dtype == torch.bool
    assert run.accuracy.shape == (7, 3, 2)
    assert run.train_loss.shape == (3, 3, 2)
    assert run.layer_stats.activation.shape == (7, 3, 2, 2, 5)
    torch.testing.assert_close(run.epochs, run.steps.double() / steps_per_epoch)
    # fixed slopes are recorded as they are; PReLU starts at 0.25 and learns
    assert (run.slopes[:, 1] == torch.tensor(0.1).double()).all() and (
        run.slopes[0, 2] == 0.25
    ).all()
    assert (run.slopes[-1, 2] != 0.25).any()


def test_record_zero_matches_a_standalone_network(run, data):
    # before training, model (activation a, seed s) is mlp(SIZES, a, seed=s, bias_shift=-0.3)
    for a, act in enumerate(run.activations):
        for s, seed in enumerate(run.seeds):
            net = mlp(SIZES, act, seed=seed, bias_shift=-0.3)
            with record_preactivations(net) as pre:
                logits = net(data.x_test)
            for layer, z in enumerate(pre.values()):
                expected = (z <= 0).all(dim=0)
                assert torch.equal(run.dead_units[0, a, s, layer], expected)
                assert run.dead[0, a, s, layer].item() == pytest.approx(dead_fraction(z))
            accuracy = (logits.argmax(1) == data.y_test).double().mean()
            assert run.accuracy[0, a, s].item() == pytest.approx(accuracy.item())


def test_layer_statistics_match_one_network_at_a_time():
    torch.manual_seed(0)
    acts = [0.0, 0.2, "prelu"]
    nets = batched_mlp([12, 8, 8, 3], acts, [3, 3, 4]).double()
    x = torch.randn(50, 12, dtype=torch.float64)
    y = torch.randint(0, 3, (50,))
    q = (0.0, 0.3, 0.5, 1.0)
    activation, grad = layer_statistics(nets, x, y, q)
    for m in range(3):
        net = nets.unstack(m)
        outputs = []
        handles = [
            layer.register_forward_hook(lambda mod, i, o, out=outputs: out.append(o))
            for layer in list(net)[1::2]
        ]
        loss = F.cross_entropy(net(x), y)
        for h in handles:
            h.remove()
        weights = [layer.weight for layer in list(net)[:-1:2]]
        grads = torch.autograd.grad(loss, weights)
        for k in range(2):
            expected = torch.quantile(outputs[k].flatten(), torch.tensor(q, dtype=x.dtype))
            torch.testing.assert_close(activation[m, k], expected)
            # nn.Linear's weight is (out, in): unit j's incoming weights are row j
            norms = grads[k].norm(dim=1)
            torch.testing.assert_close(grad[m, k], torch.quantile(norms, torch.tensor(q).double()))


def test_a_dead_relu_unit_has_zero_gradient_norm():
    nets = batched_mlp([6, 5, 3], [0.0, 0.5], [0, 0])
    with torch.no_grad():
        nets.biases[0][:, 0] = -100.0  # unit 0 is dead for ReLU, negative for Leaky ReLU
    x, y = torch.randn(20, 6), torch.randint(0, 3, (20,))
    _, grad = layer_statistics(nets, x, y, (0.0,))
    assert grad[0, 0, 0] == 0  # the smallest gradient norm of ReLU's units is exactly 0
    assert grad[1, 0, 0] > 0


def test_he_initialisation_is_paired_and_matches_kaiming_init(data):
    run = track_dying(
        data, [40, 16, 16, 10], [0.0, 0.01], [5], lr=1e-9, epochs=1, init="he", bias_shift=-0.1
    )
    net = mlp([40, 16, 16, 10], 0.0, seed=5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        kaiming_init_(net, 0.0)
    with record_preactivations(net) as pre:
        net(data.x_test - 0.0)
    # with a constant bias shift of -0.1 on every hidden unit the first layer is
    # W x - 0.1: the first record's dead units follow from the same weights
    first = pre["1"] - 0.1
    assert torch.equal(run.dead_units[0, 0, 0, 0], (first <= 0).all(dim=0))
    assert torch.equal(run.dead_units[0, 0, 0, 0], run.dead_units[0, 1, 0, 0])


def _fake_run(accuracy, dead_units):
    records = accuracy.shape[0]
    return DyingRun(
        sizes=[4, 3, 2],
        activations=[0.0],
        seeds=[0, 1],
        lr=0.1,
        steps=torch.arange(records) * 10,
        steps_per_epoch=10,
        accuracy=accuracy,
        train_loss=torch.zeros(records - 1, 1, 2),
        dead_units=dead_units,
        slopes=torch.zeros(records, 1, 2, 1),
    )


def test_plateau_revival_and_steps_to():
    acc = torch.tensor([0.1, 0.3, 0.5, 0.6, 0.6, 0.61, 0.6], dtype=torch.float64)
    accuracy = torch.stack([acc, torch.linspace(0.1, 0.7, 7, dtype=torch.float64)], 1)[:, None]
    dead = torch.zeros(7, 1, 2, 1, 3, dtype=torch.bool)
    dead[2, 0, 0, 0] = torch.tensor([True, True, False])
    dead[6, 0, 0, 0] = torch.tensor([True, False, True])
    run = _fake_run(accuracy, dead)
    assert run.plateaued(window=2, tolerance=0.02).tolist() == [[True, False]]
    assert run.final_accuracy(2)[0, 0].item() == pytest.approx(0.605)
    then, back = run.revived(2)
    assert then.tolist() == [[[2], [0]]] and back.tolist() == [[[1], [0]]]
    steps = run.steps_to(0.6)
    assert steps[0, 0].item() == 30 and steps[0, 1].item() == 50
    assert math.isinf(run.steps_to(0.65)[0, 0].item())
    torch.testing.assert_close(run.dead[6, 0, 0, 0], torch.tensor(2 / 3, dtype=torch.float64))


def test_bad_input_is_rejected(data, run):
    with pytest.raises(ValueError, match="same width"):
        track_dying(data, [40, 8, 9, 10], [0.0], [0], lr=0.1, epochs=1)
    with pytest.raises(ValueError, match="init"):
        track_dying(data, [40, 8, 10], [0.0], [0], lr=0.1, epochs=1, init="xavier")
    with pytest.raises(TypeError, match="layer_stats"):
        track_dying(data, [40, 8, 10], [0.0], [0], lr=0.1, epochs=1, layer_stats=1)
    with pytest.raises(ValueError, match="window"):
        run.plateaued(window=4)
    with pytest.raises(ValueError, match="tolerance"):
        run.plateaued(window=1, tolerance=0)
    with pytest.raises(ValueError, match="start"):
        run.revived(99)
    with pytest.raises(ValueError, match="accuracy"):
        run.steps_to(1.5)
    nets = batched_mlp([4, 3, 2], [0.0, "gelu"], [0, 0])
    x, y = torch.randn(5, 4), torch.zeros(5, dtype=torch.int64)
    with pytest.raises(ValueError, match="negative slope"):
        layer_statistics(nets, x, y)
    with pytest.raises(ValueError, match="quantiles"):
        layer_statistics(batched_mlp([4, 3, 2], [0.0], [0]), x, y, (1.5,))
    with pytest.raises(TypeError, match="y must be"):
        layer_statistics(batched_mlp([4, 3, 2], [0.0], [0]), x, y.float())


def test_a_learning_rate_sweep_equals_one_run_per_learning_rate(data):
    args = (data, [40, 16, 16, 10], [0.0, "prelu"], [0, 1])
    runs = sweep_learning_rates(*args, lrs=[0.003, 0.03], epochs=2, record_every=3)
    for lr, swept in runs.items():
        alone = track_dying(*args, lr=lr, epochs=2, record_every=3)
        assert swept.lr == lr and torch.equal(swept.steps, alone.steps)
        torch.testing.assert_close(swept.train_loss, alone.train_loss, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(swept.slopes, alone.slopes, rtol=1e-4, atol=1e-5)
        assert (swept.accuracy - alone.accuracy).abs().max() <= 1 / 300
    # the two learning rates really differ
    assert not torch.allclose(runs[0.003].train_loss, runs[0.03].train_loss)


def test_sweep_rejects_bad_learning_rates(data):
    with pytest.raises(ValueError, match="distinct"):
        sweep_learning_rates(data, [40, 8, 10], [0.0], [0], lrs=[0.1, 0.1], epochs=1)
    with pytest.raises(ValueError, match="positive"):
        sweep_learning_rates(data, [40, 8, 10], [0.0], [0], lrs=[0.0], epochs=1)
    with pytest.raises(TypeError, match="lrs"):
        sweep_learning_rates(data, [40, 8, 10], [0.0], [0], lrs=0.1, epochs=1)


def test_network_returns_the_trained_network(data):
    runs = sweep_learning_rates(data, [40, 8, 10], [0.0, 0.1], [0, 1], lrs=[0.01, 0.1], epochs=1)
    run = runs[0.1]
    net = run.network(1, 0)  # Leaky ReLU 0.1, seed 0, learning rate 0.1
    assert isinstance(net[1], torch.nn.LeakyReLU) and net[1].negative_slope == 0.1
    accuracy = (net(data.x_test).argmax(1) == data.y_test).double().mean()
    assert run.accuracy[-1, 1, 0].item() == pytest.approx(accuracy.item())
    with pytest.raises(ValueError, match="seed"):
        run.network(0, 2)
    with pytest.raises(ValueError, match="stack"):
        _fake_run(torch.zeros(3, 1, 2), torch.zeros(3, 1, 2, 1, 3, dtype=torch.bool)).network(0, 0)


def test_docstring_examples_run():
    from rectifiers.experiments import dying

    assert_examples_pass(dying)
