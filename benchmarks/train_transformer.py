"""One training step of benchmarks/transformer.py's text classifier (2 encoder layers, d_model
128, dropout 0.1; forward, cross-entropy, backward, Adam) at batch x length 4 x 32 and 16 x 128:
graphc eager against PyTorch eager, each in its own processes, in one run.

Run: python benchmarks/train_transformer.py [--repeat N] [--rounds R]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_lenet import libraries, library, measure, torch_version  # noqa: E402
from transformer import CLASSES, VOCAB, classifier  # noqa: E402

CASES = [(4, 32), (16, 128)]


def make_step(lib, batch: int, length: int):
    """A function running one training step of a fresh classifier in `lib` (graphc or torch)."""
    lib.manual_seed(0)
    model = classifier(lib)
    optimizer = lib.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    tokens = lib.from_numpy(rng.integers(0, VOCAB, (batch, length)))
    labels = lib.from_numpy(rng.integers(0, CLASSES, batch))

    def step():
        loss = lib.nn.functional.cross_entropy(model(tokens), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    return step


def _child(lib_name: str, batch: int, length: int, repeat: int) -> float:
    command = [
        sys.executable,
        __file__,
        "--child",
        lib_name,
        "--case",
        f"{batch}x{length}",
        "--repeat",
        str(repeat),
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of processes per library")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        batch, length = (int(v) for v in args.case.split("x"))
        print(measure({"step": make_step(library(args.child), batch, length)}, args.repeat, steps=5)["step"])
        return
    names = libraries()
    machine = f"{platform.machine()}, python {platform.python_version()}"
    print(f"machine: {machine}, torch {torch_version()} (2 threads)")
    print("| batch x length | graphc eager | PyTorch eager |")
    print("|---|---:|---:|")
    for batch, length in CASES:
        best = dict.fromkeys(names, float("inf"))
        for _ in range(args.rounds):
            for name in names:
                best[name] = min(best[name], _child(name, batch, length, args.repeat))
        cells = [f"{best[n]:.1f} ms" for n in names] + ["-"] * (2 - len(names))
        print(f"| {batch} x {length} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
