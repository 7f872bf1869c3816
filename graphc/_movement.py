"""Movement ops of `graphc.*`: reshaping, reordering, slicing, joining, gathering.

Reshapes, permutations, slices and expansions return views that share memory with their input
(as PyTorch's do); `view` refuses where a copy would be needed.
"""

from __future__ import annotations

import builtins
import operator

import numpy as np

from graphc._dispatch import dispatch
from graphc._functions import _dims, cast, sum, where
from graphc._tensor import Size, Tensor, _wrap_dim
from graphc.errors import ShapeError
from ir.ops import OPS


def shape_arg(args) -> tuple:
    """Sizes given as varargs `(2, 3)`, one sequence `((2, 3),)` or a Size."""
    if len(args) == 1 and isinstance(args[0], (tuple, list, Size)):
        args = args[0]
    try:
        return tuple(int(s) for s in args)
    except TypeError:
        raise TypeError(f"expected a shape as ints or one sequence of ints, got {args!r}") from None


def _infer_shape(shape: tuple, numel: int, old: tuple) -> tuple:
    if shape.count(-1) > 1:
        raise ShapeError(f"only one dimension can be inferred; got shape {list(shape)}")
    if -1 in shape:
        known = 1
        for s in shape:
            if s != -1:
                known *= s
        if known == 0 or numel % known:
            raise ShapeError(f"shape {list(shape)} is invalid for input of size {numel} (shape {list(old)})")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    return shape


def reshape(input: Tensor, *shape) -> Tensor:
    """`input` with a new shape of the same number of elements (-1 infers one dim); a view
    when the memory layout allows, else a copy."""
    shape = _infer_shape(shape_arg(shape), input.numel(), input.shape)
    return dispatch(OPS["reshape"], (input,), {"shape": shape}, name="ViewBackward0")


def view(input: Tensor, *shape) -> Tensor:
    """`input` seen with a new shape; always shares memory (use `reshape` where it cannot)."""
    if len(shape) == 1 and not isinstance(shape[0], (int, tuple, list, Size)):
        raise TypeError(f"view() expects a shape, got {shape[0]!r}")
    shape = _infer_shape(shape_arg(shape), input.numel(), input.shape)
    out = dispatch(OPS["reshape"], (input,), {"shape": shape}, name="ViewBackward0")
    if out._base is None and input.numel() > 0:
        raise ShapeError(
            f"view size is not compatible with input tensor's size and stride (shape "
            f"{list(input.shape)} -> {list(shape)}: at least one dimension spans across two "
            "contiguous subspaces). Use .reshape(...) instead."
        )
    return out


def view_as(input: Tensor, other: Tensor) -> Tensor:
    return view(input, other.shape)


def reshape_as(input: Tensor, other: Tensor) -> Tensor:
    return reshape(input, other.shape)


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """`input` with dims `start_dim`..`end_dim` merged into one."""
    if input.dim() == 0:
        return reshape(input, 1)
    s, e = _wrap_dim(start_dim, input.dim()), _wrap_dim(end_dim, input.dim())
    if s > e:
        raise ShapeError(f"flatten() has invalid args: start_dim {start_dim} > end_dim {end_dim}")
    shape = input.shape
    return reshape(input, (*shape[:s], -1 if input.numel() else _prod(shape[s : e + 1]), *shape[e + 1 :]))


def _prod(sizes) -> int:
    n = 1
    for s in sizes:
        n *= s
    return n


def unflatten(input: Tensor, dim: int, sizes) -> Tensor:
    """`input` with dim `dim` split into `sizes`."""
    d = _wrap_dim(dim, input.dim())
    return reshape(input, (*input.shape[:d], *sizes, *input.shape[d + 1 :]))


def ravel(input: Tensor) -> Tensor:
    return reshape(input, -1)


def permute(input: Tensor, *dims) -> Tensor:
    """`input` with its dims reordered (a view)."""
    dims = tuple(_wrap_dim(d, input.dim()) for d in shape_arg(dims))
    if sorted(dims) != list(range(input.dim())):
        raise ShapeError(
            f"permute: dims {list(dims)} are not a permutation of the "
            f"{input.dim()} dims of a tensor of shape {list(input.shape)}"
        )
    return dispatch(OPS["permute"], (input,), {"dims": dims})


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    """`input` with dims `dim0` and `dim1` swapped (a view)."""
    n = input.dim()
    if n == 0:
        return input.view(())
    perm = list(range(n))
    a, b = _wrap_dim(dim0, n), _wrap_dim(dim1, n)
    perm[a], perm[b] = perm[b], perm[a]
    return dispatch(OPS["permute"], (input,), {"dims": tuple(perm)}, name="TransposeBackward0")


swapaxes = swapdims = transpose


def t(input: Tensor) -> Tensor:
    """Transpose of a matrix (vectors and scalars unchanged)."""
    if input.dim() > 2:
        raise ShapeError(f"t() expects a tensor with <= 2 dimensions, but got {input.dim()}")
    if input.dim() < 2:
        return dispatch(OPS["permute"], (input,), {"dims": tuple(range(input.dim()))}, name="TBackward0")
    return dispatch(OPS["permute"], (input,), {"dims": (1, 0)}, name="TBackward0")


def movedim(input: Tensor, source, destination) -> Tensor:
    """`input` with dims moved from `source` to `destination` (ints or tuples)."""
    src = (source,) if isinstance(source, int) else tuple(source)
    dst = (destination,) if isinstance(destination, int) else tuple(destination)
    n = input.dim()
    src = [_wrap_dim(d, n) for d in src]
    dst = [_wrap_dim(d, n) for d in dst]
    order = [d for d in range(n) if d not in src]
    for d, s in sorted(zip(dst, src, strict=True)):
        order.insert(d, s)
    return permute(input, order)


def squeeze(input: Tensor, dim=None) -> Tensor:
    """`input` without dims of size 1 (only among `dim` when given)."""
    n = input.dim()
    dims = range(n) if dim is None else _dims(dim, n)
    dims = tuple(d for d in dims if input._data.shape[d] == 1) if n else ()
    return dispatch(OPS["squeeze"], (input,), {"dims": dims})


def unsqueeze(input: Tensor, dim: int) -> Tensor:
    """`input` with a new dim of size 1 at `dim`."""
    return dispatch(OPS["unsqueeze"], (input,), {"dim": _wrap_dim(dim, input.dim() + 1)})


def expand(input: Tensor, *sizes) -> Tensor:
    """`input` broadcast to `sizes` without copying; -1 keeps a dim's size."""
    sizes = shape_arg(sizes)
    lead = len(sizes) - input.dim()
    if lead < 0:
        raise ShapeError(
            f"expand: the number of sizes ({len(sizes)}) must be at least the "
            f"number of dims ({input.dim()}) of a tensor of shape {list(input.shape)}"
        )
    shape = tuple(input.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
    return dispatch(OPS["expand"], (input,), {"shape": shape})


def expand_as(input: Tensor, other: Tensor) -> Tensor:
    return expand(input, other.shape)


def broadcast_to(input: Tensor, shape) -> Tensor:
    return expand(input, shape)


def broadcast_shapes(*shapes) -> Size:
    """The shape all `shapes` broadcast to."""
    try:
        return Size(np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        raise ShapeError(f"shapes {[list(s) for s in shapes]} cannot be broadcast together") from None


def broadcast_tensors(*tensors) -> tuple:
    shape = broadcast_shapes(*[t.shape for t in tensors])
    return tuple(expand(t, shape) for t in tensors)


def sum_to_size(input: Tensor, *shape) -> Tensor:
    """`input` summed down to `shape`, which it must broadcast from (the adjoint of expand)."""
    shape = shape_arg(shape)
    lead = input.dim() - len(shape)
    dims = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and input._data.shape[lead + i] != 1
    )
    out = sum(input, dims, keepdim=True) if dims else input
    return reshape(out, shape) if lead else out


def repeat(input: Tensor, *sizes) -> Tensor:
    """`input` tiled `sizes[i]` times along each dim (new leading dims as needed)."""
    sizes = shape_arg(sizes)
    if len(sizes) < input.dim():
        raise ShapeError(
            f"repeat: number of repeat dims ({len(sizes)}) can not be smaller than "
            f"the number of dims ({input.dim()}) of the tensor"
        )
    shape = (1,) * (len(sizes) - input.dim()) + tuple(input.shape)
    x = reshape(input, [v for s in shape for v in (1, s)])
    x = expand(x, [v for r, s in zip(sizes, shape, strict=True) for v in (r, s)])
    return reshape(x, [r * s for r, s in zip(sizes, shape, strict=True)])


def tile(input: Tensor, dims) -> Tensor:
    dims = tuple(dims)
    return repeat(input, (1,) * (input.dim() - len(dims)) + dims)


def narrow(input: Tensor, dim: int, start: int, length: int) -> Tensor:
    """The `length` elements from `start` along `dim` (a view)."""
    d = _wrap_dim(dim, input.dim())
    size = input.shape[d]
    start = start + size if start < 0 else start
    if not 0 <= start <= size or length < 0 or start + length > size:
        raise IndexError(
            f"narrow: start ({start}) + length ({length}) exceeds dimension size ({size}) of dim {dim}"
        )
    return slice_dim(input, d, start, start + length, 1)


_FAR = 2**62  # bounds past it clamp the same (and fit a module file's int64)


def slice_dim(input: Tensor, dim: int, start, stop, step: int) -> Tensor:
    """Elements `start:stop:step` along `dim` (a view; positive step)."""
    if step <= 0:
        raise ValueError(f"slice step must be positive, got {step}")
    builtins.slice(start, stop, step).indices(input._data.shape[dim])  # (checks the bounds' types)
    # the bounds as written (stop None: to the end), so a captured graph slices every size alike
    start = 0 if start is None else builtins.min(builtins.max(operator.index(start), -_FAR), _FAR)
    stop = None if stop is None or stop >= _FAR else builtins.max(operator.index(stop), -_FAR)
    return dispatch(OPS["slice"], (input,), {"dim": dim, "start": start, "stop": stop, "step": step})


def select(input: Tensor, dim: int, index: int) -> Tensor:
    """The slice at `index` along `dim`, that dim removed (a view)."""
    d = _wrap_dim(dim, input.dim())
    size = input._data.shape[d]
    if not -size <= index < size:
        raise IndexError(f"index {index} is out of bounds for dimension {d} with size {size}")
    # (a negative index stays negative: x[:, -1] of a symbolic size is the same node for every size)
    return dispatch(OPS["select"], (input,), {"dim": d, "index": index})


def flip(input: Tensor, dims) -> Tensor:
    """`input` reversed along each of `dims`."""
    return dispatch(OPS["flip"], (input,), {"dims": _dims(dims, input.dim()) or ()})


def tril(input: Tensor, diagonal: int = 0, *, out: Tensor | None = None) -> Tensor:
    """The lower triangle of the matrices in `input`'s last two dims: elements above
    `diagonal` (0: the main one; 1 above it, -1 below) become 0."""
    return _triangle("tril", input, diagonal, out)


def triu(input: Tensor, diagonal: int = 0, *, out: Tensor | None = None) -> Tensor:
    """The upper triangle of the matrices in `input`'s last two dims: elements below
    `diagonal` become 0."""
    return _triangle("triu", input, diagonal, out)


def _triangle(op: str, input: Tensor, diagonal, out) -> Tensor:
    from graphc._functions import _write_out

    if input.dim() < 2:
        raise ShapeError(f"{op}: input tensor must have at least 2 dimensions, got shape {list(input.shape)}")
    if isinstance(diagonal, bool) or not isinstance(diagonal, (int, np.integer)):
        raise TypeError(f"{op}(): argument 'diagonal' must be int, not {type(diagonal).__name__}")
    name = "TrilBackward0" if op == "tril" else "TriuBackward0"
    return _write_out(dispatch(OPS[op], (input,), {"diagonal": int(diagonal)}, name=name), out)


def repeat_interleave(input: Tensor, repeats, dim: int | None = None, *, output_size=None) -> Tensor:
    """Each element of `input` repeated `repeats` times along `dim` (the flattened input where
    `dim` is None): [a, b] -> [a, a, b, b]. `repeats` is an int, or a tensor of one count per
    element along `dim`."""
    if dim is None:
        input, dim = input.reshape(-1), 0
    d = _wrap_dim(dim, input.dim())
    if isinstance(repeats, Tensor) and repeats.numel() == 1 and repeats.dim() <= 1:
        repeats = int(repeats.item())
    if isinstance(repeats, (int, np.integer)) and not isinstance(repeats, bool):
        if repeats < 0:
            raise ValueError(f"repeat_interleave: repeats must be non-negative, got {repeats}")
        shape = list(input.shape)
        grown = input.unsqueeze(d + 1).expand(*shape[: d + 1], int(repeats), *shape[d + 1 :])
        out = grown.reshape(*shape[:d], shape[d] * int(repeats), *shape[d + 1 :])
    elif isinstance(repeats, Tensor):
        counts = repeats.detach().numpy()
        if counts.ndim != 1 or counts.shape[0] != input.shape[d] or counts.dtype.kind not in "iu":
            raise ShapeError(
                f"repeat_interleave: repeats must be an integer tensor of {input.shape[d]} counts "
                f"(the size of dim {dim}), got {repeats.dtype} of shape {list(repeats.shape)}"
            )
        if (counts < 0).any():
            raise ValueError("repeat_interleave: repeats must be non-negative")
        from graphc._creation import tensor

        index = tensor(np.repeat(np.arange(counts.shape[0], dtype=np.int64), counts), device=input.device)
        out = index_select(input, d, index)
    else:
        raise TypeError(
            f"repeat_interleave: repeats must be an int or a tensor, got {type(repeats).__name__}"
        )
    if output_size is not None and out.shape[d] != output_size:
        raise ShapeError(
            f"repeat_interleave: output_size {output_size} does not match the result's {out.shape[d]}"
        )
    return out


def fliplr(input: Tensor) -> Tensor:
    return flip(input, 1)


def flipud(input: Tensor) -> Tensor:
    return flip(input, 0)


def cat(tensors, dim: int = 0, *, out: Tensor | None = None) -> Tensor:
    """`tensors` joined along `dim` (PyTorch skips 1-D empty tensors, and so does graphc)."""
    from graphc._functions import _write_out

    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat(): expected a non-empty list of Tensors")
    kept = [t for t in tensors if not (t.dim() == 1 and t.numel() == 0)] or tensors[:1]
    d = _wrap_dim(dim, kept[0].dim())
    for t in kept[1:]:
        if t.dim() != kept[0].dim():
            raise ShapeError(
                f"cat: tensors must have the same number of dimensions: got {kept[0].dim()} and {t.dim()}"
            )
    return _write_out(dispatch(OPS["concat"], tuple(kept), {"dim": d}, name="CatBackward0"), out)


concat = concatenate = cat


def stack(tensors, dim: int = 0, *, out: Tensor | None = None) -> Tensor:
    """`tensors` (all of one shape) joined along a new dim `dim`."""
    from graphc._functions import _write_out

    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack expects a non-empty TensorList")
    for t in tensors[1:]:
        if t.shape != tensors[0].shape:
            raise ShapeError(
                f"stack expects each tensor to be equal size, but got "
                f"{list(tensors[0].shape)} and {list(t.shape)}"
            )
    d = _wrap_dim(dim, tensors[0].dim() + 1)
    parts = tuple(unsqueeze(t, d) for t in tensors)
    return _write_out(dispatch(OPS["concat"], parts, {"dim": d}, name="StackBackward0"), out)


def hstack(tensors) -> Tensor:
    tensors = [t if t.dim() else t.reshape(1) for t in tensors]
    return cat(tensors, 0 if tensors[0].dim() == 1 else 1)


def vstack(tensors) -> Tensor:
    return cat([t.reshape(1, -1) if t.dim() < 2 else t for t in tensors], 0)


def split(tensor: Tensor, split_size_or_sections, dim: int = 0) -> tuple:
    """Pieces of `tensor` along `dim`: of `split_size` each (the last may be smaller), or of
    the listed sizes."""
    d = _wrap_dim(dim, tensor.dim())
    size = tensor.shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0:
            raise ValueError(f"split expects a positive split_size, got {step}")
        sizes = [builtins.min(step, size - i) for i in range(0, size, step)] or [0]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != size:
            raise ShapeError(
                f"split_with_sizes expects split_sizes to sum exactly to {size} "
                f"(input tensor's size at dimension {d}), but got {sizes}"
            )
    out, start = [], 0
    for s in sizes:
        out.append(slice_dim(tensor, d, start, start + s, 1))
        start += s
    return tuple(out)


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple:
    """`input` split into at most `chunks` pieces along `dim` (as in PyTorch)."""
    if chunks <= 0:
        raise ValueError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    size = input.shape[_wrap_dim(dim, input.dim())]
    step = -(-size // chunks) if size else 1
    return split(input, step, dim)


def unbind(input: Tensor, dim: int = 0) -> tuple:
    """The slices of `input` along `dim`, that dim removed."""
    d = _wrap_dim(dim, input.dim())
    return tuple(select(input, d, i) for i in range(input.shape[d]))


def gather(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """Values of `input` at `index` along `dim` (out[i][j] = input[index[i][j]][j] for dim 0)."""
    _check_index(index, "gather")
    return dispatch(OPS["gather"], (input, index), {"dim": _wrap_dim(dim, input.dim())})


def scatter_add(input: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """A copy of `input` with `src` added at the places `index` names along `dim`."""
    _check_index(index, "scatter_add")
    return dispatch(OPS["scatter_add"], (input, index, src), {"dim": _wrap_dim(dim, input.dim())})


def scatter_reduce(
    input: Tensor, dim: int, index: Tensor, src: Tensor, reduce: str, *, include_self: bool = True
) -> Tensor:
    """A copy of `input` with `src` reduced ('sum', 'prod', 'mean', 'amax', 'amin') into the
    places `index` names along `dim` (`include_self`: with input's own value there)."""
    _check_index(index, "scatter_reduce")
    if reduce not in ("sum", "prod", "mean", "amax", "amin"):
        raise ValueError(
            "scatter_reduce: reduce argument must be one of 'sum', 'prod', 'mean', 'amax', 'amin', "
            f"got {reduce!r}"
        )
    attrs = {"dim": _wrap_dim(dim, input.dim()), "reduce": reduce, "include_self": bool(include_self)}
    return dispatch(OPS["scatter_reduce"], (input, index, src), attrs)


def take_along_dim(input: Tensor, indices: Tensor, dim: int) -> Tensor:
    return gather(
        input,
        dim,
        indices.expand(
            *[s if i == _wrap_dim(dim, input.dim()) else input.shape[i] for i, s in enumerate(indices.shape)]
        ),
    )


def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """The entries of `input` along `dim` at the positions in the 1-D `index`."""
    _check_index(index, "index_select")
    if index.dim() > 1:
        raise ShapeError(f"index_select(): index must be 0-d or 1-d, got shape {list(index.shape)}")
    d = _wrap_dim(dim, input.dim())
    positions = (False,) * d + (True,)
    return dispatch(
        OPS["index"], (input, index.reshape(-1)), {"positions": positions}, name="IndexSelectBackward0"
    )


def masked_fill(input: Tensor, mask: Tensor, value) -> Tensor:
    """`input` with `value` where `mask` is True (the result keeps input's dtype)."""
    if not isinstance(mask, Tensor) or mask.dtype.name != "bool":
        raise TypeError(
            f"masked_fill expects a bool mask tensor, got {getattr(mask, 'dtype', type(mask).__name__)}"
        )
    if isinstance(value, Tensor) and value.dim() != 0:
        raise ShapeError(f"masked_fill only supports a 0-d value tensor, got shape {list(value.shape)}")
    out = where(mask, value, input)
    if out.shape != input.shape:
        raise ShapeError(
            f"masked_fill: mask of shape {list(mask.shape)} does not broadcast to "
            f"the input shape {list(input.shape)}"
        )
    return cast(out, input.dtype)


def masked_select(input: Tensor, mask: Tensor) -> Tensor:
    """The elements of `input` where `mask` holds, as a 1-D tensor."""
    x, m = broadcast_tensors(input, mask)
    from graphc._functions import nonzero

    return dispatch(
        OPS["index"],
        (x, *nonzero(m, as_tuple=True)),
        {"positions": (True,) * x.dim()},
        name="MaskedSelectBackward0",
    )


def _check_index(index, where_: str) -> None:
    if not isinstance(index, Tensor) or index.dtype.name != "int64":
        got = index.dtype if isinstance(index, Tensor) else type(index).__name__
        raise TypeError(f"{where_}(): expected an int64 index tensor, got {got}")
