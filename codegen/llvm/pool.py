"""A native worker pool: kernels split over the cores without a Python thread hand-off.

Handing a part of a kernel to a Python thread pool costs 70-125 us on the machines we measured
(waking an idle vCPU); most kernels of a small model take less than that. Here the workers are
threads that live inside a native loop (`graphc_worker`, generated below and called once
through ctypes, which releases the GIL): they spin on the job's generation for a while after
each job, then poll with short sleeps for about half a second, then sleep on a futex (a
timer's wake keeps a worker on its own CPU; a futex wake from the dispatcher could put it on
the dispatcher's, measured: half of the rounds after a pause ran single-threaded, now 1 in 24;
polling costs about 12% of a core for that half second). `graphc_dispatch` publishes a job (a
kernel's `.packed` entry, its argument array, a row count and a number of parts) and runs
parts itself too, so a job finishes even when no worker is awake (or none exists: after fork,
in a child process).

A part is claimed with a compare-and-swap on one word holding (generation << 32 | next part),
so a late worker can never run a part of a newer job with the arguments of an older one.

    state word   contents
    0            generation (the low 32 bits are the futex word)
    1..4         the job: entry address, argument array address, rows, parts
    8            ticket: generation << 32 | next part to claim
    16           parts finished
    24           shutdown flag
    32           sleeping workers
    40           the CPU the last job was dispatched from (Linux)

A worker that finds itself on the dispatching thread's CPU steps aside: it narrows its CPU
mask to exclude that CPU for a moment, which makes the kernel move it. Without this, a worker
woken from its futex could stay on the caller's CPU for seconds while another CPU idled (seen
on a 2-vCPU VM: every split call then took as long as one thread, 294 instead of 147 us).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import platform
import sys
import threading

import numpy as np

POOL_VERSION = "3"  # bump when the generated pool code changes
SPINS = 200_000  # pause instructions (~1-2 ms) before a worker polls
POLL_US, POLLS = 100, 4_000  # then sleeps of 100 us for about 0.5 s, before a futex wait
YIELD_EVERY = 1024  # pauses between two sched_yield calls (a power of two)
GENERATION, ENTRY, ARGS, ROWS, PARTS, TICKET, DONE, SHUTDOWN, SLEEPERS = 0, 1, 2, 3, 4, 8, 16, 24, 32
DISPATCHER_CPU = 40
STATE_WORDS = 48
CPU_SET_WORDS = 16  # a cpu_set_t: 1024 bits
_FUTEX = {"x86_64": 202, "AMD64": 202, "aarch64": 98, "arm64": 98}.get(platform.machine())


def _module():
    """The pool's LLVM module (llvmlite.ir)."""
    from llvmlite import ir

    I32, I64 = ir.IntType(32), ir.IntType(64)  # noqa: N806
    module = ir.Module(name="graphc_pool")
    ptr = I64.as_pointer()
    part_type = ir.FunctionType(ir.VoidType(), [ptr, I64, I64]).as_pointer()
    x86 = platform.machine() in ("x86_64", "AMD64")
    pause = ir.Function(module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause") if x86 else None
    syscall = ir.Function(module, ir.FunctionType(I64, [I64], var_arg=True), "syscall")
    usleep = ir.Function(module, ir.FunctionType(I32, [I32]), "usleep")
    sched_yield = ir.Function(module, ir.FunctionType(I32, []), "sched_yield")
    linux = sys.platform.startswith("linux")
    if linux:
        sched_getcpu = ir.Function(module, ir.FunctionType(I32, []), "sched_getcpu")
        mask_type = ir.FunctionType(I32, [I32, I64, ptr])
        get_mask = ir.Function(module, mask_type, "sched_getaffinity")
        set_mask = ir.Function(module, mask_type, "sched_setaffinity")

    def word(b, state, index):
        return b.gep(state, [ir.Constant(I64, index)], inbounds=True)

    def relax(b):
        if pause is not None:
            b.call(pause, [])

    def run_parts(b, fn, state, generation):
        """Claim and run parts of job `generation` until none is left; leaves b after and
        returns how many it ran."""
        entry = b.inttoptr(b.load_atomic(word(b, state, ENTRY), "acquire", 8), part_type)
        args = b.inttoptr(b.load_atomic(word(b, state, ARGS), "acquire", 8), ptr)
        rows = b.load_atomic(word(b, state, ROWS), "acquire", 8)
        parts = b.load_atomic(word(b, state, PARTS), "acquire", 8)
        head = fn.append_basic_block("claim")
        run = fn.append_basic_block("run")
        done = fn.append_basic_block("claimed_all")
        before = b.block
        b.branch(head)
        b.position_at_end(head)
        ran = b.phi(I64, "ran")
        ran.add_incoming(ir.Constant(I64, 0), before)
        ticket = b.load_atomic(word(b, state, TICKET), "acquire", 8)
        part = b.and_(ticket, ir.Constant(I64, 0xFFFFFFFF))
        mine = b.icmp_unsigned("==", b.lshr(ticket, ir.Constant(I64, 32)), generation)
        more = b.and_(mine, b.icmp_signed("<", part, parts))
        swap = fn.append_basic_block("swap")
        b.cbranch(more, swap, done)
        b.position_at_end(swap)
        result = b.cmpxchg(
            word(b, state, TICKET), ticket, b.add(ticket, ir.Constant(I64, 1)), "acq_rel", "acquire"
        )
        b.cbranch(b.extract_value(result, 1), run, head)
        ran.add_incoming(ran, swap)
        b.position_at_end(run)
        lo = b.sdiv(b.mul(rows, part), parts)
        hi = b.sdiv(b.mul(rows, b.add(part, ir.Constant(I64, 1))), parts)
        b.call(entry, [args, lo, hi])
        b.atomic_rmw("add", word(b, state, DONE), ir.Constant(I64, 1), "acq_rel")
        ran.add_incoming(b.add(ran, ir.Constant(I64, 1)), b.block)
        b.branch(head)
        b.position_at_end(done)
        return ran

    def step_aside(b, fn, state):
        """If this thread is on the CPU the last job came from, leave it: exclude it from the
        CPU mask (the kernel moves the thread at once), then restore the mask."""
        here = b.sext(b.call(sched_getcpu, []), I64)
        there = b.load_atomic(word(b, state, DISPATCHER_CPU), "acquire", 8)
        move = fn.append_basic_block("step_aside")
        stay = fn.append_basic_block("stay")
        inside = b.icmp_unsigned("<", here, ir.Constant(I64, 64 * CPU_SET_WORDS))
        b.cbranch(b.and_(inside, b.icmp_signed("==", here, there)), move, stay)
        b.position_at_end(move)
        mask_array = ir.ArrayType(I64, CPU_SET_WORDS)
        saved = b.gep(b.alloca(mask_array), [ir.Constant(I32, 0), ir.Constant(I32, 0)])
        narrowed = b.gep(b.alloca(mask_array), [ir.Constant(I32, 0), ir.Constant(I32, 0)])
        size = ir.Constant(I64, 8 * CPU_SET_WORDS)
        b.call(get_mask, [ir.Constant(I32, 0), size, saved])
        others = ir.Constant(I64, 0)
        index = b.lshr(here, ir.Constant(I64, 6))
        bit = b.shl(ir.Constant(I64, 1), b.and_(here, ir.Constant(I64, 63)))
        for i in range(CPU_SET_WORDS):
            value = b.load(b.gep(saved, [ir.Constant(I64, i)]))
            keep = b.select(
                b.icmp_unsigned("==", index, ir.Constant(I64, i)), b.not_(bit), ir.Constant(I64, -1)
            )
            value = b.and_(value, keep)
            b.store(value, b.gep(narrowed, [ir.Constant(I64, i)]))
            others = b.or_(others, value)
        moved = fn.append_basic_block("moved")
        b.cbranch(b.icmp_unsigned("!=", others, ir.Constant(I64, 0)), moved, stay)  # (no other CPU)
        b.position_at_end(moved)
        b.call(set_mask, [ir.Constant(I32, 0), size, narrowed])
        b.call(set_mask, [ir.Constant(I32, 0), size, saved])
        b.branch(stay)
        b.position_at_end(stay)

    # void graphc_worker(i64* state): until shutdown, wait for a new generation and help run it
    worker = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr]), "graphc_worker")
    (state,) = worker.args
    b = ir.IRBuilder(worker.append_basic_block("entry"))
    first = b.load_atomic(word(b, state, GENERATION), "acquire", 8)
    wait = worker.append_basic_block("wait")
    check = worker.append_basic_block("check")
    spin = worker.append_basic_block("spin")
    sleep = worker.append_basic_block("sleep")
    work = worker.append_basic_block("work")
    leave = worker.append_basic_block("leave")
    start = b.block
    b.branch(wait)
    b.position_at_end(wait)
    seen = b.phi(I64, "seen")
    seen.add_incoming(first, start)
    spins = b.phi(I64, "spins")
    spins.add_incoming(ir.Constant(I64, 0), start)
    b.branch(check)
    b.position_at_end(check)
    now = b.load_atomic(word(b, state, GENERATION), "acquire", 8)
    b.cbranch(b.icmp_unsigned("!=", now, seen), work, spin)
    b.position_at_end(spin)
    stop = b.load_atomic(word(b, state, SHUTDOWN), "acquire", 8)
    stopping = b.icmp_unsigned("!=", stop, ir.Constant(I64, 0))
    keep_spinning = worker.append_basic_block("keep_spinning")
    b.cbranch(stopping, leave, keep_spinning)
    b.position_at_end(keep_spinning)
    relax(b)
    more = b.add(spins, ir.Constant(I64, 1))
    # every YIELD_EVERY spins, give the core to any other runnable thread (another library's
    # pool, numpy's BLAS): a spinner that never yields holds the core until the scheduler
    # preempts it, milliseconds later
    yield_now = worker.append_basic_block("yield")
    spun = worker.append_basic_block("spun")
    every = b.and_(more, ir.Constant(I64, YIELD_EVERY - 1))
    b.cbranch(b.icmp_unsigned("==", every, ir.Constant(I64, 0)), yield_now, spun)
    b.position_at_end(yield_now)
    b.call(sched_yield, [])
    if linux:
        step_aside(b, worker, state)
    b.branch(spun)
    b.position_at_end(spun)
    back = b.block
    b.cbranch(b.icmp_signed("<", more, ir.Constant(I64, SPINS)), wait, sleep)
    seen.add_incoming(seen, back)
    spins.add_incoming(more, back)
    b.position_at_end(sleep)
    # first poll: sleep POLL_US at a time for POLLS rounds. A timer wakes the worker on its own
    # CPU, where a futex wake from the dispatcher may land it on the dispatcher's
    poll = worker.append_basic_block("poll")
    futex = worker.append_basic_block("futex")
    b.cbranch(b.icmp_signed("<", more, ir.Constant(I64, SPINS + POLLS)), poll, futex)
    b.position_at_end(poll)
    b.call(usleep, [ir.Constant(I32, POLL_US)])
    if linux:
        step_aside(b, worker, state)
    back = b.block
    b.branch(wait)
    seen.add_incoming(seen, back)
    spins.add_incoming(more, back)
    b.position_at_end(futex)
    b.atomic_rmw("add", word(b, state, SLEEPERS), ir.Constant(I64, 1), "acq_rel")
    if _FUTEX is not None and sys.platform.startswith("linux"):
        # futex(&generation, FUTEX_WAIT_PRIVATE, seen, 10 ms): returns at once if it changed
        timeout = b.alloca(ir.ArrayType(I64, 2))
        b.store(ir.Constant(ir.ArrayType(I64, 2), [0, 10_000_000]), timeout)
        futex_word = b.bitcast(word(b, state, GENERATION), I32.as_pointer())
        b.call(
            syscall,
            [ir.Constant(I64, _FUTEX), futex_word, ir.Constant(I32, 128), b.trunc(seen, I32), timeout],
        )
    else:
        b.call(usleep, [ir.Constant(I32, 200)])
    b.atomic_rmw("sub", word(b, state, SLEEPERS), ir.Constant(I64, 1), "acq_rel")
    back = b.block
    b.branch(wait)
    seen.add_incoming(seen, back)
    # back to the futex unless a job came (the check comes first): a timeout neither spins nor polls
    spins.add_incoming(ir.Constant(I64, SPINS + POLLS), back)
    b.position_at_end(work)
    run_parts(b, worker, state, now)
    back = b.block
    b.branch(wait)
    seen.add_incoming(now, back)
    spins.add_incoming(ir.Constant(I64, 0), back)
    b.position_at_end(leave)
    b.ret_void()

    # void graphc_dispatch(i64* state, i64 entry, i64* args, i64 rows, i64 parts)
    dispatch = ir.Function(
        module, ir.FunctionType(ir.VoidType(), [ptr, I64, ptr, I64, I64]), "graphc_dispatch"
    )
    state, entry, args, rows, parts = dispatch.args
    b = ir.IRBuilder(dispatch.append_basic_block("entry"))
    generation = b.add(b.load_atomic(word(b, state, GENERATION), "acquire", 8), ir.Constant(I64, 1))
    generation = b.and_(generation, ir.Constant(I64, 0xFFFFFFFF))
    b.store_atomic(entry, word(b, state, ENTRY), "release", 8)
    b.store_atomic(b.ptrtoint(args, I64), word(b, state, ARGS), "release", 8)
    b.store_atomic(rows, word(b, state, ROWS), "release", 8)
    b.store_atomic(parts, word(b, state, PARTS), "release", 8)
    b.store_atomic(ir.Constant(I64, 0), word(b, state, DONE), "release", 8)
    cpu = b.sext(b.call(sched_getcpu, []), I64) if linux else ir.Constant(I64, -1)
    b.store_atomic(cpu, word(b, state, DISPATCHER_CPU), "release", 8)
    b.store_atomic(b.shl(generation, ir.Constant(I64, 32)), word(b, state, TICKET), "release", 8)
    b.store_atomic(generation, word(b, state, GENERATION), "seq_cst", 8)
    sleepers = b.load_atomic(word(b, state, SLEEPERS), "seq_cst", 8)
    wake = dispatch.append_basic_block("wake")
    own = dispatch.append_basic_block("own")
    b.cbranch(b.icmp_signed(">", sleepers, ir.Constant(I64, 0)), wake, own)
    b.position_at_end(wake)
    if _FUTEX is not None and sys.platform.startswith("linux"):
        futex_word = b.bitcast(word(b, state, GENERATION), I32.as_pointer())
        b.call(
            syscall, [ir.Constant(I64, _FUTEX), futex_word, ir.Constant(I32, 129), ir.Constant(I32, 1 << 30)]
        )
    b.branch(own)
    b.position_at_end(own)
    ran = run_parts(b, dispatch, state, generation)
    wait = dispatch.append_basic_block("wait_done")
    pause_block = dispatch.append_basic_block("wait_pause")
    finished = dispatch.append_basic_block("finished")
    b.branch(wait)
    b.position_at_end(wait)
    done = b.load_atomic(word(b, state, DONE), "acquire", 8)
    b.cbranch(b.icmp_signed(">=", done, parts), finished, pause_block)
    b.position_at_end(pause_block)
    relax(b)
    b.branch(wait)
    b.position_at_end(finished)
    # every part ran here while no worker was asleep: the workers are awake but were not
    # running, likely on this thread's CPU (they step aside once they run): let them run now
    awake = b.icmp_signed("==", b.load_atomic(word(b, state, SLEEPERS), "acquire", 8), ir.Constant(I64, 0))
    alone = b.and_(
        awake, b.and_(b.icmp_signed("==", ran, parts), b.icmp_signed(">", parts, ir.Constant(I64, 1)))
    )
    nudge = dispatch.append_basic_block("nudge")
    leave = dispatch.append_basic_block("leave")
    b.cbranch(alone, nudge, leave)
    b.position_at_end(nudge)
    b.call(sched_yield, [])
    b.branch(leave)
    b.position_at_end(leave)
    b.ret_void()
    return module


_compiled = []  # the pool's in-memory code where there was no library (kept alive)


def _code() -> dict[str, int]:
    """The addresses of graphc_worker and graphc_dispatch: from the cache (no LLVM), else
    compiled into it, else compiled in memory."""
    from codegen import library

    names = ["graphc_worker", "graphc_dispatch"]
    key = pool_key()
    addresses = library.load(key, names)
    if addresses is None:
        from codegen.llvm.compiler import build_library, compile_ir

        text = str(_module())
        addresses = build_library(text, key, names)
        if addresses is None:
            _compiled.append(compile_ir(text, names))
            addresses = _compiled[-1].addresses
    return addresses


def pool_library() -> bytes | None:
    """The pool's shared library (to embed in a module file beside the graphs using it)."""
    from codegen import library

    _code()
    return library.read(pool_key())


def pool_key() -> str:
    """The pool's library in the cache."""
    from codegen import library

    settings = f"spins={SPINS} yield={YIELD_EVERY} poll={POLL_US}x{POLLS}"
    return library.library_key(f"graphc worker pool {POOL_VERSION} {settings}")


class Pool:
    """`workers` native worker threads and the state they share; `run` splits one kernel call."""

    def __init__(self, workers: int) -> None:
        addresses = _code()
        self._state = np.zeros(STATE_WORDS, dtype=np.int64)
        address = self._state.ctypes.data
        signature = ctypes.CFUNCTYPE(
            None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64
        )
        self._dispatch = signature(addresses["graphc_dispatch"])
        self.dispatch_address = addresses["graphc_dispatch"]
        self.state_address = address
        worker = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(addresses["graphc_worker"])
        self._address = address
        self.lock = threading.Lock()  # one job at a time
        self._threads = [
            threading.Thread(target=worker, args=(address,), name=f"graphc-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()
        self.workers = workers

    def run(self, entry: int, args: tuple, rows: int, parts: int) -> None:
        """Call `entry(args, lo, hi)` over rows 0..rows in `parts` parts, on this thread and the
        workers; returns when all are done. One job at a time (calls from several threads
        queue on a lock)."""
        array = (ctypes.c_int64 * len(args))(*args)
        with self.lock:
            self._dispatch(self._address, entry, array, rows, parts)

    def close(self) -> None:
        """Stop the workers (they finish any part they run) and wait for them."""
        self._state[SHUTDOWN] = 1  # sleeping workers see it within their 10 ms futex timeout
        for t in self._threads:
            t.join()
        self._threads = []


_pool: Pool | None = None
_pool_lock = threading.Lock()


def pool(workers: int) -> Pool:
    """The process's pool (created on first use with `workers` threads besides the caller)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = Pool(workers)
            atexit.register(_pool.close)  # before the native code goes away
        return _pool


def _forget_in_child() -> None:  # a forked child has none of the parent's threads
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
