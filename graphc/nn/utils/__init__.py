"""`nn.utils`: gradient clipping, flattening parameters to one vector, weight and spectral
normalisation; `nn.utils.rnn`: padded and packed batches of sequences."""

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


# --- weight normalization ---


def _norm_except_dim(v: Tensor, dim: int) -> Tensor:
    """The 2-norm of `v` over every dim but `dim`, shaped to broadcast against v (dim -1: the
    norm of all of v)."""
    if dim == -1:
        return v.norm()
    d = dim % v.dim()
    others = tuple(i for i in range(v.dim()) if i != d)
    return (v * v).sum(others, keepdim=True).sqrt()


class _WeightNorm:
    """The forward pre-hook that makes `name` from `name_g` and `name_v`: g * v / ||v||."""

    def __init__(self, name: str, dim: int) -> None:
        self.name, self.dim = name, dim

    def compute(self, module) -> Tensor:
        g, v = getattr(module, self.name + "_g"), getattr(module, self.name + "_v")
        return v * (g / _norm_except_dim(v, self.dim))

    def __call__(self, module, args) -> None:
        object.__setattr__(module, self.name, self.compute(module))


def weight_norm(module, name: str = "weight", dim: int | None = 0):
    """Reparameterize `module.<name>` as g * v / ||v|| (Salimans & Kingma), the norm over every
    dim but `dim` (None: over all of it): parameters `<name>_g` (the norms) and `<name>_v` (the
    direction) replace it, and the weight is recomputed before every forward."""
    from graphc.nn.parameter import Parameter

    dim = -1 if dim is None else dim
    hooks = module.__dict__.setdefault("_weight_norm_hooks", {})
    if name in hooks:
        raise RuntimeError(f"cannot register two weight_norm hooks on the same parameter {name}")
    weight = getattr(module, name)
    if not isinstance(weight, Parameter):
        raise TypeError(f"weight_norm: module.{name} must be a Parameter, got {type(weight).__name__}")
    fn = _WeightNorm(name, dim)
    del module._parameters[name]
    with no_grad():
        module.register_parameter(name + "_g", Parameter(_norm_except_dim(weight, dim).clone()))
        module.register_parameter(name + "_v", Parameter(weight.detach().clone()))
    fn(module, ())
    hooks[name] = (module.register_forward_pre_hook(fn), fn)
    return module


def remove_weight_norm(module, name: str = "weight"):
    """Undo `weight_norm`: `<name>` is a plain parameter again, with the current g * v / ||v||."""
    from graphc.nn.parameter import Parameter

    hooks = module.__dict__.get("_weight_norm_hooks", {})
    if name not in hooks:
        raise ValueError(f"weight_norm of '{name}' not found in {type(module).__name__}")
    handle, fn = hooks.pop(name)
    with no_grad():
        weight = fn.compute(module)
    handle.remove()
    del module._parameters[name + "_g"], module._parameters[name + "_v"]
    module.__dict__.pop(name, None)
    module.register_parameter(name, Parameter(weight.detach().clone()))
    return module


# --- spectral normalization ---


class _SpectralNorm:
    """The forward pre-hook that makes `name` = `name_orig` / sigma, sigma the largest singular
    value of the weight as a matrix (dim `dim` as rows), estimated by power iteration on the
    buffers `name_u`, `name_v` (one step per training forward, none in eval)."""

    def __init__(self, name: str, n_power_iterations: int, dim: int, eps: float) -> None:
        self.name, self.n_power_iterations, self.dim, self.eps = name, n_power_iterations, dim, eps

    def matrix(self, weight: Tensor) -> Tensor:
        if self.dim != 0:
            weight = weight.movedim(self.dim, 0)
        return weight.reshape(weight.shape[0], -1)

    def compute(self, module, power_iteration: bool) -> Tensor:
        from graphc.nn import functional as F

        weight = getattr(module, self.name + "_orig")
        u, v = getattr(module, self.name + "_u"), getattr(module, self.name + "_v")
        mat = self.matrix(weight)
        if power_iteration:
            with no_grad():
                for _ in range(self.n_power_iterations):
                    v.copy_(F.normalize(mat.detach().t() @ u, dim=0, eps=self.eps))
                    u.copy_(F.normalize(mat.detach() @ v, dim=0, eps=self.eps))
            u, v = u.clone(), v.clone()  # (the graph keeps these values, not later updates)
        sigma = (u * (mat @ v)).sum()
        return weight / sigma

    def __call__(self, module, args) -> None:
        object.__setattr__(module, self.name, self.compute(module, module.training))


def spectral_norm(module, name: str = "weight", n_power_iterations: int = 1, eps: float = 1e-12, dim=None):
    """Divide `module.<name>` by its spectral norm (Miyato et al.), estimated by power
    iteration: `<name>_orig` becomes the parameter, `<name>_u` and `<name>_v` buffers hold the
    singular vectors' estimates (updated at each forward in training mode). `dim`: the weight's
    output dim (default 0; 1 for transposed convolutions)."""
    import graphc
    from graphc.nn import functional as F
    from graphc.nn.layers import ConvTranspose2d
    from graphc.nn.parameter import Parameter

    if n_power_iterations <= 0:
        raise ValueError(
            f"spectral_norm: expected n_power_iterations to be positive, got {n_power_iterations}"
        )
    hooks = module.__dict__.setdefault("_spectral_norm_hooks", {})
    if name in hooks:
        raise RuntimeError(f"cannot register two spectral_norm hooks on the same parameter {name}")
    if dim is None:
        dim = 1 if isinstance(module, ConvTranspose2d) else 0  # (ConvTranspose1d is one too)
    weight = getattr(module, name)
    if not isinstance(weight, Parameter):
        raise TypeError(f"spectral_norm: module.{name} must be a Parameter, got {type(weight).__name__}")
    fn = _SpectralNorm(name, n_power_iterations, dim, eps)
    with no_grad():
        h, w = fn.matrix(weight).shape
        u = F.normalize(graphc.randn(h, dtype=weight.dtype, device=weight.device), dim=0, eps=eps)
        v = F.normalize(graphc.randn(w, dtype=weight.dtype, device=weight.device), dim=0, eps=eps)
    del module._parameters[name]
    module.register_parameter(name + "_orig", weight)
    module.register_buffer(name + "_u", u)
    module.register_buffer(name + "_v", v)
    object.__setattr__(module, name, weight.detach())
    hooks[name] = (module.register_forward_pre_hook(fn), fn)
    return module


def remove_spectral_norm(module, name: str = "weight"):
    """Undo `spectral_norm`: `<name>` is a plain parameter again, the weight over its current
    sigma estimate."""
    from graphc.nn.parameter import Parameter

    hooks = module.__dict__.get("_spectral_norm_hooks", {})
    if name not in hooks:
        raise ValueError(f"spectral_norm of '{name}' not found in {type(module).__name__}")
    handle, fn = hooks.pop(name)
    with no_grad():
        weight = fn.compute(module, power_iteration=False)
    handle.remove()
    del module._parameters[name + "_orig"], module._buffers[name + "_u"], module._buffers[name + "_v"]
    module.__dict__.pop(name, None)
    module.register_parameter(name, Parameter(weight.detach().clone()))
    return module
