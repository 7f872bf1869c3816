"""Attention and transformers, as in `torch.nn`: `MultiheadAttention`, the encoder and decoder
layers and stacks, and `Transformer`. Parameter names, shapes, initialisation and state-dict keys
are PyTorch's, so a state dict moves between the two.

Everything is a composition of graphc ops (linear, matmul, softmax, layer norm): it trains
through autograd and `graphc.script` captures it, batch and sequence lengths symbolic. Heads
stay a dim of their own, (batch, heads, length, head_dim), so no size is a product of symbols.
"""

from __future__ import annotations

import copy
import math

import graphc as G
from graphc._tensor import Tensor
from graphc.errors import ShapeError
from graphc.nn import functional as F
from graphc.nn import init
from graphc.nn.containers import ModuleList
from graphc.nn.layers import Dropout, Linear
from graphc.nn.module import Module
from graphc.nn.normalization import LayerNorm
from graphc.nn.parameter import Parameter


class MultiheadAttention(Module):
    """Attention over `num_heads` heads of size embed_dim / num_heads, as torch.nn's.

    Inputs are (L, N, E) query and (S, N, E) key and value, (N, L, E) and (N, S, E) with
    `batch_first`, or unbatched (L, E) and (S, E). `forward` returns the output (shaped like the
    query) and, with `need_weights`, the attention weights (N, L, S), averaged over heads unless
    `average_attn_weights=False` gives (N, heads, L, S).

    Masks: `key_padding_mask` (N, S) leaves out padded keys where True (bool) or adds its values
    (float); `attn_mask` (L, S) or (N * heads, L, S) leaves out positions where True or adds its
    values. A query that may attend to no key gets zeros (PyTorch's weights path gives NaN).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(
                f"embed_dim and num_heads must be greater than 0, got embed_dim={embed_dim} and "
                f"num_heads={num_heads} instead"
            )
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        kw = {"device": device, "dtype": dtype}
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.head_dim, self.batch_first = embed_dim // num_heads, batch_first
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(G.empty(3 * embed_dim, embed_dim, **kw))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = Parameter(G.empty(embed_dim, embed_dim, **kw))
            self.k_proj_weight = Parameter(G.empty(embed_dim, self.kdim, **kw))
            self.v_proj_weight = Parameter(G.empty(embed_dim, self.vdim, **kw))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(G.empty(3 * embed_dim, **kw))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, **kw)
        if add_bias_kv:
            self.bias_k = Parameter(G.empty(1, 1, embed_dim, **kw))
            self.bias_v = Parameter(G.empty(1, 1, embed_dim, **kw))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
            init.xavier_normal_(self.bias_v)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        if is_causal and attn_mask is None:
            raise ValueError(
                "MultiheadAttention: is_causal is a hint that attn_mask is the causal mask; pass "
                "attn_mask too (Transformer.generate_square_subsequent_mask makes one)"
            )
        batched = query.dim() == 3
        self._check_inputs(query, key, value, batched)
        self_attention = query is key and key is value
        batch_first = self.batch_first
        if not batched:  # a batch of one, batch first
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
            batch_first = True
        out, weights = self._attend(
            query, key, value, key_padding_mask, attn_mask, need_weights, self_attention, batch_first
        )
        if weights is not None and average_attn_weights:
            weights = weights.mean(1)
        if not batched:
            return out.squeeze(0), None if weights is None else weights.squeeze(0)
        return out, weights

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor, batched: bool) -> None:
        rank = 3 if batched else 2
        if query.dim() not in (2, 3) or key.dim() != rank or value.dim() != rank:
            raise ShapeError(
                "MultiheadAttention: expected query, key and value all 3-D (batched) or all 2-D "
                f"(unbatched), got shapes {list(query.shape)}, {list(key.shape)} and {list(value.shape)}"
            )
        for name, t, size in (
            ("query", query, self.embed_dim),
            ("key", key, self.kdim),
            ("value", value, self.vdim),
        ):
            if t.size(-1) != size:
                raise ShapeError(
                    f"MultiheadAttention: expected {name} of embedding size {size}, got {list(t.shape)}"
                )
        if key.shape[:-1] != value.shape[:-1]:
            raise ShapeError(
                f"MultiheadAttention: key shape {list(key.shape)} does not match "
                f"value shape {list(value.shape)}"
            )

    def _projections(self) -> tuple:
        e = self.embed_dim
        b = self.in_proj_bias
        biases = (None, None, None) if b is None else (b[:e], b[e : 2 * e], b[2 * e :])
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            weights = (w[:e], w[e : 2 * e], w[2 * e :])
        else:
            weights = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        return weights, biases

    def _attend(
        self, query, key, value, key_padding_mask, attn_mask, need_weights, self_attention, batch_first
    ):
        """Attention on 3-D inputs, (N, L, E) with `batch_first`, else (L, N, E): the output in
        the same layout and the (N, heads, L, S) weights (or None). Heads are views of the
        projections, (N, heads, L, head_dim), which the matmuls read in place."""
        heads, head_dim, e = self.num_heads, self.head_dim, self.embed_dim
        n_dim = 0 if batch_first else 1
        batch, length = query.size(n_dim), query.size(1 - n_dim)

        def split(t, parts=1):  # (.., .., parts * E) -> (parts, N, heads, T, head_dim)
            t = t.reshape(t.size(0), t.size(1), parts, heads, head_dim)
            return t.permute(2, 0, 3, 1, 4) if batch_first else t.permute(2, 1, 3, 0, 4)

        extra = self.bias_k is not None or self.add_zero_attn
        if self_attention and self._qkv_same_embed_dim and not extra:  # one matmul for q, k and v
            q, k, v = split(F.linear(query, self.in_proj_weight, self.in_proj_bias), 3).unbind(0)
        else:
            (wq, wk, wv), (bq, bk, bv) = self._projections()
            q, k, v = F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)
            if self.bias_k is not None:  # one more key and value, which every query may attend to
                shape = (batch, 1, e) if batch_first else (1, batch, e)
                k = G.cat([k, self.bias_k.expand(*shape)], dim=1 - n_dim)
                v = G.cat([v, self.bias_v.expand(*shape)], dim=1 - n_dim)
                attn_mask, key_padding_mask = _pad_last(attn_mask), _pad_last(key_padding_mask)
            q, k, v = (split(t)[0] for t in (q, k, v))
            if self.add_zero_attn:  # a key and value of zeros
                zeros = G.zeros(batch, heads, 1, head_dim, dtype=k.dtype, device=k.device)
                k, v = G.cat([k, zeros], dim=2), G.cat([v, zeros], dim=2)
                attn_mask, key_padding_mask = _pad_last(attn_mask), _pad_last(key_padding_mask)
        source = k.size(2)
        scores = G.matmul(q * (1.0 / math.sqrt(head_dim)), k.transpose(-2, -1))  # (N, heads, L, S)
        masked = attn_mask is not None or key_padding_mask is not None
        if attn_mask is not None:
            if attn_mask.dim() == 3:
                if attn_mask.size(0) != batch * heads:
                    raise ShapeError(
                        f"MultiheadAttention: a 3-D attn_mask must be ({batch * heads}, {length}, {source}) "
                        f"(batch * num_heads, L, S), got {list(attn_mask.shape)}"
                    )
                attn_mask = attn_mask.reshape(batch, heads, length, source)
            elif attn_mask.dim() != 2:
                raise ShapeError(
                    f"MultiheadAttention: attn_mask must be 2-D or 3-D, got {list(attn_mask.shape)}"
                )
            scores = F._apply_mask(scores, attn_mask, "attn_mask", keep=False)
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (batch, source):
                raise ShapeError(
                    f"MultiheadAttention: expected key_padding_mask of shape {[batch, source]} (batch, S), "
                    f"got {list(key_padding_mask.shape)}"
                )
            scores = F._apply_mask(scores, key_padding_mask[:, None, None, :], "key_padding_mask", keep=False)
        weights = F._masked_softmax(scores) if masked else F.softmax(scores, -1)
        if self.training and self.dropout > 0.0:
            weights = F.dropout(weights, self.dropout)
        out = G.matmul(weights, v)  # (N, heads, L, head_dim)
        out = out.permute(0, 2, 1, 3) if batch_first else out.permute(2, 0, 1, 3)
        return self.out_proj(out.reshape(out.size(0), out.size(1), e)), weights if need_weights else None


def _pad_last(mask: Tensor | None) -> Tensor | None:
    """A mask with one more column, which masks nothing."""
    if mask is None:
        return None
    return F.pad(mask, (0, 1), value=False if mask.dtype == G.bool else 0.0)


def _activation(activation):
    if callable(activation):
        return activation
    if activation == "relu":
        return F.relu
    if activation == "gelu":
        return F.gelu
    raise ValueError(f"activation should be relu/gelu or a callable, not {activation!r}")


class _Layer(Module):
    """What the encoder and decoder layers share: their sublayers, built in PyTorch's order
    (so state dicts list keys as PyTorch's do), and the self-attention and feed-forward blocks."""

    _cross = False  # the decoder's attention over the encoder's output

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation="relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}

        def attention():
            return MultiheadAttention(
                d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, **kw
            )

        def norm():
            return LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)

        self.self_attn = attention()
        if self._cross:
            self.multihead_attn = attention()
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **kw)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **kw)
        self.norm_first = norm_first
        self.norm1, self.norm2 = norm(), norm()
        if self._cross:
            self.norm3 = norm()
        self.dropout1, self.dropout2 = Dropout(dropout), Dropout(dropout)
        if self._cross:
            self.dropout3 = Dropout(dropout)
        self.activation = _activation(activation)

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal) -> Tensor:
        out = self.self_attn(
            x,
            x,
            x,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=False,
            is_causal=is_causal,
        )[0]
        return self.dropout1(out)

    def _ff_block(self, x: Tensor) -> Tensor:
        last = self.dropout3 if self._cross else self.dropout2
        return last(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerEncoderLayer(_Layer):
    """Self-attention and a feed-forward block, each with a residual connection and layer norm
    (after each block, or before with `norm_first`)."""

    def forward(
        self,
        src: Tensor,
        src_mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff_block(x))


class TransformerDecoderLayer(_Layer):
    """Self-attention, attention over the encoder's output (`memory`) and a feed-forward block,
    each with a residual connection and layer norm."""

    _cross = True

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        tgt_is_causal: bool = False,
        memory_is_causal: bool = False,
    ) -> Tensor:
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(
                self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal
            )
            return x + self._ff_block(self.norm3(x))
        x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
        x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal))
        return self.norm3(x + self._ff_block(x))

    def _mha_block(self, x, memory, attn_mask, key_padding_mask, is_causal) -> Tensor:
        out = self.multihead_attn(
            x,
            memory,
            memory,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=False,
            is_causal=is_causal,
        )[0]
        return self.dropout2(out)


def _clones(layer: Module, n: int) -> ModuleList:
    return ModuleList([copy.deepcopy(layer) for _ in range(n)])


class TransformerEncoder(Module):
    """`num_layers` copies of an encoder layer (each with its own parameters), then `norm`."""

    def __init__(
        self,
        encoder_layer: TransformerEncoderLayer,
        num_layers: int,
        norm: Module | None = None,
        enable_nested_tensor: bool = True,
        mask_check: bool = True,
    ) -> None:
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers, self.norm = num_layers, norm

    def forward(
        self,
        src: Tensor,
        mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool | None = None,
    ) -> Tensor:
        out = src
        for layer in self.layers:
            out = layer(
                out, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal)
            )
        return out if self.norm is None else self.norm(out)


class TransformerDecoder(Module):
    """`num_layers` copies of a decoder layer, then `norm`."""

    def __init__(
        self, decoder_layer: TransformerDecoderLayer, num_layers: int, norm: Module | None = None
    ) -> None:
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers, self.norm = num_layers, norm

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        tgt_is_causal: bool | None = None,
        memory_is_causal: bool = False,
    ) -> Tensor:
        out = tgt
        for layer in self.layers:
            out = layer(
                out,
                memory,
                tgt_mask=tgt_mask,
                memory_mask=memory_mask,
                tgt_key_padding_mask=tgt_key_padding_mask,
                memory_key_padding_mask=memory_key_padding_mask,
                tgt_is_causal=bool(tgt_is_causal),
                memory_is_causal=memory_is_causal,
            )
        return out if self.norm is None else self.norm(out)


class Transformer(Module):
    """An encoder-decoder transformer ("Attention Is All You Need"): `num_encoder_layers`
    encoder layers and `num_decoder_layers` decoder layers, each stack ending in a layer norm."""

    def __init__(
        self,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation="relu",
        custom_encoder: Module | None = None,
        custom_decoder: Module | None = None,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        layer = dict(
            d_model=d_model,
            nhead=nhead,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            activation=activation,
            layer_norm_eps=layer_norm_eps,
            batch_first=batch_first,
            norm_first=norm_first,
            bias=bias,
            **kw,
        )
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            norm = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
            self.encoder = TransformerEncoder(TransformerEncoderLayer(**layer), num_encoder_layers, norm)
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            norm = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
            self.decoder = TransformerDecoder(TransformerDecoderLayer(**layer), num_decoder_layers, norm)
        for p in self.parameters():
            if p.dim() > 1:
                init.xavier_uniform_(p)
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        src_is_causal: bool | None = None,
        tgt_is_causal: bool | None = None,
        memory_is_causal: bool = False,
    ) -> Tensor:
        batch_dim = 0 if self.batch_first else 1
        if src.dim() == 3 and src.size(batch_dim) != tgt.size(batch_dim):
            raise ShapeError(
                f"Transformer: the batch number of src and tgt must be equal, got shapes "
                f"{list(src.shape)} and {list(tgt.shape)}"
            )
        if src.size(-1) != self.d_model or tgt.size(-1) != self.d_model:
            raise ShapeError(
                f"Transformer: the feature number of src and tgt must be equal to d_model ({self.d_model}), "
                f"got shapes {list(src.shape)} and {list(tgt.shape)}"
            )
        memory = self.encoder(
            src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal
        )
        return self.decoder(
            tgt,
            memory,
            tgt_mask=tgt_mask,
            memory_mask=memory_mask,
            tgt_key_padding_mask=tgt_key_padding_mask,
            memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=tgt_is_causal,
            memory_is_causal=memory_is_causal,
        )

    @staticmethod
    def generate_square_subsequent_mask(sz: int, device=None, dtype=None) -> Tensor:
        """A (sz, sz) float mask for causal attention: -inf above the diagonal, 0 elsewhere."""
        return G.triu(G.full((sz, sz), float("-inf"), dtype=dtype, device=device), diagonal=1)
