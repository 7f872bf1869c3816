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
