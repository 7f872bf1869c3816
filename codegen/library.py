"""Compiled graphs as shared libraries in the on-disk cache, loaded without LLVM.

A graph's kernels, their `.packed` entries and its native entry are linked (by the system's C
compiler driver) into one shared library, stored as `<key>.so` beside `<key>.sha256` in the
cache directory (`GRAPHC_CACHE_DIR`, default ~/.cache/graphc/kernels; empty disables). The key
hashes the host fingerprint (CPU and compiler versions) and the graph, so a library is only
ever loaded on a CPU like the one it was compiled for. A library whose bytes do not match
their checksum is ignored (and rebuilt by the caller). Loading one uses ctypes alone: a process
that finds its graphs in the cache never imports llvmlite's LLVM library. A library offered by
a trusted module file joins the cache; where no cache can take it (off, or read-only, as in a
locked-down container) it loads from memory.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from pathlib import Path

from codegen.host import fingerprint
from ir.fileio import atomic_write

_loaded: dict[str, ctypes.CDLL] = {}
_loaded_bytes: dict[str, bytes] = {}  # what each loaded library was made of, for `read`
_offered: dict[str, bytes] = {}  # trusted libraries from module files, by key


def offer(libraries: dict[str, bytes]) -> None:
    """Make trusted libraries (from a module file the user trusts) available to `load`: one
    that is asked for and not cached joins the cache."""
    _offered.update(libraries)


def cache_dir() -> Path | None:
    """Where compiled code is cached (None: disk caching is off)."""
    configured = os.environ.get("GRAPHC_CACHE_DIR")
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphc" / "kernels"


def library_key(text: str) -> str:
    """The cache key of code for `text` (a graph, or the worker pool's source) on this host."""
    return hashlib.sha256(f"{fingerprint()}\n{text}".encode()).hexdigest()


def _library(key: str) -> ctypes.CDLL | None:
    """The cached (or offered) library `key`, loaded; None when it is not there or is damaged.
    An offered library the cache cannot take (no cache, a read-only one) loads from memory."""
    lib = _loaded.get(key)
    if lib is not None:
        return lib
    offered = _offered.get(key)
    data = _intact(key, "so")
    if data is None and offered is not None and store(key, offered):
        data = offered
    if data is not None:
        try:
            lib = ctypes.CDLL(str(cache_dir() / f"{key}.so"))
        except OSError:
            lib = None
    if lib is None and offered is not None:
        lib, data = _from_memory(key, offered), offered
    if lib is not None:
        _loaded[key], _loaded_bytes[key] = lib, data
    return lib


def _intact(key: str, suffix: str) -> bytes | None:
    """The cache's `key`.`suffix` where it is there and matches its checksum."""
    directory = cache_dir()
    if directory is None:
        return None
    try:
        data = (directory / f"{key}.{suffix}").read_bytes()
        digest = (directory / f"{key}.sha256").read_text().strip()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == digest else None


_memory_files: list[int] = []  # descriptors of libraries loaded from memory, open for good


def _from_memory(key: str, data: bytes) -> ctypes.CDLL | None:
    """`data` loaded without a file in the cache: from an anonymous memory file (Linux), else a
    temporary file removed once loaded (the loader has mapped it). A memory file stays open:
    the loader knows a library by its path, and a reused descriptor number would name another
    library by the same path."""
    if hasattr(os, "memfd_create"):
        try:
            fd = os.memfd_create(f"graphc-{key[:16]}.so", 0)
        except OSError:
            fd = None
        if fd is not None:
            try:
                with os.fdopen(os.dup(fd), "wb") as f:
                    f.write(data)
                lib = ctypes.CDLL(f"/proc/self/fd/{fd}")
            except OSError:
                os.close(fd)
                return None
            _memory_files.append(fd)
            return lib
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(prefix="graphc-", suffix=".so", delete=False) as f:
            f.write(data)
    except OSError:
        return None
    try:
        return ctypes.CDLL(f.name)
    except OSError:
        return None
    finally:
        os.unlink(f.name)


def load(key: str, names: list[str]) -> dict[str, int] | None:
    """The addresses of `names` in the cached (or offered) library `key`, or None when it is
    not there, is damaged or lacks one of them."""
    lib = _library(key)
    if lib is None:
        return None
    try:
        return {name: ctypes.cast(lib[name], ctypes.c_void_p).value for name in names}
    except AttributeError:
        return None


def data(key: str, name: str) -> bytes | None:
    """The bytes of constant `name` (its length in `name`_size, an int64) in the cached (or
    offered) library `key`; None where it is not there or has no such constant."""
    addresses = load(key, [name, f"{name}_size"])
    if addresses is None:
        return None
    return ctypes.string_at(addresses[name], ctypes.c_int64.from_address(addresses[f"{name}_size"]).value)


def embedded_libraries(module_file) -> dict[str, bytes]:
    """The shared libraries a module file holds, by cache key (their checksums checked)."""
    return {
        a.properties["key"]: module_file.artifact_bytes(a)
        for a in module_file.artifacts
        if a.kind == "shared-library" and "key" in a.properties
    }


def store(key: str, data: bytes, suffix: str = "so") -> bool:
    """Put library bytes (or other compiled code: `suffix` 'ptx', 'cubin') in the cache
    (atomically); False when there is no usable cache."""
    directory = cache_dir()
    if directory is None:
        return False
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / f"{key}.{suffix}", (data,), prefix=".lib-")
        atomic_write(
            directory / f"{key}.sha256", (hashlib.sha256(data).hexdigest().encode(),), prefix=".lib-"
        )
    except OSError:
        return False
    return True


def read(key: str, suffix: str = "so") -> bytes | None:
    """The cached library's bytes (to embed in a module file; or other code, by `suffix`), if
    cached and intact; a library this process loaded is read from memory where the cache no
    longer has it (emptied, or another GRAPHC_CACHE_DIR since)."""
    data = _intact(key, suffix)
    if data is None and suffix == "so":
        return _loaded_bytes.get(key)
    return data
