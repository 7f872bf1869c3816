"""nn.init's trunc_normal_, orthogonal_, dirac_ and sparse_: the properties that define each
(statistics, orthogonality, identity convolutions, zeros per column) and their errors."""

import math

import numpy as np
import pytest

import graphc
import graphc.nn.functional as F
import graphc.nn.init as init


def test_trunc_normal_stays_in_bounds_with_the_truncated_normals_moments():
    """N(1, 2^2) cut to [-1, 2.5]: every value inside, mean and variance those of the truncated
    distribution (worked out from the normal's density and CDF)."""
    graphc.manual_seed(0)
    mean, std, a, b = 1.0, 2.0, -1.0, 2.5
    w = init.trunc_normal_(graphc.empty(200_000), mean, std, a, b).numpy()
    assert w.min() >= a and w.max() <= b
    alpha, beta = (a - mean) / std, (b - mean) / std
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda z: (1 + math.erf(z / math.sqrt(2))) / 2  # noqa: E731
    mass = cdf(beta) - cdf(alpha)
    want_mean = mean + std * (pdf(alpha) - pdf(beta)) / mass
    want_var = std**2 * (
        1 + (alpha * pdf(alpha) - beta * pdf(beta)) / mass - ((pdf(alpha) - pdf(beta)) / mass) ** 2
    )
    assert abs(w.mean() - want_mean) < 0.01 and abs(w.var() - want_var) < 0.02
    # the bounds are values, not multiples of std (PyTorch's): at std 0.02, [-2, 2] cuts nothing
    small = init.trunc_normal_(graphc.empty(1000, dtype=graphc.float64), std=0.02).numpy()
    assert small.dtype == np.float64 and 0.018 < small.std() < 0.022


@pytest.mark.parametrize("shape", [(6, 4, 2), (3, 10), (10, 3), (5, 5)])
def test_orthogonal_gives_orthonormal_rows_or_columns_times_the_gain(shape):
    graphc.manual_seed(1)
    w = init.orthogonal_(graphc.empty(*shape), gain=1.5)
    m = w.reshape(shape[0], -1).numpy().astype(np.float64)
    small = min(m.shape)
    gram = m @ m.T if m.shape[0] == small else m.T @ m
    np.testing.assert_allclose(gram, 1.5**2 * np.eye(small), atol=1e-5)
    again = init.orthogonal_(graphc.empty(*shape), gain=1.5).numpy()
    assert not np.allclose(again, w.numpy())  # (a fresh draw each time)
    with pytest.raises(ValueError, match="2 or more dimensions"):
        init.orthogonal_(graphc.empty(4))


@pytest.mark.parametrize("groups", [1, 2])
def test_dirac_weights_make_identity_convolutions(groups):
    w = init.dirac_(graphc.empty(4, 4 // groups, 3, 3), groups=groups)
    x = graphc.randn(2, 4, 5, 6)
    np.testing.assert_array_equal(F.conv2d(x, w, padding=1, groups=groups).numpy(), x.numpy())
    w1 = init.dirac_(graphc.empty(3, 2, 5))  # (more outputs than inputs: the extra one is zero)
    x1 = graphc.randn(1, 2, 7)
    out = F.conv1d(x1, w1, padding=2).numpy()
    np.testing.assert_array_equal(out[:, :2], x1.numpy())
    assert not out[:, 2].any()
    with pytest.raises(ValueError, match="3, 4 or 5 dimensions"):
        init.dirac_(graphc.empty(3, 3))


def test_sparse_zeroes_a_fraction_of_each_column():
    graphc.manual_seed(2)
    w = init.sparse_(graphc.empty(10, 7), sparsity=0.25, std=0.5).numpy()
    assert ((w == 0).sum(axis=0) == 3).all()  # ceil(0.25 * 10) a column
    assert 0.3 < w[w != 0].std() < 0.7
    with pytest.raises(ValueError, match="2 dimensions"):
        init.sparse_(graphc.empty(3, 3, 3), 0.1)
