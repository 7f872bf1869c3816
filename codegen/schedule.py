"""Scheduling: partition a graph into kernels and the nodes that still run on the reference
interpreter.

Chains of elementwise ops fuse into a single `Kernel`: a node whose only consumer is a fusable
node of the same shape is folded into that consumer's expression, so the intermediate never
exists in memory. Reductions (sum, mean, amax, amin) become kernels too, with their input's
elementwise producers folded in as a prologue. Reductions that read each other's results
through elementwise ops over one set of axes (softmax, log_softmax, layer norm, variance)
become one row kernel: per row, each reduction as a stage, then the consumer (at every point
of the row, or once per row where it combines the reductions' results: a sum over a count).
A gather is a `Take` inside these kernels: its input read in memory at the index's values (so
nll_loss, decomposed, is one row kernel). A matmul and a 2-D convolution become `Matmul` and
`Conv2d` kernels that take the chain of elementwise consumers of their product (bias add,
activation, residual add) as their epilogue; a matmul also computes its left operand where
that is a single-use elementwise chain on one full-size value and broadcast inputs or weights
(a scale and shift, bytes to floats) — its prologue, evaluated once per block of rows into a
buffer the panels share, so the operand never exists in memory; max pooling (values, indices,
backward) and the convolution's weight gradient have kernels of their own. Movement ops (permute, slice,
select, flip, expand, squeeze, unsqueeze, reshape) are index arithmetic: kernels read their
root's buffer through a view (codegen.views), matmuls their operands too where the strides
are known, and a copy kernel stores a view only where a convolution, the interpreter or the
caller needs it in memory. Everything else is a `NodeStep` the executable runs through the
interpreter. `format_schedule` prints which nodes went into which kernel.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from codegen.kernel import (
    BINARY_OPS,
    BITWISE_OPS,
    COMPARE_OPS,
    LOGIC_OPS,
    PREDICATES,
    UNARY_OPS,
    Acc,
    Binary,
    Cast,
    Conv2d,
    ConvWeightGrad,
    Index,
    Kernel,
    KernelInput,
    Load,
    Matmul,
    Pool2d,
    PoolBackward,
    Reduction,
    Row,
    Stage,
    Take,
    Unary,
    View,
    Where,
    conv_extra_strides,
    format_kernel,
    matmul_extra_strides,
)
from codegen.views import MOVEMENT, contiguous, view_values
from ir import dtypes
from ir.graph import Graph, Node, Value

FLOATS = (dtypes.float32, dtypes.float64)


@dataclass(frozen=True)
class KernelStep:
    """Run `kernel` on the values named `inputs`, defining `output`; `nodes` it replaces."""

    kernel: Kernel | Matmul
    inputs: tuple[str, ...]
    output: str
    nodes: tuple[int, ...]


@dataclass(frozen=True)
class NodeStep:
    """Run one node on the reference interpreter."""

    node: Node
    index: int


Step = KernelStep | NodeStep


INTS = (dtypes.int32, dtypes.int64)
INTEGER_OPS = ("add", "sub", "mul", "neg", "abs", "maximum", "minimum", "relu", *BITWISE_OPS)
# ops cheap enough to compute again in each kernel that uses their result (no transcendental
# function, no division)
CHEAP = frozenset(INTEGER_OPS) | {"cast", "where", "clamp", *PREDICATES, *COMPARE_OPS, *LOGIC_OPS}
# the largest integer expression (nodes, as a tree) a kernel computes again rather than read
MAX_RECOMPUTED = 128
# integers kernels load and cast but do no arithmetic on (an image's bytes)
SMALL_INTS = (dtypes.uint8, dtypes.int8, dtypes.int16)
# casts a kernel does (numpy's semantics): from integers and bools to anything, floats to bool
# and to the other float; float to integer (undefined out of range in LLVM) stays on the
# interpreter
CASTS = (
    {(a, b) for a in (*INTS, *SMALL_INTS, dtypes.bool_) for b in (*FLOATS, *INTS, dtypes.bool_) if a is not b}
    | {(f, dtypes.bool_) for f in FLOATS}
    | {(dtypes.float32, dtypes.float64), (dtypes.float64, dtypes.float32)}
)


def float_only(node: Node) -> bool:
    """An arithmetic node whose operands and result are all one float dtype (what matmul and
    convolution epilogues and the float math helpers take)."""
    if node.op not in UNARY_OPS and node.op not in BINARY_OPS:
        return False
    if len(node.outputs) != 1 or node.attrs:
        return False
    out = node.outputs[0].type
    return out.dtype in FLOATS and all(v is not None and v.type.dtype == out.dtype for v in node.inputs)


def indexed(node: Node) -> bool:
    """`node` is `arange(n)` (from 0 in steps of 1), which a kernel computes in place from its
    position (`Index`) where its one user is an elementwise node of its shape, or stores."""
    if node.op != "arange" or node.inputs or len(node.outputs) != 1:
        return False
    a = node.attrs
    return a.get("start") == 0 and a.get("step") == 1 and node.outputs[0].type.dtype in (*FLOATS, *INTS)


def fusable(node: Node) -> bool:
    """Whether `node` can be part of an elementwise kernel: float arithmetic, integer
    arithmetic, comparisons, logic, isfinite/isnan, where and the casts in CASTS."""
    if indexed(node):
        return True
    if len(node.outputs) != 1 or not node.inputs or node.inputs[0] is None:
        return False
    op, out = node.op, node.outputs[0].type.dtype
    if op == "clamp":  # x, then optional lower and upper bounds
        bounds = [v.type.dtype for v in node.inputs[1:] if v is not None]
        return out in (*FLOATS, *INTS) and all(d is out for d in (node.inputs[0].type.dtype, *bounds))
    if any(v is None for v in node.inputs):
        return False
    if op == "gather":
        return gatherable(node)
    ins = [v.type.dtype for v in node.inputs]
    if node.attrs and op != "cast":
        return False
    if op in UNARY_OPS or op in BINARY_OPS or op in BITWISE_OPS:
        same = all(d is out for d in ins)
        return same and (out in FLOATS or (out in INTS and op in INTEGER_OPS))
    if op in COMPARE_OPS:
        return out is dtypes.bool_ and ins[0] is ins[1] and ins[0] in (*FLOATS, *INTS, dtypes.bool_)
    if op in LOGIC_OPS:
        return out is dtypes.bool_ and all(d is dtypes.bool_ for d in ins)
    if op in PREDICATES:
        return out is dtypes.bool_ and ins[0] in FLOATS
    if op == "where":
        return ins[0] is dtypes.bool_ and ins[1] is ins[2] is out and out in (*FLOATS, *INTS, dtypes.bool_)
    if op == "cast":
        return (ins[0], out) in CASTS
    return False


def gatherable(node: Node) -> bool:
    """Whether gather `node` can be part of a kernel (as a `Take`): its input read in memory at
    integer indices, of a dtype kernels compute, along an axis of known size."""
    x, index = (v.type for v in node.inputs)
    out = node.outputs[0].type
    dim = node.attrs["dim"] % max(x.rank, 1)
    return (
        x.dtype in (*FLOATS, *INTS)
        and out.dtype is x.dtype
        and index.dtype in INTS
        and x.rank == index.rank >= 1
        and isinstance(x.shape[dim], int)
    )


REDUCTIONS = {"sum": "sum", "mean": "sum", "amax": "max", "amin": "min"}


def reducible(node: Node) -> bool:
    """Whether `node` is a reduction a kernel computes: of floats into the same float; amax and
    amin of integers; sums of integers into int64 (as PyTorch sums them)."""
    if node.op not in REDUCTIONS or len(node.outputs) != 1 or node.inputs[0] is None:
        return False
    out, source = node.outputs[0].type.dtype, node.inputs[0].type.dtype
    if out in FLOATS:
        return source is out
    if source in INTS and node.op in ("amax", "amin"):
        return out is source
    return source in INTS and node.op == "sum" and out is dtypes.int64


def multipliable(node: Node) -> bool:
    """Whether `node` is a matmul a kernel computes: float operands of one dtype, the second a
    matrix, or both batches of matrices with the same leading dims."""
    if node.op != "matmul" or len(node.inputs) != 2 or any(v is None for v in node.inputs):
        return False
    a, b = (v.type for v in node.inputs)
    out = node.outputs[0].type
    if out.dtype not in FLOATS or not a.dtype == b.dtype == out.dtype or len(a.shape) < 1:
        return False
    return len(b.shape) == 2 or (len(b.shape) > 2 and tuple(a.shape[:-2]) == tuple(b.shape[:-2]))


def _gathered_from(v: Value, user: Node) -> bool:
    """`user` is a gather reading `v` as its source: at positions its index says, so `v` must be
    in memory (computing it inside the gather's kernel would read it at the kernel's point)."""
    return user.op == "gather" and user.inputs[0] is v


def schedule(graph: Graph) -> list[Step]:
    """The steps that compute `graph`, in an order that respects its dependencies."""
    users: dict[int, list[Node]] = {}
    for node in graph.nodes:
        for v in node.inputs:
            if v is not None:
                users.setdefault(id(v), []).append(node)
    outputs = {id(v) for v in graph.outputs}
    position = {id(n): i for i, n in enumerate(graph.nodes)}

    taken: set[int] = set()  # nodes inside a matmul kernel (its epilogue)

    def inlined(v: Value, space: tuple) -> bool:
        """`v` has one user, a kernel over `space`, which computes it instead of reading it: a
        value of the kernel's shape, or a cheap one that broadcasts to it (computed again at
        every point it is read, e.g. softmax's guarded maximum per row)."""
        p = v.producer
        shape = tuple(v.type.shape)
        us = users.get(id(v), [])
        return (
            p is not None
            and id(p) not in taken
            and fusable(p)
            and id(v) not in outputs
            and len(us) == 1
            and not _gathered_from(v, us[0])
            and (
                shape == tuple(space)
                or (p.op in CHEAP and _broadcasts(shape, tuple(space)))
                or (
                    indexed(p) and len(space) > 0 and shape[0] == space[-1]
                )  # (positions along the last axis)
            )
        )

    sizes: dict[int, int] = {}

    def expression_size(v: Value) -> int:
        """Nodes in the expression tree of integer value `v` down to what is not cheap integer
        arithmetic (a DAG's shared values counted at each use)."""
        if id(v) not in sizes:
            p = v.producer
            cheap_int = p is not None and p.op in CHEAP and v.type.dtype in INTS and fusable(p)
            sizes[id(v)] = 1 + (
                sum(expression_size(w) for w in p.inputs if w is not None) if cheap_int else 0
            )
        return sizes[id(v)]

    def recomputed(v: Value) -> bool:
        """`v` is cheap (one arithmetic op on values that are read, not computed; or integer
        arithmetic of a small expression: a hash's steps read each value twice) and every one
        of its several users is a kernel over its shape: each computes it again rather than
        have it stored and read back (and LLVM and the CUDA compiler compute a repeated
        subexpression once)."""
        p, us = v.producer, users.get(id(v), [])
        if p is None or id(p) in taken or p.op not in CHEAP or not fusable(p):
            return False
        if len(us) < 2 or id(v) in outputs:
            return False
        space = tuple(v.type.shape)
        for u in us:
            if _gathered_from(v, u):
                return False
            fits = fusable(u) and tuple(u.outputs[0].type.shape) == space
            if id(u) in taken or not (fits or (reducible(u) and u.inputs[0] is v)):
                return False
        if v.type.dtype in INTS and expression_size(v) <= MAX_RECOMPUTED:
            return True
        return not any(w is not None and inlined(w, space) for w in p.inputs)

    def folded(v: Value, space: tuple, consumer: Node, recompute: bool = True) -> bool:
        """`v` is computed inside `consumer`'s kernel (iterating over `space`) rather than stored."""
        if inlined(v, space):
            return True
        # a recomputed value is stored nowhere: every kernel that reads it computes it, also one
        # over a larger space that its user was inlined into (broadcast there)
        return recompute and _broadcasts(tuple(v.type.shape), tuple(space)) and recomputed(v)

    host: dict[int, tuple] = {}

    def host_space(n: Node) -> tuple:
        """The space of the kernel that computes fusable node `n`: its own output's, or that of
        the consumer kernel it is inlined into (up a chain of single consumers, which may
        broadcast into larger spaces)."""
        chain, node = [], n
        while id(node) not in host:
            v = node.outputs[0]
            us = users.get(id(v), [])
            if len(us) == 1 and id(v) not in outputs and id(us[0]) not in taken and fusable(us[0]):
                chain.append(node)
                node = us[0]
                continue
            host[id(node)] = tuple(v.type.shape)
        space = host[id(node)]
        for m in reversed(chain):
            own = tuple(m.outputs[0].type.shape)
            space = host[id(m)] = space if inlined(m.outputs[0], space) else own
        return host[id(n)]

    views, weights = view_values(graph), frozenset(graph.weights)
    cx = _Context(graph.nodes, users, outputs, taken, folded, position, views, weights)
    matmuls: dict[int, KernelStep] = {}  # by the last node of each matmul or convolution kernel
    count = 0
    for node in graph.nodes:
        build = _matmul if multipliable(node) else _conv if convolvable(node) else None
        if build is not None:
            last, step = build(node, f"kernel{count}", cx)
            matmuls[id(last)] = step
            count += 1
    stored = _stored_views(graph, cx)  # movement outputs that exist in memory; kernels read the rest
    for node in _row_finals(graph.nodes, cx):
        if id(node) in taken:
            continue
        group = _row_group(node, f"kernel{count}", cx)
        if group is not None:
            matmuls[id(node)] = group
            count += 1

    steps: list[Step] = []
    for node in graph.nodes:
        if id(node) in matmuls:  # where its last epilogue node was: every input is ready
            steps.append(matmuls[id(node)])
            continue
        if id(node) in taken:
            continue
        out = node.outputs[0]
        if id(out) in cx.views:
            root, view = cx.views[id(out)]
            if id(out) not in stored:
                continue  # read through its view by every kernel that needs it
            if node.op != "reshape" or root is not node.inputs[0]:  # (a reshape of a stored value: an alias)
                x = KernelInput(tuple(out.type.shape), out.type.dtype, view)
                kernel = Kernel(f"kernel{count}", tuple(out.type.shape), out.type.dtype, (x,), Load(0))
                count += 1
                steps.append(KernelStep(kernel, (root.name,), out.name, (position[id(node)],)))
                continue
        if poolable(node):
            a = node.attrs
            x = node.inputs[0]
            for out, indices in zip(node.outputs, (False, True), strict=True):
                if not users.get(id(out)) and id(out) not in outputs:
                    continue  # (the values or the indices are not needed)
                kernel = Pool2d(
                    f"kernel{count}",
                    x.type.dtype,
                    KernelInput(tuple(x.type.shape)),
                    tuple(out.type.shape),
                    tuple(a["kernel_size"]),
                    tuple(a["stride"]),
                    tuple(a.get("padding", (0, 0))),
                    tuple(a.get("dilation", (1, 1))),
                    indices,
                )
                count += 1
                steps.append(KernelStep(kernel, (x.name,), out.name, (position[id(node)],)))
            continue
        if pool_backward(node):
            g, where, out = node.inputs[0], node.inputs[1], node.outputs[0]
            kernel = PoolBackward(
                f"kernel{count}", out.type.dtype, KernelInput(tuple(g.type.shape)), tuple(out.type.shape)
            )
            count += 1
            steps.append(KernelStep(kernel, (g.name, where.name), out.name, (position[id(node)],)))
            continue
        if weight_gradable(node):
            a = node.attrs
            x, g, out = node.inputs[0], node.inputs[1], node.outputs[0]
            kernel = ConvWeightGrad(
                f"kernel{count}",
                out.type.dtype,
                KernelInput(tuple(x.type.shape)),
                KernelInput(tuple(g.type.shape)),
                tuple(out.type.shape),
                tuple(a.get("padding", (0, 0))),
                tuple(a.get("dilation", (1, 1))),
                int(a.get("groups", 1)),
            )
            count += 1
            steps.append(KernelStep(kernel, (x.name, g.name), out.name, (position[id(node)],)))
            continue
        if reducible(node):
            source = node.inputs[0]
            space = tuple(source.type.shape)
            body, inputs, members = _expression(source, space, folded, position, node)
            members.append(position[id(node)])
            rank = len(space)
            dims = node.attrs.get("dims")
            axes = tuple(range(rank)) if dims is None else tuple(sorted({d % rank for d in dims}))
            reduce = Reduction(REDUCTIONS[node.op], axes, bool(node.attrs.get("keepdim")), node.op == "mean")
        elif fusable(node):
            out = node.outputs[0]
            if recomputed(out):
                continue  # computed again inside each of its users' kernels
            if len(users.get(id(out), [])) == 1 and id(out) not in outputs:
                consumer = users[id(out)][0]
                if id(consumer) in taken:
                    pass  # a matmul's, convolution's or row kernel's operand: stored
                elif fusable(consumer) and folded(out, host_space(consumer), consumer):
                    continue  # computed inside the kernel that computes its consumer
                elif (
                    reducible(consumer)
                    and consumer.inputs[0] is out
                    and folded(out, out.type.shape, consumer)
                ):
                    continue  # the prologue of its consumer's reduction
            space = tuple(out.type.shape)
            body, inputs, members = _fuse(node, space, folded, position)
            reduce = None
        else:
            steps.append(NodeStep(node, position[id(node)]))
            continue
        out = node.outputs[0]
        reads, names = _reads(inputs, cx)
        kernel = Kernel(
            f"kernel{count}", ranges=space, dtype=out.type.dtype, inputs=reads, body=body, reduce=reduce
        )
        count += 1
        steps.append(KernelStep(kernel, names, out.name, tuple(sorted(set(members)))))
    return steps


@dataclass(frozen=True)
class _Context:
    """What building a kernel needs to know about the graph."""

    nodes: list
    users: dict
    outputs: set
    taken: set  # nodes inside matmul, convolution and row kernels
    folded: object  # (value, space) -> whether the value is computed inside a kernel over space
    position: dict
    views: dict  # id(movement output) -> (root value, View): see codegen.views
    weights: frozenset  # the graph's weight names
    reaches: set = field(default_factory=set)  # nodes whose value depends on a float reduction
    # (id(node), id(value)): views a matmul reads in place, never stored
    read_views: set = field(default_factory=set)


def _reads(values: list[Value], cx: _Context) -> tuple[tuple[KernelInput, ...], tuple[str, ...]]:
    """The inputs of an elementwise, reduction or row kernel that loads `values`, and the names
    of the values it reads: a movement op's output is its root's buffer through a view."""
    reads, names = [], []
    for v in values:
        if isinstance(v, _Gathered):
            x = v.value
            root, view = cx.views.get(id(x), (x, None))
            strides = list(view.strides) if view is not None else contiguous(tuple(x.type.shape))
            stride, strides[v.dim] = strides[v.dim], 0
            at = View(tuple(strides), view.offset if view is not None else ())
            reads.append(KernelInput(v.shape, x.type.dtype, at, gather=(stride, x.type.shape[v.dim])))
            names.append(root.name)
            continue
        root, view = cx.views.get(id(v), (v, None))
        reads.append(KernelInput(tuple(v.type.shape), v.type.dtype, view))
        names.append(root.name)
    return tuple(reads), tuple(names)


def _stored_views(graph: Graph, cx: _Context) -> set[int]:
    """The movement outputs (with views) that must exist in memory: graph outputs, roots of
    other views, and values read by anything but an elementwise, reduction or row kernel or
    another view (matmuls, convolutions, epilogues, the interpreter)."""
    stored = {id(root) for root, _ in cx.views.values()}
    for node in graph.nodes:
        for v in node.inputs:
            if v is None or id(v) not in cx.views:
                continue
            if node.op in MOVEMENT and id(node.outputs[0]) in cx.views:
                continue  # a view of a view
            if (fusable(node) or reducible(node)) and id(node) not in cx.taken:
                continue  # read through the view (cx.taken: only matmul and convolution kernels yet)
            if (id(node), id(v)) in cx.read_views:
                continue  # a matmul operand, read through the view
            stored.add(id(v))
    stored.update(id(v) for v in graph.outputs)
    return stored & set(cx.views)


def _epilogue(node: Node, epilogue, extras: list, cx: _Context, fits):
    """The longest chain of elementwise consumers of `node`'s output that can be the epilogue
    of its kernel, starting from `epilogue` over `extras` (Values, or placeholders the caller
    maps): the epilogue, its operands, the positions of the nodes it covers, and the last node
    of the chain (the kernel runs in its place). `fits(shape)` says whether an operand of that
    shape can be read by the kernel."""
    space = tuple(node.outputs[0].type.shape)
    members, tail = [cx.position[id(node)]], node
    while True:
        value = tail.outputs[0]
        consumers = cx.users.get(id(value), [])
        if len(consumers) != 1 or id(value) in cx.outputs:
            break
        c = consumers[0]
        if id(c) in cx.taken or not float_only(c) or tuple(c.outputs[0].type.shape) != space:
            break
        if c.outputs[0].type.dtype != node.outputs[0].type.dtype:
            break
        trial, covered, args = list(extras), [], []
        # single-use values only: the chain is built before the other kernels decide what they recompute
        folded = lambda v, space, consumer: cx.folded(v, space, consumer, False) and float_only(v.producer)  # noqa: E731
        for v in c.inputs:
            if v is value:
                args.append(epilogue)
            else:
                args.append(_operand(v, space, folded, cx.position, trial, covered, c))
        if any(fits(tuple(v.type.shape)) is None for v in trial[len(extras) :]):
            break  # e.g. an operand broadcast along only some leading dims
        epilogue = Unary(c.op, args[0]) if c.op in UNARY_OPS else Binary(c.op, args[0], args[1])
        extras, tail = trial, c
        members += [*covered, cx.position[id(c)]]
    cx.taken.update(id(cx.nodes[i]) for i in members)
    return epilogue, extras, members, tail


def _matmul(node: Node, name: str, cx: _Context):
    """The kernel of matmul `node` with its epilogue, and the node it runs in place of."""
    a, b = node.inputs
    out = node.outputs[0]
    space = tuple(out.type.shape)
    fits = lambda shape: matmul_extra_strides(shape, space)  # noqa: E731
    epilogue, extras, members, tail = _epilogue(node, Acc(), [], cx, fits)
    pack_b = b.name not in cx.weights or len(b.type.shape) > 2
    b_input, b_name = KernelInput(tuple(b.type.shape)), b.name
    view = _packable_view(b, cx, batch_dims=len(b.type.shape) - 2) if pack_b else None
    if view is not None:  # packed straight from the buffer it views (a transpose: k^T), no copy
        root, strides = view
        b_input, b_name = KernelInput(tuple(b.type.shape), b.type.dtype, strides), root.name
        cx.read_views.add((id(node), id(b)))
    a_input, a_name = KernelInput(tuple(a.type.shape)), a.name
    view = _packable_view(a, cx, batch_dims=len(a.type.shape) - 1) if len(a.type.shape) >= 2 else None
    if view is not None:  # rows read in place through the view (a transpose: x.T @ y), no copy
        root, strides = view
        a_input, a_name = KernelInput(tuple(a.type.shape), a.type.dtype, strides), root.name
        cx.read_views.add((id(node), id(a)))
    prologue = _prologue(a, node, cx) if view is None else None
    expression, leaves = None, []
    if prologue is not None:  # a computed inside the kernel from these values
        expression, leaves, covered = prologue
        members += covered
    kernel = Matmul(
        name,
        out.type.dtype,
        a_input,
        b_input,
        space,
        epilogue,
        tuple(KernelInput(tuple(v.type.shape)) for v in extras),
        pack_b=pack_b,
        prologue=expression,
        prologue_inputs=tuple(KernelInput(tuple(v.type.shape), v.type.dtype) for v in leaves),
    )
    names = (a_name, b_name, *(v.name for v in extras))
    if leaves:
        names = (leaves[0].name, b_name, *(v.name for v in extras), *(v.name for v in leaves[1:]))
    return tail, KernelStep(kernel, names, tail.outputs[0].name, tuple(sorted(set(members))))


def _prologue(a: Value, node: Node, cx: _Context):
    """(expression, the values it loads, the positions of the nodes it covers) when matmul
    `node`'s first operand `a` can be computed inside its kernel, else None: a single-use chain
    of float arithmetic in the matmul's dtype (and casts into it from loaded values), loading a
    full-size value and operands that broadcast along a's rows or columns. Broadcast operands
    must be inputs or weights: per-row statistics of a reduction (layer norm's mean, softmax's
    sum) stay with their row kernel, which reads its input once and writes the rows once."""
    space, dtype = tuple(a.type.shape), a.type.dtype

    def computable(n: Node | None) -> bool:
        if n is None or id(n) in cx.taken or n.outputs[0].type.dtype != dtype:
            return False
        return float_only(n) or (n.op == "cast" and fusable(n))

    def folded(v, space, consumer):  # (a cast's operand is of another dtype: never computable, loaded)
        return cx.folded(v, space, consumer, False) and computable(v.producer)

    if len(space) < 2 or not computable(a.producer) or not cx.folded(a, space, node, False):
        return None
    leaves: list[Value] = []
    members: list[int] = []
    expression = _build(a.producer, space, folded, cx.position, leaves, members)
    if not leaves:
        return None
    for v in leaves:
        shape = tuple(v.type.shape)
        if matmul_extra_strides(shape, space) is None or (shape != space and v.producer is not None):
            return None
    cx.taken.update(id(cx.nodes[i]) for i in members)
    return expression, leaves, members


def _packable_view(v: Value, cx: _Context, batch_dims: int):
    """(root, View) when matmul operand `v` is a view the kernel can read in place: strides
    and offset of known sizes, and its first `batch_dims` + 1 dims collapsing into one stride
    (b's batches; a's batches and rows, which the kernel walks as one run of rows)."""
    if id(v) not in cx.views:
        return None
    root, view = cx.views[id(v)]
    if root.type.dtype != v.type.dtype:
        return None
    terms = [*view.strides, *view.offset]
    if any(t != 0 and not all(isinstance(d, int) for d in t) for t in terms):
        return None
    shape = tuple(v.type.shape)
    value = [_int(t) for t in view.strides]
    for i in range(batch_dims - 1):  # stride[i] = stride[i + 1] * size[i + 1]
        if not isinstance(shape[i + 1], int) or value[i] != value[i + 1] * shape[i + 1]:
            return None
    return root, view


def _int(term) -> int:
    """The value of a product of ints (see codegen.views.product)."""
    return 0 if term == 0 else math.prod(term)


def convolvable(node: Node) -> bool:
    """Whether `node` is a 2-D convolution a kernel computes: float operands of one dtype, every
    size but the batch known."""
    if node.op != "conv2d" or any(v is None for v in node.inputs[:2]):
        return False
    out = node.outputs[0].type
    types = [v.type for v in node.inputs if v is not None]
    if out.dtype not in FLOATS or any(t.dtype != out.dtype for t in types):
        return False
    x, w = types[:2]
    static = lambda shape: all(isinstance(d, int) for d in shape)  # noqa: E731
    return len(x.shape) == 4 and static(x.shape[1:]) and static(w.shape) and static(out.shape[1:])


def weight_gradable(node: Node) -> bool:
    """Whether `node` is a conv2d_weight_grad a kernel computes: stride 1, float operands of one
    dtype, every size but the batch known."""
    if node.op != "conv2d_weight_grad" or tuple(node.attrs.get("stride", (1, 1))) != (1, 1):
        return False
    out = node.outputs[0].type
    x, g = (v.type for v in node.inputs)
    if out.dtype not in FLOATS or x.dtype != out.dtype or g.dtype != out.dtype:
        return False
    static = lambda shape: all(isinstance(d, int) for d in shape)  # noqa: E731
    return len(x.shape) == 4 and len(g.shape) == 4 and static((*x.shape[1:], *g.shape[1:], *out.shape))


def poolable(node: Node) -> bool:
    """Whether `node` is a max_pool2d kernels compute (one for the values, one for the indices,
    each where it is used): float, every size but the batch known, a window of at most 64
    elements."""
    if node.op != "max_pool2d" or node.inputs[0] is None:
        return False
    values = node.outputs[0]
    x = node.inputs[0].type
    static = all(isinstance(d, int) for d in (*x.shape[1:], *values.type.shape[1:]))
    kh, kw = node.attrs["kernel_size"]
    return (
        x.dtype in FLOATS and values.type.dtype == x.dtype and len(x.shape) == 4 and static and kh * kw <= 64
    )


def pool_backward(node: Node) -> bool:
    """Whether `node` is a max_pool2d_backward a kernel computes: float, int64 indices of the
    gradient's shape, every size but the batch known."""
    if node.op != "max_pool2d_backward":
        return False
    g, where = (v.type for v in node.inputs)
    out = node.outputs[0].type
    static = all(isinstance(d, int) for d in (*g.shape[1:], *out.shape[1:]))
    return (
        out.dtype in FLOATS
        and g.dtype == out.dtype
        and where.dtype == dtypes.int64
        and tuple(where.shape) == tuple(g.shape)
        and len(g.shape) == 4
        and static
    )


class _Bias:
    """The placeholder of a convolution's bias among its epilogue operands (read per channel,
    unlike a graph value of its shape)."""


def _conv(node: Node, name: str, cx: _Context):
    """The kernel of conv2d `node` with its bias and epilogue, and the node it runs in place of."""
    x, w = node.inputs[:2]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    out = node.outputs[0]
    space = tuple(out.type.shape)
    fits = lambda shape: conv_extra_strides(shape, space)  # noqa: E731
    start, seeded = (Acc(), []) if bias is None else (Binary("add", Acc(), Load(0)), [_Bias()])
    epilogue, extras, members, tail = _epilogue(node, start, seeded, cx, fits)
    values = [bias if isinstance(v, _Bias) else v for v in extras]
    strides = [(0, 1, 0) if isinstance(v, _Bias) else fits(tuple(v.type.shape)) for v in extras]
    a = node.attrs
    kernel = Conv2d(
        name,
        out.type.dtype,
        KernelInput(tuple(x.type.shape)),
        KernelInput(tuple(w.type.shape)),
        space,
        tuple(a.get("stride", (1, 1))),
        tuple(a.get("padding", (0, 0))),
        tuple(a.get("dilation", (1, 1))),
        int(a.get("groups", 1)),
        epilogue,
        tuple(KernelInput(tuple(v.type.shape)) for v in values),
        tuple(strides),
    )
    names = (x.name, w.name, *(v.name for v in values))
    return tail, KernelStep(kernel, names, tail.outputs[0].name, tuple(sorted(set(members))))


# the most expression nodes (counted as trees: what the renderer emits) a row kernel may have
MAX_ROW_EXPRESSION = 256


def _row_finals(nodes: list, cx: _Context) -> list:
    """The nodes that may end a row kernel, last first: elementwise nodes and reductions that
    read, through elementwise nodes, the result of a float reduction."""
    reaches: set[int] = set()  # nodes whose value depends on a float reduction through fusable ones
    finals = []
    for n in nodes:
        if id(n) in cx.taken:
            continue
        if not (fusable(n) or reducible(n)):
            continue
        if any(v is not None and v.producer is not None and id(v.producer) in reaches for v in n.inputs):
            finals.append(n)
            reaches.add(id(n))
        if reducible(n) and n.outputs[0].type.dtype in FLOATS:
            reaches.add(id(n))
    cx.reaches.update(reaches)
    return finals[::-1]


def _row_group(final: Node, name: str, cx: _Context) -> KernelStep | None:
    """The kernel ending at `final` that computes, row by row, the reductions it reads
    (softmax's maximum and sum, layer norm's mean and variance) as stages, with every node
    between them folded in; None where there is no such kernel. A node whose value is needed
    outside the kernel is read from memory instead (its own kernel computes it)."""
    excluded: set[int] = set()
    while True:
        built = _build_rows(final, cx, excluded)
        if built is None:
            return None
        kernel_parts, members, inputs = built
        outside = [
            n
            for n in members.values()
            if n is not final
            and (
                id(n.outputs[0]) in cx.outputs
                or any(id(u) not in members for u in cx.users.get(id(n.outputs[0]), []))
            )
        ]
        if not outside:
            break
        excluded.update(id(n) for n in outside)
    ranges, body, reduce, stages, axes, row_out = kernel_parts
    reads, names = _reads(inputs, cx)
    dtype = final.outputs[0].type.dtype
    kernel = Kernel(name, ranges, dtype, reads, body, reduce, stages, axes, row_out)
    cx.taken.update(members)
    nodes = tuple(sorted(cx.position[i] for i in members))
    return KernelStep(kernel, names, final.outputs[0].name, nodes)


def _axes(node: Node, rank: int) -> tuple[int, ...]:
    dims = node.attrs.get("dims")
    return tuple(range(rank)) if dims is None else tuple(sorted({d % rank for d in dims}))


def _build_rows(final: Node, cx: _Context, excluded: set):
    """The parts of `final`'s row kernel ((ranges, body, reduce, stages, row axes), the member
    nodes by id, the values it loads), reading the values of `excluded` nodes from memory; None
    where it has no stage or its expressions grow too large."""
    row_out = None
    if reducible(final):
        space = tuple(final.inputs[0].type.shape)
        row_axes = [_axes(final, len(space))]
    else:
        space = tuple(final.outputs[0].type.shape)
        row_axes = [None]
        wider = _per_row_space(final, cx, excluded)
        if wider is not None:  # final combines reductions' results: once per row of their input
            row_out, (space, axes) = space, wider
            row_axes = [axes]
    rank = len(space)
    stages: list[Stage] = []
    stage_of: dict[int, int] = {}
    members: dict[int, Node] = {}
    inputs: list[Value] = []
    memo: dict[int, object] = {}

    def load(v: Value):
        if v not in inputs:  # identity: Values compare by identity
            inputs.append(v)
        return Load(inputs.index(v))

    def node_expr(p: Node):
        members[id(p)] = p
        return _node_expression(p, [None if w is None else operand(w) for w in p.inputs])

    def stage(p: Node, shape: tuple):
        """Row(i) for reduction `p` as a stage, or None where it cannot be one."""
        if p.outputs[0].type.dtype not in FLOATS or tuple(p.inputs[0].type.shape) != space:
            return None
        axes = _axes(p, rank)
        if row_axes[0] is not None and axes != row_axes[0]:
            return None
        row_shape = tuple(1 if d in axes else space[d] for d in range(rank))
        if (1,) * (rank - len(shape)) + shape != row_shape:
            return None  # its result is not read once per row
        if id(p) not in stage_of:
            row_axes[0] = axes
            body = operand(p.inputs[0])
            stage_of[id(p)] = len(stages)
            stages.append(Stage(REDUCTIONS[p.op], body, p.outputs[0].type.dtype, p.op == "mean"))
            members[id(p)] = p
        return Row(stage_of[id(p)])

    def operand(v: Value):
        if id(v) not in memo:
            memo[id(v)] = _operand_of(v)
        return memo[id(v)]

    def _operand_of(v: Value):
        p = v.producer
        if p is None or id(p) in cx.taken or id(p) in excluded or id(v) in cx.outputs:
            return load(v)
        shape = tuple(v.type.shape)
        if reducible(p):
            row = stage(p, shape)
            return load(v) if row is None else row
        if p.op == "gather" and fusable(p) and (shape == space or id(p) in cx.reaches):
            members[id(p)] = p  # its input read in memory where the (folded) index says
            x, index = p.inputs
            source = _Gathered(x, p.attrs["dim"] % x.type.rank, shape)
            inputs.append(source)
            return Take(inputs.index(source), operand(index))
        if fusable(p) and p.op != "gather" and _broadcasts(shape, space):
            # a value of the kernel's shape, or one it broadcasts that is cheap or depends on a
            # stage (computed once per row: LLVM hoists it out of the loop over the row)
            if shape == space or p.op in CHEAP or id(p) in cx.reaches:
                return node_expr(p)
        return load(v)

    if reducible(final):
        body = operand(final.inputs[0])
        members[id(final)] = final
        r = final.attrs
        reduce = Reduction(REDUCTIONS[final.op], row_axes[0], bool(r.get("keepdim")), final.op == "mean")
    else:
        body = node_expr(final)
        reduce = None
    if not stages:
        return None
    sizes: dict[int, int] = {}

    def size(e) -> int:
        if id(e) not in sizes:
            children = [getattr(e, f) for f in ("x", "a", "b", "cond", "at") if hasattr(e, f)]
            sizes[id(e)] = 1 + sum(size(c) for c in children)
        return sizes[id(e)]

    if sum(size(e) for e in (body, *(s.body for s in stages))) > MAX_ROW_EXPRESSION:
        return None
    return (space, body, reduce, tuple(stages), row_axes[0], row_out), members, inputs


def _per_row_space(final: Node, cx: _Context, excluded: set):
    """(space, row axes) when elementwise `final` reads, directly, a float reduction of a
    larger space whose result has final's shape (a sum divided by a count), with the row axes
    kept as 1s or leading: the row kernel then iterates over the reduction's input and
    computes final once per row. None otherwise."""
    shape = tuple(final.outputs[0].type.shape)
    for v in final.inputs:
        p = None if v is None else v.producer
        if p is None or not reducible(p) or id(p) in cx.taken or id(p) in excluded:
            continue
        if p.outputs[0].type.dtype not in FLOATS:
            continue
        space = tuple(p.inputs[0].type.shape)
        axes = _axes(p, len(space))
        kept = tuple(d for k, d in enumerate(space) if k not in axes)
        ones = tuple(1 if k in axes else d for k, d in enumerate(space))
        # (a result without the row axes lines up with the space only when they lead)
        leading = axes == tuple(range(len(axes)))
        if space != shape and (shape == ones or (shape == kept and leading)):
            return space, axes
    return None


def _fuse(root: Node, space: tuple, folded, position: dict[int, int]):
    """The expression of `root` (an elementwise node over `space`) with every producer that
    `folded` allows inlined; the values it loads and the positions of the nodes it covers."""
    inputs: list[Value] = []
    members: list[int] = []
    return _build(root, space, folded, position, inputs, members), inputs, members


def _expression(value: Value, space: tuple, folded, position: dict[int, int], consumer: Node):
    """The expression for `value` (an operand of `consumer`) at each point of `space`: its
    producer inlined where `folded` allows, else a load."""
    inputs: list[Value] = []
    members: list[int] = []
    return _operand(value, space, folded, position, inputs, members, consumer), inputs, members


def _operand(v: Value, space, folded, position, inputs: list, members: list, consumer: Node):
    if folded(v, space, consumer):
        return _build(v.producer, space, folded, position, inputs, members)
    if v not in inputs:  # identity: Values compare by identity
        inputs.append(v)
    return Load(inputs.index(v))


class _Gathered:
    """Among a kernel's loaded values: `value` read by a gather along `dim` (its reads differ
    from a Load's: `_reads`), at points of the gather's output `shape`."""

    def __init__(self, value: Value, dim: int, shape: tuple) -> None:
        self.value, self.dim, self.shape = value, dim, shape


def _build(n: Node, space, folded, position, inputs: list, members: list):
    members.append(position[id(n)])
    if indexed(n):  # (of the kernel's shape: positions along its one axis)
        dtype = n.outputs[0].type.dtype
        return Index(len(space) - 1) if dtype is dtypes.int64 else Cast(dtype, Index(len(space) - 1))
    if n.op == "gather":  # the input stays in memory, read where the index says
        x, index = n.inputs
        source = _Gathered(x, n.attrs["dim"] % x.type.rank, tuple(n.outputs[0].type.shape))
        inputs.append(source)
        at = _operand(index, space, folded, position, inputs, members, n)
        return Take(inputs.index(source), at)
    args = [None if v is None else _operand(v, space, folded, position, inputs, members, n) for v in n.inputs]
    return _node_expression(n, args)


def _node_expression(n: Node, args: list):
    """The expression of fusable node `n` over its operands' expressions (None: no operand)."""
    if n.op == "cast":
        return Cast(n.outputs[0].type.dtype, args[0])
    if n.op == "where":
        return Where(*args)
    if n.op == "clamp":  # numpy's order: the lower bound, then the upper one (NaN stays NaN)
        x, lo, hi = args
        x = x if lo is None else Binary("maximum", x, lo)
        return x if hi is None else Binary("minimum", x, hi)
    return Unary(n.op, args[0]) if len(args) == 1 else Binary(n.op, args[0], args[1])


def _broadcasts(shape: tuple, space: tuple) -> bool:
    """Whether `shape` broadcasts to `space` (numpy's rules)."""
    if len(shape) > len(space):
        return False
    return all(d == 1 or d == s for d, s in zip(shape, space[len(space) - len(shape) :], strict=True))


def format_schedule(steps: list[Step]) -> str:
    """One line a step: kernels with the graph nodes they replace, interpreter nodes by op."""
    lines = []
    for s in steps:
        if isinstance(s, KernelStep):
            lines.append(f"{format_kernel(s.kernel)}  # nodes {list(s.nodes)} -> %{s.output}")
        else:
            outs = ", ".join("%" + v.name for v in s.node.outputs)
            lines.append(f"interpreter: node {s.index} {s.node.op} -> {outs}")
    return "\n".join(lines)


def dump(graph: str, texts: dict[str, str]) -> None:
    """Where GRAPHC_DUMP names a directory, beside the passes' dumps (ir.passes.optimize): each
    text as `<dir>/<graph>.<suffix>` (the schedule: which nodes went into which kernel; the
    code a backend made of it)."""
    directory = os.environ.get("GRAPHC_DUMP")
    if not directory:
        return
    Path(directory).mkdir(parents=True, exist_ok=True)
    for suffix, text in texts.items():
        (Path(directory) / f"{graph}.{suffix}").write_text(text)
