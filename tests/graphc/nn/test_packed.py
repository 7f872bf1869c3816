"""nn.utils.rnn: padding and packing batches of sequences of different lengths, and the
recurrent layers on packed batches, which must give each sequence what it gets alone."""

import numpy as np
import pytest

import graphc
import graphc.nn as nn
from graphc.autograd import gradcheck
from graphc.nn.utils.rnn import (
    PackedSequence,
    pack_padded_sequence,
    pack_sequence,
    pad_packed_sequence,
    pad_sequence,
    unpack_sequence,
    unpad_sequence,
)

RNG = np.random.default_rng(4)
LENGTHS = [2, 5, 3]


def _sequences(width=3):
    return [graphc.tensor(RNG.standard_normal((n, width))) for n in LENGTHS]


def test_pad_sequence_stacks_with_padding_on_either_side():
    seqs = _sequences()
    padded = pad_sequence(seqs, batch_first=True, padding_value=-1.0).numpy()
    assert padded.shape == (3, 5, 3)
    for i, s in enumerate(seqs):
        np.testing.assert_array_equal(padded[i, : LENGTHS[i]], s.numpy())
        assert (padded[i, LENGTHS[i] :] == -1).all()
    left = pad_sequence(seqs, padding_side="left").numpy()  # (T, N, *)
    np.testing.assert_array_equal(left[5 - LENGTHS[0] :, 0], seqs[0].numpy())
    with pytest.raises(ValueError, match="padding_side"):
        pad_sequence(seqs, padding_side="middle")


def test_packing_orders_steps_then_the_longest_sequences_first():
    seqs = _sequences()
    padded = pad_sequence(seqs, batch_first=True)
    packed = pack_padded_sequence(padded, LENGTHS, batch_first=True, enforce_sorted=False)
    assert packed.batch_sizes.tolist() == [3, 3, 2, 1, 1]
    assert packed.sorted_indices.tolist() == [1, 2, 0] and packed.unsorted_indices.tolist() == [2, 0, 1]
    order = [1, 2, 0]
    want = [seqs[n].numpy()[t] for t in range(5) for n in order if LENGTHS[n] > t]
    np.testing.assert_array_equal(packed.data.numpy(), np.stack(want))
    back, lengths = pad_packed_sequence(packed, batch_first=True, padding_value=7.0, total_length=6)
    assert lengths.tolist() == LENGTHS and back.shape == (3, 6, 3)
    for i, s in enumerate(seqs):
        np.testing.assert_array_equal(back.numpy()[i, : LENGTHS[i]], s.numpy())
        assert (back.numpy()[i, LENGTHS[i] :] == 7).all()
    for a, b in zip(unpack_sequence(packed), seqs, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(unpad_sequence(padded, LENGTHS, batch_first=True), seqs, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    sorted_seqs = sorted(seqs, key=lambda s: -s.shape[0])
    assert pack_sequence(sorted_seqs).sorted_indices is None
    with pytest.raises(ValueError, match="sorted in decreasing order"):
        pack_padded_sequence(padded, LENGTHS, batch_first=True)
    with pytest.raises(ValueError, match="total_length 4 is less"):
        pad_packed_sequence(packed, total_length=4)
    assert (
        isinstance(packed.to(graphc.float32), PackedSequence)
        and packed.to(graphc.float32).data.dtype == graphc.float32
    )


@pytest.mark.parametrize("layer", [nn.LSTM, nn.GRU, nn.RNN])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_layers_on_a_packed_batch_give_each_sequence_its_own_result(layer, bidirectional):
    """Each sequence's outputs and last states as if it ran alone (the reverse direction
    starting at its own end), with given initial states in the batch's order."""
    graphc.manual_seed(3)
    net = layer(3, 4, num_layers=2, bidirectional=bidirectional).double()
    seqs = _sequences()
    states = 2 * (2 if bidirectional else 1)
    h0 = graphc.tensor(RNG.standard_normal((states, 3, 4)))
    hx = (h0, graphc.tensor(RNG.standard_normal((states, 3, 4)))) if layer is nn.LSTM else h0
    packed = pack_sequence(seqs, enforce_sorted=False)
    output, hidden = net(packed, hx)
    assert isinstance(output, PackedSequence) and output.batch_sizes.tolist() == packed.batch_sizes.tolist()
    padded, lengths = pad_packed_sequence(output)
    for i, s in enumerate(seqs):
        own_hx = tuple(h[:, i : i + 1] for h in hx) if layer is nn.LSTM else hx[:, i : i + 1]
        alone, own_hidden = net(s.unsqueeze(1), own_hx)
        np.testing.assert_allclose(
            padded.detach().numpy()[: LENGTHS[i], i], alone.detach().numpy()[:, 0], atol=1e-12
        )
        assert not padded.detach().numpy()[LENGTHS[i] :, i].any()
        for got, want in zip(
            hidden if layer is nn.LSTM else (hidden,),
            own_hidden if layer is nn.LSTM else (own_hidden,),
            strict=True,
        ):
            np.testing.assert_allclose(got.detach().numpy()[:, i], want.detach().numpy()[:, 0], atol=1e-12)


def test_gradients_flow_through_packed_sequences():
    graphc.manual_seed(5)
    gru = nn.GRU(2, 3).double()
    x = graphc.tensor(RNG.standard_normal((4, 3, 2)), requires_grad=True)

    def run(x):
        output, h = gru(pack_padded_sequence(x, [4, 2, 1]))
        return pad_packed_sequence(output)[0].sum() + h.sum()

    assert gradcheck(run, (x,))
    run(x).backward()
    assert not x.grad.numpy()[2:, 1].any() and not x.grad.numpy()[1:, 2].any()  # (padding gets none)
