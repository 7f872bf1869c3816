"""More activations, distances, losses, pooling, padding, pixel shuffles, channel dropout and
instance norm, against numpy written from PyTorch's definitions, with finite-difference
gradients; their modules' parameters, buffers and reprs are PyTorch's."""

import math

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from graphc.autograd import gradcheck

RNG = np.random.default_rng(3)


def arr(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float64)


def t(a, grad=False):
    return graphc.tensor(a, dtype=graphc.float64, requires_grad=grad)


def close(got, want, tol=1e-9):
    got = got.detach().numpy()
    assert got.shape == np.shape(want), (got.shape, np.shape(want))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


ALPHA, SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
ACTIVATIONS = {
    "hardswish": (F.hardswish, lambda x: x * np.clip(x + 3, 0, 6) / 6),
    "hardsigmoid": (F.hardsigmoid, lambda x: np.clip(x + 3, 0, 6) / 6),
    "mish": (F.mish, lambda x: x * np.tanh(softplus(x))),
    "logsigmoid": (F.logsigmoid, lambda x: -softplus(-x)),
    "softsign": (F.softsign, lambda x: x / (1 + np.abs(x))),
    "selu": (F.selu, lambda x: SCALE * np.where(x > 0, x, ALPHA * np.expm1(np.minimum(x, 0)))),
    "celu": (lambda x: F.celu(x, 0.7), lambda x: np.maximum(x, 0) + np.minimum(0, 0.7 * np.expm1(x / 0.7))),
    "glu": (lambda x: F.glu(x, 1), lambda x: x[:, :3] * sigmoid(x[:, 3:])),
    "threshold": (lambda x: F.threshold(x, 0.5, -2.0), lambda x: np.where(x > 0.5, x, -2.0)),
    "softmin": (lambda x: F.softmin(x, 1), lambda x: np.exp(-x) / np.exp(-x).sum(1, keepdims=True)),
    "tanhshrink": (F.tanhshrink, lambda x: x - np.tanh(x)),
    "softshrink": (
        lambda x: F.softshrink(x, 0.7),
        lambda x: np.where(x > 0.7, x - 0.7, np.where(x < -0.7, x + 0.7, 0)),
    ),
    "hardshrink": (lambda x: F.hardshrink(x, 0.7), lambda x: np.where(np.abs(x) > 0.7, x, 0)),
    "prelu": (
        lambda x: F.prelu(x, graphc.tensor([0.1, -0.2, 0.3, 0.4, 0.5, 0.6], dtype=graphc.float64)),
        lambda x: np.where(x > 0, x, x * np.array([0.1, -0.2, 0.3, 0.4, 0.5, 0.6])[:, None]),
    ),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activations_match_numpy_and_differentiate(name):
    fn, ref = ACTIVATIONS[name]
    x = arr(4, 6, 5, scale=3)
    x[np.abs(np.abs(x) - 0.7) < 0.05] += 0.2  # away from the shrinks' kinks
    x[np.abs(x - 0.5) < 0.05] += 0.2
    x[np.abs(x + 3) < 0.05] += 0.2
    x[np.abs(x - 3) < 0.05] += 0.2
    close(fn(t(x)), ref(x))
    assert gradcheck(fn, (t(x[:2, :, :2], True),))


def test_activation_modules_keep_pytorchs_settings_and_reprs():
    assert repr(nn.Threshold(0.1, 20)) == "Threshold(threshold=0.1, value=20)"
    assert repr(nn.Hardtanh(-2, 2)) == "Hardtanh(min_val=-2, max_val=2)"
    assert repr(nn.Softshrink()) == "Softshrink(0.5)" and repr(nn.CELU(0.5)) == "CELU(alpha=0.5)"
    assert repr(nn.ReLU6(inplace=True)) == "ReLU6(inplace=True)" and repr(nn.Mish()) == "Mish()"
    with pytest.raises(TypeError, match="missing required arguments"):
        nn.Threshold()
    prelu = nn.PReLU(6, init=0.1)
    assert list(prelu.state_dict()) == ["weight"] and prelu.weight.tolist() == pytest.approx([0.1] * 6)
    x = arr(2, 6, 3)
    close(prelu.double()(t(x)), np.where(x > 0, x, 0.1 * x), 1e-6)
    y = graphc.tensor([-1.0, 2.0])
    assert nn.Hardswish(inplace=True)(y) is y and y.tolist() == pytest.approx([-1 / 3, 10 / 6])


def test_distances_match_numpy():
    a, b = arr(4, 5), arr(4, 5)
    close(F.normalize(t(a)), a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12))
    close(F.normalize(t(a), 1, 0), a / np.abs(a).sum(0, keepdims=True))
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    close(F.cosine_similarity(t(a), t(b)), cos)
    close(
        nn.CosineSimilarity(dim=1)(t(a), t(b[:1])),
        (a * b[:1]).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b[0])),
    )
    close(F.pairwise_distance(t(a), t(b)), np.linalg.norm(a - b + 1e-6, axis=1))
    close(nn.PairwiseDistance(1.0, keepdim=True)(t(a), t(b)), np.abs(a - b + 1e-6).sum(1, keepdims=True))
    assert gradcheck(
        lambda x, y: F.cosine_similarity(x, y) + F.pairwise_distance(x, y) + F.normalize(x).sum(1),
        (t(a, True), t(b, True)),
    )


def test_losses_match_numpy():
    a, b, c = arr(4, 5), arr(4, 5), arr(4, 5)
    y = np.array([1.0, -1.0, 1.0, -1.0])
    d = np.abs(a - b)
    close(F.huber_loss(t(a), t(b), delta=0.5), np.where(d < 0.5, 0.5 * d * d, 0.5 * (d - 0.25)).mean())
    close(nn.HuberLoss(reduction="sum")(t(a), t(b)), np.where(d < 1, 0.5 * d * d, d - 0.5).sum())
    close(F.soft_margin_loss(t(a[:, 0]), t(y)), softplus(-y * a[:, 0]).mean())
    labels = (RNG.random((4, 5)) > 0.5).astype(np.float64)
    want = -(labels * np.log(sigmoid(a)) + (1 - labels) * np.log(sigmoid(-a))).mean(1).mean()
    close(nn.MultiLabelSoftMarginLoss()(t(a), t(labels)), want)
    cos = (a * b).sum(1) / np.sqrt(((a * a).sum(1) + 1e-12) * ((b * b).sum(1) + 1e-12))
    close(
        nn.CosineEmbeddingLoss(0.2)(t(a), t(b), t(y)),
        np.where(y == 1, 1 - cos, np.maximum(cos - 0.2, 0)).mean(),
    )
    close(
        nn.MarginRankingLoss(0.3)(t(a[:, 0]), t(b[:, 0]), t(y)),
        np.maximum(-y * (a[:, 0] - b[:, 0]) + 0.3, 0).mean(),
    )
    yy = np.where(RNG.random((4, 5)) > 0.5, 1.0, -1.0)
    close(
        nn.HingeEmbeddingLoss(0.8, reduction="none")(t(a), t(yy)),
        np.where(yy == 1, a, np.maximum(0.8 - a, 0)),
    )

    def dist(x, z, p=2.0):
        return (np.abs(x - z + 1e-6) ** p).sum(1) ** (1 / p)

    close(nn.TripletMarginLoss()(t(a), t(b), t(c)), np.maximum(dist(a, b) - dist(a, c) + 1, 0).mean())
    swapped = np.minimum(dist(a, c, 1.0), dist(b, c, 1.0))
    close(
        nn.TripletMarginLoss(0.5, 1.0, swap=True)(t(a), t(b), t(c)),
        np.maximum(dist(a, b, 1.0) - swapped + 0.5, 0).mean(),
    )
    counts = RNG.integers(0, 5, (4, 5)).astype(np.float64)
    close(nn.PoissonNLLLoss()(t(a), t(counts)), (np.exp(a) - counts * a).mean())
    rate = np.abs(a) + 0.1
    stirling = np.where(
        counts > 1,
        counts * np.log(np.maximum(counts, 1)) - counts + 0.5 * np.log(2 * np.pi * np.maximum(counts, 1)),
        0,
    )
    want = (rate - counts * np.log(rate + 1e-8) + stirling).mean()
    close(nn.PoissonNLLLoss(log_input=False, full=True)(t(rate), t(counts)), want)
    var = np.abs(c) + 0.1
    close(nn.GaussianNLLLoss()(t(a), t(b), t(var)), (0.5 * (np.log(var) + (a - b) ** 2 / var)).mean())
    full = 0.5 * (np.log(var[:, :1]) + (a - b) ** 2 / var[:, :1]) + 0.5 * math.log(2 * math.pi)
    close(nn.GaussianNLLLoss(full=True, reduction="sum")(t(a), t(b), t(var[:, :1])), full.sum())
    with pytest.raises(ValueError, match="negative"):
        F.gaussian_nll_loss(t(a), t(b), t(-var))
    target = np.array([0, 4, 2, 1])
    picked = a[np.arange(4), target][:, None]
    terms = np.maximum(1 - picked + a, 0)
    terms[np.arange(4), target] = 0
    close(nn.MultiMarginLoss()(t(a), graphc.tensor(target)), (terms.sum(1) / 5).mean())
    w = np.array([1.0, 2, 3, 4, 5])
    terms2 = np.maximum(0.5 - picked + a, 0) ** 2 * w[target][:, None]
    terms2[np.arange(4), target] = 0
    close(nn.MultiMarginLoss(2, 0.5, t(w))(t(a), graphc.tensor(target)), (terms2.sum(1) / 5).mean())
    assert gradcheck(
        lambda x, z: (
            F.huber_loss(x, z, delta=0.5)
            + F.triplet_margin_loss(x, z, x * 0.5)
            + F.cosine_embedding_loss(x, z, t(y))
        ),
        (t(a, True), t(b, True)),
    )
    assert gradcheck(
        lambda x: (
            F.poisson_nll_loss(x, t(counts))
            + F.gaussian_nll_loss(x, t(b), t(var))
            + F.multi_margin_loss(x, graphc.tensor(target))
        ),
        (t(a, True),),
    )


def _adaptive(x, out, reduce):
    """PyTorch's adaptive pooling windows over the last two dims."""
    h, w = x.shape[-2:]
    oh, ow = out
    result = np.empty(x.shape[:-2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
            w0, w1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            result[..., i, j] = reduce(x[..., h0:h1, w0:w1], axis=(-2, -1))
    return result


def test_pooling_matches_numpy():
    x = arr(2, 3, 7, 9)
    close(F.adaptive_max_pool2d(t(x), (3, 4)), _adaptive(x, (3, 4), np.max))
    close(nn.AdaptiveMaxPool2d(1)(t(x)), x.max((-2, -1), keepdims=True))
    y = arr(2, 3, 11)
    close(nn.AdaptiveAvgPool1d(4)(t(y)), _adaptive(y[:, :, None], (1, 4), np.mean)[:, :, 0])
    close(nn.AdaptiveMaxPool1d(4)(t(y)), _adaptive(y[:, :, None], (1, 4), np.max)[:, :, 0])
    padded = np.pad(y, ((0, 0), (0, 0), (1, 1)))
    want = np.stack([padded[..., i : i + 3].mean(-1) for i in range(0, 11, 2)], -1)
    close(F.avg_pool1d(t(y), 3, 2, 1), want)
    assert repr(nn.AvgPool1d(2)) == "AvgPool1d(kernel_size=(2,), stride=(2,), padding=(0,))"
    assert gradcheck(lambda v: F.adaptive_max_pool2d(v, (3, 4)), (t(x[:1, :1], True),))


def test_pixel_shuffles_and_pads_match_numpy():
    x = arr(2, 8, 3, 4)
    want = x.reshape(2, 2, 2, 2, 3, 4).transpose(0, 1, 4, 2, 5, 3).reshape(2, 2, 6, 8)
    close(nn.PixelShuffle(2)(t(x)), want)
    close(nn.PixelUnshuffle(2)(t(want)), x)
    with pytest.raises(graphc.ShapeError, match="divisible by upscale_factor"):
        F.pixel_shuffle(t(arr(1, 3, 2, 2)), 2)
    y = arr(2, 3, 4, 5)
    close(nn.ZeroPad2d((1, 2, 0, 1))(t(y)), np.pad(y, ((0, 0), (0, 0), (0, 1), (1, 2))))
    close(nn.ConstantPad1d(2, 3.5)(t(y)), np.pad(y, ((0, 0), (0, 0), (0, 0), (2, 2)), constant_values=3.5))
    close(nn.ReflectionPad2d(1)(t(y)), np.pad(y, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect"))
    close(nn.ReplicationPad1d((2, 1))(t(y)), np.pad(y, ((0, 0), (0, 0), (0, 0), (2, 1)), mode="edge"))
    close(nn.CircularPad2d(1)(t(y)), np.pad(y, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="wrap"))
    assert repr(nn.ZeroPad2d(1)) == "ZeroPad2d((1, 1, 1, 1))"
    assert repr(nn.ConstantPad2d(1, 3.5)) == "ConstantPad2d(padding=(1, 1, 1, 1), value=3.5)"
    assert gradcheck(lambda v: F.pixel_shuffle(v, 2), (t(x[:1, :, :2, :2], True),))


def test_channel_dropout_zeroes_whole_channels():
    graphc.manual_seed(0)
    x = graphc.ones(8, 16, 5, 5)
    out = nn.Dropout2d(0.5)(x).numpy()
    per_channel = out.reshape(8, 16, -1)
    assert np.all((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1))  # all or nothing
    assert 0.3 < (per_channel[..., 0] == 0).mean() < 0.7
    off = x[0]
    assert nn.Dropout1d(0.5).eval()(off) is off
    unbatched = F.dropout1d(graphc.ones(16, 7), 0.5).numpy()
    assert np.all((unbatched == 0).all(-1) | (unbatched == 2.0).all(-1))
    with pytest.raises(graphc.ShapeError, match="expected a 4-D \\(unbatched\\) or 5-D input"):
        F.dropout3d(graphc.ones(2, 3), 0.5)


def test_instance_norm_matches_numpy_and_tracks_statistics():
    x = arr(2, 3, 4, 5)
    mean = x.mean((2, 3), keepdims=True)
    var = x.var((2, 3), keepdims=True)
    scale, shift = np.array([1.0, 2, 3]), np.array([0.0, 1, 2])
    want = (x - mean) / np.sqrt(var + 1e-5) * scale[:, None, None] + shift[:, None, None]
    close(F.instance_norm(t(x), weight=t(scale), bias=t(shift)), want, 1e-7)
    norm = nn.InstanceNorm2d(3, affine=True, track_running_stats=True, dtype=graphc.float64)
    assert list(norm.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    close(norm(t(x)), (x - mean) / np.sqrt(var + 1e-5), 1e-7)
    unbiased = x.var((2, 3), ddof=1)
    close(norm.running_mean, 0.1 * mean.reshape(2, 3).mean(0), 1e-7)
    close(norm.running_var, 0.9 + 0.1 * unbiased.mean(0), 1e-7)
    norm.eval()
    rm, rv = norm.running_mean.numpy(), norm.running_var.numpy()
    close(norm(t(x)), (x - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5), 1e-7)
    assert repr(nn.InstanceNorm1d(3)) == (
        "InstanceNorm1d(3, eps=1e-05, momentum=0.1, affine=False, bias=False, track_running_stats=False)"
    )
    close(
        nn.InstanceNorm1d(3)(t(x[0, :, 0])),
        (x[0, :, 0] - x[0, :, 0].mean(-1, keepdims=True)) / np.sqrt(x[0, :, 0].var(-1, keepdims=True) + 1e-5),
        1e-7,
    )
    assert gradcheck(lambda v, w: F.instance_norm(v, weight=w), (t(x[:1], True), t(scale, True)))


def test_rms_norm_matches_numpy_and_differentiates():
    x, w = arr(2, 3, 8), arr(8)
    want = x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * w
    close(F.rms_norm(t(x), 8, t(w), eps=1e-6), want)
    # eps None: the dtype's machine epsilon
    close(
        F.rms_norm(t(x), (3, 8)), x / np.sqrt((x * x).mean((1, 2), keepdims=True) + np.finfo(np.float64).eps)
    )
    assert gradcheck(lambda x, w: F.rms_norm(x, 8, w, eps=1e-3), (t(x, True), t(w, True)))
    norm = nn.RMSNorm(8)
    assert repr(norm) == "RMSNorm((8,), eps=None, elementwise_affine=True)"
    assert list(norm.state_dict()) == ["weight"] and norm.weight.tolist() == [1.0] * 8
    assert list(nn.RMSNorm(8, elementwise_affine=False).state_dict()) == []
    with pytest.raises(ValueError, match=r"does not end with normalized_shape \[4\]"):
        F.rms_norm(t(x), 4)


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


@pytest.mark.parametrize("kind", ["RNNCell", "RNNCell-relu", "LSTMCell", "GRUCell"])
def test_recurrent_cells_match_numpy(kind):
    name, _, nonlinearity = kind.partition("-")
    kw = {"nonlinearity": nonlinearity} if nonlinearity else {}
    cell = getattr(nn, name)(4, 3, **kw).double()
    assert list(cell.state_dict()) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    assert repr(cell) == f"{name}(4, 3{', nonlinearity=relu' if nonlinearity else ''})"
    w_ih, w_hh, b_ih, b_hh = (p.detach().numpy() for p in cell.parameters())
    x, h, c = arr(5, 4), arr(5, 3), arr(5, 3)
    gi, gh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    if name == "LSTMCell":
        i, f, g, o = np.split(gi + gh, 4, axis=1)
        c2 = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        got_h, got_c = cell(t(x), (t(h), t(c)))
        close(got_c, c2)
        close(got_h, _sigmoid(o) * np.tanh(c2))
        zero_h, _ = cell(t(x))
        close(zero_h, cell(t(x), (t(np.zeros((5, 3))), t(np.zeros((5, 3)))))[0].detach().numpy())
        one_h, one_c = cell(t(x[0]), (t(h[0]), t(c[0])))  # unbatched
        close(one_c, c2[0])
        close(one_h, (_sigmoid(o) * np.tanh(c2))[0])
        return
    if name == "GRUCell":
        (ri, zi, ni), (rh, zh, nh) = np.split(gi, 3, axis=1), np.split(gh, 3, axis=1)
        r, z = _sigmoid(ri + rh), _sigmoid(zi + zh)
        want = (1 - z) * np.tanh(ni + r * nh) + z * h
    else:
        want = np.maximum(gi + gh, 0) if nonlinearity else np.tanh(gi + gh)
    close(cell(t(x), t(h)), want)
    close(cell(t(x[1]), t(h[1])), want[1])
    close(cell(t(x)), cell(t(x), t(np.zeros((5, 3)))).detach().numpy())
    assert gradcheck(lambda x, h: cell(x, h), (t(x[:2], True), t(h[:2], True)))
    with pytest.raises(ValueError, match=r"expected hidden state of shape \[5, 3\], got \[5, 2\]"):
        cell(t(x), t(arr(5, 2)))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 4\)"):
        cell(t(arr(5, 6)))


def test_finfo_and_iinfo():
    info = graphc.finfo(graphc.float32)
    assert info.eps == np.finfo(np.float32).eps and info.max == np.finfo(np.float32).max and info.bits == 32
    assert repr(info) == (
        "finfo(resolution=1e-06, min=-3.40282e+38, max=3.40282e+38, eps=1.19209e-07, "
        "smallest_normal=1.17549e-38, tiny=1.17549e-38, dtype=float32)"
    )
    assert graphc.finfo().dtype == "float32" and graphc.finfo(graphc.float16).resolution == 0.001
    assert graphc.iinfo(graphc.int64).max == 2**63 - 1 and graphc.iinfo(graphc.uint8).min == 0
    assert repr(graphc.iinfo(graphc.int8)) == "iinfo(min=-128, max=127, dtype=int8)"
    with pytest.raises(TypeError, match="floating point input type"):
        graphc.finfo(graphc.int32)
    with pytest.raises(TypeError, match="integer input type"):
        graphc.iinfo(graphc.bool)


def test_channel_shuffle_interleaves_the_groups():
    x = np.arange(2 * 6 * 3, dtype=np.float64).reshape(2, 6, 3)
    want = x.reshape(2, 3, 2, 3).transpose(0, 2, 1, 3).reshape(2, 6, 3)
    close(F.channel_shuffle(t(x), 3), want)
    close(nn.ChannelShuffle(3)(t(x)), want)
    assert repr(nn.ChannelShuffle(3)) == "ChannelShuffle(groups=3)"
    with pytest.raises(ValueError, match=r"channels \(6\) must be divisible by groups \(4\)"):
        F.channel_shuffle(t(x), 4)


def test_gumbel_softmax_samples_the_categorical_distribution():
    probs = np.array([0.1, 0.2, 0.7])
    logits = t(np.log(np.tile(probs, (20000, 1))), grad=True)
    graphc.manual_seed(0)
    hard = F.gumbel_softmax(logits, tau=0.5, hard=True)
    values = hard.detach().numpy()
    assert set(np.unique(values)) == {0.0, 1.0} and (values.sum(1) == 1).all()
    np.testing.assert_allclose(values.mean(0), probs, atol=0.015)  # the Gumbel-max trick
    weights = t(np.array([1.0, 2.0, 3.0]))
    (hard * weights).sum().backward()
    graphc.manual_seed(0)  # the same noise: the straight-through gradient is the soft sample's
    soft_logits = t(logits.detach().numpy(), grad=True)
    soft = F.gumbel_softmax(soft_logits, tau=0.5)
    (soft * weights).sum().backward()
    close(logits.grad, soft_logits.grad.numpy())
    close(soft.sum(-1), np.ones(20000))
