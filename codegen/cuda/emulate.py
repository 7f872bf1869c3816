"""Run generated CUDA C on the CPU: the semantics of the CUDA renderer, tested without a GPU.

The kernel's source is compiled as C++ (the system's `g++`) after a small header that makes
CUDA's names plain C++: `__global__` and `__device__` vanish, shared arrays are static (blocks
run one after another) and check every access (two threads touching an element between the same
two barriers, one of them writing, is a data race; an index outside the array is a fault:
either raises `SharedMemoryFault`, whatever the thread order), `threadIdx`, `blockIdx`,
`blockDim` and `gridDim` are thread-local variables, and each CUDA thread of a block is a fiber
(ucontext), so `__syncthreads` switches to a scheduler that resumes the block's threads in a
chosen order (forward, reverse or shuffled) until all reach the barrier: a kernel that misses a
barrier reads another thread's result before it is written in one of the orders and fails the
comparison. A barrier reached by some threads and not others is reported. The one warp-level
intrinsic the renderer uses, `__shfl_down_sync` over a whole warp, is a warp-wide barrier in
the same scheduler: each lane leaves its value, waits for the warp, reads its partner's and
waits again. `EmulatedDevice` runs a compiled graph's module this way
(codegen.cuda.executable).

    >>> out = run(kernel, [x], bindings={"batch": 3}, order="reverse")
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from codegen.cuda.device import Device
from codegen.cuda.render import BLOCK, launch_config, operands, parameters, render_kernel, size_values
from codegen.kernel import Kernel, Pool2d
from codegen.plan import out_of_range
from ir.types import concrete_shape

ORDERS = {"forward": 0, "reverse": 1, "shuffled": 2}

HEADER = r"""
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#define __global__
#define __device__
#define __forceinline__ inline
#define GC_DEVICE inline
struct gc_dim3 { unsigned x, y, z; };
static thread_local gc_dim3 threadIdx, blockIdx, blockDim, gridDim;
static inline float __int_as_float(int v) { float f; memcpy(&f, &v, 4); return f; }
static inline double __longlong_as_double(long long v) { double d; memcpy(&d, &v, 8); return d; }
// fibers switch only at barriers: a read-modify-write is atomic here
template <typename T> static inline T atomicAdd(T* at, T value) {
  T old = *at;
  *at = old + value;
  return old;
}

// Shared memory with a race detector. Every element remembers the thread that last wrote it
// and the one that last read it (or "several"), with the barrier epoch of each: epochs count
// the block barriers passed (and blocks begun) since the library was loaded, so each block's
// are new. Two threads touching one element in one epoch, one of them writing, is a data race:
// which goes first is the scheduler's choice. An index outside the array is reported too.
static unsigned gc_epoch = 1;  // (zero-initialized records, epoch 0, never match)
static const char* gc_fault;  // what went wrong first in this launch, or NULL
static const char* gc_fault_array;
static long long gc_fault_index;
static int gc_fault_threads[2];
struct gc_seen { unsigned write_epoch, read_epoch; int writer, reader; };
static inline void gc_report(const char* what, const char* array, long long at, int a, int b) {
  if (gc_fault) return;
  gc_fault = what;
  gc_fault_array = array;
  gc_fault_index = at;
  gc_fault_threads[0] = a;
  gc_fault_threads[1] = b;
}
template <typename T> struct gc_ref {  // one element of a shared array, as a kernel uses it
  T* value;
  gc_seen* seen;
  const char* array;
  long long at;
  operator T() const {  // a read
    const int me = (int)threadIdx.x;
    if (seen->write_epoch == gc_epoch && seen->writer != me)
      gc_report("read while another thread writes it", array, at, seen->writer, me);
    if (seen->read_epoch != gc_epoch) {
      seen->read_epoch = gc_epoch;
      seen->reader = me;
    } else if (seen->reader != me) {
      seen->reader = -1;  // several threads
    }
    return *value;
  }
  gc_ref& operator=(T v) {
    const int me = (int)threadIdx.x;
    if (seen->write_epoch == gc_epoch && seen->writer != me)
      gc_report("written by two threads", array, at, seen->writer, me);
    if (seen->read_epoch == gc_epoch && seen->reader != me)
      gc_report("written while another thread reads it", array, at, seen->reader, me);
    seen->write_epoch = gc_epoch;
    seen->writer = me;
    *value = v;
    return *this;
  }
  gc_ref& operator=(const gc_ref& other) { return *this = (T)other; }
};
template <typename T, long long N> struct gc_shared {
  T values[N];
  gc_seen seen[N];
  const char* name;
  gc_ref<T> operator[](long long i) {
    if (i < 0 || i >= N) {
      gc_report("indexed out of bounds", name, i, (int)threadIdx.x, -1);
      i = 0;
    }
    return gc_ref<T>{&values[i], &seen[i], name, i};
  }
};
template <typename T, long long N, long long M> struct gc_shared2 {
  gc_shared<T, N * M> flat;
  struct gc_row {
    gc_shared<T, N * M>* flat;
    long long first;
    gc_ref<T> operator[](long long j) {
      return (j < 0 || j >= M) ? (*flat)[-1] : (*flat)[first + j];
    }
  };
  gc_row operator[](long long i) { return gc_row{&flat, (i < 0 || i >= N) ? -N * M : i * M}; }
};
#define GC_SHARED(T, name, n) static gc_shared<T, n> name = {{}, {}, #name}
#define GC_SHARED2(T, name, n, m) static gc_shared2<T, n, m> name = {{{}, {}, #name}}
extern "C" const char* gc_fault_text(long long* index, int* threads) {
  *index = gc_fault_index;
  threads[0] = gc_fault_threads[0];
  threads[1] = gc_fault_threads[1];
  return gc_fault ? gc_fault_array : NULL;
}
extern "C" const char* gc_fault_kind() { return gc_fault; }

// Each CUDA thread of a block is a fiber with a stack of its own; __syncthreads switches back
// to the scheduler, which resumes every thread of the block once per phase (in the launch's
// order; shuffled anew each phase) until all have finished. A thread that finishes while others
// wait at a barrier is a divergent barrier: the launch reports it. A fiber starts on its stack
// through ucontext once; every later switch is a _setjmp/_longjmp pair, which (unlike
// swapcontext) makes no system call to save the signal mask. C headers only: the emulation of
// a graph compiles in a fraction of a second.
enum { GC_RUNNING, GC_WAITING, GC_SHUFFLING, GC_DONE, GC_MAX_THREADS = 1024 };
struct gc_fiber { ucontext_t start; jmp_buf at; int state, started; };
static jmp_buf gc_scheduler;
static gc_fiber gc_fibers[GC_MAX_THREADS];
static unsigned gc_current;
static void (*gc_body)(const long long*);
static const long long* gc_args;

static void gc_entry() {
  gc_body(gc_args);
  gc_fibers[gc_current].state = GC_DONE;
  _longjmp(gc_scheduler, 1);  // (its stack is not used again)
}

static inline void __syncthreads() {
  gc_fiber& self = gc_fibers[gc_current];
  self.state = GC_WAITING;
  if (!_setjmp(self.at)) _longjmp(gc_scheduler, 1);
}

// A warp shuffle: each lane of the warp leaves its value, waits until all 32 have, reads its
// partner's, and waits again before any lane leaves a new one. The scheduler lets a warp's lanes
// past the shuffle once every one of them has reached it (the mask must be the whole warp).
static unsigned char gc_lanes[GC_MAX_THREADS][8];

static inline void gc_warp_sync() {
  gc_fiber& self = gc_fibers[gc_current];
  self.state = GC_SHUFFLING;
  if (!_setjmp(self.at)) _longjmp(gc_scheduler, 1);
}

template <typename T> static inline T __shfl_down_sync(unsigned mask, T value, int delta) {
  static_assert(sizeof(T) <= 8, "a shuffle moves at most 8 bytes");
  const unsigned me = threadIdx.x;
  memcpy(gc_lanes[me], &value, sizeof(T));
  gc_warp_sync();
  T out = value;  // (a lane whose partner is past the warp's end keeps its own value)
  if (me % 32 + delta < 32 && me + delta < blockDim.x) memcpy(&out, gc_lanes[me + delta], sizeof(T));
  gc_warp_sync();
  return out;
}

static void gc_resume(unsigned t) {
  if (_setjmp(gc_scheduler)) return;  // back from the fiber: at a barrier, or done
  if (!gc_fibers[t].started) {
    gc_fibers[t].started = 1;
    setcontext(&gc_fibers[t].start);
  }
  _longjmp(gc_fibers[t].at, 1);
}

// blocks in sequence; the threads of a block in `order`: 0 forward, 1 reverse, 2 shuffled;
// each thread runs body(args). Returns 0, 1 after a divergent barrier or shuffle (reached by
// some threads of the block or warp, not all), 2 for a block too large, 3 after a fault in
// shared memory (a race, an index out of bounds: gc_fault_text).
static int gc_launch(unsigned grid, unsigned block, int order, void (*body)(const long long*),
                     const long long* args) {
  const size_t stack = 1 << 16;
  if (block > GC_MAX_THREADS) return 2;
  char* stacks = (char*)malloc((size_t)block * stack);
  unsigned ids[GC_MAX_THREADS];
  int status = 0;
  gridDim = {grid, 1, 1};
  blockDim = {block, 1, 1};
  gc_body = body;
  gc_args = args;
  gc_fault = NULL;
  for (unsigned b = 0; b < grid && status == 0; b++) {
    blockIdx = {b, 0, 0};
    gc_epoch++;  // (a block's shared memory is its own)
    for (unsigned t = 0; t < block; t++) {
      getcontext(&gc_fibers[t].start);
      gc_fibers[t].start.uc_stack.ss_sp = stacks + (size_t)t * stack;
      gc_fibers[t].start.uc_stack.ss_size = stack;
      gc_fibers[t].start.uc_link = NULL;
      makecontext(&gc_fibers[t].start, gc_entry, 0);
      gc_fibers[t].state = GC_RUNNING;
      gc_fibers[t].started = 0;
    }
    uint64_t random = 1234 + b;  // (a fixed xorshift sequence per block: runs repeat)
    for (;;) {
      for (unsigned t = 0; t < block; t++) ids[t] = order == 1 ? block - 1 - t : t;
      if (order == 2) {
        for (unsigned t = block - 1; t > 0; t--) {  // Fisher-Yates
          random ^= random << 13; random ^= random >> 7; random ^= random << 17;
          unsigned other = (unsigned)(random % (t + 1)), kept = ids[t];
          ids[t] = ids[other];
          ids[other] = kept;
        }
      }
      for (unsigned i = 0; i < block; i++) {
        unsigned t = ids[i];
        if (gc_fibers[t].state != GC_RUNNING) continue;
        threadIdx = {t, 0, 0};
        gc_current = t;
        gc_resume(t);
      }
      // every thread now waits at a barrier or a shuffle, or is done
      unsigned done = 0, waiting = 0, released = 0;
      for (unsigned t = 0; t < block; t++) {
        done += gc_fibers[t].state == GC_DONE;
        waiting += gc_fibers[t].state == GC_WAITING;
      }
      if (done == block) break;
      for (unsigned lo = 0; lo < block; lo += 32) {  // warps whose lanes all reached a shuffle
        unsigned hi = lo + 32 < block ? lo + 32 : block, shuffling = 0;
        for (unsigned t = lo; t < hi; t++) shuffling += gc_fibers[t].state == GC_SHUFFLING;
        if (shuffling == hi - lo) {
          for (unsigned t = lo; t < hi; t++) gc_fibers[t].state = GC_RUNNING;
          released++;
        }
      }
      if (released) continue;
      if (waiting == block) {  // the whole block is at the barrier
        for (unsigned t = 0; t < block; t++) gc_fibers[t].state = GC_RUNNING;
        gc_epoch++;
        continue;
      }
      // some threads finished or wait at a shuffle while others wait at a barrier: divergent
      status = 1;
      break;
    }
  }
  free(stacks);
  return status ? status : gc_fault ? 3 : 0;
}
"""


class SharedMemoryFault(RuntimeError):
    """Emulated threads raced on shared memory, or indexed a shared array out of bounds."""


def _fault(lib, kernel: str) -> str:
    index, threads = ctypes.c_longlong(), (ctypes.c_int * 2)()
    lib.gc_fault_text.restype = ctypes.c_char_p
    lib.gc_fault_kind.restype = ctypes.c_char_p
    array = lib.gc_fault_text(ctypes.byref(index), threads).decode()
    kind = lib.gc_fault_kind().decode()
    who = f"thread {threads[0]}" if threads[1] < 0 else f"threads {threads[0]} and {threads[1]}"
    if threads[0] == -1 and threads[1] >= 0:
        who = f"thread {threads[1]} and several others"
    between = "" if "bounds" in kind else " between the same two barriers"
    return f"{kernel}: shared memory {array}[{index.value}] {kind}{between} ({who})"


class EmulationUnavailable(RuntimeError):
    """No C++ compiler to build the emulation with."""


def compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


def _launcher(kernel) -> str:
    """`gc_launch_<name>(args, grid, block, order)`: the kernel's arguments from an int64 array."""
    casts = []
    for i, (ctype, _) in enumerate(parameters(kernel)):
        plain = ctype.replace("__restrict__", "").strip()
        casts.append(f"({plain})args[{i}]")
    return (
        f"static void gc_body_{kernel.name}(const long long* args) {{ {kernel.name}({', '.join(casts)}); }}\n"
        f'extern "C" int gc_launch_{kernel.name}(const long long* args, unsigned grid, unsigned block, '
        f"int order) {{\n  return gc_launch(grid, block, order, gc_body_{kernel.name}, args);\n}}\n"
    )


_libraries: dict[str, ctypes.CDLL] = {}


def build(kernel, source: str | None = None) -> ctypes.CDLL:
    """The kernel's source (render_kernel, or `source` in its place: a test's edit of it) with
    the header and a launcher, compiled as a shared library (cached by its text for this
    process's life)."""
    return build_module([kernel], source or render_kernel(kernel))


def build_module(kernels, source: str) -> ctypes.CDLL:
    """`source` (holding every kernel of `kernels`) with the header and a launcher per kernel,
    compiled as a shared library (cached by its text for this process's life)."""
    source = HEADER + source + "".join(_launcher(k) for k in kernels)
    key = hashlib.sha256(source.encode()).hexdigest()[:24]
    lib = _libraries.get(key)
    if lib is not None:
        return lib
    cxx = compiler()
    if cxx is None:
        raise EmulationUnavailable("emulating CUDA kernels needs a C++ compiler (g++ or $CXX)")
    with tempfile.TemporaryDirectory(prefix="graphc-cuda-emulation-") as directory:
        path, so = Path(directory) / "module.cpp", Path(directory) / "module.so"
        path.write_text(source)
        done = subprocess.run(
            [cxx, "-std=c++17", "-O1", "-fPIC", "-shared", "-w", str(path), "-o", str(so)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            names = ", ".join(k.name for k in kernels)
            raise RuntimeError(f"the emulation of {names} did not compile:\n{done.stderr}\n{source}")
        lib = _libraries[key] = ctypes.CDLL(str(so))  # (mapped: the file may go)
    return lib


def _launch(lib, kernel, words: list[int], grid: int, block: int, order: str) -> None:
    """Run `kernel` of `lib` on the argument words (addresses and sizes) with emulated threads."""
    table = np.array(words, dtype=np.int64)
    launch = getattr(lib, f"gc_launch_{kernel.name}")
    launch.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_int]
    launch.restype = ctypes.c_int
    status = launch(table.ctypes.data, grid, block, ORDERS[order])
    if status == 2:
        raise ValueError(f"{kernel.name}: blocks of {block} threads; the emulation runs at most 1024")
    if status == 3:
        raise SharedMemoryFault(_fault(lib, kernel.name))
    if status:
        raise RuntimeError(f"{kernel.name}: a barrier was reached by some threads of a block, not all")


class EmulatedDevice(Device):
    """A CUDA device emulated on the CPU: a compiled graph's module of kernels built as C++ and
    launched on numpy arrays, threads in `order`, grids capped at `max_blocks` blocks and
    blocks other than a tiled product's at `threads` (small, so grid-stride loops go round).
    With `needs_code`, it asks for PTX or a cubin for
    `capability` as a GPU does (and records what it got in `loaded`), so the choice of code is
    tested too; it runs the source either way. One launch at a time per process (the fibers'
    scheduler is global): for tests."""

    def __init__(
        self,
        order: str = "forward",
        max_blocks: int = 65535,
        threads: int = BLOCK,
        capability: int = 90,
        needs_code: bool = False,
    ) -> None:
        if order not in ORDERS:
            raise ValueError(f"unknown thread order {order!r}; expected one of {list(ORDERS)}")
        self.order = order
        self.max_blocks = max_blocks
        self.threads = threads
        self.capability = capability
        self.needs_code = needs_code
        self.name = f"cuda (emulated on the CPU, sm_{capability}, threads {order})"
        self.loaded: list[tuple[str | None, bytes | None]] = []  # (kind, code) of every load

    def load(self, source: str, code: bytes | None, kind: str | None, kernels: list) -> dict:
        self.loaded.append((kind, code))
        lib = build_module(kernels, source)

        def launcher(kernel):
            def launch(grid: int, block: int, args: list) -> None:
                words = [a.ctypes.data if isinstance(a, np.ndarray) else int(a) for a in args]
                _launch(lib, kernel, words, grid, block, self.order)

            return launch

        return {k.name: launcher(k) for k in kernels}

    def launch_limits(self) -> dict:
        return {"max_blocks": self.max_blocks, "threads": self.threads}


def run(
    kernel,
    inputs: list[np.ndarray],
    bindings: dict,
    order: str = "forward",
    block=None,
    grid=None,
    source=None,
):
    """The kernel's output for `inputs` (the arrays its inputs read, contiguous, of their
    dtypes, in the kernel's input order) and symbol sizes `bindings`, computed by the
    emulated CUDA threads; `block` and `grid` override the launch configuration, `source`
    the rendered source."""
    lib = build(kernel, source)
    indices = isinstance(kernel, Pool2d) and kernel.indices
    out = np.empty(concrete_shape(kernel.out_shape, bindings), dtype=np.int64 if indices else kernel.dtype.np)
    kinds = [(x.dtype or kernel.dtype).np for _, x in operands(kernel)]
    arrays = [np.ascontiguousarray(a, dtype=kind) for a, kind in zip(inputs, kinds, strict=True)]
    checked = isinstance(kernel, Kernel) and kernel.checked
    status = np.zeros(1, np.int64)
    words = [out.ctypes.data, *(a.ctypes.data for a in arrays)]
    words += [status.ctypes.data] if checked else []
    words += size_values(kernel, bindings)
    blocks, threads = launch_config(kernel, bindings)
    _launch(lib, kernel, words, grid or blocks, block or threads, order)
    if checked and status[0]:
        raise IndexError(out_of_range(kernel.name))
    return out
