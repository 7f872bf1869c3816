"""Graphs as text, one equation a line (the form tests write and compare):

    graph mlp(%x: f32[batch,784]) weights(%fc.weight: f32[10,784], %fc.bias: f32[10]) {
      %0: f32[batch,10] = linear(%x, %fc.weight, %fc.bias)
      %1: f32[batch,10] = log_softmax[dim=1](%0)
      return %1
    }

Attribute values are Python literals, or indented graphs for subgraphs (cond's branches, which
the parser reads back too); an absent optional input prints as `_`.
"""

from __future__ import annotations


def _attr(value) -> str:
    if hasattr(value, "nodes"):  # a subgraph (cond's branches), printed as an indented block
        return format_graph(value).replace("\n", "\n    ")
    return repr(value)


def format_node(node) -> str:
    outs = ", ".join(f"%{v.name}: {v.type}" for v in node.outputs)
    attrs = ""
    if node.attrs:
        attrs = "[" + ", ".join(f"{k}={_attr(v)}" for k, v in sorted(node.attrs.items())) + "]"
    args = ", ".join("_" if v is None else f"%{v.name}" for v in node.inputs)
    scope = f"  # {node.scope}" if node.scope else ""
    return f"{outs} = {node.op}{attrs}({args}){scope}"


def format_graph(graph) -> str:
    ins = ", ".join(f"%{v.name}: {v.type}" for v in graph.inputs)
    ws = ", ".join(f"%{v.name}: {v.type}" for v in graph.weights.values())
    lines = [f"graph {graph.name}({ins})" + (f" weights({ws})" if ws else "") + " {"]
    lines += [f"  {format_node(n)}" for n in graph.nodes]
    lines.append("  return " + ", ".join(f"%{v.name}" for v in graph.outputs))
    lines.append("}")
    return "\n".join(lines)
