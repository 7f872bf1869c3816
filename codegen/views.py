"""Movement ops as index arithmetic: the value of a chain of permutes, expands, squeezes,
unsqueezes, slices, selects, flips and reshapes is its root value's buffer read through a
`View` (strides and an offset), so kernels read it where it lies instead of copying it.

    >>> views = view_values(graph)   # id(value) -> (root value, View) for movement outputs

Strides and offsets are products of sizes kept canonical (one integer coefficient first, then
the symbols sorted), so equal products compare equal.
"""

from __future__ import annotations

import math

from codegen.kernel import View
from ir.graph import Graph, Node, Value

# movement ops a kernel reads through (copy and contiguous only copy: the values are the same)
MOVEMENT = frozenset(
    {"permute", "expand", "squeeze", "unsqueeze", "slice", "select", "flip", "reshape", "contiguous", "copy"}
)


def product(*factors):
    """The canonical product of `factors` (ints, symbols, products): 0, or a tuple of an
    integer coefficient (left out when 1) and the sorted symbols."""
    coefficient, symbols = 1, []
    for f in factors:
        for d in f if isinstance(f, tuple) else (f,):
            if isinstance(d, int):
                coefficient *= d
            else:
                symbols.append(d)
    if coefficient == 0:
        return 0
    return ((coefficient,) if coefficient != 1 else ()) + tuple(sorted(symbols))


def contiguous(shape: tuple) -> list:
    """The strides of a contiguous buffer of `shape`."""
    return [product(*shape[k + 1 :]) for k in range(len(shape))]


def _same_layout(shape: tuple, strides: list, other: list) -> bool:
    """Whether two stride lists address a buffer of `shape` alike (size-1 dims never move)."""
    return all(d == 1 or a == b for d, a, b in zip(shape, strides, other, strict=True))


def _apply(node: Node, strides: list, offset: list):
    """The strides and offset of `node`'s output, given its input's; None where its output is
    not a strided view of the input's buffer (a reshape of a non-contiguous view, a select or
    flip of a symbolic size)."""
    a, source = node.attrs, tuple(node.inputs[0].type.shape)
    shape = tuple(node.outputs[0].type.shape)
    op = node.op
    if op in ("contiguous", "copy"):
        return strides, offset
    if op == "permute":
        return [strides[d % len(source)] for d in a["dims"]], offset
    if op == "expand":
        lead = len(shape) - len(source)
        kept = [s if source[i] == shape[lead + i] else 0 for i, s in enumerate(strides)]
        return [0] * lead + kept, offset
    if op == "squeeze":
        dropped = {d % len(source) for d in a["dims"]}
        return [s for k, s in enumerate(strides) if k not in dropped], offset
    if op == "unsqueeze":
        d = a["dim"] % (len(source) + 1)
        return strides[:d] + [0] + strides[d:], offset
    if op == "slice":
        d = a["dim"] % len(source)
        n, step, start, stop = source[d], a.get("step") or 1, a.get("start") or 0, a.get("stop")
        if step <= 0:
            return None
        moved = list(strides)
        moved[d] = 0 if strides[d] == 0 else product(strides[d], step)
        if isinstance(n, int) and not isinstance(stop, str):
            picked = range(n)[slice(start, stop, step)]
            return moved, _shifted(offset, strides[d], picked.start if len(picked) else 0)
        # of a symbolic size, or to a symbolic stop: the sizes fit the bounds (checked by
        # ir.interpreter.bind_inputs), so the first element is at start, or n + start
        if start < 0:
            offset = _shifted(offset, strides[d], n)
        return moved, _shifted(offset, strides[d], start)
    if op == "select":
        d = a["dim"] % len(source)
        n = source[d]
        if not isinstance(n, int) or not -n <= a["index"] < n:
            return None
        return strides[:d] + strides[d + 1 :], _shifted(offset, strides[d], a["index"] % n)
    if op == "flip":
        flipped, moved = list(strides), offset
        for d in {d % len(source) for d in a["dims"]}:
            if not isinstance(source[d], int):
                return None
            if strides[d] != 0 and source[d] > 1:
                moved = _shifted(moved, strides[d], source[d] - 1)
                flipped[d] = product(strides[d], -1)
        return flipped, moved
    if op == "reshape":
        if not _same_layout(source, strides, contiguous(source)):
            return None
        return contiguous(shape), offset
    raise ValueError(f"{op} is not a movement op kernels read through")


def _shifted(offset: list, stride, count: int) -> list:
    """`offset` plus `count` steps of `stride`, its constant terms summed into one."""
    term = 0 if stride == 0 else product(stride, count)
    if term == 0:
        return offset
    constant = lambda t: all(isinstance(d, int) for d in t)  # noqa: E731
    if not constant(term):
        return [*offset, term]
    total = sum(math.prod(t) for t in (*filter(constant, offset), term))
    rest = [t for t in offset if not constant(t)]
    return rest if total == 0 else [*rest, product(total)]


def view_values(graph: Graph) -> dict[int, tuple[Value, View]]:
    """For each output of a movement op in `graph`: the value whose buffer it reads (the
    first value up the chain that is not a movement op's output, or the input of a reshape
    that needs its input contiguous) and the view. A root that is a movement op's output must
    be stored."""
    found: dict[int, tuple[Value, list, list]] = {}
    for node in graph.nodes:
        if node.op not in MOVEMENT or len(node.outputs) != 1 or node.inputs[0] is None:
            continue
        x = node.inputs[0]
        root, strides, offset = found.get(id(x)) or (x, contiguous(tuple(x.type.shape)), [])
        applied = _apply(node, strides, offset)
        if applied is None and node.op == "reshape":  # reads its input, stored, as it is
            root, applied = x, (contiguous(tuple(node.outputs[0].type.shape)), [])
        if applied is not None:
            found[id(node.outputs[0])] = (root, *applied)
    return {k: (root, View(tuple(s), tuple(o))) for k, (root, s, o) in found.items()}
