"""`graphc.linalg`: PyTorch's linear-algebra namespace over graphc's ops.

>>> graphc.linalg.inv(graphc.eye(2) * 2)
tensor([[0.5000, 0.0000],
        [0.0000, 0.5000]])
"""

from __future__ import annotations

import math
from collections import namedtuple

from graphc import _functions as F
from graphc._dispatch import dispatch
from graphc._tensor import Tensor
from ir.ops import OPS

SVD = namedtuple("SVD", "U S Vh")
QR = namedtuple("QR", "Q R")
SlogDet = namedtuple("SlogDet", "sign logabsdet")
EigH = namedtuple("EigH", "eigenvalues eigenvectors")


def inv(A: Tensor) -> Tensor:
    """Inverse of a square matrix (or of each in a batch)."""
    return F.inverse(A)


def det(A: Tensor) -> Tensor:
    """Determinant of a square matrix (or of each in a batch)."""
    return F.det(A)


def solve(A: Tensor, B: Tensor, *, left: bool = True) -> Tensor:
    """X with A X = B (left=False: X A = B); B is a vector, or a batch of vectors, where it has
    one dim or A's shape without the last dim. A singular A raises ValueError."""
    if not left:
        return solve(A.mT, B.mT).mT
    return dispatch(OPS["solve"], (A, B), name="LinalgSolveExBackward0")


def slogdet(A: Tensor) -> SlogDet:
    """(sign, log |det A|): the log stays finite where det itself would under- or overflow."""
    sign, logabsdet = dispatch(OPS["slogdet"], (A,), name="LinalgSlogdetBackward0")
    return SlogDet(sign, logabsdet)


def cholesky(A: Tensor, *, upper: bool = False) -> Tensor:
    """L (lower triangular) with A = L L^T, from A's lower triangle (upper=True: L^T)."""
    low = dispatch(OPS["cholesky"], (A,), name="LinalgCholeskyExBackward0")
    return low.mT if upper else low


def eigh(A: Tensor, UPLO: str = "L") -> EigH:
    """Eigenvalues (ascending) and eigenvectors (columns) of symmetric A, from its lower
    triangle (UPLO='U': the upper one)."""
    if UPLO not in ("L", "U"):
        raise ValueError(f"eigh: UPLO must be 'L' or 'U', got {UPLO!r}")
    w, v = dispatch(OPS["eigh"], (A if UPLO == "L" else A.mT,), name="LinalgEighBackward0")
    return EigH(w, v)


def eigvalsh(A: Tensor, UPLO: str = "L") -> Tensor:
    """The eigenvalues of symmetric A, ascending."""
    return eigh(A, UPLO).eigenvalues


def svd(A: Tensor, full_matrices: bool = True) -> SVD:
    """(U, S, Vh) with A = U diag(S) Vh (note: Vh, where `graphc.svd` returns V)."""
    u, s, vh = dispatch(OPS["svd"], (A,), {"full_matrices": full_matrices}, name="LinalgSvdBackward0")
    return SVD(u, s, vh)


def qr(A: Tensor, mode: str = "reduced") -> QR:
    """(Q, R) with A = Q R, Q's columns orthonormal, R upper triangular (the diagonal's signs
    LAPACK's, as PyTorch's). For A (*, m, n) and k = min(m, n): mode 'reduced' gives Q (*, m,
    k) and R (*, k, n); 'complete' Q (*, m, m) and R (*, m, n); 'r' an empty Q and the reduced
    R (which, unlike PyTorch's, is differentiable)."""
    if mode not in ("reduced", "complete", "r"):
        raise ValueError(f"qr: mode must be 'reduced', 'complete' or 'r', got {mode!r}")
    attrs = {"mode": "complete" if mode == "complete" else "reduced"}
    q, r = dispatch(OPS["qr"], (A,), attrs, name="LinalgQrBackward0")
    if mode == "r":
        q = q.new_zeros(0)
    return QR(q, r)


def svdvals(A: Tensor) -> Tensor:
    """The singular values of A, descending."""
    return svd(A, full_matrices=False).S


def cross(input: Tensor, other: Tensor, *, dim: int = -1) -> Tensor:
    """Cross product of 3-vectors along `dim` (default the last)."""
    return F.cross(input, other, dim)


def vector_norm(x: Tensor, ord=2, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """The `ord`-norm of x as a vector (over `dim`, or all elements)."""
    return F.norm(x, ord, dim, keepdim, dtype)


def matrix_norm(A: Tensor, ord="fro", dim=(-2, -1), keepdim: bool = False) -> Tensor:
    """Frobenius ('fro') or nuclear ('nuc') norm of matrices over `dim`."""
    if ord == "fro":
        return F.norm(A, "fro", dim, keepdim)
    if ord == "nuc":
        if tuple(d % A.dim() for d in dim) != (A.dim() - 2, A.dim() - 1):
            A = A.movedim(dim, (-2, -1))
        out = F.sum(svdvals(A), -1)
        return out.unsqueeze(-1).unsqueeze(-1) if keepdim else out
    raise ValueError(f"matrix_norm: unsupported ord {ord!r}; expected 'fro' or 'nuc'")


def norm(A: Tensor, ord=None, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """A vector norm (1-D input or an int `dim`) or a matrix norm (2-D input or two dims)."""
    if dtype is not None:
        A = F.cast(A, dtype)
    if ord is None:
        return F.norm(A, 2, dim, keepdim)
    if isinstance(ord, str):
        return matrix_norm(A, ord, (-2, -1) if dim is None else dim, keepdim)
    if ord in (math.inf, -math.inf) or isinstance(ord, (int, float)):
        return vector_norm(A, ord, dim, keepdim)
    raise ValueError(f"linalg.norm: unsupported ord {ord!r}")


def matmul(input: Tensor, other: Tensor) -> Tensor:
    return F.matmul(input, other)
