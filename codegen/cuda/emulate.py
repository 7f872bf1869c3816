"""Run generated CUDA C on the CPU: the semantics of the CUDA renderer, tested without a GPU.

The kernel's source is compiled as C++ (the system's `g++`) after a small header that makes
CUDA's names plain C++: `__global__` and `__device__` vanish, `__shared__` is static (blocks
run one after another), `threadIdx`, `blockIdx`, `blockDim` and `gridDim` are thread-local
variables, and each CUDA thread of a block is a fiber (ucontext), so `__syncthreads` switches
to a scheduler that resumes the block's threads in a chosen order (forward, reverse or
shuffled) until all reach the barrier: a kernel that misses a barrier reads another thread's
result before it is written in one of the orders and fails the comparison. A barrier reached
by some threads and not others is reported. Warp-level intrinsics are not emulated; the
renderer uses none.

    >>> out = run(kernel, {"in0": x}, bindings={"batch": 3}, order="reverse")
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
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
#include <algorithm>
#include <functional>
#include <numeric>
#include <random>
#include <vector>
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
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

// Each CUDA thread of a block is a fiber (ucontext) with a stack of its own; __syncthreads
// switches back to the scheduler, which resumes every thread of the block once per phase (in
// the launch's order; shuffled anew each phase) until all have finished. A thread that
// finishes while others wait at a barrier is a divergent barrier: the launch reports it.
enum { GC_RUNNING, GC_WAITING, GC_DONE };
struct gc_fiber { ucontext_t context; int state; };
static ucontext_t gc_scheduler;
static std::vector<gc_fiber> gc_fibers;
static unsigned gc_current;
static const std::function<void()>* gc_body;

static void gc_entry() {
  (*gc_body)();
  gc_fibers[gc_current].state = GC_DONE;
  swapcontext(&gc_fibers[gc_current].context, &gc_scheduler);
}

static inline void __syncthreads() {
  gc_fibers[gc_current].state = GC_WAITING;
  swapcontext(&gc_fibers[gc_current].context, &gc_scheduler);
}

// blocks in sequence; the threads of a block in `order`: 0 forward, 1 reverse, 2 shuffled.
// Returns 0, or 1 after a divergent barrier.
static int gc_launch(unsigned grid, unsigned block, int order, const std::function<void()>& thread) {
  const size_t stack = 1 << 16;
  std::vector<char> stacks((size_t)block * stack);
  gridDim = {grid, 1, 1};
  blockDim = {block, 1, 1};
  gc_body = &thread;
  gc_fibers.assign(block, gc_fiber());
  std::vector<unsigned> ids(block);
  for (unsigned b = 0; b < grid; b++) {
    blockIdx = {b, 0, 0};
    for (unsigned t = 0; t < block; t++) {
      getcontext(&gc_fibers[t].context);
      gc_fibers[t].context.uc_stack.ss_sp = &stacks[(size_t)t * stack];
      gc_fibers[t].context.uc_stack.ss_size = stack;
      gc_fibers[t].context.uc_link = &gc_scheduler;
      makecontext(&gc_fibers[t].context, gc_entry, 0);
      gc_fibers[t].state = GC_RUNNING;
    }
    std::mt19937 rng(1234 + b);
    for (;;) {
      std::iota(ids.begin(), ids.end(), 0u);
      if (order == 1) std::reverse(ids.begin(), ids.end());
      if (order == 2) std::shuffle(ids.begin(), ids.end(), rng);
      for (unsigned t : ids) {
        if (gc_fibers[t].state == GC_DONE) continue;
        gc_fibers[t].state = GC_RUNNING;
        threadIdx = {t, 0, 0};
        gc_current = t;
        swapcontext(&gc_scheduler, &gc_fibers[t].context);
      }
      unsigned done = 0, waiting = 0;
      for (unsigned t = 0; t < block; t++) (gc_fibers[t].state == GC_DONE ? done : waiting)++;
      if (done == block) break;
      if (done > 0) return 1;  // some threads finished, others wait at a barrier
    }
  }
  return 0;
}
"""


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
    call = f"{kernel.name}({', '.join(casts)})"
    return (
        f'extern "C" int gc_launch_{kernel.name}(const long long* args, unsigned grid, unsigned block, '
        f"int order) {{\n  return gc_launch(grid, block, order, [&] {{ {call}; }});\n}}\n"
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
    if launch(table.ctypes.data, grid, block, ORDERS[order]):
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
