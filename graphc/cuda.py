"""`graphc.cuda`: whether CUDA can be used here, and how many devices there are.

>>> graphc.cuda.is_available()
False
"""

from __future__ import annotations

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
