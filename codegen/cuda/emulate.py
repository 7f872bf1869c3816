"""Run generated CUDA C on the CPU: the semantics of the CUDA renderer, tested without a GPU.

The kernel's source is compiled as C++ (the system's `g++`) after a small header (emulation.h)
that makes CUDA's names plain C++: `__global__` and `__device__` vanish, shared arrays are
static (blocks run one after another) and check every access (two threads touching an element
between the same two barriers, one of them writing, is a data race; an index outside the array
is a fault: either raises `SharedMemoryFault`, whatever the thread order), `threadIdx`,
`blockIdx`, `blockDim` and `gridDim` are thread-local variables, and each CUDA thread of a
block is a fiber (ucontext), so `__syncthreads` switches to a scheduler that resumes the
block's threads in a chosen order (forward, reverse or shuffled) until all reach the barrier: a
kernel that misses a barrier reads another thread's result before it is written in one of the
orders and fails the comparison. A barrier reached by some threads and not others is reported.
The one warp-level intrinsic the renderer uses, `__shfl_down_sync` over a whole warp, is a
warp-wide barrier in the same scheduler: each lane leaves its value, waits for the warp, reads
its partner's and waits again. `EmulatedDevice` runs a compiled graph's module this way
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

HEADER = (Path(__file__).parent / "emulation.h").read_text()  # (C++: CUDA's names for the CPU)


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
