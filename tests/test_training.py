"""rectifiers.training: the mlp builder, the plain training loop and evaluate."""

import math

import pytest
import torch
import torch.nn.functional as F
from doctest_helpers import assert_examples_pass
from torch import nn

import rectifiers.training as training_module
from rectifiers.data import MNIST1D
from rectifiers.optim import param_groups
from rectifiers.training import evaluate, make_optimizer, mlp, train

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def small(data):
    return data.subset(300, 100)


class Recorder(nn.Module):
    """Wraps a model and records every batch it sees in training mode."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.batches = []

    def forward(self, x):
        if self.training:
            self.batches.append(x.detach().clone())
        return self.model(x)


# --- mlp ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "activation, kind, slope",
    [
        (0.0, nn.ReLU, None),
        (0, nn.ReLU, None),
        ("relu", nn.ReLU, None),
        (0.01, nn.LeakyReLU, 0.01),
        (1.0, nn.LeakyReLU, 1.0),
        (-0.5, nn.LeakyReLU, -0.5),
    ],
)
def test_mlp_structure_with_fixed_slopes(activation, kind, slope):
    net = mlp([40, 30, 20, 10], activation, seed=0)
    types = [type(layer) for layer in net]
    assert types == [nn.Linear, kind, nn.Linear, kind, nn.Linear]
    assert [(layer.in_features, layer.out_features) for layer in net[0::2]] == [
        (40, 30),
        (30, 20),
        (20, 10),
    ]
    if slope is not None:
        assert net[1].negative_slope == slope and net[3].negative_slope == slope


def test_mlp_prelu_kinds_and_init():
    shared = mlp([5, 7, 3, 2], "prelu", seed=0, prelu_init=0.1)
    assert isinstance(shared[1], nn.PReLU) and shared[1].num_parameters == 1
    assert shared[1].weight.item() == pytest.approx(0.1)
    assert shared[1] is not shared[3]  # one slope per layer
    channelwise = mlp([5, 7, 3, 2], "prelu_channelwise", seed=0)
    assert [channelwise[1].num_parameters, channelwise[3].num_parameters] == [7, 3]
    assert torch.all(channelwise[1].weight == 0.25)


def test_mlp_module_factory_and_linear_model():
    net = mlp([4, 6, 2], nn.Tanh, seed=1)
    assert isinstance(net[1], nn.Tanh)
    linear = mlp([40, 10], "prelu", seed=1)
    assert len(linear) == 1 and isinstance(linear[0], nn.Linear)


def test_mlp_seed_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    a = mlp([40, 16, 10], 0.1, seed=3)
    assert torch.equal(torch.rand(3), expected)
    b = mlp([40, 16, 10], "prelu", seed=3)
    c = mlp([40, 16, 10], 0.1, seed=4)
    assert torch.equal(a[0].weight, b[0].weight) and torch.equal(a[2].bias, b[2].bias)
    assert not torch.equal(a[0].weight, c[0].weight)


def test_mlp_uses_pytorch_default_linear_init():
    # Default nn.Linear: weight and bias uniform in +-1/sqrt(fan_in), i.e. the same draws.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        reference = nn.Linear(40, 16)
    net = mlp([40, 16, 10], 0.0, seed=11)
    assert torch.equal(net[0].weight, reference.weight) and torch.equal(net[0].bias, reference.bias)
    assert net[2].weight.abs().max() <= 1 / math.sqrt(16)


def test_mlp_bias_shift_moves_hidden_biases_only():
    plain = mlp([8, 6, 5, 3], 0.0, seed=2)
    shifted = mlp([8, 6, 5, 3], 0.0, seed=2, bias_shift=-1.5)
    torch.testing.assert_close(shifted[0].bias, plain[0].bias - 1.5)
    torch.testing.assert_close(shifted[2].bias, plain[2].bias - 1.5)
    assert torch.equal(shifted[4].bias, plain[4].bias)
    assert torch.equal(shifted[0].weight, plain[0].weight)


def test_mlp_without_seed_draws_from_the_global_generator():
    torch.manual_seed(5)
    a = mlp([3, 2])
    torch.manual_seed(5)
    assert torch.equal(a[0].weight, mlp([3, 2])[0].weight)


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (([40],), {}, ValueError, "at least an input and an output"),
        (("40,10",), {}, TypeError, "sizes must be a sequence of ints"),
        ((40,), {}, TypeError, "sizes must be a sequence"),
        (([40, 0, 10],), {}, ValueError, r"sizes\[1\] must be positive"),
        (([40, 2.0, 10],), {}, TypeError, r"sizes\[1\] must be an int"),
        (([40, True],), {}, TypeError, r"sizes\[1\] must be an int"),
        (([4, 2], "leaky"), {}, ValueError, "activation must be one of"),
        (([4, 2], True), {}, TypeError, "activation must be a negative slope"),
        (([4, 2], float("nan")), {}, ValueError, "activation must be finite"),
        (([4, 2], torch.tensor(0.1)), {}, TypeError, "activation must be a negative slope"),
        (([4, 3, 2], lambda: "relu"), {}, TypeError, r"activation\(\) must be a torch.nn.Module"),
        (([4, 2],), {"seed": -1}, ValueError, "seed must be non-negative"),
        (([4, 2],), {"seed": 1.5}, TypeError, "seed must be an int"),
        (([4, 2],), {"bias_shift": "1"}, TypeError, "bias_shift must be a real number"),
        (([4, 2],), {"prelu_init": float("inf")}, ValueError, "prelu_init must be finite"),
    ],
)
def test_mlp_rejects_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        mlp(*args, **kwargs)


# --- make_optimizer -------------------------------------------------------------------------------


def test_make_optimizer_kinds_and_defaults():
    params = list(mlp([4, 2]).parameters())
    adam = make_optimizer(params, "adam", lr=0.01, weight_decay=0.1)
    assert type(adam) is torch.optim.Adam and adam.defaults["weight_decay"] == 0.1
    assert type(make_optimizer(params, "adamw", lr=0.01)) is torch.optim.AdamW
    sgd = make_optimizer(params, "sgd", lr=0.5, momentum=0.9)
    assert type(sgd) is torch.optim.SGD and sgd.defaults["momentum"] == 0.9
    groups = make_optimizer(
        [{"params": params[:1]}, {"params": params[1:], "weight_decay": 0.0}],
        "sgd",
        lr=0.1,
        weight_decay=0.3,
    )
    assert [g["weight_decay"] for g in groups.param_groups] == [0.3, 0.0]


@pytest.mark.parametrize(
    "name, kwargs, error, match",
    [
        ("rmsprop", {"lr": 0.1}, ValueError, "optimizer must be one of"),
        (None, {"lr": 0.1}, TypeError, "optimizer must be a str"),
        ("adam", {"lr": 0}, ValueError, "lr must be positive"),
        ("adam", {"lr": -0.1}, ValueError, "lr must be non-negative"),
        ("adam", {"lr": "0.1"}, TypeError, "lr must be a real number"),
        ("adam", {"lr": 0.1, "weight_decay": -1}, ValueError, "weight_decay must be non-negative"),
        ("sgd", {"lr": 0.1, "momentum": 1.0}, ValueError, "momentum must be less than 1"),
        ("adam", {"lr": 0.1, "momentum": 0.9}, ValueError, "momentum applies to optimizer='sgd'"),
    ],
)
def test_make_optimizer_rejects_bad_arguments(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        make_optimizer(mlp([4, 2]).parameters(), name, **kwargs)


# --- train ----------------------------------------------------------------------------------------


def test_train_data_order_is_a_seeded_permutation_per_epoch(small):
    recorder = Recorder(mlp([40, 8, 10], 0.0, seed=0))
    losses = train(recorder, small, epochs=2, lr=1e-3, batch_size=64, seed=9)
    generator = torch.Generator().manual_seed(9)
    expected = [
        small.x_train[batch]
        for _ in range(2)
        for batch in torch.randperm(300, generator=generator).split(64)
    ]
    assert len(recorder.batches) == len(expected) == 10  # 4 full batches and one of 44, twice
    assert all(
        torch.equal(seen, want) for seen, want in zip(recorder.batches, expected, strict=True)
    )
    assert losses.shape == (2,)


def test_train_matches_a_hand_written_loop(small):
    net = mlp([40, 8, 10], "prelu", seed=1)
    losses = train(
        net,
        small,
        epochs=2,
        lr=0.05,
        batch_size=100,
        optimizer="sgd",
        momentum=0.5,
        weight_decay=1e-3,
        seed=4,
    )
    reference = mlp([40, 8, 10], "prelu", seed=1)
    opt = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.5, weight_decay=1e-3)
    generator = torch.Generator().manual_seed(4)
    expected_losses = []
    for _ in range(2):
        batch_losses = []
        for batch in torch.randperm(300, generator=generator).split(100):
            loss = F.cross_entropy(reference(small.x_train[batch]), small.y_train[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            batch_losses.append(loss.item())
        expected_losses.append(sum(batch_losses) / len(batch_losses))
    for p, q in zip(net.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses, torch.tensor(expected_losses), rtol=1e-5, atol=1e-6)


def test_train_learns(data):
    net = mlp([40, 64, 10], 0.01, seed=0)
    before = evaluate(net, data.x_train[:1000], data.y_train[:1000])
    losses = train(net, data.subset(1000, 10), epochs=8, lr=1e-2, seed=0)
    after = evaluate(net, data.x_train[:1000], data.y_train[:1000])
    assert losses[-1] < 0.7 * losses[0]
    assert after[1] > 0.5 > before[1] and after[0] < before[0]


def test_train_same_seed_same_result_other_seed_other_result(small):
    def run(seed):
        net = mlp([40, 8, 10], 0.1, seed=0)
        train(net, small, epochs=1, lr=1e-2, batch_size=50, seed=seed)
        return net[0].weight

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_train_callback_sees_epochs_0_to_n(small):
    seen = []
    net = mlp([40, 4, 10], seed=0)
    train(
        net,
        small,
        epochs=3,
        lr=1e-3,
        callback=lambda epoch, model: seen.append((epoch, model is net, model.training)),
    )
    assert seen == [(0, True, True), (1, True, True), (2, True, True), (3, True, True)]


def test_train_param_groups_are_used(small):
    net = mlp([40, 6, 10], "prelu", seed=0)
    frozen = net[0].weight.detach().clone()
    groups = [
        {"params": [net[0].weight], "lr": 0.0},
        {"params": [p for n, p in net.named_parameters() if n != "0.weight"]},
    ]
    train(net, small, epochs=1, lr=1e-2, param_groups=groups)
    assert torch.equal(net[0].weight, frozen)
    assert not torch.equal(net[2].weight, mlp([40, 6, 10], "prelu", seed=0)[2].weight)


def test_train_weight_decay_spares_prelu_slopes_only_with_param_groups(small):
    # One full-batch SGD step, w <- w - lr * (grad + wd * w): decaying the slope moves it by
    # exactly lr * wd * 0.25 more than its gradient alone; rectifiers.optim.param_groups spares it.
    def slope(groups_from):
        net = mlp([40, 6, 10], "prelu", seed=0)
        groups = param_groups(net, 5.0) if groups_from else None
        train(
            net,
            small,
            epochs=1,
            lr=0.01,
            optimizer="sgd",
            weight_decay=5.0,
            param_groups=groups,
            batch_size=300,
        )
        return net[1].weight.item()

    no_decay = mlp([40, 6, 10], "prelu", seed=0)
    train(no_decay, small, epochs=1, lr=0.01, optimizer="sgd", batch_size=300)
    assert slope(groups_from=True) == pytest.approx(no_decay[1].weight.item(), rel=1e-3)
    assert slope(groups_from=False) == pytest.approx(
        no_decay[1].weight.item() - 0.01 * 5.0 * 0.25, abs=1e-6
    )


def test_train_on_channels_view_with_a_cnn(small):
    net = nn.Sequential(nn.Conv1d(1, 4, 5), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 10))
    losses = train(net, small.channels, epochs=1, lr=1e-3)
    assert losses.shape == (1,) and torch.isfinite(losses).all()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"model": "net"}, TypeError, "model must be a torch.nn.Module"),
        ({"data": (torch.zeros(3, 40), torch.zeros(3))}, TypeError, "data must be an MNIST1D"),
        ({"epochs": 0}, ValueError, "epochs must be positive"),
        ({"epochs": 1.0}, TypeError, "epochs must be an int"),
        ({"lr": 0.0}, ValueError, "lr must be positive"),
        ({"batch_size": 0}, ValueError, "batch_size must be positive"),
        ({"seed": -2}, ValueError, "seed must be non-negative"),
        ({"optimizer": "lbfgs"}, ValueError, "optimizer must be one of"),
        ({"momentum": 0.9}, ValueError, "momentum applies to optimizer='sgd'"),
        ({"callback": 3}, TypeError, "callback must be callable"),
        ({"param_groups": {"params": []}}, TypeError, "param_groups must be a list of dicts"),
        ({"param_groups": [[]]}, TypeError, "param_groups must be a list of dicts"),
    ],
)
def test_train_rejects_bad_arguments(small, kwargs, error, match):
    arguments = {"model": mlp([40, 10]), "data": small, "epochs": 1, "lr": 0.1, **kwargs}
    with pytest.raises(error, match=match):
        train(**arguments)


def test_check_data_flat():
    channels = MNIST1D(
        torch.zeros(2, 1, 40),
        torch.zeros(2, dtype=torch.int64),
        torch.zeros(2, 1, 40),
        torch.zeros(2, dtype=torch.int64),
    )
    with pytest.raises(ValueError, match="data must have inputs of shape"):
        training_module.check_data("data", channels, flat=True)


# --- evaluate -------------------------------------------------------------------------------------


def test_evaluate_matches_direct_computation_and_restores_mode(small):
    net = mlp([40, 8, 10], "prelu", seed=0)
    logits = net(small.x_test)
    expected_loss = F.cross_entropy(logits, small.y_test).item()
    expected_accuracy = (logits.argmax(1) == small.y_test).sum().item() / 100
    for mode in (True, False):
        net.train(mode)
        loss, accuracy = evaluate(net, small.x_test, small.y_test)
        assert net.training is mode
        assert loss == pytest.approx(expected_loss, rel=1e-6)
        assert accuracy == pytest.approx(expected_accuracy, abs=1e-12)
        assert isinstance(loss, float) and isinstance(accuracy, float)


def test_evaluate_uses_eval_mode():
    net = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.99))
    x, y = torch.randn(50, 4), torch.zeros(50, dtype=torch.int64)
    assert evaluate(net, x, y) == evaluate(net, x, y)  # dropout off: deterministic


@pytest.mark.parametrize(
    "model, x, y, error, match",
    [
        (None, torch.zeros(2, 40), torch.zeros(2, dtype=torch.int64), TypeError, "model must be"),
        ("net", torch.zeros(2, 40), torch.zeros(2, dtype=torch.int64), TypeError, "model must be"),
        ("ok", [[0.0] * 40], torch.zeros(1, dtype=torch.int64), TypeError, "x must be a torch"),
        (
            "ok",
            torch.zeros(2, 40, dtype=torch.int64),
            torch.zeros(2, dtype=torch.int64),
            TypeError,
            "x must be a floating-point",
        ),
        ("ok", torch.zeros(2, 40), torch.zeros(2), TypeError, "y must be a torch.int64"),
        ("ok", torch.zeros(2, 40), [0, 1], TypeError, "y must be a torch.int64"),
        ("ok", torch.zeros(2, 40), torch.zeros(3, dtype=torch.int64), ValueError, "same N"),
        ("ok", torch.zeros(0, 40), torch.zeros(0, dtype=torch.int64), ValueError, "N > 0"),
    ],
)
def test_evaluate_rejects_bad_arguments(model, x, y, error, match):
    model = mlp([40, 10]) if model == "ok" else model
    with pytest.raises(error, match=match):
        evaluate(model, x, y)


def test_docstring_examples():
    assert_examples_pass(training_module)


def test_data_orders_are_seeded_permutations_fresh_each_epoch():
    from rectifiers.training import data_orders

    generator = torch.Generator().manual_seed(7)
    expected = [torch.randperm(50, generator=generator) for _ in range(3)]
    drawn = [order for _, order in zip(range(3), data_orders(50, 7), strict=False)]
    assert all(torch.equal(a, b) for a, b in zip(drawn, expected, strict=True))
    assert not torch.equal(drawn[0], drawn[1])
    assert not torch.equal(drawn[0], next(data_orders(50, 8)))
