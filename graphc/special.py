"""`graphc.special`: PyTorch's special functions that graphc has, under their torch.special
names (each differentiable)."""

from __future__ import annotations

import math

import graphc as G
from graphc._tensor import Tensor
from graphc.nn import functional as F

__all__ = [
    "digamma",
    "entr",
    "erfc",
    "gammaln",
    "polygamma",
    "psi",
    "erf",
    "erfinv",
    "exp2",
    "expit",
    "expm1",
    "log1p",
    "log_softmax",
    "logit",
    "logsumexp",
    "ndtr",
    "ndtri",
    "round",
    "sinc",
    "softmax",
    "xlog1py",
    "xlogy",
]


def erf(input: Tensor) -> Tensor:
    return G.erf(input)


def erfinv(input: Tensor) -> Tensor:
    return G.erfinv(input)


def erfc(input: Tensor) -> Tensor:
    """1 - erf(x), accurate in the tail (where 1 - erf would round to 0)."""
    return G.erfc(input)


def gammaln(input: Tensor) -> Tensor:
    """log |Gamma(x)|."""
    return G.lgamma(input)


def digamma(input: Tensor) -> Tensor:
    return G.digamma(input)


psi = digamma


def polygamma(n: int, input: Tensor) -> Tensor:
    return G.polygamma(n, input)


def expit(input: Tensor) -> Tensor:
    """The logistic sigmoid."""
    return G.sigmoid(input)


def logit(input: Tensor, eps: float | None = None) -> Tensor:
    """log(p / (1 - p)), p clamped to [eps, 1 - eps] where eps is given."""
    return G.logit(input, eps)


def exp2(input: Tensor) -> Tensor:
    return G.exp2(input)


def expm1(input: Tensor) -> Tensor:
    return G.expm1(input)


def log1p(input: Tensor) -> Tensor:
    return G.log1p(input)


def logsumexp(input: Tensor, dim, keepdim: bool = False) -> Tensor:
    return G.logsumexp(input, dim, keepdim)


def softmax(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    return F.softmax(input, dim, dtype=dtype)


def log_softmax(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    return F.log_softmax(input, dim, dtype=dtype)


def round(input: Tensor, decimals: int = 0) -> Tensor:
    return G.round(input, decimals=decimals)


def ndtr(input: Tensor) -> Tensor:
    """The standard normal's CDF."""
    return 0.5 * (1 + G.erf(input / math.sqrt(2)))


def ndtri(input: Tensor) -> Tensor:
    """The standard normal's quantile function (ndtr's inverse)."""
    return math.sqrt(2) * G.erfinv(2 * input - 1)


def sinc(input: Tensor) -> Tensor:
    """sin(pi x) / (pi x), 1 at 0."""
    scaled = input * math.pi
    zero = input == 0
    safe = G.where(zero, G.ones_like(scaled), scaled)
    return G.where(zero, G.ones_like(scaled), G.sin(safe) / safe)


def entr(input: Tensor) -> Tensor:
    """-x ln x: 0 at 0, -inf below."""
    safe = G.where(input > 0, input, G.ones_like(input))
    out = -input * G.log(safe)
    return G.where(input < 0, G.full_like(out, -math.inf), G.where(input == 0, G.zeros_like(out), out))


def xlogy(input, other) -> Tensor:
    """x * log(y), 0 where x is 0 (y NaN excepted)."""
    return G.xlogy(input, other)


def xlog1py(input, other) -> Tensor:
    """x * log1p(y), 0 where x is 0 (y NaN excepted)."""
    x, y = G.broadcast_tensors(*(v if isinstance(v, Tensor) else G.tensor(v) for v in (input, other)))
    product = x * G.log1p(G.where(x == 0, G.zeros_like(y), y))
    return G.where((x == 0) & ~G.isnan(y), G.zeros_like(product), product)
