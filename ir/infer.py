"""Shape and dtype inference for graph nodes, with symbolic dims.

`infer(op, input_types, attrs)` gives the output types of one node. Inputs of a recorded node
already carry the dtypes the op computes in (the tracer inserts casts), so elementwise ops keep
their inputs' common dtype and comparisons give bool. A shape that depends on a symbol in a way
these rules cannot express (a reshape that does not divide evenly, broadcasting a symbol against
a size other than 1) raises `ShapeError`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

from ir import dtypes
from ir.errors import ShapeError, UnknownOpError
from ir.ops.elementwise import BINARY, UNARY
from ir.types import Dim, TensorType, derived, derived_name

INFER: dict[str, Callable] = {}

BOOL_OUT = {
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "logical_and",
    "logical_or",
    "logical_xor",
    "logical_not",
    "isnan",
    "isinf",
    "isfinite",
}
ELEMENTWISE = {*UNARY, *BINARY, "round", "where", "clamp", "threshold_backward"}


def infer(op: str, inputs: list[TensorType | None], attrs: dict) -> list[TensorType]:
    """Output types of `op` applied to inputs of these types."""
    if op in ELEMENTWISE:
        return [_elementwise(op, inputs)]
    fn = INFER.get(op)
    if fn is None:
        raise UnknownOpError(f"no shape inference for op {op!r}")
    out = fn(inputs, **attrs)
    return out if isinstance(out, list) else [out]


def rule(*ops: str):
    def wrap(fn):
        for op in ops:
            INFER[op] = fn
        return fn

    return wrap


def broadcast(op: str, *shapes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """numpy's broadcasting with symbols: a dim of 1 stretches, equal dims match."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ShapeError(
                f"{op}: shapes {[list(s) for s in shapes]} do not broadcast "
                f"(dim {i} is one of {sorted(map(str, dims))})"
            )
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def _elementwise(op: str, inputs: list[TensorType | None]) -> TensorType:
    tensors = [t for t in inputs if t is not None]
    if op == "where":
        tensors = [t for t in inputs[1:] if t is not None]
    shape = broadcast(op, *[t.shape for t in inputs if t is not None])
    if op in BOOL_OUT:
        return TensorType(dtypes.bool_, shape)
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = dtypes.promote_types(dtype, t.dtype)
    return TensorType(dtype, shape)


def _norm_dims(dims, rank: int) -> tuple[int, ...]:
    return tuple(range(rank)) if dims is None else tuple(d % max(rank, 1) for d in dims)


@rule("cast")
def _cast(inputs, dtype):
    return TensorType(dtypes.from_name(dtype), inputs[0].shape)


def _reduced(t: TensorType, dims, keepdim: bool) -> tuple[Dim, ...]:
    axes = _norm_dims(dims, t.rank)
    return tuple(1 if i in axes else d for i, d in enumerate(t.shape) if keepdim or i not in axes)


@rule("sum", "prod")
def _sum(inputs, dims=None, keepdim=False):
    t = inputs[0]
    dtype = t.dtype if t.dtype.is_floating_point else dtypes.int64  # ints accumulate in int64
    return TensorType(dtype, _reduced(t, dims, keepdim))


@rule("mean", "amax", "amin", "var")
def _reduce_same(inputs, dims=None, keepdim=False, correction=None):
    t = inputs[0]
    return TensorType(t.dtype, _reduced(t, dims, keepdim))


@rule("any", "all")
def _reduce_bool(inputs, dims=None, keepdim=False):
    return TensorType(dtypes.bool_, _reduced(inputs[0], dims, keepdim))


@rule("argmax", "argmin")
def _arg(inputs, dim=None, keepdim=False):
    t = inputs[0]
    if dim is None:
        return TensorType(dtypes.int64, ())
    d = dim % t.rank
    shape = tuple(1 if i == d else s for i, s in enumerate(t.shape) if keepdim or i != d)
    return TensorType(dtypes.int64, shape)


@rule("max_dim", "min_dim")
def _extreme(inputs, dim, keepdim=False):
    t = inputs[0]
    shape = tuple(1 if i == dim else s for i, s in enumerate(t.shape) if keepdim or i != dim)
    return [TensorType(t.dtype, shape), TensorType(dtypes.int64, shape)]


@rule("cumsum", "cumprod")
def _cumulative(inputs, dim):
    t = inputs[0]
    dtype = t.dtype if t.dtype.is_floating_point else dtypes.int64
    return TensorType(dtype, t.shape)


@rule("reshape")
def _reshape(inputs, shape):
    t = inputs[0]
    return TensorType(t.dtype, resolve_reshape(t.shape, tuple(shape)))


def resolve_reshape(old: tuple[Dim, ...], new: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """The target shape with its -1 resolved: symbols must cancel, ints must divide (a multiple
    of a symbol, `h_times_2`, counts as the symbol and the int)."""
    old_syms, old_n = Counter(_symbol_of(d) for d in old if isinstance(d, str)), _product(old)
    new_syms = Counter(_symbol_of(d) for d in new if isinstance(d, str))
    known = _product(d for d in new if d != -1)
    if new.count(-1) > 1:
        raise ShapeError(f"reshape: only one dimension can be inferred; got {list(new)}")
    if -1 not in new:
        if old_syms != new_syms or old_n != known:
            raise ShapeError(f"reshape: shape {list(new)} is invalid for input of shape {list(old)}")
        return new
    rest = old_syms - new_syms
    if new_syms - old_syms or (known and old_n % known):
        raise ShapeError(f"reshape: shape {list(new)} is invalid for input of shape {list(old)}")
    factor = old_n // known if known else 0
    if len(rest) > 1 or sum(rest.values()) > 1 or (rest and factor == 0):
        raise ShapeError(
            f"reshape: the inferred dim of {list(new)} for input {list(old)} "
            "would be a product of symbols; give it explicitly"
        )
    fill: Dim = derived_name(next(iter(rest)), 0, 1, factor) if rest else factor
    return tuple(fill if d == -1 else d for d in new)


def _symbol_of(d: str) -> str:
    """The symbol of a dim that is a symbol or a multiple of one (h for h_times_2)."""
    parts = derived(d)
    return parts[0] if parts is not None and parts[2:] == (0, 1) else d


def _product(dims) -> int:
    """The product of the ints among `dims` and of the multiples of symbols (2 for h_times_2)."""
    n = 1
    for d in dims:
        if isinstance(d, int):
            n *= d
        elif d != -1:
            parts = derived(d)
            n *= parts[1] if parts is not None and parts[2:] == (0, 1) else 1
    return n


@rule("permute")
def _permute(inputs, dims):
    t = inputs[0]
    return TensorType(t.dtype, tuple(t.shape[d] for d in dims))


@rule("expand")
def _expand(inputs, shape):
    t = inputs[0]
    lead = len(shape) - t.rank
    for i, d in enumerate(t.shape):
        if d != 1 and d != shape[lead + i]:
            raise ShapeError(f"expand: {list(t.shape)} cannot be expanded to {list(shape)}")
    return TensorType(t.dtype, tuple(shape))


@rule("squeeze")
def _squeeze(inputs, dims):
    t = inputs[0]
    return TensorType(t.dtype, tuple(d for i, d in enumerate(t.shape) if i not in dims))


@rule("unsqueeze")
def _unsqueeze(inputs, dim):
    t = inputs[0]
    return TensorType(t.dtype, t.shape[:dim] + (1,) + t.shape[dim:])


@rule("slice")
def _slice(inputs, dim, start, stop, step):
    t = inputs[0]
    n = slice_length(t.shape[dim], start, stop, step)
    return TensorType(t.dtype, t.shape[:dim] + (n,) + t.shape[dim + 1 :])


def slice_length(size: Dim, start, stop, step: int) -> Dim:
    """How many elements `start:stop:step` keeps of a dim of `size` (Python's rules; stop None
    runs to the end). Of a symbolic size, bounds counted from its two ends give a derived dim
    (`1:` keeps seq_minus_1), from the same end a fixed count (`-3:` keeps 3); a symbolic stop
    is kept as given (`pe[:seq]`). The sizes the graph runs with must fit the bounds, so that
    Python would neither keep another count nor clamp the start: `ir.interpreter.bind_inputs`
    checks them."""
    if not isinstance(step, int) or step < 1:
        raise ShapeError(f"slice: the step must be a positive int, got {step!r}")
    if isinstance(start, str):
        raise ShapeError(f"slice: a start that follows a symbolic size ({start!r}) is not supported")
    start = start or 0
    if isinstance(size, int) and not isinstance(stop, str):
        return len(range(size)[slice(start, stop, step)])
    if isinstance(stop, str) and stop != size:
        parts = derived(stop)
        offset_of_size = parts is not None and (parts[0], parts[1], parts[3]) == (size, 1, 1)
        if isinstance(size, int) or not offset_of_size or parts[2] > 0:
            if isinstance(size, int) and start >= 0:  # pe[:, :seq] of a longer pe
                return derived_name(stop, -start, step)
            raise ShapeError(
                f"slice: the bounds {start}:{stop} of the dim {size!r} count from different sizes"
            )
        stop = parts[2]  # seq_minus_1 of seq: 1 before its end
    elif stop == size or stop is None:
        stop = 0  # at the end
    elif stop >= 0:
        if start >= 0:  # both from the start: a fixed count
            return max(0, -(-(stop - start) // step))
        raise ShapeError(
            f"slice: start {start} counts from the end of the symbolic dim {size!r} and stop {stop} "
            "from its start: the number of elements kept is not a size of the dim; slice with both "
            "bounds from one end, or with the start from the start and the stop from the end"
        )
    # the stop counts from the end (stop <= 0: `size + stop`)
    if start < 0:  # both from the end: a fixed count
        return max(0, -(-(stop - start) // step))
    return derived_name(size, stop - start, step)


@rule("select")
def _select(inputs, dim, index):
    t = inputs[0]
    return TensorType(t.dtype, t.shape[:dim] + t.shape[dim + 1 :])


@rule("flip", "copy", "contiguous")
def _same(inputs, **attrs):
    return inputs[0]


@rule("tril", "triu")
def _triangle(inputs, diagonal=0):
    if inputs[0].rank < 2:
        raise ShapeError(f"tril/triu: expected a tensor of at least 2 dims, got {inputs[0]}")
    return inputs[0]


@rule("index")
def _index(inputs, positions):
    """numpy's advanced indexing: the index arrays broadcast together; their dims replace the
    indexed dims where those are adjacent, else go first."""
    x, indices = inputs[0], inputs[1:]
    where = [i for i, p in enumerate(positions) if p]
    if len(positions) > x.rank or len(indices) != len(where) or not where:
        raise ShapeError(f"index: positions {positions} do not fit {len(indices)} index tensors into {x}")
    for t in indices:
        if t.dtype.category != dtypes.INT:
            raise ShapeError(
                f"index: only integer index tensors have a shape known before running, got {t} "
                "(a bool mask selects a data-dependent number of elements)"
            )
    picked = broadcast("index", *[t.shape for t in indices])
    if where == list(range(where[0], where[-1] + 1)):
        return TensorType(x.dtype, x.shape[: where[0]] + picked + x.shape[where[-1] + 1 :])
    kept = tuple(x.shape[i] for i, p in enumerate(positions) if not p)
    return TensorType(x.dtype, picked + kept + x.shape[len(positions) :])


@rule("gather")
def _gather(inputs, dim):
    x, index = inputs[0], inputs[1]
    if x.rank != index.rank or index.dtype.category != dtypes.INT:
        raise ShapeError(
            f"gather: expected an integer index of the input's rank {x.rank}, got "
            f"{index.dtype.name}{list(index.shape)}"
        )
    d = dim % max(x.rank, 1)
    for k, (a, b) in enumerate(zip(index.shape, x.shape, strict=True)):
        if k != d and isinstance(a, int) and isinstance(b, int) and a > b:
            raise ShapeError(
                f"gather: index shape {list(index.shape)} exceeds input shape {list(x.shape)} at dim {k}"
            )
    return TensorType(x.dtype, tuple(index.shape))


@rule("index_put")
def _index_put(inputs, positions, accumulate=False):
    """x's type: values written (or added) into a copy of x."""
    x, indices = inputs[0], inputs[2:]
    if len(indices) != list(positions).count(True) or len(positions) > x.rank:
        raise ShapeError(f"index_put: positions {positions} do not fit {len(indices)} index tensors into {x}")
    for t in indices:
        if t.dtype.category != dtypes.INT and t.dtype is not dtypes.bool_:
            raise ShapeError(f"index_put: index tensors must be integers or bools, got {t}")
    return x


@rule("scatter_add", "scatter_reduce")
def _scatter_add(inputs, dim, reduce=None, include_self=True):
    x, index, src = inputs
    if not x.rank == index.rank == src.rank or index.dtype.category != dtypes.INT:
        raise ShapeError(
            f"scatter: expected an integer index and a source of the input's rank {x.rank}, "
            f"got index {index} and source {src}"
        )
    return x


@rule("pad")
def _pad(inputs, pads, value=0.0):
    """Each dim grows by its (before, after) pads; negative pads crop."""
    x = inputs[0]
    if len(pads) != x.rank:
        raise ShapeError(f"pad: expected a (before, after) pair for each of the {x.rank} dims, got {pads}")
    shape: list[Dim] = []
    for i, (size, (before, after)) in enumerate(zip(x.shape, pads, strict=True)):
        if before == after == 0:
            shape.append(size)
        elif isinstance(size, str):
            raise ShapeError(f"pad: dim {i} of symbolic size {size!r} cannot be padded (pads {pads[i]})")
        elif size + before + after < 0:
            raise ShapeError(f"pad: pads {pads[i]} crop more than dim {i}'s {size} elements")
        else:
            shape.append(size + before + after)
    return TensorType(x.dtype, tuple(shape))


@rule("concat")
def _concat(inputs, dim):
    first = inputs[0]
    total: Dim = 0
    for t in inputs:
        if t.rank != first.rank or any(
            a != b for i, (a, b) in enumerate(zip(t.shape, first.shape, strict=True)) if i != dim
        ):
            raise ShapeError(f"concat: shapes {[list(x.shape) for x in inputs]} differ outside dim {dim}")
        d = t.shape[dim]
        if isinstance(d, str) or isinstance(total, str):
            raise ShapeError("concat along a symbolic dim is not supported")
        total += d
    dtype = first.dtype
    for t in inputs[1:]:
        dtype = dtypes.promote_types(dtype, t.dtype)
    return TensorType(dtype, first.shape[:dim] + (total,) + first.shape[dim + 1 :])


@rule("matmul")
def _matmul(inputs):
    a, b = inputs
    if a.rank == 0 or b.rank == 0:
        raise ShapeError("matmul: 0-d operands")
    ka = a.shape[-1]
    kb = b.shape[-2] if b.rank > 1 else b.shape[0]
    if ka != kb:
        raise ShapeError(f"matmul: {list(a.shape)} @ {list(b.shape)} ({ka} != {kb})")
    batch = (
        broadcast("matmul", a.shape[:-2], b.shape[:-2])
        if a.rank > 1 and b.rank > 1
        else (a.shape[:-2] if b.rank == 1 else b.shape[:-2])
    )
    rows = (a.shape[-2],) if a.rank > 1 else ()
    cols = (b.shape[-1],) if b.rank > 1 else ()
    return TensorType(dtypes.promote_types(a.dtype, b.dtype), batch + rows + cols)


def _matrices(name: str, t: TensorType, square: bool = True) -> None:
    if t.rank < 2 or (square and t.shape[-1] != t.shape[-2]):
        kind = "square matrices" if square else "matrices"
        raise ShapeError(f"{name}: expected a batch of {kind}, got {t}")


@rule("det")
def _det(inputs):
    _matrices("det", inputs[0])
    return TensorType(inputs[0].dtype, inputs[0].shape[:-2])


@rule("inv")
def _inv(inputs):
    _matrices("inv", inputs[0])
    return inputs[0]


@rule("qr")
def _qr(inputs, mode="reduced"):
    x = inputs[0]
    _matrices("qr", x, square=False)
    m, n = x.shape[-2:]
    if mode == "complete" or m == n:
        k = m
    elif isinstance(m, int) and isinstance(n, int):
        k = min(m, n)
    else:
        raise ShapeError(f"qr: min({m}, {n}) of a {m} x {n} matrix is not known before running")
    batch = x.shape[:-2]
    return [TensorType(x.dtype, batch + (m, k)), TensorType(x.dtype, batch + (k, n))]


@rule("svd")
def _svd(inputs, full_matrices=False):
    x = inputs[0]
    _matrices("svd", x, square=False)
    m, n = x.shape[-2:]
    if m == n:
        k = m
    elif isinstance(m, str) or isinstance(n, str):
        raise ShapeError(
            f"svd: the number of singular values of a {m} x {n} matrix is not known before running"
        )
    else:
        k = min(m, n)
    batch = x.shape[:-2]
    u = batch + ((m, m) if full_matrices else (m, k))
    vh = batch + ((n, n) if full_matrices else (k, n))
    return [TensorType(x.dtype, u), TensorType(x.dtype, batch + (k,)), TensorType(x.dtype, vh)]


@rule("solve")
def _solve(inputs):
    a, b = inputs
    _matrices("solve", a)
    vector = b.rank == 1 or tuple(b.shape) == tuple(a.shape[:-1])
    rhs = b.shape + (1,) if vector else b.shape
    if len(rhs) < 2 or rhs[-2] != a.shape[-1]:
        raise ShapeError(f"solve: A {a} does not fit B {b}")
    batch = broadcast("solve", a.shape[:-2], rhs[:-2])
    return TensorType(
        dtypes.promote_types(a.dtype, b.dtype), batch + ((a.shape[-1],) if vector else rhs[-2:])
    )


@rule("slogdet")
def _slogdet(inputs):
    _matrices("slogdet", inputs[0])
    t = TensorType(inputs[0].dtype, inputs[0].shape[:-2])
    return [t, t]


@rule("cholesky")
def _cholesky(inputs):
    _matrices("cholesky", inputs[0])
    return inputs[0]


@rule("eigh")
def _eigh(inputs):
    x = inputs[0]
    _matrices("eigh", x)
    return [TensorType(x.dtype, x.shape[:-1]), x]


@rule("cross")
def _cross(inputs, dim):
    a, b = inputs
    shape = broadcast("cross", a.shape, b.shape)
    if a.shape[dim] != 3 or b.shape[dim] != 3:
        raise ShapeError(f"cross: dim {dim} must have size 3 in both inputs; got {a} and {b}")
    return TensorType(dtypes.promote_types(a.dtype, b.dtype), shape)


@rule("sort")
def _sort(inputs, dim=-1, descending=False, stable=False):
    x = inputs[0]
    return [x, TensorType(dtypes.int64, x.shape)]


@rule("topk")
def _topk(inputs, k, dim=-1, largest=True, sorted=True):
    x = inputs[0]
    d = dim % max(x.rank, 1)
    size = x.shape[d] if x.rank else 1
    if k < 0 or (isinstance(size, int) and k > size):
        raise ShapeError(f"topk: k={k} is out of range for dimension {dim} of size {size}")
    shape = x.shape[:d] + (k,) + x.shape[d + 1 :] if x.rank else ()
    return [TensorType(x.dtype, shape), TensorType(dtypes.int64, shape)]


@rule("linear")
def _linear(inputs):
    x, w = inputs[0], inputs[1]
    if x.shape[-1] != w.shape[1]:
        raise ShapeError(f"linear: input {list(x.shape)} does not fit weight {list(w.shape)}")
    return TensorType(x.dtype, x.shape[:-1] + (w.shape[0],))


def _conv_size(size: Dim, k: int, s: int, p: int, d: int, ceil: bool = False) -> Dim:
    """A convolution's or pooling's output size: (size + 2p - d(k - 1) - 1) // s + 1, for a
    symbolic size the derived dim ceil((size + 2p - d(k - 1)) / s) (`h_minus_1_by_2` for a
    2 x 2 pooling of h)."""
    if isinstance(size, str):
        if ceil:
            raise ShapeError(
                f"pooling with ceil_mode=True over the symbolic dim {size!r}: its output size "
                "is not a size of the dim; use ceil_mode=False or keep the dim static"
            )
        return derived_name(size, 2 * p - d * (k - 1), s)
    top = size + 2 * p - (d * (k - 1) + 1)
    if top < 0:
        raise ShapeError(
            f"spatial size {size} with padding {p} is smaller than the dilated kernel {d * (k - 1) + 1}"
        )
    if ceil:
        out = -(-top // s) + 1
        return out - 1 if (out - 1) * s >= size + p else out
    return top // s + 1


@rule("conv2d")
def _conv2d(inputs, stride, padding, dilation, groups):
    x, w = inputs[0], inputs[1]
    if x.rank != 4 or w.rank != 4 or x.shape[1] != w.shape[1] * groups:
        raise ShapeError(
            f"conv2d: input {list(x.shape)} does not fit weight {list(w.shape)} with groups={groups}"
        )
    oh = _conv_size(x.shape[2], w.shape[2], stride[0], padding[0], dilation[0])
    ow = _conv_size(x.shape[3], w.shape[3], stride[1], padding[1], dilation[1])
    return TensorType(x.dtype, (x.shape[0], w.shape[0], oh, ow))


@rule("conv2d_weight_grad")
def _conv2d_weight_grad(inputs, weight_shape, stride, padding, dilation, groups):
    x, g = inputs[0], inputs[1]
    o, cg, kh, kw = weight_shape
    if x.rank != 4 or g.rank != 4 or x.shape[1] != cg * groups or g.shape[1] != o:
        raise ShapeError(
            f"conv2d_weight_grad: input {list(x.shape)} and output gradient {list(g.shape)} do "
            f"not fit weight shape {list(weight_shape)} with groups={groups}"
        )
    for axis, k in ((2, kh), (3, kw)):
        i = axis - 2
        if _conv_size(x.shape[axis], k, stride[i], padding[i], dilation[i]) != g.shape[axis]:
            raise ShapeError(
                f"conv2d_weight_grad: output gradient {list(g.shape)} is not the size of "
                f"conv2d's output for input {list(x.shape)} and weight shape {list(weight_shape)}"
            )
    return TensorType(x.dtype, tuple(weight_shape))


@rule("conv_transpose2d")
def _conv_transpose2d(inputs, stride, padding, output_padding, dilation, groups):
    """(N, Cout, (H - 1) * s - 2p + d * (k - 1) + output_padding + 1, ...) for a weight of shape
    (Cin, Cout / groups, KH, KW)."""
    x, w = inputs[0], inputs[1]
    if x.rank != 4 or w.rank != 4 or x.shape[1] != w.shape[0] or not isinstance(w.shape[1], int):
        raise ShapeError(
            f"conv_transpose2d: input {list(x.shape)} does not fit weight {list(w.shape)} "
            f"(Cin, Cout / groups, KH, KW) with groups={groups}"
        )
    spatial = []
    for axis in (2, 3):
        i, size = axis - 2, x.shape[axis]
        extra = -stride[i] - 2 * padding[i] + dilation[i] * (w.shape[axis] - 1) + output_padding[i] + 1
        if isinstance(size, str):  # (a graph taking an empty image makes an empty one)
            spatial.append(derived_name(size, extra, 1, stride[i]))  # h_times_2 at stride 2
            continue
        out = size * stride[i] + extra
        if out <= 0:
            raise ShapeError(
                f"conv_transpose2d: padding {list(padding)} leaves no output for input {list(x.shape)}"
            )
        spatial.append(out)
    return TensorType(x.dtype, (x.shape[0], w.shape[1] * groups, *spatial))


@rule("max_pool2d")
def _max_pool2d(inputs, kernel_size, stride, padding, dilation, ceil_mode):
    x = inputs[0]
    oh = _conv_size(x.shape[2], kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode)
    ow = _conv_size(x.shape[3], kernel_size[1], stride[1], padding[1], dilation[1], ceil_mode)
    shape = (x.shape[0], x.shape[1], oh, ow)
    return [TensorType(x.dtype, shape), TensorType(dtypes.int64, shape)]


@rule("max_pool2d_backward")
def _max_pool2d_backward(inputs, height, width, overlapping=True):
    g, indices = inputs[0], inputs[1]
    if g.rank != 4 or tuple(indices.shape) != tuple(g.shape):
        raise ShapeError(
            f"max_pool2d_backward: expected a 4-D gradient and indices of its shape, got "
            f"{list(g.shape)} and {list(indices.shape)}"
        )
    return TensorType(g.dtype, (g.shape[0], g.shape[1], height, width))


@rule("log_softmax")
def _log_softmax(inputs, dim):
    return inputs[0]


@rule("softmax")
def _softmax(inputs, dim):
    return inputs[0]


@rule("softmax_backward")
def _softmax_backward(inputs, dim):
    y, g = inputs
    if y.shape != g.shape:
        raise ShapeError(f"softmax_backward: output {list(y.shape)} and gradient {list(g.shape)} differ")
    return y


@rule("layer_norm")
def _layer_norm(inputs, dims=(-1,), eps=1e-5):
    x = inputs[0]
    shape = tuple(x.shape[d] for d in dims)
    for role, t in zip(("weight", "bias"), inputs[1:], strict=False):
        if t is not None and tuple(t.shape) != shape:
            raise ShapeError(
                f"layer_norm: {role} of shape {list(t.shape)} does not match normalized shape {list(shape)}"
            )
    return x


@rule("layer_norm_backward")
def _layer_norm_backward(inputs, dims=(-1,), eps=1e-5):
    x, g = inputs[0], inputs[2]
    if x.shape != g.shape:
        raise ShapeError(f"layer_norm_backward: input {list(x.shape)} and gradient {list(g.shape)} differ")
    return x


@rule("nll_loss_backward")
def _nll_loss_backward(inputs, shape=(), ignore_index=-100, reduction="mean"):
    return TensorType(inputs[0].dtype, tuple(shape))


@rule("nll_loss")
def _nll_loss(inputs, ignore_index=-100, reduction="mean"):
    logp, target = inputs[0], inputs[1]
    return TensorType(logp.dtype, target.shape if reduction == "none" else ())


@rule("ctc_loss")
def _ctc_loss(inputs, blank=0):
    log_probs, targets = inputs[0], inputs[1]
    if log_probs.rank != 3 or targets.rank != 2:
        raise ShapeError(
            f"ctc_loss: expected log_probs (T, N, C) and targets (N, S), got {log_probs} and {targets}"
        )
    return TensorType(log_probs.dtype, (log_probs.shape[1],))


@rule("ctc_loss_backward")
def _ctc_loss_backward(inputs, blank=0):
    return inputs[0]


@rule("mse_loss")
def _mse_loss(inputs, reduction="mean"):
    a, b = inputs
    shape = broadcast("mse_loss", a.shape, b.shape)
    return TensorType(a.dtype, shape if reduction == "none" else ())


@rule("full")
def _full(inputs, shape, value, dtype):
    return TensorType(dtypes.from_name(dtype), tuple(shape))


@rule("eye")
def _eye(inputs, n, m, dtype):
    return TensorType(dtypes.from_name(dtype), (n, m))


@rule("linspace")
def _linspace(inputs, start, end, steps, dtype):
    return TensorType(dtypes.from_name(dtype), (steps,))


@rule("arange")
def _arange(inputs, start, end, step, dtype):
    if isinstance(end, str) or isinstance(start, str) or isinstance(step, str):
        if start != 0 or step != 1 or not isinstance(end, str):
            raise ShapeError(
                f"arange: with a symbolic bound only arange(n) (start 0, step 1) has a known length, "
                f"got start={start!r}, end={end!r}, step={step!r}"
            )
        return TensorType(dtypes.from_name(dtype), (end,))
    if step == 0:
        raise ShapeError("arange: step must be nonzero")
    return TensorType(dtypes.from_name(dtype), (max(math.ceil((end - start) / step), 0),))


@rule("uniform", "normal", "randint", "randperm", "bernoulli")
def _random(inputs, **attrs):
    raise ShapeError(
        "a node holding one seed would draw the same numbers on every call: graphs take random "
        "numbers as the counter-based generator keyed by their rng.key input (capture records "
        "rand, randn, normal and bernoulli so; randint, randperm and in-place fills not yet: "
        "draw those outside the graph and pass them in)"
    )


@rule("unique")
def _unique(inputs, dim=None):
    raise ShapeError("the number of distinct values is known only from the values (a data-dependent shape)")


def subgraph_inputs(op: str, inputs: list, attrs: dict) -> list[TensorType]:
    """The input types of the subgraphs of a node of `op` (cond, scan) with `inputs`: a cond
    branch takes the operands after the predicate; a scan body the carries, one step of each
    sequence (dim 0 dropped), and the further inputs."""
    if op == "cond":
        return list(inputs[1:])
    carries, sequences = attrs["carries"], attrs["sequences"]
    xs = inputs[carries : carries + sequences]
    rest = inputs[carries + sequences :]
    return [*inputs[:carries], *(TensorType(x.dtype, x.shape[1:]) for x in xs), *rest]


@rule("scan")
def _scan(inputs, body, carries, sequences, reverse=False):
    if not hasattr(body, "nodes"):
        raise ShapeError(f"scan: body must be a graph, got {type(body).__name__}")
    if carries < 0 or sequences < 1 or carries + sequences > len(inputs) or None in inputs:
        raise ShapeError(
            f"scan: expected {carries} carries and {sequences} (at least one) sequences among "
            f"{len(inputs)} inputs"
        )
    init, xs = list(inputs[:carries]), inputs[carries : carries + sequences]
    if any(x.rank == 0 for x in xs) or len({x.shape[0] for x in xs}) != 1:
        raise ShapeError(f"scan: the sequences must have one length along dim 0, got {list(xs)}")
    steps = subgraph_inputs("scan", inputs, {"carries": carries, "sequences": sequences})
    if [v.type for v in body.inputs] != steps:
        raise ShapeError(f"scan: the body takes {[v.type for v in body.inputs]}, but a step gives it {steps}")
    outs = [v.type for v in body.outputs]
    if outs[:carries] != init:
        raise ShapeError(f"scan: the body returns carries {outs[:carries]}, but they start as {init}")
    return [*init, *(TensorType(y.dtype, (xs[0].shape[0], *y.shape)) for y in outs[carries:])]


@rule("cond")
def _cond(inputs, then_branch, else_branch):
    pred, operands = inputs[0], inputs[1:]
    if pred is None or pred.dtype is not dtypes.bool_ or any(d != 1 for d in pred.shape):
        raise ShapeError(f"cond: the predicate must be a one-element bool tensor, got {pred}")
    for label, branch in (("then_branch", then_branch), ("else_branch", else_branch)):
        if not hasattr(branch, "nodes"):
            raise ShapeError(f"cond: {label} must be a graph, got {type(branch).__name__}")
        expected = [v.type for v in branch.inputs]
        if expected != list(operands):
            raise ShapeError(f"cond: {label} takes {expected}, but the operands are {list(operands)}")
    then_out = [v.type for v in then_branch.outputs]
    else_out = [v.type for v in else_branch.outputs]
    if then_out != else_out:
        raise ShapeError(f"cond: the branches return different types: {then_out} and {else_out}")
    return then_out
