"""One training step of the tutorial LeNet (forward, CrossEntropyLoss, backward, SGD with
momentum) at batch 4 and 64: graphc eager against PyTorch eager, in one run.

Run: python benchmarks/train_lenet.py [--repeat N]
"""

from __future__ import annotations

import argparse
import platform
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


def time_steps(lib, batch: int, repeat: int, steps: int = 20) -> float:
    """Best mean milliseconds per training step over `repeat` runs of `steps` steps."""
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
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - start) / steps * 1e3)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    libs = [("graphc", graphc)]
    try:
        import torch

        torch.set_num_threads(2)
        libs.append((f"torch {torch.__version__}", torch))
    except ImportError:
        pass
    print(f"machine: {platform.machine()}, python {platform.python_version()}")
    print(f"{'batch':>6}  {'library':<22}{'ms/step':>10}")
    for batch in (4, 64):
        for name, lib in libs:
            print(f"{batch:>6}  {name:<22}{time_steps(lib, batch, args.repeat):>10.2f}")


if __name__ == "__main__":
    main()
