"""Elementwise ops: unary and binary math, comparisons, logic, bitwise, `where`, `cast`, `clamp`.

Binary ops broadcast like numpy. Ops that meet domain edges in normal use (log of 0, division by
0) compute quietly and return inf/nan as PyTorch does, instead of emitting numpy warnings.
"""

from __future__ import annotations

import functools

import numpy as np

from ir.dtypes import from_name
from ir.errors import ShapeError
from ir.ops.registry import Promote, register
from ir.ops.special import digamma, erf, erfc, erfinv, lgamma, trigamma


def _quiet(fn):
    @functools.wraps(fn)
    def run(xp, *args, **attrs):
        with np.errstate(all="ignore"):
            return fn(xp, *args, **attrs)

    return run


UNARY: list[str] = []  # the plain one-input elementwise ops, as defined below
BINARY: list[str] = []  # the plain broadcasting two-input ones (comparisons and logic included)


def _unary(name, fn, promote=Promote.COMMON, quiet=False, differentiable=True):
    UNARY.append(name)
    impl = (lambda xp, x: fn(xp, x)) if not quiet else _quiet(lambda xp, x: fn(xp, x))
    impl.__doc__ = f"Elementwise {name}."
    register(name, promote=promote, differentiable=differentiable)(impl)


def _binary(name, fn, promote=Promote.COMMON, quiet=False, differentiable=True, ufunc=None):
    BINARY.append(name)
    if ufunc is not None:  # one frame less on the eager hot path
        np_ufunc = getattr(np, ufunc)

        def impl(xp, a, b):
            try:
                return np_ufunc(a, b) if xp is np else getattr(xp, ufunc)(a, b)
            except ValueError:
                raise _broadcast_error(name, a, b) from None
    else:

        def impl(xp, a, b):
            try:
                return fn(xp, a, b)
            except ValueError:
                raise _broadcast_error(name, a, b) from None

    impl = _quiet(impl) if quiet else impl
    impl.__doc__ = f"Elementwise {name}, broadcasting."
    register(name, promote=promote, differentiable=differentiable)(impl)


def _broadcast_error(name, a, b) -> ShapeError:
    sa, sb = tuple(getattr(a, "shape", ())), tuple(getattr(b, "shape", ()))
    for i in range(1, max(len(sa), len(sb)) + 1):
        da = sa[-i] if i <= len(sa) else 1
        db = sb[-i] if i <= len(sb) else 1
        if da != db and 1 not in (da, db):
            dim = max(len(sa), len(sb)) - i
            return ShapeError(
                f"{name}: the size of tensor a ({da}) must match the size of tensor b ({db}) at "
                f"non-singleton dimension {dim} (shapes {list(sa)} and {list(sb)})"
            )
    return ShapeError(f"{name}: shapes {list(sa)} and {list(sb)} do not broadcast")


F = Promote.FLOAT
# --- unary math ---
_unary("neg", lambda xp, x: xp.negative(x))
_unary("abs", lambda xp, x: xp.abs(x))
# (PyTorch's sign of NaN is 0; numpy's is NaN)
_unary(
    "sign",
    lambda xp, x: xp.where(xp.isnan(x), 0, xp.sign(x)).astype(x.dtype) if x.dtype.kind == "f" else xp.sign(x),
    differentiable=True,
)
_unary("exp", lambda xp, x: xp.exp(x), F, quiet=True)
_unary("exp2", lambda xp, x: xp.exp2(x), F, quiet=True)
_unary("expm1", lambda xp, x: xp.expm1(x), F, quiet=True)
_unary("log", lambda xp, x: xp.log(x), F, quiet=True)
_unary("log2", lambda xp, x: xp.log2(x), F, quiet=True)
_unary("log10", lambda xp, x: xp.log10(x), F, quiet=True)
_unary("log1p", lambda xp, x: xp.log1p(x), F, quiet=True)
_unary("sin", lambda xp, x: xp.sin(x), F, quiet=True)
_unary("cos", lambda xp, x: xp.cos(x), F, quiet=True)
_unary("tan", lambda xp, x: xp.tan(x), F, quiet=True)
_unary("asin", lambda xp, x: xp.arcsin(x), F, quiet=True)
_unary("acos", lambda xp, x: xp.arccos(x), F, quiet=True)
_unary("atan", lambda xp, x: xp.arctan(x), F)
_unary("sinh", lambda xp, x: xp.sinh(x), F, quiet=True)
_unary("cosh", lambda xp, x: xp.cosh(x), F, quiet=True)
_unary("tanh", lambda xp, x: xp.tanh(x), F)
_unary("asinh", lambda xp, x: xp.arcsinh(x), F)
_unary("acosh", lambda xp, x: xp.arccosh(x), F, quiet=True)
_unary("atanh", lambda xp, x: xp.arctanh(x), F, quiet=True)
_unary("sqrt", lambda xp, x: xp.sqrt(x), F, quiet=True)
_unary("rsqrt", lambda xp, x: xp.reciprocal(xp.sqrt(x)), F, quiet=True)
_unary("reciprocal", lambda xp, x: xp.reciprocal(x), F, quiet=True)
_unary("sigmoid", lambda xp, x: _sigmoid(xp, x), F, quiet=True)
_unary("erf", lambda xp, x: erf(xp, x), F)
_unary("erfinv", lambda xp, x: erfinv(xp, x), F)
_unary("erfc", lambda xp, x: erfc(xp, x), F)
_unary("lgamma", lambda xp, x: lgamma(xp, x), F)
_unary("digamma", lambda xp, x: digamma(xp, x), F)


@register("trigamma", promote=F, differentiable=False)
def _trigamma(xp, x):
    """Elementwise trigamma, polygamma(1, x): digamma's derivative."""
    return trigamma(xp, x)


_unary("relu", lambda xp, x: xp.maximum(x, xp.zeros((), x.dtype)))
_unary("ceil", lambda xp, x: x.copy() if x.dtype.kind in "iub" else xp.ceil(x))
_unary("floor", lambda xp, x: x.copy() if x.dtype.kind in "iub" else xp.floor(x))
_unary("trunc", lambda xp, x: x.copy() if x.dtype.kind in "iub" else xp.trunc(x))
_unary("isnan", lambda xp, x: xp.isnan(x), differentiable=False)
_unary("isinf", lambda xp, x: xp.isinf(x), differentiable=False)
_unary("isfinite", lambda xp, x: xp.isfinite(x), differentiable=False)
_unary("logical_not", lambda xp, x: xp.logical_not(x), Promote.NONE, differentiable=False)
_unary("bitwise_not", lambda xp, x: xp.invert(x), Promote.INTEGRAL, differentiable=False)


def _sigmoid(xp, x):
    # exp of -|x| never overflows; the two branches agree where they meet
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


@register("round", promote=Promote.COMMON)
def _round(xp, x, decimals: int = 0):
    """Round half to even, to `decimals` places (PyTorch's torch.round)."""
    if x.dtype.kind in "iub":
        return x.copy()
    return xp.round(x, decimals)


# --- binary math ---
_binary("add", None, ufunc="add")
_binary("sub", None, ufunc="subtract")
_binary("mul", None, ufunc="multiply")
_binary("div", lambda xp, a, b: xp.true_divide(a, b), F, quiet=True)
_binary("floor_divide", lambda xp, a, b: xp.floor_divide(a, b), quiet=True, differentiable=False)
_binary("remainder", lambda xp, a, b: xp.remainder(a, b), quiet=True)
_binary("fmod", lambda xp, a, b: xp.fmod(a, b), quiet=True)
_binary("pow", lambda xp, a, b: _pow(xp, a, b), quiet=True)
_binary("maximum", lambda xp, a, b: xp.maximum(a, b))
_binary("minimum", lambda xp, a, b: xp.minimum(a, b))
_binary("atan2", lambda xp, a, b: xp.arctan2(a, b), F)


def _pow(xp, a, b):
    if _kind(a) in "iu" and _kind(b) in "iu" and (xp.asarray(b) < 0).any():
        raise ValueError("integers to negative integer powers are not allowed")
    return xp.power(a, b)


def _kind(v) -> str:
    if hasattr(v, "dtype"):
        return v.dtype.kind
    return "b" if isinstance(v, bool) else "i" if isinstance(v, int) else "f"


# --- comparisons and logic: computed in the promoted type, bool out ---
for _name, _fn in [
    ("eq", np.equal),
    ("ne", np.not_equal),
    ("lt", np.less),
    ("le", np.less_equal),
    ("gt", np.greater),
    ("ge", np.greater_equal),
]:
    _binary(_name, lambda xp, a, b, _n=_fn.__name__: getattr(xp, _n)(a, b), differentiable=False)

_binary("logical_and", lambda xp, a, b: xp.logical_and(a, b), Promote.NONE, differentiable=False)
_binary("logical_or", lambda xp, a, b: xp.logical_or(a, b), Promote.NONE, differentiable=False)
_binary("logical_xor", lambda xp, a, b: xp.logical_xor(a, b), Promote.NONE, differentiable=False)
_binary("bitwise_and", lambda xp, a, b: xp.bitwise_and(a, b), Promote.INTEGRAL, differentiable=False)
_binary("bitwise_or", lambda xp, a, b: xp.bitwise_or(a, b), Promote.INTEGRAL, differentiable=False)
_binary("bitwise_xor", lambda xp, a, b: xp.bitwise_xor(a, b), Promote.INTEGRAL, differentiable=False)
_binary("left_shift", lambda xp, a, b: xp.left_shift(a, b), Promote.INTEGRAL, differentiable=False)
_binary("right_shift", lambda xp, a, b: xp.right_shift(a, b), Promote.INTEGRAL, differentiable=False)


@register("where", promote=Promote.COMMON, promoted=(1, 2))
def _where(xp, cond, a, b):
    """Elements of `a` where `cond` holds, else of `b` (all three broadcast)."""
    try:
        return xp.where(cond, a, b)
    except ValueError:
        shapes = [list(getattr(v, "shape", ())) for v in (cond, a, b)]
        raise ShapeError(
            f"where: the condition, input and other of shapes {shapes} do not broadcast"
        ) from None


@register("clamp", promote=Promote.COMMON)
def _clamp(xp, x, lo, hi):
    """`x` limited to [lo, hi]; `lo` or `hi` may be None (no limit). NaN stays NaN."""
    if lo is not None:
        x = xp.maximum(x, lo)
    if hi is not None:
        x = xp.minimum(x, hi)
    return x


@register("cast")
def _cast(xp, x, dtype: str):
    """`x` converted to the dtype named `dtype` (floats to integers truncate toward zero)."""
    target = from_name(dtype).np
    if x.dtype.kind == "f" and target.kind in "iu":
        with np.errstate(all="ignore"):
            return xp.trunc(x).astype(target)
    return x.astype(target)
