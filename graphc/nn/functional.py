"""`nn.functional`: layers and losses as functions of tensors.

Convolution and pooling run as ops of the registry; the rest are compositions of graphc ops,
so every function here is differentiable (to any order) through autograd.
"""

from __future__ import annotations

import math

import numpy as np

import graphc as G
from graphc._dispatch import dispatch
from graphc._tensor import Tensor, _wrap_dim
from graphc.errors import ShapeError
from ir.ops import OPS


def _pair(v, name: str = "value") -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    if len(v) == 1:
        return (v[0], v[0])
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v}")
    return v


def _first(v):
    """The single size of a 1-D option given as an int or a 1-tuple."""
    return v[0] if isinstance(v, (tuple, list)) else v


# --- linear and convolution ---


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`input @ weight.T + bias`."""
    name = "AddmmBackward0" if input.dim() == 2 and bias is not None else "LinearBackward0"
    return dispatch(OPS["linear"], (input, weight, bias), name=name)


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None):
    """y_k = x1^T W_k x2 + b_k for weight (out, in1, in2)."""
    out = G.matmul(input1.unsqueeze(-2).unsqueeze(-3), weight)  # (..., out, 1, in2)
    out = (out.squeeze(-2) * input2.unsqueeze(-2)).sum(-1)
    return out if bias is None else out + bias


def _same_padding(input: Tensor, kernel, dilation):
    pads = []
    for k, d in zip(kernel, dilation, strict=True):
        total = d * (k - 1)
        pads.append((total // 2, total - total // 2))
    return pads


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation) of (N, C, H, W) or (C, H, W) input; `padding` may be
    an int, a pair, 'valid' or 'same'."""
    unbatched = input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
    if input.dim() != 4:
        raise ShapeError(f"conv2d: expected 3-D or 4-D input, got shape {list(input.shape)}")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        if stride != (1, 1):
            raise ValueError("padding='same' is not supported for strided convolutions")
        pads = _same_padding(input, weight.shape[-2:], dilation)
        if any(a != b for a, b in pads):  # uneven: pad the extra row/column at the end
            input = pad(input, (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
            padding = (0, 0)
        else:
            padding = (pads[0][0], pads[1][0])
    else:
        padding = _pair(padding, "padding")
    out = dispatch(
        OPS["conv2d"],
        (input, weight, bias),
        {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups},
        name="ConvolutionBackward0",
    )
    return out.squeeze(0) if unbatched else out


def conv1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> Tensor:
    """1-D convolution of (N, C, L) input, computed as a 2-D one of height 1."""
    as_int = _first
    pad_ = padding if isinstance(padding, str) else (0, as_int(padding))
    out = conv2d(
        input.unsqueeze(-2),
        weight.unsqueeze(-2),
        bias,
        (1, as_int(stride)),
        pad_,
        (1, as_int(dilation)),
        groups,
    )
    return out.squeeze(-2)


def conv_transpose1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
) -> Tensor:
    """Transposed 1-D convolution of (N, C, L) input, computed as a 2-D one of height 1."""
    as_int = _first
    out = conv_transpose2d(
        input.unsqueeze(-2),
        weight.unsqueeze(-2),
        bias,
        (1, as_int(stride)),
        (0, as_int(padding)),
        (0, as_int(output_padding)),
        groups,
        (1, as_int(dilation)),
    )
    return out.squeeze(-2)


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
) -> Tensor:
    """Transposed 2-D convolution (the gradient of conv2d with respect to its input)."""
    unbatched = input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
    attrs = {
        "stride": _pair(stride),
        "padding": _pair(padding),
        "output_padding": _pair(output_padding),
        "dilation": _pair(dilation),
        "groups": groups,
    }
    out = dispatch(OPS["conv_transpose2d"], (input, weight), attrs, name="ConvolutionBackward0")
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out.squeeze(0) if unbatched else out


# --- pooling ---


def max_pool2d(
    input: Tensor,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """Largest value in each window (and its flat index in the plane, if asked)."""
    unbatched = input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
    kernel = _pair(kernel_size, "kernel_size")
    attrs = {
        "kernel_size": kernel,
        "stride": _pair(stride if stride else kernel, "stride"),
        "padding": _pair(padding, "padding"),
        "dilation": _pair(dilation, "dilation"),
        "ceil_mode": ceil_mode,
    }
    values, indices = dispatch(OPS["max_pool2d"], (input,), attrs, name="MaxPool2DWithIndicesBackward0")
    if unbatched:
        values, indices = values.squeeze(0), indices.squeeze(0)
    return (values, indices) if return_indices else values


def max_pool1d(
    input: Tensor,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """max_pool2d over (N, C, L) as height 1."""
    as_int = _first
    out = max_pool2d(
        input.unsqueeze(-2),
        (1, as_int(kernel_size)),
        (1, as_int(stride if stride else kernel_size)),
        (0, as_int(padding)),
        (1, as_int(dilation)),
        ceil_mode,
        return_indices,
    )
    if return_indices:
        return out[0].squeeze(-2), out[1].squeeze(-2)
    return out.squeeze(-2)


def avg_pool2d(
    input: Tensor,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """Mean of each window, as a depthwise convolution with constant weights."""
    if ceil_mode:
        raise ValueError("avg_pool2d(ceil_mode=True) is not supported; use ceil_mode=False")
    unbatched = input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
    kh, kw = _pair(kernel_size, "kernel_size")
    channels = input.shape[1]
    weight = G.ones(channels, 1, kh, kw, dtype=input.dtype, device=input.device)
    sums = dispatch(
        OPS["conv2d"],
        (input, weight),
        {
            "stride": _pair(stride if stride else (kh, kw)),
            "padding": _pair(padding),
            "dilation": (1, 1),
            "groups": channels,
        },
        name="AvgPool2DBackward0",
    )
    if divisor_override:
        out = sums / divisor_override
    elif count_include_pad or _pair(padding) == (0, 0):
        out = sums / (kh * kw)
    else:
        ones = G.ones(1, 1, *input.shape[-2:], dtype=input.dtype, device=input.device)
        counts = dispatch(
            OPS["conv2d"],
            (ones, weight[:1]),
            {
                "stride": _pair(stride if stride else (kh, kw)),
                "padding": _pair(padding),
                "dilation": (1, 1),
                "groups": 1,
            },
        )
        out = sums / counts
    return out.squeeze(0) if unbatched else out


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """Average over the windows PyTorch's adaptive pooling uses, for any output size."""
    oh, ow = _pair(output_size, "output_size")
    h, w = input.shape[-2:]
    oh, ow = oh or h, ow or w
    if (oh, ow) == (1, 1):  # a global average: the same ops at every size (captures for any)
        return input.mean((-2, -1), keepdim=True)
    if h % oh == 0 and w % ow == 0:
        return avg_pool2d(input, (h // oh, w // ow))
    rows = []
    for i in range(oh):
        h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
        cols = [input[..., h0:h1, (j * w) // ow : -((-(j + 1) * w) // ow)].mean((-2, -1)) for j in range(ow)]
        rows.append(G.stack(cols, -1))
    return G.stack(rows, -2)


def adaptive_max_pool2d(input: Tensor, output_size, return_indices: bool = False):
    """The maximum over the windows PyTorch's adaptive pooling uses, for any output size."""
    if return_indices:
        raise ValueError("adaptive_max_pool2d(return_indices=True) is not supported")
    oh, ow = _pair(output_size, "output_size")
    h, w = input.shape[-2:]
    oh, ow = oh or h, ow or w
    if (oh, ow) == (1, 1):  # a global maximum: the same ops at every size (captures for any)
        return input.amax((-2, -1), keepdim=True)
    if h % oh == 0 and w % ow == 0:
        return max_pool2d(input, (h // oh, w // ow))
    rows = []
    for i in range(oh):
        h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
        cols = [input[..., h0:h1, (j * w) // ow : -((-(j + 1) * w) // ow)].amax((-2, -1)) for j in range(ow)]
        rows.append(G.stack(cols, -1))
    return G.stack(rows, -2)


def avg_pool1d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """avg_pool2d over (N, C, L) as height 1."""
    k, st = _first(kernel_size), _first(stride if stride else kernel_size)
    out = avg_pool2d(input.unsqueeze(-2), (1, k), (1, st), (0, _first(padding)), ceil_mode, count_include_pad)
    return out.squeeze(-2)


def adaptive_avg_pool1d(input: Tensor, output_size) -> Tensor:
    return adaptive_avg_pool2d(input.unsqueeze(-2), (1, _first(output_size))).squeeze(-2)


def adaptive_max_pool1d(input: Tensor, output_size, return_indices: bool = False) -> Tensor:
    return adaptive_max_pool2d(input.unsqueeze(-2), (1, _first(output_size)), return_indices).squeeze(-2)


def channel_shuffle(input: Tensor, groups: int) -> Tensor:
    """(N, g * c, *) -> channels interleaved across the g groups (ShuffleNet's shuffle)."""
    if input.dim() < 3:
        raise ShapeError(
            f"channel_shuffle expects an input of at least 3 dims, got shape {list(input.shape)}"
        )
    n, channels, *rest = input.shape
    if groups <= 0 or channels % groups:
        raise ShapeError(
            f"channel_shuffle: number of channels ({channels}) must be divisible by groups ({groups})"
        )
    x = input.reshape(n, groups, channels // groups, *rest).transpose(1, 2)
    return x.reshape(n, channels, *rest)


def _block_options(kernel_size, dilation, padding, stride) -> tuple:
    """unfold's and fold's options as (height, width) pairs."""
    names = ("kernel_size", "dilation", "padding", "stride")
    return tuple(
        _pair(v, name) for v, name in zip((kernel_size, dilation, padding, stride), names, strict=True)
    )


def _window_counts(name, size, kernel, dilation, padding, stride) -> tuple[int, int]:
    counts = tuple(
        (n + 2 * p - d * (k - 1) - 1) // st + 1
        for n, k, d, p, st in zip(size, kernel, dilation, padding, stride, strict=True)
    )
    if min(counts) <= 0:
        raise ShapeError(
            f"{name}: kernel {list(kernel)} with dilation {list(dilation)} does not fit the "
            f"spatial size {list(size)} padded by {list(padding)}"
        )
    return counts


def unfold(input: Tensor, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """Sliding local blocks (im2col): (N, C, H, W) -> (N, C * KH * KW, L), L the number of
    windows; channel c * KH * KW + i * KW + j holds tap (i, j) of channel c. The windows'
    rows and columns are picked with index_select (each element read once per tap)."""
    unbatched = input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
    if input.dim() != 4:
        raise ValueError(
            f"unfold: expected a 3-D or 4-D input (C, H, W) or (N, C, H, W), got {input.dim()}-D"
        )
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = _block_options(kernel_size, dilation, padding, stride)
    n, c, h, w = input.shape
    oh, ow = _window_counts("unfold", (h, w), (kh, kw), (dh, dw), (ph, pw), (sh, sw))
    x = pad(input, (pw, pw, ph, ph)) if ph or pw else input
    rows = G.tensor(
        (np.arange(kh)[:, None] * dh + np.arange(oh)[None, :] * sh).reshape(-1), device=input.device
    )
    cols = G.tensor(
        (np.arange(kw)[:, None] * dw + np.arange(ow)[None, :] * sw).reshape(-1), device=input.device
    )
    x = x.index_select(2, rows).index_select(3, cols)  # (N, C, KH * OH, KW * OW)
    out = x.reshape(n, c, kh, oh, kw, ow).permute(0, 1, 2, 4, 3, 5).reshape(n, c * kh * kw, oh * ow)
    return out.squeeze(0) if unbatched else out


def fold(input: Tensor, output_size, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """Sums sliding local blocks into an image (col2im, the adjoint of `unfold`):
    (N, C * KH * KW, L) -> (N, C, H, W), overlapping taps added (an accumulating index_put)."""
    unbatched = input.dim() == 2
    if unbatched:
        input = input.unsqueeze(0)
    if input.dim() != 3:
        raise ValueError(f"fold: expected a 2-D or 3-D input (C * KH * KW, L), got {input.dim()}-D")
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = _block_options(kernel_size, dilation, padding, stride)
    (oh_out, ow_out) = _pair(output_size, "output_size")
    n, ckk, length = input.shape
    if ckk % (kh * kw):
        raise ShapeError(
            f"fold: expected the size of dim 1 ({ckk}) to be divisible by the kernel's {kh} x {kw} taps"
        )
    oh, ow = _window_counts("fold", (oh_out, ow_out), (kh, kw), (dh, dw), (ph, pw), (sh, sw))
    if length != oh * ow:
        raise ShapeError(
            f"fold: expected {oh * ow} blocks ({oh} x {ow}) for output size {[oh_out, ow_out]}, "
            f"kernel {[kh, kw]}, dilation {[dh, dw]}, padding {[ph, pw]}, stride {[sh, sw]}; got {length}"
        )
    c, hp, wp = ckk // (kh * kw), oh_out + 2 * ph, ow_out + 2 * pw
    rows = (np.arange(kh) * dh)[:, None, None, None] + (np.arange(oh) * sh)[None, None, :, None]
    cols = (np.arange(kw) * dw)[None, :, None, None] + (np.arange(ow) * sw)[None, None, None, :]
    at = G.tensor((rows * wp + cols).reshape(-1), device=input.device)  # (KH, KW, OH, OW) flat
    values = input.reshape(n, c, kh * kw * oh * ow)
    out = input.new_zeros(n, c, hp * wp)
    out = dispatch(
        OPS["index_put"], (out, values, at), {"positions": (False, False, True), "accumulate": True}
    )
    out = out.reshape(n, c, hp, wp)[:, :, ph : ph + oh_out, pw : pw + ow_out]
    return out.squeeze(0) if unbatched else out


def _whole_multiple(n_in: int, n_out: int, scale: float) -> bool:
    """Whether an axis of n_in resized to n_out is an upsampling by a whole factor."""
    return 0 < n_in <= n_out and n_out % n_in == 0 and scale == n_in / n_out


def _positions(n_in: int, n_out: int) -> Tensor:
    """0 .. n_out - 1 for n_out a whole multiple k of n_in, built from arange(n_in) so that a
    captured graph takes any size: its length is then the input's size times k (h_times_2).
    (Where n_out is another input's size, capture takes the reshape to n_out for that size,
    which a graph refuses unless the two are tied: never a resize to the wrong size.)"""
    k = n_out // n_in
    return (G.arange(n_in).unsqueeze(1) * k + G.arange(k)).reshape(n_in * k)


def _nearest(n_in: int, n_out: int, scale: float) -> Tensor:
    """The input row of each output row of a nearest-neighbour resize (PyTorch's convention:
    floor(i * scale), at most the last row)."""
    if _whole_multiple(n_in, n_out, scale):
        return _positions(n_in, n_out) // (n_out // n_in)
    return G.tensor([min(int(math.floor(i * scale)), n_in - 1) for i in range(n_out)])


def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    """(*, C r^2, H, W) -> (*, C, H r, W r)."""
    r = upscale_factor
    *lead, c, h, w = input.shape
    if c % (r * r):
        raise ShapeError(
            f"pixel_shuffle expects its input's channels ({c}) to be divisible by upscale_factor^2 ({r * r})"
        )
    x = input.reshape(*lead, c // (r * r), r, r, h, w)
    n = len(lead)
    x = x.permute(*range(n), n, n + 3, n + 1, n + 4, n + 2)
    return x.reshape(*lead, c // (r * r), h * r, w * r)


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    """(*, C, H r, W r) -> (*, C r^2, H, W)."""
    r = downscale_factor
    *lead, c, hr, wr = input.shape
    if hr % r or wr % r:
        raise ShapeError(f"pixel_unshuffle expects height and width ({hr}, {wr}) to be divisible by {r}")
    x = input.reshape(*lead, c, hr // r, r, wr // r, r)
    n = len(lead)
    x = x.permute(*range(n), n, n + 2, n + 4, n + 1, n + 3)
    return x.reshape(*lead, c * r * r, hr // r, wr // r)


# --- activations ---


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return G.relu_(input) if inplace else G.relu(input)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    return hardtanh(input, 0.0, 6.0, inplace)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    return input.clamp_(min_val, max_val) if inplace else input.clamp(min_val, max_val)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    out = G.where(input > 0, input, input * negative_slope)
    return input.copy_(out) if inplace else out


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * relu6(x + 3) / 6."""
    out = input * (input + 3.0).clamp(0.0, 6.0) / 6.0
    return input.copy_(out) if inplace else out


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """relu6(x + 3) / 6."""
    out = (input + 3.0).clamp(0.0, 6.0) / 6.0
    return input.copy_(out) if inplace else out


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * tanh(softplus(x))."""
    out = input * G.tanh(softplus(input))
    return input.copy_(out) if inplace else out


def logsigmoid(input: Tensor) -> Tensor:
    """log(sigmoid(x)) = -softplus(-x), without overflow."""
    return -softplus(-input)


def softsign(input: Tensor) -> Tensor:
    """x / (1 + |x|)."""
    return input / (1.0 + G.abs(input))


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """scale * elu(x, alpha) with the self-normalizing constants."""
    out = _SELU_SCALE * elu(input, _SELU_ALPHA)
    return input.copy_(out) if inplace else out


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""
    if alpha == 0:
        raise ValueError("ZeroDivisionError: alpha cannot be 0 for CELU")
    out = G.where(input > 0, input, alpha * G.expm1(G.minimum(input, 0.0) / alpha))
    return input.copy_(out) if inplace else out


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """The first half of `dim` gated by the sigmoid of the second."""
    if input.shape[dim] % 2:
        raise ShapeError(
            f"glu: halving dimension must be even, but dimension {dim} is size {input.shape[dim]}"
        )
    a, b = input.chunk(2, dim)
    return a * G.sigmoid(b)


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    """x where x > threshold, else value."""
    out = G.where(input > threshold, input, value)
    return input.copy_(out) if inplace else out


def softmin(input: Tensor, dim: int | None = None, dtype=None) -> Tensor:
    return softmax(-input, dim, dtype)


def tanhshrink(input: Tensor) -> Tensor:
    return input - G.tanh(input)


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """x - lambd above lambd, x + lambd below -lambd, else 0."""
    return G.where(input > lambd, input - lambd, G.where(input < -lambd, input + lambd, 0.0))


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """x where |x| > lambd, else 0."""
    return G.where(G.abs(input) > lambd, input, 0.0)


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """max(0, x) + weight * min(0, x), one weight for all channels or one per channel (dim 1)."""
    if weight.numel() != 1:
        if input.dim() < 2 or weight.numel() != input.shape[1]:
            raise ShapeError(
                f"prelu: {weight.numel()} weights do not match the channels (dim 1) of input "
                f"{list(input.shape)}"
            )
        weight = weight.reshape(-1, *([1] * (input.dim() - 2)))
    return G.where(input > 0, input, input * weight)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    out = G.where(input > 0, input, alpha * G.expm1(G.clamp(input, max=0.0)))
    return input.copy_(out) if inplace else out


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x); `approximate='tanh'` uses the tanh formula."""
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (input + 0.044715 * input * input * input)
        return 0.5 * input * (1.0 + G.tanh(inner))
    if approximate != "none":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return 0.5 * input * (1.0 + G.erf(input * (1.0 / math.sqrt(2.0))))


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    out = input * G.sigmoid(input)
    return input.copy_(out) if inplace else out


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, linear above `threshold` (as PyTorch)."""
    scaled = input * beta
    soft = G.log1p(G.exp(-G.abs(scaled))) + G.clamp(scaled, min=0.0)
    return G.where(scaled > threshold, input, soft / beta)


def sigmoid(input: Tensor) -> Tensor:
    return G.sigmoid(input)


def tanh(input: Tensor) -> Tensor:
    return G.tanh(input)


def _softmax_dim(input: Tensor, dim) -> int:
    if dim is None:  # PyTorch's legacy choice of dim
        return 0 if input.dim() in (0, 1, 3) else 1
    return dim


def gumbel_softmax(logits: Tensor, tau: float = 1.0, hard: bool = False, eps: float = 1e-10, dim: int = -1):
    """softmax((logits + Gumbel noise) / tau) along `dim`: a differentiable sample of the
    categorical distribution; with `hard`, the one-hot of its largest entry in the forward
    pass and the soft sample's gradient in the backward (straight-through)."""
    uniform = G.rand(*logits.shape, dtype=logits.dtype, device=logits.device)
    gumbels = -G.log((-G.log(uniform.clamp_min(eps))).clamp_min(eps))  # (clamped away from log 0)
    soft = softmax((logits + gumbels) / tau, dim)
    if not hard:
        return soft
    index = soft.argmax(dim, keepdim=True)
    one_hot_ = G.zeros_like(soft).scatter(dim, index, 1.0)
    return one_hot_ - soft.detach() + soft


def softmax(input: Tensor, dim: int | None = None, dtype=None) -> Tensor:
    """exp(x) / sum(exp(x)) along `dim`, computed without overflow."""
    if dtype is not None:
        input = input.to(dtype)
    if input.dim() == 0:
        return softmax(input.reshape(1), 0).reshape(())
    dim = _wrap_dim(_softmax_dim(input, dim), input.dim())
    return dispatch(OPS["softmax"], (input,), {"dim": dim}, name="SoftmaxBackward0")


def log_softmax(input: Tensor, dim: int | None = None, dtype=None) -> Tensor:
    """log(softmax(x)) along `dim`, computed as x - logsumexp(x)."""
    if dtype is not None:
        input = input.to(dtype)
    if input.dim() == 0:
        return log_softmax(input.reshape(1), 0).reshape(())
    dim = _wrap_dim(_softmax_dim(input, dim), input.dim())
    return dispatch(OPS["log_softmax"], (input,), {"dim": dim}, name="LogSoftmaxBackward0")


# --- regularisation ---


def _drops(p: float, training: bool) -> bool:
    """Whether a dropout of probability `p` changes its input (a ValueError for a p outside
    [0, 1])."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return training and p != 0.0


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False):
    """Zero each element with probability `p` and scale the rest by 1/(1-p) (training only)."""
    if not _drops(p, training):
        return input
    if p == 1.0:
        out = input * 0.0
    else:
        # the mask scaled once: one product forward and one in the backward pass
        keep = G.bernoulli(G.full_like(input, 1.0 - p)) * (1.0 / (1.0 - p))
        out = input * keep
    return input.copy_(out) if inplace else out


def _feature_dropout(input: Tensor, p: float, training: bool, inplace: bool, spatial: int, name: str):
    """Whole channels zeroed with probability `p` (dims 0 and 1 of (N, C, *spatial), or dim 0 of
    an unbatched (C, *spatial)) and the rest scaled by 1/(1-p)."""
    drops = _drops(p, training)
    if input.dim() not in (spatial + 1, spatial + 2):
        raise ShapeError(
            f"{name}: expected a {spatial + 1}-D (unbatched) or {spatial + 2}-D input, "
            f"got shape {list(input.shape)}"
        )
    if not drops:
        return input
    kept = input.dim() - spatial  # the leading (N, C) or (C,) dims get one draw each
    shape = list(input.shape[:kept]) + [1] * spatial
    keep = G.bernoulli(G.full(shape, 1.0 - p, dtype=input.dtype, device=input.device)) * (
        1.0 / (1.0 - p) if p < 1.0 else 0.0
    )
    out = input * keep
    return input.copy_(out) if inplace else out


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    return _feature_dropout(input, p, training, inplace, 1, "dropout1d")


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    return _feature_dropout(input, p, training, inplace, 2, "dropout2d")


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    return _feature_dropout(input, p, training, inplace, 3, "dropout3d")


def alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False) -> Tensor:
    """Dropout for SELU networks (Klambauer et al. 2017): dropped elements take SELU's negative
    saturation value, then an affine map restores the input's mean and variance (training
    only)."""
    return _alpha_dropout(input, p, training, inplace, list(input.shape))


def feature_alpha_dropout(
    input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False
) -> Tensor:
    """alpha_dropout of whole channels (dims 0 and 1 get one draw each)."""
    return _alpha_dropout(input, p, training, inplace, list(input.shape[:2]) + [1] * (input.dim() - 2))


def _alpha_dropout(input: Tensor, p: float, training: bool, inplace: bool, shape: list) -> Tensor:
    if not _drops(p, training):
        return input
    if p == 1.0:
        out = input * 0.0
    else:
        alpha = 1.7580993408473766  # SELU's scale times its alpha
        a = 1.0 / math.sqrt((alpha * alpha * p + 1) * (1 - p))
        keep = G.bernoulli(G.full(shape, 1.0 - p, dtype=input.dtype, device=input.device))
        out = input * (keep * a) + ((keep - 1) * (alpha * a) + alpha * a * p)
    return input.copy_(out) if inplace else out


def rrelu(
    input: Tensor,
    lower: float = 1.0 / 8,
    upper: float = 1.0 / 3,
    training: bool = False,
    inplace: bool = False,
) -> Tensor:
    """Leaky ReLU whose negative slope is drawn uniformly from [lower, upper] per element in
    training, and is their mean otherwise (Xu et al. 2015)."""
    if training:
        slope = G.empty_like(input).uniform_(lower, upper)
    else:
        slope = (lower + upper) / 2
    out = G.where(input >= 0, input, input * slope)
    return input.copy_(out) if inplace else out


def local_response_norm(
    input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> Tensor:
    """Each element divided by (k + alpha * mean of the squares of `size` neighbouring
    channels) ** beta (AlexNet's normalisation; the mean counts the zero padding at the ends,
    as PyTorch's does)."""
    if input.dim() < 3:
        raise ShapeError(
            f"local_response_norm: expected 3 or more dims (N, C, ...), got shape {list(input.shape)}"
        )
    if input.shape[1] == 0:
        return input
    n, c = input.shape[:2]
    squares = (input * input).reshape(n, 1, c, -1)
    squares = pad(squares, (0, 0, size // 2, (size - 1) // 2))
    mean = avg_pool2d(squares, (size, 1), stride=1).reshape(input.shape)
    return input / (mean * alpha + k) ** beta


def lp_pool1d(input: Tensor, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False) -> Tensor:
    """The p-norm over each window: (sum of x^p) ** (1/p), of (N, C, L)."""
    k = _first(kernel_size)
    pooled = avg_pool1d(input**norm_type, k, stride, 0, ceil_mode)
    return (G.sign(pooled) * relu(pooled.abs()) * k) ** (1.0 / norm_type)


def lp_pool2d(input: Tensor, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False) -> Tensor:
    """The p-norm over each window: (sum of x^p) ** (1/p), of (N, C, H, W)."""
    kh, kw = _pair(kernel_size, "kernel_size")
    pooled = avg_pool2d(input**norm_type, (kh, kw), stride, 0, ceil_mode)
    return (G.sign(pooled) * relu(pooled.abs()) * (kh * kw)) ** (1.0 / norm_type)


def max_unpool2d(
    input: Tensor, indices: Tensor, kernel_size, stride=None, padding=0, output_size=None
) -> Tensor:
    """The inverse of max_pool2d(return_indices=True): each value put back where its maximum
    was, zeros elsewhere. The output is (H - 1) * stride - 2 * padding + kernel high (and
    wide), or `output_size`."""
    return _max_unpool(input, indices, kernel_size, stride, padding, output_size, 2, "max_unpool2d")


def max_unpool1d(
    input: Tensor, indices: Tensor, kernel_size, stride=None, padding=0, output_size=None
) -> Tensor:
    """The inverse of max_pool1d(return_indices=True)."""
    return _max_unpool(input, indices, kernel_size, stride, padding, output_size, 1, "max_unpool1d")


def _max_unpool(input, indices, kernel_size, stride, padding, output_size, spatial: int, name: str) -> Tensor:
    if input.dim() not in (spatial + 1, spatial + 2) or tuple(indices.shape) != tuple(input.shape):
        raise ShapeError(
            f"{name}: expected a {spatial + 2}-D input (or {spatial + 1}-D, unbatched) and indices of "
            f"its shape; got {list(input.shape)} and {list(indices.shape)}"
        )

    def per_dim(v):
        v = (v,) * spatial if isinstance(v, int) else tuple(v)
        if len(v) != spatial:
            raise ValueError(f"{name}: expected {spatial} values, got {v}")
        return v

    k, pd = per_dim(kernel_size), per_dim(padding)
    st = per_dim(stride) if stride is not None else k
    sizes = input.shape[-spatial:]
    default = tuple((n - 1) * s - 2 * p + kk for n, s, p, kk in zip(sizes, st, pd, k, strict=True))
    if output_size is None:
        out_sizes = default
    else:
        out_sizes = tuple(output_size)[-spatial:]
        for got, want, s in zip(out_sizes, default, st, strict=True):
            if not want - s < got < want + s:
                raise ShapeError(
                    f"{name}: output_size {list(output_size)} is not a size max pooling maps to this input"
                )
    lead = input.shape[:-spatial]
    flat_in = input.reshape(*lead, -1)
    flat_at = indices.reshape(*lead, -1)
    total = math.prod(out_sizes)
    out = input.new_zeros((*lead, total))
    out = out.scatter(-1, flat_at, flat_in)
    return out.reshape(*lead, *out_sizes)


def upsample(
    input: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners=None
) -> Tensor:
    """interpolate (PyTorch's older name)."""
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input: Tensor, size=None, scale_factor=None) -> Tensor:
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input: Tensor, size=None, scale_factor=None) -> Tensor:
    """Bilinear resizing with aligned corners (what PyTorch's upsample_bilinear does)."""
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


# --- distances ---


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out=None) -> Tensor:
    """`input` divided by its p-norm along `dim` (at least `eps`)."""
    norm = input.norm(p, dim, keepdim=True).clamp(min=eps)
    result = input / norm
    return out.copy_(result) if out is not None else result


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """x1 . x2 / max(|x1| |x2|, eps) along `dim` (the inputs broadcast)."""
    n1 = G.sqrt((x1 * x1).sum(dim))
    n2 = G.sqrt((x2 * x2).sum(dim))
    return (x1 * x2).sum(dim) / (n1 * n2).clamp(min=eps)


def pairwise_distance(
    x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False
) -> Tensor:
    """The p-norm of x1 - x2 + eps along the last dim."""
    return (x1 - x2 + eps).norm(p, -1, keepdim=keepdim)


# --- attention ---


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """softmax(query @ key^T * scale + mask) @ value over the last two dims: query (..., L, E),
    key (..., S, E), value (..., S, Ev) give (..., L, Ev).

    `scale` defaults to 1/sqrt(E). `attn_mask` broadcasts to (..., L, S): a bool mask keeps the
    positions that are True, a float mask is added to the scores. `is_causal` lets position i
    attend to positions up to i only (the upper triangle masked; not with `attn_mask`).
    `dropout_p` drops attention weights (always: pass 0.0 when not training). `enable_gqa` lets
    key and value have fewer heads (dim -3) than query, each serving a group of query heads.
    A row whose every position is masked gives zeros (PyTorch's math kernel does the same).
    """
    _check_attention(query, key, value, enable_gqa)
    if is_causal and attn_mask is not None:
        raise ValueError(
            "scaled_dot_product_attention: an explicit attn_mask should not be set when is_causal=True"
        )
    if enable_gqa and query.dim() >= 3 and key.size(-3) != query.size(-3):
        groups = query.size(-3) // key.size(-3)
        key, value = (t.repeat_interleave(groups, dim=-3) for t in (key, value))
    if scale is None:
        scale = 1.0 / math.sqrt(query.size(-1))
    scores = G.matmul(query * scale, key.transpose(-2, -1))
    masked = attn_mask is not None
    if is_causal:
        length, source = query.size(-2), key.size(-2)
        future = G.triu(G.full((length, source), float("-inf"), dtype=scores.dtype, device=scores.device), 1)
        scores = scores + future
    elif masked:
        scores = _apply_mask(scores, attn_mask, "attn_mask", keep=True)
    weights = _masked_softmax(scores) if masked else softmax(scores, -1)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, training=True)
    return G.matmul(weights, value)


def _check_attention(query: Tensor, key: Tensor, value: Tensor, enable_gqa: bool) -> None:
    for name, t in (("query", query), ("key", key), ("value", value)):
        if t.dim() < 2:
            raise ShapeError(
                f"scaled_dot_product_attention: {name} must have at least 2 dims, got {list(t.shape)}"
            )
    if query.size(-1) != key.size(-1) or key.size(-2) != value.size(-2):
        raise ShapeError(
            "scaled_dot_product_attention: expected query (..., L, E), key (..., S, E) and value "
            f"(..., S, Ev), got {list(query.shape)}, {list(key.shape)} and {list(value.shape)}"
        )
    if enable_gqa and query.dim() >= 3 and query.size(-3) % key.size(-3):
        raise ShapeError(
            f"scaled_dot_product_attention: with enable_gqa the query's {query.size(-3)} heads must be "
            f"a multiple of the key's {key.size(-3)}"
        )


def _apply_mask(scores: Tensor, mask: Tensor, name: str, keep: bool) -> Tensor:
    """`scores` with a mask applied: a bool mask marks positions to keep (`keep`) or to leave out;
    a float mask is added."""
    try:
        fits = G.broadcast_shapes(mask.shape, scores.shape) == scores.shape
    except ShapeError:
        fits = False
    if not fits:
        raise ShapeError(
            f"{name} of shape {list(mask.shape)} does not broadcast to the scores' {list(scores.shape)}"
        )
    if mask.dtype == G.bool:
        out = scores.masked_fill(~mask if keep else mask, float("-inf"))
    elif mask.dtype.is_floating_point:
        out = scores + mask.to(scores.dtype)
    else:
        raise TypeError(f"{name} must be a bool or floating-point tensor, got {mask.dtype}")
    return out


def _masked_softmax(scores: Tensor) -> Tensor:
    """softmax over the last dim where a row that is all -inf gives zeros, not NaN."""
    top = scores.amax(-1, keepdim=True).detach()
    e = G.exp(scores - G.where(top == float("-inf"), 0.0, top))
    total = e.sum(-1, keepdim=True)
    return e / G.where(total == 0.0, 1.0, total)


# --- losses ---


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{reduction!r} is not a valid value for reduction (expected 'mean', 'sum' or 'none')")


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean squared error (inputs broadcast as in PyTorch)."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(
            f"{reduction!r} is not a valid value for reduction (expected 'mean', 'sum' or 'none')"
        )
    return dispatch(OPS["mse_loss"], (input, target), {"reduction": reduction}, name="MseLossBackward0")


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean absolute error."""
    return _reduce(G.abs(input - target), reduction)


def smooth_l1_loss(input: Tensor, target: Tensor, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """Quadratic below `beta`, linear above (Huber loss divided by beta)."""
    diff = G.abs(input - target)
    if beta == 0:
        return _reduce(diff, reduction)
    return _reduce(G.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta), reduction)


def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of class indices `target` under log-probabilities `input`
    ((N, C) or (N, C, d1, ...); `target` (N) or (N, d1, ...))."""
    if input.dim() < 1 or target.dtype.is_floating_point:
        raise TypeError(f"nll_loss expects integer class targets, got {target.dtype}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(
            f"{reduction!r} is not a valid value for reduction (expected 'mean', 'sum' or 'none')"
        )
    if input.dim() == 1:
        input, target = input.unsqueeze(0), target.unsqueeze(0)
        if reduction == "none":
            return nll_loss(input, target, weight, ignore_index, reduction).squeeze(0)
    return dispatch(
        OPS["nll_loss"],
        (input, target, weight),
        {"ignore_index": ignore_index, "reduction": reduction},
        name="NllLossBackward0",
    )


def ctc_loss(
    log_probs: Tensor,
    targets: Tensor,
    input_lengths,
    target_lengths,
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
) -> Tensor:
    """Connectionist temporal classification loss: the negative log-likelihood of each target
    sequence summed over all its alignments with the input (Graves et al. 2006). log_probs
    (T, N, C) (or (T, C) unbatched), targets (N, S) padded or the targets concatenated, the
    lengths as tensors or sequences of ints. 'mean' divides each sample's loss by its target
    length, then averages; zero_infinity replaces the infinite loss of an impossible alignment
    (and its gradient) by 0. The gradient is the true one for log_probs (PyTorch's adds
    exp(log_probs), which log_softmax's backward removes: the same gradient for the logits)."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(
            f"{reduction!r} is not a valid value for reduction (expected 'mean', 'sum' or 'none')"
        )
    unbatched = log_probs.dim() == 2
    if unbatched:
        log_probs = log_probs.unsqueeze(1)
        targets = targets.unsqueeze(0) if targets.dim() == 1 else targets
    if log_probs.dim() != 3:
        raise ShapeError(f"ctc_loss: expected log_probs (T, N, C) or (T, C), got {list(log_probs.shape)}")
    device = log_probs.device
    input_lengths = G.as_tensor(input_lengths, dtype=G.int64, device=device).reshape(-1)
    target_lengths = G.as_tensor(target_lengths, dtype=G.int64, device=device).reshape(-1)
    if targets.dtype.is_floating_point:
        raise TypeError(f"ctc_loss: targets must be integers, got {targets.dtype}")
    targets = targets.to(G.int64)
    if targets.dim() == 1:  # concatenated: split into padded rows
        lengths = target_lengths.tolist()
        if sum(lengths) != targets.shape[0]:
            raise ShapeError(
                f"ctc_loss: concatenated targets of length {targets.shape[0]} do not add up to the "
                f"target lengths {lengths}"
            )
        width = max(lengths, default=0)
        rows, start = [], 0
        for n in lengths:
            rows.append(pad(targets[start : start + n], (0, width - n), value=blank))
            start += n
        targets = G.stack(rows) if rows else targets.reshape(0, 0)
    nll = dispatch(
        OPS["ctc_loss"],
        (log_probs, targets, input_lengths, target_lengths),
        {"blank": blank},
        name="CtcLossBackward0",
    )
    if zero_infinity:
        nll = G.where(G.isinf(nll), G.zeros_like(nll), nll)
    if reduction == "none":
        return nll.squeeze(0) if unbatched else nll
    if reduction == "sum":
        return nll.sum()
    return (nll / target_lengths.clamp(min=1).to(nll.dtype)).mean()


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross entropy of logits `input` with class indices or class probabilities `target`."""
    logp = log_softmax(input, 1 if input.dim() > 1 else 0)
    classes = input.shape[1] if input.dim() > 1 else input.shape[0]
    if target.dtype.is_floating_point:  # probabilities
        if target.shape != input.shape:
            raise ShapeError(
                f"cross_entropy: probability targets must have the input's shape "
                f"{list(input.shape)}, got {list(target.shape)}"
            )
        if label_smoothing:
            target = target * (1 - label_smoothing) + label_smoothing / classes
        wlogp = logp if weight is None else logp * _class_view(weight, input)
        loss = -(wlogp * target).sum(1 if input.dim() > 1 else 0)
        return _reduce(loss, reduction)
    loss = nll_loss(logp, target, weight, ignore_index, reduction)
    if not label_smoothing:
        return loss
    # smoothing: mix the nll with the mean over classes of -log p (weighted as PyTorch does)
    valid = (target != ignore_index).to(input.dtype)
    wlogp = logp if weight is None else logp * _class_view(weight, input)
    smooth = -(wlogp.sum(1 if input.dim() > 1 else 0)) * valid
    if reduction == "mean":
        if weight is None:
            smooth = smooth.sum() / valid.sum()
        else:
            smooth = smooth.sum() / (weight[G.where(target != ignore_index, target, 0)] * valid).sum()
    else:
        smooth = _reduce(smooth, reduction)
    return loss * (1 - label_smoothing) + smooth * (label_smoothing / classes)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta), d = input - target."""
    d = G.abs(input - target)
    return _reduce(G.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta)), reduction)


def soft_margin_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """log(1 + exp(-y x)) for labels y of +-1."""
    return _reduce(softplus(-target * input), reduction)


def multilabel_soft_margin_loss(
    input: Tensor, target: Tensor, weight=None, reduction: str = "mean"
) -> Tensor:
    """Binary cross-entropy of sigmoid(x) against 0/1 targets, averaged over the classes."""
    loss = -(target * logsigmoid(input) + (1 - target) * logsigmoid(-input))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss.mean(-1), reduction)


def cosine_embedding_loss(
    input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0, reduction: str = "mean"
) -> Tensor:
    """1 - cos(x1, x2) for y = 1, max(0, cos(x1, x2) - margin) for y = -1."""
    eps = 1e-12  # PyTorch's: added to each squared norm
    dot = (input1 * input2).sum(-1)
    cos = dot / G.sqrt(((input1 * input1).sum(-1) + eps) * ((input2 * input2).sum(-1) + eps))
    loss = G.where(target == 1, 1 - cos, G.where(target == -1, (cos - margin).clamp(min=0.0), 0.0))
    return _reduce(loss, reduction)


def margin_ranking_loss(
    input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0, reduction: str = "mean"
) -> Tensor:
    """max(0, -y (x1 - x2) + margin)."""
    return _reduce((-target * (input1 - input2) + margin).clamp(min=0.0), reduction)


def hinge_embedding_loss(
    input: Tensor, target: Tensor, margin: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """x for y = 1, max(0, margin - x) for y = -1."""
    loss = G.where(target == 1, input, 0.0) + G.where(target == -1, (margin - input).clamp(min=0.0), 0.0)
    return _reduce(loss, reduction)


def triplet_margin_loss(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    swap: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """max(d(a, p) - d(a, n) + margin, 0) with pairwise distances (`swap`: the closer of
    d(a, n) and d(p, n))."""
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = G.minimum(d_neg, pairwise_distance(positive, negative, p, eps))
    return _reduce((d_pos - d_neg + margin).clamp(min=0.0), reduction)


def poisson_nll_loss(
    input: Tensor,
    target: Tensor,
    log_input: bool = True,
    full: bool = False,
    eps: float = 1e-8,
    reduction: str = "mean",
) -> Tensor:
    """The negative log-likelihood of `target` under Poisson(rate): rate = exp(input) where
    `log_input`, else input. `full` adds Stirling's term for targets above 1."""
    if log_input:
        loss = G.exp(input) - target * input
    else:
        loss = input - target * G.log(input + eps)
    if full:
        safe = G.where(target > 1, target, 1.0)
        stirling = safe * G.log(safe) - safe + 0.5 * G.log(2 * math.pi * safe)
        loss = loss + G.where(target > 1, stirling, 0.0)
    return _reduce(loss, reduction)


def gaussian_nll_loss(
    input: Tensor, target: Tensor, var, full: bool = False, eps: float = 1e-6, reduction: str = "mean"
) -> Tensor:
    """0.5 (log(max(var, eps)) + (input - target)^2 / max(var, eps)) (+ 0.5 log(2 pi) with `full`)."""
    if not isinstance(var, Tensor):
        var = G.full_like(input, float(var))
    if var.dim() == input.dim() - 1 or (
        var.dim() == input.dim() and var.shape[-1] == 1 and input.shape[-1] != 1
    ):
        var = var if var.dim() == input.dim() else var.unsqueeze(-1)
    if (var < 0).any():
        raise ValueError("gaussian_nll_loss: var has negative entry/entries")
    v = var.clamp(min=eps)
    loss = 0.5 * (G.log(v) + (input - target) ** 2 / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


def multi_margin_loss(
    input: Tensor, target: Tensor, p: int = 1, margin: float = 1.0, weight=None, reduction: str = "mean"
) -> Tensor:
    """sum over classes i != y of max(0, margin - x[y] + x[i])^p / C, per sample."""
    if p not in (1, 2):
        raise ValueError(f"multi_margin_loss: only p == 1 and p == 2 are supported, got {p}")
    x = input if input.dim() == 2 else input.reshape(1, -1)
    y = target.reshape(-1, 1)
    picked = x.gather(1, y)
    terms = (margin - picked + x).clamp(min=0.0)
    if p == 2:
        terms = terms * terms
    if weight is not None:
        terms = terms * weight[y]
    others = G.arange(x.shape[1], device=x.device).reshape(1, -1) != y
    loss = G.where(others, terms, 0.0).sum(1) / x.shape[1]
    return _reduce(loss if input.dim() == 2 else loss.reshape(()), reduction)


def _class_view(weight: Tensor, input: Tensor) -> Tensor:
    shape = [1] * input.dim()
    shape[1 if input.dim() > 1 else 0] = -1
    return weight.reshape(shape)


def binary_cross_entropy(
    input: Tensor, target: Tensor, weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """-(t log p + (1 - t) log(1 - p)), with logs clamped at -100 as PyTorch does."""
    log_p = G.clamp(G.log(input), min=-100.0)
    log_q = G.clamp(G.log(1 - input), min=-100.0)
    loss = -(target * log_p + (1 - target) * log_q)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(
    input: Tensor, target: Tensor, weight=None, reduction: str = "mean", pos_weight=None
) -> Tensor:
    """Binary cross entropy of sigmoid(input), computed stably from the logits."""
    log_sig = -softplus(-input)  # log sigmoid(x)
    log_one_minus = -softplus(input)  # log(1 - sigmoid(x))
    pos = target * log_sig if pos_weight is None else pos_weight * target * log_sig
    loss = -(pos + (1 - target) * log_one_minus)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def kl_div(input: Tensor, target: Tensor, reduction: str = "mean", log_target: bool = False) -> Tensor:
    """KL divergence with `input` as log-probabilities ('batchmean' divides by the batch)."""
    if log_target:
        loss = G.exp(target) * (target - input)
    else:
        loss = G.where(target > 0, target * (G.log(target) - input), 0.0)
    if reduction == "batchmean":
        return loss.sum() / input.shape[0]
    return _reduce(loss, reduction)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot encoding with a new last dim of `num_classes`."""
    if tensor.dtype.is_floating_point:
        raise TypeError("one_hot is only applicable to index tensors")
    if num_classes < 0:
        num_classes = int(tensor.max().item()) + 1 if tensor.numel() else 0
    return (tensor.unsqueeze(-1) == G.arange(num_classes, device=tensor.device)).long()


def pad(input: Tensor, pad: tuple, mode: str = "constant", value: float = 0.0) -> Tensor:
    """Pad the last len(pad)/2 dims: `pad` = (left, right, top, bottom, ...) as in PyTorch.
    'constant' (negative values crop), 'reflect', 'replicate' or 'circular'."""
    if len(pad) % 2 or len(pad) // 2 > input.dim():
        raise ValueError(f"pad: padding length must be even and at most 2 * dims, got {pad}")
    if mode == "constant":
        pads = [(0, 0)] * input.dim()
        for i in range(len(pad) // 2):
            pads[input.dim() - 1 - i] = (pad[2 * i], pad[2 * i + 1])
        return dispatch(
            OPS["pad"], (input,), {"pads": tuple(pads), "value": value}, name="ConstantPadNdBackward0"
        )
    out = input
    for i in range(len(pad) // 2):
        dim = input.dim() - 1 - i
        out = out.index_select(
            dim, G.tensor(_pad_indices(mode, out.shape[dim], pad[2 * i], pad[2 * i + 1]), device=input.device)
        )
    return out


def _pad_indices(mode: str, n: int, left: int, right: int) -> list[int]:
    """Source positions of a padded dim of size n (+left, +right) for the non-constant modes."""
    if min(left, right) < 0:
        raise ValueError(f"pad: mode {mode!r} needs non-negative padding, got ({left}, {right})")
    core = list(range(n))
    if mode == "reflect":
        if left >= n or right >= n:
            raise ValueError(f"pad: reflect padding ({left}, {right}) must be smaller than the dim size {n}")
        return list(range(left, 0, -1)) + core + list(range(n - 2, n - 2 - right, -1))
    if mode == "replicate":
        return [0] * left + core + [n - 1] * right
    if mode == "circular":
        if left > n or right > n:
            raise ValueError(f"pad: circular padding ({left}, {right}) is larger than the dim size {n}")
        return core[n - left :] + core + core[:right]
    raise ValueError(f"pad: unknown mode {mode!r}; expected 'constant', 'reflect', 'replicate' or 'circular'")


# --- normalization ---


def instance_norm(
    input: Tensor,
    running_mean=None,
    running_var=None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Normalize each channel of each sample over its spatial dims (running statistics, where
    given, are updated from the batch, or used instead of it without `use_input_stats`)."""
    dims = tuple(range(2, input.dim()))
    shape = [1, -1] + [1] * (input.dim() - 2)
    if use_input_stats:
        mean = input.mean(dims, keepdim=True)
        var = input.var(dims, correction=0, keepdim=True)
        if running_mean is not None or running_var is not None:
            with G.no_grad():
                n = math.prod(input.shape[2:])
                if running_mean is not None:
                    running_mean.mul_(1 - momentum).add_(mean.mean(0).reshape(-1) * momentum)
                if running_var is not None:
                    unbiased = var * (n / max(n - 1, 1))
                    running_var.mul_(1 - momentum).add_(unbiased.mean(0).reshape(-1) * momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("instance_norm: use_input_stats=False needs running_mean and running_var")
        mean, var = running_mean.reshape(shape), running_var.reshape(shape)
    out = (input - mean) * G.rsqrt(var + eps)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Normalize each channel (dim 1) by batch statistics (training) or running ones; in
    training the running statistics move towards the batch's (unbiased variance, as PyTorch)."""
    dims = (0,) + tuple(range(2, input.dim()))
    shape = [1, -1] + [1] * (input.dim() - 2)
    if training:
        count = input.numel() // input.shape[1]
        if count <= 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size {list(input.shape)}"
            )
        mean = input.mean(dims)
        var = input.var(dims, correction=0)
        if running_mean is not None:
            with G.no_grad():
                m = 0.1 if momentum is None else momentum
                running_mean.mul_(1 - m).add_(mean.detach() * m)
                running_var.mul_(1 - m).add_(var.detach() * (m * count / (count - 1)))
    else:
        if running_mean is None:
            raise ValueError("batch_norm in eval mode needs running statistics")
        mean, var = running_mean, running_var
    out = (input - mean.reshape(shape)) * G.rsqrt(var.reshape(shape) + eps)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def layer_norm(
    input: Tensor,
    normalized_shape,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalize over the last len(normalized_shape) dims."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[-len(shape) :]) != shape:
        raise ShapeError(
            f"layer_norm: input shape {list(input.shape)} does not end with normalized_shape {list(shape)}"
        )
    dims = tuple(range(input.dim() - len(shape), input.dim()))
    attrs = {"dims": dims, "eps": float(eps)}
    return dispatch(OPS["layer_norm"], (input, weight, bias), attrs, name="NativeLayerNormBackward0")


def rms_norm(
    input: Tensor, normalized_shape, weight: Tensor | None = None, eps: float | None = None
) -> Tensor:
    """x / sqrt(mean(x^2) + eps) over the last len(normalized_shape) dims, times `weight`;
    `eps` None is the machine epsilon of x's dtype."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[-len(shape) :]) != shape:
        raise ShapeError(
            f"rms_norm: input shape {list(input.shape)} does not end with normalized_shape {list(shape)}"
        )
    if not input.is_floating_point():
        input = input.float()
    if eps is None:
        eps = G.finfo(input.dtype).eps
    dims = tuple(range(input.dim() - len(shape), input.dim()))
    out = input * G.rsqrt((input * input).mean(dims, keepdim=True) + eps)
    return out if weight is None else out * weight


def group_norm(
    input: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalize each group of channels of each sample."""
    n, c = input.shape[:2]
    if c % num_groups:
        raise ValueError(f"num_channels ({c}) must be divisible by num_groups ({num_groups})")
    grouped = input.reshape(n, num_groups, -1)
    mean = grouped.mean(-1, keepdim=True)
    var = grouped.var(-1, correction=0, keepdim=True)
    out = ((grouped - mean) * G.rsqrt(var + eps)).reshape(input.shape)
    shape = [1, -1] + [1] * (input.dim() - 2)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def embedding(
    input: Tensor,
    weight: Tensor,
    padding_idx: int | None = None,
    max_norm=None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> Tensor:
    """Rows of `weight` at the integer indices `input`; `padding_idx` rows get no gradient.
    With `max_norm`, the rows looked up whose `norm_type`-norm exceeds it are first scaled
    down to it in place (max_norm / (norm + 1e-7), as PyTorch does); `scale_grad_by_freq`
    divides each row's gradient by how often the row occurs in `input`."""
    if sparse:
        raise ValueError("embedding: sparse gradients are not supported (the gradient is a dense tensor)")
    if input.dtype.is_floating_point:
        raise TypeError(f"embedding expects integer indices, got {input.dtype}")
    if max_norm is not None:
        with G.no_grad():
            rows = G.unique(input.reshape(-1))
            picked = weight[rows]
            norms = picked.norm(p=norm_type, dim=1, keepdim=True)
            weight[rows] = G.where(norms > max_norm, picked * (max_norm / (norms + 1e-7)), picked)
    out = weight[input]
    if padding_idx is not None:
        out = G.where((input == padding_idx).unsqueeze(-1), out.detach(), out)
    if scale_grad_by_freq and out.requires_grad:
        flat = input.reshape(-1)
        counts = G.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
        counts = counts.index_add(0, flat, G.ones(flat.shape[0], dtype=weight.dtype, device=weight.device))
        share = (1 / counts[input]).unsqueeze(-1)
        out.register_hook(lambda g: g * share)
    return out


def embedding_bag(
    input: Tensor,
    weight: Tensor,
    offsets: Tensor | None = None,
    max_norm=None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    mode: str = "mean",
    sparse: bool = False,
    per_sample_weights: Tensor | None = None,
    include_last_offset: bool = False,
    padding_idx: int | None = None,
) -> Tensor:
    """The sums, means or maxima of bags of embeddings: the rows of a 2-D `input`, or the runs
    of a 1-D `input` starting at `offsets`. Entries equal to `padding_idx` are left out (an
    empty bag gives zeros); `per_sample_weights` scale the entries ('sum' only). Computed as a
    lookup and a sum over each row, or an index_add into the bags (masked maxima for 'max')."""
    if mode not in ("sum", "mean", "max"):
        raise ValueError(f"embedding_bag: mode must be 'sum', 'mean' or 'max', got {mode!r}")
    if per_sample_weights is not None and mode != "sum":
        raise ValueError(
            f"embedding_bag: per_sample_weights is only supported for mode='sum' (got mode={mode!r})"
        )
    if input.dim() not in (1, 2):
        raise ValueError(f"embedding_bag: input must be 1-D or 2-D, got {input.dim()}-D")
    if input.dim() == 2 and offsets is not None:
        raise ValueError("embedding_bag: with a 2-D input (one bag a row) offsets must be None")
    if input.dim() == 1 and (offsets is None or offsets.dim() != 1):
        raise ValueError("embedding_bag: a 1-D input needs 1-D offsets (where each bag starts)")
    if per_sample_weights is not None and tuple(per_sample_weights.shape) != tuple(input.shape):
        raise ShapeError(
            f"embedding_bag: per_sample_weights of shape {list(per_sample_weights.shape)} must have "
            f"the input's shape {list(input.shape)}"
        )
    rows = embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)
    keep = None if padding_idx is None else input != padding_idx
    scale = None if keep is None else keep.to(weight.dtype)
    if per_sample_weights is not None:
        given = per_sample_weights.to(weight.dtype)
        scale = given if scale is None else scale * given
    if input.dim() == 2:  # a bag a row
        if mode == "max":
            if keep is None:
                return rows.amax(1)
            masked = G.where(keep.unsqueeze(-1), rows, float("-inf"))
            return G.where(keep.any(1, keepdim=True), masked.amax(1), 0.0)
        total = (rows if scale is None else rows * scale.unsqueeze(-1)).sum(1)
        if mode == "sum":
            return total
        count = input.shape[1] if keep is None else keep.sum(1, keepdim=True).clamp(min=1).to(weight.dtype)
        return total / count
    # a 1-D input: entry i belongs to the last bag starting at or before it (the last bag runs to
    # the input's end, with include_last_offset too: PyTorch's CPU result)
    starts = offsets[:-1] if include_last_offset else offsets
    bags = starts.shape[0]
    position = G.arange(input.shape[0], device=input.device).unsqueeze(1)
    bag = ((position >= starts.unsqueeze(0)).sum(1) - 1).clamp(min=0)
    if mode == "max":
        member = bag.unsqueeze(0) == G.arange(bags, device=input.device).unsqueeze(1)  # (bags, entries)
        if keep is not None:
            member = member & keep.unsqueeze(0)
        masked = G.where(member.unsqueeze(-1), rows.unsqueeze(0), float("-inf"))
        return G.where(member.any(1, keepdim=True), masked.amax(1), 0.0)
    if scale is not None:
        rows = rows * scale.unsqueeze(1)
    total = G.zeros(bags, weight.shape[1], dtype=weight.dtype, device=weight.device).index_add(0, bag, rows)
    if mode == "sum":
        return total
    ones = G.ones(input.shape[0], dtype=weight.dtype, device=weight.device) if scale is None else scale
    count = G.zeros(bags, dtype=weight.dtype, device=weight.device).index_add(0, bag, ones)
    return total / count.clamp(min=1).unsqueeze(1)


def affine_grid(theta: Tensor, size, align_corners: bool = False) -> Tensor:
    """The sampling grid (N, H, W, 2) of affine maps `theta` (N, 2, 3) for an output of `size`
    (N, C, H, W): each output pixel's normalized (x, y) in [-1, 1] mapped through theta (the
    spatial transformer's grid; grid_sample reads it)."""
    if theta.dim() != 3 or tuple(theta.shape[1:]) != (2, 3):
        raise ShapeError(f"affine_grid: expected theta of shape (N, 2, 3), got {list(theta.shape)}")
    n, _, h, w = size
    if theta.shape[0] != n:
        raise ShapeError(f"affine_grid: theta has {theta.shape[0]} matrices for a batch of {n}")

    def positions(count: int):
        if align_corners:
            return np.linspace(-1.0, 1.0, count) if count > 1 else np.zeros(1)
        return (np.arange(count) * 2 + 1) / count - 1

    xs, ys = np.meshgrid(positions(w), positions(h))
    base = np.stack([xs, ys, np.ones_like(xs)], axis=-1).reshape(1, h * w, 3)
    base = G.tensor(base, dtype=theta.dtype, device=theta.device)
    return G.matmul(base, theta.mT).reshape(n, h, w, 2)


def _reflect(coordinate: Tensor, low2: float, high2: float) -> Tensor:
    """`coordinate` reflected into [low2 / 2, high2 / 2] (PyTorch's reflect_coordinates)."""
    if low2 == high2:
        return coordinate * 0
    low, span = low2 / 2, (high2 - low2) / 2
    distance = (coordinate - low).abs()
    extra = distance.fmod(span)
    flips = (distance / span).floor()
    return G.where(flips.fmod(2) == 0, extra + low, span - extra + low)


def grid_sample(
    input: Tensor, grid: Tensor, mode: str = "bilinear", padding_mode: str = "zeros", align_corners=None
):
    """`input` (N, C, H, W) sampled at `grid` (N, Ho, Wo, 2) of normalized (x, y) positions in
    [-1, 1]: 'bilinear' (the four neighbours, weighted) or 'nearest'; positions outside read
    zeros, the border ('border') or the mirrored image ('reflection'). Differentiable in input
    and grid, as PyTorch's."""
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"grid_sample: mode must be 'bilinear' or 'nearest', got {mode!r}")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(
            f"grid_sample: padding_mode must be 'zeros', 'border' or 'reflection', got {padding_mode!r}"
        )
    if input.dim() != 4 or grid.dim() != 4 or grid.shape[-1] != 2 or grid.shape[0] != input.shape[0]:
        raise ShapeError(
            f"grid_sample: expected input (N, C, H, W) and grid (N, Ho, Wo, 2), got {list(input.shape)} "
            f"and {list(grid.shape)}"
        )
    align = bool(align_corners)
    n, c, h, w = input.shape
    ho, wo = grid.shape[1:3]

    def unnormalize(coordinate: Tensor, size: int) -> Tensor:
        pixel = (coordinate + 1) / 2 * (size - 1) if align else ((coordinate + 1) * size - 1) / 2
        if padding_mode == "reflection":
            pixel = _reflect(pixel, 0.0, 2.0 * (size - 1)) if align else _reflect(pixel, -1.0, 2.0 * size - 1)
        if padding_mode in ("border", "reflection"):
            pixel = pixel.clamp(0, size - 1)
        return pixel

    x, y = unnormalize(grid[..., 0], w), unnormalize(grid[..., 1], h)  # (N, Ho, Wo)
    flat = input.reshape(n, c, h * w)

    def tap(ix: Tensor, iy: Tensor) -> Tensor:
        """input at integer positions (N, Ho, Wo), zero outside: (N, C, Ho, Wo)."""
        inside = (ix >= 0) & (ix <= w - 1) & (iy >= 0) & (iy <= h - 1)
        at = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)).long().reshape(n, 1, ho * wo).expand(n, c, ho * wo)
        values = flat.gather(2, at).reshape(n, c, ho, wo)
        return values * inside.unsqueeze(1).to(input.dtype)

    if mode == "nearest":
        return tap(x.round(), y.round())  # (round half to even, as PyTorch's nearbyint)
    x0, y0 = x.floor().detach(), y.floor().detach()
    wx, wy = (x - x0).unsqueeze(1), (y - y0).unsqueeze(1)
    return (
        tap(x0, y0) * (1 - wx) * (1 - wy)
        + tap(x0 + 1, y0) * wx * (1 - wy)
        + tap(x0, y0 + 1) * (1 - wx) * wy
        + tap(x0 + 1, y0 + 1) * wx * wy
    )


def interpolate(
    input: Tensor,
    size=None,
    scale_factor=None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor=None,
    antialias: bool = False,
) -> Tensor:
    """Resize the spatial dims of (N, C, H, W) (or (N, C, L)) input: 'nearest' or 'bilinear'
    ('linear' for 1-D), with PyTorch's coordinate conventions."""
    if input.dim() == 3:
        size1 = None if size is None else (1, size if isinstance(size, int) else size[0])
        scale1 = (
            None
            if scale_factor is None
            else (1.0, scale_factor if not isinstance(scale_factor, (tuple, list)) else scale_factor[0])
        )
        mode2 = "bilinear" if mode == "linear" else mode
        return interpolate(input.unsqueeze(2), size1, scale1, mode2, align_corners).squeeze(2)
    if input.dim() != 4:
        raise ShapeError(f"interpolate supports 3-D and 4-D inputs, got {list(input.shape)}")
    h, w = input.shape[-2:]
    if size is not None:
        out_h, out_w = _pair(size, "size")
        scales = (h / out_h, w / out_w)
    elif scale_factor is not None:
        sf = (
            _pair(scale_factor, "scale_factor")
            if not isinstance(scale_factor, float)
            else (scale_factor, scale_factor)
        )
        out_h, out_w = int(math.floor(h * sf[0])), int(math.floor(w * sf[1]))
        scales = (1 / sf[0], 1 / sf[1]) if not recompute_scale_factor else (h / out_h, w / out_w)
    else:
        raise ValueError("interpolate needs either size or scale_factor")
    if mode == "nearest":
        rows, cols = _nearest(h, out_h, scales[0]), _nearest(w, out_w, scales[1])
        return input.index_select(2, rows).index_select(3, cols)
    if mode != "bilinear":
        raise ValueError(f"interpolate: mode {mode!r} is not supported; use 'nearest' or 'bilinear'")

    def axis(n_in, n_out, scale):
        if _whole_multiple(n_in, n_out, n_in / n_out if align_corners else scale):
            i = _positions(n_in, n_out).to(G.float64)
            last = G.arange(n_in)[-1]  # (the last row, n_in - 1: of any size under capture)
            if align_corners:
                src = i * last / i[-1].clamp(min=1)
            else:
                src = ((i + 0.5) * scale - 0.5).clamp(min=0.0)
            lo = src.floor().long()  # (never past the last row: n_out is a whole multiple of n_in)
            return lo, G.minimum(lo + 1, last), (src - lo).to(input.dtype)
        if align_corners:
            src = [i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0 for i in range(n_out)]
        else:
            src = [max((i + 0.5) * scale - 0.5, 0.0) for i in range(n_out)]
        lo = [min(int(math.floor(s)), n_in - 1) for s in src]
        hi = [min(i + 1, n_in - 1) for i in lo]
        frac = [s - i for s, i in zip(src, lo, strict=True)]
        return G.tensor(lo), G.tensor(hi), G.tensor(frac, dtype=input.dtype)

    r0, r1, fr = axis(h, out_h, scales[0])
    c0, c1, fc = axis(w, out_w, scales[1])
    top = input.index_select(2, r0)
    bottom = input.index_select(2, r1)
    rows = top + (bottom - top) * fr.reshape(1, 1, -1, 1)
    left, right = rows.index_select(3, c0), rows.index_select(3, c1)
    return left + (right - left) * fc.reshape(1, 1, 1, -1)
