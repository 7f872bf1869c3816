"""Scheduling: partition a graph into kernels and the nodes that still run on the reference
interpreter.

Chains of elementwise ops in one float dtype fuse into a single `Kernel`: a node whose only
consumer is a fusable node of the same shape is folded into that consumer's expression, so the
intermediate never exists in memory. Everything else (matmul, conv, reductions, movement for now)
is a `NodeStep` the executable runs through the interpreter. `format_schedule` prints which nodes
went into which kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

from codegen.kernel import BINARY_OPS, UNARY_OPS, Binary, Kernel, KernelInput, Load, Unary, format_kernel
from ir import dtypes
from ir.graph import Graph, Node, Value

FLOATS = (dtypes.float32, dtypes.float64)


@dataclass(frozen=True)
class KernelStep:
    """Run `kernel` on the values named `inputs`, defining `output`; `nodes` it replaces."""

    kernel: Kernel
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


def schedule(graph: Graph) -> list[Step]:
    """The steps that compute `graph`, in an order that respects its dependencies."""
    users: dict[int, list[Node]] = {}
    for node in graph.nodes:
        for v in node.inputs:
            if v is not None:
                users.setdefault(id(v), []).append(node)
    outputs = {id(v) for v in graph.outputs}
    position = {id(n): i for i, n in enumerate(graph.nodes)}

    def folded(v: Value, consumer: Node) -> bool:
        """`v` is computed inside `consumer`'s kernel rather than stored."""
        p = v.producer
        return (
            p is not None
            and fusable(p)
            and id(v) not in outputs
            and len(users.get(id(v), [])) == 1
            and p.outputs[0].type.shape == consumer.outputs[0].type.shape
        )

    steps: list[Step] = []
    count = 0
    for node in graph.nodes:
        if not fusable(node):
            steps.append(NodeStep(node, position[id(node)]))
            continue
        out = node.outputs[0]
        if len(users.get(id(out), [])) == 1 and id(out) not in outputs:
            consumer = users[id(out)][0]
            if fusable(consumer) and folded(out, consumer):
                continue  # computed inside its consumer's kernel
        body, inputs, members = _fuse(node, folded, position)
        kernel = Kernel(
            f"kernel{count}",
            ranges=tuple(out.type.shape),
            dtype=out.type.dtype,
            inputs=tuple(KernelInput(tuple(v.type.shape)) for v in inputs),
            body=body,
        )
        count += 1
        steps.append(KernelStep(kernel, tuple(v.name for v in inputs), out.name, tuple(sorted(members))))
    return steps


def _fuse(root: Node, folded, position: dict[int, int]):
    """The expression of `root` with every producer that `folded` allows inlined; the values it
    loads and the positions of the nodes it covers."""
    inputs: list[Value] = []
    members: list[int] = [position[id(root)]]

    def expr(v: Value, consumer: Node):
        if folded(v, consumer):
            members.append(position[id(v.producer)])
            return build(v.producer)
        if v not in inputs:  # identity: Values compare by identity
            inputs.append(v)
        return Load(inputs.index(v))

    def build(n: Node):
        args = [expr(v, n) for v in n.inputs]
        return Unary(n.op, args[0]) if n.op in UNARY_OPS else Binary(n.op, args[0], args[1])

    return build(root), inputs, members


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
