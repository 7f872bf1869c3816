"""Graphs compiled once per size of some of their symbolic dims.

The kernels of convolutions and poolings take only the batch as a symbol: their loops over
pixels and the weights' packing are laid out for fixed image sizes. A graph whose convolutions
or poolings read a symbolic spatial dim (a fully convolutional network over images of any
size, a 1-D convolution over sequences of any length) is specialized (ir.passes.specialize,
the batch and other symbols kept) and compiled for each size it meets: the first call at a new
size compiles, later calls at that size reuse the code.

    >>> exe = PerSize(graph, ("h", "w"), lambda g: CompiledGraph(g))
    >>> exe.run([x])   # compiles for x's h and w on first use
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ir.errors import ShapeError
from ir.graph import Graph
from ir.interpreter import bind_inputs
from ir.types import base_symbol

# ops whose kernels take fixed sizes for every dim of their inputs but the first (the batch)
FIXED_SPATIAL = frozenset(
    {"conv2d", "conv2d_weight_grad", "conv_transpose2d", "max_pool2d", "max_pool2d_backward"}
)


def fixed_symbols(graph: Graph) -> tuple[str, ...]:
    """The input symbols whose sizes the kernels of `graph` need fixed: those a convolution's
    or pooling's input has (itself or through a derived dim) in a dim other than the first."""
    found: set[str] = set()
    for node in graph.nodes:
        if node.op not in FIXED_SPATIAL:
            continue
        for v in filter(None, node.inputs):
            found.update(base_symbol(d) for d in v.type.shape[1:] if isinstance(d, str))
    return tuple(sorted(s for s in graph.symbols() if base_symbol(s) in found))


class PerSize:
    """`graph` made ready by `make` (a function of a graph) once per size of `symbols`, the
    `keep` most recently used kept."""

    library_key = None  # (module files carry no code for it: a loader compiles per size)
    kernels = ()

    def __init__(self, graph: Graph, symbols: tuple[str, ...], make, keep: int = 16) -> None:
        self.graph, self.symbols, self._make, self._keep = graph, tuple(symbols), make, keep
        self._made: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    def for_sizes(self, bindings: dict):
        """The executable for these symbol sizes (made on first need)."""
        key = tuple(bindings[s] for s in self.symbols)
        with self._lock:
            exe = self._made.get(key)
            if exe is not None:
                self._made.move_to_end(key)
                return exe
        from ir.passes import specialize

        sizes = dict(zip(self.symbols, key, strict=True))
        try:
            graph = specialize(self.graph, sizes, partial=True)
        except ShapeError as e:
            raise ShapeError(f"graph {self.graph.name} for inputs with {sizes}: {e}") from None
        exe = self._make(graph)
        with self._lock:
            exe = self._made.setdefault(key, exe)
            while len(self._made) > self._keep:
                self._made.popitem(last=False)
        return exe

    def run(self, arrays, weights: dict | None = None) -> list:
        return self.for_sizes(bind_inputs(self.graph, arrays)).run(arrays, weights)

    def __str__(self) -> str:
        sizes = ", ".join(str(dict(zip(self.symbols, k, strict=True))) for k in self._made)
        return f"{self.graph.name} compiled per size of {list(self.symbols)} (so far: {sizes or 'none'})"
