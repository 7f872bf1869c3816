"""Module files for CUDA, end to end without a GPU: `graphc.script(..., device=...)` compiles to
CUDA kernels, `save` writes their PTX and cubins for sm_80 and sm_90 and the CUDA C source, and
`runtime.load(path, device=...)` runs them: on the CPU emulation of CUDA (which asks for code as
a GPU does), from the file's code only when trusted, else compiled here, else a DeviceError
saying what is missing. Results match the CPU runtime's."""

import re
import sys

import numpy as np
import pytest
from fake_cupy import fake_cupy
from testmodels import LeNet

import graphc
import graphc.nn as nn
import runtime
from codegen.cuda import emulate, nvrtc
from codegen.cuda.emulate import EmulatedDevice
from ir.module_file import read_module

pytestmark = [
    pytest.mark.skipif(emulate.compiler() is None, reason="needs a C++ compiler (g++) for the emulation"),
    pytest.mark.skipif(not nvrtc.available(), reason="needs NVRTC (pip install nvidia-cuda-nvrtc-cu12)"),
]


def _models():
    graphc.manual_seed(7)
    mlp = nn.Sequential(nn.Linear(12, 16), nn.GELU(), nn.Linear(16, 3), nn.LogSoftmax(dim=1)).eval()
    return {"mlp": (mlp, (12,)), "lenet": (LeNet().eval(), (1, 32, 32))}


@pytest.fixture(scope="module")
def cuda_files(tmp_path_factory):
    """name -> (path, scripted module, input features) of files saved from CUDA-scripted models."""
    directory = tmp_path_factory.mktemp("cuda-gcm")
    out = {}
    for name, (model, features) in _models().items():
        scripted = graphc.script(model, (graphc.randn(2, *features),), device=EmulatedDevice())
        assert scripted.backend == "cuda"
        scripted.save(directory / f"{name}.gcm", metadata={"model": name})
        out[name] = (directory / f"{name}.gcm", scripted, features)
    return out


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))


def _without_nvrtc(monkeypatch):
    monkeypatch.setattr(nvrtc, "available", lambda: False)

    def refuse(*args, **kwargs):
        raise AssertionError("NVRTC was called")

    monkeypatch.setattr(nvrtc, "compile", refuse)


def test_a_cuda_script_runs_like_the_model(cuda_files):
    x = np.random.default_rng(0).standard_normal((5, 1, 32, 32)).astype(np.float32)
    _, scripted, _ = cuda_files["lenet"]
    got = scripted(graphc.tensor(x))
    model, _ = _models()["lenet"]
    with graphc.no_grad():
        want = model(graphc.tensor(x))
    assert isinstance(got, graphc.Tensor)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)


def test_the_file_carries_ptx_cubins_and_source_for_each_architecture(cuda_files):
    for path, scripted, _ in cuda_files.values():
        mf = runtime.load(path, backend="interpreter").module_file
        kinds = {(a.target, a.kind): a for a in mf.artifacts}
        assert set(kinds) == {
            ("cuda/compute_80", "ptx"),
            ("cuda/compute_90", "ptx"),
            ("cuda/sm_80", "cubin"),
            ("cuda/sm_90", "cubin"),
            ("cuda", "cuda-source"),
        }
        source = scripted._executable("forward").cuda_source
        assert mf.artifact_bytes(kinds["cuda", "cuda-source"]).decode() == source
        for arch in (80, 90):
            ptx = mf.artifact_bytes(kinds[f"cuda/compute_{arch}", "ptx"])
            assert f".target sm_{arch}".encode() in ptx
            assert all(f".entry {k.name}(".encode() in ptx for k in scripted._executable("forward").kernels)
            assert mf.artifact_bytes(kinds[f"cuda/sm_{arch}", "cubin"])[:4] == b"\x7fELF"


@pytest.mark.parametrize("name", ["mlp", "lenet"])
def test_runtime_runs_the_trusted_cubin_of_the_file_and_matches_the_cpu(
    cuda_files, name, fresh_cache, monkeypatch
):
    path, _, features = cuda_files[name]
    _without_nvrtc(monkeypatch)  # only the file's code can serve
    device = EmulatedDevice("shuffled", max_blocks=4, capability=90, needs_code=True)
    loaded = runtime.load(path, device=device, trust_embedded_code=True)
    assert loaded.backend == "cuda" and loaded.metadata == {"model": name}
    assert [kind for kind, _ in device.loaded] == ["cubin"]
    cpu = runtime.load(path)
    for batch in (1, 6):
        x = np.random.default_rng(batch).standard_normal((batch, *features)).astype(np.float32)
        (got,) = loaded(x)
        assert type(got) is np.ndarray  # numpy in, numpy out
        np.testing.assert_allclose(got, cpu(x)[0], rtol=1e-4, atol=1e-5)
        (by_name,) = loaded.run({loaded.inputs[0].name: x}).values()
        np.testing.assert_array_equal(by_name, got)
        peak, total = loaded.memory([x])  # (intermediates freed after their last reader)
        assert 0 < peak <= total


def test_other_gpus_get_the_files_code_that_runs_on_them(cuda_files, fresh_cache, monkeypatch):
    path, _, _ = cuda_files["mlp"]
    _without_nvrtc(monkeypatch)
    sm80 = next(a for a in read_module(path).artifacts if a.target == "cuda/sm_80")
    device = EmulatedDevice(capability=86, needs_code=True)  # sm_80's cubin runs on sm_86: no JIT
    runtime.load(path, device=device, trust_embedded_code=True)
    assert device.loaded == [("cubin", read_module(path).artifact_bytes(sm80))]
    device = EmulatedDevice(capability=100, needs_code=True)  # a newer major version: PTX, JIT-compiled
    runtime.load(path, device=device, trust_embedded_code=True)
    ((kind, code),) = device.loaded
    assert kind == "ptx" and b".target sm_90" in code


def test_untrusted_code_is_never_loaded(cuda_files, fresh_cache, monkeypatch):
    path, _, _ = cuda_files["mlp"]
    _without_nvrtc(monkeypatch)
    with pytest.raises(runtime.DeviceError, match="trust_embedded_code=True"):
        runtime.load(path, device=EmulatedDevice(needs_code=True))
    monkeypatch.undo()
    device = EmulatedDevice(capability=90, needs_code=True)  # with NVRTC: compiled here
    loaded = runtime.load(path, device=device)
    ((kind, code),) = device.loaded
    assert kind == "cubin"
    x = np.ones((2, 12), np.float32)
    np.testing.assert_allclose(loaded(x)[0], runtime.load(path)(x)[0], rtol=1e-4, atol=1e-5)


def test_backends_and_devices_that_do_not_go_together_say_so(cuda_files):
    path, _, _ = cuda_files["mlp"]
    with pytest.raises(runtime.DeviceError, match="backend 'cuda' runs on device 'cuda'"):
        runtime.load(path, backend="cuda")
    with pytest.raises(runtime.DeviceError, match="backend 'llvm' compiles for the CPU"):
        runtime.load(path, device=EmulatedDevice(), backend="llvm")
    with pytest.raises(runtime.DeviceError, match="unknown device 'tpu'"):
        runtime.load(path, device="tpu")
    with pytest.raises(ValueError, match="backend 'cuda' does not run on the CPU"):
        graphc.script(nn.Linear(2, 2), (graphc.randn(1, 2),), backend="cuda")


def test_jit_load_runs_a_file_on_the_emulated_device(cuda_files, fresh_cache, monkeypatch):
    path, scripted, features = cuda_files["mlp"]
    _without_nvrtc(monkeypatch)
    device = EmulatedDevice(needs_code=True)
    loaded = graphc.jit.load(path, device=device, trust_embedded_code=True)
    x = graphc.randn(3, *features)
    np.testing.assert_allclose(loaded(x).numpy(), scripted(x).numpy(), rtol=1e-6)
    assert [kind for kind, _ in device.loaded] == ["cubin"]


def test_device_cuda_binds_the_files_code_to_the_gpu(cuda_files, fresh_cache, monkeypatch):
    """runtime.load(path, device="cuda") on a GPU (cupy stood in for: its launches are only
    recorded): the trusted file's sm_90 cubin is loaded, weights go to the device once, every
    kernel is launched on each call, numpy in gives numpy out."""
    launches = []
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(launches))
    _without_nvrtc(monkeypatch)
    path, scripted, features = cuda_files["lenet"]
    loaded = runtime.load(path, device="cuda", trust_embedded_code=True)
    exe = loaded._executables["forward"]
    assert loaded.backend == "cuda" and (exe.code_kind, exe.arch) == ("cubin", 90)
    (out,) = loaded(np.zeros((2, *features), np.float32))
    assert type(out) is np.ndarray and out.shape == (2, 10)
    assert [name for name, *_ in launches] == [k.name for k in exe.kernels]
    loaded.synchronize()
    assert launches[-1] == "synchronize"


def test_a_script_module_moves_between_the_cpu_and_cuda(cuda_files, fresh_cache, monkeypatch):
    path, _, features = cuda_files["mlp"]
    _without_nvrtc(monkeypatch)  # (only the file's code can serve the emulated GPU)
    loaded = graphc.jit.load(path, trust_embedded_code=True)
    assert loaded.backend == "llvm"
    x = graphc.randn(3, *features)
    want = loaded(x).numpy()
    device = EmulatedDevice(needs_code=True)
    assert loaded.to(device) is loaded and loaded.backend == "cuda"
    np.testing.assert_allclose(loaded(x).numpy(), want, rtol=1e-5, atol=1e-6)
    assert [kind for kind, _ in device.loaded] == ["cubin"]  # the file's, trusted when loaded
    assert loaded.cpu() is loaded and loaded.backend == "llvm"
    np.testing.assert_array_equal(loaded(x).numpy(), want)
    with pytest.raises(graphc.DeviceError, match="CUDA is not available"):
        loaded.cuda()
    with pytest.raises(graphc.DeviceError, match="unknown device type 'tpu'"):
        loaded.to("tpu")
    mapped = graphc.jit.load(path, map_location=EmulatedDevice(), trust_embedded_code=True)
    assert mapped.backend == "cuda"
    np.testing.assert_allclose(mapped(x).numpy(), want, rtol=1e-5, atol=1e-6)


def test_the_gpu_run_works_end_to_end_against_stand_ins(tmp_path):
    """tests/gpu/run.sh, the one command a GPU machine runs, with cupy and the GPU stood in for
    (--dry-run: tests/gpu/dry_run.py), so the script, the GPU tests and benchmarks/cuda.py stay
    runnable between the sessions that have a GPU: the environment report, the `cuda`-marked
    tests of tests/gpu (the kernel kinds' part left out here: the emulated tests in
    tests/codegen cover the same graphs), the benchmark (--quick; its numbers mean nothing
    here), each log in $OUT."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        ["bash", str(root / "tests" / "gpu" / "run.sh"), "--dry-run", "-k", "not every_kernel_kind"],
        env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    logs = {
        name: (tmp_path / f"{name}.txt").read_text()
        for name in ("environment", "gpu-tests", "cuda-benchmarks")
    }
    assert "everything the GPU run needs is here (a dry run)" in logs["environment"]
    assert "8 passed" in logs["gpu-tests"]  # (tests/gpu and tests/graphc/test_cuda.py)
    for table in ("| LeNet | 3 |", "| 1000 |", "| 70 |"):
        assert table in logs["cuda-benchmarks"], logs["cuda-benchmarks"]


def test_the_gpu_run_stops_tests_that_run_too_long_and_still_benchmarks(tmp_path):
    """One device call has 600 s: tests past GPU_TESTS_LIMIT are interrupted (their log says
    so), the benchmarks run all the same, and the exit status is timeout's 124."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        ["bash", str(root / "tests" / "gpu" / "run.sh"), "--dry-run"],
        env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "GPU_TESTS_LIMIT": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 124, done.stdout[-3000:] + done.stderr[-3000:]
    tests = (tmp_path / "gpu-tests.txt").read_text()
    assert "the tests ran past GPU_TESTS_LIMIT=2 s: stopped, so that the benchmarks still run" in tests
    assert "| 70 |" in (tmp_path / "cuda-benchmarks.txt").read_text()


def test_the_gpu_run_stops_first_saying_what_is_missing(tmp_path):
    """Without a GPU (or cupy), tests/gpu/run.sh runs nothing: exit status 2, and the report says
    what is missing and how to get it without a registry."""
    import os
    import subprocess
    from pathlib import Path

    if graphc.cuda.is_available():
        pytest.skip("a GPU is here: tests/gpu runs for real")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        ["bash", str(root / "tests" / "gpu" / "run.sh")],
        env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert re.search(r"MISSING +(cupy|GPU): ", done.stdout), done.stdout
    assert "missing: " in done.stdout and not (tmp_path / "gpu-tests.txt").exists()


def test_the_cli_lists_the_cuda_artifacts_and_says_when_there_is_no_gpu(cuda_files, capsys):
    import io

    from runtime.cli import main

    path, _, _ = cuda_files["mlp"]
    out = io.StringIO()
    assert main(["info", str(path)], out=out) == 0
    text = out.getvalue()
    assert "artifacts: 5" in text
    for line in (
        "cuda/sm_80 cubin (method forward)",
        "cuda/compute_90 ptx (method forward)",
        "cuda cuda-source",
    ):
        assert line in text, text
    if "cupy" not in sys.modules:  # (no GPU here: a clear error, exit status 2)
        assert main(["bench", str(path), "--device", "cuda"], out=io.StringIO()) == 2
        assert "device 'cuda' needs cupy" in capsys.readouterr().err
