"""Blitz part 4: training an image classifier on CIFAR-10 (seed 000, section 四).

Reads CIFAR-10 from ./data/cifar-10-batches-py when it is there. Otherwise it says so and
writes a small stand-in in the same on-disk format (class-dependent colour patterns plus
noise, so there is something to learn) and trains on that. Shows progress with tqdm and saves
the training loss curve as a PNG.

Run: python examples/blitz/cifar10_classifier.py [--epochs N] [--data DIR] [--standin N]
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

import graphc as torch
import graphc.nn as nn
import graphc.nn.functional as F
import graphc.optim as optim
from graphc.utils.data import DataLoader
from graphc.vision import datasets, transforms

CLASSES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


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


def write_standin(root: Path, per_batch: int, seed: int = 0) -> None:
    """A CIFAR-10-format folder whose images are noisy class-specific patterns."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:32, 0:32]
    templates = []
    for c in range(10):
        color = rng.uniform(40, 215, size=3)
        stripes = np.sin(xx * (c % 5 + 1) * 0.3 + yy * (c // 5) * 0.5)
        templates.append(color[:, None, None] + 40 * stripes[None])
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        labels = rng.integers(0, 10, per_batch)
        images = np.stack([templates[k] for k in labels]) + rng.normal(0, 30, (per_batch, 3, 32, 32))
        batch = {
            "batch_label": name,
            "labels": labels.tolist(),
            "data": images.clip(0, 255).astype(np.uint8).reshape(per_batch, -1),
            "filenames": [f"{name}_{i}.png" for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {
        "label_names": [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ]
    }
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def save_loss_plot(losses: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses)
    ax.set_xlabel("report")
    ax.set_ylabel("training loss")
    ax.set_title("CIFAR-10 classifier")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="./data")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--standin",
        type=int,
        default=2000,
        help="images per batch file of the stand-in (when CIFAR-10 is absent)",
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--plot", default="cifar10_loss.png")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    torch.manual_seed(0)
    root = Path(args.data)
    if not (root / "cifar-10-batches-py" / "data_batch_1").exists():
        root = root / "cifar10-standin"
        print(
            f"CIFAR-10 is not in {args.data}/cifar-10-batches-py; training on a stand-in "
            f"written in CIFAR-10's format to {root} (put the real dataset there to train "
            "on it)"
        )
        write_standin(root, args.standin)
    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
    )
    trainset = datasets.CIFAR10(root=root, train=True, download=False, transform=transform)
    trainloader = DataLoader(trainset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers)
    testset = datasets.CIFAR10(root=root, train=False, download=False, transform=transform)
    testloader = DataLoader(testset, batch_size=args.batch_size, shuffle=False, num_workers=args.workers)

    net = Net()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    report = max(len(trainloader) // 6, 1)
    losses = []
    for epoch in range(args.epochs):
        running_loss = 0.0
        progress = tqdm(trainloader, desc=f"epoch {epoch + 1}", leave=False)
        for i, (inputs, labels) in enumerate(progress):
            optimizer.zero_grad()
            loss = criterion(net(inputs), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            if i % report == report - 1:
                losses.append(running_loss / report)
                progress.write(f"[{epoch + 1}, {i + 1:5d}] loss: {running_loss / report:.3f}")
                running_loss = 0.0
    print("Finished Training")

    correct, total = 0, 0
    class_correct, class_total = [0] * 10, [0] * 10
    with torch.no_grad():
        for images, labels in testloader:
            _, predicted = torch.max(net(images), 1)
            total += labels.size(0)
            hits = (predicted == labels).squeeze(0) if labels.dim() else predicted == labels
            correct += int(hits.sum().item())
            for label, hit in zip(labels.tolist(), hits.tolist(), strict=True):
                class_correct[label] += hit
                class_total[label] += 1
    accuracy = 100 * correct / total
    print(f"Accuracy of the network on the {total} test images: {accuracy:.0f} %")
    for i in range(10):
        if class_total[i]:
            print(f"Accuracy of {CLASSES[i]:>5s} : {100 * class_correct[i] / class_total[i]:2.0f} %")
    if args.plot:
        save_loss_plot(losses, Path(args.plot))
        print(f"loss curve saved to {args.plot}")
    return {"accuracy": accuracy, "losses": losses}


if __name__ == "__main__":
    main()
