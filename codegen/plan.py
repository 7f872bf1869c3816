"""Whole-graph execution: one native call runs every kernel of a graph over one arena.

`plan_memory` places intermediate buffers in an arena so that buffers whose lifetimes do not
overlap share memory (greedy best fit, largest first). A `Plan` is the execution plan, plain
data: the graph's buffers and, per kernel call, its arguments and how to split it over the
cores, all as expressions of the symbol sizes. It is compiled into the graph's shared library
beside the code (`PLAN_SYMBOL`, JSON), so a process that finds the library in the cache or in a
trusted module file runs the graph from it (`planned`) without scheduling the graph or loading
the kernel IR. `NativeRun` holds, per set of symbol sizes (the batch), the arena plan and a
table of every kernel's arguments; a call fills in the addresses of the inputs and of fresh
output arrays and hands the table to the graph's native entry (`render_entry`), which calls the
kernels in order and sends large ones to the worker pool. `fast` gives the same call made by C
(codegen/_fastcall.c, where it is built), with a plan of its own per set of sizes: it declines
anything but exactly the arrays the plan expects, and `run` (Python, ctypes) handles the rest.
Graphs that need anything else between kernels (an interpreter node other than a reshape, a
matmul by a non-constant matrix) run step by step instead (`CompiledGraph`).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import threading
from dataclasses import dataclass, field

import numpy as np

from codegen import library
from codegen.host import vector_bits
from ir import dtypes
from ir.interpreter import bind_inputs
from ir.types import concrete_shape

try:  # the C call path (setup.py builds it where a C compiler exists)
    from codegen import _fastcall
except ImportError:
    _fastcall = None

ALIGN = 64
PLAN_VERSION = 2  # bump when the plan's format changes
PLAN_SYMBOL = "graphc_plan"  # the plan's bytes in a graph's library (and its size: PLAN_SYMBOL + "_size")

# A kernel covering at least this much work is split over the cores. The native pool's workers
# spin for a while after each job, so a hand-off costs a few microseconds (a Python thread pool
# cost 70-125 us here); a sleeping worker takes longer to wake, but the caller runs parts too,
# so a split never costs much more than running alone.
PARALLEL_MIN_POINTS = 1 << 15
MATMUL_PARALLEL_MIN_MACS = 1 << 18
MATVEC_PARALLEL_MIN_MACS = 1 << 17  # few rows: memory-bound, slower per MAC, split by columns
CONV_PARALLEL_MIN_MACS = 1 << 20

# GRAPHC_FASTCALL=0: call native entries through ctypes only (the C call path is the default
# where setup.py could build it)
_use_fastcall = os.environ.get("GRAPHC_FASTCALL", "1") != "0"


def _address(array: np.ndarray) -> int:
    """The address of `array`'s data (faster than .ctypes.data where the array is writable)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(array))
    except (TypeError, ValueError):  # read-only or empty
        return array.ctypes.data


def _new_state(plan: _Bound) -> tuple:
    """An arena and argument table for `plan`: (arena, table, table address, status words)."""
    arena = np.empty(plan.arena + ALIGN, dtype=np.uint8)
    base = -arena.ctypes.data % ALIGN + arena.ctypes.data
    table = plan.table.copy()
    table[plan.arena_slots] += base
    words = np.zeros(max(len(plan.status), 1), dtype=np.int64)  # the status words
    for i, (position, _) in enumerate(plan.status):
        table[position] = words.ctypes.data + 8 * i
    return arena, table, table.ctypes.data, words


def plan_memory(sizes: list[int], lifetimes: list[tuple[int, int]]) -> tuple[list[int], int]:
    """Offsets (multiples of ALIGN) for buffers of `sizes` bytes live over the inclusive step
    ranges `lifetimes`, such that buffers live at the same step never overlap; and the arena
    size. Buffers are placed largest first, each at the lowest offset that fits."""
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], lifetimes[i][0]))
    placed: list[tuple[int, int, int, int]] = []  # (offset, end, first, last)
    offsets = [0] * len(sizes)
    arena = 0
    for i in order:
        size = -(-sizes[i] // ALIGN) * ALIGN
        first, last = lifetimes[i]
        busy = sorted((o, e) for o, e, f, l in placed if f <= last and first <= l)
        offset = 0
        for o, e in busy:
            if offset + size <= o:
                break
            offset = max(offset, e)
        offsets[i] = offset
        placed.append((offset, offset + size, first, last))
        arena = max(arena, offset + size)
    return offsets, arena


def out_of_range(kernel: str) -> str:
    return f"gather: an index is out of range for the dimension it indexes (compiled kernel {kernel})"


def size(quantity: list, bindings: dict) -> int:
    """A size a kernel is called with: `quantity` is [dims, which], the shape `dims` (ints and
    symbols) for these symbol sizes, then 'rows' (the product of all its dims but the last),
    'per_batch' (its second last dim), both 1 for a shape of rank 0 or 1, or an int (that dim)."""
    shape = concrete_shape(quantity[0], bindings)
    which = quantity[1]
    if which == "rows":
        return int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
    if which == "per_batch":
        return shape[-2] if len(shape) > 1 else 1
    return shape[which]


def split(how: list, bindings: dict, workers: int) -> tuple[str, int, int]:
    """How to run a call: the `.packed` entry (a function name), the range its lo..hi cover
    and the number of parts to split that range into. `how` is one of
    - ['ranges', kernel, ranges, splittable]: a loop kernel over the shape `ranges`, split by
      its outer range where that is allowed and the kernel covers PARALLEL_MIN_POINTS;
    - ['matmul', kernel, a, b, panel]: a product of `a` (rows, K) by `b` (K, N) packed in
      panels of `panel` columns, split by its rows or, where they are few, its panels;
    - ['parts', function, extent, count, work, 'points' or 'conv', pieces]: `extent` (a
      size, as for `size`) times `pieces` parts, split when `count` times `work` reaches the
      threshold named."""
    kind = how[0]
    if kind == "ranges":
        _, kernel, dims, splittable = how
        ranges = concrete_shape(dims, bindings)
        if not ranges or not splittable:
            return f"{kernel}.packed", 1, 1  # one call over everything
        points = int(np.prod(ranges, dtype=np.int64))
        parallel = workers > 1 and ranges[0] > 1 and points >= PARALLEL_MIN_POINTS
        return f"{kernel}.packed", ranges[0], min(workers, ranges[0]) if parallel else 1
    if kind == "matmul":
        _, kernel, a, b, panel = how
        m = size([a, "rows"], bindings)
        depth, n = concrete_shape(b, bindings)[-2:]
        panels = -(-n // panel)
        if workers > 1 and m * n * depth >= MATMUL_PARALLEL_MIN_MACS and m >= 2 * workers:
            return f"{kernel}.packed", m, min(workers, m)
        if workers > 1 and m * n * depth >= MATVEC_PARALLEL_MIN_MACS and panels > 1:
            return f"{kernel}.cols.packed", panels, min(workers, panels)  # few rows
        return f"{kernel}.packed", m, 1
    if kind == "parts":
        _, function, extent, count, work, threshold, pieces = how
        extent = size(extent, bindings) * pieces
        threshold = {"points": PARALLEL_MIN_POINTS, "conv": CONV_PARALLEL_MIN_MACS}[threshold]
        parallel = workers > 1 and extent > 1 and size(count, bindings) * work >= threshold
        return function, extent, min(workers, extent) if parallel else 1
    raise ValueError(f"unknown kind of call {kind!r} in an execution plan")


@dataclass
class Call:
    """One kernel call of the native entry: `args` are ['buffer', id], ['weight', name, dtype
    name, packing] (a weight as `Constants.array` gives it), ['address', int] (resolved),
    ['size', quantity] (as for `size`) or ['status', kernel name] (the address of a word the
    kernel sets when an index it reads by is out of range); `how` as for `split`."""

    args: list
    how: list


@dataclass
class Buffer:
    """A value's storage: 'input' (a graph input, by index), 'output' (a fresh array returned
    to the caller, by output index), or 'arena' (an intermediate)."""

    kind: str
    value: str  # the value whose shape and dtype it has
    index: int = -1
    writer: int = -1  # the call that writes it
    readers: list = field(default_factory=list)


@dataclass
class Plan:
    """A graph's execution plan: its buffers, the kernel calls of its native entry in order,
    the buffer of each value, and the entries the calls may use (besides `graph_entry`)."""

    calls: list[Call]
    buffers: list[Buffer]
    value_buffer: dict[str, int]
    names: list[str]

    def to_json(self, schedule: str) -> bytes:
        """The plan as compiled into the library, with a digest of the `schedule` it came from."""
        return encode_plan(
            schedule,
            {
                "calls": [[c.args, c.how] for c in self.calls],
                "buffers": [[b.kind, b.value, b.index, b.writer, b.readers] for b in self.buffers],
                "value_buffer": self.value_buffer,
                "names": self.names,
            },
        )

    @staticmethod
    def from_json(data: bytes) -> tuple[Plan | None, str]:
        """(The plan or None where the graph does not run as one native call, the schedule's
        digest) from `to_json`'s bytes; ValueError where they are not a plan of this version."""
        record = json.loads(data)
        if not isinstance(record, dict) or record.get("version") != PLAN_VERSION:
            raise ValueError("not an execution plan of this version")
        native = record["native"]
        if native is None:
            return None, record["schedule"]
        return (
            Plan(
                [Call(args, how) for args, how in native["calls"]],
                [Buffer(*b) for b in native["buffers"]],
                native["value_buffer"],
                native["names"],
            ),
            record["schedule"],
        )


def encode_plan(schedule: str, native: dict | None) -> bytes:
    """A plan's bytes: `native` (the plan's fields, None where the graph runs step by step)
    and a digest of the schedule it was made from."""
    return json.dumps(
        {"version": PLAN_VERSION, "schedule": schedule_digest(schedule), "native": native}
    ).encode()


def schedule_digest(schedule: str) -> str:
    return hashlib.sha256(schedule.encode()).hexdigest()


def code_key(graph) -> str:
    """The cache key of a graph's compiled code (its library) on this host: the optimized
    graph and the vector width; the compiler's sources are in the host's fingerprint, so the
    schedule is a function of these (and the plan in the library records which it was)."""
    from ir.printer import format_graph

    return library.library_key(f"{format_graph(graph)}\nvector_bits={vector_bits()}")


def _aligned_zeros(shape: tuple, dtype) -> np.ndarray:
    """Zeros whose data starts on a 64-byte boundary (a packed weight's vector loads never
    straddle two cache lines; numpy only promises 16 bytes)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.zeros(count * dtype.itemsize + 64, dtype=np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + count * dtype.itemsize].view(dtype).reshape(shape)


def pack_conv_weight(w: np.ndarray, groups: int, lanes: int, dtype=None) -> np.ndarray:
    """A convolution weight (CO, C / groups, KH, KW) as the channels path reads it: per group,
    K = C / groups * KH * KW rows of its output channels, zero-padded to whole vectors of
    `lanes` ([groups][K][padded channels])."""
    co = w.shape[0]
    cog, depth = co // groups, int(np.prod(w.shape[1:]))
    padded = -(-cog // lanes) * lanes
    out = _aligned_zeros((groups, depth, padded), dtype or w.dtype)
    out[:, :, :cog] = w.reshape(groups, cog, depth).transpose(0, 2, 1)
    return out


def pack_matmul_b(b: np.ndarray, panel: int, dtype=None) -> np.ndarray:
    """A (K, N) matrix as the matmul kernel reads it: panels of `panel` columns, each K rows of
    `panel` contiguous values, the last panel zero-padded ([ceil(N / panel)][K][panel])."""
    depth, n = b.shape
    panels = -(-n // panel)
    packed = _aligned_zeros((panels, depth, panel), dtype or b.dtype)
    for p in range(panels):
        columns = b[:, p * panel : (p + 1) * panel]
        packed[p, :, : columns.shape[1]] = columns
    return packed


class Constants:
    """A graph's weights as its kernels read them, each made once and kept alive while the
    kernels use its address: as contiguous arrays of a dtype, or packed (packing None,
    ['matmul', panel] for `pack_matmul_b`, ['conv', groups, lanes] for `pack_conv_weight`)."""

    def __init__(self, weights: dict) -> None:
        self._weights = weights
        self._made: dict[tuple, np.ndarray] = {}
        self._lock = threading.Lock()

    def array(self, name: str, dtype, packing=None) -> np.ndarray:
        """Weight `name` as a `dtype` (a numpy dtype or an ir.dtypes name) array, packed."""
        dtype = dtypes.from_name(dtype).np if isinstance(dtype, str) else np.dtype(dtype)
        key = (name, dtype, tuple(packing) if packing else None)
        made = self._made.get(key)
        if made is None:
            w = self._weights[name]
            if packing is None:
                made = np.ascontiguousarray(w, dtype=dtype)
            elif packing[0] == "matmul":
                made = pack_matmul_b(w, packing[1], dtype)
            elif packing[0] == "conv":
                made = pack_conv_weight(w, packing[1], packing[2], dtype)
            else:
                raise ValueError(f"unknown packing {packing!r} of weight {name!r}")
            with self._lock:
                made = self._made.setdefault(key, made)
        return made

    def address(self, name: str, dtype, packing=None) -> int:
        return _address(self.array(name, dtype, packing))


@dataclass
class _Bound:
    """The plan for one set of symbol sizes."""

    table: np.ndarray  # arguments with arena offsets (not addresses) for intermediates
    arena_slots: np.ndarray  # table positions holding arena offsets
    inputs: list  # per graph input: table positions
    outputs: list  # per output buffer: (table positions, shape, dtype)
    arena: int
    intermediates: int  # bytes of all intermediates, for the report
    parallel: bool
    runnable: bool  # False for empty tensors: the step-by-step path handles (and reports) them
    output_shapes: list | None = None
    status: list = field(default_factory=list)  # (table position, kernel name) per status word
    input_shapes: list = field(default_factory=list)
    fast: object = None  # its C call path's `run` (codegen._fastcall), once made


class NativeRun:
    """The native entry of a graph with its calls and buffers; `run` is thread-safe (each
    thread has its own arena per set of sizes)."""

    def __init__(self, graph, plan: Plan, constants: Constants, addresses: dict, workers: int):
        self.graph = graph
        self.addresses = addresses  # function name -> address
        self.constants = constants  # (keeps the weights the calls have the addresses of alive)
        self.calls = [
            Call([["address", constants.address(*a[1:])] if a[0] == "weight" else a for a in c.args], c.how)
            for c in plan.calls
        ]
        self.buffers = plan.buffers
        self.value_buffer = plan.value_buffer  # value name -> buffer id
        # (table, pool state, dispatch)
        self.entry = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)(
            addresses["graph_entry"]
        )
        self.entry_address = addresses["graph_entry"]
        self.workers = workers
        self._bound: dict[tuple, _Bound] = {}
        self._local = threading.local()
        self._types = {v.name: v.type for v in graph.inputs}
        self._types.update({name: v.type for name, v in graph.weights.items()})
        for node in graph.nodes:
            self._types.update({v.name: v.type for v in node.outputs})
        self._symbols = sorted(graph.symbols())
        outputs = [i for i, b in enumerate(self.buffers) if b.kind == "output"]
        # per graph output, its array among run()'s results
        self.output_of = [outputs.index(self.value_buffer[v.name]) for v in graph.outputs]
        self._last_bindings: tuple = (None, None)  # (inputs' dtypes and shapes, their bindings)
        self._fast = None  # the C call path of the last call's sizes (codegen._fastcall)

    def call(self, arrays) -> list[np.ndarray] | None:
        """The graph's outputs for `arrays` (a list in input order or a dict by name), or None
        where these sizes have an empty tensor (the step-by-step path handles and reports them)."""
        fast = self._fast
        if fast is not None:
            outs = fast(arrays)
            if outs is not None:
                return outs
        # inputs of the dtypes and shapes of the last call were checked then: their bindings
        # are reused (one tuple, swapped whole, so threads never mix two calls' halves)
        key = None
        if isinstance(arrays, (list, tuple)) and all(isinstance(a, np.ndarray) for a in arrays):
            key = tuple((a.dtype, a.shape) for a in arrays)
        last = self._last_bindings
        if key is not None and last[0] == key:
            bindings = last[1]
        else:
            bindings = bind_inputs(self.graph, arrays)
            if key is not None:
                self._last_bindings = (key, bindings)
        given = [arrays[v.name] for v in self.graph.inputs] if isinstance(arrays, dict) else arrays
        contiguous = [  # (not ascontiguousarray, which makes a 0-d array 1-d)
            a if isinstance(a, np.ndarray) and a.flags.c_contiguous else np.array(a, order="C") for a in given
        ]
        outs = self.run(contiguous, bindings, pool_addresses)
        if outs is not None and _use_fastcall:
            self._fast = self.fast(bindings, pool_addresses)  # for the next call
        return outs

    def bound(self, bindings: dict) -> _Bound:
        key = tuple(bindings[s] for s in self._symbols)
        plan = self._bound.get(key)
        if plan is None:
            plan = self._bound.setdefault(key, self._bind(bindings))
        return plan

    def _bind(self, bindings: dict) -> _Bound:
        shapes = {name: concrete_shape(t.shape, bindings) for name, t in self._types.items()}
        nbytes = [
            int(np.prod(shapes[b.value], dtype=np.int64)) * self._types[b.value].dtype.np.itemsize
            for b in self.buffers
        ]
        arena_ids = [i for i, b in enumerate(self.buffers) if b.kind == "arena"]
        lifetimes = [
            (self.buffers[i].writer, max([self.buffers[i].writer, *self.buffers[i].readers]))
            for i in arena_ids
        ]
        offsets, arena = plan_memory([nbytes[i] for i in arena_ids], lifetimes)
        offset_of = dict(zip(arena_ids, offsets, strict=True))
        words, arena_slots, positions = [], [], {i: [] for i in range(len(self.buffers))}
        parallel, runnable = False, all(n > 0 for n in nbytes)
        status: list = []
        for call in self.calls:
            for kind, what in call.args:
                if kind == "buffer":
                    positions[what].append(len(words))
                    if what in offset_of:
                        arena_slots.append(len(words))
                        words.append(offset_of[what])
                    else:
                        words.append(0)
                elif kind == "address":
                    words.append(what)
                elif kind == "status":
                    status.append((len(words), what))
                    words.append(0)
                else:
                    words.append(size(what, bindings))
            function, extent, parts = split(call.how, bindings, self.workers)
            parallel |= parts > 1
            runnable &= extent > 0
            words += [self.addresses[function], int(extent), int(parts)]
        inputs = [() for _ in self.graph.inputs]
        outputs = []
        for i, b in enumerate(self.buffers):
            if b.kind == "input":
                inputs[b.index] = tuple(positions[i])
            elif b.kind == "output":
                outputs.append((tuple(positions[i]), shapes[b.value], self._types[b.value].dtype.np))
        return _Bound(
            np.array(words, dtype=np.int64),
            np.array(arena_slots, dtype=np.int64),
            inputs,
            outputs,
            arena,
            sum(nbytes[i] for i in arena_ids),
            parallel,
            runnable,
            status=status,
            input_shapes=[shapes[v.name] for v in self.graph.inputs],
        )

    def _state(self, plan: _Bound):
        """This thread's arena and argument table for `plan` (made once; plans live as long
        as this object, so their ids are stable keys)."""
        states = self._local.__dict__.setdefault("states", {})
        key = id(plan)
        state = states.get(key)
        if state is None:
            state = states[key] = _new_state(plan)
        return state

    def fast(self, bindings: dict, pool):
        """The C call path for these symbol sizes: `run(arrays)` gives the outputs, or None
        where the arrays are not exactly what the plan expects (the caller then takes `run`);
        `pool` as for `run`. None where the C extension is not built or the sizes have an
        empty tensor."""
        plan = self.bound(bindings)
        if plan.fast is None and _fastcall is not None and plan.runnable:
            self.output_shapes(bindings)
            arena, table, _, words = _new_state(plan)  # its own: it may run beside other threads
            state, dispatch, lock = pool() if plan.parallel else (0, 0, None)
            inputs = [
                (positions, shape, v.type.dtype.np)
                for positions, shape, v in zip(plan.inputs, plan.input_shapes, self.graph.inputs, strict=True)
            ]
            plan.fast = _fastcall.Plan(
                self.entry_address,
                table,
                state,
                dispatch,
                lock,
                words if plan.status else None,
                inputs,
                plan.outputs,
                plan.output_shapes,
                arena,
            ).run
        return plan.fast

    def run(self, arrays: list[np.ndarray], bindings: dict, pool) -> list[np.ndarray] | None:
        """The graph's outputs for `arrays` (contiguous, of the inputs' dtypes), or None where
        this set of sizes has an empty tensor; `pool()` gives the worker pool's (state address,
        dispatch address, lock)."""
        plan = self.bound(bindings)
        if plan.output_shapes is None:
            self.output_shapes(bindings)
        if not plan.runnable:
            return None
        _, table, table_address, words = self._state(plan)
        if plan.status:
            words[:] = 0
        for positions, array in zip(plan.inputs, arrays, strict=True):
            address = _address(array)
            for i in positions:
                table[i] = address
        outs = []
        for positions, shape, dtype in plan.outputs:
            out = np.empty(shape, dtype=dtype)
            address = _address(out)
            for i in positions:
                table[i] = address
            outs.append(out)
        if plan.parallel:
            state, dispatch, lock = pool()
            with lock:  # the pool runs one job at a time
                self.entry(table_address, state, dispatch)
        else:
            self.entry(table_address, 0, 0)
        if plan.status and words.any():
            raise IndexError(out_of_range(plan.status[int(np.flatnonzero(words)[0])][1]))
        # (a graph output may be another's reshape: one buffer, two shapes)
        return [
            outs[i] if outs[i].shape == shape else outs[i].reshape(shape) for i, shape in plan.output_shapes
        ]

    def output_shapes(self, bindings: dict) -> list[tuple[int, tuple]]:
        """Per graph output: its buffer among the output buffers and its shape."""
        plan = self.bound(bindings)
        if plan.output_shapes is None:
            plan.output_shapes = [
                (i, concrete_shape(v.type.shape, bindings))
                for i, v in zip(self.output_of, self.graph.outputs, strict=True)
            ]
        return plan.output_shapes

    def memory(self, bindings: dict) -> tuple[int, int]:
        """(arena bytes, bytes of all intermediates) for these symbol sizes."""
        plan = self.bound(bindings)
        return plan.arena, plan.intermediates


def workers() -> int:
    """The cores this process may run on (at most 16): the parts a large kernel is split into."""
    return max(
        1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 16)
    )


def pool_addresses() -> tuple[int, int, object]:
    """(state, graphc_dispatch, lock) of the process's worker pool, for native entries."""
    from codegen.llvm import pool

    p = pool._pool or pool.pool(workers() - 1)  # the pool forgets itself in a forked child
    return p.state_address, p.dispatch_address, p.lock


class PlannedGraph:
    """A graph run as one native call from the execution plan compiled into its library (in
    the cache, or in a module file the user trusts): no scheduling, no kernel IR. Sizes with
    an empty tensor take the step-by-step path (`CompiledGraph`, made on first need)."""

    def __init__(self, source, graph, plan: Plan, key: str, addresses: dict, sized=None) -> None:
        self.source = source  # as given; `graph` is it optimized (codegen.sized: and split)
        self.graph, self.sized = graph, sized
        self.library_key = key
        self.native = NativeRun(graph, plan, Constants(graph.weight_data), addresses, workers())
        self._steps = None
        self._lock = threading.Lock()

    def run(self, arrays, weights: dict | None = None) -> list[np.ndarray]:
        """The graph's outputs for `arrays` (a list in input order or a dict by name)."""
        given = arrays
        if self.sized is not None:
            arrays = self.sized.add(arrays)
        outs = self.native.call(arrays)
        if outs is None:
            with self._lock:
                if self._steps is None:
                    from codegen.executable import CompiledGraph

                    self._steps = CompiledGraph(self.source)
            outs = self._steps.run(given, weights)
        return outs

    def library_bytes(self) -> bytes | None:
        """The shared library of this graph's code (to embed in a module file), if there is one."""
        return library.read(self.library_key)


def planned(graph, embedded: dict[str, bytes] | None = None) -> PlannedGraph | None:
    """`graph` ready to run from the plan in its compiled library, where the cache (or
    `embedded`: libraries by key from a module file the user trusts) has one for this CPU and
    the graph runs as one native call; else None (`codegen.executable.CompiledGraph` then
    schedules, and compiles where needed). None too where GRAPHC_DUMP asks for the schedule."""
    if os.environ.get("GRAPHC_DUMP"):
        return None
    from codegen.sized import split
    from ir.passes import optimize

    optimized, sized = split(optimize(graph))
    key = code_key(optimized)
    library.offer(embedded or {})
    data = library.data(key, PLAN_SYMBOL)
    if data is None:
        return None
    try:
        plan, _ = Plan.from_json(data)
    except (ValueError, KeyError, TypeError):
        return None
    if plan is None:
        return None
    addresses = library.load(key, ["graph_entry", *plan.names])
    if addresses is None:
        return None
    return PlannedGraph(graph, optimized, plan, key, addresses, sized)
