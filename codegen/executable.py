"""Executables: a graph ready to run on a backend.

`executable(graph, "llvm")` is a `CompiledGraph`: the graph optimized (ir.passes.optimize), its
fused elementwise, reduction and matmul kernels run as native code, every other node on the
reference interpreter, in the schedule's order. Weights are constants of the compiled graph
(folded, and matmul operands packed once). `"interpreter"` runs the
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

from codegen.kernel import Matmul
from codegen.schedule import KernelStep, NodeStep, format_schedule, schedule
from ir.errors import ShapeError
from ir.graph import Graph
from ir.interpreter import run, run_node, start
from ir.passes import optimize
from ir.types import concrete_shape


class CompiledGraph:
    """`graph` with its kernels compiled; `run` is safe to call from several threads."""

    def __init__(self, graph: Graph) -> None:
        self.source = graph
        self.graph = optimize(graph)
        self.steps = schedule(self.graph)
        kernels = [s.kernel for s in self.steps if isinstance(s, KernelStep)]
        self._functions = {}
        self._packed: dict[tuple, tuple] = {}  # (weight name, panel) -> (weight, packed)
        self._panels: dict[str, int] = {}  # matmul kernel -> columns per packed panel of b
        if kernels:
            # llvmlite only when there is code to build
            from codegen.llvm.compiler import compile_ir, host_vector_bits
            from codegen.llvm.render import matmul_tile, render

            bits = host_vector_bits()
            module = render(kernels, name=graph.name, vector_bits=bits)
            compiled = compile_ir(str(module), [k.name for k in kernels])
            self._engine = compiled  # keeps the code alive
            for k in kernels:
                if isinstance(k, Matmul):
                    _, lanes, vectors = matmul_tile(k.dtype, bits)
                    self._panels[k.name] = lanes * vectors
                    pointers, sizes = 3 + len(k.extras), 5
                else:
                    pointers, sizes = 1 + len(k.inputs), len(k.symbols) + 2
                argtypes = [ctypes.c_void_p] * pointers + [ctypes.c_int64] * sizes
                self._functions[k.name] = ctypes.CFUNCTYPE(None, *argtypes)(compiled.addresses[k.name])

    def __str__(self) -> str:
        return format_schedule(self.steps)

    def run(self, arrays, weights: dict | None = None) -> list[np.ndarray]:
        """The graph's outputs for `arrays` (a list in input order or a dict by name)."""
        env, bindings = start(self.graph, arrays)
        for step in self.steps:
            if isinstance(step, NodeStep):
                run_node(step.node, env, bindings, np, weights)  # a cond's branches read `weights`
                continue
            k = step.kernel
            if isinstance(k, Matmul):
                env[step.output] = self._matmul(step, env, bindings)
                continue
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

    def _matmul(self, step: KernelStep, env: dict, bindings: dict) -> np.ndarray:
        k = step.kernel
        t = k.dtype.np
        a = np.ascontiguousarray(env[step.inputs[0]], dtype=t)
        depth, n = concrete_shape(k.b.shape, bindings)
        rows = a.size // depth if depth else int(np.prod(a.shape[:-1], dtype=np.int64))
        packed = self._packed_b(step.inputs[1], env[step.inputs[1]], self._panels[k.name], t)
        extras = [np.ascontiguousarray(env[name], dtype=t) for name in step.inputs[2:]]
        out = np.empty(concrete_shape(k.out_shape, bindings), dtype=t)
        if out.size:
            args = (out.ctypes.data, a.ctypes.data, packed.ctypes.data, *(x.ctypes.data for x in extras))
            parallel = rows * n * depth >= MATMUL_PARALLEL_MIN_MACS
            _launch(self._functions[k.name], k, (*args, rows, n, depth), (rows,), parallel)
        return out

    def _packed_b(self, name: str, b: np.ndarray, panel: int, dtype) -> np.ndarray:
        """`b` (K, N) in the matmul kernel's layout, packed once for a weight."""
        cached = self._packed.get((name, panel))
        if cached is not None and cached[0] is b:
            return cached[1]
        packed = pack_matmul_b(b, panel, dtype)
        if name in self.graph.weights:
            self._packed[(name, panel)] = (b, packed)
        return packed


def pack_matmul_b(b: np.ndarray, panel: int, dtype=None) -> np.ndarray:
    """A (K, N) matrix as the matmul kernel reads it: panels of `panel` columns, each K rows of
    `panel` contiguous values, the last panel zero-padded ([ceil(N / panel)][K][panel])."""
    depth, n = b.shape
    panels = -(-n // panel)
    padded = np.zeros((depth, panels * panel), dtype=dtype or b.dtype)
    padded[:, :n] = b
    return np.ascontiguousarray(padded.reshape(depth, panels, panel).transpose(1, 0, 2))


# A kernel covering at least this many points is split over the cores (ctypes releases the GIL
# during the call); below it, a thread hand-off costs more than it saves.
PARALLEL_MIN_POINTS = 1 << 17
MATMUL_PARALLEL_MIN_MACS = 1 << 25
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _workers() -> int:
    return max(
        1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 16)
    )


def _launch(function, kernel, args: tuple, ranges: tuple, parallel: bool | None = None) -> None:
    """Call a compiled kernel on all of `ranges`, in parts on several threads when `parallel`
    (default: when it covers PARALLEL_MIN_POINTS or more)."""
    rows = ranges[0] if ranges else 1
    if parallel is None:
        parallel = (int(np.prod(ranges, dtype=np.int64)) if ranges else 1) >= PARALLEL_MIN_POINTS
    parts = min(_workers(), rows) if kernel.splittable and parallel else 1
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
