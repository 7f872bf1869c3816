"""A pytest plugin that runs the GPU tests on a machine without a GPU, so they cannot rot
between the rare sessions that have one: cupy is a numpy-backed stand-in (its arrays are a numpy
subclass with `.get()`), and the GPU that `codegen.cuda.device.gpu` gives is the CPU emulation
of CUDA threads, asking for PTX or a cubin as a GPU does. Only a real GPU checks the driver,
cupy's calls and the timing; this checks everything the tests themselves do.

    python -m pytest -m cuda tests -p gpu.dry_run

`install()` does the same for a script (benchmarks/cuda.py --quick, in the suite).
"""

import sys

import numpy as np
from fake_cupy import numpy_cupy


def pytest_configure(config):
    install()


def install() -> None:
    """Put the stand-ins in place: `import cupy` gives the numpy-backed one, graphc sees one
    GPU, and `codegen.cuda.device.gpu` gives the emulated one."""
    cupy = numpy_cupy()
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
