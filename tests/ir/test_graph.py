"""The graph IR: types, inference with symbolic dims, the text form, the verifier and the
reference interpreter."""

import itertools

import numpy as np
import pytest

from ir import dtypes
from ir.errors import InputError, IRError, ShapeError, VerifyError
from ir.graph import Graph
from ir.infer import infer, resolve_reshape, slice_length
from ir.interpreter import run
from ir.parser import parse_graph
from ir.types import Sizes, TensorType, derived_name, parse_type
from ir.verify import verify

F32 = dtypes.float32

LENET = """
graph lenet(%x: f32[batch,1,32,32]) weights(%c1.w: f32[6,1,5,5], %c1.b: f32[6], %fc.w: f32[10,1176], %fc.b: f32[10]) {
  %0: f32[batch,6,28,28] = conv2d[dilation=(1, 1), groups=1, padding=(0, 0), stride=(1, 1)](%x, %c1.w, %c1.b)  # conv1
  %1: f32[batch,6,28,28] = relu(%0)
  %2: f32[batch,6,14,14], %3: i64[batch,6,14,14] = max_pool2d[ceil_mode=False, dilation=(1, 1), kernel_size=(2, 2), padding=(0, 0), stride=(2, 2)](%1)
  %4: f32[batch,1176] = reshape[shape=(-1, 1176)](%2)
  %5: f32[batch,10] = linear(%4, %fc.w, %fc.b)  # fc
  return %5
}
""".strip()


def test_types_print_and_parse():
    t = TensorType(F32, ("batch", 3, 32, 32))
    assert str(t) == "f32[batch,3,32,32]" and parse_type("f32[batch,3,32,32]") == t
    assert parse_type("i64[]").shape == () and parse_type("bool[2]").dtype is dtypes.bool_
    with pytest.raises(IRError, match="bad tensor type"):
        parse_type("float[2]")
    with pytest.raises(IRError, match="invalid dim"):
        TensorType(F32, (-1,))


def test_text_form_round_trips_exactly():
    g = parse_graph(LENET)
    verify(g)
    assert str(g) == LENET
    assert str(parse_graph(str(g))) == LENET
    assert g.symbols() == {"batch"} and g.nodes[0].scope == "conv1"


def test_infinite_and_nan_attributes_round_trip():
    text = """graph g(%x: f32[n,n]) {
  %0: f32[n,n] = full[dtype='float32', shape=('n', 'n'), value=-inf]()
  %1: f32[n,n] = clamp[max=inf, min=(-inf, nan, -2.5, [+1])](%x)
  return %0
}"""
    g = parse_graph(text)
    assert g.nodes[0].attrs["value"] == -np.inf and np.isnan(g.nodes[1].attrs["min"][1])
    assert g.nodes[1].attrs["min"][2:] == (-2.5, [1])
    assert str(parse_graph(str(g))) == str(g)
    for bad in ("value=-'a'", "value=__import__('os')", "value=-inf.real"):
        with pytest.raises(IRError, match="is not a literal"):
            parse_graph(text.replace("value=-inf", bad))


def test_inference_with_symbolic_dims():
    x = TensorType(F32, ("batch", 16, 5, 5))
    assert infer("reshape", [x], {"shape": (-1, 400)})[0].shape == ("batch", 400)
    assert infer("reshape", [x], {"shape": ("batch", -1)})[0].shape == ("batch", 400)
    assert resolve_reshape(("n", 4), (2, "n", -1)) == (2, "n", 2)
    with pytest.raises(ShapeError, match="invalid for input"):
        resolve_reshape(("batch", 400), (-1, 7))
    with pytest.raises(ShapeError, match="product of symbols"):
        resolve_reshape(("a", "b"), (-1,))
    assert infer("add", [TensorType(F32, ("batch", 1)), TensorType(F32, (10,))], {})[0].shape == ("batch", 10)
    with pytest.raises(ShapeError, match="do not broadcast"):
        infer("add", [TensorType(F32, ("batch", 3)), TensorType(F32, (4, 3))], {})
    assert infer("lt", [x, x], {})[0].dtype is dtypes.bool_
    assert infer("sum", [TensorType(dtypes.int32, ("b", 3))], {"dims": (1,)})[0] == TensorType(
        dtypes.int64, ("b",)
    )
    mm = infer("matmul", [TensorType(F32, ("b", 2, 3)), TensorType(F32, (3, 4))], {})[0]
    assert mm.shape == ("b", 2, 4)
    conv = infer(
        "conv2d",
        [TensorType(F32, ("b", 1, "h", 8)), TensorType(F32, (2, 1, 3, 3)), None],
        {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1},
    )[0]
    assert conv.shape == ("b", 2, "h_minus_2", 6)


def _sliced(size, start, stop, step) -> Graph:
    g = Graph("g")
    x = g.add_input("x", TensorType(F32, (size, 2)))
    (y,) = g.add_node("slice", [x], {"dim": 0, "start": start, "stop": stop, "step": step})
    g.set_outputs([y])
    return g


@pytest.mark.parametrize("step", [1, 2, 3])
def test_slices_keep_what_python_keeps_of_fixed_and_symbolic_sizes(step):
    """Every start in -4..4 and stop in -4..4 or None. Of a fixed size: Python's count. Of a
    symbolic size: bounds from the two ends give a derived dim that is Python's count at every
    size; from one end, a fixed count, refused (InputError) only at sizes too short for it;
    start from the end and stop from the start is refused when the graph is built."""
    for start in range(-4, 5):
        for stop in [None, *range(-4, 5)]:
            for n in range(9):
                assert slice_length(n, start, stop, step) == len(range(n)[slice(start, stop, step)])
            try:
                out = slice_length("seq", start, stop, step)
            except ShapeError:
                assert start < 0 and stop is not None and stop >= 0
                continue
            g = _sliced("seq", start, stop, step)
            for n in range(9):
                data = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
                want = data[start:stop:step]
                if isinstance(out, str):
                    assert Sizes(seq=n)[out] == len(want)
                if isinstance(out, str) or n >= 4:
                    np.testing.assert_array_equal(run(g, [data])[0], want)
                else:
                    try:
                        got = run(g, [data])[0]
                    except InputError as e:
                        assert "needs 'seq' to be longer than" in str(e)
                        continue
                    np.testing.assert_array_equal(got, want)


def test_derived_dims_of_derived_dims_keep_their_sizes():
    """A derived dim of a derived dim (a pooling of a convolution of a slice...) merges into
    one where that keeps max(0, ceil((size + add) / step)) at every size."""
    for a0, s0, add, step in itertools.product(range(-4, 4), (1, 2, 3), range(-4, 4), (1, 2, 3)):
        inner = derived_name("n", a0, s0)
        outer = derived_name(inner, add, step)
        for n in range(20):
            size = max(0, -(-(n + a0) // s0))
            want = max(0, -(-(size + add) // step))
            assert Sizes(n=n)[outer] == want, (inner, outer, n)


def test_slices_to_a_symbolic_stop_and_derived_dims():
    """pe[:seq] of a longer table keeps seq rows (refused where seq is longer than the table);
    offsets of offsets merge; a derived dim's size follows its base."""
    assert slice_length(50, 0, "seq", 1) == "seq"
    assert slice_length(50, 2, "seq", 1) == "seq_minus_2"
    assert slice_length("seq_minus_1", 1, None, 2) == "seq_minus_2_by_2"
    assert slice_length("seq", 0, "seq", 2) == "seq_by_2"
    assert derived_name("seq_by_2", -1) == "seq_minus_2_by_2"
    assert derived_name("seq_minus_3", 1) == "seq_minus_3_plus_1"  # (seq_minus_2 at seq 1 is 0)
    assert Sizes(seq=5)["seq_by_2_minus_1"] == 2 and Sizes(seq=0)["seq_minus_3"] == 0
    with pytest.raises(KeyError):
        Sizes(seq=5)["other_minus_1"]
    for start, stop in [("seq", None), (-1, "seq")]:
        with pytest.raises(ShapeError):
            slice_length(50, start, stop, 1)
    with pytest.raises(ShapeError, match="count from different sizes"):
        slice_length("seq", 0, "len", 1)
    g = Graph("g")
    x = g.add_input("x", TensorType(F32, ("batch", "seq")))
    pe = g.add_weight("pe", np.arange(10, dtype=np.float32))
    (rows,) = g.add_node("slice", [pe], {"dim": 0, "start": 0, "stop": "seq", "step": 1})
    (y,) = g.add_node("add", [x, rows])
    g.set_outputs([y])
    data = np.zeros((2, 10), np.float32)
    np.testing.assert_array_equal(run(g, [data])[0], data + np.arange(10))
    with pytest.raises(InputError, match="its stop 'seq' is 11 here, past the 10 elements"):
        run(g, [np.zeros((2, 11), np.float32)])


@pytest.mark.parametrize(
    "positions, index_shapes",
    [
        ((True,), [(2, 3)]),  # an embedding lookup: (vocab, dim)[tokens]
        ((False, True), [(4,)]),
        ((True, True), [(2, 1), (3,)]),  # adjacent dims: the broadcast shape takes their place
        ((False, True, True), [(5,), (5,)]),
        ((True, False, True), [(2, 3), (3,)]),  # split by a slice: the broadcast shape goes first
    ],
)
def test_index_shapes_are_numpys(positions, index_shapes):
    """The `index` op's inferred shape is numpy's advanced indexing's, symbols kept."""
    shape = (6, 5, 4)
    x = np.zeros(shape, np.float32)
    indices = [np.zeros(s, np.int64) for s in index_shapes]
    key = iter(indices)
    want = x[tuple(next(key) if p else slice(None) for p in positions)].shape
    types = [TensorType(dtypes.int64, s) for s in index_shapes]
    (got,) = infer("index", [TensorType(F32, shape), *types], {"positions": positions})
    assert got == TensorType(F32, want)
    (symbolic,) = infer(
        "index", [TensorType(F32, ("v", 5, 4)), TensorType(dtypes.int64, ("b", "s"))], {"positions": (True,)}
    )
    assert symbolic.shape == ("b", "s", 5, 4)
    with pytest.raises(ShapeError, match="data-dependent"):
        infer("index", [TensorType(F32, shape), TensorType(dtypes.bool_, (6,))], {"positions": (True,)})


def test_interpreter_runs_lenet_for_any_batch():
    rng = np.random.default_rng(0)
    weights = {
        "c1.w": rng.normal(size=(6, 1, 5, 5)).astype(np.float32),
        "c1.b": rng.normal(size=6).astype(np.float32),
        "fc.w": rng.normal(size=(10, 1176)).astype(np.float32) * 0.03,
        "fc.b": np.zeros(10, np.float32),
    }
    g = parse_graph(LENET, weights)
    for batch in (1, 3):
        (out,) = run(g, [rng.normal(size=(batch, 1, 32, 32)).astype(np.float32)])
        assert out.shape == (batch, 10)
    # values: the same graph built by hand with numpy
    x = rng.normal(size=(2, 1, 32, 32)).astype(np.float32)
    win = np.lib.stride_tricks.sliding_window_view(x, (5, 5), axis=(2, 3))  # (2,1,28,28,5,5)
    c = np.einsum("nchwij,ocij->nohw", win, weights["c1.w"]) + weights["c1.b"][None, :, None, None]
    r = np.maximum(c, 0)
    p = r.reshape(2, 6, 14, 2, 14, 2).max((3, 5))
    ref = p.reshape(2, -1) @ weights["fc.w"].T + weights["fc.b"]
    np.testing.assert_allclose(run(g, {"x": x})[0], ref, rtol=1e-4, atol=1e-5)


def test_inputs_are_checked():
    g = parse_graph(LENET)
    with pytest.raises(InputError, match="expected dtype float32"):
        run(g, [np.zeros((1, 1, 32, 32), np.float64)])
    with pytest.raises(InputError, match=r"expected shape \['batch', 1, 32, 32\], got \[1, 1, 28, 28\]"):
        run(g, [np.zeros((1, 1, 28, 28), np.float32)])
    with pytest.raises(InputError, match="takes 1 inputs"):
        run(g, [])
    two = parse_graph("graph g(%a: f32[n], %b: f32[n]) {\n  %c: f32[n] = add(%a, %b)\n  return %c\n}")
    with pytest.raises(InputError, match="dim 'n' is 3 here but 2"):
        run(two, [np.zeros(2, np.float32), np.zeros(3, np.float32)])


def test_verifier_reports_broken_graphs():
    g = parse_graph(LENET)
    g.nodes[1].outputs[0].type = TensorType(F32, ("batch", 6, 27, 28))
    with pytest.raises(VerifyError, match="node 1 \\(relu\\): outputs typed"):
        verify(g)
    g = parse_graph(LENET)
    g.nodes[0], g.nodes[1] = g.nodes[1], g.nodes[0]
    with pytest.raises(VerifyError, match="not defined before use"):
        verify(g)
    g = parse_graph(LENET)
    g.nodes[3].attrs["bogus"] = 1
    with pytest.raises(VerifyError, match="unknown attributes \\['bogus'\\]"):
        verify(g)


def test_parser_errors_name_the_line():
    with pytest.raises(IRError, match="line 2: %y is declared f32\\[3\\] but relu gives f32\\[2\\]"):
        parse_graph("graph g(%x: f32[2]) {\n  %y: f32[3] = relu(%x)\n  return %y\n}")
    with pytest.raises(IRError, match="line 2: '%z' is not a defined value"):
        parse_graph("graph g(%x: f32[2]) {\n  %y: f32[2] = relu(%z)\n  return %y\n}")
    with pytest.raises(IRError, match="unknown op 'frobnicate'"):
        parse_graph("graph g(%x: f32[2]) {\n  %y: f32[2] = frobnicate(%x)\n  return %y\n}")
    with pytest.raises(IRError, match="defined twice"):
        g = Graph()
        g.add_input("x", TensorType(F32, (1,)))
        g.add_input("x", TensorType(F32, (1,)))


def test_inference_of_padding_sorting_linear_algebra_and_scatters():
    """Rules that keep symbols where the size cannot change, agree with the references on
    concrete shapes, and say why where a shape is not known before running."""
    x = TensorType(F32, ("batch", 3, 5))
    assert infer("pad", [x], {"pads": ((0, 0), (1, 2), (-1, 0)), "value": 0.0})[0].shape == ("batch", 6, 4)
    with pytest.raises(ShapeError, match="dim 0 of symbolic size 'batch' cannot be padded"):
        infer("pad", [x], {"pads": ((1, 0), (0, 0), (0, 0))})
    with pytest.raises(ShapeError, match="crop more than"):
        infer("pad", [x], {"pads": ((0, 0), (-2, -2), (0, 0))})
    values, indices = infer("sort", [x], {"dim": 1})
    assert values == x and indices == TensorType(dtypes.int64, x.shape)
    assert infer("topk", [x], {"k": 2, "dim": 1})[1] == TensorType(dtypes.int64, ("batch", 2, 5))
    with pytest.raises(ShapeError, match="k=4 is out of range"):
        infer("topk", [x], {"k": 4, "dim": 1})
    square = TensorType(F32, ("batch", 4, 4))
    assert infer("det", [square], {})[0].shape == ("batch",) and infer("inv", [square], {})[0] == square
    with pytest.raises(ShapeError, match="square matrices"):
        infer("inv", [x], {})
    u, s, vh = infer("svd", [x], {})
    assert (u.shape, s.shape, vh.shape) == (("batch", 3, 3), ("batch", 3), ("batch", 3, 5))
    assert infer("svd", [x], {"full_matrices": True})[2].shape == ("batch", 5, 5)
    with pytest.raises(ShapeError, match="not known before running"):
        infer("svd", [TensorType(F32, (3, "n"))], {})
    ct = infer(
        "conv_transpose2d",
        [TensorType(F32, ("batch", 4, 5, 6)), TensorType(F32, (4, 3, 3, 2))],
        {"stride": (2, 1), "padding": (1, 0), "output_padding": (1, 0), "dilation": (1, 2), "groups": 2},
    )[0]
    assert ct.shape == ("batch", 6, 10, 8)  # (5-1)*2 - 2 + 2 + 1 + 1; (6-1) + 2 + 1
    index = TensorType(dtypes.int64, ("batch", 3, 5))
    assert infer("scatter_add", [x, index, x], {"dim": 1})[0] == x
    assert infer("index_put", [x, TensorType(F32, ()), index], {"positions": (True,)})[0] == x
    with pytest.raises(ShapeError, match="a node holding one seed would draw the same numbers"):
        infer("normal", [], {"shape": (2,), "mean": 0.0, "std": 1.0, "dtype": "float32", "seed": 1})
    with pytest.raises(ShapeError, match="data-dependent shape"):
        infer("unique", [x], {})


def test_convolutions_and_poolings_of_symbolic_sizes_give_derived_dims():
    """At every size where the layer has an output, the derived dim's size is the concrete
    rule's; ceil_mode pooling of a symbolic size is refused."""
    for k, s, p, d in itertools.product((1, 2, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2)):
        conv = {"stride": (s, 1), "padding": (p, 0), "dilation": (d, 1), "groups": 1}
        w = TensorType(F32, (2, 3, k, 1))
        out = infer("conv2d", [TensorType(F32, ("n", 3, "h", 4)), w, None], conv)[0].shape[2]
        pool = {"kernel_size": (k, 1), "stride": (s, 1), "padding": (min(p, k // 2), 0), "dilation": (d, 1)}
        pooled = infer("max_pool2d", [TensorType(F32, ("n", 3, "h", 4))], {**pool, "ceil_mode": False})
        for h in range(1, 24):
            for got, op, attrs, args in (
                (out, "conv2d", conv, [w, None]),
                (pooled[0].shape[2], "max_pool2d", {**pool, "ceil_mode": False}, []),
            ):
                try:
                    want = infer(op, [TensorType(F32, (1, 3, h, 4)), *args], attrs)[0].shape[2]
                except IRError:  # (no output at this size)
                    continue
                if want > 0:
                    assert (Sizes(h=h)[got] if isinstance(got, str) else got) == want, (op, attrs, h)
    with pytest.raises(ShapeError, match="ceil_mode=True over the symbolic dim 'h'"):
        infer("max_pool2d", [TensorType(F32, ("n", 3, "h", 4))], {**pool, "ceil_mode": True})


def test_transposed_convolutions_of_symbolic_sizes_give_multiples():
    """At every size where the layer has an output, the derived dim (h_times_2 at stride 2)
    is the concrete rule's size."""
    for k, s, p, op, d in itertools.product((1, 2, 3, 4), (1, 2, 3), (0, 1), (0, 1), (1, 2)):
        if op >= max(s, d):
            continue
        attrs = {
            "stride": (s, 1),
            "padding": (p, 0),
            "output_padding": (op, 0),
            "dilation": (d, 1),
            "groups": 1,
        }
        w = TensorType(F32, (3, 2, k, 1))
        got = infer("conv_transpose2d", [TensorType(F32, ("n", 3, "h", 4)), w, None], attrs)[0].shape[2]
        for h in range(1, 12):
            try:
                want = infer("conv_transpose2d", [TensorType(F32, (1, 3, h, 4)), w, None], attrs)[0].shape[2]
            except IRError:
                continue
            assert Sizes(h=h)[got] == want, (attrs, k, h, got)
    attrs = {"stride": (2, 2), "padding": (0, 0), "output_padding": (0, 0), "dilation": (1, 1), "groups": 1}
    out = infer(
        "conv_transpose2d", [TensorType(F32, ("n", 3, "h", "w")), TensorType(F32, (3, 2, 2, 2)), None], attrs
    )
    assert out[0].shape == ("n", 2, "h_times_2", "w_times_2")


def test_multiples_merge_with_other_derived_dims_and_keep_their_sizes():
    """max(0, ceil((mul * size + add) / step)) of a derived dim merges where that keeps the
    size at every size (h_times_4 halved is h_times_2, h_times_2 halved is h; the half of h
    doubled stays h_by_2_times_2: one less than h where h is odd)."""
    for m0, a0, s0, mul, add, step in itertools.product(
        (1, 2, 4), range(-3, 3), (1, 2, 3), (1, 2, 3), range(-3, 3), (1, 2, 4)
    ):
        inner = derived_name("n", a0, s0, m0)
        outer = derived_name(inner, add, step, mul)
        for n in range(13):
            size = max(0, -(-(m0 * n + a0) // s0))
            assert Sizes(n=n)[outer] == max(0, -(-(mul * size + add) // step)), (inner, outer, n)
    assert derived_name("h_times_4", 0, 2) == "h_times_2" and derived_name("h_times_2", -1, 2) == "h"
    assert derived_name("h_by_2", 0, 1, 2) == "h_by_2_times_2"
    assert derived_name("h_minus_1", 0, 1, 3) == "h_times_3_minus_3"


def test_an_input_dim_that_is_a_multiple_binds_its_base():
    sizes = Sizes()
    sizes.bind("h_div_4_times_4", 12)
    assert sizes["h_div_4"] == 3 and sizes["h_div_4_times_2"] == 6
    with pytest.raises(ValueError, match="'h_div_4_times_4' takes multiples of 4, which 10 is not"):
        Sizes().bind("h_div_4_times_4", 10)
    with pytest.raises(ValueError, match="is 3 \\* n \\+ 1 \\(n = k\\), which 5 is not"):
        Sizes().bind("k_times_3_plus_1", 5)
    with pytest.raises(ValueError, match="does not say what 'h' is"):
        Sizes().bind("h_by_2", 3)
    with pytest.raises(ValueError, match="dim 'h' is 4 here but 3"):
        sizes.bind("h_times_2", 6)
        sizes.bind("h_times_3", 12)
    g = parse_graph(
        "graph g(%a: f32[n_times_2], %b: f32[n]) {\n  %c: f32[n,2] = reshape[shape=('n', 2)](%a)\n"
        "  %d: f32[n] = select[dim=1, index=0](%c)\n  %e: f32[n] = add(%d, %b)\n  return %e\n}"
    )
    np.testing.assert_array_equal(
        run(g, [np.arange(6.0, dtype=np.float32), np.ones(3, np.float32)])[0], [1, 3, 5]
    )
    with pytest.raises(
        InputError, match="input 'b' of shape \\[2\\] does not fit \\['n'\\]: dim 'n' is 2 here but 3"
    ):
        run(g, [np.arange(6.0, dtype=np.float32), np.ones(2, np.float32)])


def test_reshapes_count_a_multiple_of_a_symbol_as_the_symbol_and_its_factor():
    assert resolve_reshape(("n", "h", 2), ("n", -1)) == ("n", "h_times_2")
    assert resolve_reshape(("n", "h_times_2", 3), ("n", -1)) == ("n", "h_times_6")
    assert resolve_reshape(("h_times_4",), ("h", 2, -1)) == ("h", 2, 2)
    assert resolve_reshape(("h_minus_1", 3), (-1,)) == ("h_times_3_minus_3",)
    with pytest.raises(ShapeError):
        resolve_reshape(("h_times_2",), ("h", 3))
    with pytest.raises(ShapeError, match="product of symbols"):
        resolve_reshape(("h", "w"), (-1,))
