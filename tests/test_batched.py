"""rectifiers.batched: many MLPs at once, equal to training each one alone."""

import pytest
import torch
import torch.nn.functional as F
from doctest_helpers import assert_examples_pass
from torch import nn

import rectifiers.batched as batched_module
from rectifiers.batched import BatchedHistory, BatchedMLP, batched_mlp, grid, train_batched
from rectifiers.data import MNIST1D
from rectifiers.diagnostics import activation_stats
from rectifiers.training import evaluate, mlp, train

pytestmark = pytest.mark.usefixtures("single_thread")

SIZES = [40, 12, 9, 10]
ACTIVATIONS = [0.0, 0.01, 0.3, "prelu", "prelu_channelwise"]


@pytest.fixture(scope="module")
def small(data):
    # 250 training examples: with batch_size 64 every epoch ends with a partial batch.
    return data.subset(250, 120)


def one_by_one(sizes, activations, seeds, data, *, bias_shift=0.0, param_groups=None, **kwargs):
    """Each model built and trained alone with the plain loop."""
    models, losses = [], []
    for activation, seed in zip(activations, seeds, strict=True):
        net = mlp(sizes, activation, seed=seed, bias_shift=bias_shift)
        groups = param_groups(net) if param_groups else None
        losses.append(train(net, data, seed=seed, param_groups=groups, **kwargs))
        models.append(net)
    return models, torch.stack(losses, dim=1)


def assert_same_models(batched, models, rtol=1e-5):
    for m, net in enumerate(models):
        unstacked = batched.unstack(m)
        assert [type(layer) for layer in unstacked] == [type(layer) for layer in net]
        for (name, p), q in zip(net.named_parameters(), unstacked.parameters(), strict=True):
            scale = p.abs().max().clamp_min(1e-3)
            assert ((p - q).abs().max() / scale).item() < rtol, (m, name)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"optimizer": "adam", "lr": 1e-2},
        {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3},
        {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.1},
    ],
    ids=["adam", "sgd-momentum-decay", "adamw-decay"],
)
def test_batched_equals_one_by_one(small, kwargs):
    activations, seeds = grid(ACTIVATIONS, [0, 1])
    batched = batched_mlp(SIZES, activations, seeds)
    history = train_batched(batched, small, epochs=3, batch_size=64, **kwargs)
    models, losses = one_by_one(SIZES, activations, seeds, small, epochs=3, batch_size=64, **kwargs)
    assert_same_models(batched, models)
    torch.testing.assert_close(history.train_loss, losses, rtol=1e-5, atol=1e-6)
    for m, net in enumerate(models):
        loss, accuracy = evaluate(net, small.x_test, small.y_test)
        # Identical up to one example whose top two logits tie to rounding.
        assert abs(history.test_accuracy[-1, m].item() - accuracy) <= 1 / 120 + 1e-6
        assert history.test_loss[-1, m].item() == pytest.approx(loss, rel=1e-4)


def test_trained_models_actually_differ(small):
    # Guards the equivalence test against vacuous passes: training moves the parameters, and
    # the slopes and seeds give different models.
    activations, seeds = grid([0.0, 0.3, "prelu"], [0, 1])
    batched = batched_mlp(SIZES, activations, seeds)
    initial = [p.detach().clone() for p in batched.parameters()]
    train_batched(batched, small, epochs=1, lr=1e-2, batch_size=64)
    assert all(not torch.equal(p, q) for p, q in zip(initial, batched.parameters(), strict=True))
    weights = batched.weights[0]
    assert not torch.equal(weights[0], weights[2]) and not torch.equal(weights[0], weights[1])
    assert batched.slopes["0"][4].item() != 0.25  # a PReLU slope was learned


def test_slope_weight_decay_matches_param_groups(small):
    activations, seeds = ["prelu", "prelu_channelwise", 0.1], [3, 4, 5]
    kwargs = {"optimizer": "sgd", "lr": 0.05, "weight_decay": 0.5, "epochs": 2, "batch_size": 64}
    spared = batched_mlp(SIZES, activations, seeds)
    train_batched(spared, small, slope_weight_decay=0.0, **kwargs)

    def groups(net):
        slopes = [
            p
            for n, p in net.named_parameters()
            if n in ("1.weight", "3.weight") and isinstance(net[int(n[0])], nn.PReLU)
        ]
        others = [p for p in net.parameters() if all(p is not s for s in slopes)]
        return [{"params": others}, {"params": slopes, "weight_decay": 0.0}]

    models, _ = one_by_one(SIZES, activations, seeds, small, param_groups=groups, **kwargs)
    assert_same_models(spared, models)
    decayed = batched_mlp(SIZES, activations, seeds)
    train_batched(decayed, small, **kwargs)
    assert not torch.allclose(decayed.slopes["0"], spared.slopes["0"])


def test_bias_shift_and_linear_model_equal_one_by_one(small):
    for sizes, activations in (([40, 10], [0.0, 1.0]), (SIZES, [0.0, "prelu"])):
        seeds = [7, 8]
        batched = batched_mlp(sizes, activations, seeds, bias_shift=-0.5)
        history = train_batched(batched, small, epochs=2, lr=1e-2, batch_size=100)
        models, losses = one_by_one(
            sizes, activations, seeds, small, bias_shift=-0.5, epochs=2, lr=1e-2, batch_size=100
        )
        assert_same_models(batched, models)
        torch.testing.assert_close(history.train_loss, losses, rtol=1e-5, atol=1e-6)
    assert history.dead_fraction.shape == (3, 2, 2)


def test_batched_equals_one_by_one_in_float64_over_more_steps(small):
    activations, seeds = ["prelu", 0.01, 0.0], [0, 0, 1]
    nets = [mlp(SIZES, a, seed=s).double() for a, s in zip(activations, seeds, strict=True)]
    batched = BatchedMLP(nets, seeds)
    data64 = MNIST1D(small.x_train.double(), small.y_train, small.x_test.double(), small.y_test)
    train_batched(batched, data64, epochs=8, lr=1e-2, batch_size=32)
    for net, seed in zip(nets, seeds, strict=True):
        train(net, data64, epochs=8, lr=1e-2, batch_size=32, seed=seed)
    assert batched.weights[0].dtype == torch.float64
    assert_same_models(batched, nets, rtol=1e-10)


def test_recorded_statistics_equal_diagnostics_on_unstacked_models(small):
    activations, seeds = grid([0.0, 0.1, "prelu"], [0, 1])
    batched = batched_mlp(SIZES, activations, seeds, bias_shift=-0.3)
    snapshots = []

    def snapshot(step, model):
        snapshots.append([model.unstack(m) for m in range(model.num_models)])

    history = train_batched(batched, small, epochs=2, lr=0.05, batch_size=64, callback=snapshot)
    assert len(snapshots) == 3
    for r, models in enumerate(snapshots):
        for m, net in enumerate(models):
            stats = activation_stats(net, small.x_test)
            for k, name in enumerate(["1", "3"]):
                for field in ("dead_fraction", "negative_fraction", "zero_fraction"):
                    recorded = getattr(history, field)[r, m, k].item()
                    assert recorded == pytest.approx(stats[name][field], abs=1e-6), (r, m, field)
            assert history.test_accuracy[r, m].item() == pytest.approx(
                evaluate(net, small.x_test, small.y_test)[1], abs=1e-6
            )
    # The shift kills some ReLU units: the check above compared non-trivial numbers.
    assert history.dead_fraction[:, 0:2].max() > 0
    assert history.dead_fraction.min() < history.dead_fraction.max()


def test_evaluation_in_chunks_equals_one_pass(data):
    # 600 examples: three chunks of at most 256, the last one partial.
    x, y = data.x_test[:600], data.y_test[:600]
    batched = batched_mlp(SIZES, [0.0, 0.05, "prelu_channelwise"], [0, 1, 2], bias_shift=-0.4)
    loss, accuracy = batched.evaluate(x, y)
    stats = batched.statistics(x)
    for m in range(3):
        net = batched.unstack(m)
        expected = evaluate(net, x, y)
        assert loss[m].item() == pytest.approx(expected[0], rel=1e-5)
        assert accuracy[m].item() == pytest.approx(expected[1], abs=1e-6)
        diagnostics = activation_stats(net, x)
        for k, name in enumerate(["1", "3"]):
            for field in ("dead_fraction", "negative_fraction", "zero_fraction"):
                assert stats[field][m, k].item() == pytest.approx(
                    diagnostics[name][field], abs=1e-7
                )
    assert 0 < stats["dead_fraction"][0].max() < 1


def test_statistics_definitions():
    # Hand-made pre-activations through an identity first layer.
    net = mlp([3, 3, 2], 0.0, seed=0)
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3))
        net[0].bias.zero_()
    leaky = mlp([3, 3, 2], 0.5, seed=0)
    leaky.load_state_dict(net.state_dict())
    batched = BatchedMLP([net, leaky])
    x = torch.tensor([[-1.0, 2.0, -3.0], [-2.0, -1.0, 0.0]])
    stats = batched.statistics(x)
    # Units 0 and 2 are never positive; 3 of 6 entries are negative; one entry is exactly 0.
    assert stats["dead_fraction"][:, 0].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert stats["negative_fraction"][:, 0].tolist() == pytest.approx([4 / 6, 4 / 6])
    assert stats["zero_fraction"][:, 0].tolist() == pytest.approx([5 / 6, 1 / 6])
    assert stats["slope"][:, 0].tolist() == [0.0, 0.5]


def test_history_shapes_steps_and_record_every(small):
    activations, seeds = grid([0.0, "prelu"], [0, 1, 2])
    calls = []

    def run(**kwargs):
        model = batched_mlp(SIZES, activations, seeds)
        return train_batched(model, small, epochs=2, lr=1e-2, batch_size=64, **kwargs)

    history = run(record_every=3, callback=lambda step, model: calls.append(step))
    # 4 steps per epoch, 8 in all: records at steps 0, 3, 6 and the final 8.
    assert history.steps.tolist() == calls == [0, 3, 6, 8]
    assert history.steps_per_epoch == 4
    assert history.train_loss.shape == (2, 6)
    assert history.test_accuracy.shape == history.test_loss.shape == (4, 6)
    for field in ("dead_fraction", "negative_fraction", "zero_fraction", "slope"):
        assert getattr(history, field).shape == (4, 6, 2)
    assert "4 records of 6 models" in repr(history)
    assert isinstance(history, BatchedHistory)
    assert run(record_every=4).steps.tolist() == [0, 4, 8]
    assert run().steps.tolist() == [0, 4, 8]  # per epoch


def test_first_record_is_the_untrained_models(small):
    activations, seeds = [0.0, "prelu"], [4, 5]
    history = train_batched(batched_mlp(SIZES, activations, seeds), small, epochs=1, lr=1e-2)
    for m, (activation, seed) in enumerate(zip(activations, seeds, strict=True)):
        loss, accuracy = evaluate(mlp(SIZES, activation, seed=seed), small.x_test, small.y_test)
        assert history.test_loss[0, m].item() == pytest.approx(loss, rel=1e-6)
        assert history.test_accuracy[0, m].item() == pytest.approx(accuracy, abs=1e-6)
    slope = history.slope[:, 1, 0]
    assert slope[0].item() == pytest.approx(0.25) and slope[1].item() != slope[0].item()
    assert history.slope[:, 0].abs().max().item() == 0.0


def test_fixed_slope_leaky_outputs_are_never_zero_but_relu_outputs_are(small):
    history = train_batched(batched_mlp(SIZES, [0.0, 0.1], [0, 0]), small, epochs=1, lr=1e-2)
    relu, leaky = history.zero_fraction[:, 0], history.zero_fraction[:, 1]
    torch.testing.assert_close(relu, history.negative_fraction[:, 0], atol=1e-3, rtol=0)
    assert relu.min() > 0.1 and leaky.max() < 1e-3


def test_forward_matches_each_model_and_accepts_per_model_inputs():
    nets = [
        mlp(SIZES, a, seed=s)
        for a, s in [(0.0, 0), ("prelu", 1), ("prelu_channelwise", 2), (0.2, 3)]
    ]
    batched = BatchedMLP(nets)
    x = torch.randn(4, 5, 40)
    logits = batched(x)
    shared = batched(x[0])
    for m, net in enumerate(nets):
        torch.testing.assert_close(logits[m], net(x[m]))
        torch.testing.assert_close(shared[m], net(x[0]))
    _, pre = batched.forward_with_preactivations(x[0])
    assert [tuple(z.shape) for z in pre] == [(4, 5, 12), (4, 5, 9)]
    assert batched.num_models == 4 and batched.num_hidden == 2 and batched.sizes == SIZES
    assert batched.seeds is None
    assert batched.slope(0).shape == (4, 12) and batched.slope(1)[0].abs().max() == 0


def test_evaluate_all_models(small):
    nets = [mlp(SIZES, a, seed=0) for a in (0.0, 0.5)]
    loss, accuracy = BatchedMLP(nets).evaluate(small.x_test, small.y_test)
    for m, net in enumerate(nets):
        expected = evaluate(net, small.x_test, small.y_test)
        assert loss[m].item() == pytest.approx(expected[0], rel=1e-6)
        assert accuracy[m].item() == pytest.approx(expected[1], abs=1e-6)


def test_unstack_gives_independent_copies():
    batched = BatchedMLP(
        [mlp(SIZES, "prelu", seed=0), mlp(SIZES, 0.01, seed=1), mlp(SIZES, nn.Identity, seed=2)]
    )
    net = batched.unstack(0)
    assert isinstance(net[1], nn.PReLU) and net[1].num_parameters == 1
    assert isinstance(batched.unstack(1)[1], nn.LeakyReLU)
    assert batched.unstack(2)[1].negative_slope == 1.0
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].weight.add_(1.0)
    assert not torch.equal(batched.weights[0][0], net[0].weight.t())
    assert batched.slopes["0"][0, 0].item() == pytest.approx(0.25)


def test_models_are_copied_not_shared():
    net = mlp(SIZES, 0.0, seed=0)
    batched = BatchedMLP([net])
    with torch.no_grad():
        batched.weights[0].add_(1.0)
    assert not torch.equal(batched.weights[0][0], net[0].weight.t())
    assert batched.weights[0].shape == (1, 40, 12)


def test_grid_and_batched_mlp():
    activations, seeds = grid([0.0, "prelu", 0.1], range(2))
    assert activations == [0.0, 0.0, "prelu", "prelu", 0.1, 0.1] and seeds == [0, 1] * 3
    batched = batched_mlp(SIZES, activations, seeds)
    assert batched.seeds == seeds and batched.activations[2] == ["prelu", "prelu"]
    for m in range(6):
        expected = mlp(SIZES, activations[m], seed=seeds[m])
        assert torch.equal(batched.weights[1][m], expected[2].weight.t())


@pytest.mark.parametrize(
    "models, seeds, error, match",
    [
        ([], None, TypeError, "non-empty sequence"),
        (nn.Sequential(nn.Linear(3, 2)), None, TypeError, "non-empty sequence"),
        (["net"], None, TypeError, r"models\[0\] must be an nn.Sequential"),
        ([nn.Sequential(nn.Linear(3, 2), nn.ReLU())], None, ValueError, "alternate Linear"),
        (
            [nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2), nn.Linear(2, 2))],
            None,
            ValueError,
            r"models\[0\]\[1\] must be nn.ReLU",
        ),
        (
            [nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.ReLU())],
            None,
            ValueError,
            "alternate Linear",
        ),
        (
            [nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))],
            None,
            ValueError,
            r"models\[0\]\[1\] must be nn.ReLU",
        ),
        (
            [nn.Sequential(nn.Linear(3, 4), nn.PReLU(3), nn.Linear(4, 2))],
            None,
            ValueError,
            "nn.PReLU with 1 or 4 parameters",
        ),
        ([mlp([3, 4, 2]), mlp([3, 5, 2])], None, ValueError, r"models\[1\] has sizes"),
        ([mlp([3, 4, 2]), mlp([3, 4, 2]).double()], None, ValueError, "dtype"),
        ([nn.Sequential(nn.Linear(3, 2, bias=False))], None, ValueError, "must have biases"),
        ([mlp([3, 2])], [0, 1], ValueError, "seeds must be of length 1"),
        ([mlp([3, 2])], [-1], ValueError, "non-negative"),
        ([mlp([3, 2])], "0", TypeError, "seeds must be a sequence of ints"),
    ],
)
def test_batched_mlp_class_rejects_bad_models(models, seeds, error, match):
    with pytest.raises(error, match=match):
        BatchedMLP(models, seeds)


def test_methods_reject_bad_arguments():
    batched = BatchedMLP([mlp(SIZES, seed=0)])
    with pytest.raises(ValueError, match=r"x must have shape \(N, 40\)"):
        batched(torch.zeros(2, 39))
    with pytest.raises(ValueError, match=r"or \(1, N, 40\)"):
        batched(torch.zeros(2, 3, 40))
    with pytest.raises(TypeError, match="x must be a floating-point"):
        batched(torch.zeros(2, 40, dtype=torch.int64))
    with pytest.raises(TypeError, match="y must be a torch.int64"):
        batched.evaluate(torch.zeros(2, 40), torch.zeros(2))
    with pytest.raises(ValueError, match=r"y must have shape \(2,\)"):
        batched.evaluate(torch.zeros(2, 40), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 40\) with N > 0, shared"):
        batched.evaluate(torch.zeros(1, 2, 40), torch.zeros(1, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 40\) with N > 0"):
        batched.statistics(torch.zeros(0, 40))
    with pytest.raises(
        TypeError, match="x has dtype torch.float64 but the models have dtype torch.float32"
    ):
        batched(torch.zeros(2, 40, dtype=torch.float64))
    with pytest.raises(TypeError, match="x has dtype torch.float64"):
        batched.statistics(torch.zeros(2, 40, dtype=torch.float64))
    with pytest.raises(ValueError, match="m must be less than num_models=1"):
        batched.unstack(1)
    with pytest.raises(TypeError, match="m must be an int"):
        batched.unstack(0.0)
    with pytest.raises(ValueError, match="k must be less than num_hidden=2"):
        batched.slope(2)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: grid("relu", [0]), TypeError, "activations must be a sequence"),
        (lambda: grid([], [0]), ValueError, "activations must be non-empty"),
        (lambda: grid([0.0], []), ValueError, "seeds must be non-empty"),
        (lambda: grid(["tanh"], [0]), ValueError, "must be one of"),
        (lambda: grid([0.0], [0.5]), TypeError, r"seeds\[0\] must be an int"),
        (lambda: batched_mlp(SIZES, [0.0], [0, 1]), ValueError, "seeds must be of length 1"),
        (lambda: batched_mlp(SIZES, [nn.Tanh], [0]), TypeError, "cannot be stacked"),
        (lambda: batched_mlp(SIZES, 0.0, [0]), TypeError, "activations must be a sequence"),
        (lambda: batched_mlp([40], [0.0], [0]), ValueError, "at least an input and an output"),
        (lambda: batched_mlp(SIZES, [0.0], [0], bias_shift=None), TypeError, "bias_shift"),
    ],
)
def test_builders_reject_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"model": mlp(SIZES)}, TypeError, "model must be a BatchedMLP"),
        ({"data": "mnist"}, TypeError, "data must be an MNIST1D"),
        ({"data": "channels"}, ValueError, "not the channels view"),
        ({"data": "wide"}, ValueError, "data has 41 features but the models expect 40"),
        ({"data": "double"}, TypeError, "data.x_train has dtype torch.float64 but the models"),
        ({"epochs": 0}, ValueError, "epochs must be positive"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an int"),
        ({"lr": -1.0}, ValueError, "lr must be non-negative"),
        ({"optimizer": "rmsprop"}, ValueError, "optimizer must be one of"),
        ({"momentum": 0.5}, ValueError, "momentum applies to optimizer='sgd'"),
        ({"weight_decay": -0.1}, ValueError, "weight_decay must be non-negative"),
        ({"slope_weight_decay": -1}, ValueError, "slope_weight_decay must be non-negative"),
        ({"slope_weight_decay": "0"}, TypeError, "slope_weight_decay must be a real number"),
        ({"seeds": [0, 1]}, ValueError, "seeds must be of length 1"),
        ({"model": "unseeded"}, ValueError, "seeds must be given"),
        ({"record_every": 0}, ValueError, "record_every must be positive"),
        ({"callback": "print"}, TypeError, "callback must be callable"),
    ],
)
def test_train_batched_rejects_bad_arguments(small, kwargs, error, match):
    arguments = {
        "model": batched_mlp(SIZES, ["prelu"], [0]),
        "data": small,
        "epochs": 1,
        "lr": 1e-2,
        **kwargs,
    }
    if arguments["data"] == "channels":
        arguments["data"] = small.channels
    elif arguments["data"] == "double":
        arguments["data"] = MNIST1D(
            small.x_train.double(), small.y_train, small.x_test.double(), small.y_test
        )
    elif arguments["data"] == "wide":
        arguments["data"] = MNIST1D(
            torch.zeros(2, 41),
            torch.zeros(2, dtype=torch.int64),
            torch.zeros(2, 41),
            torch.zeros(2, dtype=torch.int64),
        )
    if arguments["model"] == "unseeded":
        arguments["model"] = BatchedMLP([mlp(SIZES, seed=0)])
    with pytest.raises(error, match=match):
        train_batched(**arguments)


def test_docstring_examples():
    assert_examples_pass(batched_module)


def test_fixed_slope_activation_is_leaky_relu_bit_for_bit_forward_and_backward():
    # Only fixed slopes: the runs are written in place (no split and cat); values and gradients
    # must be exactly F.leaky_relu's on each model's slice, signed zeros, inf and NaN included.
    slopes = [0.0, 0.0, 0.01, 0.3, 0.3, 1.0, -0.5]
    nets = [mlp([3, 6, 2], a, seed=i) for i, a in enumerate(slopes)]
    batched = BatchedMLP(nets)
    assert [run[2] for run in batched._runs[0]] == [0.0, 0.01, 0.3, 1.0, -0.5]
    z = torch.randn(len(slopes), 5, 6, generator=torch.Generator().manual_seed(0))
    z[:, 0, :4] = torch.tensor([0.0, -0.0, float("inf"), float("nan")])
    z.requires_grad_(True)
    grad = torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
    out = batched._activate(0, z)
    (grad_z,) = torch.autograd.grad(out, z, grad)
    for m, slope in enumerate(slopes):
        zm = z[m].detach().clone().requires_grad_(True)
        expected = F.leaky_relu(zm, slope)
        (expected_grad,) = torch.autograd.grad(expected, zm, grad[m])
        assert torch.equal(out[m].view(torch.int32), expected.view(torch.int32)), m
        assert torch.equal(grad_z[m].view(torch.int32), expected_grad.view(torch.int32)), m
    assert torch.autograd.gradcheck(
        lambda t: batched.double()._activate(0, t),
        torch.randn(len(slopes), 2, 6, dtype=torch.float64, requires_grad=True),
    )
