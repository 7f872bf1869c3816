"""Inference latency of an LSTM text classifier (embedding 1000 x 64 -> LSTM 64 -> 128 ->
linear to 2 classes on the last hidden state), batch and sequence length dynamic: graphc's
runtime (the .gcm file; the time steps are one `scan` node whose body, the LSTM cell, is
compiled for this CPU and run once per step) against PyTorch eager, TorchScript, ONNX Runtime
and torch.compile on the same weights, in the same run.

Run: python benchmarks/lstm.py [--repeat N] [--no-compile]
     (needs torch, onnxruntime, onnx, onnxscript; --no-compile skips torch.compile)

Every runtime uses 2 threads; each cell is the median over N rounds (see infer.py's
per_call_ms); outputs are checked against PyTorch eager.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from infer import checked_row, peer_runners, start, torch_peers  # noqa: E402

VOCAB, EMBED, HIDDEN, CLASSES = 1000, 64, 128, 2
SHAPES = [(1, 32), (16, 64), (64, 128)]  # (batch, sequence length)


def classifier(torch_like):
    nn = torch_like.nn

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, EMBED)
            self.lstm = nn.LSTM(EMBED, HIDDEN, batch_first=True)
            self.fc = nn.Linear(HIDDEN, CLASSES)

        def forward(self, tokens):
            _, (h, _) = self.lstm(self.embed(tokens))
            return self.fc(h[-1])

    return Classifier()


def main() -> None:
    args, ort, torch = start(__doc__.splitlines()[0])

    import graphc
    import runtime

    graphc.manual_seed(0)
    ours = classifier(graphc).eval()
    theirs = classifier(torch).eval()
    theirs.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()})
    example = np.random.default_rng(0).integers(0, VOCAB, (2, 8))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lstm"
        dynamic = {"tokens": {0: "batch", 1: "seq"}}
        graphc.script(ours, (graphc.tensor(example),), dynamic=dynamic).save(f"{path}.gcm")
        loaded = runtime.load(f"{path}.gcm", backend="llvm")
        shapes = {"tokens": {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")}}
        session, scripted, compiled = torch_peers(
            theirs, example, path, ("tokens", "logits"), shapes, args, ort, torch
        )
        print(
            "| batch x length | graphc runtime | PyTorch eager | TorchScript | ONNX Runtime | torch.compile |"
        )  # noqa: E501
        print("|---:|---:|---:|---:|---:|---:|")
        for batch, length in SHAPES:
            tokens = np.random.default_rng(batch).integers(0, VOCAB, (batch, length))
            tt = torch.from_numpy(tokens)
            with torch.no_grad():
                expected = theirs(tt).numpy()
            runners = peer_runners(loaded, theirs, scripted, session, compiled, "tokens", tokens, tt)
            with torch.no_grad():
                checked_row(f"{batch} x {length}", runners, expected, args.repeat)


if __name__ == "__main__":
    main()
