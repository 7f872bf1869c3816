"""`nn.utils`: gradient clipping and flattening parameters to one vector."""

from __future__ import annotations

import math
from collections.abc import Iterable

from graphc._tensor import Tensor
from graphc.autograd.grad_mode import no_grad


def _params(parameters) -> list[Tensor]:
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def clip_grad_norm_(
    parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False, foreach=None
) -> Tensor:
    """Scale all gradients together so their joint `norm_type`-norm is at most `max_norm`;
    return the norm before clipping."""
    import graphc as G

    grads = [p.grad for p in _params(parameters) if p.grad is not None]
    if not grads:
        return G.tensor(0.0)
    norm_type = float(norm_type)
    with no_grad():
        if norm_type == math.inf:
            total = G.stack([g.detach().abs().max() for g in grads]).max()
        else:
            total = G.stack([G.norm(g.detach().to(G.float64), norm_type) for g in grads])
            total = G.norm(total, norm_type).to(grads[0].dtype)
        if error_if_nonfinite and not bool(G.isfinite(total)):
            raise RuntimeError(
                f"The total norm of order {norm_type} for gradients from "
                "`parameters` is non-finite, so it cannot be clipped."
            )
        coef = float(max_norm) / (float(total) + 1e-6)
        if coef < 1:
            for g in grads:
                g.mul_(coef)
    return total


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every gradient element into [-clip_value, clip_value]."""
    with no_grad():
        for p in _params(parameters):
            if p.grad is not None:
                p.grad.clamp_(-clip_value, clip_value)


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """All parameters flattened and joined into one vector."""
    import graphc as G

    return G.cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive pieces of `vec` into the parameters."""
    if not isinstance(vec, Tensor) or vec.dim() != 1:
        raise TypeError("expected a 1-D vector")
    start = 0
    with no_grad():
        for p in parameters:
            n = p.numel()
            p.copy_(vec[start : start + n].view_as(p))
            start += n
    if start != vec.numel():
        raise ValueError(f"vector has {vec.numel()} elements but the parameters have {start}")
