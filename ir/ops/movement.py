"""Movement ops: reshaping, reordering, slicing, joining and gathering elements.

Ops marked `view=True` return a view of their input where numpy can (eager tensors then share
storage and a version counter, as PyTorch views do).
"""

from __future__ import annotations

import numpy as np

from ir.errors import ShapeError
from ir.ops.registry import Promote, register


@register("reshape", view=True)
def _reshape(xp, x, shape):
    """`x` with a new shape of the same size (-1 infers one dim). A view where possible."""
    try:
        return xp.reshape(x, shape)
    except ValueError:
        raise ShapeError(
            f"reshape: shape {tuple(shape)} is invalid for input of size {x.size} "
            f"(input shape {tuple(x.shape)})"
        ) from None


@register("permute", view=True)
def _permute(xp, x, dims):
    """`x` with its dims reordered: output dim i is input dim `dims[i]`."""
    return xp.transpose(x, dims)


@register("expand", view=True)
def _expand(xp, x, shape):
    """`x` broadcast to `shape` without copying (a read-only view)."""
    try:
        return xp.broadcast_to(x, shape)
    except ValueError:
        raise ShapeError(
            f"expand: the shape {tuple(x.shape)} cannot be expanded to {tuple(shape)} "
            "(only dims of size 1 grow)"
        ) from None


@register("squeeze", view=True)
def _squeeze(xp, x, dims):
    """`x` without the given dims, each of which has size 1."""
    return xp.squeeze(x, axis=tuple(dims)) if dims else x.reshape(x.shape)


@register("unsqueeze", view=True)
def _unsqueeze(xp, x, dim):
    """`x` with a new dim of size 1 at position `dim`."""
    return xp.expand_dims(x, dim)


@register("slice", view=True)
def _slice(xp, x, dim, start, stop, step):
    """Elements `start:stop:step` along `dim` (positive step; bounds clamp like Python's)."""
    key = (slice(None),) * dim + (slice(start, stop, step),)
    return x[key]


@register("select", view=True)
def _select(xp, x, dim, index):
    """The slice at `index` along `dim`, with that dim removed."""
    size = x.shape[dim]
    if not -size <= index < size:
        raise IndexError(f"index {index} is out of bounds for dimension {dim} with size {size}")
    return x[(slice(None),) * dim + (index, Ellipsis)]  # `...` keeps a 0-d result a view


@register("flip")
def _flip(xp, x, dims):
    """`x` with the order of elements reversed along each of `dims` (a copy)."""
    return xp.flip(x, axis=tuple(dims)).copy()


@register("tril")
def _tril(xp, x, diagonal=0):
    """`x` with the elements above its `diagonal` zeroed, over its last two dims (the diagonal
    counts from the main one: 1 is just above it, -1 just below)."""
    if x.ndim < 2:
        raise ShapeError(f"tril: expected a tensor of at least 2 dims, got shape {list(x.shape)}")
    return xp.tril(x, diagonal)


@register("triu")
def _triu(xp, x, diagonal=0):
    """`x` with the elements below its `diagonal` zeroed, over its last two dims."""
    if x.ndim < 2:
        raise ShapeError(f"triu: expected a tensor of at least 2 dims, got shape {list(x.shape)}")
    return xp.triu(x, diagonal)


@register("concat", promote=Promote.COMMON)
def _concat(xp, *xs, dim=0):
    """The inputs joined along `dim`; all other dims must match."""
    try:
        return xp.concatenate(xs, axis=dim)
    except ValueError:
        shapes = ", ".join(str(tuple(x.shape)) for x in xs)
        raise ShapeError(f"cat: inputs must match in every dim but {dim}; got shapes {shapes}") from None


@register("copy")
def _copy(xp, x):
    """A contiguous copy of `x`."""
    return xp.array(x, copy=True, order="C")


@register("contiguous")
def _contiguous(xp, x):
    """`x` itself when it is C-contiguous, else a contiguous copy (0-d stays 0-d, unlike
    ascontiguousarray)."""
    return x if x.flags.c_contiguous else x.copy(order="C")


def _index_key(positions, arrays):
    arrays = iter(arrays)
    return tuple(next(arrays) if p else slice(None) for p in positions)


@register("index")
def _index(xp, x, *indices, positions):
    """Advanced indexing: integer arrays at the dims where `positions` is True, full slices
    elsewhere; numpy's (and PyTorch's) placement of the indexed dims."""
    key = _index_key(positions, indices)
    try:
        return x[key]
    except IndexError as e:
        raise IndexError(f"index: {e} (tensor shape {tuple(x.shape)})") from None


@register("index_put", promote=Promote.COMMON, promoted=(0, 1))
def _index_put(xp, x, values, *indices, positions, accumulate=False):
    """A copy of `x` with `values` written (or added, if `accumulate`) at the indexed places."""
    out = x.copy()
    key = _index_key(positions, indices)
    if accumulate and xp is np and out.dtype.kind == "f" and len(indices) == 1 and positions[0]:
        _add_rows(out, indices[0], values)
    elif accumulate:
        xp.add.at(out, key, values)
    else:
        out[key] = values
    return out


def _add_rows(out, index, values):
    """out[index] += values with repeated rows summed (an embedding's gradient), in rounds: the
    rows sorted by index (stably), the k-th row of each run of equal indices added in round k.
    Runs still going after a few rounds are summed one by one. np.add.at adds row by row
    (2.3 ms for 2048 rows of 128 into 1000, against 0.5 ms)."""
    rows, row = out.shape[0], out.shape[1:]
    values = np.broadcast_to(values, index.shape + row).reshape((-1,) + row)
    index = index.ravel()
    if not index.size:
        return
    low, high = int(index.min()), int(index.max())
    if low < -rows or high >= rows:
        raise IndexError(f"index {low if low < -rows else high} is out of bounds for axis 0 with size {rows}")
    index = np.where(index < 0, index + rows, index)
    order = np.argsort(index, kind="stable")
    index, values = index[order], values[order]
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    ends = np.r_[starts[1:], index.size]
    targets = index[starts]
    for k in range(_ROUNDS):
        out[targets] += values[starts + k]
        going = ends - starts > k + 1
        starts, ends, targets = starts[going], ends[going], targets[going]
        if not starts.size:
            return
    for start, end, target in zip(starts + _ROUNDS, ends, targets, strict=True):
        out[target] += values[start:end].sum(axis=0)


_ROUNDS = 8


@register("gather")
def _gather(xp, x, index, dim):
    """out[i][j][k] = x[index[i][j][k]][j][k] for dim 0 (and so on): PyTorch's gather."""
    if index.ndim != x.ndim:
        raise ShapeError(f"gather: index has {index.ndim} dims but input has {x.ndim}; they must be equal")
    for d in range(x.ndim):
        if d != dim and index.shape[d] > x.shape[d]:
            raise ShapeError(
                f"gather: index shape {tuple(index.shape)} exceeds input shape {tuple(x.shape)} at dim {d}"
            )
    if index.size and (int(index.min()) < 0 or int(index.max()) >= x.shape[dim]):
        # (numpy would wrap a negative index around; PyTorch refuses it)
        bad = int(index.min()) if int(index.min()) < 0 else int(index.max())
        raise IndexError(f"gather: index {bad} is out of bounds for dimension {dim} with size {x.shape[dim]}")
    sub = x[tuple(slice(0, index.shape[d]) if d != dim else slice(None) for d in range(x.ndim))]
    return xp.take_along_axis(sub, index, axis=dim)


def open_grids(xp, shape) -> list:
    """numpy's `indices(shape, sparse=True)`, which cupy lacks: per axis, its positions as an
    array that broadcasts along the other axes."""
    ndim = len(shape)
    return [
        xp.arange(n).reshape([n if a == axis else 1 for a in range(ndim)]) for axis, n in enumerate(shape)
    ]


_REDUCTIONS = ("sum", "prod", "mean", "amax", "amin")


@register("scatter_reduce", promote=Promote.COMMON, promoted=(0, 2))
def _scatter_reduce(xp, x, index, src, dim, reduce, include_self=True):
    """A copy of `x` with the elements of `src` reduced ('sum', 'prod', 'mean', 'amax',
    'amin') into the places `index` names along `dim`; without `include_self` the places that
    receive any element forget x's value first. 'mean' divides by the number of values each
    place reduced (floor division for integers, as PyTorch)."""
    if reduce not in _REDUCTIONS:
        raise ValueError(f"scatter_reduce: reduce must be one of {list(_REDUCTIONS)}, got {reduce!r}")
    out = x.copy()
    grids = open_grids(xp, index.shape)
    grids[dim] = index
    key = tuple(grids)
    src = src[tuple(slice(0, s) for s in index.shape)]
    if not include_self:  # the places that receive a value start from the reduction's identity
        if reduce in ("amax", "amin"):
            low, high = (
                (-np.inf, np.inf) if x.dtype.kind == "f" else (np.iinfo(x.dtype).min, np.iinfo(x.dtype).max)
            )
            identity = low if reduce == "amax" else high
        else:
            identity = 1 if reduce == "prod" else 0
        out[key] = identity
    if reduce in ("sum", "mean"):
        xp.add.at(out, key, src)
    elif reduce == "amax":
        xp.maximum.at(out, key, src)
    elif reduce == "amin":
        xp.minimum.at(out, key, src)
    elif xp is np:
        np.multiply.at(out, key, src)
    else:
        raise NotImplementedError(
            "scatter_reduce: reduce='prod' runs on the CPU only (cupy has no scattered multiply); "
            "move the tensors with .cpu() for it"
        )
    if reduce == "mean":
        count = xp.zeros(x.shape, dtype=x.dtype if x.dtype.kind == "f" else np.int64)
        xp.add.at(count, key, 1)
        if include_self:
            count += 1
        count = xp.maximum(count, 1)
        out = out / count if x.dtype.kind == "f" else (out // count).astype(x.dtype)
    return out


@register("scatter_add", promote=Promote.COMMON, promoted=(0, 2))
def _scatter_add(xp, x, index, src, dim):
    """A copy of `x` with `src` added at the places `index` names along `dim` (gather's adjoint)."""
    out = x.copy()
    grids = open_grids(xp, index.shape)
    grids[dim] = index
    src = src[tuple(slice(0, s) for s in index.shape)]
    if xp is np and out.dtype.kind == "f":
        # bincount over flat positions: the same sums as np.add.at, many times faster
        flat = np.ravel_multi_index(tuple(np.broadcast_arrays(*grids)), out.shape)
        sums = np.bincount(flat.ravel(), weights=src.ravel(), minlength=out.size)
        out += sums.reshape(out.shape).astype(out.dtype, copy=False)
    else:
        xp.add.at(out, tuple(grids), src)
    return out


@register("pad")
def _pad(xp, x, pads, value=0.0):
    """`x` padded with `value`; `pads` is ((before, after), ...) per dim, negative crops."""
    crop = tuple(slice(max(-b, 0), x.shape[i] - max(-a, 0)) for i, (b, a) in enumerate(pads))
    x = x[crop]
    shape = tuple(n + max(b, 0) + max(a, 0) for n, (b, a) in zip(x.shape, pads, strict=True))
    out = xp.full(shape, value, dtype=x.dtype)  # (a fill and a copy: xp.pad is several times slower)
    out[tuple(slice(max(b, 0), max(b, 0) + n) for n, (b, _) in zip(x.shape, pads, strict=True))] = x
    return out
