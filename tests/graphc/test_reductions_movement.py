"""Reductions, movement and linear algebra against numpy."""

import numpy as np
import pytest

import graphc
from graphc.autograd import gradcheck

RNG = np.random.default_rng(1)


def t(a):
    return graphc.tensor(a)


@pytest.mark.parametrize("dim", [None, 0, 1, -1, (0, 2), (-1, -2)])
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize(
    "name, ref", [("sum", np.sum), ("mean", np.mean), ("prod", np.prod), ("amax", np.max), ("amin", np.min)]
)
def test_reductions_match_numpy(name, ref, dim, keepdim):
    x = RNG.normal(size=(2, 3, 4))
    axis = dim
    if name in ("amax", "amin") and dim is None:
        out = getattr(graphc, name)(t(x), (), keepdim)
    else:
        out = getattr(graphc, name)(t(x), dim, keepdim)
    np.testing.assert_allclose(out.numpy(), ref(x, axis=axis, keepdims=keepdim), rtol=1e-12)


@pytest.mark.parametrize("correction", [0, 1, 2])
def test_var_and_std_with_correction(correction):
    x = RNG.normal(size=(5, 6))
    np.testing.assert_allclose(
        graphc.var(t(x), 1, correction=correction).numpy(), np.var(x, axis=1, ddof=correction)
    )
    np.testing.assert_allclose(graphc.std(t(x), correction=correction).numpy(), np.std(x, ddof=correction))
    np.testing.assert_allclose(graphc.std(t(x), unbiased=False).numpy(), np.std(x))
    s, m = graphc.std_mean(t(x), dim=0)
    np.testing.assert_allclose(s.numpy(), np.std(x, 0, ddof=1))
    np.testing.assert_allclose(m.numpy(), np.mean(x, 0))
    v, m = graphc.var_mean(t(x), 1, keepdim=True)
    assert v.shape == (5, 1) and m.shape == (5, 1)


def test_integer_sums_accumulate_in_int64():
    assert graphc.sum(graphc.ones(3, dtype=graphc.int32)).dtype is graphc.int64
    assert graphc.tensor([True, True, False]).sum().item() == 2
    with pytest.raises(TypeError, match="could not infer output dtype"):
        graphc.mean(graphc.tensor([1, 2]))
    assert graphc.mean(graphc.tensor([1, 2]), dtype=graphc.float64).item() == 1.5


def test_max_min_with_dim_return_named_values_and_indices():
    x = t([[1.0, 5.0, 3.0], [7.0, 2.0, 7.0]])
    values, indices = graphc.max(x, 1)
    assert values.tolist() == [5.0, 7.0] and indices.tolist() == [1, 0]
    res = x.min(dim=0, keepdim=True)
    assert res.values.tolist() == [[1.0, 2.0, 3.0]] and res.indices.tolist() == [[0, 1, 0]]
    assert graphc.max(x).item() == 7.0 and x.argmax().item() == 3 and x.argmin(1).tolist() == [0, 1]
    assert graphc.max(x, t([[9.0, 0.0, 0.0], [0.0, 0.0, 9.0]])).tolist() == [[9, 5, 3], [7, 2, 9]]
    assert repr(res).startswith("graphc.return_types.min(\nvalues=tensor(")


def test_any_all_cumsum_cumprod_logsumexp_norm():
    x = RNG.normal(size=(3, 4))
    tx = t(x)
    assert graphc.any(tx > 2).item() == bool((x > 2).any())
    assert (graphc.all(tx > -5, 1).numpy() == (x > -5).all(1)).all()
    np.testing.assert_allclose(graphc.cumsum(tx, 1).numpy(), np.cumsum(x, 1))
    np.testing.assert_allclose(graphc.cumprod(tx, 0).numpy(), np.cumprod(x, 0))
    np.testing.assert_allclose(graphc.logsumexp(tx, 1).numpy(), np.log(np.exp(x).sum(1)))
    big = t([1000.0, 1000.0])
    assert abs(graphc.logsumexp(big, 0).item() - (1000 + np.log(2))) < 1e-4
    np.testing.assert_allclose(graphc.norm(tx).numpy(), np.linalg.norm(x))
    np.testing.assert_allclose(graphc.norm(tx, 1, dim=1).numpy(), np.abs(x).sum(1))
    np.testing.assert_allclose(graphc.norm(tx, float("inf")).numpy(), np.abs(x).max())
    np.testing.assert_allclose(tx.norm(3).numpy(), (np.abs(x) ** 3).sum() ** (1 / 3))


def test_reshape_views_share_memory_and_view_refuses_copies():
    x = graphc.arange(12)
    v = x.view(3, 4)
    v[0, 0] = 100
    assert x[0].item() == 100
    assert x.view(-1, 6).shape == (2, 6)
    assert x.reshape(2, -1).shape == (2, 6)
    with pytest.raises(graphc.ShapeError, match="invalid for input of size 12"):
        x.view(5, -1)
    tr = v.t()
    with pytest.raises(graphc.ShapeError, match="Use .reshape"):
        tr.view(12)
    assert tr.reshape(12).tolist() == [100, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    assert v.flatten().shape == (12,) and graphc.rand(2, 3, 4).flatten(1).shape == (2, 12)


def test_permute_transpose_squeeze_unsqueeze_expand():
    x = graphc.rand(2, 3, 4)
    assert x.permute(2, 0, 1).shape == (4, 2, 3)
    assert x.transpose(0, 2).shape == (4, 3, 2) and x.mT.shape == (2, 4, 3)
    assert x.unsqueeze(1).shape == (2, 1, 3, 4) and x.unsqueeze(-1).shape == (2, 3, 4, 1)
    assert graphc.rand(1, 3, 1).squeeze().shape == (3,)
    assert graphc.rand(1, 3, 1).squeeze(0).shape == (3, 1)
    assert graphc.rand(2, 2).squeeze(0).shape == (2, 2)
    e = graphc.tensor([[1], [2]]).expand(2, 3)
    assert e.tolist() == [[1, 1, 1], [2, 2, 2]]
    assert graphc.tensor([1, 2]).expand(3, -1).shape == (3, 2)
    assert graphc.tensor([[1, 2]]).repeat(2, 2).tolist() == [[1, 2, 1, 2], [1, 2, 1, 2]]
    assert graphc.tensor([1, 2]).repeat(2, 1, 2).shape == (2, 1, 4)
    assert x.movedim(0, -1).shape == (3, 4, 2)


def test_cat_stack_split_chunk_unbind_narrow_flip():
    a, b = graphc.arange(6).view(2, 3), graphc.arange(6, 12).view(2, 3)
    assert graphc.cat([a, b]).shape == (4, 3) and graphc.cat((a, b), dim=1).shape == (2, 6)
    assert graphc.stack([a, b], dim=1).shape == (2, 2, 3)
    assert graphc.cat([a, graphc.tensor([])]).shape == (2, 3)  # PyTorch skips empty 1-D inputs
    parts = graphc.arange(10).split(4)
    assert [p.tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [p.shape[0] for p in graphc.arange(10).split([3, 7])] == [3, 7]
    assert [c.tolist() for c in graphc.arange(5).chunk(2)] == [[0, 1, 2], [3, 4]]
    assert [u.tolist() for u in a.unbind(1)] == [[0, 3], [1, 4], [2, 5]]
    assert a.narrow(1, 1, 2).tolist() == [[1, 2], [4, 5]]
    assert a.flip(0).tolist() == [[3, 4, 5], [0, 1, 2]] and a.flip((0, 1))[0, 0].item() == 5
    with pytest.raises(graphc.ShapeError):
        graphc.cat([a, graphc.rand(2, 2, 2)])


def test_gather_index_select_masked_fill():
    x = t([[1, 2], [3, 4]])
    assert graphc.gather(x, 1, t([[0, 0], [1, 0]])).tolist() == [[1, 1], [4, 3]]
    assert x.index_select(0, t([1, 1, 0])).tolist() == [[3, 4], [3, 4], [1, 2]]
    assert x.masked_fill(x > 2, 0).tolist() == [[1, 2], [0, 0]]
    assert x.masked_fill(x > 2, 0.5).dtype is graphc.int64
    assert graphc.masked_select(x, x > 1).tolist() == [2, 3, 4]
    z = graphc.zeros(2, 3).scatter_add(1, t([[0, 0, 2], [1, 1, 1]]), graphc.ones(2, 3))
    assert z.tolist() == [[2, 0, 1], [0, 3, 0]]


@pytest.mark.parametrize(
    "sa, sb",
    [
        ((3,), (3,)),
        ((2, 3), (3,)),
        ((3,), (3, 4)),
        ((2, 3), (3, 4)),
        ((5, 2, 3), (3, 4)),
        ((5, 2, 3), (5, 3, 4)),
        ((1, 2, 3), (6, 3, 4)),
        ((2, 1, 2, 3), (4, 3, 2)),
    ],
)
def test_matmul_all_broadcasting_cases(sa, sb):
    a, b = RNG.normal(size=sa), RNG.normal(size=sb)
    np.testing.assert_allclose((t(a) @ t(b)).numpy(), a @ b, rtol=1e-12)


def test_linear_algebra():
    m = RNG.normal(size=(3, 3))
    np.testing.assert_allclose(graphc.det(t(m)).numpy(), np.linalg.det(m))
    np.testing.assert_allclose(graphc.inverse(t(m)).numpy(), np.linalg.inv(m))
    u, s, v = graphc.svd(t(m))
    np.testing.assert_allclose(((u * s) @ v.t()).numpy(), m, atol=1e-12)
    assert graphc.dot(t([1.0, 2.0]), t([3.0, 4.0])).item() == 11.0
    assert graphc.outer(t([1, 2]), t([1, 2, 3])).shape == (2, 3)
    assert graphc.mm(t(m), t(m)).shape == (3, 3)
    assert graphc.bmm(graphc.rand(2, 3, 4), graphc.rand(2, 4, 5)).shape == (2, 3, 5)
    assert graphc.cross(t([0.0, 1.0, 0.0]), t([1.0, 0.0, 0.0])).tolist() == [0.0, 0.0, -1.0]
    with pytest.raises(graphc.ShapeError, match="cannot be multiplied"):
        graphc.rand(2, 3) @ graphc.rand(4, 5)
    with pytest.raises(graphc.ShapeError):
        graphc.mm(graphc.rand(3), graphc.rand(3))


def test_sort_topk_unique():
    x = t([3.0, 1.0, 2.0, 1.0])
    values, indices = graphc.sort(x)
    assert values.tolist() == [1, 1, 2, 3] and indices.tolist() == [1, 3, 2, 0]
    assert x.sort(descending=True).indices.tolist() == [0, 2, 1, 3]
    top = graphc.topk(x, 2)
    assert top.values.tolist() == [3, 2] and top.indices.tolist() == [0, 2]
    assert graphc.topk(x, 2, largest=False).values.tolist() == [1, 1]
    u, inv, counts = graphc.unique(t([1, 2, 1, 2, 1, 2]), return_inverse=True, return_counts=True)
    assert u.tolist() == [1, 2] and inv.tolist() == [0, 1, 0, 1, 0, 1] and counts.tolist() == [3, 3]
    assert graphc.unique(t([[1, 2], [1, 2], [0, 1]]), dim=0).tolist() == [[0, 1], [1, 2]]
    assert x.argsort().tolist() == [1, 3, 2, 0]
    with pytest.raises(ValueError, match="out of range"):
        graphc.topk(x, 5)


def test_reductions_over_empty_tensors():
    e = graphc.zeros(0, 3)
    assert graphc.sum(e).item() == 0 and graphc.sum(e, 0).tolist() == [0, 0, 0]
    assert graphc.prod(e).item() == 1
    assert graphc.mean(e).isnan().item()
    with pytest.raises(graphc.ShapeError, match="empty"):
        graphc.amax(e)


def test_linalg_namespace():
    m = RNG.normal(size=(3, 4))
    u, s, vh = graphc.linalg.svd(t(m), full_matrices=False)
    np.testing.assert_allclose(((u * s) @ vh).numpy(), m, atol=1e-12)
    assert graphc.linalg.svd(t(m)).U.shape == (3, 3)
    sq = RNG.normal(size=(3, 3))
    np.testing.assert_allclose(graphc.linalg.inv(t(sq)).numpy(), np.linalg.inv(sq))
    np.testing.assert_allclose(graphc.linalg.det(t(sq)).numpy(), np.linalg.det(sq))
    np.testing.assert_allclose(graphc.linalg.norm(t(m)).numpy(), np.linalg.norm(m))
    np.testing.assert_allclose(graphc.linalg.norm(t(m), "nuc").numpy(), np.linalg.norm(m, "nuc"))
    np.testing.assert_allclose(graphc.linalg.vector_norm(t(m), 1, dim=1).numpy(), np.abs(m).sum(1))
    assert graphc.linalg.cross(t([[1.0, 0, 0]]), t([[0, 1.0, 0]])).tolist() == [[0, 0, 1.0]]


def _scatter_reduce_reference(x, dim, index, src, reduce, include_self):
    """scatter_reduce by loops: the values reaching each place, then reduced."""
    out = x.copy()
    reaching: dict = {}
    for pos in np.ndindex(*index.shape):
        place = list(pos)
        place[dim] = index[pos]
        reaching.setdefault(tuple(place), []).append(src[pos])
    for place, values in reaching.items():
        values = ([x[place]] if include_self else []) + values
        fn = {"sum": np.sum, "prod": np.prod, "mean": np.mean, "amax": np.max, "amin": np.min}[reduce]
        out[place] = fn(values)
    return out


@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("dim", [0, 1])
def test_scatter_reduce_matches_loops_and_finite_differences(reduce, include_self, dim):
    rng = np.random.default_rng(7)
    x, src = rng.standard_normal((4, 5)), rng.standard_normal((3, 4))
    index = rng.integers(0, x.shape[dim], (3, 4))
    if reduce == "prod":
        src[0, 1] = 0.0  # a single zero at its place: the gradient of the others' product
    got = graphc.tensor(x).scatter_reduce(
        dim, graphc.tensor(index), graphc.tensor(src), reduce, include_self=include_self
    )
    np.testing.assert_allclose(
        got.numpy(), _scatter_reduce_reference(x, dim, index, src, reduce, include_self), rtol=1e-12
    )
    xs, ss = graphc.tensor(x, requires_grad=True), graphc.tensor(src, requires_grad=True)
    fn = lambda a, b: a.scatter_reduce(dim, graphc.tensor(index), b, reduce, include_self=include_self)  # noqa: E731
    assert gradcheck(fn, (xs, ss))


def test_scatter_reduce_integers_ties_and_errors():
    x, index = graphc.tensor([[5, 1, 0]]), graphc.tensor([[0, 0, 2]])
    src = graphc.tensor([[2, 4, 7]])
    assert x.scatter_reduce(1, index, src, "mean").tolist() == [[3, 1, 7 // 2]]  # floor division
    assert x.scatter_reduce(1, index, src, "amax", include_self=False).tolist() == [[4, 1, 7]]
    # the maximum 3.0 reached three times: its gradient shared evenly
    a = graphc.tensor([[3.0, 0.0]], dtype=graphc.float64, requires_grad=True)
    b = graphc.tensor([[3.0, 3.0, 1.0]], dtype=graphc.float64, requires_grad=True)
    a.scatter_reduce(1, graphc.tensor([[0, 0, 1]]), b, "amax").sum().backward()
    assert a.grad.tolist() == [[1 / 3, 0.0]] and b.grad.tolist() == [[1 / 3, 1 / 3, 1.0]]
    y = graphc.zeros(2, 3)
    y.scatter_reduce_(1, graphc.tensor([[0], [2]]), graphc.ones(2, 1), "sum")
    y.scatter_add_(1, graphc.tensor([[0], [0]]), graphc.ones(2, 1))
    assert y.tolist() == [[2.0, 0.0, 0.0], [1.0, 0.0, 1.0]]
    with pytest.raises(ValueError, match="reduce argument must be one of"):
        graphc.zeros(2).scatter_reduce(0, graphc.tensor([0]), graphc.ones(1), "max")
    f = lambda x: graphc.zeros_like(x).scatter_reduce(1, x.argsort(1), x, "amax", include_self=False)  # noqa: E731
    scripted = graphc.script(f, (graphc.randn(2, 4),))
    z = graphc.randn(5, 4)
    np.testing.assert_allclose(scripted(z).numpy(), f(z).numpy())
