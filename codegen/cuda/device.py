"""CUDA devices as the compiled graphs see them: load a module of kernels, launch them.

A `Device` has an array module (`xp`: where its arrays live), a compute capability (which
PTX or cubin it can run), and `load(source, code, kind, kernels)`, which gives a launch function
per kernel name: `launch(grid, block, args)` with the device's arrays and Python ints as
arguments, in the kernel's parameter order. `GPU` is a real one through cupy (its driver
JIT-compiles PTX, or loads a cubin as it is); `codegen.cuda.emulate.EmulatedDevice` runs the
same source as C++ on the CPU, which is how everything above cupy's own calls is tested on
machines without a GPU.

    >>> device = gpu(0)                    # DeviceError without cupy, a driver or a GPU
    >>> launch = device.load(source, ptx, "ptx", kernels)
    >>> launch["k0_add"](grid, block, [out, x, y, 12])
"""

from __future__ import annotations

import abc
import contextlib

import numpy as np

from ir.errors import IRError


def cuda_version(number: int) -> tuple[int, int]:
    """(major, minor) of a CUDA version as the driver reports it: (12, 4) for 12040."""
    return divmod(number // 10, 100)


class DeviceError(IRError, RuntimeError):
    """A device that cannot be used here (no cupy, driver or GPU for 'cuda'), or code it
    cannot load."""


class Device(abc.ABC):
    """What a compiled graph needs of a CUDA device (see the module's docstring)."""

    name = "cuda"
    xp = np  # the array module of the device's arrays
    capability = 0  # compute capability as an int: 90 for sm_90
    needs_code = True  # False: `load` takes the source alone (PTX or a cubin not needed)
    driver_version: int | None = None  # the driver's CUDA version (12040 for 12.4), where there is one

    @abc.abstractmethod
    def load(self, source: str, code: bytes | None, kind: str | None, kernels: list) -> dict:
        """Launch functions by kernel name for `kernels`, from the module `code` ('ptx' or
        'cubin', compiled from `source`)."""

    def launch_limits(self) -> dict:
        """Keyword arguments for `render.launch_config` (the emulation caps the grid)."""
        return {}

    def to_host(self, array) -> np.ndarray:
        return np.asarray(array)

    def synchronize(self) -> None:  # noqa: B027  (a device that runs launches at once has nothing to wait for)
        """Wait until the work launched on the device has finished."""

    def current(self):
        """A context in which new arrays and launches go to this device (cupy's current
        device is process-wide; the emulation has one device)."""
        return contextlib.nullcontext()


class GPU(Device):
    """An NVIDIA GPU through cupy."""

    def __init__(self, index: int = 0) -> None:
        cupy = cupy_for(f"cuda:{index}")
        self.index = index
        self.xp = cupy
        self.capability = int(cupy.cuda.Device(index).compute_capability)
        properties = cupy.cuda.runtime.getDeviceProperties(index)
        name = properties["name"]
        self.name = f"cuda:{index} ({name.decode() if isinstance(name, bytes) else name})"
        self.driver_version = int(cupy.cuda.runtime.driverGetVersion())  # 12040 for 12.4

    def load(self, source: str, code: bytes | None, kind: str | None, kernels: list) -> dict:
        cupy = self.xp
        if code is None:
            raise DeviceError(f"{self.name}: no PTX or cubin to load")
        module = cupy.cuda.function.Module()
        with self.current():
            try:
                module.load(code + b"\0" if kind == "ptx" else code)  # (the driver reads PTX as a C string)
            except cupy.cuda.driver.CUDADriverError as e:
                major, minor = cuda_version(self.driver_version)
                hint = ""
                if kind == "ptx" and "PTX" in str(e):
                    from codegen.cuda.nvrtc import requirement

                    hint = (
                        f"; the driver (CUDA {major}.{minor}) is older than the PTX NVRTC wrote: install "
                        f"{requirement(major, minor)} so code compiles for this driver"
                    )
                raise DeviceError(f"{self.name}: the driver could not load the {kind}: {e}{hint}") from None
            functions = {k.name: module.get_function(k.name) for k in kernels}

        def launcher(function):
            def launch(grid: int, block: int, args: list) -> None:
                function((grid,), (block,), args)  # (the caller made this device current)

            return launch

        return {name: launcher(f) for name, f in functions.items()}  # (each function keeps the module)

    def to_host(self, array) -> np.ndarray:
        return array.get() if isinstance(array, self.xp.ndarray) else np.asarray(array)

    def synchronize(self) -> None:
        self.current().synchronize()

    def current(self):
        # a fresh cupy Device each time: the one object keeps a stack of the devices it
        # replaced, which threads entering it at once would mix up
        return self.xp.cuda.Device(self.index)


def cupy_for(device: str):
    """cupy, once `device` ('cuda' or 'cuda:N') is known to name a usable GPU; else DeviceError
    saying what is missing (cupy, a driver, a GPU)."""
    index = _index(device)
    try:
        import cupy
    except ImportError:
        raise DeviceError(
            "device 'cuda' needs cupy (pip install cupy-cuda12x, or cupy-cuda13x for a CUDA 13 driver) "
            "and an NVIDIA GPU"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as e:  # no driver, or a broken one
        raise DeviceError(f"device 'cuda' is not usable here: {e}") from None
    if count < 1:
        raise DeviceError("device 'cuda' was requested but no GPU is present")
    if index >= count:
        raise DeviceError(f"device 'cuda:{index}' was requested but only {count} GPU(s) exist")
    return cupy


def _index(device: str) -> int:
    name, _, index = device.partition(":")
    if name != "cuda" or (index and not index.isdigit()):
        raise DeviceError(f"unknown device {device!r}; expected 'cpu' or 'cuda[:index]'")
    return int(index or 0)


def gpu(device: str = "cuda") -> GPU:
    """The GPU named `device`: 'cuda:N', or 'cuda' for the current one (cupy's, which
    `graphc.cuda.set_device` sets); DeviceError where it cannot be used."""
    index = _index(device)
    if ":" not in device:
        index = int(cupy_for(device).cuda.runtime.getDevice())
    return GPU(index)
