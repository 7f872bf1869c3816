"""graphc.cond: an `if` eagerly; under graphc.script one `cond` node with both branches as
subgraphs, so the captured graph picks per input, through save/load and the passes."""

import numpy as np
import pytest
from testmodels import Gated

import graphc
import runtime
from graphc.capture import TracingError
from ir import dtypes
from ir.errors import ShapeError, VerifyError
from ir.graph import Graph
from ir.interpreter import run
from ir.parser import parse_graph
from ir.passes import optimize
from ir.types import TensorType
from ir.verify import verify


def _inputs(batch):
    """Inputs that send Gate down each branch."""
    rng = np.random.default_rng(batch)
    xs = [rng.standard_normal((batch, 4)).astype(np.float32) * 10 for _ in range(4)]
    return xs + [-x for x in xs]  # x and -x: the sum of fc(x) changes sign for most x


def test_eager_cond_is_an_if_with_gradients():
    x = graphc.tensor([1.0, -2.0], requires_grad=True)
    y = graphc.cond(x.sum() > 0, lambda x: x * 3, lambda x: x * x, (x,))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, -4.0])  # the false branch ran
    assert graphc.cond(True, lambda: graphc.ones(1), lambda: graphc.zeros(1)).item() == 1.0


def test_eager_cond_rejects_bad_arguments():
    x = graphc.ones(3)
    with pytest.raises(ValueError, match="one-element bool tensor"):
        graphc.cond(x, lambda x: x, lambda x: x, (x,))
    with pytest.raises(TypeError, match="operands must be a tuple"):
        graphc.cond(True, lambda x: x, lambda x: x, x)
    with pytest.raises(TypeError, match="operand 0 must be a tensor"):
        graphc.cond(True, lambda x: x, lambda x: x, (1.0,))


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_scripted_cond_takes_the_branch_each_input_needs(batch, tmp_path):
    graphc.manual_seed(0)
    model = Gated().eval()
    scripted = graphc.script(model, (graphc.randn(3, 4),))
    assert [n.op for n in scripted.graph.nodes][-1] == "cond"
    scripted.save(tmp_path / "gate.gcm")
    loaded = runtime.load(tmp_path / "gate.gcm")
    taken = set()
    for x in _inputs(batch):
        with graphc.no_grad():
            expected = model(graphc.tensor(x)).numpy()
            taken.add(bool(model.fc(graphc.tensor(x)).sum() > 0))
        np.testing.assert_allclose(scripted(x).numpy(), expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(loaded(x)[0], expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(graphc.jit.load(tmp_path / "gate.gcm")(x).numpy(), expected, rtol=1e-6)
    assert taken == {True, False}


def test_cond_with_several_outputs_and_operands():
    def f(x, y):
        return graphc.cond(
            (x * y).sum() > 0, lambda a, b: (a + b, a * b), lambda a, b: (a - b, b.exp()), (x, y)
        )

    scripted = graphc.script(f, (graphc.randn(2, 3), graphc.randn(2, 3)))
    rng = np.random.default_rng(1)
    for _ in range(6):
        x, y = (rng.standard_normal((5, 3)).astype(np.float32) for _ in range(2))
        for got, want in zip(scripted(x, y), f(graphc.tensor(x), graphc.tensor(y)), strict=True):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)


def test_branches_must_agree_on_types():
    def f(x):
        return graphc.cond(x.sum() > 0, lambda x: x, lambda x: x.sum(0), (x,))

    with pytest.raises(TracingError, match="same number of tensors with equal dtypes and shapes"):
        graphc.script(f, (graphc.randn(2, 3),))


def test_branch_reading_an_outside_traced_tensor_must_pass_it():
    def f(x):
        h = x * 2
        return graphc.cond(x.sum() > 0, lambda x: x + h, lambda x: x, (x,))

    with pytest.raises(TracingError, match="pass it to the branch in `operands`"):
        graphc.script(f, (graphc.randn(2, 3),))


def test_predicate_must_be_one_bool_element_when_traced():
    def f(x):
        return graphc.cond(x.sum(), lambda x: x, lambda x: -x, (x,))

    with pytest.raises(TracingError, match="one-element bool tensor"):
        graphc.script(f, (graphc.randn(2, 3),))


def test_python_if_on_a_traced_tensor_points_at_cond():
    def f(x):
        return x if x.sum() > 0 else -x

    with pytest.raises(TracingError, match=r"graphc.cond\(pred"):
        graphc.script(f, (graphc.randn(2, 3),))


def test_passes_keep_cond_results():
    graphc.manual_seed(3)
    model = Gated().eval()
    graph = graphc.script(model, (graphc.randn(3, 4),)).graph
    out = optimize(graph)
    for x in _inputs(4):
        np.testing.assert_allclose(run(out, [x])[0], run(graph, [x])[0], rtol=1e-6, atol=1e-6)


# --- the IR side ---

F32 = dtypes.float32


BATCH_4 = TensorType(F32, ("batch", 4))


def _branch(op, t=BATCH_4):
    g = Graph(op)
    x = g.add_input("x", t)
    (y,) = g.add_node(op, [x])
    g.set_outputs([y])
    return g


def test_cond_inference_checks_predicate_and_branches():
    g = Graph("g")
    x = g.add_input("x", TensorType(F32, ("batch", 4)))
    p = g.add_input("p", TensorType(dtypes.bool_, (1,)))
    q = g.add_input("q", TensorType(dtypes.bool_, (2,)))
    (y,) = g.add_node("cond", [p, x], {"then_branch": _branch("exp"), "else_branch": _branch("neg")})
    assert y.type == x.type
    with pytest.raises(ShapeError, match="one-element bool"):
        g.add_node("cond", [q, x], {"then_branch": _branch("exp"), "else_branch": _branch("neg")})
    other = _branch("neg", TensorType(F32, ("batch", 5)))
    with pytest.raises(ShapeError, match="else_branch takes"):
        g.add_node("cond", [p, x], {"then_branch": _branch("exp"), "else_branch": other})


def test_verifier_checks_subgraphs():
    g = Graph("g")
    x = g.add_input("x", TensorType(F32, ("batch", 4)))
    p = g.add_input("p", TensorType(dtypes.bool_, ()))
    then = _branch("exp")
    g.add_node("cond", [p, x], {"then_branch": then, "else_branch": _branch("neg")})
    g.set_outputs([g.nodes[0].outputs[0]])
    verify(g)
    then.outputs = [Graph("other").add_input("ghost", then.outputs[0].type)]
    with pytest.raises(VerifyError, match=r"then_branch: graph exp is invalid:\n.*%ghost is not defined"):
        verify(g)


def test_cond_prints_its_branches_and_parses_back():
    g = Graph("g")
    x = g.add_input("x", TensorType(F32, ("batch", 4)))
    p = g.add_input("p", TensorType(dtypes.bool_, ()))
    (y,) = g.add_node("cond", [p, x], {"then_branch": _branch("exp"), "else_branch": _branch("neg")})
    (z,) = g.add_node("relu", [y], scope="act")
    g.set_outputs([z])
    text = str(g)
    assert "then_branch=graph exp(%x: f32[batch,4]) {\n      %0: f32[batch,4] = exp(%x)" in text
    parsed = parse_graph(text)
    assert str(parsed) == text
    xs = np.array([[1.0, -2.0, 3.0, 0.5]], np.float32)
    for pred in (True, False):
        np.testing.assert_array_equal(run(parsed, [xs, np.array(pred)])[0], run(g, [xs, np.array(pred)])[0])


def test_captured_cond_text_round_trips():
    graphc.manual_seed(4)
    graph = graphc.script(Gated().eval(), (graphc.randn(3, 4),)).graph
    text = str(graph)
    assert str(parse_graph(text, graph.weight_data)) == text


def test_nested_cond_round_trips_through_the_module_file(tmp_path):
    def f(x):
        def outer_true(x):
            return graphc.cond(x.mean() > 1, lambda x: x * 10.0, lambda x: x + 1.0, (x,))

        return graphc.cond(x.sum() > 0, outer_true, lambda x: x.abs().neg(), (x,))

    scripted = graphc.script(f, (graphc.randn(2, 3),))
    assert str(parse_graph(str(scripted.graph))) == str(scripted.graph)
    scripted.save(tmp_path / "nested.gcm")
    loaded = runtime.load(tmp_path / "nested.gcm")
    cases = (np.full((4, 3), 2.0), np.full((1, 3), 0.5), -np.ones((5, 3)))  # each of the three paths
    for x in (c.astype(np.float32) for c in cases):
        expected = f(graphc.tensor(x)).numpy()
        np.testing.assert_allclose(loaded(x)[0], expected)
        np.testing.assert_allclose(scripted(x).numpy(), expected)
