"""Loading a module file and binding it to a device."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from codegen.cuda.device import Device, DeviceError, cupy_for, gpu
from ir.module_file import ModuleFile, read_module
from ir.ops.creation import with_key


@dataclass(frozen=True)
class Signature:
    """One input or output of a method: name, dtype name and shape (ints or symbols)."""

    name: str
    dtype: str
    shape: tuple


class LoadedModule:
    """A module file bound to a device. Calling it runs the 'forward' method; `run` takes a
    dict of named inputs. Stateless per call, so several threads may call it at once.

    On a CUDA device, numpy inputs give numpy outputs and the device's (cupy) arrays give the
    device's arrays; the weights are copied to the device once, here."""

    def __init__(
        self,
        module: ModuleFile,
        device: str | Device,
        backend: str = "interpreter",
        trust_embedded_code: bool = False,
        seed: int | None = None,
    ) -> None:
        from codegen import BACKENDS, ready

        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        self._module = module
        self.backend = backend
        # the keys of methods that draw random numbers (their `rng.key` input), one per call
        self._keys, self._keys_lock = np.random.default_rng(seed), threading.Lock()
        target = None  # the device the 'cuda' backend compiles for
        if isinstance(device, Device):
            target, self.device, self._xp = device, device.name, device.xp
        elif device == "cpu":
            self.device, self._xp = device, np
        elif backend == "cuda":
            target = gpu(device)
            self.device, self._xp = device, target.xp
        else:  # the interpreter on cupy
            self.device, self._xp = device, cupy_for(device)
        if backend == "cuda" and target is None:
            raise DeviceError(
                "backend 'cuda' runs on device 'cuda'; device 'cpu' takes 'llvm' or 'interpreter'"
            )
        if backend == "llvm" and (target is not None or self._xp is not np):
            raise DeviceError(f"backend 'llvm' compiles for the CPU; device {self.device!r} takes 'cuda'")
        if self._xp is np or backend == "cuda":
            self._weights = module.weights  # (a CUDA executable holds its own copy on the device)
        else:
            self._weights = {k: self._xp.asarray(v) for k, v in module.weights.items()}
        embedded = {}
        if trust_embedded_code and backend == "llvm":
            from codegen.library import embedded_libraries

            embedded = embedded_libraries(module)
        elif trust_embedded_code and backend == "cuda":
            from codegen.cuda.executable import embedded_code

            embedded = embedded_code(module)
        self._target = target
        self._executables = {
            name: ready(graph, backend, embedded, target) for name, graph in module.methods.items()
        }

    def to_device(self, array):
        """`array` as an array of the module's device (numpy on the CPU)."""
        return self._xp.asarray(array)

    def synchronize(self) -> None:
        """Wait until the work this module launched on its device has finished (for timing;
        outputs are safe to use without it)."""
        if self._target is not None:
            self._target.synchronize()
        elif self._xp is not np:
            self._xp.cuda.Device().synchronize()

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

    def _keyed(self, graph, inputs):
        """`inputs`, with a fresh `rng.key` where the method draws random numbers and they
        leave it out (pass one to repeat a call's draws)."""
        return with_key(graph, inputs, self._next_seed)

    def _next_seed(self) -> int:
        with self._keys_lock:
            return int(self._keys.integers(0, 1 << 63))

    def run(self, inputs: dict, method: str = "forward") -> dict:
        """Outputs by name for inputs given by name."""
        graph = self._graph(method)
        outs = self.run_method(method, inputs)
        return {v.name: o for v, o in zip(graph.outputs, outs, strict=True)}

    def run_method(self, method: str, inputs) -> list:
        inputs = self._keyed(self._graph(method), inputs)  # (a KeyError naming the methods there are)
        xp = self._xp
        if xp is np:
            return self._executables[method].run(_arrays(inputs, xp), weights=self._weights)
        given = inputs.values() if isinstance(inputs, dict) else inputs
        host = not any(hasattr(v, "get") for v in given)  # numpy (or lists) in, numpy out; cupy has .get()
        exe = self._executables[method]
        if self.backend == "cuda":
            outs = exe.run(_arrays(inputs, xp), weights=self._weights)
        else:
            outs = exe.run(_arrays(inputs, xp), weights=self._weights, xp=xp)
        return [_to_host(o) for o in outs] if host else outs

    def memory(self, inputs, method: str = "forward") -> tuple[int, int] | None:
        """(bytes the intermediates need, bytes of all intermediates) of `method` for inputs of
        these shapes (arrays, a list or by name): on the CPU where it runs as one native entry
        over a planned arena (the arena's size), on CUDA the most alive at once (each is freed
        after its last reader); else None."""
        from ir.interpreter import bind_inputs

        exe = self._executables[method]
        runs = getattr(exe, "native", None) if self.backend == "llvm" else exe
        if runs is None or not hasattr(runs, "memory"):
            return None
        graph = self._graph(method)
        return runs.memory(bind_inputs(graph, self._keyed(graph, inputs)))

    def __repr__(self) -> str:
        return f"LoadedModule(methods={self.methods}, device={self.device!r})"


def _arrays(inputs, xp):
    """`inputs` (a list or a dict by name) as arrays of `xp`."""
    if isinstance(inputs, dict):
        return {k: xp.asarray(v) for k, v in inputs.items()}
    return [xp.asarray(v) for v in inputs]


def _to_host(array) -> np.ndarray:
    return array.get() if hasattr(array, "get") else np.asarray(array)


def _llvmlite_available() -> bool:
    try:
        import llvmlite  # noqa: F401  (the package only: cheap)
    except ImportError:
        return False
    return True


def load(
    path,
    device: str | Device = "cpu",
    backend: str | None = None,
    trust_embedded_code: bool = False,
    seed: int | None = None,
) -> LoadedModule:
    """Read, validate and bind a .gcm module: `path` is a file's path, its bytes (as fetched
    from a store: nothing needs to be written to disk) or a binary file object.

    On the CPU, `backend` 'llvm' (the default) runs its graphs as native code for this CPU:
    from the local cache, else from the file's embedded code for this CPU if
    `trust_embedded_code=True` (it is native code: only for files you trust), else compiled
    here. On 'cuda' or 'cuda:N', 'cuda' (the default) runs CUDA kernels: from the cache, else
    the file's PTX or cubin for this GPU if trusted, else compiled here by NVRTC; weights go
    to the GPU once. 'interpreter' (the default where llvmlite is not installed) runs the
    reference interpreter on numpy or cupy. `device` may also be a codegen.cuda.device.Device
    (the CPU emulation of CUDA in codegen.cuda.emulate, for tests). A method that draws random
    numbers gets a fresh key for each call from a generator seeded with `seed` (default: the
    system's entropy), unless the call passes its `rng.key` input."""
    if backend is None:
        if isinstance(device, Device) or device != "cpu":
            backend = "cuda"
        else:
            backend = "llvm" if _llvmlite_available() else "interpreter"
    return LoadedModule(read_module(path), device, backend, trust_embedded_code, seed)
