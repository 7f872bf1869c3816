"""Compiled CUDA kernels on a real GPU (skipped without cupy and a GPU; run with the command in
tests/gpu/README.md): every kernel kind of the shared graphs matches the reference interpreter,
the driver loads NVRTC's PTX and cubins, and module files run through `runtime.load(device=
"cuda")` with numpy or cupy arrays in and out, matching the CPU; eager training steps on the GPU
match the same steps on the CPU."""

import numpy as np
import pytest
from cuda_graphs import GRAPHS, inputs, products, with_weights
from testmodels import LeNet

import graphc
import graphc.nn as nn
import runtime

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not graphc.cuda.is_available(), reason="needs cupy and a CUDA GPU"),
]


@pytest.fixture(scope="module")
def device():
    from codegen.cuda.device import gpu

    return gpu("cuda")


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_every_kernel_kind_matches_the_interpreter(device, name):
    from codegen.cuda.executable import CudaGraph
    from ir.interpreter import run

    graph = with_weights(GRAPHS[name])
    exe = CudaGraph(graph, device)
    assert exe.code_kind in ("cubin", "ptx")
    for batch in (1, 3, 64, 1000):
        arrays = inputs(graph, batch, seed=batch, special=not products(name))
        with np.errstate(all="ignore"):
            want = run(graph, arrays)
        got = [device.to_host(a) for a in exe.run(arrays)]
        for g, expected in zip(got, want, strict=True):
            assert g.dtype == expected.dtype and g.shape == expected.shape
            if g.dtype.kind == "f":
                # (the GPU's math functions are within 2 ulp of numpy's; sums run in another
                # order, and a gradient's over all the batch's images: relative to the largest;
                # among 1000 random rows some sums nearly cancel, and a quotient by one of them
                # magnifies its rounding)
                tolerance = 1e-4 if products(name) else 1e-5 if batch <= 64 else 1e-3
                scale = float(np.abs(expected[np.isfinite(expected)]).max(initial=1.0))
                atol = tolerance * scale if products(name) else tolerance
                np.testing.assert_allclose(g, expected, rtol=tolerance, atol=atol, equal_nan=True)
            else:
                np.testing.assert_array_equal(g, expected)


def test_the_driver_loads_ptx_for_the_oldest_architecture(device):
    from codegen.cuda.executable import CudaGraph, compiled

    graph = with_weights(GRAPHS["softmax, log_softmax and a per-row quotient"])
    exe = CudaGraph(graph, device)
    ptx = compiled(exe.cuda_source, "ptx", 80)
    launch = device.load(exe.cuda_source, ptx, "ptx", exe.kernels)  # the driver JIT-compiles it
    assert set(launch) == {k.name for k in exe.kernels}


def _models():
    graphc.manual_seed(11)
    mlp = nn.Sequential(nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 5), nn.LogSoftmax(dim=1)).eval()
    return {"mlp": (mlp, (12,)), "lenet": (LeNet().eval(), (1, 32, 32))}


@pytest.mark.parametrize("name", ["mlp", "lenet"])
def test_a_module_on_the_gpu_scripts_saves_and_loads_for_the_gpu(tmp_path, monkeypatch, name):
    import cupy

    model, features = _models()[name]
    x = np.random.default_rng(0).standard_normal((5, *features)).astype(np.float32)
    with graphc.no_grad():
        want = model(graphc.tensor(x)).numpy()
    model.cuda()
    scripted = graphc.script(model, (graphc.randn(2, *features),))
    assert scripted.backend == "cuda"
    out = scripted(graphc.tensor(x, device="cuda"))
    assert out.is_cuda
    np.testing.assert_allclose(out.cpu().numpy(), want, rtol=1e-4, atol=1e-5)
    path = tmp_path / f"{name}.gcm"
    scripted.save(path)
    for trust in (False, True):
        monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / f"cache-{trust}"))  # (nothing cached)
        loaded = runtime.load(path, device="cuda", trust_embedded_code=trust)
        (host,) = loaded(x)
        assert type(host) is np.ndarray
        np.testing.assert_allclose(host, want, rtol=1e-4, atol=1e-5)
        (on_device,) = loaded(cupy.asarray(x))
        assert isinstance(on_device, cupy.ndarray)
        np.testing.assert_allclose(on_device.get(), host, rtol=1e-6)


def test_training_steps_on_the_gpu_match_the_cpu():
    """The tutorial's "training on GPU": `net.to(device)`, each batch moved with `.to(device)`,
    then forward, cross-entropy, backward and an SGD step with momentum, all eager on cupy
    arrays: the same losses and weights as on the CPU."""
    import copy

    graphc.manual_seed(0)
    models = {"cpu": LeNet()}
    models["cuda"] = copy.deepcopy(models["cpu"]).to("cuda")
    assert all(p.is_cuda for p in models["cuda"].parameters())
    rng = np.random.default_rng(1)
    batches = [
        (rng.standard_normal((16, 1, 32, 32)).astype(np.float32), rng.integers(0, 10, 16)) for _ in range(3)
    ]
    losses = {}
    for device, model in models.items():
        optimizer = graphc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        losses[device] = []
        for images, labels in batches:
            x, y = graphc.tensor(images).to(device), graphc.tensor(labels).to(device)
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            assert loss.is_cuda == (device == "cuda")
            losses[device].append(loss.item())
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-4)
    for (name, p), q in zip(models["cpu"].named_parameters(), models["cuda"].parameters(), strict=True):
        assert q.is_cuda
        np.testing.assert_allclose(
            q.detach().cpu().numpy(), p.detach().numpy(), rtol=1e-3, atol=1e-5, err_msg=name
        )
