"""A stand-in for cupy on machines without a GPU, for the tests of the GPU device's plumbing
(importable from any test: pyproject's pytest `pythonpath` puts tests/ on the path)."""

import types

import numpy as np


def fake_cupy(launches: list):
    """A stand-in for the parts of cupy the GPU device uses: numpy arrays 'on the device', a
    device of compute capability 9.0, and a module whose functions record their launches
    (they compute nothing)."""

    class Module:
        def load(self, image: bytes):
            assert image[:4] == b"\x7fELF" or image.endswith(b"\0"), "PTX goes to the driver as a C string"
            self.image = image

        def get_function(self, name: str):
            assert name.encode() in self.image, f"{name} is not in the loaded code"
            return lambda grid, block, args: launches.append((name, grid, block, list(args)))

    class Device:
        compute_capability = "90"

        def __init__(self, index=0):
            self.index = index

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def synchronize(self):
            launches.append("synchronize")

    class CUDARuntimeError(RuntimeError):
        pass

    class CUDADriverError(RuntimeError):
        pass

    fake = types.ModuleType("cupy")
    fake.__getattr__ = lambda name: getattr(np, name)
    fake.cuda = types.SimpleNamespace(
        Device=Device,
        function=types.SimpleNamespace(Module=Module),
        driver=types.SimpleNamespace(CUDADriverError=CUDADriverError),
        runtime=types.SimpleNamespace(
            getDeviceCount=lambda: 1,
            CUDARuntimeError=CUDARuntimeError,
            getDeviceProperties=lambda index: {"name": b"Fake H100"},
            driverGetVersion=lambda: 12040,
        ),
    )
    return fake
