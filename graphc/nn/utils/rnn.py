"""`nn.utils.rnn`: batches of sequences of different lengths, padded or packed, as PyTorch's.

    >>> padded = pad_sequence([a, b, c], batch_first=True)           # (3, longest, *)
    >>> packed = pack_padded_sequence(padded, [5, 3, 2], batch_first=True)
    >>> output, (h, c) = lstm(packed)                                 # each sequence's own end
    >>> output, lengths = pad_packed_sequence(output, batch_first=True)

A `PackedSequence` holds the time steps of every sequence one after another, step by step:
`data` (sum of the lengths, *), `batch_sizes` (how many sequences are still running at each
step), and the order the batch was sorted into (longest first) and back.
"""

from __future__ import annotations

from typing import NamedTuple

import graphc as G
from graphc._tensor import Tensor


class PackedSequence(NamedTuple):
    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor | None = None
    unsorted_indices: Tensor | None = None

    def to(self, *args, **kwargs) -> PackedSequence:
        """The data moved or cast (the bookkeeping stays on the CPU, as PyTorch keeps it)."""
        return self._replace(data=self.data.to(*args, **kwargs))

    def cpu(self) -> PackedSequence:
        return self.to("cpu")

    def cuda(self, device=None) -> PackedSequence:
        return self.to("cuda" if device is None else f"cuda:{device}" if isinstance(device, int) else device)

    @property
    def is_cuda(self) -> bool:
        return self.data.is_cuda


def _lengths(lengths) -> list[int]:
    if isinstance(lengths, Tensor):
        lengths = lengths.tolist()
    out = [int(n) for n in lengths]
    if any(n <= 0 for n in out):
        raise ValueError(f"pack_padded_sequence: every length must be positive, got {out}")
    return out


def _steps(batch_sizes: list[int]) -> list[tuple[int, int]]:
    """(step, sequence) of each element of a packed sequence's data, in order."""
    return [(t, n) for t, size in enumerate(batch_sizes) for n in range(size)]


def pack_padded_sequence(
    input: Tensor, lengths, batch_first: bool = False, enforce_sorted: bool = True
) -> PackedSequence:
    """Pack a padded batch (T, N, *) ((N, T, *) with batch_first) of sequences of `lengths`:
    sorted longest first (with enforce_sorted, they must already be)."""
    lengths = _lengths(lengths)
    if batch_first:
        input = input.transpose(0, 1)
    steps, batch = input.shape[:2]
    if len(lengths) != batch:
        raise ValueError(f"pack_padded_sequence: {len(lengths)} lengths for a batch of {batch}")
    if max(lengths, default=0) > steps:
        raise ValueError(f"pack_padded_sequence: a length of {max(lengths)} for {steps} steps")
    if enforce_sorted:
        if any(a < b for a, b in zip(lengths, lengths[1:], strict=False)):
            raise ValueError(
                "pack_padded_sequence: `lengths` must be sorted in decreasing order when enforce_sorted is "
                f"True (got {lengths}); pass enforce_sorted=False to have them sorted"
            )
        order = list(range(batch))
        sorted_indices = unsorted_indices = None
    else:
        order = sorted(range(batch), key=lambda n: -lengths[n])  # (stable: ties keep their order)
        sorted_indices = G.tensor(order, dtype=G.int64)
        unsorted_indices = G.empty_like(sorted_indices)
        unsorted_indices[sorted_indices] = G.arange(batch)
    ordered = [lengths[n] for n in order]
    batch_sizes = [sum(1 for n in ordered if n > t) for t in range(ordered[0] if ordered else 0)]
    flat = [t * batch + order[i] for t, i in _steps(batch_sizes)]
    data = input.reshape(steps * batch, *input.shape[2:])[G.tensor(flat, dtype=G.int64, device=input.device)]
    return PackedSequence(data, G.tensor(batch_sizes, dtype=G.int64), sorted_indices, unsorted_indices)


def pad_packed_sequence(
    sequence: PackedSequence,
    batch_first: bool = False,
    padding_value: float = 0.0,
    total_length: int | None = None,
) -> tuple[Tensor, Tensor]:
    """The padded batch (T, N, *) ((N, T, *) with batch_first) of a packed sequence, in the
    batch's original order, and each sequence's length (int64)."""
    data, sizes = sequence.data, sequence.batch_sizes.tolist()
    batch = sizes[0] if sizes else 0
    steps = len(sizes)
    if total_length is not None:
        if total_length < steps:
            raise ValueError(
                f"pad_packed_sequence: total_length {total_length} is less than the longest sequence, {steps}"
            )
        steps = total_length
    # each padded position reads its element of data, or a padding row after the data
    where = [data.shape[0]] * (steps * batch)
    for i, (t, n) in enumerate(_steps(sizes)):
        where[t * batch + n] = i
    pad_row = G.full((1, *data.shape[1:]), padding_value, dtype=data.dtype, device=data.device)
    padded = G.cat([data, pad_row])[G.tensor(where, dtype=G.int64, device=data.device)]
    padded = padded.reshape(steps, batch, *data.shape[1:])
    lengths = G.tensor([sum(1 for size in sizes if size > n) for n in range(batch)], dtype=G.int64)
    if sequence.unsorted_indices is not None:
        padded = padded[:, sequence.unsorted_indices.to(data.device)]
        lengths = lengths[sequence.unsorted_indices]
    return (padded.transpose(0, 1) if batch_first else padded), lengths


def pad_sequence(
    sequences, batch_first: bool = False, padding_value: float = 0.0, padding_side: str = "right"
) -> Tensor:
    """The tensors (L_i, *) stacked into (T, N, *) ((N, T, *) with batch_first), T the longest
    length, each padded with `padding_value` on the right (or the left)."""
    if padding_side not in ("right", "left"):
        raise ValueError(f"pad_sequence: padding_side must be 'right' or 'left', got {padding_side!r}")
    sequences = list(sequences)
    if not sequences:
        raise ValueError("pad_sequence: expected at least one sequence")
    longest = max(s.shape[0] for s in sequences)
    rows = []
    for s in sequences:
        missing = longest - s.shape[0]
        fill = G.full((missing, *s.shape[1:]), padding_value, dtype=s.dtype, device=s.device)
        rows.append(G.cat([s, fill] if padding_side == "right" else [fill, s]))
    return G.stack(rows, 0 if batch_first else 1)


def pack_sequence(sequences, enforce_sorted: bool = True) -> PackedSequence:
    """The tensors (L_i, *) packed (longest first with enforce_sorted)."""
    sequences = list(sequences)
    return pack_padded_sequence(
        pad_sequence(sequences), [s.shape[0] for s in sequences], enforce_sorted=enforce_sorted
    )


def unpad_sequence(padded_sequences: Tensor, lengths, batch_first: bool = False) -> list[Tensor]:
    """Each sequence of a padded batch, cut to its length."""
    if not batch_first:
        padded_sequences = padded_sequences.transpose(0, 1)
    return [padded_sequences[i, :n] for i, n in enumerate(_lengths(lengths))]


def unpack_sequence(packed_sequences: PackedSequence) -> list[Tensor]:
    """Each sequence of a packed batch, in the batch's original order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)
