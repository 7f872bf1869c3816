"""The compile cache: a graph's code is linked into a shared library in the cache and reused by
this process and by fresh ones (which then never load LLVM); a damaged library is rebuilt
rather than loaded; without a linker or a cache directory the code is compiled in memory
(object code cached separately, checksummed too); keys follow the host and the graph."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codegen import library
from codegen.executable import compile_graph
from codegen.llvm import compiler
from ir.interpreter import run
from ir.parser import parse_graph

ROOT = Path(__file__).resolve().parents[2]
TEXT = """
graph g(%x: f32[batch,4]) {{
  %0: f32[batch,4] = tanh(%x)
  %1: f32[batch,4] = mul(%0, %x)
  %2: f32[batch] = sum[dims=(1,), keepdim=False](%1)
  return %2
}}"""


def _text(salt: int) -> str:
    # a different shape of the same computation per test, so kernels are new to the caches
    return TEXT.format().replace("f32[batch,4]", f"f32[batch,{salt}]")


def _graph(salt: int):
    return parse_graph(_text(salt))


def _check(exe, graph):
    x = np.random.default_rng(0).standard_normal((5, graph.inputs[0].type.shape[1])).astype(np.float32)
    np.testing.assert_allclose(exe.run([x])[0], run(graph, [x])[0], rtol=1e-5, atol=1e-6)


FRESH = (
    "import sys, numpy as np\n"
    "from codegen.executable import compile_graph\n"
    "from ir.parser import parse_graph\n"
    "g = parse_graph({text!r})\n"
    "exe = compile_graph(g)\n"
    "exe.run([np.ones((3, {salt}), np.float32)])\n"
    "compiler = sys.modules.get('codegen.llvm.compiler')\n"
    "compiled = compiler.stats['compiled'] if compiler else 0\n"
    "print(compiled, 'llvmlite.binding' in sys.modules, exe.library_key is not None)\n"
)


def _fresh(tmp_path, salt):
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", FRESH.format(salt=salt, text=_text(salt))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_fresh_process_loads_the_library_without_llvm(tmp_path):
    assert _fresh(tmp_path, 13) == ["1", "True", "True"]  # compiled and linked
    assert len(list(tmp_path.glob("*.so"))) == 1
    assert _fresh(tmp_path, 13) == ["0", "False", "True"]  # loaded with ctypes alone


def test_a_damaged_library_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    _fresh(tmp_path, 14)
    (so,) = tmp_path.glob("*.so")
    data = bytearray(so.read_bytes())
    data[len(data) // 2] ^= 0xFF
    so.write_bytes(bytes(data))
    assert _fresh(tmp_path, 14) == ["1", "True", "True"]
    assert library.read(so.stem) is not None  # replaced by an intact one


def test_the_same_graph_is_compiled_once_per_process(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    graph = _graph(11)
    before = compiler.stats["compiled"]
    first = compile_graph(graph)
    second = compile_graph(graph)
    assert compiler.stats["compiled"] == before + 1
    assert first.library_key == second.library_key and first.library_bytes() is not None
    _check(second, graph)


def test_without_a_linker_code_is_compiled_in_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(compiler, "link_shared", lambda obj: None)
    graph = _graph(15)
    exe = compile_graph(graph)
    assert exe.library_key is None and exe.library_bytes() is None
    _check(exe, graph)
    assert not list(tmp_path.glob("*.so")) and len(list(tmp_path.glob("*.o"))) == 1


def test_damaged_object_code_is_recompiled(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    text = "define i64 @answer() {\n  ret i64 42\n}\n"
    compiler.compile_ir(text, ["answer"])
    (obj,) = tmp_path.glob("*.o")
    compiler._cache.clear()
    before = dict(compiler.stats)
    compiler.compile_ir(text, ["answer"])
    assert compiler.stats["disk_hits"] == before["disk_hits"] + 1
    compiler._cache.clear()
    data = bytearray(obj.read_bytes())
    data[-1] ^= 0xFF
    obj.write_bytes(bytes(data))
    compiler.compile_ir(text, ["answer"])
    assert compiler.stats["compiled"] == before["compiled"] + 1
    assert compiler._read_cached(obj) is not None


def test_empty_cache_dir_turns_the_disk_cache_off(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", "")
    assert library.cache_dir() is None and compiler.cache_dir() is None
    graph = _graph(17)
    exe = compile_graph(graph)
    assert exe.library_key is None
    _check(exe, graph)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    assert library.cache_dir() == tmp_path


@pytest.mark.parametrize("part", ["host", "graph"])
def test_library_keys_change_with_host_and_graph(part, monkeypatch):
    key = library.library_key("graph one")
    if part == "graph":
        assert library.library_key("graph two") != key
    else:
        monkeypatch.setattr(library, "fingerprint", lambda: "another cpu")
        assert library.library_key("graph one") != key


def test_a_different_schedule_of_the_same_graph_never_reuses_cached_code(monkeypatch):
    """The kernels' signatures follow the schedule: code cached for one schedule of a graph
    must not be called with another's arguments (it crashed once, keyed by the graph alone)."""
    from codegen import schedule

    g = parse_graph("""
graph g(%x: f32[batch,10], %m: f32[batch,1], %z: f32[]) {
  %0: f32[batch,1] = maximum(%m, %z)
  %1: f32[batch,10] = sub(%x, %0)
  %2: f32[batch,10] = exp(%1)
  return %2
}""")
    first = compile_graph(g)
    monkeypatch.setattr(schedule, "CHEAP", frozenset())  # the broadcast maximum is no longer inlined
    second = compile_graph(g)
    assert len(second.steps) == len(first.steps) + 1
    assert first.library_key != second.library_key
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((3, 10)), rng.standard_normal((3, 1)), np.float64(0.5)]
    inputs = [np.asarray(a, np.float32) for a in inputs]
    for exe in (first, second):
        np.testing.assert_allclose(exe.run(inputs)[0], run(g, inputs)[0], rtol=1e-6)
