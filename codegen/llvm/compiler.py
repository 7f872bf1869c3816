"""Compile rendered LLVM IR to native code for this CPU and hand out callable kernels.

The target machine is the host's (CPU name and features, so AVX-512 where present); the module
is optimized with LLVM's O3 pipeline and loaded with MCJIT. Compiled modules are cached in memory
by the hash of their IR text (the on-disk cache and embedded artifacts come next).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import threading
from dataclasses import dataclass

import llvmlite.binding as llvm

_lock = threading.Lock()
_target_machine = None
_cache: dict[str, CompiledModule] = {}


@dataclass
class CompiledModule:
    """Native code for one LLVM module; `engine` keeps it alive."""

    engine: object
    addresses: dict[str, int]


def target_machine():
    """The host's target machine (created once)."""
    global _target_machine
    if _target_machine is None:
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        libm = ctypes.util.find_library("m")
        if libm:  # tanhf and friends for the JIT's symbol lookup
            llvm.load_library_permanently(libm)
        target = llvm.Target.from_triple(llvm.get_process_triple())
        _target_machine = target.create_target_machine(
            cpu=llvm.get_host_cpu_name(),
            features=llvm.get_host_cpu_features().flatten(),
            opt=3,
            reloc="pic",
            codemodel="jitdefault",
        )
    return _target_machine


def compile_ir(text: str, functions: list[str]) -> CompiledModule:
    """Optimize and load LLVM IR `text`; the addresses of `functions`."""
    key = hashlib.sha256(text.encode()).hexdigest()
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        tm = target_machine()
        module = llvm.parse_assembly(text)
        module.triple = tm.triple
        module.data_layout = str(tm.target_data)
        module.verify()
        pto = llvm.create_pipeline_tuning_options(speed_level=3)
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(module, pb)
        engine = llvm.create_mcjit_compiler(module, tm)
        engine.finalize_object()
        compiled = CompiledModule(engine, {f: engine.get_function_address(f) for f in functions})
        _cache[key] = compiled
        return compiled
