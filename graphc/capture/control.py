"""`graphc.cond` and `graphc.scan`: a data-dependent branch and a loop over a sequence that
capture keeps as structured `cond` and `scan` ops."""

from __future__ import annotations

from graphc import _dispatch
from graphc._tensor import Tensor, _wrap_dim
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


def scan(combine_fn, init, xs, *, dim: int = 0, reverse: bool = False):
    """A loop over `xs` along `dim` that carries a state, as PyTorch's (prototype) `scan`:
    `combine_fn(carry, x_t)` returns `(next_carry, y_t)`; the result is `(final carry, ys)`,
    the y_t stacked along `dim` (y_t at position t, also when `reverse` runs from the last
    step). `init`, `xs`, the carry and y_t are tensors or tuples/lists of tensors; the carry
    keeps init's structure, dtypes and shapes.

    Eagerly this is a Python loop (autograd follows it). Under `graphc.script`, combine_fn is
    captured once as the body of one `scan` node, so the graph runs sequences of any length
    (an RNN over a symbolic sequence dim); tensors of the enclosing function that combine_fn
    reads are passed to every step.

        >>> h, hs = graphc.scan(lambda h, x: (cell(x, h),) * 2, h0, sequence)
    """
    if not callable(combine_fn):
        raise TypeError(f"graphc.scan: combine_fn must be callable, got {type(combine_fn).__name__}")
    init_list, init_packing = _leaves("graphc.scan: init", init)
    xs_list, xs_packing = _leaves("graphc.scan: xs", xs)
    if any(x.dim() == 0 for x in xs_list):
        raise ValueError("graphc.scan: xs must have a dim to scan along; got a 0-d tensor")
    d = _wrap_dim(dim, min(x.dim() for x in xs_list))
    lengths = {x.shape[d] for x in xs_list}
    if len(lengths) != 1:
        raise ValueError(f"graphc.scan: xs must have one length along dim {dim}, got {sorted(lengths)}")

    def args(carry: list, x_t: list) -> tuple:
        return _pack(init_packing, carry), _pack(xs_packing, x_t)

    moved = [x.movedim(d, 0) if d else x for x in xs_list]
    tracer = _dispatch.tracer
    if tracer is not None:
        final, ys, ys_packing = tracer.scan(combine_fn, init_list, moved, args, reverse)
    elif not lengths.pop():
        raise ValueError("graphc.scan: xs has no steps; eagerly the outputs' shapes come from a step")
    else:
        final, ys, ys_packing = scan_eagerly(combine_fn, init_list, moved, args, reverse)
    ys = [y.movedim(0, d) if d else y for y in ys]
    return _pack(init_packing, final), _pack(ys_packing, ys)


def scan_eagerly(combine_fn, init: list, xs: list, args, reverse: bool) -> tuple[list, list, object]:
    """`scan` along dim 0 as a Python loop: the final carries, the stacked outputs, and how
    to pack the outputs (see `_leaves`); `args(carry, x_t)` makes combine_fn's arguments."""
    from graphc._movement import stack

    carry, per_step, packing = list(init), [None] * xs[0].shape[0], tuple
    given = [(c.dtype, tuple(c.shape)) for c in init]
    for t in range(len(per_step) - 1, -1, -1) if reverse else range(len(per_step)):
        new, y = returned(combine_fn(*args(carry, [x[t] for x in xs])))
        carry, _ = _leaves("graphc.scan: the carry combine_fn returns", new)
        if [(c.dtype, tuple(c.shape)) for c in carry] != given:
            raise ValueError(
                f"graphc.scan: combine_fn must return a carry like init: init is {given}, step {t} "
                f"returned {[(c.dtype, tuple(c.shape)) for c in carry]}"
            )
        per_step[t], packing = _leaves("graphc.scan: the output combine_fn returns", y, empty=True)
    count = len(per_step[0]) if per_step else 0
    return carry, [stack([step[k] for step in per_step], 0) for k in range(count)], packing


def returned(out) -> tuple:
    """combine_fn's (next carry, output)."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"graphc.scan: combine_fn must return (next carry, output), got {out!r:.80}")
    return tuple(out)


def _leaves(what: str, tree, empty: bool = False) -> tuple[list, object]:
    """The tensors of `tree` (a tensor, or a tuple or list of tensors; `empty`: possibly none)
    and how to pack them back (`_pack`): True for one tensor, else the sequence type."""
    if isinstance(tree, Tensor):
        return [tree], True
    if isinstance(tree, (tuple, list)) and (tree or empty):
        for i, t in enumerate(tree):
            if not isinstance(t, Tensor):
                raise TypeError(f"{what}: element {i} must be a tensor, got {type(t).__name__}")
        return list(tree), type(tree)
    raise TypeError(f"{what}: expected a tensor or a tuple or list of tensors, got {tree!r:.80}")


def _pack(packing, tensors: list):
    return tensors[0] if packing is True else packing(tensors)
