"""Convolution and pooling over NCHW tensors.

Convolutions gather sliding windows as a strided view (no copy until the matrix product) and
contract them with the weights in one `tensordot` per group, which hands the work to BLAS.
Attributes follow PyTorch: `stride`, `padding`, `dilation` are (height, width) pairs.
"""

from __future__ import annotations

import numpy as np

from ir.errors import ShapeError
from ir.ops.movement import open_grids
from ir.ops.registry import Promote, register


def _out_size(size: int, k: int, s: int, p: int, d: int, ceil: bool = False) -> int:
    span = d * (k - 1) + 1
    top = size + 2 * p - span
    if ceil:
        out = -(-top // s) + 1
        if (out - 1) * s >= size + p:  # the last window must start inside the input or left pad
            out -= 1
        return out
    return top // s + 1


def _columns(xp, x, kh, kw, sh, sw, dh, dw, oh, ow):
    """im2col: (N, C * KH * KW, OH * OW) from the (already padded) NCHW array `x`, copied in an
    order whose innermost runs are rows of the input (fast to gather)."""
    x = xp.ascontiguousarray(x)
    n, c = x.shape[:2]
    s_n, s_c, s_h, s_w = x.strides
    win = xp.lib.stride_tricks.as_strided(
        x, shape=(n, c, kh, kw, oh, ow), strides=(s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw)
    )
    return xp.ascontiguousarray(win).reshape(n, c * kh * kw, oh * ow)


def _windows(xp, x, kh, kw, sh, sw, dh, dw, oh, ow):
    """View of shape (N, C, OH, OW, KH, KW) over the (already padded) NCHW array `x`."""
    x = xp.ascontiguousarray(x)
    n, c = x.shape[:2]
    s_n, s_c, s_h, s_w = x.strides
    return xp.lib.stride_tricks.as_strided(
        x, shape=(n, c, oh, ow, kh, kw), strides=(s_n, s_c, s_h * sh, s_w * sw, s_h * dh, s_w * dw)
    )


def _conv_geometry(name, x, w_shape, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w_shape
    if c != cg * groups or o % groups:
        raise ShapeError(
            f"{name}: input with {c} channels and groups={groups} needs a weight of shape "
            f"({o}, {c // max(groups, 1)}, {kh}, {kw}) with out channels divisible by groups; "
            f"got weight shape {tuple(w_shape)}"
        )
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh, ow = _out_size(h, kh, sh, ph, dh), _out_size(wd, kw, sw, pw, dw)
    if oh <= 0 or ow <= 0:
        raise ShapeError(
            f"{name}: input of spatial size ({h}, {wd}) with padding {padding} is "
            f"smaller than the dilated kernel ({dh * (kh - 1) + 1}, {dw * (kw - 1) + 1})"
        )
    return oh, ow


def _padded_columns(xp, x, kernel, stride, padding, dilation, oh, ow):
    (ph, pw) = padding
    if ph or pw:
        x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    return _columns(xp, x, *kernel, *stride, *dilation, oh, ow)


def _check4(name, x, w=None):
    if x.ndim != 4:
        raise ShapeError(f"{name}: expected a 4-D (N, C, H, W) input, got shape {tuple(x.shape)}")
    if w is not None and w.ndim != 4:
        raise ShapeError(f"{name}: expected a 4-D weight, got shape {tuple(w.shape)}")


@register("conv2d", promote=Promote.COMMON)
def _conv2d(xp, x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """2-D cross-correlation of x (N, C, H, W) with w (O, C / groups, KH, KW), plus the
    optional per-channel bias b (O) -> (N, O, OH, OW)."""
    _check4("conv2d", x, w)
    oh, ow = _conv_geometry("conv2d", x, w.shape, stride, padding, dilation, groups)
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    cols = _padded_columns(xp, x, (kh, kw), stride, padding, dilation, oh, ow)
    og, k = o // groups, cg * kh * kw
    w2 = w.reshape(o, k)
    if groups == 1:
        out = xp.matmul(w2, cols)  # (N, O, OH*OW): one GEMM per sample
    else:
        out = xp.concatenate(
            [xp.matmul(w2[g * og : (g + 1) * og], cols[:, g * k : (g + 1) * k]) for g in range(groups)],
            axis=1,
        )
    if b is not None:
        out += b.reshape(1, o, 1)
    return out.reshape(n, o, oh, ow)


@register("conv2d_weight_grad", promote=Promote.COMMON)
def _conv2d_weight_grad(xp, x, g, weight_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """The gradient of conv2d with respect to its weight, given the output gradient `g`:
    sum over the batch of g @ im2col(x)^T, shaped like the weight."""
    _check4("conv2d_weight_grad", x, g)
    oh, ow = _conv_geometry("conv2d_weight_grad", x, weight_shape, stride, padding, dilation, groups)
    o, cg, kh, kw = weight_shape
    if tuple(g.shape[-2:]) != (oh, ow) or g.shape[1] != o:
        raise ShapeError(
            f"conv2d_weight_grad: output gradient of shape {tuple(g.shape)} does "
            f"not fit output ({x.shape[0]}, {o}, {oh}, {ow})"
        )
    cols = _padded_columns(xp, x, (kh, kw), stride, padding, dilation, oh, ow)
    g2 = g.reshape(g.shape[0], o, oh * ow)
    og, k = o // groups, cg * kh * kw
    # per sample g @ cols^T with BLAS reading the transposed columns in place, then summed
    parts = [
        xp.matmul(g2[:, i * og : (i + 1) * og], cols[:, i * k : (i + 1) * k].transpose(0, 2, 1)).sum(0)
        for i in range(groups)
    ]
    out = parts[0] if groups == 1 else xp.concatenate(parts, axis=0)
    return out.reshape(weight_shape).astype(np.result_type(x.dtype, g.dtype), copy=False)


@register("conv_transpose2d", promote=Promote.COMMON)
def _conv_transpose2d(
    xp, x, w, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1), groups=1
):
    """Transposed convolution (the adjoint of conv2d): x (N, Cin, H, W) with w
    (Cin, Cout / groups, KH, KW) -> (N, Cout, (H-1)*s - 2p + d*(k-1) + output_padding + 1, ...)."""
    _check4("conv_transpose2d", x, w)
    n, c, h, wd = x.shape
    ci, cog, kh, kw = w.shape
    if c != ci or c % groups:
        raise ShapeError(
            f"conv_transpose2d: input with {c} channels needs a weight with {c} "
            f"input channels divisible by groups={groups}; got {tuple(w.shape)}"
        )
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    full_h = (h - 1) * sh + dh * (kh - 1) + 1 + oph
    full_w = (wd - 1) * sw + dw * (kw - 1) + 1 + opw
    out_h, out_w = full_h - 2 * ph, full_w - 2 * pw
    if out_h <= 0 or out_w <= 0:
        raise ShapeError(f"conv_transpose2d: padding {padding} leaves no output for input size ({h}, {wd})")
    dtype = np.result_type(x.dtype, w.dtype)
    out = xp.zeros((n, cog * groups, full_h, full_w), dtype=dtype)
    cg = c // groups
    for g in range(groups):
        # (N, Cout_g * KH * KW, H * W): every input pixel's contribution to every kernel
        # position (col2im's input), then scattered with one strided add per kernel position
        w_g = w[g * cg : (g + 1) * cg].reshape(cg, cog * kh * kw)
        cols = xp.matmul(w_g.T, x[:, g * cg : (g + 1) * cg].reshape(n, cg, h * wd))
        cols = cols.reshape(n, cog, kh, kw, h, wd)
        for i in range(kh):
            for j in range(kw):
                out[
                    :,
                    g * cog : (g + 1) * cog,
                    i * dh : i * dh + (h - 1) * sh + 1 : sh,
                    j * dw : j * dw + (wd - 1) * sw + 1 : sw,
                ] += cols[:, :, i, j]
    return xp.ascontiguousarray(out[:, :, ph : ph + out_h, pw : pw + out_w])


@register("max_pool2d", num_outputs=2)
def _max_pool2d(xp, x, kernel_size, stride, padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    """(values, indices) of the largest element in each window; indices are flat positions in
    the input's (H, W) plane, as PyTorch returns them."""
    _check4("max_pool2d", x)
    n, c, h, wd = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    if ph * 2 > kh or pw * 2 > kw:
        raise ShapeError(
            f"max_pool2d: padding {padding} should be at most half of the kernel size {kernel_size}"
        )
    oh = _out_size(h, kh, sh, ph, dh, ceil_mode)
    ow = _out_size(wd, kw, sw, pw, dw, ceil_mode)
    if oh <= 0 or ow <= 0:
        raise ShapeError(
            f"max_pool2d: input of spatial size ({h}, {wd}) is too small for "
            f"kernel {kernel_size} with padding {padding}"
        )
    if (kh, kw) == (sh, sw) and padding == (0, 0) and dilation == (1, 1) and h == oh * kh and wd == ow * kw:
        return _max_pool_tiles(xp, x, kh, kw, oh, ow)
    need_h = (oh - 1) * sh + dh * (kh - 1) + 1
    need_w = (ow - 1) * sw + dw * (kw - 1) + 1
    pad_b, pad_r = max(need_h - h - ph, 0), max(need_w - wd - pw, 0)
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    xpad = x
    if ph or pw or pad_b or pad_r:
        xpad = xp.pad(x, ((0, 0), (0, 0), (ph, pad_b), (pw, pad_r)), constant_values=low)
    win = _windows(xp, xpad, kh, kw, sh, sw, dh, dw, oh, ow).reshape(n, c, oh, ow, kh * kw)
    arg = xp.argmax(win, axis=-1)
    values = xp.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
    rows = xp.arange(oh).reshape(oh, 1) * sh - ph + (arg // kw) * dh
    cols = xp.arange(ow).reshape(1, ow) * sw - pw + (arg % kw) * dw
    return xp.ascontiguousarray(values), (rows * wd + cols).astype(np.int64)


def _max_pool_tiles(xp, x, kh, kw, oh, ow):
    """max_pool2d for windows that tile the input exactly (kernel == stride, no padding): the
    window elements are strided views, compared elementwise (the first maximum wins, and a NaN
    wins as in PyTorch). The index follows from equality tests in arithmetic rather than
    `where`, whose branches a random image mispredicts (2.5x faster on LeNet's activations)."""
    wd = x.shape[3]
    tiles = x.reshape(x.shape[0], x.shape[1], oh, kh, ow, kw)
    views = [tiles[:, :, :, a // kw, :, a % kw] for a in range(kh * kw)]
    values = views[0].copy()
    for v in views[1:]:
        xp.maximum(values, v, out=values)  # propagates NaN
    nan = x.dtype.kind == "f" and bool(xp.isnan(values).any())
    # offset of the winner inside its window's (H, W) footprint, searched from the last element
    offset = xp.full(values.shape, (kh - 1) * wd + kw - 1, dtype=np.int32)
    for a in range(kh * kw - 2, -1, -1):
        hit = views[a] == values
        if nan:
            hit |= xp.isnan(views[a])
        offset -= hit * (offset - np.int32((a // kw) * wd + a % kw))
    corner = xp.arange(oh).reshape(oh, 1) * (kh * wd) + xp.arange(ow).reshape(1, ow) * kw
    return values, offset + corner.astype(np.int64)


@register("max_pool2d_backward")
def _max_pool2d_backward(xp, g, indices, height, width, overlapping=True):
    """The input gradient of max_pool2d: `g` (N, C, OH, OW) placed at the flat plane positions
    `indices`; summed where windows overlap, written directly where they cannot."""
    n, c = g.shape[:2]
    out = xp.zeros((n, c, height * width), dtype=g.dtype)
    flat_idx = indices.reshape(n, c, -1)
    flat_g = g.reshape(n, c, -1)
    if not overlapping:
        xp.put_along_axis(out, flat_idx, flat_g, axis=2)
    elif xp is np:
        rows = (np.arange(n * c).reshape(n, c, 1) * (height * width) + flat_idx).ravel()
        out = np.bincount(rows, weights=flat_g.ravel(), minlength=out.size).astype(g.dtype).reshape(out.shape)
    else:
        grids = open_grids(xp, flat_idx.shape)
        grids[2] = flat_idx
        xp.add.at(out, tuple(grids), flat_g)
    return out.reshape(n, c, height, width)
