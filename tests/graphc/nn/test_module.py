"""nn.Module behaviour: registration, traversal, state dicts, modes, conversions, hooks, repr."""

from collections import OrderedDict

import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def test_lenet_prints_and_counts_like_the_tutorial():
    net = LeNet()
    assert repr(net) == (
        "LeNet(\n"
        "  (conv1): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1))\n"
        "  (conv2): Conv2d(6, 16, kernel_size=(5, 5), stride=(1, 1))\n"
        "  (fc1): Linear(in_features=400, out_features=120, bias=True)\n"
        "  (fc2): Linear(in_features=120, out_features=84, bias=True)\n"
        "  (fc3): Linear(in_features=84, out_features=10, bias=True)\n"
        ")"
    )
    params = list(net.parameters())
    assert len(params) == 10 and params[0].size() == graphc.Size([6, 1, 5, 5])
    assert [p.shape for p in params][4:6] == [graphc.Size([120, 400]), graphc.Size([120])]
    out = net(graphc.randn(1, 1, 32, 32))
    assert out.shape == (1, 10) and out.grad_fn.name() == "AddmmBackward0"
    net.zero_grad()
    out.backward(graphc.randn(1, 10))
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())


def test_default_initialisation_bounds():
    layer = nn.Linear(400, 120)
    bound = 1 / 400**0.5
    assert layer.weight.abs().max().item() <= bound and layer.bias.abs().max().item() <= bound
    conv = nn.Conv2d(6, 16, 5)
    assert conv.weight.abs().max().item() <= 1 / (6 * 25) ** 0.5
    assert layer.weight.std().item() > bound / 3  # actually random, not constant


def test_registration_and_traversal():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.register_buffer("running", graphc.zeros(2))
            self.register_buffer("scratch", graphc.zeros(1), persistent=False)
            self.scale = nn.Parameter(graphc.ones(1))

    model = nn.Sequential(OrderedDict([("a", Block()), ("act", nn.ReLU()), ("b", Block())]))
    names = [n for n, _ in model.named_parameters()]
    assert names == ["a.scale", "a.lin.weight", "a.lin.bias", "b.scale", "b.lin.weight", "b.lin.bias"]
    assert [n for n, _ in model.named_buffers()] == ["a.running", "a.scratch", "b.running", "b.scratch"]
    assert list(model.state_dict()) == [
        "a.scale",
        "a.running",
        "a.lin.weight",
        "a.lin.bias",
        "b.scale",
        "b.running",
        "b.lin.weight",
        "b.lin.bias",
    ]
    assert [n for n, _ in model.named_children()] == ["a", "act", "b"]
    assert len(list(model.modules())) == 6 and model[1].__class__ is nn.ReLU
    assert model.get_submodule("a.lin") is model.a.lin
    shared = nn.Linear(2, 2)
    twice = nn.Sequential(shared, shared)
    assert len(list(twice.parameters())) == 2
    with pytest.raises(TypeError, match="cannot assign"):
        model.a.scale = graphc.ones(1)
    with pytest.raises(AttributeError, match="has no attribute 'missing'"):
        model.missing


def test_state_dict_round_trip_and_errors():
    a, b = LeNet(), LeNet()
    result = b.load_state_dict(a.state_dict())
    assert repr(result) == "<All keys matched successfully>"
    assert all(graphc.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not a.state_dict()["fc1.weight"].requires_grad
    sd = a.state_dict()
    del sd["fc3.bias"]
    sd["extra"] = graphc.zeros(1)
    sd["fc1.weight"] = graphc.zeros(3, 3)
    before = b.fc2.weight.clone()
    with pytest.raises(RuntimeError) as err:
        b.load_state_dict(sd)
    msg = str(err.value)
    assert msg.startswith("Error(s) in loading state_dict for LeNet:")
    assert 'Unexpected key(s) in state_dict: "extra"' in msg
    assert 'Missing key(s) in state_dict: "fc3.bias"' in msg
    assert "size mismatch for fc1.weight: copying a param with shape graphc.Size([3, 3])" in msg
    assert graphc.equal(b.fc2.weight, before)  # nothing was loaded
    del sd["fc1.weight"], sd["extra"]
    sd["fc1.weight"] = a.fc1.weight.detach()
    missing, unexpected = b.load_state_dict(sd, strict=False)
    assert missing == ["fc3.bias"] and unexpected == []


def test_train_eval_zero_grad_apply_to_and_requires_grad():
    net = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5), nn.Linear(3, 1))
    net.eval()
    assert not net.training and not net[1].training
    x = graphc.ones(4, 3)
    assert graphc.equal(net(x), net(x))  # dropout off
    net.train()
    assert net[1].training
    net(x).sum().backward()
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net(x).sum().backward()
    net.zero_grad(set_to_none=False)
    assert all(p.grad.abs().sum().item() == 0 for p in net.parameters())
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "Dropout", "Linear", "Sequential"]
    weight = net[0].weight
    net.double()
    assert net[0].weight is weight and weight.dtype is graphc.float64
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_forward_hooks():
    layer = nn.Linear(2, 2)
    calls = []
    h1 = layer.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    h2 = layer.register_forward_hook(lambda m, args, out: calls.append(out.shape))
    out = layer(graphc.ones(1, 2))
    assert graphc.allclose(out, layer.bias.detach().unsqueeze(0)) and calls == [(1, 2)]
    h1.remove()
    h2.remove()
    layer(graphc.ones(1, 2))
    assert len(calls) == 1


def test_containers():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.ReLU())
    assert len(layers) == 4 and isinstance(layers[-1], nn.ReLU)
    assert len(list(layers.parameters())) == 6
    d = nn.ModuleDict({"enc": nn.Linear(2, 3), "dec": nn.Linear(3, 2)})
    assert list(d.keys()) == ["enc", "dec"] and "enc" in d
    plist = nn.ParameterList([nn.Parameter(graphc.ones(2)) for _ in range(2)])
    holder = nn.Module()
    holder.ps = plist
    assert [n for n, _ in holder.named_parameters()] == ["ps.0", "ps.1"]
    seq = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    assert seq(graphc.ones(3, 2)).shape == (3, 1) and len(seq[:2]) == 2
    assert repr(nn.Sequential(nn.ReLU(), nn.Flatten())) == (
        "Sequential(\n  (0): ReLU()\n  (1): Flatten(start_dim=1, end_dim=-1)\n)"
    )


def test_layer_reprs():
    assert (
        repr(nn.MaxPool2d(2, 2))
        == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"
    )
    assert (
        repr(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False))
        == "Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False)"
    )
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"
    assert repr(nn.Dropout(0.25)) == "Dropout(p=0.25, inplace=False)"
    assert repr(nn.Softmax(dim=1)) == "Softmax(dim=1)"
    assert repr(nn.Parameter(graphc.ones(1))) == "Parameter containing:\ntensor([1.], requires_grad=True)"


def test_sequential_items_are_replaced_in_place_and_deleted_with_renumbering():
    seq = nn.Sequential(nn.ReLU(), nn.Tanh(), nn.Sigmoid())
    seq[1] = nn.ELU()
    assert [type(m).__name__ for m in seq] == ["ReLU", "ELU", "Sigmoid"]
    del seq[0]
    assert list(dict(seq.named_children())) == ["0", "1"] and isinstance(seq[0], nn.ELU)
    with pytest.raises(TypeError, match="is not a Module"):
        seq[0] = 3
