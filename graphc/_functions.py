"""The math of `graphc.*`: elementwise ops, reductions, linear algebra and ordering.

Each function is a thin wrapper that names its op and attributes and calls the dispatch point.
Functions with PyTorch's `out=` write their result into the given tensor.
"""

from __future__ import annotations

import builtins
import math
from collections import namedtuple

import numpy as np

from graphc import _device, _dispatch
from graphc._dispatch import dispatch
from graphc._tensor import Tensor, _wrap_dim, get_default_dtype
from graphc.autograd import grad_mode
from graphc.errors import AutogradError, ShapeError
from ir import dtypes
from ir.ops import OPS
from ir.ops.elementwise import BINARY, UNARY

# --- results with named fields, printed like PyTorch's torch.return_types ---


def _return_type(name: str, fields: str):
    base = namedtuple(name, fields)

    def __repr__(self) -> str:
        body = ",\n".join(f"{f}={v!r}" for f, v in zip(self._fields, self, strict=True))
        return f"graphc.return_types.{name}(\n{body})"

    return type(name, (base,), {"__repr__": __repr__, "__slots__": ()})


return_types = type("return_types", (), {})
for _name, _fields in [
    ("max", "values indices"),
    ("min", "values indices"),
    ("sort", "values indices"),
    ("topk", "values indices"),
    ("median", "values indices"),
    ("kthvalue", "values indices"),
    ("cummax", "values indices"),
    ("cummin", "values indices"),
    ("svd", "U S V"),
    ("qr", "Q R"),
    ("aminmax", "min max"),
]:
    setattr(return_types, _name, _return_type(_name, _fields))


def _write_out(result: Tensor, out: Tensor | None) -> Tensor:
    """Store `result` into `out` (PyTorch's `out=`), resizing it when the shape differs."""
    if out is None:
        return result
    if not isinstance(out, Tensor):
        raise TypeError(f"out= expects a Tensor, got {type(out).__name__}")
    if grad_mode.state.enabled and (out._rg or result._rg):
        raise AutogradError(
            "functions with out=... arguments don't support automatic differentiation, but one "
            "of the arguments requires grad"
        )
    if out._data.shape == result._data.shape:
        out._data[...] = result._data
    else:
        out._data = result._data.astype(out._data.dtype)
    out._bump_version()
    if _dispatch.tracer is not None:
        _dispatch.tracer.write(out, result)
    return out


def _op(name: str):
    return OPS[name]


# --- elementwise ---

_UNARY = list(UNARY)


def _make_unary(name: str):
    op = _op(name)

    def fn(input: Tensor, *, out: Tensor | None = None) -> Tensor:
        return _write_out(dispatch(op, (input,)), out)

    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name} of `input`.\n\n    >>> graphc.{name}(graphc.tensor([0.5]))\n"
    return fn


neg = _make_unary("neg")
abs = _make_unary("abs")
sign = _make_unary("sign")
exp = _make_unary("exp")
exp2 = _make_unary("exp2")
expm1 = _make_unary("expm1")
log = _make_unary("log")
log2 = _make_unary("log2")
log10 = _make_unary("log10")
log1p = _make_unary("log1p")
sin = _make_unary("sin")
cos = _make_unary("cos")
tan = _make_unary("tan")
asin = _make_unary("asin")
acos = _make_unary("acos")
atan = _make_unary("atan")
sinh = _make_unary("sinh")
cosh = _make_unary("cosh")
tanh = _make_unary("tanh")
asinh = _make_unary("asinh")
acosh = _make_unary("acosh")
atanh = _make_unary("atanh")
sqrt = _make_unary("sqrt")
rsqrt = _make_unary("rsqrt")
reciprocal = _make_unary("reciprocal")
sigmoid = _make_unary("sigmoid")
erf = _make_unary("erf")
erfinv = _make_unary("erfinv")
erfc = _make_unary("erfc")
lgamma = _make_unary("lgamma")
digamma = _make_unary("digamma")
relu = _make_unary("relu")
ceil = _make_unary("ceil")
floor = _make_unary("floor")
trunc = _make_unary("trunc")
isnan = _make_unary("isnan")
isinf = _make_unary("isinf")
isfinite = _make_unary("isfinite")
logical_not = _make_unary("logical_not")
bitwise_not = _make_unary("bitwise_not")
negative, absolute, arcsin, arccos, arctan = neg, abs, asin, acos, atan
arcsinh, arccosh, arctanh, fix = asinh, acosh, atanh, trunc

# add, div and the shifts have signatures of their own below
_BINARY = [n for n in BINARY if n not in ("add", "div", "left_shift", "right_shift")]


def _make_binary(name: str):
    op = _op(name)

    def fn(input, other, *, out: Tensor | None = None) -> Tensor:
        return _write_out(dispatch(op, (input, other)), out)

    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name} of `input` and `other`, broadcasting."
    return fn


sub = _make_binary("sub")
mul = _make_binary("mul")
floor_divide = _make_binary("floor_divide")
remainder = _make_binary("remainder")
fmod = _make_binary("fmod")
pow = _make_binary("pow")
maximum = _make_binary("maximum")
minimum = _make_binary("minimum")
atan2 = _make_binary("atan2")
eq = _make_binary("eq")
ne = _make_binary("ne")
lt = _make_binary("lt")
le = _make_binary("le")
gt = _make_binary("gt")
ge = _make_binary("ge")
logical_and = _make_binary("logical_and")
logical_or = _make_binary("logical_or")
logical_xor = _make_binary("logical_xor")
bitwise_and = _make_binary("bitwise_and")
bitwise_or = _make_binary("bitwise_or")
bitwise_xor = _make_binary("bitwise_xor")
multiply, subtract, arctan2 = mul, sub, atan2
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne
bitwise_left_shift = lambda a, b: dispatch(_op("left_shift"), (a, b))  # noqa: E731
bitwise_right_shift = lambda a, b: dispatch(_op("right_shift"), (a, b))  # noqa: E731
_ADD, _SUB, _MUL, _DIV = _op("add"), _op("sub"), _op("mul"), _op("div")


def add(input, other, *, alpha=1, out: Tensor | None = None) -> Tensor:
    """`input + alpha * other`, broadcasting.

    >>> graphc.add(graphc.ones(2), 1)
    tensor([2., 2.])
    """
    if alpha != 1:
        other = mul(other, alpha)
    return _write_out(dispatch(_ADD, (input, other)), out)


def div(input, other, *, rounding_mode: str | None = None, out: Tensor | None = None) -> Tensor:
    """`input / other` (true division; integers give floats), or rounded with `rounding_mode`
    'trunc' or 'floor', which keep integer dtypes."""
    if rounding_mode is None:
        result = dispatch(_DIV, (input, other))
    elif rounding_mode == "floor":
        result = floor_divide(input, other)
    elif rounding_mode == "trunc":
        result = trunc(dispatch(_DIV, (input, other)))
        exact = dispatch(OPS["floor_divide"], (input, other)).dtype
        if not exact.is_floating_point:
            result = cast(result, exact)
    else:
        raise ValueError(f"div expected rounding_mode to be None, 'trunc' or 'floor', got {rounding_mode!r}")
    return _write_out(result, out)


true_divide = divide = div


def square(input: Tensor) -> Tensor:
    """`input * input`."""
    return mul(input, input)


def round(input: Tensor, *, decimals: int = 0, out: Tensor | None = None) -> Tensor:
    """Round half to even (to `decimals` places)."""
    return _write_out(dispatch(_op("round"), (input,), {"decimals": decimals}), out)


def clamp(input: Tensor, min=None, max=None, *, out: Tensor | None = None) -> Tensor:
    """`input` limited to [min, max] (either may be None; tensors broadcast)."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of 'min' or 'max' must not be None")
    return _write_out(dispatch(_op("clamp"), (input, min, max)), out)


clip = clamp


def where(condition: Tensor, input=None, other=None) -> Tensor:
    """Elements of `input` where `condition`, else of `other`; with one argument, the indices
    where `condition` holds (like `nonzero(as_tuple=True)`)."""
    if input is None and other is None:
        return nonzero(condition, as_tuple=True)
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):  # two Python numbers
        from graphc._creation import tensor

        kinds = {type(v) for v in (input, other)}
        dtype = get_default_dtype() if float in kinds else dtypes.int64 if int in kinds else dtypes.bool_
        input = tensor(input, dtype=dtype, device=condition.device)
    return dispatch(_op("where"), (condition, input, other))


def lerp(input: Tensor, end: Tensor, weight) -> Tensor:
    """`input + weight * (end - input)`."""
    return add(input, mul(weight, sub(end, input)))


def cast(input: Tensor, dtype: dtypes.DType) -> Tensor:
    """`input` converted to `dtype` (a new tensor; the same one when it already has it)."""
    if input._data.dtype == dtype.np:
        return input
    return dispatch(_op("cast"), (input,), {"dtype": dtype.name}, name="ToCopyBackward0")


# --- reductions ---


def _dims(dim, ndim: int):
    if dim is None:
        return None
    if isinstance(dim, int):
        dim = (dim,)
    return tuple(_wrap_dim(d, ndim) for d in dim)


def sum(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Sum of all elements, or over `dim` (an int or a tuple)."""
    if dtype is not None:
        input = cast(input, dtype)
    name = "SumBackward0" if dim is None else "SumBackward1"
    return dispatch(_op("sum"), (input,), {"dims": _dims(dim, input.dim()), "keepdim": keepdim}, name=name)


def mean(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Mean of all elements, or over `dim`; integer inputs need an explicit float `dtype`."""
    if dtype is not None:
        input = cast(input, dtype)
    elif not input.dtype.is_floating_point:
        raise TypeError(
            f"mean(): could not infer output dtype. Input dtype must be either a floating point "
            f"or complex dtype. Got: {input.dtype}"
        )
    name = "MeanBackward0" if dim is None else "MeanBackward1"
    return dispatch(_op("mean"), (input,), {"dims": _dims(dim, input.dim()), "keepdim": keepdim}, name=name)


def prod(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Product of all elements, or along `dim`."""
    if dtype is not None:
        input = cast(input, dtype)
    return dispatch(_op("prod"), (input,), {"dims": _dims(dim, input.dim()), "keepdim": keepdim})


def _correction(unbiased, correction) -> int:
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


def var(input: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    """Variance over `dim` (all elements if None) with Bessel's `correction` (default 1)."""
    if isinstance(dim, bool):  # var(x, False): the old positional `unbiased`
        dim, unbiased = None, dim
    attrs = {
        "dims": _dims(dim, input.dim()),
        "correction": _correction(unbiased, correction),
        "keepdim": keepdim,
    }
    return dispatch(_op("var"), (input,), attrs)


def std(input: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    """Standard deviation: the square root of `var`."""
    return sqrt(var(input, dim, unbiased, keepdim, correction=correction))


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """(var, mean) over `dim`: a plain tuple, as PyTorch returns."""
    v = var(input, dim, unbiased, keepdim, correction=correction)
    return (v, mean(input, dim if not isinstance(dim, bool) else None, keepdim))


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """(std, mean) over `dim`: a plain tuple, as PyTorch returns."""
    s = std(input, dim, unbiased, keepdim, correction=correction)
    return (s, mean(input, dim if not isinstance(dim, bool) else None, keepdim))


def amax(input: Tensor, dim=(), keepdim: bool = False) -> Tensor:
    """Largest values over `dim` (all dims for `()`); gradient split evenly among ties."""
    dims = None if dim == () or dim is None else _dims(dim, input.dim())
    return dispatch(_op("amax"), (input,), {"dims": dims, "keepdim": keepdim})


def amin(input: Tensor, dim=(), keepdim: bool = False) -> Tensor:
    """Smallest values over `dim` (all dims for `()`)."""
    dims = None if dim == () or dim is None else _dims(dim, input.dim())
    return dispatch(_op("amin"), (input,), {"dims": dims, "keepdim": keepdim})


def _extreme(kind: str, input: Tensor, dim, keepdim: bool):
    if isinstance(dim, Tensor):  # max(a, b) is the elementwise maximum
        return dispatch(_op(f"{kind}imum"), (input, dim))
    name = kind.capitalize()
    if dim is None:
        return dispatch(_op(f"a{kind}"), (input,), {"dims": None, "keepdim": False}, name=f"{name}Backward1")
    values, indices = dispatch(
        _op(f"{kind}_dim"),
        (input,),
        {"dim": _wrap_dim(dim, input.dim()), "keepdim": keepdim},
        name=f"{name}Backward0",
    )
    return getattr(return_types, kind)(values, indices)


def max(input: Tensor, dim=None, keepdim: bool = False):
    """The largest element; with `dim`, (values, indices) along it; with a tensor, `maximum`."""
    return _extreme("max", input, dim, keepdim)


def min(input: Tensor, dim=None, keepdim: bool = False):
    """The smallest element; with `dim`, (values, indices) along it; with a tensor, `minimum`."""
    return _extreme("min", input, dim, keepdim)


def aminmax(input: Tensor, *, dim=None, keepdim: bool = False):
    """(min, max) over `dim`."""
    return return_types.aminmax(amin(input, dim, keepdim), amax(input, dim, keepdim))


def argmax(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the largest element (in the flattened tensor when `dim` is None)."""
    d = None if dim is None else _wrap_dim(dim, input.dim())
    return dispatch(_op("argmax"), (input,), {"dim": d, "keepdim": keepdim and d is not None})


def argmin(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the smallest element (in the flattened tensor when `dim` is None)."""
    d = None if dim is None else _wrap_dim(dim, input.dim())
    return dispatch(_op("argmin"), (input,), {"dim": d, "keepdim": keepdim and d is not None})


def any(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Whether any element (over `dim`) is nonzero."""
    return dispatch(_op("any"), (input,), {"dims": _dims(dim, input.dim()), "keepdim": keepdim})


def all(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Whether all elements (over `dim`) are nonzero."""
    return dispatch(_op("all"), (input,), {"dims": _dims(dim, input.dim()), "keepdim": keepdim})


def cumsum(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    """Running sum along `dim`."""
    if dtype is not None:
        input = cast(input, dtype)
    return dispatch(_op("cumsum"), (input,), {"dim": _wrap_dim(dim, input.dim())})


def cumprod(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    """Running product along `dim`."""
    if dtype is not None:
        input = cast(input, dtype)
    return dispatch(_op("cumprod"), (input,), {"dim": _wrap_dim(dim, input.dim())})


def logsumexp(input: Tensor, dim, keepdim: bool = False) -> Tensor:
    """`log(sum(exp(input), dim))`, computed without overflow."""
    dims = _dims(dim, input.dim())
    with grad_mode.no_grad():
        m = amax(input, dims, keepdim=True)
        m = where(isfinite(m), m, 0.0)
    total = log(sum(exp(sub(input, m)), dims, keepdim=True))
    out = add(total, m)
    return out if keepdim else out.squeeze(dims)


def norm(input: Tensor, p="fro", dim=None, keepdim: bool = False, dtype=None) -> Tensor:
    """Vector p-norm over `dim` (all elements if None): p = 2 ('fro'), 1, inf, -inf, 0 or any
    positive number; 'nuc' for the nuclear norm of a matrix."""
    if dtype is not None:
        input = cast(input, dtype)
    if p == "fro" or p == 2:
        return sqrt(sum(mul(input, input), dim, keepdim))
    if p == "nuc":
        return sum(svd(input).S, -1, keepdim)
    if p == math.inf:
        return amax(abs(input), () if dim is None else dim, keepdim)
    if p == -math.inf:
        return amin(abs(input), () if dim is None else dim, keepdim)
    if p == 0:
        return sum(ne(input, 0).to(input.dtype), dim, keepdim)
    if isinstance(p, (int, float)) and p > 0:
        return pow(sum(pow(abs(input), p), dim, keepdim), 1.0 / p)
    raise ValueError(f"norm: unsupported p={p!r}; expected 'fro', 'nuc', inf, -inf, 0 or p > 0")


def dist(input: Tensor, other: Tensor, p=2) -> Tensor:
    """The p-norm of `input - other`."""
    return norm(sub(input, other), p)


def count_nonzero(input: Tensor, dim=None) -> Tensor:
    """How many elements (over `dim`) are nonzero."""
    return sum(ne(input, 0), dim)


# --- linear algebra ---


def matmul(input: Tensor, other: Tensor, *, out: Tensor | None = None) -> Tensor:
    """Matrix product with broadcasting (1-D operands as vectors, batches broadcast)."""
    return _write_out(dispatch(_op("matmul"), (input, other)), out)


def mm(input: Tensor, mat2: Tensor, *, out: Tensor | None = None) -> Tensor:
    """Product of two matrices (2-D only)."""
    if input.dim() != 2 or mat2.dim() != 2:
        raise ShapeError(f"mm: expected 2-D tensors, got shapes {list(input.shape)} and {list(mat2.shape)}")
    return _write_out(dispatch(_op("matmul"), (input, mat2), name="MmBackward0"), out)


def bmm(input: Tensor, mat2: Tensor, *, out: Tensor | None = None) -> Tensor:
    """Batched product of 3-D tensors with equal batch sizes."""
    if input.dim() != 3 or mat2.dim() != 3 or input.shape[0] != mat2.shape[0]:
        raise ShapeError(
            f"bmm: expected 3-D tensors with equal batch sizes, got shapes "
            f"{list(input.shape)} and {list(mat2.shape)}"
        )
    return _write_out(dispatch(_op("matmul"), (input, mat2), name="BmmBackward0"), out)


def mv(input: Tensor, vec: Tensor) -> Tensor:
    """Matrix-vector product."""
    if input.dim() != 2 or vec.dim() != 1:
        raise ShapeError(
            f"mv: expected a matrix and a vector, got shapes {list(input.shape)} and {list(vec.shape)}"
        )
    return dispatch(_op("matmul"), (input, vec), name="MvBackward0")


def dot(input: Tensor, other: Tensor) -> Tensor:
    """Inner product of two 1-D tensors of equal size."""
    if input.dim() != 1 or other.dim() != 1 or input.shape[0] != other.shape[0]:
        raise ShapeError(
            f"dot: expected two 1-D tensors of equal size, got shapes "
            f"{list(input.shape)} and {list(other.shape)}"
        )
    return dispatch(_op("matmul"), (input, other), name="DotBackward0")


inner = dot


def outer(input: Tensor, vec2: Tensor) -> Tensor:
    """Outer product of two vectors."""
    return mul(input.reshape(-1, 1), vec2.reshape(1, -1))


ger = outer


def addmm(input: Tensor, mat1: Tensor, mat2: Tensor, *, beta=1, alpha=1) -> Tensor:
    """`beta * input + alpha * (mat1 @ mat2)`."""
    prod_ = mm(mat1, mat2)
    return add(mul(input, beta) if beta != 1 else input, mul(prod_, alpha) if alpha != 1 else prod_)


def cross(input: Tensor, other: Tensor, dim: int | None = None) -> Tensor:
    """Cross product along `dim` (default: the first dim of size 3)."""
    if dim is None:
        dim = next((i for i, s in enumerate(input.shape) if s == 3), None)
        if dim is None:
            raise ShapeError(f"cross: no dim of size 3 in shape {list(input.shape)}")
    return dispatch(
        _op("cross"), (input, other), {"dim": _wrap_dim(dim, input.dim())}, name="LinalgCrossBackward0"
    )


def det(input: Tensor) -> Tensor:
    """Determinant of a square matrix (or of each in a batch)."""
    return dispatch(_op("det"), (input,), name="LinalgDetBackward0")


def inverse(input: Tensor) -> Tensor:
    """Inverse of a square matrix (or of each in a batch)."""
    return dispatch(_op("inv"), (input,), name="LinalgInvExBackward0")


def svd(input: Tensor, some: bool = True, compute_uv: bool = True):
    """(U, S, V) with input = U diag(S) V^T (`torch.svd`'s convention: V, not V^T)."""
    u, s, vh = dispatch(_op("svd"), (input,), {"full_matrices": not some}, name="LinalgSvdBackward0")
    return return_types.svd(u, s, vh.mT)


def qr(input: Tensor, some: bool = True):
    """(Q, R) with input = Q R (`torch.qr`: some=True the reduced decomposition, False the
    complete one; graphc.linalg.qr has the modes)."""
    mode = "reduced" if some else "complete"
    q, r = dispatch(_op("qr"), (input,), {"mode": mode}, name="LinalgQrBackward0")
    return return_types.qr(q, r)


def matrix_power(input: Tensor, n: int) -> Tensor:
    """input multiplied by itself n times (graphc.linalg.matrix_power)."""
    from graphc.linalg import matrix_power as power

    return power(input, n)


def pinverse(input: Tensor, rcond: float = 1e-15) -> Tensor:
    """The pseudo-inverse, singular values at or below rcond times the largest taken for zero
    (graphc.linalg.pinv with rtol=rcond)."""
    from graphc.linalg import pinv

    return pinv(input, rtol=rcond)


def chain_matmul(*matrices) -> Tensor:
    """The product of 2-D matrices in the cheapest order (graphc.linalg.multi_dot)."""
    from graphc.linalg import multi_dot

    if len(matrices) == 1:
        return matrices[0]
    return multi_dot(matrices)


def polygamma(n: int, input: Tensor) -> Tensor:
    """The n-th derivative of digamma: n = 0 is digamma, n = 1 trigamma (higher orders are not
    implemented: a NotImplementedError says so)."""
    if n == 0:
        return digamma(input)
    if n == 1:
        return dispatch(_op("trigamma"), (input,), name="PolygammaBackward0")
    raise NotImplementedError(
        f"polygamma: only n = 0 (digamma) and n = 1 (trigamma) are implemented, got n = {n}"
    )


# --- ordering ---


def sort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False):
    """(values, indices) sorted along `dim`."""
    values, indices = dispatch(
        _op("sort"),
        (input,),
        {"dim": _wrap_dim(dim, input.dim()), "descending": descending, "stable": stable},
    )
    return return_types.sort(values, indices)


def argsort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False):
    """Indices that sort `input` along `dim`."""
    return sort(input, dim, descending, stable).indices


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    """(values, indices) of the `k` largest (or smallest) elements along `dim`."""
    values, indices = dispatch(
        _op("topk"),
        (input,),
        {"k": k, "dim": _wrap_dim(dim, input.dim()), "largest": largest, "sorted": sorted},
    )
    return return_types.topk(values, indices)


def unique(
    input: Tensor,
    sorted: bool = True,
    return_inverse: bool = False,
    return_counts: bool = False,
    dim: int | None = None,
):
    """The distinct values, sorted; optionally the inverse indices and the counts."""
    d = None if dim is None else _wrap_dim(dim, input.dim())
    values, inverse, counts = dispatch(_op("unique"), (input,), {"dim": d})
    extra = ([inverse] if return_inverse else []) + ([counts] if return_counts else [])
    return (values, *extra) if extra else values


def nonzero(input: Tensor, *, as_tuple: bool = False):
    """Indices of the nonzero elements: an (n, ndim) tensor, or a tuple of 1-D index tensors."""
    if _dispatch.tracer is not None and _dispatch.tracer.tracks(input):
        _dispatch.tracer.data_dependent(
            "nonzero (also behind masked_select, argwhere and where(condition))",
            "keep the shape fixed with graphc.where(condition, x, other) or a product with the mask",
        )
    data = input._data
    xp = _device.array_module(data)
    idx = [i.astype(np.int64) for i in xp.nonzero(data.reshape(1) if data.ndim == 0 else data)]
    if as_tuple:
        return tuple(Tensor._wrap(i) for i in idx)
    if data.ndim == 0:
        return Tensor._wrap(xp.zeros((len(idx[0]), 0), np.int64))
    return Tensor._wrap(xp.stack(idx, axis=1))


def allclose(input: Tensor, other: Tensor, rtol=1e-5, atol=1e-8, equal_nan=False) -> bool:
    """Whether all elements are close: |input - other| <= atol + rtol * |other|."""
    return bool(isclose(input, other, rtol, atol, equal_nan).all())


def isclose(input: Tensor, other, rtol=1e-5, atol=1e-8, equal_nan=False) -> Tensor:
    """Elementwise closeness, as in `allclose`."""
    diff = abs(sub(input, other))
    scale = abs(other) if isinstance(other, Tensor) else builtins.abs(other)
    tol = add(mul(scale, rtol), atol)
    close = le(diff, tol)
    same = eq(input, other)
    close = logical_or(close, same)
    if equal_nan:
        close = logical_or(close, logical_and(isnan(input), isnan(other)))
    return close


def equal(input: Tensor, other: Tensor) -> bool:
    """Whether both tensors have the same shape and elements."""
    return input.shape == other.shape and bool(eq(input, other).all())
