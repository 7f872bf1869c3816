"""Tensor types of the graph IR: a dtype and a shape whose dims are ints or named symbols.

A symbolic dim (`"batch"`) stands for a size fixed only when the graph runs, so one graph (and,
later, one compiled artifact) serves every batch size.

    >>> TensorType(dtypes.float32, ("batch", 784))
    f32[batch,784]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ir import dtypes
from ir.errors import IRError

Dim = int | str

SHORT = {
    "bool": "bool",
    "uint8": "u8",
    "int8": "i8",
    "int16": "i16",
    "int32": "i32",
    "int64": "i64",
    "float16": "f16",
    "bfloat16": "bf16",
    "float32": "f32",
    "float64": "f64",
}
LONG = {v: k for k, v in SHORT.items()}
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class TensorType:
    """The type of a graph value."""

    dtype: dtypes.DType
    shape: tuple[Dim, ...]

    def __post_init__(self) -> None:
        for d in self.shape:
            if isinstance(d, bool) or not (
                (isinstance(d, int) and d >= 0) or (isinstance(d, str) and _SYMBOL.match(d))
            ):
                raise IRError(
                    f"invalid dim {d!r} in shape {self.shape}: dims are non-negative ints or symbol names"
                )

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def symbols(self) -> set[str]:
        return {d for d in self.shape if isinstance(d, str)}

    def __str__(self) -> str:
        return f"{SHORT[self.dtype.name]}[{','.join(str(d) for d in self.shape)}]"

    __repr__ = __str__


def parse_type(text: str) -> TensorType:
    """The type written as `f32[batch,3,32,32]`."""
    m = re.fullmatch(r"\s*([a-z0-9]+)\[([^\]]*)\]\s*", text)
    if not m or m.group(1) not in LONG:
        raise IRError(f"bad tensor type {text!r}; expected e.g. f32[batch,784]")
    dims = [d.strip() for d in m.group(2).split(",") if d.strip()]
    shape = tuple(int(d) if d.isdigit() else d for d in dims)
    return TensorType(dtypes.from_name(LONG[m.group(1)]), shape)


def concrete_shape(shape: tuple[Dim, ...], bindings: dict[str, int]) -> tuple[int, ...]:
    """The shape with each symbol replaced by its bound size."""
    try:
        return tuple(d if isinstance(d, int) else bindings[d] for d in shape)
    except KeyError as e:
        raise IRError(f"symbol {e.args[0]!r} of shape {shape} is not bound") from None
