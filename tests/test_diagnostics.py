"""rectifiers.diagnostics: dead units and pre-activation recording."""

from __future__ import annotations

import math

import pytest
import torch
from doctest_helpers import assert_examples_pass
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from rectifiers.diagnostics import (
    RECTIFIERS,
    activation_stats,
    dead_fraction,
    record_preactivations,
)

pytestmark = pytest.mark.usefixtures("single_thread")


# ---------------------------------------------------------------- dead_fraction


def _dead_fraction_by_loops(z: torch.Tensor) -> float:
    units = z.reshape(z.shape[0], -1)
    dead = 0
    for u in range(units.shape[1]):
        dead += all(units[n, u].item() <= 0 for n in range(units.shape[0]))
    return dead / units.shape[1]


@given(
    batch=st.integers(1, 5),
    unit_shape=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]),
    seed=st.integers(0, 2**31 - 1),
    bias=st.floats(-2.0, 1.0),
)
def test_dead_fraction_matches_definition(batch, unit_shape, dtype, seed, bias):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(batch, *unit_shape, generator=g) + bias).to(dtype)
    # sprinkle exact zeros of both signs and NaNs
    pick = torch.randint(0, 12, z.shape, generator=g)
    z = torch.where(pick == 0, torch.tensor(-0.0, dtype=dtype), z)
    z = torch.where(pick == 1, torch.tensor(0.0, dtype=dtype), z)
    z = torch.where(pick == 2, torch.tensor(math.nan, dtype=dtype), z)
    got = dead_fraction(z)
    assert isinstance(got, float)
    assert got == _dead_fraction_by_loops(z)
    assert 0.0 <= got <= 1.0


def test_dead_fraction_by_hand():
    z = torch.tensor([[-1.0, 2.0, 0.0, -0.0], [-3.0, -1.0, 0.0, 5.0]])
    assert dead_fraction(z) == 0.5  # units 0 and 2
    assert dead_fraction(torch.full((3, 4), -1.0)) == 1.0
    assert dead_fraction(torch.ones(3, 4)) == 0.0
    assert dead_fraction(torch.tensor([[math.nan], [-1.0]])) == 0.0  # NaN is not <= 0
    # conv-shaped: (N, C, L) has C*L units
    z = torch.ones(2, 3, 4)
    z[:, 1, 2] = -1.0
    assert dead_fraction(z) == 1 / 12


def test_dead_fraction_keeps_graph_and_input():
    z = torch.tensor([[-1.0, 1.0]], requires_grad=True)
    assert dead_fraction(z) == 0.5
    assert z.tolist() == [[-1.0, 1.0]]


@pytest.mark.parametrize(
    "bad",
    [[[0.0]], None, torch.zeros(2, 2, dtype=torch.int64), torch.zeros(2, 2, dtype=torch.bool)],
)
def test_dead_fraction_type_errors(bad):
    with pytest.raises(TypeError, match="pre_activations"):
        dead_fraction(bad)


@pytest.mark.parametrize("shape", [(), (5,), (0, 3), (0,), (4, 0), (2, 3, 0)])
def test_dead_fraction_value_errors(shape):
    with pytest.raises(ValueError, match="pre_activations"):
        dead_fraction(torch.zeros(shape))


# ---------------------------------------------------------------- record_preactivations


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 5)
        self.act1 = nn.ReLU(inplace=True)
        self.block = nn.Sequential(nn.Linear(5, 4), nn.LeakyReLU(0.1))
        self.fc3 = nn.Conv1d(1, 2, 2)
        self.act3 = nn.PReLU(2)
        self.gelu = nn.GELU()

    def forward(self, x):
        h = self.block(self.act1(self.fc1(x)))
        h = self.act3(self.fc3(h.unsqueeze(1)))
        return self.gelu(h)


def _hook_count(model):
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def test_records_inputs_of_every_rectifier():
    torch.manual_seed(0)
    net = _Net()
    x = torch.randn(6, 3)
    with record_preactivations(net) as z:
        net(x)
        assert _hook_count(net) == 3
    assert list(z) == ["act1", "block.1", "act3"]
    pre1 = net.fc1(x)
    # the in-place ReLU overwrote its input; the recording is the value before that
    assert torch.equal(z["act1"], pre1) and (z["act1"] < 0).any()
    pre2 = net.block[0](torch.relu(pre1))
    assert torch.equal(z["block.1"], pre2)
    assert torch.equal(z["act3"], net.fc3(net.block(torch.relu(pre1)).unsqueeze(1)))
    assert all(not t.requires_grad for t in z.values())
    assert _hook_count(net) == 0


def test_later_forward_replaces_earlier_and_dict_survives_exit():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    a, b = torch.randn(3, 2), torch.randn(4, 2)
    with record_preactivations(net) as z:
        net(a)
        net(b)
    assert z["1"].shape == (4, 2)
    net(a)  # no hooks any more: nothing changes
    assert z["1"].shape == (4, 2)


def test_hooks_removed_when_the_block_raises():
    net = _Net()
    with pytest.raises(RuntimeError, match="shape"), record_preactivations(net):
        assert _hook_count(net) == 3
        net(torch.randn(2, 7))  # wrong input size
    assert _hook_count(net) == 0
    with pytest.raises(KeyError), record_preactivations(net):
        raise KeyError("boom")
    assert _hook_count(net) == 0


def test_custom_types_and_existing_hooks_untouched():
    net = _Net()
    handle = net.gelu.register_forward_hook(lambda *args: None)
    with record_preactivations(net, types=nn.GELU) as z:
        net(torch.randn(2, 3))
    assert list(z) == ["gelu"]
    assert len(net.gelu._forward_hooks) == 1  # only ours were removed
    handle.remove()


def test_root_module_is_recorded_under_empty_name():
    act = nn.LeakyReLU()
    with record_preactivations(act) as z:
        act(torch.tensor([[-1.0, 1.0]]))
    assert list(z) == [""]


def test_record_argument_errors():
    with pytest.raises(TypeError, match="model"), record_preactivations(lambda x: x):
        pass
    for bad in ((), [nn.ReLU], (nn.ReLU, "relu"), (torch.relu,), None):
        with pytest.raises(TypeError, match="types"), record_preactivations(nn.ReLU(), types=bad):
            pass


def test_default_types():
    assert (nn.ReLU, nn.LeakyReLU, nn.PReLU) == RECTIFIERS


# ---------------------------------------------------------------- activation_stats


def test_activation_stats_values():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3), nn.LeakyReLU(0.1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.eye(3))
        net[2].bias.copy_(torch.tensor([0.0, -10.0, 1.0]))
    x = torch.tensor([[1.0, -1.0], [2.0, 0.0]])
    # layer "1" input: [[1, -1, 0], [2, 0, -2]]: units 1 and 2 never > 0 -> 2/3 dead;
    # zeros of the ReLU output: -1, 0, 0, -2 -> 4 of 6; negatives: -1, -2 -> 2 of 6.
    # layer "3" input: [[1, 0, 0], [2, 0, 0]] + bias = [[1, -10, 1], [2, -10, 1]]: unit 1 dead.
    stats = activation_stats(net, x)
    assert stats == {
        "1": {"dead_fraction": 2 / 3, "zero_fraction": 4 / 6, "negative_fraction": 2 / 6},
        "3": {"dead_fraction": 1 / 3, "zero_fraction": 0.0, "negative_fraction": 2 / 6},
    }
    assert all(isinstance(v, float) for s in stats.values() for v in s.values())


def test_activation_stats_uses_eval_mode_and_restores_every_flag():
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.9), nn.ReLU(), nn.BatchNorm1d(4), nn.ReLU())
    net.train()
    net[3].eval()  # deliberately frozen part
    x = torch.randn(32, 4)
    seen = []
    net[1].register_forward_hook(
        lambda m, a, out: seen.append((m.training, torch.is_grad_enabled()))
    )
    running = net[3].running_mean.clone()
    with record_preactivations(net) as z, torch.no_grad():
        net.eval()
        net(x)
        net.train()
        net[3].eval()
    stats = activation_stats(net, x)
    assert seen[-1] == (False, False)  # dropout off, no graph
    assert [m.training for m in net.modules()] == [True, True, True, True, False, True]
    assert torch.equal(net[3].running_mean, running)
    assert stats["2"]["dead_fraction"] == dead_fraction(z["2"])
    assert stats["4"]["negative_fraction"] == (z["4"] < 0).float().mean().item()


def test_activation_stats_restores_modes_when_forward_raises():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    net.train()
    with pytest.raises(RuntimeError):
        activation_stats(net, torch.randn(2, 5))
    assert all(m.training for m in net.modules())
    assert _hook_count(net) == 0


def test_activation_stats_model_without_rectifiers():
    assert activation_stats(nn.Linear(2, 2), torch.randn(3, 2)) == {}


def test_activation_stats_custom_types_and_unbatched_layer():
    net = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
    assert list(activation_stats(net, torch.randn(3, 2), types=(nn.Tanh,))) == ["1"]
    with pytest.raises(ValueError, match="'1'.*pre_activations"):
        activation_stats(net, torch.randn(2), types=(nn.Tanh,))


def test_activation_stats_argument_errors():
    with pytest.raises(TypeError, match="model"):
        activation_stats(None, torch.randn(2, 2))
    with pytest.raises(TypeError, match="x"):
        activation_stats(nn.ReLU(), [[1.0, 2.0]])
    with pytest.raises(TypeError, match="types"):
        activation_stats(nn.ReLU(), torch.randn(2, 2), types=())


def test_docstring_examples():
    import rectifiers.diagnostics as module

    assert_examples_pass(module)
