"""Values that depend only on sizes (positions, causal masks, zeros of the batch's size) are
computed once per set of sizes, outside the compiled graph, which reads them as inputs and so
runs as one native call (codegen.sized)."""

import numpy as np
import pytest

import codegen.sized as sized
from codegen.executable import compile_graph
from codegen.plan import PlannedGraph, planned
from ir.errors import InputError
from ir.interpreter import run
from ir.parser import parse_graph

# a transformer's inputs: token embeddings plus positional embeddings at arange(seq), and
# attention scores plus a causal mask; a bias expanded to the batch (a view of a weight)
TEXT = """
graph g(%x: f32[batch,seq,4], %scores: f32[batch,seq,seq]) weights(%pos: f32[16,4], %bias: f32[4]) {
  %0: i64[seq] = arange[dtype='int64', end='seq', start=0, step=1]()
  %1: f32[seq,4] = index[positions=(True, False)](%pos, %0)
  %2: f32[batch,seq,4] = add(%x, %1)
  %3: f32[batch,4] = full[dtype='float32', shape=('batch', 4), value=0.5]()
  %4: f32[batch,4] = expand[shape=('batch', 4)](%bias)
  %5: f32[batch,1,4] = unsqueeze[dim=1](%3)
  %6: f32[batch,1,4] = unsqueeze[dim=1](%4)
  %7: f32[batch,seq,4] = mul(%2, %5)
  %12: f32[batch,seq,4] = add(%7, %6)
  %8: f32[seq,seq] = full[dtype='float32', shape=('seq', 'seq'), value=-inf]()
  %9: f32[seq,seq] = triu[diagonal=1](%8)
  %10: f32[batch,seq,seq] = add(%scores, %9)
  %11: f32[batch,seq,seq] = tanh(%10)
  return %12, %11
}"""


def _graph():
    g = parse_graph(TEXT)
    rng = np.random.default_rng(0)
    g.weight_data["pos"] = rng.standard_normal((16, 4)).astype(np.float32)
    g.weight_data["bias"] = rng.standard_normal(4).astype(np.float32)
    return g


def _inputs(batch, seq):
    rng = np.random.default_rng(batch * 100 + seq)
    return [
        rng.standard_normal((batch, seq, 4)).astype(np.float32),
        rng.standard_normal((batch, seq, seq)).astype(np.float32),
    ]


def test_size_dependent_values_become_inputs_and_the_graph_runs_natively():
    g = _graph()
    exe = compile_graph(g)
    assert exe.sized is not None and exe.native is not None
    # positions gathered from the weight, the zeros of the batch and the causal mask; the
    # expanded bias stays a view the kernel reads
    extra = exe.graph.inputs[2:]
    assert [v.name for v in extra] == exe.sized.names and all(n.startswith("sized.") for n in exe.sized.names)
    assert sorted(str(v.type) for v in extra) == ["f32[batch,1,4]", "f32[seq,4]", "f32[seq,seq]"]
    ops = [n.op for n in exe.graph.nodes]
    assert not {"arange", "full", "triu", "index", "gather"} & set(ops)
    assert "bias" in exe.graph.weights
    for batch, seq in [(2, 5), (1, 1), (3, 16), (2, 5)]:
        arrays = _inputs(batch, seq)
        for got, want in zip(exe.run(arrays), run(g, arrays), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    named = dict(zip(["x", "scores"], _inputs(2, 3), strict=True))
    for got, want in zip(exe.run(named), run(g, named), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_the_values_are_computed_once_per_set_of_sizes(monkeypatch):
    exe = compile_graph(_graph())
    computed = []
    real = sized.run_node
    monkeypatch.setattr(
        sized, "run_node", lambda node, *a, **k: (computed.append(node.op), real(node, *a, **k))
    )
    exe.run(_inputs(2, 5))
    first = len(computed)
    assert first > 0
    exe.run(_inputs(2, 5))
    exe.run(_inputs(2, 5))
    assert len(computed) == first  # the same sizes: kept
    exe.run(_inputs(3, 5))
    assert len(computed) == 2 * first  # another batch size
    a = exe.sized.values({"batch": 3, "seq": 5})
    assert all(not v.flags.writeable for v in a) and exe.sized.values({"batch": 3, "seq": 5}) is a
    for seq in range(1, sized.KEEP + 3):  # only the last few sets are kept
        exe.sized.values({"batch": 1, "seq": seq})
    assert len(exe.sized._kept) == sized.KEEP


def test_inputs_are_checked_against_the_graphs_own_inputs():
    exe = compile_graph(_graph())
    x, scores = _inputs(2, 5)
    with pytest.raises(InputError, match=r"takes 2 inputs \(x, scores\), got 1"):
        exe.run([x])
    with pytest.raises(InputError, match="input 'scores': expected dtype float32, got float64"):
        exe.run([x, scores.astype(np.float64)])
    with pytest.raises(InputError, match="dim 'seq' is 4 here but 5"):
        exe.run([x, scores[:, :4, :4]])


def test_a_graph_whose_output_depends_on_no_input_stays_whole():
    g = parse_graph("""
graph g(%x: f32[n]) {
  %0: i64[n] = arange[dtype='int64', end='n', start=0, step=1]()
  %1: f32[n] = exp(%x)
  return %0, %1
}""")
    exe = compile_graph(g)
    assert exe.sized is None
    x = np.zeros(3, np.float32)
    assert exe.run([x])[0].tolist() == [0, 1, 2]


def test_a_planned_graph_takes_the_values_too():
    g = _graph()
    compile_graph(g)  # (its library, with the plan, joins the cache)
    exe = planned(g)
    assert isinstance(exe, PlannedGraph) and exe.sized is not None
    for batch, seq in [(2, 5), (4, 9), (0, 3)]:  # (an empty batch takes the step-by-step path)
        arrays = _inputs(batch, seq)
        for got, want in zip(exe.run(arrays), run(g, arrays), strict=True):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_on_a_gpu_the_values_are_kept_on_the_device():
    """The CUDA path splits the same values off and keeps them in device memory (here the CPU
    emulation of CUDA), converted once per set of sizes."""
    from codegen.cuda import emulate, nvrtc
    from codegen.cuda.executable import CudaGraph

    if emulate.compiler() is None or not nvrtc.available():
        pytest.skip("needs a C++ compiler (g++) and NVRTC")
    g = _graph()
    exe = CudaGraph(g, emulate.EmulatedDevice())
    assert exe.sized is not None and exe.sized.convert is not None
    moved = []
    convert = exe.sized.convert
    exe.sized.convert = lambda a: moved.append(convert(a)) or moved[-1]
    assert not {"arange", "full", "triu"} & {s.node.op for s in exe.steps if not hasattr(s, "kernel")}
    for batch, seq in [(2, 5), (3, 16), (2, 5)]:
        arrays = _inputs(batch, seq)
        for got, want in zip(exe.run(arrays), run(g, arrays), strict=True):
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)
    assert len(moved) == 2 * len(exe.sized.names)  # two sets of sizes, each converted once
    assert all(any(v is m for m in moved) for v in exe.sized.values({"batch": 2, "seq": 5}))
