"""Custom differentiable functions: subclass `Function`, write `forward` and `backward`.

>>> class Exp(graphc.autograd.Function):
...     @staticmethod
...     def forward(ctx, x):
...         y = x.exp()
...         ctx.save_for_backward(y)
...         return y
...     @staticmethod
...     def backward(ctx, grad):
...         (y,) = ctx.saved_tensors
...         return grad * y
>>> Exp.apply(graphc.zeros(2, requires_grad=True))
"""

from __future__ import annotations

from graphc.autograd import grad_mode
from graphc.autograd.engine import Node, _modified_error
from graphc.errors import AutogradError


class FunctionCtx:
    """The `ctx` a custom Function's forward and backward share."""

    def __init__(self) -> None:
        self._saved = ()
        self._versions = ()
        self.needs_input_grad: tuple = ()
        self.materialize_grads = True
        self._non_differentiable: set = set()

    def save_for_backward(self, *tensors) -> None:
        """Keep `tensors` for backward (checked against in-place changes)."""
        self._saved = tensors
        self._versions = tuple(t._version if t is not None else None for t in tensors)

    @property
    def saved_tensors(self) -> tuple:
        for i, (t, v) in enumerate(zip(self._saved, self._versions, strict=True)):
            if t is not None and t._version != v:
                raise _modified_error(t, i, type(self).__name__, t._version, v)
        return self._saved

    def mark_non_differentiable(self, *tensors) -> None:
        self._non_differentiable.update(id(t) for t in tensors)

    def mark_dirty(self, *tensors) -> None:
        """Accepted for compatibility: graphc's Function outputs are always new tensors."""

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = value


class Function:
    """Base class of custom autograd functions; call them with `MyFunction.apply(*args)`."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("a custom Function must define forward(ctx, *args)")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("a custom Function must define backward(ctx, *grad_outputs)")

    @classmethod
    def apply(cls, *args):
        from graphc._tensor import Tensor

        ctx = FunctionCtx()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a._rg for a in args)
        with grad_mode.no_grad():
            result = cls.forward(ctx, *args)
        single = not isinstance(result, tuple)
        outs = (result,) if single else result
        outs = tuple(_fresh(o) if isinstance(o, Tensor) else o for o in outs)
        if grad_mode.is_grad_enabled() and any(ctx.needs_input_grad):
            next_functions, in_meta = [], []
            for a in args:
                if isinstance(a, Tensor) and a._rg:
                    edge = (a.grad_fn, a._output_nr) if a.grad_fn is not None else (a._accumulate_node(), 0)
                    next_functions.append(edge)
                    in_meta.append((a._data.shape, a._data.dtype))
                else:
                    next_functions.append((None, 0))
                    in_meta.append(None)
            tensor_outs = [o for o in outs if isinstance(o, Tensor)]
            out_meta = tuple((o._data.shape, o._data.dtype) for o in tensor_outs)
            node = Node(
                f"{cls.__name__}Backward",
                _backward_rule(cls, ctx, len(args)),
                {},
                tuple(next_functions),
                in_meta,
                out_meta,
            )
            for i, o in enumerate(tensor_outs):
                if id(o) in ctx._non_differentiable or not o.dtype.is_floating_point:
                    continue
                o._rg = True
                o.grad_fn = node
                o._output_nr = i
        return outs[0] if single else outs


def _fresh(t):
    """The forward's output as a tensor of its own (a leaf input returned as is is aliased)."""
    out = type(t)._wrap(t._data)
    out._vc = t._version_counter()
    return out


def _backward_rule(cls, ctx: FunctionCtx, num_inputs: int):
    def run(node, *grads):
        result = cls.backward(ctx, *grads)
        if not isinstance(result, tuple):
            result = (result,)
        if len(result) != num_inputs:
            raise AutogradError(
                f"function {cls.__name__}Backward returned an incorrect number of gradients "
                f"(expected {num_inputs}, got {len(result)})"
            )
        return result

    return run
