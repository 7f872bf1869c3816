"""The C call path of native entries (codegen/_fastcall.c): it gives what the ctypes path gives,
declines (returns None, and the Python path takes over) for anything other than exactly the
arrays its plan expects, never runs one plan in two threads at once, and declines after a fork
and after a gather's index was out of range (the Python path then raises)."""

import os
import threading

import numpy as np
import pytest

import codegen.plan as plan
from codegen import plan as native_plan
from codegen.executable import compile_graph
from ir.interpreter import run
from ir.parser import parse_graph

pytestmark = pytest.mark.skipif(
    native_plan._fastcall is None, reason="codegen._fastcall is not built (no C compiler at install)"
)

GRAPH = """
graph g(%x: f32[batch,40], %y: f32[batch,40], %w: f32[40,24]) {
  %0: f32[batch,40] = mul(%x, %y)
  %1: f32[batch,24] = matmul(%0, %w)
  %2: f32[batch,24] = tanh(%1)
  %3: f32[batch,4,6] = reshape[shape=(-1, 4, 6)](%2)
  %4: f32[batch] = sum[dims=(1,),keepdim=False](%0)
  return %2, %3, %4
}"""


def _inputs(batch: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal((batch, 40)).astype(np.float32),
        rng.standard_normal((batch, 40)).astype(np.float32),
        rng.standard_normal((40, 24)).astype(np.float32),
    ]


def _check(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_the_c_path_gives_the_ctypes_paths_results():
    g = parse_graph(GRAPH)
    exe = compile_graph(g)
    assert exe.native is not None
    for batch in (1, 3, 64, 3, 1000):  # a new size: declines, the Python path makes its plan
        inputs = _inputs(batch, batch)
        first = exe.run(inputs)  # (Python path for a new size, C path for a known one)
        fast = exe.native._fast
        assert fast is not None
        got = fast(inputs)
        assert got is not None  # the C path ran
        _check(got, run(g, inputs))
        _check(first, got)
        assert got[1].base is got[0] or np.shares_memory(got[0], got[1])  # the reshape is a view
        assert not np.shares_memory(got[0], first[0])  # fresh outputs each call


@pytest.mark.parametrize(
    "change",
    [
        lambda xs: [xs[0].astype(np.float64), *xs[1:]],  # another dtype
        lambda xs: [xs[0].astype(">f4"), *xs[1:]],  # byte-swapped
        lambda xs: [np.asfortranarray(np.ones((5, 40), np.float32)), *xs[1:]],  # not C-contiguous
        lambda xs: [xs[0][:, ::2].repeat(2, axis=1), *xs[1:]][:3],  # same shape, a copy: runs
        lambda xs: [xs[0][:4], xs[1][:4], xs[2]],  # another batch
        lambda xs: xs[:2],  # too few
        lambda xs: {"x": xs[0], "y": xs[1], "w": xs[2]},  # by name
        lambda xs: [xs[0].tolist(), *xs[1:]],  # not an array
        lambda xs: tuple(xs),  # a tuple: runs
    ],
)
def test_anything_else_declines_and_the_python_path_answers(change):
    g = parse_graph(GRAPH)
    exe = compile_graph(g)
    inputs = _inputs(5)
    exe.run(inputs)
    fast = exe.native._fast
    changed = change(inputs)
    runs = (
        isinstance(changed, (list, tuple))
        and len(changed) == 3
        and all(
            isinstance(a, np.ndarray) and a.dtype == np.float32 and a.dtype.isnative and a.flags.c_contiguous
            for a in changed
        )
        and changed[0].shape == (5, 40)
    )
    result = fast(changed)
    assert (result is not None) == runs
    try:
        want = run(g, changed)
    except Exception as error:  # the Python path raises the same way
        with pytest.raises(type(error)):
            exe.run(changed)
        return
    _check(exe.run(changed), want)


def test_a_bad_gather_index_declines_and_the_python_path_raises():
    g = parse_graph("""
graph g(%x: f32[batch,5], %i: i64[batch,1]) {
  %0: f32[batch,1] = gather[dim=1](%x, %i)
  %1: f32[batch,1] = exp(%0)
  return %1
}""")
    exe = compile_graph(g)
    x = np.arange(15, dtype=np.float32).reshape(3, 5) / 10
    good = np.array([[0], [4], [2]], np.int64)
    _check(exe.run([x, good]), run(g, [x, good]))
    assert exe.native._fast([x, good]) is not None
    bad = np.array([[0], [5], [2]], np.int64)
    assert exe.native._fast([x, bad]) is None
    with pytest.raises(IndexError, match="out of range"):
        exe.run([x, bad])
    _check(exe.native._fast([x, good]), run(g, [x, good]))  # and it runs again after


def test_threads_share_a_plan_without_mixing_calls():
    g = parse_graph(GRAPH)
    exe = compile_graph(g)
    per_thread = [_inputs(64, seed) for seed in range(4)]
    wants = [run(g, inputs) for inputs in per_thread]
    exe.run(per_thread[0])
    errors = []

    def work(i):
        try:
            for _ in range(200):
                _check(exe.run(per_thread[i]), wants[i])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_split_calls_take_the_pool_lock(monkeypatch):
    monkeypatch.setattr(plan, "MATMUL_PARALLEL_MIN_MACS", 0)
    monkeypatch.setattr(plan, "PARALLEL_MIN_POINTS", 0)
    monkeypatch.setattr(plan, "workers", lambda: 3)
    g = parse_graph(GRAPH)
    exe = compile_graph(g)
    inputs = _inputs(90)
    exe.run(inputs)
    assert exe.native.bound({"batch": 90}).parallel
    _check(exe.native._fast(inputs), run(g, inputs))
    _, _, lock = plan.pool_addresses()
    with lock:  # the pool is busy (another thread's job): decline rather than wait holding the GIL
        assert exe.native._fast(inputs) is None
    _check(exe.native._fast(inputs), run(g, inputs))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_declines_the_parents_plans():
    g = parse_graph(GRAPH)
    exe = compile_graph(g)
    inputs = _inputs(7)
    want = run(g, inputs)
    exe.run(inputs)
    assert exe.native._fast(inputs) is not None
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        code = 1
        try:
            declined = exe.native._fast(inputs) is None
            got = exe.run(inputs)  # the Python path makes the child's own plan
            ok = all(np.allclose(a, b, rtol=2e-5, atol=2e-5) for a, b in zip(got, want, strict=True))
            os.write(write, b"%d%d" % (declined, ok))
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    report = os.read(read, 2)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert status == 0 and report == b"11"


def test_plans_check_what_they_are_given():
    Plan = native_plan._fastcall.Plan
    table = np.zeros(4, np.int64)
    spec = ([], [], [], ())  # inputs, buffers, outputs, keep
    with pytest.raises(TypeError, match="int64"):
        Plan(1, table.astype(np.int32), 0, 0, None, None, *spec)
    with pytest.raises(ValueError, match="outside the table"):
        Plan(1, table, 0, 0, None, None, [((9,), (2,), np.float32)], [], [], ())
    with pytest.raises(ValueError, match="names buffer"):
        Plan(1, table, 0, 0, None, None, [], [((0,), (2,), np.float32)], [(3, (2,))], ())
