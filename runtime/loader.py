"""Loading a module file and binding it to a device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codegen.executable import BACKENDS, executable
from ir.errors import IRError
from ir.module_file import ModuleFile, read_module


class DeviceError(IRError, RuntimeError):
    """A device that cannot be used here (no cupy, driver or GPU for 'cuda')."""


@dataclass(frozen=True)
class Signature:
    """One input or output of a method: name, dtype name and shape (ints or symbols)."""

    name: str
    dtype: str
    shape: tuple


def _array_module(device: str):
    if device == "cpu":
        return np
    if device.split(":")[0] != "cuda":
        raise DeviceError(f"unknown device {device!r}; expected 'cpu' or 'cuda[:index]'")
    try:
        import cupy
    except ImportError:
        raise DeviceError("device 'cuda' needs cupy (pip install cupy-cuda12x) and an NVIDIA GPU") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as e:  # no driver, or a broken one
        raise DeviceError(f"device 'cuda' is not usable here: {e}") from None
    if count < 1:
        raise DeviceError("device 'cuda' was requested but no GPU is present")
    return cupy


class LoadedModule:
    """A module file bound to a device. Calling it runs the 'forward' method; `run` takes a
    dict of named inputs. Stateless per call, so several threads may call it at once."""

    def __init__(
        self, module: ModuleFile, device: str, backend: str = "interpreter", trust_embedded_code: bool = False
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        self._module = module
        self.device = device
        self.backend = backend
        self._xp = _array_module(device)
        if self._xp is np:
            self._weights = module.weights
        else:
            if backend != "interpreter":
                raise DeviceError(
                    f"backend {backend!r} compiles for the CPU; device {device!r} needs 'interpreter'"
                )
            self._weights = {k: self._xp.asarray(v) for k, v in module.weights.items()}
        embedded = {}
        if trust_embedded_code and backend == "llvm":
            from codegen.executable import embedded_libraries

            embedded = embedded_libraries(module)
        self._executables = {
            name: executable(graph, backend, embedded) for name, graph in module.methods.items()
        }

    @property
    def methods(self) -> list[str]:
        return list(self._module.methods)

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._module.metadata)

    @property
    def producer(self) -> str:
        return self._module.producer

    @property
    def module_file(self) -> ModuleFile:
        """What the file holds: graphs, read-only weights, artifacts table, versions."""
        return self._module

    def signature(self, method: str = "forward") -> tuple[list[Signature], list[Signature]]:
        graph = self._graph(method)
        sig = lambda v: Signature(v.name, v.type.dtype.name, v.type.shape)  # noqa: E731
        return [sig(v) for v in graph.inputs], [sig(v) for v in graph.outputs]

    @property
    def inputs(self) -> list[Signature]:
        return self.signature()[0]

    @property
    def outputs(self) -> list[Signature]:
        return self.signature()[1]

    def _graph(self, method: str):
        graph = self._module.methods.get(method)
        if graph is None:
            raise KeyError(f"the module has no method {method!r}; it has {self.methods}")
        return graph

    def __call__(self, *arrays, method: str = "forward") -> list:
        return self.run_method(method, list(arrays))

    def run(self, inputs: dict, method: str = "forward") -> dict:
        """Outputs by name for inputs given by name."""
        graph = self._graph(method)
        outs = self.run_method(method, inputs)
        return {v.name: o for v, o in zip(graph.outputs, outs, strict=True)}

    def run_method(self, method: str, inputs) -> list:
        self._graph(method)  # a KeyError naming the methods there are
        xp = self._xp
        if isinstance(inputs, dict):
            inputs = {k: xp.asarray(v) for k, v in inputs.items()}
        else:
            inputs = [xp.asarray(v) for v in inputs]
        if xp is np:
            return self._executables[method].run(inputs, weights=self._weights)
        return self._executables[method].run(inputs, weights=self._weights, xp=xp)

    def memory(self, inputs, method: str = "forward") -> tuple[int, int] | None:
        """(arena bytes, bytes of all intermediates) of `method` for inputs of these shapes
        (arrays, a list or by name), where it runs as one native entry over a planned arena;
        else None."""
        from ir.interpreter import bind_inputs

        native = getattr(self._executables[method], "native", None)
        if native is None:
            return None
        graph = self._graph(method)
        return native.memory(bind_inputs(graph, inputs))

    def __repr__(self) -> str:
        return f"LoadedModule(methods={self.methods}, device={self.device!r})"


def _llvmlite_available() -> bool:
    try:
        import llvmlite  # noqa: F401  (the package only: cheap)
    except ImportError:
        return False
    return True


def load(
    path, device: str = "cpu", backend: str | None = None, trust_embedded_code: bool = False
) -> LoadedModule:
    """Read, validate and bind a .gcm module file. `backend` 'llvm' (the default on the CPU)
    runs its graphs as native code for this CPU: from the local cache, else from the file's
    embedded code for this CPU if `trust_embedded_code=True` (it is native code: only for
    files you trust), else compiled here. 'interpreter' (the default on CUDA, and where
    llvmlite is not installed) runs the reference interpreter on numpy or cupy."""
    if backend is None:
        backend = "llvm" if device == "cpu" and _llvmlite_available() else "interpreter"
    return LoadedModule(read_module(path), device, backend, trust_embedded_code)
