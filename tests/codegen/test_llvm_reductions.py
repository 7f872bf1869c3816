"""Reduction kernels (sum, mean, amax, amin) with their elementwise producers fused in as a
prologue, against the reference interpreter: every dims/keepdim pattern, both float dtypes,
symbolic sizes from one compilation, NaN and empty inputs, random graphs."""

import numpy as np
import pytest
from compiled import compare_with_interpreter
from hypothesis import given, settings
from hypothesis import strategies as st

import codegen.plan as plan
from codegen.executable import compile_graph
from codegen.schedule import KernelStep
from ir import dtypes
from ir.errors import ShapeError
from ir.graph import Graph
from ir.parser import parse_graph
from ir.types import TensorType

F = {"float32": "f32", "float64": "f64"}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", ["sum", "mean", "amax", "amin"])
@pytest.mark.parametrize("dims", [None, (0,), (1,), (-1,), (0, 2)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_reductions_match_the_interpreter(op, dims, keepdim, dtype):
    t = F[dtype]
    g = Graph("g")
    x = g.add_input("x", TensorType(dtypes.from_name(dtype), ("batch", 5, 6)))
    (y,) = g.add_node(op, [x], {"dims": dims, "keepdim": keepdim})
    g.set_outputs([y])
    exe = compile_graph(g)
    assert isinstance(exe.steps[0], KernelStep), t
    eps = np.finfo(dtype).eps
    for batch in (1, 3, 64, 1000):
        x = np.random.default_rng(batch).standard_normal((batch, 5, 6)).astype(dtype)
        # summation order differs from numpy's pairwise sum: allow the rounding error of a
        # sum of n terms (n * eps * max|x|; divided by n for a mean); indexing bugs are O(1)
        n = x.size if dims is None else int(np.prod([x.shape[d] for d in dims]))
        tolerance = eps * np.abs(x).max() * (4 if op in ("mean", "amax", "amin") else 4 * n)
        compare_with_interpreter(g, [x], tolerance)


def test_softmax_is_one_row_kernel():
    g = parse_graph("""
graph softmax(%x: f32[batch,10]) {
  %0: f32[batch,1] = amax[dims=(1,), keepdim=True](%x)
  %1: f32[batch,10] = sub(%x, %0)
  %2: f32[batch,10] = exp(%1)
  %3: f32[batch,1] = sum[dims=(1,), keepdim=True](%2)
  %4: f32[batch,10] = div(%2, %3)
  return %4
}""")
    exe = compare_with_interpreter(
        g, [np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32) * 10], 1e-6
    )
    # per row: the maximum, the sum of exp(x - max), then every output; nothing stored between
    assert [type(s).__name__ for s in exe.steps] == ["KernelStep"]
    assert exe.steps[0].nodes == (0, 1, 2, 3, 4)
    assert "row0 = max(in0[i]); row1 = sum(exp(sub(in0[i], row0)))" in str(exe)


def test_prologue_is_fused_into_the_reduction():
    g = parse_graph("""
graph g(%x: f32[batch,8], %y: f32[8]) {
  %0: f32[batch,8] = sub(%x, %y)
  %1: f32[batch,8] = abs(%0)
  %2: f32[batch] = mean[dims=(1,), keepdim=False](%1)
  return %2
}""")
    exe = compare_with_interpreter(g, [np.ones((3, 8), np.float32), np.arange(8, dtype=np.float32)], 1e-6)
    assert len(exe.steps) == 1 and exe.steps[0].nodes == (0, 1, 2)


def test_nan_empty_and_infinite_inputs():
    g = parse_graph("""
graph g(%x: f32[batch,3]) {
  %0: f32[3] = amax[dims=(0,), keepdim=False](%x)
  %1: f32[3] = amin[dims=(0,), keepdim=False](%x)
  %2: f32[3] = sum[dims=(0,), keepdim=False](%x)
  %3: f32[3] = mean[dims=(0,), keepdim=False](%x)
  return %0, %1, %2, %3
}""")
    x = np.array([[1, np.nan, np.inf], [2, 0, -np.inf]], np.float32)
    compare_with_interpreter(g, [x], 1e-6)
    sums = parse_graph("""
graph g(%x: f32[batch,3]) {
  %0: f32[3] = sum[dims=(0,), keepdim=False](%x)
  %1: f32[3] = mean[dims=(0,), keepdim=False](%x)
  return %0, %1
}""")
    compare_with_interpreter(sums, [np.zeros((0, 3), np.float32)], 1e-6)  # 0 and NaN, as numpy
    with pytest.raises(ShapeError, match="cannot reduce an empty tensor"):
        compile_graph(g).run([np.zeros((0, 3), np.float32)])


@st.composite
def reduction_graphs(draw):
    g = Graph("random")
    x = g.add_input("x", TensorType(dtypes.float32, ("batch", 4, 5)))
    w = g.add_input("w", TensorType(dtypes.float32, (5,)))
    values = [x]
    for _ in range(draw(st.integers(1, 6))):
        a = draw(st.sampled_from(values))
        kind = draw(st.sampled_from(["unary", "binary", "reduce"]))
        if kind == "unary":
            (v,) = g.add_node(draw(st.sampled_from(["exp", "tanh", "neg", "abs", "relu"])), [a])
        elif kind == "binary" and a.type.shape == x.type.shape:
            (v,) = g.add_node(draw(st.sampled_from(["add", "mul", "sub", "maximum"])), [a, w])
        elif kind == "reduce" and a.type.shape == x.type.shape:
            op = draw(st.sampled_from(["sum", "mean", "amax", "amin"]))
            dim = draw(st.sampled_from([1, 2, -1]))
            (r,) = g.add_node(op, [a], {"dims": (dim,), "keepdim": True})
            (v,) = g.add_node("sub", [a, r])  # broadcast back, as softmax does
        else:
            continue
        values.append(v)
    (total,) = g.add_node(
        draw(st.sampled_from(["sum", "mean"])), [values[-1]], {"dims": (1, 2), "keepdim": False}
    )
    g.set_outputs([total, values[-1]])
    return g


@settings(max_examples=40, deadline=None)
@given(reduction_graphs(), st.sampled_from([1, 6]))
def test_random_reduction_graphs_match_the_interpreter(graph, batch):
    rng = np.random.default_rng(batch)
    inputs = [rng.uniform(-2, 2, (batch, 4, 5)).astype(np.float32), rng.uniform(-2, 2, 5).astype(np.float32)]
    compare_with_interpreter(graph, inputs, 1e-4)


@pytest.mark.parametrize("dims", [None, (0,), (1,), (2,), (1, 2)])
def test_kernels_split_over_threads_give_the_same_results(dims, monkeypatch):
    """Every kernel run in parts on the worker threads (forced here for small sizes): a reduction
    over the outermost axis is not split, the others write disjoint rows."""
    monkeypatch.setattr(plan, "PARALLEL_MIN_POINTS", 1)
    monkeypatch.setattr(plan, "workers", lambda: 3)
    g = parse_graph(
        f"""
graph g(%x: f32[batch,5,6], %w: f32[6]) {{
  %0: f32[batch,5,6] = mul(%x, %w)
  %1: f32[batch,5,6] = tanh(%0)
  %2: f32 = mean[dims={dims}, keepdim=True](%1)
  %3: f32[batch,5,6] = sub(%1, %2)
  return %3, %2
}}""".replace("f32 = mean", "f32[" + _kept(dims) + "] = mean")
    )
    for batch in (1, 2, 7, 50):
        rng = np.random.default_rng(batch)
        compare_with_interpreter(
            g,
            [
                rng.standard_normal((batch, 5, 6)).astype(np.float32),
                rng.standard_normal(6).astype(np.float32),
            ],
            1e-5,
        )


def _kept(dims):
    shape = ["batch", "5", "6"]
    return ",".join("1" if dims is None or k in dims else d for k, d in enumerate(shape))


def test_cheap_values_with_several_users_are_recomputed_not_stored():
    # two outputs read %1: a subtraction of a product it cannot inline twice is stored; with %0
    # stored it would be recomputed: here %0 is inlined into %1, stored once and read by both
    g = parse_graph("""
graph g(%x: f32[batch,10], %w: f32[10]) {
  %0: f32[batch,10] = mul(%x, %w)
  %1: f32[batch,10] = sub(%0, %x)
  %2: f32[batch,10] = exp(%1)
  %3: f32[batch,1] = sum[dims=(1,), keepdim=True](%2)
  %4: f32[batch,10] = tanh(%1)
  return %4, %3
}""")
    exe = compile_graph(g)
    kernels = [s for s in exe.steps if isinstance(s, KernelStep)]
    assert [s.nodes for s in kernels] == [(0, 1), (2, 3), (4,)]
    g2 = parse_graph("""
graph g(%x: f32[batch,10], %m: f32[batch,1]) {
  %0: f32[batch,10] = sub(%x, %m)
  %1: f32[batch,10] = exp(%0)
  %2: f32[batch,1] = sum[dims=(1,), keepdim=True](%1)
  %3: f32[batch,10] = mul(%0, %2)
  return %3, %2
}""")
    exe2 = compile_graph(g2)
    kernels = [s for s in exe2.steps if isinstance(s, KernelStep)]
    assert [s.nodes for s in kernels] == [(0, 1, 2), (0, 3)]  # %0 computed in both kernels
    for batch in (1, 6):
        rng = np.random.default_rng(batch)
        inputs = [
            rng.standard_normal((batch, 10)).astype(np.float32),
            rng.standard_normal((batch, 1)).astype(np.float32),
        ]
        compare_with_interpreter(g2, inputs, 1e-5)
        compare_with_interpreter(g, [inputs[0], rng.standard_normal(10).astype(np.float32)], 1e-5)
