"""Normalization, embedding, interpolation and recurrent layers against numpy references and
finite differences; nn.utils; DataParallel's API."""

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from graphc.autograd import gradcheck

RNG = np.random.default_rng(7)


def leaf(*shape):
    return graphc.tensor(RNG.normal(size=shape), requires_grad=True)


def test_batch_norm_training_eval_and_running_stats():
    x = RNG.normal(size=(8, 3, 4, 4))
    bn = nn.BatchNorm2d(3).double()
    y = bn(graphc.tensor(x)).detach().numpy()
    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
    np.testing.assert_allclose(
        y, (x - mean.reshape(1, 3, 1, 1)) / np.sqrt(var.reshape(1, 3, 1, 1) + 1e-5), atol=1e-12
    )
    n = 8 * 16
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * mean)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * var * n / (n - 1))
    assert bn.num_batches_tracked.item() == 1
    bn.eval()
    y_eval = bn(graphc.tensor(x)).detach().numpy()
    np.testing.assert_allclose(
        y_eval,
        (x - bn.running_mean.numpy().reshape(1, 3, 1, 1))
        / np.sqrt(bn.running_var.numpy().reshape(1, 3, 1, 1) + 1e-5),
    )
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    w, b = leaf(3), leaf(3)
    assert gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, True), (leaf(4, 3, 2, 2), w, b))
    with pytest.raises(ValueError, match="expected 4D input"):
        bn(graphc.ones(2, 3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(graphc.ones(1, 3))


def test_layer_norm_and_group_norm():
    x = RNG.normal(size=(2, 4, 3, 5))
    ln = F.layer_norm(graphc.tensor(x), (3, 5)).numpy()
    ref = (x - x.mean((2, 3), keepdims=True)) / np.sqrt(x.var((2, 3), keepdims=True) + 1e-5)
    np.testing.assert_allclose(ln, ref, atol=1e-12)
    gn = F.group_norm(graphc.tensor(x), 2).numpy()
    g = x.reshape(2, 2, -1)
    ref = ((g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
    np.testing.assert_allclose(gn, ref, atol=1e-12)
    assert gradcheck(lambda x, w, b: F.layer_norm(x, 5, w, b), (leaf(3, 5), leaf(5), leaf(5)))
    assert gradcheck(lambda x, w: F.group_norm(x, 2, w), (leaf(2, 4, 3), leaf(4)))
    assert nn.LayerNorm(5)(graphc.ones(2, 5)).shape == (2, 5)
    assert nn.GroupNorm(2, 4)(graphc.ones(2, 4, 3)).shape == (2, 4, 3)


def test_embedding_and_padding_idx():
    emb = nn.Embedding(5, 3, padding_idx=0)
    assert emb.weight[0].abs().sum().item() == 0
    idx = graphc.tensor([[0, 2], [4, 0]])
    out = emb(idx)
    assert out.shape == (2, 2, 3) and graphc.equal(out[0, 1], emb.weight[2])
    out.sum().backward()
    assert emb.weight.grad[0].abs().sum().item() == 0 and emb.weight.grad[2].sum().item() == 3
    frozen = nn.Embedding.from_pretrained(graphc.ones(2, 2))
    assert not frozen.weight.requires_grad


def test_embedding_max_norm_renormalizes_the_rows_it_reads():
    weight = graphc.tensor([[3.0, 4.0], [0.3, 0.4], [6.0, 8.0]])
    emb = nn.Embedding.from_pretrained(weight, max_norm=1.0)
    assert repr(emb) == "Embedding(3, 2, max_norm=1.0)"
    out = emb(graphc.tensor([0, 1]))
    np.testing.assert_allclose(out.numpy(), [[0.6, 0.8], [0.3, 0.4]], rtol=1e-6)
    np.testing.assert_allclose(
        emb.weight.numpy(), [[0.6, 0.8], [0.3, 0.4], [6.0, 8.0]], rtol=1e-6
    )  # row 2 unread
    with pytest.raises(ValueError, match="sparse gradients are not supported"):
        nn.Embedding(3, 2, sparse=True)


def test_scale_grad_by_freq_averages_a_rows_gradient_over_its_occurrences():
    """Each row's gradient divided by how often it occurs in the batch (as torch's F.embedding;
    torch's embedding_bag divides some rows by another row's count, which we do not copy)."""
    weight = graphc.tensor(RNG.normal(size=(6, 3)), requires_grad=True)
    idx = np.array([[1, 2, 1], [1, 0, 5]])
    g = RNG.normal(size=(2, 3, 3))
    (F.embedding(graphc.tensor(idx), weight, scale_grad_by_freq=True) * graphc.tensor(g)).sum().backward()
    want = np.zeros((6, 3))
    counts = np.bincount(idx.ravel(), minlength=6)
    for pos in np.ndindex(*idx.shape):
        want[idx[pos]] += g[pos] / counts[idx[pos]]
    np.testing.assert_allclose(weight.grad.numpy(), want, rtol=1e-12)
    table = nn.Embedding(6, 3, scale_grad_by_freq=True)
    bag = nn.EmbeddingBag(6, 3, mode="sum", scale_grad_by_freq=True)
    bag.weight = table.weight
    table(graphc.tensor(idx)).sum().backward()
    first = table.weight.grad.numpy().copy()
    table.weight.grad = None
    bag(graphc.tensor(idx)).sum().backward()
    np.testing.assert_allclose(table.weight.grad.numpy(), first, rtol=1e-6)
    np.testing.assert_allclose(first[:, 0], [1.0, 1.0, 1.0, 0.0, 0.0, 1.0])  # (each row's mean: 1)


def _bags_reference(weight, input, offsets, mode, padding_idx, per_sample_weights):
    """embedding_bag by loops over the bags (a 2-D input: its rows)."""
    if input.ndim == 2:
        bags = [list(row) for row in input]
        scales = [list(row) for row in per_sample_weights] if per_sample_weights is not None else None
    else:
        ends = list(offsets[1:]) + [len(input)]
        bags = [list(input[a:b]) for a, b in zip(offsets, ends, strict=True)]
        scales = (
            [list(per_sample_weights[a:b]) for a, b in zip(offsets, ends, strict=True)]
            if per_sample_weights is not None
            else None
        )
    out = np.zeros((len(bags), weight.shape[1]))
    for i, bag in enumerate(bags):
        rows = [weight[j] * (scales[i][k] if scales else 1.0) for k, j in enumerate(bag) if j != padding_idx]
        if rows:
            out[i] = {"sum": np.sum, "mean": np.mean, "max": np.max}[mode](rows, axis=0)
    return out


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding_bag_sums_means_and_maxima_of_bags(mode, padding_idx):
    """1-D input with offsets (an empty bag, a bag of padding only), 2-D input, per-sample
    weights; gradients by finite differences; nn.EmbeddingBag's parameter and repr."""
    rng = np.random.default_rng(4)
    weight = graphc.tensor(rng.standard_normal((10, 3)), requires_grad=True)
    flat, offsets = np.array([1, 2, 4, 5, 4, 3, 2, 2, 2, 9, 0]), np.array([0, 3, 3, 6, 9])
    got = F.embedding_bag(
        graphc.tensor(flat), weight, graphc.tensor(offsets), mode=mode, padding_idx=padding_idx
    )
    want = _bags_reference(weight.detach().numpy(), flat, offsets, mode, padding_idx, None)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12)
    last = F.embedding_bag(
        graphc.tensor(flat), weight, graphc.tensor([0, 3, 3, 6, 9, 11]), mode=mode,
        padding_idx=padding_idx, include_last_offset=True,
    )  # fmt: skip
    np.testing.assert_allclose(last.detach().numpy(), want, rtol=1e-12)
    rows = rng.integers(0, 10, (3, 4))
    got2 = F.embedding_bag(graphc.tensor(rows), weight, mode=mode, padding_idx=padding_idx)
    np.testing.assert_allclose(
        got2.detach().numpy(),
        _bags_reference(weight.detach().numpy(), rows, None, mode, padding_idx, None),
        rtol=1e-12,
    )
    assert gradcheck(
        lambda w: F.embedding_bag(
            graphc.tensor(flat), w, graphc.tensor(offsets), mode=mode, padding_idx=padding_idx
        ),
        (weight,),
    )
    if mode == "sum":
        scales = rng.random(len(flat))
        given = {"per_sample_weights": graphc.tensor(scales), "padding_idx": padding_idx}
        weighted = F.embedding_bag(graphc.tensor(flat), weight, graphc.tensor(offsets), mode="sum", **given)
        np.testing.assert_allclose(
            weighted.detach().numpy(),
            _bags_reference(weight.detach().numpy(), flat, offsets, "sum", padding_idx, scales),
            rtol=1e-12,
        )
        row_scales = rng.random(rows.shape)
        given = {"per_sample_weights": graphc.tensor(row_scales), "padding_idx": padding_idx}
        np.testing.assert_allclose(
            F.embedding_bag(graphc.tensor(rows), weight, mode="sum", **given).detach().numpy(),
            _bags_reference(weight.detach().numpy(), rows, None, "sum", padding_idx, row_scales),
            rtol=1e-12,
        )
    bag = nn.EmbeddingBag(10, 3, mode=mode, padding_idx=padding_idx)
    assert [n for n, _ in bag.named_parameters()] == ["weight"]
    assert repr(bag) == f"EmbeddingBag(10, 3, mode={mode!r}" + (", padding_idx=2)" if padding_idx else ")")
    assert bag(graphc.tensor(flat), graphc.tensor(offsets)).shape == (5, 3)


def test_embedding_bag_errors_and_capture():
    w = graphc.randn(10, 3)
    with pytest.raises(ValueError, match="only supported for mode='sum'"):
        F.embedding_bag(graphc.tensor([1, 2]), w, graphc.tensor([0]), per_sample_weights=graphc.ones(2))
    with pytest.raises(ValueError, match="offsets must be None"):
        F.embedding_bag(graphc.tensor([[1, 2]]), w, graphc.tensor([0]))
    with pytest.raises(ValueError, match="needs 1-D offsets"):
        F.embedding_bag(graphc.tensor([1, 2]), w)
    bag = nn.EmbeddingBag(10, 3, mode="mean").eval()
    scripted = graphc.script(bag, (graphc.tensor([[1, 2, 3], [4, 5, 6]]),))
    rows = graphc.tensor(np.random.default_rng(0).integers(0, 10, (5, 3)))
    np.testing.assert_allclose(scripted(rows).numpy(), bag(rows).detach().numpy(), rtol=1e-6)


@pytest.mark.parametrize("mode, align", [("nearest", None), ("bilinear", False), ("bilinear", True)])
def test_interpolate_gradients_and_shapes(mode, align):
    x = leaf(1, 2, 3, 4)
    out = F.interpolate(x, size=(5, 7), mode=mode, align_corners=align)
    assert out.shape == (1, 2, 5, 7)
    assert gradcheck(lambda x: F.interpolate(x, scale_factor=2.0, mode=mode, align_corners=align), (x,))


def test_interpolate_bilinear_values():
    x = graphc.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    out = F.interpolate(x, size=(3, 3), mode="bilinear", align_corners=True)
    assert out[0, 0].tolist() == [[0.0, 0.5, 1.0], [1.0, 1.5, 2.0], [2.0, 2.5, 3.0]]
    near = F.interpolate(x, scale_factor=2, mode="nearest")
    assert near[0, 0, 0].tolist() == [0.0, 0.0, 1.0, 1.0]


def _sig(v):
    return 1 / (1 + np.exp(-v))


def _lstm_reference(x, h, c, w_ih, w_hh, b_ih, b_hh):
    outs = []
    sig = _sig
    for t in range(x.shape[0]):
        gates = x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh
        i, f, g, o = np.split(gates, 4, axis=1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        outs.append(h)
    return np.stack(outs), h, c


def test_lstm_matches_a_numpy_reference_and_gradchecks():
    lstm = nn.LSTM(3, 4).double()
    x = RNG.normal(size=(5, 2, 3))
    out, (h, c) = lstm(graphc.tensor(x))
    p = {k: v.detach().numpy() for k, v in lstm.named_parameters()}
    ro, rh, rc = _lstm_reference(
        x,
        np.zeros((2, 4)),
        np.zeros((2, 4)),
        p["weight_ih_l0"],
        p["weight_hh_l0"],
        p["bias_ih_l0"],
        p["bias_hh_l0"],
    )
    np.testing.assert_allclose(out.detach().numpy(), ro, atol=1e-12)
    np.testing.assert_allclose(h[0].detach().numpy(), rh, atol=1e-12)
    np.testing.assert_allclose(c[0].detach().numpy(), rc, atol=1e-12)
    small = nn.GRU(2, 2).double()
    assert gradcheck(lambda x: small(x)[0], (leaf(3, 1, 2),))


def test_recurrent_shapes_and_names():
    lstm = nn.LSTM(3, 5, num_layers=2, batch_first=True, bidirectional=True)
    out, (h, c) = lstm(graphc.randn(4, 6, 3))
    assert out.shape == (4, 6, 10) and h.shape == (4, 4, 5) and c.shape == (4, 4, 5)
    names = [n for n, _ in lstm.named_parameters()]
    assert names[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert "weight_ih_l1_reverse" in names and lstm.weight_ih_l1.shape == (20, 10)
    rnn = nn.RNN(3, 2, nonlinearity="relu")
    out, h = rnn(graphc.randn(5, 3))  # unbatched
    assert out.shape == (5, 2) and h.shape == (1, 2) and (out >= 0).all().item()
    gru = nn.GRU(3, 4)
    assert gru(graphc.randn(2, 1, 3), graphc.zeros(1, 1, 4))[1].shape == (1, 1, 4)
    with pytest.raises(ValueError, match="Expected hidden size"):
        gru(graphc.randn(2, 1, 3), graphc.zeros(2, 1, 4))


def test_clip_grad_and_parameter_vectors():
    a, b = nn.Parameter(graphc.ones(2)), nn.Parameter(graphc.ones(1))
    a.grad, b.grad = graphc.tensor([3.0, 0.0]), graphc.tensor([4.0])
    total = nn.utils.clip_grad_norm_([a, b], 1.0)
    assert total.item() == pytest.approx(5.0)
    assert a.grad.tolist() == pytest.approx([0.6, 0.0], rel=1e-5)
    a.grad = graphc.tensor([3.0, -7.0])
    nn.utils.clip_grad_value_([a], 2.0)
    assert a.grad.tolist() == [2.0, -2.0]
    vec = nn.utils.parameters_to_vector([a, b])
    assert vec.tolist() == [1.0, 1.0, 1.0]
    nn.utils.vector_to_parameters(graphc.tensor([5.0, 6.0, 7.0]), [a, b])
    assert a.tolist() == [5.0, 6.0] and b.tolist() == [7.0]


def test_data_parallel_keeps_the_api_on_one_device():
    model = nn.DataParallel(nn.Linear(5, 2))
    assert model(graphc.randn(30, 5)).shape == (30, 2)
    assert isinstance(model.module, nn.Linear) and list(model.state_dict())[0] == "module.weight"
    ddp = nn.parallel.DistributedDataParallel(nn.Linear(2, 2))
    with ddp.no_sync():
        assert ddp(graphc.ones(1, 2)).shape == (1, 2)


def test_conv1d_and_max_pool1d_match_their_2d_forms():
    x, w, b = leaf(2, 3, 9), leaf(4, 3, 3), leaf(4)
    out = F.conv1d(x, w, b, stride=2, padding=1)
    ref = F.conv2d(x.unsqueeze(2), w.unsqueeze(2), b, (1, 2), (0, 1)).squeeze(2)
    assert graphc.allclose(out, ref) and out.shape == (2, 4, 5)
    assert gradcheck(lambda x, w: F.conv1d(x, w, None, 1, 1, 2), (x, w))
    pooled = nn.MaxPool1d(3, 2)(x)
    np.testing.assert_allclose(
        pooled.detach().numpy(),
        np.stack([x.detach().numpy()[..., i : i + 3].max(-1) for i in range(0, 7, 2)], -1),
    )
    assert gradcheck(lambda x: F.max_pool1d(x, 2), (x,))
    assert repr(nn.Conv1d(3, 4, 3)) == "Conv1d(3, 4, kernel_size=(3,), stride=(1,))"


@pytest.mark.parametrize("cls", ["RNN", "LSTM"])
def test_rnn_and_lstm_gradients(cls):
    layer = getattr(nn, cls)(2, 2, num_layers=2, bidirectional=True).double()
    assert gradcheck(lambda x: layer(x)[0], (leaf(3, 1, 2),))


def test_weight_norm_reparameterizes_and_recomputes_before_each_forward():
    from graphc.nn.utils import remove_weight_norm, weight_norm

    conv = nn.Conv1d(2, 4, 3)
    original = conv.weight.detach().numpy().copy()
    weight_norm(conv)
    assert [n for n, _ in conv.named_parameters()] == ["bias", "weight_g", "weight_v"]
    norms = np.sqrt((original**2).sum(axis=(1, 2), keepdims=True))
    np.testing.assert_allclose(conv.weight_g.detach().numpy(), norms, rtol=1e-6)
    np.testing.assert_allclose(conv.weight.detach().numpy(), original, rtol=1e-5, atol=1e-7)
    with graphc.no_grad():
        conv.weight_g.mul_(2)  # twice the norm: twice the weight at the next forward
    x = graphc.randn(3, 2, 5)
    out = conv(x)
    np.testing.assert_allclose(conv.weight.detach().numpy(), 2 * original, rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert conv.weight_g.grad.shape == (4, 1, 1) and conv.weight_v.grad.shape == (4, 2, 3)
    g = graphc.tensor(RNG.normal(size=(4, 1, 1)), requires_grad=True)
    v = graphc.tensor(RNG.normal(size=(4, 2, 3)), requires_grad=True)
    from graphc.nn.utils import _norm_except_dim

    assert gradcheck(lambda g, v: v * (g / _norm_except_dim(v, 0)), (g, v))
    whole = weight_norm(nn.Linear(3, 2), dim=None)
    assert whole.weight_g.shape == ()
    with pytest.raises(RuntimeError, match="two weight_norm hooks"):
        weight_norm(whole)
    scripted = graphc.script(conv.eval(), (graphc.randn(2, 2, 5),))
    np.testing.assert_allclose(scripted(x).numpy(), conv(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    remove_weight_norm(conv)
    assert [n for n, _ in conv.named_parameters()] == ["bias", "weight"]  # (as PyTorch: re-registered last)
    np.testing.assert_allclose(conv.weight.detach().numpy(), 2 * original, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="weight_norm of 'weight' not found"):
        remove_weight_norm(conv)


def test_spectral_norm_divides_by_the_power_iterations_sigma():
    from graphc.nn.utils import _SpectralNorm, remove_spectral_norm, spectral_norm

    layer = spectral_norm(nn.Linear(5, 4, dtype=graphc.float64))
    assert sorted(layer.state_dict()) == ["bias", "weight_orig", "weight_u", "weight_v"]
    w, u, v = (getattr(layer, n).detach().numpy().copy() for n in ("weight_orig", "weight_u", "weight_v"))
    x = graphc.randn(3, 5, dtype=graphc.float64)
    layer(x)  # training: one power-iteration step, then W / u.W v
    v1 = w.T @ u / np.linalg.norm(w.T @ u)
    u1 = w @ v1 / np.linalg.norm(w @ v1)
    np.testing.assert_allclose(layer.weight_u.numpy(), u1, rtol=1e-12)
    np.testing.assert_allclose(layer.weight.detach().numpy(), w / (u1 @ w @ v1), rtol=1e-12)
    layer.eval()
    layer(x)
    np.testing.assert_allclose(layer.weight_u.numpy(), u1, rtol=1e-12)  # eval: no step
    layer.train()
    for _ in range(60):
        layer(x)
    assert np.linalg.svd(layer.weight.detach().numpy(), compute_uv=False)[0] == pytest.approx(1.0, rel=1e-8)

    class Holder:  # the hook's computation on a leaf weight, for finite differences
        weight_orig = graphc.tensor(RNG.normal(size=(4, 5)), requires_grad=True)
        weight_u, weight_v = graphc.tensor(u1), graphc.tensor(v1)

    fn = _SpectralNorm("weight", 1, 0, 1e-12)

    def normalized(w):
        Holder.weight_orig = w
        return fn.compute(Holder, power_iteration=False)

    assert gradcheck(normalized, (Holder.weight_orig,))
    up = spectral_norm(nn.ConvTranspose2d(3, 6, 2))  # output channels are dim 1
    assert up.weight_u.shape == (6,) and up.weight_v.shape == (3 * 2 * 2,)
    layer.eval()
    scripted = graphc.script(layer, (x,))
    np.testing.assert_allclose(scripted(x).numpy(), layer(x).detach().numpy(), rtol=1e-10)
    remove_spectral_norm(layer)
    assert sorted(layer.state_dict()) == ["bias", "weight"]
    with pytest.raises(ValueError, match="spectral_norm of 'weight' not found"):
        remove_spectral_norm(layer)
