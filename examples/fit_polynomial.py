"""Fit y = sin(x) with a cubic polynomial by gradient descent, using graphc's autograd.

The classic "learning PyTorch with examples" exercise: tensors, autograd and a manual SGD step
under `no_grad`. Run: python examples/fit_polynomial.py [--steps N]
"""

from __future__ import annotations

import argparse
import math

import graphc as torch


def fit(steps: int = 2000, learning_rate: float = 1e-6, seed: int = 0) -> tuple[list[float], float]:
    """Fit a + b x + c x^2 + d x^3 to sin(x) on [-pi, pi]; return the coefficients and loss."""
    torch.manual_seed(seed)
    x = torch.linspace(-math.pi, math.pi, 2000, dtype=torch.float64)
    y = torch.sin(x)
    coeffs = [torch.randn((), dtype=torch.float64, requires_grad=True) for _ in range(4)]
    loss = None
    for step in range(steps):
        a, b, c, d = coeffs
        y_pred = a + b * x + c * x**2 + d * x**3
        loss = (y_pred - y).pow(2).sum()
        if step % 500 == 499:
            print(f"step {step + 1:5d}  loss {loss.item():.4f}")
        loss.backward()
        with torch.no_grad():
            for p in coeffs:
                p -= learning_rate * p.grad
                p.grad = None
    return [p.item() for p in coeffs], loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    (a, b, c, d), loss = fit(args.steps)
    print(f"result: y = {a:.4f} + {b:.4f} x + {c:.4f} x^2 + {d:.4f} x^3   (loss {loss:.2f})")


if __name__ == "__main__":
    main()
