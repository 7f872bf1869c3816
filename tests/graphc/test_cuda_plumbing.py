"""The CUDA device path without a GPU: a stand-in for cupy whose arrays are a numpy subclass,
so the device plumbing (placement, transfers, mixing errors, printing, autograd across the
transfer) runs on the CPU. Real kernels on a GPU are tested under the `cuda` marker."""

import numpy as np
import pytest
from fake_cupy import DeviceArray, numpy_cupy

import graphc
from graphc import _device


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(_device, "_cupy", numpy_cupy())
    yield


def test_tensors_move_to_cuda_and_back(fake_cuda):
    assert graphc.cuda.is_available() and graphc.cuda.device_count() == 1
    x = graphc.ones(2, 2, device="cuda")
    assert x.is_cuda and x.device == graphc.device("cuda:0") and str(x.device) == "cuda:0"
    assert repr(x) == "tensor([[1., 1.],\n        [1., 1.]], device='cuda:0')"
    y = x * 3 + 1
    assert y.is_cuda and type(y._data) is DeviceArray
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


def test_a_module_on_cuda_is_scripted_for_cuda_and_stays_there(fake_cuda, monkeypatch):
    """Scripting a module whose parameters live on CUDA targets CUDA (here the CPU emulation
    stands in for the GPU codegen.cuda.device.gpu would give); the capture itself runs on the
    CPU and the module goes back to its device."""
    from codegen.cuda import device as cuda_device
    from codegen.cuda import emulate

    if emulate.compiler() is None:
        pytest.skip("needs a C++ compiler (g++) for the emulation")
    asked = []
    monkeypatch.setattr(cuda_device, "gpu", lambda name: asked.append(name) or emulate.EmulatedDevice())
    graphc.manual_seed(0)
    model = graphc.nn.Sequential(graphc.nn.Linear(4, 8), graphc.nn.Tanh(), graphc.nn.Linear(8, 2)).eval()
    x = graphc.randn(3, 4)
    with graphc.no_grad():
        want = model(x).numpy()
    model.cuda()
    scripted = graphc.script(model, (x,))
    assert scripted.backend == "cuda" and asked == ["cuda:0"]
    assert all(p.is_cuda for p in model.parameters())
    np.testing.assert_allclose(scripted(x).numpy(), want, rtol=1e-5, atol=1e-6)
    cpu_model = graphc.nn.Linear(4, 2).eval()
    assert graphc.script(cpu_model, (x,)).backend == "llvm"


def test_the_current_device_as_torch_cuda_sets_it(monkeypatch):
    monkeypatch.setattr(_device, "_cupy", numpy_cupy(gpus=2))
    assert graphc.cuda.current_device() == 0
    graphc.cuda.set_device(1)
    assert graphc.cuda.current_device() == 1 and _device.resolve("cuda") == graphc.device("cuda:1")
    with graphc.cuda.device(0):
        assert graphc.cuda.current_device() == 0 and _device.resolve("cuda") == graphc.device("cuda:0")
        with graphc.cuda.device("cuda:1"):
            assert graphc.cuda.current_device() == 1
        assert graphc.cuda.current_device() == 0
    assert graphc.cuda.current_device() == 1  # (the device before the context, again)
    assert graphc.cuda.get_device_properties(0).name == "Stand-in GPU 0"  # (0 is cuda:0, not 'cuda')
    assert graphc.cuda.get_device_properties().name == "Stand-in GPU 1"
    graphc.cuda.set_device(graphc.device("cuda", 0))
    assert _device.resolve("cuda:1") == graphc.device("cuda:1")  # (an index is kept as given)
    with pytest.raises(graphc.DeviceError, match=r"'cuda:2' was requested but only 2 GPU\(s\) exist"):
        graphc.cuda.set_device(2)
    with pytest.raises(graphc.DeviceError, match="expected a CUDA device, got 'cpu'"):
        graphc.cuda.set_device("cpu")


def test_device_properties_and_memory(fake_cuda):
    import gc

    props = graphc.cuda.get_device_properties(0)
    assert (props.name, props.major, props.minor) == ("Stand-in GPU 0", 9, 0)
    assert props.total_memory == 80 << 30 and props.multi_processor_count == 132
    gc.collect()
    before = graphc.cuda.memory_allocated()
    x = graphc.ones(1000, device="cuda")
    assert graphc.cuda.memory_allocated() - before >= 4000
    assert graphc.cuda.memory_reserved() >= graphc.cuda.memory_allocated()
    del x
    gc.collect()
    assert graphc.cuda.memory_allocated() == before
    graphc.cuda.empty_cache()


def test_without_cuda_the_memory_calls_say_so(monkeypatch):
    monkeypatch.setattr(_device, "cuda_device_count", lambda: 0)
    graphc.cuda.empty_cache()  # (nothing to give back)
    for call in (
        graphc.cuda.memory_allocated,
        graphc.cuda.get_device_properties,
        lambda: graphc.cuda.set_device(0),
    ):
        with pytest.raises(graphc.DeviceError, match="CUDA is not available here"):
            call()
