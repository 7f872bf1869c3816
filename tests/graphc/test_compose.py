"""The functions of graphc/_compose.py against numpy (einsum, tensordot, diagonals, rolls, NaN
sums, distances, scatters, ...), their gradients by finite differences, and their capture."""

import numpy as np
import pytest

import graphc
from graphc.autograd import gradcheck, gradgradcheck

RNG = np.random.default_rng(5)


def arr(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def t(a):
    return graphc.tensor(a)


def leaf(*shape):
    return graphc.tensor(RNG.standard_normal(shape), dtype=graphc.float64, requires_grad=True)


def close(got, want, tol=1e-5):
    got = got.detach().numpy() if isinstance(got, graphc.Tensor) else np.asarray(got)
    assert got.shape == np.shape(want), (got.shape, np.shape(want))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


EINSUMS = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("bij,bjk->bik", [(2, 2, 3), (2, 3, 4)]),
    ("ii", [(3, 3)]),
    ("ii->i", [(3, 3)]),
    ("ij->", [(2, 3)]),
    ("ij->ji", [(2, 3)]),
    ("i,j", [(2,), (3,)]),
    ("ba", [(2, 3)]),
    ("...ij,...jk", [(2, 1, 2, 3), (4, 3, 5)]),
    ("bij,bjk->bik", [(1, 2, 3), (4, 3, 5)]),  # a batch of 1 broadcasts
    ("ijk,ikl,lm->jm", [(2, 3, 4), (2, 4, 5), (5, 6)]),
    ("bhld,bhsd->bhls", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("iij->j", [(3, 3, 2)]),
    ("i...->...", [(3, 2, 4)]),
    ("ab,ab->ab", [(2, 3), (2, 3)]),
    ("abcd,cdef->abef", [(2, 3, 4, 5), (4, 5, 2, 3)]),
    ("ij,ij->i", [(3, 4), (3, 4)]),
    ("iji->j", [(3, 2, 3)]),
]


@pytest.mark.parametrize("equation, shapes", EINSUMS, ids=[e for e, _ in EINSUMS])
def test_einsum_matches_numpy(equation, shapes):
    arrays = [arr(*s) for s in shapes]
    want = np.einsum(equation, *[a.astype(np.float64) for a in arrays])
    close(graphc.einsum(equation, *[t(a) for a in arrays]), want, 1e-4)
    close(graphc.einsum(equation, [t(a) for a in arrays]), want, 1e-4)  # (a list, too)


def test_einsum_broadcasts_ones_and_says_what_is_wrong():
    close(graphc.einsum("i,i->", graphc.ones(1), graphc.ones(3)), np.float32(3))
    with pytest.raises(graphc.ShapeError, match="subscript j has size 4 for operand 1"):
        graphc.einsum("ij,jk", graphc.ones(2, 3), graphc.ones(4, 5))
    with pytest.raises(graphc.ShapeError, match="has 3 dims"):
        graphc.einsum("ij", graphc.ones(2, 3, 4))
    with pytest.raises(ValueError, match="2 operands in the equation"):
        graphc.einsum("ij,jk", graphc.ones(2, 3))
    with pytest.raises(ValueError, match="output subscript z does not appear"):
        graphc.einsum("ij->z", graphc.ones(2, 3))
    with pytest.raises(ValueError, match="invalid subscript '1'"):
        graphc.einsum("i1", graphc.ones(2, 3))


def test_einsum_gradients_and_capture():
    assert gradcheck(lambda a, b: graphc.einsum("bij,bjk->bik", a, b), (leaf(2, 3, 4), leaf(2, 4, 5)))
    assert gradcheck(lambda a: graphc.einsum("ii->i", a), (leaf(3, 3),))
    assert gradcheck(
        lambda a, b, c: graphc.einsum("ijk,ikl,lm->jm", a, b, c), (leaf(2, 3, 4), leaf(2, 4, 5), leaf(5, 2))
    )

    def f(a, w):  # a symbolic batch kept as a dim, and summed over (never multiplied into a size)
        return graphc.einsum("bij,jk->bik", a, w) + graphc.einsum("bij,bik->jk", a, a).sum()

    scripted = graphc.script(
        f, (graphc.randn(2, 3, 4), graphc.randn(4, 5)), dynamic={"a": {0: "batch"}, "w": {}}
    )
    for batch in (1, 5):
        a, w = graphc.randn(batch, 3, 4), graphc.randn(4, 5)
        close(scripted(a, w), f(a, w).numpy(), 1e-4)


def test_tensordot_and_kron():
    a, b = arr(2, 3, 4), arr(4, 3, 5)
    close(graphc.tensordot(t(a), t(b), ([1, 2], [1, 0])), np.tensordot(a, b, ([1, 2], [1, 0])), 1e-4)
    c, d = arr(3, 4), arr(4, 5)
    close(graphc.tensordot(t(c), t(d), 1), np.tensordot(c, d, 1), 1e-4)
    close(graphc.tensordot(t(c), t(c), 0), np.tensordot(c, c, 0), 1e-4)
    with pytest.raises(graphc.ShapeError, match="contracted dimensions need to match"):
        graphc.tensordot(t(c), t(c), 1)
    close(graphc.kron(t(c), t(a[0])), np.kron(c, a[0]))
    close(graphc.kron(t(c[0]), t(a)), np.kron(c[0], a))
    assert gradcheck(lambda x, y: graphc.kron(x, y) + 0, (leaf(2, 3), leaf(3, 2)))
    assert gradcheck(lambda x, y: graphc.tensordot(x, y, ([0, 2], [2, 0])), (leaf(2, 3, 4), leaf(4, 5, 2)))


@pytest.mark.parametrize("offset", [-2, -1, 0, 1, 3, 5])
def test_diagonals_match_numpy(offset):
    m = arr(3, 4)
    close(graphc.diagonal(t(m), offset), np.diagonal(m, offset))
    close(graphc.diag(t(m), offset), np.diag(m, offset))
    v = arr(3)
    close(graphc.diag(t(v), offset), np.diag(v, offset))
    x = arr(2, 3, 4)
    close(t(x).diagonal(offset, 2, 0), np.diagonal(x, offset, 2, 0))
    want = np.zeros((2, 3 + abs(offset), 3 + abs(offset)), np.float32)
    for b in range(2):
        want[b] = np.diag(x[b, 0, :3], offset)
    close(graphc.diag_embed(t(x[:, 0, :3]), offset), want)


def test_diagonal_is_a_view_trace_and_gradients():
    m = graphc.zeros(3, 3)
    m.diagonal().fill_(2.0)
    assert m.tolist() == [[2, 0, 0], [0, 2, 0], [0, 0, 2]]
    assert t(np.arange(12.0).reshape(3, 4)).trace().item() == 0 + 5 + 10
    assert gradcheck(lambda x: graphc.diagonal(x, 1, 0, 2), (leaf(3, 2, 4),))
    assert gradcheck(lambda x: graphc.diag_embed(x, -1), (leaf(2, 3),))
    assert gradcheck(lambda x: x.trace() * graphc.diag(x[0]).sum(), (leaf(3, 3),))


def test_rearrangements_match_numpy():
    x = arr(3, 4)
    close(graphc.roll(t(x), 1, 0), np.roll(x, 1, 0))
    close(graphc.roll(t(x), (-1, 5), (0, 1)), np.roll(x, (-1, 5), (0, 1)))
    close(t(x).roll(3), np.roll(x, 3))
    for k in range(-1, 5):
        close(graphc.rot90(t(x), k), np.rot90(x, k))
    close(graphc.rot90(t(x), 1, (1, 0)), np.rot90(x, 1, (1, 0)))
    a, b, c = arr(3), arr(4), arr(2)
    for indexing in ("ij", "xy"):
        for got, want in zip(
            graphc.meshgrid(t(a), t(b), t(c), indexing=indexing),
            np.meshgrid(a, b, c, indexing=indexing),
            strict=True,
        ):
            close(got, want)
    close(graphc.atleast_3d(t(a)), np.atleast_3d(a))
    close(graphc.atleast_2d(t(a)), np.atleast_2d(a))
    close(graphc.atleast_3d(graphc.tensor(1.0)), np.atleast_3d(np.float32(1.0)))
    close(graphc.column_stack([t(x[:2]), t(c)]), np.column_stack([x[:2], c]))
    close(graphc.dstack([t(x), t(x)]), np.dstack([x, x]))
    close(graphc.take(t(x), graphc.tensor([0, 5, -1])), np.take(x, [0, 5, -1]))
    for got, want in zip(graphc.tensor_split(t(x), 3, 1), np.array_split(x, 3, 1), strict=True):
        close(got, want)
    for got, want in zip(t(x).tensor_split([1, 3, 10], 1), np.split(x, [1, 3, 10], 1), strict=True):
        close(got, want)
    assert gradcheck(lambda y: graphc.roll(y, (1, -2), (0, 1)) * graphc.rot90(y, 2), (leaf(3, 3),))


def test_arithmetic_matches_numpy():
    a, b, c = arr(3, 4), arr(3, 4), np.abs(arr(3, 4)) + 0.5
    close(graphc.clamp_min(t(a), 0.1), np.maximum(a, 0.1))
    close(t(a).clamp_max(0.1), np.minimum(a, 0.1))
    close(graphc.addcmul(t(a), t(b), t(c), value=0.5), a + 0.5 * b * c)
    close(graphc.addcdiv(t(a), t(b), t(c), value=-2), a - 2 * b / c)
    x, y, z = arr(2, 3, 4), arr(2, 4, 5), arr(2, 3, 5)
    close(graphc.baddbmm(t(z), t(x), t(y), beta=0.5, alpha=2), 0.5 * z + 2 * (x @ y), 1e-4)
    close(graphc.rsub(t(a), 2.0), 2.0 - a)
    close(graphc.frac(t(a * 3)), np.modf(a * 3)[0])
    close(graphc.hypot(t(a), t(b)), np.hypot(a, b))
    close(graphc.hypot(graphc.tensor([3e30, 0.0]), graphc.tensor([4e30, 0.0])), np.float32([5e30, 0]))
    close(graphc.logaddexp(t(a * 50), t(b * 50)), np.logaddexp(a * 50, b * 50), 1e-4)
    close(
        graphc.xlogy(graphc.tensor([0.0, 2.0, 0.0]), graphc.tensor([0.0, 3.0, np.nan])),
        [0.0, 2 * np.log(3.0), np.nan],
    )
    p = 1 / (1 + np.exp(-a))
    close(graphc.logit(t(p)), np.log(p / (1 - p)), 1e-4)
    close(graphc.logit(graphc.tensor([0.0, 1.0]), 0.25), np.log([1 / 3, 3]), 1e-6)
    special = graphc.tensor([1.0, np.nan, np.inf, -np.inf])
    close(graphc.nan_to_num(special), np.nan_to_num(special.numpy()))
    close(special.nan_to_num(0.5, 9, -9), [1, 0.5, 9, -9])
    m = np.array([[1.0, np.nan], [3.0, 4.0]], np.float32)
    close(graphc.nansum(t(m)), np.nansum(m))
    close(graphc.nanmean(t(m), 1), np.nanmean(m, 1))
    close(graphc.diff(t(a), 2, 0), np.diff(a, 2, 0))
    close(graphc.diff(t(a), prepend=t(b[:, :1]), append=t(b)), np.diff(a, prepend=b[:, :1], append=b))
    assert graphc.diff(graphc.tensor([True, False, False])).tolist() == [True, False]
    with pytest.raises(RuntimeError, match="Integer division"):
        graphc.addcdiv(graphc.ones(2), graphc.ones(2, dtype=graphc.int64), graphc.ones(2, dtype=graphc.int64))
    assert gradcheck(
        lambda a, b, c: (
            graphc.addcmul(a, b, c, value=0.5) + graphc.addcdiv(a, b, c.abs() + 1) + graphc.hypot(a, b)
        ),
        (leaf(2, 3), leaf(2, 3), leaf(2, 3)),
    )
    assert gradcheck(
        lambda a, b: graphc.logaddexp(a, b) + graphc.xlogy(b.abs(), a.abs() + 0.5), (leaf(2, 3), leaf(2, 3))
    )
    assert gradcheck(
        lambda a: graphc.nansum(a, 1) + graphc.nanmean(a, 1) + graphc.diff(a, 1, 1).sum(1), (leaf(3, 4),)
    )


@pytest.mark.parametrize("p", [2.0, 1.0, 0.0, 3.0, float("inf")])
def test_cdist_matches_numpy(p):
    x1, x2 = arr(2, 5, 3), arr(2, 4, 3)
    delta = np.abs(x1[:, :, None, :] - x2[:, None, :, :]).astype(np.float64)
    want = (delta != 0).sum(-1) if p == 0 else delta.max(-1) if np.isinf(p) else (delta**p).sum(-1) ** (1 / p)
    close(graphc.cdist(t(x1), t(x2), p), want, 1e-4)
    if p not in (0.0, float("inf")):
        same = leaf(4, 3)
        shared = np.concatenate([same.detach().numpy()[:2], RNG.standard_normal((3, 3))])
        other = graphc.tensor(shared, dtype=graphc.float64, requires_grad=True)
        # a point's distance to itself has gradient 0 (it was NaN through the square root)
        assert gradcheck(lambda a, b: graphc.cdist(a, b, p), (same, other))


def test_index_add_and_scatter_match_loops():
    x, src = arr(4, 3), arr(2, 3)
    want = x.copy()
    np.add.at(want, [0, 0], 2 * src)
    close(t(x).index_add(0, graphc.tensor([0, 0]), t(src), alpha=2), want)
    index = np.array([[0, 1, 2, 0, 0], [2, 0, 0, 1, 2]])
    values = arr(2, 5)
    want, added = np.zeros((3, 5), np.float32), np.zeros((3, 5), np.float32)
    for i in range(2):
        for j in range(5):
            want[index[i, j], j] = values[i, j]
            added[index[i, j], j] += values[i, j]
    close(graphc.zeros(3, 5).scatter(0, graphc.tensor(index), t(values)), want)
    close(graphc.zeros(3, 5).scatter(0, graphc.tensor(index), t(values), reduce="add"), added)
    filled = graphc.zeros(2, 4)
    assert filled.scatter_(1, graphc.tensor([[2], [3]]), value=1.5) is filled
    assert filled.tolist() == [[0, 0, 1.5, 0], [0, 0, 0, 1.5]]
    with pytest.raises(ValueError, match="reduce='multiply' is not supported"):
        graphc.zeros(2, 4).scatter(1, graphc.tensor([[2]]), graphc.ones(1, 1), reduce="multiply")
    assert gradcheck(
        lambda a, b: graphc.index_add(a, 0, graphc.tensor([0, 0, 2]), b, alpha=2), (leaf(4, 3), leaf(3, 3))
    )
    assert gradcheck(lambda a, b: a.scatter(1, graphc.tensor([[0, 2], [1, 0]]), b), (leaf(2, 3), leaf(2, 2)))


def test_data_dependent_functions_match_numpy():
    assert graphc.isin(graphc.tensor([1, 2, 3, 4]), graphc.tensor([2, 4])).tolist() == [
        False,
        True,
        False,
        True,
    ]
    assert graphc.isin(graphc.tensor([1, 2]), [2], invert=True).tolist() == [True, False]
    assert graphc.bincount(graphc.tensor([1, 1, 3]), minlength=5).tolist() == [0, 2, 0, 1, 0]
    weighted = graphc.bincount(graphc.tensor([1, 1, 3]), graphc.tensor([0.5, 0.25, 1.0]))
    assert weighted.dtype == graphc.float32 and weighted.tolist() == [0, 0.75, 0, 1]
    with pytest.raises(ValueError, match="non-negative"):
        graphc.bincount(graphc.tensor([-1]))
    x = np.array([[0, 1], [1, 0]])
    assert graphc.argwhere(graphc.tensor(x)).tolist() == np.argwhere(x).tolist()
    assert graphc.tril_indices(3, 4, 1).tolist() == [list(r) for r in np.tril_indices(3, 1, 4)]
    assert graphc.triu_indices(4, 3, -1).tolist() == [list(r) for r in np.triu_indices(4, -1, 3)]
    m = arr(3, 5)
    close(graphc.median(t(m)), np.sort(m.ravel())[(m.size - 1) // 2])
    values, indices = graphc.median(t(m), 1)
    close(values, np.sort(m, 1)[:, 2])
    assert indices.tolist() == np.argsort(m, 1, kind="stable")[:, 2].tolist()
    assert graphc.median(t(m), 0, keepdim=True).values.shape == (1, 5)
    close(graphc.cov(t(m)), np.cov(m), 1e-4)
    close(graphc.corrcoef(t(m)), np.corrcoef(m), 1e-4)
    close(graphc.cov(t(m[0])), np.cov(m[0]), 1e-4)
    want = np.zeros((4, 8), np.float32)
    want[:2, :2], want[2, 2], want[3, 3:] = m[:2, :2], 3.0, m[0]
    close(graphc.block_diag(t(m[:2, :2]), graphc.tensor(3.0), t(m[0])), want)
    assert gradcheck(
        lambda a: graphc.cov(a) + graphc.corrcoef(a) + graphc.block_diag(a, a[0]).sum(), (leaf(3, 4),)
    )


def test_multinomial_samples_in_proportion():
    graphc.manual_seed(0)
    samples = graphc.multinomial(graphc.tensor([[0.0, 1.0, 3.0], [1.0, 0.0, 0.0]]), 4000, replacement=True)
    assert samples.shape == (2, 4000) and samples.dtype == graphc.int64
    counts = np.bincount(samples[0].numpy(), minlength=3)
    assert counts[0] == 0 and 0.7 < counts[2] / 4000 < 0.8
    assert samples[1].tolist() == [0] * 4000
    drawn = graphc.multinomial(graphc.tensor([1.0, 2.0, 3.0, 4.0]), 4)
    assert sorted(drawn.tolist()) == [0, 1, 2, 3]  # without replacement: each once
    with pytest.raises(ValueError, match="cannot sample n_sample \\(5\\)"):
        graphc.multinomial(graphc.tensor([1.0, 2.0]), 5)
    with pytest.raises(ValueError, match="inf, nan or element < 0"):
        graphc.multinomial(graphc.tensor([1.0, -2.0]), 1)


def test_more_elementwise_functions_match_numpy():
    x = arr(3, 5)
    x[0, 1], x[1, 2], x[2, 0] = np.nan, 0.0, -0.0
    y = arr(3, 5)
    y[0, 1] = y[0, 2] = np.nan
    close(graphc.fmax(t(x), t(y)), np.fmax(x, y))
    close(graphc.fmin(t(x), t(y)), np.fmin(x, y))
    close(graphc.sgn(t(x)), np.where(np.isnan(x), 0, np.sign(x)))  # PyTorch's sign of NaN is 0
    assert graphc.signbit(t(x)).tolist() == np.signbit(x).tolist()
    assert graphc.signbit(graphc.tensor([-2, 0, 3])).tolist() == [True, False, False]
    # (PyTorch's heaviside of NaN is 0, numpy's NaN)
    close(graphc.heaviside(t(x), graphc.tensor(0.5)), np.where(np.isnan(x), 0, np.heaviside(x, 0.5)))
    powered = graphc.float_power(t(np.abs(y)), 1.5)
    assert powered.dtype == graphc.float64
    close(powered, np.abs(y).astype(np.float64) ** 1.5, 1e-6)
    close(graphc.deg2rad(t(x)), np.deg2rad(x))
    close(t(x).rad2deg(), np.rad2deg(x), 1e-4)
    a, b = np.array([12, 18, -8, 0]), np.array([8, 27, 6, 5])
    assert graphc.gcd(graphc.tensor(a), graphc.tensor(b)).tolist() == np.gcd(a, b).tolist()
    assert graphc.lcm(graphc.tensor(a), graphc.tensor(b)).tolist() == np.lcm(a, b).tolist()
    with pytest.raises(TypeError, match="integer tensors"):
        graphc.gcd(graphc.ones(2), graphc.ones(2))
    assert gradcheck(
        lambda u, v: graphc.fmax(u, v) + graphc.fmin(u, v) * graphc.float_power(u, 2),
        (leaf(2, 3), leaf(2, 3)),
    )


def test_running_extremes_match_a_loop():
    z = np.array([[1.0, 3.0, 3.0, 2.0, 5.0], [2.0, np.nan, 1.0, 7.0, 7.0]], np.float32)
    values, indices = graphc.cummax(t(z), 1)
    # the latest position among equals; NaN propagates and keeps its position
    assert indices.tolist() == [[0, 1, 2, 2, 4], [0, 1, 1, 1, 1]]
    close(values, [[1, 3, 3, 3, 5], [2, np.nan, np.nan, np.nan, np.nan]])
    values, indices = graphc.cummin(t(z[:1]), 1)
    assert indices.tolist() == [[0, 0, 0, 0, 0]] and values.tolist() == [[1.0] * 5]
    ints = graphc.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    assert graphc.cummax(ints, 0).indices.tolist() == [0, 0, 2, 2, 4, 5, 5, 5]
    assert graphc.cummin(ints, 0).values.tolist() == [3, 1, 1, 1, 1, 1, 1, 1]
    close(graphc.msort(t(z[:, :3].T)), np.sort(z[:, :3].T, 0))
    assert gradcheck(lambda v: graphc.cummax(v, 1).values + graphc.cummin(v, 0).values, (leaf(3, 4),))


def test_index_fills_copies_scatters_and_puts_match_numpy():
    x, src = arr(3, 5), arr(3, 2)
    want = x.copy()
    want[:, [0, 2]] = -1
    close(t(x).index_fill(1, graphc.tensor([0, 2]), -1.0), want)
    want = x.copy()
    want[:, [4, 0]] = src
    close(t(x).index_copy(1, graphc.tensor([4, 0]), t(src)), want)
    mask, source = RNG.random((3, 5)) > 0.5, arr(20)
    want = x.copy()
    want[mask] = source[: mask.sum()]
    close(t(x).masked_scatter(graphc.tensor(mask), t(source)), want)
    with pytest.raises(graphc.ShapeError, match="source has 2"):
        t(x).masked_scatter(graphc.ones(3, 5, dtype=graphc.bool), t(source[:2]))
    want = x.copy().ravel()
    want[[0, -1, 3]] = [9, 8, 7]
    close(t(x).put(graphc.tensor([0, -1, 3]), graphc.tensor([9.0, 8.0, 7.0])), want.reshape(3, 5))
    want = x.copy().ravel()
    np.add.at(want, [0, 0, 3], [9, 8, 7])
    close(
        t(x).put(graphc.tensor([0, 0, 3]), graphc.tensor([9.0, 8.0, 7.0]), accumulate=True),
        want.reshape(3, 5),
    )
    y = t(x)
    assert y.index_fill_(0, graphc.tensor([1]), 0.0) is y and y.numpy()[1].tolist() == [0.0] * 5
    assert gradcheck(
        lambda v, s: (
            v.index_copy(1, graphc.tensor([4, 0]), s)
            + v.masked_scatter(graphc.tensor(mask), s.reshape(-1).repeat(4))
        ),
        (leaf(3, 5), leaf(3, 2)),
    )


def test_unfold_takes_windows_and_tensors_describe_their_memory():
    w = arr(2, 7, 3)
    windows = np.lib.stride_tricks.sliding_window_view(w, 3, axis=1)[:, ::2]  # (2, 3, 3, 3)
    close(t(w).unfold(1, 3, 2), windows)
    close(t(w).unfold(-1, 2, 1), np.lib.stride_tricks.sliding_window_view(w, 2, axis=2))
    with pytest.raises(graphc.ShapeError, match="cannot take windows of 9"):
        t(w).unfold(1, 9, 1)
    assert gradcheck(lambda v: v.unfold(1, 3, 2), (leaf(2, 7, 3),))
    view = graphc.zeros(4, 6)[1:, ::2]
    assert view.stride() == (6, 2) and view.stride(1) == 2 and view.storage_offset() == 6
    assert view.nbytes == 36 and view.itemsize == 4 and view.ndimension() == 2
    base = graphc.zeros(4, 6)
    assert base[1:].data_ptr() == base.data_ptr() + 6 * 4


def test_random_fills_draw_from_their_distributions():
    graphc.manual_seed(0)
    e = graphc.empty(20000)
    assert abs(e.bernoulli_(0.3).mean().item() - 0.3) < 0.02 and set(e.unique().tolist()) == {0.0, 1.0}
    assert abs(e.exponential_(2.0).mean().item() - 0.5) < 0.03
    assert abs(e.geometric_(0.25).mean().item() - 4.0) < 0.15 and e.min().item() >= 1
    drawn = e.random_(0, 10)
    assert drawn.min().item() == 0 and drawn.max().item() == 9
    assert abs(e.cauchy_().median().item()) < 0.05
    assert abs(e.log_normal_(0.0, 0.5).log().std().item() - 0.5) < 0.02
    ints = graphc.empty(1000, dtype=graphc.int64).random_(5)
    assert ints.dtype == graphc.int64 and set(ints.tolist()) == {0, 1, 2, 3, 4}


def test_functions_that_read_values_refuse_to_be_captured():
    """cummax's positions, masked_scatter's, bincount read the values: captured, they would be
    baked into the graph as constants of the example; a TracingError says so instead."""
    for fn in (
        lambda x: graphc.cummax(x, 1).values,
        lambda x: x.masked_scatter(x > 0, x),
        lambda x: graphc.bincount((x > 0).long().reshape(-1)).float(),
    ):
        with pytest.raises(graphc.TracingError, match="traced tensor"):
            graphc.script(fn, (graphc.randn(2, 3),))


@pytest.mark.parametrize("interpolation", ["linear", "lower", "higher", "midpoint", "nearest"])
def test_quantiles_match_numpy(interpolation):
    x = RNG.standard_normal((4, 7))
    x[1, 2] = np.nan
    x[3] = np.nan
    levels = [0.0, 0.1, 0.5, 0.75, 1.0]
    for dim, keep in [(None, False), (1, False), (0, True), (None, True)]:
        axis = None if dim is None else dim
        with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore")
            want = np.quantile(x, levels, axis=axis, method=interpolation, keepdims=keep)
            nan_want = np.nanquantile(x, levels, axis=axis, method=interpolation, keepdims=keep)
        q = graphc.tensor(levels, dtype=graphc.float64)
        got = graphc.quantile(graphc.tensor(x), q, dim, keep, interpolation=interpolation)
        nan_got = graphc.nanquantile(graphc.tensor(x), q, dim, keep, interpolation=interpolation)
        np.testing.assert_allclose(got.numpy(), want, equal_nan=True, rtol=1e-12)
        np.testing.assert_allclose(nan_got.numpy(), nan_want, equal_nan=True, rtol=1e-12)
    one = graphc.tensor(x[0]).quantile(0.3, interpolation=interpolation)  # a number: no q dim
    assert one.dim() == 0 and one.item() == pytest.approx(np.quantile(x[0], 0.3, method=interpolation))


def test_quantile_gradient_and_errors():
    assert gradcheck(lambda x: graphc.quantile(x, 0.3, 1), (leaf(3, 6),))
    assert gradcheck(lambda x: graphc.kthvalue(x, 2, 0).values, (leaf(4, 3),))
    with pytest.raises(ValueError, match=r"q values must be in the range \[0, 1\], got \[1.5\]"):
        graphc.quantile(t(arr(3)), 1.5)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        graphc.quantile(t(arr(3)), 0.5, interpolation="cubic")
    with pytest.raises(TypeError, match="float or double"):
        graphc.quantile(graphc.tensor([1, 2]), 0.5)


def test_kthvalue_matches_numpy():
    x = arr(4, 6)
    got = graphc.kthvalue(t(x), 3, 1)
    close(got.values, np.sort(x, 1)[:, 2])
    np.testing.assert_array_equal(
        np.take_along_axis(x, got.indices.numpy()[:, None], 1)[:, 0], got.values.numpy()
    )
    kept = t(x).kthvalue(1, 0, True)
    assert kept.values.shape == (1, 6) and (kept.values.numpy() == x.min(0, keepdims=True)).all()
    with pytest.raises(IndexError, match="k=7 out of range"):
        graphc.kthvalue(t(x), 7, 1)


@pytest.mark.parametrize("right", [False, True])
def test_searchsorted_and_bucketize_match_numpy(right):
    rows = np.sort(RNG.integers(0, 20, (3, 6)), -1)
    values = RNG.integers(-2, 22, (3, 4))
    side = "right" if right else "left"
    got = graphc.searchsorted(t(rows), t(values), right=right)
    want = np.stack([np.searchsorted(r, v, side=side) for r, v in zip(rows, values, strict=True)])
    assert got.dtype == graphc.int64 and (got.numpy() == want).all()
    assert (
        graphc.searchsorted(t(rows[0]), t(values), side=side).numpy()
        == np.searchsorted(rows[0], values, side)
    ).all()
    assert graphc.searchsorted(t(rows[0]), 5, out_int32=True).dtype == graphc.int32
    bucket = graphc.bucketize(t(values), t(rows[0]), right=right)
    assert (bucket.numpy() == np.searchsorted(rows[0], values, side=side)).all()
    order = RNG.permutation(6)
    shuffled = rows[0][order]
    sorter = t(np.argsort(shuffled))
    found = graphc.searchsorted(t(shuffled), t(values), sorter=sorter, right=right)
    assert (found.numpy() == np.searchsorted(rows[0], values, side=side)).all()
    with pytest.raises(ValueError, match="first N-1 dimensions"):
        graphc.searchsorted(t(rows), t(values[:2]))
    with pytest.raises(ValueError, match="side and right can't be set to opposites"):
        graphc.searchsorted(t(rows), t(values), right=True, side="left")


def test_small_functions_match_numpy():
    a, b = np.array([1.0, -2.0, 0.0, 3.0]), np.array([-1.0, -0.0, -0.0, 2.0])
    close(graphc.copysign(t(a), t(b)), np.copysign(a, b))
    assert gradcheck(lambda x: graphc.copysign(x, t(b).double()), (leaf(4),))
    close(graphc.cartesian_prod(t([1, 2]), t([3, 4, 5])), [[1, 3], [1, 4], [1, 5], [2, 3], [2, 4], [2, 5]])
    import itertools

    for r, replace in [(2, False), (3, False), (2, True)]:
        pick = itertools.combinations_with_replacement if replace else itertools.combinations
        want = [[10.0 * i for i in c] for c in pick(range(4), r)]
        close(graphc.combinations(t([0.0, 10.0, 20.0, 30.0]), r, replace), want)
    close(graphc.vander(t([1.0, 2.0, 3.0])), np.vander([1.0, 2.0, 3.0]))
    close(
        graphc.vander(t([1.0, 2.0, 3.0]), N=4, increasing=True),
        np.vander([1.0, 2.0, 3.0], 4, increasing=True),
    )
    assert graphc.positive(t([1.0])).tolist() == [1.0] and graphc.clone(t([2.0])).tolist() == [2.0]
    with pytest.raises(TypeError, match="bool tensor"):
        graphc.positive(graphc.tensor([True]))


def test_trapezoids_match_the_rule():
    y = RNG.standard_normal((3, 5))
    x = np.sort(RNG.standard_normal(5))
    steps = np.diff(x)
    mean = (y[:, 1:] + y[:, :-1]) / 2
    close(graphc.trapezoid(t(y).double(), t(x).double()), (mean * steps).sum(1), 1e-12)
    close(graphc.cumulative_trapezoid(t(y).double(), t(x).double()), np.cumsum(mean * steps, 1), 1e-12)
    close(graphc.trapezoid(t(y).double(), dx=0.5, dim=0), ((y[1:] + y[:-1]) / 2 * 0.5).sum(0), 1e-6)
    assert gradcheck(lambda y: graphc.trapezoid(y, t(x).double()), (leaf(3, 5),))
    with pytest.raises(TypeError, match="either the sample points x or their spacing dx"):
        graphc.trapezoid(t(y), t(x), dx=1.0)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_logcumsumexp_is_exact_over_any_range(dim):
    """Against numpy's logaddexp.accumulate: values 1e3 apart (a cumsum of exp after one
    maximum underflows), infinities, lengths that are not powers of two; differentiable twice."""
    x = np.random.default_rng(1).normal(size=(5, 7)) * 300
    x[1, 2], x[2, :3], x[3, 4] = -np.inf, -np.inf, np.inf
    got = graphc.logcumsumexp(graphc.tensor(x), dim).numpy()
    with np.errstate(invalid="ignore"):
        want = np.logaddexp.accumulate(x, axis=dim)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert graphc.tensor(x[0]).logcumsumexp(0).shape == (7,)
    small = graphc.tensor(np.random.default_rng(2).normal(size=(3, 5)), requires_grad=True)
    assert gradcheck(lambda t: graphc.logcumsumexp(t, dim % 2), (small,))
    assert gradgradcheck(lambda t: graphc.logcumsumexp(t, 1), (small,))
    assert graphc.logcumsumexp(graphc.tensor(2.0), 0).item() == 2.0
    with pytest.raises(TypeError, match="floating point"):
        graphc.logcumsumexp(graphc.tensor([1, 2]), 0)


def test_logaddexp_of_infinities():
    inf = float("inf")
    got = graphc.logaddexp(graphc.tensor([inf, -inf, inf, 1.0]), graphc.tensor([inf, -inf, -inf, -inf]))
    assert got.tolist() == [inf, -inf, inf, 1.0]
