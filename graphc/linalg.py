"""`graphc.linalg`: PyTorch's linear-algebra namespace over graphc's ops.

>>> graphc.linalg.inv(graphc.eye(2) * 2)
tensor([[0.5000, 0.0000],
        [0.0000, 0.5000]])
"""

from __future__ import annotations

import math
from collections import namedtuple

from graphc import _functions as F
from graphc._creation import ones_like, zeros_like
from graphc._dispatch import dispatch
from graphc._info import finfo
from graphc._movement import stack
from graphc._tensor import Tensor
from graphc.errors import ShapeError
from ir.ops import OPS

SVD = namedtuple("SVD", "U S Vh")
QR = namedtuple("QR", "Q R")
Lstsq = namedtuple("Lstsq", "solution residuals rank singular_values")
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
    """The norm of matrices over `dim`: Frobenius ('fro'), nuclear ('nuc'), the largest or
    smallest singular value (2, -2), the largest or smallest column (1, -1) or row (inf, -inf)
    sum of absolute values."""
    if ord == "fro":
        return F.norm(A, "fro", dim, keepdim)
    if ord not in ("nuc", 2, -2, 1, -1, math.inf, -math.inf):
        raise ValueError(
            f"matrix_norm: unsupported ord {ord!r}; expected 'fro', 'nuc', 2, -2, 1, -1, inf or -inf"
        )
    dims = tuple(d % A.dim() for d in dim)
    if dims != (A.dim() - 2, A.dim() - 1):
        A = A.movedim(dim, (-2, -1))
    if ord in ("nuc", 2, -2):
        s = svdvals(A)
        out = F.sum(s, -1) if ord == "nuc" else s[..., 0] if ord == 2 else s[..., -1]
    else:
        sums = F.sum(A.abs(), -2 if ord in (1, -1) else -1)
        out = F.amax(sums, -1) if ord > 0 else F.amin(sums, -1)
    if keepdim:
        for d in sorted(dims):
            out = out.unsqueeze(d)
    return out


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


def matrix_power(A: Tensor, n: int) -> Tensor:
    """A multiplied by itself n times (by repeated squaring); n = 0 gives identities, n < 0
    powers of the inverse."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"matrix_power: n must be an int, got {type(n).__name__}")
    if A.dim() < 2 or A.shape[-1] != A.shape[-2]:
        raise ShapeError(f"matrix_power: expected a batch of square matrices, got shape {list(A.shape)}")
    if n == 0:
        from graphc._creation import eye

        return eye(A.shape[-1], dtype=A.dtype, device=A.device).expand(*A.shape) + A * 0
    base, result = (inv(A) if n < 0 else A), None
    n = abs(n)
    while n:
        if n & 1:
            result = base if result is None else F.matmul(result, base)
        n >>= 1
        if n:
            base = F.matmul(base, base)
    return result


def multi_dot(tensors) -> Tensor:
    """The product of the matrices in order, multiplied in the order that costs the fewest
    multiplications (the matrix-chain order); the first may be a vector (a row), the last a
    vector (a column), and the result then drops that dim."""
    tensors = list(tensors)
    if len(tensors) < 2:
        raise ValueError(f"multi_dot: expected at least 2 tensors, got {len(tensors)}")
    first_vector, last_vector = tensors[0].dim() == 1, tensors[-1].dim() == 1
    if first_vector:
        tensors[0] = tensors[0].unsqueeze(0)
    if last_vector:
        tensors[-1] = tensors[-1].unsqueeze(-1)
    for i, t in enumerate(tensors):
        if t.dim() != 2:
            raise ShapeError(
                f"multi_dot: tensor {i} must be 2-D (the first and last may be 1-D), got {list(t.shape)}"
            )
    dims = [tensors[0].shape[0]] + [t.shape[1] for t in tensors]
    count = len(tensors)
    cost = [[0] * count for _ in range(count)]
    split = [[0] * count for _ in range(count)]
    for length in range(1, count):
        for i in range(count - length):
            j = i + length
            cost[i][j] = math.inf
            for k in range(i, j):
                c = cost[i][k] + cost[k + 1][j] + dims[i] * dims[k + 1] * dims[j + 1]
                if c < cost[i][j]:
                    cost[i][j], split[i][j] = c, k

    def product(i: int, j: int) -> Tensor:
        if i == j:
            return tensors[i]
        k = split[i][j]
        return F.matmul(product(i, k), product(k + 1, j))

    out = product(0, count - 1)
    if first_vector:
        out = out.squeeze(0)
    if last_vector:
        out = out.squeeze(-1)
    return out


def vecdot(x: Tensor, y: Tensor, *, dim: int = -1) -> Tensor:
    """The dot product of x and y along `dim` (broadcasting the other dims)."""
    return F.sum(x * y, dim)


def _cutoff(s: Tensor, shape, atol, rtol) -> Tensor:
    """The singular values at or below which a matrix's are taken for zero: max(atol, rtol *
    the largest), rtol max(m, n) * eps by default (PyTorch's rule)."""
    if rtol is None:  # (zero where atol is given and positive)
        positive_atol = atol is not None and (isinstance(atol, Tensor) or atol > 0)
        rtol = 0.0 if positive_atol else max(shape[-2:]) * finfo(s.dtype).eps
    largest = F.amax(s, -1, keepdim=True) if s.shape[-1] else s.new_zeros(*s.shape[:-1], 1)
    cut = largest * rtol
    if atol is not None:
        cut = F.maximum(cut, atol if isinstance(atol, Tensor) else cut.new_full((), float(atol)))
    return cut


def pinv(A: Tensor, *, atol=None, rtol=None, hermitian: bool = False) -> Tensor:
    """The Moore-Penrose pseudo-inverse, through the SVD: singular values at or below
    max(atol, rtol * the largest) count as zero (rtol max(m, n) * eps by default)."""
    u, s, vh = svd(A, full_matrices=False)
    keep = s > _cutoff(s, A.shape, atol, rtol)
    inverse = F.where(keep, 1.0 / F.where(keep, s, ones_like(s)), zeros_like(s))
    return F.matmul(vh.mT * inverse.unsqueeze(-2), u.mT)


def matrix_rank(A: Tensor, *, atol=None, rtol=None, hermitian: bool = False) -> Tensor:
    """The number of singular values above max(atol, rtol * the largest), as int64."""
    s = svdvals(A)
    return F.sum(s > _cutoff(s, A.shape, atol, rtol), -1)


def lstsq(A: Tensor, B: Tensor, rcond=None, *, driver=None) -> Lstsq:
    """The X minimising ||A X - B|| (the pseudo-inverse's: the least-norm one where A is rank
    deficient; singular values at or below rcond times the largest count as zero), with
    PyTorch's other fields as its drivers give them (default 'gelsy'): the squared residual
    norms where A has more rows than columns and full rank (not for 'gelsy'), the rank (not
    for 'gels') and the singular values ('gelsd' and 'gelss'); empty tensors otherwise."""
    driver = driver or "gelsy"
    if driver not in ("gels", "gelsy", "gelsd", "gelss"):
        raise ValueError(f"lstsq: driver must be one of gels, gelsy, gelsd, gelss; got {driver!r}")
    vector = B.dim() == A.dim() - 1
    rhs = B.unsqueeze(-1) if vector else B
    s = svdvals(A)
    rank = F.sum(s > _cutoff(s, A.shape, None, rcond), -1)
    solution = F.matmul(pinv(A, rtol=rcond), rhs)
    m, n = A.shape[-2:]
    residuals = A.new_zeros(0)
    if m > n and driver != "gelsy" and bool((rank == n).all()):
        residuals = F.sum((F.matmul(A, solution) - rhs) ** 2, -2)
    return Lstsq(
        solution.squeeze(-1) if vector else solution,
        residuals,
        rank if driver != "gels" else rank.new_zeros(0),
        s if driver in ("gelsd", "gelss") else A.new_zeros(0),
    )


def solve_triangular(
    A: Tensor, B: Tensor, *, upper: bool, left: bool = True, unitriangular: bool = False
) -> Tensor:
    """X with A X = B (left=False: X A = B) for triangular A: only A's upper (or lower)
    triangle is read, its diagonal taken as ones where unitriangular."""
    tri = A.triu() if upper else A.tril()
    if unitriangular:
        from graphc._creation import eye

        ones = eye(A.shape[-1], dtype=A.dtype, device=A.device)
        tri = tri * (1 - ones) + ones
    if not left:
        return solve(tri.mT, B.mT).mT
    return dispatch(OPS["solve"], (tri, B), name="LinalgSolveTriangularBackward0")


def cond(A: Tensor, p=None) -> Tensor:
    """The condition number: the largest singular value over the smallest (p None or 2; -2
    the inverse), or norm(A, p) * norm(inv(A), p) for 'fro', 'nuc', inf, -inf, 1, -1."""
    if p in (None, 2, -2):
        s = svdvals(A)
        ratio = s[..., 0] / s[..., -1]
        return 1.0 / ratio if p == -2 else ratio
    return matrix_norm(A, p) * matrix_norm(inv(A), p)


def diagonal(A: Tensor, *, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Tensor:
    """The diagonal of each matrix (over the last two dims by default)."""
    return A.diagonal(offset, dim1, dim2)


def vander(x: Tensor, *, N: int | None = None) -> Tensor:
    """The Vandermonde matrix of x's last dim: columns x^0, x^1, ..., x^(N-1) (increasing
    powers, as torch.linalg.vander; N defaults to x's length)."""
    n = x.shape[-1] if N is None else N
    if n < 1:
        raise ValueError(f"vander: N must be at least 1, got {n}")
    columns = [ones_like(x)]
    for _ in range(1, n):
        columns.append(columns[-1] * x)
    return stack(columns, -1)
