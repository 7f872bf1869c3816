"""graphc.compile: torch.compile's entry point. Calls that autograd would not record run the
compiled graph (captured once per input signature and model state); the others, and what
cannot be captured, run eagerly and say why once."""

import warnings

import numpy as np
import pytest

import graphc
import graphc.nn as nn
from graphc.capture import compiled as compile_module


def _mlp():
    graphc.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


@pytest.fixture
def captures(monkeypatch):
    """The number of captures graphc.compile makes."""
    calls = []
    real = compile_module.CompiledModule._capture

    def counted(self, args):
        calls.append([tuple(a.shape) for a in args])
        return real(self, args)

    monkeypatch.setattr(compile_module.CompiledModule, "_capture", counted)
    return calls


def test_inference_calls_run_the_compiled_graph_once_captured(captures):
    model = _mlp().eval()
    compiled = graphc.compile(model)
    x = graphc.randn(5, 6)
    with graphc.no_grad():
        want = model(x).numpy()
        for _ in range(3):
            np.testing.assert_allclose(compiled(x).numpy(), want, rtol=1e-5, atol=1e-6)
        compiled(graphc.randn(9, 6))  # another batch size: the same graph
    assert len(captures) == 1
    with graphc.inference_mode():
        compiled(x)
    assert len(captures) == 1
    with pytest.warns(UserWarning, match="autograd is recording"):
        assert compiled(x).requires_grad  # gradients enabled, parameters want them: eager
    with graphc.no_grad():
        compiled(graphc.randn(2, 5, 6))  # another rank: captured again
    assert len(captures) == 2


def test_a_changed_model_is_captured_again(captures):
    model = _mlp().eval()
    compiled = graphc.compile(model)
    x = graphc.randn(4, 6)
    with graphc.no_grad():
        compiled(x)
        model[0].weight.add_(0.5)  # (what an optimizer step does)
        np.testing.assert_allclose(compiled(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
        model.load_state_dict(_mlp().state_dict())
        np.testing.assert_allclose(compiled(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
        model[2] = nn.Linear(16, 3).eval()  # a replaced layer
        np.testing.assert_allclose(compiled(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    assert len(captures) == 4


def test_calls_the_graph_cannot_serve_run_eagerly_and_say_why_once():
    model = _mlp()  # training mode
    compiled = graphc.compile(model)
    x = graphc.randn(4, 6)
    with pytest.warns(UserWarning, match="training mode"):
        compiled(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (said once)
        out = compiled(x)
    out.sum().backward()  # eager: it trains
    assert model[0].weight.grad is not None
    model.eval()
    with pytest.warns(UserWarning, match="autograd is recording"):
        assert compiled(x).requires_grad
    with pytest.warns(UserWarning, match="keyword arguments"):
        graphc.compile(lambda a, scale=1.0: a * scale)(x, scale=2.0)


def test_functions_decorators_and_capture_failures():
    @graphc.compile
    def f(a, b):
        return (a * b).sum(1)

    with graphc.no_grad():
        assert f(graphc.ones(2, 3), graphc.ones(2, 3)).tolist() == [3.0, 3.0]

    @graphc.compile(fullgraph=True)
    def branchy(a):
        return a if a.sum() > 0 else -a

    with graphc.no_grad(), pytest.raises(graphc.TracingError, match="bool"):
        branchy(graphc.ones(2, 2))
    lenient = graphc.compile(lambda a: a if a.sum() > 0 else -a)
    with graphc.no_grad(), pytest.warns(UserWarning, match="cannot be captured"):
        assert lenient(-graphc.ones(2, 2)).tolist() == [[1.0, 1.0], [1.0, 1.0]]
    model = _mlp()
    assert graphc.compile(model, disable=True) is model


def test_the_compiled_module_stands_for_the_model():
    model = _mlp().eval()
    compiled = graphc.compile(model, backend="inductor", mode="max-autotune")
    assert compiled[0] is model[0] and len(compiled) == 3
    assert list(compiled.state_dict()) == list(model.state_dict())
    compiled.extra = 5
    assert model.extra == 5
    assert repr(compiled).startswith("CompiledModule(Sequential(")
    with pytest.raises(TypeError, match="backend must be a name"):
        graphc.compile(model, backend=object())
