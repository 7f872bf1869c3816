"""Elementwise ops against numpy: shapes, dtypes, broadcasting, empty and 0-d tensors."""

import math

import numpy as np
import pytest

import graphc

RNG = np.random.default_rng(0)
SHAPES = [(), (0,), (5,), (3, 4), (2, 3, 4)]

UNARY_FLOAT = {
    "exp": np.exp,
    "exp2": np.exp2,
    "expm1": np.expm1,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "asinh": np.arcsinh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "erf": np.vectorize(math.erf, otypes=[np.float64]),
    "neg": np.negative,
    "abs": np.abs,
    "sign": np.sign,
    "ceil": np.ceil,
    "floor": np.floor,
    "trunc": np.trunc,
    "round": np.round,
    "relu": lambda x: np.maximum(x, 0),
}
UNARY_POSITIVE = {
    "log": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "log1p": np.log1p,
    "sqrt": np.sqrt,
    "rsqrt": lambda x: 1 / np.sqrt(x),
    "reciprocal": np.reciprocal,
}
UNARY_ABOVE_ONE = {"acosh": np.arccosh}
UNARY_UNIT = {"asin": np.arcsin, "acos": np.arccos, "atanh": np.arctanh}


def _sample(shape, low=-2.0, high=2.0, dtype=np.float64):
    return RNG.uniform(low, high, size=shape).astype(dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "name", sorted(UNARY_FLOAT) + sorted(UNARY_POSITIVE) + sorted(UNARY_UNIT) + sorted(UNARY_ABOVE_ONE)
)
def test_unary_matches_numpy(name, shape):
    ref = {**UNARY_FLOAT, **UNARY_POSITIVE, **UNARY_UNIT, **UNARY_ABOVE_ONE}[name]
    low, high = (
        (0.1, 3.0)
        if name in UNARY_POSITIVE
        else (-0.9, 0.9)
        if name in UNARY_UNIT
        else (1.1, 3.0)
        if name in UNARY_ABOVE_ONE
        else (-2, 2)
    )
    x = _sample(shape, low, high)
    out = getattr(graphc, name)(graphc.tensor(x))
    expected = ref(x)
    assert out.shape == graphc.Size(shape)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["exp", "sin", "sqrt", "sigmoid", "erf", "log"])
def test_unary_float_ops_promote_integers_to_the_default_float(name):
    out = getattr(graphc, name)(graphc.tensor([1, 2, 3]))
    assert out.dtype is graphc.float32


@pytest.mark.parametrize("dtype", [graphc.float16, graphc.float32, graphc.float64])
def test_unary_keeps_floating_dtype(dtype):
    assert graphc.exp(graphc.ones(3, dtype=dtype)).dtype is dtype


BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.true_divide,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "atan2": np.arctan2,
    "remainder": np.remainder,
    "fmod": np.fmod,
    "floor_divide": np.floor_divide,
}


@pytest.mark.parametrize(
    "shapes", [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (3,)), ((0, 2), (2,)), ((1,), ())]
)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_matches_numpy_with_broadcasting(name, shapes):
    a, b = _sample(shapes[0]), _sample(shapes[1], 0.5, 2.0)
    out = getattr(graphc, name)(graphc.tensor(a), graphc.tensor(b))
    np.testing.assert_allclose(out.numpy(), BINARY[name](a, b), rtol=1e-12)


@pytest.mark.parametrize(
    "name, ref",
    [
        ("eq", np.equal),
        ("ne", np.not_equal),
        ("lt", np.less),
        ("le", np.less_equal),
        ("gt", np.greater),
        ("ge", np.greater_equal),
    ],
)
def test_comparisons_return_bool(name, ref):
    a = RNG.integers(0, 3, size=(4, 3))
    b = RNG.integers(0, 3, size=(3,)).astype(np.float32)
    out = getattr(graphc, name)(graphc.tensor(a), graphc.tensor(b))
    assert out.dtype is graphc.bool
    assert (out.numpy() == ref(a, b)).all()


def test_integer_ops():
    a, b = np.array([7, -7, 5, 0]), np.array([2, 2, -3, 4])
    ta, tb = graphc.tensor(a), graphc.tensor(b)
    assert (graphc.floor_divide(ta, tb).numpy() == a // b).all()
    assert (graphc.remainder(ta, tb).numpy() == np.remainder(a, b)).all()
    assert (graphc.fmod(ta, tb).numpy() == np.fmod(a, b)).all()
    assert graphc.floor_divide(ta, tb).dtype is graphc.int64
    assert (graphc.div(ta, tb, rounding_mode="trunc").numpy() == np.trunc(a / b)).all()
    assert graphc.div(ta, tb, rounding_mode="trunc").dtype is graphc.int64
    assert graphc.div(ta, tb).dtype is graphc.float32  # true division of ints gives floats
    assert (graphc.bitwise_and(ta, tb).numpy() == (a & b)).all()
    assert (graphc.bitwise_or(ta, tb).numpy() == (a | b)).all()
    assert (graphc.bitwise_xor(ta, tb).numpy() == (a ^ b)).all()
    assert ((~ta).numpy() == ~a).all()
    assert ((ta << 1).numpy() == a << 1).all() and ((ta >> 1).numpy() == a >> 1).all()
    with pytest.raises(TypeError, match="only integer and bool"):
        graphc.bitwise_and(graphc.ones(2), graphc.ones(2))


def test_logical_ops():
    a, b = graphc.tensor([True, False, True]), graphc.tensor([1.0, 0.0, 0.0])
    assert graphc.logical_and(a, b).tolist() == [True, False, False]
    assert graphc.logical_or(a, b).tolist() == [True, False, True]
    assert graphc.logical_xor(a, b).tolist() == [False, False, True]
    assert graphc.logical_not(b).tolist() == [False, True, True]
    assert (~a).tolist() == [False, True, False]


@pytest.mark.parametrize(
    "lhs, rhs, expected",
    [
        (graphc.ones(2, dtype=graphc.int32), 2.5, graphc.float32),
        (graphc.ones(2, dtype=graphc.int32), 2, graphc.int32),
        (graphc.ones(2, dtype=graphc.float16), 2.5, graphc.float16),
        (graphc.ones(2, dtype=graphc.bool), 2, graphc.int64),
        (graphc.ones(2, dtype=graphc.float32), graphc.tensor(1.0, dtype=graphc.float64), graphc.float32),
        (graphc.ones(2, dtype=graphc.int32), graphc.tensor(1.0, dtype=graphc.float64), graphc.float64),
        (graphc.ones(2, dtype=graphc.uint8), graphc.ones(2, dtype=graphc.int8), graphc.int16),
        (graphc.ones(2, dtype=graphc.float16), graphc.ones(2, dtype=graphc.float64), graphc.float64),
    ],
)
def test_type_promotion_follows_pytorch(lhs, rhs, expected):
    assert (lhs + rhs).dtype is expected
    assert (lhs * rhs).dtype is expected


def test_pow_and_clamp_and_where():
    x = graphc.tensor([-2.0, 0.5, 3.0])
    assert (x**2).tolist() == [4.0, 0.25, 9.0]
    assert (2 ** graphc.tensor([1, 2, 3])).tolist() == [2, 4, 8]
    assert graphc.clamp(x, -1, 1).tolist() == [-1.0, 0.5, 1.0]
    assert graphc.clamp(x, min=0).tolist() == [0.0, 0.5, 3.0]
    assert x.clamp(max=graphc.tensor([0.0, 0.0, 5.0])).tolist() == [-2.0, 0.0, 3.0]
    assert graphc.where(x > 0, x, graphc.zeros(3)).tolist() == [0.0, 0.5, 3.0]
    assert graphc.where(x > 0, 1.0, -1.0).tolist() == [-1.0, 1.0, 1.0]
    # two Python numbers: PyTorch's dtypes (the default float, int64, bool)
    assert graphc.where(x > 0, 1.0, -1.0).dtype == graphc.float32
    assert graphc.where(x > 0, 1, 2.5).dtype == graphc.float32
    assert (
        graphc.where(x > 0, 1, 2).dtype == graphc.int64
        and graphc.where(x > 0, True, False).dtype == graphc.bool
    )
    with pytest.raises(graphc.ShapeError, match="do not broadcast"):
        graphc.where(x > 0, graphc.ones(2), x)
    assert graphc.isnan(graphc.tensor([1.0, math.nan])).tolist() == [False, True]
    with pytest.raises(ValueError, match="at least one"):
        graphc.clamp(x)


def test_broadcast_mismatch_names_the_sizes():
    expected = r"size of tensor a \(3\) must match the size of tensor b \(2\)"
    with pytest.raises(graphc.ShapeError, match=expected):
        graphc.rand(2, 3) * graphc.rand(3, 2)


def test_division_by_zero_is_quiet_and_follows_ieee():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = graphc.tensor([1.0, -1.0, 0.0]) / 0
        assert out[0].item() == math.inf and out[1].item() == -math.inf and math.isnan(out[2].item())
        assert graphc.log(graphc.tensor([0.0])).item() == -math.inf
