"""Gradient rules, one per differentiable op, written in graphc ops.

Because rules are graphc code, a backward pass is itself recorded when `create_graph=True`,
which is what gradients of gradients (hessian, hvp) need. A rule receives the backward node
(`n`: saved inputs via `n.input(i)`, outputs via `n.output(i)`, `n.attrs`, input shapes) and the
output gradients, and returns one gradient per input. Gradients may keep the broadcast shape
and computation dtype: the node sums and casts them back to each input's shape and dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import graphc as F
from graphc import _dispatch as _dispatch_module
from graphc._dispatch import dispatch
from graphc._tensor import Tensor
from graphc.autograd import grad_mode
from graphc.autograd.engine import Node
from graphc.errors import AutogradError
from ir import dtypes
from ir.ops import OPS


@dataclass(frozen=True)
class Rule:
    fn: Callable
    save_inputs: bool = False
    save_outputs: bool = False


RULES: dict[str, Rule] = {}


def rule(op: str, inputs: bool = False, outputs: bool = False):
    def wrap(fn):
        RULES[op] = Rule(fn, inputs, outputs)
        return fn

    return wrap


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) + "Backward0"


_NO_EDGE = (None, 0)
_NAMES: dict[str, str] = {}


def attach(op, args: tuple, attrs: dict, outs: tuple, name: str | None) -> None:
    """Create the backward node of one op call and make `outs` its outputs.

    This runs for every recorded op, so it stays lean: shapes and numpy dtypes are kept as
    they are and converted only when a gradient needs it.
    """
    r = RULES.get(op.name)
    if r is None:
        r = Rule(_missing(op.name))
    next_functions = []
    in_meta = []
    for a in args:
        if isinstance(a, Tensor):
            data = a._data
            in_meta.append((data.shape, data.dtype))
            if not a._rg:
                next_functions.append(_NO_EDGE)
            else:
                fn = a.grad_fn
                next_functions.append((fn, a._output_nr) if fn is not None else (a._accumulate_node(), 0))
        else:
            next_functions.append(_NO_EDGE)
            in_meta.append(None)
    if name is None:
        name = _NAMES.get(op.name) or _NAMES.setdefault(op.name, _camel(op.name))
    if len(outs) == 1:  # the common case, kept free of loops
        out = outs[0]
        data = out._data
        node = Node(name, r.fn, attrs, tuple(next_functions), in_meta, ((data.shape, data.dtype),))
        if data.dtype.kind == "f" or out.dtype.is_floating_point:
            out._rg = True
            out.grad_fn = node
    else:
        node = Node(
            name,
            r.fn,
            attrs,
            tuple(next_functions),
            in_meta,
            tuple((o._data.shape, o._data.dtype) for o in outs),
        )
        for i, o in enumerate(outs):
            if o._data.dtype.kind == "f" or o.dtype.is_floating_point:
                o._rg = True
                o.grad_fn = node
                o._output_nr = i
    if r.save_inputs:
        node._save_inputs(args)
    if r.save_outputs:
        node._save_outputs(outs)


def _missing(op_name: str):
    def fail(n, *grads):
        raise AutogradError(f"the derivative for '{op_name}' is not implemented")

    return fail


def _run(op: str, args: tuple, attrs: dict) -> Tensor:
    return dispatch(OPS[op], args, attrs)


def _unreduce(g: Tensor, n: Node) -> Tensor:
    """Broadcast the gradient of a reduction back to its input's shape."""
    dims, keepdim = n.attrs.get("dims"), n.attrs.get("keepdim", False)
    shape = n.input_shape(0)
    if dims is not None and not keepdim:
        for d in sorted(dims):
            g = g.unsqueeze(d)
    elif dims is None and not keepdim:
        g = g.reshape((1,) * len(shape))
    return g.expand(shape)


# --- arithmetic ---
rule("add")(lambda n, g: (g, g))
rule("sub")(lambda n, g: (g, -g))
rule("neg")(lambda n, g: -g)
rule("cast")(lambda n, g: g)
rule("copy")(lambda n, g: g)
rule("contiguous")(lambda n, g: g)


@rule("mul", inputs=True)
def _mul(n, g):
    need = n.needs_input_grad
    return (g * n.input(1) if need[0] else None, g * n.input(0) if need[1] else None)


@rule("div", inputs=True)
def _div(n, g):
    need = n.needs_input_grad
    b = n.input(1)
    ga = g / b if need[0] else None
    gb = -g * n.input(0) / (b * b) if need[1] else None
    return ga, gb


@rule("pow", inputs=True, outputs=True)
def _pow(n, g):
    need = n.needs_input_grad
    a, b = n.input(0), n.input(1)
    ga = gb = None
    if need[0]:
        if isinstance(b, (int, float)):
            ga = g * b * a ** (b - 1) if b != 0 else g * 0
        else:
            ga = g * b * F.pow(a, b - 1)
            ga = F.where(b == 0, 0.0, ga)
    if need[1]:
        out = n.output(0)
        loga = F.log(a) if isinstance(a, Tensor) else math.log(a) if a > 0 else float("nan")
        gb = g * out * loga
        if isinstance(a, Tensor):
            gb = F.where((a == 0) & (b >= 0), 0.0, gb)
    return ga, gb


@rule("maximum", inputs=True)
def _maximum(n, g):
    a, b = n.input(0), n.input(1)
    half = (a == b).to(g.dtype) * 0.5
    return g * ((a > b).to(g.dtype) + half), g * ((b > a).to(g.dtype) + half)


@rule("minimum", inputs=True)
def _minimum(n, g):
    a, b = n.input(0), n.input(1)
    half = (a == b).to(g.dtype) * 0.5
    return g * ((a < b).to(g.dtype) + half), g * ((b < a).to(g.dtype) + half)


@rule("remainder", inputs=True)
def _remainder(n, g):
    a, b = n.input(0), n.input(1)
    return g, -g * F.floor_divide(a, b) if n.needs_input_grad[1] else None


@rule("fmod", inputs=True)
def _fmod(n, g):
    a, b = n.input(0), n.input(1)
    return g, -g * F.trunc(a / b) if n.needs_input_grad[1] else None


@rule("atan2", inputs=True)
def _atan2(n, g):
    a, b = n.input(0), n.input(1)
    denom = a * a + b * b
    return g * b / denom, -g * a / denom


@rule("where", inputs=True)
def _where(n, g):
    cond = n.input(0)
    return None, F.where(cond, g, 0.0), F.where(cond, 0.0, g)


@rule("clamp", inputs=True)
def _clamp(n, g):
    x, lo, hi = n.input(0), n.input(1), n.input(2)
    inside = F.ones_like(x, dtype=dtypes.bool_)
    if lo is not None:
        inside = inside & (x >= lo)
    if hi is not None:
        inside = inside & (x <= hi)
    gx = F.where(inside, g, 0.0)
    glo = F.where(x < lo, g, 0.0) if isinstance(lo, Tensor) and lo._rg else None
    ghi = F.where(x > hi, g, 0.0) if isinstance(hi, Tensor) and hi._rg else None
    return gx, glo, ghi


# --- unary math ---
rule("exp", outputs=True)(lambda n, g: g * n.output(0))
rule("exp2", outputs=True)(lambda n, g: g * n.output(0) * math.log(2.0))
rule("expm1", outputs=True)(lambda n, g: g * (n.output(0) + 1))
rule("log", inputs=True)(lambda n, g: g / n.input(0))
rule("log2", inputs=True)(lambda n, g: g / (n.input(0) * math.log(2.0)))
rule("log10", inputs=True)(lambda n, g: g / (n.input(0) * math.log(10.0)))
rule("log1p", inputs=True)(lambda n, g: g / (n.input(0) + 1))
rule("sin", inputs=True)(lambda n, g: g * F.cos(n.input(0)))
rule("cos", inputs=True)(lambda n, g: -g * F.sin(n.input(0)))
rule("tan", outputs=True)(lambda n, g: g * (1 + n.output(0) * n.output(0)))
rule("asin", inputs=True)(lambda n, g: g * F.rsqrt(1 - n.input(0) * n.input(0)))
rule("acos", inputs=True)(lambda n, g: -g * F.rsqrt(1 - n.input(0) * n.input(0)))
rule("atan", inputs=True)(lambda n, g: g / (1 + n.input(0) * n.input(0)))
rule("sinh", inputs=True)(lambda n, g: g * F.cosh(n.input(0)))
rule("cosh", inputs=True)(lambda n, g: g * F.sinh(n.input(0)))
rule("tanh", outputs=True)(lambda n, g: g * (1 - n.output(0) * n.output(0)))
rule("asinh", inputs=True)(lambda n, g: g * F.rsqrt(n.input(0) * n.input(0) + 1))
rule("acosh", inputs=True)(lambda n, g: g * F.rsqrt(n.input(0) * n.input(0) - 1))
rule("atanh", inputs=True)(lambda n, g: g / (1 - n.input(0) * n.input(0)))
rule("sqrt", outputs=True)(lambda n, g: g / (2 * n.output(0)))
rule("rsqrt", outputs=True)(lambda n, g: -0.5 * g * n.output(0) ** 3)
rule("reciprocal", outputs=True)(lambda n, g: -g * n.output(0) * n.output(0))
rule("sigmoid", outputs=True)(lambda n, g: g * n.output(0) * (1 - n.output(0)))
rule("erf", inputs=True)(lambda n, g: g * (2.0 / math.sqrt(math.pi)) * F.exp(-n.input(0) * n.input(0)))
rule("erfc", inputs=True)(lambda n, g: -g * (2.0 / math.sqrt(math.pi)) * F.exp(-n.input(0) * n.input(0)))
rule("lgamma", inputs=True)(lambda n, g: g * F.digamma(n.input(0)))
rule("digamma", inputs=True)(lambda n, g: g * F.polygamma(1, n.input(0)))
rule("erfinv", outputs=True)(lambda n, g: g * (math.sqrt(math.pi) / 2.0) * F.exp(n.output(0) * n.output(0)))
rule("relu", outputs=True)(lambda n, g: _run("threshold_backward", (g, n.output(0)), {"threshold": 0.0}))


@rule("threshold_backward", inputs=True)
def _threshold_backward(n, u):
    # linear in grad with a fixed mask; the mask (from the output) has no gradient
    return _run("threshold_backward", (u, n.input(1)), n.attrs), None


rule("abs", inputs=True)(lambda n, g: g * F.sign(n.input(0)))
for _name in ("sign", "ceil", "floor", "round", "trunc"):
    rule(_name)(lambda n, g: g * 0)


# --- reductions ---
rule("sum")(lambda n, g: _unreduce(g, n))


def _reduced_count(n) -> int:
    """How many input elements each output element of a reduction summarises."""
    shape, dims = n.input_shape(0), n.attrs.get("dims")
    return int(np.prod([shape[d] for d in dims]) if dims is not None else np.prod(shape))


@rule("mean")
def _mean(n, g):
    count = _reduced_count(n)
    return _unreduce(g, n) / count if count else _unreduce(g, n) * float("nan")


@rule("var", inputs=True)
def _var(n, g):
    x = n.input(0)
    dims, correction = n.attrs.get("dims"), n.attrs.get("correction", 1)
    count = _reduced_count(n)
    centered = x - F.mean(x, dims, keepdim=True)
    scale = 2.0 / (count - correction) if count > correction else float("nan")
    return _unreduce(g, n) * centered * scale


@rule("prod", inputs=True)
def _prod(n, g):
    x = n.input(0)
    dims = n.attrs.get("dims")
    dims = tuple(range(x.dim())) if dims is None else dims
    # product of all other elements = exclusive cumprod from the left times from the right,
    # which stays exact where elements are zero
    rest = [d for d in range(x.dim()) if d not in dims]
    moved = x.permute(*rest, *dims)
    flat = moved.reshape(*moved.shape[: len(rest)], -1)
    ones = F.ones_like(flat[..., :1])
    left = F.cat([ones, F.cumprod(flat, -1)[..., :-1]], -1)
    right = F.cat([ones, F.cumprod(flat.flip(-1), -1)[..., :-1]], -1).flip(-1)
    others = (left * right).reshape(moved.shape)
    inverse = [0] * x.dim()
    for i, d in enumerate((*rest, *dims)):
        inverse[d] = i
    return _unreduce(g, n) * others.permute(*inverse)


def _amax_amin(n, g):
    x, out = n.input(0), n.output(0)
    dims, keepdim = n.attrs.get("dims"), n.attrs.get("keepdim", False)
    out_b = out if keepdim else _unreduce_like(out, n)
    mask = (x == out_b).to(g.dtype)
    count = F.sum(mask, dims, keepdim=True)
    return _unreduce(g, n) * mask / count


def _unreduce_like(t, n):
    dims = n.attrs.get("dims")
    if dims is None:
        return t.reshape((1,) * len(n.input_shape(0)))
    for d in sorted(dims):
        t = t.unsqueeze(d)
    return t


rule("amax", inputs=True, outputs=True)(_amax_amin)
rule("amin", inputs=True, outputs=True)(_amax_amin)


def _select_dim(n, g, _indices_grad=None):
    dim, keepdim = n.attrs["dim"], n.attrs.get("keepdim", False)
    idx = n.output(1)
    if not keepdim:
        g, idx = g.unsqueeze(dim), idx.unsqueeze(dim)
    zeros = F.zeros(n.input_shape(0), dtype=g.dtype, device=g.device)
    return F.scatter_add(zeros, dim, idx, g)


rule("max_dim", outputs=True)(_select_dim)
rule("min_dim", outputs=True)(_select_dim)


@rule("cumsum")
def _cumsum(n, g):
    d = n.attrs["dim"]
    return g.flip(d).cumsum(d).flip(d)


@rule("cumprod", inputs=True, outputs=True)
def _cumprod(n, g):
    x, d = n.input(0), n.attrs["dim"]
    if not bool((x == 0).any()):
        return (g * n.output(0)).flip(d).cumsum(d).flip(d) / x
    # with zeros, divide nothing: d y_j / d x_i = prod of x_k for k <= j, k != i (j >= i),
    # built as the running products of the rows of x with x_i replaced by 1 (O(n^2) along d)
    xm, gm = x.movedim(d, -1), g.movedim(d, -1)
    size = xm.shape[-1]
    eye = F.eye(size, dtype=x.dtype, device=x.device)
    partial = (xm.unsqueeze(-2) * (1 - eye) + eye).cumprod(-1)
    ids = F.arange(size, device=x.device)
    upper = (ids.unsqueeze(0) >= ids.unsqueeze(1)).to(x.dtype)
    return (partial * upper * gm.unsqueeze(-2)).sum(-1).movedim(-1, d)


# --- movement ---
rule("reshape")(lambda n, g: g.reshape(n.input_shape(0)))
rule("squeeze")(lambda n, g: g.reshape(n.input_shape(0)))
rule("unsqueeze")(lambda n, g: g.reshape(n.input_shape(0)))
rule("expand")(lambda n, g: g)  # the node sums the gradient back to the input's shape
rule("flip")(lambda n, g: g.flip(n.attrs["dims"]))
rule("tril")(lambda n, g: g.tril(n.attrs["diagonal"]))
rule("triu")(lambda n, g: g.triu(n.attrs["diagonal"]))


@rule("permute")
def _permute(n, g):
    dims = n.attrs["dims"]
    inverse = [0] * len(dims)
    for i, d in enumerate(dims):
        inverse[d] = i
    return g.permute(*inverse)


def _put_along(g, n, dim, index_values):
    zeros = F.zeros(n.input_shape(0), dtype=g.dtype, device=g.device)
    positions = (False,) * dim + (True,)
    index = F.tensor(index_values, dtype=dtypes.int64, device=g.device)
    return _run("index_put", (zeros, g, index), {"positions": positions, "accumulate": False})


def _pad_along(g, n, dim, start, stop):
    """`g` in the zeros of the input's shape, at [start, stop) of `dim` (a fill and a copy:
    putting it there by index is several times slower)."""
    pads = [(0, 0)] * g.dim()
    pads[dim] = (start, n.input_shape(0)[dim] - stop)
    return _run("pad", (g,), {"pads": tuple(pads), "value": 0.0})


@rule("slice")
def _slice(n, g):
    a = n.attrs
    start, stop, step = slice(a["start"], a["stop"], a["step"]).indices(n.input_shape(0)[a["dim"]])
    if step == 1:
        return _pad_along(g, n, a["dim"], start, max(start, stop))
    return _put_along(g, n, a["dim"], list(range(start, stop, step)))


@rule("select")
def _select(n, g):
    a = n.attrs
    index = a["index"] % n.input_shape(0)[a["dim"]]
    return _pad_along(g.unsqueeze(a["dim"]), n, a["dim"], index, index + 1)


@rule("concat")
def _concat(n, g):
    dim = n.attrs["dim"]
    out, start = [], 0
    for (fn, _), (shape, _) in zip(n.next_functions, n._in_meta, strict=True):
        out.append(g.narrow(dim, start, shape[dim]) if fn is not None else None)
        start += shape[dim]
    return tuple(out)


@rule("index", inputs=True)
def _index(n, g):
    indices = [n.input(i) for i in range(1, len(n._inputs))]
    zeros = F.zeros(n.input_shape(0), dtype=g.dtype, device=g.device)
    gx = _run("index_put", (zeros, g, *indices), {"positions": n.attrs["positions"], "accumulate": True})
    return (gx,) + (None,) * len(indices)


@rule("index_put", inputs=True)
def _index_put(n, g):
    indices = [n.input(i) for i in range(2, len(n._inputs))]  # x and values are not needed
    attrs = n.attrs
    gx = g
    if not attrs.get("accumulate"):
        gx = _run("index_put", (g, 0.0, *indices), {"positions": attrs["positions"], "accumulate": False})
    gv = None
    if n.needs_input_grad[1]:
        gv = _run("index", (g, *indices), {"positions": attrs["positions"]})
    return (gx, gv) + (None,) * len(indices)


@rule("gather", inputs=True)
def _gather(n, g):
    index = n.input(1)
    zeros = F.zeros(n.input_shape(0), dtype=g.dtype, device=g.device)
    return F.scatter_add(zeros, n.attrs["dim"], index, g), None


@rule("scatter_add", inputs=True)
def _scatter_add(n, g):
    index = n.input(1)
    return g, None, F.gather(g, n.attrs["dim"], index) if n.needs_input_grad[2] else None


@rule("scatter_reduce", inputs=True, outputs=True)
def _scatter_reduce(n, g):
    """PyTorch's scatter_reduce backward. sum/mean: g (over the number of values reduced) to
    each contributor; prod: g times the product of the others (kept exact where a value is 0);
    amax/amin: g shared evenly among the values equal to the result."""
    x, index, src, out = n.input(0), n.input(1), n.input(2), n.output(0)
    a = n.attrs
    dim, reduce, include_self = a["dim"], a["reduce"], a.get("include_self", True)
    src = src[tuple(slice(0, s) for s in index.shape)]
    received = F.zeros_like(x).scatter_add(dim, index, F.ones_like(src))  # values each place receives
    hit = received > 0
    if reduce == "sum":
        gx, gsrc = g, F.gather(g, dim, index)
    elif reduce == "mean":
        share = g / (received + (1.0 if include_self else 0.0)).clamp(min=1)
        gx, gsrc = share, F.gather(share, dim, index)
    elif reduce == "prod":
        # self's share: the product of the values reduced into its place but itself
        ones_for_zeros = F.where(x == 0, 1.0, x)
        others = ones_for_zeros.scatter_reduce(dim, index, src, "prod", include_self=include_self)
        gx = g * others / ones_for_zeros
        # src's: out / src, or, for a place's only zero, the product with that zero replaced by 1
        zero = src == 0
        zeros_at = F.gather(F.zeros_like(x).scatter_add(dim, index, zero.to(x.dtype)), dim, index)
        single = zero & (zeros_at == 1)
        without = x.scatter_reduce(dim, index, F.where(single, 1.0, src), "prod", include_self=include_self)
        gsrc = F.where(
            single,
            F.gather(g * without, dim, index),
            F.gather(g * out, dim, index) / F.where(zero, 1.0, src),
        )
    else:  # amax, amin: evenly among the values equal to the result
        value = F.gather(out, dim, index)
        self_wins = (x == out) & (hit.logical_not() | include_self)
        src_wins = src == value
        winners = self_wins.to(x.dtype).scatter_add(dim, index, src_wins.to(x.dtype))
        share = g / winners.clamp(min=1)
        gx, gsrc = share * self_wins.to(x.dtype), F.gather(share, dim, index) * src_wins.to(x.dtype)
    if not include_self:
        gx = F.where(hit, 0.0, gx)  # (self's value there was forgotten)
    return gx, None, gsrc


@rule("pad")
def _pad(n, g):
    pads = tuple((-b, -a) for b, a in n.attrs["pads"])
    return _run("pad", (g,), {"pads": pads, "value": 0.0})


# --- linear algebra ---


@rule("matmul", inputs=True)
def _matmul(n, g):
    a, b = n.input(0), n.input(1)
    need = n.needs_input_grad
    if a.dim() == 1 and b.dim() == 1:
        return g * b if need[0] else None, g * a if need[1] else None
    a2 = a.unsqueeze(0) if a.dim() == 1 else a
    b2 = b.unsqueeze(-1) if b.dim() == 1 else b
    g2 = g
    if a.dim() == 1:
        g2 = g2.unsqueeze(-2)
    if b.dim() == 1:
        g2 = g2.unsqueeze(-1)
    ga = F.matmul(g2, b2.mT) if need[0] else None
    gb = F.matmul(a2.mT, g2) if need[1] else None
    if ga is not None and a.dim() == 1:
        ga = ga.squeeze(-2)
    if gb is not None and b.dim() == 1:
        gb = gb.squeeze(-1)
    return ga, gb


@rule("det", inputs=True, outputs=True)
def _det(n, g):
    x = n.input(0)
    return (g * n.output(0)).unsqueeze(-1).unsqueeze(-1) * F.inverse(x).mT


@rule("inv", outputs=True)
def _inv(n, g):
    inv_t = n.output(0).mT
    return -F.matmul(F.matmul(inv_t, g), inv_t)


@rule("solve", inputs=True, outputs=True)
def _solve(n, g):
    """A X = B: gB = A^-T g, gA = -gB X^T (outer products for vector right-hand sides)."""
    a, b, x = n.input(0), n.input(1), n.output(0)
    vector = b.dim() == 1 or tuple(b.shape) == tuple(a.shape[:-1])
    gb = _run("solve", (a.mT, g), {})
    if not n.needs_input_grad[0]:
        return None, gb
    if vector:
        ga = -gb.unsqueeze(-1) * x.unsqueeze(-2)
    else:
        ga = -F.matmul(gb, x.mT)
    return ga, gb


@rule("slogdet", inputs=True)
def _slogdet(n, _sign_grad, g):
    """d log|det A| = tr(A^-1 dA): g A^-T (the sign is piecewise constant)."""
    if g is None:
        return None
    return g.unsqueeze(-1).unsqueeze(-1) * F.inverse(n.input(0)).mT


@rule("cholesky", outputs=True)
def _cholesky(n, g):
    """PyTorch's cholesky_backward: with T = tril(L^T gL), gA = L^-T (T + tril(T, -1)^T) / 2 L^-1
    (two solves with L)."""
    low = n.output(0)
    t = F.matmul(low.mT, g).tril()
    t = 0.5 * (t + t.tril(-1).mT)
    left = _run("solve", (low.mT, t), {})  # L^-T T'
    return _run("solve", (low.mT, left.mT), {}).mT  # X L = L^-T T': L^T X^T = (L^-T T')^T


@rule("eigh", outputs=True)
def _eigh(n, g_w, g_v):
    """PyTorch's eigh backward: gA = V (diag(gw) + skew(V^T gV) / (w_j - w_i)) V^T; undefined
    where eigenvalues repeat, as it is there."""
    w, v = n.output(0), n.output(1)
    if g_v is None:
        inner = F.diag_embed(g_w) if g_w is not None else None
    else:
        vgv = F.matmul(v.mT, g_v)
        vgv = 0.5 * (vgv - vgv.mT)
        gap = w.unsqueeze(-2) - w.unsqueeze(-1)
        gap = gap + F.eye(w.shape[-1], dtype=gap.dtype, device=gap.device)  # (the diagonal is replaced)
        inner = vgv / gap
        eye = F.eye(w.shape[-1], dtype=inner.dtype, device=inner.device)
        diagonal = g_w.unsqueeze(-1) * eye if g_w is not None else 0.0
        inner = inner * (1 - eye) + diagonal
    if inner is None:
        return None
    return F.matmul(F.matmul(v, inner), v.mT)


@rule("qr", outputs=True)
def _qr(n, g_q, g_r):
    """PyTorch's linalg_qr_backward for real matrices. m >= n: gA = (gQ + Q copyltu(M)) R^-T
    with M = R gR^T - gQ^T Q, copyltu copying the lower triangle to the upper. m < n: A =
    [X | Y] with X = Q U, Y = Q V (R = [U | V]): Y's gradient is Q gV, X's the square case's
    with gQ + Y gV^T. Undefined where R is singular (A not of full rank), as it is there."""
    q, r = n.output(0), n.output(1)
    m, cols = q.shape[-2], r.shape[-1]
    if n.attrs.get("mode") == "complete" and m > cols:
        raise AutogradError(
            "qr backward with mode='complete' and more rows than columns is not supported (the "
            "extra columns of Q are not unique); use mode='reduced'"
        )
    if g_q is None:
        g_q = F.zeros_like(q)
    if g_r is None:
        g_r = F.zeros_like(r)
    wide = m < cols
    if wide:  # (Q is m x m)
        u, g_u, g_v = r[..., :m], g_r[..., :m], g_r[..., m:]
        y = F.matmul(q, r[..., m:])
        g_q = g_q + F.matmul(y, g_v.mT)
        r, g_r = u, g_u
    inner = F.matmul(r, g_r.mT) - F.matmul(g_q.mT, q)
    inner = inner.tril() + inner.tril(-1).mT
    g_a = g_q + F.matmul(q, inner)
    g_a = _run("solve", (r, g_a.mT), {}).mT  # g_a R^-T
    if wide:
        g_a = F.cat([g_a, F.matmul(q, g_v)], -1)
    return g_a


@rule("svd", outputs=True)
def _svd(n, g_u, g_s, g_vh):
    """The real SVD's gradient (PyTorch's `svd_backward` for reduced U, S, Vh). Undefined
    where singular values repeat, as it is there."""
    u, s, vh = n.output(0), n.output(1), n.output(2)
    if n.attrs.get("full_matrices"):
        raise AutogradError(
            "svd backward with full_matrices=True is not supported (the extra "
            "columns of U or V are not unique); use some=True"
        )
    if not (bool(g_u.ne(0).any()) or bool(g_vh.ne(0).any())):
        return F.matmul(u * g_s.unsqueeze(-2), vh)
    v, g_v = vh.mT, g_vh.mT
    m, k, cols = u.shape[-2], s.shape[-1], vh.shape[-1]
    s2 = s * s
    e = s2.unsqueeze(-2) - s2.unsqueeze(-1)
    e = e + F.eye(k, dtype=e.dtype, device=e.device)  # the diagonal is masked below
    off = 1 - F.eye(k, dtype=e.dtype, device=e.device)

    def skew(a):
        return a - a.mT

    core = (
        (skew(F.matmul(u.mT, g_u)) * s.unsqueeze(-2) + s.unsqueeze(-1) * skew(F.matmul(v.mT, g_v))) / e * off
    )
    core = core + F.eye(k, dtype=e.dtype, device=e.device) * g_s.unsqueeze(-1)
    if m > k:
        g_u_s = g_u / s.unsqueeze(-2)
        ga = F.matmul(u, core) + g_u_s - F.matmul(u, F.matmul(u.mT, g_u_s))
        return F.matmul(ga, vh)
    if cols > k:
        s_g_vh = g_vh / s.unsqueeze(-1)
        ga = F.matmul(core, vh) + s_g_vh - F.matmul(F.matmul(s_g_vh, v), vh)
        return F.matmul(u, ga)
    return F.matmul(u, F.matmul(core, vh))


@rule("cross", inputs=True)
def _cross(n, g):
    a, b, d = n.input(0), n.input(1), n.attrs["dim"]
    return F.cross(b, g, d), F.cross(g, a, d)


# --- convolution and pooling ---


def _conv_attrs(a: dict) -> dict:
    return {"stride": a["stride"], "padding": a["padding"], "dilation": a["dilation"], "groups": a["groups"]}


def _kernel_grad(inp: Tensor, g: Tensor, kernel: tuple, stride, padding, dilation, groups):
    """sum over batch and output positions of inp-window * g, as a convolution of `inp` (channels
    as batch) with `g` (channels as out channels); strides and dilations trade places. Groups
    are stacked along dim 1 of the result: (inp channels / groups, g channels, KH, KW)."""
    kh, kw = kernel
    cg, og = inp.shape[1] // groups, g.shape[1] // groups
    parts = []
    for i in range(groups):
        x_i = inp[:, i * cg : (i + 1) * cg].transpose(0, 1)
        g_i = g[:, i * og : (i + 1) * og].transpose(0, 1)
        r = _run(
            "conv2d", (x_i, g_i), {"stride": dilation, "padding": padding, "dilation": stride, "groups": 1}
        )
        parts.append(r[:, :, :kh, :kw])
    return parts[0] if groups == 1 else F.cat(parts, 1)


def _conv_input_grad(x: Tensor, g: Tensor, w: Tensor, a: dict) -> Tensor:
    """The gradient of conv2d(x, w) for x: a transposed convolution of g, with the output
    padding that gives back x's exact size."""
    out_padding = tuple(
        size - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
        for size, o, s, p, d, k in zip(
            x.shape[-2:], g.shape[-2:], a["stride"], a["padding"], a["dilation"], w.shape[-2:], strict=True
        )
    )
    return _run("conv_transpose2d", (g, w), {**_conv_attrs(a), "output_padding": out_padding})


@rule("conv2d", inputs=True)
def _conv2d(n, g):
    x, w = n.input(0), n.input(1)
    a = n.attrs
    need = n.needs_input_grad
    gx = gw = None
    if need[0]:
        gx = _conv_input_grad(x, g, w, a)
    if need[1]:
        gw = _run("conv2d_weight_grad", (x, g), {**_conv_attrs(a), "weight_shape": tuple(w.shape)})
    if len(need) == 2:
        return gx, gw
    return gx, gw, g.sum((0, 2, 3)) if need[2] else None


@rule("conv2d_weight_grad", inputs=True)
def _conv2d_weight_grad(n, u):
    # bilinear in (x, g): <dW(x, g), u> = <g, conv2d(x, u)> = <x, conv_transpose2d(g, u)>
    x, g = n.input(0), n.input(1)
    a = n.attrs
    need = n.needs_input_grad
    gx = gg = None
    if need[0]:
        gx = _conv_input_grad(x, g, u, a)
    if need[1]:
        gg = _run("conv2d", (x, u), _conv_attrs(a))
    return gx, gg


@rule("conv_transpose2d", inputs=True)
def _conv_transpose2d(n, g):
    x, w = n.input(0), n.input(1)
    a = n.attrs
    need = n.needs_input_grad
    gx = _run("conv2d", (g, w), _conv_attrs(a)) if need[0] else None
    gw = None
    if need[1]:
        # (Cout_g, Cin, KH, KW) stacked by group -> (Cin, Cout_g, KH, KW)
        gw = _kernel_grad(
            g, x, w.shape[-2:], a["stride"], a["padding"], a["dilation"], a["groups"]
        ).transpose(0, 1)
    return gx, gw


@rule("max_pool2d", outputs=True)
def _max_pool2d(n, g, _indices_grad=None):
    a = n.attrs
    h, w = n.input_shape(0)[-2:]
    overlapping = any(k > s for k, s in zip(a["kernel_size"], a["stride"], strict=True))
    return _run(
        "max_pool2d_backward", (g, n.output(1)), {"height": h, "width": w, "overlapping": overlapping}
    )


@rule("max_pool2d_backward", inputs=True)
def _max_pool2d_backward(n, u):
    # linear in g: its adjoint gathers u at the same positions
    indices = n.input(1)
    batch, channels = u.shape[:2]
    picked = F.gather(u.reshape(batch, channels, -1), 2, indices.reshape(batch, channels, -1))
    return picked.reshape(indices.shape), None


@rule("linear", inputs=True)
def _linear(n, g):
    x, w = n.input(0), n.input(1)
    need = n.needs_input_grad
    gx = F.matmul(g, w) if need[0] else None
    gw = gb = None
    g2 = g if g.dim() == 2 else g.reshape(-1, g.shape[-1])
    if need[1]:
        gw = F.matmul(g2.t(), x if x.dim() == 2 else x.reshape(-1, x.shape[-1]))
    if len(need) > 2 and need[2]:
        gb = g2.sum(0)
    return gx, gw, gb


@rule("mse_loss", inputs=True)
def _mse_loss(n, g):
    a, b = n.input(0), n.input(1)
    d = a - b
    reduction = n.attrs.get("reduction", "mean")
    scale = 2.0 / max(d.numel(), 1) if reduction == "mean" else 2.0
    ga = d * (g * scale)
    return ga, -ga if n.needs_input_grad[1] else None


# softmax and layer_norm: the fused backward op where no graph of the backward pass is
# recorded, the same formula in differentiable ops where it is (create_graph=True)


@rule("softmax", outputs=True)
def _softmax(n, g):
    y, dim = n.output(0), n.attrs["dim"]
    if not grad_mode.is_grad_enabled():
        return _run("softmax_backward", (y, g), {"dim": dim})
    return y * (g - (g * y).sum(dim, keepdim=True))


@rule("layer_norm", inputs=True)
def _layer_norm(n, g):
    x, w = n.input(0), n.input(1)
    dims, eps = n.attrs["dims"], n.attrs["eps"]
    need = n.needs_input_grad
    leading = tuple(range(x.dim() - len(dims)))
    if not grad_mode.is_grad_enabled():
        gx = _run("layer_norm_backward", (x, w, g), n.attrs) if need[0] else None
        xhat = _run("layer_norm", (x, None, None), n.attrs) if need[1] else None
    else:
        gx, xhat = _layer_norm_input_grad(x, w, g, dims, eps)
    gw = (g * xhat).sum(leading) if len(need) > 1 and need[1] else None
    gb = g.sum(leading) if len(need) > 2 and need[2] else None
    return gx, gw, gb


def _layer_norm_input_grad(x, w, g, dims, eps):
    """(layer_norm's input gradient, the normalized x) in differentiable ops."""
    d = x - x.mean(dims, keepdim=True)
    rstd = F.rsqrt((d * d).mean(dims, keepdim=True) + eps)
    xhat = d * rstd
    h = g if w is None else g * w
    return rstd * (h - h.mean(dims, keepdim=True) - xhat * (h * xhat).mean(dims, keepdim=True)), xhat


@rule("softmax_backward", inputs=True)
def _softmax_backward(n, u):
    # out = y * (g - s), s = sum(g * y): d/dg is softmax_backward(y, u) again; d/dy_j is
    # u_j * (g_j - s) - g_j * sum(u * y)
    y, g, dim = n.input(0), n.input(1), n.attrs["dim"]
    need = n.needs_input_grad
    gy = u * (g - (g * y).sum(dim, keepdim=True)) - g * (u * y).sum(dim, keepdim=True) if need[0] else None
    gg = _run("softmax_backward", (y, u), {"dim": dim}) if need[1] else None
    return gy, gg


@rule("layer_norm_backward", inputs=True)
def _layer_norm_backward(n, u):
    """By differentiating the formula once more, on detached inputs: the result is not
    differentiable again (layer_norm's rule records the formula instead of this op where the
    backward pass is recorded, so only a direct call of the op gets here)."""
    from graphc.autograd import grad

    if grad_mode.is_grad_enabled():
        raise AutogradError(
            "layer_norm_backward is differentiable once; record layer_norm's backward instead"
        )
    attrs = n.attrs
    leaves = [
        None if t is None else t.detach().requires_grad_() for t in (n.input(0), n.input(1), n.input(2))
    ]
    with grad_mode.enable_grad():
        gx, _ = _layer_norm_input_grad(*leaves, attrs["dims"], attrs["eps"])
    wanted = [t for t, need in zip(leaves, n.needs_input_grad, strict=True) if need and t is not None]
    found = iter(grad(gx, wanted, u, allow_unused=True))
    return tuple(
        next(found) if need and t is not None else None
        for t, need in zip(leaves, n.needs_input_grad, strict=True)
    )


@rule("log_softmax", outputs=True)
def _log_softmax(n, g):
    dim = n.attrs["dim"]
    return g - F.exp(n.output(0)) * g.sum(dim, keepdim=True)


@rule("nll_loss", inputs=True)
def _nll_loss(n, g):
    # the log-probabilities themselves are not needed, only targets and weights
    target, weight = n.input(1), n.input(2)
    attrs = {**n.attrs, "shape": tuple(n.input_shape(0))}
    return _run("nll_loss_backward", (g, target, weight), attrs), None, None


@rule("ctc_loss", inputs=True)
def _ctc_loss(n, g):
    grad = _run("ctc_loss_backward", tuple(n.input(i) for i in range(4)), n.attrs)
    return grad * g.reshape(1, -1, 1), None, None, None


@rule("nll_loss_backward", inputs=True)
def _nll_loss_backward(n, u):
    # linear in g: the adjoint picks u at each target and weights it the same way
    target, weight = n.input(1), n.input(2)
    a = n.attrs
    valid = target != a.get("ignore_index", -100)
    safe = F.where(valid, target, 0)
    w = valid.to(u.dtype)
    if weight is not None:
        w = w * weight[safe]
    if a.get("reduction", "mean") == "mean":
        w = w / w.sum()
    picked = -F.gather(u, 1, safe.unsqueeze(1)).squeeze(1) * w
    return (picked if a.get("reduction", "mean") == "none" else picked.sum()), None, None


def _scatter_values(n, g, _indices_grad=None):
    dim = n.attrs.get("dim", -1) % max(len(n.input_shape(0)), 1)
    zeros = F.zeros(n.input_shape(0), dtype=g.dtype, device=g.device)
    if zeros.dim() == 0:
        return g.reshape(())
    return F.scatter_add(zeros, dim, n.output(1), g)


rule("sort", outputs=True)(_scatter_values)
rule("topk", outputs=True)(_scatter_values)


_dispatch_module.attach = attach  # the dispatch point records nodes with this function
