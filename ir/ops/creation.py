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


# --- counter-based random numbers ---
# The bits of element i of a draw are a hash of (seed, i): SplitMix64's output function at
# counter i + 1 of a stream keyed by the seed. Written once, in int64 arithmetic (wrapping
# products, logical shifts as arithmetic ones masked) through an array module's functions, so
# numpy, cupy and a graph of IR ops (graphc._native.bernoulli: a compiled kernel) all draw the
# same numbers.

RNG_KEY = "rng.key"  # the graph input a captured random op draws from (i64[]: a stream_key)


def with_key(graph, inputs, next_seed):
    """`inputs` of `graph` (a list in order or a dict by name), with a key made from
    `next_seed()` added where the graph draws random numbers (its last input is RNG_KEY) and
    they leave the key out; as given otherwise (a key passed in repeats a call's draws)."""
    if not graph.inputs or graph.inputs[-1].name != RNG_KEY:
        return inputs
    if isinstance(inputs, dict):
        missing = RNG_KEY not in inputs
    else:
        missing = len(inputs) + 1 == len(graph.inputs)
    if not missing:
        return inputs
    key = np.array(stream_key(next_seed()), dtype=np.int64)
    return {**inputs, RNG_KEY: key} if isinstance(inputs, dict) else [*inputs, key]


GOLDEN = -0x61C8864680B583EB  # 0x9E3779B97F4A7C15 as int64
MIX = (-0x40A7B892E31B1A47, -0x6B2FB644ECCEEE15)  # 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _int64(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >> 63 else value


def stream_key(seed: int) -> int:
    """The int64 key of the stream of `seed`: the seed hashed (nearby seeds, far-apart streams),
    plus the first step of the counter."""
    z = (seed * 0x9E3779B97F4A7C15) & ((1 << 64) - 1)
    for shift, mix in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        z = ((z ^ (z >> shift)) * mix) & ((1 << 64) - 1)
    return _int64((z ^ (z >> 31)) + 0x9E3779B97F4A7C15)


def _shift_out(xp, z, k: int):
    """z >> k as unsigned 64-bit numbers (int64 shifts are arithmetic: the sign is masked off)."""
    return xp.bitwise_and(xp.right_shift(z, k), (1 << (64 - k)) - 1)


def counter_bits(xp, index, key):
    """64 random bits (int64) for each int64 counter in `index` of the stream `key`."""
    z = xp.add(xp.multiply(index, GOLDEN), key)
    for shift, mix in zip((30, 27), MIX, strict=True):
        z = xp.multiply(xp.bitwise_xor(z, _shift_out(xp, z, shift)), mix)
    return xp.bitwise_xor(z, _shift_out(xp, z, 31))


def counter_uniform(xp, index, key, dtype=np.float32):
    """A uniform in [0, 1) per counter, float32 (the top 24 bits times 2^-24) or float64 (53)."""
    digits = np.finfo(dtype).nmant + 1
    bits = _shift_out(xp, counter_bits(xp, index, key), 64 - digits)
    return xp.multiply(xp.asarray(bits, dtype=dtype), np.dtype(dtype).type(2.0**-digits))


def counter_normal(xp, index, key, dtype=np.float32):
    """A standard normal per counter: Box-Muller from the uniforms at counters 2i and 2i + 1
    (1 - u is in (0, 1]: its log is finite)."""
    twice = xp.multiply(index, 2)
    u1 = counter_uniform(xp, twice, key, dtype)
    u2 = counter_uniform(xp, xp.add(twice, 1), key, dtype)
    number = np.dtype(dtype).type
    one_minus = xp.add(xp.multiply(u1, number(-1.0)), number(1.0))  # (exactly 1 - u1)
    radius = xp.sqrt(xp.multiply(xp.log(one_minus), number(-2.0)))
    return xp.multiply(radius, xp.cos(xp.multiply(u2, number(2 * np.pi))))


class GraphArrays:
    """The functions of an array module that `counter_uniform` and `counter_normal` call,
    adding graph nodes by
    `node(op, inputs, attrs)` (a Value) and turning Python ints and numpy scalars into
    `constant(array)` values: the generator's one definition builds graphs too (an eager
    kernel's, a captured draw's)."""

    def __init__(self, node, constant) -> None:
        self._node, self._constant = node, constant

    def _value(self, v):
        if isinstance(v, (int, np.generic)):
            return self._constant(np.asarray(v, dtype=np.int64 if isinstance(v, int) else v.dtype))
        return v

    def asarray(self, v, dtype):
        return self._node("cast", [v], {"dtype": np.dtype(dtype).name})

    def _op(self, op: str, a, b):
        return self._node(op, [self._value(a), self._value(b)], {})

    def add(self, a, b):
        return self._op("add", a, b)

    def multiply(self, a, b):
        return self._op("mul", a, b)

    def bitwise_xor(self, a, b):
        return self._op("bitwise_xor", a, b)

    def bitwise_and(self, a, b):
        return self._op("bitwise_and", a, b)

    def right_shift(self, a, b):
        return self._op("right_shift", a, b)

    def sqrt(self, a):
        return self._node("sqrt", [a], {})

    def log(self, a):
        return self._node("log", [a], {})

    def cos(self, a):
        return self._node("cos", [a], {})


@register("bernoulli", differentiable=False)
def _bernoulli(xp, p, seed):
    """1 with probability p (elementwise), else 0, in p's dtype: element i is 1 where its
    counter-based uniform (24 random bits for half and single precision p, 53 for double) is
    below p. The same numbers on every backend, compiled kernels included."""
    index = xp.arange(p.size, dtype=np.int64).reshape(p.shape)
    u = counter_uniform(xp, index, stream_key(seed), np.float64 if p.dtype == np.float64 else np.float32)
    return (u < p).astype(p.dtype)
