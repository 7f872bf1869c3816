"""Automatic differentiation: `backward`, `grad`, custom `Function`s and grad modes.

>>> x = graphc.ones(2, 2, requires_grad=True)
>>> out = ((x + 2) * (x + 2) * 3).mean()
>>> out.backward()
>>> x.grad
tensor([[4.5000, 4.5000],
        [4.5000, 4.5000]])
"""

from __future__ import annotations

from graphc.autograd.function import Function, FunctionCtx
from graphc.autograd.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from graphc.errors import AutogradError


def _tensors(x) -> list:
    from graphc._tensor import Tensor

    return [x] if isinstance(x, Tensor) else list(x)


def _root_grads(outputs: list, grad_outputs) -> list:
    from graphc._creation import ones_like, tensor
    from graphc._tensor import Tensor

    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    grad_outputs = list(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise AutogradError(f"got {len(grad_outputs)} gradients for {len(outputs)} outputs")
    grads = []
    for out, g in zip(outputs, grad_outputs, strict=True):
        if g is None:
            if out.numel() != 1:
                raise AutogradError(
                    "grad can be implicitly created only for scalar outputs; pass a gradient "
                    f"of shape {list(out.shape)} (e.g. y.backward(graphc.ones_like(y)))"
                )
            g = ones_like(out)
        elif not isinstance(g, Tensor):
            g = tensor(g, dtype=out.dtype, device=out.device)
        if g.shape != out.shape:
            raise AutogradError(
                f"mismatch in shape: the gradient has shape {list(g.shape)} but "
                f"the output has shape {list(out.shape)}"
            )
        grads.append(g)
    return grads


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph: bool = False, inputs=None) -> None:
    """Accumulate into the leaves' `.grad` the gradient of `tensors` (weighted by
    `grad_tensors`, which may be omitted for one-element tensors)."""
    from graphc.autograd import engine

    outputs = _tensors(tensors)
    grads = _root_grads(outputs, grad_tensors)
    retain = create_graph if retain_graph is None else retain_graph
    roots = engine.root_nodes(outputs)
    if inputs is None:
        engine.run(roots, grads, retain, create_graph)
        return
    targets = _tensors(inputs)
    pairs = [_edge(t) for t in targets]
    captured = engine.run(roots, grads, retain, create_graph, capture=set(pairs))
    for t, pair in zip(targets, pairs, strict=True):
        g = captured.get(pair)
        if g is not None:
            engine.AccumulateGrad(t).accumulate(g, create_graph)


def _edge(t):
    if not t.requires_grad:
        raise AutogradError("One of the differentiated Tensors does not require grad")
    if t.grad_fn is not None:
        return (t.grad_fn, t._output_nr)
    return (t._accumulate_node(), 0)


def grad(
    outputs,
    inputs,
    grad_outputs=None,
    retain_graph=None,
    create_graph: bool = False,
    allow_unused=None,
    materialize_grads: bool = False,
) -> tuple:
    """The gradients of `outputs` with respect to `inputs`, returned (not accumulated).

    >>> x = graphc.tensor(3.0, requires_grad=True)
    >>> graphc.autograd.grad(x * x, x)
    (tensor(6.),)
    """
    from graphc._creation import zeros_like
    from graphc.autograd import engine

    outs = _tensors(outputs)
    targets = _tensors(inputs)
    grads = _root_grads(outs, grad_outputs)
    retain = create_graph if retain_graph is None else retain_graph
    pairs = [_edge(t) for t in targets]
    captured = engine.run(engine.root_nodes(outs), grads, retain, create_graph, capture=set(pairs))
    result = []
    for t, pair in zip(targets, pairs, strict=True):
        g = captured.get(pair)
        if g is None:
            if materialize_grads:
                g = zeros_like(t)
            elif not allow_unused:
                raise AutogradError(
                    "One of the differentiated Tensors appears to not have been used in the "
                    "graph. Set allow_unused=True if this is the desired behavior."
                )
        elif not create_graph:
            g = g.detach()
        result.append(g)
    return tuple(result)


def Variable(data, requires_grad: bool = False, volatile: bool = False):
    """PyTorch's old `Variable(tensor, requires_grad=...)`: today just a tensor."""
    out = data.detach()
    out.requires_grad_(requires_grad)
    return out


from graphc.autograd import functional, profiler  # noqa: E402
from graphc.autograd import gradcheck as _gradcheck_module

gradcheck = _gradcheck_module.gradcheck
gradgradcheck = _gradcheck_module.gradgradcheck

__all__ = [
    "AutogradError",
    "Function",
    "FunctionCtx",
    "Variable",
    "backward",
    "enable_grad",
    "functional",
    "grad",
    "gradcheck",
    "gradgradcheck",
    "inference_mode",
    "is_grad_enabled",
    "no_grad",
    "profiler",
    "set_grad_enabled",
]
