"""Blitz part 2: autograd — gradients of a scalar, and vector-Jacobian products.
(seed 000, section 二)"""

import graphc as torch
from graphc.autograd import Variable


def main() -> None:
    x = Variable(torch.ones(2, 2), requires_grad=True)
    print(x)
    y = x + 2
    print(y)
    print(y.grad_fn, x.grad_fn)
    z = y * y * 3
    out = z.mean()
    print(z, out)
    out.backward()
    print(x.grad)  # 4.5 everywhere

    x = Variable(torch.randn(3), requires_grad=True)
    y = x * 2
    while y.data.norm() < 1000:
        y = y * 2
    print(y)
    gradients = torch.FloatTensor([0.1, 1.0, 0.0001])
    y.backward(gradients)
    print(x.grad)


if __name__ == "__main__":
    main()
