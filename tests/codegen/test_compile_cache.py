"""The compile cache: object code is reused from memory and from disk (also by a fresh
process), a damaged file is recompiled rather than loaded, and an empty GRAPHC_CACHE_DIR turns
the disk cache off."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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


def _graph(salt: int):
    # a different reshape of the same computation per test, so kernels are new to the caches
    return parse_graph(
        TEXT.format()
        .replace("%x: f32[batch,4]", f"%x: f32[batch,{salt}]")
        .replace("f32[batch,4]", f"f32[batch,{salt}]")
    )


def _check(exe, graph):
    x = np.random.default_rng(0).standard_normal((5, graph.inputs[0].type.shape[1])).astype(np.float32)
    np.testing.assert_allclose(exe.run([x])[0], run(graph, [x])[0], rtol=1e-5, atol=1e-6)


def test_memory_then_disk_then_recompile_when_damaged(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    graph = _graph(11)
    before = dict(compiler.stats)
    _check(compile_graph(graph), graph)
    assert compiler.stats["compiled"] == before["compiled"] + 1
    files = list(tmp_path.glob("*.o"))
    assert len(files) == 1
    _check(compile_graph(graph), graph)  # memory
    assert compiler.stats == {**before, "compiled": before["compiled"] + 1}
    compiler._cache.clear()
    _check(compile_graph(graph), graph)  # disk
    assert compiler.stats["disk_hits"] == before["disk_hits"] + 1
    compiler._cache.clear()
    data = bytearray(files[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    files[0].write_bytes(bytes(data))
    _check(compile_graph(graph), graph)  # damaged: compiled again, file replaced
    assert compiler.stats["compiled"] == before["compiled"] + 2
    assert compiler._read_cached(files[0]) is not None


def test_a_fresh_process_loads_from_disk(tmp_path):
    code = (
        "import numpy as np\n"
        "from codegen.executable import compile_graph\n"
        "from codegen.llvm import compiler\n"
        "import sys; sys.path.insert(0, 'tests/codegen')\n"
        "from test_compile_cache import _graph\n"
        "g = _graph(13)\n"
        "exe = compile_graph(g)\n"
        "print(compiler.stats['compiled'], compiler.stats['disk_hits'])\n"
    )
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    second = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.split() == ["1", "0"] and second.stdout.split() == ["0", "1"]


def test_empty_cache_dir_turns_the_disk_cache_off(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", "")
    assert compiler.cache_dir() is None
    graph = _graph(17)
    _check(compile_graph(graph), graph)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    assert compiler.cache_dir() == tmp_path


@pytest.mark.parametrize("part", ["triple", "text"])
def test_keys_change_with_host_and_code(part, monkeypatch):
    key = compiler.cache_key("define void @f() { ret void }")
    if part == "text":
        assert compiler.cache_key("define void @g() { ret void }") != key
    else:
        monkeypatch.setattr(compiler.llvm, "get_process_triple", lambda: "aarch64-unknown-linux-gnu")
        assert compiler.cache_key("define void @f() { ret void }") != key
