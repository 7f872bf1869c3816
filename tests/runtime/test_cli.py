"""graphc-runtime info / run / bench on a saved module, and its errors (exit status 2, a message
on stderr, no traceback)."""

import io
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import runtime
from runtime.cli import main

ROOT = Path(__file__).resolve().parents[2]


class TwoOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = self.fc(x)
        return y, y.relu()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    graphc.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    path = tmp_path_factory.mktemp("cli") / "mlp.gcm"
    graphc.script(model, (graphc.randn(4, 6),)).save(path, metadata={"task": "cli"})
    return path


def _main(*argv):
    out = io.StringIO()
    code = main([str(a) for a in argv], out=out)
    return code, out.getvalue()


def test_info_lists_signature_ops_weights_artifacts(model_file):
    code, text = _main("info", model_file)
    assert code == 0
    assert "module format 1, op set 1" in text
    assert "metadata: task = cli" in text
    assert "input  input: float32[batch, 6]" in text
    assert "output output: float32[batch, 3]" in text
    assert "ops (3 nodes): linear x2, relu" in text
    assert "weights: 4 tensors, 212 B" in text and "0.weight: float32[5, 6]" in text
    assert "artifacts: 2" in text and "shared-library (method forward)" in text
    assert "shared-library (worker pool)" in text
    assert text.count(": for this CPU and compiler (used with --trust-embedded-code)") == 2


def test_info_says_when_the_code_is_for_another_cpu(model_file, monkeypatch):
    from codegen import host

    monkeypatch.setattr(host, "fingerprint", lambda: "a CPU without AVX-512")
    code, text = _main("info", model_file)
    assert code == 0
    assert text.count(": for another CPU or compiler version (the graphs are compiled here instead)") == 2


def test_run_writes_what_the_runtime_computes(model_file, tmp_path):
    x = np.random.default_rng(0).standard_normal((7, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, text = _main("run", model_file, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert code == 0 and "wrote output" in text
    (expected,) = runtime.load(model_file)(x)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)
    code, text = _main("run", model_file, "--input", f"input={tmp_path / 'x.npy'}")
    assert code == 0 and text.startswith("output: float32[7, 3]")


def test_run_with_several_outputs_needs_npz(tmp_path):
    graphc.manual_seed(1)
    model = TwoOut().eval()
    graphc.script(model, (graphc.randn(2, 4),)).save(tmp_path / "two.gcm")
    np.save(tmp_path / "x.npy", np.ones((3, 4), np.float32))
    args = ("run", tmp_path / "two.gcm", "--input", tmp_path / "x.npy", "--output")
    code, _ = _main(*args, tmp_path / "y.npy")
    assert code == 2
    code, _ = _main(*args, tmp_path / "y.npz")
    assert code == 0
    with np.load(tmp_path / "y.npz") as z:
        assert sorted(z.files) == ["output0", "output1"]
        np.testing.assert_array_equal(z["output1"], np.maximum(z["output0"], 0))


def test_bench_reports_percentiles_and_throughput(model_file):
    code, text = _main("bench", model_file, "--batch", 8, "--iters", 20, "--warmup", 1)
    assert code == 0
    assert "forward(input[8, 6])" in text and "20 runs" in text
    assert "p50" in text and "p99" in text and "samples/s at batch 8" in text
    # the first layer's output (8 x 5 float32) is the only intermediate: one 64-byte-aligned slot
    assert "memory: one arena of 192 B holds intermediates of 160 B in all" in text
    # how long the load took, and where the code came from (the cache has it by now)
    code, text = _main("bench", model_file, "--iters", 2, "--warmup", 1)
    assert re.search(
        r"\nload: [\d.]+ ms \(code for this CPU run from its execution plan: not scheduled", text
    )
    code, text = _main("bench", model_file, "--iters", 2, "--warmup", 1, "--backend", "interpreter")
    assert re.search(r"\nload: [\d.]+ ms \(the reference interpreter: nothing compiled\)", text)


def test_bench_says_when_the_code_was_compiled_at_load(model_file, tmp_path):
    import os

    done = subprocess.run(
        [sys.executable, "-m", "runtime", "bench", str(model_file), "--iters", "2", "--warmup", "1"],
        env={**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path / "empty")},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"\nload: [\d.]+ ms \(compiled here\)", done.stdout), done.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (("run", "{model}", "--input", "y={x}"), "no input 'y'"),
        (("run", "{model}", "--input", "{tmp}/missing.npy"), "cannot read"),
        (("run", "{model}", "--input", "{x}", "--method", "embed"), "no method 'embed'"),
        (("run", "{model}", "--input", "{bad_x}"), "expected shape"),
        (("info", "{tmp}/junk.gcm"), "not a graphc module file"),
        (("info", "{tmp}/absent.gcm"), "No such file"),
        (("bench", "{model}", "--batch", "0"), "at least 1"),
    ],
)
def test_errors_exit_2_with_a_message(model_file, tmp_path, capsys, argv, message):
    np.save(tmp_path / "x.npy", np.ones((2, 6), np.float32))
    np.save(tmp_path / "bad_x.npy", np.ones((2, 5), np.float32))
    (tmp_path / "junk.gcm").write_bytes(b"PK\x03\x04" + b"\0" * 60)
    fill = {"model": model_file, "x": tmp_path / "x.npy", "bad_x": tmp_path / "bad_x.npy", "tmp": tmp_path}
    code, _ = _main(*(a.format(**fill) for a in argv))
    assert code == 2
    assert message in capsys.readouterr().err


def test_pickled_inputs_are_refused(model_file, tmp_path, capsys):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _ = _main("run", model_file, "--input", tmp_path / "obj.npy")
    assert code == 2 and "allow_pickle" in capsys.readouterr().err


def test_console_script_and_module_entry_point(model_file):
    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "graphc-runtime"]
    assert ep.value == "runtime.cli:main"
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", "info", str(model_file)], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "method forward" in proc.stdout


def test_memory_report_of_a_loaded_module(model_file):
    x = np.zeros((8, 6), np.float32)
    assert runtime.load(model_file).memory([x]) == (192, 160)
    assert runtime.load(model_file).memory({"input": np.zeros((1000, 6), np.float32)}) == (20032, 20000)
    assert runtime.load(model_file, backend="interpreter").memory([x]) is None  # no arena there


def _env(monkeypatch, cupy=None) -> str:
    if cupy is not None:
        monkeypatch.setitem(sys.modules, "cupy", cupy)
    out = io.StringIO()
    assert main(["env"], out=out) == 0
    return out.getvalue()


def test_env_lists_what_each_backend_needs_and_the_backends_that_work(monkeypatch):
    from codegen.cuda import nvrtc

    text = _env(monkeypatch)
    assert "  numpy:" in text and np.__version__ in text
    assert "  llvmlite:" in text and "(LLVM " in text and "-bit vectors" in text
    if nvrtc.available():
        assert f"  NVRTC:             {'.'.join(map(str, nvrtc.version()))} ({nvrtc.location()})" in text
    assert "cpu: llvm, interpreter" in text.splitlines()[-1]


def test_env_reports_the_gpus_through_cupy(monkeypatch):
    from fake_cupy import fake_cupy

    text = _env(monkeypatch, fake_cupy([]))
    assert "  GPU:" in text and "cuda:0 (Fake H100), sm_90, driver CUDA 12.4" in text
    assert text.splitlines()[-1].endswith("cuda: yes")


def test_env_says_why_cuda_is_missing(monkeypatch):
    import types

    from fake_cupy import CUDARuntimeError, numpy_cupy

    from codegen.llvm import compiler

    def no_driver():
        raise CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    cupy = numpy_cupy()
    cupy.cuda.runtime = types.SimpleNamespace(getDeviceCount=no_driver, CUDARuntimeError=CUDARuntimeError)
    monkeypatch.setattr(compiler, "c_driver", lambda: None)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", "")
    text = _env(monkeypatch, cupy)
    assert "! GPU:" in text and "not usable here: cudaErrorInsufficientDriver" in text
    assert "! C compiler driver: none: compiled code stays in memory" in text
    assert "! code cache:" in text and "off" in text
    assert text.splitlines()[-1].endswith("cuda: no (no usable GPU)")


def test_cache_says_what_it_holds_and_clears_graphcs_files_only(model_file, tmp_path, monkeypatch):
    import os

    directory = tmp_path / "cache"
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(directory)}
    done = subprocess.run(  # (a fresh process: this one has the code loaded already)
        [sys.executable, "-m", "runtime", "bench", str(model_file), "--iters", "1", "--warmup", "0"],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (directory / "notes.txt").write_text("not graphc's")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(directory))
    code, text = _main("cache")
    assert code == 0 and f"code cache: {directory}" in text
    libraries = int(re.search(r"(\d+) CPU libraries", text)[1])
    assert libraries >= 1  # (the graph's)
    code, text = _main("cache", "--clear")
    assert code == 0 and re.search(r"cleared: \d+ files", text)
    assert [f.name for f in directory.iterdir()] == ["notes.txt"]
    code, text = _main("cache")
    assert "0 CPU libraries, 0 object files, 0 PTX modules, 0 cubins: 0 B in 0 files" in text
    monkeypatch.setenv("GRAPHC_CACHE_DIR", "")
    assert _main("cache")[1].startswith("code cache: off")
