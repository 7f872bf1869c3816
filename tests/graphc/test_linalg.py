"""graphc.linalg's solve, slogdet, cholesky, eigh and qr against numpy (independent formulas where
numpy's own routine is the reference's), their gradients by finite differences (and against the
defining identities), errors, and capture."""

import numpy as np
import pytest

import graphc
from graphc.autograd import gradcheck, gradgradcheck

RNG = np.random.default_rng(11)


def leaf(*shape):
    return graphc.tensor(RNG.standard_normal(shape), requires_grad=True)


def spd(x):
    """A symmetric positive-definite matrix from any square x."""
    return x @ x.mT + x.shape[-1] * graphc.eye(x.shape[-1], dtype=x.dtype)


@pytest.mark.parametrize(
    "a_shape, b_shape",
    [((3, 3), (3,)), ((3, 3), (3, 2)), ((2, 3, 3), (2, 3)), ((2, 3, 3), (3, 4)), ((1, 3, 3), (4, 3, 2))],
)
def test_solve_satisfies_a_x_equals_b_and_is_differentiable(a_shape, b_shape):
    """Vectors and matrices on the right, batches broadcast both ways."""
    a, b = leaf(*a_shape), leaf(*b_shape)
    x = graphc.linalg.solve(a, b)
    vector = len(b_shape) == 1 or b_shape == a_shape[:-1]
    ax = a.detach().numpy() @ (x.detach().numpy()[..., None] if vector else x.detach().numpy())
    want = np.broadcast_to(b.detach().numpy()[..., None] if vector else b.detach().numpy(), ax.shape)
    np.testing.assert_allclose(ax, want, atol=1e-10)
    assert gradcheck(lambda a, b: graphc.linalg.solve(a, b), (a, b))
    assert gradgradcheck(lambda a, b: graphc.linalg.solve(a, b), (a, b))


def test_solve_from_the_right_and_singular_matrices():
    a, b = leaf(3, 3), leaf(2, 3)
    x = graphc.linalg.solve(a, b, left=False)
    np.testing.assert_allclose((x @ a).detach().numpy(), b.detach().numpy(), atol=1e-10)
    assert gradcheck(lambda a, b: graphc.linalg.solve(a, b, left=False), (a, b))
    with pytest.raises(ValueError, match="singular"):
        graphc.linalg.solve(graphc.zeros(2, 2), graphc.ones(2))
    with pytest.raises(graphc.ShapeError, match="does not fit"):
        graphc.linalg.solve(graphc.eye(3), graphc.ones(2, 2))


def test_slogdet_and_logdet():
    """sign * exp(logabsdet) is det, finite where det overflows; logdet is NaN for negative
    and -inf for zero determinants; d logabsdet / dA = A^-T."""
    a = leaf(2, 4, 4)
    sign, logabs = graphc.linalg.slogdet(a)
    det = np.linalg.det(a.detach().numpy())
    np.testing.assert_allclose(sign.detach().numpy() * np.exp(logabs.detach().numpy()), det, rtol=1e-10)
    big = graphc.eye(200, dtype=graphc.float64) * 1e4  # det 1e800 overflows
    assert graphc.linalg.slogdet(big).logabsdet.item() == pytest.approx(200 * np.log(1e4))
    logs = graphc.logdet(graphc.tensor([[[2.0, 0], [0, 3]], [[0, 1], [1, 0]], [[1, 2], [2, 4]]]))
    assert (
        logs[0].item() == pytest.approx(np.log(6)) and np.isnan(logs[1].item()) and logs[2].item() == -np.inf
    )
    assert gradcheck(lambda a: graphc.linalg.slogdet(a).logabsdet, (a,))
    logabs.sum().backward()
    np.testing.assert_allclose(
        a.grad.numpy(), np.linalg.inv(a.detach().numpy()).transpose(0, 2, 1), atol=1e-10
    )
    assert a.slogdet().sign.tolist() == sign.tolist()


def test_cholesky_factors_and_its_gradient_is_pytorchs():
    x = leaf(2, 4, 4)
    a = spd(x)
    low = graphc.linalg.cholesky(a)
    np.testing.assert_allclose((low @ low.mT).detach().numpy(), a.detach().numpy(), atol=1e-10)
    assert np.all(np.triu(low.detach().numpy(), 1) == 0)
    np.testing.assert_allclose(
        graphc.linalg.cholesky(a, upper=True).detach().numpy(), low.mT.detach().numpy()
    )
    assert gradcheck(lambda x: graphc.linalg.cholesky(spd(x)), (x,))
    assert gradgradcheck(lambda x: graphc.linalg.cholesky(spd(x)), (x,))
    with pytest.raises(ValueError, match="not positive-definite"):
        graphc.linalg.cholesky(-graphc.eye(2))


def test_eigh_decomposes_symmetric_matrices_and_is_differentiable():
    x = leaf(2, 4, 4)
    sym = x + x.mT
    w, v = graphc.linalg.eigh(sym)
    w_np, v_np = w.detach().numpy(), v.detach().numpy()
    rebuilt = v_np @ (w_np[..., None] * v_np.transpose(0, 2, 1))
    np.testing.assert_allclose(rebuilt, sym.detach().numpy(), atol=1e-10)
    assert np.all(np.diff(w_np, axis=-1) > 0)
    # eigenvalues' gradient: the eigenvector outer products
    w.sum().backward(graphc.ones(()))
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.eye(4) * np.ones((2, 1, 1)), atol=1e-10)
    assert gradcheck(lambda x: graphc.linalg.eigh(x + x.mT).eigenvectors ** 2, (x,))  # (signs are free)
    assert gradcheck(lambda x: graphc.linalg.eigvalsh(x + x.mT), (x,))
    upper = graphc.linalg.eigh(graphc.tensor([[1.0, 2.0], [0.0, 1.0]]), UPLO="U").eigenvalues
    np.testing.assert_allclose(upper.numpy(), [-1.0, 3.0], atol=1e-6)


@pytest.mark.parametrize("shape", [(5, 3), (3, 3), (3, 5), (2, 4, 3), (2, 3, 4)])
def test_qr_factors_every_shape_and_mode(shape):
    """Q R = A with Q's columns orthonormal and R upper triangular, of PyTorch's shapes for
    each mode; R's diagonal has LAPACK's signs (numpy's, PyTorch's)."""
    a = RNG.standard_normal(shape)
    m, n = shape[-2:]
    k = min(m, n)
    for mode, q_cols, r_rows in [("reduced", k, k), ("complete", m, m), ("r", None, k)]:
        q, r = graphc.linalg.qr(graphc.tensor(a), mode=mode)
        assert tuple(r.shape) == (*shape[:-2], r_rows, n)
        assert np.all(np.tril(r.numpy(), -1) == 0)
        if q_cols is None:
            assert q.numel() == 0
            continue
        assert tuple(q.shape) == (*shape[:-2], m, q_cols)
        np.testing.assert_allclose((q @ r).numpy(), a, atol=1e-12)
        np.testing.assert_allclose(
            (q.mT @ q).numpy(), np.broadcast_to(np.eye(q_cols), (*shape[:-2], q_cols, q_cols)), atol=1e-12
        )
        np.testing.assert_array_equal(q.numpy(), np.linalg.qr(a, mode=mode)[0])
    assert graphc.qr(graphc.tensor(a)).R.shape == graphc.linalg.qr(graphc.tensor(a)).R.shape
    assert graphc.tensor(a).qr(some=False).Q.shape[-1] == m


@pytest.mark.parametrize("shape", [(5, 3), (3, 3), (3, 5), (2, 4, 3), (2, 3, 4)])
def test_qr_gradient_by_finite_differences(shape):
    """Both factors in the loss: tall (m > n), square and wide (m < n: R's extra columns) matrices,
    batched; the complete factors of a wide matrix too."""
    a = leaf(*shape)
    q0, r0 = graphc.linalg.qr(a)
    wq, wr = graphc.tensor(RNG.standard_normal(q0.shape)), graphc.tensor(RNG.standard_normal(r0.shape))

    def loss(x):
        q, r = graphc.linalg.qr(x)
        return (q * wq).sum() + (r * wr).sum()

    assert gradcheck(loss, (a,))
    assert gradcheck(lambda x: graphc.linalg.qr(x).Q, (a,))
    assert gradcheck(lambda x: graphc.linalg.qr(x, mode="r").R, (a,))
    if shape[-2] <= shape[-1]:
        assert gradcheck(lambda x: graphc.linalg.qr(x, mode="complete").Q, (a,))


def test_qr_of_a_tall_matrix_has_no_complete_gradient():
    a = leaf(4, 2)
    q, _ = graphc.linalg.qr(a, mode="complete")
    with pytest.raises(graphc.AutogradError, match="mode='complete' and more rows than columns"):
        q.sum().backward()
    with pytest.raises(ValueError, match="mode must be 'reduced', 'complete' or 'r'"):
        graphc.linalg.qr(a, mode="raw")
    with pytest.raises(graphc.ShapeError, match="qr: expected a matrix or a batch of them"):
        graphc.linalg.qr(graphc.ones(3))


def test_linear_algebra_captures():
    def f(a, b):
        sign, logabs = graphc.linalg.slogdet(a)
        low = graphc.linalg.cholesky(spd(a))
        q, r = graphc.linalg.qr(a)
        return graphc.linalg.solve(a, b) * sign[:, None], logabs, low, graphc.linalg.eigvalsh(a + a.mT), q @ r

    a, b = graphc.randn(2, 3, 3), graphc.randn(2, 3)
    scripted = graphc.script(f, (a, b))
    a, b = graphc.randn(5, 3, 3), graphc.randn(5, 3)
    for got, want in zip(scripted(a, b), f(a, b), strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)


def _t(x):
    return graphc.tensor(x)


@pytest.mark.parametrize("n", [0, 1, 2, 5, -1, -3])
def test_matrix_power_against_numpy(n):
    a = RNG.standard_normal((2, 4, 4)) + 2 * np.eye(4)
    np.testing.assert_allclose(
        graphc.linalg.matrix_power(_t(a), n).numpy(), np.linalg.matrix_power(a, n), atol=1e-10
    )
    np.testing.assert_allclose(_t(a).matrix_power(n).numpy(), np.linalg.matrix_power(a, n), atol=1e-10)
    if n:
        x = leaf(3, 3)
        assert gradcheck(lambda x: graphc.linalg.matrix_power(x + 3 * graphc.eye(3, dtype=x.dtype), n), (x,))
    with pytest.raises(graphc.ShapeError, match="square matrices"):
        graphc.linalg.matrix_power(graphc.ones(2, 3), n)


def test_multi_dot_multiplies_in_any_order_to_numpys_product():
    """Vectors at the ends (a row first, a column last) and matrices of very different sizes,
    whose cheapest order is not left to right."""
    for shapes in [[(5,), (5, 3), (3, 7), (7, 2), (2,)], [(4, 50), (50, 2), (2, 40)], [(3, 3), (3, 3)]]:
        mats = [RNG.standard_normal(s) for s in shapes]
        np.testing.assert_allclose(
            graphc.linalg.multi_dot([_t(m) for m in mats]).numpy(), np.linalg.multi_dot(mats), atol=1e-10
        )
    x, y, z = leaf(4, 6), leaf(6, 2), leaf(2, 5)
    assert gradcheck(lambda x, y, z: graphc.linalg.multi_dot([x, y, z]), (x, y, z))
    assert graphc.chain_matmul(_t(np.eye(2)), _t(np.eye(2)) * 3).numpy()[1, 1] == 3
    with pytest.raises(ValueError, match="at least 2"):
        graphc.linalg.multi_dot([x])
    with pytest.raises(graphc.ShapeError, match="tensor 1 must be 2-D"):
        graphc.linalg.multi_dot([x, leaf(6), z])


@pytest.mark.parametrize("shape", [(6, 3), (3, 6), (2, 4, 4)])
def test_pinv_and_matrix_rank_against_numpy(shape):
    a = RNG.standard_normal(shape)
    np.testing.assert_allclose(graphc.linalg.pinv(_t(a)).numpy(), np.linalg.pinv(a), atol=1e-10)
    np.testing.assert_array_equal(graphc.linalg.matrix_rank(_t(a)).numpy(), np.linalg.matrix_rank(a))
    np.testing.assert_allclose(_t(a).pinverse().numpy(), np.linalg.pinv(a), atol=1e-10)
    assert gradcheck(graphc.linalg.pinv, (leaf(*shape),))


def test_rank_deficient_matrices_and_tolerances():
    a = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]])  # rank 2
    assert graphc.linalg.matrix_rank(_t(a)).item() == 2
    np.testing.assert_allclose(graphc.linalg.pinv(_t(a)).numpy(), np.linalg.pinv(a), atol=1e-12)
    s = np.linalg.svd(a, compute_uv=False)
    assert graphc.linalg.matrix_rank(_t(a), atol=s[1] * 1.01).item() == 1  # (atol given: rtol 0)
    assert graphc.linalg.matrix_rank(_t(a), rtol=s[1] / s[0] * 1.01).item() == 1
    np.testing.assert_allclose(
        graphc.linalg.pinv(_t(a), rtol=s[1] / s[0] * 1.01).numpy(),
        np.linalg.pinv(a, rcond=s[1] / s[0] * 1.01),
    )


def test_lstsq_against_numpy_with_pytorchs_fields_per_driver():
    """The solution (least-norm where rank deficient) and, as PyTorch's drivers give them, the
    residuals (tall full-rank A, not 'gelsy'), the rank (not 'gels') and the singular values
    ('gelsd', 'gelss')."""
    tall, b = RNG.standard_normal((6, 3)), RNG.standard_normal((6, 2))
    x, residuals, rank, s = np.linalg.lstsq(tall, b, rcond=None)
    for driver in (None, "gels", "gelsy", "gelsd", "gelss"):
        out = graphc.linalg.lstsq(_t(tall), _t(b), driver=driver)
        np.testing.assert_allclose(out.solution.numpy(), x, atol=1e-10)
        if driver in ("gels", "gelsd", "gelss"):
            np.testing.assert_allclose(out.residuals.numpy(), residuals, atol=1e-10)
        else:
            assert out.residuals.numel() == 0
        assert out.rank.numel() == 0 if driver == "gels" else out.rank.item() == rank
        if driver in ("gelsd", "gelss"):
            np.testing.assert_allclose(out.singular_values.numpy(), s, atol=1e-12)
        else:
            assert out.singular_values.numel() == 0
    deficient = tall.copy()
    deficient[:, 2] = deficient[:, 1]
    out = graphc.linalg.lstsq(_t(deficient), _t(b[:, 0]), driver="gelsd")
    np.testing.assert_allclose(
        out.solution.numpy(), np.linalg.lstsq(deficient, b[:, 0], rcond=None)[0], atol=1e-10
    )
    assert out.rank.item() == 2 and out.residuals.numel() == 0
    assert gradcheck(lambda a, b: graphc.linalg.lstsq(a, b).solution, (leaf(5, 3), leaf(5, 2)))
    with pytest.raises(ValueError, match="driver must be one of"):
        graphc.linalg.lstsq(_t(tall), _t(b), driver="lapack")


@pytest.mark.parametrize("upper", [True, False])
@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("unitriangular", [False, True])
def test_solve_triangular_reads_one_triangle(upper, left, unitriangular):
    a = RNG.standard_normal((2, 4, 4)) + 3 * np.eye(4)
    tri = np.triu(a) if upper else np.tril(a)
    if unitriangular:
        tri = tri - np.diag(np.diagonal(tri, axis1=-2, axis2=-1)[0]) * 0
        tri[..., range(4), range(4)] = 1
    b = RNG.standard_normal((2, 4, 3) if left else (2, 3, 4))
    want = (
        np.linalg.solve(tri, b)
        if left
        else np.linalg.solve(tri.transpose(0, 2, 1), b.transpose(0, 2, 1)).transpose(0, 2, 1)
    )
    got = graphc.linalg.solve_triangular(_t(a), _t(b), upper=upper, left=left, unitriangular=unitriangular)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-10)


@pytest.mark.parametrize("p", [None, 2, -2, "fro", "nuc", np.inf, -np.inf, 1, -1])
def test_cond_and_matrix_norms_against_numpy(p):
    a = RNG.standard_normal((3, 4, 4))
    np.testing.assert_allclose(graphc.linalg.cond(_t(a), p).numpy(), np.linalg.cond(a, p), rtol=1e-10)
    if p is not None:
        np.testing.assert_allclose(
            graphc.linalg.matrix_norm(_t(a), p).numpy(), np.linalg.norm(a, p, axis=(-2, -1)), rtol=1e-10
        )
        moved = a.transpose(1, 0, 2)  # (the matrices over dims 0 and 2)
        keep = graphc.linalg.matrix_norm(_t(moved), p, dim=(0, 2), keepdim=True)
        np.testing.assert_allclose(
            keep.numpy(), np.linalg.norm(moved, p, axis=(0, 2), keepdims=True), rtol=1e-10
        )
    with pytest.raises(ValueError, match="unsupported ord 3"):
        graphc.linalg.matrix_norm(_t(a), 3)


def test_vecdot_diagonal_and_vander():
    x, y = RNG.standard_normal((2, 5)), RNG.standard_normal(5)
    np.testing.assert_allclose(graphc.linalg.vecdot(_t(x), _t(y)).numpy(), x @ y)
    a = RNG.standard_normal((2, 3, 4))
    np.testing.assert_array_equal(
        graphc.linalg.diagonal(_t(a), offset=1).numpy(), np.diagonal(a, 1, axis1=-2, axis2=-1)
    )
    v = RNG.standard_normal((2, 4))
    want = np.stack([np.vander(row, 6, increasing=True) for row in v])
    np.testing.assert_allclose(graphc.linalg.vander(_t(v), N=6).numpy(), want)
    assert gradcheck(lambda v: graphc.linalg.vander(v), (leaf(3),))
