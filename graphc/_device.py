"""Devices: `graphc.device`, array modules per device, and the optional CUDA backend (cupy).

CPU tensors hold numpy arrays; CUDA tensors hold cupy arrays and run the same op definitions.
cupy is imported only when CUDA is asked for, so graphc runs where it is not installed.
"""

from __future__ import annotations

import numpy as np

from graphc.errors import DeviceError


class device:
    """A device such as `graphc.device("cpu")`, `graphc.device("cuda:0")`, `device("cuda", 1)`."""

    __slots__ = ("type", "index")

    def __init__(self, type: str | device | int, index: int | None = None) -> None:
        if isinstance(type, int) and not isinstance(type, bool):  # device(0) is cuda:0
            type, index = "cuda", type
        if isinstance(type, device):
            self.type, self.index = type.type, type.index
            return
        if not isinstance(type, str):
            raise TypeError(f"device() expects a string such as 'cpu' or 'cuda:0', got {type!r}")
        name, _, idx = type.partition(":")
        if name not in ("cpu", "cuda"):
            raise DeviceError(f"unknown device type {name!r} in {type!r}; expected 'cpu' or 'cuda[:index]'")
        if idx:
            if index is not None or not idx.isdigit():
                raise DeviceError(f"invalid device string {type!r}")
            index = int(idx)
        self.type, self.index = name, index

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        idx = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{idx})"


CPU = device("cpu")
_cupy = None


def cupy_module():
    """The cupy module, or a `DeviceError` saying why CUDA cannot be used here."""
    global _cupy
    if _cupy is None:
        try:
            import cupy
        except ImportError:
            raise DeviceError(
                "CUDA was requested but cupy is not installed; install graphc[cuda] "
                "(cupy-cuda12x), or graphc[cuda13] for a CUDA 13 driver, on a machine with an NVIDIA GPU"
            ) from None
        _cupy = cupy
    return _cupy


def cuda_device_count() -> int:
    """Number of usable CUDA devices (0 without cupy, a driver or a GPU)."""
    try:
        cp = cupy_module()
        return int(cp.cuda.runtime.getDeviceCount())
    except Exception:  # no cupy, no driver, no device: all mean "none"
        return 0


def resolve(dev) -> device:
    """A concrete device for `dev` (str, device, int or None); CUDA must be available."""
    if dev is None:
        return CPU
    if isinstance(dev, int):
        dev = device("cuda", dev)
    d = dev if isinstance(dev, device) else device(dev)
    if d.type == "cuda":
        count = cuda_device_count()
        if count == 0:
            raise DeviceError(
                f"device {str(d)!r} was requested but CUDA is not available here "
                "(graphc.cuda.is_available() is False: no cupy, driver or GPU)"
            )
        # ('cuda' alone is the current device, as `graphc.cuda.set_device` left it)
        index = int(cupy_module().cuda.runtime.getDevice()) if d.index is None else d.index
        if index >= count:
            raise DeviceError(f"device 'cuda:{index}' was requested but only {count} GPU(s) exist")
        return device("cuda", index)
    return d


def array_module(arr):
    """numpy for numpy arrays, cupy for cupy arrays."""
    return np if type(arr) is np.ndarray else cupy_module()


def device_of(arr) -> device:
    """The device an array lives on."""
    if type(arr) is np.ndarray:
        return CPU
    return device("cuda", int(arr.device.id))


def to_device(arr, dev: device):
    """`arr` on `dev` (the same array when it is already there)."""
    if dev.type == "cpu":
        return arr if type(arr) is np.ndarray else arr.get()
    cp = cupy_module()
    with cp.cuda.Device(dev.index or 0):
        return cp.asarray(arr)
