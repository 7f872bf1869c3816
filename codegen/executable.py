"""Executables: a graph ready to run on a backend.

`executable(graph, "llvm")` is a `CompiledGraph`: fused elementwise kernels run as native code,
every other node on the reference interpreter, in the schedule's order. `"interpreter"` runs the
whole graph on the reference interpreter (any array module: numpy, cupy).

    >>> exe = executable(graph, "llvm")
    >>> (y,) = exe.run([x])          # numpy in, numpy out; any size of the symbolic dims
"""

from __future__ import annotations

import ctypes
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from codegen.schedule import KernelStep, NodeStep, format_schedule, schedule
from ir.errors import ShapeError
from ir.graph import Graph
from ir.interpreter import run, run_node, start
from ir.types import concrete_shape


class CompiledGraph:
    """`graph` with its kernels compiled; `run` is safe to call from several threads."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.steps = schedule(graph)
        kernels = [s.kernel for s in self.steps if isinstance(s, KernelStep)]
        self._functions = {}
        if kernels:
            from codegen.llvm.compiler import compile_ir  # llvmlite only when there is code to build
            from codegen.llvm.render import render

            module = render(kernels, name=graph.name)
            compiled = compile_ir(str(module), [k.name for k in kernels])
            self._engine = compiled  # keeps the code alive
            for k in kernels:
                argtypes = [ctypes.c_void_p] * (1 + len(k.inputs)) + [ctypes.c_int64] * (len(k.symbols) + 2)
                self._functions[k.name] = ctypes.CFUNCTYPE(None, *argtypes)(compiled.addresses[k.name])

    def __str__(self) -> str:
        return format_schedule(self.steps)

    def run(self, arrays, weights: dict | None = None) -> list[np.ndarray]:
        """The graph's outputs for `arrays` (a list in input order or a dict by name)."""
        env, bindings = start(self.graph, arrays, weights)
        for step in self.steps:
            if isinstance(step, NodeStep):
                run_node(step.node, env, bindings, np, weights)
                continue
            k = step.kernel
            ranges = concrete_shape(k.ranges, bindings)
            if k.reduce is not None and k.reduce.op != "sum" and 0 in ranges:
                raise ShapeError(
                    f"{'amax' if k.reduce.op == 'max' else 'amin'}(): cannot reduce an empty tensor of shape "
                    f"{ranges} over dims {k.reduce.axes} (no identity element)"
                )
            out = np.empty(concrete_shape(k.out_shape, bindings), dtype=k.dtype.np)
            ins = [np.ascontiguousarray(env[name], dtype=k.dtype.np) for name in step.inputs]
            sizes = [bindings[s] for s in k.symbols]
            if out.size or k.reduce is not None:
                args = (out.ctypes.data, *(a.ctypes.data for a in ins), *sizes)
                _launch(self._functions[k.name], k, args, ranges)
            env[step.output] = out
        return [env[v.name] for v in self.graph.outputs]


# A kernel covering at least this many points is split over the cores (ctypes releases the GIL
# during the call); below it, a thread hand-off costs more than it saves.
PARALLEL_MIN_POINTS = 1 << 17
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _workers() -> int:
    return max(
        1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 16)
    )


def _launch(function, kernel, args: tuple, ranges: tuple) -> None:
    """Call a compiled kernel on all of `ranges`, in parts on several threads when it is large."""
    rows = ranges[0] if ranges else 1
    points = int(np.prod(ranges, dtype=np.int64)) if ranges else 1
    parts = min(_workers(), rows) if kernel.splittable and points >= PARALLEL_MIN_POINTS else 1
    if parts <= 1:
        function(*args, 0, rows)
        return
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="graphc-kernel")
    bounds = np.linspace(0, rows, parts + 1).astype(np.int64)
    futures = [_pool.submit(function, *args, int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds)]
    for f in futures:
        f.result()


def compile_graph(graph: Graph) -> CompiledGraph:
    """Schedule `graph` and compile its kernels for this CPU."""
    return CompiledGraph(graph)


class InterpretedGraph:
    """`graph` on the reference interpreter, with any array module (numpy, cupy)."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def run(self, arrays, weights: dict | None = None, xp=np) -> list:
        return run(self.graph, arrays, xp=xp, weights=weights)


BACKENDS = ("interpreter", "llvm")


def executable(graph: Graph, backend: str = "interpreter") -> CompiledGraph | InterpretedGraph:
    """`graph` made ready to run on `backend` (one of BACKENDS)."""
    if backend == "interpreter":
        return InterpretedGraph(graph)
    if backend == "llvm":
        return CompiledGraph(graph)
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
