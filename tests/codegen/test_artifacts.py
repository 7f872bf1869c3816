"""Compiled code in module files: a module saved from backend 'llvm' carries each method's
shared library for this CPU; a loader on a machine without it in the cache (a fresh cache
directory) uses it only when told to trust the file, and then needs neither a compile nor
LLVM nor the scheduler (the library's execution plan runs the graph); code for another CPU is
ignored; damaged bytes are refused."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from testmodels import LeNet, TwoMethods

import graphc
import runtime
from codegen import library
from ir.errors import ModuleFormatError
from ir.module_file import read_module

ROOT = Path(__file__).resolve().parents[2]


def _save(path, model, example, **kwargs):
    scripted = graphc.script(model, (example,), backend="llvm", **kwargs)
    scripted.save(path)
    return scripted


def test_llvm_modules_carry_a_library_per_method(tmp_path):
    graphc.manual_seed(0)
    _save(tmp_path / "two.gcm", TwoMethods().eval(), graphc.randn(3, 6), methods=["forward", "embed"])
    module = read_module(tmp_path / "two.gcm")
    # one library per method, and the worker pool's
    assert sorted(a.properties.get("method", "") for a in module.artifacts) == ["", "embed", "forward"]
    for a in module.artifacts:
        assert a.kind == "shared-library" and a.offset % 64 == 0
        assert module.artifact_bytes(a)[:4] == b"\x7fELF" or sys.platform != "linux"
    plain = graphc.script(TwoMethods().eval(), (graphc.randn(3, 6),), backend="interpreter")
    plain.save(tmp_path / "plain.gcm")
    assert read_module(tmp_path / "plain.gcm").artifacts == []  # the interpreter has no code


LOAD = (
    "import sys, numpy as np, runtime\n"
    "m = runtime.load({path!r}, backend='llvm', trust_embedded_code={trust})\n"
    "y = m(np.load({x!r}))[0]\n"
    "np.save({y!r}, y)\n"
    "compiler = sys.modules.get('codegen.llvm.compiler')\n"
    "print(compiler.stats['compiled'] if compiler else 0, 'llvmlite.binding' in sys.modules,\n"
    "      'codegen.schedule' in sys.modules)\n"
)


def _load_elsewhere(tmp_path, path, trust, cache):
    """Load in a fresh process with an empty cache, as on another machine with this CPU."""
    x, y = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x, np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32))
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(cache)}
    code = LOAD.format(path=str(path), trust=trust, x=str(x), y=str(y))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.split(), np.load(y), np.load(x)


@pytest.mark.parametrize("trust", [True, False])
def test_trusted_code_runs_without_compiling_untrusted_is_ignored(tmp_path, trust):
    graphc.manual_seed(1)
    net = LeNet("flatten").eval()
    _save(tmp_path / "lenet.gcm", net, graphc.randn(2, 1, 32, 32))
    cache = tmp_path / f"cache-{trust}"
    (compiled, llvm_loaded, scheduled), y, x = _load_elsewhere(tmp_path, tmp_path / "lenet.gcm", trust, cache)
    if trust:
        assert (compiled, llvm_loaded, scheduled) == ("0", "False", "False")
    else:
        assert compiled != "0" and llvm_loaded == "True" and scheduled == "True"
    with graphc.no_grad():
        np.testing.assert_allclose(y, net(graphc.tensor(x)).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cache", ["off", "unwritable"])
def test_trusted_code_runs_where_no_cache_can_take_it(tmp_path, cache):
    """A read-only container: the cache is off (GRAPHC_CACHE_DIR empty) or cannot be made (a
    file stands where its directory would be). The file's code loads from memory: still no
    compile, no LLVM, no scheduling."""
    graphc.manual_seed(1)
    net = LeNet("flatten").eval()
    _save(tmp_path / "lenet.gcm", net, graphc.randn(2, 1, 32, 32))
    where = ""
    if cache == "unwritable":
        where = tmp_path / "a-file"
        where.write_text("not a directory")
    (compiled, llvm_loaded, scheduled), y, x = _load_elsewhere(tmp_path, tmp_path / "lenet.gcm", True, where)
    assert (compiled, llvm_loaded, scheduled) == ("0", "False", "False")
    with graphc.no_grad():
        np.testing.assert_allclose(y, net(graphc.tensor(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_code_for_another_cpu_is_ignored(tmp_path, monkeypatch):
    graphc.manual_seed(2)
    _save(tmp_path / "two.gcm", TwoMethods().eval(), graphc.randn(3, 6))
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(library, "fingerprint", lambda: "a CPU without AVX-512")
    loaded = runtime.load(tmp_path / "two.gcm", backend="llvm", trust_embedded_code=True)
    x = np.ones((2, 6), np.float32)
    reference = runtime.load(tmp_path / "two.gcm")
    np.testing.assert_allclose(loaded(x)[0], reference(x)[0], rtol=1e-6)
    key = loaded._executables["forward"].library_key
    embedded = {a.properties["key"] for a in read_module(tmp_path / "two.gcm").artifacts}
    assert key not in embedded  # compiled here, under this CPU's key


def test_damaged_code_is_refused(tmp_path):
    graphc.manual_seed(3)
    _save(tmp_path / "two.gcm", TwoMethods().eval(), graphc.randn(3, 6))
    module = read_module(tmp_path / "two.gcm")
    artifact = next(a for a in module.artifacts if a.properties.get("method") == "forward")
    data = bytearray((tmp_path / "two.gcm").read_bytes())
    data[artifact.offset + artifact.length // 2] ^= 0xFF
    (tmp_path / "bad.gcm").write_bytes(bytes(data))
    for trust in (True, False):  # a damaged file is refused whether or not its code would be used
        with pytest.raises(ModuleFormatError, match="checksum mismatch"):
            runtime.load(tmp_path / "bad.gcm", backend="llvm", trust_embedded_code=trust)


def test_the_code_is_embedded_even_when_the_cache_lost_it(tmp_path, monkeypatch):
    """A library this process loaded goes into the file although the cache no longer has it (a
    cleaned cache, or GRAPHC_CACHE_DIR changed since): the graph's and the worker pool's."""
    graphc.manual_seed(0)
    scripted = graphc.script(LeNet().eval(), (graphc.randn(2, 1, 32, 32),), backend="llvm")
    scripted(graphc.randn(2, 1, 32, 32))
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "another-cache"))
    scripted.save(tmp_path / "lenet.gcm")
    module = read_module(tmp_path / "lenet.gcm")
    assert sorted(a.properties.get("method", "") for a in module.artifacts) == ["", "forward"]


def test_a_module_scripted_again_runs_from_the_cache_and_still_embeds_its_code(tmp_path):
    """The second script of a model finds its code in the cache and runs it from the library's
    plan (no scheduling); its file carries the same code as the first's."""
    graphc.manual_seed(4)
    net, x = TwoMethods().eval(), graphc.randn(3, 6)
    first = _save(tmp_path / "first.gcm", net, x)
    again = _save(tmp_path / "again.gcm", net, x)
    assert type(again._executable("forward")).__name__ == "PlannedGraph"
    np.testing.assert_array_equal(again(x).numpy(), first(x).numpy())
    code = [
        {
            a.properties.get("method", ""): read_module(path).artifact_bytes(a)
            for a in read_module(path).artifacts
        }
        for path in (tmp_path / "first.gcm", tmp_path / "again.gcm")
    ]
    assert sorted(code[1]) == ["", "forward"] and code[0] == code[1]


SCRIPT = (
    "import sys, numpy as np, graphc\n"
    "from testmodels import LeNet\n"
    "graphc.manual_seed(0)\n"
    "net, x = LeNet().eval(), graphc.randn(2, 1, 32, 32)\n"
    "with graphc.no_grad():\n"
    "    want = net(x).numpy()\n"  # (eager convolutions run compiled kernels too)
    "scripted = graphc.script(net, (x,), backend='llvm')\n"
    "np.testing.assert_allclose(scripted(x).numpy(), want, rtol=1e-5, atol=1e-6)\n"
    "print('codegen.schedule' in sys.modules)\n"
)


def test_a_process_with_a_warm_cache_scripts_without_the_scheduler(tmp_path):
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT / "tests")}
    for expected in ("True", "False"):  # a cold cache, then a warm one
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [expected]


def test_a_library_loads_from_memory_with_or_without_memfd(monkeypatch):
    """Two libraries loaded from memory one after the other stay two (each keeps its own
    path); without memfd_create a temporary file serves, and is gone once loaded."""
    import tempfile

    from codegen.llvm.pool import pool_key, pool_library

    graphc.manual_seed(0)
    scripted = graphc.script(TwoMethods().eval(), (graphc.randn(3, 6),), backend="llvm")
    scripted(graphc.randn(3, 6))
    graph_key = scripted._executable("forward").library_key
    pool_data, graph_data = pool_library(), library.read(graph_key)
    first = library._from_memory(pool_key(), pool_data)
    second = library._from_memory(graph_key, graph_data)
    assert first["graphc_dispatch"] and second["graph_entry"]  # (not the first library again)
    monkeypatch.delattr(os, "memfd_create", raising=False)
    before = set(os.listdir(tempfile.gettempdir()))
    assert library._from_memory(pool_key(), pool_data)["graphc_worker"]
    assert set(os.listdir(tempfile.gettempdir())) - before == set()
