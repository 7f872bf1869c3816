"""`graphc.cond`: a data-dependent branch that capture keeps as a structured `cond` op."""

from __future__ import annotations

from graphc import _dispatch
from graphc._tensor import Tensor
from ir import dtypes


def cond(pred, true_fn, false_fn, operands=()):
    """`true_fn(*operands)` if `pred` is true, else `false_fn(*operands)`.

    `pred` is a Python bool or a one-element bool tensor. Eagerly this is an `if`; under
    `graphc.script` both branches are captured as subgraphs of one `cond` node, so the graph
    chooses per input. The branches take exactly `operands` (tensors computed outside a branch
    must be passed in them) and return the same number of tensors with equal dtypes and shapes.

        >>> y = graphc.cond(x.sum() > 0, lambda x: x.exp(), lambda x: -x, (x,))
    """
    if not isinstance(operands, (tuple, list)):
        raise TypeError(f"graphc.cond: operands must be a tuple of tensors, got {type(operands).__name__}")
    operands = tuple(operands)
    for i, o in enumerate(operands):
        if not isinstance(o, Tensor):
            raise TypeError(f"graphc.cond: operand {i} must be a tensor, got {type(o).__name__}")
    if not callable(true_fn) or not callable(false_fn):
        raise TypeError("graphc.cond: true_fn and false_fn must be callables taking the operands")
    if isinstance(pred, bool):
        return true_fn(*operands) if pred else false_fn(*operands)
    if not isinstance(pred, Tensor):
        raise TypeError(f"graphc.cond: pred must be a bool or a bool tensor, got {type(pred).__name__}")
    tracer = _dispatch.tracer
    if tracer is not None:
        return tracer.cond(pred, true_fn, false_fn, operands)
    if pred.dtype is not dtypes.bool_ or pred.numel() != 1:
        raise ValueError(
            f"graphc.cond: pred must be a one-element bool tensor, got {pred.dtype} of shape "
            f"{list(pred.shape)}; compare it, e.g. x.sum() > 0"
        )
    return true_fn(*operands) if bool(pred) else false_fn(*operands)
