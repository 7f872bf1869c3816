"""Scheduling: partition a graph into kernels and the nodes that still run on the reference
interpreter.

Chains of elementwise ops in one float dtype fuse into a single `Kernel`: a node whose only
consumer is a fusable node of the same shape is folded into that consumer's expression, so the
intermediate never exists in memory. Reductions (sum, mean, amax, amin) become kernels too, with
their input's elementwise producers folded in as a prologue. A matmul by a 2-D matrix becomes a
`Matmul` kernel that takes the chain of elementwise consumers of its product (bias add,
activation, residual add) as its epilogue. Everything else (conv, movement for now) is a
`NodeStep` the executable runs through the interpreter.
`format_schedule` prints which nodes went into which kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

from codegen.kernel import (
    BINARY_OPS,
    UNARY_OPS,
    Acc,
    Binary,
    Kernel,
    KernelInput,
    Load,
    Matmul,
    Reduction,
    Unary,
    format_kernel,
    matmul_extra_strides,
)
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


def fusable(node: Node) -> bool:
    """Whether `node` can be part of an elementwise kernel."""
    if node.op not in UNARY_OPS and node.op not in BINARY_OPS:
        return False
    if len(node.outputs) != 1 or node.attrs:
        return False
    out = node.outputs[0].type
    return out.dtype in FLOATS and all(v is not None and v.type.dtype == out.dtype for v in node.inputs)


REDUCTIONS = {"sum": "sum", "mean": "sum", "amax": "max", "amin": "min"}


def reducible(node: Node) -> bool:
    """Whether `node` is a reduction a kernel computes (float in, same float out)."""
    if node.op not in REDUCTIONS or len(node.outputs) != 1 or node.inputs[0] is None:
        return False
    out = node.outputs[0].type
    return out.dtype in FLOATS and node.inputs[0].type.dtype == out.dtype


def multipliable(node: Node) -> bool:
    """Whether `node` is a matmul a kernel computes: float operands of one dtype, the second a
    matrix."""
    if node.op != "matmul" or len(node.inputs) != 2 or any(v is None for v in node.inputs):
        return False
    a, b = (v.type for v in node.inputs)
    out = node.outputs[0].type
    return out.dtype in FLOATS and a.dtype == b.dtype == out.dtype and len(b.shape) == 2 and len(a.shape) >= 1


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

    def folded(v: Value, space: tuple) -> bool:
        """`v` is computed inside the kernel that iterates over `space` rather than stored."""
        p = v.producer
        return (
            p is not None
            and id(p) not in taken
            and fusable(p)
            and id(v) not in outputs
            and len(users.get(id(v), [])) == 1
            and tuple(v.type.shape) == tuple(space)
        )

    matmuls: dict[int, KernelStep] = {}  # by the last node of each matmul kernel
    count = 0
    for node in graph.nodes:
        if multipliable(node):
            last, step = _matmul(node, f"kernel{count}", graph.nodes, users, outputs, taken, folded, position)
            matmuls[id(last)] = step
            count += 1

    steps: list[Step] = []
    for node in graph.nodes:
        if id(node) in matmuls:  # where its last epilogue node was: every input is ready
            steps.append(matmuls[id(node)])
            continue
        if id(node) in taken or multipliable(node):
            continue
        if reducible(node):
            source = node.inputs[0]
            space = tuple(source.type.shape)
            body, inputs, members = _expression(source, space, folded, position)
            members.append(position[id(node)])
            rank = len(space)
            dims = node.attrs.get("dims")
            axes = tuple(range(rank)) if dims is None else tuple(sorted({d % rank for d in dims}))
            reduce = Reduction(REDUCTIONS[node.op], axes, bool(node.attrs.get("keepdim")), node.op == "mean")
        elif fusable(node):
            out = node.outputs[0]
            if len(users.get(id(out), [])) == 1 and id(out) not in outputs:
                consumer = users[id(out)][0]
                if fusable(consumer) and folded(out, consumer.outputs[0].type.shape):
                    continue  # computed inside its consumer's kernel
                if reducible(consumer) and consumer.inputs[0] is out and folded(out, out.type.shape):
                    continue  # the prologue of its consumer's reduction
            space = tuple(out.type.shape)
            body, inputs, members = _fuse(node, space, folded, position)
            reduce = None
        else:
            steps.append(NodeStep(node, position[id(node)]))
            continue
        out = node.outputs[0]
        kernel = Kernel(
            f"kernel{count}",
            ranges=space,
            dtype=out.type.dtype,
            inputs=tuple(KernelInput(tuple(v.type.shape)) for v in inputs),
            body=body,
            reduce=reduce,
        )
        count += 1
        steps.append(KernelStep(kernel, tuple(v.name for v in inputs), out.name, tuple(sorted(members))))
    return steps


def _matmul(
    node: Node, name: str, nodes: list, users: dict, outputs: set, taken: set, folded, position: dict
):
    """The kernel of matmul `node` with the longest chain of elementwise consumers that can be
    its epilogue, and the last node of that chain (the kernel runs in its place). Adds the
    chain's nodes to `taken`."""
    a, b = node.inputs
    out = node.outputs[0]
    space = tuple(out.type.shape)
    epilogue, extras, members, tail = Acc(), [], [position[id(node)]], node
    while True:
        value = tail.outputs[0]
        consumers = users.get(id(value), [])
        if len(consumers) != 1 or id(value) in outputs:
            break
        c = consumers[0]
        if id(c) in taken or not fusable(c) or tuple(c.outputs[0].type.shape) != space:
            break
        trial, covered, args = list(extras), [], []
        for v in c.inputs:
            if v is value:
                args.append(epilogue)
            else:
                args.append(_operand(v, space, folded, position, trial, covered))
        if any(matmul_extra_strides(tuple(v.type.shape), space) is None for v in trial):
            break  # an operand broadcast along only some leading dims: not an epilogue
        epilogue = Unary(c.op, args[0]) if c.op in UNARY_OPS else Binary(c.op, args[0], args[1])
        extras, tail = trial, c
        members += [*covered, position[id(c)]]
    taken.update(id(nodes[i]) for i in members)
    kernel = Matmul(
        name,
        out.type.dtype,
        KernelInput(tuple(a.type.shape)),
        KernelInput(tuple(b.type.shape)),
        space,
        epilogue,
        tuple(KernelInput(tuple(v.type.shape)) for v in extras),
    )
    names = (a.name, b.name, *(v.name for v in extras))
    return tail, KernelStep(kernel, names, tail.outputs[0].name, tuple(sorted(members)))


def _fuse(root: Node, space: tuple, folded, position: dict[int, int]):
    """The expression of `root` (an elementwise node over `space`) with every producer that
    `folded` allows inlined; the values it loads and the positions of the nodes it covers."""
    inputs: list[Value] = []
    members: list[int] = []
    return _build(root, space, folded, position, inputs, members), inputs, members


def _expression(value: Value, space: tuple, folded, position: dict[int, int]):
    """The expression for `value` at each point of `space`: its producer inlined where `folded`
    allows, else a load."""
    inputs: list[Value] = []
    members: list[int] = []
    return _operand(value, space, folded, position, inputs, members), inputs, members


def _operand(v: Value, space, folded, position, inputs: list, members: list):
    if folded(v, space):
        return _build(v.producer, space, folded, position, inputs, members)
    if v not in inputs:  # identity: Values compare by identity
        inputs.append(v)
    return Load(inputs.index(v))


def _build(n: Node, space, folded, position, inputs: list, members: list):
    members.append(position[id(n)])
    args = [_operand(v, space, folded, position, inputs, members) for v in n.inputs]
    return Unary(n.op, args[0]) if n.op in UNARY_OPS else Binary(n.op, args[0], args[1])


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
