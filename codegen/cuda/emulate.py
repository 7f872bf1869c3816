"""Run generated CUDA C on the CPU: the semantics of the CUDA renderer, tested without a GPU.

The kernel's source is compiled as C++ (the system's `g++`) after a small header that makes
CUDA's names plain C++: `__global__` and `__device__` vanish, `threadIdx`, `blockIdx`,
`blockDim` and `gridDim` are thread-local variables, and a launcher runs the blocks one after
another and the threads of a block one at a time, in a chosen order (forward, reverse or
shuffled): a kernel whose threads depend on each other's order without a barrier gives
different results in different orders. Kernels with `__syncthreads` (reductions) will need each
CUDA thread to be a fiber; the renderer emits none yet, and this header grows with it.

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

from codegen.cuda.render import launch_config, parameters, render_kernel
from ir.types import concrete_shape

ORDERS = {"forward": 0, "reverse": 1, "shuffled": 2}

HEADER = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <algorithm>
#include <functional>
#include <numeric>
#include <random>
#include <vector>
#define __global__
#define __device__
#define __forceinline__ inline
#define GC_DEVICE inline
struct gc_dim3 { unsigned x, y, z; };
static thread_local gc_dim3 threadIdx, blockIdx, blockDim, gridDim;
static inline float __int_as_float(int v) { float f; memcpy(&f, &v, 4); return f; }
static inline double __longlong_as_double(long long v) { double d; memcpy(&d, &v, 8); return d; }

// blocks in sequence; in each, the threads one after another: order 0 forward, 1 reverse,
// 2 shuffled (a fixed seed per block)
static void gc_launch(unsigned grid, unsigned block, int order, const std::function<void()>& thread) {
  gridDim = {grid, 1, 1};
  blockDim = {block, 1, 1};
  std::vector<unsigned> ids(block);
  for (unsigned b = 0; b < grid; b++) {
    blockIdx = {b, 0, 0};
    std::iota(ids.begin(), ids.end(), 0u);
    if (order == 1) std::reverse(ids.begin(), ids.end());
    if (order == 2) { std::mt19937 rng(1234 + b); std::shuffle(ids.begin(), ids.end(), rng); }
    for (unsigned t : ids) { threadIdx = {t, 0, 0}; thread(); }
  }
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
        f'extern "C" void gc_launch_{kernel.name}(const long long* args, unsigned grid, unsigned block, '
        f"int order) {{\n  gc_launch(grid, block, order, [&] {{ {call}; }});\n}}\n"
    )


_libraries: dict[str, ctypes.CDLL] = {}


def build(kernel) -> ctypes.CDLL:
    """The kernel's source (render_kernel) with the header and a launcher, compiled as a
    shared library (cached by its text for this process's life)."""
    source = HEADER + render_kernel(kernel) + _launcher(kernel)
    key = hashlib.sha256(source.encode()).hexdigest()[:24]
    lib = _libraries.get(key)
    if lib is not None:
        return lib
    cxx = compiler()
    if cxx is None:
        raise EmulationUnavailable("emulating CUDA kernels needs a C++ compiler (g++ or $CXX)")
    with tempfile.TemporaryDirectory(prefix="graphc-cuda-emulation-") as directory:
        path, so = Path(directory) / f"{kernel.name}.cpp", Path(directory) / f"{kernel.name}.so"
        path.write_text(source)
        done = subprocess.run(
            [cxx, "-std=c++17", "-O1", "-fPIC", "-shared", "-w", str(path), "-o", str(so)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the emulation of {kernel.name} did not compile:\n{done.stderr}\n{source}")
        lib = _libraries[key] = ctypes.CDLL(str(so))  # (mapped: the file may go)
    return lib


def run(kernel, inputs: list[np.ndarray], bindings: dict, order: str = "forward", block=None, grid=None):
    """The kernel's output for `inputs` (the arrays its inputs read, contiguous, of their
    dtypes, in the kernel's input order) and symbol sizes `bindings`, computed by the
    emulated CUDA threads; `block` and `grid` override the launch configuration."""
    lib = build(kernel)
    out = np.empty(concrete_shape(kernel.out_shape, bindings), dtype=kernel.dtype.np)
    kinds = [(x.dtype or kernel.dtype).np for x in kernel.inputs]
    arrays = [np.ascontiguousarray(a, dtype=kind) for a, kind in zip(inputs, kinds, strict=True)]
    words = [out.ctypes.data, *(a.ctypes.data for a in arrays)]
    words += [int(bindings[s]) for s in kernel.symbols]
    table = np.array(words, dtype=np.int64)
    blocks, threads = launch_config(int(np.prod(concrete_shape(kernel.ranges, bindings), dtype=np.int64)))
    blocks, threads = grid or blocks, block or threads
    launch = getattr(lib, f"gc_launch_{kernel.name}")
    launch.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_int]
    launch(table.ctypes.data, blocks, threads, ORDERS[order])
    return out
