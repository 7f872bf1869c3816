"""Property-based checks: random broadcasting shapes and random chains of ops, against numpy
forward and against finite differences backward."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import graphc
from graphc.autograd import gradcheck

BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "maximum": np.maximum}
UNARY = {
    "tanh": np.tanh,
    "sin": np.sin,
    "exp": lambda x: np.exp(np.clip(x, -5, 5)),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
}


@settings(max_examples=60, deadline=None)
@given(
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4),
    op=st.sampled_from(sorted(BINARY)),
    seed=st.integers(0, 2**16),
)
def test_broadcasting_binary_ops_match_numpy(shapes, op, seed):
    rng = np.random.default_rng(seed)
    a, b = (rng.normal(size=s) for s in shapes.input_shapes)
    out = getattr(graphc, op)(graphc.tensor(a), graphc.tensor(b))
    assert out.shape == shapes.result_shape
    np.testing.assert_allclose(out.numpy(), BINARY[op](a, b), rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=1, max_dims=3, max_side=3),
    chain=st.lists(
        st.tuples(st.sampled_from(sorted(BINARY)), st.sampled_from(["tanh", "sin", "sigmoid"])),
        min_size=1,
        max_size=4,
    ),
    reduce_dim=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_chains_have_correct_gradients(shapes, chain, reduce_dim, seed):
    rng = np.random.default_rng(seed)
    a, b = (graphc.tensor(rng.normal(size=s), requires_grad=True) for s in shapes.input_shapes)

    def f(a, b):
        y = a
        for binary, unary in chain:
            y = getattr(graphc, unary)(getattr(graphc, binary)(y, b))
        return y.sum(-1) if reduce_dim else y.mean()

    # maximum has a kink where the operands tie; random normals tie with probability zero
    assert gradcheck(f, (a, b))


@settings(max_examples=40, deadline=None)
@given(
    data=hnp.arrays(
        np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), elements=st.floats(-100, 100)
    ),
    keepdim=st.booleans(),
    st_dim=st.integers(0, 2),
)
def test_reductions_match_numpy_on_random_arrays(data, keepdim, st_dim):
    dim = st_dim % data.ndim
    t = graphc.tensor(data)
    np.testing.assert_allclose(t.sum(dim, keepdim).numpy(), data.sum(dim, keepdims=keepdim))
    np.testing.assert_allclose(t.amax(dim, keepdim).numpy(), data.max(dim, keepdims=keepdim))
    np.testing.assert_allclose(t.mean(dim, keepdim).numpy(), data.mean(dim, keepdims=keepdim))
    values, indices = t.max(dim, keepdim)
    assert (indices.numpy() == data.argmax(dim, keepdims=keepdim)).all()
