"""Matmul kernels (register-blocked, cache-tiled, b packed in panels) and their fused epilogues,
against the reference interpreter: edge sizes around the register block and the cache blocks,
both float dtypes, 1-D and batched left operands, batched right operands and computed ones
(packed by the kernel), symbolic batch sizes from one compilation,
every broadcast pattern of an epilogue operand, the parallel split, random epilogue chains."""

import numpy as np
import pytest
from compiled import compare_cuda_with_interpreter
from hypothesis import given, settings
from hypothesis import strategies as st

import codegen.plan as plan
from codegen.executable import compile_graph
from codegen.kernel import Matmul, format_expr, matmul_extra_strides
from codegen.plan import pack_matmul_b
from codegen.schedule import KernelStep, NodeStep
from ir import dtypes
from ir.graph import Graph
from ir.interpreter import run, start
from ir.parser import parse_graph
from ir.types import TensorType


def _matmul_graph(a_shape, b_shape, dtype="float32", weight=None):
    g = Graph("mm")
    t = dtypes.from_name(dtype)
    a = g.add_input("a", TensorType(t, a_shape))
    b = g.add_weight("b", weight) if weight is not None else g.add_input("b", TensorType(t, b_shape))
    (y,) = g.add_node("matmul", [a, b])
    g.set_outputs([y])
    return g


def _close(got, want, depth, dtype):
    # the sum of `depth` products in another order: rounding grows with sqrt(depth) typically
    eps = np.finfo(dtype).eps
    tolerance = 8 * eps * max(depth, 1) ** 0.5 * max(1.0, float(np.abs(want).max(initial=0)))
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "m, k, n",
    [
        (1, 1, 1),
        (1, 784, 512),  # a vector times a matrix
        (5, 7, 3),  # smaller than one register block
        (6, 16, 64),  # exactly one block (float32, AVX-512)
        (7, 17, 65),  # one past a block each way
        (13, 300, 130),  # K over two cache slices
        (130, 513, 33),  # rows over two cache blocks, K over three slices
        (4, 0, 5),  # nothing to sum: zeros
    ],
)
def test_matmul_matches_the_interpreter(m, k, n, dtype):
    rng = np.random.default_rng(m * 1000 + k + n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    g = _matmul_graph((m, k), (k, n), dtype)
    exe = compile_graph(g)
    assert isinstance(exe.steps[0].kernel, Matmul)
    _close(exe.run([a, b])[0], run(g, [a, b])[0], k, dtype)


def test_one_artifact_serves_every_batch_size_and_packs_a_weight_once():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((40, 70)).astype(np.float32)
    g = _matmul_graph(("batch", 40), (40, 70), weight=w)
    exe = compile_graph(g)
    for batch in (1, 3, 64, 1000):
        x = rng.standard_normal((batch, 40)).astype(np.float32)
        _close(exe.run([x])[0], x @ w, 40, "float32")
    assert len(exe._constants._made) == 1  # packed once, reused by every call


def test_left_operands_of_any_rank():
    rng = np.random.default_rng(1)
    b = rng.standard_normal((9, 11)).astype(np.float32)
    for shape in [(9,), (2, 3, 9), ("batch", 4, 9)]:
        g = _matmul_graph(shape, (9, 11))
        exe = compile_graph(g)
        concrete = tuple(5 if d == "batch" else d for d in shape)
        a = rng.standard_normal(concrete).astype(np.float32)
        _close(exe.run([a, b])[0], run(g, [a, b])[0], 9, "float32")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "a_shape, b_shape",
    [
        ((2, 3, 4), (2, 4, 5)),
        (("batch", 4, 7, 16), ("batch", 4, 16, 7)),  # attention's q @ k^T: batch and heads
        (("batch", 1, 30), ("batch", 30, 70)),  # a row per batch: split by columns
        ((3, 13, 300), (3, 300, 130)),  # K over two cache slices, rows over blocks
        ((2, 5, 0), (2, 0, 6)),  # nothing to sum
    ],
)
@pytest.mark.parametrize("split", [False, True])
def test_batched_matmuls_pack_b_themselves(a_shape, b_shape, dtype, split, monkeypatch):
    if split:  # parts that begin and end inside batches
        monkeypatch.setattr(plan, "MATMUL_PARALLEL_MIN_MACS", 0)
        monkeypatch.setattr(plan, "MATVEC_PARALLEL_MIN_MACS", 0)
        monkeypatch.setattr(plan, "workers", lambda: 3)
    g = _matmul_graph(a_shape, b_shape, dtype)
    exe = compile_graph(g)
    (step,) = exe.steps
    assert isinstance(step.kernel, Matmul) and step.kernel.pack_b and exe.native is not None
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        concrete = [tuple(batch if d == "batch" else d for d in shape) for shape in (a_shape, b_shape)]
        a, b = (rng.standard_normal(shape).astype(dtype) for shape in concrete)
        _close(exe.run([a, b])[0], run(g, [a, b])[0], a_shape[-1], dtype)


def test_matmul_by_a_computed_matrix_stays_native():
    g = parse_graph("""
graph g(%x: f32[batch,20], %y: f32[20,30], %z: f32[30]) {
  %0: f32[20,30] = tanh(%y)
  %1: f32[batch,30] = matmul(%x, %0)
  %2: f32[batch,30] = add(%1, %z)
  return %2
}""")
    exe = compile_graph(g)
    assert exe.native is not None and "(b packed by the kernel)" in str(exe)
    rng = np.random.default_rng(2)
    for batch in (1, 7):
        inputs = [rng.standard_normal(s).astype(np.float32) for s in ((batch, 20), (20, 30), (30,))]
        _close(exe.run(inputs)[0], run(g, inputs)[0], 20, "float32")


def _view_matmul_graph(a_shape, source_shape, movement, dtype="float32"):
    """a @ b where b is `movement` (op, attrs) applied to the input `source`."""
    t = dtypes.from_name(dtype)
    g = Graph("mm_view")
    a = g.add_input("a", TensorType(t, a_shape))
    b = g.add_input("source", TensorType(t, source_shape))
    for op, attrs in movement:
        (b,) = g.add_node(op, [b], attrs)
    (y,) = g.add_node("matmul", [a, b])
    g.set_outputs([y])
    return g


VIEWS = [
    # a shape, source shape, movement ops making b, read in place
    (("batch", 40), (150, 40), [("permute", {"dims": (1, 0)})], True),  # w.T: 3 panels, strided
    ((1, 40), (70, 40), [("permute", {"dims": (1, 0)})], True),  # one row: the column split
    (("batch", 30), (30, 90), [("slice", {"dim": 1, "start": 5, "stop": 85, "step": 1})], True),
    (("batch", 5, 16), ("batch", 7, 16), [("permute", {"dims": (0, 2, 1)})], True),  # k^T
    ((2, 3, 6, 8), (2, 3, 9, 8), [("permute", {"dims": (0, 1, 3, 2)})], True),  # heads: dims collapse
    ((3, 2, 6, 8), (2, 3, 9, 8), [("permute", {"dims": (1, 0, 3, 2)})], False),  # they do not
]


def _view_a_graph(a_source_shape, movement, b_shape, weight=False):
    """a @ b where a is `movement` applied to the input `source`; b an input or a weight."""
    g = Graph("mm_view_a")
    a = g.add_input("source", TensorType(dtypes.float32, a_source_shape))
    for op, attrs in movement:
        (a,) = g.add_node(op, [a], attrs)
    rng = np.random.default_rng(7)
    if weight:
        b = g.add_weight("b", rng.standard_normal(b_shape).astype(np.float32))
    else:
        b = g.add_input("b", TensorType(dtypes.float32, b_shape))
    (y,) = g.add_node("matmul", [a, b])
    (y,) = g.add_node("relu", [y])
    g.set_outputs([y])
    return g


A_VIEWS = [
    # a's source shape, movement ops making a, b shape, b a weight, a read in place
    ((40, 9), [("permute", {"dims": (1, 0)})], (40, 70), True, True),  # x.T @ w: a strided
    ((40, "batch"), [("permute", {"dims": (1, 0)})], (40, 70), True, False),  # a stride of symbols: copied
    ((30, 9), [("permute", {"dims": (1, 0)})], (30, 150), False, True),  # g.T @ x
    (("batch", 50), [("slice", {"dim": 1, "start": 3, "stop": 43, "step": 1})], (40, 20), True, True),
    (
        ("batch", 8, 6),
        [("permute", {"dims": (0, 2, 1)})],
        ("batch", 8, 5),
        False,
        False,
    ),  # rows do not collapse
    ((2, 7, 6), [("flip", {"dims": (2,)})], (2, 6, 5), False, True),  # batched, columns reversed
]


@pytest.mark.parametrize("case", A_VIEWS)
@pytest.mark.parametrize("split", [False, True])
def test_matmul_reads_a_through_its_view(case, split, monkeypatch):
    source_shape, movement, b_shape, weight, in_place = case
    if split:
        monkeypatch.setattr(plan, "MATMUL_PARALLEL_MIN_MACS", 0)
        monkeypatch.setattr(plan, "MATVEC_PARALLEL_MIN_MACS", 0)
        monkeypatch.setattr(plan, "workers", lambda: 3)
    _check_view_operand(_view_a_graph(source_shape, movement, b_shape, weight), "a", in_place)


def _check_view_operand(g, operand: str, in_place: bool) -> None:
    """The matmul of `g` reads `operand` through its view where `in_place` (one kernel), else
    from a stored copy; both paths match the interpreter at two batch sizes."""
    exe = compile_graph(g)
    kernels = [s.kernel for s in exe.steps if isinstance(s, KernelStep)]
    assert isinstance(kernels[-1], Matmul) and len(kernels) == (1 if in_place else 2)
    assert (getattr(kernels[-1], operand).view is not None) == in_place
    rng = np.random.default_rng(11)
    for batch in (1, 3):
        arrays = [
            rng.standard_normal(tuple(batch if d == "batch" else d for d in v.type.shape)).astype(np.float32)
            for v in g.inputs
        ]
        want = run(g, arrays)[0]
        native = exe.native
        _close(exe.run(arrays)[0], want, 50, "float32")
        exe.native = None  # the step-by-step runner
        _close(exe.run(arrays)[0], want, 50, "float32")
        exe.native = native


@pytest.mark.parametrize("case", VIEWS)
@pytest.mark.parametrize("split", [False, True])
def test_matmul_packs_b_through_its_view(case, split, monkeypatch):
    a_shape, source_shape, movement, in_place = case
    if split:
        monkeypatch.setattr(plan, "MATMUL_PARALLEL_MIN_MACS", 0)
        monkeypatch.setattr(plan, "MATVEC_PARALLEL_MIN_MACS", 0)
        monkeypatch.setattr(plan, "workers", lambda: 3)
    _check_view_operand(_view_matmul_graph(a_shape, source_shape, movement), "b", in_place)


def test_broadcast_batches_stay_on_the_interpreter():
    g = _matmul_graph((2, 3, 4), (1, 4, 5))
    exe = compile_graph(g)
    assert isinstance(exe.steps[0], NodeStep)
    a, b = np.ones((2, 3, 4), np.float32), np.ones((1, 4, 5), np.float32)
    np.testing.assert_array_equal(exe.run([a, b])[0], run(g, [a, b])[0])


def test_packing_layout():
    b = np.arange(12, dtype=np.float32).reshape(3, 4)  # K=3, N=4
    packed = pack_matmul_b(b, 3)  # panels of 3 columns: [2][3][3], zero-padded
    assert packed.shape == (2, 3, 3)
    np.testing.assert_array_equal(packed[0], b[:, :3])
    np.testing.assert_array_equal(packed[1], np.stack([b[:, 3], np.zeros(3), np.zeros(3)], axis=1))


def test_extra_strides_cover_the_broadcast_patterns():
    out = ("batch", 4, 8)
    assert matmul_extra_strides((8,), out) == (0, 1)  # a bias
    assert matmul_extra_strides((1, 1, 8), out) == (0, 1)
    assert matmul_extra_strides((), out) == (0, 0)  # a scalar
    assert matmul_extra_strides(("batch", 4, 8), out) == ("n", 1)  # a residual
    assert matmul_extra_strides(("batch", 4, 1), out) == (1, 0)  # one value a row
    assert matmul_extra_strides((4, 8), out) is None  # varies along some leading dims only
    assert matmul_extra_strides(("batch", 1, 8), out) is None


EPILOGUE = (
    "graph g(%x: f32[batch,6,12], %w: f32[12,20], %bias: f32[20], %res: f32[batch,6,20], "
    "%row: f32[batch,6,1], %s: f32[], %part: f32[6,20]) {"
    + """
  %0: f32[batch,6,20] = matmul(%x, %w)
  %1: f32[batch,6,20] = add(%0, %bias)
  %2: f32[batch,6,20] = mul(%1, %s)
  %3: f32[batch,6,20] = tanh(%2)
  %4: f32[batch,6,20] = add(%3, %res)
  %5: f32[batch,6,20] = mul(%row, %4)
  %6: f32[batch,6,20] = sub(%5, %part)
  return %6
}"""
)


def test_epilogues_take_every_supported_operand_and_stop_at_others():
    g = parse_graph(EPILOGUE)
    exe = compile_graph(g)
    (mm, rest) = [s for s in exe.steps if isinstance(s, KernelStep)]
    assert format_expr(mm.kernel.epilogue) == "mul(in3[i], add(tanh(mul(add(acc, in0[i]), in1[i])), in2[i]))"
    assert mm.nodes == (0, 1, 2, 3, 4, 5) and rest.nodes == (6,)  # %part broadcasts along dim 0 only
    rng = np.random.default_rng(2)
    for batch in (1, 3):
        shapes = [(batch, 6, 12), (12, 20), (20,), (batch, 6, 20), (batch, 6, 1), (), (6, 20)]
        inputs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        _close(exe.run(inputs)[0], run(g, inputs)[0], 12, "float32")


def test_chains_stop_where_a_value_is_used_twice_or_returned():
    g = parse_graph("""
graph g(%x: f32[batch,8], %w: f32[8,8]) {
  %0: f32[batch,8] = matmul(%x, %w)
  %1: f32[batch,8] = relu(%0)
  %2: f32[batch,8] = exp(%1)
  %3: f32[batch,8] = add(%2, %1)
  return %3, %2
}""")
    exe = compile_graph(g)
    kernels = [s for s in exe.steps if isinstance(s, KernelStep)]
    assert kernels[0].nodes == (0, 1) and format_expr(kernels[0].kernel.epilogue) == "relu(acc)"
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((5, 8)).astype(np.float32), rng.standard_normal((8, 8)).astype(np.float32)]
    for got, want in zip(exe.run(inputs), run(g, inputs), strict=True):
        _close(got, want, 8, "float32")


def test_parallel_split_over_rows(monkeypatch):
    monkeypatch.setattr(plan, "MATMUL_PARALLEL_MIN_MACS", 0)
    monkeypatch.setattr(plan, "workers", lambda: 3)
    rng = np.random.default_rng(4)
    g = _matmul_graph(("batch", 33), (33, 70))
    exe = compile_graph(g)
    for batch in (1, 2, 5, 100):
        a = rng.standard_normal((batch, 33)).astype(np.float32)
        b = rng.standard_normal((33, 70)).astype(np.float32)
        _close(exe.run([a, b])[0], a @ b, 33, "float32")


def test_mlp_compiles_to_three_matmul_kernels_and_matches_eager():
    import graphc
    import graphc.nn as nn

    graphc.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    scripted = graphc.script(model.eval(), (graphc.randn(2, 784),), backend="llvm")
    for batch in (1, 3, 64):
        x = graphc.randn(batch, 784)
        with graphc.no_grad():
            want = model(x).numpy()
        np.testing.assert_allclose(scripted(x).numpy(), want, rtol=1e-4, atol=1e-5)
    steps = compile_graph(scripted.graph).steps
    assert [type(s.kernel).__name__ for s in steps] == ["Matmul"] * 3


UNARY = ["relu", "tanh", "exp", "neg", "sigmoid", "abs"]
BINARY = ["add", "sub", "mul", "maximum", "minimum"]


@st.composite
def epilogue_graphs(draw):
    """A matmul of random sizes followed by a random chain of elementwise ops, whose other
    operands are biases, residuals, row values or scalars."""
    m, k, n = draw(st.integers(1, 20)), draw(st.integers(0, 40)), draw(st.integers(1, 70))
    dtype = draw(st.sampled_from(["f32", "f64"]))
    t = dtypes.from_name({"f32": "float32", "f64": "float64"}[dtype])
    g = Graph("g")
    x = g.add_input("x", TensorType(t, ("batch", k)))
    w = g.add_input("w", TensorType(t, (k, n)))
    (y,) = g.add_node("matmul", [x, w])
    shapes = {"bias": (n,), "residual": ("batch", n), "row": ("batch", 1), "scalar": ()}
    for i in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            (y,) = g.add_node(draw(st.sampled_from(UNARY)), [y])
        else:
            kind = draw(st.sampled_from(sorted(shapes)))
            other = g.add_input(f"in{i}", TensorType(t, shapes[kind]))
            pair = [y, other] if draw(st.booleans()) else [other, y]
            (y,) = g.add_node(draw(st.sampled_from(BINARY)), pair)
    g.set_outputs([y])
    return g, m, k


@settings(max_examples=25, deadline=None)
@given(epilogue_graphs())
def test_random_matmul_epilogues_match_the_interpreter(case):
    g, m, k = case
    exe = compile_graph(g)
    rng = np.random.default_rng(m + k)
    inputs = []
    for v in g.inputs:
        shape = tuple(m if d == "batch" else d for d in v.type.shape)
        inputs.append(rng.standard_normal(shape).astype(v.type.dtype.np))
    with np.errstate(all="ignore"):
        got, want = exe.run(inputs)[0], run(g, inputs)[0]
    eps = np.finfo(got.dtype).eps
    finite = np.abs(want[np.isfinite(want)])  # infinities must match exactly
    tolerance = 64 * eps * max(k, 1) ** 0.5 * max(1.0, float(finite.max(initial=0)))
    with np.errstate(over="ignore"):  # (tolerance * |want| may overflow to inf: a pass, not a warning)
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance, equal_nan=True)
        compare_cuda_with_interpreter(g, inputs, tolerance, [want])


PROLOGUES = {
    # name: (graph text with %a the matmul's left operand, extra inputs' makers)
    "scale and shift per column": (
        """
  %0: f32[batch,{k}] = mul(%x, %s)
  %a: f32[batch,{k}] = add(%0, %t)""",
        {"s": lambda rng, k, m: rng.standard_normal(k), "t": lambda rng, k, m: rng.standard_normal(k)},
    ),
    "bytes to floats (an image's pixels)": (
        """
  %0: f32[batch,{k}] = cast[dtype="float32"](%q)
  %a: f32[batch,{k}] = mul(%0, %s)""",
        {"s": lambda rng, k, m: np.full(k, 1 / 255)},
    ),
    "a value per row and a scalar": (
        """
  %0: f32[batch,{k}] = sub(%x, %r)
  %1: f32[batch,{k}] = tanh(%0)
  %a: f32[batch,{k}] = mul(%1, %c)""",
        {"r": lambda rng, k, m: rng.standard_normal((m, 1)), "c": lambda rng, k, m: np.array(0.5)},
    ),
}


def _prologue_graph(name: str, k: int, n: int, weight: bool):
    body, extras = PROLOGUES[name]
    rng = np.random.default_rng(k * n)
    uses_q = "%q" in body
    params = ["%q: u8[batch,{k}]" if uses_q else "%x: f32[batch,{k}]"]
    shapes = {"s": "[{k}]", "t": "[{k}]", "r": "[batch,1]", "c": "[]"}
    params += [f"%{e}: f32{shapes[e]}" for e in extras]
    params += [] if weight else ["%w: f32[{k},{n}]"]
    text = (
        "graph g("
        + ", ".join(params)
        + (") weights(%w: f32[{k},{n}]) {" if weight else ") {")
        + body
        + """
  %y: f32[batch,{n}] = matmul(%a, %w)
  %z: f32[batch,{n}] = relu(%y)
  return %z
}"""
    )
    w = rng.standard_normal((k, n)).astype(np.float32)
    weights = {"w": w} if weight else {}
    g = parse_graph(text.replace("{k}", str(k)).replace("{n}", str(n)), weights=weights)

    def inputs(batch):
        r = np.random.default_rng(batch)
        first = r.integers(0, 256, (batch, k)).astype(np.uint8) if uses_q else r.standard_normal((batch, k))
        others = [np.asarray(make(r, k, batch), np.float32) for make in extras.values()]
        return [first.astype(first.dtype if uses_q else np.float32), *others, *([] if weight else [w])]

    return g, inputs


@pytest.mark.parametrize("name", sorted(PROLOGUES))
@pytest.mark.parametrize("weight", [True, False])
@pytest.mark.parametrize("k, n", [(7, 5), (300, 70), (513, 130)])  # K over cache slices, N over panels
@pytest.mark.parametrize("split", [False, True])
def test_elementwise_prologues_are_computed_by_the_matmul(name, weight, k, n, split, monkeypatch):
    if split:
        monkeypatch.setattr(plan, "MATMUL_PARALLEL_MIN_MACS", 0)
        monkeypatch.setattr(plan, "MATVEC_PARALLEL_MIN_MACS", 0)
        monkeypatch.setattr(plan, "workers", lambda: 3)
    g, inputs = _prologue_graph(name, k, n, weight)
    exe = compile_graph(g)
    (step,) = exe.steps  # one kernel: a is never stored
    assert isinstance(step, KernelStep) and step.kernel.prologue is not None
    assert "acc = a @ b, a = " in str(exe)
    for batch in (1, 3, 64, 250):  # 250 rows: three blocks of rows (MC = 120)
        xs = inputs(batch)
        got, want = exe.run(xs)[0], run(g, xs)[0]
        _close(got, want, k, np.float32)
        env, bindings = start(exe.graph, xs)  # the step-by-step path runs the same kernel
        for step in exe._plan:
            step(env, bindings, None)
        _close(env[exe.graph.outputs[0].name], want, k, np.float32)


def test_prologues_leave_computed_statistics_and_shared_values_alone():
    g = parse_graph("""
graph g(%x: f32[batch,16], %w: f32[16,8]) {
  %0: f32[batch,1] = mean[dims=(1,), keepdim=True](%x)
  %1: f32[batch,16] = sub(%x, %0)
  %2: f32[batch,8] = matmul(%1, %w)
  %3: f32[batch,16] = exp(%x)
  %4: f32[batch,8] = matmul(%3, %w)
  %5: f32[batch,16] = mul(%3, %3)
  return %2, %4, %5
}""")
    exe = compile_graph(g)
    prologues = [s.kernel.prologue for s in exe.steps if isinstance(s.kernel, Matmul)]
    assert prologues == [None, None]  # a per-row mean (computed), exp used twice
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((16, 8)).astype(np.float32)
    for got, want in zip(exe.run([x, w]), run(g, [x, w]), strict=True):
        _close(got, want, 16, np.float32)
