"""backend='llvm' in graphc.script, graphc.jit.load and runtime.load gives what eager and the
interpreter give; the interpreter path never imports llvmlite."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from compiled import compare_cuda_with_interpreter
from testmodels import Gated, LeNet, TwoMethods

import graphc
import runtime

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_scripted_lenet_on_llvm_matches_eager(batch):
    graphc.manual_seed(0)
    net = LeNet("flatten").eval()
    scripted = graphc.script(net, (graphc.randn(2, 1, 32, 32),), backend="llvm")
    x = graphc.randn(batch, 1, 32, 32)
    with graphc.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(scripted(x).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_saved_modules_run_on_llvm_in_runtime_and_jit_load(tmp_path):
    graphc.manual_seed(1)
    gated = Gated(6).eval()
    two = TwoMethods().eval()
    graphc.script(gated, (graphc.randn(3, 6),)).save(tmp_path / "gated.gcm")
    graphc.script(two, (graphc.randn(3, 6),), methods=["forward", "embed"]).save(tmp_path / "two.gcm")
    rng = np.random.default_rng(0)
    for name in ("gated", "two"):
        reference = runtime.load(tmp_path / f"{name}.gcm")
        compiled = runtime.load(tmp_path / f"{name}.gcm", backend="llvm")
        scripted = graphc.jit.load(tmp_path / f"{name}.gcm", backend="llvm")
        assert compiled.backend == "llvm" and scripted.backend == "llvm"
        for _ in range(6):
            x = (rng.standard_normal((5, 6)) * 5).astype(np.float32)
            for method in reference.methods:
                (want,) = reference(x, method=method)
                np.testing.assert_allclose(compiled(x, method=method)[0], want, rtol=1e-6, atol=1e-6)
                got = getattr(scripted, method)(x) if method != "forward" else scripted(x)
                np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)


def test_unknown_backends_and_llvm_on_cuda_are_refused(tmp_path):
    graphc.script(TwoMethods().eval(), (graphc.randn(2, 6),)).save(tmp_path / "m.gcm")
    with pytest.raises(ValueError, match="unknown backend 'tvm'"):
        runtime.load(tmp_path / "m.gcm", backend="tvm")
    with pytest.raises(ValueError, match="unknown backend 'tvm'"):
        graphc.script(TwoMethods().eval(), (graphc.randn(2, 6),), backend="tvm")
    with pytest.raises(runtime.DeviceError):
        runtime.load(tmp_path / "m.gcm", device="cuda", backend="llvm")


def test_interpreter_runtime_does_not_import_llvmlite(tmp_path):
    graphc.script(TwoMethods().eval(), (graphc.randn(2, 6),)).save(tmp_path / "m.gcm")
    code = (
        "import sys, numpy as np, runtime\n"
        f"m = runtime.load({str(tmp_path / 'm.gcm')!r}, backend='interpreter')\n"
        "m(np.ones((2, 6), np.float32))\n"
        "assert 'llvmlite' not in sys.modules, 'llvmlite was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_graphc_dump_writes_the_schedule(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_DUMP", str(tmp_path))
    graphc.manual_seed(0)
    scripted = graphc.script(LeNet("flatten").eval(), (graphc.randn(2, 1, 32, 32),))
    scripted(graphc.randn(1, 1, 32, 32))
    text = (tmp_path / "forward.schedule.txt").read_text()
    assert "conv2d[stride=(1, 1)" in text and "max_pool2d[" in text and "matmul ->" in text
    assert (tmp_path / "forward.00.input.txt").exists()  # the passes' dumps beside it


class _Block(graphc.nn.Module):
    """A transformer block: layer norm, single-head attention (q @ k^T, softmax, @ v), a GELU
    MLP, residuals; exercises row kernels, views, batched matmuls and erf together."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        nn = graphc.nn
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.out = (nn.Linear(d, d) for _ in range(4))
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.scale = 1.0 / d**0.5

    def forward(self, x):
        h = self.norm1(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        attention = graphc.nn.functional.softmax(q @ k.transpose(1, 2) * self.scale, dim=-1)
        x = x + self.out(attention @ v)
        return x + self.mlp(self.norm2(x))


def test_a_transformer_block_compiles_to_kernels_only_and_matches_eager():
    graphc.manual_seed(3)
    block = _Block().eval()
    scripted = graphc.script(block, (graphc.randn(2, 5, 16),), backend="llvm")
    from codegen.executable import compile_graph
    from codegen.schedule import NodeStep

    exe = compile_graph(scripted.graph)
    assert not [s.node.op for s in exe.steps if isinstance(s, NodeStep) and s.node.op != "reshape"]
    assert exe.native is not None
    # k^T is packed by q @ k^T's kernel straight from k (a view, never copied): no copy kernel
    assert not [line for line in exe.schedule_text.splitlines() if "out[i] = in0[i]  #" in line]
    assert "b: f32[batch,16,5] view(strides=[80, 1, 16]" in exe.schedule_text
    for batch in (1, 3):
        x = graphc.randn(batch, 5, 16)
        with graphc.no_grad():
            expected = block(x).numpy()
        np.testing.assert_allclose(scripted(x).numpy(), expected, rtol=2e-5, atol=2e-5)
    # and as CUDA kernels (layer norms, attention's batched products through views, softmax)
    compare_cuda_with_interpreter(scripted.graph, [x.numpy()], 2e-5)
