"""The graph verifier: SSA, topological order, known ops and attributes, and types that agree
with inference. Run after every pass in tests.

    >>> verify(graph)   # raises VerifyError listing every problem found
"""

from __future__ import annotations

import functools
import inspect

from ir.errors import IRError, VerifyError
from ir.infer import infer
from ir.ops import OPS


@functools.cache
def _attr_names(op) -> set[str] | None:
    """The keyword attributes an op's implementation accepts (None: any)."""
    params = list(inspect.signature(op.impl).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params[1:] if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def verify(graph) -> None:
    """Check `graph`'s invariants; raise `VerifyError` with all problems found."""
    problems = []
    defined = {}
    for v in list(graph.inputs) + list(graph.weights.values()):
        if v.name in defined:
            problems.append(f"%{v.name} is defined twice")
        defined[v.name] = v
    for name, v in graph.weights.items():
        data = graph.weight_data.get(name)
        if data is None:
            problems.append(f"weight %{name} has no data")
        elif tuple(data.shape) != v.type.shape or data.dtype != v.type.dtype.np:
            problems.append(f"weight %{name} is {v.type} but its data is {data.dtype}{list(data.shape)}")
    for i, node in enumerate(graph.nodes):
        where = f"node {i} ({node.op})"
        op = OPS.get(node.op)
        if op is None:
            problems.append(f"{where}: unknown op")
            continue
        for v in node.inputs:
            if v is not None and defined.get(v.name) is not v:
                problems.append(f"{where}: input %{v.name} is not defined before use")
        allowed = _attr_names(op)
        if allowed is not None:
            unknown = sorted(set(node.attrs) - allowed)
            if unknown:
                problems.append(f"{where}: unknown attributes {unknown}")
        try:
            expected = infer(node.op, [v.type if v is not None else None for v in node.inputs], node.attrs)
            got = [v.type for v in node.outputs]
            if expected != got:
                problems.append(f"{where}: outputs typed {got}, inference gives {expected}")
        except (IRError, TypeError, KeyError, IndexError) as e:
            problems.append(f"{where}: {e}")
        for key, value in sorted(node.attrs.items()):
            if hasattr(value, "nodes"):  # a subgraph: verified on its own
                try:
                    verify(value)
                except VerifyError as e:
                    problems.append(f"{where}, {key}: {e}")
        for v in node.outputs:
            if v.name in defined:
                problems.append(f"{where}: %{v.name} is defined twice")
            if v.producer is not node:
                problems.append(f"{where}: %{v.name} does not name this node as its producer")
            defined[v.name] = v
    for v in graph.outputs:
        if defined.get(v.name) is not v:
            problems.append(f"graph output %{v.name} is not defined")
    if problems:
        raise VerifyError(f"graph {graph.name} is invalid:\n  " + "\n  ".join(problems))
