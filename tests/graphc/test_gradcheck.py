"""Every differentiable op through finite differences in float64 (graphc.autograd.gradcheck),
and second derivatives through gradgradcheck for the ops hessians lean on."""

import numpy as np
import pytest

import graphc
import graphc.nn.functional as F
from graphc.autograd import gradcheck, gradgradcheck
from ir import OPS

RNG = np.random.default_rng(2)


def leaf(shape, low=-1.0, high=1.0):
    return graphc.tensor(RNG.uniform(low, high, size=shape), dtype=graphc.float64, requires_grad=True)


def positive(shape):
    return leaf(shape, 0.5, 2.0)


UNARY = {
    "neg": leaf,
    "abs": leaf,
    "exp": leaf,
    "exp2": leaf,
    "expm1": leaf,
    "sin": leaf,
    "cos": leaf,
    "tan": leaf,
    "atan": leaf,
    "sinh": leaf,
    "cosh": leaf,
    "tanh": leaf,
    "asinh": leaf,
    "sigmoid": leaf,
    "erf": leaf,
    "erfinv": lambda s: leaf(s, -0.8, 0.8),
    "erfc": leaf,
    "lgamma": lambda s: leaf(s, 0.2, 4.0),
    "digamma": lambda s: leaf(s, 0.2, 4.0),
    "relu": leaf,
    "log": positive,
    "log2": positive,
    "log10": positive,
    "log1p": positive,
    "sqrt": positive,
    "rsqrt": positive,
    "reciprocal": positive,
    "asin": lambda s: leaf(s, -0.8, 0.8),
    "acos": lambda s: leaf(s, -0.8, 0.8),
    "atanh": lambda s: leaf(s, -0.8, 0.8),
    "acosh": lambda s: leaf(s, 1.5, 3.0),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_gradients(name):
    x = UNARY[name]((2, 3))
    if name in ("abs", "relu"):  # keep clear of the kink at 0
        with graphc.no_grad():
            x.add_(graphc.sign(x) * 0.1)
    assert gradcheck(getattr(graphc, name), (x,))


@pytest.mark.parametrize("name", ["sign", "ceil", "floor", "round", "trunc"])
def test_piecewise_constant_ops_have_zero_gradient(name):
    x = leaf((4,))
    getattr(graphc, name)(x).sum().backward()
    assert x.grad.tolist() == [0.0] * 4


BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "atan2", "remainder", "fmod"]


@pytest.mark.parametrize("shapes", [((2, 3), (2, 3)), ((2, 3), (3,)), ((2, 1), (1, 3)), ((), (2,))])
@pytest.mark.parametrize("name", BINARY)
def test_binary_gradients_with_broadcasting(name, shapes):
    a, b = positive(shapes[0]), positive(shapes[1])
    if name in ("remainder", "fmod"):
        b = leaf(shapes[1], 2.5, 3.0)
    assert gradcheck(getattr(graphc, name), (a, b))


def test_scalar_operands_and_reflected_operators():
    x = positive((3,))
    assert gradcheck(lambda x: 2 - x, (x,))
    assert gradcheck(lambda x: 2 / x, (x,))
    assert gradcheck(lambda x: 2**x, (x,))
    assert gradcheck(lambda x: x**3 + x * 2.5 - 1, (x,))


def test_where_and_clamp_gradients():
    x, y = leaf((3, 4)), leaf((3, 4))
    assert gradcheck(lambda x, y: graphc.where(x > 0, x, y), (x, y))
    lo, hi = leaf((4,), -2, -1.5), leaf((4,), 1.5, 2)
    z = leaf((3, 4), -3, 3)
    assert gradcheck(lambda z, lo, hi: graphc.clamp(z * 1.0, lo, hi), (z, lo, hi))
    assert gradcheck(lambda z: graphc.clamp(z, -0.5, 0.5), (z,))


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.sum(),
        lambda x: x.sum(1),
        lambda x: x.sum((0, 2), keepdim=True),
        lambda x: x.mean(),
        lambda x: x.mean(-1, keepdim=True),
        lambda x: x.prod(),
        lambda x: x.prod(1),
        lambda x: x.var(1),
        lambda x: x.var(correction=0),
        lambda x: x.std(),
        lambda x: x.amax(1),
        lambda x: x.amin((0, 1)),
        lambda x: x.max(),
        lambda x: x.max(2).values,
        lambda x: x.min(0, keepdim=True).values,
        lambda x: x.cumsum(1),
        lambda x: x.cumprod(2),
        lambda x: graphc.logsumexp(x, 1),
        lambda x: x.norm(),
        lambda x: x.norm(1, 2),
        lambda x: x.norm(3, 0),
    ],
    ids=lambda fn: "",
)
def test_reduction_gradients(fn):
    assert gradcheck(fn, (positive((2, 3, 4)),))


def test_prod_gradient_is_exact_with_zeros():
    x = graphc.tensor([[2.0, 0.0, 3.0], [0.0, 0.0, 1.0]], dtype=graphc.float64, requires_grad=True)
    x.prod(1).sum().backward()
    assert x.grad.tolist() == [[0.0, 6.0, 0.0], [0.0, 0.0, 0.0]]
    assert gradcheck(lambda x: x.prod(), (x,))


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.reshape(6, 4),
        lambda x: x.view(-1),
        lambda x: x.permute(2, 0, 1),
        lambda x: x.transpose(0, 1),
        lambda x: x.unsqueeze(1),
        lambda x: x[:, :1].squeeze(1),
        lambda x: x.expand(5, 2, 3, 4),
        lambda x: x.flip((0, 2)),
        lambda x: x.tril(),
        lambda x: graphc.triu(x, -1),
        lambda x: x.tril(1).triu(1),
        lambda x: x.repeat_interleave(2, dim=1),
        lambda x: x.repeat_interleave(graphc.tensor([2, 0, 1]), dim=1),
        lambda x: x.softmax(-1),
        lambda x: graphc.log_softmax(x, 0),
        lambda x: x[1],
        lambda x: x[:, 1:3],
        lambda x: x[..., ::2],
        lambda x: x[:, -2:, 1:-1:2],
        lambda x: x[-5:10, :-1],
        lambda x: x[0, :, None, 1],
        lambda x: x.narrow(2, 1, 2),
        lambda x: graphc.cat([x, x * 2], 1),
        lambda x: graphc.stack([x, x], 0),
        lambda x: x.split(1, 1)[1],
        lambda x: x.chunk(2, 2)[0],
        lambda x: x.unbind(0)[1],
        lambda x: x.repeat(2, 1, 1),
        lambda x: x.flatten(1),
        lambda x: x.t() if x.dim() == 2 else x.mT,
        lambda x: x[graphc.tensor([1, 0, 1])],
        lambda x: x[:, [0, 2], 1],
        lambda x: x[x > 0.5],
        lambda x: x.masked_fill(x > 1.0, 0.0),
        lambda x: x.index_select(2, graphc.tensor([3, 0, 3])),
        lambda x: graphc.gather(x, 2, graphc.tensor([[[0, 1], [1, 1], [3, 2]]]).expand(2, 3, 2)),
        lambda x: x.clone(),
        lambda x: x.contiguous(),
    ],
    ids=lambda fn: "",
)
def test_movement_gradients(fn):
    assert gradcheck(fn, (positive((2, 3, 4)),))


def test_scatter_add_gradient():
    x, src = leaf((2, 3)), leaf((2, 3))
    index = graphc.tensor([[0, 0, 2], [1, 1, 1]])
    assert gradcheck(lambda x, s: x.scatter_add(1, index, s), (x, src))


@pytest.mark.parametrize(
    "sa, sb",
    [
        ((3,), (3,)),
        ((2, 3), (3,)),
        ((3,), (3, 4)),
        ((2, 3), (3, 4)),
        ((5, 2, 3), (3, 4)),
        ((1, 2, 3), (4, 3, 2)),
    ],
)
def test_matmul_gradients(sa, sb):
    assert gradcheck(graphc.matmul, (leaf(sa), leaf(sb)))


def test_linear_algebra_gradients():
    m = leaf((3, 3)) + graphc.eye(3, dtype=graphc.float64) * 3
    m = m.detach().requires_grad_(True)
    assert gradcheck(graphc.det, (m,))
    assert gradcheck(graphc.inverse, (m,))
    assert gradcheck(lambda m: graphc.svd(m).S, (m,))
    assert gradcheck(lambda a, b: graphc.cross(a, b, 1), (leaf((2, 3)), leaf((2, 3))))
    assert gradcheck(lambda x: graphc.sort(x, 1).values, (leaf((2, 5)),))
    assert gradcheck(lambda x: graphc.topk(x, 2).values, (leaf((3, 5)),))
    assert gradcheck(lambda a, b: graphc.outer(a, b), (leaf((3,)), leaf((2,))))


@pytest.mark.parametrize("shape", [(3, 3), (4, 3), (3, 5), (2, 4, 3)])
def test_svd_gradients_through_u_s_and_v(shape):
    m = leaf(shape)
    # the signs of singular vectors are arbitrary, so check functions that do not depend on them
    assert gradcheck(lambda m: graphc.svd(m).U.abs(), (m,))
    assert gradcheck(lambda m: graphc.svd(m).V.abs(), (m,))
    assert gradcheck(lambda m: (lambda r: r.U @ r.V.mT)(graphc.svd(m)), (m,))


def test_cumprod_gradient_is_exact_with_zeros():
    x = graphc.tensor([[2.0, 0.0, 3.0, 1.5], [0.0, 1.0, 0.0, 2.0]], dtype=graphc.float64, requires_grad=True)
    assert gradcheck(lambda x: x.cumprod(1), (x,))
    assert gradcheck(lambda x: x.cumprod(0), (x,))
    assert gradgradcheck(lambda x: x.cumprod(1), (x,))


def test_setitem_under_autograd():
    x, v = leaf((3, 4)), leaf((2,))

    def f(x, v):
        y = x * 1
        y[1, 1:3] = v
        return y

    assert gradcheck(f, (x, v))


@pytest.mark.parametrize(
    "fn",
    [
        graphc.exp,
        graphc.tanh,
        graphc.sigmoid,
        graphc.sin,
        graphc.log,
        lambda x: x**3,
        lambda x: (x * x).sum(),
        graphc.sqrt,
        lambda x: x.prod(),
        lambda x: x / (x + 1),
        graphc.erf,
    ],
)
def test_second_derivatives(fn):
    assert gradgradcheck(fn, (positive((3,)),))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_first_and_second_derivatives(dim):
    # (the first through the fused softmax_backward op, the second through the same formula
    # recorded in differentiable ops)
    x = leaf((3, 4))
    assert gradcheck(lambda x: graphc.softmax(x, dim), (x,))
    assert gradgradcheck(lambda x: graphc.softmax(x, dim), (x,))
    _same_recorded_or_not(lambda x: graphc.softmax(x, dim), (x,))


def _same_recorded_or_not(fn, inputs):
    """The first derivatives with create_graph=True (differentiable ops) equal the fused ones."""
    out = fn(*inputs)
    up = graphc.tensor(RNG.standard_normal(out.shape))
    fused = graphc.autograd.grad(out, inputs, up, retain_graph=True)
    recorded = graphc.autograd.grad(out, inputs, up, create_graph=True)
    for a, b in zip(fused, recorded, strict=True):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("affine", ["none", "weight", "bias", "both"])
@pytest.mark.parametrize("shape", [(4,), (3, 4)])
def test_layer_norm_first_and_second_derivatives(affine, shape):
    x = leaf((2, 3, 4))
    w = leaf(shape) if affine in ("weight", "both") else None
    b = leaf(shape) if affine in ("bias", "both") else None
    params = [t for t in (w, b) if t is not None]

    def fn(x, *p):
        it = iter(p)
        return F.layer_norm(
            x, shape, next(it) if w is not None else None, next(it) if b is not None else None
        )

    assert gradcheck(fn, (x, *params))
    assert gradgradcheck(fn, (x, *params))
    _same_recorded_or_not(fn, (x, *params))


@pytest.mark.parametrize("op", ["softmax_backward", "layer_norm_backward"])
def test_backward_ops_called_directly_have_gradients(op):
    from graphc._dispatch import dispatch

    if op == "softmax_backward":
        y = graphc.softmax(leaf((3, 4)), 1).detach().requires_grad_()
        assert gradcheck(lambda y, g: dispatch(OPS[op], (y, g), {"dim": 1}), (y, leaf((3, 4))))
    else:
        attrs = {"dims": (1,), "eps": 1e-5}
        assert gradcheck(
            lambda x, w, g: dispatch(OPS[op], (x, w, g), attrs), (leaf((3, 4)), leaf((4,)), leaf((3, 4)))
        )


def test_every_differentiable_op_has_a_rule():
    from graphc.autograd.rules import RULES

    missing = [name for name, op in OPS.items() if op.differentiable and name not in RULES]
    assert missing == []
