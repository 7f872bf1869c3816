"""Recurrent layers: RNN (tanh or relu), LSTM and GRU, with PyTorch's parameter names, gate
order and initialisation; `batch_first`, `num_layers`, `bidirectional` and inter-layer
`dropout`. Time steps run as `graphc.scan`: eagerly a Python loop of graphc ops, so autograd
covers them; captured, one `scan` node, so a scripted layer takes sequences of any length.
The cells (RNNCell, LSTMCell, GRUCell) are one such step."""

from __future__ import annotations

import math

import graphc as G
from graphc._tensor import Tensor
from graphc.nn import functional as F
from graphc.nn import init
from graphc.nn.module import Module
from graphc.nn.parameter import Parameter

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _step(mode: str, x, state, w_ih, w_hh, b_ih, b_hh) -> tuple:
    """One time step of a batch x (N, input): the new state, (h,) or (h, c) for LSTM."""
    return _recur(mode, F.linear(x, w_ih, b_ih), state, w_hh, b_hh)


def _recur(mode: str, xw, state, w_hh, b_hh) -> tuple:
    """One time step from the input's part of the gates, xw = W_ih x + b_ih (a layer works it
    out for all steps at once, one matrix product)."""
    h = state[0]
    if mode == "LSTM":
        c = state[1]
        gates = xw + F.linear(h, w_hh, b_hh)
        i, f, g, o = gates.chunk(4, 1)
        c = G.sigmoid(f) * c + G.sigmoid(i) * G.tanh(g)
        return (G.sigmoid(o) * G.tanh(c), c)
    if mode == "GRU":
        gi = xw.chunk(3, 1)
        gh = F.linear(h, w_hh, b_hh).chunk(3, 1)
        r = G.sigmoid(gi[0] + gh[0])
        z = G.sigmoid(gi[1] + gh[1])
        n = G.tanh(gi[2] + r * gh[2])
        return ((1 - z) * n + z * h,)
    act = G.tanh if mode == "RNN_TANH" else G.relu
    return (act(xw + F.linear(h, w_hh, b_hh)),)


def _uniform_init(module: Module, hidden_size: int) -> None:
    """PyTorch's initialisation of recurrent weights: U(-1/sqrt(hidden), 1/sqrt(hidden))."""
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0
    for p in module.parameters():
        init.uniform_(p, -bound, bound)


class _RNNBase(Module):
    mode = "RNN_TANH"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if not 0 <= dropout <= 1:
            raise ValueError("dropout should be a number in range [0, 1]")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional = bidirectional
        gates = _GATES[self.mode] * hidden_size
        directions = 2 if bidirectional else 1
        kw = {"device": device, "dtype": dtype}
        for layer in range(num_layers):
            for d in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                in_size = input_size if layer == 0 else hidden_size * directions
                setattr(self, "weight_ih" + suffix, Parameter(G.empty(gates, in_size, **kw)))
                setattr(self, "weight_hh" + suffix, Parameter(G.empty(gates, hidden_size, **kw)))
                if bias:
                    setattr(self, "bias_ih" + suffix, Parameter(G.empty(gates, **kw)))
                    setattr(self, "bias_hh" + suffix, Parameter(G.empty(gates, **kw)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _uniform_init(self, self.hidden_size)

    def forward(self, input: Tensor, hx=None):
        from graphc.nn.utils.rnn import PackedSequence

        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        lstm = self.mode == "LSTM"
        unbatched = input.dim() == 2
        if unbatched:
            input = input.unsqueeze(1 if not self.batch_first else 0)
            if hx is not None:
                hx = tuple(h.unsqueeze(1) for h in hx) if lstm else hx.unsqueeze(1)
        if input.dim() != 3 or input.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__}: expected input of shape (seq, batch, "
                f"{self.input_size}) (batch first if batch_first), got "
                f"{list(input.shape)}"
            )
        if self.batch_first:
            input = input.transpose(0, 1)
        output, hidden = self._layers(input, hx)
        output = output.transpose(0, 1) if self.batch_first else output
        if unbatched:
            output = output.squeeze(1 if not self.batch_first else 0)
            hidden = tuple(h.squeeze(1) for h in hidden) if lstm else hidden.squeeze(1)
        return output, hidden

    def _forward_packed(self, packed, hx):
        """A packed batch: each sequence's steps up to its own length (the state frozen and
        the output zero past it, so h_n is each sequence's last state); the output packed the
        same way, h_n in the batch's original order."""
        from graphc.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

        lstm = self.mode == "LSTM"
        if packed.data.dim() != 2 or packed.data.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__}: expected packed data of shape (steps, {self.input_size}), "
                f"got {list(packed.data.shape)}"
            )
        # (in the sorted order: lengths longest first)
        padded, lengths = pad_packed_sequence(packed._replace(sorted_indices=None, unsorted_indices=None))
        running = G.arange(padded.shape[0], device=padded.device).unsqueeze(1) < lengths.to(padded.device)
        order, back = packed.sorted_indices, packed.unsorted_indices
        if hx is not None and order is not None:  # (given in the batch's order: into the sorted one)
            hx = tuple(h[:, order] for h in hx) if lstm else hx[:, order]
        output, hidden = self._layers(padded, hx, running.unsqueeze(2))
        data = pack_padded_sequence(output, lengths).data
        if back is not None:
            hidden = tuple(h[:, back] for h in hidden) if lstm else hidden[:, back]
        return PackedSequence(data, packed.batch_sizes, order, back), hidden

    def _layers(self, input: Tensor, hx, running=None):
        """(output, h_n or (h_n, c_n)) of input (T, N, input_size); `running` (T, N, 1) bool:
        where a sequence still runs (the state is kept and the output zero elsewhere)."""
        lstm = self.mode == "LSTM"
        seq, batch = input.shape[:2]
        directions = 2 if self.bidirectional else 1
        shape = (self.num_layers * directions, batch, self.hidden_size)
        if hx is None:
            zeros = G.zeros(*shape, dtype=input.dtype, device=input.device)
            hx = (zeros, zeros) if lstm else zeros
        h0 = hx if not lstm else hx[0]
        if tuple(h0.shape) != shape:
            raise ValueError(f"Expected hidden size {list(shape)}, got {list(h0.shape)}")
        layer_input = input
        finals_h, finals_c = [], []
        for layer in range(self.num_layers):
            outputs = []
            for d in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                params = [
                    getattr(self, n + suffix) if hasattr(self, n + suffix) else None
                    for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                ]
                k = layer * directions + d
                state = (hx[0][k], hx[1][k]) if lstm else (hx[k],)

                w_ih, w_hh, b_ih, b_hh = params

                def step(state, xw, w_hh=w_hh, b_hh=b_hh):
                    state = _recur(self.mode, xw, state, w_hh, b_hh)
                    return state, state[0]

                def masked_step(state, inputs, w_hh=w_hh, b_hh=b_hh):
                    xw, keep = inputs
                    new = _recur(self.mode, xw, state, w_hh, b_hh)
                    new = tuple(G.where(keep, a, b) for a, b in zip(new, state, strict=True))
                    return new, G.where(keep, new[0], G.zeros_like(new[0]))

                xw = F.linear(layer_input, w_ih, b_ih)  # every step's input part at once
                if running is None:
                    state, out = G.scan(step, state, xw, reverse=bool(d))
                else:
                    state, out = G.scan(masked_step, state, (xw, running), reverse=bool(d))
                outputs.append(out)
                finals_h.append(state[0])
                if lstm:
                    finals_c.append(state[1])
            layer_input = outputs[0] if directions == 1 else G.cat(outputs, 2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, True)
        h_n = G.stack(finals_h, 0)
        return layer_input, ((h_n, G.stack(finals_c, 0)) if lstm else h_n)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(_RNNBase):
    """Elman RNN: h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu)."""

    def __init__(self, *args, nonlinearity: str = "tanh", **kwargs) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        object.__setattr__(self, "mode", "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU")
        super().__init__(*args, **kwargs)
        self.nonlinearity = nonlinearity


class LSTM(_RNNBase):
    """Long short-term memory; returns output, (h_n, c_n)."""

    mode = "LSTM"


class GRU(_RNNBase):
    """Gated recurrent unit."""

    mode = "GRU"


class _RNNCellBase(Module):
    mode = "RNN_TANH"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        gates = _GATES[self.mode] * hidden_size
        kw = {"device": device, "dtype": dtype}
        self.weight_ih = Parameter(G.empty(gates, input_size, **kw))
        self.weight_hh = Parameter(G.empty(gates, hidden_size, **kw))
        if bias:
            self.bias_ih = Parameter(G.empty(gates, **kw))
            self.bias_hh = Parameter(G.empty(gates, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _uniform_init(self, self.hidden_size)

    def _state(self, input: Tensor, hx, unbatched: bool) -> Tensor:
        if hx is None:
            return G.zeros(input.shape[0], self.hidden_size, dtype=input.dtype, device=input.device)
        hx = hx.unsqueeze(0) if unbatched else hx
        if tuple(hx.shape) != (input.shape[0], self.hidden_size):
            raise ValueError(
                f"{type(self).__name__}: expected hidden state of shape "
                f"{[input.shape[0], self.hidden_size] if not unbatched else [self.hidden_size]}, "
                f"got {list(hx.shape[1:] if unbatched else hx.shape)}"
            )
        return hx

    def _input(self, input: Tensor) -> tuple[Tensor, bool]:
        if input.dim() not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__}: expected input of shape (batch, {self.input_size}) or "
                f"({self.input_size},), got {list(input.shape)}"
            )
        unbatched = input.dim() == 1
        return (input.unsqueeze(0) if unbatched else input), unbatched

    def forward(self, input: Tensor, hx=None):
        input, unbatched = self._input(input)
        (h,) = _step(self.mode, input, (self._state(input, hx, unbatched),), *self._weights())
        return h.squeeze(0) if unbatched else h

    def _weights(self) -> tuple:
        return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s


class RNNCell(_RNNCellBase):
    """One Elman RNN step: h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device=None,
        dtype=None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        object.__setattr__(self, "mode", "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU")
        super().__init__(input_size, hidden_size, bias, device, dtype)
        self.nonlinearity = nonlinearity


class LSTMCell(_RNNCellBase):
    """One LSTM step: returns (h', c')."""

    mode = "LSTM"

    def forward(self, input: Tensor, hx=None):
        input, unbatched = self._input(input)
        if hx is None:
            state = (self._state(input, None, unbatched),) * 2
        else:
            state = tuple(self._state(input, t, unbatched) for t in hx)
        h, c = _step(self.mode, input, state, *self._weights())
        return (h.squeeze(0), c.squeeze(0)) if unbatched else (h, c)


class GRUCell(_RNNCellBase):
    """One GRU step: returns h'."""

    mode = "GRU"
