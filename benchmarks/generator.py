"""Inference latency of a DCGAN generator (100-d noise -> 3 x 32 x 32 image: four
ConvTranspose2d layers, 1x1 -> 4x4 -> 8x8 -> 16x16 -> 32x32, batch norm, ReLU, tanh), batch
dynamic: graphc's runtime (the .gcm file compiled for this CPU; the compiler rewrites each
transposed convolution as convolutions or as a matrix product and gathers) against PyTorch
eager, TorchScript, ONNX Runtime and torch.compile on the same weights, in the same run.

Run: python benchmarks/generator.py [--repeat N] [--no-compile]
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

NOISE, FEATURES = 100, 64
BATCHES = [1, 16, 64]


def generator(torch_like):
    nn = torch_like.nn
    f = FEATURES
    return nn.Sequential(
        nn.ConvTranspose2d(NOISE, f * 4, 4, 1, 0, bias=False),
        nn.BatchNorm2d(f * 4),
        nn.ReLU(True),
        nn.ConvTranspose2d(f * 4, f * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(f * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(f * 2, f, 4, 2, 1, bias=False),
        nn.BatchNorm2d(f),
        nn.ReLU(True),
        nn.ConvTranspose2d(f, 3, 4, 2, 1, bias=False),
        nn.Tanh(),
    )


def main() -> None:
    args, ort, torch = start(__doc__.splitlines()[0])

    import graphc
    import runtime

    graphc.manual_seed(0)
    ours = generator(graphc)
    with graphc.no_grad():  # batch statistics that are not the identity
        for m in ours.modules():
            if isinstance(m, graphc.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    ours.eval()
    theirs = generator(torch).eval()
    theirs.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()})
    example = np.random.default_rng(0).standard_normal((2, NOISE, 1, 1)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generator"
        graphc.script(ours, (graphc.tensor(example),)).save(f"{path}.gcm")
        loaded = runtime.load(f"{path}.gcm", backend="llvm")
        shapes = {"input": {0: torch.export.Dim("batch")}}
        session, scripted, compiled = torch_peers(
            theirs, example, path, ("noise", "image"), shapes, args, ort, torch
        )
        print("| batch | graphc runtime | PyTorch eager | TorchScript | ONNX Runtime | torch.compile |")
        print("|---:|---:|---:|---:|---:|---:|")
        for n in BATCHES:
            noise = np.random.default_rng(n).standard_normal((n, NOISE, 1, 1)).astype(np.float32)
            tn = torch.from_numpy(noise)
            with torch.no_grad():
                expected = theirs(tn).numpy()
            runners = peer_runners(loaded, theirs, scripted, session, compiled, "noise", noise, tn)
            with torch.no_grad():
                checked_row(f"{n}", runners, expected, args.repeat)


if __name__ == "__main__":
    main()
