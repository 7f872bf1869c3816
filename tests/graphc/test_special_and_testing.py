"""graphc.special against closed forms in Python's math module, and graphc.testing.assert_close's
tolerances, structure checks and messages."""

import math

import numpy as np
import pytest

import graphc
from graphc import special, testing
from graphc.autograd import gradcheck

X = np.linspace(-3, 3, 25)


@pytest.mark.parametrize(
    "name, arg, reference",
    [
        ("ndtr", X, lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))),
        ("sinc", np.append(X, 0.0), lambda x: 1.0 if x == 0 else math.sin(math.pi * x) / (math.pi * x)),
        ("entr", np.abs(X), lambda x: 0.0 if x == 0 else -x * math.log(x)),
        ("expit", X, lambda x: 1 / (1 + math.exp(-x))),
        ("logit", np.linspace(0.05, 0.95, 19), lambda p: math.log(p / (1 - p))),
    ],
)
def test_special_functions_against_math(name, arg, reference):
    got = getattr(special, name)(graphc.tensor(arg)).numpy()
    np.testing.assert_allclose(got, [reference(v) for v in arg], rtol=1e-12, atol=1e-15)


def test_gamma_functions_and_polygamma():
    x = graphc.tensor([0.5, 1.0, 3.5], dtype=graphc.float64)
    np.testing.assert_allclose(
        special.gammaln(x).numpy(), [math.lgamma(v) for v in (0.5, 1.0, 3.5)], rtol=1e-14
    )
    np.testing.assert_array_equal(special.psi(x).numpy(), special.polygamma(0, x).numpy())
    np.testing.assert_allclose(special.polygamma(1, x)[1].item(), math.pi**2 / 6, rtol=1e-13)
    np.testing.assert_allclose(
        special.erfc(graphc.tensor([10.0], dtype=graphc.float64)).item(), math.erfc(10.0), rtol=1e-14
    )
    with pytest.raises(NotImplementedError, match="only n = 0"):
        special.polygamma(2, x)


def test_ndtri_inverts_ndtr_and_the_edge_cases():
    p = np.linspace(0.01, 0.99, 33)
    np.testing.assert_allclose(special.ndtr(special.ndtri(graphc.tensor(p))).numpy(), p, rtol=1e-12)
    assert special.entr(graphc.tensor([-1.0])).item() == -math.inf
    f64 = graphc.float64
    pair = special.xlog1py(graphc.tensor([0.0, 2.0], dtype=f64), graphc.tensor([-1.0, 1.0], dtype=f64))
    np.testing.assert_array_equal(pair.numpy(), [0.0, 2 * math.log(2)])  # (0 * log(0) is 0)
    assert gradcheck(special.sinc, (graphc.tensor(X[X != 0], requires_grad=True),))
    assert gradcheck(special.ndtri, (graphc.tensor(np.linspace(0.1, 0.9, 5), requires_grad=True),))


def test_assert_close_tolerances_by_dtype_and_structure():
    testing.assert_close(graphc.ones(3), graphc.ones(3) + 1e-6)  # (float32: 1.3e-6 relative, 1e-5 absolute)
    with pytest.raises(AssertionError, match="Mismatched elements: 1 / 3"):
        testing.assert_close(graphc.ones(3), graphc.tensor([1.0, 1.001, 1.0]))
    testing.assert_close(graphc.ones(3), graphc.tensor([1.0, 1.001, 1.0]), rtol=1e-2, atol=0.0)
    testing.assert_close(graphc.ones(2, dtype=graphc.float64), graphc.ones(2, dtype=graphc.float64) + 1e-8)
    with pytest.raises(AssertionError, match="Greatest absolute difference: 1"):
        testing.assert_close(graphc.tensor([1, 2]), graphc.tensor([1, 3]))  # (integers: exact)
    with pytest.raises(AssertionError, match="The dtypes differ"):
        testing.assert_close(graphc.ones(2), graphc.ones(2, dtype=graphc.float64))
    testing.assert_close(graphc.ones(2), graphc.ones(2, dtype=graphc.float64), check_dtype=False)
    with pytest.raises(AssertionError, match="The shapes differ"):
        testing.assert_close(graphc.ones(2), graphc.ones(3))
    nan = graphc.tensor([math.nan, 1.0])
    with pytest.raises(AssertionError, match="a NaN or infinity differs"):
        testing.assert_close(nan, nan)
    testing.assert_close(nan, nan, equal_nan=True)
    testing.assert_close({"w": [graphc.ones(2), 3.0]}, {"w": [graphc.ones(2), 3.0]})
    with pytest.raises(AssertionError, match=r"\['w'\]\[1\]"):
        testing.assert_close({"w": [graphc.ones(2), 3.0]}, {"w": [graphc.ones(2), 4.0]})
    with pytest.raises(ValueError, match="both rtol and atol"):
        testing.assert_close(graphc.ones(1), graphc.ones(1), rtol=1e-3)
    with pytest.raises(AssertionError, match="custom"):
        testing.assert_close(graphc.ones(1), graphc.zeros(1), msg="custom")
