"""More of `torch.*`, built from graphc's ops: einsum, tensordot, kron, diagonal, roll, meshgrid,
cdist, the fused multiply-adds of optimizers, NaN-aware sums, and so on. Being compositions,
each is differentiable through autograd and captured by `graphc.script` like the ops it uses.

A few read the tensors' values to decide what to compute (bincount, multinomial, gcd/lcm,
the positions of cummax/cummin and masked_scatter): they run eagerly, and capturing them is a
TracingError; bincount, multinomial and gcd/lcm are not differentiable, as in PyTorch.
"""

from __future__ import annotations

import builtins
import math

import numpy as np

from graphc import _dispatch
from graphc._creation import arange, tensor, zeros
from graphc._dispatch import dispatch
from graphc._functions import (
    abs,
    cast,
    exp,
    isinf,
    isnan,
    log,
    log1p,
    matmul,
    maximum,
    minimum,
    nonzero,
    sqrt,
    sum,
    trunc,
    where,
)
from graphc._movement import cat, flip, slice_dim
from graphc._tensor import Tensor, _wrap_dim, get_default_dtype
from graphc.errors import ShapeError
from ir import dtypes
from ir.ops import OPS

# --- einsum ---


def einsum(equation: str, *operands) -> Tensor:
    """Sums of products of the operands' elements, as `equation` says: 'ij,jk->ik' is a matrix
    product, 'bij,bjk->bik' a batched one, 'ii->i' a diagonal, 'ij->' a sum, '...ij->...ji' a
    transpose over any leading dims. Without '->' the output has the labels that appear once,
    in alphabetical order. Dims of size 1 broadcast."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    subs = lhs.split(",")
    if len(subs) != len(operands):
        raise ValueError(
            f"einsum(): {len(subs)} operands in the equation {equation!r} but {len(operands)} tensors given"
        )
    parsed = [_parse(s, equation) for s in subs]
    spans = []  # the number of dims each operand's ellipsis stands for
    for (before, ellipsis, after), t, sub in zip(parsed, operands, subs, strict=True):
        letters = len(before) + len(after)
        if t.dim() < letters or (not ellipsis and t.dim() != letters):
            raise ShapeError(f"einsum(): the operand with subscripts {sub!r} has {t.dim()} dims")
        spans.append(t.dim() - letters if ellipsis else 0)
    # an ellipsis stands for the same dims in every operand, aligned on the right
    dots = [chr(0x100 + i) for i in range(builtins.max(spans, default=0))]
    labels = [
        [*before, *dots[len(dots) - n :], *after] for (before, _, after), n in zip(parsed, spans, strict=True)
    ]
    if arrow:
        before, ellipsis, after = _parse(rhs, equation)
        out = [*before, *(dots if ellipsis else []), *after]
        seen = {lab for ls in labels for lab in ls}
        for lab in out:
            if lab not in seen:
                raise ValueError(
                    f"einsum(): output subscript {lab} does not appear in the equation's operands"
                )
        if len(set(out)) != len(out):
            raise ValueError(f"einsum(): an output subscript appears more than once in {equation!r}")
    else:
        counts: dict[str, int] = {}
        for ls in labels:
            for lab in ls:
                counts[lab] = counts.get(lab, 0) + 1
        out = dots + sorted(lab for lab, n in counts.items() if n == 1 and lab not in dots)
    sizes: dict[str, int] = {}
    for i, (ls, t) in enumerate(zip(labels, operands, strict=True)):
        for lab, size in zip(ls, t.shape, strict=True):
            if sizes.get(lab, 1) != 1 and size not in (1, sizes[lab]):
                shown = "..." if lab in dots else lab
                raise ShapeError(
                    f"einsum(): subscript {shown} has size {size} for operand {i} which does not broadcast "
                    f"with previously seen size {sizes[lab]}"
                )
            if size != 1 or lab not in sizes:
                sizes[lab] = size
    terms = [_diagonals(t, ls) for t, ls in zip(operands, labels, strict=True)]
    result, result_labels = terms[0]
    for i, (t, ls) in enumerate(terms[1:], start=1):
        later = {lab for _, rest in terms[i + 1 :] for lab in rest}
        result, result_labels = _contract(result, result_labels, t, ls, later | set(out), sizes)
    extra = [d for d, lab in enumerate(result_labels) if lab not in out]
    if extra:
        result = sum(result, dim=extra)
        result_labels = [lab for lab in result_labels if lab in out]
    # dims of size 1 that broadcast against nothing left: grow them to the output's sizes
    result = result.permute(*[result_labels.index(lab) for lab in out]) if out else result
    wanted = tuple(sizes[lab] for lab in out)
    return result if tuple(result.shape) == wanted else result.expand(*wanted)


def _parse(sub: str, equation: str) -> tuple[str, bool, str]:
    """The letters before an ellipsis, whether there is one, and the letters after it."""
    before, dots, after = sub.partition("...")
    for c in before + after:
        if not (c.isascii() and c.isalpha()):
            raise ValueError(f"einsum(): invalid subscript {c!r} in {equation!r}: use letters a-z and A-Z")
    return before, bool(dots), after


def _diagonals(t: Tensor, labels: list[str]) -> tuple[Tensor, list[str]]:
    """`t` with a label that appears twice replaced by its diagonal (as the last dim)."""
    labels = list(labels)
    while len(set(labels)) != len(labels):
        lab = next(x for x in labels if labels.count(x) > 1)
        first = labels.index(lab)
        second = labels.index(lab, first + 1)
        t = diagonal(t, 0, first, second)
        labels = [x for i, x in enumerate(labels) if i not in (first, second)] + [lab]
    return t, labels


def _contract(a: Tensor, la: list, b: Tensor, lb: list, keep: set, sizes: dict) -> tuple[Tensor, list]:
    """a and b multiplied and summed over their shared labels that are not in `keep`."""
    # labels of one operand that nothing later reads: summed first
    gone = [d for d, lab in enumerate(la) if lab not in lb and lab not in keep]
    if gone:
        a, la = sum(a, dim=gone), [lab for d, lab in enumerate(la) if d not in gone]
    gone = [d for d, lab in enumerate(lb) if lab not in la and lab not in keep]
    if gone:
        b, lb = sum(b, dim=gone), [lab for d, lab in enumerate(lb) if d not in gone]
    batch = [lab for lab in la if lab in lb and lab in keep]
    summed = [lab for lab in la if lab in lb and lab not in keep]
    a_only = [lab for lab in la if lab not in lb]
    b_only = [lab for lab in lb if lab not in la]

    if len(summed) > 1 and _dispatch.tracer is not None:
        # while capturing, a symbolic size must not be multiplied into another: the matmul
        # sums over one dim, the others are summed after it
        batch, summed = batch + summed[:-1], summed[-1:]
        keep = keep | set(batch)
    nb = len(batch)
    # summed dims of size 1 in one operand broadcast: sum the other's over them instead
    for lab in list(summed):
        da, db = a.shape[la.index(lab)], b.shape[lb.index(lab)]
        if da != db:
            if da == 1:
                b = sum(b, dim=lb.index(lab), keepdim=True)
            else:
                a = sum(a, dim=la.index(lab), keepdim=True)
    order_a, order_b = batch + a_only + summed, batch + summed + b_only
    A = a.permute(*[la.index(lab) for lab in order_a]) if order_a != la else a
    B = b.permute(*[lb.index(lab) for lab in order_b]) if order_b != lb else b
    # a matmul of (*batch, *a's other dims, rows, k) by (*batch, 1.., k, columns): the dims of
    # `a` stay dims (a symbolic batch among them is never multiplied into another size)
    a_sizes = list(A.shape[nb : nb + len(a_only)])
    b_sizes = list(B.shape[nb + len(summed) :])
    lead, rows = (a_sizes[:-1], a_sizes[-1]) if a_sizes else ([], 1)
    k = _product(A.shape, range(nb + len(a_only), A.dim()))
    A = A.reshape(*A.shape[:nb], *lead, rows, k)
    B = B.reshape(
        *B.shape[:nb],
        *([1] * len(lead)),
        _product(B.shape, range(nb, nb + len(summed))),
        _product(B.shape, range(nb + len(summed), B.dim())),
    )
    product = matmul(A, B)
    return product.reshape(*product.shape[:nb], *a_sizes, *b_sizes), batch + a_only + b_only


def _product(shape, dims) -> int:
    n = 1
    for d in dims:
        n *= shape[d]
    return n


def tensordot(a: Tensor, b: Tensor, dims=2) -> Tensor:
    """Sums of products over the last `dims` dims of a and the first `dims` of b (an int), or
    over the dims paired in `dims` (two lists)."""
    if isinstance(dims, int):
        if dims < 0:
            raise ValueError(f"tensordot expects dims >= 0, but got dims={dims}")
        da, db = list(range(a.dim() - dims, a.dim())), list(range(dims))
    else:
        da, db = ([d] if isinstance(d, int) else list(d) for d in dims)
    da = [_wrap_dim(d, a.dim()) for d in da]
    db = [_wrap_dim(d, b.dim()) for d in db]
    if len(da) != len(db):
        raise ValueError(f"tensordot: both sides of dims must have the same length, got {da} and {db}")
    for x, y in zip(da, db, strict=True):
        if a.shape[x] != b.shape[y]:
            raise ShapeError(
                f"tensordot: contracted dimensions need to match, but first has size {a.shape[x]} in dim {x} "
                f"and second has size {b.shape[y]} in dim {y}"
            )
    free_a = [d for d in range(a.dim()) if d not in da]
    free_b = [d for d in range(b.dim()) if d not in db]
    A = a.permute(*free_a, *da).reshape(_product(a.shape, free_a), _product(a.shape, da))
    B = b.permute(*db, *free_b).reshape(_product(b.shape, db), _product(b.shape, free_b))
    return matmul(A, B).reshape(*[a.shape[d] for d in free_a], *[b.shape[d] for d in free_b])


def kron(input: Tensor, other: Tensor) -> Tensor:
    """The Kronecker product: every element of `input` times the whole of `other`."""
    rank = builtins.max(input.dim(), other.dim())
    sa = [1] * (rank - input.dim()) + list(input.shape)
    sb = [1] * (rank - other.dim()) + list(other.shape)
    # (a0, 1, a1, 1, ..) * (1, b0, 1, b1, ..) -> (a0 * b0, a1 * b1, ..)
    a = input.reshape(*[s for n in sa for s in (n, 1)])
    b = other.reshape(*[s for n in sb for s in (1, n)])
    return (a * b).reshape(*[x * y for x, y in zip(sa, sb, strict=True)])


# --- diagonals and rearrangements ---


def diagonal(input: Tensor, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """The diagonal of the matrices in dims (dim1, dim2), offset above (or below) the main one,
    as the last dim. A view of `input` where those dims are the last two of a contiguous tensor
    (writes to it reach `input`), else a copy."""
    d1, d2 = _wrap_dim(dim1, input.dim()), _wrap_dim(dim2, input.dim())
    if d1 == d2:
        raise ValueError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    x = input.movedim((d1, d2), (-2, -1)) if (d1, d2) != (input.dim() - 2, input.dim() - 1) else input
    n, m = x.shape[-2], x.shape[-1]
    length = builtins.max(0, builtins.min(n, m - offset) if offset >= 0 else builtins.min(n + offset, m))
    start = offset if offset >= 0 else -offset * m
    flat = x.reshape(*x.shape[:-2], n * m)
    if length == 0:
        return slice_dim(flat, flat.dim() - 1, 0, 0, 1)
    return slice_dim(flat, flat.dim() - 1, start, start + (length - 1) * (m + 1) + 1, m + 1)


def diag(input: Tensor, diagonal_: int = 0, **kwargs) -> Tensor:
    """A 1-D input: the square matrix with it on the `diagonal`; a 2-D input: its diagonal."""
    k = kwargs.pop("diagonal", diagonal_)
    if kwargs:
        raise TypeError(f"diag() got unexpected keyword arguments {sorted(kwargs)}")
    if input.dim() == 2:
        return diagonal(input, k)
    if input.dim() != 1:
        raise ShapeError(f"diag(): expected a 1-D or 2-D tensor, got shape {list(input.shape)}")
    return diag_embed(input, k)


def diag_embed(input: Tensor, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Tensor:
    """Matrices whose `offset` diagonal holds the last dim of `input` (in dims dim1, dim2)."""
    n = input.shape[-1]
    size = n + builtins.abs(offset)
    rows = arange(size, device=input.device)
    # (size, size, n): one where element j of the vector lands
    picks = arange(n, device=input.device)
    r = picks + builtins.max(-offset, 0)
    c = picks + builtins.max(offset, 0)
    place = (rows.reshape(size, 1, 1) == r.reshape(1, 1, n)) & (
        rows.reshape(1, size, 1) == c.reshape(1, 1, n)
    )
    out = (input.unsqueeze(-2).unsqueeze(-2) * place.to(input.dtype)).sum(-1)
    rank = out.dim()
    d1, d2 = _wrap_dim(dim1, rank), _wrap_dim(dim2, rank)
    return out.movedim((rank - 2, rank - 1), (d1, d2)) if (d1, d2) != (rank - 2, rank - 1) else out


def trace(input: Tensor) -> Tensor:
    """The sum of a matrix's main diagonal."""
    if input.dim() != 2:
        raise ShapeError(f"trace: expected a matrix, got shape {list(input.shape)}")
    return sum(diagonal(input))


def roll(input: Tensor, shifts, dims=None) -> Tensor:
    """Elements shifted along `dims` (the flattened tensor where None), wrapping around."""
    if dims is None:
        return roll(input.flatten(), shifts, 0).reshape(*input.shape)
    shifts = [shifts] if isinstance(shifts, int) else list(shifts)
    dims = [dims] if isinstance(dims, int) else list(dims)
    if len(shifts) != len(dims):
        raise ValueError(f"roll: shifts and dims must align, got {len(shifts)} shifts and {len(dims)} dims")
    out = input
    for s, d in zip(shifts, dims, strict=True):
        d = _wrap_dim(d, input.dim())
        n = input.shape[d]
        s = s % n if n else 0
        if s:
            out = cat([slice_dim(out, d, n - s, n, 1), slice_dim(out, d, 0, n - s, 1)], d)
    return out


def rot90(input: Tensor, k: int = 1, dims=(0, 1)) -> Tensor:
    """`input` rotated by 90 degrees k times, from the first of `dims` towards the second."""
    if len(dims) != 2:
        raise ValueError(f"rot90: expected two dims, got {dims}")
    d0, d1 = (_wrap_dim(d, input.dim()) for d in dims)
    if d0 == d1:
        raise ValueError(f"rot90: the two dims must differ, got {dims}")
    k %= 4
    if k == 1:
        return flip(input, [d1]).transpose(d0, d1)
    if k == 2:
        return flip(input, [d0, d1])
    if k == 3:
        return flip(input, [d0]).transpose(d0, d1)
    return input.clone()


def meshgrid(*tensors, indexing: str = "ij"):
    """Coordinate grids from 1-D tensors: with indexing 'ij' grid i varies along dim i; with
    'xy' the first two dims swap (matrix vs Cartesian indexing)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    for t in tensors:
        if t.dim() > 1:
            raise ShapeError(f"meshgrid: expected 0-D or 1-D tensors, got shape {list(t.shape)}")
    ts = [t.reshape(-1) for t in tensors]
    swap = indexing == "xy" and len(ts) >= 2
    if swap:
        ts[0], ts[1] = ts[1], ts[0]
    shape = [t.shape[0] for t in ts]
    grids = [
        t.reshape(*[-1 if j == i else 1 for j in range(len(ts))]).expand(*shape) for i, t in enumerate(ts)
    ]
    if swap:
        grids[0], grids[1] = grids[1], grids[0]
    return tuple(grids)


def atleast_1d(*tensors):
    return _atleast(tensors, 1)


def atleast_2d(*tensors):
    return _atleast(tensors, 2)


def atleast_3d(*tensors):
    return _atleast(tensors, 3)


def _atleast(tensors, rank):
    many = len(tensors) != 1 or isinstance(tensors[0], (list, tuple))
    ts = list(tensors[0]) if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)) else list(tensors)
    out = []
    for t in ts:
        if t.dim() >= rank:
            out.append(t)
        elif rank == 3 and t.dim() == 2:
            out.append(t.unsqueeze(-1))
        elif rank == 3 and t.dim() == 1:
            out.append(t.reshape(1, -1, 1))
        else:
            out.append(t.reshape(*([1] * (rank - builtins.max(t.dim(), 1))), *(t.shape or (1,))))
    return tuple(out) if many else out[0]


def column_stack(tensors) -> Tensor:
    """1-D tensors as columns (and 2-D ones as they are) side by side."""
    return cat([t.reshape(-1, 1) if t.dim() <= 1 else t for t in tensors], 1)


def dstack(tensors) -> Tensor:
    """Tensors stacked along a third dim (made at least 3-D first)."""
    return cat(list(atleast_3d(list(tensors))), 2)


def take(input: Tensor, index: Tensor) -> Tensor:
    """The elements of the flattened `input` at `index` (negative counts from the end)."""
    return input.reshape(-1)[index]


def tensor_split(input: Tensor, indices_or_sections, dim: int = 0):
    """`input` split along `dim` into n nearly equal parts (an int), or at the given indices."""
    d = _wrap_dim(dim, input.dim())
    n = input.shape[d]
    if isinstance(indices_or_sections, int):
        sections = indices_or_sections
        if sections <= 0:
            raise ValueError(f"tensor_split: number of sections must be greater than 0, got {sections}")
        big, rest = divmod(n, sections)
        bounds, start = [], 0
        for i in range(sections):
            stop = start + big + (1 if i < rest else 0)
            bounds.append((start, stop))
            start = stop
    else:
        cuts = [
            0,
            *[builtins.min(builtins.max(i if i >= 0 else i + n, 0), n) for i in indices_or_sections],
            n,
        ]
        bounds = [(cuts[i], builtins.max(cuts[i], cuts[i + 1])) for i in range(len(cuts) - 1)]
    return tuple(slice_dim(input, d, a, b, 1) for a, b in bounds)


# --- arithmetic ---


def clamp_min(input: Tensor, min) -> Tensor:
    return input.clamp(min=min)


def clamp_max(input: Tensor, max) -> Tensor:
    return input.clamp(max=max)


def addcmul(input: Tensor, tensor1: Tensor, tensor2: Tensor, *, value=1) -> Tensor:
    """input + value * tensor1 * tensor2."""
    return input + (tensor1 * tensor2 if value == 1 else value * tensor1 * tensor2)


def addcdiv(input: Tensor, tensor1: Tensor, tensor2: Tensor, *, value=1) -> Tensor:
    """input + value * tensor1 / tensor2."""
    if not tensor1.dtype.is_floating_point and not tensor2.dtype.is_floating_point:
        raise RuntimeError(
            "Integer division with addcdiv is no longer supported; use (input + value * tensor1 / tensor2)"
        )
    return input + (tensor1 / tensor2 if value == 1 else value * tensor1 / tensor2)


def baddbmm(input: Tensor, batch1: Tensor, batch2: Tensor, *, beta=1, alpha=1) -> Tensor:
    """beta * input + alpha * (batch1 @ batch2), batches of matrices."""
    if batch1.dim() != 3 or batch2.dim() != 3:
        raise ShapeError(f"baddbmm: expected 3-D batches, got {list(batch1.shape)} and {list(batch2.shape)}")
    product = matmul(batch1, batch2)
    product = product if alpha == 1 else product * alpha
    return product if beta == 0 else (input if beta == 1 else input * beta) + product


def rsub(input: Tensor, other, *, alpha=1) -> Tensor:
    """other - alpha * input."""
    return other - (input if alpha == 1 else alpha * input)


def frac(input: Tensor) -> Tensor:
    """The fractional part, with the sign of the input: x - trunc(x)."""
    return input - trunc(input)


def hypot(input: Tensor, other: Tensor) -> Tensor:
    """sqrt(input^2 + other^2), without overflow for large values."""
    a, b = abs(input), abs(other)
    big, small = maximum(a, b), minimum(a, b)
    ratio = where(big == 0, 0.0, small / where(big == 0, 1.0, big))
    return big * sqrt(1 + ratio * ratio)


def logaddexp(input: Tensor, other: Tensor) -> Tensor:
    """log(exp(input) + exp(other)), without overflow."""
    top = maximum(input, other)
    finite = where(isinf(top), 0.0, top).detach()  # (inf - inf would be NaN)
    return finite + log(exp(input - finite) + exp(other - finite))


def slogdet(input: Tensor):
    """(sign, log |det|) of each square matrix (graphc.linalg.slogdet)."""
    from graphc import linalg

    return linalg.slogdet(input)


def logdet(input: Tensor) -> Tensor:
    """log det of each square matrix: NaN where det < 0, -inf where it is 0."""
    sign, logabsdet = slogdet(input)
    return where(sign < 0, float("nan"), logabsdet)


def logcumsumexp(input: Tensor, dim: int) -> Tensor:
    """log(cumsum(exp(input))) along `dim`, exact for any range of values: a prefix scan of
    logaddexp (ceil(log2 n) steps, each combining every element with the one `step` before
    it). A cumsum of exp after subtracting one maximum would underflow to -inf before it."""
    if not input.dtype.is_floating_point:
        raise TypeError(f"logcumsumexp: expected a floating point tensor, got {input.dtype}")
    if input.dim() == 0:
        return input * 1
    d = _wrap_dim(dim, input.dim())
    n, step, out = input.shape[d], 1, input
    while step < n:
        combined = logaddexp(slice_dim(out, d, step, n, 1), slice_dim(out, d, 0, n - step, 1))
        out = cat([slice_dim(out, d, 0, step, 1), combined], d)
        step *= 2
    return out * 1 if out is input else out


def xlogy(input, other) -> Tensor:
    """input * log(other), 0 where input is 0 (and NaN where other is)."""
    if not isinstance(input, Tensor):
        input = tensor(input, dtype=get_default_dtype(), device=other.device)
    if not isinstance(other, Tensor):
        other = tensor(other, dtype=input.dtype if input.dtype.is_floating_point else get_default_dtype())
    # log(1) where input is 0: 0, with no 0 * -inf on the way (and no NaN gradient)
    return input * log(where((input == 0) & ~isnan(other), 1.0, other))


def logit(input: Tensor, eps: float | None = None) -> Tensor:
    """log(p / (1 - p)), p clamped to [eps, 1 - eps] where eps is given."""
    p = input if eps is None else input.clamp(eps, 1 - eps)
    return log(p) - log1p(-p)


def nan_to_num(input: Tensor, nan: float = 0.0, posinf: float | None = None, neginf: float | None = None):
    """NaN replaced by `nan`, +-inf by `posinf`/`neginf` (default: the dtype's largest and
    lowest finite values)."""
    if not input.dtype.is_floating_point:
        return input.clone()
    info = np.finfo(input.dtype.np)
    posinf = float(info.max) if posinf is None else posinf
    neginf = float(info.min) if neginf is None else neginf
    out = where(isnan(input), nan, input)
    out = where(out == float("inf"), posinf, out)
    return where(out == float("-inf"), neginf, out)


def nansum(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """The sum with NaN counted as 0."""
    x = where(isnan(input), 0.0, input) if input.dtype.is_floating_point else input
    if dtype is not None:
        x = cast(x, dtype)
    return sum(x, dim=dim, keepdim=keepdim) if dim is not None else sum(x)


def nanmean(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """The mean of the elements that are not NaN."""
    if not input.dtype.is_floating_point:
        raise TypeError(f"nanmean(): expected a floating point tensor, got {input.dtype}")
    kept = ~isnan(input)
    total = nansum(input, dim, keepdim, dtype=dtype)
    count = (
        sum(cast(kept, total.dtype), dim=dim, keepdim=keepdim)
        if dim is not None
        else sum(cast(kept, total.dtype))
    )
    return total / count


def diff(input: Tensor, n: int = 1, dim: int = -1, prepend=None, append=None) -> Tensor:
    """The n-th forward difference along `dim` (with `prepend`/`append` joined first)."""
    d = _wrap_dim(dim, input.dim())
    x = input
    if prepend is not None or append is not None:
        parts = [p for p in (prepend, x, append) if p is not None]
        x = cat([p if isinstance(p, Tensor) else tensor(p, dtype=x.dtype) for p in parts], d)
    for _ in range(n):
        size = x.shape[d]
        later, earlier = slice_dim(x, d, 1, size, 1), slice_dim(x, d, 0, builtins.max(size - 1, 0), 1)
        x = (later != earlier) if x.dtype == dtypes.bool_ else later - earlier
    return x


def cdist(x1: Tensor, x2: Tensor, p: float = 2.0, compute_mode: str | None = None) -> Tensor:
    """p-norm distances between the rows of x1 (.., P, M) and of x2 (.., R, M): (.., P, R)."""
    if x1.dim() < 2 or x2.dim() < 2 or x1.shape[-1] != x2.shape[-1]:
        raise ShapeError(
            f"cdist: expected (.., P, M) and (.., R, M) with the same M, got {list(x1.shape)} "
            f"and {list(x2.shape)}"
        )
    if p < 0:
        raise ValueError(f"cdist only supports non-negative p values, got {p}")
    delta = x1.unsqueeze(-2) - x2.unsqueeze(-3)  # (.., P, R, M)
    if p == 1:
        return abs(delta).sum(-1)
    if p == 0:
        return (delta != 0).to(x1.dtype).sum(-1)
    if math.isinf(p):
        return abs(delta).amax(-1)
    powered = (delta * delta).sum(-1) if p == 2 else (abs(delta) ** p).sum(-1)
    # (a zero distance, a point to itself, has gradient 0 as in PyTorch, not NaN)
    zero = powered == 0
    root = sqrt(where(zero, 1.0, powered)) if p == 2 else where(zero, 1.0, powered) ** (1.0 / p)
    return where(zero, 0.0, root)


def index_add(input: Tensor, dim: int, index: Tensor, source: Tensor, *, alpha=1) -> Tensor:
    """`input` with `alpha * source`'s slices along `dim` added at the positions in `index`
    (repeated positions add up)."""
    d = _wrap_dim(dim, input.dim())
    if index.dim() > 1 or source.dim() != input.dim() or index.numel() != source.shape[d]:
        raise ShapeError(
            f"index_add: index ({list(index.shape)}) must be 1-D with one entry per slice of source "
            f"({list(source.shape)}) along dim {dim}"
        )
    values = source if alpha == 1 else source * alpha
    positions = (False,) * d + (True,)
    return dispatch(
        OPS["index_put"], (input, values, index.reshape(-1)), {"positions": positions, "accumulate": True}
    )


def index_put(input: Tensor, indices, values, accumulate: bool = False) -> Tensor:
    """`input` with `values` written at `input[indices]` (added there, repeats adding up, with
    `accumulate`): `indices` is a tuple of integer or bool index tensors for the leading dims."""
    if not isinstance(indices, (tuple, list)) or not indices:
        raise TypeError(
            f"index_put: indices must be a non-empty tuple of tensors, got {type(indices).__name__}"
        )
    keys = []
    for k in indices:
        if not isinstance(k, Tensor):
            raise TypeError(f"index_put: indices must be tensors, got {type(k).__name__}")
        if k.dtype is dtypes.bool_:
            keys.extend(nonzero(k, as_tuple=True))
        elif k.dtype.is_floating_point:
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        else:
            keys.append(k)
    if len(keys) > input.dim():
        raise IndexError(f"index_put: {len(keys)} index tensors for a tensor of {input.dim()} dims")
    if not isinstance(values, Tensor):
        values = tensor(values, dtype=input.dtype, device=input.device)
    attrs = {"positions": (True,) * len(keys), "accumulate": bool(accumulate)}
    return dispatch(OPS["index_put"], (input, cast(values, input.dtype), *keys), attrs)


def scatter(
    input: Tensor, dim: int, index: Tensor, src=None, *, value=None, reduce: str | None = None
) -> Tensor:
    """`input` with the elements of `src` (or `value`) written where `index` says along `dim`:
    out[index[i][j]][j] = src[i][j] for dim 0; with reduce='add' they add up."""
    if (src is None) == (value is None):
        raise TypeError("scatter() takes one of src and value")
    if reduce not in (None, "add"):
        raise ValueError(
            f"scatter: reduce={reduce!r} is not supported (None or 'add'; scatter_reduce is not either)"
        )
    d = _wrap_dim(dim, input.dim())
    if index.dim() != input.dim():
        raise ShapeError(
            f"scatter: index has {index.dim()} dims but input has {input.dim()}; they must be equal"
        )
    if not isinstance(src, Tensor):
        src = tensor(value if src is None else src, dtype=input.dtype, device=input.device).expand(
            *index.shape
        )
    for k, n in enumerate(index.shape):  # src may be larger than index: its leading part is read
        if src.shape[k] < n:
            raise ShapeError(
                f"scatter: src of shape {list(src.shape)} is smaller than index {list(index.shape)}"
            )
        if src.shape[k] != n:
            src = slice_dim(src, k, 0, n, 1)
    # every element of index at its own coordinates, with dim d's replaced by the index
    grids = meshgrid(*[arange(n, device=input.device) for n in index.shape], indexing="ij")
    key = tuple(index if k == d else g for k, g in enumerate(grids))
    attrs = {"positions": (True,) * input.dim(), "accumulate": reduce == "add"}
    return dispatch(OPS["index_put"], (input, cast(src, input.dtype), *key), attrs)


def fmax(input: Tensor, other: Tensor) -> Tensor:
    """The larger of each pair, ignoring a NaN (NaN only where both are)."""
    return where(isnan(input), other, where(isnan(other), input, maximum(input, other)))


def fmin(input: Tensor, other: Tensor) -> Tensor:
    """The smaller of each pair, ignoring a NaN (NaN only where both are)."""
    return where(isnan(input), other, where(isnan(other), input, minimum(input, other)))


def sgn(input: Tensor) -> Tensor:
    from graphc._functions import sign

    return sign(input)


def signbit(input: Tensor) -> Tensor:
    """Whether each element's sign bit is set (-0.0 included)."""
    if not input.dtype.is_floating_point:
        return input < 0
    return where(input == 0, (1.0 / input) < 0, input < 0)


def heaviside(input: Tensor, values: Tensor) -> Tensor:
    """0 below zero, 1 above, `values` at zero."""
    return where(input == 0, values, cast(input > 0, input.dtype))


def float_power(input, exponent) -> Tensor:
    """input ** exponent computed in float64."""
    base = cast(input, dtypes.float64) if isinstance(input, Tensor) else tensor(input, dtype=dtypes.float64)
    power = cast(exponent, dtypes.float64) if isinstance(exponent, Tensor) else float(exponent)
    return base**power


def deg2rad(input: Tensor) -> Tensor:
    return input * (math.pi / 180.0)


def rad2deg(input: Tensor) -> Tensor:
    return input * (180.0 / math.pi)


def gcd(input: Tensor, other: Tensor) -> Tensor:
    """The greatest common divisor of integers, elementwise."""
    return _integers(np.gcd, input, other, "gcd")


def lcm(input: Tensor, other: Tensor) -> Tensor:
    """The least common multiple of integers, elementwise."""
    return _integers(np.lcm, input, other, "lcm")


def _integers(fn, a: Tensor, b: Tensor, name: str) -> Tensor:
    if a.dtype.is_floating_point or b.dtype.is_floating_point:
        raise TypeError(f"{name}: expected integer tensors, got {a.dtype} and {b.dtype}")
    return tensor(fn(_values(a), _values(b)), device=a.device)


def cummax(input: Tensor, dim: int):
    """The running maximum along `dim` and where it was (the latest position among equals;
    NaN propagates), as (values, indices); differentiable in the values."""
    return _running(input, dim, np.greater_equal, "cummax")


def cummin(input: Tensor, dim: int):
    """The running minimum along `dim` and where it was, as (values, indices)."""
    return _running(input, dim, np.less_equal, "cummin")


def _running(input: Tensor, dim: int, better, name: str):
    from graphc._functions import return_types

    d = _wrap_dim(dim, builtins.max(input.dim(), 1))
    x = np.moveaxis(_values(input).reshape(input.shape or (1,)), d, -1)
    index = np.zeros(x.shape, np.int64)
    if x.shape[-1]:
        best, at = x[..., 0].copy(), np.zeros(x.shape[:-1], np.int64)
        nan = np.isnan if x.dtype.kind == "f" else np.zeros_like
        for i in range(x.shape[-1]):
            v = x[..., i]
            take = better(v, best) | nan(v).astype(bool)  # (nothing compares better than a NaN)
            best, at = np.where(take, v, best), np.where(take, i, at)
            index[..., i] = at
    indices = tensor(np.moveaxis(index, -1, d).reshape(input.shape), device=input.device)
    values = input.gather(d, indices) if input.dim() else input.clone()
    return getattr(return_types, name)(values, indices)


def msort(input: Tensor) -> Tensor:
    """`input` sorted along its first dim."""
    from graphc._functions import sort

    return sort(input, 0).values


def index_fill(input: Tensor, dim: int, index: Tensor, value) -> Tensor:
    """`input` with the slices at `index` along `dim` set to `value`."""
    d = _wrap_dim(dim, builtins.max(input.dim(), 1))
    shape = list(input.shape)
    shape[d] = index.numel()
    fill = (
        value.to(input.dtype)
        if isinstance(value, Tensor)
        else tensor(value, dtype=input.dtype, device=input.device)
    )
    positions = (False,) * d + (True,)
    return dispatch(
        OPS["index_put"], (input, fill.expand(*shape), index.reshape(-1)), {"positions": positions}
    )


def index_copy(input: Tensor, dim: int, index: Tensor, source: Tensor) -> Tensor:
    """`input` with the slices at `index` along `dim` replaced by those of `source`."""
    d = _wrap_dim(dim, builtins.max(input.dim(), 1))
    positions = (False,) * d + (True,)
    return dispatch(
        OPS["index_put"], (input, cast(source, input.dtype), index.reshape(-1)), {"positions": positions}
    )


def masked_scatter(input: Tensor, mask: Tensor, source: Tensor) -> Tensor:
    """`input` with the elements where `mask` holds replaced by `source`'s, in order."""
    if mask.dtype != dtypes.bool_:
        raise TypeError(f"masked_scatter: expected a bool mask, got {mask.dtype}")
    where_ = np.flatnonzero(np.broadcast_to(_values(mask), tuple(input.shape)))
    if where_.size > source.numel():
        raise ShapeError(
            f"masked_scatter: the mask selects {where_.size} elements but source has {source.numel()}"
        )
    flat = input.reshape(-1)
    picked = slice_dim(source.reshape(-1), 0, 0, int(where_.size), 1)
    out = dispatch(
        OPS["index_put"],
        (flat, cast(picked, input.dtype), tensor(where_, device=input.device)),
        {"positions": (True,)},
    )
    return out.reshape(*input.shape)


def put(input: Tensor, index: Tensor, source: Tensor, accumulate: bool = False) -> Tensor:
    """`input` with the elements at the flat positions `index` set to (or, with `accumulate`,
    increased by) `source`'s."""
    flat = input.reshape(-1)
    n = flat.shape[0]
    at = where(index < 0, index + n, index).reshape(-1)
    attrs = {"positions": (True,), "accumulate": accumulate}
    out = dispatch(OPS["index_put"], (flat, cast(source, input.dtype).reshape(-1), at), attrs)
    return out.reshape(*input.shape)


def unfold(input: Tensor, dimension: int, size: int, step: int) -> Tensor:
    """Every window of `size` elements along `dimension`, `step` apart, as a new last dim (the
    windows along `dimension`)."""
    d = _wrap_dim(dimension, builtins.max(input.dim(), 1))
    n = input.shape[d] if input.dim() else 1
    if size > n or size < 0 or step <= 0:
        raise ShapeError(f"unfold: cannot take windows of {size} every {step} along a dim of size {n}")
    count = (n - size) // step + 1
    starts = np.arange(count) * step
    index = tensor((starts[:, None] + np.arange(size)[None, :]).reshape(-1), device=input.device)
    picked = input.index_select(d, index)  # (.., count * size, ..)
    shape = list(input.shape)
    shape[d : d + 1] = [count, size]
    return picked.reshape(*shape).movedim(d + 1, -1)


# --- data-dependent results (eager, not differentiable) ---


def _values(t: Tensor) -> np.ndarray:
    """The tensor's values on the host, through `numpy()`: while capturing, that is a
    TracingError naming the user's line, not a constant baked into the graph."""
    return t.detach().numpy(force=True)


def argwhere(input: Tensor) -> Tensor:
    """The indices of the nonzero elements, one row each."""
    return nonzero(input)


def isin(elements, test_elements, *, assume_unique: bool = False, invert: bool = False) -> Tensor:
    """Whether each element of `elements` is among `test_elements`."""
    if not isinstance(elements, Tensor):
        elements = tensor(elements)
    if not isinstance(test_elements, Tensor):
        test_elements = tensor(test_elements)
    found = (elements.reshape(*elements.shape, 1) == test_elements.reshape(-1)).any(-1)
    return ~found if invert else found


def bincount(input: Tensor, weights: Tensor | None = None, minlength: int = 0) -> Tensor:
    """How often each value 0, 1, .. occurs in the 1-D non-negative integer `input` (the sum of
    `weights` at its positions, where given)."""
    values = _values(input)
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise ShapeError(
            f"bincount only supports 1-d non-negative integral inputs, got {input.dtype}{list(input.shape)}"
        )
    if values.size and values.min() < 0:
        raise ValueError("bincount only supports 1-d non-negative integral inputs")
    w = None if weights is None else _values(weights)
    counts = np.bincount(values, weights=w, minlength=minlength)
    if w is None:
        return tensor(counts.astype(np.int64), device=input.device)
    dtype = weights.dtype if weights.dtype.is_floating_point else dtypes.float64
    return tensor(counts, dtype=dtype, device=input.device)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *, generator=None) -> Tensor:
    """`num_samples` indices per row of `input` (1-D or 2-D non-negative weights), drawn with
    probabilities proportional to them, with or without replacement."""
    from graphc._creation import default_generator

    probs = _values(input).astype(np.float64)
    if probs.ndim not in (1, 2):
        raise ShapeError(f"multinomial: prob_dist must be 1 or 2 dim, got {list(input.shape)}")
    if not np.all(np.isfinite(probs)) or (probs < 0).any():
        raise ValueError("multinomial: probability tensor contains either inf, nan or element < 0")
    rows = probs.reshape(-1, probs.shape[-1])
    if (rows.sum(1) <= 0).any():
        raise ValueError("multinomial: invalid multinomial distribution (sum of probabilities <= 0)")
    if not replacement and num_samples > rows.shape[1]:
        raise ValueError(
            f"multinomial: cannot sample n_sample ({num_samples}) > prob_dist.size(-1) ({rows.shape[1]}) "
            "samples without replacement"
        )
    if not replacement and num_samples > (rows > 0).sum(1).min():
        raise ValueError(
            "multinomial: invalid multinomial distribution (with replacement=False, fewer categories "
            "of nonzero probability than samples)"
        )
    gen = default_generator if generator is None else generator
    rng = np.random.default_rng(gen.next_seed())
    out = np.empty((rows.shape[0], num_samples), np.int64)
    for i, p in enumerate(rows):
        out[i] = rng.choice(p.size, size=num_samples, replace=replacement, p=p / p.sum())
    return tensor(out.reshape(*probs.shape[:-1], num_samples), device=input.device)


def tril_indices(row: int, col: int, offset: int = 0, *, dtype=None, device=None) -> Tensor:
    """The (2, N) coordinates of the lower triangle of a row x col matrix, row by row."""
    r, c = np.tril_indices(row, offset, col)
    return tensor(np.stack([r, c]).astype(np.int64), dtype=dtype or dtypes.int64, device=device)


def triu_indices(row: int, col: int, offset: int = 0, *, dtype=None, device=None) -> Tensor:
    """The (2, N) coordinates of the upper triangle of a row x col matrix, row by row."""
    r, c = np.triu_indices(row, offset, col)
    return tensor(np.stack([r, c]).astype(np.int64), dtype=dtype or dtypes.int64, device=device)


def median(input: Tensor, dim: int | None = None, keepdim: bool = False):
    """The lower median of all elements, or (values, indices) along `dim`."""
    from graphc._functions import return_types, sort

    if dim is None:
        flat = input.reshape(-1)
        return sort(flat).values[(flat.shape[0] - 1) // 2]
    d = _wrap_dim(dim, input.dim())
    values, indices = sort(input, d, stable=True)
    k = (input.shape[d] - 1) // 2
    v, i = values.select(d, k), indices.select(d, k)
    if keepdim:
        v, i = v.unsqueeze(d), i.unsqueeze(d)
    return return_types.median(v, i)


def clone(input: Tensor, *, memory_format=None) -> Tensor:
    """A copy of `input` that autograd connects to it."""
    return input.clone()


def detach(input: Tensor) -> Tensor:
    """`input`'s values, cut off from autograd (sharing memory)."""
    return input.detach()


def positive(input: Tensor) -> Tensor:
    """`input` itself (unary plus); not for bool tensors, as in PyTorch."""
    if input.dtype == dtypes.bool_:
        raise TypeError("The `+` operator, on a bool tensor is not supported.")
    return input


def kthvalue(input: Tensor, k: int, dim: int = -1, keepdim: bool = False):
    """(values, indices) of the k-th smallest element (k from 1) along `dim`."""
    from graphc._functions import return_types, sort

    d = _wrap_dim(dim, input.dim())
    size = input.shape[d] if input.dim() else 1
    if not 1 <= k <= size:
        raise IndexError(f"kthvalue(): selected number k={k} out of range for dimension {d} of size {size}")
    source = input.reshape(1) if input.dim() == 0 else input
    values, indices = sort(source, d, stable=True)
    v, i = values.select(d, k - 1), indices.select(d, k - 1)
    if keepdim and input.dim():
        v, i = v.unsqueeze(d), i.unsqueeze(d)
    return return_types.kthvalue(v, i)


_INTERPOLATIONS = ("linear", "lower", "higher", "midpoint", "nearest")


def quantile(
    input: Tensor, q, dim: int | None = None, keepdim: bool = False, *, interpolation: str = "linear"
):
    """The q-th quantiles (q in [0, 1], a number or a 1-D tensor of them, whose dim then comes
    first) of all elements or along `dim`; NaN where a NaN is among them."""
    return _quantile(input, q, dim, keepdim, interpolation, False, "quantile")


def nanquantile(
    input: Tensor, q, dim: int | None = None, keepdim: bool = False, *, interpolation: str = "linear"
):
    """`quantile` of the values that are not NaN (NaN where all are)."""
    return _quantile(input, q, dim, keepdim, interpolation, True, "nanquantile")


def _quantile(
    input: Tensor, q, dim, keepdim: bool, interpolation: str, ignore_nan: bool, name: str
) -> Tensor:
    from graphc._functions import floor, round, sort

    if interpolation not in _INTERPOLATIONS:
        raise ValueError(
            f"{name}() interpolation must be one of {', '.join(_INTERPOLATIONS)}, got {interpolation!r}"
        )
    if not input.dtype.is_floating_point:
        raise TypeError(f"{name}() input tensor must be either float or double dtype, got {input.dtype}")
    single = not isinstance(q, Tensor)
    levels = tensor([q] if single else q, dtype=input.dtype, device=input.device).reshape(-1)
    if isinstance(q, Tensor) and q.dim() > 1:
        raise ValueError(f"{name}() q must be a scalar or 1D tensor, got {q.dim()} dims")
    found = [float(q)] if single else _values(levels).tolist()
    if any(not 0 <= v <= 1 for v in found):
        raise ValueError(f"{name}() q values must be in the range [0, 1], got {found}")
    if input.numel() == 0:
        raise IndexError(f"{name}() input tensor must be non-empty")
    x = input.reshape(-1) if dim is None else input.movedim(_wrap_dim(dim, input.dim()), -1)
    if x.dim() == 0:
        x = x.reshape(1)
    ranked = sort(x, -1).values  # (NaN last)
    nan = isnan(x)
    count = (~nan).sum(-1, keepdim=True).to(x.dtype) if ignore_nan else x.shape[-1]
    position = (levels * (count - 1)).clamp_min(0) if ignore_nan else levels * (x.shape[-1] - 1)
    position = position.expand(*x.shape[:-1], levels.shape[0])
    below = floor(position)
    if interpolation in ("lower", "higher", "nearest"):
        at = {"lower": below, "higher": below + (position > below).to(x.dtype), "nearest": round(position)}
        out = ranked.gather(-1, at[interpolation].to(dtypes.int64))
    else:
        low = ranked.gather(-1, below.to(dtypes.int64))
        high = ranked.gather(-1, (below + (position > below).to(x.dtype)).to(dtypes.int64))
        weight = position - below if interpolation == "linear" else 0.5
        out = low + (high - low) * weight
    if not ignore_nan:  # any NaN makes the quantile NaN
        out = where(nan.any(-1, keepdim=True), float("nan"), out)
    out = out.movedim(-1, 0)  # (q, ...)
    if keepdim:
        kept = [1] * input.dim() if dim is None else list(input.shape)
        if dim is not None:
            kept[_wrap_dim(dim, input.dim())] = 1
        out = out.reshape(levels.shape[0], *kept)
    return out[0] if single else out


def searchsorted(
    sorted_sequence: Tensor, input, *, out_int32: bool = False, right: bool = False, side=None, sorter=None
) -> Tensor:
    """Where each value of `input` would go in the last dim of `sorted_sequence` to keep it
    sorted (the first such place, or the last with right=True or side='right'); a sequence
    of several dims holds one sorted row per leading index of `input`."""
    if side is not None:
        if side not in ("left", "right"):
            raise ValueError(f"searchsorted(): side can only be 'left' or 'right' but got {side!r}")
        if right and side == "left":
            raise ValueError(
                "searchsorted(): side and right can't be set to opposites, "
                "got side of left while right was True"
            )
        right = side == "right"
    sequence = _values(sorted_sequence)
    if sorter is not None:
        sequence = np.take_along_axis(sequence, _values(sorter), -1)
    scalar = not isinstance(input, Tensor)
    values = np.asarray(input) if scalar else _values(input)
    how = "right" if right else "left"
    if sequence.ndim <= 1:
        out = np.searchsorted(sequence.reshape(-1), values, side=how)
    else:
        if values.shape[:-1] != sequence.shape[:-1]:
            raise ShapeError(
                "searchsorted(): boundaries tensor should be 1 dimension or the first N-1 dimensions of "
                f"boundaries tensor and input value tensor must match, but we got boundaries tensor "
                f"{list(sequence.shape)} and input value tensor {list(values.shape)}"
            )
        rows, flat = sequence.reshape(-1, sequence.shape[-1]), values.reshape(-1, values.shape[-1])
        out = np.stack([np.searchsorted(r, v, side=how) for r, v in zip(rows, flat, strict=True)])
        out = out.reshape(values.shape)
    device = sorted_sequence.device
    return tensor(out.astype(np.int32 if out_int32 else np.int64), device=device)


def bucketize(input, boundaries: Tensor, *, out_int32: bool = False, right: bool = False) -> Tensor:
    """The index of the bucket of each value of `input` among the 1-D sorted `boundaries`:
    boundaries[i-1] < x <= boundaries[i] (with right=True: boundaries[i-1] <= x < boundaries[i])."""
    if boundaries.dim() != 1:
        raise ShapeError(
            f"bucketize(): boundaries tensor must be 1 dimension, but got dim({boundaries.dim()})"
        )
    return searchsorted(boundaries, input, out_int32=out_int32, right=right)


def copysign(input, other) -> Tensor:
    """|input| with the sign of `other` (its sign bit: -0.0 counts as negative), in floats."""
    if not isinstance(input, Tensor):
        input = tensor(input)
    if not input.dtype.is_floating_point:
        input = input.to(get_default_dtype())
    negative = signbit(other if isinstance(other, Tensor) else tensor(float(other)))
    return where(negative, -abs(input), abs(input))


def cartesian_prod(*tensors) -> Tensor:
    """Every combination of one element of each 1-D tensor, one row each."""
    from graphc._movement import stack

    if len(tensors) == 1:
        return tensors[0]
    grids = meshgrid(*tensors, indexing="ij")
    return stack([g.reshape(-1) for g in grids], 1)


def combinations(input: Tensor, r: int = 2, with_replacement: bool = False) -> Tensor:
    """The r-element combinations of the 1-D `input`'s elements, one row each, in the order
    of itertools.combinations (with_replacement: combinations_with_replacement)."""
    import itertools

    from graphc._movement import stack

    if input.dim() != 1:
        raise ShapeError(f"combinations(): expects a 1D vector, but got {input.dim()}D")
    if r < 0:
        raise ValueError(f"combinations(): r must be non-negative, got {r}")
    pick = itertools.combinations_with_replacement if with_replacement else itertools.combinations
    rows = list(pick(range(input.shape[0]), r))
    if not rows or r == 0:
        return input.new_empty((0,) if r == 0 else (0, r))
    index = tensor(np.array(rows, dtype=np.int64), device=input.device)
    return stack([input[index[:, j]] for j in range(r)], 1)


def vander(x: Tensor, N: int | None = None, increasing: bool = False) -> Tensor:  # noqa: N803 (PyTorch's name)
    """Columns of powers of the 1-D `x`: x^(N-1), ..., x, 1 (increasing: 1, x, ...)."""
    if x.dim() != 1:
        raise ShapeError(f"x must be a one-dimensional tensor, got {x.dim()} dims")
    n = x.shape[0] if N is None else N
    if n < 0:
        raise ValueError(f"N must be non-negative, got {n}")
    powers = arange(n, device=x.device)
    if not increasing:
        powers = flip(powers, (0,))
    base = x if x.dtype.is_floating_point or x.dtype == dtypes.int64 else x.to(dtypes.int64)
    return base.unsqueeze(-1) ** powers


def trapezoid(y: Tensor, x: Tensor | None = None, *, dx=None, dim: int = -1) -> Tensor:
    """The integral of y along `dim` by the trapezoidal rule, at the points `x` (spaced `dx`
    apart where not given, 1 by default)."""
    return _trapezoids(y, x, dx, dim, cumulative=False)


def cumulative_trapezoid(y: Tensor, x: Tensor | None = None, *, dx=None, dim: int = -1) -> Tensor:
    """The running integral of y along `dim` by the trapezoidal rule (one element fewer)."""
    return _trapezoids(y, x, dx, dim, cumulative=True)


def _trapezoids(y: Tensor, x, dx, dim: int, cumulative: bool) -> Tensor:
    if x is not None and dx is not None:
        raise TypeError("trapezoid(): pass either the sample points x or their spacing dx, not both")
    d = _wrap_dim(dim, y.dim())
    n = y.shape[d]
    mean = (slice_dim(y, d, 1, n, 1) + slice_dim(y, d, 0, max(n - 1, 0), 1)) * 0.5
    if x is None:
        areas = mean * (1.0 if dx is None else dx)
    else:
        if x.dim() == 1:
            if x.shape[0] != n:
                raise ShapeError(f"trapezoid(): x has {x.shape[0]} points but y has {n} along dim {d}")
            x = x.reshape(*([1] * d), n, *([1] * (y.dim() - d - 1)))
            xd = d
        else:
            xd = _wrap_dim(dim, x.dim())
        steps = slice_dim(x, xd, 1, x.shape[xd], 1) - slice_dim(x, xd, 0, max(x.shape[xd] - 1, 0), 1)
        areas = mean * steps
    from graphc._functions import cumsum

    return cumsum(areas, d) if cumulative else sum(areas, d)


def cov(input: Tensor, *, correction: int = 1, fweights=None, aweights=None) -> Tensor:
    """The covariance of the variables in the rows of `input` (observations in columns)."""
    if fweights is not None or aweights is not None:
        raise ValueError("cov: fweights and aweights are not supported")
    x = input.reshape(1, -1) if input.dim() < 2 else input
    if x.dim() > 2:
        raise ShapeError(f"cov(): expected input to have two or fewer dimensions, got {input.dim()}")
    if not x.dtype.is_floating_point:
        x = cast(x, get_default_dtype())
    centered = x - x.mean(1, keepdim=True)
    out = matmul(centered, centered.t())
    out = out / builtins.max(x.shape[1] - correction, 0)
    return out.reshape(()) if input.dim() < 2 else out


def corrcoef(input: Tensor) -> Tensor:
    """Pearson's correlation coefficients of the variables in the rows of `input`."""
    c = cov(input)
    if c.dim() == 0:
        return c / c
    d = sqrt(diagonal(c))
    return (c / d.unsqueeze(1) / d.unsqueeze(0)).clamp(-1, 1)


def block_diag(*tensors) -> Tensor:
    """The tensors (scalars, vectors as rows, matrices) along the diagonal of one matrix."""
    mats = [t.reshape(1, 1) if t.dim() == 0 else t.reshape(1, -1) if t.dim() == 1 else t for t in tensors]
    for t in mats:
        if t.dim() != 2:
            raise ShapeError(f"block_diag: input tensors must have 2 or fewer dimensions, got {t.dim()}")
    if not mats:
        return zeros(1, 0)
    width = builtins.sum(t.shape[1] for t in mats)
    rows, left = [], 0
    for t in mats:
        pad_left = zeros(t.shape[0], left, dtype=t.dtype, device=t.device)
        pad_right = zeros(t.shape[0], width - left - t.shape[1], dtype=t.dtype, device=t.device)
        rows.append(cat([pad_left, t, pad_right], 1))
        left += t.shape[1]
    return cat(rows, 0)


__all__ = [
    "logcumsumexp",
    "logdet",
    "slogdet",
    "bucketize",
    "clone",
    "detach",
    "positive",
    "cartesian_prod",
    "combinations",
    "copysign",
    "cumulative_trapezoid",
    "kthvalue",
    "nanquantile",
    "quantile",
    "searchsorted",
    "trapezoid",
    "vander",
    "cummax",
    "cummin",
    "deg2rad",
    "float_power",
    "fmax",
    "fmin",
    "gcd",
    "heaviside",
    "index_copy",
    "index_fill",
    "index_put",
    "lcm",
    "masked_scatter",
    "msort",
    "rad2deg",
    "sgn",
    "signbit",
    "addcdiv",
    "addcmul",
    "argwhere",
    "atleast_1d",
    "atleast_2d",
    "atleast_3d",
    "baddbmm",
    "bincount",
    "block_diag",
    "cdist",
    "clamp_max",
    "clamp_min",
    "column_stack",
    "corrcoef",
    "cov",
    "diag",
    "diag_embed",
    "diagonal",
    "diff",
    "dstack",
    "einsum",
    "frac",
    "hypot",
    "index_add",
    "isin",
    "kron",
    "logaddexp",
    "logit",
    "median",
    "meshgrid",
    "multinomial",
    "nan_to_num",
    "nanmean",
    "nansum",
    "roll",
    "rot90",
    "rsub",
    "scatter",
    "take",
    "tensor_split",
    "tensordot",
    "tril_indices",
    "triu_indices",
    "xlogy",
]
