"""Tensor types of the graph IR: a dtype and a shape whose dims are ints or named symbols.

A symbolic dim (`"batch"`) stands for a size fixed only when the graph runs, so one graph (and,
later, one compiled artifact) serves every batch size. A derived dim names its own definition:
`seq_minus_1` is seq - 1 (`x[:, 1:]`), `seq_by_2` is ceil(seq / 2) (`x[:, ::2]`), `h_times_2` is
2 h (a transposed convolution's output), never below 0; `Sizes` works them out from the sizes
bound to their base symbols. An input dim may be derived without a division (`h_div_16_times_16`:
heights that are multiples of 16), binding its base.

    >>> TensorType(dtypes.float32, ("batch", 784))
    f32[batch,784]
"""

from __future__ import annotations

import functools
import math
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


@functools.lru_cache(maxsize=4096)
def derived(name: str) -> tuple[str, int, int, int] | None:
    """(base, mul, add, step) of a derived dim's name, whose size is max(0, ceil((mul * base +
    add) / step)); None for a plain symbol. The name is the base (itself a symbol or a derived
    dim), then `_times_<mul>`, `_minus_<k>` or `_plus_<k>`, `_by_<step>`, each left out where
    it does nothing."""
    base, mul, add, step = name, 1, 0, 1
    m = _BY.fullmatch(base)
    if m:
        base, step = m.group(1), int(m.group(2))
    m = _OFFSET.fullmatch(base)
    if m:
        base, add = m.group(1), int(m.group(3)) * (-1 if m.group(2) == "minus" else 1)
    m = _TIMES.fullmatch(base)
    if m:
        base, mul = m.group(1), int(m.group(2))
    if (mul, add, step) == (1, 0, 1) or step == 0 or mul == 0:
        return None
    return base, mul, add, step


def base_symbol(name: str) -> str:
    """The plain symbol a (possibly derived) dim is derived from: seq for seq_minus_1_by_2."""
    parts = derived(name)
    return name if parts is None else base_symbol(parts[0])


_BY = re.compile(r"(.+)_by_(\d+)")
_OFFSET = re.compile(r"(.+)_(minus|plus)_(\d+)")
_TIMES = re.compile(r"(.+)_times_(\d+)")


def derived_name(base: Dim, add: int, step: int = 1, mul: int = 1) -> Dim:
    """The dim max(0, ceil((mul * base + add) / step)): an int where base is one, else the
    derived dim's name, a derived base merged in where that keeps the size (seq_minus_1 minus 1
    is seq_minus_2; seq_by_2 by 2 is seq_by_4; h_times_4 by 2 is h_times_2; h_times_2 by 2 is
    h), and common factors of mul and step cancelled."""
    if isinstance(base, int):
        return max(0, -(-(mul * base + add) // step))
    inner = derived(base)
    # merged where neither clamp at 0 differs and the inner ceil is exact or divides out
    if inner is not None and (add <= 0 or inner[2] >= 0) and (inner[3] == 1 or mul == 1):
        # ceil((mul * ceil((m b + a) / s) + add) / step) with s = 1 or mul = 1
        # = ceil((mul m b + mul a + add s) / (s step))
        b, m, a, s = inner
        base, mul, add, step = b, mul * m, mul * a + add * s, s * step
    g = math.gcd(mul, step)  # ceil((g m' b + a) / (g s')) = ceil((m' b + ceil(a / g)) / s')
    mul, add, step = mul // g, -(-add // g), step // g
    name = base + (f"_times_{mul}" if mul > 1 else "")
    name += f"_minus_{-add}" if add < 0 else f"_plus_{add}" if add > 0 else ""
    return name + (f"_by_{step}" if step > 1 else "")


class Sizes(dict):
    """Symbol bindings that work out derived dims (`seq_minus_1`) from their base symbols on
    first use."""

    def __missing__(self, name):
        parts = derived(name) if isinstance(name, str) else None
        if parts is None:
            raise KeyError(name)
        base, mul, add, step = parts
        size = self[base]
        return self.setdefault(name, max(0, -(-(mul * size + add) // step)))

    def get(self, name, default=None):
        try:
            return self[name]
        except KeyError:
            return default

    def bind(self, name: str, size: int) -> None:
        """Bind `name` to `size`; a derived dim without a division binds its base too
        (`h_div_16_times_16` at 48 binds h_div_16 to 3). A ValueError says why where the size
        does not fit (not a multiple, another size bound before)."""
        parts = derived(name)
        if parts is not None:
            base, mul, add, step = parts
            if step != 1 or (size == 0 and add < 0):
                raise ValueError(f"a size of {size} for {name!r} does not say what {base!r} is")
            count, rest = divmod(size - add, mul)
            if rest or count < 0:
                if add == 0:
                    raise ValueError(f"{name!r} takes multiples of {mul}, which {size} is not")
                what = f"{mul} * n" + (f" + {add}" if add > 0 else f" - {-add}")
                raise ValueError(f"{name!r} is {what} (n = {base}), which {size} is not")
            self.bind(base, count)  # (then the derived dim is size: no other check needed)
        known = dict.get(self, name)  # (bound before: never worked out, no KeyError raised)
        if known is not None and known != size:
            raise ValueError(f"dim {name!r} is {size} here but {known} in an earlier dim")
        self[name] = size


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
