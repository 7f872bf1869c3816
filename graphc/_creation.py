"""Making tensors: from data, filled, ranges, and random (reproducible with `manual_seed`).

Random ops draw a fresh seed from a `Generator` for every call and pass it to the op, so the
same seed always gives the same numbers, on every device and in a recorded graph alike.
"""

from __future__ import annotations

import numpy as np

from graphc import _device
from graphc._dispatch import dispatch
from graphc._functions import _write_out
from graphc._movement import shape_arg
from graphc._tensor import Tensor, get_default_dtype
from ir import dtypes
from ir.ops import OPS


def _finish(arr, dtype, device, requires_grad: bool, out: Tensor | None = None) -> Tensor:
    """A new tensor (or `arr` itself when it is the tensor an op just made) on `device`."""
    dev = _device.resolve(device)
    t = arr if isinstance(arr, Tensor) else Tensor._wrap(arr)
    if dev.type != "cpu":
        t = Tensor._wrap(_device.to_device(t._data, dev))
    if requires_grad:
        t.requires_grad_(True)
    return _write_out(t, out) if out is not None else t


def _array_from_data(data, dtype: dtypes.DType | None) -> np.ndarray:
    if isinstance(data, Tensor):
        arr = _device.to_device(data._data, _device.CPU)
        return arr.astype(dtype.np) if dtype is not None else arr.copy()
    from_numpy = isinstance(data, (np.ndarray, np.generic))
    if isinstance(data, (list, tuple)) and _has_tensor(data):
        data = _tensors_to_arrays(data)
    try:
        arr = np.array(data).view(np.ndarray)
    except ValueError as e:
        raise ValueError(f"tensor(): the nested sequences have uneven lengths ({e})") from None
    if arr.dtype.kind not in "biuf" and arr.size:
        raise TypeError(
            f"tensor(): could not infer a numeric dtype from {type(data).__name__} "
            f"data of numpy kind {arr.dtype!r}"
        )
    if dtype is not None:
        return arr.astype(dtype.np)
    if arr.size == 0 and not from_numpy:
        return arr.astype(get_default_dtype().np)
    if arr.dtype.kind == "f" and not from_numpy and arr.dtype == np.float64:
        return arr.astype(get_default_dtype().np)
    if arr.dtype.kind in "iu" and not from_numpy:
        return arr.astype(np.int64)
    dtypes.from_numpy(arr.dtype)  # refuse types graphc does not hold
    return arr


def _has_tensor(seq) -> bool:
    return any(isinstance(x, Tensor) or (isinstance(x, (list, tuple)) and _has_tensor(x)) for x in seq)


def _tensors_to_arrays(seq):
    return [
        x.detach().numpy(force=True)
        if isinstance(x, Tensor)
        else _tensors_to_arrays(x)
        if isinstance(x, (list, tuple))
        else x
        for x in seq
    ]


def tensor(data, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of `data` (nested lists/tuples of numbers, a numpy array or
    a tensor). Python floats give the default float dtype, ints int64, bools bool.

    >>> graphc.tensor([[1, 2], [3, 4]])
    tensor([[1, 2],
            [3, 4]])
    """
    return _finish(_array_from_data(data, dtype), dtype, device, requires_grad)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """`data` as a tensor, sharing memory with a numpy array or tensor when no conversion is
    needed."""
    if isinstance(data, Tensor) and (dtype is None or data.dtype is dtype) and device is None:
        return data
    if isinstance(data, np.ndarray) and (dtype is None or data.dtype == dtype.np) and device is None:
        return from_numpy(data)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(ndarray: np.ndarray) -> Tensor:
    """A CPU tensor sharing memory with `ndarray` (changes to either show in the other)."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"from_numpy() expects a numpy.ndarray, got {type(ndarray).__name__}")
    dtypes.from_numpy(ndarray.dtype)
    # CPU tensors hold exactly numpy.ndarray (subclasses such as memmap are viewed as one)
    return Tensor._wrap(ndarray if type(ndarray) is np.ndarray else ndarray.view(np.ndarray))


def _dtype_or_default(dtype):
    return get_default_dtype() if dtype is None else dtype


def _filled(size, value, dtype, device, requires_grad, out) -> Tensor:
    shape = shape_arg(size)
    if any(s < 0 for s in shape):
        raise ValueError(f"negative dimension in size {list(shape)}")
    # through the dispatch point, so a capture records the fill (and its shape) as an op
    t = dispatch(OPS["full"], (), {"shape": shape, "value": value, "dtype": _dtype_or_default(dtype).name})
    return _finish(t, dtype, device, requires_grad, out)


def zeros(*size, out=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of zeros: `zeros(2, 3)` or `zeros((2, 3))`."""
    return _filled(size, 0, dtype, device, requires_grad, out)


def ones(*size, out=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of ones."""
    return _filled(size, 1, dtype, device, requires_grad, out)


def empty(*size, out=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor whose values are whatever the memory held (do not rely on them)."""
    return _filled(size, 0, dtype, device, requires_grad, out)  # zeros: cheap and deterministic


def full(size, fill_value, *, out=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor filled with `fill_value` (its dtype inferred from the value if not given)."""
    if dtype is None:
        dtype = (
            dtypes.bool_
            if isinstance(fill_value, bool)
            else dtypes.int64
            if isinstance(fill_value, int)
            else get_default_dtype()
        )
    return _filled(size, fill_value, dtype, device, requires_grad, out)


def _like(input: Tensor, dtype, device):
    return (input.dtype if dtype is None else dtype, input.device if device is None else device)


def zeros_like(input, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return zeros(input.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def ones_like(input, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return ones(input.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def empty_like(input, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return empty(input.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return full(input.shape, fill_value, dtype=dtype, device=device, requires_grad=requires_grad)


def eye(n: int, m: int | None = None, *, out=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """An n x m matrix with ones on the diagonal."""
    arr = dispatch(
        OPS["eye"], (), {"n": n, "m": n if m is None else m, "dtype": _dtype_or_default(dtype).name}
    )
    return _finish(arr, dtype, device, requires_grad, out)


def arange(start, end=None, step=1, *, out=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Values from `start` (default 0) up to, not including, `end`, `step` apart; int64 when
    all arguments are integers, else the default float dtype."""
    if end is None:
        start, end = 0, start
    start, end, step = (v.item() if isinstance(v, Tensor) else v for v in (start, end, step))
    if dtype is None:
        ints = all(isinstance(v, int) for v in (start, end, step))
        dtype = dtypes.int64 if ints else get_default_dtype()
    # the op's tensor itself, so a trace records arange(x.size(1)) as a node with a symbolic end
    arr = dispatch(OPS["arange"], (), {"start": start, "end": end, "step": step, "dtype": dtype.name})
    return _finish(arr, dtype, device, requires_grad, out)


def linspace(start, end, steps: int, *, out=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """`steps` evenly spaced values from `start` to `end`, both included."""
    dtype = _dtype_or_default(dtype)
    arr = dispatch(
        OPS["linspace"],
        (),
        {"start": float(start), "end": float(end), "steps": int(steps), "dtype": dtype.name},
    )
    return _finish(arr, dtype, device, requires_grad, out)


def logspace(
    start, end, steps: int, base: float = 10.0, *, dtype=None, device=None, requires_grad=False
) -> Tensor:
    """`base` raised to `steps` evenly spaced exponents from `start` to `end`."""
    exps = linspace(start, end, steps, dtype=dtypes.float64)
    arr = np.power(base, exps._data).astype(_dtype_or_default(dtype).np)
    return _finish(arr, dtype, device, requires_grad, None)


# --- random numbers ---


class Generator:
    """A source of random numbers: a seed and a counter of draws.

    >>> g = graphc.Generator().manual_seed(42)
    >>> graphc.rand(2, generator=g)
    """

    def __init__(self, device="cpu") -> None:
        self.device = _device.device(device)
        self._seed = int(np.random.SeedSequence().entropy) % (1 << 63)
        self._offset = 0

    def manual_seed(self, seed: int) -> Generator:
        seed = int(seed)
        if not -(1 << 63) <= seed < (1 << 64):
            raise ValueError(f"seed must be within the 64-bit range, got {seed}")
        self._seed = seed % (1 << 64)
        self._offset = 0
        return self

    def seed(self) -> int:
        self.manual_seed(int(np.random.SeedSequence().entropy) % (1 << 63))
        return self._seed

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> Tensor:
        return Tensor._wrap(np.array([self._seed, self._offset], dtype=np.uint64))

    def set_state(self, state: Tensor) -> Generator:
        arr = np.asarray(state._data if isinstance(state, Tensor) else state, dtype=np.uint64)
        if arr.shape != (2,):
            raise ValueError(f"set_state expects a state from get_state (2 values), got shape {arr.shape}")
        self._seed, self._offset = int(arr[0]), int(arr[1])
        return self

    def next_seed(self) -> int:
        """A fresh seed for one random op; advances the generator."""
        self._offset += 1
        return (self._seed << 64) + self._offset


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the default generator so every random op repeats its numbers."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    """Seed the default generator non-deterministically; return the seed."""
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> Tensor:
    return default_generator.get_state()


def set_rng_state(state: Tensor) -> None:
    default_generator.set_state(state)


def _random(op: str, size, attrs: dict, generator, dtype, device, requires_grad, out) -> Tensor:
    gen = default_generator if generator is None else generator
    shape = shape_arg(size)
    attrs = {"shape": shape, **attrs, "dtype": dtype.name, "seed": gen.next_seed()}
    # (the op's own tensor: a capture records what made it)
    return _finish(dispatch(OPS[op], (), attrs), dtype, device, requires_grad, out)


def _float_dtype(dtype, what: str):
    dtype = _dtype_or_default(dtype)
    if not dtype.is_floating_point:
        raise TypeError(f"{what}: expected a floating dtype, got {dtype}")
    return dtype


def rand(*size, generator=None, out=None, dtype=None, device=None, requires_grad=False):
    """Uniform random numbers in [0, 1)."""
    return _random(
        "uniform",
        size,
        {"low": 0.0, "high": 1.0},
        generator,
        _float_dtype(dtype, "rand"),
        device,
        requires_grad,
        out,
    )


def randn(*size, generator=None, out=None, dtype=None, device=None, requires_grad=False):
    """Standard normal random numbers."""
    return _random(
        "normal",
        size,
        {"mean": 0.0, "std": 1.0},
        generator,
        _float_dtype(dtype, "randn"),
        device,
        requires_grad,
        out,
    )


def randint(
    low, high=None, size=None, *, generator=None, out=None, dtype=None, device=None, requires_grad=False
):
    """Random integers in [low, high) (`randint(high, size)` starts at 0)."""
    if size is None:
        if high is None or not isinstance(high, (tuple, list)):
            raise TypeError("randint() requires a size tuple, e.g. randint(0, 10, (3,))")
        low, high, size = 0, low, high
    elif high is None:
        low, high = 0, low
    dtype = dtypes.int64 if dtype is None else dtype
    return _random(
        "randint", size, {"low": int(low), "high": int(high)}, generator, dtype, device, requires_grad, out
    )


def randperm(n: int, *, generator=None, dtype=None, device=None, requires_grad=False):
    """A random permutation of 0..n-1."""
    gen = default_generator if generator is None else generator
    dtype = dtypes.int64 if dtype is None else dtype
    arr = dispatch(OPS["randperm"], (), {"n": int(n), "dtype": dtype.name, "seed": gen.next_seed()})._data
    return _finish(arr, dtype, device, requires_grad, None)


def normal(
    mean=0.0, std=1.0, size=None, *, generator=None, out=None, dtype=None, device=None, requires_grad=False
):
    """Normal random numbers: with numbers for `mean`/`std` and a `size`, or elementwise with
    tensors of means and/or standard deviations."""
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        ref = mean if isinstance(mean, Tensor) else std
        noise = randn(ref.shape, generator=generator, dtype=ref.dtype, device=ref.device)
        return _write_out((noise * std + mean).detach(), out)
    if size is None:
        raise TypeError("normal() with number arguments needs a size")
    return _random(
        "normal",
        size,
        {"mean": float(mean), "std": float(std)},
        generator,
        _float_dtype(dtype, "normal"),
        device,
        requires_grad,
        out,
    )


def rand_like(input: Tensor, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return rand(input.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def randn_like(input: Tensor, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return randn(input.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def randint_like(input: Tensor, low, high=None, *, dtype=None, device=None) -> Tensor:
    dtype, device = _like(input, dtype, device)
    return randint(low, high, input.shape, dtype=dtype, device=device)


def bernoulli(input: Tensor, p=None, *, generator=None) -> Tensor:
    """1 with probability `input` (or `p`) elementwise, else 0."""
    probs = input if p is None else full_like(input, p)
    gen = default_generator if generator is None else generator
    return dispatch(OPS["bernoulli"], (probs,), {"seed": gen.next_seed()})


def _legacy(dtype: dtypes.DType, name: str):
    def make(*args, device=None):
        if len(args) == 1 and not isinstance(args[0], int):
            return tensor(args[0], dtype=dtype, device=device)
        return zeros(shape_arg(args) if args else (0,), dtype=dtype, device=device)

    make.__name__ = name
    make.__doc__ = f"PyTorch's legacy `{name}(data)` or `{name}(*sizes)`: a {dtype} tensor."
    return make


FloatTensor = _legacy(dtypes.float32, "FloatTensor")
DoubleTensor = _legacy(dtypes.float64, "DoubleTensor")
HalfTensor = _legacy(dtypes.float16, "HalfTensor")
LongTensor = _legacy(dtypes.int64, "LongTensor")
IntTensor = _legacy(dtypes.int32, "IntTensor")
ShortTensor = _legacy(dtypes.int16, "ShortTensor")
CharTensor = _legacy(dtypes.int8, "CharTensor")
ByteTensor = _legacy(dtypes.uint8, "ByteTensor")
BoolTensor = _legacy(dtypes.bool_, "BoolTensor")
