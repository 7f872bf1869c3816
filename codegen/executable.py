"""Executables: a graph ready to run on a backend.

`executable(graph, "llvm")` is a `CompiledGraph`: the graph optimized (ir.passes.optimize) and
scheduled into kernels (elementwise, reductions, matmul, conv, max pool) that run as native
code — the whole graph in one native call (`codegen.plan`) where no interpreter node sits
between kernels, else step by step with the other nodes on the reference interpreter. Weights
are constants of the compiled graph (folded, and matmul operands packed once). `"interpreter"`
runs the whole graph on the reference interpreter (any array module: numpy, cupy).

    >>> exe = executable(graph, "llvm")
    >>> (y,) = exe.run([x])          # numpy in, numpy out; any size of the symbolic dims
"""

from __future__ import annotations

import ctypes
import dataclasses
from dataclasses import dataclass

import numpy as np

from codegen import BACKENDS, library, plan
from codegen.host import matmul_tile, vector_bits
from codegen.kernel import Conv2d, ConvWeightGrad, Kernel, Matmul, Pool2d, PoolBackward, conv_path
from codegen.plan import (
    PLAN_SYMBOL,
    Buffer,
    Call,
    Constants,
    NativeRun,
    Plan,
    _address,
    code_key,
    encode_plan,
    out_of_range,
    schedule_digest,
)
from codegen.schedule import KernelStep, NodeStep, dump, format_schedule, schedule
from codegen.sized import split
from ir import dtypes
from ir.errors import ShapeError
from ir.graph import Graph
from ir.interpreter import run, run_node, start
from ir.passes import optimize
from ir.types import concrete_shape


class CompiledGraph:
    """`graph` with its kernels compiled; `run` is safe to call from several threads."""

    def __init__(self, graph: Graph, embedded: dict[str, bytes] | None = None) -> None:
        """`embedded`: shared libraries by cache key (from a module file the user trusts), used
        when one is this graph's for this CPU."""
        self.source = graph
        # (values that depend only on sizes are inputs, computed once per set of sizes)
        self.graph, self.sized = split(optimize(graph))
        self.steps = _pack_conv_weights(schedule(self.graph), self.graph)
        self.schedule_text = format_schedule(self.steps)  # also part of the code's cache key
        dump(self.graph.name, {"schedule.txt": self.schedule_text + "\n"})  # (where GRAPHC_DUMP says)
        kernels = [s.kernel for s in self.steps if isinstance(s, KernelStep)]
        self._functions = {}
        self._constants = Constants(self.graph.weight_data)  # converted and packed weights
        self._panels: dict[str, int] = {}  # matmul kernel -> columns per packed panel of b
        self.native: NativeRun | None = None  # the whole graph in one native call, where it can be
        self.library_key: str | None = None  # the shared library in the cache, where there is one
        if kernels:
            bits = vector_bits()
            for k in kernels:
                if isinstance(k, Matmul):
                    _, lanes, vectors = matmul_tile(k.dtype, bits)
                    self._panels[k.name] = lanes * vectors
            native = self._native_plan()
            names = [n for k in kernels for n in (k.name, f"{k.name}.packed")]
            if native is not None:
                names += ["graph_entry", *native.names]
            names = sorted(set(names))
            addresses = self._load(names, embedded or {})
            if addresses is None:
                addresses = self._compile(kernels, native, bits, names)
            if native is not None:
                self.native = NativeRun(self.graph, native, self._constants, addresses, plan.workers())
            for k in kernels:
                if isinstance(k, Matmul):
                    pointers, sizes = 1 + len(k.operands), 6
                elif isinstance(k, Conv2d):
                    pointers, sizes = 3 + len(k.extras), 2
                elif isinstance(k, Pool2d):
                    pointers, sizes = 2, 2
                elif isinstance(k, PoolBackward):
                    pointers, sizes = 3, 2
                elif isinstance(k, ConvWeightGrad):
                    pointers, sizes = 3, 3
                else:
                    pointers, sizes = 1 + len(k.inputs) + k.checked, len(k.symbols) + 2
                argtypes = [ctypes.c_void_p] * pointers + [ctypes.c_int64] * sizes
                call = ctypes.CFUNCTYPE(None, *argtypes)(addresses[k.name])
                self._functions[k.name] = _Entry(call, addresses[f"{k.name}.packed"])
        self._plan = [self._runner(step) for step in self.steps]

    def _load(self, names: list[str], embedded: dict) -> dict | None:
        """The code from the cache (or a trusted embedded library, which joins the cache),
        without LLVM; None where neither has it, or where its plan records another schedule
        (the code is then compiled here, in memory: the cached library stays as it is)."""
        self.library_key = key = code_key(self.graph)
        library.offer(embedded)
        addresses = library.load(key, names)
        if addresses is not None:
            data = library.data(key, PLAN_SYMBOL)
            try:
                digest = Plan.from_json(data)[1] if data is not None else None
            except (ValueError, KeyError, TypeError):
                digest = None
            if digest != schedule_digest(self.schedule_text):
                self.library_key, addresses = None, None
        return addresses

    def _compile(self, kernels, native: Plan | None, bits: int, names: list[str]) -> dict:
        """Render and compile the kernels (and the native entry, and the plan as data): linked
        into a shared library in the cache where a C compiler driver and a cache directory
        exist, else in memory."""
        from codegen.llvm.compiler import build_library, compile_ir
        from codegen.llvm.render import render, render_data, render_entry

        module = render(kernels, name=self.graph.name, vector_bits=bits)
        if native is not None:
            render_entry(module, [len(c.args) for c in native.calls])
            render_data(module, PLAN_SYMBOL, native.to_json(self.schedule_text))
        else:
            render_data(module, PLAN_SYMBOL, encode_plan(self.schedule_text, None))
        text = str(module)
        addresses = build_library(text, self.library_key, names) if self.library_key else None
        if addresses is None:
            self.library_key = None
            compiled = compile_ir(text, names)
            self._engine = compiled  # keeps the code alive
            addresses = compiled.addresses
        return addresses

    def library_bytes(self) -> bytes | None:
        """The shared library of this graph's code (to embed in a module file), if there is one."""
        return library.read(self.library_key) if self.library_key else None

    def __str__(self) -> str:
        return self.schedule_text

    def run(self, arrays, weights: dict | None = None) -> list[np.ndarray]:
        """The graph's outputs for `arrays` (a list in input order or a dict by name)."""
        if self.sized is not None:
            arrays = self.sized.add(arrays)
        if self.native is not None:
            outs = self.native.call(arrays)
            if outs is not None:
                return outs
        env, bindings = start(self.graph, arrays)
        for step in self._plan:
            step(env, bindings, weights)
        return [env[v.name] for v in self.graph.outputs]

    def _native_plan(self) -> Plan | None:
        """The execution plan of the graph's native entry (its kernel calls and buffers, as
        data), or None where some step needs Python between kernels (an interpreter node other
        than a reshape, a matmul by a non-constant matrix) or an output is an input or a weight."""
        g = self.graph
        buffers = [Buffer("input", v.name, index=i) for i, v in enumerate(g.inputs)]
        value_buffer = {v.name: i for i, v in enumerate(g.inputs)}
        calls: list[Call] = []
        names: list[str] = []  # the entries the calls may use

        def operand(name, dtype, packing=None):
            if name in g.weights:
                return ["weight", name, dtypes.from_numpy(np.dtype(dtype)).name, packing]
            buffers[value_buffer[name]].readers.append(len(calls))
            return ["buffer", value_buffer[name]]

        types = {v.name: v.type for v in (*g.inputs, *g.weights.values())}
        for node in g.nodes:
            types.update({v.name: v.type for v in node.outputs})

        def shape(name):  # a value's shape (ints and symbols)
            return list(types[name].shape)

        for step in self.steps:
            if isinstance(step, NodeStep):
                node = step.node
                if node.op != "reshape" or node.inputs[0].name not in value_buffer:
                    return None
                value_buffer[node.outputs[0].name] = value_buffer[node.inputs[0].name]  # a view
                continue
            k = step.kernel
            t = k.dtype.np
            kinds = [(x.dtype or k.dtype).np for x in k.inputs] if isinstance(k, Kernel) else None
            if isinstance(k, PoolBackward):
                kinds = [t, np.int64]
            if isinstance(k, Matmul):
                kinds = [(x.dtype or k.dtype).np for x in k.operands]
            args = [operand(name, kinds[i] if kinds else t) for i, name in enumerate(step.inputs)]
            out = len(buffers)
            buffers.append(Buffer("arena", step.output, writer=len(calls)))
            value_buffer[step.output] = out
            first = step.inputs[0] if step.inputs else None  # (an arange kernel reads nothing)
            if isinstance(k, Matmul):
                panel = self._panels[k.name]
                if not k.pack_b:
                    args[1] = operand(step.inputs[1], t, ["matmul", panel])
                # a and b may be read through a view (a may be computed by a prologue): then
                # their shapes are the kernel's, else those of the values
                a = list(k.a.shape) if k.a.view is not None or k.prologue is not None else shape(first)
                b = list(k.b.shape) if k.b.view is not None else shape(step.inputs[1])
                b = b[-2:]
                sizes = [
                    ["size", [a, "rows"]],
                    ["size", [b, 1]],
                    ["size", [b, 0]],
                    ["size", [a, "per_batch"]],
                ]
                calls.append(Call([["buffer", out], *args, *sizes], ["matmul", k.name, a, b, panel]))
                names.append(f"{k.name}.cols.packed")
            elif isinstance(k, ConvWeightGrad):
                images = [shape(first), 0]
                how = [
                    "parts",
                    f"{k.name}.packed",
                    [[k.out_shape[0]], 0],
                    images,
                    _weight_grad_work(k),
                    "conv",
                    1,
                ]
                calls.append(Call([["buffer", out], *args, ["size", images]], how))
            elif isinstance(k, (Conv2d, Pool2d, PoolBackward)):
                if isinstance(k, Conv2d) and k.w_packed:
                    args[1] = operand(step.inputs[1], t, _conv_packing(k))
                if isinstance(k, Conv2d):
                    work, threshold = int(np.prod(k.w.shape)) * int(np.prod(k.out_shape[2:])), "conv"
                elif isinstance(k, PoolBackward):
                    work, threshold = int(np.prod(k.out_shape[1:])), "points"
                else:
                    work, threshold = int(np.prod(k.x.shape[1:])), "points"
                images = [shape(first), 0]
                pieces = k.pieces if isinstance(k, Conv2d) else 1
                calls.append(
                    Call(
                        [["buffer", out], *args],
                        ["parts", f"{k.name}.packed", images, images, work, threshold, pieces],
                    )
                )
            else:
                sizes = [["size", [[name], 0]] for name in k.symbols]
                if k.checked:  # the call's status word: set by an index out of range
                    sizes.insert(0, ["status", k.name])
                how = ["ranges", k.name, list(k.ranges), k.splittable]
                calls.append(Call([["buffer", out], *args, *sizes], how))
            names.append(f"{k.name}.packed")
        for v in g.outputs:
            b = value_buffer.get(v.name)
            if b is None or buffers[b].kind == "input":
                return None
            buffers[b].kind = "output"
        return Plan(calls, buffers, value_buffer, names)

    def _runner(self, step):
        """A function (env, bindings, weights) that runs `step`, with what does not change
        between calls (weights' packing and addresses, static shapes) worked out now."""
        if isinstance(step, NodeStep):
            node = step.node
            if node.op == "scan":
                from codegen import ready

                run_scan = scan_runner(node, ready(node.attrs["body"], "llvm"), np)
                return lambda env, bindings, weights: run_scan(env)
            # a cond's branches read `weights`
            return lambda env, bindings, weights: run_node(node, env, bindings, np, weights)
        if isinstance(step.kernel, Matmul):
            return self._matmul_runner(step)
        if isinstance(step.kernel, Conv2d):
            return self._conv_runner(step)
        if isinstance(step.kernel, (Pool2d, PoolBackward)):
            return self._pool_runner(step)
        if isinstance(step.kernel, ConvWeightGrad):
            return self._weight_grad_runner(step)
        k, function, output = step.kernel, self._functions[step.kernel.name], step.output
        t = k.dtype.np
        loads = [
            self._operand(name, (x.dtype or k.dtype).np)
            for name, x in zip(step.inputs, k.inputs, strict=True)
        ]
        symbols = k.symbols

        def kernel(env, bindings, weights):
            ranges = concrete_shape(k.ranges, bindings)
            if 0 in ranges:
                error = empty_extreme(k, ranges)
                if error:
                    raise ShapeError(error)
            out = np.empty(concrete_shape(k.out_shape, bindings), dtype=t)
            if out.size or k.reduce is not None:  # (an empty sum is 0)
                status = np.zeros(1, np.int64) if k.checked else None
                checked = (_address(status),) if k.checked else ()
                args = (
                    _address(out),
                    *(load(env) for load in loads),
                    *checked,
                    *(bindings[s] for s in symbols),
                )
                _launch(function, k, args, ranges)
                if k.checked and status[0]:
                    raise IndexError(out_of_range(k.name))
            env[output] = out

        return kernel

    def _operand(self, name: str, dtype):
        """A function of env giving the address of value `name` as a contiguous `dtype` array
        (kept alive by env); a weight's is fixed now."""
        if name in self.graph.weights:
            address = self._constants.address(name, dtype)
            return lambda env: address

        def load(env):
            value = env[name]
            if not isinstance(value, np.ndarray) or value.dtype != dtype or not value.flags.c_contiguous:
                value = env[name] = np.array(value, dtype=dtype, order="C")  # (0-d stays 0-d)
            return _address(value)

        return load

    def _matmul_runner(self, step: KernelStep):
        k, function, output = step.kernel, self._functions[step.kernel.name], step.output
        t = k.dtype.np
        a_name, b_name = step.inputs[:2]
        kinds = [(x.dtype or k.dtype).np for x in k.operands]
        extras = [self._operand(name, kind) for name, kind in zip(step.inputs[2:], kinds[2:], strict=True)]
        a_operand = self._operand(a_name, kinds[0])
        panel = self._panels[k.name]
        if not k.pack_b:  # a weight, packed once, now
            address = self._constants.address(b_name, t, ["matmul", panel])
            b_address = lambda env: address  # noqa: E731
        else:  # the kernel packs it
            b_address = self._operand(b_name, t)

        def matmul(env, bindings, weights):
            # (a or b may be read through a view of the buffer of that name; a may be computed
            # from a prologue's inputs, the first in a's place)
            if k.a.view is not None or k.prologue is not None:
                a_shape = tuple(concrete_shape(k.a.shape, bindings))
            else:
                a_shape = env[a_name].shape
            if k.b.view is not None:
                kk, nn = concrete_shape(k.b.shape, bindings)[-2:]
            else:
                kk, nn = (
                    env[b_name].shape[-2:] if b_name in env else self.graph.weight_data[b_name].shape[-2:]
                )
            out = np.empty((*a_shape[:-1], nn), dtype=t)
            env[output] = out
            if not out.size:
                return
            rows = int(np.prod(a_shape, dtype=np.int64)) // kk if kk else out.size // nn
            per_batch = a_shape[-2] if len(a_shape) > 1 else 1  # rows of a per matrix of b
            operands = (_address(out), a_operand(env), b_address(env), *(load(env) for load in extras))
            args = (*operands, rows, nn, kk, per_batch)
            _launch(function, k, args, (rows,), rows * nn * kk >= plan.MATMUL_PARALLEL_MIN_MACS)

        return matmul

    def _conv_runner(self, step: KernelStep):
        co, cg, kh, kw = step.kernel.w.shape
        per_image = co * cg * kh * kw * int(np.prod(step.kernel.out_shape[2:]))
        return self._image_runner(step, per_image, lambda: plan.CONV_PARALLEL_MIN_MACS)

    def _weight_grad_runner(self, step: KernelStep):
        """(out, x, g, batch) over the output channels, split when the work is large."""
        k, function, output = step.kernel, self._functions[step.kernel.name], step.output
        t = k.dtype.np
        x_name, g_name = step.inputs
        per_image = _weight_grad_work(k)

        def weight_grad(env, bindings, weights):
            x, g = (np.ascontiguousarray(env[name], dtype=t) for name in (x_name, g_name))
            out = np.empty(k.out_shape, dtype=t)
            env[output] = out
            args = (_address(out), _address(x), _address(g), x.shape[0])
            _launch(
                function, k, args, (k.out_shape[0],), x.shape[0] * per_image >= plan.CONV_PARALLEL_MIN_MACS
            )

        return weight_grad

    def _pool_runner(self, step: KernelStep):
        k = step.kernel
        if isinstance(k, PoolBackward):  # (out, g, int64 indices)
            per_image = int(np.prod(k.out_shape[1:]))
            return self._image_runner(
                step, per_image, lambda: plan.PARALLEL_MIN_POINTS, [k.dtype.np, np.int64]
            )
        out = np.int64 if k.indices else None
        return self._image_runner(
            step, int(np.prod(k.x.shape[1:])), lambda: plan.PARALLEL_MIN_POINTS, out=out
        )

    def _image_runner(self, step: KernelStep, per_image: int, threshold, kinds=None, out=None):
        """A kernel over the images of its first input (convolution, pooling): (out, x, the
        other operands), split over the images when `per_image` times their number reaches
        `threshold()`. `kinds`: the dtypes of the inputs (default: all the kernel's); `out`:
        the output's dtype (default: the kernel's)."""
        k, function, output = step.kernel, self._functions[step.kernel.name], step.output
        t = k.dtype.np
        kinds = kinds or [t] * len(step.inputs)
        out_dtype = out or t
        x_name = step.inputs[0]
        operands = [self._operand(name, kind) for name, kind in zip(step.inputs[1:], kinds[1:], strict=True)]
        if isinstance(k, Conv2d) and k.w_packed:  # the weight transposed once, now
            address = self._constants.address(step.inputs[1], t, _conv_packing(k))
            operands[0] = lambda env: address
        tail = tuple(k.out_shape[1:])

        pieces = k.pieces if isinstance(k, Conv2d) else 1  # (units per image: Conv2d.pieces)

        def images(env, bindings, weights):
            x = env[x_name]
            if x.dtype != t or not x.flags.c_contiguous:
                x = np.ascontiguousarray(x, dtype=t)
            out = np.empty((x.shape[0], *tail), dtype=out_dtype)
            env[output] = out
            if out.size:
                count = x.shape[0]
                args = (_address(out), _address(x), *(load(env) for load in operands))
                _launch(function, k, args, (count * pieces,), count * per_image >= threshold())

        return images


def empty_extreme(k: Kernel, ranges) -> str | None:
    """Why kernel `k` cannot run over `ranges` that hold no point: a maximum or minimum of
    nothing has no value (the interpreter's rule); None where it can (an empty sum is 0)."""
    if 0 not in ranges:
        return None
    combined = [(s.op, k.row_axes) for s in k.stages]
    if k.reduce is not None:
        combined.append((k.reduce.op, k.reduce.axes))
    for op, axes in combined:
        if op != "sum":
            return (
                f"a{op}(): cannot reduce an empty tensor of shape {ranges} over dims {axes} "
                "(no identity element)"
            )
    return None


def _weight_grad_work(k: ConvWeightGrad) -> int:
    """Multiply-adds of a weight-gradient kernel per image."""
    return int(np.prod(k.out_shape)) * int(np.prod(k.g.shape[2:]))


def _conv_packing(k: Conv2d) -> list:
    """How a convolution on the channels path reads its weight (`Constants.array`'s packing)."""
    _, lanes, _ = matmul_tile(k.dtype, vector_bits())
    return ["conv", k.groups, lanes]


def _pack_conv_weights(steps: list, graph: Graph) -> list:
    """The steps with each convolution that takes the channels path by a weight marked
    `w_packed`: its weight is transposed once (`pack_conv_weight`), not on every call."""
    out = []
    for step in steps:
        k = getattr(step, "kernel", None)
        if isinstance(k, Conv2d) and step.inputs[1] in graph.weights:
            rows, lanes, vectors = matmul_tile(k.dtype, vector_bits())
            if conv_path(k, rows, lanes, vectors) == "channels":
                step = dataclasses.replace(step, kernel=dataclasses.replace(k, w_packed=True))
        out.append(step)
    return out


@dataclass(frozen=True)
class _Entry:
    """A compiled kernel: `call(*args, lo, hi)` through ctypes, and the address of its
    `.packed` entry (arguments in an array) for the worker pool."""

    call: object
    packed: int


def _launch(entry: _Entry, kernel, args: tuple, ranges: tuple, parallel: bool | None = None) -> None:
    """Call a compiled kernel on all of `ranges`, in parts on every core when `parallel`
    (default: when it covers codegen.plan.PARALLEL_MIN_POINTS or more) and its outer range can be split."""
    rows = ranges[0] if ranges else 1
    if parallel is None:
        parallel = (int(np.prod(ranges, dtype=np.int64)) if ranges else 1) >= plan.PARALLEL_MIN_POINTS
    parts = min(plan.workers(), rows) if kernel.splittable and parallel else 1
    if parts <= 1:
        entry.call(*args, 0, rows)
        return
    from codegen.llvm.pool import pool

    pool(plan.workers() - 1).run(entry.packed, args, rows, parts)


def scan_runner(node, body, xp):
    """A function of a run's values (`env`) that runs the `scan` node `node` with its body
    ready to run as `body` (compiled once, for this CPU or GPU: one run per step)."""
    from ir.ops.control import scan

    a = node.attrs

    def run(env) -> None:
        args = [env[v.name] for v in node.inputs]
        outs = scan(xp, args, a["body"], a["carries"], a["sequences"], a.get("reverse", False), step=body.run)
        for value, result in zip(node.outputs, outs if len(node.outputs) > 1 else (outs,), strict=True):
            env[value.name] = xp.asarray(result)

    return run


def compile_graph(graph: Graph) -> CompiledGraph:
    """Schedule `graph` and compile its kernels for this CPU."""
    return CompiledGraph(graph)


class InterpretedGraph:
    """`graph` on the reference interpreter, with any array module (numpy, cupy)."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def run(self, arrays, weights: dict | None = None, xp=np) -> list:
        return run(self.graph, arrays, xp=xp, weights=weights)


def executable(
    graph: Graph, backend: str = "interpreter", embedded: dict[str, bytes] | None = None, device=None
):
    """`graph` made ready to run on `backend` (one of BACKENDS): a CompiledGraph ('llvm'), a
    CudaGraph ('cuda', on `device`: a codegen.cuda.device.Device, default the current GPU) or an
    InterpretedGraph; `embedded`: compiled code by cache key from a module file the user
    trusts (shared libraries for 'llvm', PTX and cubins for 'cuda')."""
    if backend == "interpreter":
        return InterpretedGraph(graph)
    if backend == "llvm":
        return CompiledGraph(graph, embedded)
    if backend == "cuda":
        from codegen.cuda.device import gpu
        from codegen.cuda.executable import CudaGraph

        return CudaGraph(graph, device if device is not None else gpu(), embedded)
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


def library_artifacts(executables: dict) -> list[tuple[str, str, dict, bytes]]:
    """Module-file artifacts (target, kind, properties, bytes) holding the compiled code of
    `executables` by method name (CompiledGraph or codegen.plan.PlannedGraph): the shared
    libraries, for CPUs like this one."""
    import platform

    from codegen.host import COMPILER_VERSION, fingerprint
    from codegen.llvm.pool import pool_key, pool_library

    target = f"{platform.machine()}/{fingerprint()}"
    out = []
    for method, exe in executables.items():
        data = exe.library_bytes() if exe.library_key else None
        if data is None:
            continue
        properties = {"key": exe.library_key, "method": method, "compiler": COMPILER_VERSION}
        out.append((target, "shared-library", properties, data))
    if out:  # the worker pool the graphs' parallel kernels use
        data = pool_library()
        if data is not None:
            out.append((target, "shared-library", {"key": pool_key(), "compiler": COMPILER_VERSION}, data))
    return out
