"""Attention and transformers against a numpy reference written from PyTorch's definitions
(weights read from the modules' state dicts, so names and layouts are PyTorch's too), finite-
difference gradients, training, and capture with symbolic batch and sequence lengths."""

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
import runtime
from graphc.autograd import gradcheck

RNG = np.random.default_rng(11)


def randn(*shape):
    return RNG.standard_normal(shape)


def t64(a, grad=False):
    return graphc.tensor(np.asarray(a, np.float64), requires_grad=grad)


# --- the reference ---


def ref_softmax(s):
    """softmax over the last axis; a row of -inf only gives zeros."""
    top = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isneginf(top), 0.0, top))
    total = e.sum(-1, keepdims=True)
    return e / np.where(total == 0, 1.0, total)


def ref_attention(q, k, v, bias=None, scale=None):
    """softmax(q k^T * scale + bias) v over the last two axes."""
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = np.einsum("...ld,...sd->...ls", q, k) * scale
    if bias is not None:
        s = s + bias
    w = ref_softmax(s)
    return np.einsum("...ls,...sd->...ld", w, v), w


def as_bias(mask, keep):
    """A mask as an additive bias: bool masks give -inf where a position is left out."""
    if mask is None:
        return None
    if mask.dtype == bool:
        return np.where(mask if not keep else ~mask, -np.inf, 0.0)
    return mask


def ref_mha(sd, query, key, value, heads, key_padding_mask=None, attn_mask=None, prefix=""):
    """PyTorch's MultiheadAttention on (L, N, E) inputs from its state dict: output (L, N, E),
    weights (N, heads, L, S)."""
    e = query.shape[-1]
    if prefix + "in_proj_weight" in sd:
        wq, wk, wv = np.split(sd[prefix + "in_proj_weight"], 3)
    else:
        wq, wk, wv = (sd[prefix + f"{c}_proj_weight"] for c in "qkv")
    bq, bk, bv = np.split(sd[prefix + "in_proj_bias"], 3) if prefix + "in_proj_bias" in sd else (0, 0, 0)
    q, k, v = query @ wq.T + bq, key @ wk.T + bk, value @ wv.T + bv
    n, d = q.shape[1], e // heads

    def split(x):  # (T, N, E) -> (N, heads, T, d)
        return x.reshape(x.shape[0], n, heads, d).transpose(1, 2, 0, 3)

    bias = 0.0
    if attn_mask is not None:
        m = as_bias(attn_mask, keep=False)
        bias = bias + (m.reshape(n, heads, *m.shape[1:]) if m.ndim == 3 else m)
    if key_padding_mask is not None:
        bias = bias + as_bias(key_padding_mask, keep=False)[:, None, None, :]
    out, w = ref_attention(split(q), split(k), split(v), bias)
    out = out.transpose(2, 0, 1, 3).reshape(q.shape[0], n, e)
    return out @ sd[prefix + "out_proj.weight"].T + sd.get(prefix + "out_proj.bias", 0), w


def ref_layer_norm(x, sd, name, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * sd[name + ".weight"] + sd[name + ".bias"]


def ref_ff(x, sd, p):
    h = np.maximum(x @ sd[p + "linear1.weight"].T + sd[p + "linear1.bias"], 0)
    return h @ sd[p + "linear2.weight"].T + sd[p + "linear2.bias"]


def ref_encoder_layer(x, sd, heads, p="", mask=None, padding=None, norm_first=False):
    def sa(y):
        return ref_mha(sd, y, y, y, heads, padding, mask, p + "self_attn.")[0]

    if norm_first:
        x = x + sa(ref_layer_norm(x, sd, p + "norm1"))
        return x + ref_ff(ref_layer_norm(x, sd, p + "norm2"), sd, p)
    x = ref_layer_norm(x + sa(x), sd, p + "norm1")
    return ref_layer_norm(x + ref_ff(x, sd, p), sd, p + "norm2")


def ref_decoder_layer(x, memory, sd, heads, p="", tgt_mask=None):
    x = ref_layer_norm(x + ref_mha(sd, x, x, x, heads, None, tgt_mask, p + "self_attn.")[0], sd, p + "norm1")
    x = ref_layer_norm(
        x + ref_mha(sd, x, memory, memory, heads, None, None, p + "multihead_attn.")[0], sd, p + "norm2"
    )
    return ref_layer_norm(x + ref_ff(x, sd, p), sd, p + "norm3")


def numpy_state(module):
    return {k: v.detach().numpy().astype(np.float64) for k, v in module.state_dict().items()}


# --- tril, triu, repeat_interleave, softmax ---


@pytest.mark.parametrize("diagonal", [-2, -1, 0, 1, 3])
def test_tril_and_triu_match_numpy_on_batches_of_matrices(diagonal):
    x = randn(2, 3, 4, 5).astype(np.float32)
    np.testing.assert_array_equal(graphc.tensor(x).tril(diagonal).numpy(), np.tril(x, diagonal))
    np.testing.assert_array_equal(
        graphc.triu(graphc.tensor(x), diagonal=diagonal).numpy(), np.triu(x, diagonal)
    )
    y = graphc.tensor(x)
    assert y.triu_(diagonal) is y and np.array_equal(y.numpy(), np.triu(x, diagonal))
    out = graphc.empty(0)
    assert graphc.tril(graphc.tensor(x), diagonal, out=out) is out and np.array_equal(
        out.numpy(), np.tril(x, diagonal)
    )


def test_tril_needs_a_matrix_and_an_int_diagonal():
    with pytest.raises(graphc.ShapeError, match="at least 2 dimensions"):
        graphc.ones(3).tril()
    with pytest.raises(TypeError, match="diagonal"):
        graphc.ones(3, 3).triu(0.5)


def test_repeat_interleave_matches_numpy():
    x = randn(2, 3).astype(np.float32)
    g = graphc.tensor(x)
    np.testing.assert_array_equal(g.repeat_interleave(2).numpy(), np.repeat(x, 2))
    np.testing.assert_array_equal(graphc.repeat_interleave(g, 3, dim=-2).numpy(), np.repeat(x, 3, axis=0))
    counts = np.array([1, 0, 2])
    np.testing.assert_array_equal(
        g.repeat_interleave(graphc.tensor(counts), dim=1).numpy(), np.repeat(x, counts, axis=1)
    )
    with pytest.raises(graphc.ShapeError, match="3 counts"):
        g.repeat_interleave(graphc.tensor([1, 2]), dim=1)


def test_softmax_is_a_function_and_a_method():
    x = randn(3, 4).astype(np.float32)
    want = ref_softmax(x.astype(np.float64))
    np.testing.assert_allclose(graphc.softmax(graphc.tensor(x), dim=1).numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(graphc.tensor(x).softmax(-1).numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(graphc.tensor(x).log_softmax(1).numpy(), np.log(want), rtol=1e-5, atol=1e-6)


# --- scaled_dot_product_attention ---


def test_sdpa_matches_the_reference():
    q, k, v = randn(2, 3, 4, 8), randn(2, 3, 6, 8), randn(2, 3, 6, 5)
    want, _ = ref_attention(q, k, v)
    got = F.scaled_dot_product_attention(t64(q), t64(k), t64(v))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)
    want, _ = ref_attention(q, k, v, scale=0.3)
    got = F.scaled_dot_product_attention(t64(q), t64(k), t64(v), scale=0.3)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)


def test_sdpa_causal_attends_to_earlier_positions_only():
    q, k, v = randn(2, 5, 4), randn(2, 7, 4), randn(2, 7, 3)
    future = np.triu(np.full((5, 7), -np.inf), 1)
    want, _ = ref_attention(q, k, v, future)
    got = F.scaled_dot_product_attention(t64(q), t64(k), t64(v), is_causal=True)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)
    # the first position sees the first key only
    np.testing.assert_allclose(got.numpy()[:, 0], v[:, 0], rtol=1e-12)


def test_sdpa_masks_keep_true_positions_and_add_float_ones():
    q, k, v = randn(2, 4, 8), randn(2, 6, 8), randn(2, 6, 5)
    keep = RNG.random((4, 6)) > 0.4
    keep[1] = False  # a query that may attend to nothing gets zeros
    want, _ = ref_attention(q, k, v, as_bias(keep, keep=True))
    got = F.scaled_dot_product_attention(t64(q), t64(k), t64(v), attn_mask=graphc.tensor(keep)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert np.all(got[:, 1] == 0)
    bias = randn(2, 1, 6)
    want, _ = ref_attention(q, k, v, bias)
    got = F.scaled_dot_product_attention(t64(q), t64(k), t64(v), attn_mask=t64(bias))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)


def test_sdpa_grouped_query_heads_share_keys():
    q, k, v = randn(1, 6, 3, 4), randn(1, 2, 5, 4), randn(1, 2, 5, 4)
    want, _ = ref_attention(q, np.repeat(k, 3, axis=1), np.repeat(v, 3, axis=1))
    got = F.scaled_dot_product_attention(t64(q), t64(k), t64(v), enable_gqa=True)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)


def test_sdpa_says_what_does_not_fit():
    q = graphc.randn(2, 4, 8)
    with pytest.raises(graphc.ShapeError, match=r"expected query \(..., L, E\)"):
        F.scaled_dot_product_attention(q, graphc.randn(2, 6, 7), graphc.randn(2, 6, 5))
    with pytest.raises(ValueError, match="should not be set when is_causal"):
        F.scaled_dot_product_attention(
            q, q, q, attn_mask=graphc.ones(4, 4, dtype=graphc.bool), is_causal=True
        )
    with pytest.raises(TypeError, match="bool or floating-point"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=graphc.ones(4, 4, dtype=graphc.int64))
    with pytest.raises(RuntimeError, match="does not broadcast"):  # a ShapeError is a RuntimeError too
        F.scaled_dot_product_attention(q, q, q, attn_mask=graphc.ones(3, 4, dtype=graphc.bool))


def test_sdpa_dropout_drops_weights_and_scales_the_rest():
    q = graphc.randn(1, 64, 8)
    v = graphc.ones(1, 64, 1)
    graphc.manual_seed(0)
    out = F.scaled_dot_product_attention(q, q, v, dropout_p=0.5).numpy()
    # each row sums its kept weights, scaled by 2: about 1 on average, not exactly 1 anywhere
    assert 0.8 < out.mean() < 1.2 and not np.allclose(out, 1.0)


def test_sdpa_gradients():
    keep = graphc.tensor(RNG.random((3, 4)) > 0.3)
    assert gradcheck(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=keep),
        (t64(randn(2, 3, 5), True), t64(randn(2, 4, 5), True), t64(randn(2, 4, 2), True)),
    )
    assert gradcheck(
        lambda q, k, v, bias: F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=False),
        (t64(randn(3, 5), True), t64(randn(4, 5), True), t64(randn(4, 2), True), t64(randn(3, 4), True)),
    )
    assert gradcheck(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        (t64(randn(2, 4, 3), True), t64(randn(2, 4, 3), True), t64(randn(2, 4, 2), True)),
    )


# --- MultiheadAttention ---


PYTORCH_MHA_KEYS = ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]


def test_mha_has_pytorchs_parameters_and_initialisation():
    graphc.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4)
    assert list(mha.state_dict()) == PYTORCH_MHA_KEYS
    assert mha.in_proj_weight.shape == (48, 16) and mha.q_proj_weight is None
    assert np.all(mha.in_proj_bias.detach().numpy() == 0) and np.all(mha.out_proj.bias.detach().numpy() == 0)
    bound = np.sqrt(6 / (16 + 48))  # xavier-uniform over the packed (3E, E) weight
    assert np.abs(mha.in_proj_weight.detach().numpy()).max() <= bound
    other = nn.MultiheadAttention(16, 4, kdim=5, vdim=3, bias=False, add_bias_kv=True)
    assert list(other.state_dict()) == [
        "q_proj_weight",
        "k_proj_weight",
        "v_proj_weight",
        "bias_k",
        "bias_v",
        "out_proj.weight",
    ]
    assert other.k_proj_weight.shape == (16, 5) and other.v_proj_weight.shape == (16, 3)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        nn.MultiheadAttention(10, 3)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize(
    "masks",
    ["none", "padding", "bool attn", "float attn per head", "both"],
)
def test_mha_matches_the_reference(batch_first, masks):
    heads, (L, S, N, E) = 2, (4, 6, 3, 8)
    mha = nn.MultiheadAttention(E, heads, batch_first=batch_first, dtype=graphc.float64).eval()
    sd = numpy_state(mha)
    query, key, value = randn(L, N, E), randn(S, N, E), randn(S, N, E)
    padding = RNG.random((N, S)) > 0.7 if masks in ("padding", "both") else None
    attn = {
        "bool attn": RNG.random((L, S)) > 0.8,
        "both": RNG.random((L, S)) > 0.8,
        "float attn per head": randn(N * heads, L, S),
    }.get(masks)
    want, weights = ref_mha(sd, query, key, value, heads, padding, attn)

    def arg(x):
        return t64(x.transpose(1, 0, 2) if batch_first else x)

    out, w = mha(
        arg(query),
        arg(key),
        arg(value),
        key_padding_mask=None if padding is None else graphc.tensor(padding),
        attn_mask=None if attn is None else graphc.tensor(attn),
        average_attn_weights=False,
    )
    got = out.detach().numpy()
    np.testing.assert_allclose(got.transpose(1, 0, 2) if batch_first else got, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(w.detach().numpy(), weights, rtol=1e-9, atol=1e-12)
    mean = mha(arg(query), arg(key), arg(value), attn_mask=None if attn is None else graphc.tensor(attn))[1]
    expected = ref_mha(sd, query, key, value, heads, None, attn)[1].mean(1)
    np.testing.assert_allclose(mean.detach().numpy(), expected, rtol=1e-9, atol=1e-12)


def test_mha_self_attention_unbatched_and_other_key_sizes():
    mha = nn.MultiheadAttention(8, 4, dtype=graphc.float64).eval()
    sd = numpy_state(mha)
    x = randn(5, 8)
    want, w = ref_mha(sd, x[:, None], x[:, None], x[:, None], 4)
    x_ = t64(x)
    out, weights = mha(x_, x_, x_)
    assert out.shape == (5, 8) and weights.shape == (5, 5)
    np.testing.assert_allclose(out.detach().numpy(), want[:, 0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(weights.detach().numpy(), w[0].mean(0), rtol=1e-9, atol=1e-12)
    cross = nn.MultiheadAttention(8, 2, kdim=5, vdim=3, dtype=graphc.float64).eval()
    sd = numpy_state(cross)
    q, k, v = randn(4, 2, 8), randn(6, 2, 5), randn(6, 2, 3)
    out, _ = cross(t64(q), t64(k), t64(v), need_weights=False)
    np.testing.assert_allclose(out.detach().numpy(), ref_mha(sd, q, k, v, 2)[0], rtol=1e-9, atol=1e-12)


def test_mha_extra_key_and_zero_attention():
    """add_bias_kv appends a learned key and value; add_zero_attn a key and value of zeros."""
    mha = nn.MultiheadAttention(8, 2, add_bias_kv=True, add_zero_attn=True, dtype=graphc.float64).eval()
    sd = numpy_state(mha)
    q, kv = randn(3, 2, 8), randn(4, 2, 8)
    wk, wv = np.split(sd["in_proj_weight"], 3)[1:]
    bk, bv = np.split(sd["in_proj_bias"], 3)[1:]
    out, weights = mha(
        t64(q), t64(kv), t64(kv), key_padding_mask=graphc.tensor([[False, True, False, False]] * 2)
    )
    assert weights.shape == (2, 3, 6)  # 4 keys, the learned one and the zero one
    # the reference: project, append the learned key (already projected) and then zeros
    k = np.concatenate([kv @ wk.T + bk, np.broadcast_to(sd["bias_k"], (1, 2, 8))])
    v = np.concatenate([kv @ wv.T + bv, np.broadcast_to(sd["bias_v"], (1, 2, 8))])
    k = np.concatenate([k, np.zeros((1, 2, 8))])
    v = np.concatenate([v, np.zeros((1, 2, 8))])
    wq, bq = np.split(sd["in_proj_weight"], 3)[0], np.split(sd["in_proj_bias"], 3)[0]

    def split(x):
        return x.reshape(x.shape[0], 2, 2, 4).transpose(1, 2, 0, 3)

    bias = np.where(np.array([False, True, False, False, False, False]), -np.inf, 0.0)
    o, w = ref_attention(split(q @ wq.T + bq), split(k), split(v), bias)
    o = o.transpose(2, 0, 1, 3).reshape(3, 2, 8) @ sd["out_proj.weight"].T + sd["out_proj.bias"]
    np.testing.assert_allclose(out.detach().numpy(), o, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(weights.detach().numpy(), w.mean(1), rtol=1e-9, atol=1e-12)


def test_mha_says_what_does_not_fit():
    mha = nn.MultiheadAttention(8, 2)
    x = graphc.randn(4, 2, 8)
    with pytest.raises(graphc.ShapeError, match="embedding size 8"):
        mha(x, graphc.randn(4, 2, 6), x)
    with pytest.raises(graphc.ShapeError, match="all 3-D"):
        mha(x, graphc.randn(4, 8), x)
    with pytest.raises(graphc.ShapeError, match=r"key_padding_mask of shape \[2, 4\]"):
        mha(x, x, x, key_padding_mask=graphc.zeros(4, 2, dtype=graphc.bool))
    with pytest.raises(graphc.ShapeError, match=r"3-D attn_mask must be \(4, 4, 4\)"):
        mha(x, x, x, attn_mask=graphc.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="pass attn_mask too"):
        mha(x, x, x, is_causal=True)


def test_mha_gradients():
    mha = nn.MultiheadAttention(4, 2, dtype=graphc.float64).eval()
    padding = graphc.tensor([[False, False, True], [False, False, False]])

    def f(q, kv):
        out, weights = mha(q, kv, kv, key_padding_mask=padding)
        return out.sum() + (weights * weights).sum()

    assert gradcheck(f, (t64(randn(2, 2, 4), True), t64(randn(3, 2, 4), True)))
    q = t64(randn(2, 2, 4), True)
    mha(q, q, q)[0].sum().backward()
    assert all(p.grad is not None for p in mha.parameters())


# --- encoder, decoder, transformer ---


PYTORCH_ENCODER_LAYER_KEYS = [
    "self_attn.in_proj_weight",
    "self_attn.in_proj_bias",
    "self_attn.out_proj.weight",
    "self_attn.out_proj.bias",
    "linear1.weight",
    "linear1.bias",
    "linear2.weight",
    "linear2.bias",
    "norm1.weight",
    "norm1.bias",
    "norm2.weight",
    "norm2.bias",
]


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_matches_the_reference(norm_first):
    layer = nn.TransformerEncoderLayer(8, 2, 16, norm_first=norm_first, dtype=graphc.float64)
    assert list(layer.state_dict()) == PYTORCH_ENCODER_LAYER_KEYS
    encoder = nn.TransformerEncoder(layer, 2).eval()
    for p in encoder.parameters():  # the clones start equal: make them differ
        p.data = p.data + graphc.randn(*p.shape, dtype=graphc.float64) * 0.1
    sd = numpy_state(encoder)
    x = randn(5, 3, 8)
    mask = np.triu(np.full((5, 5), -np.inf), 1)
    padding = np.array([[False] * 5, [False, False, False, True, True], [False] * 4 + [True]])
    want = x
    for i in range(2):
        want = ref_encoder_layer(want, sd, 2, f"layers.{i}.", mask, padding, norm_first)
    got = encoder(t64(x), mask=t64(mask), src_key_padding_mask=graphc.tensor(padding), is_causal=True)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-9, atol=1e-10)


def test_transformer_matches_the_reference_and_makes_causal_masks():
    model = nn.Transformer(8, 2, 1, 1, 16, batch_first=True, dtype=graphc.float64).eval()
    mask = nn.Transformer.generate_square_subsequent_mask(4)
    np.testing.assert_array_equal(mask.numpy(), np.triu(np.full((4, 4), -np.inf, np.float32), 1))
    sd = numpy_state(model)
    src, tgt = randn(2, 6, 8), randn(2, 4, 8)
    causal = np.triu(np.full((4, 4), -np.inf), 1)
    memory = ref_encoder_layer(src.transpose(1, 0, 2), sd, 2, "encoder.layers.0.")
    memory = ref_layer_norm(memory, sd, "encoder.norm")
    want = ref_decoder_layer(tgt.transpose(1, 0, 2), memory, sd, 2, "decoder.layers.0.", causal)
    want = ref_layer_norm(want, sd, "decoder.norm").transpose(1, 0, 2)
    got = model(t64(src), t64(tgt), tgt_mask=t64(causal), tgt_is_causal=True)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-9, atol=1e-10)
    with pytest.raises(graphc.ShapeError, match="batch number of src and tgt"):
        model(t64(src), t64(randn(3, 4, 8)))


def test_a_small_transformer_learns_to_find_the_largest_token():
    """Each sequence's label is the position of its largest token: attention must compare
    positions. Trained with dropout, Adam and batch-first inputs."""
    graphc.manual_seed(0)
    rng = np.random.default_rng(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 16)
            self.position = nn.Parameter(graphc.randn(6, 16) * 0.1)
            layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.05, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 1)
            self.score = nn.Linear(16, 1)

        def forward(self, tokens):
            return self.score(self.encoder(self.embed(tokens) + self.position)).squeeze(-1)

    net = Net()
    opt = graphc.optim.Adam(net.parameters(), lr=3e-3)

    def batch(n):
        tokens = np.stack([rng.permutation(10)[:6] for _ in range(n)])
        return graphc.tensor(tokens), graphc.tensor(tokens.argmax(1))

    for _ in range(250):
        tokens, labels = batch(32)
        loss = F.cross_entropy(net(tokens), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    tokens, labels = batch(200)
    with graphc.no_grad():
        accuracy = (net(tokens).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.9, accuracy


# --- capture ---


class CausalLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(30, 16)
        layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, 2)
        self.head = nn.Linear(16, 30)

    def forward(self, tokens):
        mask = nn.Transformer.generate_square_subsequent_mask(tokens.size(1))
        return self.head(self.encoder(self.embed(tokens), mask=mask, is_causal=True))


def test_a_scripted_transformer_runs_any_batch_and_length(tmp_path):
    """Batch and sequence length symbolic: the causal mask is made from the length at run time;
    the compiled code, the interpreter and the runtime agree with eager."""
    graphc.manual_seed(3)
    model = CausalLM().eval()
    example = graphc.randint(0, 30, (2, 7))
    dynamic = {"tokens": {0: "batch", 1: "seq"}}
    scripted = graphc.script(model, (example,), dynamic=dynamic)
    interpreted = graphc.script(model, (example,), dynamic=dynamic, backend="interpreter")
    assert [str(d) for d in scripted.graph.inputs[0].type.shape] == ["batch", "seq"]
    path = tmp_path / "lm.gcm"
    scripted.save(path)
    loaded = runtime.load(path)
    # the causal mask is computed once per length, the embeddings are gathers in kernels: the
    # whole model is one native call
    assert loaded._executables["forward"].native is not None
    for shape in [(2, 7), (3, 4), (1, 1), (4, 11)]:
        tokens = graphc.randint(0, 30, shape)
        with graphc.no_grad():
            want = model(tokens).numpy()
        np.testing.assert_allclose(scripted(tokens).numpy(), want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(interpreted(tokens).numpy(), want, rtol=1e-5, atol=1e-6)
        (out,) = loaded(tokens.numpy())
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
    # the logits at a position do not depend on later tokens
    tokens = graphc.randint(0, 30, (1, 6))
    changed = tokens.clone()
    changed[0, 4:] = (changed[0, 4:] + 1) % 30
    np.testing.assert_allclose(scripted(tokens).numpy()[0, :4], scripted(changed).numpy()[0, :4], rtol=1e-5)


def test_a_scripted_transformer_runs_on_the_emulated_gpu():
    """The same model compiled to CUDA kernels (run on the CPU emulation of CUDA): the causal
    mask and the embedding lookup run through the device's array module between kernels."""
    from codegen.cuda import emulate, nvrtc

    if emulate.compiler() is None or not nvrtc.available():
        pytest.skip("needs a C++ compiler (g++) and NVRTC")
    graphc.manual_seed(3)
    model = CausalLM().eval()
    scripted = graphc.script(
        model,
        (graphc.randint(0, 30, (2, 7)),),
        dynamic={"tokens": {0: "batch", 1: "seq"}},
        device=emulate.EmulatedDevice(),
    )
    assert scripted.backend == "cuda"
    for shape in [(2, 7), (3, 5), (2, 7)]:
        tokens = graphc.randint(0, 30, shape)
        with graphc.no_grad():
            want = model(tokens).numpy()
        np.testing.assert_allclose(scripted(tokens).numpy(), want, rtol=1e-4, atol=1e-5)
    # the causal mask is made once per length (and kept on the device), not between kernels
    exe = scripted._executable("forward")
    assert exe.sized is not None and len(exe.sized._kept) == 2
    interpreted = {s.node.op for s in exe.steps if not hasattr(s, "kernel")}
    assert not interpreted & {"full", "triu", "arange"}, interpreted
