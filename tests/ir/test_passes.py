"""Graph passes: each on small text-form graphs with the expected printed result; the pipeline
keeps interpreter results on captured models and on random graphs (hypothesis); GRAPHC_DUMP."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ir import dtypes
from ir.graph import Graph
from ir.interpreter import run
from ir.parser import parse_graph
from ir.passes import PIPELINE, cse, dce, decompose, fold_constants, optimize, simplify
from ir.printer import format_graph
from ir.types import TensorType
from ir.verify import verify


def _graph(text, **weights):
    return parse_graph(text, weights={k: np.asarray(v) for k, v in weights.items()})


def _check(pass_, before, after, **weights):
    g = _graph(before, **weights)
    out = pass_(g)
    verify(out)
    assert format_graph(out) == after.strip()
    return g, out


def _same_results(g1, g2, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    inputs = []
    for v in g1.inputs:
        shape = tuple(batch if isinstance(d, str) else d for d in v.type.shape)
        inputs.append(rng.standard_normal(shape).astype(v.type.dtype.np))
    for a, b in zip(run(g1, inputs), run(g2, inputs), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_dce_drops_dead_nodes_and_weights():
    _check(
        dce,
        """
graph g(%x: f32[2]) weights(%w: f32[2], %unused: f32[2]) {
  %0: f32[2] = exp(%x)
  %1: f32[2] = add(%x, %w)
  %2: f32[2] = mul(%unused, %x)
  return %1
}""",
        """
graph g(%x: f32[2]) weights(%w: f32[2]) {
  %0: f32[2] = add(%x, %w)
  return %0
}""",
    )


def test_cse_merges_equal_nodes_and_equal_small_constants():
    _check(
        cse,
        """
graph g(%x: f32[2]) weights(%c1: f32[], %c2: f32[]) {
  %0: f32[2] = mul(%x, %c1)
  %1: f32[2] = mul(%x, %c2)
  %2: f32[2] = sum[dims=(0,), keepdim=True](%x)
  %3: f32[2] = sum[dims=(0,), keepdim=False](%x)
  %4: f32[2] = add(%0, %1)
  return %4
}""".replace(
            "%2: f32[2] = sum[dims=(0,), keepdim=True](%x)\n  %3: f32[2] = sum[dims=(0,), keepdim=False](%x)\n",
            "",
        ),
        """
graph g(%x: f32[2]) weights(%c1: f32[]) {
  %0: f32[2] = mul(%x, %c1)
  %1: f32[2] = add(%0, %0)
  return %1
}""",
        c1=np.float32(2),
        c2=np.float32(2),
    )


def test_cse_keeps_nodes_whose_attributes_differ():
    g, out = _check(
        cse,
        """
graph g(%x: f32[2,3]) {
  %0: f32[2,1] = sum[dims=(1,), keepdim=True](%x)
  %1: f32[2] = sum[dims=(1,), keepdim=False](%x)
  %2: f32[2] = sum[dims=(1,), keepdim=False](%x)
  return %0, %1, %2
}""",
        """
graph g(%x: f32[2,3]) {
  %0: f32[2,1] = sum[dims=(1,), keepdim=True](%x)
  %1: f32[2] = sum[dims=(1,), keepdim=False](%x)
  return %0, %1, %1
}""",
    )
    _same_results(g, out)


def test_fold_constants_computes_weight_only_nodes():
    g, out = _check(
        fold_constants,
        """
graph g(%x: f32[batch,3]) weights(%w: f32[2,3], %b: f32[2]) {
  %0: f32[3,2] = permute[dims=(1, 0)](%w)
  %1: f32[2] = mul(%b, %b)
  %2: f32[batch,2] = matmul(%x, %0)
  %3: f32[batch,2] = add(%2, %1)
  return %3
}""",
        """
graph g(%x: f32[batch,3]) weights(%folded0: f32[3,2], %folded1: f32[2]) {
  %0: f32[batch,2] = matmul(%x, %folded0)
  %1: f32[batch,2] = add(%0, %folded1)
  return %1
}""",
        w=np.arange(6, dtype=np.float32).reshape(2, 3),
        b=np.array([2, 3], np.float32),
    )
    np.testing.assert_array_equal(out.weight_data["folded0"], np.arange(6).reshape(2, 3).T)
    np.testing.assert_array_equal(out.weight_data["folded1"], [4, 9])
    _same_results(g, out)


def test_fold_constants_does_not_materialize_huge_constants():
    text = """
graph g(%x: f32[4]) {
  %0: f32[1000,1000] = full[dtype="float32", shape=(1000, 1000), value=1.0]()
  %1: f32[] = sum(%0)
  %2: f32[4] = add(%x, %1)
  return %2
}"""
    g = _graph(text)
    out = fold_constants(g)
    assert [n.op for n in out.nodes] == ["full", "sum", "add"]
    _same_results(g, out)


@pytest.mark.parametrize(
    "body, expected",
    [
        ("%0: f32[b,4] = mul(%x, %one)", "return %x"),
        ("%0: f32[b,4] = mul(%one, %x)", "return %x"),
        ("%0: f32[b,4] = div(%x, %one)", "return %x"),
        ("%0: f32[b,4] = add(%x, %zeros)", "return %x"),
        ("%0: f32[b,4] = add(%zeros, %x)", "return %x"),
        ("%0: f32[b,4] = sub(%x, %zeros)", "return %x"),
        ("%0: f32[b,4] = neg(%x)\n  %1: f32[b,4] = neg(%0)", "return %x"),
        ("%0: f32[b,4] = permute[dims=(0, 1)](%x)", "return %x"),
        ("%0: f32[4,b] = permute[dims=(1, 0)](%x)\n  %1: f32[b,4] = permute[dims=(1, 0)](%0)", "return %x"),
        ("%0: f32[b,4] = reshape[shape=(-1, 4)](%x)", "return %x"),
        ('%0: f32[b,4] = cast[dtype="float32"](%x)', "return %x"),
        ('%0: f64[b,4] = cast[dtype="float64"](%x)\n  %1: f32[b,4] = cast[dtype="float32"](%0)', "return %x"),
    ],
)
def test_simplify_removes_identities(body, expected):
    text = f"""
graph g(%x: f32[b,4]) weights(%one: f32[], %zeros: f32[4]) {{
  {body}
  return %{body.splitlines()[-1].split(":")[0].strip()[1:]}
}}"""
    g = _graph(text, one=np.float32(1), zeros=np.zeros(4, np.float32))
    out = simplify(g)
    assert format_graph(out) == f"graph g(%x: f32[b,4]) {{\n  {expected}\n}}"
    _same_results(g, out)


def test_simplify_composes_chains():
    g, out = _check(
        simplify,
        """
graph g(%x: f32[2,3,4]) {
  %0: f32[3,4,2] = permute[dims=(1, 2, 0)](%x)
  %1: f32[4,3,2] = permute[dims=(1, 0, 2)](%0)
  %2: f32[24] = reshape[shape=(24,)](%1)
  %3: f32[6,4] = reshape[shape=(6, 4)](%2)
  %4: f64[6,4] = cast[dtype="float64"](%3)
  %5: i32[6,4] = cast[dtype="int32"](%4)
  return %5
}""",
        """
graph g(%x: f32[2,3,4]) {
  %0: f32[4,3,2] = permute[dims=(2, 1, 0)](%x)
  %1: f32[6,4] = reshape[shape=(6, 4)](%0)
  %2: i32[6,4] = cast[dtype='int32'](%1)
  return %2
}""",
    )
    _same_results(g, out)


def test_simplify_keeps_what_is_not_an_identity():
    text = """
graph g(%x: f32[4]) weights(%ones: f32[3,4], %two: f32[]) {
  %0: f32[3,4] = mul(%x, %ones)
  %1: f32[4] = mul(%x, %two)
  %2: i32[4] = cast[dtype="int32"](%x)
  %3: f32[4] = cast[dtype="float32"](%2)
  return %0, %1, %3
}"""
    g = _graph(text, ones=np.ones((3, 4), np.float32), two=np.float32(2))
    out = simplify(g)
    assert format_graph(out) == format_graph(g)  # broadcasting x*1, x*2 and a lossy cast chain stay
    _same_results(g, out)


def test_decompose_linear_and_log_softmax_into_core_ops():
    text = """
graph g(%x: f32[batch,4]) weights(%w: f32[3,4], %b: f32[3]) {
  %0: f32[batch,3] = linear(%x, %w, %b)
  %1: f32[batch,3] = log_softmax[dim=1](%0)
  return %1
}"""
    rng = np.random.default_rng(0)
    g = _graph(text, w=rng.standard_normal((3, 4)).astype(np.float32), b=np.ones(3, np.float32))
    out = decompose(g)
    verify(out)
    assert {n.op for n in out.nodes} == {
        "permute",
        "matmul",
        "add",
        "amax",
        "isfinite",
        "where",
        "sub",
        "exp",
        "sum",
        "log",
    }
    _same_results(g, out, batch=5)
    assert [n.op for n in decompose(g, keep=frozenset({"linear", "log_softmax"})).nodes] == [
        "linear",
        "log_softmax",
    ]


def test_log_softmax_decomposition_matches_on_infinities():
    g = _graph("""
graph g(%x: f32[3,2]) {
  %0: f32[3,2] = log_softmax[dim=1](%x)
  return %0
}""")
    x = np.array([[-np.inf, -np.inf], [np.inf, 0], [1, -np.inf]], np.float32)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(run(decompose(g), [x])[0], run(g, [x])[0])


@pytest.mark.parametrize(
    "node, shapes",
    [
        ("softmax[dim=1](%x)", ""),
        ("softmax[dim=0](%x)", ""),
        ("softmax_backward[dim=2](%x, %y)", "%y: f32[batch,3,4]"),
        ("layer_norm[dims=(2,), eps=1e-05](%x, %w, %b)", "%w: f32[4], %b: f32[4]"),
        ("layer_norm[dims=(1, 2), eps=0.001](%x, %w)", "%w: f32[3,4]"),
        ("layer_norm[dims=(2,), eps=1e-05](%x)", ""),
        ("layer_norm_backward[dims=(2,), eps=1e-05](%x, %w, %y)", "%w: f32[4], %y: f32[batch,3,4]"),
        ("layer_norm_backward[dims=(1, 2), eps=1e-05](%x, _, %y)", "%y: f32[batch,3,4]"),
    ],
)
def test_softmax_and_layer_norm_decompose_to_their_reference(node, shapes):
    text = f"""
graph g(%x: f32[batch,3,4]{", " + shapes if shapes else ""}) {{
  %0: f32[batch,3,4] = {node}
  return %0
}}"""
    g = _graph(text)
    out = decompose(g)
    verify(out)
    assert node.split("[")[0] not in {n.op for n in out.nodes}
    _same_results(g, out, batch=5)


def test_passes_keep_chosen_output_names():
    g = Graph("g")
    x = g.add_input("x", TensorType(dtypes.float32, ("batch", 4)))
    (y,) = g.add_node("exp", [x])
    (z,) = g.add_node("neg", [y])
    (z,) = g.add_node("neg", [z], names=["output"])
    g.set_outputs([z])
    out = optimize(g)
    assert [v.name for v in out.outputs] == ["output"] and [n.op for n in out.nodes] == ["exp"]


def test_graphc_dump_writes_every_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_DUMP", str(tmp_path))
    g = _graph("""
graph g(%x: f32[batch,4]) weights(%w: f32[3,4]) {
  %0: f32[batch,3] = linear(%x, %w)
  return %0
}""")
    out = optimize(g)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["g.00.input.txt"] + [f"g.{i:02d}.{p.name}.txt" for i, p in enumerate(PIPELINE, 1)]
    final = (tmp_path / names[-1]).read_text()
    assert final.strip() == format_graph(out)
    assert format_graph(parse_graph(final)) == final.strip()  # dumps parse back


def test_captured_lenet_is_unchanged_in_meaning():
    from testmodels import LeNet

    import graphc
    import graphc.nn as nn

    graphc.manual_seed(0)
    net = nn.Sequential(LeNet("size"), nn.LogSoftmax(dim=1)).eval()
    graph = graphc.script(net, (graphc.randn(2, 1, 32, 32),)).graph
    out = optimize(graph)
    assert "linear" not in {n.op for n in out.nodes} and "log_softmax" not in {n.op for n in out.nodes}
    for batch in (1, 7):
        _same_results(graph, out, batch=batch, seed=batch)


# --- random graphs: the pipeline never changes what a graph computes ---

UNARY = ["exp", "neg", "relu", "tanh", "abs", "sigmoid"]
BINARY = ["add", "sub", "mul", "maximum"]


@st.composite
def random_graphs(draw):
    g = Graph("random")
    x = g.add_input("x", TensorType(dtypes.float32, ("batch", 3, 4)))
    consts = {
        "one": np.float32(1),
        "zero": np.zeros(4, np.float32),
        "c": np.float32(draw(st.floats(-2, 2, width=32))),
        "w": np.random.default_rng(draw(st.integers(0, 99))).standard_normal((5, 4)).astype(np.float32),
    }
    weights = {k: g.add_weight(k, v) for k, v in consts.items()}
    values = [x]
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(
            st.sampled_from(["unary", "binary", "const", "permute2", "reshape2", "cast2", "linear", "dup"])
        )
        a = draw(st.sampled_from(values))
        if kind == "unary":
            (v,) = g.add_node(draw(st.sampled_from(UNARY)), [a])
        elif kind == "binary":
            b = draw(st.sampled_from([v for v in values if v.type.shape == a.type.shape]))
            (v,) = g.add_node(draw(st.sampled_from(BINARY)), [a, b])
        elif kind == "const":
            w = weights[draw(st.sampled_from(["one", "zero", "c"]))]
            op = draw(st.sampled_from(["add", "mul", "sub", "div"]))
            (v,) = g.add_node(op, [a, w] if draw(st.booleans()) or op in ("sub", "div") else [w, a])
        elif kind == "permute2":
            p = draw(st.permutations([0, 1, 2]))
            q = draw(st.permutations([0, 1, 2]))
            (t,) = g.add_node("permute", [a], {"dims": tuple(p)})
            (t,) = g.add_node("permute", [t], {"dims": tuple(q)})
            pq = [p[i] for i in q]  # where each output dim of the two permutes comes from
            (v,) = g.add_node("permute", [t], {"dims": tuple(int(np.argsort(pq)[i]) for i in range(3))})
        elif kind == "reshape2":
            (t,) = g.add_node("reshape", [a], {"shape": (-1, 12)})
            (v,) = g.add_node("reshape", [t], {"shape": (-1, 3, 4)})
        elif kind == "cast2":
            (t,) = g.add_node(
                "cast", [a], {"dtype": draw(st.sampled_from(["float64", "float32", "float16"]))}
            )
            (v,) = g.add_node("cast", [t], {"dtype": "float32"})
        elif kind == "linear":
            (t,) = g.add_node("linear", [a, weights["w"], None])
            (v,) = g.add_node("log_softmax", [t], {"dim": 2})
            (v,) = g.add_node("sum", [v], {"dims": (2,), "keepdim": True})
            (v,) = g.add_node("add", [a, v])
        else:  # the same expression twice
            op = draw(st.sampled_from(UNARY))
            (p,) = g.add_node(op, [a])
            (q,) = g.add_node(op, [a])
            (v,) = g.add_node("add", [p, q])
        values.append(v)
    outs = draw(st.lists(st.sampled_from(values[1:]), min_size=1, max_size=3))
    g.set_outputs(outs)
    verify(g)
    return g


@settings(max_examples=60, deadline=None)
@given(random_graphs(), st.integers(1, 5))
def test_pipeline_preserves_random_graphs(graph, batch):
    x = np.random.default_rng(batch).uniform(-2, 2, (batch, 3, 4)).astype(np.float32)
    with np.errstate(all="ignore"):
        before = run(graph, [x])
        after = run(optimize(graph), [x])
    for a, b in zip(before, after, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-5, equal_nan=True)


def test_specialize_makes_every_type_and_attribute_concrete():
    from ir.errors import InputError, IRError
    from ir.passes import specialize

    text = """
graph g(%x: f32[batch,2,3]) weights(%w: f32[4,6]) {
  %0: f32[batch,6] = reshape[shape=('batch', 6)](%x)
  %1: f32[batch,4] = linear(%0, %w)
  %2: f32[batch] = sum[dims=(1,), keepdim=False](%1)
  %3: f32[4,batch] = permute[dims=(1, 0)](%1)
  return %2, %3
}"""
    g = _graph(text, w=np.arange(24, dtype=np.float32).reshape(4, 6) / 10)
    out = specialize(g, {"batch": 5})
    verify(out)
    assert (
        format_graph(out)
        == """
graph g(%x: f32[5,2,3]) weights(%w: f32[4,6]) {
  %0: f32[5,6] = reshape[shape=(5, 6)](%x)
  %1: f32[5,4] = linear(%0, %w)
  %2: f32[5] = sum[dims=(1,), keepdim=False](%1)
  %3: f32[4,5] = permute[dims=(1, 0)](%1)
  return %2, %3
}""".strip()
    )
    _same_results(g, out, batch=5)
    with pytest.raises(InputError, match="expected shape"):
        run(out, [np.zeros((6, 2, 3), np.float32)])
    with pytest.raises(IRError, match=r"unbound \['batch'\], unknown \['n'\]"):
        specialize(g, {"n": 5})
    with pytest.raises(IRError, match="must be an int"):
        specialize(g, {"batch": 2.5})


def test_specialize_reaches_into_cond_branches():
    import graphc
    from ir.passes import specialize

    def f(x):
        return graphc.cond(x.sum() > 0, lambda x: x.view(x.size(0), -1), lambda x: x.flatten(1) * 2, (x,))

    graph = graphc.script(f, (graphc.randn(2, 3, 2),)).graph
    out = specialize(graph, {"batch": 4})
    assert "batch" not in format_graph(out)
    for sign in (1, -1):
        x = sign * np.abs(np.random.default_rng(0).standard_normal((4, 3, 2))).astype(np.float32)
        np.testing.assert_array_equal(run(out, [x])[0], run(graph, [x])[0])


def test_var_decomposes_into_numpys_two_passes_exactly():
    import graphc
    import graphc.nn.functional as F
    from ir.interpreter import run
    from ir.passes import optimize

    for fn in (lambda x: x.var(1), lambda x: x.var(1, unbiased=False), lambda x: F.layer_norm(x, (10,))):
        graph = graphc.script(fn, (graphc.randn(3, 10),), backend="interpreter").graph
        optimized = optimize(graph)
        assert "var" not in [n.op for n in optimized.nodes]
        x = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32) * 3
        np.testing.assert_array_equal(run(optimized, [x])[0], run(graph, [x])[0])


def test_var_over_a_symbolic_dim_or_too_few_values_stays_whole():
    import graphc
    from ir.passes import optimize

    over_batch = graphc.script(lambda x: x.var(0), (graphc.randn(3, 10),), backend="interpreter").graph
    assert "var" in [n.op for n in optimize(over_batch).nodes]  # n is the batch size
    single = graphc.script(lambda x: x.var(1), (graphc.randn(3, 1),), backend="interpreter").graph
    assert "var" in [n.op for n in optimize(single).nodes]  # n - correction = 0: NaN, as the op gives


@pytest.mark.parametrize(
    "x_shape, positions, index_shape",
    [
        ((10, 4), (True,), (2, 3)),  # an embedding lookup
        ((10, 4), (True, False), (5,)),
        ((3, 10, 4), (False, True), (2, 3)),  # x[:, idx]
        ((3, 10, 4, 2), (False, True, False, False), (6,)),
        ((10,), (True,), (2, 2, 2)),
    ],
)
def test_indexing_by_one_integer_tensor_decomposes_into_a_gather(x_shape, positions, index_shape):
    """`index` by one integer tensor becomes a gather of broadcast views (which kernels read in
    place), negative indices counting from the end; the results are the op's, and an index out
    of range is still an IndexError."""
    g = Graph("g")
    x = g.add_input("x", TensorType(dtypes.float32, x_shape))
    i = g.add_input("i", TensorType(dtypes.int64, index_shape))
    (y,) = g.add_node("index", [x, i], {"positions": positions})
    g.set_outputs([y])
    optimized = optimize(g)
    assert "index" not in [n.op for n in optimized.nodes] and "gather" in [n.op for n in optimized.nodes]
    rng = np.random.default_rng(len(index_shape))
    n = x_shape[positions.index(True)]
    xv = rng.standard_normal(x_shape).astype(np.float32)
    iv = rng.integers(-n, n, index_shape)
    np.testing.assert_array_equal(run(optimized, [xv, iv])[0], run(g, [xv, iv])[0])
    for bad in (n, -n - 1):
        with pytest.raises(IndexError):
            run(optimized, [xv, np.full(index_shape, bad)])


def test_indexing_by_several_tensors_or_a_symbolic_axis_stays_whole():
    g = parse_graph("""
graph g(%x: f32[n,4], %i: i64[3], %j: i64[3], %k: i64[2]) {
  %0: f32[3] = index[positions=(True, True)](%x, %i, %j)
  %1: f32[2,4] = index[positions=(True,)](%x, %k)
  return %0, %1
}""")
    assert [n.op for n in optimize(g).nodes] == ["index", "index"]


@pytest.mark.parametrize(
    "pads",
    [
        ((0, 0), (0, 0), (1, 2), (0, 3)),
        ((0, 0), (2, 1), (-1, 0), (1, -2)),  # negative pads crop
        ((0, 0), (0, 0), (0, 0), (-3, 5)),
    ],
)
@pytest.mark.parametrize("value", [0.0, -2.5])
def test_pad_decomposes_into_gathers_and_selects(pads, value):
    g = Graph("g")
    x = g.add_input("x", TensorType(dtypes.float32, ("batch", 3, 4, 5)))
    (y,) = g.add_node("pad", [x], {"pads": pads, "value": value})
    g.set_outputs([y])
    out = decompose(g)
    verify(out)
    assert "pad" not in {n.op for n in out.nodes}
    _same_results(g, out, batch=2)


@pytest.mark.parametrize(
    "attrs, w_shape",
    [
        (
            {"stride": (1, 1), "padding": (0, 0), "output_padding": (0, 0), "dilation": (1, 1), "groups": 1},
            (3, 4, 3, 3),
        ),
        (
            {"stride": (2, 2), "padding": (1, 1), "output_padding": (1, 1), "dilation": (1, 1), "groups": 1},
            (3, 2, 4, 4),
        ),
        (
            {"stride": (3, 1), "padding": (2, 0), "output_padding": (2, 0), "dilation": (1, 2), "groups": 3},
            (3, 2, 3, 2),
        ),
        (
            {"stride": (2, 1), "padding": (0, 3), "output_padding": (0, 0), "dilation": (2, 1), "groups": 1},
            (3, 1, 2, 5),
        ),
        (
            {"stride": (2, 2), "padding": (2, 3), "output_padding": (1, 0), "dilation": (1, 1), "groups": 1},
            (3, 2, 2, 3),
        ),
        (
            {"stride": (2, 2), "padding": (1, 1), "output_padding": (0, 0), "dilation": (1, 1), "groups": 3},
            (3, 2, 4, 4),
        ),
        (
            {"stride": (3, 4), "padding": (0, 1), "output_padding": (2, 3), "dilation": (1, 1), "groups": 1},
            (3, 2, 2, 3),
        ),
        (
            {"stride": (3, 2), "padding": (4, 0), "output_padding": (1, 1), "dilation": (1, 1), "groups": 1},
            (3, 1, 5, 1),
        ),
    ],
)
@pytest.mark.parametrize("path", ["matmul", "conv2d"])
def test_conv_transpose2d_decomposes_into_a_convolution(attrs, w_shape, path, monkeypatch):
    """Strides (phases of small convolutions; zeros spread between the inputs with dilation),
    padding past the kernel (a crop), output padding, strides past the kernel (outputs no tap
    reaches), dilation and groups; by convolutions and by a matrix product and gathers (one
    group only)."""
    from ir.passes import rewrite

    monkeypatch.setattr(rewrite, "_gemm_first", lambda *args: path == "matmul")
    if attrs["groups"] > 1:
        path = "conv2d"
    g = Graph("g")
    x = g.add_input("x", TensorType(dtypes.float32, ("batch", 3, 5, 6)))
    w = g.add_input("w", TensorType(dtypes.float32, w_shape))
    (y,) = g.add_node("conv_transpose2d", [x, w], attrs)
    g.set_outputs([y])
    out = decompose(g)
    verify(out)
    ops = {n.op for n in out.nodes}
    assert "conv_transpose2d" not in ops and path in ops
    _same_results(g, out, batch=2)


@pytest.mark.parametrize(
    "stride, kernel, groups, whole",
    [
        ((2, 2), (2, 2), 1, True),  # a U-Net's upsampling
        ((3, 2), (3, 2), 1, True),
        ((2, 2), (4, 2), 1, False),  # phases of 2 taps read the input padded
        ((2, 2), (2, 2), 3, False),  # groups: one convolution per phase
    ],
)
def test_a_transposed_convolution_whose_phases_tile_the_output_is_one_convolution(
    stride, kernel, groups, whole
):
    """Kernel = stride, no padding: every phase reads the input unpadded with the same taps, so
    one convolution computes them all (its channels the phases') and a reshape interleaves them;
    no gathers."""
    g = Graph("g")
    x = g.add_input("x", TensorType(dtypes.float32, ("batch", 3, 5, 6)))
    w = g.add_input("w", TensorType(dtypes.float32, (3, 4 // groups * 2, *kernel)))
    attrs = {
        "stride": stride,
        "padding": (0, 0),
        "output_padding": (0, 0),
        "dilation": (1, 1),
        "groups": groups,
    }
    (y,) = g.add_node("conv_transpose2d", [x, w], attrs)
    g.set_outputs([y])
    out = decompose(g)
    verify(out)
    ops = [n.op for n in out.nodes]
    assert (ops.count("conv2d") == 1 and "gather" not in ops) == whole, ops
    _same_results(g, out, batch=2)


def test_conv_transpose2d_whose_taps_reach_no_output_decomposes_into_zeros():
    """Stride 4 past a 1x1 kernel with padding 1: every output phase that exists has no tap."""
    g = Graph("g")
    x = g.add_input("x", TensorType(dtypes.float32, ("batch", 2, 1, 1)))
    w = g.add_input("w", TensorType(dtypes.float32, (2, 2, 1, 1)))
    attrs = {"stride": (4, 4), "padding": (1, 1), "output_padding": (2, 3), "dilation": (1, 1), "groups": 2}
    (y,) = g.add_node("conv_transpose2d", [x, w], attrs)
    g.set_outputs([y])
    out = decompose(g)
    verify(out)
    assert {n.op for n in out.nodes} == {"expand", "reshape"}
    _same_results(g, out, batch=3)


@pytest.mark.parametrize(
    "positions, accumulate, rewritten",
    [
        ([1, 2], False, True),  # a write through x[:, 1:3]
        ([4, 0, 2], False, True),  # any order
        ([], False, True),  # nothing written: x itself
        ([1, 1], False, False),  # a repeated place: the last write wins, kept as index_put
        ([1, 5], False, False),  # out of range: index_put's error, kept
        ([1, 2], True, False),  # accumulating
    ],
)
def test_index_put_at_constant_positions_becomes_a_select(positions, accumulate, rewritten):
    """Writes through slices are index_puts at positions that fold to constants: as where and
    gather (kernels) where the positions are distinct and in range."""
    g = Graph("g")
    x = g.add_input("x", TensorType(dtypes.float32, ("batch", 5, 2)))
    v = g.add_input("v", TensorType(dtypes.float32, ("batch", len(positions), 2)))
    at = g.add_weight("at", np.array(positions, dtype=np.int64))
    attrs = {"positions": (False, True), "accumulate": accumulate}
    (y,) = g.add_node("index_put", [x, v, at], attrs)
    g.set_outputs([y])
    out = simplify(g)
    verify(out)
    assert ("index_put" not in {n.op for n in out.nodes}) == rewritten
    if max(positions, default=0) < 5:
        _same_results(g, out, batch=3)
