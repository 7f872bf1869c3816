"""Structured control flow: `cond` runs one of two subgraphs (attributes `then_branch` and
`else_branch`, graphs with the operands as inputs and equal output types) on its operands;
`scan` runs its `body` subgraph once per step of a loop along its sequences (a recurrent
layer over a sequence of any length)."""

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


@register("scan", differentiable=False, num_outputs=-1)
def _scan(xp, *inputs, body, carries, sequences, reverse=False):
    """A loop along dim 0 of the `sequences` inputs (which follow the `carries` initial
    values; any further inputs are passed to every step unchanged): step t runs `body` on
    (carries, each sequence's slice t, the further inputs) and gets (new carries, outputs of
    step t). Returns the final carries, then each step output stacked along a new dim 0 (step
    t's at position t, also when `reverse` runs the steps from the last)."""
    return scan(xp, list(inputs), body, carries, sequences, reverse)


def scan(
    xp, inputs: list, body, carries: int, sequences: int, reverse: bool = False, weights=None, step=None
):
    """`scan` (the op) with the body reading `weights` by name (default: its own), each step
    run by `step` (a function of the body's input arrays giving its outputs; default the
    reference interpreter)."""
    from ir.interpreter import bind_inputs, run
    from ir.types import concrete_shape

    if step is None:
        step = lambda arrays: run(body, arrays, xp=xp, weights=weights)  # noqa: E731
    state = inputs[:carries]
    xs, rest = inputs[carries : carries + sequences], inputs[carries + sequences :]
    length = xs[0].shape[0]
    per_step: list = [None] * length
    for t in range(length - 1, -1, -1) if reverse else range(length):
        outs = step([*state, *(x[t] for x in xs), *rest])
        state, per_step[t] = outs[:carries], outs[carries:]
    ys = []
    for k, v in enumerate(body.outputs[carries:]):
        if length:
            ys.append(xp.stack([step[k] for step in per_step]))
        else:  # no steps: the step outputs' shapes from the body's types
            step_inputs = [*state, *(xp.empty(x.shape[1:], x.dtype) for x in xs), *rest]
            shape = concrete_shape(v.type.shape, bind_inputs(body, step_inputs))
            ys.append(xp.empty((0, *shape), v.type.dtype.np))
    outs = [*state, *ys]
    return tuple(outs) if len(outs) != 1 else outs[0]
