"""CTC loss against a brute-force sum over every alignment (every path of T labels that
collapses, repeats merged and blanks dropped, to the target), its reductions, target formats and
impossible alignments, and its gradient by finite differences."""

import itertools
import math

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from graphc.autograd import gradcheck

RNG = np.random.default_rng(9)


def _collapse(path, blank):
    out = []
    for i, c in enumerate(path):
        if c != blank and (i == 0 or c != path[i - 1]):
            out.append(c)
    return out


def _brute_force_nll(lp: np.ndarray, target: list, length: int, blank: int) -> float:
    """-log of the summed probability of every path over the first `length` steps of lp (T, C)
    that collapses to `target`."""
    total = 0.0
    for path in itertools.product(range(lp.shape[1]), repeat=length):
        if _collapse(path, blank) == list(target):
            total += math.exp(sum(lp[t, c] for t, c in enumerate(path)))
    return -math.log(total) if total > 0 else math.inf


def _log_softmax(x, axis):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("blank", [0, 3])
def test_ctc_loss_is_the_sum_over_every_alignment(blank):
    """Repeated labels (which need a blank between them), empty targets, inputs shorter than
    the whole tensor, a target no input that short can emit (inf), every reduction."""
    T, C = 5, 4
    lp = _log_softmax(RNG.standard_normal((T, 5, C)), 2)
    labels = [c for c in range(C) if c != blank]
    targets = np.full((5, 3), labels[0])
    rows = [
        [labels[1], labels[1]],
        [labels[0], labels[1], labels[2]],
        [],
        [labels[2]],
        [labels[0], labels[0], labels[0]],
    ]
    for n, row in enumerate(rows):
        targets[n, : len(row)] = row
    input_lengths, target_lengths = [5, 4, 3, 1, 4], [len(r) for r in rows]
    want = np.array([_brute_force_nll(lp[:, n], rows[n], input_lengths[n], blank) for n in range(5)])
    assert want[4] == math.inf  # (three equal labels need five steps)
    got = F.ctc_loss(graphc.tensor(lp), graphc.tensor(targets), input_lengths, target_lengths, blank, "none")
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    kept = want.copy()
    kept[4] = 0.0
    loss = nn.CTCLoss(blank, "sum", zero_infinity=True)(
        graphc.tensor(lp), graphc.tensor(targets), input_lengths, target_lengths
    )
    np.testing.assert_allclose(loss.item(), kept.sum(), rtol=1e-12)
    mean = F.ctc_loss(
        graphc.tensor(lp), graphc.tensor(targets), input_lengths, target_lengths, blank, zero_infinity=True
    )
    np.testing.assert_allclose(mean.item(), (kept / np.maximum(target_lengths, 1)).mean(), rtol=1e-12)


def test_concatenated_and_unbatched_targets():
    lp = _log_softmax(RNG.standard_normal((4, 2, 3)), 2)
    padded = F.ctc_loss(graphc.tensor(lp), graphc.tensor([[1, 2], [2, 0]]), [4, 3], [2, 1], reduction="none")
    joined = F.ctc_loss(graphc.tensor(lp), graphc.tensor([1, 2, 2]), (4, 3), (2, 1), reduction="none")
    np.testing.assert_array_equal(padded.numpy(), joined.numpy())
    single = F.ctc_loss(graphc.tensor(lp[:, 1]), graphc.tensor([2]), [3], [1], reduction="none")
    assert single.shape == () and single.item() == pytest.approx(padded[1].item())
    with pytest.raises(graphc.ShapeError, match="do not add up"):
        F.ctc_loss(graphc.tensor(lp), graphc.tensor([1, 2]), [4, 3], [2, 1])
    with pytest.raises(ValueError, match="input lengths must lie in"):
        F.ctc_loss(graphc.tensor(lp), graphc.tensor([[1, 2], [2, 0]]), [5, 3], [2, 1])
    with pytest.raises(IndexError, match="out of range for 3 classes"):
        F.ctc_loss(graphc.tensor(lp), graphc.tensor([[1, 7], [2, 0]]), [4, 3], [2, 1])


def test_ctc_gradient_by_finite_differences():
    """For log-probabilities themselves and through log_softmax (how models use it); zero for
    a sample without an alignment when zero_infinity is set, and past each input's length."""
    targets, input_lengths, target_lengths = graphc.tensor([[1, 1], [2, 1], [1, 2]]), [4, 3, 1], [2, 2, 2]
    x = graphc.tensor(RNG.standard_normal((4, 3, 3)), requires_grad=True)

    def loss(x):
        return F.ctc_loss(
            F.log_softmax(x, 2), targets, input_lengths, target_lengths, zero_infinity=True, reduction="none"
        )

    assert gradcheck(loss, (x,))
    lp = graphc.tensor(_log_softmax(RNG.standard_normal((4, 3, 3)), 2), requires_grad=True)
    assert gradcheck(
        lambda lp: F.ctc_loss(lp, targets, input_lengths, target_lengths, zero_infinity=True), (lp,)
    )
    F.ctc_loss(lp, targets, input_lengths, target_lengths, zero_infinity=True, reduction="sum").backward()
    grad = lp.grad.numpy()
    assert not grad[:, 2].any()  # (two labels cannot follow one step)
    assert not grad[3:, 1].any()  # (past the second sample's three steps)
