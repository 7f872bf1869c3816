"""Reductions over a tuple of dims (`dims=None`: all of them), with `keepdim` as in PyTorch.

Integer and bool sums and products accumulate in int64 (PyTorch's rule); `mean` and `var`
want floating inputs, which the frontend provides by promotion.
"""

from __future__ import annotations

import warnings

import numpy as np

from ir.errors import ShapeError
from ir.ops.registry import Promote, register


def _axes(x, dims):
    return None if dims is None else tuple(dims)


def _check_nonempty(name, x, dims):
    if x.size == 0:
        raise ShapeError(
            f"{name}(): cannot reduce an empty tensor of shape {tuple(x.shape)} over dims {dims} "
            "(the result has no identity element)"
        )


@register("sum", promote=Promote.NONE)
def _sum(xp, x, dims=None, keepdim=False):
    """Sum over `dims`."""
    dtype = np.int64 if x.dtype.kind in "iub" else None
    return xp.sum(x, axis=_axes(x, dims), keepdims=keepdim, dtype=dtype)


@register("prod", promote=Promote.NONE)
def _prod(xp, x, dims=None, keepdim=False):
    """Product over `dims`."""
    dtype = np.int64 if x.dtype.kind in "iub" else None
    return xp.prod(x, axis=_axes(x, dims), keepdims=keepdim, dtype=dtype)


@register("mean", promote=Promote.FLOAT)
def _mean(xp, x, dims=None, keepdim=False):
    """Arithmetic mean over `dims` (NaN for an empty reduction)."""
    if x.size == 0:
        with warnings.catch_warnings():  # numpy warns "Mean of empty slice"
            warnings.simplefilter("ignore")
            return xp.mean(x, axis=_axes(x, dims), keepdims=keepdim)
    return xp.mean(x, axis=_axes(x, dims), keepdims=keepdim)


@register("var", promote=Promote.FLOAT)
def _var(xp, x, dims=None, correction=1, keepdim=False):
    """Variance over `dims` with Bessel's `correction` (1: unbiased, 0: population).

    With no more elements than `correction` the result is NaN, as in PyTorch.
    """
    with warnings.catch_warnings(), np.errstate(all="ignore"):  # too few elements: NaN
        warnings.simplefilter("ignore")
        return xp.var(x, axis=_axes(x, dims), keepdims=keepdim, ddof=correction)


@register("amax", promote=Promote.NONE)
def _amax(xp, x, dims=None, keepdim=False):
    """Largest element over `dims` (NaN if any element is NaN)."""
    _check_nonempty("amax", x, dims)
    return xp.max(x, axis=_axes(x, dims), keepdims=keepdim)


@register("amin", promote=Promote.NONE)
def _amin(xp, x, dims=None, keepdim=False):
    """Smallest element over `dims` (NaN if any element is NaN)."""
    _check_nonempty("amin", x, dims)
    return xp.min(x, axis=_axes(x, dims), keepdims=keepdim)


@register("argmax", promote=Promote.NONE, differentiable=False)
def _argmax(xp, x, dim=None, keepdim=False):
    """Index of the first largest element along `dim` (of the flattened tensor if None)."""
    _check_nonempty("argmax", x, dim)
    return xp.argmax(x, axis=dim, keepdims=keepdim).astype(np.int64, copy=False)


@register("argmin", promote=Promote.NONE, differentiable=False)
def _argmin(xp, x, dim=None, keepdim=False):
    """Index of the first smallest element along `dim` (of the flattened tensor if None)."""
    _check_nonempty("argmin", x, dim)
    return xp.argmin(x, axis=dim, keepdims=keepdim).astype(np.int64, copy=False)


def _extreme_along(xp, x, dim, keepdim, arg):
    idx = arg(xp, x, dim, True)
    values = xp.take_along_axis(x, idx, axis=dim)
    if not keepdim:
        values, idx = xp.squeeze(values, dim), xp.squeeze(idx, dim)
    return values, idx


@register("max_dim", promote=Promote.NONE, num_outputs=2)
def _max_dim(xp, x, dim, keepdim=False):
    """(values, indices) of the largest elements along `dim`."""
    return _extreme_along(xp, x, dim, keepdim, _argmax)


@register("min_dim", promote=Promote.NONE, num_outputs=2)
def _min_dim(xp, x, dim, keepdim=False):
    """(values, indices) of the smallest elements along `dim`."""
    return _extreme_along(xp, x, dim, keepdim, _argmin)


@register("any", promote=Promote.NONE, differentiable=False)
def _any(xp, x, dims=None, keepdim=False):
    """Whether any element over `dims` is nonzero."""
    return xp.any(x, axis=_axes(x, dims), keepdims=keepdim)


@register("all", promote=Promote.NONE, differentiable=False)
def _all(xp, x, dims=None, keepdim=False):
    """Whether every element over `dims` is nonzero."""
    return xp.all(x, axis=_axes(x, dims), keepdims=keepdim)


@register("cumsum", promote=Promote.NONE)
def _cumsum(xp, x, dim):
    """Running sum along `dim` (integers accumulate in int64)."""
    dtype = np.int64 if x.dtype.kind in "iub" else None
    return xp.cumsum(x, axis=dim, dtype=dtype)


@register("cumprod", promote=Promote.NONE)
def _cumprod(xp, x, dim):
    """Running product along `dim` (integers accumulate in int64)."""
    dtype = np.int64 if x.dtype.kind in "iub" else None
    return xp.cumprod(x, axis=dim, dtype=dtype)
