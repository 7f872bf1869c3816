"""`graphc.cuda`, as `torch.cuda`: whether CUDA can be used here and on which devices, the
current device, and the memory CUDA tensors hold (cupy's memory pool).

>>> graphc.cuda.is_available()
False
>>> graphc.cuda.set_device(1)                  # "cuda" now means cuda:1
>>> with graphc.cuda.device(0): x = graphc.ones(3, device="cuda")   # on cuda:0
"""

from __future__ import annotations

from dataclasses import dataclass

from graphc._device import cuda_device_count


def is_available() -> bool:
    """True when cupy is installed and a CUDA GPU with a working driver is present."""
    return cuda_device_count() > 0


def device_count() -> int:
    """Number of CUDA devices (0 when CUDA is not available)."""
    return cuda_device_count()


def current_device() -> int:
    from graphc._device import cupy_module

    return int(cupy_module().cuda.runtime.getDevice())


def get_device_name(device=None) -> str:
    """The name of a CUDA device (a DeviceError without CUDA)."""
    from graphc._device import cupy_module, resolve

    dev = resolve(device if device is not None else "cuda")
    props = cupy_module().cuda.runtime.getDeviceProperties(dev.index or 0)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def synchronize() -> None:
    """Wait for all work on the current CUDA device to finish (nothing to do without CUDA)."""
    if is_available():
        from graphc._device import cupy_module

        cupy_module().cuda.runtime.deviceSynchronize()


def manual_seed(seed: int) -> None:
    """Seed CUDA random numbers: graphc draws all random numbers from one generator, so this
    seeds that generator (`graphc.manual_seed`)."""
    from graphc._creation import manual_seed as seed_all

    seed_all(seed)


manual_seed_all = manual_seed


def set_device(device) -> None:
    """Make `device` (an index, 'cuda:N' or a graphc.device) the current CUDA device: the one
    'cuda' without an index means, in this thread."""
    from graphc._device import cupy_module, resolve

    index = _index(resolve(device))
    cupy_module().cuda.runtime.setDevice(index)


class device:
    """A context in which `device` is the current CUDA device (the previous one afterwards)."""

    def __init__(self, device) -> None:
        from graphc._device import resolve

        self.index = None if device is None else _index(resolve(device))

    def __enter__(self):
        if self.index is not None:
            self._previous = current_device()
            set_device(self.index)
        return self

    def __exit__(self, *exc) -> None:
        if self.index is not None:
            set_device(self._previous)


@dataclass(frozen=True)
class _CudaDeviceProperties:
    name: str
    major: int
    minor: int
    total_memory: int
    multi_processor_count: int


def get_device_properties(device=None) -> _CudaDeviceProperties:
    """Name, compute capability (major, minor), memory in bytes and multiprocessors of a CUDA
    device (a DeviceError without CUDA)."""
    from graphc._device import cupy_module, resolve

    index = _index(resolve("cuda" if device is None else device))
    props = cupy_module().cuda.runtime.getDeviceProperties(index)
    name = props["name"]
    return _CudaDeviceProperties(
        name.decode() if isinstance(name, bytes) else str(name),
        int(props["major"]),
        int(props["minor"]),
        int(props["totalGlobalMem"]),
        int(props["multiProcessorCount"]),
    )


def memory_allocated(device=None) -> int:
    """Bytes that CUDA tensors (and other cupy arrays) hold on a device now."""
    return _pool_bytes(device, "used_bytes")


def memory_reserved(device=None) -> int:
    """Bytes cupy's memory pool holds on a device: in use, plus cached for reuse."""
    return _pool_bytes(device, "total_bytes")


def empty_cache() -> None:
    """Give the memory cupy's pool caches (held by no array) back to the driver, so other
    programs can use it (nothing to do without CUDA)."""
    if is_available():
        from graphc._device import cupy_module

        cupy_module().get_default_memory_pool().free_all_blocks()


def _pool_bytes(device, which: str) -> int:
    from graphc._device import cupy_module, resolve

    index = _index(resolve("cuda" if device is None else device))
    cupy = cupy_module()
    with cupy.cuda.Device(index):  # (the pool counts per device)
        return int(getattr(cupy.get_default_memory_pool(), which)())


def _index(device) -> int:
    if device.type != "cuda":
        from graphc.errors import DeviceError

        raise DeviceError(f"expected a CUDA device, got {str(device)!r}")
    return device.index
