"""NVRTC, CUDA's runtime compiler, through ctypes: CUDA C to PTX (or a cubin) without a GPU.

The library is, in order: the file `GRAPHC_NVRTC` names (then that one only); CUDA 12's
from the `nvidia-cuda-nvrtc-cu12` wheel (the `cuda` and `dev` extras); CUDA 13's from the
`nvidia-cuda-nvrtc` wheel (13.x, the `cuda13` extra; installed as nvidia/cu13/lib); the
system's `libnvrtc.so.12`, `libnvrtc.so.13`, `libnvrtc.so`. CUDA 12 comes first because its
code runs on more drivers: PTX from NVRTC X.Y loads only on drivers of CUDA X.Y and later, and
a CUDA 13 driver runs CUDA 12 code, not the reverse. `compile` returns PTX for a virtual
architecture (`compute_80`) or a cubin for a real one (`sm_90`); a failed compilation raises
`CudaCompileError` with NVRTC's log and the source lines it names.

    >>> ptx = compile(source, "kernel.cu", arch="compute_80")
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import os
import re
from pathlib import Path


class CudaCompileError(RuntimeError):
    """NVRTC rejected generated CUDA C (a renderer bug): its log, with the lines it names."""


class NvrtcUnavailable(RuntimeError):
    """No NVRTC library here: install the `cuda` extra (nvidia-cuda-nvrtc-cu12) or the `cuda13`
    one (nvidia-cuda-nvrtc 13.x)."""


# (the wheels' namespace package, the library in its lib/): CUDA 12's, then CUDA 13's
WHEELS = (("nvidia.cuda_nvrtc", "libnvrtc.so.12"), ("nvidia.cu13", "libnvrtc.so.13"))


def requirement(major: int, minor: int) -> str:
    """The pip requirement of NVRTC X.Y: the wheel is named per CUDA major version."""
    name = "nvidia-cuda-nvrtc-cu12" if major == 12 else "nvidia-cuda-nvrtc"
    return f"{name}=={major}.{minor}.*"


def wheel_libraries() -> list[str]:
    """The NVRTC libraries the installed wheels hold, CUDA 12's first."""
    paths = []
    for package, library in WHEELS:
        try:
            roots = importlib.import_module(package).__path__  # (namespace packages: no __init__)
        except ImportError:
            continue
        paths += [str(Path(root) / "lib" / library) for root in roots]
    return [p for p in paths if os.path.exists(p)]


def _candidates() -> list[str]:
    chosen = os.environ.get("GRAPHC_NVRTC")
    if chosen:
        return [chosen]
    return [*wheel_libraries(), "libnvrtc.so.12", "libnvrtc.so.13", "libnvrtc.so"]


@functools.cache
def _library() -> ctypes.CDLL:
    errors = []
    for candidate in _candidates():
        if os.sep in candidate and not os.path.exists(candidate):
            errors.append(f"{candidate}: no such file")
            continue
        try:
            lib = ctypes.CDLL(candidate)
        except OSError as error:
            errors.append(f"{candidate}: {error}")
            continue
        c_char_pp = ctypes.POINTER(ctypes.c_char_p)
        lib.nvrtcCreateProgram.argtypes = [
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_int,
            c_char_pp,
            c_char_pp,
        ]
        lib.nvrtcCompileProgram.argtypes = [ctypes.c_void_p, ctypes.c_int, c_char_pp]
        for name in ("nvrtcGetProgramLogSize", "nvrtcGetPTXSize", "nvrtcGetCUBINSize"):
            getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        for name in ("nvrtcGetProgramLog", "nvrtcGetPTX", "nvrtcGetCUBIN"):
            getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        lib.nvrtcVersion.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
        lib.nvrtcGetNumSupportedArchs.argtypes = [ctypes.POINTER(ctypes.c_int)]
        lib.nvrtcGetSupportedArchs.argtypes = [ctypes.POINTER(ctypes.c_int)]
        return lib
    where = f"GRAPHC_NVRTC names {candidate!r}, which" if os.environ.get("GRAPHC_NVRTC") else "NVRTC"
    raise NvrtcUnavailable(
        f"{where} could not be loaded; install NVRTC with `pip install nvidia-cuda-nvrtc-cu12` "
        "(graphc's `cuda` extra) or `pip install 'nvidia-cuda-nvrtc>=13'` (the `cuda13` extra)"
        + ("; tried " + "; ".join(errors) if errors else "")
    )


def available() -> bool:
    try:
        _library()
    except NvrtcUnavailable:
        return False
    return True


def location() -> str:
    """The NVRTC library in use (a path, or the name the loader found)."""
    return _library()._name


def version() -> tuple[int, int]:
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(_library().nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


@functools.cache
def supported_archs() -> tuple[int, ...]:
    """The architectures this NVRTC compiles for, as ints (80 for sm_80), ascending."""
    lib = _library()
    count = ctypes.c_int()
    _check(lib.nvrtcGetNumSupportedArchs(ctypes.byref(count)), "nvrtcGetNumSupportedArchs")
    archs = (ctypes.c_int * count.value)()
    _check(lib.nvrtcGetSupportedArchs(archs), "nvrtcGetSupportedArchs")
    return tuple(sorted(archs))


def _check(status: int, what: str) -> None:
    if status != 0:
        message = _library().nvrtcGetErrorString(status).decode()
        raise CudaCompileError(f"{what} failed: {message}")


def _named_lines(log: str, source: str, name: str) -> str:
    """The source lines NVRTC's log names (`name(12): error: ...`), each once, numbered."""
    lines = source.splitlines()
    numbers = sorted({int(n) for n in re.findall(rf"{re.escape(name)}\((\d+)\)", log)})
    shown = [f"{n:5d} | {lines[n - 1]}" for n in numbers if 0 < n <= len(lines)]
    return "\n".join(shown)


def _run(source: str, name: str, flags: list[str], output: str | None) -> tuple[str, bytes]:
    """NVRTC's log and, for `output` 'ptx' or 'cubin', the result; CudaCompileError on failure."""
    lib = _library()
    program = ctypes.c_void_p()
    _check(
        lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), name.encode(), 0, None, None),
        "nvrtcCreateProgram",
    )
    try:
        argv = (ctypes.c_char_p * len(flags))(*(f.encode() for f in flags))
        status = lib.nvrtcCompileProgram(program, len(flags), argv)
        size = ctypes.c_size_t()
        _check(lib.nvrtcGetProgramLogSize(program, ctypes.byref(size)), "nvrtcGetProgramLogSize")
        log = ctypes.create_string_buffer(size.value)
        _check(lib.nvrtcGetProgramLog(program, log), "nvrtcGetProgramLog")
        text = log.value.decode(errors="replace").strip()
        if status != 0:
            arch = next((f.split("=", 1)[1] for f in flags if f.startswith("--gpu-architecture=")), "?")
            raise CudaCompileError(
                f"NVRTC could not compile {name} for {arch}:\n{text}\n{_named_lines(text, source, name)}"
            )
        if output is None:
            return text, b""
        get_size, get = {
            "ptx": (lib.nvrtcGetPTXSize, lib.nvrtcGetPTX),
            "cubin": (lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN),
        }[output]
        _check(get_size(program, ctypes.byref(size)), f"getting the {output}")
        out = ctypes.create_string_buffer(size.value)
        _check(get(program, out), f"getting the {output}")
        data = out.raw[: size.value]
        return text, data.rstrip(b"\0") if output == "ptx" else data
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


def compile(source: str, name: str = "kernel.cu", arch: str = "compute_80", options=()) -> bytes:  # noqa: A001
    """`source` compiled for `arch`: PTX text for a virtual architecture (compute_XY), a cubin
    for a real one (sm_XY); extra NVRTC `options`."""
    flags = [f"--gpu-architecture={arch}", "--std=c++17", *options]
    return _run(source, name, flags, "cubin" if arch.startswith("sm_") else "ptx")[1]


def resource_report(source: str, name: str = "kernel.cu", arch: str = "sm_90") -> str:
    """ptxas's report for `source` compiled to a cubin for `arch`: registers, shared memory and
    spill stores/loads per kernel."""
    return _run(source, name, [f"--gpu-architecture={arch}", "--std=c++17", "--ptxas-options=-v"], None)[0]
