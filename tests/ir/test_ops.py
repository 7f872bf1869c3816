"""Reference implementations of ops that do more than call numpy."""

import math

import numpy as np
import pytest

from ir import OPS, ShapeError, UnknownOpError, get_op
from ir.ops.special import digamma, erf, erfc, erfinv, lgamma, trigamma


def test_erf_is_accurate_to_an_ulp_in_float64():
    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, -0.0, 1e-300, 0.84375, 1.25, 6.0]])
    ref = np.array([math.erf(v) for v in x])
    assert np.max(np.abs(erf(np, x) - ref)) <= 2.3e-16
    special = erf(np, np.array([np.inf, -np.inf, np.nan]))
    assert special[0] == 1 and special[1] == -1 and np.isnan(special[2])


def _erfinv_by_bisection(y: float) -> float:
    """The x with math.erf(x) = y, by bisection: an independent reference."""
    lo, hi = -7.0, 7.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erf(mid) < y else (lo, mid)
    return (lo + hi) / 2


def test_erfinv_inverts_erf():
    """Against bisection on math.erf over (-1, 1), as close as erfinv's own conditioning allows
    (an ulp of y moves erfinv(y) by 1 / erf'(x) ulps: 200 at 0.999), and erf of the result is y
    to an ulp or two; +-inf at +-1, NaN outside."""
    y = np.concatenate([np.linspace(-0.999, 0.999, 1999), [0.0, -0.0, 1e-300, -1e-10, 0.5 - 1e-17]])
    ref = np.array([_erfinv_by_bisection(v) for v in y])
    x = erfinv(np, y)
    np.testing.assert_allclose(x, ref, rtol=2e-14, atol=1e-15)
    np.testing.assert_allclose(x[np.abs(y) < 0.5], ref[np.abs(y) < 0.5], rtol=1e-15, atol=1e-15)
    near = np.concatenate([y, [1 - 1e-9, -1 + 1e-12]])
    np.testing.assert_allclose(erf(np, erfinv(np, near)), near, rtol=0, atol=2.3e-16)
    ends = erfinv(np, np.array([1.0, -1.0, 1.5, -2.0, np.nan]))
    assert ends[0] == np.inf and ends[1] == -np.inf and np.isnan(ends[2:]).all()
    assert erfinv(np, np.ones(3, np.float32) / 2).dtype == np.float32


def test_erfc_keeps_its_relative_precision_in_the_tail():
    """Against math.erfc, relatively, out to where it underflows (1 - erf would give 0 from
    x = 6 on); 2 on the far left."""
    x = np.concatenate([np.linspace(-30, 30, 6001), [0.0, -0.0, 1e-300, 0.84375, 1.25, 27.9, 28.0]])
    ref = np.array([math.erfc(v) for v in x])
    got = erfc(np, x)
    positive = ref > 0
    np.testing.assert_allclose(got[positive], ref[positive], rtol=2e-15)
    assert (got[~positive] == 0).all() and erfc(np, np.array([-7.0]))[0] == 2.0
    assert (
        np.isnan(erfc(np, np.array([np.nan]))).all() and erfc(np, np.ones(2, np.float32)).dtype == np.float32
    )


def test_lgamma_against_math_including_the_reflection_and_the_poles():
    x = np.concatenate([np.linspace(-20.5, 60, 8051), [0.5, 1.0, 2.0, 1e-8, 171.5, 1e-300]])
    x = x[(x > 0) | (x != np.floor(x))]
    ref = np.array([math.lgamma(v) for v in x])
    np.testing.assert_allclose(lgamma(np, x), ref, rtol=1e-14, atol=1e-14)
    assert (lgamma(np, np.array([0.0, -0.0, -1.0, -7.0, np.inf, -np.inf])) == np.inf).all()


def test_digamma_and_trigamma_against_lgammas_derivatives_and_known_values():
    """psi(1) = -Euler's gamma, psi(1/2) = -gamma - 2 ln 2, psi1(1) = pi^2/6, psi1(1/2) =
    pi^2/2; elsewhere central differences of math.lgamma (psi) and of psi (psi1), and the
    recurrences psi(x + 1) = psi(x) + 1/x, psi1(x + 1) = psi1(x) - 1/x^2 across 10 (where the
    series takes over) and below 0 (the reflection)."""
    euler = 0.5772156649015329
    np.testing.assert_allclose(
        digamma(np, np.array([1.0, 0.5])), [-euler, -euler - 2 * math.log(2)], rtol=1e-13
    )
    np.testing.assert_allclose(
        trigamma(np, np.array([1.0, 0.5])), [math.pi**2 / 6, math.pi**2 / 2], rtol=1e-13
    )
    x = np.array([0.1, 0.7, 2.5, 9.5, 9.99, 10.0, 33.3, -0.4, -3.7])
    h = 1e-5
    numeric = np.array([(math.lgamma(v + h) - math.lgamma(v - h)) / (2 * h) for v in x])
    np.testing.assert_allclose(digamma(np, x), numeric, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(digamma(np, x + 1), digamma(np, x) + 1 / x, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(trigamma(np, x + 1), trigamma(np, x) - 1 / x**2, rtol=1e-13)
    np.testing.assert_allclose(
        trigamma(np, x), (digamma(np, x + h) - digamma(np, x - h)) / (2 * h), rtol=1e-7
    )
    poles = digamma(np, np.array([0.0, -1.0, -4.0]))
    assert poles[0] == -np.inf and np.isnan(poles[1:]).all()
    assert (trigamma(np, np.array([0.0, -2.0])) == np.inf).all()


def test_erf_keeps_float32():
    assert erf(np, np.ones(3, np.float32)).dtype == np.float32


def test_descending_sort_is_stable_and_puts_nan_first():
    x = np.array([1.0, 3.0, np.nan, 3.0, 2.0])
    values, idx = OPS["sort"].impl(np, x, dim=0, descending=True)
    assert np.isnan(values[0]) and list(values[1:]) == [3.0, 3.0, 2.0, 1.0]
    assert list(idx) == [2, 1, 3, 4, 0]


def test_linspace_is_exact_at_both_ends():
    out = OPS["linspace"].impl(np, 0.0, 2 * math.pi, 25, "float32")
    assert out[0] == 0 and out[-1] == np.float32(2 * math.pi) and out.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_threshold_backward_zeroes_every_gradient_below_the_threshold(dtype):
    rng = np.random.default_rng(0)
    out = rng.normal(size=(5, 7)).astype(dtype)
    grad = rng.normal(size=(5, 7)).astype(dtype)
    grad.flat[:6] = [np.nan, np.inf, -np.inf, np.nan, np.inf, -0.0]
    out.flat[:6] = [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]
    result = OPS["threshold_backward"].impl(np, grad[:, ::2], out[:, ::2], threshold=0.25)
    expected = np.where(out[:, ::2] > 0.25, grad[:, ::2], 0).astype(dtype)
    assert result.dtype == dtype
    np.testing.assert_array_equal(result, expected)
    assert OPS["threshold_backward"].impl(np, np.float32(2), np.float32(-1)) == 0


@pytest.mark.parametrize("kernel", [(2, 2), (3, 2)])
def test_tiled_max_pool_takes_the_first_maximum_and_a_nan_first(kernel):
    kh, kw = kernel
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, size=(2, 3, 2 * kh, 3 * kw)).astype(np.float32)  # many ties
    x[1, 2, 0, 1] = x[1, 2, 1, 0] = np.nan
    values, indices = OPS["max_pool2d"].impl(np, x, kernel_size=kernel, stride=kernel)
    for n, c, i, j in np.ndindex(values.shape):
        window = x[n, c, i * kh : (i + 1) * kh, j * kw : (j + 1) * kw].ravel()
        nans = np.flatnonzero(np.isnan(window))
        a = nans[0] if nans.size else int(np.argmax(window))
        assert indices[n, c, i, j] == (i * kh + a // kw) * x.shape[3] + j * kw + a % kw
        np.testing.assert_array_equal(values[n, c, i, j], window[a])


def test_gather_and_scatter_add_are_adjoint():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4))
    index = rng.integers(0, 3, size=(2, 4))
    g = rng.normal(size=(2, 4))
    gathered = OPS["gather"].impl(np, x, index, 0)
    scattered = OPS["scatter_add"].impl(np, np.zeros_like(x), index, g, 0)
    assert np.isclose((gathered * g).sum(), (x * scattered).sum())


def test_matmul_names_both_shapes_on_mismatch():
    with pytest.raises(ShapeError, match=r"\(2, 3\) and \(4, 5\)"):
        OPS["matmul"].impl(np, np.ones((2, 3)), np.ones((4, 5)))


@pytest.mark.parametrize("op", ["matmul", "linear"])
def test_a_stack_times_a_matrix_is_one_product(op):
    # (folded into one (batch * m, k) matrix; a transposed view is copied first)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 5, 3, 4)).transpose(0, 2, 1, 3)  # (2, 3, 5, 4), not contiguous
    w = rng.standard_normal((6, 4))
    b = rng.standard_normal(6)
    out = OPS[op].impl(np, a, w.T) if op == "matmul" else OPS[op].impl(np, a, w, b)
    expected = np.einsum("abik,nk->abin", a, w) + (0 if op == "matmul" else b)
    assert out.shape == (2, 3, 5, 6)
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_index_put_accumulates_repeated_indices():
    out = OPS["index_put"].impl(
        np, np.zeros(3), np.ones(3), np.array([0, 0, 2]), positions=(True,), accumulate=True
    )
    assert list(out) == [2, 0, 1]


@pytest.mark.parametrize(
    "rows, index_shape, values_shape",
    [
        ((1000, 16), (16, 128), (16, 128, 16)),  # an embedding's gradient
        ((10, 3, 2), (40,), (1, 3, 2)),  # values broadcast; runs longer than the rounds
        ((6,), (50,), (50,)),
        ((4, 5), (0,), (0, 5)),
    ],
)
def test_index_put_accumulates_rows_as_np_add_at(rows, index_shape, values_shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(rows).astype(np.float32)
    index = rng.integers(-rows[0], rows[0], index_shape)
    index.ravel()[: index.size // 2] = 1  # one row repeated many times
    values = rng.standard_normal(values_shape).astype(np.float32)
    out = OPS["index_put"].impl(np, x, values, index, positions=(True,), accumulate=True)
    expected = x.copy()
    np.add.at(expected, (index,), values)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert out.dtype == np.float32


@pytest.mark.parametrize("bad", [4, -5])
def test_index_put_accumulate_refuses_rows_out_of_range(bad):
    with pytest.raises(IndexError, match=f"index {bad} is out of bounds for axis 0 with size 4"):
        OPS["index_put"].impl(
            np, np.zeros((4, 2)), np.ones(2), np.array([0, bad]), positions=(True,), accumulate=True
        )


def test_random_ops_are_pure_functions_of_their_seed():
    a = OPS["uniform"].impl(np, (4,), 0.0, 1.0, "float32", 123)
    b = OPS["uniform"].impl(np, (4,), 0.0, 1.0, "float32", 123)
    c = OPS["uniform"].impl(np, (4,), 0.0, 1.0, "float32", 124)
    assert (a == b).all() and not (a == c).all()


def test_unknown_op_lists_similar_names():
    with pytest.raises(UnknownOpError, match="similar: .*matmul"):
        get_op("matmu")


def test_every_op_has_a_docstring():
    assert [name for name, op in OPS.items() if not op.doc] == []


def test_softmax_reference():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5)) * 4
    expected = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    np.testing.assert_allclose(OPS["softmax"].impl(np, x, dim=1), expected, rtol=1e-12)
    big = OPS["softmax"].impl(np, np.array([[1000.0, 0.0], [-np.inf, -np.inf]]), dim=1)
    np.testing.assert_allclose(big[0], [1.0, 0.0])
    assert np.isnan(big[1]).all()  # a row of -inf: NaN, as in PyTorch


def test_softmax_backward_is_the_jacobians_transpose_times_g():
    rng = np.random.default_rng(1)
    y = OPS["softmax"].impl(np, rng.standard_normal((2, 4)), dim=1)
    g = rng.standard_normal((2, 4))
    out = OPS["softmax_backward"].impl(np, y, g, dim=1)
    for row in range(2):
        jacobian = np.diag(y[row]) - np.outer(y[row], y[row])
        np.testing.assert_allclose(out[row], jacobian.T @ g[row], rtol=1e-12)


def test_layer_norm_reference():
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    mean, var = x.mean((1, 2), keepdims=True), x.var((1, 2), keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-3) * w + b
    np.testing.assert_allclose(
        OPS["layer_norm"].impl(np, x, w, b, dims=(1, 2), eps=1e-3), expected, rtol=1e-12
    )
    with pytest.raises(ShapeError, match=r"bias of shape \[4\] does not match normalized shape \[3, 4\]"):
        OPS["layer_norm"].impl(np, x, w, b[0], dims=(1, 2))


@pytest.mark.parametrize("with_weight", [True, False])
def test_layer_norm_backward_matches_finite_differences(with_weight):
    rng = np.random.default_rng(3)
    x, g = rng.standard_normal((2, 5)), rng.standard_normal((2, 5))
    w = rng.standard_normal(5) if with_weight else None
    out = OPS["layer_norm_backward"].impl(np, x, w, g, dims=(1,), eps=1e-5)
    numeric = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = 1e-6
        up = OPS["layer_norm"].impl(np, x + step, w, None, dims=(1,), eps=1e-5)
        down = OPS["layer_norm"].impl(np, x - step, w, None, dims=(1,), eps=1e-5)
        numeric[i] = ((up - down) * g).sum() / 2e-6
    np.testing.assert_allclose(out, numeric, rtol=1e-6, atol=1e-8)
