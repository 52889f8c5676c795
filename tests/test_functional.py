"""rectifiers.functional against PyTorch's own kernels and autograd, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from doctest_helpers import assert_examples_pass
from hypothesis import given
from hypothesis import strategies as st

from rectifiers import functional as R

pytestmark = pytest.mark.usefixtures("single_thread")

FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
REDUCED = (torch.float16, torch.bfloat16)
_INT_VIEW = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}
SPECIALS = [0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan, 1.0, -1.0]
FLOAT32_MAX = torch.finfo(torch.float32).max


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bit patterns of ``t`` as integers (a copy, so views of any layout work)."""
    return t.contiguous().view(_INT_VIEW[t.dtype])


def assert_identical(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Same dtype, shape and bits. For float16/bfloat16 a NaN need only be a NaN: PyTorch's own
    NaN payload there depends on the element's position in memory (see rectifiers.functional)."""
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    if actual.dtype in REDUCED:
        nan = torch.isnan(expected)
        assert torch.equal(torch.isnan(actual), nan), "NaN in different places"
        assert torch.equal(bits(actual)[~nan], bits(expected)[~nan])
    else:
        assert torch.equal(bits(actual), bits(expected))


def assert_same_layout(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Same memory layout: equal strides on every dim that has more than one element (the
    stride of a dim of size 1, or of any dim of an empty tensor, is never used)."""
    if actual.numel() == 0:
        return
    for size, a, e in zip(actual.shape, actual.stride(), expected.stride(), strict=True):
        assert size <= 1 or a == e, (actual.stride(), expected.stride())


# ---------------------------------------------------------------- building test inputs


def make_tensor(shape, dtype, layout, seed, scale=1.0, specials=True):
    """A tensor of logical ``shape`` in the given memory ``layout`` with random values, about a
    quarter of them replaced by special values (zeros of both signs, infinities, NaNs)."""
    shape = tuple(shape)
    if layout == "transposed" and len(shape) >= 2:
        base_shape = shape[::-1]
    elif layout == "strided" and len(shape) >= 1:
        base_shape = shape[:-1] + (2 * shape[-1],)
    elif layout == "expanded" and len(shape) >= 1:
        base_shape = (1,) + shape[1:]
    else:
        base_shape = shape
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(base_shape, generator=g, dtype=torch.float64) * scale
    if specials and base.numel():
        pick = torch.randint(0, len(SPECIALS) * 4, base_shape, generator=g)
        for i, v in enumerate(SPECIALS):
            base = torch.where(pick == i, torch.tensor(v, dtype=torch.float64), base)
    base = base.to(dtype)
    if layout == "transposed" and len(shape) >= 2:
        x = base.permute(*reversed(range(len(shape))))
    elif layout == "strided" and len(shape) >= 1:
        x = base[..., ::2]
    elif layout == "expanded" and len(shape) >= 1:
        x = base.expand(shape)
    else:
        x = base
    assert x.shape == shape
    return x


shapes = st.lists(st.integers(0, 4), min_size=0, max_size=4)
layouts = st.sampled_from(["contiguous", "transposed", "strided", "expanded"])
dtypes = st.sampled_from(FLOAT_DTYPES)
seeds = st.integers(0, 2**31 - 1)
slopes = st.one_of(
    st.sampled_from(
        [0.0, -0.0, 0.01, -0.01, 1.0, -1.0, 2.5, 100.0, 1e-30, 1e-45, 1e30, FLOAT32_MAX]
    ),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.integers(-5, 5),
)


def _slope_ok(slope, dtype):
    return dtype == torch.float64 or abs(slope) <= FLOAT32_MAX


# ---------------------------------------------------------------- forward: bit for bit


@given(shape=shapes, dtype=dtypes, layout=layouts, seed=seeds)
def test_relu_matches_torch(shape, dtype, layout, seed):
    x = make_tensor(shape, dtype, layout, seed)
    before = bits(x).clone()
    out = R.relu(x)
    assert_identical(out, F.relu(x))
    assert_same_layout(out, F.relu(x))
    assert_identical(out, torch.relu(x))
    assert torch.equal(bits(x), before), "input modified"


@given(shape=shapes, dtype=dtypes, layout=layouts, seed=seeds, slope=slopes)
def test_leaky_relu_matches_torch(shape, dtype, layout, seed, slope):
    x = make_tensor(shape, dtype, layout, seed, scale=10.0)
    before = bits(x).clone()
    if _slope_ok(slope, dtype):
        out, ref = R.leaky_relu(x, slope), F.leaky_relu(x, slope)
        assert_identical(out, ref)
        assert_same_layout(out, ref)
    else:
        with pytest.raises(RuntimeError):
            F.leaky_relu(x, slope)
        with pytest.raises(ValueError, match="negative_slope"):
            R.leaky_relu(x, slope)
    assert torch.equal(bits(x), before), "input modified"


@given(shape=shapes, dtype=dtypes, layout=layouts, seed=seeds, shared=st.booleans())
def test_prelu_matches_torch(shape, dtype, layout, seed, shared):
    x = make_tensor(shape, dtype, layout, seed, scale=10.0)
    channels = x.shape[1] if x.dim() >= 2 else 1
    n = 1 if shared else channels
    w = make_tensor((n,), dtype, "contiguous", seed + 1, specials=False)
    before_x, before_w = bits(x).clone(), bits(w).clone()
    out, ref = R.prelu(x, w), F.prelu(x, w)
    assert_identical(out, ref)
    assert_same_layout(out, ref)
    assert torch.equal(bits(x), before_x) and torch.equal(bits(w), before_w), "input modified"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("slope", [0.01, -0.0, -1.0 / 3.0, 1e-45, 1e10])
def test_leaky_relu_every_half_precision_number(dtype, slope):
    # All 65536 bit patterns: the float32 arithmetic and single rounding of the kernel,
    # including overflow to infinity and underflow of the slope.
    x = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
    assert_identical(R.leaky_relu(x, slope), F.leaky_relu(x, slope))
    assert_identical(R.leaky_relu_grad(x, slope), _autograd(lambda t: F.leaky_relu(t, slope), x))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_relu_and_prelu_every_half_precision_number(dtype):
    x = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
    assert_identical(R.relu(x), F.relu(x))
    assert_identical(R.relu_grad(x), _autograd(F.relu, x))
    for a in [0.25, -0.5, 3.0, 0.0, -0.0]:
        w = torch.tensor([a], dtype=dtype)
        assert_identical(R.prelu(x, w), F.prelu(x, w))


@pytest.mark.parametrize(
    "dtype,int_dtype", [(torch.float32, torch.int32), (torch.float64, torch.int64)]
)
def test_random_bit_patterns_single_and_double(dtype, int_dtype):
    # Uniform random bits hit every class of number: subnormals, huge values, and NaNs with
    # all kinds of payloads (signalling ones included), whose bits must match too.
    info = torch.iinfo(int_dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(info.min, info.max, (200_003,), generator=g, dtype=int_dtype).view(dtype)
    assert torch.isnan(x).any()
    assert torch.equal(bits(R.relu(x)), bits(F.relu(x)))
    for slope in [0.01, -0.3, 1e-38, 7.5]:
        assert torch.equal(bits(R.leaky_relu(x, slope)), bits(F.leaky_relu(x, slope)))
    w = torch.tensor([0.3, -0.0, -2.0], dtype=dtype)
    x3 = x[:200_001].reshape(-1, 3)
    assert torch.equal(bits(R.prelu(x3, w)), bits(F.prelu(x3, w)))
    assert torch.equal(bits(R.prelu(x3, w[:1])), bits(F.prelu(x3, w[:1])))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_nan_slope(dtype):
    # When x and its slope are both NaN PyTorch returns one or the other depending on which of
    # its loops ran, so here only NaN-ness is compared (assert_identical does that for all
    # dtypes once payloads are masked).
    x = make_tensor((64, 3), dtype, "contiguous", 3)
    w = torch.tensor([0.3, math.nan, -2.0], dtype=dtype)
    ours, ref = R.prelu(x, w), F.prelu(x, w)
    assert torch.equal(torch.isnan(ours), torch.isnan(ref))
    assert torch.isnan(ours[:, 1][~(x[:, 1] > 0)]).all()
    finite = ~torch.isnan(ref)
    assert torch.equal(bits(ours)[finite], bits(ref)[finite])


def test_documented_special_values():
    x = torch.tensor([-0.0, 0.0, math.nan, math.inf, -math.inf, -2.0, 3.0])
    # relu keeps -0.0 and NaN and maps -inf to +0.
    expected = torch.tensor([-0.0, 0.0, math.nan, math.inf, 0.0, 0.0, 3.0])
    assert bits(R.relu(x)).tolist() == bits(expected).tolist()
    # Zero takes the negative branch: -0.0 * -0.5 = +0.0 and +0.0 * -0.5 = -0.0.
    y = R.leaky_relu(x, -0.5)
    assert torch.signbit(y[:2]).tolist() == [False, True]
    # A zero slope times -inf is NaN, as in PyTorch, not 0.
    assert math.isnan(R.leaky_relu(torch.tensor([-math.inf]), 0.0).item())


@pytest.mark.parametrize("slope", [2.0, 5.0])
def test_leaky_relu_is_not_max_above_one(slope):
    x = torch.tensor([-1.0, 1.0])
    assert R.leaky_relu(x, slope).tolist() == [-slope, 1.0]
    assert torch.maximum(x, slope * x).tolist() != [-slope, 1.0]


def test_slope_rounding_for_half_precision_goes_through_float32():
    # A slope whose float16 rounding differs depending on whether it passes through float32
    # (double rounding): PyTorch rounds to float32 first; so must we.
    slope = 1.0 + 2.0**-11 + 2.0**-40  # just above the float16 tie at 1 + 2^-11
    # Rounded once to float16 it is 1 + 2^-10; rounded to float32 first it is the tie
    # 1 + 2^-11, which float16 rounds to even: 1.
    assert np.float16(slope) == 1.0 + 2.0**-10
    assert np.float16(np.float32(slope)) == 1.0
    x = torch.tensor([-1.0], dtype=torch.float16)
    assert_identical(R.leaky_relu(x, slope), F.leaky_relu(x, slope))
    assert R.leaky_relu(x, slope).item() == -1.0
    assert R.leaky_relu_grad(x, slope).item() == 1.0


def test_float32_slope_limit():
    x = torch.tensor([-1.0, 2.0])
    assert_identical(R.leaky_relu(x, FLOAT32_MAX), F.leaky_relu(x, FLOAT32_MAX))
    above = math.nextafter(FLOAT32_MAX, math.inf)
    with pytest.raises(RuntimeError):
        F.leaky_relu(x, above)
    for fn in (R.leaky_relu, R.leaky_relu_grad):
        with pytest.raises(ValueError, match="negative_slope"):
            fn(x, above)
        with pytest.raises(ValueError, match="negative_slope"):
            fn(x.half(), -above)
    # float64 inputs take any finite slope.
    x64 = x.double()
    assert_identical(R.leaky_relu(x64, 1e300), F.leaky_relu(x64, 1e300))


def test_output_is_a_new_tensor():
    x = torch.tensor([1.0, 2.0])
    for out in (R.relu(x), R.leaky_relu(x), R.prelu(x, torch.tensor([0.1]))):
        out.add_(1.0)
    assert x.tolist() == [1.0, 2.0]


# ---------------------------------------------------------------- gradients


def _autograd(fn, x, grad_output=None):
    xr = x.detach().clone().requires_grad_(True)
    y = fn(xr)
    (g,) = torch.autograd.grad(y, xr, torch.ones_like(y) if grad_output is None else grad_output)
    return g


@given(shape=shapes, dtype=dtypes, layout=layouts, seed=seeds)
def test_relu_grad_matches_autograd(shape, dtype, layout, seed):
    x = make_tensor(shape, dtype, layout, seed)
    assert_identical(R.relu_grad(x), _autograd(F.relu, x))


@given(shape=shapes, dtype=dtypes, layout=layouts, seed=seeds, slope=slopes)
def test_leaky_relu_grad_matches_autograd(shape, dtype, layout, seed, slope):
    x = make_tensor(shape, dtype, layout, seed)
    if not _slope_ok(slope, dtype):
        with pytest.raises(ValueError, match="negative_slope"):
            R.leaky_relu_grad(x, slope)
        return
    assert_identical(R.leaky_relu_grad(x, slope), _autograd(lambda t: F.leaky_relu(t, slope), x))


def test_grad_conventions_at_the_kink():
    x = torch.tensor([-0.0, 0.0, math.nan], dtype=torch.float64)
    assert R.relu_grad(x)[:2].tolist() == [0.0, 0.0]
    assert R.relu_grad(x)[2].item() == 1.0  # autograd passes the gradient through a NaN
    assert R.leaky_relu_grad(x, 0.2).tolist() == [0.2, 0.2, 0.2]
    for slope in (0.2, -0.0):
        expected = _autograd(lambda t, slope=slope: F.leaky_relu(t, slope), x)
        assert_identical(R.leaky_relu_grad(x, slope), expected)
    assert_identical(R.relu_grad(x), _autograd(F.relu, x))


def _prelu_autograd(x, w, grad_output):
    xr = x.detach().clone().requires_grad_(True)
    wr = w.detach().clone().requires_grad_(True)
    return torch.autograd.grad(F.prelu(xr, wr), (xr, wr), grad_output)


@given(
    shape=shapes,
    dtype=dtypes,
    layout=layouts,
    grad_layout=layouts,
    seed=seeds,
    shared=st.booleans(),
)
def test_prelu_grads_match_autograd(shape, dtype, layout, grad_layout, seed, shared):
    x = make_tensor(shape, dtype, layout, seed, scale=4.0)
    channels = x.shape[1] if x.dim() >= 2 else 1
    w = make_tensor((1 if shared else channels,), dtype, "contiguous", seed + 1, specials=False)
    g = make_tensor(shape, dtype, grad_layout, seed + 2, specials=False)
    before = [bits(t).clone() for t in (x, w, g)]
    grad_input, grad_weight = R.prelu_grads(x, w, g)
    expected_input, expected_weight = _prelu_autograd(x, w, g)
    assert_identical(grad_input, expected_input)
    assert_identical(grad_weight, expected_weight)
    assert grad_weight.shape == w.shape
    assert all(torch.equal(bits(t), b) for t, b in zip((x, w, g), before, strict=True)), (
        "input modified"
    )


def test_prelu_grads_by_hand():
    x = torch.tensor([[-2.0, 3.0], [0.0, -1.0], [4.0, -0.5]])  # N=3, C=2
    w = torch.tensor([0.25, 0.5])
    g = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    grad_input, grad_weight = R.prelu_grads(x, w, g)
    assert grad_input.tolist() == [[0.25, 2.0], [0.75, 2.0], [5.0, 3.0]]
    # channel 0: x <= 0 at -2 (g=1) and 0 (g=3): -2*1 + 0*3; channel 1: -1*4 + -0.5*6
    assert grad_weight.tolist() == [-2.0, -7.0]


# Each analytic gradient, wired as the backward of a custom Function, against finite differences.


class _LeakyReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return R.leaky_relu(x, slope)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * R.leaky_relu_grad(x, ctx.slope), None


class _ReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return R.relu(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * R.relu_grad(x)


class _PReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return R.prelu(x, w)

    @staticmethod
    def backward(ctx, grad_output):
        x, w = ctx.saved_tensors
        return R.prelu_grads(x, w, grad_output)


def _away_from_kink(shape, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    return (x + 0.1 * torch.sign(x)).requires_grad_(True)  # |x| >= 0.1, far from the kink


@pytest.mark.parametrize("slope", [0.01, -0.7, 3.0])
def test_gradcheck_leaky_relu(slope):
    x = _away_from_kink((3, 4), 0)
    assert torch.autograd.gradcheck(lambda t: _LeakyReLU.apply(t, slope), (x,))
    assert torch.autograd.gradcheck(lambda t: R.leaky_relu(t, slope), (x,))


def test_gradcheck_relu():
    x = _away_from_kink((5,), 1)
    assert torch.autograd.gradcheck(_ReLU.apply, (x,))


@pytest.mark.parametrize("shape,n", [((4, 3, 2), 3), ((4, 3, 2), 1), ((6,), 1), ((), 1)])
def test_gradcheck_prelu(shape, n):
    x = _away_from_kink(shape, 2)
    w = torch.tensor([0.25, -0.5, 2.0][:n], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_PReLU.apply, (x, w))


# ---------------------------------------------------------------- shapes F.prelu accepts


@pytest.mark.parametrize(
    "x_shape,w_shape",
    [
        ((), (1,)),
        ((5,), (1,)),
        ((2, 3), (3,)),
        ((2, 3), (1,)),
        ((2, 0, 3), (0,)),
        ((0, 3), (3,)),
        ((2, 3, 4, 5), (3,)),
    ],
)
def test_prelu_accepts_what_torch_accepts(x_shape, w_shape):
    x = torch.randn(x_shape)
    w = torch.rand(w_shape)
    assert_identical(R.prelu(x, w), F.prelu(x, w))
    g = torch.randn(x_shape)
    for ours, ref in zip(R.prelu_grads(x, w, g), _prelu_autograd(x, w, g), strict=True):
        assert_identical(ours, ref)


@pytest.mark.parametrize(
    "x_shape,w_shape", [((5,), (5,)), ((2, 3), (2,)), ((2, 3, 4), (4,)), ((), (2,))]
)
def test_prelu_rejects_wrong_number_of_slopes(x_shape, w_shape):
    x, w = torch.randn(x_shape), torch.rand(w_shape)
    with pytest.raises(RuntimeError):
        F.prelu(x, w)
    with pytest.raises(ValueError, match="weight"):
        R.prelu(x, w)
    with pytest.raises(ValueError, match="weight"):
        R.prelu_grads(x, w, torch.randn(x_shape))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("fn", [R.relu, R.leaky_relu, R.relu_grad, R.leaky_relu_grad])
@pytest.mark.parametrize(
    "bad", [[1.0, -1.0], 1.0, None, torch.tensor([1, -1]), torch.tensor([True])]
)
def test_x_must_be_a_float_tensor(fn, bad):
    with pytest.raises(TypeError, match="x"):
        fn(bad)


@pytest.mark.parametrize("fn", [R.leaky_relu, R.leaky_relu_grad])
@pytest.mark.parametrize("bad", [True, "0.1", None, torch.tensor(0.1), 1 + 2j])
def test_slope_must_be_a_real_number(fn, bad):
    with pytest.raises(TypeError, match="negative_slope"):
        fn(torch.randn(3), bad)


@pytest.mark.parametrize("fn", [R.leaky_relu, R.leaky_relu_grad])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_slope_must_be_finite(fn, bad):
    with pytest.raises(ValueError, match="negative_slope"):
        fn(torch.randn(3), bad)


def test_prelu_argument_errors():
    x = torch.randn(2, 3)
    with pytest.raises(TypeError, match="x"):
        R.prelu(x.numpy(), torch.rand(3))
    with pytest.raises(TypeError, match="weight"):
        R.prelu(x, [0.25])
    with pytest.raises(TypeError, match="weight"):
        R.prelu(x, torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="weight"):
        R.prelu(x, torch.rand(3, dtype=torch.float64))
    for bad_weight in (torch.tensor(0.25), torch.rand(1, 3)):
        with pytest.raises(ValueError, match="weight"):
            R.prelu(x, bad_weight)


def test_prelu_grads_argument_errors():
    x, w = torch.randn(2, 3), torch.rand(3)
    with pytest.raises(TypeError, match="grad_output"):
        R.prelu_grads(x, w, [[1.0] * 3] * 2)
    with pytest.raises(TypeError, match="grad_output"):
        R.prelu_grads(x, w, torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="grad_output"):
        R.prelu_grads(x, w, torch.ones(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="grad_output"):
        R.prelu_grads(x, w, torch.ones(3, 2))
    with pytest.raises(ValueError, match="grad_output"):
        R.prelu_grads(x, w, torch.ones(1, 3))  # broadcastable is not enough
    with pytest.raises(TypeError, match="x"):
        R.prelu_grads(None, w, torch.ones(2, 3))


def test_docstring_examples():
    import rectifiers.functional as module

    assert_examples_pass(module)


@pytest.mark.parametrize("name", ["leaky_relu", "leaky_relu_grad"])
def test_slope_taking_functions_document_their_errors(name):
    # Each documents its errors in full, as torch.nn.functional does (functional.py says why).
    doc = getattr(R, name).__doc__
    assert "(slope errors)" not in doc
    assert "    Raises:\n        TypeError: if ``x`` is not a floating-point tensor" in doc
    assert "ValueError: if ``negative_slope`` is NaN, infinite, or too large" in doc
