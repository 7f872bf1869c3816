"""graphc.script: graphs with a symbolic batch that match eager at every batch size; errors for
what cannot be captured."""

import warnings

import numpy as np
import pytest
from testmodels import LeNet, TwoMethods

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from ir.verify import verify


@pytest.mark.parametrize("flatten", ["view", "size", "flatten"])
def test_lenet_graph_serves_every_batch_size(flatten):
    net = LeNet(flatten).eval()
    scripted = graphc.script(net, (graphc.randn(4, 1, 32, 32),))
    verify(scripted.graph)
    text = str(scripted.graph)
    assert text.startswith("graph forward(%x: f32[batch,1,32,32]) weights(%conv1.weight: f32[6,1,5,5]")
    assert "f32[batch,400] = reshape[shape=('batch', 400)]" in text
    assert "# conv1" in text and "# fc3" in text
    for batch in (1, 7, 64):
        x = graphc.randn(batch, 1, 32, 32)
        np.testing.assert_allclose(scripted(x).numpy(), net(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_modules_are_captured_in_eval_mode():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))
    model(graphc.randn(16, 4))  # some running statistics
    with pytest.warns(UserWarning, match="eval mode"):
        scripted = graphc.script(model, (graphc.randn(3, 4),))
    assert model.training  # restored
    model.eval()
    x = graphc.randn(5, 4)
    np.testing.assert_allclose(scripted(x).numpy(), model(x).detach().numpy(), rtol=1e-5)


def test_functions_several_inputs_and_numpy_inputs():
    def f(a, b):
        return (a * 2 + b).sum(1), F.softmax(a, 1)

    scripted = graphc.script(f, (graphc.randn(2, 3), graphc.randn(2, 3)))
    assert [v.name for v in scripted.graph.inputs] == ["a", "b"]
    a, b = np.ones((5, 3), np.float32), np.zeros((5, 3), np.float32)
    s, p = scripted(a, b)
    assert s.tolist() == [6.0] * 5 and p.shape == (5, 3)


def test_static_dims_and_tensor_creation_from_input_shapes():
    def f(x):
        return x + graphc.zeros(x.size(0), 3) + graphc.ones_like(x)

    scripted = graphc.script(f, (graphc.randn(4, 3),))
    assert "full[dtype='float32', shape=('batch', 3), value=0]" in str(scripted.graph)
    assert scripted(graphc.zeros(6, 3)).tolist() == [[1.0] * 3] * 6
    static = graphc.script(f, (graphc.randn(4, 3),), dynamic={"x": {}})
    assert "f32[4,3]" in str(static.graph)


def test_ranges_and_identities_sized_by_the_input_follow_it():
    """arange(x.size(1)) (positions), eye(n) and linspace(.., steps=n) with n a symbolic size are
    nodes with a symbolic length, not constants of the example's size."""

    def f(x):
        n = x.size(1)
        positions = graphc.arange(n).float()
        return x * positions + x @ graphc.eye(n) + graphc.linspace(0, 1, n) + graphc.arange(1, 7, 2).sum()

    scripted = graphc.script(f, (graphc.randn(2, 5, 5),), dynamic={"x": {0: "batch", 1: "n", 2: "n"}})
    text = str(scripted.graph)
    assert "i64[n] = arange[dtype='int64', end='n', start=0, step=1]()" in text
    assert "f32[n,n] = eye[dtype='float32', m='n', n='n']()" in text and "f32[n] = linspace" in text
    for shape in [(2, 5, 5), (3, 2, 2), (1, 9, 9)]:
        x = graphc.randn(*shape)
        np.testing.assert_allclose(scripted(x).numpy(), f(x).numpy(), rtol=1e-5, atol=1e-6)

    def shifted(x):
        return graphc.arange(1, x.size(0))

    with pytest.raises(graphc.TracingError, match=r"only arange\(n\)"):
        graphc.script(shifted, (graphc.randn(4, 3),))


def test_python_numbers_take_the_dtype_of_the_tensors_they_meet():
    """A number in where() is recorded in the dtype of the other value, not of the condition
    (it was recorded as a bool: where(x > 0, 0.5, x) gave 1.0)."""
    fns = [
        lambda x: graphc.where(x > 0, 0.5, x),
        lambda x: graphc.where(x > 0, x, -2.5),
        lambda x: graphc.where(x > 0, 3.5, -1.5) + x,
        lambda x: x.masked_fill(x > 1, 0.25),
        lambda x: (x > 0.5) & (x < 2),
    ]
    x = graphc.tensor([1.0, -1.0, 2.0, 0.75])
    for fn in fns:
        want = fn(x)
        got = graphc.script(fn, (graphc.randn(3),))(x)
        assert got.dtype == want.dtype and got.tolist() == want.tolist()


def test_shape_dependent_branches_are_reported():
    def f(x):
        if x.shape[0] > 4:
            return x * 2
        return x + 1

    with pytest.raises(graphc.TracingError, match="different operations for input sizes"):
        graphc.script(f, (graphc.randn(4, 3),))


def test_concretization_is_an_error_naming_the_line():
    def f(x):
        if x.sum() > 0:  # a data-dependent Python branch
            return x
        return -x

    with pytest.raises(graphc.TracingError, match=r"bool\(\) of a traced tensor at .*test_script.py:\d+"):
        graphc.script(f, (graphc.randn(4, 3),))
    for convert in (
        lambda x: x.sum().item(),
        lambda x: x.tolist(),
        lambda x: float(x.sum()),
        lambda x: x.numpy(),
    ):
        with pytest.raises(graphc.TracingError, match="traced tensor"):
            graphc.script(convert, (graphc.randn(2, 2),))


def test_tensors_with_batch_dependent_shapes_from_outside_are_reported():
    def f(x):
        return x + graphc.from_numpy(np.zeros((x.shape[0], 3), np.float32))

    with pytest.raises(graphc.TracingError, match="has a shape that changes with the input shape"):
        graphc.script(f, (graphc.randn(4, 3),))


def test_two_methods():
    model = TwoMethods(4, 2, 1).eval()
    scripted = graphc.script(model, (graphc.randn(3, 4),), methods={"forward": model, "embed": model.embed})
    assert scripted.methods == ["forward", "embed"]
    x = graphc.randn(5, 4)
    # (float32 sums in another order: a few ulp apart)
    np.testing.assert_allclose(
        scripted.embed(x).numpy(), model.embed(x).detach().numpy(), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(scripted(x).numpy(), model(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(AttributeError, match="has no method 'decode'"):
        scripted.decode


def test_capture_does_not_disturb_eager_or_autograd():
    net = LeNet().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graphc.script(net, (graphc.randn(2, 1, 32, 32),))
    x = graphc.randn(2, 1, 32, 32, requires_grad=True)
    net(x).sum().backward()
    assert x.grad is not None and net.conv1.weight.grad is not None


@pytest.mark.parametrize("backend", ["llvm", "interpreter"])
def test_layer_norm_and_softmax_are_captured_whole_and_run_everywhere(backend, tmp_path):
    import runtime

    # one node each in the captured graph (a weight left out: a None input between two)
    bias = graphc.randn(6)

    def f(x):
        return F.softmax(F.layer_norm(x, (6,), None, bias) * 3, -1)

    scripted = graphc.script(f, (graphc.randn(2, 5, 6),), backend=backend)
    assert [n.op for n in scripted.graph.nodes] == ["layer_norm", "mul", "softmax"]
    scripted.save(tmp_path / "f.gcm")
    loaded = runtime.load(tmp_path / "f.gcm")
    for batch in (1, 9):
        x = np.random.default_rng(batch).standard_normal((batch, 5, 6)).astype(np.float32)
        expected = f(graphc.tensor(x)).numpy()
        np.testing.assert_allclose(scripted(x).numpy(), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(loaded(x)[0], expected, rtol=1e-5, atol=1e-6)


def test_negative_indices_along_symbolic_dims_follow_the_size():
    """x[:, -1] (the last position of a sequence of any length) is one node for every size, on
    every backend; its gradient lands on the last position."""

    def f(x):
        return (x * 2)[:, -1] + x[-1].sum()

    dynamic = {"x": {0: "batch", 1: "seq"}}
    for backend in ("llvm", "interpreter"):
        scripted = graphc.script(f, (graphc.randn(2, 5, 3),), dynamic=dynamic, backend=backend)
        assert "select[dim=1, index=-1]" in str(scripted.graph)
        for shape in [(3, 7, 3), (1, 1, 3)]:
            x = graphc.randn(*shape)
            np.testing.assert_allclose(scripted(x).numpy(), f(x).numpy(), rtol=1e-6)
    x = graphc.randn(3, 4, requires_grad=True)
    x[:, -1].sum().backward()
    assert x.grad.tolist() == [[0.0, 0.0, 0.0, 1.0]] * 3


class _Sequence(nn.Module):
    """A transformer's slices along the sequence: the positional table cut to the input's
    length, differences of neighbours, every other position, the last three."""

    def __init__(self):
        super().__init__()
        self.register_buffer("pe", graphc.randn(1, 16, 4))

    def forward(self, x):
        x = x + self.pe[:, : x.size(1)]
        steps = x[:, 1:] - x[:, :-1]
        return steps.sum(1), x[:, ::2], x[:, -3:]


def test_slices_along_a_symbolic_sequence_follow_its_length(tmp_path):
    """One graph for every sequence length (sizes seq_minus_1, seq_by_2 derived from seq), on
    every backend and from a module file; lengths that do not fit a slice are refused, naming
    it. Before, these slices could not be captured (the table's crashed with a TypeError)."""
    import runtime
    from ir.errors import InputError

    net = _Sequence().eval()
    dynamic = {"x": {0: "batch", 1: "seq"}}
    shapes = [(3, 3, 4), (1, 16, 4), (2, 8, 4)]
    for backend in ("llvm", "interpreter"):
        scripted = graphc.script(net, (graphc.randn(2, 5, 4),), dynamic=dynamic, backend=backend)
        text = str(scripted.graph)
        assert "f32[batch,seq_minus_1,4]" in text and "f32[batch,seq_by_2,4]" in text
        for shape in shapes:
            x = graphc.randn(*shape)
            for got, want in zip(scripted(x), net(x), strict=True):
                np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
        with pytest.raises(InputError, match=r"takes \[-3::1\] of dim 1 \('seq'\).*longer than 2"):
            scripted(graphc.randn(1, 2, 4))
        with pytest.raises(InputError, match="its stop 'seq' is 17 here, past the 16 elements"):
            scripted(graphc.randn(1, 17, 4))
    scripted.save(tmp_path / "seq.gcm")
    loaded = runtime.load(tmp_path / "seq.gcm")
    for shape in shapes:
        x = graphc.randn(*shape)
        for got, want in zip(loaded(x.numpy()), net(x), strict=True):
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-6, atol=1e-6)


def test_a_number_that_follows_one_symbol_is_not_taken_for_another():
    """`y[:, -3:] = 0` writes from position seq - 3: 2 for the example (batch 2, seq 5), which
    is the batch size. Each symbol grows by a different amount in the second recording, so
    the number is refused; when both grew by 1 it became `batch` and the graph wrote from the
    wrong position at other sizes."""

    def f(x):
        y = x.clone()
        y[:, -3:] = 0
        return y

    with pytest.raises(graphc.TracingError, match=r"changes with the input shape \(2 -> 4\)"):
        graphc.script(f, (graphc.randn(2, 5, 3),), dynamic={"x": {0: "batch", 1: "seq"}})


class _FullyConvolutional(nn.Module):
    """Convolutions, pooling and a global average (AdaptiveAvgPool2d(1)) to a classifier: a
    network that takes images of any size."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def test_convolutional_networks_script_over_images_of_any_size(tmp_path):
    """Height and width symbolic: the graph's sizes are derived dims (h_minus_1_by_4), the
    compiled backends compile once per image size; the runtime loads it from a file."""
    import runtime
    from codegen.cuda.emulate import EmulatedDevice

    graphc.manual_seed(0)
    net = _FullyConvolutional().eval()
    dynamic = {"x": {0: "batch", 2: "h", 3: "w"}}
    example = (graphc.randn(2, 3, 12, 10),)
    sizes = [(1, 9, 7), (2, 32, 24), (3, 9, 7)]
    for backend in ("llvm", "interpreter"):
        scripted = graphc.script(net, example, dynamic=dynamic, backend=backend)
        assert "f32[batch,8,h_minus_1_by_4,w_minus_1_by_4]" in str(scripted.graph)
        for n, h, w in sizes:
            x = graphc.randn(n, 3, h, w)
            with graphc.no_grad():
                np.testing.assert_allclose(scripted(x).numpy(), net(x).numpy(), rtol=1e-5, atol=1e-5)
    scripted.save(tmp_path / "fcn.gcm")
    loaded = runtime.load(tmp_path / "fcn.gcm")
    emulated = graphc.script(net, example, dynamic=dynamic, device=EmulatedDevice("shuffled", max_blocks=2))
    for n, h, w in sizes[:2]:
        x = graphc.randn(n, 3, h, w)
        with graphc.no_grad():
            want = net(x).numpy()
        np.testing.assert_allclose(loaded(x.numpy())[0], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(emulated(x)._data), want, rtol=1e-5, atol=1e-5)


def test_one_dimensional_convolutions_script_over_sequences_of_any_length():
    graphc.manual_seed(1)
    net = nn.Sequential(nn.Conv1d(4, 6, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(6, 2, 3)).eval()
    scripted = graphc.script(net, (graphc.randn(2, 4, 11),), dynamic={"input": {0: "batch", 2: "length"}})
    assert str(scripted.graph.outputs[0].type) == "f32[batch,2,length_minus_5_by_2]"
    for n, length in [(1, 6), (3, 40)]:
        x = graphc.randn(n, 4, length)
        with graphc.no_grad():
            np.testing.assert_allclose(scripted(x).numpy(), net(x).numpy(), rtol=1e-5, atol=1e-5)


def test_nested_outputs_come_back_nested(tmp_path):
    """nn.LSTM returns (output, (h, c)): captured flat (the graph's outputs, what the runtime
    returns), given back nested by the ScriptModule and by graphc.capture.load of its file."""
    import runtime
    from ir.errors import ModuleFormatError
    from ir.module_file import read_module, write_module

    graphc.manual_seed(2)
    lstm = nn.LSTM(4, 3, batch_first=True).eval()
    scripted = graphc.script(lstm, (graphc.randn(2, 5, 4),), dynamic={"input": {0: "batch", 1: "seq"}})
    assert len(scripted.graph.outputs) == 3
    scripted.save(tmp_path / "lstm.gcm")
    x = graphc.randn(3, 7, 4)
    with graphc.no_grad():
        want, (want_h, want_c) = lstm(x)
    for module in (scripted, graphc.capture.load(tmp_path / "lstm.gcm")):
        out, (h, c) = module(x)
        for got, expected in ((out, want), (h, want_h), (c, want_c)):
            np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert len(runtime.load(tmp_path / "lstm.gcm")(x.numpy())) == 3
    assert isinstance(graphc.script(lambda x: (x * 2,), (graphc.randn(2, 3),))(graphc.randn(4, 3)), tuple)
    assert isinstance(graphc.script(lambda x: [x, -x], (graphc.randn(2, 3),))(graphc.randn(4, 3)), list)
    assert isinstance(graphc.script(lambda x: (x, -x), (graphc.randn(2, 3),))(graphc.randn(4, 3)), tuple)
    with pytest.raises(graphc.TracingError, match="differently nested outputs"):
        graphc.script(lambda x: (x,) if x.shape[0] == 2 else (x, x), (graphc.randn(2, 3),))
    module = read_module(tmp_path / "lstm.gcm")
    bad = {"graphc.outputs": '{"forward": ["set", []]}'}
    write_module(tmp_path / "bad.gcm", module.methods, metadata=bad)
    with pytest.raises(ModuleFormatError, match="is not an output structure"):
        graphc.capture.load(tmp_path / "bad.gcm")
    write_module(tmp_path / "bad.gcm", module.methods, metadata={"graphc.outputs": '{"forward": "T"}'})
    with pytest.raises(ModuleFormatError, match="method 'forward' has no such outputs"):
        graphc.capture.load(tmp_path / "bad.gcm")


def test_numbers_that_follow_a_derived_size_become_it():
    """After x[:, 1:], attributes and numbers equal to seq - 1 in both recordings become the
    derived dim seq_minus_1 (a scalar filled with it stays a node: compile-time folding would
    fill with the name)."""

    def f(x):
        shifted = x[:, 1:].reshape(x.size(0), x.size(1) - 1, 3)
        return shifted * graphc.full((), x.size(1) - 1)

    for backend in ("llvm", "interpreter"):
        scripted = graphc.script(
            f, (graphc.randn(2, 5, 3),), dynamic={"x": {0: "batch", 1: "seq"}}, backend=backend
        )
        assert "value='seq_minus_1'" in str(scripted.graph)
        for shape in [(3, 9, 3), (1, 2, 3)]:
            x = graphc.randn(*shape)
            np.testing.assert_allclose(scripted(x).numpy(), f(x).numpy(), rtol=1e-6)


def test_a_second_recording_that_fails_says_why():
    """Capture runs the function again with larger symbolic sizes: an example at the largest
    size the model takes makes that run fail, which is reported as such."""
    table = graphc.randn(1, 6, 4)

    def f(x):
        return x + table[:, : x.size(1)]

    with pytest.raises(graphc.TracingError, match=r"second time with the symbolic dims larger.*'seq': 8"):
        graphc.script(f, (graphc.randn(2, 6, 4),), dynamic={"x": {0: "batch", 1: "seq"}})
    graphc.script(f, (graphc.randn(2, 3, 4),), dynamic={"x": {0: "batch", 1: "seq"}})  # (room to grow)
