"""Higher-level derivatives of functions: jacobian, hessian, vjp, jvp, hvp, vhp.

>>> def exp_adder(x, y):
...     return 2 * x.exp() + 3 * y
>>> jacobian(exp_adder, (graphc.rand(3), graphc.rand(3)))   # a tuple of two 3x3 matrices
"""

from __future__ import annotations

from graphc.autograd import grad as _grad
from graphc.autograd.grad_mode import enable_grad


def _tuple(x):
    from graphc._tensor import Tensor

    if isinstance(x, Tensor):
        return (x,), True
    return tuple(x), False


def _prepare(inputs):
    inputs, single = _tuple(inputs)
    return tuple(t.detach().requires_grad_(True) for t in inputs), single


def _unused_zeros(grads, inputs):
    from graphc._creation import zeros_like

    return tuple(zeros_like(t) if g is None else g for g, t in zip(grads, inputs, strict=True))


def _vjp_of(outputs, inputs, v, create_graph: bool):
    return _unused_zeros(
        _grad(outputs, inputs, v, retain_graph=True, create_graph=create_graph, allow_unused=True), inputs
    )


def jacobian(
    func,
    inputs,
    create_graph: bool = False,
    strict: bool = False,
    vectorize: bool = False,
    strategy: str = "reverse-mode",
):
    """The Jacobian of `func` at `inputs`: for each output and input, a tensor of shape
    `output.shape + input.shape` (tuples mirror tuple inputs and outputs)."""
    from graphc._creation import zeros
    from graphc._movement import stack

    inputs, single_in = _prepare(inputs)
    with enable_grad():
        outputs = func(*inputs)
        outputs, single_out = _tuple(outputs)
        result = []
        for out in outputs:
            flat = out.reshape(-1)
            rows = [[] for _ in inputs]
            for i in range(flat.numel()):
                if flat.requires_grad:
                    grads = _vjp_of(flat[i], inputs, None, create_graph)
                else:
                    grads = tuple(zeros(t.shape, dtype=t.dtype) for t in inputs)
                for j, g in enumerate(grads):
                    rows[j].append(g)
            per_input = []
            for j, t in enumerate(inputs):
                if rows[j]:
                    jac = stack(rows[j]).reshape(*out.shape, *t.shape)
                else:
                    jac = zeros(*out.shape, *t.shape, dtype=t.dtype)
                per_input.append(jac if create_graph else jac.detach())
            result.append(per_input[0] if single_in else tuple(per_input))
    return result[0] if single_out else tuple(result)


def hessian(
    func,
    inputs,
    create_graph: bool = False,
    strict: bool = False,
    vectorize: bool = False,
    outer_jacobian_strategy: str = "reverse-mode",
):
    """The Hessian of the scalar function `func` at `inputs`."""
    inputs_t, single = _tuple(inputs)

    def gradient(*xs):
        out = func(*xs)
        if out.numel() != 1:
            raise ValueError(
                f"hessian: the function must return a single-element tensor, got shape {list(out.shape)}"
            )
        grads = _vjp_of(out, xs, None, True)
        return grads[0] if single else grads

    return jacobian(gradient, inputs_t[0] if single else inputs_t, create_graph=create_graph)


def vjp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), v^T J): the vector-Jacobian product."""
    inputs, single = _prepare(inputs)
    with enable_grad():
        out = func(*inputs)
        grads = _vjp_of(out, inputs, v, create_graph)
    grads = tuple(g if create_graph else g.detach() for g in grads)
    return out.detach(), grads[0] if single else grads


def jvp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), J v): the Jacobian-vector product, by differentiating the (linear) vjp."""
    from graphc._creation import zeros_like

    inputs, single = _prepare(inputs)
    vs, _ = _tuple(v) if v is not None else ((None,), True)
    with enable_grad():
        out = func(*inputs)
        u = zeros_like(out).requires_grad_(True)
        g = _vjp_of(out, inputs, u, True)
        jv = _vjp_of(g, (u,), tuple(vs) if v is not None else None, create_graph)[0]
    return out.detach(), jv if create_graph else jv.detach()


def hvp(func, inputs, v, create_graph: bool = False, strict: bool = False):
    """(func(inputs), H v) for a scalar function."""
    inputs, single = _prepare(inputs)
    vs, _ = _tuple(v)
    with enable_grad():
        out = func(*inputs)
        g = _vjp_of(out, inputs, None, True)
        hv = _vjp_of(g, inputs, vs, create_graph)
    hv = tuple(h if create_graph else h.detach() for h in hv)
    return out.detach(), hv[0] if single else hv


def vhp(func, inputs, v, create_graph: bool = False, strict: bool = False):
    """(func(inputs), v^T H) for a scalar function (equal to H v: the Hessian is symmetric)."""
    return hvp(func, inputs, v, create_graph, strict)
