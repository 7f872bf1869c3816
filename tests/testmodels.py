"""Models the capture, module-file, runtime and pass tests share (importable from any test:
pyproject's pytest `pythonpath` puts tests/ on the path)."""

import graphc
import graphc.nn as nn
import graphc.nn.functional as F


class LeNet(nn.Module):
    """The tutorial LeNet on 1x32x32 images; `flatten` picks how it flattens ('view': x.view(-1,
    400), 'size': x.view(x.size(0), -1), 'flatten': x.flatten(1)), all of which must capture with
    a symbolic batch."""

    def __init__(self, flatten: str = "view"):
        super().__init__()
        self.flatten = flatten
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        if self.flatten == "view":
            x = x.view(-1, 400)
        elif self.flatten == "size":
            x = x.view(x.size(0), -1)
        else:
            x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class TwoMethods(nn.Module):
    """`forward` and `embed`, exported together and sharing the body's weights."""

    def __init__(self, features: int = 6, hidden: int = 4, out: int = 2):
        super().__init__()
        self.body = nn.Linear(features, hidden)
        self.head = nn.Linear(hidden, out)

    def forward(self, x):
        return self.head(self.embed(x).relu())

    def embed(self, x):
        return self.body(x)


class Gated(nn.Module):
    """Takes a different branch for different inputs (graphc.cond)."""

    def __init__(self, features: int = 4, hidden: int = 4):
        super().__init__()
        self.fc = nn.Linear(features, hidden)
        self.up = nn.Linear(hidden, hidden)

    def forward(self, x):
        h = self.fc(x)
        return graphc.cond(h.mean() > 0, lambda h: self.up(h).relu(), lambda h: h * -2.0, (h,))
