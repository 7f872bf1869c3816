"""Optimizers: PyTorch's update rules, applied in place to the parameters' arrays.

Updates run on the arrays behind the parameters (numpy or cupy) without recording history, as
PyTorch's `step()` does under `no_grad`; each update bumps the parameter's version counter so a
graph that saved the old value refuses to backward through it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from graphc import _device
from graphc._tensor import Tensor, reset_grads


class _Required:
    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


class Optimizer:
    """Base class: parameter groups with per-group options, per-parameter state, zero_grad,
    state_dict/load_state_dict."""

    def __init__(self, params, defaults: dict) -> None:
        self.defaults = defaults
        self.state: dict = defaultdict(dict)
        self.param_groups: list[dict] = []
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own options (others from the defaults)."""
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(
                    f"parameter group didn't specify a value of required optimization parameter {name}"
                )
            group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimized parameters (to None, or to zero in place)."""
        reset_grads((p for group in self.param_groups for p in group["params"]), set_to_none)

    def step(self, closure=None):
        """Update the parameters once; `closure` re-evaluates the loss and is returned."""
        loss = None
        if closure is not None:
            from graphc.autograd.grad_mode import enable_grad

            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad._data
                if group.get("maximize"):
                    grad = -grad
                xp = _device.array_module(p._data)
                self._update(xp, p, grad, group, self.state[p])
                p._bump_version()
        return loss

    def _update(self, xp, p: Tensor, grad, group: dict, state: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define _update")

    # --- saving ---
    def state_dict(self) -> dict:
        """{'state': {index: {name: value}}, 'param_groups': [options with 'params': indices]}."""
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore options and state saved by `state_dict` (groups must match in size)."""
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for mine, theirs in zip(self.param_groups, saved, strict=True):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError(
                    "loaded state dict contains a parameter group that doesn't "
                    "match the size of optimizer's group"
                )
        by_index = {}
        for mine, theirs in zip(self.param_groups, saved, strict=True):
            for p, i in zip(mine["params"], theirs["params"], strict=True):
                by_index[i] = p
            mine.update({k: v for k, v in theirs.items() if k != "params"})
        self.state = defaultdict(dict)
        for i, s in state_dict["state"].items():
            p = by_index[int(i)]
            # copies: the loaded state must not alias the dict it came from
            self.state[p] = {
                k: (v.to(p.device).clone() if isinstance(v, Tensor) else v) for k, v in s.items()
            }

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__


def _buffer(state: dict, name: str, like, xp, fill: float = 0.0):
    """The state tensor `name` (a zero-filled or `fill`-filled array like `like`, created on
    first use); returned as its array for in-place updates."""
    t = state.get(name)
    if t is None:
        t = state[name] = Tensor._wrap(xp.full(like.shape, fill, dtype=like.dtype))
    return t._data


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"invalid SGD options lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(
            params,
            {
                "lr": lr,
                "momentum": momentum,
                "dampening": dampening,
                "weight_decay": weight_decay,
                "nesterov": nesterov,
                "maximize": maximize,
            },
        )

    def _update(self, xp, p, grad, group, state) -> None:
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p._data
        momentum = group["momentum"]
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                state["momentum_buffer"] = Tensor._wrap(grad.copy())
                buf = state["momentum_buffer"]._data
            else:
                buf = buf._data
                buf *= momentum
                damp = 1 - group["dampening"]
                buf += grad if damp == 1 else damp * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        p._data -= group["lr"] * grad


class Adam(Optimizer):
    """Adam (and AMSGrad) with L2 weight decay added to the gradient."""

    _decoupled = False

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ):
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid Adam options lr={lr}, betas={betas}, eps={eps}")
        super().__init__(
            params,
            {
                "lr": lr,
                "betas": tuple(betas),
                "eps": eps,
                "weight_decay": weight_decay,
                "amsgrad": amsgrad,
                "maximize": maximize,
            },
        )

    def _update(self, xp, p, grad, group, state) -> None:
        beta1, beta2 = group["betas"]
        lr = group["lr"]
        grad = _decay(p, grad, lr, group["weight_decay"], self._decoupled)
        step = state["step"] = state.get("step", 0) + 1
        exp_avg, exp_avg_sq = _moments(state, p, grad, beta1, beta2, xp)
        bias1, bias2 = 1 - beta1**step, 1 - beta2**step
        if group["amsgrad"]:
            peak = _buffer(state, "max_exp_avg_sq", p._data, xp)
            xp.maximum(peak, exp_avg_sq, out=peak)
            denom = xp.sqrt(peak) / math.sqrt(bias2) + group["eps"]
        else:
            denom = xp.sqrt(exp_avg_sq) / math.sqrt(bias2) + group["eps"]
        p._data -= (lr / bias1) * exp_avg / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (the parameter shrinks by lr * weight_decay)."""

    _decoupled = True

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)


class RMSprop(Optimizer):
    """RMSprop with optional momentum and centering."""

    def __init__(
        self,
        params,
        lr=1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ):
        if lr < 0 or eps < 0 or alpha < 0:
            raise ValueError(f"invalid RMSprop options lr={lr}, alpha={alpha}, eps={eps}")
        super().__init__(
            params,
            {
                "lr": lr,
                "alpha": alpha,
                "eps": eps,
                "weight_decay": weight_decay,
                "momentum": momentum,
                "centered": centered,
                "maximize": maximize,
            },
        )

    def _update(self, xp, p, grad, group, state) -> None:
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p._data
        state["step"] = state.get("step", 0) + 1
        alpha = group["alpha"]
        square_avg = _buffer(state, "square_avg", p._data, xp)
        square_avg *= alpha
        square_avg += (1 - alpha) * grad * grad
        if group["centered"]:
            grad_avg = _buffer(state, "grad_avg", p._data, xp)
            grad_avg += (1 - alpha) * (grad - grad_avg)
            avg = xp.sqrt(square_avg - grad_avg * grad_avg) + group["eps"]
        else:
            avg = xp.sqrt(square_avg) + group["eps"]
        if group["momentum"] > 0:
            buf = _buffer(state, "momentum_buffer", p._data, xp)
            buf *= group["momentum"]
            buf += grad / avg
            p._data -= group["lr"] * buf
        else:
            p._data -= group["lr"] * grad / avg


class Adagrad(Optimizer):
    """Adagrad with learning-rate decay and weight decay."""

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ):
        if lr < 0 or lr_decay < 0 or eps < 0 or initial_accumulator_value < 0:
            raise ValueError(f"invalid Adagrad options lr={lr}, lr_decay={lr_decay}, eps={eps}")
        super().__init__(
            params,
            {
                "lr": lr,
                "lr_decay": lr_decay,
                "weight_decay": weight_decay,
                "initial_accumulator_value": initial_accumulator_value,
                "eps": eps,
                "maximize": maximize,
            },
        )

    def _update(self, xp, p, grad, group, state) -> None:
        step = state["step"] = state.get("step", 0) + 1
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p._data
        clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
        total = _buffer(state, "sum", p._data, xp, group["initial_accumulator_value"])
        total += grad * grad
        p._data -= clr * grad / (xp.sqrt(total) + group["eps"])


class NAdam(Optimizer):
    """Adam with Nesterov momentum (Dozat), its momentum decaying by `momentum_decay`;
    `decoupled_weight_decay` shrinks the parameter as AdamW does."""

    def __init__(
        self,
        params,
        lr=2e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ):
        _check_adam("NAdam", lr, betas, eps, weight_decay)
        if momentum_decay < 0:
            raise ValueError(f"Invalid momentum_decay value: {momentum_decay}")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        defaults.update(momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, {**defaults, "maximize": maximize})

    def _update(self, xp, p, grad, group, state) -> None:
        beta1, beta2 = group["betas"]
        lr, psi = group["lr"], group["momentum_decay"]
        grad = _decay(p, grad, lr, group["weight_decay"], group["decoupled_weight_decay"])
        step = state["step"] = state.get("step", 0) + 1
        mu = beta1 * (1 - 0.5 * 0.96 ** (step * psi))
        mu_next = beta1 * (1 - 0.5 * 0.96 ** ((step + 1) * psi))
        product = state["mu_product"] = state.get("mu_product", 1.0) * mu
        exp_avg, exp_avg_sq = _moments(state, p, grad, beta1, beta2, xp)
        denom = xp.sqrt(exp_avg_sq / (1 - beta2**step)) + group["eps"]
        p._data -= (lr * (1 - mu) / (1 - product)) * grad / denom
        p._data -= (lr * mu_next / (1 - product * mu_next)) * exp_avg / denom


class RAdam(Optimizer):
    """Adam with the variance of its adaptive rate rectified (Liu et al.): plain momentum
    steps while too few steps make the variance estimate unreliable."""

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ):
        _check_adam("RAdam", lr, betas, eps, weight_decay)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__(
            params, {**defaults, "decoupled_weight_decay": decoupled_weight_decay, "maximize": maximize}
        )

    def _update(self, xp, p, grad, group, state) -> None:
        beta1, beta2 = group["betas"]
        lr = group["lr"]
        grad = _decay(p, grad, lr, group["weight_decay"], group["decoupled_weight_decay"])
        step = state["step"] = state.get("step", 0) + 1
        exp_avg, exp_avg_sq = _moments(state, p, grad, beta1, beta2, xp)
        bias1, bias2 = 1 - beta1**step, 1 - beta2**step
        rho_inf = 2 / (1 - beta2) - 1
        rho = rho_inf - 2 * step * beta2**step / bias2
        if rho > 5:
            rect = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            p._data -= (
                (lr * rect / bias1) * exp_avg * (math.sqrt(bias2) / (xp.sqrt(exp_avg_sq) + group["eps"]))
            )
        else:
            p._data -= (lr / bias1) * exp_avg


class Adamax(Optimizer):
    """Adam with the infinity norm: the second moment is a decaying maximum of |grad|."""

    def __init__(
        self,
        params,
        lr=2e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ):
        _check_adam("Adamax", lr, betas, eps, weight_decay)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, {**defaults, "maximize": maximize})

    def _update(self, xp, p, grad, group, state) -> None:
        beta1, beta2 = group["betas"]
        grad = _decay(p, grad, group["lr"], group["weight_decay"], False)
        step = state["step"] = state.get("step", 0) + 1
        exp_avg = _buffer(state, "exp_avg", p._data, xp)
        exp_inf = _buffer(state, "exp_inf", p._data, xp)
        exp_avg += (1 - beta1) * (grad - exp_avg)
        xp.maximum(exp_inf * beta2, xp.abs(grad) + group["eps"], out=exp_inf)
        p._data -= (group["lr"] / (1 - beta1**step)) * exp_avg / exp_inf


class Adadelta(Optimizer):
    """Adadelta (Zeiler): steps scaled by the ratio of decaying averages of past squared
    updates and squared gradients."""

    def __init__(
        self,
        params,
        lr=1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ):
        if lr < 0 or not 0 <= rho <= 1 or eps < 0 or weight_decay < 0:
            raise ValueError(
                f"invalid Adadelta options lr={lr}, rho={rho}, eps={eps}, weight_decay={weight_decay}"
            )
        super().__init__(
            params, {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay, "maximize": maximize}
        )

    def _update(self, xp, p, grad, group, state) -> None:
        rho, eps = group["rho"], group["eps"]
        grad = _decay(p, grad, group["lr"], group["weight_decay"], False)
        state["step"] = state.get("step", 0) + 1
        square_avg = _buffer(state, "square_avg", p._data, xp)
        acc_delta = _buffer(state, "acc_delta", p._data, xp)
        square_avg *= rho
        square_avg += (1 - rho) * grad * grad
        delta = xp.sqrt(acc_delta + eps) / xp.sqrt(square_avg + eps) * grad
        acc_delta *= rho
        acc_delta += (1 - rho) * delta * delta
        p._data -= group["lr"] * delta


def _check_adam(name: str, lr, betas, eps, weight_decay) -> None:
    if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
        raise ValueError(
            f"invalid {name} options lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}"
        )


def _decay(p, grad, lr, weight_decay, decoupled: bool):
    """The gradient with L2 weight decay added, or (decoupled) the parameter shrunk in place."""
    if not weight_decay:
        return grad
    if decoupled:
        p._data *= 1 - lr * weight_decay
        return grad
    return grad + weight_decay * p._data


def _moments(state, p, grad, beta1, beta2, xp):
    """Adam's decaying averages of the gradient and its square, updated in place."""
    exp_avg = _buffer(state, "exp_avg", p._data, xp)
    exp_avg_sq = _buffer(state, "exp_avg_sq", p._data, xp)
    exp_avg += (1 - beta1) * (grad - exp_avg)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    return exp_avg, exp_avg_sq
