"""A pytest plugin that runs the GPU tests on a machine without a GPU, so they cannot rot
between the rare sessions that have one: cupy is a numpy-backed stand-in (its arrays are a numpy
subclass with `.get()`), and the GPU that `codegen.cuda.device.gpu` gives is the CPU emulation
of CUDA threads, asking for PTX or a cubin as a GPU does. Only a real GPU checks the driver,
cupy's calls and the timing; this checks everything the tests themselves do.

    python -m pytest -m cuda tests/gpu -p gpu.dry_run

`install()` does the same for a script (benchmarks/cuda.py --quick, in the suite).
"""

import sys
import types

import numpy as np


class DeviceArray(np.ndarray):
    """An array 'on the GPU': numpy underneath, cupy's `.get()` and `.device` on top."""

    def get(self):
        return np.asarray(self).copy()

    @property
    def device(self):
        return types.SimpleNamespace(id=0)


def _on_device(array) -> DeviceArray:
    return array.view(DeviceArray)


def _cupy() -> types.ModuleType:
    cupy = types.ModuleType("cupy")
    cupy.__getattr__ = lambda name: getattr(np, name)
    cupy.ndarray = DeviceArray
    cupy.asarray = lambda a, dtype=None: (
        a if type(a) is DeviceArray and dtype in (None, a.dtype) else _on_device(np.array(a, dtype=dtype))
    )
    cupy.ascontiguousarray = lambda a, dtype=None: _on_device(np.ascontiguousarray(a, dtype=dtype))
    cupy.empty = lambda shape, dtype=float: _on_device(np.empty(shape, dtype))
    cupy.zeros = lambda shape, dtype=float: _on_device(np.zeros(shape, dtype))

    class Device:
        def __init__(self, index=0):
            self.index = index

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def synchronize(self):
            return None

    class CUDARuntimeError(RuntimeError):
        pass

    cupy.cuda = types.SimpleNamespace(
        Device=Device,
        runtime=types.SimpleNamespace(
            getDeviceCount=lambda: 1, getDevice=lambda: 0, CUDARuntimeError=CUDARuntimeError
        ),
    )
    return cupy


def pytest_configure(config):
    install()


def install() -> None:
    """Put the stand-ins in place: `import cupy` gives the numpy-backed one, graphc sees one
    GPU, and `codegen.cuda.device.gpu` gives the emulated one."""
    cupy = _cupy()
    sys.modules["cupy"] = cupy
    from codegen.cuda import device
    from codegen.cuda.emulate import EmulatedDevice
    from graphc import _device

    _device._cupy = cupy

    class EmulatedGPU(EmulatedDevice):
        """The emulation with the stand-in's arrays in and out."""

        def __init__(self):
            super().__init__(needs_code=True)
            self.xp = cupy

        def load(self, source, code, kind, kernels):
            launches = super().load(source, code, kind, kernels)

            def plain(launch):  # (the emulation takes plain numpy arrays)
                return lambda grid, block, args: launch(
                    grid, block, [np.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
                )

            return {name: plain(launch) for name, launch in launches.items()}

    device.gpu = lambda name="cuda": EmulatedGPU()
