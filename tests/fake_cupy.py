"""Stand-ins for cupy on machines without a GPU (importable from any test: pyproject's pytest
`pythonpath` puts tests/ on the path):

- `numpy_cupy()`: an array module whose arrays are numpy underneath with cupy's `.get()` and
  `.device` on top, and one GPU: the eager device's plumbing and the dry run of tests/gpu;
- `fake_cupy(log)`: the parts of cupy the compiled GPU device uses, with a module whose
  functions record their launches in `log` (they compute nothing).
"""

import types
import weakref

import numpy as np


class DeviceArray(np.ndarray):
    """An array 'on cuda:0': numpy underneath, cupy's `.get()` and `.device` on top."""

    def get(self):
        return np.asarray(self).copy()

    @property
    def device(self):
        return types.SimpleNamespace(id=0)


class CUDARuntimeError(RuntimeError):
    pass


class CUDADriverError(RuntimeError):
    pass


def _device_class(log: list | None = None):
    class Device:
        compute_capability = "90"

        def __init__(self, index=0):
            self.index = index

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def synchronize(self):
            if log is not None:
                log.append("synchronize")

    return Device


def _on_device(array) -> DeviceArray:
    on_device = array.view(DeviceArray)
    _live_arrays[id(on_device)] = on_device
    return on_device


def _on_device_too(value):
    """`value` with the arrays in it (a plain numpy array, or a tuple or list of them) 'on the
    device', as everything a cupy function returns is."""
    if type(value) is np.ndarray:
        return _on_device(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_on_device_too(v) for v in value)
    return value


def _device_namespace(namespace):
    """`namespace` (numpy or one of its submodules) whose functions return device arrays: numpy's
    creation functions (arange, full, ...) make plain arrays from no array at all, and
    `as_strided` gives plain ones back; cupy's are all on the device. Ufuncs and types pass as
    they are (a ufunc keeps its inputs' class, and `.at`, `.reduce`)."""

    def lookup(name):
        value = getattr(namespace, name)
        if isinstance(value, types.ModuleType):
            return _device_namespace(value)
        if callable(value) and not isinstance(value, (type, np.ufunc)):
            return lambda *args, **kwargs: _on_device_too(value(*args, **kwargs))
        return value

    proxy = types.ModuleType(getattr(namespace, "__name__", "cupy"))
    proxy.__getattr__ = lookup
    return proxy


class MemoryPool:
    """cupy's memory pool as graphc.cuda reads it: the bytes of the live device arrays."""

    def used_bytes(self):
        return sum(a.nbytes for a in list(_live_arrays.values()))

    def total_bytes(self):
        return self.used_bytes() + 512  # (a block cached for reuse)

    def free_all_blocks(self):
        pass


_live_arrays = weakref.WeakValueDictionary()  # id -> a device array still alive


def numpy_cupy(gpus: int = 1) -> types.ModuleType:
    """cupy as numpy arrays 'on cuda:0', with `gpus` GPUs (a current one, which
    `runtime.setDevice` changes; the arrays stay on cuda:0)."""
    cupy = _device_namespace(np)
    current = [0]

    def set_device(index):
        if not 0 <= index < gpus:
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
        current[0] = index

    pool = MemoryPool()
    cupy.ndarray = DeviceArray
    cupy.asarray = lambda a, dtype=None: (
        a if type(a) is DeviceArray and dtype in (None, a.dtype) else _on_device(np.array(a, dtype=dtype))
    )
    cupy.ascontiguousarray = lambda a, dtype=None: _on_device(np.ascontiguousarray(a, dtype=dtype))
    cupy.empty = lambda shape, dtype=float: _on_device(np.empty(shape, dtype))
    cupy.zeros = lambda shape, dtype=float: _on_device(np.zeros(shape, dtype))
    cupy.cuda = types.SimpleNamespace(
        Device=_device_class(),
        MemoryPool=MemoryPool,
        runtime=types.SimpleNamespace(
            getDeviceCount=lambda: gpus,
            getDevice=lambda: current[0],
            setDevice=set_device,
            getDeviceProperties=lambda index: {
                "name": f"Stand-in GPU {index}".encode(),
                "major": 9,
                "minor": 0,
                "totalGlobalMem": 80 << 30,
                "multiProcessorCount": 132,
            },
            CUDARuntimeError=CUDARuntimeError,
        ),
    )
    cupy.get_default_memory_pool = lambda: pool
    return cupy


def fake_cupy(log: list) -> types.ModuleType:
    """The parts of cupy the GPU device uses: numpy arrays 'on the device', a device of compute
    capability 9.0, and a module whose functions append (name, grid, block, args) to `log`
    (and `synchronize`, "synchronize")."""

    class Module:
        def load(self, image: bytes):
            assert image[:4] == b"\x7fELF" or image.endswith(b"\0"), "PTX goes to the driver as a C string"
            self.image = image

        def get_function(self, name: str):
            assert name.encode() in self.image, f"{name} is not in the loaded code"
            return lambda grid, block, args: log.append((name, grid, block, list(args)))

    fake = types.ModuleType("cupy")
    fake.__getattr__ = lambda name: getattr(np, name)
    fake.cuda = types.SimpleNamespace(
        Device=_device_class(log),
        function=types.SimpleNamespace(Module=Module),
        driver=types.SimpleNamespace(CUDADriverError=CUDADriverError),
        runtime=types.SimpleNamespace(
            getDeviceCount=lambda: 1,
            getDevice=lambda: 0,
            CUDARuntimeError=CUDARuntimeError,
            getDeviceProperties=lambda index: {"name": b"Fake H100"},
            driverGetVersion=lambda: 12040,
        ),
    )
    return fake
