"""Snippets of the tutorials in ../shared/seeds run with `import graphc as torch` and print what
PyTorch prints (deterministic cases; random values differ from PyTorch's generator)."""

import math
from collections import OrderedDict

import numpy as np
import pytest

import graphc as torch


def show(x) -> str:
    return repr(x)


def test_seed001_tensor_math_prints():
    ones = torch.zeros(2, 2) + 1
    twos = torch.ones(2, 2) * 2
    threes = (torch.ones(2, 2) * 7 - 1) / 2
    fours = twos**2
    sqrt2s = twos**0.5
    assert show(ones) == "tensor([[1., 1.],\n        [1., 1.]])"
    assert show(threes) == "tensor([[3., 3.],\n        [3., 3.]])"
    assert show(sqrt2s) == "tensor([[1.4142, 1.4142],\n        [1.4142, 1.4142]])"
    assert show(twos ** torch.tensor([[1, 2], [3, 4]])) == "tensor([[ 2.,  4.],\n        [ 8., 16.]])"
    assert show(threes * fours) == "tensor([[12., 12.],\n        [12., 12.]])"


def test_seed001_shapes_that_do_not_broadcast_raise_a_runtime_error():
    """The seed: "uncomment this line to get a runtime error"; code written for PyTorch catches
    RuntimeError (graphc's ShapeError is one, and a ValueError)."""
    a = torch.ones(4, 3, 2)
    for other in (torch.rand(4, 3), torch.rand(2, 3), torch.rand((0,))):
        with pytest.raises(RuntimeError, match="must match the size"):
            a * other
    with pytest.raises(RuntimeError):
        torch.rand(2, 3) @ torch.rand(2, 3)
    assert issubclass(torch.ShapeError, ValueError)


def test_seed001_common_functions():
    angles = torch.tensor([0, math.pi / 4, math.pi / 2, 3 * math.pi / 4])
    sines = torch.sin(angles)
    assert show(angles) == "tensor([0.0000, 0.7854, 1.5708, 2.3562])"
    assert show(sines) == "tensor([0.0000, 0.7071, 1.0000, 0.7071])"
    assert show(torch.asin(sines)) == "tensor([0.0000, 0.7854, 1.5708, 0.7854])"
    assert show(torch.bitwise_xor(torch.tensor([1, 5, 11]), torch.tensor([2, 7, 10]))) == "tensor([3, 2, 1])"
    d = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert show(torch.eq(d, torch.ones(1, 2))) == "tensor([[ True, False],\n        [False, False]])"
    assert show(torch.max(d)) == "tensor(4.)" and torch.max(d).item() == 4.0
    assert show(torch.mean(d)) == "tensor(2.5000)" and show(torch.std(d)) == "tensor(1.2910)"
    assert show(torch.prod(d)) == "tensor(24.)"
    assert show(torch.unique(torch.tensor([1, 2, 1, 2, 1, 2]))) == "tensor([1, 2])"
    v1, v2 = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    assert show(torch.cross(v2, v1)) == "tensor([ 0.,  0., -1.])"


def test_seed001_copies_and_numpy_bridge():
    a = torch.ones(2, 2)
    b = a
    a[0][1] = 561
    assert show(b) == "tensor([[  1., 561.],\n        [  1.,   1.]])"
    numpy_array = np.ones((2, 3))
    pytorch_tensor = torch.from_numpy(numpy_array)
    numpy_array[1, 1] = 23
    assert show(pytorch_tensor) == (
        "tensor([[ 1.,  1.,  1.],\n        [ 1., 23.,  1.]], dtype=graphc.float64)"
    )
    assert show(torch.ones((2, 3), dtype=torch.int16)) == (
        "tensor([[1, 1, 1],\n        [1, 1, 1]], dtype=graphc.int16)"
    )


def test_seed001_autograd_walkthrough():
    a = torch.linspace(0.0, 2.0 * math.pi, steps=25, requires_grad=True)
    b = torch.sin(a)
    c = 2 * b
    d = c + 1
    out = d.sum()
    assert show(out) == "tensor(25., grad_fn=<SumBackward0>)"
    assert "-3.5763e-07" in show(d) and "4.7684e-07" in show(d)  # PyTorch's exact values
    assert str(d.grad_fn.next_functions).startswith("((<MulBackward0 object at")
    assert str(d.grad_fn.next_functions).endswith(", (None, 0))")
    out.backward()
    assert "-8.7423e-08" in show(a.grad) and "2.3850e-08" in show(a.grad)
    assert c.grad is None


def test_seed000_autograd():
    x = torch.autograd.Variable(torch.ones(2, 2), requires_grad=True)
    y = x + 2
    assert y.grad_fn.name() == "AddBackward0" and x.grad_fn is None
    z = y * y * 3
    out = z.mean()
    assert show(out) == "tensor(27., grad_fn=<MeanBackward0>)"
    out.backward()
    assert show(x.grad) == "tensor([[4.5000, 4.5000],\n        [4.5000, 4.5000]])"
    gradients = torch.FloatTensor([0.1, 1.0, 0.0001])
    x = torch.autograd.Variable(torch.randn(3), requires_grad=True)
    y = x * 2
    while y.data.norm() < 1000:
        y = y * 2
    y.backward(gradients)
    ratio = (x.grad / gradients)[0].item()
    assert math.log2(ratio).is_integer()


def test_seed001_exp_adder_jacobian_and_vjp():
    def exp_adder(x, y):
        return 2 * x.exp() + 3 * y

    inputs = (torch.tensor([0.7212]), torch.tensor([0.2079]))
    jx, jy = torch.autograd.functional.jacobian(exp_adder, inputs)
    # the seed printed inputs rounded to 4 places; its 4.1137 is 2 * exp of the unrounded value
    assert jx.shape == (1, 1) and abs(jx.item() - 2 * math.exp(0.7212)) < 1e-5
    assert show(jy) == "tensor([[3.]])"

    def do_some_doubling(x):
        y = x * 2
        while y.data.norm() < 1000:
            y = y * 2
        return y

    _, grads = torch.autograd.functional.vjp(
        do_some_doubling, torch.randn(3), v=torch.tensor([0.1, 1.0, 0.0001])
    )
    assert show(grads / grads[1] * 1024) == "tensor([1.0240e+02, 1.0240e+03, 1.0240e-01])"


def test_seed003_cheat_sheet_snippets(tmp_path):
    import graphc.nn as nn
    import graphc.nn.functional as F
    import graphc.optim as optim

    assert torch.__version__ and torch.version.cuda is None and torch.backends.cudnn.version() is None
    assert torch.device(0) == torch.device("cuda:0") and torch.cuda.device_count() == 0
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    n = c = 2
    pred = torch.randn(n, c).sigmoid()
    target = F.one_hot(torch.randint(0, c + 1, (n,)), num_classes=c + 1)[:, :c].type_as(pred)
    loss1 = torch.nn.BCELoss()(pred, target)
    loss2 = (-target * torch.log(pred) - (1 - target) * torch.log(1 - pred)).mean()
    assert torch.allclose(loss1, loss2)
    pred = torch.randn(n, c)
    pred_l = torch.log(F.softmax(pred, dim=1))
    target = torch.randint(0, c, (n,))
    loss1 = torch.nn.NLLLoss()(pred_l, target)
    loss2 = torch.nn.CrossEntropyLoss()(pred, target)
    loss3 = torch.mean(torch.Tensor([-pred_l[b, target[b]] for b in range(n)]))
    assert torch.allclose(loss1, loss2) and torch.allclose(loss1, loss3)

    model = nn.Sequential(
        OrderedDict([("conv", nn.Conv2d(1, 2, 3)), ("bn", nn.BatchNorm2d(2)), ("fc", nn.Flatten())])
    )
    for name, param in model.named_parameters():
        if "conv" in name:
            param.requires_grad = False

    def freeze_bn(m):
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    model.apply(freeze_bn)
    assert not model.bn.training and not any(p.requires_grad for p in model.parameters())
    model.fc = nn.Linear(2, 2)
    optimizer = optim.SGD(filter(lambda p: p.requires_grad, model.parameters()), lr=0.0001)
    assert len(optimizer.param_groups[0]["params"]) == 2

    path = tmp_path / "checkpoint.pkl"
    torch.save(model.state_dict(), path)
    model.load_state_dict(torch.load(path))
    torch.save({"epoch": 3, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
    checkpoint = torch.load(path)
    model.load_state_dict(checkpoint["state_dict"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    model_dict = model.state_dict()
    new_dict = {k: v for k, v in checkpoint["state_dict"].items() if k in model_dict}
    model_dict.update(new_dict)
    model.load_state_dict(model_dict)
    torch.save(model, tmp_path / "model.pkl")
    assert isinstance(torch.load(tmp_path / "model.pkl", weights_only=False), nn.Sequential)
