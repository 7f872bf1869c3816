"""Compile rendered LLVM IR to native code for this CPU and hand out callable kernels.

The target machine is the host's (CPU name and features, so AVX-512 where present); the module
is optimized with LLVM's O2 pipeline and emitted as object code. `build_library` links that
into a shared library in the cache (`codegen.library`: later processes load it without LLVM);
where there is no C compiler driver or no cache, `compile_ir` loads the object code with MCJIT
instead, caching it in memory and on disk (`GRAPHC_CACHE_DIR`), keyed by the IR text, target
triple, CPU name and features, llvmlite's version and COMPILER_VERSION; a cached file carries
the SHA-256 of its bytes and is recompiled if it does not match.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import llvmlite
import llvmlite.binding as llvm

from codegen.host import COMPILER_VERSION  # bumped when generated code changes
from codegen.library import cache_dir
from ir.fileio import atomic_write

_MAGIC = b"GCOBJ1\n"

_lock = threading.Lock()
_target_machine = None
_cache: dict[str, CompiledModule] = {}
stats = {"compiled": 0, "disk_hits": 0}  # for tests and benchmarks


@dataclass
class CompiledModule:
    """Native code for one LLVM module; `engine` keeps it alive."""

    engine: object
    addresses: dict[str, int] = field(default_factory=dict)


def cache_key(text: str) -> str:
    """The cache key of LLVM IR `text` for this host and compiler."""
    features = llvm.get_host_cpu_features().flatten() + TUNING
    host = (llvm.get_process_triple(), llvm.get_host_cpu_name(), features)
    parts = [COMPILER_VERSION, llvmlite.__version__, *host, text]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _read_cached(path: Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(_MAGIC) + 32
    if data[: len(_MAGIC)] != _MAGIC or hashlib.sha256(data[head:]).digest() != data[len(_MAGIC) : head]:
        return None  # damaged or foreign: recompile and overwrite
    return data[head:]


# LLVM's O2 pipeline: the kernels ran as fast as with O3 (GELU chain, matmul from n = 64 to 2048,
# the LeNet's convolutions and pools; measured 2026-11-23) and the LeNet compiled in 0.53 s
# instead of 1.18 s, the object code half the size (O3 unrolled the vectorized loops further).
SPEED_LEVEL = 2


def _optimized_object(text: str) -> bytes:
    tm = target_machine()
    module = llvm.parse_assembly(text)
    module.triple = tm.triple
    module.data_layout = str(tm.target_data)
    module.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=SPEED_LEVEL)
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(module, pb)
    stats["compiled"] += 1
    return tm.emit_object(module)


# Gathers and scatters are microcoded and slow on the CPUs we measured (Zen 4: a 2x2 max pool
# took 5x longer vectorized with gathers than scalar): LLVM's cost model is told to avoid them.
TUNING = ",+prefer-no-gather,+prefer-no-scatter"


def _new_target_machine():
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(
        cpu=llvm.get_host_cpu_name(),
        features=llvm.get_host_cpu_features().flatten() + TUNING,
        opt=3,
        reloc="pic",
        codemodel="jitdefault",
    )


def host_vector_bits() -> int:
    """The widest float vectors this CPU has: 512 (AVX-512F), 256 (AVX) or 128 bits."""
    features = llvm.get_host_cpu_features()
    if features.get("avx512f"):
        return 512
    if features.get("avx"):
        return 256
    return 128


def target_machine():
    """The host's target machine for compiling (created once). An execution engine takes
    ownership of the machine it is given, so each engine gets its own (`_new_target_machine`)."""
    global _target_machine
    if _target_machine is None:
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        libm = ctypes.util.find_library("m")
        if libm:  # tanhf and friends for the JIT's symbol lookup
            llvm.load_library_permanently(libm)
        _target_machine = _new_target_machine()
    return _target_machine


def c_driver() -> str | None:
    """The system's C compiler driver that links shared libraries ($CC, cc, gcc or clang), or
    None: compiled code is then kept in memory, not cached on disk."""
    import shutil

    candidates = [os.environ.get("CC"), "cc", "gcc", "clang"]
    return next((shutil.which(c) for c in candidates if c and shutil.which(c)), None)


def link_shared(obj: bytes) -> bytes | None:
    """Object code linked into a shared library by the system's C compiler driver (`c_driver`),
    or None where there is none or it fails."""
    import subprocess
    import tempfile

    driver = c_driver()
    if driver is None:
        return None
    with tempfile.TemporaryDirectory(prefix="graphc-link-") as tmp:
        source, target = os.path.join(tmp, "kernels.o"), os.path.join(tmp, "kernels.so")
        with open(source, "wb") as f:
            f.write(obj)
        try:
            done = subprocess.run(
                [driver, "-shared", "-o", target, source, "-lm"], capture_output=True, timeout=60
            )
        except (OSError, subprocess.SubprocessError):
            return None
        if done.returncode != 0:
            return None
        with open(target, "rb") as f:
            return f.read()


def build_library(text: str, key: str, functions: list[str]) -> dict[str, int] | None:
    """Compile LLVM IR `text` into the shared library `key` in the cache and load it: the
    addresses of `functions`, or None where linking or caching is not possible here."""
    from codegen import library

    if library.cache_dir() is None:
        return None
    with _lock:
        so = link_shared(_optimized_object(text))
    if so is None or not library.store(key, so):
        return None
    return library.load(key, functions)


def compile_ir(text: str, functions: list[str]) -> CompiledModule:
    """Native code for LLVM IR `text` (from the caches when they have it); the addresses of
    `functions`."""
    key = cache_key(text)
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        directory = cache_dir()
        path = directory / f"{key}.o" if directory is not None else None
        obj = _read_cached(path) if path is not None else None
        if obj is not None:
            stats["disk_hits"] += 1
        else:
            obj = _optimized_object(text)
            if path is not None:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write(path, (_MAGIC, hashlib.sha256(obj).digest(), obj), prefix=".kernel-")
                except OSError:
                    pass  # a read-only or full cache only costs the next process a compile
        target_machine()  # initialized LLVM
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _new_target_machine())
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        engine.finalize_object()
        compiled = CompiledModule(engine, {f: engine.get_function_address(f) for f in functions})
        _cache[key] = compiled
        return compiled
