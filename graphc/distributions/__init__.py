"""`graphc.distributions`: probability distributions for sampling and likelihoods, as PyTorch's
(policy gradients, variational autoencoders, Monte Carlo estimates).

    >>> dist = Normal(mu, sigma)
    >>> z = dist.rsample()                 # differentiable in mu and sigma (reparameterised)
    >>> loss = -dist.log_prob(z).sum() + kl_divergence(dist, Normal(0.0, 1.0)).sum()

Normal, MultivariateNormal, Uniform, Exponential, Laplace, Gamma, Beta, Dirichlet, Poisson,
Bernoulli, Categorical, OneHotCategorical and Independent, with `sample`, `rsample` (where the
sample is a differentiable function of the parameters: Normal, MultivariateNormal, Uniform,
Exponential, Laplace), `log_prob`,
`entropy`, `cdf`/`icdf` where they have closed forms, moments, and `kl_divergence` between two
of a kind (Normal, MultivariateNormal, Uniform, Exponential, Bernoulli, Categorical,
Independent).
Samples come from graphc's generator (graphc.manual_seed repeats them).
"""

from __future__ import annotations

import math

import graphc as G
from graphc._tensor import Tensor
from graphc.autograd.grad_mode import no_grad
from graphc.nn import functional as F

__all__ = [
    "Bernoulli",
    "Beta",
    "Categorical",
    "Dirichlet",
    "Distribution",
    "Exponential",
    "Gamma",
    "Independent",
    "Laplace",
    "MultivariateNormal",
    "Normal",
    "OneHotCategorical",
    "Poisson",
    "Uniform",
    "kl_divergence",
]


def _tensor(value, like: Tensor | None = None) -> Tensor:
    if isinstance(value, Tensor):
        return value
    dtype = like.dtype if like is not None and like.dtype.is_floating_point else G.get_default_dtype()
    return G.tensor(value, dtype=dtype, device=like.device if like is not None else None)


def _broadcast(*values) -> list[Tensor]:
    tensors = [v for v in values if isinstance(v, Tensor)]
    like = tensors[0] if tensors else None
    return list(G.broadcast_tensors(*[_tensor(v, like) for v in values]))


def _shape(sample_shape) -> tuple:
    if isinstance(sample_shape, int):
        return (sample_shape,)
    return tuple(sample_shape)


class Distribution:
    """A distribution over tensors of `batch_shape` + `event_shape` (independent draws along
    the batch dims; `event_shape` is what one draw is)."""

    has_rsample = False

    def __init__(self, batch_shape=(), event_shape=(), validate_args=None) -> None:
        self.batch_shape, self.event_shape = tuple(batch_shape), tuple(event_shape)

    def sample(self, sample_shape=()) -> Tensor:
        """Draws of shape sample_shape + batch_shape + event_shape, not differentiable."""
        with no_grad():
            return self.rsample(sample_shape) if self.has_rsample else self._sample(_shape(sample_shape))

    def rsample(self, sample_shape=()) -> Tensor:
        """Draws that are a differentiable function of the parameters (the reparameterisation)."""
        if not self.has_rsample:
            raise NotImplementedError(
                f"{type(self).__name__} has no reparameterised sampling (its draws are discrete): "
                "use sample() with a score-function estimator (log_prob)"
            )
        return self._rsample(_shape(sample_shape))

    def _extended(self, sample_shape: tuple) -> tuple:
        return sample_shape + self.batch_shape + self.event_shape

    @property
    def stddev(self) -> Tensor:
        return self.variance.sqrt()

    def __repr__(self) -> str:
        shapes = f"batch_shape={list(self.batch_shape)}, event_shape={list(self.event_shape)}"
        return f"{type(self).__name__}({shapes})"


class Normal(Distribution):
    """The normal distribution N(loc, scale^2) (broadcast)."""

    has_rsample = True

    def __init__(self, loc, scale, validate_args=None) -> None:
        self.loc, self.scale = _broadcast(loc, scale)
        super().__init__(self.loc.shape)

    def _rsample(self, sample_shape: tuple) -> Tensor:
        eps = G.randn(*self._extended(sample_shape), dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + eps * self.scale

    def log_prob(self, value) -> Tensor:
        value = _tensor(value, self.loc)
        var = self.scale * self.scale
        return -((value - self.loc) ** 2) / (2 * var) - self.scale.log() - math.log(math.sqrt(2 * math.pi))

    def entropy(self) -> Tensor:
        return 0.5 + 0.5 * math.log(2 * math.pi) + self.scale.log()

    def cdf(self, value) -> Tensor:
        return 0.5 * (1 + G.erf((_tensor(value, self.loc) - self.loc) / (self.scale * math.sqrt(2))))

    def icdf(self, value) -> Tensor:
        return self.loc + self.scale * G.erfinv(2 * _tensor(value, self.loc) - 1) * math.sqrt(2)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        return self.scale * self.scale

    @property
    def stddev(self) -> Tensor:
        return self.scale


class MultivariateNormal(Distribution):
    """The normal distribution over vectors (the last dim of `loc`), its covariance given as
    `covariance_matrix`, `precision_matrix` (its inverse) or `scale_tril` (a lower triangular L
    with covariance L L^T, what it keeps)."""

    has_rsample = True

    def __init__(
        self, loc, covariance_matrix=None, precision_matrix=None, scale_tril=None, validate_args=None
    ):
        from graphc import linalg

        given = [m for m in (covariance_matrix, precision_matrix, scale_tril) if m is not None]
        if len(given) != 1:
            raise ValueError(
                "MultivariateNormal: give exactly one of covariance_matrix, precision_matrix, scale_tril"
            )
        loc = _tensor(loc)
        if loc.dim() < 1:
            raise ValueError("MultivariateNormal: loc must have at least one dim (the vector)")
        if scale_tril is not None:
            tril = _tensor(scale_tril, loc)
        elif covariance_matrix is not None:
            tril = linalg.cholesky(_tensor(covariance_matrix, loc))
        else:
            tril = linalg.cholesky(linalg.inv(_tensor(precision_matrix, loc)))
        k = loc.shape[-1]
        if tril.dim() < 2 or tuple(tril.shape[-2:]) != (k, k):
            raise ValueError(
                f"MultivariateNormal: a {k}-vector needs {k} x {k} matrices, got {list(tril.shape)}"
            )
        batch = G.broadcast_shapes(loc.shape[:-1], tril.shape[:-2])
        self.loc = loc.expand(*batch, k)
        self.scale_tril = tril.expand(*batch, k, k)
        super().__init__(batch, (k,))

    def _rsample(self, sample_shape: tuple) -> Tensor:
        eps = G.randn(*self._extended(sample_shape), dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + (self.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)

    def _half_log_det(self) -> Tensor:
        return self.scale_tril.diagonal(0, -2, -1).log().sum(-1)

    def log_prob(self, value) -> Tensor:
        from graphc.linalg import solve_triangular

        diff = _tensor(value, self.loc) - self.loc
        tril = self.scale_tril.expand(*diff.shape[:-1], *self.scale_tril.shape[-2:])
        z = solve_triangular(tril, diff.unsqueeze(-1), upper=False).squeeze(-1)
        k = self.event_shape[0]
        return -0.5 * (k * math.log(2 * math.pi) + (z * z).sum(-1)) - self._half_log_det()

    def entropy(self) -> Tensor:
        k = self.event_shape[0]
        return 0.5 * k * (1 + math.log(2 * math.pi)) + self._half_log_det()

    @property
    def covariance_matrix(self) -> Tensor:
        return self.scale_tril @ self.scale_tril.mT

    @property
    def precision_matrix(self) -> Tensor:
        from graphc import linalg

        return linalg.inv(self.covariance_matrix)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        return (self.scale_tril * self.scale_tril).sum(-1)


class Uniform(Distribution):
    """The uniform distribution on [low, high) (broadcast)."""

    has_rsample = True

    def __init__(self, low, high, validate_args=None) -> None:
        self.low, self.high = _broadcast(low, high)
        super().__init__(self.low.shape)

    def _rsample(self, sample_shape: tuple) -> Tensor:
        u = G.rand(*self._extended(sample_shape), dtype=self.low.dtype, device=self.low.device)
        return self.low + u * (self.high - self.low)

    def log_prob(self, value) -> Tensor:
        value = _tensor(value, self.low)
        inside = (value >= self.low) & (value < self.high)
        return G.where(inside, -(self.high - self.low).log(), G.full_like(value + self.low, -math.inf))

    def entropy(self) -> Tensor:
        return (self.high - self.low).log()

    def cdf(self, value) -> Tensor:
        return ((_tensor(value, self.low) - self.low) / (self.high - self.low)).clamp(0, 1)

    def icdf(self, value) -> Tensor:
        return self.low + _tensor(value, self.low) * (self.high - self.low)

    @property
    def mean(self) -> Tensor:
        return (self.low + self.high) / 2

    @property
    def variance(self) -> Tensor:
        return (self.high - self.low) ** 2 / 12


class Exponential(Distribution):
    """The exponential distribution of `rate` (mean 1 / rate)."""

    has_rsample = True

    def __init__(self, rate, validate_args=None) -> None:
        (self.rate,) = _broadcast(rate)
        super().__init__(self.rate.shape)

    def _rsample(self, sample_shape: tuple) -> Tensor:
        u = G.rand(*self._extended(sample_shape), dtype=self.rate.dtype, device=self.rate.device)
        return -G.log1p(-u) / self.rate

    def log_prob(self, value) -> Tensor:
        value = _tensor(value, self.rate)
        out = self.rate.log() - self.rate * value
        return G.where(value >= 0, out, G.full_like(out, -math.inf))

    def entropy(self) -> Tensor:
        return 1 - self.rate.log()

    def cdf(self, value) -> Tensor:
        return 1 - G.exp(-self.rate * _tensor(value, self.rate).clamp(min=0))

    def icdf(self, value) -> Tensor:
        return -G.log1p(-_tensor(value, self.rate)) / self.rate

    @property
    def mean(self) -> Tensor:
        return 1 / self.rate

    @property
    def variance(self) -> Tensor:
        return self.rate**-2


class Laplace(Distribution):
    """The Laplace distribution: density exp(-|x - loc| / scale) / (2 scale)."""

    has_rsample = True

    def __init__(self, loc, scale, validate_args=None) -> None:
        self.loc, self.scale = _broadcast(loc, scale)
        super().__init__(self.loc.shape)

    def _rsample(self, sample_shape: tuple) -> Tensor:
        tiny = G.finfo(self.loc.dtype).eps
        u = G.rand(*self._extended(sample_shape), dtype=self.loc.dtype, device=self.loc.device) * 2 - 1
        u = u.clamp(-1 + tiny, 1 - tiny)
        return self.loc - self.scale * G.sign(u) * G.log1p(-u.abs())

    def log_prob(self, value) -> Tensor:
        return -(2 * self.scale).log() - (_tensor(value, self.loc) - self.loc).abs() / self.scale

    def entropy(self) -> Tensor:
        return 1 + (2 * self.scale).log()

    def cdf(self, value) -> Tensor:
        z = _tensor(value, self.loc) - self.loc
        return 0.5 - 0.5 * G.sign(z) * G.expm1(-z.abs() / self.scale)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        return 2 * self.scale**2


def _standard_gamma(concentration: Tensor, shape: tuple) -> Tensor:
    """Gamma(concentration, 1) draws of `shape` (concentration broadcast): Marsaglia and Tsang's
    squeeze method (2000), boosted by u^(1/a) below concentration 1; drawn again where
    rejected until every element is accepted."""
    a = concentration.expand(*shape)
    boost = a < 1
    a = G.where(boost, a + 1, a)
    d = a - 1.0 / 3
    c = 1.0 / (9 * d).sqrt()
    out = G.zeros_like(a)
    todo = G.ones(*shape, dtype=G.bool, device=a.device)
    while bool(todo.any()):
        x = G.randn(*shape, dtype=a.dtype, device=a.device)
        v = (1 + c * x) ** 3
        u = G.rand(*shape, dtype=a.dtype, device=a.device)
        accept = (v > 0) & (u.log() < 0.5 * x * x + d - d * v + d * G.where(v > 0, v, G.ones_like(v)).log())
        take = todo & accept
        out = G.where(take, d * v, out)
        todo = todo & ~accept
    u = G.rand(*shape, dtype=a.dtype, device=a.device)
    return G.where(boost, out * u ** (1 / concentration.expand(*shape)), out)


class Gamma(Distribution):
    """The gamma distribution of `concentration` (shape) and `rate` (density proportional to
    x^(concentration - 1) exp(-rate x))."""

    def __init__(self, concentration, rate, validate_args=None) -> None:
        self.concentration, self.rate = _broadcast(concentration, rate)
        super().__init__(self.concentration.shape)

    def _sample(self, sample_shape: tuple) -> Tensor:
        return _standard_gamma(self.concentration, self._extended(sample_shape)) / self.rate

    def log_prob(self, value) -> Tensor:
        value = _tensor(value, self.rate)
        a, b = self.concentration, self.rate
        out = a * b.log() + G.xlogy(a - 1, value) - b * value - G.lgamma(a)
        return G.where(value >= 0, out, G.full_like(out, -math.inf))

    def entropy(self) -> Tensor:
        a = self.concentration
        return a - self.rate.log() + G.lgamma(a) + (1 - a) * G.digamma(a)

    @property
    def mean(self) -> Tensor:
        return self.concentration / self.rate

    @property
    def variance(self) -> Tensor:
        return self.concentration / self.rate**2


class Dirichlet(Distribution):
    """The Dirichlet distribution over the simplex of `concentration`'s last dim."""

    def __init__(self, concentration, validate_args=None) -> None:
        self.concentration = _tensor(concentration)
        if self.concentration.dim() < 1:
            raise ValueError("Dirichlet: concentration needs at least one dim (the categories)")
        super().__init__(self.concentration.shape[:-1], self.concentration.shape[-1:])

    def _sample(self, sample_shape: tuple) -> Tensor:
        draws = _standard_gamma(self.concentration, self._extended(sample_shape))
        return draws / draws.sum(-1, keepdim=True)

    def log_prob(self, value) -> Tensor:
        a = self.concentration
        value = _tensor(value, a)
        norm = G.lgamma(a).sum(-1) - G.lgamma(a.sum(-1))
        return G.xlogy(a - 1, value).sum(-1) - norm

    def entropy(self) -> Tensor:
        a = self.concentration
        total, k = a.sum(-1), a.shape[-1]
        norm = G.lgamma(a).sum(-1) - G.lgamma(total)
        return norm + (total - k) * G.digamma(total) - ((a - 1) * G.digamma(a)).sum(-1)

    @property
    def mean(self) -> Tensor:
        return self.concentration / self.concentration.sum(-1, keepdim=True)

    @property
    def variance(self) -> Tensor:
        total = self.concentration.sum(-1, keepdim=True)
        mean = self.concentration / total
        return mean * (1 - mean) / (total + 1)


class Beta(Dirichlet):
    """The beta distribution on [0, 1] of `concentration1` (alpha) and `concentration0` (beta)."""

    def __init__(self, concentration1, concentration0, validate_args=None) -> None:
        self.concentration1, self.concentration0 = _broadcast(concentration1, concentration0)
        super().__init__(G.stack([self.concentration1, self.concentration0], -1))
        self.event_shape = ()

    def _sample(self, sample_shape: tuple) -> Tensor:
        draws = _standard_gamma(self.concentration, sample_shape + self.batch_shape + (2,))
        return draws[..., 0] / draws.sum(-1)

    def log_prob(self, value) -> Tensor:
        value = _tensor(value, self.concentration1)
        return super().log_prob(G.stack([value, 1 - value], -1))

    @property
    def mean(self) -> Tensor:
        return self.concentration1 / (self.concentration1 + self.concentration0)

    @property
    def variance(self) -> Tensor:
        total = self.concentration1 + self.concentration0
        return self.concentration1 * self.concentration0 / (total**2 * (total + 1))


class Poisson(Distribution):
    """The Poisson distribution of `rate`: counts k with probability rate^k e^-rate / k!."""

    def __init__(self, rate, validate_args=None) -> None:
        (self.rate,) = _broadcast(rate)
        super().__init__(self.rate.shape)

    def _sample(self, sample_shape: tuple) -> Tensor:
        """Counts by Hormann's transformed rejection (PTRS, 1993) from rate 10, by counting
        exponential arrivals below it; drawn again where rejected."""
        shape = self._extended(sample_shape)
        lam = self.rate.expand(*shape)
        small = lam < 10
        # arrivals: the first k whose running product of uniforms falls below exp(-rate)
        limit = G.exp(-G.where(small, lam, G.zeros_like(lam)))
        product = G.ones_like(lam)
        count = G.zeros_like(lam)
        running = small.clone()
        while bool(running.any()):
            product = product * G.rand(*shape, dtype=lam.dtype, device=lam.device)
            running = running & (product > limit)
            count = count + running.to(lam.dtype)
        big = G.where(small, G.full_like(lam, 10.0), lam)
        log_lam = big.log()
        b = 0.931 + 2.53 * big.sqrt()
        a = -0.059 + 0.02483 * b
        inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
        v_r = 0.9277 - 3.6224 / (b - 2)
        out = G.zeros_like(lam)
        todo = ~small
        while bool(todo.any()):
            u = G.rand(*shape, dtype=lam.dtype, device=lam.device) - 0.5
            v = G.rand(*shape, dtype=lam.dtype, device=lam.device)
            us = 0.5 - u.abs()
            k = ((2 * a / us + b) * u + big + 0.43).floor()
            quick = (us >= 0.07) & (v <= v_r)
            safe_us = G.where(us > 0, us, G.ones_like(us))
            slow = (
                (k >= 0)
                & ~((us < 0.013) & (v > us))
                & (
                    (v * inv_alpha / (a / (safe_us * safe_us) + b)).log()
                    <= -big + k * log_lam - G.lgamma(k + 1)
                )
            )
            accept = (quick | slow) & (k >= 0)
            out = G.where(todo & accept, k, out)
            todo = todo & ~accept
        return G.where(small, count, out)

    def log_prob(self, value) -> Tensor:
        value = _tensor(value, self.rate)
        return G.xlogy(value, self.rate) - self.rate - G.lgamma(value + 1)

    @property
    def mean(self) -> Tensor:
        return self.rate

    @property
    def variance(self) -> Tensor:
        return self.rate


def _probs_and_logits(probs, logits, name: str, categorical: bool):
    if (probs is None) == (logits is None):
        raise ValueError(f"{name}: give either probs or logits, not both or neither")
    if probs is not None:
        probs = _tensor(probs)
        if categorical:
            probs = probs / probs.sum(-1, keepdim=True)
            logits = probs.clamp(min=G.finfo(probs.dtype).tiny).log()
        else:
            eps = G.finfo(probs.dtype).eps
            clamped = probs.clamp(eps, 1 - eps)
            logits = clamped.log() - (-clamped).log1p()
        return probs, logits
    logits = _tensor(logits)
    if categorical:
        logits = logits - logits.logsumexp(-1, keepdim=True)
        return logits.exp(), logits
    return G.sigmoid(logits), logits


class Bernoulli(Distribution):
    """0 or 1, 1 with probability `probs` (or sigmoid(`logits`))."""

    def __init__(self, probs=None, logits=None, validate_args=None) -> None:
        self.probs, self.logits = _probs_and_logits(probs, logits, "Bernoulli", categorical=False)
        super().__init__(self.probs.shape)

    def _sample(self, sample_shape: tuple) -> Tensor:
        return G.bernoulli(self.probs.expand(*self._extended(sample_shape)))

    def log_prob(self, value) -> Tensor:
        value = _tensor(value, self.logits)
        logits, value = G.broadcast_tensors(self.logits, value)
        return -F.binary_cross_entropy_with_logits(logits, value, reduction="none")

    def entropy(self) -> Tensor:
        return F.binary_cross_entropy_with_logits(self.logits, self.probs, reduction="none")

    @property
    def mean(self) -> Tensor:
        return self.probs

    @property
    def mode(self) -> Tensor:
        return (self.probs > 0.5).to(self.probs.dtype)

    @property
    def variance(self) -> Tensor:
        return self.probs * (1 - self.probs)


class Categorical(Distribution):
    """One of K categories (the last dim of `probs` or `logits`), as an int64 index."""

    def __init__(self, probs=None, logits=None, validate_args=None) -> None:
        self.probs, self.logits = _probs_and_logits(probs, logits, "Categorical", categorical=True)
        if self.probs.dim() < 1:
            raise ValueError("Categorical: probs or logits need at least one dim (the categories)")
        super().__init__(self.probs.shape[:-1])

    @property
    def _num_events(self) -> int:
        return self.probs.shape[-1]

    def _sample(self, sample_shape: tuple) -> Tensor:
        """The first category whose cumulative probability passes a uniform draw."""
        shape = sample_shape + self.batch_shape
        cumulative = self.probs.cumsum(-1)
        u = G.rand(*shape, 1, dtype=self.probs.dtype, device=self.probs.device)
        index = (cumulative.expand(*shape, self._num_events) <= u * cumulative[..., -1:]).sum(-1)
        return index.clamp(max=self._num_events - 1).to(G.int64)

    def log_prob(self, value) -> Tensor:
        value = _tensor(value).to(G.int64)
        value, logits = G.broadcast_tensors(value.unsqueeze(-1), self.logits)
        return logits.gather(-1, value[..., :1]).squeeze(-1)

    def entropy(self) -> Tensor:
        logits = self.logits.clamp(min=G.finfo(self.logits.dtype).min)
        return -(self.probs * logits).sum(-1)

    def enumerate_support(self) -> Tensor:
        """Every category, as a leading dim over the batch."""
        values = G.arange(self._num_events, device=self.probs.device)
        return values.reshape(-1, *([1] * len(self.batch_shape))).expand(-1, *self.batch_shape)

    @property
    def mode(self) -> Tensor:
        return self.probs.argmax(-1)


class OneHotCategorical(Categorical):
    """Categorical, its draws one-hot vectors (the categories are the event dim)."""

    def __init__(self, probs=None, logits=None, validate_args=None) -> None:
        super().__init__(probs, logits, validate_args)
        self.event_shape = (self._num_events,)

    def _sample(self, sample_shape: tuple) -> Tensor:
        return F.one_hot(super()._sample(sample_shape), self._num_events).to(self.probs.dtype)

    def log_prob(self, value) -> Tensor:
        return super().log_prob(_tensor(value).argmax(-1))

    @property
    def mode(self) -> Tensor:
        return F.one_hot(super().mode, self._num_events).to(self.probs.dtype)

    @property
    def mean(self) -> Tensor:
        return self.probs

    @property
    def variance(self) -> Tensor:
        return self.probs * (1 - self.probs)


class Independent(Distribution):
    """`base` with its last `reinterpreted_batch_ndims` batch dims read as event dims: one
    log_prob (summed over them) per draw of the whole event (a diagonal Gaussian)."""

    def __init__(
        self, base_distribution: Distribution, reinterpreted_batch_ndims: int, validate_args=None
    ) -> None:
        n = reinterpreted_batch_ndims
        if n > len(base_distribution.batch_shape):
            raise ValueError(
                f"Independent: {n} dims to reinterpret, but the base has batch shape "
                f"{list(base_distribution.batch_shape)}"
            )
        self.base_dist, self.reinterpreted_batch_ndims = base_distribution, n
        shape = base_distribution.batch_shape
        super().__init__(shape[: len(shape) - n], shape[len(shape) - n :] + base_distribution.event_shape)
        self.has_rsample = base_distribution.has_rsample

    def _sum(self, value: Tensor) -> Tensor:
        n = self.reinterpreted_batch_ndims
        return value.sum(tuple(range(-n, 0))) if n else value

    def sample(self, sample_shape=()) -> Tensor:
        return self.base_dist.sample(sample_shape)

    def rsample(self, sample_shape=()) -> Tensor:
        return self.base_dist.rsample(sample_shape)

    def log_prob(self, value) -> Tensor:
        return self._sum(self.base_dist.log_prob(value))

    def entropy(self) -> Tensor:
        return self._sum(self.base_dist.entropy())

    @property
    def mean(self) -> Tensor:
        return self.base_dist.mean

    @property
    def variance(self) -> Tensor:
        return self.base_dist.variance


def kl_divergence(p: Distribution, q: Distribution) -> Tensor:
    """KL(p || q) in closed form, for two distributions of one kind (Normal, Uniform,
    Exponential, Bernoulli, Categorical, OneHotCategorical, and Independent of those)."""
    if isinstance(p, Independent) and isinstance(q, Independent):
        if p.reinterpreted_batch_ndims != q.reinterpreted_batch_ndims:
            raise NotImplementedError("kl_divergence: Independent distributions over different event dims")
        return p._sum(kl_divergence(p.base_dist, q.base_dist))
    if type(p) is not type(q):
        raise NotImplementedError(
            f"kl_divergence of {type(p).__name__} from {type(q).__name__} has no closed form here; "
            "both must be one kind"
        )
    if isinstance(p, Normal):
        ratio = (p.scale / q.scale) ** 2
        return 0.5 * (ratio + ((p.loc - q.loc) / q.scale) ** 2 - 1 - ratio.log())
    if isinstance(p, MultivariateNormal):
        from graphc.linalg import solve_triangular

        k = p.event_shape[0]
        shape = G.broadcast_shapes(p.scale_tril.shape, q.scale_tril.shape)
        q_tril = q.scale_tril.expand(*shape)
        # tr(Sq^-1 Sp) = ||Lq^-1 Lp||^2 and the Mahalanobis term through Lq^-1 (mu_q - mu_p)
        ratio = solve_triangular(q_tril, p.scale_tril.expand(*shape), upper=False)
        gap = solve_triangular(q_tril, (q.loc - p.loc).expand(*shape[:-1]).unsqueeze(-1), upper=False)
        trace = (ratio * ratio).sum((-2, -1))
        mahalanobis = (gap * gap).sum((-2, -1))
        return 0.5 * (trace + mahalanobis - k) + q._half_log_det() - p._half_log_det()
    if isinstance(p, Exponential):
        ratio = q.rate / p.rate
        return ratio - ratio.log() - 1
    if isinstance(p, Uniform):
        inside = (q.low <= p.low) & (p.high <= q.high)
        kl = ((q.high - q.low) / (p.high - p.low)).log()
        return G.where(inside, kl, G.full_like(kl, math.inf))
    if isinstance(p, Bernoulli):
        # p log(p/q) + (1-p) log((1-p)/(1-q)), through logits (no 0 * log 0)
        return p.probs * (F.softplus(-q.logits) - F.softplus(-p.logits)) + (1 - p.probs) * (
            F.softplus(q.logits) - F.softplus(p.logits)
        )
    if isinstance(p, Categorical):  # (OneHotCategorical too)
        terms = p.probs * (p.logits - q.logits)
        return G.where(p.probs == 0, G.zeros_like(terms), terms).sum(-1)
    raise NotImplementedError(f"kl_divergence: no closed form for {type(p).__name__}")
