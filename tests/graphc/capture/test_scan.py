"""graphc.scan: a loop carrying a state, eagerly (autograd follows it) and under graphc.script as
one `scan` node whose body runs once per step, so recurrent models take sequences of any length
on every backend and from a module file."""

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import runtime
from codegen.cuda.emulate import EmulatedDevice
from graphc.autograd import gradcheck
from graphc.capture import TracingError
from ir import dtypes
from ir.errors import ShapeError
from ir.graph import Graph
from ir.interpreter import run
from ir.parser import parse_graph
from ir.types import TensorType

F32 = dtypes.float32


def _running(c, x):
    s = c + x
    return s, s * 1.0


def test_eager_scan_follows_pytorch_scan():
    """The values torch 2.13's prototype scan gives: y_t at position t also in reverse; xs
    scanned and ys stacked along `dim`."""
    xs = graphc.arange(1.0, 5.0).reshape(4, 1)
    final, ys = graphc.scan(_running, graphc.zeros(1), xs, reverse=True)
    assert final.tolist() == [10.0] and ys.tolist() == [[10.0], [9.0], [7.0], [4.0]]
    final, ys = graphc.scan(_running, graphc.zeros(2), graphc.arange(1.0, 9.0).reshape(2, 4), dim=1)
    assert final.tolist() == [10.0, 26.0]
    assert ys.tolist() == [[1.0, 3.0, 6.0, 10.0], [5.0, 11.0, 18.0, 26.0]]


def test_eager_scan_is_a_loop_with_gradients():
    w = graphc.randn(3, 3, dtype=graphc.float64, requires_grad=True)

    def f(h0, xs):
        def cell(h, x):
            h = graphc.tanh(x @ w + h)
            return h, h.sum(-1)

        h, sums = graphc.scan(cell, h0, xs)
        return h.sum() + (sums * sums).sum()

    h0 = graphc.randn(2, 3, dtype=graphc.float64, requires_grad=True)
    xs = graphc.randn(4, 2, 3, dtype=graphc.float64, requires_grad=True)
    h, total = h0.detach(), 0.0
    for t in range(4):  # the loop it stands for
        h = graphc.tanh(xs[t].detach() @ w.detach() + h)
        total = total + (h.sum(-1) ** 2).sum()
    np.testing.assert_allclose(f(h0, xs).item(), (h.sum() + total).item(), rtol=1e-12)
    assert gradcheck(lambda h0, xs: f(h0, xs), (h0, xs))


def test_scan_takes_tuples_and_lists_and_checks_what_it_is_given():
    xs = (graphc.ones(3, 2), graphc.arange(6.0).reshape(3, 2))
    (a, b), ys = graphc.scan(
        lambda c, x: ((c[0] + x[0], c[1] * 2), [x[1], -x[1]]), (graphc.zeros(2),) * 2, xs
    )
    assert a.tolist() == [3.0, 3.0] and isinstance(ys, list) and ys[1].shape == (3, 2)
    final, nothing = graphc.scan(lambda c, x: (c + x, ()), graphc.zeros(2), graphc.ones(3, 2))
    assert final.tolist() == [3.0, 3.0] and nothing == ()
    with pytest.raises(ValueError, match="a carry like init"):
        graphc.scan(lambda c, x: (c.sum(), c), graphc.zeros(2), graphc.ones(3, 2))
    with pytest.raises(TypeError, match=r"must return \(next carry, output\)"):
        graphc.scan(lambda c, x: c + x, graphc.zeros(2), graphc.ones(3, 2))
    with pytest.raises(ValueError, match="one length along dim 0"):
        graphc.scan(_running, graphc.zeros(2), (graphc.ones(3, 2), graphc.ones(4, 2)))
    with pytest.raises(ValueError, match="no steps"):
        graphc.scan(_running, graphc.zeros(2), graphc.ones(0, 2))
    with pytest.raises(TypeError, match="element 0 must be a tensor"):
        graphc.scan(_running, (1.0,), graphc.ones(3, 2))


def _recurrence(x, h0, gates):
    """Two sequences (x and its flip), a tensor of the function the body reads (`scale`), two
    carries, two outputs per step, run from the last step."""
    scale = x.abs().mean(0) + 1.0

    def step(carry, xt):
        h, count = carry
        h = graphc.tanh(xt[0] @ gates + h * scale) + 0.5 * xt[1]
        return (h, count + 1.0), (h.sum(-1), h * 2.0)

    (h, count), (sums, doubled) = graphc.scan(step, (h0, graphc.zeros_like(h0)), (x, x.flip(0)), reverse=True)
    return h, count, sums, doubled


@pytest.mark.parametrize("backend", ["llvm", "interpreter"])
def test_scripted_scan_runs_sequences_of_any_length(backend, tmp_path):
    gates = graphc.randn(4, 4)
    fn = lambda x, h0: _recurrence(x, h0, gates)  # noqa: E731
    dynamic = {"x": {0: "seq", 1: "batch"}, "h0": {0: "batch"}}
    scripted = graphc.script(
        fn, (graphc.randn(5, 2, 4), graphc.randn(2, 4)), dynamic=dynamic, backend=backend
    )
    ops = [n.op for n in scripted.graph.nodes]
    assert ops.count("scan") == 1 and "tanh" not in ops  # the step is the body, once
    body = next(n for n in scripted.graph.nodes if n.op == "scan").attrs["body"]
    assert [str(v.type) for v in body.inputs] == ["f32[batch,4]"] * 5  # 2 carries, 2 steps, scale
    scripted.save(tmp_path / "scan.gcm")
    loaded = runtime.load(tmp_path / "scan.gcm")
    assert str(parse_graph(str(scripted.graph), scripted.graph.weight_data)) == str(scripted.graph)
    for seq, batch in [(1, 3), (9, 2), (6, 1)]:
        x, h0 = graphc.randn(seq, batch, 4), graphc.randn(batch, 4)
        want = [t.numpy() for t in fn(x, h0)]
        for got in ([t.numpy() for t in scripted(x, h0)], loaded(x.numpy(), h0.numpy())):
            for g, w in zip(got, want, strict=True):
                np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    empty = scripted(graphc.randn(0, 2, 4), graphc.randn(2, 4))  # no steps: the initial carries
    assert [tuple(t.shape) for t in empty] == [(2, 4), (2, 4), (0, 2), (0, 2, 4)]
    assert empty[1].abs().sum().item() == 0.0


def test_scan_capture_errors():
    dynamic = {"x": {0: "seq"}}
    with pytest.raises(TracingError, match="a carry like init"):
        graphc.script(lambda x: graphc.scan(lambda c, t: (c.sum(), t), x[0], x)[1], (graphc.randn(3, 2),))
    empty = (graphc.randn(0, 2),)
    with pytest.raises(TracingError, match="no elements along the symbolic dims"):
        graphc.script(lambda x: graphc.scan(_running, x.sum(0), x)[1], empty, dynamic=dynamic)
    with pytest.raises(TracingError, match="0 steps"):
        graphc.script(lambda x: graphc.scan(_running, x.sum(0), x)[1], empty, dynamic={"x": {}})


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU])
def test_recurrent_layers_script_over_any_sequence_length(cls):
    """Two layers, both directions, batch first: one graph for every batch size and sequence
    length (before, the Python loop over time steps made capture refuse a symbolic length)."""
    graphc.manual_seed(0)
    layer = cls(5, 6, num_layers=2, bidirectional=True, batch_first=True)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, x):
            out, h = self.layer(x)
            return (out, *h) if isinstance(h, tuple) else (out, h)

    net = Net().eval()
    dynamic = {"x": {0: "batch", 1: "seq"}}
    scripted = graphc.script(net, (graphc.randn(2, 4, 5),), dynamic=dynamic)
    assert sum(n.op == "scan" for n in scripted.graph.nodes) == 4
    for batch, seq in [(3, 9), (1, 1), (2, 4)]:
        x = graphc.randn(batch, seq, 5)
        with graphc.no_grad():
            want = net(x)
        for got, w in zip(scripted(x), want, strict=True):
            np.testing.assert_allclose(got.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)


def test_scripted_lstm_runs_its_steps_on_the_cuda_emulation():
    graphc.manual_seed(1)
    lstm = nn.LSTM(4, 3)
    fn = lambda x: lstm(x)[0]  # noqa: E731
    device = EmulatedDevice("shuffled", max_blocks=2)
    scripted = graphc.script(
        fn, (graphc.randn(5, 2, 4),), dynamic={"x": {0: "seq", 1: "batch"}}, device=device
    )
    x = graphc.randn(7, 3, 4)
    with graphc.no_grad():
        np.testing.assert_allclose(np.asarray(scripted(x)._data), fn(x).numpy(), rtol=1e-5, atol=1e-6)


# --- the IR side ---


def _body(carries: int, sequences: int, rest: int):
    """A body that adds each step (and the further inputs) to its carry and outputs the sum."""
    g = Graph("body")
    t = TensorType(F32, ("batch",))
    ins = [g.add_input(f"i{k}", t) for k in range(carries + sequences + rest)]
    total = ins[0]
    for v in ins[1:]:
        (total,) = g.add_node("add", [total, v])
    (twice,) = g.add_node("mul", [total, ins[min(carries, len(ins) - 1)]])
    g.set_outputs([total, twice])
    return g


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_op_runs_its_body_per_step(reverse):
    """A running sum by the reference interpreter, against numpy's cumsum."""
    g = Graph("g")
    init = g.add_input("init", TensorType(F32, ("batch",)))
    xs = g.add_input("xs", TensorType(F32, ("seq", "batch")))
    attrs = {"body": _body(1, 1, 0), "carries": 1, "sequences": 1, "reverse": reverse}
    final, steps = g.add_node("scan", [init, xs], attrs)
    assert str(final.type) == "f32[batch]" and str(steps.type) == "f32[seq,batch]"
    g.set_outputs([final, steps])
    a, b = np.array([1.0, -2.0], np.float32), np.arange(8.0, dtype=np.float32).reshape(4, 2)
    got_final, got_steps = run(g, [a, b])
    sums = a + (np.cumsum(b[::-1], 0)[::-1] if reverse else np.cumsum(b, 0))
    np.testing.assert_array_equal(got_final, sums[0] if reverse else sums[-1])
    np.testing.assert_array_equal(got_steps, sums * b)


def test_scan_inference_checks_its_body():
    g = Graph("g")
    c = g.add_input("c", TensorType(F32, ("batch",)))
    xs = g.add_input("xs", TensorType(F32, ("seq", "batch")))
    other = g.add_input("other", TensorType(F32, (3, "batch")))
    extra = g.add_input("extra", TensorType(F32, ("batch",)))
    attrs = {"carries": 1, "sequences": 1}
    g.add_node("scan", [c, xs, extra], {"body": _body(1, 1, 1), **attrs})
    with pytest.raises(ShapeError, match="the body takes"):
        g.add_node("scan", [c, xs], {"body": _body(1, 1, 1), **attrs})
    with pytest.raises(ShapeError, match="one length along dim 0"):
        g.add_node("scan", [c, xs, other], {"body": _body(1, 2, 0), "carries": 1, "sequences": 2})
    with pytest.raises(ShapeError, match="at least one"):
        g.add_node("scan", [c], {"body": _body(1, 0, 0), "carries": 1, "sequences": 0})
    wide = _body(1, 1, 0)
    (wide.outputs[0],) = wide.add_node("unsqueeze", [wide.outputs[0]], {"dim": 0})
    with pytest.raises(ShapeError, match="returns carries"):
        g.add_node("scan", [c, xs], {"body": wide, **attrs})
