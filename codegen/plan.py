"""Whole-graph execution: one native call runs every kernel of a graph over one arena.

`plan_memory` places intermediate buffers in an arena so that buffers whose lifetimes do not
overlap share memory (greedy best fit, largest first). `NativeRun` holds, per set of symbol
sizes (the batch), the arena plan and a table of every kernel's arguments; a call fills in the
addresses of the inputs and of fresh output arrays and hands the table to the graph's native
entry (`render_entry`), which calls the kernels in order and sends large ones to the worker
pool. `fast` gives the same call made by C (codegen/_fastcall.c, where it is built), with a
plan of its own per set of sizes: it declines anything but exactly the arrays the plan expects,
and `run` (Python, ctypes) handles the rest. Graphs that need anything else between kernels
(an interpreter node other than a reshape, a matmul by a non-constant matrix) run step by step
instead (`CompiledGraph`).
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, field

import numpy as np

try:  # the C call path (setup.py builds it where a C compiler exists)
    from codegen import _fastcall
except ImportError:
    _fastcall = None

ALIGN = 64


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


@dataclass
class Call:
    """One kernel call of the native entry: `args` are ('buffer', id), ('address', int),
    ('size', fn(shapes, bindings)) or ('status', kernel name: the address of a word the kernel
    sets when an index it reads by is out of range); `how(shapes, bindings, workers)` gives
    the `.packed` entry to run it with (a function name), the range that entry's lo..hi
    cover, and the number of parts to split that range into."""

    args: list
    how: object


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

    def __init__(
        self, graph, calls: list[Call], buffers: list[Buffer], value_buffer: dict, entry, addresses, workers
    ):
        self.graph = graph
        self.addresses = addresses  # function name -> address
        self.calls = calls
        self.buffers = buffers
        self.value_buffer = value_buffer  # value name -> buffer id
        self.entry = entry  # ctypes function (table, pool state, dispatch)
        self.entry_address = ctypes.cast(entry, ctypes.c_void_p).value
        self.workers = workers
        self._bound: dict[tuple, _Bound] = {}
        self._local = threading.local()
        self._types = {v.name: v.type for v in graph.inputs}
        self._types.update({name: v.type for name, v in graph.weights.items()})
        for node in graph.nodes:
            self._types.update({v.name: v.type for v in node.outputs})
        self._symbols = sorted(graph.symbols())
        outputs = [i for i, b in enumerate(buffers) if b.kind == "output"]
        # per graph output, its array among run()'s results
        self.output_of = [outputs.index(value_buffer[v.name]) for v in graph.outputs]

    def bound(self, bindings: dict) -> _Bound:
        key = tuple(bindings[s] for s in self._symbols)
        plan = self._bound.get(key)
        if plan is None:
            plan = self._bound.setdefault(key, self._bind(bindings))
        return plan

    def _bind(self, bindings: dict) -> _Bound:
        from ir.types import concrete_shape

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
                    words.append(int(what(shapes, bindings)))
            function, extent, parts = call.how(shapes, bindings, self.workers)
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
            from ir.types import concrete_shape

            plan.output_shapes = [
                (i, concrete_shape(v.type.shape, bindings))
                for i, v in zip(self.output_of, self.graph.outputs, strict=True)
            ]
        return plan.output_shapes

    def memory(self, bindings: dict) -> tuple[int, int]:
        """(arena bytes, bytes of all intermediates) for these symbol sizes."""
        plan = self.bound(bindings)
        return plan.arena, plan.intermediates
