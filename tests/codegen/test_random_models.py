"""Random models through the whole compiler: convolutions, pools, transposes and flips,
reshapes, matmuls by weights, elementwise chains, reductions and softmax heads in random order
and sizes, each graph compiled once and run at several batch sizes (one artifact, the native
entry and its arena plan, forced parallel splits) against the reference interpreter; and run
again from the execution plan compiled into its library (`planned`, as the runtime loads it)."""

import numpy as np
from compiled import compare_cuda_with_interpreter
from hypothesis import given, settings
from hypothesis import strategies as st

import codegen.plan as plan
from codegen.executable import compile_graph
from codegen.plan import planned
from ir import dtypes
from ir.graph import Graph
from ir.interpreter import run
from ir.types import TensorType

UNARY = ["relu", "tanh", "sigmoid", "neg", "abs"]
BINARY = ["add", "mul", "maximum", "sub"]


@st.composite
def models(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    g = Graph("model")
    c, h = draw(st.integers(1, 4)), draw(st.integers(6, 12))
    x = g.add_input("x", TensorType(dtypes.float32, ("batch", c, h, h)))
    image = x
    for i in range(draw(st.integers(0, 2))):  # convolution blocks
        co, k = draw(st.integers(1, 8)), draw(st.sampled_from([1, 3] if h >= 3 else [1]))
        pad = draw(st.integers(0, k // 2))
        w = g.add_weight(f"conv{i}.w", rng.standard_normal((co, c, k, k)).astype(np.float32) * 0.3)
        inputs = [image, w]
        if draw(st.booleans()):
            inputs.append(g.add_weight(f"conv{i}.b", rng.standard_normal(co).astype(np.float32)))
        (image,) = g.add_node(
            "conv2d", inputs, {"stride": (1, 1), "padding": (pad, pad), "dilation": (1, 1), "groups": 1}
        )
        h = h + 2 * pad - k + 1
        c = co
        (image,) = g.add_node(draw(st.sampled_from(UNARY)), [image])
        if h >= 4 and draw(st.booleans()):
            attrs = {
                "kernel_size": (2, 2),
                "stride": (2, 2),
                "padding": (0, 0),
                "dilation": (1, 1),
                "ceil_mode": False,
            }
            image, _ = g.add_node("max_pool2d", [image], attrs)
            h //= 2
    if draw(st.booleans()):  # a transposed or mirrored image: read in place, stored to flatten
        move = draw(st.sampled_from([("permute", {"dims": (0, 1, 3, 2)}), ("flip", {"dims": (2, 3)})]))
        (image,) = g.add_node(move[0], [image], move[1])
        if draw(st.booleans()):
            (image,) = g.add_node(draw(st.sampled_from(UNARY)), [image])
    features = c * h * h
    (flat,) = g.add_node("reshape", [image], {"shape": ("batch", features)})
    hidden = flat
    for i in range(draw(st.integers(1, 3))):  # dense layers, some with a skip connection
        n = draw(st.sampled_from([features, 1, 7, 40, 70, 130]))
        w = g.add_weight(
            f"fc{i}.w", rng.standard_normal((features, n)).astype(np.float32) / np.sqrt(features)
        )
        previous = hidden
        if draw(st.booleans()):  # an operand computed first: the matmul's prologue, or an epilogue
            scale = g.add_weight(f"fc{i}.s", rng.standard_normal(features).astype(np.float32))
            (hidden,) = g.add_node(draw(st.sampled_from(UNARY)), [hidden])
            (hidden,) = g.add_node("mul", [hidden, scale])
        (hidden,) = g.add_node("matmul", [hidden, w])
        if draw(st.booleans()):
            b = g.add_weight(f"fc{i}.b", rng.standard_normal(n).astype(np.float32))
            (hidden,) = g.add_node(draw(st.sampled_from(BINARY)), [hidden, b])
        if draw(st.booleans()):
            (hidden,) = g.add_node(draw(st.sampled_from(UNARY)), [hidden])
        if n == features and draw(st.booleans()):
            (hidden,) = g.add_node("add", [hidden, previous])  # keeps the layer's input alive
        features = n
    if draw(st.booleans()):  # a softmax head: one row kernel
        (top,) = g.add_node("amax", [hidden], {"dims": (1,), "keepdim": True})
        (shifted,) = g.add_node("sub", [hidden, top])
        (e,) = g.add_node("exp", [shifted])
        (total,) = g.add_node("sum", [e], {"dims": (1,), "keepdim": True})
        (hidden,) = g.add_node("div", [e, total])
    outputs = [hidden]
    if draw(st.booleans()):
        op = draw(st.sampled_from(["sum", "mean", "amax"]))
        (total,) = g.add_node(op, [hidden], {"dims": (1,), "keepdim": True})
        (centered,) = g.add_node("sub", [hidden, total])
        outputs = [centered, total] if draw(st.booleans()) else [centered]
    if draw(st.booleans()):
        outputs.append(flat)  # a view of an intermediate as an output
    g.set_outputs(outputs)
    return g


@settings(max_examples=30, deadline=None)
@given(models(), st.booleans())
def test_random_models_match_the_interpreter(graph, split):
    saved = (plan.PARALLEL_MIN_POINTS, plan.MATMUL_PARALLEL_MIN_MACS)
    saved += (plan.MATVEC_PARALLEL_MIN_MACS, plan.CONV_PARALLEL_MIN_MACS, plan.workers)
    try:
        if split:  # every kernel that can be split is
            plan.PARALLEL_MIN_POINTS = plan.MATMUL_PARALLEL_MIN_MACS = 0
            plan.MATVEC_PARALLEL_MIN_MACS = plan.CONV_PARALLEL_MIN_MACS = 0
            plan.workers = lambda: 3
        exe = compile_graph(graph)
        again = planned(graph)  # (None where the graph does not run as one native call)
        if exe.library_key is not None:  # (its library is in the cache: a later load finds it)
            assert (again is None) == (exe.native is None)
        for batch in (1, 3, 8):
            x = np.random.default_rng(batch).standard_normal((batch, *graph.inputs[0].type.shape[1:]))
            x = x.astype(np.float32)
            want = run(graph, [x])
            for got in (exe.run([x]), again.run([x]) if again else want):
                for a, b in zip(got, want, strict=True):
                    assert a.shape == b.shape and a.dtype == b.dtype
                    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
            if batch == 3 and not split:  # the CUDA kernels too (once per graph: one emulation build)
                compare_cuda_with_interpreter(graph, [x], 1e-4, want)
    finally:
        (
            plan.PARALLEL_MIN_POINTS,
            plan.MATMUL_PARALLEL_MIN_MACS,
            plan.MATVEC_PARALLEL_MIN_MACS,
            plan.CONV_PARALLEL_MIN_MACS,
            plan.workers,
        ) = saved
