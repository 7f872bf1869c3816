"""What the compiled code depends on about this machine, found without importing LLVM.

`fingerprint()` names the CPU (architecture, model, feature flags) and the compiler (graphc's
COMPILER_VERSION, a digest of codegen's sources, llvmlite's version): native code compiled here
may run wherever the fingerprint is the same, and nowhere else. On Linux the CPU part comes from
/proc/cpuinfo, so a process that finds its code in the cache never loads LLVM; elsewhere LLVM's
host detection is used.
"""

from __future__ import annotations

import functools
import hashlib
import platform

COMPILER_VERSION = "4"  # bump when the code generated for the same graph changes


@functools.cache
def _sources() -> str:
    """A digest of the compiler's own source files: code cached by another version of them is
    never taken for this one's (their kernels' signatures may differ), bump or no bump."""
    from pathlib import Path

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted([*root.glob("*.py"), *root.glob("llvm/*.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str]] | None:
    """(model name, feature flags) of the first processor in /proc/cpuinfo, or None."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None
    model, flags = "", None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and flags is None:
            flags = frozenset(value.split())
        if not line.strip() and flags is not None:
            break
    return (model, flags) if flags is not None else None


@functools.cache
def fingerprint() -> str:
    """A short hash of the CPU and the compiler versions."""
    import llvmlite  # the package only: its version, not the LLVM library

    info = _cpuinfo()
    if info is not None:
        cpu = f"{info[0]}|{' '.join(sorted(info[1]))}"
    else:
        import llvmlite.binding as llvm

        cpu = f"{llvm.get_host_cpu_name()}|{llvm.get_host_cpu_features().flatten()}"
    parts = [COMPILER_VERSION, _sources(), llvmlite.__version__, platform.machine(), platform.system(), cpu]
    text = "\n".join(parts)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@functools.cache
def vector_bits() -> int:
    """The widest float vectors this CPU has: 512 (AVX-512F), 256 (AVX) or 128 bits."""
    info = _cpuinfo()
    if info is not None and platform.machine() in ("x86_64", "AMD64"):
        flags = info[1]
        return 512 if "avx512f" in flags else 256 if "avx" in flags else 128
    from codegen.llvm.compiler import host_vector_bits

    return host_vector_bits()


def matmul_tile(dtype, bits: int) -> tuple[int, int, int]:
    """The matmul's register block for `bits`-wide vectors: (rows MR, lanes per vector,
    vectors per row); its columns NR = lanes * vectors. AVX-512's 32 registers hold a 6 x 4
    block of accumulators, AVX2's 16 a 6 x 2 block."""
    import numpy as np

    lanes = max(1, bits // (8 * np.dtype(dtype.np).itemsize))
    return 6, lanes, 4 if bits >= 512 else 2
