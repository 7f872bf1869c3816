"""Convolution and max-pool kernels against the reference interpreter: strides, padding,
dilation, groups (depthwise too), sizes past the register block, the reduction slices and the
pixel chunks, both float dtypes, symbolic batch sizes from one compilation, epilogues (bias,
activation, residual, per-channel and scalar operands), and pooling windows that leave the
input (padding, ceil mode), with NaN."""

import numpy as np
import pytest

import codegen.plan as plan
from codegen.executable import compile_graph
from codegen.kernel import Conv2d, ConvWeightGrad, Pool2d, PoolBackward, conv_extra_strides, format_expr
from codegen.schedule import KernelStep
from ir import dtypes
from ir.graph import Graph
from ir.interpreter import run
from ir.types import TensorType


def _close(got, want, depth, dtype):
    eps = np.finfo(dtype).eps
    tolerance = 8 * eps * max(depth, 1) ** 0.5 * max(1.0, float(np.abs(want).max(initial=0)))
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


def _conv_graph(c, h, w, co, kernel, stride, padding, dilation, groups, bias, dtype, after=()):
    """conv2d of x (batch, c, h, w) by a weight, then `after`: (op, operand shape or None)."""
    t = dtypes.from_name(dtype)
    rng = np.random.default_rng(c * 100 + co)
    g = Graph("conv")
    x = g.add_input("x", TensorType(t, ("batch", c, h, w)))
    weight = g.add_weight("w", rng.standard_normal((co, c // groups, *kernel)).astype(dtype))
    ins = [x, weight] + ([g.add_weight("bias", rng.standard_normal(co).astype(dtype))] if bias else [])
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    (y,) = g.add_node("conv2d", ins, attrs)
    for i, (op, shape) in enumerate(after):
        if shape is None:
            (y,) = g.add_node(op, [y])
        else:
            other = g.add_input(f"in{i}", TensorType(t, shape))
            (y,) = g.add_node(op, [y, other])
    g.set_outputs([y])
    return g


def _inputs(g, batch, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal(tuple(batch if d == "batch" else d for d in v.type.shape)).astype(v.type.dtype.np)
        for v in g.inputs
    ]


CONVS = [
    # c, h, w, co, kernel, stride, padding, dilation, groups, bias
    (1, 5, 5, 2, (3, 3), (1, 1), (0, 0), (1, 1), 1, True),
    (3, 8, 8, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, False),
    (2, 9, 7, 6, (3, 2), (2, 1), (1, 0), (1, 1), 1, True),
    (2, 11, 10, 3, (3, 3), (1, 2), (2, 1), (2, 2), 1, True),
    (4, 6, 6, 6, (3, 3), (1, 1), (1, 1), (1, 1), 2, True),
    (3, 7, 7, 3, (3, 3), (2, 2), (1, 1), (1, 1), 3, False),  # depthwise
    (20, 5, 5, 130, (1, 1), (1, 1), (0, 0), (1, 1), 1, True),  # rows past one cache block
    (30, 6, 6, 8, (3, 3), (1, 1), (0, 0), (1, 1), 1, True),  # K = 270: two reduction slices
    (2, 20, 20, 3, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),  # 400 pixels: two chunks
    (1, 32, 32, 6, (5, 5), (1, 1), (0, 0), (1, 1), 1, True),  # the LeNet's first layer
    # the direct path (stride 1 along the width, output rows of at most NR pixels)
    (3, 9, 23, 7, (3, 3), (2, 1), (0, 0), (1, 1), 1, True),  # rows of 16 + 5 pixels, stride 2 down
    (2, 12, 12, 8, (3, 2), (1, 1), (0, 0), (2, 2), 2, False),  # dilation, groups
    (5, 6, 20, 13, (1, 5), (1, 1), (0, 0), (1, 1), 1, True),  # one full vector a row; 6 + 6 + 1 channels
    (2, 10, 10, 6, (3, 3), (1, 1), (0, 0), (1, 1), 1, True),  # 7 output rows: a partial row block
    (6, 14, 14, 16, (5, 5), (1, 1), (0, 0), (1, 1), 1, True),  # the LeNet's second layer
    (1, 3, 70, 2, (3, 3), (1, 1), (0, 0), (1, 1), 1, True),  # rows of 68 pixels: packed columns
    (3, 7, 9, 5, (3, 5), (2, 1), (2, 1), (1, 2), 1, True),  # padding: a padded copy of each image
    # direct, rows wider than one block: in segments of lanes * vectors pixels
    (3, 9, 150, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),  # 150 = 64 + 64 + 22 (AVX-512)
    (2, 5, 130, 4, (3, 3), (1, 1), (0, 0), (1, 1), 1, False),  # 128 = two whole segments
    (4, 6, 90, 6, (3, 3), (2, 1), (1, 2), (1, 2), 2, True),  # dilation, groups, stride down
    # output channels along the vector lanes
    (32, 9, 9, 32, (3, 3), (2, 2), (1, 1), (1, 1), 2, True),  # stride 2, padding, groups of 16
    (4, 7, 7, 40, (3, 3), (1, 1), (2, 2), (2, 2), 1, True),  # 40 channels: whole and partial vectors
    (64, 6, 6, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),  # K = 576: two slices of K
]


def _path(case, dtype) -> str:
    """The path the kernel of `case` takes on this machine: direct, channels or packed."""
    from llvmlite import ir

    from codegen.host import vector_bits
    from codegen.llvm.render import _ConvEmitter

    exe = compile_graph(_conv_graph(*case, dtype))
    return _ConvEmitter(ir.Module(), exe.steps[0].kernel, vector_bits()).path()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CONVS, ids=lambda c: "c{}h{}w{}co{}k{}s{}p{}d{}g{}".format(*c[:9]))
def test_conv2d_matches_the_interpreter(case, dtype):
    c, h, w, co, kernel, stride, padding, dilation, groups, bias = case
    g = _conv_graph(*case, dtype)
    exe = compile_graph(g)
    assert isinstance(exe.steps[0].kernel, Conv2d)
    depth = c // groups * kernel[0] * kernel[1]
    for batch in (1, 3):
        inputs = _inputs(g, batch, seed=batch)
        _close(exe.run(inputs)[0], run(g, inputs)[0], depth, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_which_path_each_convolution_takes(dtype):
    from codegen.host import matmul_tile, vector_bits

    _, lanes, vectors = matmul_tile(dtypes.from_name(dtype), vector_bits())
    paths = set()
    for case in CONVS:
        c, h, w, co, kernel, stride, padding, dilation, groups, bias = case
        possible = {"packed"}
        if stride[1] == 1:  # (rows wider than lanes * vectors pixels in segments)
            possible.add("direct")
        if co // groups >= lanes:
            possible.add("channels")
        path = _path(case, dtype)
        assert path in possible and (path == "packed") == (possible == {"packed"}), (case, path)
        paths.add(path)
    if lanes * vectors >= 64:  # AVX-512: the cases above take every path
        assert paths == {"direct", "channels", "packed"}
    assert _path(CONVS[9], dtype) == "direct"  # the LeNet's first layer: 6 channels


def test_conv_extra_strides():
    out = ("batch", 4, 5, 6)
    assert conv_extra_strides((4, 1, 1), out) == (0, 1, 0)  # per channel
    assert conv_extra_strides((1, 4, 1, 1), out) == (0, 1, 0)
    assert conv_extra_strides((), out) == (0, 0, 0)
    assert conv_extra_strides(("batch", 4, 5, 6), out) == (120, 30, 1)  # a residual
    assert conv_extra_strides((5, 6), out) == (0, 0, 1)  # one value per pixel
    assert conv_extra_strides(("batch", 1, 1, 1), out) == (1, 0, 0)
    assert conv_extra_strides((5, 1), out) is None  # varies along rows only
    assert conv_extra_strides((1, 6), out) is None


def test_conv_epilogues_and_where_they_stop():
    after = [
        ("relu", None),
        ("add", ("batch", 6, 8, 8)),  # residual
        ("mul", (1, 6, 1, 1)),  # per-channel scale
        ("sub", ()),  # scalar
        ("add", (8, 1)),  # varies along rows only: a kernel of its own
    ]
    g = _conv_graph(3, 8, 8, 6, (3, 3), (1, 1), (1, 1), (1, 1), 1, True, "float32", after)
    exe = compile_graph(g)
    conv, rest = [s for s in exe.steps if isinstance(s, KernelStep)]
    text = "sub(mul(add(relu(add(acc, in0[i])), in1[i]), in2[i]), in3[i])"
    assert format_expr(conv.kernel.epilogue) == text
    assert conv.kernel.extra_strides == ((0, 1, 0), (384, 64, 1), (0, 1, 0), (0, 0, 0))
    assert conv.nodes == (0, 1, 2, 3, 4) and rest.nodes == (5,)
    for batch in (1, 2):
        inputs = _inputs(g, batch, seed=7)
        _close(exe.run(inputs)[0], run(g, inputs)[0], 27, "float32")


def test_direct_conv_epilogues():
    after = [("relu", None), ("add", ("batch", 6, 6, 6)), ("mul", (1, 6, 1, 1)), ("sub", ())]
    case = (3, 8, 8, 6, (3, 3), (1, 1), (0, 0), (1, 1), 1, True)
    assert _path(case, "float64") == "direct"
    g = _conv_graph(*case, "float64", after)
    exe = compile_graph(g)
    assert len(exe.steps) == 1
    for batch in (1, 4):
        inputs = _inputs(g, batch, seed=3)
        _close(exe.run(inputs)[0], run(g, inputs)[0], 27, "float64")


def test_channels_conv_epilogues(monkeypatch):
    monkeypatch.setattr(plan, "CONV_PARALLEL_MIN_MACS", 0)
    monkeypatch.setattr(plan, "workers", lambda: 3)
    after = [("relu", None), ("add", ("batch", 16, 5, 5)), ("mul", (1, 16, 1, 1)), ("sub", (5, 5))]
    case = (8, 9, 9, 16, (3, 3), (2, 2), (1, 1), (1, 1), 1, True)
    assert _path(case, "float32") == "channels"
    g = _conv_graph(*case, "float32", after)
    exe = compile_graph(g)
    assert len(exe.steps) == 1
    for batch in (1, 2, 7):
        inputs = _inputs(g, batch, seed=batch)
        _close(exe.run(inputs)[0], run(g, inputs)[0], 72, "float32")


def test_conv_split_over_images(monkeypatch):
    monkeypatch.setattr(plan, "CONV_PARALLEL_MIN_MACS", 0)
    monkeypatch.setattr(plan, "workers", lambda: 3)
    g = _conv_graph(3, 9, 9, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1, True, "float32", [("relu", None)])
    exe = compile_graph(g)
    for batch in (1, 2, 7):
        inputs = _inputs(g, batch, seed=batch)
        _close(exe.run(inputs)[0], run(g, inputs)[0], 27, "float32")


PIECED = [
    # layers whose images split into Conv2d.pieces units (4M multiply-adds or more an image)
    (16, 64, 128, 32, (3, 3), (1, 2), (1, 1), (1, 1), 1, True),  # channels (float32), padding
    (16, 66, 61, 12, (3, 3), (1, 1), (0, 0), (1, 1), 1, True),  # direct (float32): rows of 59
    (8, 101, 100, 16, (3, 3), (1, 1), (0, 0), (1, 1), 2, False),  # direct: rows of 98 in 2 segments
    (8, 130, 101, 12, (3, 3), (1, 2), (1, 1), (1, 1), 1, True),  # packed: stride 2 along the width
    (12, 70, 70, 24, (3, 3), (2, 1), (2, 1), (2, 1), 1, True),  # strides, dilation, padding
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", PIECED, ids=lambda c: "c{}h{}w{}co{}".format(*c[:4]))
def test_conv_splits_each_large_image_into_pieces(case, dtype, monkeypatch):
    """One image's output pixels split over the cores: units of (image, piece) in calls that
    start and end inside an image (the padded copy made again at a call's first unit)."""
    monkeypatch.setattr(plan, "CONV_PARALLEL_MIN_MACS", 0)
    monkeypatch.setattr(plan, "workers", lambda: 3)
    g = _conv_graph(*case, dtype, [("relu", None)])
    exe = compile_graph(g)
    assert exe.steps[0].kernel.pieces > 1
    depth = case[0] // case[8] * 9
    for batch in (1, 2):
        inputs = _inputs(g, batch, seed=batch)
        _close(exe.run(inputs)[0], run(g, inputs)[0], depth, dtype)


def test_the_pieced_layers_take_every_path():
    paths = {_path(case, "float32") for case in PIECED}
    from codegen.host import matmul_tile, vector_bits

    _, lanes, vectors = matmul_tile(dtypes.float32, vector_bits())
    if lanes * vectors >= 64:  # AVX-512
        assert paths == {"direct", "channels", "packed"}


def _weight_grad_graph(c, h, w, co, kernel, padding, dilation, groups, dtype, stride=(1, 1)):
    t = dtypes.from_name(dtype)
    oh, ow = (
        (size + 2 * p - d * (k - 1) - 1) // s + 1
        for size, k, s, p, d in zip((h, w), kernel, stride, padding, dilation, strict=True)
    )
    g = Graph("weight_grad")
    x = g.add_input("x", TensorType(t, ("batch", c, h, w)))
    grad = g.add_input("g", TensorType(t, ("batch", co, oh, ow)))
    attrs = {
        "weight_shape": (co, c // groups, *kernel),
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
    }
    (dw,) = g.add_node("conv2d_weight_grad", [x, grad], attrs)
    g.set_outputs([dw])
    return g


WEIGHT_GRADS = [
    # c, h, w, co, kernel, padding, dilation, groups
    (3, 32, 32, 6, (5, 5), (0, 0), (1, 1), 1),  # the LeNet's layers: rows of 28 pixels (two chunks)
    (6, 14, 14, 16, (5, 5), (0, 0), (1, 1), 1),  # K = 150: blocks of 6 taps
    (1, 5, 5, 2, (3, 3), (0, 0), (1, 1), 1),  # K = 9: blocks of 3 taps, one channel block
    (7, 9, 11, 9, (1, 1), (0, 0), (1, 1), 1),  # K = 7: one tap a block; a partial channel block
    (4, 8, 40, 6, (3, 2), (1, 2), (2, 1), 2),  # padding, dilation, groups; rows of 40 pixels
    (3, 6, 6, 3, (3, 3), (1, 1), (1, 1), 3),  # depthwise
    (2, 7, 7, 5, (7, 7), (3, 3), (1, 1), 1),  # K = 98: a window wider than a chunk's tail
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", WEIGHT_GRADS, ids=lambda c: "c{}h{}w{}co{}k{}p{}d{}g{}".format(*c))
def test_conv_weight_grad_matches_the_interpreter(case, dtype):
    c, h, w, co, kernel, padding, dilation, groups = case
    g = _weight_grad_graph(*case, dtype)
    exe = compile_graph(g)
    assert isinstance(exe.steps[0].kernel, ConvWeightGrad) and exe.native is not None
    for batch in (0, 1, 3):
        inputs = _inputs(g, batch, seed=batch)
        depth = batch * int(np.prod(inputs[1].shape[2:]))
        _close(exe.run(inputs)[0], run(g, inputs)[0], depth, dtype)


def test_conv_weight_grad_split_over_output_channels(monkeypatch):
    monkeypatch.setattr(plan, "CONV_PARALLEL_MIN_MACS", 0)
    monkeypatch.setattr(plan, "workers", lambda: 3)
    g = _weight_grad_graph(4, 9, 9, 10, (3, 3), (1, 1), (1, 1), 2, "float32")
    exe = compile_graph(g)
    native = exe.native
    for batch in (1, 2, 5):
        inputs = _inputs(g, batch, seed=batch)
        want = run(g, inputs)[0]
        exe.native = native
        _close(exe.run(inputs)[0], want, batch * 81, "float32")  # the whole-graph entry
        exe.native = None
        _close(exe.run(inputs)[0], want, batch * 81, "float32")  # the step-by-step runner


def test_strided_weight_grad_stays_on_the_interpreter():
    g = _weight_grad_graph(2, 9, 9, 3, (3, 3), (0, 0), (1, 1), 1, "float32", stride=(2, 2))
    exe = compile_graph(g)
    assert not any(isinstance(getattr(s, "kernel", None), ConvWeightGrad) for s in exe.steps)
    inputs = _inputs(g, 2)
    _close(exe.run(inputs)[0], run(g, inputs)[0], 32, "float32")


def _pool_graph(c, h, w, kernel, stride, padding, dilation, ceil_mode, dtype, return_indices=False):
    g = Graph("pool")
    x = g.add_input("x", TensorType(dtypes.from_name(dtype), ("batch", c, h, w)))
    attrs = {
        "kernel_size": kernel,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "ceil_mode": ceil_mode,
    }
    values, indices = g.add_node("max_pool2d", [x], attrs)
    g.set_outputs([values, indices] if return_indices else [values])
    return g


POOLS = [
    # c, h, w, kernel, stride, padding, dilation, ceil_mode
    (6, 28, 28, (2, 2), (2, 2), (0, 0), (1, 1), False),
    (3, 9, 7, (3, 3), (2, 2), (1, 1), (1, 1), False),
    (2, 10, 11, (3, 2), (1, 2), (1, 0), (2, 1), False),
    (2, 7, 7, (2, 2), (2, 2), (0, 0), (1, 1), True),  # the last window hangs over the edge
    (1, 8, 9, (3, 3), (3, 3), (1, 1), (1, 1), True),
    # windows two columns wide at a stride of two: indices a vector of pixels at a time
    (3, 6, 41, (2, 2), (2, 2), (0, 0), (1, 1), False),  # 20 pixels a row: a vector and a tail
    (2, 9, 36, (3, 2), (2, 2), (0, 0), (2, 1), False),  # three window rows, dilated, overlapping
    (2, 4, 7, (2, 2), (2, 2), (0, 0), (1, 1), True),  # ceil mode: the last window leaves the row
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", POOLS, ids=lambda c: "c{}h{}w{}k{}s{}p{}d{}ceil{}".format(*c))
def test_max_pool_matches_the_interpreter(case, dtype):
    g = _pool_graph(*case, dtype)
    exe = compile_graph(g)
    assert isinstance(exe.steps[0].kernel, Pool2d)
    for batch in (1, 3):
        inputs = _inputs(g, batch, seed=batch)
        inputs[0].flat[:: 7 + batch] = np.nan  # NaN wins its windows, as in PyTorch
        got, want = exe.run(inputs)[0], run(g, inputs)[0]
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", POOLS, ids=lambda c: "c{}h{}w{}k{}s{}p{}d{}ceil{}".format(*c))
def test_max_pool_indices_match_the_interpreter(case, dtype):
    g = _pool_graph(*case, dtype, return_indices=True)
    exe = compile_graph(g)
    kinds = [(type(s.kernel), s.kernel.indices) for s in exe.steps]
    assert kinds == [(Pool2d, False), (Pool2d, True)] and exe.native is not None
    for batch in (1, 3):
        inputs = _inputs(g, batch, seed=batch)
        inputs[0][0, 0, :2, :2] = 1.0  # ties: the first wins
        inputs[0][0, -1, :, -4:] = 2.0  # ties in the last columns (a vector's tail)
        inputs[0][-1, -1, 1, :3] = np.nan  # a NaN wins, the first of them
        inputs[0][-1, 0, :2, -3:] = np.nan
        for got, want in zip(exe.run(inputs), run(g, inputs), strict=True):
            np.testing.assert_array_equal(got, want)


def _pool_backward_graph(c, h, w, kernel, stride, padding, dilation, ceil_mode, dtype):
    t = dtypes.from_name(dtype)
    g = Graph("pool_backward")
    x = g.add_input("x", TensorType(t, ("batch", c, h, w)))
    attrs = {"kernel_size": kernel, "stride": stride, "padding": padding, "dilation": dilation}
    _, indices = g.add_node("max_pool2d", [x], {**attrs, "ceil_mode": ceil_mode})
    grad = g.add_input("g", TensorType(t, indices.type.shape))
    overlapping = kernel[0] > stride[0] or kernel[1] > stride[1]
    (dx,) = g.add_node(
        "max_pool2d_backward", [grad, indices], {"height": h, "width": w, "overlapping": overlapping}
    )
    g.set_outputs([dx])
    return g


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", POOLS, ids=lambda c: "c{}h{}w{}k{}s{}p{}d{}ceil{}".format(*c))
def test_max_pool_backward_matches_the_interpreter(case, dtype):
    g = _pool_backward_graph(*case, dtype)
    exe = compile_graph(g)
    assert [type(s.kernel) for s in exe.steps] == [Pool2d, PoolBackward] and exe.native is not None
    for batch in (1, 3):
        inputs = _inputs(g, batch, seed=batch)
        want = run(g, inputs)[0]
        native = exe.native
        _close(exe.run(inputs)[0], want, 9, dtype)  # (overlapping windows sum)
        exe.native = None  # the step-by-step runner
        _close(exe.run(inputs)[0], want, 9, dtype)
        exe.native = native


def test_channels_path_weights_are_transposed_once_or_per_call():
    """A weight is transposed for the channels path once, when the graph is compiled; a weight
    the graph computes (here an input) is transposed by the kernel on every call."""
    case = (8, 9, 9, 32, (3, 3), (2, 2), (1, 1), (1, 1), 2, True)  # 16 channels a group
    g = _conv_graph(*case, "float32")
    exe = compile_graph(g)
    assert _path(case, "float32") == "channels" and "w packed" in str(exe)
    h = Graph("conv")
    x = h.add_input("x", TensorType(dtypes.float32, ("batch", 8, 9, 9)))
    w = h.add_input("w", TensorType(dtypes.float32, (32, 4, 3, 3)))
    attrs = {"stride": (2, 2), "padding": (1, 1), "dilation": (1, 1), "groups": 2}
    (y,) = h.add_node("conv2d", [x, w], attrs)
    h.set_outputs([y])
    exe2 = compile_graph(h)
    assert isinstance(exe2.steps[0].kernel, Conv2d) and "w packed" not in str(exe2)
    for batch in (1, 3):
        inputs = _inputs(g, batch, seed=batch)
        _close(exe.run(inputs)[0], run(g, inputs)[0], 36, "float32")
        weight = g.weight_data["w"]
        _close(exe2.run([inputs[0], weight])[0], run(h, [inputs[0], weight])[0], 36, "float32")
