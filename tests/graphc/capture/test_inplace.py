"""In-place changes inside a captured function: in-place ops, assignments, fills, copies, out=,
and writes through views become graph values, so the graph computes what eager computes at every
batch size; what a graph cannot follow is refused with a reason, never baked in."""

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F


def _twice(y):
    return y * 1  # a fresh tensor the function may change


def _ops(x):
    y = _twice(x)
    y.relu_()
    y.add_(1).mul_(x)
    y += 2
    F.relu(y, inplace=True)
    y.clamp_(max=3.0)
    return y.sigmoid_()


def _assign_basic(x):
    y = _twice(x)
    y[:, 0] = 7
    y[0] = x[0] * 3  # the batch dim: positions from an arange of the symbolic size
    y[..., 1:3] *= 2
    y[:, None, 3] = -x[:, 2:3]
    return y


def _strided(x):
    y = _twice(x)
    y[:, ::2] -= 1  # strided slices
    y[:, 1::3] = x[:, :3] * 5
    return y


def _through_views(x):
    y = _twice(x)
    y.t()[1] = 5  # a permute
    y.unsqueeze(1)[:, 0, 2:] += 1  # unsqueeze then slice
    y.reshape(-1, 2, 2)[:, 1, 0].zero_()  # reshape (of a static size), select, select
    y.select(1, 0).fill_(x.sum())  # a tensor value filling a view
    y.narrow(1, 1, 2).copy_(x[:, :2].flip(1))
    return y


def _sibling_views(x):
    y = _twice(x)
    first, rest = y[:, 0], y[:, 1:]
    rest.mul_(10)  # changes y and leaves first as it was
    y.add_(1)  # changes first and rest too
    return first + rest.sum(1), y


def _stale_ancestors(x):
    y = _twice(x)
    a = y[:, 0:3]
    b = a[:, 1]
    y.add_(1)  # a and b are stale now
    b.copy_(x[:, 0])  # (copy_ does not read b: the write-back must bring a up to date itself)
    return y, a


def _aliases(x):
    y = _twice(x)
    y.detach().add_(3)  # shares y's memory
    out = graphc.empty(x.shape[0], 4)
    graphc.mul(x, 2, out=out)
    return y, out


def _masks_and_indices(x):
    y = x.clone()
    y[y > 0.5] = 0.5  # a number into a mask of the input
    y[x[:, 0] < 0] = x[0]  # one row into masked rows
    y[:, [0, 3]] = x[:, [3, 0]]  # integer index tensors
    y[graphc.arange(y.shape[0]), x.argmax(1)] = -9.0  # one index per row
    return y


def _size_numbers(x):
    return x / x.size(0) + x.shape[0]  # numbers that follow the batch size


FUNCTIONS = [
    _ops,
    _assign_basic,
    _strided,
    _through_views,
    _sibling_views,
    _stale_ancestors,
    _aliases,
    _masks_and_indices,
    _size_numbers,
]


@pytest.mark.parametrize("backend", ["llvm", "interpreter"])
@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
def test_in_place_changes_are_captured(fn, backend, tmp_path):
    import runtime

    features = 9 if fn is _strided else 4
    scripted = graphc.script(fn, (graphc.randn(4, features),), backend=backend)
    scripted.save(tmp_path / "f.gcm")
    loaded = runtime.load(tmp_path / "f.gcm")
    for batch in (1, 3, 8):
        x = graphc.tensor(np.random.default_rng(batch).standard_normal((batch, features)).astype(np.float32))
        with graphc.no_grad():
            want = fn(x.clone())
        want = want if isinstance(want, tuple) else (want,)
        got = scripted(x.clone())
        got = got if isinstance(got, tuple) else (got,)
        from_file = loaded(x.numpy())
        for g, f, w in zip(got, from_file, want, strict=True):
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(f, w.numpy(), rtol=1e-6, atol=1e-6)


def test_in_place_activations_of_a_model_are_captured():
    graphc.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
        nn.Hardtanh(inplace=True),
    ).eval()
    scripted = graphc.script(model, (graphc.randn(2, 1, 8, 8),))
    x = graphc.randn(6, 1, 8, 8) * 3
    with graphc.no_grad():
        want = model(x)
    np.testing.assert_allclose(scripted(x).numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def test_an_input_changed_in_place_gives_the_eager_result():
    def f(x):
        x.mul_(2)
        return x + 1

    scripted = graphc.script(f, (graphc.randn(2, 3),))
    x = graphc.randn(5, 3)
    np.testing.assert_allclose(scripted(x.clone()).numpy(), x.numpy() * 2 + 1, rtol=1e-6)


class _Counter(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("calls", graphc.zeros(()))
        self.linear = nn.Linear(3, 3)

    def forward(self, x):
        self.calls += 1
        return self.linear(x)


class _WeightWrite(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 3)

    def forward(self, x):
        with graphc.no_grad():
            self.linear.weight[0] = 0
        return self.linear(x)


@pytest.mark.parametrize("model, name", [(_Counter(), "calls"), (_WeightWrite(), "linear.weight")])
def test_state_changed_in_forward_is_refused(model, name):
    with pytest.raises(graphc.TracingError, match=f"changes its weight '{name}' in place .*keeps no state"):
        graphc.script(model.eval(), (graphc.randn(2, 3),))


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda x: x.clone().index_put_((x > 0,), graphc.tensor(1.0)), "nonzero"),
        (
            lambda x: x.clone().__setitem__(x > 0, x[:, :1].flatten()[:1].expand(3)),
            "assigning a tensor to x\\[mask\\]",
        ),
        (lambda x: x * (x.size(0) - 1), "const0 holds 3.0 .* but 4.0"),
        (lambda x: (x * 1).geometric_(0.5), "geometric_ .*this random fill"),
    ],
)
def test_what_a_graph_cannot_follow_is_refused(fn, match):
    with pytest.raises(graphc.TracingError, match=match):
        graphc.script(fn, (graphc.randn(4, 3),))


def test_eager_in_place_ops_outside_a_capture_are_unchanged():
    y = graphc.ones(2, 3)
    v = y[:, 1]
    y[:, 1:] += 1
    y[y > 1.5] = 5
    assert v.tolist() == [5.0, 5.0] and y.tolist() == [[1.0, 5.0, 5.0]] * 2


def test_writes_through_slices_of_a_symbolic_dim_follow_its_size():
    """T5's shift right (`shifted[..., 1:] = ids[..., :-1]`), a fill of `y[:, 1:]`, an update
    of `y[:, :-1]` and an in-place op on a view of `y[:, 1:]`: one graph for every sequence
    length, one element long (an empty write) too."""

    def shift_right(ids):
        shifted = ids.new_zeros(ids.shape)
        shifted[..., 1:] = ids[..., :-1].clone()
        shifted[..., 0] = 7
        return shifted

    def updates(x):
        y = x.clone()
        y[:, 1:] = 0.5
        y[:, :-1] += 1.0
        tail = y[:, 1:]
        tail.mul_(2.0)
        return y

    dynamic = {"ids": {0: "batch", 1: "seq"}}
    scripted = graphc.script(shift_right, (graphc.randint(0, 9, (2, 5)),), dynamic=dynamic)
    for shape in [(3, 8), (1, 1), (2, 2)]:
        ids = graphc.randint(0, 9, shape)
        assert scripted(ids).tolist() == shift_right(ids).tolist()
    for backend in ("llvm", "interpreter"):
        scripted = graphc.script(
            updates, (graphc.randn(2, 5, 3),), dynamic={"x": {0: "batch", 1: "seq"}}, backend=backend
        )
        for shape in [(3, 8, 3), (1, 1, 3), (2, 2, 3)]:
            x = graphc.randn(*shape)
            np.testing.assert_allclose(scripted(x).numpy(), updates(x).numpy(), rtol=1e-6)
