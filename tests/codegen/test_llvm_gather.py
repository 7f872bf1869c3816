"""Gathers inside kernels (`Take`) and the losses built on them (nll_loss, cross-entropy)
against the reference interpreter: dims, dtypes, views, symbolic batch sizes, ignored targets,
and indices out of range, which raise IndexError on both the native entry and the
step-by-step runner."""

import numpy as np
import pytest
from compiled import compare_cuda_with_interpreter
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen.executable import compile_graph
from codegen.kernel import Kernel
from codegen.schedule import KernelStep, NodeStep
from ir import dtypes
from ir.graph import Graph
from ir.interpreter import run
from ir.ops.registry import OPS
from ir.types import TensorType


def _gather_graph(x_shape, index_shape, dim, dtype="float32", index_dtype="int64", transpose=False):
    g = Graph("gather")
    x = g.add_input("x", TensorType(dtypes.from_name(dtype), x_shape))
    if transpose:  # gather from a view: read through its strides, never copied
        (x,) = g.add_node("permute", [x], {"dims": (1, 0)})
    index = g.add_input("index", TensorType(dtypes.from_name(index_dtype), index_shape))
    (y,) = g.add_node("gather", [x, index], {"dim": dim})
    (z,) = g.add_node("neg", [y])  # an elementwise consumer, fused
    g.set_outputs([z])
    return g


def _arrays(g, batch, dim_size, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for v in g.inputs:
        shape = tuple(batch if d == "batch" else d for d in v.type.shape)
        if v.type.dtype.category == dtypes.INT and v.name == "index":
            out.append(rng.integers(0, dim_size, size=shape).astype(v.type.dtype.np))
        else:
            out.append((10 * rng.standard_normal(shape)).astype(v.type.dtype.np))
    return out


def _both_paths(exe, arrays):
    """The compiled graph's outputs on the native entry and on the step-by-step runner."""
    native = exe.native
    assert native is not None
    first = exe.run(arrays)
    exe.native = None
    try:
        second = exe.run(arrays)
    finally:
        exe.native = native
    return first, second


GATHERS = [
    # x shape, index shape, dim, dtype, index dtype, transpose
    (("batch", 10), ("batch", 1), 1, "float32", "int64", False),
    (("batch", 10), ("batch", 4), 1, "float64", "int32", False),
    ((6, "batch"), (3, "batch"), 0, "float32", "int64", False),
    ((5, 7, 3), (5, 2, 3), 1, "int32", "int64", False),
    ((8, "batch"), ("batch", 3), 1, "float32", "int64", True),  # x transposed: a view
]


@pytest.mark.parametrize("case", GATHERS)
def test_gather_matches_the_interpreter(case):
    x_shape, index_shape, dim, dtype, index_dtype, transpose = case
    g = _gather_graph(x_shape, index_shape, dim, dtype, index_dtype, transpose)
    exe = compile_graph(g)
    assert len(exe.steps) == 1 and isinstance(exe.steps[0].kernel, Kernel)
    assert exe.steps[0].kernel.checked
    for batch in (1, 3, 64):
        shape = tuple(batch if d == "batch" else d for d in x_shape)
        size = (shape[::-1] if transpose else shape)[dim]
        arrays = _arrays(g, batch, size, seed=batch)
        want = run(g, arrays)[0]
        for got in _both_paths(exe, arrays):
            np.testing.assert_array_equal(got[0], want)


@pytest.mark.parametrize("bad", [10, -1, 1 << 40])
def test_gather_index_out_of_range_raises_on_both_paths(bad):
    g = _gather_graph(("batch", 10), ("batch", 1), 1)
    exe = compile_graph(g)
    arrays = _arrays(g, 5, 10)
    arrays[1][3, 0] = bad
    with pytest.raises(IndexError, match="out of bounds"):
        run(g, arrays)
    native = exe.native
    with pytest.raises(IndexError, match="out of range.*kernel0"):
        exe.run(arrays)
    exe.native = None
    with pytest.raises(IndexError, match="out of range.*kernel0"):
        exe.run(arrays)
    exe.native = native
    arrays[1][3, 0] = 9  # the status word starts clear on the next call
    np.testing.assert_array_equal(exe.run(arrays)[0], run(g, arrays)[0])


def test_gather_reference_refuses_negative_indices():
    with pytest.raises(IndexError, match="index -1 is out of bounds"):
        OPS["gather"].impl(np, np.arange(6.0).reshape(2, 3), np.array([[0], [-1]]), dim=1)


def _nll_graph(shape, reduction, ignore_index=-100, dtype="float32", log_softmax=True):
    t = dtypes.from_name(dtype)
    g = Graph("loss")
    x = g.add_input("x", TensorType(t, shape))
    target = g.add_input("target", TensorType(dtypes.int64, (shape[0], *shape[2:])))
    logp = x
    if log_softmax:
        (logp,) = g.add_node("log_softmax", [x], {"dim": 1})
    (loss,) = g.add_node(
        "nll_loss", [logp, target, None], {"ignore_index": ignore_index, "reduction": reduction}
    )
    g.set_outputs([loss])
    return g


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [("batch", 7), ("batch", 5, 4, 3)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_compiles_whole_and_matches(reduction, shape, dtype):
    g = _nll_graph(shape, reduction, ignore_index=2, dtype=dtype)
    exe = compile_graph(g)
    assert not any(isinstance(s, NodeStep) for s in exe.steps) and exe.native is not None
    for batch in (1, 3, 64):
        rng = np.random.default_rng(batch)
        full = tuple(batch if d == "batch" else d for d in shape)
        x = rng.standard_normal(full).astype(dtype)
        target = rng.integers(0, full[1], size=(full[0], *full[2:]))
        target.flat[0] = 2  # ignored
        want = run(g, [x, target])[0]
        tolerance = 1e-5 if dtype == "float32" else 1e-12
        for got in _both_paths(exe, [x, target]):
            assert got[0].dtype == want.dtype and got[0].shape == want.shape
            np.testing.assert_allclose(got[0], want, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_is_two_kernels(reduction):
    # log_softmax's row kernel, then one kernel for the loss: the gather, the mask of ignored
    # targets, both sums and their quotient
    exe = compile_graph(_nll_graph(("batch", 10), reduction))
    assert [type(s) for s in exe.steps] == [KernelStep, KernelStep]
    softmax, loss = (s.kernel for s in exe.steps)
    assert softmax.stages and loss.checked
    assert (loss.row_out == ()) if reduction == "mean" else (loss.reduce is not None)


def test_nll_loss_with_every_target_ignored_is_nan_as_in_pytorch():
    g = _nll_graph(("batch", 4), "mean", ignore_index=1)
    exe = compile_graph(g)
    x = np.zeros((3, 4), np.float32)
    target = np.ones(3, np.int64)
    assert np.isnan(run(g, [x, target])[0]) and np.isnan(exe.run([x, target])[0])


def test_nll_loss_target_out_of_range_raises():
    g = _nll_graph(("batch", 4), "mean")
    exe = compile_graph(g)
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(IndexError):
        exe.run([x, np.array([0, 4, 1])])
    with pytest.raises(IndexError):
        exe.run([x, np.array([0, -3, 1])])  # negative and not ignore_index


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [("batch", 3), ("batch", 3, 4)])
@pytest.mark.parametrize("as_weight", [True, False])
def test_nll_loss_with_class_weights_compiles_and_matches(reduction, shape, as_weight):
    g = Graph("weighted")
    logp = g.add_input("logp", TensorType(dtypes.float32, shape))
    target = g.add_input("target", TensorType(dtypes.int64, (shape[0], *shape[2:])))
    classes = np.array([0.2, 1.0, 3.0], np.float32)
    if as_weight:
        weight = g.add_weight("weight", classes)
    else:
        weight = g.add_input("weight", TensorType(dtypes.float32, (3,)))
    attrs = {"ignore_index": 1, "reduction": reduction}
    (loss,) = g.add_node("nll_loss", [logp, target, weight], attrs)
    g.set_outputs([loss])
    exe = compile_graph(g)
    assert not any(isinstance(s, NodeStep) and s.node.op != "reshape" for s in exe.steps)
    rng = np.random.default_rng(2)
    for batch in (1, 6):
        x = rng.standard_normal((batch, *shape[1:])).astype(np.float32)
        t = rng.integers(0, 3, size=(batch, *shape[2:]))
        arrays = [x, t] if as_weight else [x, t, classes]
        want = OPS["nll_loss"].impl(np, x, t, classes, **attrs)
        for got in _both_paths(exe, arrays):
            np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-6)


@st.composite
def gather_graphs(draw):
    """A gather along a random axis of a random view (permute, slice, flip) of an input with a
    symbolic batch, by an index of random extent (within the view's along the other axes),
    read by an elementwise op and at random reduced (over rows, or all of it)."""
    sizes = [draw(st.integers(1, 5)) for _ in range(draw(st.integers(1, 3)))]
    dtype = draw(st.sampled_from([dtypes.float32, dtypes.float64, dtypes.int32]))
    g = Graph("gathers")
    x = g.add_input("x", TensorType(dtype, ("batch", *sizes)))
    view = x
    for _ in range(draw(st.integers(0, 2))):
        shape = list(view.type.shape)
        rank = len(shape)
        op = draw(st.sampled_from(["permute", "slice", "flip"]))
        static = [d for d in range(rank) if isinstance(shape[d], int)]
        if op == "permute":
            (view,) = g.add_node("permute", [view], {"dims": tuple(draw(st.permutations(list(range(rank)))))})
        elif op == "slice":
            d = draw(st.sampled_from(static))
            start = draw(st.integers(0, shape[d] - 1))
            attrs = {"dim": d, "start": start, "stop": shape[d], "step": draw(st.integers(1, 2))}
            (view,) = g.add_node("slice", [view], attrs)
        else:
            (view,) = g.add_node("flip", [view], {"dims": (draw(st.sampled_from(static)),)})
    shape = list(view.type.shape)
    static = [d for d in range(len(shape)) if isinstance(shape[d], int)]
    dim = draw(st.sampled_from(static))
    index_shape = tuple(
        draw(st.integers(1, 6)) if d == dim else (s if not isinstance(s, int) else draw(st.integers(1, s)))
        for d, s in enumerate(shape)
    )
    index = g.add_input("index", TensorType(draw(st.sampled_from([dtypes.int64, dtypes.int32])), index_shape))
    (y,) = g.add_node("gather", [view, index], {"dim": dim})
    (y,) = g.add_node(draw(st.sampled_from(["neg", "abs"])), [y])
    if draw(st.booleans()):
        dims = None if draw(st.booleans()) else (len(index_shape) - 1,)
        (y,) = g.add_node("sum", [y], {"dims": dims, "keepdim": draw(st.booleans())})
    g.set_outputs([y])
    return g, dim


@settings(max_examples=40, deadline=None)
@given(gather_graphs())
def test_random_gathers_match_the_interpreter(case):
    g, dim = case
    exe = compile_graph(g)
    assert exe.native is not None
    view_shape = g.nodes[[n.op for n in g.nodes].index("gather")].inputs[0].type.shape
    for batch in (1, 4):
        rng = np.random.default_rng(batch)
        x_shape = tuple(batch if d == "batch" else d for d in g.inputs[0].type.shape)
        x = (10 * rng.standard_normal(x_shape)).astype(g.inputs[0].type.dtype.np)
        index_type = g.inputs[1].type
        index_shape = tuple(batch if d == "batch" else d for d in index_type.shape)
        index = rng.integers(0, view_shape[dim], size=index_shape).astype(index_type.dtype.np)
        want = run(g, [x, index])[0]
        # a sum in another order: rounding of the size of the summed magnitudes
        eps = np.finfo(x.dtype).eps if x.dtype.kind == "f" else 0
        repeats = max(1, index.shape[dim])  # (an index may pick an element many times)
        tolerance = 8 * eps * (1 + float(np.abs(x).astype(np.float64).sum()) * repeats)
        for got in _both_paths(exe, [x, index]):
            assert got[0].dtype == want.dtype and got[0].shape == want.shape
            np.testing.assert_allclose(got[0], want, rtol=tolerance, atol=tolerance)
        if batch == 4:  # the CUDA kernels too (one batch size: each graph is one emulation build)
            compare_cuda_with_interpreter(g, [x, index], tolerance, [want])


@pytest.mark.parametrize("reused", [False, True])
def test_a_gather_source_of_the_kernels_shape_is_stored_not_computed_in_place(reused):
    """y = -x, then gather(y, index) with y of the gather's own shape: y is read at the index's
    positions, so it is stored by a kernel of its own (computing it in the gather's kernel read
    a value that no kernel wrote). With a second user y is recomputed nowhere either."""
    from compiled import compare_with_interpreter

    g = Graph("gather_of_fused")
    x = g.add_input("x", TensorType(dtypes.float32, ("batch", 4, 6)))
    index = g.add_input("index", TensorType(dtypes.int64, ("batch", 4, 6)))
    (y,) = g.add_node("neg", [x])
    (z,) = g.add_node("gather", [y, index], {"dim": 2})
    (out,) = g.add_node("add", [z, y]) if reused else (z,)
    g.set_outputs([out])
    arrays = _arrays(g, 3, 6)
    exe = compare_with_interpreter(g, arrays)
    assert not any(isinstance(s, NodeStep) for s in exe.steps)
    first, second = _both_paths(exe, arrays)
    np.testing.assert_array_equal(first[0], run(g, arrays)[0])
    np.testing.assert_array_equal(second[0], first[0])
