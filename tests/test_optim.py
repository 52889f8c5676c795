"""rectifiers.optim.param_groups: roles by module type, each trainable parameter exactly once."""

from __future__ import annotations

import math

import pytest
import torch
from doctest_helpers import assert_examples_pass
from torch import nn

from rectifiers.optim import NORM_LAYERS, param_groups

pytestmark = pytest.mark.usefixtures("single_thread")


def _ids(params):
    return {id(p) for p in params}


def _split(model, weight_decay=1e-2):
    groups = param_groups(model, weight_decay)
    assert [g["name"] for g in groups] == ["decay", "no_decay"]
    assert groups[0]["weight_decay"] == weight_decay and groups[1]["weight_decay"] == 0.0
    decay, no_decay = groups[0]["params"], groups[1]["params"]
    # every trainable parameter exactly once, nothing else
    everything = decay + no_decay
    assert len(everything) == len(_ids(everything))
    assert _ids(everything) == {id(p) for p in model.parameters() if p.requires_grad}
    return decay, no_decay


def test_sequential_prelu_is_found_where_name_based_grouping_misses_it():
    model = nn.Sequential(nn.Linear(4, 8), nn.PReLU(), nn.Linear(8, 2))
    names = [name for name, _ in model.named_parameters()]
    assert "1.weight" in names  # the PReLU slope has no "prelu" in its name
    # The common recipe: decide by the parameter's name.
    name_based_no_decay = [p for n, p in model.named_parameters() if "prelu" in n.lower()]
    assert name_based_no_decay == []  # ... so it decays the slope
    decay, no_decay = _split(model)
    slope = model[1].weight
    assert id(slope) in _ids(no_decay) and id(slope) not in _ids(decay)
    assert _ids(decay) == {id(model[0].weight), id(model[2].weight)}
    assert _ids(no_decay) == {id(slope), id(model[0].bias), id(model[2].bias)}


def test_conv_batchnorm_prelu_per_channel():
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.PReLU(num_parameters=16))
    decay, no_decay = _split(model)
    assert _ids(decay) == {id(model[0].weight)}
    assert _ids(no_decay) == {
        id(model[0].bias),
        id(model[1].weight),
        id(model[1].bias),
        id(model[2].weight),
    }


class _Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)
        self.act = nn.PReLU(width)

    def forward(self, x):
        return self.act(self.norm(self.fc(x)))


class _Deep(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv1d(2, 4, 3, bias=False)
        self.blocks = nn.ModuleList(
            [nn.Sequential(_Block(4), nn.ModuleDict({"inner": _Block(4)})) for _ in range(2)]
        )
        self.rnn = nn.GRU(4, 4)
        self.attn = nn.MultiheadAttention(4, 2, add_bias_kv=True)
        self.head = nn.Linear(4, 3)


def test_nested_modules_any_depth():
    model = _Deep()
    decay, no_decay = _split(model)
    slopes = [m.weight for m in model.modules() if isinstance(m, nn.PReLU)]
    norms = [p for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()]
    assert len(slopes) == 4 and len(norms) == 8
    assert _ids(slopes) | _ids(norms) <= _ids(no_decay)
    named = dict(model.named_parameters())
    expected_decay = {
        "stem.weight",
        "rnn.weight_ih_l0",
        "rnn.weight_hh_l0",
        "attn.in_proj_weight",
        "attn.out_proj.weight",
        "head.weight",
    } | {n for n in named if n.endswith("fc.weight")}
    assert _ids(decay) == {id(named[n]) for n in expected_decay}
    for n in [
        "rnn.bias_ih_l0",
        "rnn.bias_hh_l0",
        "attn.in_proj_bias",
        "attn.bias_k",
        "attn.bias_v",
        "head.bias",
    ]:
        assert id(named[n]) in _ids(no_decay), n


def test_tied_weights_appear_once():
    a, b = nn.Linear(5, 5), nn.Linear(5, 5)
    b.weight = a.weight  # tied
    model = nn.Sequential(a, nn.ReLU(), b, a)  # and a module used twice
    decay, no_decay = _split(model)
    assert [id(p) for p in decay] == [id(a.weight)]
    assert _ids(no_decay) == {id(a.bias), id(b.bias)}


def test_shared_parameter_in_both_roles_is_not_decayed():
    # One Parameter that is a LayerNorm's scale and also a plain (decayed) parameter of another
    # module; another that is a PReLU slope and a plain parameter. No decay wins, whatever the
    # order in which the modules are met.
    lin, norm, prelu = nn.Linear(6, 6), nn.LayerNorm(6), nn.PReLU()
    holder = nn.Module()
    holder.scale = norm.weight
    holder.gate = prelu.weight
    for model in (nn.Sequential(lin, norm, prelu, holder), nn.Sequential(holder, lin, prelu, norm)):
        decay, no_decay = _split(model)
        assert _ids(decay) == {id(lin.weight)}
        assert {id(norm.weight), id(prelu.weight)} <= _ids(no_decay)


def test_frozen_parameters_are_left_out():
    model = nn.Sequential(nn.Linear(3, 3), nn.PReLU(), nn.Linear(3, 3))
    model[0].weight.requires_grad_(False)
    model[1].weight.requires_grad_(False)
    decay, no_decay = _split(model)
    assert _ids(decay) == {id(model[2].weight)}
    assert _ids(no_decay) == {id(model[0].bias), id(model[2].bias)}


def test_empty_groups_are_kept_and_accepted_by_optimizers():
    model = nn.Sequential(nn.Linear(3, 3, bias=False))
    groups = param_groups(model, 0.1)
    assert len(groups[0]["params"]) == 1 and groups[1]["params"] == []
    torch.optim.AdamW(groups, lr=1e-3)
    assert [g["params"] for g in param_groups(nn.ReLU(), 0.1)] == [[], []]


@pytest.mark.parametrize("norm", [c for c in NORM_LAYERS if c not in (nn.SyncBatchNorm,)])
def test_every_norm_layer_is_exempt(norm):
    if norm in (nn.LocalResponseNorm, nn.CrossMapLRN2d):
        layer = norm(3)  # no parameters, but must not break anything
    elif norm is nn.GroupNorm:
        layer = norm(2, 4)
    elif norm.__name__.startswith("Lazy"):
        layer = norm()
    elif norm.__name__.startswith("InstanceNorm"):
        layer = norm(4, affine=True)
    else:
        layer = norm(4)
    model = nn.Sequential(nn.Linear(4, 4), layer)
    decay, no_decay = _split(model)
    assert _ids(decay) == {id(model[0].weight)}
    assert _ids(no_decay) == {id(model[0].bias)} | _ids(layer.parameters())


def test_adamw_decays_weights_but_not_slopes():
    # End to end: with a zero gradient AdamW's step is pure decay, so exactly the decayed
    # group moves, and the PReLU slope stays put.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.PReLU(), nn.BatchNorm1d(3))
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(param_groups(model, 0.5), lr=0.1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    moved = [
        not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters(), strict=True)
    ]
    names = [n for n, _ in model.named_parameters()]
    assert dict(zip(names, moved, strict=True)) == {
        "0.weight": True,
        "0.bias": False,
        "1.weight": False,
        "2.weight": False,
        "2.bias": False,
    }
    assert torch.allclose(model[0].weight.detach(), before[0] * (1 - 0.1 * 0.5))
    assert [g["name"] for g in opt.param_groups] == ["decay", "no_decay"]


def test_zero_weight_decay_is_allowed():
    groups = param_groups(nn.Linear(2, 2), 0)
    assert groups[0]["weight_decay"] == 0.0 and isinstance(groups[0]["weight_decay"], float)


@pytest.mark.parametrize("bad", [True, False, "0.01", None, torch.tensor(0.01)])
def test_weight_decay_type_errors(bad):
    with pytest.raises(TypeError, match="weight_decay"):
        param_groups(nn.Linear(2, 2), bad)


@pytest.mark.parametrize("bad", [-1e-4, math.nan, math.inf])
def test_weight_decay_value_errors(bad):
    with pytest.raises(ValueError, match="weight_decay"):
        param_groups(nn.Linear(2, 2), bad)


@pytest.mark.parametrize("bad", [None, [nn.Linear(2, 2)], nn.Linear(2, 2).parameters()])
def test_model_type_error(bad):
    with pytest.raises(TypeError, match="model"):
        param_groups(bad, 0.1)


def test_docstring_examples():
    import rectifiers.optim as module

    assert_examples_pass(module)
