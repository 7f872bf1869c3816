"""`nn.Parameter`: a tensor that a Module registers as a learnable parameter."""

from __future__ import annotations

from graphc import _dispatch
from graphc._tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that requires grad by default and is registered by the Module it is
    assigned to.

        >>> self.weight = nn.Parameter(graphc.randn(3, 2))
    """

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True) -> None:
        from graphc._creation import empty

        data = empty(0) if data is None else data
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter() expects a Tensor, got {type(data).__name__}")
        self._data = data._data
        self._vc = data._version_counter()
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, protocol):
        return (_rebuild_parameter, (self.detach(), self.requires_grad))

    def __deepcopy__(self, memo):
        out = Parameter(self.detach().clone(), self.requires_grad)
        memo[id(self)] = out
        return out


def _rebuild_parameter(data, requires_grad):
    return Parameter(data, requires_grad)


_dispatch._FAST_TYPES.add(Parameter)  # parameters are plain tensors to the fast path
