"""nn.functional against numpy references (naive loops for convolution and pooling) and
finite differences."""

import math

import numpy as np
import pytest

import graphc
import graphc.nn.functional as F
from graphc.autograd import gradcheck, gradgradcheck

RNG = np.random.default_rng(3)


def leaf(*shape):
    return graphc.tensor(RNG.normal(size=shape), requires_grad=True)


def conv_reference(x, w, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, oh, ow))
    og = o // groups
    for b in range(n):
        for oc in range(o):
            g = oc // og
            for i in range(oh):
                for j in range(ow):
                    patch = xp[
                        b,
                        g * cg : (g + 1) * cg,
                        i * sh : i * sh + dh * (kh - 1) + 1 : dh,
                        j * sw : j * sw + dw * (kw - 1) + 1 : dw,
                    ]
                    out[b, oc, i, j] = (patch * w[oc]).sum()
    return out


CONV_CASES = [
    ((1, 1), (0, 0), (1, 1), 1),
    ((2, 1), (1, 2), (1, 1), 1),
    ((1, 2), (2, 1), (2, 1), 2),
    ((2, 2), (1, 1), (1, 2), 4),
]


@pytest.mark.parametrize("stride, padding, dilation, groups", CONV_CASES)
def test_conv2d_matches_naive_loops_and_gradchecks(stride, padding, dilation, groups):
    x, w, b = leaf(2, 4, 7, 8), leaf(4, 4 // groups, 3, 2), leaf(4)
    out = F.conv2d(x, w, b, stride, padding, dilation, groups)
    ref = conv_reference(
        x.detach().numpy(), w.detach().numpy(), stride, padding, dilation, groups
    ) + b.detach().numpy().reshape(1, -1, 1, 1)
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-10, atol=1e-12)
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups), (x, w, b))


def test_conv2d_second_derivatives_and_same_padding():
    x, w = leaf(1, 2, 5, 5), leaf(2, 2, 3, 3)
    assert gradgradcheck(lambda x, w: F.conv2d(x, w, stride=2, padding=1), (x, w))
    assert F.conv2d(x, leaf(3, 2, 4, 4), padding="same").shape == (1, 3, 5, 5)
    assert F.conv2d(x[0], w).shape == (2, 3, 3)  # unbatched input
    with pytest.raises(graphc.ShapeError, match="weight of shape"):
        F.conv2d(x, leaf(2, 3, 3, 3))


@pytest.mark.parametrize(
    "stride, padding, out_pad, dilation, groups", [(1, 0, 0, 1, 1), (2, 1, 1, 1, 2), (3, 2, 1, 2, 1)]
)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(stride, padding, out_pad, dilation, groups):
    x, w = leaf(2, 4, 5, 4), leaf(4, 6 // groups, 3, 3)
    y = F.conv_transpose2d(x, w, None, stride, padding, out_pad, groups, dilation)
    # <convT(x), z> == <x, conv(z)> for the matching convolution
    z = RNG.normal(size=y.shape)
    conv = F.conv2d(graphc.tensor(z), w.detach(), None, stride, padding, dilation, groups)
    assert np.isclose((y.detach().numpy() * z).sum(), (x.detach().numpy() * conv.numpy()).sum())
    assert gradcheck(
        lambda x, w: F.conv_transpose2d(x, w, None, stride, padding, out_pad, groups, dilation), (x, w)
    )


@pytest.mark.parametrize("stride, padding, out_pad, dilation, groups", [(1, 0, 0, 1, 1), (3, 2, 2, 2, 2)])
def test_conv_transpose1d_is_the_adjoint_of_conv1d(stride, padding, out_pad, dilation, groups):
    x, w, b = leaf(2, 4, 7), leaf(4, 6 // groups, 3), leaf(6)
    y = F.conv_transpose1d(x, w, None, stride, padding, out_pad, groups, dilation)
    assert y.shape[-1] == (7 - 1) * stride - 2 * padding + dilation * 2 + out_pad + 1
    z = RNG.normal(size=y.shape)
    conv = F.conv1d(graphc.tensor(z), w.detach(), None, stride, padding, dilation, groups)
    assert np.isclose((y.detach().numpy() * z).sum(), (x.detach().numpy() * conv.numpy()).sum())
    assert gradcheck(
        lambda x, w, b: F.conv_transpose1d(x, w, b, stride, padding, out_pad, groups, dilation), (x, w, b)
    )


def test_transposed_convolution_layers_take_an_output_size():
    """ConvTranspose1d/2d: PyTorch's parameters and repr; output_size picks the output padding
    within a stride of the smallest output, else says which sizes are valid."""
    import graphc.nn as nn

    layer = nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, groups=2, bias=False)
    assert (
        repr(layer)
        == "ConvTranspose1d(4, 6, kernel_size=(3,), stride=(2,), padding=(1,), groups=2, bias=False)"
    )
    assert layer.weight.shape == (4, 3, 3)
    x = graphc.randn(2, 4, 5)
    assert layer(x).shape == (2, 6, 9) and layer(x, output_size=[10]).shape == (2, 6, 10)
    want = F.conv_transpose1d(x, layer.weight, None, 2, 1, 1, 2)
    np.testing.assert_allclose(layer(x, output_size=(2, 6, 10)).detach().numpy(), want.detach().numpy())
    assert layer(x[0]).shape == (6, 9)  # unbatched
    square = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    assert square(graphc.randn(1, 3, 5, 5), output_size=[10, 9]).shape == (1, 2, 10, 9)
    with pytest.raises(ValueError, match="valid sizes range from 9 to 10 in dim 0"):
        square(graphc.randn(1, 3, 5, 5), output_size=[12, 12])


def pool_reference(x, k, s, p, d, ceil):
    n, c, h, w = x.shape
    span = d * (k - 1) + 1

    def size(length):
        top = length + 2 * p - span
        out = -(-top // s) + 1 if ceil else top // s + 1
        if ceil and (out - 1) * s >= length + p:
            out -= 1
        return out

    oh, ow = size(h), size(w)
    xp = np.full((n, c, h + 2 * p + s, w + 2 * p + s), -np.inf)
    xp[:, :, p : p + h, p : p + w] = x
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = xp[:, :, i * s : i * s + span : d, j * s : j * s + span : d].max((-2, -1))
    return out


@pytest.mark.parametrize(
    "k, s, p, d, ceil", [(2, 2, 0, 1, False), (3, 2, 1, 1, True), (3, 1, 1, 2, False), (2, 3, 1, 1, True)]
)
def test_max_pool2d_matches_naive_loops_and_gradchecks(k, s, p, d, ceil):
    x = leaf(2, 3, 9, 8)
    out = F.max_pool2d(x, k, s, p, d, ceil)
    np.testing.assert_allclose(out.detach().numpy(), pool_reference(x.detach().numpy(), k, s, p, d, ceil))
    assert gradcheck(lambda x: F.max_pool2d(x, k, s, p, d, ceil), (x,))
    values, idx = F.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    flat = x.detach().reshape(2, 3, -1)
    assert graphc.equal(graphc.gather(flat, 2, idx.reshape(2, 3, -1)), values.reshape(2, 3, -1))


def test_avg_and_adaptive_pooling():
    x = leaf(2, 3, 6, 6)
    ref = x.detach().numpy().reshape(2, 3, 3, 2, 3, 2).mean((3, 5))
    np.testing.assert_allclose(F.avg_pool2d(x, 2).detach().numpy(), ref)
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, 3).detach().numpy(), ref)
    y = leaf(1, 2, 5, 7)
    out = F.adaptive_avg_pool2d(y, (2, 3)).detach().numpy()
    a = y.detach().numpy()
    assert np.isclose(out[0, 0, 1, 2], a[0, 0, 2:5, 4:7].mean())
    assert gradcheck(lambda x: F.avg_pool2d(x, 3, 2, 1), (x,))
    assert gradcheck(lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), (x,))
    assert gradcheck(lambda y: F.adaptive_avg_pool2d(y, (2, 3)), (y,))


def test_linear_and_bilinear():
    x, w, b = leaf(4, 3), leaf(5, 3), leaf(5)
    np.testing.assert_allclose(
        F.linear(x, w, b).detach().numpy(), x.detach().numpy() @ w.detach().numpy().T + b.detach().numpy()
    )
    assert F.linear(x, w, b).grad_fn.name() == "AddmmBackward0"
    assert gradcheck(F.linear, (leaf(2, 4, 3), w, b)) and gradcheck(F.linear, (x, w))
    x1, x2, wb = leaf(4, 3), leaf(4, 2), leaf(5, 3, 2)
    ref = np.einsum("ni,kij,nj->nk", x1.detach().numpy(), wb.detach().numpy(), x2.detach().numpy())
    np.testing.assert_allclose(F.bilinear(x1, x2, wb).detach().numpy(), ref)
    assert gradcheck(F.bilinear, (x1, x2, wb, leaf(5)))


ACTIVATIONS = {
    "relu": (F.relu, lambda a: np.maximum(a, 0)),
    "leaky_relu": (F.leaky_relu, lambda a: np.where(a > 0, a, 0.01 * a)),
    "elu": (F.elu, lambda a: np.where(a > 0, a, np.expm1(a))),
    "gelu": (F.gelu, lambda a: 0.5 * a * (1 + np.vectorize(math.erf)(a / math.sqrt(2)))),
    "gelu_tanh": (
        lambda t: F.gelu(t, approximate="tanh"),
        lambda a: 0.5 * a * (1 + np.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a**3))),
    ),
    "silu": (F.silu, lambda a: a / (1 + np.exp(-a))),
    "softplus": (F.softplus, lambda a: np.log1p(np.exp(a))),
    "hardtanh": (F.hardtanh, lambda a: np.clip(a, -1, 1)),
    "softmax": (lambda t: F.softmax(t, 1), lambda a: np.exp(a) / np.exp(a).sum(1, keepdims=True)),
    "log_softmax": (lambda t: F.log_softmax(t, 1), lambda a: a - np.log(np.exp(a).sum(1, keepdims=True))),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations(name):
    fn, ref = ACTIVATIONS[name]
    x = leaf(4, 5)
    with graphc.no_grad():
        x += graphc.sign(x) * 0.05  # away from kinks
    np.testing.assert_allclose(fn(x).detach().numpy(), ref(x.detach().numpy()), rtol=1e-10, atol=1e-12)
    assert gradcheck(fn, (x,))


def test_dropout():
    x = graphc.ones(1000)
    graphc.manual_seed(0)
    y = F.dropout(x, 0.3)
    kept = (y != 0).float().mean().item()
    assert 0.63 < kept < 0.77 and set(np.unique(y.numpy()).tolist()) <= {0.0, np.float32(1 / 0.7)}
    assert F.dropout(x, 0.3, training=False) is x and F.dropout(x, 1.0).sum().item() == 0
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, 1.5)


def _ce_reference(logits, target, weight=None, ignore=-100, smoothing=0.0):
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    n, c = logits.shape
    w = np.ones(c) if weight is None else weight
    valid = target != ignore
    safe = np.where(valid, target, 0)
    nll = -logp[np.arange(n), safe] * w[safe] * valid
    denom = (w[safe] * valid).sum()
    smooth = -(logp * w).sum(1) * valid
    return (1 - smoothing) * nll.sum() / denom + smoothing / c * smooth.sum() / denom


@pytest.mark.parametrize("weighted, smoothing", [(False, 0.0), (True, 0.0), (False, 0.2), (True, 0.1)])
def test_cross_entropy_with_class_indices(weighted, smoothing):
    logits = leaf(6, 4)
    target = graphc.tensor([0, 3, -100, 2, 1, 3])
    weight = graphc.tensor([1.0, 2.0, 0.5, 1.5], dtype=graphc.float64) if weighted else None
    out = F.cross_entropy(logits, target, weight, label_smoothing=smoothing)
    ref = _ce_reference(
        logits.detach().numpy(),
        target.numpy(),
        None if weight is None else weight.numpy(),
        smoothing=smoothing,
    )
    assert np.isclose(out.item(), ref)
    assert gradcheck(lambda z: F.cross_entropy(z, target, weight, label_smoothing=smoothing), (logits,))
    per = F.cross_entropy(logits, target, reduction="none")
    assert per.shape == (6,) and per[2].item() == 0.0


def test_cross_entropy_with_probabilities_and_spatial_targets():
    logits = leaf(3, 4)
    probs = F.softmax(graphc.tensor(RNG.normal(size=(3, 4))), 1)
    ref = (
        -(
            probs.numpy()
            * (logits.detach().numpy() - np.log(np.exp(logits.detach().numpy()).sum(1, keepdims=True)))
        )
        .sum(1)
        .mean()
    )
    assert np.isclose(F.cross_entropy(logits, probs).item(), ref)
    assert gradcheck(lambda z: F.cross_entropy(z, probs), (logits,))
    img = leaf(2, 3, 4, 4)
    tgt = graphc.randint(0, 3, (2, 4, 4))
    assert F.cross_entropy(img, tgt, reduction="none").shape == (2, 4, 4)
    assert gradcheck(lambda z: F.cross_entropy(z, tgt), (img,))


def test_regression_and_binary_losses():
    a, b = leaf(5), leaf(5)
    an, bn = a.detach().numpy(), b.detach().numpy()
    assert np.isclose(F.mse_loss(a, b).item(), ((an - bn) ** 2).mean())
    assert np.isclose(F.l1_loss(a, b, reduction="sum").item(), np.abs(an - bn).sum())
    d = np.abs(an - bn)
    assert np.isclose(F.smooth_l1_loss(a, b).item(), np.where(d < 1, 0.5 * d * d, d - 0.5).mean())
    p = graphc.tensor(RNG.uniform(0.1, 0.9, 5), requires_grad=True)
    t = graphc.tensor([0.0, 1.0, 1.0, 0.0, 0.5], dtype=graphc.float64)
    pn, tn = p.detach().numpy(), t.numpy()
    assert np.isclose(
        F.binary_cross_entropy(p, t).item(), -(tn * np.log(pn) + (1 - tn) * np.log(1 - pn)).mean()
    )
    sig = 1 / (1 + np.exp(-an))
    assert np.isclose(
        F.binary_cross_entropy_with_logits(a, t).item(),
        -(tn * np.log(sig) + (1 - tn) * np.log(1 - sig)).mean(),
    )
    lp = F.log_softmax(leaf(2, 3), 1)
    q = F.softmax(graphc.tensor(RNG.normal(size=(2, 3))), 1)
    assert np.isclose(
        F.kl_div(lp, q, reduction="batchmean").item(),
        (q.numpy() * (np.log(q.numpy()) - lp.detach().numpy())).sum() / 2,
    )
    for fn in (F.mse_loss, F.l1_loss, F.smooth_l1_loss):
        assert gradcheck(fn, (a, b))
    assert gradcheck(lambda p: F.binary_cross_entropy(p, t), (p,))
    assert gradcheck(lambda a: F.binary_cross_entropy_with_logits(a, t), (a,))
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.mse_loss(a, b, reduction="avg")


def test_one_hot_and_pad():
    assert F.one_hot(graphc.tensor([0, 2])).tolist() == [[1, 0, 0], [0, 0, 1]]
    x = leaf(2, 3)
    out = F.pad(x, (1, 2))
    assert out.shape == (2, 6) and out[0, 0].item() == 0.0
    assert F.pad(x, (0, 0, -1, 1)).shape == (2, 3)
    assert gradcheck(lambda x: F.pad(x, (1, -1, 2, 0), value=3.0), (x,))


@pytest.mark.parametrize(
    "mode, np_mode", [("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")]
)
def test_pad_modes_match_numpy_and_conv_padding_modes(mode, np_mode):
    x = leaf(2, 3, 4, 5)
    out = F.pad(x, (1, 2, 2, 1), mode=mode)
    ref = np.pad(x.detach().numpy(), ((0, 0), (0, 0), (2, 1), (1, 2)), mode=np_mode)
    np.testing.assert_allclose(out.detach().numpy(), ref)
    assert gradcheck(lambda x: F.pad(x, (1, 2, 2, 1), mode=mode), (x,))
    conv = graphc.nn.Conv2d(3, 2, 3, padding=1, padding_mode=mode).double()
    expected = F.conv2d(F.pad(x, (1, 1, 1, 1), mode=mode), conv.weight, conv.bias)
    assert graphc.allclose(conv(x), expected)
    with pytest.raises(ValueError):
        F.pad(x, (5, 5), mode="reflect") if mode == "reflect" else F.pad(x, (1, 1), mode="odd")


def _unfold_reference(x, k, d, p, s):
    """im2col by loops: column l of channel c * KH * KW + i * KW + j is x at tap (i, j) of
    window l (zero outside the image)."""
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    oh = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    out = np.zeros((n, c * k[0] * k[1], oh * ow))
    for ch in range(c):
        for i in range(k[0]):
            for j in range(k[1]):
                for r in range(oh):
                    for q in range(ow):
                        out[:, (ch * k[0] + i) * k[1] + j, r * ow + q] = padded[
                            :, ch, r * s[0] + i * d[0], q * s[1] + j * d[1]
                        ]
    return out


@pytest.mark.parametrize(
    "k, d, p, s",
    [((3, 3), (1, 1), (0, 0), (1, 1)), ((2, 3), (2, 1), (1, 2), (2, 3)), ((1, 2), (1, 3), (0, 1), (3, 1))],
)
def test_unfold_and_fold_are_im2col_and_its_adjoint(k, d, p, s):
    import graphc.nn as nn

    x = leaf(2, 3, 7, 8)
    cols = F.unfold(x, k, d, p, s)
    np.testing.assert_allclose(cols.detach().numpy(), _unfold_reference(x.detach().numpy(), k, d, p, s))
    # <unfold(x), z> == <x, fold(z)>
    z = leaf(*cols.shape)
    folded = F.fold(z, (7, 8), k, d, p, s)
    assert folded.shape == (2, 3, 7, 8)
    lhs, rhs = (cols * z).sum().item(), (x * folded).sum().item()
    assert np.isclose(lhs, rhs)
    assert gradcheck(lambda x: F.unfold(x, k, d, p, s), (x,))
    assert gradcheck(lambda z: F.fold(z, (7, 8), k, d, p, s), (z,))
    assert nn.Unfold(k, d, p, s)(x[0]).shape == cols.shape[1:]  # unbatched
    assert nn.Fold((7, 8), k, d, p, s)(z[0]).shape == (3, 7, 8)


def test_fold_says_what_size_it_expected():
    with pytest.raises(graphc.ShapeError, match="expected 30 blocks .* got 29"):
        F.fold(graphc.zeros(1, 27, 29), (7, 8), 3)
    with pytest.raises(graphc.ShapeError, match="divisible by the kernel's 3 x 3 taps"):
        F.fold(graphc.zeros(1, 26, 30), (7, 8), 3)
    with pytest.raises(graphc.ShapeError, match="does not fit"):
        F.unfold(graphc.zeros(1, 1, 2, 2), 3)


def test_unfold_and_fold_capture():
    def f(x):
        return F.fold(F.unfold(x, 3, padding=1) * 2, (5, 6), 3, padding=1)

    scripted = graphc.script(f, (graphc.randn(2, 3, 5, 6),))
    x = graphc.randn(4, 3, 5, 6)
    np.testing.assert_allclose(scripted(x).numpy(), f(x).numpy(), rtol=1e-5, atol=1e-6)


def _grid_sample_reference(x, grid, mode, padding_mode, align):
    """grid_sample by loops over output pixels, from the definition."""
    n, c, h, w = x.shape

    def pixel(v, size):
        p = (v + 1) / 2 * (size - 1) if align else ((v + 1) * size - 1) / 2
        if padding_mode == "reflection":
            low, high = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
            span = high - low
            if span <= 0:
                p = 0.0
            else:
                d = abs(p - low)
                flips, extra = int(d // span), d % span
                p = low + extra if flips % 2 == 0 else high - extra
        if padding_mode in ("border", "reflection"):
            p = min(max(p, 0.0), size - 1.0)
        return p

    def read(b, i, j):
        return x[b, :, i, j] if 0 <= i < h and 0 <= j < w else np.zeros(c)

    out = np.zeros((n, c) + grid.shape[1:3])
    for b in range(n):
        for r in range(grid.shape[1]):
            for q in range(grid.shape[2]):
                px, py = pixel(grid[b, r, q, 0], w), pixel(grid[b, r, q, 1], h)
                if mode == "nearest":
                    out[b, :, r, q] = read(b, int(np.rint(py)), int(np.rint(px)))
                    continue
                x0, y0 = int(np.floor(px)), int(np.floor(py))
                fx, fy = px - x0, py - y0
                out[b, :, r, q] = (
                    read(b, y0, x0) * (1 - fx) * (1 - fy)
                    + read(b, y0, x0 + 1) * fx * (1 - fy)
                    + read(b, y0 + 1, x0) * (1 - fx) * fy
                    + read(b, y0 + 1, x0 + 1) * fx * fy
                )
    return out


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align", [False, True])
def test_grid_sample_against_loops_and_finite_differences(mode, padding_mode, align):
    x = RNG.normal(size=(2, 3, 4, 5))
    grid = RNG.uniform(-1.6, 1.6, size=(2, 3, 6, 2))  # inside and outside the image
    got = F.grid_sample(graphc.tensor(x), graphc.tensor(grid), mode, padding_mode, align)
    np.testing.assert_allclose(
        got.numpy(), _grid_sample_reference(x, grid, mode, padding_mode, align), atol=1e-12
    )
    if mode == "bilinear":
        xs, gs = graphc.tensor(x, requires_grad=True), graphc.tensor(grid, requires_grad=True)
        assert gradcheck(lambda a, b: F.grid_sample(a, b, mode, padding_mode, align), (xs, gs))


def test_affine_grid_identity_samples_the_image_back_and_a_spatial_transformer_captures():
    x = leaf(2, 3, 5, 6)
    identity = graphc.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]] * 2, dtype=graphc.float64)
    for align in (False, True):
        grid = F.affine_grid(identity, (2, 3, 5, 6), align_corners=align)
        assert grid.shape == (2, 5, 6, 2)
        back = F.grid_sample(x, grid, align_corners=align)
        np.testing.assert_allclose(back.detach().numpy(), x.detach().numpy(), atol=1e-12)
    shifted = graphc.tensor([[[1.0, 0.0, 2 / 6], [0.0, 1.0, 0.0]]], dtype=graphc.float64)  # one pixel right
    moved = F.grid_sample(x[:1], F.affine_grid(shifted, (1, 3, 5, 6)))
    np.testing.assert_allclose(moved[..., :-1].detach().numpy(), x[:1, ..., 1:].detach().numpy(), atol=1e-12)
    theta = leaf(2, 2, 3)
    assert gradcheck(lambda t: F.affine_grid(t, (2, 3, 4, 5)), (theta,))
    with pytest.raises(graphc.ShapeError, match=r"theta of shape \(N, 2, 3\)"):
        F.affine_grid(graphc.zeros(2, 3, 3), (2, 3, 4, 5))

    def transform(image, t):
        return F.grid_sample(image, F.affine_grid(t, image.shape), padding_mode="border")

    scripted = graphc.script(transform, (graphc.randn(2, 1, 8, 8), graphc.randn(2, 2, 3)))
    image, t = graphc.randn(4, 1, 8, 8), graphc.randn(4, 2, 3) * 0.5
    np.testing.assert_allclose(scripted(image, t).numpy(), transform(image, t).numpy(), rtol=1e-5, atol=1e-5)
