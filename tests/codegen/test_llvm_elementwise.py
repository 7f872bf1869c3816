"""The first compiled path: fused elementwise kernels rendered to LLVM and run natively, checked
against the reference interpreter (every op, both float dtypes, broadcasting, symbolic sizes from
one compiled graph, NaN handling, random graphs), with the other nodes still interpreted."""

import numpy as np
import pytest
from compiled import compare_cuda_with_interpreter
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen.executable import compile_graph
from codegen.kernel import BINARY_OPS, UNARY_OPS, Kernel, KernelInput, Load, Pool2d, format_expr
from codegen.schedule import KernelStep, schedule
from ir import dtypes
from ir.graph import Graph
from ir.interpreter import run
from ir.ops.special import erf
from ir.parser import parse_graph
from ir.types import TensorType

BATCHES = (1, 3, 64, 1000)


def _check(graph, make_inputs, rtol=2e-6, atol=1e-7):
    exe = compile_graph(graph)
    for batch in BATCHES:
        inputs = make_inputs(batch)
        with np.errstate(all="ignore"):
            expected = run(graph, inputs)
            got = exe.run(inputs)
        for a, b in zip(got, expected, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
        if batch == 64:  # the CUDA kernels too (one batch size: each graph is one emulation build)
            compare_cuda_with_interpreter(graph, inputs, max(rtol, atol), expected)
    return exe


def _rand(shape, dtype, low=-3.0, high=3.0, seed=0):
    return np.random.default_rng(seed).uniform(low, high, shape).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", UNARY_OPS)
def test_unary_ops_match_the_interpreter(op, dtype):
    t = {"float32": "f32", "float64": "f64"}[dtype]
    g = parse_graph(f"""
graph g(%x: {t}[batch,7]) {{
  %0: {t}[batch,7] = {op}(%x)
  return %0
}}""")
    positive = ("log", "sqrt", "rsqrt", "log2", "log10", "log1p")
    low = 0.01 if op in positive else -30.0 if op in ("exp", "sigmoid", "tanh", "exp2") else -3.0
    exe = _check(g, lambda b: [_rand((b, 7), dtype, low, 30.0 if low == -30.0 else 3.0)])
    assert [type(s) for s in exe.steps] == [KernelStep]


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
@pytest.mark.parametrize("bounds", ["lo", "hi", "both", "crossed"])
def test_clamp_with_either_bound_matches_the_interpreter(bounds, dtype):
    """clamp(x, lo, hi): the lower bound, then the upper one (numpy's clip, NaN stays NaN);
    a missing bound is no operand at all."""
    g = Graph("g")
    t = dtypes.from_name(dtype)
    x = g.add_input("x", TensorType(t, ("batch", 6)))
    lo = g.add_input("lo", TensorType(t, (6,))) if bounds != "hi" else None
    hi = g.add_input("hi", TensorType(t, ())) if bounds != "lo" else None
    (y,) = g.add_node("clamp", [x, lo, hi])
    (z,) = g.add_node("mul", [y, x])  # fused with its consumer
    g.set_outputs([z])
    rng = np.random.default_rng(0)

    def inputs(batch):
        xs = (rng.standard_normal((batch, 6)) * 4).astype(dtype)
        if dtype.startswith("float"):
            xs[0, 0] = np.nan
        out = [xs]
        if lo is not None:
            out.append(np.arange(-3, 3).astype(dtype))
        if hi is not None:
            out.append(np.array(-5 if bounds == "crossed" else 2, dtype=dtype))
        return out

    exe = _check(g, inputs)
    assert [type(s) for s in exe.steps] == [KernelStep] and exe.native is not None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", BINARY_OPS)
def test_binary_ops_broadcast_like_the_interpreter(op, dtype):
    t = {"float32": "f32", "float64": "f64"}[dtype]
    g = parse_graph(f"""
graph g(%x: {t}[batch,1,5], %y: {t}[4,1], %z: {t}[]) {{
  %0: {t}[batch,4,5] = {op}(%x, %y)
  %1: {t}[batch,4,5] = {op}(%z, %0)
  return %1
}}""")
    low = 0.5 if op == "div" else -3.0
    _check(
        g, lambda b: [_rand((b, 1, 5), dtype, low), _rand((4, 1), dtype, low, seed=1), np.asarray(1.5, dtype)]
    )


def test_nan_and_infinity_follow_numpy():
    g = parse_graph("""
graph g(%x: f32[batch,4], %y: f32[batch,4]) {
  %0: f32[batch,4] = relu(%x)
  %1: f32[batch,4] = maximum(%0, %y)
  %2: f32[batch,4] = minimum(%x, %y)
  return %1, %2
}""")
    special = np.array([np.nan, np.inf, -np.inf, -0.0], np.float32)
    _check(g, lambda b: [np.tile(special, (b, 1)), np.tile(special[::-1], (b, 1))])


def test_chains_fuse_and_shared_values_are_stored_once():
    g = parse_graph("""
graph g(%x: f32[batch,8], %w: f32[8,8]) {
  %0: f32[batch,8] = neg(%x)
  %1: f32[batch,8] = exp(%0)
  %2: f32[batch,8] = matmul(%1, %w)
  %3: f32[batch,8] = tanh(%2)
  %4: f32[batch,8] = mul(%3, %3)
  %5: f32[batch,8] = sub(%4, %2)
  return %5
}""")
    steps = schedule(g)
    assert [type(s).__name__ for s in steps] == ["KernelStep"] * 3
    # neg and exp are computed by the matmul kernel (its prologue); the product is used twice:
    # stored by the matmul kernel, not an epilogue of it
    assert [s.nodes for s in steps] == [(0, 1, 2), (3,), (4, 5)]
    # exp differs from numpy's by an ulp at most; the matmul and the cancellation in %5 amplify it
    exe = _check(
        g, lambda b: [_rand((b, 8), "float32"), _rand((8, 8), "float32", seed=2)], rtol=1e-5, atol=1e-5
    )
    assert "acc = a @ b, a = exp(neg(p0[i]))" in str(exe)
    assert "matmul (b packed by the kernel) -> f32[batch,8]: out = acc," in str(exe)


def test_integer_kernels_and_interpreter_nodes_side_by_side():
    g = parse_graph("""
graph g(%x: i64[batch,3], %y: f32[batch,3]) {
  %0: i64[batch,3] = add(%x, %x)
  %1: i64[batch] = sum[dims=(1,), keepdim=False](%x)
  %2: f32[batch,3] = cumsum[dim=1](%y)
  return %0, %1, %2
}""")
    assert [type(s).__name__ for s in schedule(g)] == ["KernelStep", "KernelStep", "NodeStep"]  # cumsum
    _check(g, lambda b: [np.arange(b * 3).reshape(b, 3), _rand((b, 3), "float32")])


def test_kernel_strides_describe_broadcasting():
    f32 = dtypes.float32
    k = Kernel(
        "k",
        ("batch", 4, 5),
        f32,
        (KernelInput(("batch", 1, 5)), KernelInput((4, 1)), KernelInput(())),
        Load(0),
    )
    assert k.symbols == ("batch",)
    assert k.strides(0) == ((5,), 0, ())
    assert k.strides(1) == (0, (), 0)
    assert k.strides(2) == (0, 0, 0)


def test_lenet_with_compiled_activations_matches_the_interpreter():
    from testmodels import LeNet

    import graphc

    graphc.manual_seed(0)
    graph = graphc.script(LeNet("size").eval(), (graphc.randn(2, 1, 32, 32),)).graph
    exe = compile_graph(graph)
    # convolutions and linears with their bias (+ relu) as epilogues, and the pools
    kernels = [s.kernel for s in exe.steps if isinstance(s, KernelStep)]
    kinds = ["Conv2d", "Pool2d", "Conv2d", "Pool2d", "Matmul", "Matmul", "Matmul"]
    assert [type(k).__name__ for k in kernels] == kinds
    epilogues = [format_expr(k.epilogue) for k in kernels if not isinstance(k, Pool2d)]
    assert epilogues == ["relu(add(acc, in0[i]))"] * 4 + ["add(acc, in0[i])"]
    for batch in (1, 7):
        x = _rand((batch, 1, 32, 32), "float32", seed=batch)
        np.testing.assert_allclose(exe.run([x])[0], run(graph, [x])[0], rtol=1e-5, atol=1e-6)


@st.composite
def elementwise_graphs(draw):
    dtype = draw(st.sampled_from([dtypes.float32, dtypes.float64]))
    g = Graph("random")
    shapes = [("batch", 3, 4), (3, 4), (4,), (3, 1), ()]
    inputs = [g.add_input(f"x{i}", TensorType(dtype, s)) for i, s in enumerate(shapes)]
    values = list(inputs)
    for _ in range(draw(st.integers(1, 10))):
        if draw(st.booleans()):
            op = draw(st.sampled_from([o for o in UNARY_OPS if o not in ("log", "sqrt")]))
            (v,) = g.add_node(op, [draw(st.sampled_from(values))])
        else:
            op = draw(st.sampled_from([o for o in BINARY_OPS if o != "div"]))
            (v,) = g.add_node(op, [draw(st.sampled_from(values)), draw(st.sampled_from(values))])
        values.append(v)
    g.set_outputs(draw(st.lists(st.sampled_from(values[len(inputs) :]), min_size=1, max_size=3)))
    return g


@settings(max_examples=40, deadline=None)
@given(elementwise_graphs(), st.sampled_from([1, 5]))
def test_random_elementwise_graphs_match_the_interpreter(graph, batch):
    dtype = graph.inputs[0].type.dtype.np
    arrays = [
        _rand(tuple(batch if isinstance(d, str) else d for d in v.type.shape), dtype, seed=i)
        for i, v in enumerate(graph.inputs)
    ]
    with np.errstate(all="ignore"):
        expected = run(graph, arrays)
        got = compile_graph(graph).run(arrays)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)
    if batch == 5:  # the CUDA kernels too (one batch size: each graph is one emulation build)
        compare_cuda_with_interpreter(graph, arrays, 1e-5, expected)


@pytest.mark.parametrize(
    "op, low, high, reference, max_ulp",
    [
        ("exp", -103.0, 88.7, np.exp, 2.0),
        # (a rational approximation, ONNX Runtime's and XLA's: 2.8e-7 absolute at most)
        ("tanh", -12.0, 12.0, np.tanh, 5.0),
        ("sigmoid", -80.0, 80.0, lambda x: 1.0 / (1.0 + np.exp(-x)), 3.0),  # exp, then add and divide
        ("erf", -6.0, 6.0, lambda x: erf(np, np.asarray(x, np.float64)), 2.0),
        ("log", 1e-44, 3e38, np.log, 1.0),  # (a geometric grid: subnormals to the largest floats)
    ],
)
def test_fast_float32_math_is_within_a_few_ulp(op, low, high, reference, max_ulp):
    """exp, tanh, erf and log are polynomial approximations in float32 (they vectorize);
    measured against float64 references over a dense grid, plus the special values."""
    g = parse_graph(f"""
graph g(%x: f32[n]) {{
  %0: f32[n] = {op}(%x)
  return %0
}}""")
    grid = np.geomspace(low, high, 400_001) if low > 0 else np.linspace(low, high, 400_001)
    x = np.concatenate([grid.astype(np.float32), np.float32([0.0, -0.0, 1e-30, -1e-30])])
    got = compile_graph(g).run([x])[0]
    with np.errstate(all="ignore"):
        want = reference(x.astype(np.float64))
    defined = ~np.isnan(want)  # (log of negatives: NaN, checked with the special values)
    assert np.isnan(got[~defined]).all()
    x, got, want = x[defined], got[defined], want[defined]
    infinite = np.isinf(want)  # log(0)
    np.testing.assert_array_equal(got[infinite], want[infinite])
    normal = ~infinite & (np.abs(want) >= np.finfo(np.float32).tiny)
    ulps = np.abs(got[normal] - want[normal]) / np.spacing(np.abs(want[normal]).astype(np.float32))
    assert ulps.max() <= max_ulp, f"{op}: {ulps.max():.2f} ulp at x={x[normal][ulps.argmax()]}"
    tiny = ~infinite & ~normal
    assert np.all(np.abs(got[tiny] - want[tiny]) <= np.finfo(np.float32).tiny)
    specials = np.float32([np.nan, np.inf, -np.inf, 200.0, -200.0, 0.0, -0.0])
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(
            compile_graph(g).run([specials])[0], reference(specials).astype(np.float32)
        )


def test_inner_loops_are_vectorized():
    """The contiguous innermost loop of an elementwise kernel, exp and tanh included, becomes
    vector code (a regression here costs 10-20x, not correctness)."""
    import llvmlite.binding as llvm

    from codegen.llvm import compiler
    from codegen.llvm.render import render

    g = parse_graph("""
graph g(%x: f32[batch,64], %y: f32[64]) {
  %0: f32[batch,64] = mul(%x, %y)
  %1: f32[batch,64] = tanh(%0)
  %2: f32[batch,64] = exp(%1)
  %3: f32[batch,64] = erf(%2)
  %4: f32[batch,64] = log(%3)
  return %4
}""")
    (step,) = schedule(g)
    tm = compiler.target_machine()
    module = llvm.parse_assembly(str(render([step.kernel])))
    module.triple = tm.triple
    pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=3))
    pb.getModulePassManager().run(module, pb)
    text = str(module)
    assert "x float>" in text  # <4|8|16 x float> depending on the CPU
    for name in ("tanhf", "expf", "erff", "logf", "llvm.log.f32"):
        assert f"call float @{name}" not in text, name


def test_a_recomputed_value_read_by_a_broadcast_inlined_user_is_computed():
    # regression (hypothesis): %0 (cheap, read twice by %1) is recomputed rather than stored;
    # %1 is inlined into %2's larger space, so %2's kernel must compute %0 too
    g = parse_graph("""
graph g(%x0: f32[batch,3,4], %x1: f32[3,4]) {
  %0: f32[3,4] = neg(%x1)
  %1: f32[3,4] = add(%0, %0)
  %2: f32[batch,3,4] = add(%x0, %1)
  return %2
}""")
    exe = _check(g, lambda b: [_rand((b, 3, 4), "float32"), _rand((3, 4), "float32", seed=1)])
    (step,) = exe.steps
    assert step.nodes == (0, 1, 2)


def test_a_producer_of_a_broadcast_inlined_user_is_computed_where_it_can_be():
    # regression (hypothesis): %1 (cheap) is inlined into %2's larger space, where %0 (exp,
    # not cheap) cannot be recomputed at every point: %0 was skipped as "inside its consumer's
    # kernel" although that kernel reads it from memory
    g = parse_graph("""
graph g(%x0: f32[batch,3,4], %x1: f32[3,4]) {
  %0: f32[3,4] = exp(%x1)
  %1: f32[3,4] = add(%x1, %0)
  %2: f32[batch,3,4] = add(%x0, %1)
  return %2
}""")
    exe = _check(g, lambda b: [_rand((b, 3, 4), "float32"), _rand((3, 4), "float32", seed=1)])
    assert [s.nodes for s in exe.steps] == [(0,), (1, 2)]
