"""Sources: constants and random numbers. Random ops are pure functions of a `seed` attribute,
so a graph that holds them stays deterministic and the frontend owns the generator state."""

from __future__ import annotations

import numpy as np

from ir.dtypes import from_name
from ir.ops.registry import register


def _np_dtype(dtype: str):
    return from_name(dtype).np


@register("full", differentiable=False)
def _full(xp, shape, value, dtype):
    """A tensor of `shape` filled with `value`."""
    return xp.full(tuple(shape), value, dtype=_np_dtype(dtype))


@register("arange", differentiable=False)
def _arange(xp, start, end, step, dtype):
    """Values from `start` up to (not including) `end` in steps of `step`."""
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    n = max(int(np.ceil((end - start) / step)), 0)
    exact = all(isinstance(v, int) for v in (start, end, step))
    steps = xp.arange(n, dtype=np.int64 if exact else np.float64)
    return (start + step * steps).astype(_np_dtype(dtype))


@register("linspace", differentiable=False)
def _linspace(xp, start, end, steps, dtype):
    """`steps` evenly spaced values from `start` to `end` inclusive."""
    if steps < 0:
        raise ValueError(f"linspace: number of steps must be non-negative, got {steps}")
    target = _np_dtype(dtype)
    work = target if target.kind == "f" else np.dtype(np.float64)
    if steps == 1:
        return xp.full((1,), start, dtype=work).astype(target)
    # PyTorch's kernel: the first half counts up from start, the second half down from end,
    # in the output's precision, so both ends are exact
    lo, hi = work.type(start), work.type(end)
    step = (hi - lo) / work.type(steps - 1)
    idx = xp.arange(steps)
    half = steps // 2
    up = lo + step * idx[:half].astype(work)
    down = hi - step * (steps - 1 - idx[half:]).astype(work)
    return xp.concatenate([up, down]).astype(target)


@register("eye", differentiable=False)
def _eye(xp, n, m, dtype):
    """An n x m matrix with ones on the diagonal."""
    return xp.eye(n, m, dtype=_np_dtype(dtype))


def _rng(xp, seed):
    return xp.random.default_rng(seed)


@register("uniform", differentiable=False)
def _uniform(xp, shape, low, high, dtype, seed):
    """Uniform samples in [low, high)."""
    out = _rng(xp, seed).random(tuple(shape), dtype=np.float64)
    return (low + (high - low) * out).astype(_np_dtype(dtype))


@register("normal", differentiable=False)
def _normal(xp, shape, mean, std, dtype, seed):
    """Normal samples with the given mean and standard deviation."""
    out = _rng(xp, seed).standard_normal(tuple(shape), dtype=np.float64)
    return (mean + std * out).astype(_np_dtype(dtype))


@register("randint", differentiable=False)
def _randint(xp, shape, low, high, dtype, seed):
    """Uniform integers in [low, high)."""
    if high <= low:
        raise ValueError(f"randint: expected low < high, got low={low}, high={high}")
    return _rng(xp, seed).integers(low, high, tuple(shape)).astype(_np_dtype(dtype))


@register("randperm", differentiable=False)
def _randperm(xp, n, dtype, seed):
    """A random permutation of 0..n-1."""
    return _rng(xp, seed).permutation(n).astype(_np_dtype(dtype))


@register("bernoulli", differentiable=False)
def _bernoulli(xp, p, seed):
    """1 with probability p (elementwise), else 0, in p's dtype (drawn in float32, 24 random
    bits each, for half and single precision p: a dropout mask in half the time)."""
    draw = np.float64 if p.dtype == np.float64 else np.float32
    return (_rng(xp, seed).random(p.shape, dtype=draw) < p).astype(p.dtype)
