"""Row kernels: reductions fused with their producers and consumers (softmax, log_softmax,
layer norm, variance) computed row by row in one kernel, against the reference interpreter:
every reduced-axes pattern, both float dtypes, symbolic batch sizes from one compilation,
rows of infinities and NaNs, empty rows, intermediates needed elsewhere, random row graphs
and forced parallel splits."""

import numpy as np
import pytest
from compiled import compare_with_interpreter
from hypothesis import given, settings
from hypothesis import strategies as st

import codegen.plan as plan
import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from codegen.executable import compile_graph
from codegen.schedule import KernelStep
from ir import dtypes
from ir.errors import ShapeError
from ir.graph import Graph
from ir.interpreter import run
from ir.parser import parse_graph
from ir.types import TensorType


def _kernels(exe):
    return [s for s in exe.steps if isinstance(s, KernelStep)]


class _RowOp(nn.Module):
    def __init__(self, op: str, dim: int, normalized: tuple) -> None:
        super().__init__()
        self.op, self.dim = op, dim
        if op == "layer_norm":
            self.norm = nn.LayerNorm(normalized)
            with graphc.no_grad():  # not the default ones and zeros, which the passes fold away
                self.norm.weight.copy_(graphc.randn(*normalized))
                self.norm.bias.copy_(graphc.randn(*normalized))

    def forward(self, x):
        if self.op == "layer_norm":
            return self.norm(x)
        return getattr(F, self.op)(x, dim=self.dim)


def _graph(op: str, shape: tuple, dim, dtype: str) -> Graph:
    """softmax, log_softmax or layer_norm (with weight and bias) over `dim` as graphc.script
    records them, with a symbolic batch."""
    graphc.manual_seed(0)
    module = _RowOp(op, dim, tuple(shape[dim:]))
    if dtype == "float64":
        module = module.double()
    example = graphc.randn(*(2 if d == "batch" else d for d in shape), dtype=getattr(graphc, dtype))
    return graphc.script(module.eval(), (example,), backend="interpreter").graph


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "layer_norm"])
@pytest.mark.parametrize("dim", [-1, 1, 0, 2])
def test_row_ops_are_one_kernel_and_match_the_interpreter(op, dim, dtype):
    if op == "layer_norm" and dim == 0:
        dim = -2  # normalized over the last two dims
    shape = ("batch", 5, 7)
    g = _graph(op, shape, dim, dtype)
    exe = compile_graph(g)
    kernels = _kernels(exe)
    assert len(exe.steps) == len(kernels) == 1, str(exe)
    assert kernels[0].kernel.stages, str(exe)
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    for batch in (1, 3, 64, 1000):
        x = np.random.default_rng(batch).standard_normal((batch, 5, 7)).astype(dtype) * 4
        compare_with_interpreter(g, [x], tolerance)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_rows_of_infinities_and_nans(op):
    g = _graph(op, ("batch", 6), -1, "float32")
    x = np.array(
        [
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            [-np.inf, 1.0, -np.inf, 3.0, -np.inf, 0.0],
            [-np.inf] * 6,  # log_softmax's guarded maximum: every output -inf (softmax: NaN)
            [np.inf, 1.0, 2.0, 3.0, 4.0, 5.0],
            [np.nan, 1.0, 2.0, 3.0, 4.0, 5.0],
            [1e30, -1e30, 0.0, 88.0, -88.0, 1.0],
        ],
        dtype=np.float32,
    )
    compare_with_interpreter(g, [x], 1e-6)


def test_layer_norm_of_a_constant_row_is_the_bias():
    g = _graph("layer_norm", ("batch", 8), -1, "float64")
    x = np.full((4, 8), 3.25)
    (got,) = compile_graph(g).run([x])
    np.testing.assert_array_equal(got, np.broadcast_to(g.weight_data["norm.bias"], (4, 8)))


def test_empty_rows():
    exe = compile_graph(
        parse_graph("""
graph softmax(%x: f32[batch,n]) {
  %0: f32[batch,1] = amax[dims=(1,), keepdim=True](%x)
  %1: f32[batch,n] = sub(%x, %0)
  %2: f32[batch,n] = exp(%1)
  %3: f32[batch,1] = sum[dims=(1,), keepdim=True](%2)
  %4: f32[batch,n] = div(%2, %3)
  return %4
}""")
    )
    assert len(exe.steps) == 1
    for shape in ((3, 0), (0, 5), (0, 0)):  # the interpreter's rule: no maximum of an empty tensor
        x = np.zeros(shape, np.float32)
        with pytest.raises(ShapeError, match="empty"):
            run(exe.graph, [x])
        with pytest.raises(ShapeError, match="empty"):
            exe.run([x])
    rows = parse_graph("""
graph g(%x: f32[batch,n]) {
  %0: f32[batch,1] = sum[dims=(1,), keepdim=True](%x)
  %1: f32[batch,n] = sub(%x, %0)
  %2: f32[batch,1] = mean[dims=(1,), keepdim=True](%1)
  return %2
}""")
    for shape in ((3, 0), (0, 5)):  # sums of nothing are 0, their means NaN
        compare_with_interpreter(rows, [np.zeros(shape, np.float32)], 0)


def test_variance_is_a_reduction_with_a_stage():
    g = parse_graph("""
graph g(%x: f64[batch,5,7]) {
  %0: f64[batch,1,1] = mean[dims=(1,2), keepdim=True](%x)
  %1: f64[batch,5,7] = sub(%x, %0)
  %2: f64[batch,5,7] = mul(%1, %1)
  %3: f64[batch] = mean[dims=(1,2), keepdim=False](%2)
  return %3
}""")
    exe = compare_with_interpreter(g, [np.random.default_rng(0).standard_normal((9, 5, 7)) + 100], 1e-12)
    (step,) = _kernels(exe)
    assert step.nodes == (0, 1, 2, 3) and step.kernel.reduce is not None and len(step.kernel.stages) == 1


@pytest.mark.parametrize(
    "text",
    [
        # two sums over the same rows and their quotient, computed once per row
        """graph g(%x: f32[batch,6], %y: f32[batch,6]) {
  %0: f32[batch,1] = sum[dims=(1,), keepdim=True](%x)
  %1: f32[batch,6] = abs(%y)
  %2: f32[batch,1] = sum[dims=(1,), keepdim=True](%1)
  %3: f32[batch,1] = div(%0, %2)
  return %3
}""",
        # over every axis (a mean by hand), kept as 1s
        """graph g(%x: f32[batch,6], %y: f32[batch,6]) {
  %0: f32[1,1] = sum[dims=(0,1), keepdim=True](%x)
  %1: f32[1,1] = amax[dims=(0,1), keepdim=True](%y)
  %2: f32[1,1] = sub(%0, %1)
  return %2
}""",
        # rows along the first axis: a per-column result
        """graph g(%x: f32[batch,6], %y: f32[batch,6]) {
  %0: f32[6] = sum[dims=(0,), keepdim=False](%x)
  %1: f32[6] = exp(%0)
  %2: f32[6] = amin[dims=(0,), keepdim=False](%y)
  %3: f32[6] = add(%1, %2)
  return %3
}""",
    ],
)
def test_a_result_combining_reductions_is_computed_once_per_row(text):
    g = parse_graph(text)
    rng = np.random.default_rng(0)
    for batch in (1, 4, 33):
        exe = compare_with_interpreter(
            g, [rng.standard_normal((batch, 6)).astype(np.float32) for _ in range(2)], 1e-5
        )
    (step,) = _kernels(exe)
    assert step.kernel.row_out is not None and len(step.kernel.stages) == 2


def test_reductions_without_their_trailing_row_axes_are_not_combined_per_row():
    # (batch,) does not line up with (batch, 6): the quotient is its own kernel
    g = parse_graph("""graph g(%x: f32[batch,6], %y: f32[batch,6]) {
  %0: f32[batch] = sum[dims=(1,), keepdim=False](%x)
  %1: f32[batch] = amax[dims=(1,), keepdim=False](%y)
  %2: f32[batch] = div(%0, %1)
  return %2
}""")
    rng = np.random.default_rng(1)
    exe = compare_with_interpreter(
        g, [rng.standard_normal((5, 6)).astype(np.float32) for _ in range(2)], 1e-5
    )
    assert len(_kernels(exe)) == 3 and not any(s.kernel.row_out for s in _kernels(exe))


def test_values_needed_elsewhere_are_stored_and_the_rest_fused():
    # the maximum is an output and the shifted values feed a matmul: both are stored, the
    # rest of the softmax still becomes one row kernel
    rng = np.random.default_rng(0)
    g = Graph("g")
    x = g.add_input("x", TensorType(dtypes.float32, ("batch", 6)))
    w = g.add_weight("w", rng.standard_normal((6, 3)).astype(np.float32))
    (m,) = g.add_node("amax", [x], {"dims": (1,), "keepdim": True})
    (shifted,) = g.add_node("sub", [x, m])
    (e,) = g.add_node("exp", [shifted])
    (s,) = g.add_node("sum", [e], {"dims": (1,), "keepdim": True})
    (y,) = g.add_node("div", [e, s])
    (p,) = g.add_node("matmul", [shifted, w])
    g.set_outputs([y, m, p])
    exe = compare_with_interpreter(g, [rng.standard_normal((5, 6)).astype(np.float32)], 1e-5)
    rows = [s for s in _kernels(exe) if s.kernel.__class__.__name__ == "Kernel" and s.kernel.stages]
    assert len(rows) == 1 and len(rows[0].kernel.stages) == 1  # the sum; the maximum is read


def test_matmul_epilogue_operand_from_a_kernel_it_cannot_fold_is_computed():
    # regression: a bool cast feeding a matmul's epilogue was skipped ("folded into its
    # consumer") although the epilogue reads it from memory
    g = parse_graph("""
graph g(%x: f32[batch,8], %w: f32[8,4], %m: bool[batch,4]) {
  %0: f32[batch,4] = matmul(%x, %w)
  %1: f32[batch,4] = cast[dtype="float32"](%m)
  %2: f32[batch,4] = add(%0, %1)
  return %2
}""")
    rng = np.random.default_rng(0)
    inputs = [
        rng.standard_normal((3, 8)).astype(np.float32),
        rng.standard_normal((8, 4)).astype(np.float32),
        rng.random((3, 4)) < 0.5,
    ]
    compare_with_interpreter(g, inputs, 1e-5)


@st.composite
def row_graphs(draw):
    """Random chains of reductions over one set of axes (kept as dims of 1), each reading the
    previous one's result through elementwise ops (softmax-like), with ops on the full values,
    on the rows' results and on a broadcast weight; some intermediates are outputs too."""
    rank = draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, 5)) for _ in range(rank)]
    shape = ("batch", *sizes)
    axes = tuple(sorted(draw(st.lists(st.integers(1, rank), min_size=1, max_size=rank, unique=True))))
    dtype = draw(st.sampled_from([dtypes.float32, dtypes.float64]))
    g = Graph("rows")
    x = g.add_input("x", TensorType(dtype, shape))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    w = g.add_weight("w", rng.standard_normal(sizes[-1]).astype(dtype.np))
    one = g.add_weight("one", np.ones((), dtype.np))
    value, outputs = x, []

    def maybe_output(v):
        if draw(st.integers(0, 6)) == 0:
            outputs.append(v)

    for _ in range(draw(st.integers(1, 4))):
        source = value
        if draw(st.booleans()):
            (source,) = g.add_node(draw(st.sampled_from(["exp", "tanh", "abs", "sigmoid"])), [source])
            maybe_output(source)
        op = draw(st.sampled_from(["sum", "mean", "amax", "amin"]))
        (row,) = g.add_node(op, [source], {"dims": axes, "keepdim": True})
        maybe_output(row)
        if draw(st.booleans()):  # an op on the row's result, once per row
            (row,) = g.add_node("mul", [row, row])
            # (r * r + 1 under the rsqrt: a sum that cancels to rounding noise, e.g. of x - mean,
            # must not blow up into different infinities for different summation orders)
            (row,) = g.add_node("add", [row, one])
            (row,) = g.add_node(draw(st.sampled_from(["rsqrt", "tanh", "neg"])), [row])
            maybe_output(row)
        combine = draw(st.sampled_from(["sub", "mul", "add", "maximum"]))
        (value,) = g.add_node(combine, [draw(st.sampled_from([value, source])), row])
        maybe_output(value)
        if draw(st.booleans()):
            (value,) = g.add_node(draw(st.sampled_from(["add", "mul"])), [value, w])
            maybe_output(value)
    if draw(st.booleans()):  # end in a reduction over the rows
        op = draw(st.sampled_from(["sum", "mean", "amax"]))
        (value,) = g.add_node(op, [value], {"dims": axes, "keepdim": draw(st.booleans())})
    outputs.append(value)
    g.set_outputs(list(dict.fromkeys(outputs)))
    return g


@settings(max_examples=60, deadline=None)
@given(row_graphs(), st.booleans())
def test_random_row_graphs_match_the_interpreter(graph, split):
    saved = (plan.PARALLEL_MIN_POINTS, plan.workers)
    try:
        if split:
            plan.PARALLEL_MIN_POINTS = 0
            plan.workers = lambda: 3
        exe = compile_graph(graph)
        x = graph.inputs[0]
        tolerance = 1e-4 if x.type.dtype is dtypes.float32 else 1e-10
        for batch in (1, 4, 9):
            shape = (batch, *x.type.shape[1:])
            data = np.random.default_rng(batch).standard_normal(shape).astype(x.type.dtype.np)
            with np.errstate(all="ignore"):
                got, want = exe.run([data]), run(graph, [data])
            # sums in another order than numpy's: rounding relative to the largest values seen
            # (a cancelling sum's noise is of their size, not of its result's)
            scale = max([1.0] + [float(np.abs(b[np.isfinite(b)]).max(initial=0)) for b in want])
            for a, b in zip(got, want, strict=True):
                assert a.dtype == b.dtype and a.shape == b.shape
                np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * scale, equal_nan=True)
    finally:
        plan.PARALLEL_MIN_POINTS, plan.workers = saved
