"""The whole-graph native entry and its memory plan: buffers whose lifetimes overlap never share
memory, the arena is smaller than the sum of intermediates where lifetimes allow, outputs are
fresh arrays, aliases (reshape) and every split path give the interpreter's results, and graphs
that need Python between kernels keep the step-by-step path. The execution plan compiled into
the library runs the graph again without scheduling it (`planned`), and a library whose plan
records another schedule is not used."""

import gc
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import codegen.executable as executable
import codegen.plan as plan
from codegen import library
from codegen.executable import compile_graph
from codegen.plan import ALIGN, PLAN_SYMBOL, Plan, PlannedGraph, plan_memory, planned
from ir import dtypes
from ir.graph import Graph
from ir.interpreter import run
from ir.parser import parse_graph
from ir.types import TensorType


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 5000), st.integers(0, 20), st.integers(0, 6)),
        min_size=1,
        max_size=25,
    )
)
def test_live_buffers_never_overlap(buffers):
    sizes = [s for s, _, _ in buffers]
    lifetimes = [(first, first + length) for _, first, length in buffers]
    offsets, arena = plan_memory(sizes, lifetimes)
    assert all(o % ALIGN == 0 for o in offsets)
    assert all(o + s <= arena for o, s in zip(offsets, sizes, strict=True))
    for i in range(len(sizes)):
        for j in range(i):
            live_together = lifetimes[i][0] <= lifetimes[j][1] and lifetimes[j][0] <= lifetimes[i][1]
            apart = offsets[i] + sizes[i] <= offsets[j] or offsets[j] + sizes[j] <= offsets[i]
            assert apart or not live_together


def test_a_chain_reuses_memory():
    # five buffers of 1000 bytes, each read only by the next step: two slots suffice
    offsets, arena = plan_memory([1000] * 5, [(i, i + 1) for i in range(5)])
    assert arena == 2 * 1024 and len(set(offsets)) == 2


def _graph_with_weights() -> Graph:
    """Two matmuls by weights, elementwise and a reduction between them, a reshape (a view of
    a kernel's output) and two outputs."""
    rng = np.random.default_rng(0)
    g = Graph("g")
    x = g.add_input("x", TensorType(dtypes.float32, ("batch", 300)))
    w1 = g.add_weight("w1", rng.standard_normal((300, 200)).astype(np.float32) * 0.05)
    w2 = g.add_weight("w2", rng.standard_normal((200, 100)).astype(np.float32) * 0.05)
    (a,) = g.add_node("matmul", [x, w1])
    (e,) = g.add_node("exp", [a])
    (s,) = g.add_node("add", [e, a])
    (r,) = g.add_node("reshape", [s], {"shape": ("batch", 20, 10)})
    (total,) = g.add_node("sum", [r], {"dims": (2,), "keepdim": False})
    (t,) = g.add_node("tanh", [s])
    (y,) = g.add_node("matmul", [t, w2])
    g.set_outputs([y, total])
    return g


def test_whole_graph_runs_natively_and_matches_the_interpreter():
    g = _graph_with_weights()
    exe = compile_graph(g)
    assert exe.native is not None
    for batch in (1, 3, 64, 1000):
        x = np.random.default_rng(batch).standard_normal((batch, 300)).astype(np.float32)
        got, want = exe.run([x]), run(g, [x])
        for a, b in zip(got, want, strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
    arena, total = exe.native.memory({"batch": 64})
    assert 0 < arena <= total


def test_dead_intermediates_give_their_memory_to_later_ones():
    rng = np.random.default_rng(1)
    g = Graph("mlp")
    h = g.add_input("x", TensorType(dtypes.float32, ("batch", 64)))
    for i in range(4):  # h1 is dead once the second matmul has read it: h3 may take its place
        (h,) = g.add_node(
            "matmul", [h, g.add_weight(f"w{i}", rng.standard_normal((64, 64)).astype(np.float32))]
        )
        (h,) = g.add_node("relu", [h])
    g.set_outputs([h])
    exe = compile_graph(g)
    arena, total = exe.native.memory({"batch": 64})
    assert total == 3 * 64 * 64 * 4 and arena == 2 * 64 * 64 * 4
    x = rng.standard_normal((64, 64)).astype(np.float32)
    np.testing.assert_allclose(exe.run([x])[0], run(g, [x])[0], rtol=1e-4, atol=1e-3)


def test_outputs_are_fresh_arrays_and_the_arena_is_per_thread():
    g = _graph_with_weights()
    exe = compile_graph(g)
    x = np.ones((4, 300), np.float32)
    first = exe.run([x])
    second = exe.run([x * 2])
    assert not np.shares_memory(first[0], second[0])
    assert not np.allclose(first[0], second[0])


def test_every_split_matches(monkeypatch):
    g = _graph_with_weights()
    for name in ("PARALLEL_MIN_POINTS", "MATMUL_PARALLEL_MIN_MACS", "MATVEC_PARALLEL_MIN_MACS"):
        monkeypatch.setattr(plan, name, 0)
    monkeypatch.setattr(plan, "workers", lambda: 3)
    exe = compile_graph(g)
    for batch in (1, 2, 5, 100):  # one row splits by columns, more by rows
        x = np.random.default_rng(batch).standard_normal((batch, 300)).astype(np.float32)
        for a, b in zip(exe.run([x]), run(g, [x]), strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_graphs_needing_python_between_kernels_run_step_by_step():
    g = parse_graph("""
graph g(%x: f32[batch,8]) {
  %0: f32[batch,8] = exp(%x)
  %1: f32[batch,16] = concat[dim=1](%0, %0)
  %2: f32[batch,16] = tanh(%1)
  return %2
}""")  # concat runs on the interpreter, between two kernels
    exe = compile_graph(g)
    assert exe.native is None
    x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(3, 8)
    np.testing.assert_allclose(exe.run([x])[0], run(g, [x])[0], rtol=1e-6)
    assert exe.library_key is not None and planned(g) is None  # its plan: no native entry


def test_empty_batches_fall_back_and_report_like_the_interpreter():
    g = _graph_with_weights()
    exe = compile_graph(g)
    got = exe.run([np.ones((0, 300), np.float32)])
    assert [a.shape for a in got] == [(0, 100), (0, 20)]


def test_a_value_kept_alive_across_kernels_keeps_its_memory():
    """h1 is read again two kernels later: the arena must not give its memory to h2."""
    rng = np.random.default_rng(5)
    g = Graph("skip")
    x = g.add_input("x", TensorType(dtypes.float32, ("batch", 130)))
    ws = [g.add_weight(f"w{i}", rng.standard_normal((130, 130)).astype(np.float32) * 0.1) for i in range(3)]
    (h1,) = g.add_node("matmul", [x, ws[0]])
    (h1,) = g.add_node("tanh", [h1])
    (h2,) = g.add_node("matmul", [h1, ws[1]])
    (h2,) = g.add_node("relu", [h2])
    (y,) = g.add_node("matmul", [h2, ws[2]])
    (y,) = g.add_node("add", [y, h1])
    g.set_outputs([y])
    exe = compile_graph(g)
    assert exe.native is not None
    arena, total = exe.native.memory({"batch": 8})
    assert arena == total  # h1 and h2 are live together
    for batch in (1, 8):
        x = rng.standard_normal((batch, 130)).astype(np.float32)
        np.testing.assert_allclose(exe.run([x])[0], run(g, [x])[0], rtol=2e-5, atol=2e-5)


def test_scalar_inputs_stay_scalars_on_the_fallback_for_empty_tensors():
    # regression (hypothesis): the native path made a 0-d input 1-d (ascontiguousarray) before
    # an empty tensor sent the call to the step-by-step path, which then rejected its shape
    g = parse_graph("""
graph g(%x: f32[batch,k], %w: f32[k,1], %s: f32[]) {
  %0: f32[batch,1] = matmul(%x, %w)
  %1: f32[batch,1] = add(%s, %0)
  return %1
}""")
    exe = compile_graph(g)
    assert exe.native is not None
    for k in (0, 3):
        inputs = [np.ones((2, k), np.float32), np.ones((k, 1), np.float32), np.float32(0.5)]
        np.testing.assert_allclose(exe.run(inputs)[0], run(g, inputs)[0])
        inputs[2] = np.array(0.5, np.float32)
        np.testing.assert_allclose(exe.run(inputs)[0], run(g, inputs)[0])


def _planned_after_compiling(g: Graph) -> PlannedGraph:
    compile_graph(g)  # the library (with its plan) joins the cache
    exe = planned(g)
    assert isinstance(exe, PlannedGraph)
    gc.collect()  # (the packed weights the plan's calls point at must stay alive)
    return exe


@pytest.mark.parametrize("split", [False, True])
def test_a_cached_library_runs_from_its_plan(split, monkeypatch):
    if split:  # every kernel in parts on the worker pool
        for name in ("PARALLEL_MIN_POINTS", "MATMUL_PARALLEL_MIN_MACS", "MATVEC_PARALLEL_MIN_MACS"):
            monkeypatch.setattr(plan, name, 0)
        monkeypatch.setattr(plan, "workers", lambda: 3)
    g = _graph_with_weights()
    exe = _planned_after_compiling(g)
    for batch in (1, 3, 64, 0, 1000, 3):  # (0: an empty tensor takes the step-by-step path)
        x = np.random.default_rng(batch).standard_normal((batch, 300)).astype(np.float32)
        for a, b in zip(exe.run([x]), run(g, [x]), strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
    assert exe.native.memory({"batch": 64}) == compile_graph(g).native.memory({"batch": 64})


def test_a_planned_convolution_network_matches_the_interpreter():
    """LeNet's second stage: a convolution whose weight is packed for the channels path, max
    pooling with indices, a reshape between kernels and a matmul by a packed weight."""
    rng = np.random.default_rng(7)
    conv = "conv2d[dilation=(1, 1), groups=1, padding=(0, 0), stride=(1, 1)]"
    pool = "max_pool2d[ceil_mode=False, dilation=(1, 1), kernel_size=(2, 2), padding=(0, 0), stride=(2, 2)]"
    g = parse_graph(f"""
graph g(%x: f32[batch,6,14,14]) weights(%w1: f32[16,6,5,5], %b1: f32[16], %w2: f32[400,10]) {{
  %0: f32[batch,16,10,10] = {conv}(%x, %w1, %b1)
  %1: f32[batch,16,10,10] = relu(%0)
  %2: f32[batch,16,5,5], %3: i64[batch,16,5,5] = {pool}(%1)
  %4: f32[batch,400] = reshape[shape=('batch', 400)](%2)
  %5: f32[batch,10] = matmul(%4, %w2)
  return %5
}}""")
    for name, shape in (("w1", (16, 6, 5, 5)), ("b1", (16,)), ("w2", (400, 10))):
        g.weight_data[name] = rng.standard_normal(shape).astype(np.float32) * 0.1
    exe = _planned_after_compiling(g)
    native, _ = Plan.from_json(library.data(exe.library_key, PLAN_SYMBOL))
    packings = [a[3][0] for c in native.calls for a in c.args if a[0] == "weight" and a[3]]
    assert sorted(packings) == ["conv", "matmul"]
    for batch in (1, 5):
        x = rng.standard_normal((batch, 6, 14, 14)).astype(np.float32)
        np.testing.assert_allclose(exe.run([x])[0], run(g, [x])[0], rtol=1e-4, atol=1e-5)


def test_the_plan_is_data_and_names_its_version():
    g = _graph_with_weights()
    exe = compile_graph(g)
    data = library.data(exe.library_key, PLAN_SYMBOL)
    native, digest = Plan.from_json(data)
    assert digest == plan.schedule_digest(exe.schedule_text)
    assert len(native.calls) == len(exe.native.calls) and native.names
    assert json.loads(native.to_json(exe.schedule_text)) == json.loads(data)  # round trip
    record = json.loads(data)
    record["version"] = plan.PLAN_VERSION + 1
    with pytest.raises(ValueError, match="version"):
        Plan.from_json(json.dumps(record).encode())


def test_a_library_whose_plan_records_another_schedule_is_not_used(monkeypatch):
    """The library cached under the graph's key was made from another schedule (another
    compiler would have another fingerprint: this stands for a schedule that is not a function
    of the graph): its kernels may not be this schedule's, so the code is compiled here, in
    memory, and the cached library is left alone."""
    g = _graph_with_weights()
    key = compile_graph(g).library_key
    cached = library.read(key)
    real = executable.format_schedule
    monkeypatch.setattr(executable, "format_schedule", lambda steps: real(steps) + "\n(another)")
    exe = compile_graph(g)
    assert exe.library_key is None
    x = np.ones((4, 300), np.float32)
    for a, b in zip(exe.run([x]), run(g, [x]), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
    assert library.read(key) == cached
