"""rectifiers.stacked: the new layers (ELU, GELU, SiLU, RReLU, batch norm, skips, depth).

Each must equal the corresponding ``nn.Sequential`` trained one by one (float64); RReLU's
training-mode randomness is checked by its distribution and bounds, its evaluation mode exactly.
"""

import doctest
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rectifiers.stacked as stacked_module
from rectifiers.batched import BatchedMLP, batched_mlp, grid, train_batched
from rectifiers.data import MNIST1D, load_mnist1d
from rectifiers.diagnostics import activation_stats
from rectifiers.models import Residual
from rectifiers.training import evaluate, mlp, train

pytestmark = pytest.mark.usefixtures("single_thread")

DEEP = [40] + [8] * 12 + [10]  # 12 narrow hidden layers
SMOOTH_AND_RECTIFIERS = [0.0, 0.01, "prelu", "prelu_channelwise", "elu", "gelu", "silu"]
ACTIVATION_TYPES = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.RReLU)


@pytest.fixture(scope="module")
def data64():
    data = load_mnist1d().subset(200, 100)
    return MNIST1D(data.x_train.double(), data.y_train, data.x_test.double(), data.y_test)


def rounding_only(net):
    """The state entries whose training signal is pure rounding error.

    A bias just before a batch norm has zero gradient in exact arithmetic (the norm subtracts
    the batch mean), so its computed gradient is rounding noise, about 1e-17, which Adam
    divides by its own running size: the bias and the running mean that contains it wander by
    up to about 1e-8 relative, differently in the stacked and the one-by-one sums.
    """
    names = set()
    for name, module in net.named_modules():
        if isinstance(module, nn.BatchNorm1d):
            parent, _, index = name.rpartition(".")
            linear = f"{parent}.{int(index) - 1}" if parent else str(int(index) - 1)
            names |= {f"{linear}.bias", f"{name}.running_mean"}
    return names


def assert_same_state(batched, nets, rtol=1e-10, rounding_rtol=1e-7):
    """Every parameter and buffer of each unstacked model equals the one-by-one model's."""
    for m, net in enumerate(nets):
        loose = rounding_only(net)
        unstacked = batched.unstack(m)
        assert [type(layer) for layer in unstacked.modules()] == [
            type(layer) for layer in net.modules()
        ]
        expected, got = net.state_dict(), unstacked.state_dict()
        assert list(expected) == list(got)
        for name, value in expected.items():
            if value.is_floating_point():
                scale = value.abs().max().clamp_min(1e-3)
                tolerance = rounding_rtol if name in loose else rtol
                assert ((value - got[name]).abs().max() / scale).item() <= tolerance, (m, name)
            else:
                assert torch.equal(value, got[name]), (m, name)


@pytest.mark.parametrize(
    "batch_norm, residual",
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["plain", "batch-norm", "residual", "batch-norm-residual"],
)
def test_deep_batched_equals_one_by_one_in_float64(data64, batch_norm, residual):
    activations, seeds = (
        grid(SMOOTH_AND_RECTIFIERS, [0])
        if batch_norm
        else (
            SMOOTH_AND_RECTIFIERS,
            [1, 1, 2, 2, 3, 3, 4],
        )
    )
    options = {"batch_norm": batch_norm, "residual": residual}
    nets = [
        mlp(DEEP, a, seed=s, **options).double() for a, s in zip(activations, seeds, strict=True)
    ]
    batched = BatchedMLP(nets, seeds)
    kwargs = {"epochs": 3, "lr": 1e-2, "batch_size": 32}
    history = train_batched(batched, data64, **kwargs)
    losses = torch.stack(
        [train(net, data64, seed=s, **kwargs) for net, s in zip(nets, seeds, strict=True)], 1
    )
    # Twelve layers deep with batch norm and no skip, rounding differences grow to ~1e-10.
    assert_same_state(batched, nets, rtol=1e-9 if batch_norm else 1e-10)
    # train returns its epoch losses in float32.
    torch.testing.assert_close(history.train_loss, losses.double(), rtol=1e-6, atol=0)
    for m, net in enumerate(nets):
        loss, accuracy = evaluate(net, data64.x_test, data64.y_test)
        assert history.test_loss[-1, m].item() == pytest.approx(loss, rel=1e-10)
        assert history.test_accuracy[-1, m].item() == accuracy
    # Guards against a vacuous pass: the models trained, and differ from each other.
    assert history.train_loss[-1].max() < history.train_loss[0].max()
    assert len({round(v, 6) for v in history.test_loss[-1].tolist()}) == len(nets)


def test_sgd_momentum_with_batch_norm_and_weight_decay_equals_one_by_one(data64):
    activations, seeds = ["gelu", "prelu", 0.2], [5, 5, 6]
    sizes = [40, 16, 16, 10]
    nets = [
        mlp(sizes, a, seed=s, batch_norm=True).double()
        for a, s in zip(activations, seeds, strict=True)
    ]
    batched = BatchedMLP(nets, seeds)
    kwargs = {"epochs": 2, "lr": 0.05, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-2}
    train_batched(batched, data64, batch_size=50, **kwargs)
    for net, seed in zip(nets, seeds, strict=True):
        train(net, data64, batch_size=50, seed=seed, **kwargs)
    assert_same_state(batched, nets)
    assert batched.num_batches_tracked_0.item() == 8  # 4 steps per epoch, two epochs


def test_preactivations_and_statistics_are_each_models_activation_inputs(data64):
    activations, seeds = ["elu", 0.0, "rrelu", "silu"], [0, 1, 2, 3]
    nets = [
        mlp([40, 8, 8, 8, 10], a, seed=s, batch_norm=True, residual=True, bias_shift=-0.5)
        .double()
        .eval()
        for a, s in zip(activations, seeds, strict=True)
    ]
    batched = BatchedMLP(nets).eval()
    x = data64.x_test
    _, pre = batched.forward_with_preactivations(x)
    stats = batched.statistics(x)
    for m, net in enumerate(nets):
        recorded = {}
        hooks = [
            module.register_forward_pre_hook(
                lambda module, args, name=name, into=recorded: into.__setitem__(name, args[0])
            )
            for name, module in net.named_modules()
            if isinstance(module, ACTIVATION_TYPES)
        ]
        net(x)
        for hook in hooks:
            hook.remove()
        assert len(recorded) == len(pre) == 3
        for k, z in enumerate(recorded.values()):
            torch.testing.assert_close(pre[k][m], z, rtol=1e-12, atol=1e-12)
        expected = activation_stats(net, x, types=ACTIVATION_TYPES)
        for k, layer in enumerate(expected.values()):
            for field in ("dead_fraction", "negative_fraction", "zero_fraction"):
                assert stats[field][m, k].item() == pytest.approx(layer[field], abs=1e-12)
    assert stats["dead_fraction"][1].max() > 0  # the shifted ReLU net has dead units
    slope = stats["slope"]
    assert math.isnan(slope[0, 0]) and slope[1, 0] == 0 and slope[2, 0] == pytest.approx(11 / 48)


def test_gradients_reach_every_layers_preactivations():
    batched = batched_mlp(DEEP, ["relu", "gelu"], [0, 1], residual=True)
    logits, pre = batched.forward_with_preactivations(torch.randn(16, 40))
    for z in pre:
        z.retain_grad()
    logits.square().sum().backward()
    norms = torch.stack([z.grad.norm(dim=(1, 2)) for z in pre])  # (layers, models)
    assert norms.shape == (12, 2) and bool((norms > 0).all())


def test_rrelu_evaluation_mode_is_leaky_relu_with_the_mean_slope_bit_for_bit():
    nets = [mlp([3, 6, 2], a, seed=i) for i, a in enumerate(["rrelu", "rrelu", 0.1])]
    batched = BatchedMLP(nets).eval()
    z = torch.randn(3, 5, 6, generator=torch.Generator().manual_seed(0))
    z[:, 0, :3] = torch.tensor([0.0, -0.0, -float("inf")])
    out = batched._activate(0, z)
    for m in range(2):
        expected = F.rrelu(z[m], training=False)
        assert torch.equal(out[m].view(torch.int32), expected.view(torch.int32))
    x = torch.randn(7, 3)
    for m, net in enumerate(nets):
        assert torch.allclose(batched(x)[m], net.eval()(x), atol=1e-6)
    assert batched.slope(0)[:2].flatten().tolist() == pytest.approx([11 / 48] * 2)


def test_rrelu_training_mode_draws_slopes_from_u_one_eighth_one_third_per_element():
    nets = [mlp([3, 64, 2], a, seed=i) for i, a in enumerate(["rrelu", "rrelu", 0.5])]
    batched = BatchedMLP(nets).train()
    batched.generator = torch.Generator().manual_seed(0)
    z = torch.cat([torch.full((3, 500, 64), -2.0), torch.full((3, 100, 64), 1.5)], dim=1)
    z.requires_grad_(True)
    out = batched._activate(0, z)
    (grad,) = torch.autograd.grad(out.sum(), z)
    slopes = (out[:2, :500] / -2.0).detach()
    assert slopes.min() >= 1 / 8 and slopes.max() <= 1 / 3
    # U(1/8, 1/3): mean 11/48, standard deviation (1/3 - 1/8) / sqrt(12); 64,000 draws.
    assert slopes.mean().item() == pytest.approx(11 / 48, abs=2e-3)
    assert slopes.std().item() == pytest.approx((1 / 3 - 1 / 8) / 12**0.5, rel=0.02)
    assert not torch.equal(slopes[0], slopes[1])  # each model draws its own
    assert len(slopes[0].unique()) > 30_000  # one draw per element
    torch.testing.assert_close(grad[:2, :500], slopes)  # the gradient is the drawn slope
    assert torch.equal(out[:, 500:], z[:, 500:]) and bool((grad[:, 500:] == 1).all())
    assert torch.equal(out[2, :500], torch.full((500, 64), -1.0))  # the fixed slope is fixed
    # nn.RReLU's own training-mode draws satisfy the same bounds (the reference distribution).
    reference = nn.RReLU()(torch.full((10_000,), -1.0)) * -1
    assert reference.min() >= 1 / 8 and reference.max() <= 1 / 3
    batched.generator = torch.Generator().manual_seed(0)
    assert torch.equal(batched._activate(0, z), out)  # the generator makes it reproducible


def test_training_rrelu_is_reproducible_and_records_in_evaluation_mode(data64):
    def run(noise_seed):
        model = batched_mlp([40, 16, 16, 10], ["rrelu", "rrelu", 0.0], [0, 1, 0]).double()
        history = train_batched(model, data64, epochs=2, lr=1e-2, noise_seed=noise_seed)
        return model, history

    model, history = run(0)
    again, repeated = run(0)
    _, other = run(1)
    assert torch.equal(history.test_loss, repeated.test_loss)
    assert not torch.equal(history.test_loss[:, :2], other.test_loss[:, :2])
    torch.testing.assert_close(history.test_loss[:, 2], other.test_loss[:, 2], rtol=0, atol=0)
    assert model.training  # left in training mode, as train leaves a model
    for m in range(3):
        loss, accuracy = evaluate(model.unstack(m), data64.x_test, data64.y_test)
        assert history.test_loss[-1, m].item() == pytest.approx(loss, rel=1e-10)
        assert history.test_accuracy[-1, m].item() == accuracy
    assert history.train_loss[-1, 0] < history.train_loss[0, 0]


def test_batch_norm_in_training_and_evaluation_mode_matches_batchnorm1d():
    nets = [mlp([5, 4, 3], a, seed=i, batch_norm=True) for i, a in enumerate([0.0, "elu"])]
    batched = BatchedMLP(nets)
    x = torch.randn(9, 5, generator=torch.Generator().manual_seed(3))
    out = batched(x)  # training mode: batch statistics, running statistics updated
    for m, net in enumerate(nets):
        torch.testing.assert_close(out[m], net(x))
        torch.testing.assert_close(batched.running_mean_0[m], net[1].running_mean)
        torch.testing.assert_close(batched.running_var_0[m], net[1].running_var)
    batched.eval()
    for m, net in enumerate(nets):
        torch.testing.assert_close(batched(x)[m], net.eval()(x))
    assert batched.num_batches_tracked_0.item() == 1
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batched.train()(x[:1])


def test_mlp_options_share_the_linear_weights_of_a_seed():
    plain = mlp([40, 16, 16, 16, 10], 0.0, seed=4)
    fancy = mlp([40, 16, 16, 16, 10], "silu", seed=4, batch_norm=True, residual=True)
    assert [type(layer).__name__ for layer in fancy] == [
        "Linear",
        "BatchNorm1d",
        "SiLU",
        "Residual",
        "Residual",
        "Linear",
    ]
    linears = [m for m in fancy.modules() if isinstance(m, nn.Linear)]
    assert all(
        torch.equal(a.weight, b.weight)
        for a, b in zip(linears, [m for m in plain if isinstance(m, nn.Linear)], strict=True)
    )
    shifted = mlp([40, 16, 16, 10], 0.0, seed=4, residual=True, bias_shift=-1.0)
    unshifted = mlp([40, 16, 16, 10], 0.0, seed=4, residual=True)
    torch.testing.assert_close(shifted[2][0].bias, unshifted[2][0].bias - 1.0)
    torch.testing.assert_close(shifted[3].bias, unshifted[3].bias)
    x = torch.randn(4, 16)
    block = Residual(nn.Linear(16, 16), nn.GELU())
    torch.testing.assert_close(block(x), x + F.gelu(block[0](x)))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: mlp([4, 3, 2], residual=True), ValueError, "residual=True needs a hidden layer"),
        (lambda: mlp([4, 3, 3, 2], batch_norm=1), TypeError, "batch_norm must be a bool"),
        (lambda: mlp([4, 3, 3, 2], residual="yes"), TypeError, "residual must be a bool"),
        (lambda: mlp([4, 3, 2], "swish"), ValueError, "must be one of"),
    ],
)
def test_mlp_rejects_bad_options(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "models, match",
    [
        ([mlp([3, 4, 2], batch_norm=True), mlp([3, 4, 2])], r"models\[1\] must have batch norms"),
        (
            [mlp([3, 4, 4, 2], residual=True), mlp([3, 4, 4, 2])],
            r"models\[1\] must have skip connections",
        ),
        (
            [
                nn.Sequential(
                    nn.Linear(3, 4), nn.BatchNorm1d(4, affine=False), nn.ReLU(), nn.Linear(4, 2)
                )
            ],
            r"models\[0\]\[1\] must be nn.BatchNorm1d\(4\) with affine",
        ),
        (
            [
                nn.Sequential(
                    nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=None), nn.ReLU(), nn.Linear(4, 2)
                )
            ],
            "numeric momentum",
        ),
        (
            [
                nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)),
                nn.Sequential(
                    nn.Linear(3, 4), nn.BatchNorm1d(4, eps=1e-3), nn.ReLU(), nn.Linear(4, 2)
                ),
            ],
            r"models\[1\] must have batch norms \(with eps and momentum\)",
        ),
        (
            [nn.Sequential(Residual(nn.Linear(3, 4), nn.ReLU()), nn.Linear(4, 2))],
            r"models\[0\]\[0\] is a Residual layer from 3 to 4 units",
        ),
        (
            [nn.Sequential(Residual(nn.Linear(4, 4), nn.ReLU(), nn.ReLU()), nn.Linear(4, 2))],
            "alternate Linear",
        ),
        (
            [nn.Sequential(nn.Linear(3, 4), nn.ELU(alpha=0.5), nn.Linear(4, 2))],
            r"models\[0\]\[1\] must be nn.ReLU.*nn.ELU\(alpha=1\)",
        ),
        (
            [nn.Sequential(nn.Linear(3, 4), nn.RReLU(0.1, 0.3), nn.Linear(4, 2))],
            r"nn.RReLU\(1/8, 1/3\)",
        ),
        (
            [nn.Sequential(Residual(nn.Linear(4, 4), nn.GELU("tanh")), nn.Linear(4, 2))],
            r"models\[0\]\[0\]\[1\] must be nn.ReLU",
        ),
        ([Residual(nn.Linear(4, 4), nn.ReLU())], r"models\[0\] must be an nn.Sequential"),
        ([nn.Sequential(nn.ReLU(), nn.Linear(3, 2))], "alternate Linear"),
        ([nn.Sequential(Residual(), nn.Linear(4, 2))], "alternate Linear"),
    ],
)
def test_stacking_rejects_mismatched_or_unsupported_layers(models, match):
    with pytest.raises((ValueError, TypeError), match=match):
        BatchedMLP(models)


def test_unstack_round_trips_every_layer_kind():
    nets = [
        mlp([6, 5, 5, 3], a, seed=i, batch_norm=True, residual=True)
        for i, a in enumerate(["rrelu", "elu", "gelu", "silu", "prelu_channelwise", 0.3, 0.0])
    ]
    for net in nets:
        net(torch.randn(8, 6))  # move the running statistics off their initial values
    batched = BatchedMLP(nets)
    assert_same_state(batched, nets, rtol=0, rounding_rtol=0)
    assert batched.unstack(0).training and not batched.eval().unstack(0).training


def test_docstring_examples():
    result = doctest.testmod(stacked_module, extraglobs={"torch": torch, "nn": nn})
    assert result.attempted > 0 and result.failed == 0


def test_fixed_slopes_stay_exact_after_converting_the_stack_to_float64():
    # The slopes are rounded to the tensor's dtype from the Python floats, as F.leaky_relu
    # does, not taken from a float32 buffer converted by .double().
    slopes = [0.01, 0.1, 1 / 3, "rrelu"]
    batched = batched_mlp([3, 6, 2], slopes, [0, 1, 2, 3]).double().eval()
    z = torch.randn(4, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = batched._activate(0, z)
    for m, slope in enumerate(slopes[:3] + [11 / 48]):
        assert torch.equal(out[m], F.leaky_relu(z[m], slope)), m


def test_fixed_slopes_after_batch_norm_match_one_by_one_forward_and_backward():
    # Batch norm hands the activation a non-contiguous (M, N, d) view: the one-kernel forward
    # and the per-run backward must still give each model's own values and gradients.
    slopes = [0.0, 0.01, 0.01, 0.2]
    nets = [mlp([5, 6, 6, 3], a, seed=i, batch_norm=True).double() for i, a in enumerate(slopes)]
    batched = BatchedMLP(nets)
    x = torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    batched(x).square().sum().backward()
    for m, net in enumerate(nets):
        net(x).square().sum().backward()
        torch.testing.assert_close(batched.weights[1].grad[m], net[3].weight.grad.t())
        torch.testing.assert_close(batched.norm_weights["0"].grad[m], net[1].weight.grad)
    assert batched.weights[0].grad.abs().sum() > 0


EXACT_LOSS = torch.backends.cpu.get_cpu_capability() == "AVX512"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("models", "n"), [(40, 100), (7, 33), (1, 1), (3, 16)])
def test_losses_equal_each_models_cross_entropy(dtype, models, n):
    """``losses`` lays the classes along dim 0 for speed; its values, and the gradients that
    reach a last layer before it, are those of each model's per-example ``F.cross_entropy``
    averaged: bit for bit in float32 on AVX-512 (the CPU the chapters' outputs come from), to
    rounding elsewhere."""
    g = torch.Generator().manual_seed(models * 1000 + n)
    exact = dtype == torch.float32 and EXACT_LOSS
    for scale in (0.1, 3.0, 30.0):
        h = torch.randn(models, n, 20, generator=g, dtype=dtype)
        w = torch.randn(models, 20, 10, generator=g, dtype=dtype) * scale
        b = torch.randn(models, 1, 10, generator=g, dtype=dtype)
        y = torch.randint(0, 10, (models, n), generator=g)
        weights = torch.rand(models, generator=g, dtype=dtype)
        results = []
        for loss in (
            stacked_module.losses,
            lambda z, y: torch.stack(
                [F.cross_entropy(z[m], y[m], reduction="none").mean() for m in range(models)]
            ),
        ):
            hh, ww, bb = (t.clone().requires_grad_() for t in (h, w, b))
            value = loss(torch.baddbmm(bb, hh, ww), y)
            (value * weights).sum().backward()
            # The bias's gradient sums the logits' gradient over examples: in another layout
            # it would sum in another order.
            results.append((value, hh.grad, ww.grad, bb.grad))
        for got, expected in zip(*results, strict=True):
            if exact:
                assert torch.equal(got, expected)
            else:
                tolerance = 1e-12 if dtype == torch.float64 else 1e-5
                torch.testing.assert_close(got, expected, rtol=0, atol=tolerance * scale)


def test_losses_shared_labels():
    """Labels of shape (N,) are every model's."""
    logits = torch.randn(3, 5, 10, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 9, 3, 3, 1])
    torch.testing.assert_close(
        stacked_module.losses(logits, y),
        stacked_module.losses(logits, y.expand(3, 5)),
        rtol=0,
        atol=0,
    )
