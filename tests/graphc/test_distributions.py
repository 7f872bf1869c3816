"""graphc.distributions: log-densities, entropies, CDFs and KL divergences against their closed
forms in numpy, sample statistics, and gradients through reparameterised samples."""

import math

import numpy as np
import pytest

import graphc
from graphc import distributions as D
from graphc.autograd import gradcheck

RNG = np.random.default_rng(12)


def _t(x, grad=False):
    return graphc.tensor(x, requires_grad=grad)


def test_normal_density_entropy_cdf_and_kl():
    loc, scale = RNG.standard_normal(3), np.abs(RNG.standard_normal(3)) + 0.5
    v = RNG.standard_normal((4, 3))
    d = D.Normal(_t(loc), _t(scale))
    want = -((v - loc) ** 2) / (2 * scale**2) - np.log(scale * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(d.log_prob(_t(v)).numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(d.entropy().numpy(), 0.5 * np.log(2 * math.pi * math.e * scale**2), rtol=1e-12)
    cdf = np.vectorize(lambda x, m, s: 0.5 * (1 + math.erf((x - m) / (s * math.sqrt(2)))))(v, loc, scale)
    np.testing.assert_allclose(d.cdf(_t(v)).numpy(), cdf, rtol=1e-12)
    np.testing.assert_allclose(d.cdf(d.icdf(_t(np.full(3, 0.3)))).numpy(), 0.3, rtol=1e-12)
    q = D.Normal(_t(loc * 0.5), _t(scale * 2))
    kl = np.log(2 * scale / scale) + (scale**2 + (loc - loc * 0.5) ** 2) / (2 * (2 * scale) ** 2) - 0.5
    np.testing.assert_allclose(D.kl_divergence(d, q).numpy(), kl, rtol=1e-12)
    assert tuple(d.sample((5, 2)).shape) == (5, 2, 3) and d.mean is d.loc and d.stddev is d.scale


def test_normal_samples_and_their_reparameterised_gradient():
    graphc.manual_seed(0)
    samples = D.Normal(_t(np.array([1.0, -2.0])), _t(np.array([0.5, 3.0]))).sample((200_000,)).numpy()
    np.testing.assert_allclose(samples.mean(0), [1.0, -2.0], atol=0.02)
    np.testing.assert_allclose(samples.std(0), [0.5, 3.0], rtol=0.01)
    loc, scale = _t(np.array([0.3, -1.0]), True), _t(np.array([1.5, 0.7]), True)

    def drawn(loc, scale):
        graphc.manual_seed(7)  # (the same noise each evaluation)
        return D.Normal(loc, scale).rsample((3,))

    assert gradcheck(drawn, (loc, scale))
    assert not D.Normal(loc, scale).sample().requires_grad


def test_uniform():
    low, high = RNG.standard_normal(3), RNG.standard_normal(3) + 3
    d = D.Uniform(_t(low), _t(high))
    inside, outside = (low + high) / 2, high + 1
    np.testing.assert_allclose(d.log_prob(_t(inside)).numpy(), -np.log(high - low), rtol=1e-12)
    assert (d.log_prob(_t(outside)).numpy() == -np.inf).all()
    np.testing.assert_allclose(d.entropy().numpy(), np.log(high - low), rtol=1e-12)
    np.testing.assert_allclose(d.cdf(_t(inside)).numpy(), 0.5, rtol=1e-12)
    wider = D.Uniform(_t(low - 1), _t(high + 1))
    np.testing.assert_allclose(
        D.kl_divergence(d, wider).numpy(), np.log((high - low + 2) / (high - low)), rtol=1e-12
    )
    assert (D.kl_divergence(wider, d).numpy() == np.inf).all()
    graphc.manual_seed(1)
    s = d.sample((50_000,)).numpy()
    assert (s >= low).all() and (s < high).all()
    np.testing.assert_allclose(s.mean(0), (low + high) / 2, atol=0.05)


def test_bernoulli_from_probs_or_logits():
    logits = RNG.standard_normal((2, 5))
    probs = 1 / (1 + np.exp(-logits))
    x = (RNG.random((2, 5)) > 0.5).astype(np.float64)
    for d in (D.Bernoulli(logits=_t(logits)), D.Bernoulli(probs=_t(probs))):
        np.testing.assert_allclose(
            d.log_prob(_t(x)).numpy(), np.log(np.where(x == 1, probs, 1 - probs)), rtol=1e-9
        )
        ent = -(probs * np.log(probs) + (1 - probs) * np.log(1 - probs))
        np.testing.assert_allclose(d.entropy().numpy(), ent, rtol=1e-9)
    q = 0.3 + 0.4 * RNG.random((2, 5))
    kl = probs * np.log(probs / q) + (1 - probs) * np.log((1 - probs) / (1 - q))
    np.testing.assert_allclose(
        D.kl_divergence(D.Bernoulli(logits=_t(logits)), D.Bernoulli(probs=_t(q))).numpy(), kl, rtol=1e-9
    )
    graphc.manual_seed(2)
    assert abs(D.Bernoulli(probs=_t(np.array(0.3))).sample((50_000,)).numpy().mean() - 0.3) < 0.01
    with pytest.raises(ValueError, match="either probs or logits"):
        D.Bernoulli()


def test_categorical_and_one_hot():
    probs = np.array([[0.2, 0.0, 0.8], [0.1, 0.6, 0.3]])
    d = D.Categorical(probs=_t(probs * 5))  # (normalised)
    np.testing.assert_allclose(d.probs.numpy(), probs)
    idx = np.array([[0, 2], [2, 1]])
    np.testing.assert_allclose(d.log_prob(_t(idx)).numpy(), np.log(probs[[0, 1], idx]), rtol=1e-12)
    ent = -np.array([sum(p * math.log(p) for p in row if p > 0) for row in probs])
    np.testing.assert_allclose(d.entropy().numpy(), ent, rtol=1e-12)
    q = np.array([[0.3, 0.3, 0.4], [0.2, 0.2, 0.6]])
    kl = np.array(
        [
            sum(p * math.log(p / b) for p, b in zip(r, s, strict=True) if p > 0)
            for r, s in zip(probs, q, strict=True)
        ]
    )
    np.testing.assert_allclose(
        D.kl_divergence(d, D.Categorical(logits=_t(np.log(q)))).numpy(), kl, rtol=1e-12
    )
    graphc.manual_seed(3)
    draws = d.sample((40_000,)).numpy()
    assert draws.shape == (40_000, 2) and draws.dtype == np.int64
    np.testing.assert_allclose(np.bincount(draws[:, 1], minlength=3) / 40_000, probs[1], atol=0.01)
    assert (draws[:, 0] != 1).all()  # (probability 0)
    assert d.enumerate_support().shape == (3, 2) and d.mode.tolist() == [2, 1]
    one_hot = D.OneHotCategorical(probs=_t(probs))
    sample = one_hot.sample((4,))
    assert tuple(sample.shape) == (4, 2, 3) and (sample.numpy().sum(-1) == 1).all()
    np.testing.assert_allclose(one_hot.log_prob(sample).numpy(), d.log_prob(sample.argmax(-1)).numpy())
    with pytest.raises(NotImplementedError, match="no reparameterised sampling"):
        d.rsample()


def test_independent_sums_over_its_event_dims():
    loc, scale = RNG.standard_normal((2, 3)), np.abs(RNG.standard_normal((2, 3))) + 0.5
    base = D.Normal(_t(loc), _t(scale))
    d = D.Independent(base, 1)
    assert d.batch_shape == (2,) and d.event_shape == (3,)
    v = RNG.standard_normal((2, 3))
    np.testing.assert_allclose(d.log_prob(_t(v)).numpy(), base.log_prob(_t(v)).numpy().sum(-1), rtol=1e-12)
    other = D.Independent(D.Normal(_t(loc + 1), _t(scale)), 1)
    np.testing.assert_allclose(
        D.kl_divergence(d, other).numpy(), D.kl_divergence(base, other.base_dist).numpy().sum(-1), rtol=1e-12
    )
    with pytest.raises(NotImplementedError, match="both must be one kind"):
        D.kl_divergence(base, D.Uniform(0.0, 1.0))


def test_exponential_and_laplace():
    rate, x = np.array([0.5, 2.0]), np.array([[0.3, 1.7], [-1.0, 0.0]])
    d = D.Exponential(_t(rate))
    want = np.where(x >= 0, np.log(rate) - rate * x, -np.inf)
    np.testing.assert_allclose(d.log_prob(_t(x)).numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(d.entropy().numpy(), 1 - np.log(rate), rtol=1e-12)
    np.testing.assert_allclose(d.cdf(d.icdf(_t(np.array([0.2, 0.9])))).numpy(), [0.2, 0.9], rtol=1e-12)
    np.testing.assert_allclose(
        D.kl_divergence(d, D.Exponential(_t(rate * 3))).numpy(), 3 - np.log(3) - 1 + 0 * rate, rtol=1e-12
    )
    loc, scale = np.array([1.0, -2.0]), np.array([2.0, 0.5])
    lap = D.Laplace(_t(loc), _t(scale))
    np.testing.assert_allclose(
        lap.log_prob(_t(x)).numpy(), -np.log(2 * scale) - np.abs(x - loc) / scale, rtol=1e-12
    )
    np.testing.assert_allclose(lap.cdf(_t(loc)).numpy(), 0.5)
    graphc.manual_seed(4)
    e = d.sample((100_000,)).numpy()
    np.testing.assert_allclose(e.mean(0), 1 / rate, rtol=0.02)
    s = lap.sample((100_000,)).numpy()
    np.testing.assert_allclose(s.mean(0), loc, atol=0.03)
    np.testing.assert_allclose(s.var(0), 2 * scale**2, rtol=0.03)
    r = _t(rate, True)

    def drawn(r):
        graphc.manual_seed(8)
        return D.Exponential(r).rsample((3,))

    assert gradcheck(drawn, (r,))


def test_gamma_beta_dirichlet_densities_against_their_formulas():
    a, b, x = np.array([0.4, 2.5]), np.array([1.5, 0.7]), np.array([0.3, 4.0])
    gamma = D.Gamma(_t(a), _t(b))
    want = a * np.log(b) + (a - 1) * np.log(x) - b * x - np.array([math.lgamma(v) for v in a])
    np.testing.assert_allclose(gamma.log_prob(_t(x)).numpy(), want, rtol=1e-12)
    one = D.Gamma(_t(np.ones(2)), _t(b))  # (an exponential)
    np.testing.assert_allclose(one.entropy().numpy(), D.Exponential(_t(b)).entropy().numpy(), rtol=1e-12)
    graphc.manual_seed(5)
    draws = gamma.sample((200_000,))
    np.testing.assert_allclose(draws.numpy().mean(0), a / b, rtol=0.02)
    np.testing.assert_allclose(draws.numpy().var(0), a / b**2, rtol=0.04)
    monte_carlo = -gamma.log_prob(draws).numpy().mean(0)  # (the entropy's definition)
    np.testing.assert_allclose(gamma.entropy().numpy(), monte_carlo, atol=0.02)
    p = np.array([0.2, 0.7])
    beta = D.Beta(_t(a), _t(b))
    norm = np.array([math.lgamma(u) + math.lgamma(v) - math.lgamma(u + v) for u, v in zip(a, b, strict=True)])
    np.testing.assert_allclose(
        beta.log_prob(_t(p)).numpy(), (a - 1) * np.log(p) + (b - 1) * np.log(1 - p) - norm, rtol=1e-12
    )
    assert D.Beta(_t(1.0), _t(1.0)).log_prob(_t(0.3)).item() == pytest.approx(0.0, abs=1e-12)
    samples = D.Beta(_t(2.0), _t(5.0)).sample((100_000,)).numpy()
    assert samples.shape == (100_000,) and abs(samples.mean() - 2 / 7) < 0.005
    conc = np.array([1.0, 2.0, 3.0])
    dirichlet = D.Dirichlet(_t(conc))
    point = np.array([0.2, 0.3, 0.5])
    want = ((conc - 1) * np.log(point)).sum() - (sum(math.lgamma(c) for c in conc) - math.lgamma(conc.sum()))
    np.testing.assert_allclose(dirichlet.log_prob(_t(point)).item(), want, rtol=1e-12)
    drawn = dirichlet.sample((50_000,)).numpy()
    np.testing.assert_allclose(drawn.sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(drawn.mean(0), conc / conc.sum(), atol=0.005)
    with pytest.raises(NotImplementedError, match="no reparameterised sampling"):
        gamma.rsample()


@pytest.mark.parametrize("rate", [0.5, 4.0, 12.0, 150.0])
def test_poisson_counts(rate):
    """Both samplers (arrivals below 10, transformed rejection from 10): mean and variance
    the rate; the mass function against its formula."""
    graphc.manual_seed(6)
    d = D.Poisson(_t(np.array(rate)))
    counts = d.sample((100_000,)).numpy()
    assert (counts == np.floor(counts)).all() and counts.min() >= 0
    assert abs(counts.mean() - rate) < 4 * math.sqrt(rate / 100_000) + 1e-3
    assert abs(counts.var() / rate - 1) < 0.03
    k = np.array([0.0, 1.0, 5.0, 20.0])
    want = k * math.log(rate) - rate - np.array([math.lgamma(v + 1) for v in k])
    np.testing.assert_allclose(d.log_prob(_t(k)).numpy(), want, rtol=1e-12)


def test_multivariate_normal_against_numpy():
    """The density, entropy and KL from numpy's inverses and determinants; each way of giving
    the covariance; sample covariance; the reparameterised sample's gradient."""
    a = RNG.standard_normal((2, 3, 3))
    cov = a @ a.transpose(0, 2, 1) + 3 * np.eye(3)
    loc, x = RNG.standard_normal((2, 3)), RNG.standard_normal((4, 2, 3))
    d = D.MultivariateNormal(_t(loc), covariance_matrix=_t(cov))
    assert d.batch_shape == (2,) and d.event_shape == (3,)
    diff = x - loc
    maha = np.einsum("...i,...ij,...j->...", diff, np.linalg.inv(cov), diff)
    logdet = np.linalg.slogdet(cov)[1]
    np.testing.assert_allclose(
        d.log_prob(_t(x)).numpy(), -0.5 * (3 * np.log(2 * np.pi) + maha + logdet), rtol=1e-12
    )
    np.testing.assert_allclose(d.entropy().numpy(), 0.5 * (3 * (1 + np.log(2 * np.pi)) + logdet), rtol=1e-12)
    for other in (
        D.MultivariateNormal(_t(loc), precision_matrix=_t(np.linalg.inv(cov))),
        D.MultivariateNormal(_t(loc), scale_tril=_t(np.linalg.cholesky(cov))),
    ):
        np.testing.assert_allclose(other.log_prob(_t(x)).numpy(), d.log_prob(_t(x)).numpy(), rtol=1e-10)
    np.testing.assert_allclose(d.covariance_matrix.numpy(), cov, rtol=1e-12)
    b = RNG.standard_normal((3, 3))
    cov2, loc2 = b @ b.T + 2 * np.eye(3), RNG.standard_normal(3)
    inv2 = np.linalg.inv(cov2)
    gap = loc2 - loc
    want = 0.5 * (
        np.trace(inv2 @ cov, axis1=-2, axis2=-1)
        + np.einsum("...i,ij,...j->...", gap, inv2, gap)
        - 3
        + np.linalg.slogdet(cov2)[1]
        - logdet
    )
    np.testing.assert_allclose(
        D.kl_divergence(d, D.MultivariateNormal(_t(loc2), covariance_matrix=_t(cov2))).numpy(),
        want,
        rtol=1e-10,
    )
    graphc.manual_seed(9)
    s = d.sample((100_000,)).numpy()
    np.testing.assert_allclose(np.cov(s[:, 1].T), cov[1], atol=0.15)
    np.testing.assert_allclose(s.mean(0), loc, atol=0.03)
    tril = _t(np.linalg.cholesky(cov[0]), True)
    mu = _t(loc[0], True)

    def drawn(mu, tril):
        graphc.manual_seed(10)
        return D.MultivariateNormal(mu, scale_tril=tril).rsample((2,))

    assert gradcheck(drawn, (mu, tril))
    with pytest.raises(ValueError, match="exactly one of"):
        D.MultivariateNormal(_t(loc))
