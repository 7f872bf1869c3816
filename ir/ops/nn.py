"""Fused neural-network ops kept whole for speed: linear, softmax, log_softmax, layer_norm (and
the backward ops of softmax and layer_norm), nll_loss, mse_loss, threshold_backward.

Each has a plain decomposition into core ops (x @ w.T + b; x - logsumexp(x); a gather and a
weighted mean); running them as one op saves the eager frontend a dozen dispatches and
backward nodes per call.
"""

from __future__ import annotations

import numpy as np

from ir.errors import ShapeError
from ir.ops.linalg import _folded_matmul
from ir.ops.registry import Promote, register


@register("linear", promote=Promote.COMMON)
def _linear(xp, x, w, b=None):
    """x @ w.T (+ b) for x (..., in), w (out, in), b (out)."""
    if w.ndim != 2 or x.shape[-1] != w.shape[1]:
        raise ShapeError(
            f"linear: input of shape {tuple(x.shape)} does not fit weight of "
            f"shape {tuple(w.shape)} (in_features {w.shape[-1]})"
        )
    out = _folded_matmul(xp, x, w.T) if x.ndim > 2 else xp.matmul(x, w.T)
    if b is not None:
        out += b
    return out


@register("softmax", promote=Promote.FLOAT)
def _softmax(xp, x, dim):
    """exp(x) / sum(exp(x)) along `dim`, shifted by the maximum (a row of -inf gives NaN, as
    in PyTorch)."""
    with np.errstate(all="ignore"):
        e = xp.exp(x - xp.max(x, axis=dim, keepdims=True)) if x.size else x
        return e / xp.sum(e, axis=dim, keepdims=True)


@register("softmax_backward", promote=Promote.FLOAT)
def _softmax_backward(xp, y, g, dim):
    """The input gradient of y = softmax(x) for output gradient g: y * (g - sum(g * y))."""
    return y * (g - xp.sum(g * y, axis=dim, keepdims=True))


def _normalized(xp, x, dims, eps):
    """(x - mean) / sqrt(var + eps) over `dims` (the biased variance), and 1 / sqrt(var + eps)."""
    d = x - xp.mean(x, axis=dims, keepdims=True)
    rstd = 1 / xp.sqrt(xp.mean(d * d, axis=dims, keepdims=True) + x.dtype.type(eps))
    return d * rstd, rstd


def _check_affine(x, w, dims, role):
    shape = tuple(x.shape[d] for d in dims)
    if w is not None and tuple(w.shape) != shape:
        raise ShapeError(
            f"layer_norm: {role} of shape {list(w.shape)} does not match normalized shape {list(shape)}"
        )


@register("layer_norm", promote=Promote.FLOAT)
def _layer_norm(xp, x, w=None, b=None, dims=(-1,), eps=1e-5):
    """(x - mean) / sqrt(var + eps) * w + b, mean and biased variance over the trailing `dims`
    (w and b shaped as those dims, either may be None)."""
    _check_affine(x, w, dims, "weight")
    _check_affine(x, b, dims, "bias")
    out, _ = _normalized(xp, x, dims, eps)
    if w is not None:
        out *= w
    if b is not None:
        out += b
    return out


@register("layer_norm_backward", promote=Promote.FLOAT)
def _layer_norm_backward(xp, x, w, g, dims=(-1,), eps=1e-5):
    """The input gradient of layer_norm(x, w, b) for output gradient g: with x^ the normalized
    x and h = g * w, (h - mean(h) - x^ * mean(h * x^)) / sqrt(var + eps)."""
    xhat, rstd = _normalized(xp, x, dims, eps)
    h = g if w is None else g * w
    return rstd * (
        h - xp.mean(h, axis=dims, keepdims=True) - xhat * xp.mean(h * xhat, axis=dims, keepdims=True)
    )


@register("log_softmax", promote=Promote.FLOAT)
def _log_softmax(xp, x, dim):
    """x - log(sum(exp(x))) along `dim`, shifted by the maximum so nothing overflows."""
    with np.errstate(all="ignore"):
        m = xp.max(x, axis=dim, keepdims=True) if x.size else x
        m = xp.where(xp.isfinite(m), m, 0)
        shifted = x - m
        return shifted - xp.log(xp.sum(xp.exp(shifted), axis=dim, keepdims=True))


@register("nll_loss", promote=Promote.NONE, promoted=(0, 2))
def _nll_loss(xp, logp, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of class indices: logp (N, C, ...), target (N, ...)."""
    if target.dtype.kind not in "iu":
        raise TypeError(f"nll_loss expects integer class targets, got {target.dtype}")
    if tuple(target.shape) != (logp.shape[0],) + tuple(logp.shape[2:]):
        raise ShapeError(
            f"nll_loss: expected target of shape {[logp.shape[0], *logp.shape[2:]]}, got {list(target.shape)}"
        )
    valid = target != ignore_index
    safe = xp.where(valid, target, 0)
    classes = logp.shape[1]
    if safe.size and (safe.min() < 0 or safe.max() >= classes):
        raise IndexError(f"nll_loss: target {int(safe.max())} is out of bounds for {classes} classes")
    picked = xp.take_along_axis(logp, xp.expand_dims(safe, 1), axis=1)[:, 0]
    w = valid.astype(logp.dtype)
    if weight is not None:
        w = w * weight[safe]
    loss = -picked * w
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum(dtype=logp.dtype)
    with np.errstate(all="ignore"):
        return (loss.sum() / w.sum()).astype(logp.dtype)


def _nll_weights(xp, target, weight, ignore_index, reduction, dtype):
    valid = target != ignore_index
    safe = xp.where(valid, target, 0)
    w = valid.astype(dtype)
    if weight is not None:
        w = w * weight[safe]
    if reduction == "mean":
        with np.errstate(all="ignore"):
            w = w / w.sum()
    return safe, w


@register("nll_loss_backward", promote=Promote.NONE, promoted=(0, 2))
def _nll_loss_backward(xp, g, target, weight=None, shape=(), ignore_index=-100, reduction="mean"):
    """The gradient of nll_loss for its log-probabilities of `shape`, given the loss's
    gradient `g`: -g * weight at each sample's target class, zero elsewhere."""
    safe, w = _nll_weights(xp, target, weight, ignore_index, reduction, g.dtype)
    out = xp.zeros(tuple(shape), dtype=g.dtype)
    xp.put_along_axis(out, xp.expand_dims(safe, 1), xp.expand_dims(-(w * g), 1), axis=1)
    return out


@register("mse_loss", promote=Promote.COMMON)
def _mse_loss(xp, input, target, reduction="mean"):
    """Squared differences (broadcasting), averaged, summed or kept ('none')."""
    d = input - target
    loss = d * d
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


@register("threshold_backward", promote=Promote.NONE, differentiable=True)
def _threshold_backward(xp, grad, output, threshold=0.0):
    """`grad` where `output` > threshold, else 0: relu's backward in one op.

    For floats, a bitwise and with an all-ones or all-zeros mask: exact (a NaN or infinite
    gradient where the output is below the threshold still becomes 0) and, unlike `where` on
    a mask as random as a ReLU's, free of branch mispredictions (10x faster on 300k floats).
    """
    keep = output > threshold
    if grad.dtype.kind != "f" or grad.ndim == 0 or keep.shape != grad.shape:
        return xp.where(keep, grad, xp.zeros((), grad.dtype))
    bits = np.dtype(f"i{grad.dtype.itemsize}")
    mask = xp.negative(keep.view(np.uint8), dtype=bits)  # 0 or -1: all bits set
    return xp.bitwise_and(grad.view(bits), mask, out=mask).view(grad.dtype)
