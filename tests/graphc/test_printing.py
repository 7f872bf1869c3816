"""Tensors print exactly as PyTorch prints them (with graphc names)."""

import math

import graphc


def test_float_int_bool_and_suffixes():
    assert repr(graphc.zeros(2, 3)) == "tensor([[0., 0., 0.],\n        [0., 0., 0.]])"
    assert repr(graphc.ones(2, dtype=graphc.int16)) == "tensor([1, 1], dtype=graphc.int16)"
    assert repr(graphc.tensor([[True, False]])) == "tensor([[ True, False]])"
    assert repr(graphc.tensor([2, 3, 5, 7, 11])) == "tensor([ 2,  3,  5,  7, 11])"
    assert repr(graphc.tensor([[3.1415926, 2.71828], [1.61803, 0.0072897]])) == (
        "tensor([[3.1416, 2.7183],\n        [1.6180, 0.0073]])"
    )
    assert repr(graphc.tensor(4.0)) == "tensor(4.)" and repr(graphc.tensor(2.5)) == "tensor(2.5000)"
    assert repr(graphc.tensor([-0.0, 1.0])) == "tensor([-0., 1.])"
    assert repr(graphc.ones(2, dtype=graphc.float64)) == "tensor([1., 1.], dtype=graphc.float64)"
    assert repr(graphc.ones(2, requires_grad=True)) == "tensor([1., 1.], requires_grad=True)"
    assert repr(graphc.ones(2, requires_grad=True) * 2) == "tensor([2., 2.], grad_fn=<MulBackward0>)"
    assert repr(graphc.tensor([])) == "tensor([])"
    assert repr(graphc.zeros(0, 2, dtype=graphc.int64)) == "tensor([], size=(0, 2), dtype=graphc.int64)"


def test_scientific_notation_and_wrapping():
    a = graphc.linspace(0.0, 2 * math.pi, 25)
    text = repr(graphc.sin(a))
    assert text.startswith("tensor([ 0.0000e+00,  2.5882e-01,  5.0000e-01,  7.0711e-01,  8.6603e-01,\n")
    assert "-8.7423e-08" in text
    assert repr(graphc.tensor([1e-5, 1.0])) == "tensor([1.0000e-05, 1.0000e+00])"
    assert repr(graphc.tensor([1.0, 2000.0])) == "tensor([1.0000e+00, 2.0000e+03])"
    lin = repr(graphc.linspace(0.0, 2 * math.pi, 25, requires_grad=True))
    assert lin.endswith("6.2832],\n       requires_grad=True)")


def test_summarisation_of_large_tensors():
    text = repr(graphc.arange(2000))
    assert text == "tensor([   0,    1,    2,  ..., 1997, 1998, 1999])"
    big = repr(graphc.zeros(100, 100))
    assert big.count("...") == 7 and len(big.splitlines()) == 7  # 6 edge rows and one "..." row


def test_print_options():
    try:
        graphc.set_printoptions(precision=2)
        assert repr(graphc.tensor([1.2345])) == "tensor([1.23])"
    finally:
        graphc.set_printoptions(profile="default")
    assert repr(graphc.tensor([1.2345])) == "tensor([1.2345])"


def test_return_types_print_like_pytorch():
    svd = graphc.svd(graphc.eye(2))
    assert repr(svd).startswith("graphc.return_types.svd(\nU=tensor(")
    # std_mean and var_mean return plain tuples in PyTorch (the seed prints one)
    assert repr(graphc.std_mean(graphc.tensor([1.0, 3.0]))) == "(tensor(1.4142), tensor(2.))"
    assert type(graphc.var_mean(graphc.tensor([1.0, 3.0]), 0)) is tuple
