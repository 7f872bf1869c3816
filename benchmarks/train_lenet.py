"""One training step of the tutorial LeNet (forward, CrossEntropyLoss, backward, SGD with
momentum) at batch 4 and 64: graphc eager against PyTorch eager, in one run.

Run: python benchmarks/train_lenet.py [--repeat N]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time

import numpy as np

import graphc


def lenet(nn, F):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 6, 5)
            self.pool = nn.MaxPool2d(2, 2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(16 * 5 * 5, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            x = x.view(-1, 16 * 5 * 5)
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            return self.fc3(x)

    return Net()


def make_step(lib, batch: int):
    """A function running one training step of a fresh LeNet in `lib` (graphc or torch)."""
    net = lenet(lib.nn, lib.nn.functional)
    criterion = lib.nn.CrossEntropyLoss()
    optimizer = lib.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    rng = np.random.default_rng(0)
    x = lib.from_numpy(rng.normal(size=(batch, 3, 32, 32)).astype(np.float32))
    y = lib.from_numpy(rng.integers(0, 10, size=batch))

    def step():
        optimizer.zero_grad()
        loss = criterion(net(x), y)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    return step


def time_steps(lib, batch: int, repeat: int, steps: int = 20) -> float:
    """Best mean milliseconds per training step over `repeat` runs of `steps` steps."""
    return measure({"lib": make_step(lib, batch)}, repeat, steps)["lib"]


def measure(steps_by_name: dict, repeat: int, steps: int = 20) -> dict:
    """Best mean ms per step for each step function, their runs interleaved so that a noisy
    machine disturbs all of them alike."""
    best = dict.fromkeys(steps_by_name, float("inf"))
    for _ in range(repeat):
        for name, step in steps_by_name.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            best[name] = min(best[name], (time.perf_counter() - start) / steps * 1e3)
    return best


def _child(lib_name: str, batch: int, repeat: int) -> float:
    """Time one library in a fresh process, so thread pools of the other do not interfere."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", lib_name, "--batch", str(batch), "--repeat", str(repeat)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def library(name: str):
    """graphc, or torch with 2 threads."""
    if name != "torch":
        return graphc
    import torch

    torch.set_num_threads(2)
    return torch


def libraries() -> list[str]:
    """The libraries to time: graphc, and torch where it is installed."""
    return ["graphc"] if torch_version() is None else ["graphc", "torch"]


def torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds of separate processes per library"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(time_steps(library(args.child), args.batch, args.repeat))
        return
    names = libraries()
    print(
        f"machine: {platform.machine()}, python {platform.python_version()}, torch {torch_version()} "
        "(2 threads); each library timed in its own process, best of alternating rounds"
    )
    print(f"{'batch':>6}  {'library':<10}{'ms/step':>10}")
    for batch in (4, 64):
        best = dict.fromkeys(names, float("inf"))
        for _ in range(args.rounds):
            for name in names:
                best[name] = min(best[name], _child(name, batch, args.repeat))
        for name in names:
            print(f"{batch:>6}  {name:<10}{best[name]:>10.2f}")


if __name__ == "__main__":
    main()
