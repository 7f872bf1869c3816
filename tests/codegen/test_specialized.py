"""Graphs whose convolutions and poolings read symbolic spatial dims: compiled once per size of
those (the batch kept symbolic), each size's code reused, results equal to the reference
interpreter's."""

import numpy as np
import pytest

from codegen import ready
from codegen.executable import CompiledGraph
from codegen.specialized import PerSize, fixed_symbols
from ir.errors import InputError, ShapeError
from ir.interpreter import run
from ir.parser import parse_graph
from ir.passes import specialize

NET = """
graph net(%x: f32[batch,3,h,w], %t: f32[batch,5]) weights(%c1: f32[4,3,3,3], %c2: f32[6,4,3,3]) {
  %0: f32[batch,4,h,w] = conv2d[stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1](%c1, _)
  %1: f32[batch,4,h,w] = relu(%0)
  %2: f32[batch,4,h_minus_1_by_2,w_minus_1_by_2], %3: i64[batch,4,h_minus_1_by_2,w_minus_1_by_2] = max_pool2d[kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=False](%1)
  %4: f32[batch,6,h_minus_5_by_4,w_minus_5_by_4] = conv2d[stride=(2, 2), padding=(0, 0), dilation=(1, 1), groups=1](%2, %c2, _)
  %5: f32[batch,6] = mean[dims=(2, 3), keepdim=False](%4)
  %6: f32[batch,5] = tanh(%t)
  return %5, %6
}"""  # noqa: E501


def _net():
    rng = np.random.default_rng(0)
    g = parse_graph(NET.replace("(%c1, _)", "(%x, %c1, _)"))
    data = {n: rng.standard_normal(w.shape).astype(np.float32) for n, w in g.weight_data.items()}
    return parse_graph(NET.replace("(%c1, _)", "(%x, %c1, _)"), data)


def _inputs(batch, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal((batch, 3, h, w)).astype(np.float32),
        rng.standard_normal((batch, 5)).astype(np.float32),
    ]


def test_the_spatial_symbols_are_fixed_and_the_batch_is_not():
    g = _net()
    assert fixed_symbols(g) == ("h", "w")
    assert fixed_symbols(specialize(g, {"h": 9, "w": 8}, partial=True)) == ()
    one = specialize(g, {"h": 9, "w": 8}, partial=True)
    assert [str(v.type) for v in one.inputs] == ["f32[batch,3,9,8]", "f32[batch,5]"]
    assert (
        str(one.outputs[0].type) == "f32[batch,6]" and str(one.nodes[2].outputs[0].type) == "f32[batch,4,4,4]"
    )
    with pytest.raises(InputError):
        run(one, _inputs(1, 10, 8))


def test_each_size_is_compiled_once_and_matches_the_interpreter():
    g = _net()
    exe = ready(g, "llvm")
    assert isinstance(exe, PerSize)
    for batch, h, w in [(2, 9, 8), (1, 16, 16), (3, 9, 8), (1, 6, 7)]:
        arrays = _inputs(batch, h, w, seed=h * w + batch)
        for got, want in zip(exe.run(arrays), run(g, arrays), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert [k for k in exe._made] == [(16, 16), (9, 8), (6, 7)]  # least recently used first
    with pytest.raises(ShapeError, match=r"for inputs with \{'h': 4, 'w': 8\}: spatial size 2 .* kernel 3"):
        exe.run(_inputs(1, 4, 8))  # (the second convolution's input is 2 x 4)
    first = exe.for_sizes({"batch": 7, "h": 9, "w": 8})
    assert exe.for_sizes({"batch": 1, "h": 9, "w": 8}) is first  # the batch size needs no new code
    assert all(
        not any(isinstance(d, str) and d != "batch" for v in e.graph.inputs for d in v.type.shape)
        for e in exe._made.values()
    )


def test_the_least_recently_used_sizes_are_dropped():
    made = []
    exe = PerSize(_net(), ("h", "w"), lambda g: made.append(g) or CompiledGraph(g), keep=2)
    for h in (6, 7, 6, 8, 6):
        exe.run(_inputs(1, h, 6))
    assert len(made) == 3 and list(exe._made) == [(8, 6), (6, 6)]
