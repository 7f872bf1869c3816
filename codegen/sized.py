"""Values that depend only on the sizes of a graph's symbolic dims: a transformer's positions
(`arange(seq)`, and the positional embedding gathered at them), its causal mask
(`triu(full((seq, seq), -inf), 1)`), zeros of the batch's size. Nothing a kernel computes makes
them (no kernel has a source op), so as nodes of the graph they would run on the interpreter on
every call, between kernels, and keep the graph from running as one native call.

`split(graph)` takes them out: the graph that remains reads each as an extra input (named
`sized.<value>`, after the graph's own inputs), and `Sized` computes them on the reference
interpreter once per set of sizes (kept for the last few sets) and adds them to a call's
inputs. A value is taken out where it depends on no input of the graph, has a source op (a
node without inputs: full, arange, eye, linspace, random numbers) among the nodes it comes
from, and is read by a node that depends on an input. `arange(n)` and elementwise arithmetic
on it and on scalar weights are not taken: kernels compute them from their positions (a random
generator's counter); what is made from them otherwise (positions gathered from a weight) is.
Views of weights (a bias expanded to the batch) stay in the graph: kernels read them in place.

    >>> main, sized = split(optimize(graph))      # sized is None where there are none
    >>> arrays = sized.add(arrays) if sized else arrays
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np

from ir.graph import Graph, Value
from ir.interpreter import bind_inputs, run_node
from ir.passes.rewrite import _keep_output_names, _prune

PREFIX = "sized."
KEEP = 8  # sets of sizes whose values are kept (a causal mask of 2048 tokens is 16 MiB)


class Sized:
    """The size-dependent values of a graph: `add(arrays)` gives a call's arrays (a list in
    input order or a dict by name) with them added, after checking the given ones."""

    def __init__(
        self, graph: Graph, inputs: list[Value], nodes: list, outputs: list[Value], names: list[str]
    ):
        # the graph's own inputs (its slices are checked where the graph runs)
        self._signature = SimpleNamespace(name=graph.name, inputs=inputs, nodes=())
        read = {v.name for n in nodes for v in n.inputs if v is not None and v.producer is None}
        self._weights = {name: graph.weight_data[name] for name in read if name in graph.weights}
        self._nodes, self._outputs, self.names = nodes, outputs, names
        self._symbols = sorted({s for v in inputs for s in v.type.shape if isinstance(s, str)})
        self._kept: OrderedDict[tuple, list[np.ndarray]] = OrderedDict()
        self.convert = None  # (a device's asarray: the values are kept where the graph runs)
        self._last: tuple = (None, None)  # (the arrays' dtypes and shapes, their values)
        self._lock = threading.Lock()

    def add(self, arrays):
        """`arrays` and the size-dependent values for their sizes."""
        key = None
        if isinstance(arrays, (list, tuple)) and all(isinstance(a, np.ndarray) for a in arrays):
            key = tuple((a.dtype, a.shape) for a in arrays)
            last = self._last
            if last[0] == key:
                return [*arrays, *last[1]]
        values = self.values(bind_inputs(self._signature, arrays))
        if key is not None:
            self._last = (key, values)
        if isinstance(arrays, dict):
            return {**arrays, **dict(zip(self.names, values, strict=True))}
        return [*arrays, *values]

    def values(self, bindings: dict[str, int]) -> list[np.ndarray]:
        """The values for these sizes of the symbols (read-only numpy arrays, or the device's
        arrays where `convert` moves them there)."""
        key = tuple(bindings[s] for s in self._symbols)
        with self._lock:
            found = self._kept.get(key)
            if found is not None:
                self._kept.move_to_end(key)
                return found
        env = dict(self._weights)
        for node in self._nodes:
            run_node(node, env, bindings)
        found = []
        for v in self._outputs:
            a = np.array(env[v.name], order="C")  # (a copy: never a view of a weight)
            a.setflags(write=False)
            found.append(a if self.convert is None else self.convert(a))
        with self._lock:
            self._kept[key] = found
            while len(self._kept) > KEEP:
                self._kept.popitem(last=False)
        return found


def split(graph: Graph) -> tuple[Graph, Sized | None]:
    """`graph` with its size-dependent values read as extra inputs, and what computes them;
    (graph, None) where it has none."""
    if any(n.op == "arange" for n in graph.nodes):
        from codegen.schedule import fusable, indexed  # (here: loading most graphs' code never imports it)
    else:
        fusable = indexed = lambda node: False  # noqa: E731
    weights = {id(v) for v in graph.weights.values()}
    constant: set[int] = set()  # values that depend on no input
    sourced: set[int] = set()  # ... and come from a source op
    cheap: set[int] = set()  # ... that kernels compute in place: arange(n), arithmetic on it and scalars
    scalars = {id(v) for v in graph.weights.values() if v.type.rank == 0}
    for node in graph.nodes:
        if node.op in ("cond", "scan") or not all(
            v is None or id(v) in weights or id(v) in constant for v in node.inputs
        ):
            continue
        if indexed(node) or (
            fusable(node)
            and node.op != "gather"
            and any(v is not None and id(v) in cheap for v in node.inputs)
            and all(v is None or id(v) in cheap or id(v) in scalars for v in node.inputs)
        ):
            constant.update(id(v) for v in node.outputs)
            cheap.update(id(v) for v in node.outputs)
            continue
        has_source = not any(v is not None for v in node.inputs) or any(
            v is not None and (id(v) in sourced or id(v) in cheap) for v in node.inputs
        )
        for v in node.outputs:
            constant.add(id(v))
            if has_source:
                sourced.add(id(v))
    if any(id(v) in sourced for v in graph.outputs):
        return graph, None  # (an output that depends on no input: the graph stays as it is)
    taken: list[Value] = []  # the values read as extra inputs, in the order first read
    for node in graph.nodes:
        if any(id(v) in constant for v in node.outputs):
            continue
        for v in node.inputs:
            if v is not None and id(v) in sourced and v not in taken:
                taken.append(v)
    if not taken:
        return graph, None
    new = Graph(graph.name)
    env: dict[int, Value] = {}
    for v in graph.inputs:
        env[id(v)] = new.add_input(v.name, v.type)
    names = [PREFIX + v.name for v in taken]
    for v, name in zip(taken, names, strict=True):
        env[id(v)] = new.add_input(name, v.type)
    for name, v in graph.weights.items():
        env[id(v)] = new.add_weight(name, graph.weight_data[name])
    for node in graph.nodes:
        if any(id(o) in sourced for o in node.outputs):
            continue  # computed by Sized
        inputs = [None if v is None else env[id(v)] for v in node.inputs]
        outs = new.add_node(node.op, inputs, dict(node.attrs), scope=node.scope)
        env.update({id(o): n for o, n in zip(node.outputs, outs, strict=True)})
    new.set_outputs([env[id(v)] for v in graph.outputs])
    _keep_output_names(graph, new)
    needed = _ancestors(taken)
    nodes = [n for n in graph.nodes if id(n) in needed]
    return _prune(new), Sized(graph, list(graph.inputs), nodes, taken, names)


def _ancestors(values: list[Value]) -> set[int]:
    """The nodes `values` are computed from (ids)."""
    seen: set[int] = set()
    stack = [v.producer for v in values if v.producer is not None]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(v.producer for v in node.inputs if v is not None and v.producer is not None)
    return seen
