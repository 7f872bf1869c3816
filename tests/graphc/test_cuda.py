"""Eager ops on a real CUDA device (cupy): the same op definitions as on the CPU, compared with
CPU results. Skipped without cupy and a GPU; run on a GPU machine with `pytest -m cuda`."""

import numpy as np
import pytest

import graphc

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not graphc.cuda.is_available(), reason="needs cupy and a CUDA GPU"),
]


def test_elementwise_reduction_and_matmul_match_the_cpu():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(64, 32)), rng.normal(size=(32, 16))
    ca, cb = graphc.tensor(a, device="cuda"), graphc.tensor(b, device="cuda")
    out = graphc.tanh(ca) @ cb
    ref = np.tanh(a) @ b
    np.testing.assert_allclose(out.cpu().numpy(), ref, rtol=1e-10)
    np.testing.assert_allclose(ca.sum(0).cpu().numpy(), a.sum(0), rtol=1e-10)
    assert repr(graphc.ones(1, device="cuda")) == "tensor([1.], device='cuda:0')"


def test_autograd_on_cuda():
    x = graphc.rand(8, 8, device="cuda", dtype=graphc.float64, requires_grad=True)
    (x.sin() * x).sum().backward()
    ref = np.cos(x.detach().cpu().numpy()) * x.detach().cpu().numpy() + np.sin(x.detach().cpu().numpy())
    assert x.grad.is_cuda
    np.testing.assert_allclose(x.grad.cpu().numpy(), ref, rtol=1e-10)
    assert graphc.autograd.gradcheck(lambda t: (t * t).sum(1), (x[:2, :3].detach().clone().requires_grad_(),))


def test_gradients_that_scatter_match_the_cpu():
    """The backward passes that scatter values back to where they came from (gather, max along a
    dim, sort, overlapping max pooling): on cupy, which lacks some of numpy's arguments
    (`indices(sparse=True)`), the same gradients as on the CPU."""
    import graphc.nn.functional as F

    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 9, 9))
    index = rng.integers(0, 9, (2, 3, 9, 4))
    grads = {}
    for device in ("cpu", "cuda"):
        t = graphc.tensor(x, device=device, requires_grad=True)
        i = graphc.tensor(index, device=device)
        pooled = F.max_pool2d(t, 3, stride=2)  # (windows overlap)
        total = (
            pooled.sum() + t.gather(3, i).sum() + t.max(dim=2).values.sum() + t.sort(dim=1).values[:, 0].sum()
        )
        total.backward()
        grads[device] = t.grad.cpu().numpy()
    np.testing.assert_allclose(grads["cuda"], grads["cpu"], rtol=1e-12)


def test_the_device_its_properties_and_memory():
    props = graphc.cuda.get_device_properties(0)
    assert props.name == graphc.cuda.get_device_name(0) and props.major >= 7
    assert props.total_memory > 1 << 30 and props.multi_processor_count > 0
    graphc.cuda.set_device(0)
    with graphc.cuda.device(0):
        assert graphc.cuda.current_device() == 0
    before = graphc.cuda.memory_allocated()
    x = graphc.ones(1 << 20, device="cuda")  # 4 MiB
    assert graphc.cuda.memory_allocated() - before >= 4 << 20
    assert graphc.cuda.memory_reserved() >= graphc.cuda.memory_allocated()
    del x
    graphc.cuda.empty_cache()
    assert graphc.cuda.memory_allocated() == before
