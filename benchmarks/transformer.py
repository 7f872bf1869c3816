"""Inference latency of a small transformer encoder (a text classifier: embedding, positions,
nn.TransformerEncoder of 2 layers, d_model 128, 4 heads, feed-forward 512, mean over positions,
linear head) with batch and sequence length dynamic: graphc's runtime (the .gcm file compiled
for this CPU) against PyTorch eager (its fused encoder fast path), TorchScript, ONNX Runtime and
torch.compile on the same weights, in the same run.

Run: python benchmarks/transformer.py [--repeat N] [--no-compile]
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

VOCAB, D_MODEL, HEADS, FF, LAYERS, MAX_LEN, CLASSES = 1000, 128, 4, 512, 2, 256, 4
CASES = [(1, 32), (16, 128)]  # (batch, sequence length)


def classifier(torch_like):
    nn = torch_like.nn

    class TextClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, D_MODEL)
            self.position = nn.Embedding(MAX_LEN, D_MODEL)
            layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, FF, dropout=0.1, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
            self.head = nn.Linear(D_MODEL, CLASSES)

        def forward(self, tokens):
            positions = torch_like.arange(tokens.size(1))
            x = self.embed(tokens) + self.position(positions)
            return self.head(self.encoder(x).mean(1))

    return TextClassifier()


def main() -> None:
    args, ort, torch = start(__doc__.splitlines()[0])

    import graphc
    import runtime

    graphc.manual_seed(0)
    ours, theirs = classifier(graphc).eval(), classifier(torch).eval()
    theirs.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()})
    example = np.random.default_rng(0).integers(0, VOCAB, (2, 16))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "classifier"
        dynamic = {"tokens": {0: "batch", 1: "seq"}}
        graphc.script(ours, (graphc.tensor(example),), dynamic=dynamic).save(f"{path}.gcm")
        loaded = runtime.load(f"{path}.gcm", backend="llvm")
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=MAX_LEN)
        shapes = {"tokens": {0: batch, 1: seq}}
        session, scripted, compiled = torch_peers(
            theirs, example, path, ("tokens", "logits"), shapes, args, ort, torch
        )
        print("| batch x length | graphc runtime | PyTorch eager | TorchScript | ONNX Runtime ", end="")
        print("| torch.compile |")
        print("|---|---:|---:|---:|---:|---:|")
        for n, length in CASES:
            tokens = np.random.default_rng(n).integers(0, VOCAB, (n, length))
            tt = torch.from_numpy(tokens)
            with torch.no_grad():
                expected = theirs(tt).numpy()
            runners = peer_runners(loaded, theirs, scripted, session, compiled, "tokens", tokens, tt)
            with torch.no_grad():
                checked_row(f"{n} x {length}", runners, expected, args.repeat)


if __name__ == "__main__":
    main()
