"""The graph IR: a flat, typed, single-assignment list of nodes (jaxpr-like).

A `Graph` has typed inputs, named weights (their arrays kept beside the graph), nodes in
topological order, and outputs. Each `Node` names an op of the registry, its input values
(None where an optional input is absent), its attributes, and the values it defines. Types are
inferred when a node is added.

    >>> g = Graph("mlp")
    >>> x = g.add_input("x", TensorType(dtypes.float32, ("batch", 784)))
    >>> w = g.add_weight("fc.weight", np.zeros((10, 784), np.float32))
    >>> (y,) = g.add_node("linear", [x, w, None])
    >>> g.set_outputs([y])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ir import dtypes
from ir.errors import IRError
from ir.infer import infer
from ir.ops import OPS
from ir.types import TensorType


@dataclass(eq=False)
class Value:
    """A typed value defined once: a graph input, a weight, or an output of one node."""

    name: str
    type: TensorType
    producer: Node | None = None

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


@dataclass(eq=False)
class Node:
    """One op application: `outputs = op[attrs](inputs)`."""

    op: str
    inputs: list[Value | None]
    attrs: dict
    outputs: list[Value] = field(default_factory=list)
    scope: str = ""  # the module path that produced it, for printing and TensorBoard

    def __repr__(self) -> str:
        from ir.printer import format_node

        return format_node(self)


class Graph:
    """A typed SSA graph with named weights."""

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self.inputs: list[Value] = []
        self.weights: dict[str, Value] = {}
        self.weight_data: dict[str, np.ndarray] = {}
        self.nodes: list[Node] = []
        self.outputs: list[Value] = []
        self._names: set[str] = set()
        self._counter = 0

    def _fresh(self, name: str | None) -> str:
        if name is None:
            while str(self._counter) in self._names:
                self._counter += 1
            name = str(self._counter)
            self._counter += 1
        if name in self._names:
            raise IRError(f"the name %{name} is defined twice in graph {self.name}")
        self._names.add(name)
        return name

    def add_input(self, name: str, type: TensorType) -> Value:
        """A new graph input."""
        value = Value(self._fresh(name), type)
        self.inputs.append(value)
        return value

    def add_weight(self, name: str, data: np.ndarray) -> Value:
        """A named weight (a parameter, buffer or constant) with its data."""
        data = np.asarray(data)
        value = Value(self._fresh(name), TensorType(dtypes.from_numpy(data.dtype), data.shape))
        self.weights[value.name] = value
        self.weight_data[value.name] = data
        return value

    def add_node(
        self,
        op: str,
        inputs: list[Value | None],
        attrs: dict | None = None,
        names: list[str] | None = None,
        scope: str = "",
        types: list[TensorType] | None = None,
    ) -> list[Value]:
        """Append `op` applied to `inputs`; its output types are inferred unless given."""
        if op not in OPS:
            raise IRError(f"unknown op {op!r} (not in the op registry)")
        attrs = dict(attrs or {})
        if types is None:
            types = infer(op, [v.type if v is not None else None for v in inputs], attrs)
        node = Node(op, list(inputs), attrs, scope=scope)
        names = names or [None] * len(types)
        if len(names) != len(types):
            raise IRError(f"{op} defines {len(types)} values, but {len(names)} names were given")
        node.outputs = [Value(self._fresh(n), t, node) for n, t in zip(names, types, strict=True)]
        self.nodes.append(node)
        return node.outputs

    def set_outputs(self, outputs: list[Value]) -> None:
        self.outputs = list(outputs)

    def defines(self, name: str) -> bool:
        """Whether some value of this graph is called `name`."""
        return name in self._names

    def rename(self, value: Value, name: str) -> None:
        """Give a node's output a new (unused) name, e.g. 'output' for what a model returns."""
        if value.producer is None:
            raise IRError(f"%{value.name} is a graph input or weight; its name is part of the signature")
        if name != value.name:
            self._fresh(name)
            self._names.discard(value.name)
            value.name = name

    def values(self) -> list[Value]:
        """Every value, in definition order."""
        out = list(self.inputs) + list(self.weights.values())
        for node in self.nodes:
            out.extend(node.outputs)
        return out

    def all_weights(self) -> Iterator[tuple[str, np.ndarray]]:
        """(name, data) of this graph's weights, then of its subgraphs' (cond's branches), in
        order; a name its subgraphs share comes once per graph."""
        yield from ((name, self.weight_data[name]) for name in self.weights)
        for node in self.nodes:
            for value in node.attrs.values():
                if isinstance(value, Graph):
                    yield from value.all_weights()

    def symbols(self) -> set[str]:
        """The symbolic dims of the inputs (sizes bound when the graph runs)."""
        return {s for v in self.inputs for s in v.type.symbols}

    def __str__(self) -> str:
        from ir.printer import format_graph

        return format_graph(self)

    __repr__ = __str__
