"""Local response norm, LP pooling, max unpooling, Softmax2d, RReLU, alpha dropout and the
Upsampling modules: against numpy loops written from PyTorch's definitions, statistics where
they are random, and finite-difference gradients."""

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from graphc.autograd import gradcheck

RNG = np.random.default_rng(5)


def _t(x, grad=False):
    return graphc.tensor(x, requires_grad=grad)


def test_local_response_norm_against_a_loop_over_channels():
    """(k + alpha / size * sum of squares over channels c - size//2 .. c + (size-1)//2) ** beta,
    the window cut at the ends but the divisor size (PyTorch's zero padding)."""
    for shape, size in [((2, 6, 5, 4), 3), ((2, 6, 5, 4), 4), ((1, 5, 7), 5)]:
        x = RNG.standard_normal(shape)
        want = np.empty_like(x)
        for c in range(shape[1]):
            lo, hi = max(0, c - size // 2), min(shape[1], c + (size - 1) // 2 + 1)
            window = (x[:, lo:hi] ** 2).sum(axis=1)
            want[:, c] = x[:, c] / (2.0 + 0.01 * window / size) ** 0.75
        got = nn.LocalResponseNorm(size, alpha=0.01, beta=0.75, k=2.0)(_t(x))
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    assert gradcheck(
        lambda x: F.local_response_norm(x, 3, 0.5), (_t(RNG.standard_normal((1, 4, 3, 2)), True),)
    )


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_lp_pool_is_the_p_norm_of_each_window(p):
    x = np.abs(RNG.standard_normal((2, 3, 6, 7))) + 0.1
    got = nn.LPPool2d(p, (2, 3), stride=(2, 2))(_t(x)).numpy()
    want = np.empty(got.shape)
    for i in range(got.shape[2]):
        for j in range(got.shape[3]):
            window = x[:, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 3]
            want[:, :, i, j] = (window**p).sum(axis=(2, 3)) ** (1 / p)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    x1 = np.abs(RNG.standard_normal((2, 3, 9))) + 0.1
    got1 = nn.LPPool1d(p, 3)(_t(x1)).numpy()
    np.testing.assert_allclose(got1, ((x1.reshape(2, 3, 3, 3) ** p).sum(-1)) ** (1 / p), rtol=1e-12)
    assert gradcheck(lambda x: F.lp_pool2d(x, p, 2), (_t(x[:1, :1, :4, :4], True),))


def test_max_unpool_puts_each_maximum_back():
    x = RNG.standard_normal((2, 3, 5, 6))
    values, indices = F.max_pool2d(_t(x), 2, return_indices=True)
    out = nn.MaxUnpool2d(2)(values, indices).numpy()
    assert out.shape == (2, 3, 4, 6)
    want = np.zeros((2, 3, 4 * 6))
    flat_v, flat_i = values.numpy().reshape(2, 3, -1), indices.numpy().reshape(2, 3, -1)
    for n in range(2):
        for c in range(3):
            want[n, c, flat_i[n, c]] = flat_v[n, c]
    np.testing.assert_array_equal(out, want.reshape(2, 3, 4, 6))
    full = nn.MaxUnpool2d(2)(values, indices, output_size=(5, 6)).numpy()
    assert full.shape == (2, 3, 5, 6) and np.count_nonzero(full) == values.numel()
    with pytest.raises(graphc.ShapeError, match="output_size"):
        F.max_unpool2d(values, indices, 2, output_size=(9, 6))
    v1, i1 = F.max_pool1d(_t(x[:, :, 0]), 3, 2, return_indices=True)
    out1 = F.max_unpool1d(v1, i1, 3, 2).numpy()
    assert out1.shape == (2, 3, 5) and np.allclose(np.take_along_axis(out1, i1.numpy(), -1), v1.numpy())
    v, i = F.max_pool2d(_t(x[:1, :1]), 2, return_indices=True)
    assert gradcheck(lambda v: F.max_unpool2d(v, i, 2), (_t(v.numpy(), True),))


def test_softmax2d_normalises_over_the_channels_of_each_pixel():
    x = RNG.standard_normal((2, 4, 3, 3))
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(nn.Softmax2d()(_t(x)).numpy(), e / e.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(
        nn.Softmax2d()(_t(x[0])).numpy(), (e / e.sum(axis=1, keepdims=True))[0], rtol=1e-12
    )
    with pytest.raises(ValueError, match="3-D or 4-D"):
        nn.Softmax2d()(_t(x[0, 0]))


def test_rrelu_slopes():
    """Eval: the mean slope; training: one slope per element, drawn from [lower, upper]."""
    x = RNG.standard_normal((50, 40))
    layer = nn.RReLU(0.1, 0.3).eval()
    np.testing.assert_allclose(layer(_t(x)).numpy(), np.where(x >= 0, x, 0.2 * x))
    graphc.manual_seed(0)
    slopes = nn.RReLU(0.1, 0.3).train()(_t(-np.ones((200, 50)))).numpy() * -1
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3 and len(np.unique(slopes)) > 1000
    assert gradcheck(lambda x: F.rrelu(x, 0.1, 0.3), (_t(x[:3, :3] + 0.05 * np.sign(x[:3, :3]), True),))


def test_alpha_dropout_keeps_a_selu_networks_mean_and_variance():
    graphc.manual_seed(1)
    x = F.selu(graphc.randn(400_000, dtype=graphc.float64))  # (mean 0, variance 1: SELU's fixed point)
    out = nn.AlphaDropout(0.3).train()(x).numpy()
    assert abs(out.mean()) < 0.01 and abs(out.var() - 1) < 0.01
    alpha, p = 1.7580993408473766, 0.3
    a = 1 / np.sqrt((alpha * alpha * p + 1) * (1 - p))
    dropped = np.isclose(out, -alpha * a * (1 - p), rtol=0, atol=1e-12)  # (SELU's saturation, mapped)
    assert 0.29 < dropped.mean() < 0.31
    assert nn.AlphaDropout(0.3).eval()(x) is x
    channels = nn.FeatureAlphaDropout(0.5).train()(graphc.ones(4, 8, 3, 3)).numpy()
    assert all(len(np.unique(channels[n, c])) == 1 for n in range(4) for c in range(8))
    assert len(np.unique(channels)) == 2


def test_upsampling_modules_are_interpolate():
    x = _t(RNG.standard_normal((1, 2, 3, 4)))
    np.testing.assert_array_equal(
        nn.UpsamplingBilinear2d(scale_factor=2)(x).numpy(),
        F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True).numpy(),
    )
    np.testing.assert_array_equal(
        nn.UpsamplingNearest2d(size=(5, 7))(x).numpy(), F.interpolate(x, size=(5, 7), mode="nearest").numpy()
    )
    np.testing.assert_array_equal(
        F.upsample_bilinear(x, scale_factor=2).numpy(), nn.UpsamplingBilinear2d(scale_factor=2)(x).numpy()
    )


def test_the_layers_script_for_any_batch():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.lrn = nn.Conv2d(3, 8, 3, padding=1), nn.LocalResponseNorm(3)
            self.pool, self.unpool = nn.MaxPool2d(2, return_indices=True), nn.MaxUnpool2d(2)
            self.lp, self.softmax = nn.LPPool2d(2, 2), nn.Softmax2d()

        def forward(self, x):
            y = self.lrn(F.relu(self.conv(x)))
            values, indices = self.pool(y)
            return self.softmax(self.unpool(values, indices)), self.lp(y)

    graphc.manual_seed(2)
    net = Net().eval()
    for backend in ("interpreter", "llvm"):
        scripted = graphc.script(net, (graphc.randn(2, 3, 8, 8),), backend=backend)
        x = graphc.randn(5, 3, 8, 8)
        with graphc.no_grad():
            for got, want in zip(scripted(x), net(x), strict=True):
                np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
