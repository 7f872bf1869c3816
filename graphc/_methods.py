"""Tensor methods: operators, `x.op(...)` forms of the functions, in-place `op_` variants,
conversions (`to`, `float`, `cuda`, ...) and `new_*` factories. Installed onto `Tensor` once.

An in-place op computes its result like the out-of-place op (so autograd records it the same
way), writes it into the tensor's memory (views see it), bumps the version counter, and moves
the tensor's history to the new node.
"""

from __future__ import annotations

import sys

import numpy as np

from graphc import _creation as C
from graphc import _device, _dispatch, _indexing
from graphc import _functions as F
from graphc import _movement as M
from graphc._dispatch import dispatch
from graphc._tensor import Tensor
from graphc._views import copy_slices
from graphc.autograd import grad_mode
from graphc.autograd.function import Function
from graphc.errors import AutogradError, ShapeError
from ir import dtypes
from ir.ops import OPS


def check_inplace(self: Tensor) -> None:
    """Refuse in-place changes autograd could not account for."""
    if not grad_mode.state.enabled:
        return
    if self.grad_fn is None and self._rg:
        raise AutogradError(
            "a leaf Variable that requires grad is being used in an in-place operation; do it "
            "under graphc.no_grad() or on a detached copy"
        )
    base = self._base
    if base is not None and base._rg and base.grad_fn is None:
        raise AutogradError(
            "a view of a leaf Variable that requires grad is being used in an in-place operation"
        )


def record_inplace(self: Tensor, result: Tensor) -> Tensor:
    """Write `result` into `self`'s memory and give `self` its history."""
    if result._data.shape != self._data.shape:
        raise ShapeError(
            f"output with shape {list(self.shape)} doesn't match the broadcast shape {list(result.shape)}"
        )
    src, dst = result.dtype, self.dtype
    if src.category > dst.category:
        raise TypeError(f"result type {src} can't be cast to the desired output type {dst}")
    if not getattr(self._data.flags, "writeable", True):  # cupy arrays have no such flag
        raise ValueError(
            "unsupported operation: more than one element of the written-to tensor refers to a "
            "single memory location (an expanded tensor); clone() it before writing"
        )
    tracked = grad_mode.state.enabled and (result.grad_fn is not None or self._rg)
    if tracked and self._base is not None and (self._base._rg or result.grad_fn is not None):
        copy_slices(self, result)
        _captured(self, result)
        return self
    if result._data is not self._data:
        self._data[...] = result._data
    self._bump_version()
    _captured(self, result)
    if tracked:
        # the new history; a result without one means the values no longer depend on anything
        self.grad_fn = result.grad_fn
        self._output_nr = result._output_nr
        self._rg = result.grad_fn is not None
        if self._view_version is not None:
            self._view_version = self._vc[0]
    return self


def _captured(target: Tensor, result: Tensor) -> None:
    """Inside a graph capture, `target` (just written in place) now stands for `result`."""
    capture = _dispatch.tracer
    if capture is not None:
        capture.write(target, result)


def _no_capture(what: str) -> None:
    """Random in-place fills other than uniform_, normal_ and bernoulli_ are not captured: they
    would bake one draw into the graph."""
    if _dispatch.tracer is not None:
        from graphc.capture.tracer import TracingError, _user_frame

        raise TracingError(
            f"{what} (at {_user_frame()}): this random fill cannot be part of a captured graph "
            "yet (the graph would hold one draw, the same on every call); uniform_, normal_ and "
            "bernoulli_ can (a fresh key per call), or draw outside the captured function and "
            "pass the numbers in as an input"
        )


def _inplace(fn):
    def method(self, *args, **kwargs):
        check_inplace(self)
        return record_inplace(self, fn(self, *args, **kwargs))

    method.__name__ = fn.__name__ + "_"
    method.__doc__ = f"In-place `{fn.__name__}`: changes this tensor and returns it."
    return method


# --- conversions ---


class _ToDevice(Function):
    """Copy to another device; the gradient is copied back."""

    @staticmethod
    def forward(ctx, x, dev):
        ctx.source = x.device
        return Tensor._wrap(_device.to_device(x._data, dev))

    @staticmethod
    def backward(ctx, g):
        return _ToDevice.apply(g, ctx.source), None


def _parse_to(args, kwargs):
    dev = kwargs.pop("device", None)
    dtype = kwargs.pop("dtype", None)
    copy = kwargs.pop("copy", False)
    kwargs.pop("non_blocking", None)
    kwargs.pop("memory_format", None)
    if kwargs:
        raise TypeError(f"to() got unexpected arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, dtypes.DType):
            dtype = a
        elif isinstance(a, Tensor):
            dtype, dev = a.dtype, a.device
        elif isinstance(a, (str, _device.device, int)) and not isinstance(a, bool):
            dev = a
        elif isinstance(a, bool):
            continue  # non_blocking / copy given positionally
        else:
            raise TypeError(f"to() got an unexpected argument {a!r}")
    return dev, dtype, copy


def to(self: Tensor, *args, **kwargs) -> Tensor:
    """This tensor with another dtype and/or on another device (itself if nothing changes).

    >>> x.to(graphc.float64); x.to("cuda"); x.to(other_tensor)
    """
    dev, dtype, copy = _parse_to(args, kwargs)
    out = self
    if dev is not None:
        target = _device.resolve(dev)
        if target != self.device:
            out = _ToDevice.apply(out, target)
    if dtype is not None:
        out = F.cast(out, dtype)
    if copy and out is self:
        out = clone(self)
    return out


def clone(self: Tensor, *, memory_format=None) -> Tensor:
    """A copy with its own memory (autograd flows back to this tensor)."""
    return dispatch(OPS["copy"], (self,), name="CloneBackward0")


def contiguous(self: Tensor, memory_format=None) -> Tensor:
    if self.is_contiguous():
        return self
    return dispatch(OPS["contiguous"], (self,), name="CloneBackward0")


def is_contiguous(self: Tensor, memory_format=None) -> bool:
    return bool(self._data.flags.c_contiguous)


def type_(self: Tensor, dtype=None, non_blocking=False):
    """With no argument, the legacy type name ('graphc.FloatTensor'); else `to(dtype)`."""
    if dtype is None:
        names = {
            "float32": "Float",
            "float64": "Double",
            "float16": "Half",
            "int64": "Long",
            "int32": "Int",
            "int16": "Short",
            "int8": "Char",
            "uint8": "Byte",
            "bool": "Bool",
            "bfloat16": "BFloat16",
        }
        prefix = "graphc.cuda." if self.is_cuda else "graphc."
        return f"{prefix}{names[self.dtype.name]}Tensor"
    if isinstance(dtype, str):
        dtype = dtypes.from_name(dtype)
    return F.cast(self, dtype)


def copy_(self: Tensor, src, non_blocking: bool = False) -> Tensor:
    """Copy `src` (broadcast, converted) into this tensor's memory."""
    if not isinstance(src, Tensor):
        src = C.tensor(src)
    if grad_mode.state.enabled and (self._rg or src._rg) or _dispatch.tracer is not None:
        check_inplace(self)
        value = F.cast(to(src, self.device), self.dtype).expand(self.shape)
        value = dispatch(OPS["copy"], (value,), name="CopyBackwards")
        return record_inplace(self, value)
    value = _device.to_device(src._data, self.device)
    try:
        self._data[...] = value
    except ValueError:
        raise ShapeError(
            f"copy_: the source of shape {list(src.shape)} does not broadcast to {list(self.shape)}"
        ) from None
    self._bump_version()
    return self


def _fill_with(self: Tensor, value) -> Tensor:
    check_inplace(self)
    if grad_mode.state.enabled and self._rg or _dispatch.tracer is not None:
        return record_inplace(self, F.where(C.ones_like(self, dtype=dtypes.bool_), value, self * 0))
    self._data[...] = value._data if isinstance(value, Tensor) else value
    self._bump_version()
    return self


def zero_(self: Tensor) -> Tensor:
    """Set every element to zero."""
    return _fill_with(self, 0)


def fill_(self: Tensor, value) -> Tensor:
    """Set every element to `value`."""
    return _fill_with(self, value)


def uniform_(self: Tensor, a: float = 0.0, b: float = 1.0, *, generator=None) -> Tensor:
    """Fill with uniform random numbers in [a, b)."""
    check_inplace(self)
    values = C.rand(self.shape, generator=generator, dtype=self.dtype) * (b - a) + a
    if _dispatch.tracer is not None:  # a captured draw (fresh per call), then the write
        return self.copy_(values)
    self._data[...] = _device.to_device(values._data, self.device)
    self._bump_version()
    return self


def normal_(self: Tensor, mean: float = 0.0, std: float = 1.0, *, generator=None) -> Tensor:
    """Fill with normal random numbers."""
    check_inplace(self)
    values = C.randn(self.shape, generator=generator, dtype=self.dtype) * std + mean
    if _dispatch.tracer is not None:  # a captured draw (fresh per call), then the write
        return self.copy_(values)
    self._data[...] = _device.to_device(values._data, self.device)
    self._bump_version()
    return self


def _sampled(draw, name: str):
    """An in-place fill with samples from numpy's generator, seeded by graphc's (`draw(rng,
    shape)` gives them); not recorded by autograd, as PyTorch's fills are not."""

    def method(self: Tensor, *args, generator=None, **kwargs) -> Tensor:
        check_inplace(self)
        if name == "bernoulli_" and _dispatch.tracer is not None:  # a captured draw, then the write
            p = args[0] if args else kwargs.get("p", 0.5)
            probs = p.to(self.dtype).expand_as(self) if isinstance(p, Tensor) else C.full_like(self, p)
            return self.copy_(C.bernoulli(probs, generator=generator))
        _no_capture(name)
        gen = C.default_generator if generator is None else generator
        rng = np.random.default_rng(gen.next_seed())
        values = np.asarray(draw(rng, tuple(self.shape), *args, **kwargs)).astype(self.dtype.np)
        self._data[...] = _device.to_device(values, self.device)
        self._bump_version()
        return self

    method.__name__ = name
    return method


def _bernoulli(rng, shape, p=0.5):
    probs = p._data if isinstance(p, Tensor) else p
    return rng.random(shape) < np.asarray(
        _device.to_device(probs, _device.CPU) if isinstance(p, Tensor) else probs
    )


def _random(rng, shape, start=0, end=None):
    if end is None:  # PyTorch: [0, 2^mantissa] for floats, the dtype's range for integers
        start, end = 0, start if start else 2**24
    return rng.integers(start, end, shape)


SAMPLED = {
    "bernoulli_": _bernoulli,
    "random_": _random,
    "exponential_": lambda rng, shape, lambd=1.0: rng.exponential(1.0 / lambd, shape),
    "geometric_": lambda rng, shape, p: rng.geometric(p, shape),
    "cauchy_": lambda rng, shape, median=0.0, sigma=1.0: median + sigma * rng.standard_cauchy(shape),
    "log_normal_": lambda rng, shape, mean=1.0, std=2.0: rng.lognormal(mean, std, shape),
}


def _array_pointer(arr) -> int:
    return arr.data.ptr if hasattr(arr.data, "ptr") else arr.__array_interface__["data"][0]


def stride(self: Tensor, dim: int | None = None):
    """Elements between neighbours along each dim (of `dim`)."""
    steps = tuple(s // self._data.itemsize for s in self._data.strides)
    return steps if dim is None else steps[dim]


def storage_offset(self: Tensor) -> int:
    """Where this tensor's first element is in the memory it shares (elements from its start)."""
    root = self._data
    while getattr(root, "base", None) is not None and hasattr(root.base, "strides"):
        root = root.base
    return (_array_pointer(self._data) - _array_pointer(root)) // self._data.itemsize


def _new(factory):
    def method(self, *size, dtype=None, device=None, requires_grad=False, **kwargs):
        return factory(
            *size,
            dtype=self.dtype if dtype is None else dtype,
            device=self.device if device is None else device,
            requires_grad=requires_grad,
            **kwargs,
        )

    return method


def new_tensor(self, data, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return C.tensor(
        data,
        dtype=self.dtype if dtype is None else dtype,
        device=self.device if device is None else device,
        requires_grad=requires_grad,
    )


def new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return C.full(
        size,
        fill_value,
        dtype=self.dtype if dtype is None else dtype,
        device=self.device if device is None else device,
        requires_grad=requires_grad,
    )


# --- operators ---


def _eq_op(fn):
    def op(self, other):
        if not isinstance(other, (Tensor, int, float)):
            return NotImplemented  # Python then compares identities: x == None is False
        return fn(self, other)

    return op


def _invert(self: Tensor) -> Tensor:
    if self.dtype is dtypes.bool_:
        return F.logical_not(self)
    return F.bitwise_not(self)


def _rdiv(self, other):
    return F.div(other, self)


_ADD, _SUB, _MUL, _DIV = OPS["add"], OPS["sub"], OPS["mul"], OPS["div"]

OPERATORS = {
    "__add__": lambda self, other: dispatch(_ADD, (self, other)),
    "__radd__": lambda self, other: dispatch(_ADD, (self, other)),
    "__sub__": lambda self, other: dispatch(_SUB, (self, other)),
    "__rsub__": lambda self, other: dispatch(OPS["sub"], (other, self), name="RsubBackward1"),
    "__mul__": lambda self, other: dispatch(_MUL, (self, other)),
    "__rmul__": lambda self, other: dispatch(_MUL, (self, other)),
    "__truediv__": lambda self, other: dispatch(_DIV, (self, other)),
    "__rtruediv__": _rdiv,
    "__floordiv__": lambda self, other: F.floor_divide(self, other),
    "__rfloordiv__": lambda self, other: F.floor_divide(other, self),
    "__mod__": lambda self, other: F.remainder(self, other),
    "__rmod__": lambda self, other: F.remainder(other, self),
    "__pow__": lambda self, other: F.pow(self, other),
    "__rpow__": lambda self, other: F.pow(other, self),
    "__matmul__": lambda self, other: F.matmul(self, other),
    "__rmatmul__": lambda self, other: F.matmul(other, self),
    "__and__": lambda self, other: F.bitwise_and(self, other),
    "__rand__": lambda self, other: F.bitwise_and(other, self),
    "__or__": lambda self, other: F.bitwise_or(self, other),
    "__ror__": lambda self, other: F.bitwise_or(other, self),
    "__xor__": lambda self, other: F.bitwise_xor(self, other),
    "__rxor__": lambda self, other: F.bitwise_xor(other, self),
    "__lshift__": lambda self, other: F.bitwise_left_shift(self, other),
    "__rshift__": lambda self, other: F.bitwise_right_shift(self, other),
    "__eq__": _eq_op(F.eq),
    "__ne__": _eq_op(F.ne),
    "__lt__": lambda self, other: F.lt(self, other),
    "__le__": lambda self, other: F.le(self, other),
    "__gt__": lambda self, other: F.gt(self, other),
    "__ge__": lambda self, other: F.ge(self, other),
    "__neg__": lambda self: F.neg(self),
    "__pos__": lambda self: self,
    "__abs__": lambda self: F.abs(self),
    "__invert__": _invert,
    "__getitem__": _indexing.getitem,
    "__setitem__": _indexing.setitem,
}

# Python's augmented assignment: `x += y` is `x.add_(y)`
AUGMENTED = {
    "__iadd__": "add_",
    "__isub__": "sub_",
    "__imul__": "mul_",
    "__itruediv__": "div_",
    "__ifloordiv__": "floor_divide_",
    "__imod__": "remainder_",
    "__ipow__": "pow_",
    "__iand__": "bitwise_and_",
    "__ior__": "bitwise_or_",
    "__ixor__": "bitwise_xor_",
}

# numpy-style names PyTorch also offers (each also in place, as multiply_ ...)
ALIASES = [
    "multiply",
    "subtract",
    "divide",
    "true_divide",
    "negative",
    "absolute",
    "arcsin",
    "arccos",
    "arctan",
    "arctan2",
]
# functions that are also methods (x.sum(), x.reshape(2, 3), ...)
METHODS = [
    *F._UNARY,
    *F._BINARY,
    "add",
    "div",
    "square",
    "round",
    "clamp",
    "clip",
    "lerp",
    "sum",
    "mean",
    "prod",
    "var",
    "std",
    "amax",
    "amin",
    "max",
    "min",
    "aminmax",
    "argmax",
    "argmin",
    "any",
    "all",
    "cumsum",
    "cumprod",
    "logsumexp",
    "norm",
    "dist",
    "count_nonzero",
    "matmul",
    "mm",
    "bmm",
    "mv",
    "dot",
    "inner",
    "outer",
    "ger",
    "addmm",
    "cross",
    "det",
    "inverse",
    "svd",
    "qr",
    "matrix_power",
    "pinverse",
    "sort",
    "argsort",
    "topk",
    "unique",
    "nonzero",
    "allclose",
    "isclose",
    "equal",
    "where",
    *ALIASES,
    "greater",
    "greater_equal",
    "less",
    "less_equal",
    "not_equal",
    "bitwise_left_shift",
    "bitwise_right_shift",
    "fix",
]
SHAPE_METHODS = [
    "reshape",
    "view",
    "view_as",
    "reshape_as",
    "flatten",
    "unflatten",
    "ravel",
    "permute",
    "transpose",
    "swapaxes",
    "swapdims",
    "t",
    "movedim",
    "squeeze",
    "unsqueeze",
    "expand",
    "expand_as",
    "broadcast_to",
    "sum_to_size",
    "repeat",
    "tile",
    "narrow",
    "select",
    "flip",
    "fliplr",
    "flipud",
    "tril",
    "triu",
    "repeat_interleave",
    "split",
    "chunk",
    "unbind",
    "gather",
    "scatter_add",
    "scatter_reduce",
    "index_select",
    "masked_fill",
    "masked_select",
    "take_along_dim",
]
INPLACE = [
    *[n for n in F._UNARY if n not in ("isnan", "isinf", "isfinite")],
    *F._BINARY,
    "add",
    "div",
    "square",
    "round",
    "clamp",
    "clip",
    "lerp",
    "masked_fill",
    "fix",
    "tril",
    "triu",
    "scatter_add",
    "scatter_reduce",
    *ALIASES,
]
# methods from graphc._compose (compositions of ops), and those with an in-place form
COMPOSED = [
    "copysign",
    "kthvalue",
    "nanquantile",
    "quantile",
    "cummax",
    "cummin",
    "deg2rad",
    "float_power",
    "fmax",
    "fmin",
    "gcd",
    "heaviside",
    "index_copy",
    "index_fill",
    "index_put",
    "lcm",
    "masked_scatter",
    "msort",
    "put",
    "rad2deg",
    "sgn",
    "signbit",
    "unfold",
    "addcdiv",
    "addcmul",
    "argwhere",
    "baddbmm",
    "bincount",
    "clamp_max",
    "clamp_min",
    "corrcoef",
    "cov",
    "diag",
    "diag_embed",
    "diagonal",
    "diff",
    "frac",
    "hypot",
    "index_add",
    "kron",
    "logaddexp",
    "logcumsumexp",
    "logdet",
    "slogdet",
    "logit",
    "median",
    "multinomial",
    "nan_to_num",
    "nanmean",
    "nansum",
    "roll",
    "rot90",
    "scatter",
    "take",
    "tensor_split",
    "trace",
    "xlogy",
]
COMPOSED_INPLACE = [
    "deg2rad",
    "float_power",
    "index_copy",
    "index_fill",
    "index_put",
    "masked_scatter",
    "put",
    "rad2deg",
    "sgn",
    "addcdiv",
    "addcmul",
    "baddbmm",
    "clamp_max",
    "clamp_min",
    "frac",
    "hypot",
    "index_add",
    "logit",
    "nan_to_num",
    "scatter",
    "xlogy",
]
CONVERSIONS = {
    "float": dtypes.float32,
    "double": dtypes.float64,
    "half": dtypes.float16,
    "long": dtypes.int64,
    "int": dtypes.int32,
    "short": dtypes.int16,
    "char": dtypes.int8,
    "byte": dtypes.uint8,
    "bool": dtypes.bool_,
}


def _view_inplace(fn):
    def method(self, *args):
        out = fn(self, *args)
        check_inplace(self)
        self._data = out._data
        if out.grad_fn is not None:
            self.grad_fn, self._output_nr = out.grad_fn, out._output_nr
        return self

    method.__name__ = fn.__name__ + "_"
    return method


def install() -> None:
    """Attach every method to `Tensor` (once, at import of graphc)."""
    for name in METHODS:
        fn = getattr(F, name)
        setattr(Tensor, name, fn)
    for name in SHAPE_METHODS:
        setattr(Tensor, name, getattr(M, name))
    module = sys.modules["graphc"]
    for name in INPLACE:
        fn = getattr(F, name) if hasattr(F, name) else getattr(M, name)
        setattr(Tensor, name + "_", _inplace(fn))
        setattr(module, name + "_", getattr(Tensor, name + "_"))  # graphc.sin_(x)
    for name in ("squeeze", "unsqueeze", "t", "transpose"):
        setattr(Tensor, name + "_", _view_inplace(getattr(M, name)))
    for name, op in OPERATORS.items():
        setattr(Tensor, name, op)
    for name, method in AUGMENTED.items():
        setattr(Tensor, name, lambda self, other, _m=method: getattr(self, _m)(other))
    for name, dtype in CONVERSIONS.items():
        setattr(Tensor, name, lambda self, _d=dtype, **kw: F.cast(self, _d))
    if dtypes.bfloat16 is not None:
        Tensor.bfloat16 = lambda self: F.cast(self, dtypes.bfloat16)
    Tensor.__hash__ = lambda self: id(self)
    Tensor.to = to
    Tensor.cpu = lambda self: to(self, "cpu")
    Tensor.cuda = lambda self, device=None: to(
        self, _device.device("cuda", device) if isinstance(device, int) else device or "cuda"
    )
    Tensor.clone = clone
    Tensor.contiguous = contiguous
    Tensor.is_contiguous = is_contiguous
    Tensor.type = type_
    Tensor.type_as = lambda self, other: F.cast(self, other.dtype)
    Tensor.copy_ = copy_
    Tensor.zero_ = zero_
    Tensor.fill_ = fill_
    Tensor.uniform_ = uniform_
    Tensor.normal_ = normal_
    Tensor.new_tensor = new_tensor
    Tensor.new_full = new_full
    Tensor.new_zeros = _new(C.zeros)
    Tensor.new_ones = _new(C.ones)
    Tensor.new_empty = _new(C.empty)
    Tensor.mT = property(lambda self: M.transpose(self, -2, -1))
    Tensor.H = Tensor.mH = property(lambda self: M.transpose(self, -2, -1))
    Tensor.__array_ufunc__ = None  # numpy defers `ndarray + tensor` to Tensor.__radd__
    Tensor.is_complex = lambda self: False
    from graphc import _compose
    from graphc.nn import functional as NF

    Tensor.softmax, Tensor.log_softmax = NF.softmax, NF.log_softmax
    for name in COMPOSED:
        setattr(Tensor, name, getattr(_compose, name))
    for name in COMPOSED_INPLACE:
        setattr(Tensor, name + "_", _inplace(getattr(_compose, name)))
    for name, draw in SAMPLED.items():
        setattr(Tensor, name, _sampled(draw, name))
    Tensor.stride, Tensor.storage_offset = stride, storage_offset
    Tensor.data_ptr = lambda self: _array_pointer(self._data)
    Tensor.nbytes = property(lambda self: int(self._data.nbytes))
    Tensor.itemsize = property(lambda self: int(self._data.itemsize))
    Tensor.ndimension = lambda self: self.dim()
