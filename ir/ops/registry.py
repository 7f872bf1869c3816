"""The op registry: one `OpDef` per op, shared by eager mode, the interpreter and the compilers.

An op's reference implementation is written against the array API numpy and cupy share:
`impl(xp, *arrays, **attrs)` where `xp` is the array module. Eager mode calls it on the arrays of
its tensors; the reference interpreter calls it on the arrays flowing through a graph.

    >>> get_op("add").impl(np, np.ones(2), np.ones(2))
    array([2., 2.])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ir.errors import UnknownOpError


class Promote(Enum):
    """How the frontend treats the dtypes of an op's tensor inputs before running it."""

    NONE = "none"  # inputs as they are (movement, indexing, casts)
    COMMON = "common"  # cast to PyTorch's result type of the promoted inputs
    FLOAT = "float"  # like COMMON, but integers and bools become the default float dtype
    INTEGRAL = "integral"  # like COMMON, only bool and integer inputs are accepted


@dataclass(frozen=True, eq=False)
class OpDef:
    """One op: its name, reference implementation and how it takes part in the frontend.

    `promoted` lists the input positions that take part in type promotion (None: all of them);
    `view` marks ops whose output may alias input 0 (eager tensors then share a version counter);
    `num_outputs` is -1 for ops whose output count depends on attributes (split).
    """

    name: str
    impl: Callable
    promote: Promote = Promote.NONE
    promoted: tuple[int, ...] | None = None
    differentiable: bool = True
    view: bool = False
    num_outputs: int = 1
    doc: str = ""

    def __repr__(self) -> str:
        return f"OpDef({self.name})"


OPS: dict[str, OpDef] = {}


def register(name: str, **fields) -> Callable[[Callable], Callable]:
    """Decorator: register the decorated reference implementation as op `name` (the function
    itself is returned unchanged, so other implementations can call it)."""

    def wrap(impl: Callable) -> Callable:
        if name in OPS:
            raise ValueError(f"op {name!r} is defined twice")
        OPS[name] = OpDef(name=name, impl=impl, doc=(impl.__doc__ or "").strip(), **fields)
        return impl

    return wrap


def get_op(name: str) -> OpDef:
    """The op called `name`; `UnknownOpError` (listing close names) if there is none."""
    try:
        return OPS[name]
    except KeyError:
        close = sorted(n for n in OPS if n.startswith(name[:3]))[:8]
        raise UnknownOpError(
            f"no op named {name!r} in the registry" + (f"; similar: {', '.join(close)}" if close else "")
        ) from None
