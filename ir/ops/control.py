"""Structured control flow: `cond` runs one of two subgraphs (attributes `then_branch` and
`else_branch`, graphs with the operands as inputs and equal output types) on its operands."""

from __future__ import annotations

from ir.errors import ShapeError
from ir.ops.registry import register


@register("cond", differentiable=False, num_outputs=-1)
def _cond(xp, pred, *operands, then_branch, else_branch):
    """`then_branch(*operands)` if the one-element boolean `pred` is true, else `else_branch`."""
    from ir.interpreter import run  # the interpreter runs the branch's nodes through this registry

    if pred.size != 1:
        raise ShapeError(f"cond: the predicate must have one element, got shape {list(pred.shape)}")
    branch = then_branch if bool(pred.reshape(())) else else_branch
    outs = run(branch, list(operands), xp=xp)
    return tuple(outs) if len(outs) != 1 else outs[0]
