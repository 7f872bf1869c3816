"""Linear algebra and ordering: matmul, det, inv, svd, qr, solve, slogdet, cholesky, eigh,
cross, sort, topk, unique."""

from __future__ import annotations

import numpy as np

from ir.errors import ShapeError
from ir.ops.registry import Promote, register


@register("matmul", promote=Promote.COMMON)
def _matmul(xp, a, b):
    """Matrix product with numpy's (and PyTorch's) rules for 1-D operands and batch broadcasting."""
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError("matmul: both arguments need at least 1 dimension; got a 0-d tensor")
    ka = a.shape[-1]
    kb = b.shape[-2] if b.ndim > 1 else b.shape[0]
    if ka != kb:
        raise ShapeError(
            f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied ({ka} != {kb})"
        )
    if a.ndim > 2 and b.ndim == 2:
        return _folded_matmul(xp, a, b)
    try:
        return xp.matmul(a, b)
    except ValueError:
        raise ShapeError(
            f"matmul: batch dims of {tuple(a.shape)} and {tuple(b.shape)} do not broadcast"
        ) from None


def _folded_matmul(xp, a, b):
    """a (..., m, k) @ b (k, n) as one (batch * m, k) @ (k, n) product: numpy multiplies a
    stack matrix by matrix, one BLAS call each (2x slower for a (16, 128, 128) @ (128, 512))."""
    out = xp.matmul(a.reshape(-1, a.shape[-1]), b)
    return out.reshape(*a.shape[:-1], b.shape[-1])


def _square(name, x):
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ShapeError(f"{name}: expected a batch of square matrices, got shape {tuple(x.shape)}")


@register("det", promote=Promote.FLOAT)
def _det(xp, x):
    """Determinant of each square matrix in the batch."""
    _square("det", x)
    return xp.linalg.det(x)


@register("inv", promote=Promote.FLOAT)
def _inv(xp, x):
    """Inverse of each square matrix in the batch; singular matrices raise."""
    _square("inv", x)
    try:
        return xp.linalg.inv(x)
    except np.linalg.LinAlgError:
        raise ValueError("inv: the input is singular and has no inverse") from None


@register("svd", promote=Promote.FLOAT, num_outputs=3)
def _svd(xp, x, full_matrices=False):
    """(U, S, Vh) with x = U diag(S) Vh, singular values descending."""
    if x.ndim < 2:
        raise ShapeError(f"svd: expected a matrix or a batch of them, got shape {tuple(x.shape)}")
    u, s, vh = xp.linalg.svd(x, full_matrices=full_matrices)
    return u, s, vh


@register("qr", promote=Promote.FLOAT, num_outputs=2)
def _qr(xp, x, mode="reduced"):
    """(Q, R) with x = Q R, Q's columns orthonormal and R upper triangular (LAPACK's signs, as
    PyTorch's): 'reduced' Q (..., m, k) and R (..., k, n) for k = min(m, n); 'complete' Q
    (..., m, m) and R (..., m, n)."""
    if x.ndim < 2:
        raise ShapeError(f"qr: expected a matrix or a batch of them, got shape {tuple(x.shape)}")
    if mode not in ("reduced", "complete"):
        raise ValueError(f"qr: mode must be 'reduced' or 'complete', got {mode!r}")
    q, r = xp.linalg.qr(x, mode=mode)
    return q, r


def _vector_rhs(a, b) -> bool:
    """PyTorch's rule: B is a vector (or a batch of them) where it has one dim, or A's shape
    without its last dim."""
    return b.ndim == 1 or tuple(b.shape) == tuple(a.shape[:-1])


@register("solve", promote=Promote.FLOAT)
def _solve(xp, a, b):
    """X with A X = B (batches broadcast; B a vector or a batch of vectors where it has A's
    shape without the last dim, as PyTorch decides); a singular A raises."""
    _square("solve", a)
    vector = _vector_rhs(a, b)
    rhs = b[..., None] if vector else b
    if rhs.shape[-2] != a.shape[-1]:
        raise ShapeError(f"solve: A of shape {tuple(a.shape)} does not fit B of shape {tuple(b.shape)}")
    try:
        x = xp.linalg.solve(a, rhs)
    except np.linalg.LinAlgError:
        raise ValueError("solve: the matrix A is singular") from None
    return x[..., 0] if vector else x


@register("slogdet", promote=Promote.FLOAT, num_outputs=2)
def _slogdet(xp, x):
    """(sign, log |det|) of each square matrix: the log stays finite where det under- or
    overflows; a singular matrix has sign 0 and log -inf."""
    _square("slogdet", x)
    sign, logabs = xp.linalg.slogdet(x)
    return sign.astype(x.dtype), logabs.astype(x.dtype)


@register("cholesky", promote=Promote.FLOAT)
def _cholesky(xp, x):
    """The lower triangular L with x = L L^T, reading x's lower triangle; raises where x is not
    positive definite."""
    _square("cholesky", x)
    try:
        return xp.linalg.cholesky(x)
    except np.linalg.LinAlgError:
        raise ValueError("cholesky: the input is not positive-definite") from None


@register("eigh", promote=Promote.FLOAT, num_outputs=2)
def _eigh(xp, x):
    """(eigenvalues ascending, eigenvectors as columns) of each symmetric matrix, reading its
    lower triangle."""
    _square("eigh", x)
    w, v = xp.linalg.eigh(x)
    return w, v


@register("cross", promote=Promote.COMMON)
def _cross(xp, a, b, dim):
    """Cross product of 3-vectors along `dim` (broadcasting the other dims)."""
    if a.shape[dim] != 3 or b.shape[dim] != 3:
        raise ShapeError(
            f"cross: dim {dim} must have size 3 in both inputs; got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return xp.cross(a, b, axis=dim)


@register("sort", num_outputs=2)
def _sort(xp, x, dim=-1, descending=False, stable=False):
    """(values, indices) sorted along `dim`; NaN sorts last (first when descending)."""
    if descending:
        # a stable descending sort keeps equal elements in their original order
        idx = xp.flip(xp.argsort(xp.flip(x, axis=dim), axis=dim, kind="stable"), axis=dim)
        idx = x.shape[dim] - 1 - idx if x.ndim else idx
    else:
        idx = xp.argsort(x, axis=dim, kind="stable")
    idx = idx.astype(np.int64, copy=False)
    return xp.take_along_axis(x, idx, axis=dim) if x.ndim else x.copy(), idx


@register("topk", num_outputs=2)
def _topk(xp, x, k, dim=-1, largest=True, sorted=True):
    """(values, indices) of the `k` largest (or smallest) elements along `dim`."""
    size = x.shape[dim] if x.ndim else 1
    if not 0 <= k <= size:
        raise ValueError(f"topk: k={k} is out of range for dimension {dim} of size {size}")
    values, idx = _sort(xp, x, dim, descending=largest, stable=True)
    key = (slice(None),) * (dim % max(x.ndim, 1)) + (slice(0, k),)
    return values[key], idx[key]


@register("unique", differentiable=False, num_outputs=3)
def _unique(xp, x, dim=None):
    """(sorted unique values, inverse indices, counts). Without `dim` elements are compared and
    the inverse has x's shape; with `dim`, whole slices along it are."""
    values, inverse, counts = xp.unique(x, return_inverse=True, return_counts=True, axis=dim)
    inverse = inverse.reshape(x.shape if dim is None else (x.shape[dim],))
    return values, inverse.astype(np.int64), counts.astype(np.int64)
