"""Movement ops as index arithmetic: kernels read permuted, sliced, selected, flipped,
expanded, squeezed and reshaped values where they lie (a view: strides and an offset), copy
them only where something other than a kernel needs them in memory, and match the reference
interpreter: every op, several dtypes, symbolic batch sizes, chains, random view graphs."""

import numpy as np
import pytest
from compiled import compare_with_interpreter
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen.executable import compile_graph
from codegen.schedule import KernelStep, NodeStep
from ir import dtypes
from ir.errors import InputError, ShapeError
from ir.graph import Graph
from ir.infer import slice_length
from ir.interpreter import run
from ir.parser import parse_graph
from ir.types import TensorType


def _data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    return (rng.standard_normal(shape) * 10).astype(dtype)


def _kernels(exe):
    return [s for s in exe.steps if isinstance(s, KernelStep)]


MOVES = [
    ("permute", {"dims": (2, 0, 1)}),
    ("permute", {"dims": (0, 2, 1)}),
    ("slice", {"dim": 1, "start": 1, "stop": 4, "step": 2}),
    ("slice", {"dim": 2, "start": 2, "stop": 9, "step": 1}),
    ("select", {"dim": 2, "index": -1}),
    ("select", {"dim": 1, "index": 2}),
    ("flip", {"dims": (1, 2)}),
    ("unsqueeze", {"dim": 1}),
    ("unsqueeze", {"dim": 3}),
    ("expand", {"shape": (2, "batch", 4, 5)}),
    ("reshape", {"shape": ("batch", 20)}),
    ("reshape", {"shape": ("batch", 2, 2, 5)}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
@pytest.mark.parametrize("op,attrs", MOVES, ids=lambda v: str(v))
def test_each_movement_op_is_read_in_place(op, attrs, dtype):
    g = Graph("g")
    t = dtypes.from_numpy(np.dtype(dtype))
    x = g.add_input("x", TensorType(t, ("batch", 4, 5)))
    (moved,) = g.add_node(op, [x], attrs)
    # a kernel reads the view (an elementwise op of the view's dtype), another stores it
    (y,) = g.add_node("logical_not" if dtype == np.bool_ else "neg", [moved])
    g.set_outputs([y, moved])
    exe = compile_graph(g)
    if op == "reshape":  # stored: the input's buffer under another shape (no copy)
        assert [type(s) for s in exe.steps] == [NodeStep, KernelStep], str(exe)
    else:
        assert all(isinstance(s, KernelStep) for s in exe.steps), str(exe)
        assert exe.native is not None
    assert exe.steps[-1].kernel.inputs[0].view is not None
    for batch in (1, 3, 64):
        compare_with_interpreter(g, [_data((batch, 4, 5), dtype, batch)])


def test_a_chain_of_views_folds_into_its_consumer():
    g = parse_graph("""
graph g(%x: f32[batch,4,6], %y: f32[6,4]) {
  %0: f32[batch,6,4] = permute[dims=(0,2,1)](%x)
  %1: f32[batch,3,4] = slice[dim=1, start=1, stop=6, step=2](%0)
  %2: f32[batch,3,4] = flip[dims=(2,)](%1)
  %3: f32[3,4] = slice[dim=0, start=0, stop=6, step=2](%y)
  %4: f32[batch,3,4] = add(%2, %3)
  %5: f32[batch,3,4] = tanh(%4)
  return %5
}""")
    for batch in (1, 5):
        exe = compare_with_interpreter(
            g, [_data((batch, 4, 6), np.float32), _data((6, 4), np.float32, 1)], 1e-6
        )
    (step,) = exe.steps
    assert step.nodes == (4, 5) and step.inputs == ("x", "y")
    assert "view(strides=[24, 2, -6], offset=" in str(exe)


def test_a_reshape_of_a_permuted_value_stores_the_permuted_value_once():
    g = parse_graph("""
graph g(%x: f32[batch,4,6]) {
  %0: f32[batch,6,4] = permute[dims=(0,2,1)](%x)
  %1: f32[batch,24] = reshape[shape=("batch",24)](%0)
  %2: f32[batch,24] = exp(%1)
  %3: f32[batch,6,4] = neg(%0)
  return %2, %3
}""")
    exe = compare_with_interpreter(g, [_data((3, 4, 6), np.float32)], 1e-5)
    kinds = [(type(s).__name__, getattr(s, "nodes", None)) for s in exe.steps]
    assert kinds == [("KernelStep", (0,)), ("KernelStep", (2,)), ("KernelStep", (3,))], kinds
    assert exe.native is not None


def test_views_feeding_matmuls_and_row_kernels():
    rng = np.random.default_rng(0)
    g = Graph("g")
    x = g.add_input("x", TensorType(dtypes.float32, ("batch", 8, 5)))
    w = g.add_weight("w", rng.standard_normal((6, 8)).astype(np.float32))
    (xt,) = g.add_node("permute", [x], {"dims": (0, 2, 1)})  # (batch, 5, 8)
    (wt,) = g.add_node("permute", [w], {"dims": (1, 0)})  # a weight's transpose: (8, 6)
    (h,) = g.add_node("matmul", [xt, wt])  # needs both in memory
    (s,) = g.add_node("slice", [x], {"dim": 2, "start": 0, "stop": 4, "step": 1})
    (m,) = g.add_node("amax", [s], {"dims": (1,), "keepdim": True})
    (d,) = g.add_node("sub", [s, m])
    (e,) = g.add_node("exp", [d])
    (z,) = g.add_node("sum", [e], {"dims": (1,), "keepdim": True})
    (p,) = g.add_node("div", [e, z])  # a softmax over dim 1 of a slice, read in place
    g.set_outputs([h, p])
    for batch in (1, 4):
        exe = compare_with_interpreter(g, [rng.standard_normal((batch, 8, 5)).astype(np.float32)], 1e-5)
    rows = [s for s in _kernels(exe) if s.kernel.__class__.__name__ == "Kernel" and s.kernel.stages]
    assert len(rows) == 1 and rows[0].inputs == ("x",)


def test_views_the_kernels_cannot_express_run_on_the_interpreter():
    g = parse_graph("""
graph g(%x: f32[batch,4]) {
  %0: f32[4] = select[dim=0, index=1](%x)
  %1: f32[4] = exp(%0)
  return %1
}""")
    exe = compare_with_interpreter(g, [_data((3, 4), np.float32)], 1e-5)
    assert isinstance(exe.steps[0], NodeStep)  # a select of a symbolic size: bounds checked there


@st.composite
def view_graphs(draw):
    """A random chain of movement ops on an input with a symbolic batch, read by elementwise
    ops together with another view of the same input; intermediate views are outputs at
    random."""
    sizes = [draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 3)))]
    dtype = draw(st.sampled_from([dtypes.float32, dtypes.int32]))
    g = Graph("views")
    x = g.add_input("x", TensorType(dtype, ("batch", *sizes)))
    value, outputs = x, []
    for _ in range(draw(st.integers(1, 6))):
        shape = list(value.type.shape)
        rank = len(shape)
        static = [d for d in range(rank) if isinstance(shape[d], int) and shape[d] > 0]
        op = draw(st.sampled_from(["permute", "slice", "select", "flip", "unsqueeze", "reshape", "expand"]))
        if op == "permute":
            attrs = {"dims": tuple(draw(st.permutations(list(range(rank)))))}
        elif op == "slice":  # any dim, symbolic ones too, with bounds as Python takes them
            symbolic = [d for d in range(rank) if isinstance(shape[d], str)]
            anywhere = st.integers(0, rank - 1)
            d = draw(st.sampled_from(symbolic) if symbolic and draw(st.booleans()) else anywhere)
            start = draw(st.integers(-3, 3))
            stop = draw(st.one_of(st.none(), st.integers(-3, 4)))
            attrs = {"dim": d, "start": start, "stop": stop, "step": draw(st.integers(1, 3))}
            try:
                slice_length(shape[d], start, stop, attrs["step"])
            except ShapeError:  # (bounds from different ends of a symbolic size)
                continue
        elif op in ("select", "flip") and static:
            d = draw(st.sampled_from(static))
            n = shape[d]
            if op == "select" and rank > 1:
                attrs = {"dim": d, "index": draw(st.integers(-n, n - 1))}
            else:
                op, attrs = "flip", {"dims": (d,)}
        elif op == "expand" and 1 in shape:
            d = shape.index(1)
            attrs = {"shape": tuple(3 if k == d else s for k, s in enumerate(shape))}
        elif op == "reshape" and len(static) >= 2 and rank >= 3:
            # merge two static dims next to each other, wherever they are
            pairs = [
                d for d in range(rank - 1) if isinstance(shape[d], int) and isinstance(shape[d + 1], int)
            ]
            if not pairs:
                continue
            d = draw(st.sampled_from(pairs))
            attrs = {"shape": tuple(shape[:d] + [shape[d] * shape[d + 1]] + shape[d + 2 :])}
        else:
            op, attrs = "unsqueeze", {"dim": draw(st.integers(0, rank))}
        (value,) = g.add_node(op, [value], attrs)
        if draw(st.integers(0, 4)) == 0:
            outputs.append(value)
    (y,) = g.add_node("abs", [value])
    (z,) = g.add_node("add", [y, value])  # the view read twice
    g.set_outputs([z, *outputs])
    return g


@settings(max_examples=80, deadline=None)
@given(view_graphs())
def test_random_view_graphs_match_the_interpreter(graph):
    """Slices of the symbolic batch too (derived sizes such as batch_minus_1_by_2): where a
    batch is too small for a slice's fixed count, both refuse it."""
    exe = compile_graph(graph)
    x = graph.inputs[0]
    for batch in (1, 2, 5, 8):
        data = _data((batch, *x.type.shape[1:]), x.type.dtype.np, batch)
        try:
            want = run(graph, [data])
        except InputError:
            with pytest.raises(InputError):
                exe.run([data])
            continue
        got = exe.run([data])
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


def test_slices_of_a_symbolic_size_read_what_python_slices_or_are_refused():
    """Each slice of the batch, compiled (a view a kernel reads in place), at batch sizes
    0..6: numpy's elements, or an InputError where the graph's fixed count or start does not
    fit (x[-3::3] of 1 row: Python clamps the start, where the kernel would read before the
    buffer)."""
    for start in (-3, -1, 0, 2):
        for stop in (None, -2, -1, 0, 1, 3):
            for step in (1, 2, 3):
                try:
                    slice_length("batch", start, stop, step)
                except ShapeError:
                    continue
                g = Graph("g")
                x = g.add_input("x", TensorType(dtypes.float32, ("batch", 2)))
                (v,) = g.add_node("slice", [x], {"dim": 0, "start": start, "stop": stop, "step": step})
                (y,) = g.add_node("neg", [v])
                g.set_outputs([y])
                exe = compile_graph(g)
                assert exe.steps[0].kernel.inputs[0].view is not None
                for n in range(7):
                    data = np.arange(1.0, 2 * n + 1, dtype=np.float32).reshape(n, 2)
                    try:
                        got = exe.run([data])[0]
                    except InputError:  # only where Python keeps fewer, or clamps the start
                        fewer = len(data[start:stop:step]) < len(range(8)[start:stop:step])
                        assert n < 4 and (fewer or n + start < 0)
                        continue
                    np.testing.assert_array_equal(got, -data[start:stop:step])
