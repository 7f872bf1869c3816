"""The CUDA device path without a GPU: a stand-in for cupy whose arrays are a numpy subclass,
so the device plumbing (placement, transfers, mixing errors, printing, autograd across the
transfer) runs on the CPU. Real kernels on a GPU are tested under the `cuda` marker."""

import types

import numpy as np
import pytest

import graphc
from graphc import _device


class FakeDeviceArray(np.ndarray):
    """An array 'on cuda:0': numpy underneath, cupy's `.get()` and `.device` on top."""

    def get(self):
        return np.asarray(self).copy()

    @property
    def device(self):
        return types.SimpleNamespace(id=0)


def _fake_cupy():
    module = types.ModuleType("fake_cupy")
    module.__getattr__ = lambda name: getattr(np, name)
    module.asarray = lambda a, dtype=None: np.array(a, dtype=dtype).view(FakeDeviceArray)
    module.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0),
        Device=lambda index: types.SimpleNamespace(__enter__=lambda s: s, __exit__=lambda s, *a: None),
    )

    class _Device:
        def __init__(self, index):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    module.cuda.Device = _Device
    return module


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(_device, "_cupy", _fake_cupy())
    yield


def test_tensors_move_to_cuda_and_back(fake_cuda):
    assert graphc.cuda.is_available() and graphc.cuda.device_count() == 1
    x = graphc.ones(2, 2, device="cuda")
    assert x.is_cuda and x.device == graphc.device("cuda:0") and str(x.device) == "cuda:0"
    assert repr(x) == "tensor([[1., 1.],\n        [1., 1.]], device='cuda:0')"
    y = x * 3 + 1
    assert y.is_cuda and type(y._data) is FakeDeviceArray
    back = y.cpu()
    assert not back.is_cuda and back.tolist() == [[4.0, 4.0], [4.0, 4.0]]
    assert graphc.rand(3).cuda().is_cuda and graphc.rand(3).to("cuda").device.type == "cuda"


def test_mixing_devices_names_both(fake_cuda):
    with pytest.raises(graphc.DeviceError, match="cuda:0 and cpu|cpu and cuda:0"):
        graphc.ones(2, device="cuda") + graphc.ones(2)


def test_gradients_flow_back_across_the_transfer(fake_cuda):
    x = graphc.tensor([1.0, 2.0], requires_grad=True)
    y = x.to("cuda") * 2
    assert y.grad_fn.name() == "MulBackward0"
    y.sum().backward()
    assert not x.grad.is_cuda and x.grad.tolist() == [2.0, 2.0]


def test_numpy_of_a_cuda_tensor_needs_cpu_first(fake_cuda):
    with pytest.raises(TypeError, match="cpu"):
        graphc.ones(2, device="cuda").numpy()
