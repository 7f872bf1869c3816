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
