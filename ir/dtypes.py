"""Element types shared by every layer, and PyTorch's type-promotion rules.

A `DType` is one immutable object per element type: eager tensors, graph values, the module file
and the code generators all name the same objects. They print under the user-facing namespace
(`graphc.float32`) because that is where people meet them.

    >>> promote_types(int32, float16)
    graphc.float16
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field

import numpy as np

BOOL, INT, FLOAT = 0, 1, 2  # categories, ordered as PyTorch orders them for promotion


@dataclass(frozen=True, eq=False)
class DType:
    """One element type: its name, numpy equivalent, category and width."""

    name: str
    np: np.dtype = field(repr=False)
    category: int
    bits: int
    signed: bool = True

    @property
    def is_floating_point(self) -> bool:
        return self.category == FLOAT

    @property
    def is_signed(self) -> bool:
        return self.signed

    @property
    def itemsize(self) -> int:
        return max(self.bits // 8, 1)

    def __repr__(self) -> str:
        return f"graphc.{self.name}"

    __str__ = __repr__

    def __reduce__(self):
        return (from_name, (self.name,))

    def __getattr__(self, name: str):
        """`np` of bfloat16, made on first use (the others have theirs from the start)."""
        if name == "np" and self.name == "bfloat16":
            value = _load_bfloat16(self)
            object.__setattr__(self, "np", value)
            _BY_NUMPY[value] = self
            return value
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


bool_ = DType("bool", np.dtype(np.bool_), BOOL, 8, signed=False)
uint8 = DType("uint8", np.dtype(np.uint8), INT, 8, signed=False)
int8 = DType("int8", np.dtype(np.int8), INT, 8)
int16 = DType("int16", np.dtype(np.int16), INT, 16)
int32 = DType("int32", np.dtype(np.int32), INT, 32)
int64 = DType("int64", np.dtype(np.int64), INT, 64)
float16 = DType("float16", np.dtype(np.float16), FLOAT, 16)
float32 = DType("float32", np.dtype(np.float32), FLOAT, 32)
float64 = DType("float64", np.dtype(np.float64), FLOAT, 64)

ALL: tuple[DType, ...] = (bool_, uint8, int8, int16, int32, int64, float16, float32, float64)


def _load_bfloat16(dtype: DType) -> np.dtype:
    import ml_dtypes  # (imported on first use: a process that never meets bfloat16 skips it)

    return np.dtype(ml_dtypes.bfloat16)


# bfloat16 exists only where numpy can hold it (ml_dtypes is installed); its numpy dtype is
# made on first use (`DType.__getattr__`)
bfloat16: DType | None = None
if importlib.util.find_spec("ml_dtypes") is not None:
    bfloat16 = object.__new__(DType)
    for _name, _value in (("name", "bfloat16"), ("category", FLOAT), ("bits", 16), ("signed", True)):
        object.__setattr__(bfloat16, _name, _value)
    ALL = (*ALL, bfloat16)

_BY_NAME = {d.name: d for d in ALL}
_BY_NUMPY = {d.np: d for d in ALL if d is not bfloat16}


def from_name(name: str) -> DType:
    """The dtype called `name` (`"float32"`), or a `TypeError` listing the known names."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise TypeError(f"unknown dtype {name!r}; known: {', '.join(_BY_NAME)}") from None


def from_numpy(np_dtype) -> DType:
    """The dtype of a numpy (or cupy) dtype; a `TypeError` for types graphc does not hold."""
    try:
        return _BY_NUMPY[np_dtype]
    except KeyError:
        pass
    if bfloat16 is not None and "np" not in bfloat16.__dict__ and "ml_dtypes" in sys.modules:
        bfloat16.np  # noqa: B018  (an array of another library's bfloat16: made now)
    try:
        return _BY_NUMPY[np.dtype(np_dtype)]
    except (KeyError, TypeError):
        raise TypeError(
            f"numpy dtype {np_dtype} has no graphc equivalent; supported: {', '.join(d.name for d in ALL)}"
        ) from None


def _promote_pair(a: DType, b: DType) -> DType:
    if a is b:
        return a
    if a.category != b.category:
        hi, lo = (a, b) if a.category > b.category else (b, a)
        if hi is bfloat16 and lo.category == FLOAT:  # pragma: no cover
            return float32
        return hi
    if a.category == FLOAT:
        if {a, b} == {float16, bfloat16}:
            return float32
        return a if a.bits > b.bits else b
    if a.category == BOOL:
        return a
    # integers: uint8 mixed with a signed type needs the next wider signed type
    if a.signed == b.signed:
        return a if a.bits > b.bits else b
    unsigned, signed_ = (a, b) if not a.signed else (b, a)
    if signed_.bits > unsigned.bits:
        return signed_
    return int16 if unsigned.bits == 8 else int64


_PROMOTE = {(a, b): _promote_pair(a, b) for a in ALL for b in ALL}


def promote_types(a: DType, b: DType) -> DType:
    """The smallest dtype both `a` and `b` convert to without losing category (PyTorch's table)."""
    return _PROMOTE[a, b]


def result_type(dims: list[DType], zero_dims: list[DType], scalars: list[DType]) -> DType:
    """PyTorch's result type for an op over tensors with dims, 0-d tensors and Python scalars.

    Within each group types promote normally; a lower-priority group (0-d tensors, then Python
    scalars) only changes the result when it is of a higher category (bool < int < float). The
    caller maps Python scalars to their default dtypes first (float -> the default float dtype).
    """
    return _combine(_fold(dims), _combine(_fold(zero_dims), _fold(scalars)))


def _fold(group: list[DType]) -> DType | None:
    out = None
    for d in group:
        out = d if out is None else _PROMOTE[out, d]
    return out


def _combine(higher: DType | None, lower: DType | None) -> DType | None:
    if higher is None:
        return lower
    if lower is None or higher.category == FLOAT:
        return higher
    if higher.category == BOOL or lower.category > higher.category:
        return _PROMOTE[higher, lower]
    return higher
