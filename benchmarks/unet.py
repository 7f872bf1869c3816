"""Inference latency of a small U-Net (segmentation: 3 -> 16 -> 32 -> 64 channels down with
max pooling, back up with transposed convolutions and skip connections, 2 classes per pixel)
at several image sizes, batch, height and width dynamic: graphc's runtime (the .gcm file,
whose input takes heights and widths that are multiples of 4; compiled once per image size)
against PyTorch eager, TorchScript, ONNX Runtime and torch.compile on the same weights, in the
same run.

Run: python benchmarks/unet.py [--repeat N] [--no-compile]
     (needs torch, onnxruntime, onnx, onnxscript; --no-compile skips torch.compile)

Every runtime uses 2 threads; each cell is the median over N rounds (see infer.py's
per_call_ms), the first call at each size (graphc compiles then) left out; outputs are
checked against PyTorch eager.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from infer import checked_row, peer_runners, start, torch_peers  # noqa: E402

SHAPES = [(1, 64, 64), (1, 128, 96), (4, 128, 128), (1, 256, 256)]  # (batch, height, width)


def unet(torch_like):
    nn, F = torch_like.nn, torch_like.nn.functional

    def block(cin, cout):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU()
        )

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.down1, self.down2, self.bottom = block(3, 16), block(16, 32), block(32, 64)
            self.up2, self.dec2 = nn.ConvTranspose2d(64, 32, 2, stride=2), block(64, 32)
            self.up1, self.dec1 = nn.ConvTranspose2d(32, 16, 2, stride=2), block(32, 16)
            self.head = nn.Conv2d(16, 2, 1)

        def forward(self, x):
            d1 = self.down1(x)
            d2 = self.down2(F.max_pool2d(d1, 2))
            b = self.bottom(F.max_pool2d(d2, 2))
            u2 = self.dec2(torch_like.cat([d2, self.up2(b)], 1))
            u1 = self.dec1(torch_like.cat([d1, self.up1(u2)], 1))
            return self.head(u1)

    return UNet()


def main() -> None:
    args, ort, torch = start(__doc__.splitlines()[0])

    import graphc
    import runtime

    graphc.manual_seed(0)
    ours = unet(graphc).eval()
    theirs = unet(torch).eval()
    theirs.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()})
    example = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "unet"
        dynamic = {"x": {0: "batch", 2: "h", 3: "w"}}
        scripted_ours = graphc.script(ours, (graphc.from_numpy(example),), dynamic=dynamic)
        print(f"# graphc's input: {scripted_ours.graph.inputs[0].type}")
        scripted_ours.save(f"{path}.gcm")
        loaded = runtime.load(f"{path}.gcm", backend="llvm")
        dim = torch.export.Dim
        shapes = {"x": {0: dim("batch"), 2: 4 * dim("h4", max=1024), 3: 4 * dim("w4", max=1024)}}
        session, scripted, compiled = torch_peers(
            theirs, example, path, ("x", "mask"), shapes, args, ort, torch
        )
        peers = "PyTorch eager | TorchScript | ONNX Runtime | torch.compile"
        print(f"| batch x height x width | graphc runtime | {peers} |")
        print("|---:|---:|---:|---:|---:|---:|")
        for batch, h, w in SHAPES:
            x = np.random.default_rng(h).standard_normal((batch, 3, h, w)).astype(np.float32)
            tx = torch.from_numpy(x)
            with torch.no_grad():
                expected = theirs(tx).numpy()
            runners = peer_runners(loaded, theirs, scripted, session, compiled, "x", x, tx)
            for fn in runners.values():  # (graphc compiles for a new size on its first call)
                with torch.no_grad():
                    fn()
            with torch.no_grad():
                checked_row(f"{batch} x {h} x {w}", runners, expected, args.repeat)


if __name__ == "__main__":
    main()
