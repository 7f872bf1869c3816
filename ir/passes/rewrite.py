"""The graph passes: dead-code elimination, common-subexpression elimination, constant folding,
algebraic simplification, decomposition of composite ops and shape specialisation.

All of them rebuild the graph node by node through `_rebuild`: a rule sees a node with its inputs
already mapped into the new graph and either returns replacement values or None to copy the node.
Node outputs are renumbered in the new graph; inputs, weights and graph outputs keep their names.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ir import dtypes
from ir.errors import IRError
from ir.graph import Graph, Node, Value
from ir.ops import OPS
from ir.types import TensorType, base_symbol

Rule = Callable[[Graph, Node, list], "list[Value] | None"]

# Folding never creates a constant larger than this many elements, unless it replaces inputs at
# least as large (a transposed weight is folded; a 1e9-element `full` is not).
FOLD_LIMIT = 1 << 16
# Weights with at most this many elements and equal data are merged by CSE.
CSE_WEIGHT_LIMIT = 64


def _rebuild(graph: Graph, rule: Rule | None = None, weights: dict[str, np.ndarray] | None = None) -> Graph:
    """A copy of `graph` with every node passed through `rule`."""
    new = Graph(graph.name)
    env: dict[int, Value] = {}
    for v in graph.inputs:
        env[id(v)] = new.add_input(v.name, v.type)
    data = graph.weight_data if weights is None else weights
    for name, v in graph.weights.items():
        env[id(v)] = new.add_weight(name, data[name])
    for node in graph.nodes:
        inputs = [None if v is None else env[id(v)] for v in node.inputs]
        replaced = rule(new, node, inputs) if rule is not None else None
        if replaced is None:
            replaced = new.add_node(node.op, inputs, dict(node.attrs), scope=node.scope)
        for old, value in zip(node.outputs, replaced, strict=True):
            env[id(old)] = value
    outputs = [env[id(v)] for v in graph.outputs]
    new.set_outputs(outputs)
    _keep_output_names(graph, new)
    return new


def _prune(graph: Graph) -> Graph:
    """`graph` without nodes and weights that no output depends on."""
    live: set[int] = {id(v) for v in graph.outputs}
    keep = []
    for node in reversed(graph.nodes):
        if any(id(v) in live for v in node.outputs):
            keep.append(node)
            live.update(id(v) for v in node.inputs if v is not None)
    kept = set(map(id, keep))
    new = Graph(graph.name)
    env: dict[int, Value] = {}
    for v in graph.inputs:
        env[id(v)] = new.add_input(v.name, v.type)
    for name, v in graph.weights.items():
        if id(v) in live:
            env[id(v)] = new.add_weight(name, graph.weight_data[name])
    for node in graph.nodes:
        if id(node) in kept:
            inputs = [None if v is None else env[id(v)] for v in node.inputs]
            outs = new.add_node(node.op, inputs, dict(node.attrs), scope=node.scope)
            env.update({id(o): n for o, n in zip(node.outputs, outs, strict=True)})
    new.set_outputs([env[id(v)] for v in graph.outputs])
    _keep_output_names(graph, new)
    return new


def _keep_output_names(old: Graph, new: Graph) -> None:
    """Give the new graph's outputs the old outputs' chosen names ('output'); numbered names are
    renumbered with the rest of the nodes."""
    for before, value in zip(old.outputs, new.outputs, strict=True):
        name = before.name
        if value.producer is not None and not name.isdigit() and value.name != name and not new.defines(name):
            new.rename(value, name)


def dce(graph: Graph) -> Graph:
    """Dead-code elimination: drop nodes and weights no output depends on (every op is pure:
    random ops are functions of their seed attribute)."""
    return _prune(graph)


def _freeze(value):
    if isinstance(value, list):
        return ("list", tuple(_freeze(v) for v in value))
    if isinstance(value, tuple):
        return ("tuple", tuple(_freeze(v) for v in value))
    return (type(value).__name__, value)


def cse(graph: Graph) -> Graph:
    """Common-subexpression elimination: one node for each (op, inputs, attributes), and one
    weight for small weights with equal dtype, shape and data."""
    canonical: dict[str, str] = {}
    seen_weights: dict[tuple, str] = {}
    for name, data in graph.weight_data.items():
        if name in graph.weights and data.size <= CSE_WEIGHT_LIMIT:
            key = (data.dtype.str, data.shape, data.tobytes())
            canonical[name] = seen_weights.setdefault(key, name)
    seen: dict[tuple, list[Value]] = {}

    def rule(new: Graph, node: Node, inputs: list) -> list[Value] | None:
        inputs = [
            new.weights[canonical[v.name]]
            if v is not None and v.name in canonical and v.producer is None and v.name in new.weights
            else v
            for v in inputs
        ]
        attrs = tuple((k, _freeze(node.attrs[k])) for k in sorted(node.attrs))
        key = (node.op, tuple(id(v) for v in inputs), attrs)
        found = seen.get(key)
        if found is None:
            found = seen[key] = new.add_node(node.op, inputs, dict(node.attrs), scope=node.scope)
        return found

    return _prune(_rebuild(graph, rule))


def _constant(new: Graph, prefix: str, data: np.ndarray) -> Value:
    i = 0
    while new.defines(f"{prefix}{i}"):
        i += 1
    return new.add_weight(f"{prefix}{i}", np.array(data, order="C"))  # (ascontiguousarray makes 0-d 1-d)


def _mentions(value, symbols: set) -> bool:
    """Whether an attribute value names one of `symbols` (sizes bound when the graph runs), or
    a derived dim of one (`seq_minus_1`)."""
    if isinstance(value, str):
        return base_symbol(value) in symbols
    if isinstance(value, (tuple, list)):
        return any(_mentions(v, symbols) for v in value)
    if isinstance(value, dict):
        return any(_mentions(v, symbols) for v in value.values())
    return False


def fold_constants(graph: Graph) -> Graph:
    """Constant folding: a node whose inputs are all weights (or that has none) and whose output
    shapes are concrete is computed now and becomes a weight (`folded<N>`), within FOLD_LIMIT."""

    symbols = {d for v in graph.inputs for d in v.type.symbols}

    def rule(new: Graph, node: Node, inputs: list) -> list[Value] | None:
        if any(v is not None and v.producer is not None for v in inputs):
            return None
        if any(v is not None and v.name not in new.weights for v in inputs):
            return None  # a graph input
        if any(o.type.symbols for o in node.outputs) or _mentions(node.attrs, symbols):
            return None  # (full[value='batch']: a size known when the graph runs)
        size = sum(int(np.prod(o.type.shape, dtype=np.int64)) for o in node.outputs)
        given = sum(new.weight_data[v.name].size for v in inputs if v is not None)
        if size > max(FOLD_LIMIT, given):
            return None
        args = [None if v is None else new.weight_data[v.name] for v in inputs]
        out = OPS[node.op].impl(np, *args, **node.attrs)
        outs = out if len(node.outputs) > 1 else (out,)
        values = []
        for o, result in zip(node.outputs, outs, strict=True):
            arr = np.asarray(result).astype(o.type.dtype.np, copy=False).reshape(o.type.shape)
            values.append(_constant(new, "folded", arr))
        return values

    return _prune(_rebuild(graph, rule))


def _weight_data(new: Graph, v: Value | None) -> np.ndarray | None:
    if v is None or v.producer is not None or v.name not in new.weights:
        return None
    return new.weight_data[v.name]


def _is_fill(new: Graph, v: Value | None, fill: float) -> bool:
    data = _weight_data(new, v)
    return data is not None and data.size > 0 and bool(np.all(data == fill))


def _lossless(src: dtypes.DType, mid: dtypes.DType) -> bool:
    return bool(np.can_cast(src.np, mid.np, casting="safe"))


def simplify(graph: Graph) -> Graph:
    """Algebraic simplification: x*1, 1*x, x/1, x+0, 0+x, x-0, neg(neg(x)), permute by the
    identity, permute of permute, reshape to the same shape, reshape of reshape, cast to the own
    dtype and cast chains whose first cast loses nothing. A rewrite applies only where the
    result's type equals the node's type (a broadcasting `x*1` that changes the shape stays)."""

    def same(node: Node, v: Value) -> list[Value] | None:
        return [v] if v.type == node.outputs[0].type else None

    def rule(new: Graph, node: Node, inputs: list) -> list[Value] | None:
        op, a = node.op, node.attrs
        x = inputs[0] if inputs else None
        if op == "mul":
            if _is_fill(new, inputs[1], 1):
                return same(node, x)
            if _is_fill(new, x, 1):
                return same(node, inputs[1])
        if op == "div" and _is_fill(new, inputs[1], 1):
            return same(node, x)
        if op == "add":
            if _is_fill(new, inputs[1], 0):
                return same(node, x)
            if _is_fill(new, x, 0):
                return same(node, inputs[1])
        if op == "sub" and _is_fill(new, inputs[1], 0):
            return same(node, x)
        if op == "neg" and x.producer is not None and x.producer.op == "neg":
            return same(node, x.producer.inputs[0])
        if op == "permute":
            dims = tuple(a["dims"])
            if dims == tuple(range(len(dims))):
                return same(node, x)
            if x.producer is not None and x.producer.op == "permute":
                inner = tuple(x.producer.attrs["dims"])
                composed = tuple(inner[d] for d in dims)
                source = x.producer.inputs[0]
                if composed == tuple(range(len(composed))):
                    return same(node, source)
                return new.add_node("permute", [source], {"dims": composed}, scope=node.scope)
        if op == "reshape":
            if x.type == node.outputs[0].type:
                return [x]
            if x.producer is not None and x.producer.op == "reshape":
                return new.add_node("reshape", [x.producer.inputs[0]], dict(a), scope=node.scope)
        if op == "index_put":
            return _put_at_constant_positions(new, node, inputs)
        if op == "cast":
            if x.type == node.outputs[0].type:
                return [x]
            if x.producer is not None and x.producer.op == "cast":
                source = x.producer.inputs[0]
                if _lossless(source.type.dtype, x.type.dtype):
                    if source.type == node.outputs[0].type:
                        return [source]
                    return new.add_node("cast", [source], dict(a), scope=node.scope)
        return None

    return _prune(_rebuild(graph, rule))


def _put_at_constant_positions(new: Graph, node: Node, inputs: list) -> list[Value] | None:
    """index_put of `values` along one dim at constant, distinct, in-range positions (a write
    through a slice, once its positions are folded) as where(mask, gather(values, inverse),
    x) with constant mask and inverse: kernels compute it, where index_put is interpreted."""
    x, values, index = inputs[0], inputs[1], inputs[2:]
    a = node.attrs
    positions = _weight_data(new, index[0]) if len(index) == 1 else None
    flags = tuple(a["positions"])
    if a.get("accumulate") or positions is None or positions.ndim != 1 or flags.count(True) != 1:
        return None
    dim = flags.index(True)
    n = x.type.shape[dim]
    if not isinstance(n, int):
        return None
    expected = x.type.shape[:dim] + (positions.size,) + x.type.shape[dim + 1 :]
    if tuple(values.type.shape) != expected or values.type.dtype is not x.type.dtype:
        return None
    if positions.size == 0:
        return [x]
    if positions.min() < 0 or positions.max() >= n or np.unique(positions).size != positions.size:
        return None
    column = tuple(n if d == dim else 1 for d in range(x.type.rank))
    mask = np.zeros(n, dtype=bool)
    mask[positions] = True
    inverse = np.zeros(n, dtype=np.int64)
    inverse[positions] = np.arange(positions.size)
    s = node.scope
    inverse_column = _constant(new, "inverse", inverse.reshape(column))
    (at,) = new.add_node("expand", [inverse_column], {"shape": x.type.shape}, scope=s)
    (taken,) = new.add_node("gather", [values, at], {"dim": dim}, scope=s)
    return new.add_node("where", [_constant(new, "mask", mask.reshape(column)), taken, x], {}, scope=s)


# --- decomposition of composite ops into core ops ---


def _linear(new: Graph, node: Node, inputs: list) -> list[Value]:
    x, w, b = (inputs + [None])[:3]
    (wt,) = new.add_node("permute", [w], {"dims": (1, 0)}, scope=node.scope)
    (y,) = new.add_node("matmul", [x, wt], {}, scope=node.scope)
    if b is not None:
        (y,) = new.add_node("add", [y, b], {}, scope=node.scope)
    return [y]


def _log_softmax(new: Graph, node: Node, inputs: list) -> list[Value]:
    (x,) = inputs
    s = node.scope
    dim = node.attrs["dim"]
    (m,) = new.add_node("amax", [x], {"dims": (dim,), "keepdim": True}, scope=s)
    (finite,) = new.add_node("isfinite", [m], {}, scope=s)
    zero = _constant(new, "zero", np.zeros((), x.type.dtype.np))
    (m,) = new.add_node("where", [finite, m, zero], {}, scope=s)
    (shifted,) = new.add_node("sub", [x, m], {}, scope=s)
    (e,) = new.add_node("exp", [shifted], {}, scope=s)
    (total,) = new.add_node("sum", [e], {"dims": (dim,), "keepdim": True}, scope=s)
    (lse,) = new.add_node("log", [total], {}, scope=s)
    return new.add_node("sub", [shifted, lse], {}, scope=s)


def _softmax(new: Graph, node: Node, inputs: list) -> list[Value]:
    (x,) = inputs
    s, dim = node.scope, node.attrs["dim"]
    (m,) = new.add_node("amax", [x], {"dims": (dim,), "keepdim": True}, scope=s)
    (shifted,) = new.add_node("sub", [x, m], {}, scope=s)
    (e,) = new.add_node("exp", [shifted], {}, scope=s)
    (total,) = new.add_node("sum", [e], {"dims": (dim,), "keepdim": True}, scope=s)
    return new.add_node("div", [e, total], {}, scope=s)


def _softmax_backward(new: Graph, node: Node, inputs: list) -> list[Value]:
    y, g = inputs
    s, dim = node.scope, node.attrs["dim"]
    (gy,) = new.add_node("mul", [g, y], {}, scope=s)
    (total,) = new.add_node("sum", [gy], {"dims": (dim,), "keepdim": True}, scope=s)
    (d,) = new.add_node("sub", [g, total], {}, scope=s)
    return new.add_node("mul", [y, d], {}, scope=s)


def _normalized(new: Graph, node: Node, x: Value) -> tuple[Value, Value]:
    """layer_norm's (x - mean) * rstd and rstd = 1 / sqrt(var + eps) over its dims."""
    s, dims = node.scope, tuple(node.attrs.get("dims", (-1,)))
    (m,) = new.add_node("mean", [x], {"dims": dims, "keepdim": True}, scope=s)
    (d,) = new.add_node("sub", [x, m], {}, scope=s)
    (sq,) = new.add_node("mul", [d, d], {}, scope=s)
    (var,) = new.add_node("mean", [sq], {"dims": dims, "keepdim": True}, scope=s)
    eps = _constant(new, "eps", np.array(node.attrs.get("eps", 1e-5), dtype=x.type.dtype.np))
    (var,) = new.add_node("add", [var, eps], {}, scope=s)
    (rstd,) = new.add_node("rsqrt", [var], {}, scope=s)
    (xhat,) = new.add_node("mul", [d, rstd], {}, scope=s)
    return xhat, rstd


def _layer_norm(new: Graph, node: Node, inputs: list) -> list[Value]:
    x, w, b = (inputs + [None, None])[:3]
    s = node.scope
    y, _ = _normalized(new, node, x)
    if w is not None:
        (y,) = new.add_node("mul", [y, w], {}, scope=s)
    if b is not None:
        (y,) = new.add_node("add", [y, b], {}, scope=s)
    return [y]


def _layer_norm_backward(new: Graph, node: Node, inputs: list) -> list[Value]:
    x, w, g = inputs
    s, dims = node.scope, tuple(node.attrs.get("dims", (-1,)))
    xhat, rstd = _normalized(new, node, x)
    h = g if w is None else new.add_node("mul", [g, w], {}, scope=s)[0]
    (mh,) = new.add_node("mean", [h], {"dims": dims, "keepdim": True}, scope=s)
    (hx,) = new.add_node("mul", [h, xhat], {}, scope=s)
    (mhx,) = new.add_node("mean", [hx], {"dims": dims, "keepdim": True}, scope=s)
    (t,) = new.add_node("mul", [xhat, mhx], {}, scope=s)
    (d,) = new.add_node("sub", [h, mh], {}, scope=s)
    (d,) = new.add_node("sub", [d, t], {}, scope=s)
    return new.add_node("mul", [rstd, d], {}, scope=s)


def _var(new: Graph, node: Node, inputs: list) -> list[Value] | None:
    """numpy's two-pass variance: sum((x - mean)^2) / (n - correction), over reduced dims of
    known size with n > correction (else the op stays whole)."""
    (x,) = inputs
    a = node.attrs
    shape = x.type.shape
    dims = tuple(range(len(shape))) if a.get("dims") is None else tuple(d % len(shape) for d in a["dims"])
    sizes = [shape[d] for d in dims]
    if any(isinstance(d, str) for d in sizes):
        return None
    n, correction = int(np.prod(sizes, dtype=np.int64)), a.get("correction", 1)
    if n - correction <= 0:
        return None
    s = node.scope
    (m,) = new.add_node("mean", [x], {"dims": dims, "keepdim": True}, scope=s)
    (d,) = new.add_node("sub", [x, m], {}, scope=s)
    (sq,) = new.add_node("mul", [d, d], {}, scope=s)
    (total,) = new.add_node("sum", [sq], {"dims": dims, "keepdim": bool(a.get("keepdim", False))}, scope=s)
    count = _constant(new, "count", np.array(n - correction, dtype=x.type.dtype.np))
    return new.add_node("div", [total, count], {}, scope=s)


def _nll_loss(new: Graph, node: Node, inputs: list) -> list[Value] | None:
    """-logp at each target's class (a gather along dim 1), zero where the target is
    ignore_index, weighted by the class weights (a gather of the weights broadcast over
    logp's shape), then summed or averaged over the targets' weights."""
    logp, target = inputs[0], inputs[1]
    weight = inputs[2] if len(inputs) > 2 else None
    if weight is not None and (weight.type.dtype != logp.type.dtype or len(weight.type.shape) != 1):
        return None
    a, s = node.attrs, node.scope
    reduction = a.get("reduction", "mean")
    (t,) = new.add_node("unsqueeze", [target], {"dim": 1}, scope=s)
    ignore = _constant(new, "ignore_index", np.array(a.get("ignore_index", -100), target.type.dtype.np))
    (valid,) = new.add_node("ne", [t, ignore], {}, scope=s)
    zero = _constant(new, "zero", np.zeros((), target.type.dtype.np))
    (safe,) = new.add_node("where", [valid, t, zero], {}, scope=s)
    (picked,) = new.add_node("gather", [logp, safe], {"dim": 1}, scope=s)
    (w,) = new.add_node("cast", [valid], {"dtype": logp.type.dtype.name}, scope=s)
    if weight is not None:  # weight[class] at every point: (1, C, 1, ...) broadcast to logp's shape
        rank = len(logp.type.shape)
        shape = (1, weight.type.shape[0]) + (1,) * (rank - 2)
        (column,) = new.add_node("reshape", [weight], {"shape": shape}, scope=s)
        (spread,) = new.add_node("expand", [column], {"shape": tuple(logp.type.shape)}, scope=s)
        (chosen,) = new.add_node("gather", [spread, safe], {"dim": 1}, scope=s)
        (w,) = new.add_node("mul", [w, chosen], {}, scope=s)
    (negated,) = new.add_node("neg", [picked], {}, scope=s)
    (loss,) = new.add_node("mul", [negated, w], {}, scope=s)
    if reduction == "none":
        return new.add_node("squeeze", [loss], {"dims": (1,)}, scope=s)
    (total,) = new.add_node("sum", [loss], {"dims": None, "keepdim": False}, scope=s)
    if reduction == "sum":
        return [total]
    (count,) = new.add_node("sum", [w], {"dims": None, "keepdim": False}, scope=s)
    return new.add_node("div", [total, count], {}, scope=s)


def _index(new: Graph, node: Node, inputs: list) -> list[Value] | None:
    """Indexing by one integer tensor (an embedding lookup: weight[tokens]; x[:, idx]) as a
    gather, which kernels compute in place: x gets unit dims for the index's leading dims,
    broadcast to them; the index gets unit dims for x's other dims, broadcast to the output.
    Negative indices count from the end, as for indexing. Other forms stay whole."""
    x, index = (inputs + [None, None])[:2]
    positions = node.attrs["positions"]
    if len(inputs) != 2 or list(positions).count(True) != 1 or index.type.rank == 0:
        return None
    p, r, rank = list(positions).index(True), index.type.rank, x.type.rank
    size, out = x.type.shape[p], node.outputs[0].type.shape
    if isinstance(size, str):
        return None
    s = node.scope
    source = x
    for _ in range(r - 1):  # (.., 1, .., 1, size, ..): a unit dim per leading dim of the index
        (source,) = new.add_node("unsqueeze", [source], {"dim": p}, scope=s)
    spread = tuple(out[: p + r - 1]) + tuple(x.type.shape[p:])
    (source,) = new.add_node("expand", [source], {"shape": spread}, scope=s)
    zero = _constant(new, "zero", np.zeros((), index.type.dtype.np))
    (negative,) = new.add_node("lt", [index, zero], {}, scope=s)
    length = _constant(new, "size", np.array(size, index.type.dtype.np))
    (wrapped,) = new.add_node("add", [index, length], {}, scope=s)
    (at,) = new.add_node("where", [negative, wrapped, index], {}, scope=s)
    for _ in range(p):  # unit dims for x's dims before and after the indexed one
        (at,) = new.add_node("unsqueeze", [at], {"dim": 0}, scope=s)
    for d in range(p + r, p + r + rank - p - 1):
        (at,) = new.add_node("unsqueeze", [at], {"dim": d}, scope=s)
    (at,) = new.add_node("expand", [at], {"shape": tuple(out)}, scope=s)
    return new.add_node("gather", [source, at], {"dim": p + r - 1}, scope=s)


def _spread(new: Graph, s: str, x: Value, dim: int, before: int, after: int, stride: int, value) -> Value:
    """`x` along `dim` spread over before + (n - 1) * stride + 1 + after positions: position j
    holds x[(j - before) / stride] where that is a whole index in range, else `value` (negative
    `before`/`after` crop). The positions are an arange of constant length, so the index and the
    mask fold into constants and the kernel is a gather and a select."""
    shape = x.type.shape
    n = shape[dim]
    span = (n - 1) * stride + 1
    length = before + span + after
    i64 = np.int64
    (pos,) = new.add_node("arange", [], {"start": 0, "end": length, "step": 1, "dtype": "int64"}, scope=s)
    (src,) = new.add_node("sub", [pos, _constant(new, "pad_before", np.array(before, i64))], {}, scope=s)
    zero = _constant(new, "zero", np.array(0, i64))
    (low,) = new.add_node("ge", [src, zero], {}, scope=s)
    (high,) = new.add_node("lt", [src, _constant(new, "pad_span", np.array(span, i64))], {}, scope=s)
    (inside,) = new.add_node("logical_and", [low, high], {}, scope=s)
    if stride != 1:
        step = _constant(new, "stride", np.array(stride, i64))
        (rest,) = new.add_node("remainder", [src, step], {}, scope=s)
        (whole,) = new.add_node("eq", [rest, zero], {}, scope=s)
        (inside,) = new.add_node("logical_and", [inside, whole], {}, scope=s)
        (src,) = new.add_node("floor_divide", [src, step], {}, scope=s)
    last = _constant(new, "pad_last", np.array(n - 1, i64))
    (src,) = new.add_node("clamp", [src, zero, last], {}, scope=s)
    column = tuple(length if d == dim else 1 for d in range(len(shape)))
    out_shape = tuple(length if d == dim else size for d, size in enumerate(shape))
    (src,) = new.add_node("reshape", [src], {"shape": column}, scope=s)
    (src,) = new.add_node("expand", [src], {"shape": out_shape}, scope=s)
    (taken,) = new.add_node("gather", [x, src], {"dim": dim}, scope=s)
    (inside,) = new.add_node("reshape", [inside], {"shape": column}, scope=s)
    fill = _constant(new, "pad_value", np.array(value, x.type.dtype.np))
    (out,) = new.add_node("where", [inside, taken, fill], {}, scope=s)
    return out


def _pad(new: Graph, node: Node, inputs: list) -> list[Value] | None:
    """Constant padding as a gather and a select per padded dim (`_spread`), which kernels
    compute in place of the reference's fill and copy."""
    (x,) = inputs
    pads, value = node.attrs["pads"], node.attrs.get("value", 0.0)
    shape = x.type.shape
    padded = [d for d, (b, a) in enumerate(pads) if b or a]
    if not padded or any(not isinstance(shape[d], int) or shape[d] == 0 for d in padded):
        return None
    if any(shape[d] + b + a <= 0 for d, (b, a) in ((d, pads[d]) for d in padded)):
        return None
    for d in padded:
        x = _spread(new, node.scope, x, d, pads[d][0], pads[d][1], 1, value)
    return [x]


def _conv_transpose2d(new: Graph, node: Node, inputs: list) -> list[Value] | None:
    """A transposed convolution as convolutions. Its weight, (Cin, Cout / groups, KH, KW), with
    the channel axes swapped per group, is a convolution weight (Cout, Cin / groups, KH, KW).

    Without dilation, output row o = s * q + r (a phase r < s) gathers input rows q + c - m
    through kernel rows t + m * s (t = (r + p) mod s): a convolution of the input with the
    flipped taps t, t + s, ..., padded so that it gives the phase's rows. So there are s_h * s_w
    small convolutions with exactly the multiplications of the transposed form, whose outputs
    one kernel interleaves (a gather and a select per phase). With dilation, the input is
    spread with stride - 1 zeros between its elements instead and convolved once with the whole
    flipped window (stride^2 times the multiplications)."""
    x, w = inputs[:2]
    if len(inputs) > 2 and inputs[2] is not None:
        return None
    a, s = node.attrs, node.scope
    ci, cog, kh, kw = w.type.shape
    groups = a.get("groups", 1)
    if not all(isinstance(d, int) for d in (*x.type.shape[1:], *w.type.shape)):
        return None
    stride, padding = tuple(a.get("stride", (1, 1))), tuple(a.get("padding", (0, 0)))
    output_padding, dilation = a.get("output_padding", (0, 0)), tuple(a.get("dilation", (1, 1)))
    out_shape = tuple(node.outputs[0].type.shape)
    if groups == 1 and _gemm_first(x.type.shape, (kh, kw), stride, cog):
        return _conv_transpose_gemm(new, s, x, w, out_shape, stride, padding, dilation)
    # (Cin, Cout/g, KH, KW) -> (Cout, Cin/g, KH, KW)
    (wc,) = new.add_node("reshape", [w], {"shape": (groups, ci // groups, cog, kh, kw)}, scope=s)
    (wc,) = new.add_node("permute", [wc], {"dims": (0, 2, 1, 3, 4)}, scope=s)
    (wc,) = new.add_node("reshape", [wc], {"shape": (groups * cog, ci // groups, kh, kw)}, scope=s)
    conv = {"stride": (1, 1), "padding": (0, 0), "dilation": dilation, "groups": groups}
    if dilation != (1, 1) or stride == (1, 1):
        edges = tuple(d * (k - 1) - p for d, k, p in zip(dilation, (kh, kw), padding, strict=True))
        if stride == (1, 1) and tuple(output_padding) == (0, 0) and min(edges) >= 0:
            conv = {**conv, "padding": edges}  # (the convolution's own zero padding)
        else:
            for i, edge in enumerate(edges):
                x = _spread(new, s, x, 2 + i, edge, edge + output_padding[i], stride[i], 0.0)
        (flipped,) = new.add_node("flip", [wc], {"dims": (2, 3)}, scope=s)
        return new.add_node("conv2d", [x, flipped], conv, scope=s)
    out_h, out_w = out_shape[2:]
    phases = [
        _phases(k, st, p, n, size)
        for k, st, p, n, size in zip((kh, kw), stride, padding, x.type.shape[2:], (out_h, out_w), strict=True)
    ]
    whole = _whole_phases(phases, stride, (out_h, out_w))
    if whole and groups == 1:  # one convolution for every phase; its channels interleaved
        ty, tx = whole
        subs = []
        for taps_y, _, _ in phases[0]:
            for taps_x, _, _ in phases[1]:
                (sub,) = new.add_node(
                    "slice", [wc], {"dim": 2, "start": taps_y[0], "stop": kh, "step": stride[0]}, scope=s
                )
                (sub,) = new.add_node(
                    "slice", [sub], {"dim": 3, "start": taps_x[0], "stop": kw, "step": stride[1]}, scope=s
                )
                subs.append(new.add_node("flip", [sub], {"dims": (2, 3)}, scope=s)[0])
        (every,) = new.add_node("concat", subs, {"dim": 0}, scope=s)
        (y,) = new.add_node("conv2d", [x, every], conv, scope=s)
        n, cy, cx = out_shape[0], out_h // stride[0], out_w // stride[1]
        (y,) = new.add_node("reshape", [y], {"shape": (n, *stride, cog, cy, cx)}, scope=s)
        (y,) = new.add_node("permute", [y], {"dims": (0, 3, 4, 1, 5, 2)}, scope=s)
        return new.add_node("reshape", [y], {"shape": out_shape}, scope=s)
    # the output position of every (row, column), flattened: which phase, and where in it
    rows, cols = np.arange(out_h), np.arange(out_w)
    flat = (1, 1, out_h * out_w)
    result = _constant(new, "zero", np.zeros((), x.type.dtype.np))
    for ry, (taps_y, pads_y, count_y) in enumerate(phases[0]):
        for rx, (taps_x, pads_x, count_x) in enumerate(phases[1]):
            if not taps_y or not taps_x or not count_y or not count_x:
                continue  # no kernel tap reaches these outputs: they stay 0
            (sub,) = new.add_node(
                "slice", [wc], {"dim": 2, "start": taps_y[0], "stop": kh, "step": stride[0]}, scope=s
            )
            (sub,) = new.add_node(
                "slice", [sub], {"dim": 3, "start": taps_x[0], "stop": kw, "step": stride[1]}, scope=s
            )
            (sub,) = new.add_node("flip", [sub], {"dims": (2, 3)}, scope=s)
            xin = x
            if pads_y != (0, 0):
                xin = _spread(new, s, xin, 2, *pads_y, 1, 0.0)
            if pads_x != (0, 0):
                xin = _spread(new, s, xin, 3, *pads_x, 1, 0.0)
            (y,) = new.add_node("conv2d", [xin, sub], conv, scope=s)
            (y,) = new.add_node(
                "reshape", [y], {"shape": (out_shape[0], out_shape[1], count_y * count_x)}, scope=s
            )
            at = (rows[:, None] // stride[0]) * count_x + np.minimum(cols[None, :] // stride[1], count_x - 1)
            at = np.minimum(at, count_y * count_x - 1).astype(np.int64).reshape(flat)
            (at,) = new.add_node(
                "expand",
                [_constant(new, "phase_index", at)],
                {"shape": (out_shape[0], out_shape[1], out_h * out_w)},
                scope=s,
            )
            (taken,) = new.add_node("gather", [y, at], {"dim": 2}, scope=s)
            mine = (rows[:, None] % stride[0] == ry) & (cols[None, :] % stride[1] == rx)
            mask = _constant(new, "phase_mask", mine.reshape(flat))
            (result,) = new.add_node("where", [mask, taken, result], {}, scope=s)
    if not result.type.shape:  # (no tap reaches any output)
        (result,) = new.add_node(
            "expand", [result], {"shape": (out_shape[0], out_shape[1], out_h * out_w)}, scope=s
        )
    return new.add_node("reshape", [result], {"shape": out_shape}, scope=s)


def _whole_phases(phases: list, stride: tuple, out: tuple) -> tuple[int, int] | None:
    """(taps along each dim) where every output phase is a convolution of the unpadded input
    with as many taps as every other, and the phases tile the output: their outputs, one
    convolution's channels, interleave by a reshape (a 2 x 2 transposed convolution of stride
    2, a U-Net's upsampling); None otherwise."""
    taps = []
    for dim_phases, st, size in zip(phases, stride, out, strict=True):
        counts = {(len(t), pads, count) for t, pads, count in dim_phases}
        if len(counts) != 1:
            return None
        ((length, pads, count),) = counts
        if not length or pads != (0, 0) or count * st != size:
            return None
        taps.append(length)
    return taps[0], taps[1]


def _gemm_first(x_shape: tuple, kernel: tuple, stride: tuple, out_channels: int) -> bool:
    """Whether a transposed convolution is better computed as one matrix product and a gather
    than as convolutions: where each output sums at most 4 products (the gathers read each
    once) and the input is smaller than the window (a convolution would multiply mostly zero
    padding: DCGAN's first layer, 1 x 1 to 4 x 4, 0.09 ms against 1.1) or there are few output
    channels (DCGAN's last layer, 3 channels: 0.32 ms against 0.65; at 32 channels and more the
    convolutions were faster, and with 25 products per output, LeNet's input gradient, 2.7 ms
    against 0.7)."""
    reach = [min(n, -(-k // s)) for n, k, s in zip(x_shape[2:], kernel, stride, strict=True)]
    small = x_shape[2] < kernel[0] or x_shape[3] < kernel[1]
    return reach[0] * reach[1] <= 4 and (small or out_channels < 8)


def _conv_transpose_gemm(new: Graph, s: str, x: Value, w: Value, out_shape: tuple, stride, padding, dilation):
    """conv_transpose2d (one group) as its definition: every input pixel times the weight,
    (N, H * W, Cin) @ (Cin, Cout * KH * KW), one matrix product; then each output element sums
    the products that land on it, at most ceil(KH / s) * ceil(KW / s) of them, read by gathers
    from the products (the indices are constants of the output's spatial position, plus the
    channel's offset)."""
    n, ci, h, wd = x.type.shape
    _, co, kh, kw = w.type.shape
    out_h, out_w = out_shape[2:]
    (xr,) = new.add_node("permute", [x], {"dims": (0, 2, 3, 1)}, scope=s)
    (xr,) = new.add_node("reshape", [xr], {"shape": (n, h * wd, ci)}, scope=s)
    (wr,) = new.add_node("reshape", [w], {"shape": (ci, co * kh * kw)}, scope=s)
    (cols,) = new.add_node("matmul", [xr, wr], {}, scope=s)
    length = h * wd * co * kh * kw
    (cols,) = new.add_node("reshape", [cols], {"shape": (n, 1, 1, length)}, scope=s)
    (cols,) = new.add_node("expand", [cols], {"shape": (n, co, out_h, length)}, scope=s)

    def reach(out: int, size: int, k: int, st: int, p: int, d: int) -> list[list[tuple]]:
        """Per output position along a dim, the (input position, tap) pairs that land on it."""
        pairs = [[] for _ in range(out)]
        for i in range(size):
            for t in range(k):
                o = i * st + t * d - p
                if 0 <= o < out:
                    pairs[o].append((i, t))
        return pairs

    rows = reach(out_h, h, kh, stride[0], padding[0], dilation[0])
    cols_x = reach(out_w, wd, kw, stride[1], padding[1], dilation[1])
    channel = _constant(new, "channel_offset", (np.arange(co, dtype=np.int64) * kh * kw).reshape(1, co, 1, 1))
    zero = _constant(new, "zero", np.zeros((), x.type.dtype.np))
    total = None
    for a in range(max(len(r) for r in rows)):
        for b in range(max(len(c) for c in cols_x)):
            at = np.zeros((1, 1, out_h, out_w), np.int64)
            valid = np.zeros((1, 1, out_h, out_w), bool)
            for oy, pairs_y in enumerate(rows):
                for ox, pairs_x in enumerate(cols_x):
                    if a < len(pairs_y) and b < len(pairs_x):
                        (iy, ty), (ix, tx) = pairs_y[a], pairs_x[b]
                        at[0, 0, oy, ox] = (iy * wd + ix) * co * kh * kw + ty * kw + tx
                        valid[0, 0, oy, ox] = True
            (index,) = new.add_node("add", [_constant(new, "tap_index", at), channel], {}, scope=s)
            (index,) = new.add_node("expand", [index], {"shape": out_shape}, scope=s)
            (taken,) = new.add_node("gather", [cols, index], {"dim": 3}, scope=s)
            if not valid.all():
                (taken,) = new.add_node(
                    "where", [_constant(new, "tap_valid", valid), taken, zero], {}, scope=s
                )
            total = taken if total is None else new.add_node("add", [total, taken], {}, scope=s)[0]
    return [total]


def _phases(k: int, stride: int, padding: int, n: int, size: int) -> list[tuple]:
    """Per output phase r < stride along one dim (outputs r, r + stride, ...; `size` of them
    in all): (the kernel taps that reach it, the (before, after) padding of the n inputs that
    makes a stride-1 convolution with those taps, flipped, give its outputs, how many outputs)."""
    out = []
    for r in range(stride):
        first = (r + padding) % stride
        taps = tuple(range(first, k, stride))
        count = max((size - r + stride - 1) // stride, 0)
        shift = (r + padding - first) // stride  # output q of the phase reads inputs q + shift - m
        before = len(taps) - 1 - shift
        out.append((taps, (before, count + len(taps) - 1 - before - n), count))
    return out


# composites whose second input is an integer index, not a promoted operand
INDEXED = frozenset({"nll_loss", "index"})

# Composite op -> its decomposition into core ops, or None where it stays whole (a backend may
# keep some whole).
COMPOSITES: dict[str, Callable[[Graph, Node, list], list[Value] | None]] = {
    "conv_transpose2d": _conv_transpose2d,
    "index": _index,
    "layer_norm": _layer_norm,
    "layer_norm_backward": _layer_norm_backward,
    "linear": _linear,
    "log_softmax": _log_softmax,
    "nll_loss": _nll_loss,
    "pad": _pad,
    "softmax": _softmax,
    "softmax_backward": _softmax_backward,
    "var": _var,
}


def decompose(graph: Graph, keep: frozenset[str] = frozenset()) -> Graph:
    """Decomposition: each composite op (COMPOSITES) not in `keep` becomes its core ops.
    Precondition: the inputs of a composite have the dtypes its inference gave (the capture
    inserts casts), so the core ops compute in the same dtype."""

    def rule(new: Graph, node: Node, inputs: list) -> list[Value] | None:
        fn = COMPOSITES.get(node.op)
        if fn is None or node.op in keep:
            return None
        promoted = inputs[:1] if node.op in INDEXED else inputs  # (class targets are integers)
        if not all(v is None or v.type.dtype == node.outputs[0].type.dtype for v in promoted):
            return None  # mixed dtypes: keep it whole rather than guess a promotion
        values = fn(new, node, inputs)
        if values is None:
            return None
        if [v.type for v in values] != [o.type for o in node.outputs]:
            raise AssertionError(f"decomposition of {node.op} changed its type")
        return values

    return _prune(_rebuild(graph, rule))


def specialize(graph: Graph, bindings: dict[str, int], partial: bool = False) -> Graph:
    """Shape specialisation: the graph for one size of each symbolic dim (every symbol of the
    inputs must be bound, or with `partial` those bound), with concrete types and attributes
    everywhere (`partial`: the other symbols kept), subgraphs included. A backend that
    compiles per shape starts here; the result refuses other sizes (InputError)."""
    from ir.interpreter import bind_attrs
    from ir.types import Sizes

    symbols = graph.symbols()
    unknown = sorted(set(bindings) - symbols)
    missing = [] if partial else sorted(symbols - set(bindings))
    if unknown or missing:
        raise IRError(
            f"specialize {graph.name}: the graph's symbols are {sorted(symbols)}; "
            f"unbound {missing}, unknown {unknown}"
        )
    for sym, size in bindings.items():
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise IRError(f"specialize {graph.name}: size of {sym!r} must be an int >= 0, got {size!r}")
    sizes = Sizes()
    for sym, size in bindings.items():
        try:
            sizes.bind(sym, size)
        except ValueError as e:
            raise IRError(f"specialize {graph.name}: {e}") from None
    new = Graph(graph.name)
    env: dict[int, Value] = {}
    for v in graph.inputs:
        shape = tuple(sizes.get(d, d) if isinstance(d, str) else d for d in v.type.shape)
        t = TensorType(v.type.dtype, shape)
        env[id(v)] = new.add_input(v.name, t)
    for name, v in graph.weights.items():
        env[id(v)] = new.add_weight(name, graph.weight_data[name])
    for node in graph.nodes:
        attrs = bind_attrs(node.attrs, sizes)
        for key, value in attrs.items():
            if isinstance(value, Graph):
                inner = {s: sizes[s] for s in value.symbols() if sizes.get(s) is not None}
                attrs[key] = specialize(value, inner, partial)
        inputs = [None if v is None else env[id(v)] for v in node.inputs]
        outs = new.add_node(node.op, inputs, attrs, scope=node.scope)
        env.update({id(o): n for o, n in zip(node.outputs, outs, strict=True)})
    new.set_outputs([env[id(v)] for v in graph.outputs])
    _keep_output_names(graph, new)
    return new
