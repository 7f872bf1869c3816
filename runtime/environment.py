"""What this machine offers the runtime: each part a backend needs, found or not and why, and the
backends that work here (`graphc-runtime env`; tests/gpu/environment.py builds on it).

    >>> for row in report(): print(row)
    Row(what='numpy', detail='2.4.6', ok=True)
    ...
    Row(what='backends', detail='cpu: llvm, interpreter; cuda: no (no cupy)', ok=True)
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Row:
    """One part: what it is, what was found (a version, a path) or why it is missing."""

    what: str
    detail: str
    ok: bool = True


def report() -> list[Row]:
    """The rows of `graphc-runtime env`, in order: Python, numpy, protobuf, the CPU compiler
    (llvmlite, the CPU, the C compiler driver, the code cache), the CUDA compiler (NVRTC), cupy
    and the GPUs, and the backends per device."""
    rows = [
        Row(
            "python",
            f"{platform.python_version()} ({sys.executable}), {platform.system()} {platform.machine()}",
        ),
        Row("numpy", np.__version__),
        _protobuf(),
    ]
    cpu = _cpu_compiler(rows)
    rows.append(_nvrtc())
    cuda = _gpus(rows)
    backends = ["llvm"] if cpu else []
    rows.append(
        Row(
            "backends",
            f"cpu: {', '.join([*backends, 'interpreter'])}; cuda: {'yes' if cuda is None else cuda}",
        )
    )
    return rows


def _protobuf() -> Row:
    import google.protobuf
    from google.protobuf.internal import api_implementation

    return Row("protobuf", f"{google.protobuf.__version__} ({api_implementation.Type()})")


def _cpu_compiler(rows: list[Row]) -> bool:
    """Rows for the CPU compiler; whether backend 'llvm' works here."""
    try:
        import llvmlite
        import llvmlite.binding as llvm
    except ImportError:
        rows.append(Row("llvmlite", "not installed: no backend 'llvm' (pip install llvmlite)", ok=False))
        return False
    from codegen import library
    from codegen.host import vector_bits
    from codegen.llvm.compiler import c_driver

    llvm_version = ".".join(map(str, llvm.llvm_version_info))
    rows.append(Row("llvmlite", f"{llvmlite.__version__} (LLVM {llvm_version})"))
    rows.append(
        Row("cpu", f"{llvm.get_host_cpu_name()}, {vector_bits()}-bit vectors, {os.cpu_count()} cores")
    )
    driver = c_driver()
    rows.append(
        Row(
            "C compiler driver",
            driver or "none: compiled code stays in memory, not cached on disk",
            ok=bool(driver),
        )
    )
    cache = library.cache_dir()
    if cache is None:
        rows.append(Row("code cache", "off (GRAPHC_CACHE_DIR is empty)", ok=False))
    else:
        where = cache  # (the nearest folder that exists: the cache's own is made when needed)
        while not where.exists():
            where = where.parent
        writable = os.access(where, os.W_OK)
        rows.append(Row("code cache", f"{cache}{'' if writable else ' (not writable)'}", ok=writable))
    return True


def _nvrtc() -> Row:
    from codegen.cuda import nvrtc

    if not nvrtc.available():
        return Row(
            "NVRTC",
            "not installed: CUDA code only from a trusted module file "
            "(pip install nvidia-cuda-nvrtc-cu12, or 'nvidia-cuda-nvrtc>=13')",
            ok=False,
        )
    archs = nvrtc.supported_archs()
    major, minor = nvrtc.version()
    return Row("NVRTC", f"{major}.{minor} ({nvrtc.location()}), sm_{archs[0]} to sm_{archs[-1]}")


def _gpus(rows: list[Row]) -> str | None:
    """Rows for cupy and each GPU; None where CUDA works, else why not."""
    from codegen.cuda.device import DeviceError, cuda_version, gpu

    try:
        import cupy
    except ImportError:
        rows.append(Row("cupy", "not installed (pip install cupy-cuda12x, or cupy-cuda13x)", ok=False))
        return "no (no cupy)"
    rows.append(Row("cupy", cupy.__version__))
    try:
        first = gpu("cuda:0")
    except DeviceError as e:
        rows.append(Row("GPU", str(e), ok=False))
        return "no (no usable GPU)"
    for index in range(int(cupy.cuda.runtime.getDeviceCount())):
        device = first if index == 0 else gpu(f"cuda:{index}")
        major, minor = cuda_version(device.driver_version)
        rows.append(Row("GPU", f"{device.name}, sm_{device.capability}, driver CUDA {major}.{minor}"))
    return None
