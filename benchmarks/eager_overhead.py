"""Eager per-op overhead: graphc against numpy and PyTorch (when installed), in one run.

Times one elementwise add for a 4x4 tensor without and with autograd, and for 1M elements.
Run: python benchmarks/eager_overhead.py [--repeat N]
"""

from __future__ import annotations

import argparse
import platform
import timeit

import numpy as np

import graphc


def _best_us(fn, number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def _measure_size(label: str, n: int, number: int, repeat: int) -> list[tuple[str, str, float]]:
    a_np = np.random.rand(n, n).astype(np.float32)
    b_np = np.random.rand(n, n).astype(np.float32)
    a, b = graphc.from_numpy(a_np), graphc.from_numpy(b_np)
    ag = graphc.tensor(a_np, requires_grad=True)
    rows = [
        (label, "numpy", _best_us(lambda: a_np + b_np, number, repeat)),
        (label, "graphc", _best_us(lambda: a + b, number, repeat)),
        (label + " (grad)", "graphc", _best_us(lambda: ag + b, number, repeat)),
    ]
    try:
        import torch
    except ImportError:
        return rows
    torch.set_num_threads(1)
    ta, tb = torch.from_numpy(a_np), torch.from_numpy(b_np)
    tg = ta.clone().requires_grad_(True)
    rows.append((label, "torch", _best_us(lambda: ta + tb, number, repeat)))
    rows.append((label + " (grad)", "torch", _best_us(lambda: tg + tb, number, repeat)))
    return rows


def measure(repeat: int = 7) -> list[tuple[str, str, float]]:
    """(case, library, microseconds per op) for every case and library available."""
    return [
        row
        for label, n, number in [("4x4 add", 4, 20000), ("1M add", 1000, 50)]
        for row in _measure_size(label, n, number, repeat)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rows = measure(args.repeat)
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"{'case':<18}{'library':<10}{'us/op':>10}")
    for case, lib, us in sorted(rows):
        print(f"{case:<18}{lib:<10}{us:>10.2f}")


if __name__ == "__main__":
    main()
