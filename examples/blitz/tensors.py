"""Blitz part 1: what graphc is — tensors, operations, the numpy bridge, CUDA tensors.
(seed 000, section 一, with `import graphc as torch`)"""

import numpy as np

import graphc as torch


def main() -> None:
    x = torch.Tensor(5, 3)  # uninitialised
    print(x.size())
    x = torch.rand(5, 3)
    print(x)
    print(x.size())

    y = torch.rand(5, 3)
    print(x + y)
    print(torch.add(x, y))
    result = torch.Tensor(5, 3)
    torch.add(x, y, out=result)
    print(result)
    y.add_(x)  # in place
    print(y)
    print(x[:, 1])

    a = torch.ones(5)
    b = a.numpy()
    a.add_(1)
    print(a, b)  # they share memory
    c = np.ones(5)
    d = torch.from_numpy(c)
    np.add(c, 1, out=c)
    print(c, d)

    if torch.cuda.is_available():
        x, y = x.cuda(), y.cuda()
        print(x + y)
    else:
        print("CUDA is not available here; tensors stay on the CPU")


if __name__ == "__main__":
    main()
