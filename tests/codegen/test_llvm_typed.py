"""Kernels beyond one float dtype: comparisons (NaN included), logic, isfinite/isnan, where,
casts (from bytes and short integers too), integer arithmetic, bool inputs and outputs —
against the reference interpreter — and the decomposed log_softmax compiled without
interpreter nodes."""

import numpy as np
import pytest
from compiled import compare_cuda_with_interpreter

from codegen.executable import compile_graph
from codegen.schedule import KernelStep, NodeStep, schedule
from ir.interpreter import run
from ir.parser import parse_graph
from ir.passes import optimize

SPECIAL = np.array([0.0, -0.0, 1.5, -2.0, np.inf, -np.inf, np.nan, 3.0], np.float32)


def _inputs(graph, batch, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for v in graph.inputs:
        shape = tuple(batch if d == "batch" else d for d in v.type.shape)
        kind = v.type.dtype.np
        if np.dtype(kind).kind == "f":
            x = rng.standard_normal(shape).astype(kind)
            x.flat[:: max(1, x.size // 8)] = np.resize(SPECIAL, x.flat[:: max(1, x.size // 8)].shape)
        elif np.dtype(kind).kind == "b":
            x = rng.random(shape) < 0.5
        else:
            x = rng.integers(-50, 50, shape).astype(kind)
        out.append(x)
    return out


def _check(text, kernels=None):
    g = parse_graph(text)
    exe = compile_graph(g)
    if kernels is not None:
        assert [type(s).__name__ for s in exe.steps] == kernels, str(exe)
    for batch in (1, 5, 64):
        inputs = _inputs(g, batch, seed=batch)
        with np.errstate(all="ignore"):
            got, want = exe.run(inputs), run(g, inputs)
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            if a.dtype.kind == "f":  # fast tanh/exp may differ from numpy's by an ulp
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
            else:
                np.testing.assert_array_equal(a, b)
        if batch == 5:  # the CUDA kernels too (one batch size: each graph is one emulation build)
            compare_cuda_with_interpreter(g, inputs, 1e-6, want)
    return exe


@pytest.mark.parametrize("op", ["eq", "ne", "lt", "le", "gt", "ge"])
@pytest.mark.parametrize("t", ["f32", "f64", "i32", "i64", "bool"])
def test_comparisons(op, t):
    _check(
        f"""
graph g(%x: {t}[batch,7], %y: {t}[7]) {{
  %0: bool[batch,7] = {op}(%x, %y)
  return %0
}}""",
        ["KernelStep"],
    )


def test_logic_predicates_and_where_in_one_kernel():
    exe = _check(
        """
graph g(%x: f32[batch,9], %y: f32[batch,9], %m: bool[9]) {
  %0: bool[batch,9] = isfinite(%x)
  %1: bool[batch,9] = isnan(%y)
  %2: bool[batch,9] = logical_or(%0, %1)
  %3: bool[batch,9] = logical_and(%2, %m)
  %4: bool[batch,9] = logical_not(%3)
  %5: f32[batch,9] = where(%4, %x, %y)
  %6: f32[batch,9] = tanh(%5)
  return %6, %4
}""",
    )
    assert sum(isinstance(s, KernelStep) for s in exe.steps) == 2  # %4 is stored once, then reused
    assert "isfinite" in str(exe) and "isnan" in str(exe)


@pytest.mark.parametrize(
    "source, target",
    [
        ("i32", "f32"),
        ("i64", "f64"),
        ("bool", "f32"),
        ("f32", "bool"),
        ("f64", "bool"),
        ("i64", "bool"),
        ("bool", "i64"),
        ("i64", "i32"),
        ("i32", "i64"),
        # bytes and short integers are loaded and cast (values past 127 in u8: zero-extended)
        ("u8", "f32"),
        ("u8", "i64"),
        ("u8", "bool"),
        ("i8", "f32"),
        ("i8", "i32"),
        ("i16", "f64"),
        ("i16", "i64"),
    ],
)
def test_casts(source, target):
    names = {"f32": "float32", "f64": "float64", "i32": "int32", "i64": "int64", "bool": "bool"}
    _check(
        f"""
graph g(%x: {source}[batch,6]) {{
  %0: {target}[batch,6] = cast[dtype='{names[target]}'](%x)
  return %0
}}""",
        ["KernelStep"],
    )


def test_float_to_integer_casts_stay_on_the_interpreter():
    g = parse_graph("""
graph g(%x: f32[batch,3]) {
  %0: i32[batch,3] = cast[dtype='int32'](%x)
  return %0
}""")
    assert isinstance(schedule(g)[0], NodeStep)


@pytest.mark.parametrize("t", ["i32", "i64"])
def test_integer_arithmetic(t):
    _check(
        f"""
graph g(%x: {t}[batch,5], %y: {t}[5]) {{
  %0: {t}[batch,5] = mul(%x, %y)
  %1: {t}[batch,5] = sub(%0, %x)
  %2: {t}[batch,5] = neg(%1)
  %3: {t}[batch,5] = abs(%2)
  %4: {t}[batch,5] = maximum(%3, %y)
  %5: {t}[batch,5] = minimum(%4, %x)
  %6: {t}[batch,5] = relu(%5)
  %7: {t}[batch,5] = add(%6, %x)
  return %7
}}""",
        ["KernelStep"],
    )


@pytest.mark.parametrize("t", ["i32", "i64"])
def test_bitwise_ops_and_shifts_as_numpy(t):
    # shift counts from -50 to 50: numpy shifts everything out past the width (to 0, or to
    # the sign going right), where LLVM's and C's shifts are undefined
    _check(
        f"""
graph g(%x: {t}[batch,5], %y: {t}[5]) {{
  %0: {t}[batch,5] = bitwise_xor(%x, %y)
  %1: {t}[batch,5] = bitwise_and(%0, %x)
  %2: {t}[batch,5] = bitwise_or(%1, %y)
  %3: {t}[batch,5] = left_shift(%2, %x)
  %4: {t}[batch,5] = right_shift(%x, %y)
  %5: {t}[batch,5] = mul(%0, %x)
  %6: {t}[batch,5] = left_shift(%5, %y)
  %7: {t}[batch,5] = right_shift(%6, %x)
  %8: {t}[batch,5] = add(%3, %4)
  %9: {t}[batch,5] = add(%8, %7)
  return %9
}}""",
        ["KernelStep"],
    )


def test_float32_and_float64_in_one_kernel():
    _check(
        """
graph g(%x: f64[batch,4], %a: f32[batch,4], %b: f32[batch,4]) {
  %0: f64[batch,4] = tanh(%x)
  %1: bool[batch,4] = gt(%0, %x)
  %2: f32[batch,4] = where(%1, %a, %b)
  %3: f32[batch,4] = exp(%2)
  %4: f64[batch,4] = cast[dtype='float64'](%3)
  %5: f64[batch,4] = add(%4, %x)
  %6: f32[batch,4] = cast[dtype='float32'](%5)
  return %6
}""",
        ["KernelStep"],
    )


def test_log_softmax_compiles_without_interpreter_nodes():
    import graphc
    import graphc.nn.functional as F

    graph = optimize(
        graphc.script(lambda x: F.log_softmax(x, 1), (graphc.randn(3, 10),), backend="interpreter").graph
    )
    exe = compile_graph(graph)
    assert all(isinstance(s, KernelStep) for s in exe.steps) and exe.native is not None
    for batch in (1, 4, 100):
        x = np.random.default_rng(batch).standard_normal((batch, 10)).astype(np.float32) * 10
        x[0, 3] = -np.inf
        np.testing.assert_allclose(exe.run([x])[0], run(graph, [x])[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("t", ["i32", "i64"])
@pytest.mark.parametrize("op", ["sum", "amax", "amin"])
@pytest.mark.parametrize("dims", ["(1,)", "(0, 2)", "None"])
def test_integer_reductions(t, op, dims):
    out = "i64" if op == "sum" else t
    kept = {"(1,)": "[batch,1,6]", "(0, 2)": "[1,3,1]", "None": "[1,1,1]"}[dims]
    _check(
        f"""
graph g(%x: {t}[batch,3,6]) {{
  %0: {t}[batch,3,6] = abs(%x)
  %1: {out}{kept} = {op}[dims={dims}, keepdim=True](%0)
  return %1
}}""",
        ["KernelStep"],
    )


@pytest.mark.parametrize("t", ["f32", "f64"])
@pytest.mark.parametrize("op", ["isfinite", "isnan", "isinf"])
def test_predicates_on_special_values(op, t):
    _check(
        f"""
graph g(%x: {t}[batch,8]) {{
  %0: bool[batch,8] = {op}(%x)
  return %0
}}""",
        ["KernelStep"],
    )
