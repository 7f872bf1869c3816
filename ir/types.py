"""Tensor types of the graph IR: a dtype and a shape whose dims are ints or named symbols.

A symbolic dim (`"batch"`) stands for a size fixed only when the graph runs, so one graph (and,
later, one compiled artifact) serves every batch size. A derived dim names its own definition:
`seq_minus_1` is seq - 1 (`x[:, 1:]`), `seq_by_2` is ceil(seq / 2) (`x[:, ::2]`), never below 0;
`Sizes` works them out from the sizes bound to their base symbols.

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


def derived(name: str) -> tuple[str, int, int] | None:
    """(base, add, step) of a derived dim's name, whose size is max(0, ceil((base + add) /
    step)); None for a plain symbol."""
    base, add, step = name, 0, 1
    m = _BY.fullmatch(base)
    if m:
        base, step = m.group(1), int(m.group(2))
    m = _OFFSET.fullmatch(base)
    if m:
        base, add = m.group(1), int(m.group(3)) * (-1 if m.group(2) == "minus" else 1)
    return None if (add, step) == (0, 1) or step == 0 else (base, add, step)


def base_symbol(name: str) -> str:
    """The plain symbol a (possibly derived) dim is derived from: seq for seq_minus_1_by_2."""
    parts = derived(name)
    return name if parts is None else base_symbol(parts[0])


_BY = re.compile(r"(.+)_by_(\d+)")
_OFFSET = re.compile(r"(.+)_(minus|plus)_(\d+)")


def derived_name(base: Dim, add: int, step: int = 1) -> Dim:
    """The dim max(0, ceil((base + add) / step)): an int where base is one, else the derived
    dim's name, a derived base merged in where that keeps the size (seq_minus_1 minus 1 is
    seq_minus_2; seq_by_2 by 2 is seq_by_4)."""
    if isinstance(base, int):
        return max(0, -(-(base + add) // step))
    inner = derived(base)
    if inner is not None and (add <= 0 or inner[1] >= 0):  # (where neither clamp at 0 differs)
        # ceil((ceil((b + a) / s) + add) / step) = ceil((b + a + add * s) / (s * step))
        base, add, step = inner[0], inner[1] + add * inner[2], inner[2] * step
    name = base + (f"_minus_{-add}" if add < 0 else f"_plus_{add}" if add > 0 else "")
    return name + (f"_by_{step}" if step > 1 else "")


class Sizes(dict):
    """Symbol bindings that work out derived dims (`seq_minus_1`) from their base symbols on
    first use."""

    def __missing__(self, name):
        parts = derived(name) if isinstance(name, str) else None
        if parts is None:
            raise KeyError(name)
        base, add, step = parts
        size = self[base]
        return self.setdefault(name, max(0, -(-(size + add) // step)))

    def get(self, name, default=None):
        try:
            return self[name]
        except KeyError:
            return default


def concrete_shape(shape: tuple[Dim, ...], bindings: dict[str, int]) -> tuple[int, ...]:
    """The shape with each symbol replaced by its bound size (derived dims worked out)."""
    try:
        return tuple(d if isinstance(d, int) else bindings[d] for d in shape)
    except KeyError:
        sizes = bindings if isinstance(bindings, Sizes) else Sizes(bindings)
        try:
            return tuple(d if isinstance(d, int) else sizes[d] for d in shape)
        except KeyError as e:
            raise IRError(f"symbol {e.args[0]!r} of shape {shape} is not bound") from None
