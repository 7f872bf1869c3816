"""Eager convolutions, pooling, softmax and layer norm through compiled kernels (graphc._native)
against the ops' reference implementations: which calls take the compiled path, and that their
results and gradients match."""

import os
import subprocess
import sys

import numpy as np
import pytest

import graphc
import graphc.nn.functional as F
from graphc import _native
from ir.ops.registry import OPS


def _rng(seed=0):
    return np.random.default_rng(seed)


def _close(got, want, depth):
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    tolerance = 8 * np.finfo(np.float32).eps * max(depth, 1) ** 0.5 * scale
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


def _reference(op, *arrays, **attrs):
    """The op's reference implementation in float64."""
    return OPS[op].impl(np, *(a if a is None else a.astype(np.float64) for a in arrays), **attrs)


CONVS = [
    # input shape, weight shape, stride, padding, dilation, groups
    ((8, 3, 32, 32), (6, 3, 5, 5), (1, 1), (0, 0), (1, 1), 1),  # LeNet's first layer
    ((4, 8, 20, 20), (16, 4, 3, 3), (1, 1), (1, 1), (1, 1), 2),
    ((4, 16, 17, 17), (8, 16, 3, 3), (2, 2), (1, 1), (2, 2), 1),
]


@pytest.mark.parametrize("case", CONVS)
def test_large_eager_conv2d_runs_compiled_and_matches(case):
    xs, ws, stride, padding, dilation, groups = case
    x = _rng(1).standard_normal(xs).astype(np.float32)
    w = _rng(2).standard_normal(ws).astype(np.float32)
    b = _rng(3).standard_normal(ws[0]).astype(np.float32)
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    got = _native.conv2d(x, w, b, **attrs)
    assert got is not None, "expected the compiled path"
    _close(got, _reference("conv2d", x, w, b, **attrs), np.prod(ws[1:]))
    out = F.conv2d(
        graphc.from_numpy(x), graphc.from_numpy(w), graphc.from_numpy(b), stride, padding, dilation, groups
    )
    _close(out.numpy(), _reference("conv2d", x, w, b, **attrs), np.prod(ws[1:]))


def test_transposed_convolutions_run_compiled():
    """Stride 1 (a convolution), strides (phases of convolutions), padding past the kernel,
    output padding, groups, dilation, and few output channels (a matrix product and gathers)."""
    x = _rng(1).standard_normal((4, 16, 10, 10)).astype(np.float32)
    w = _rng(2).standard_normal((16, 6, 5, 5)).astype(np.float32)
    cases = [
        {"padding": (0, 0), "dilation": (1, 1)},
        {"padding": (2, 1), "dilation": (1, 1)},
        {"padding": (1, 1), "dilation": (2, 2)},
        {"stride": (2, 2), "padding": (1, 2), "output_padding": (1, 0)},
        {"stride": (3, 2), "padding": (5, 5)},
        {"stride": (2, 2), "groups": 2},
        {"stride": (2, 1), "dilation": (2, 1)},
    ]
    for attrs in cases:
        got = _native.conv_transpose2d(x, w, **attrs)
        assert got is not None, attrs
        _close(got, _reference("conv_transpose2d", x, w, **attrs), 16 * 25)
    big, few = _rng(3).standard_normal((8, 16, 12, 12)).astype(np.float32), w[:, :2]  # 2 output channels
    got = _native.conv_transpose2d(big, few, stride=(2, 2))
    assert got is not None
    _close(got, _reference("conv_transpose2d", big, few, stride=(2, 2)), 16 * 25)
    assert _native.conv_transpose2d(x[:1, :, :2, :2], w[:, :1, :1, :1]) is None  # little work: the reference


def test_weight_gradient_runs_compiled():
    x = _rng(1).standard_normal((8, 6, 14, 14)).astype(np.float32)
    g = _rng(2).standard_normal((8, 16, 12, 12)).astype(np.float32)
    attrs = {"weight_shape": (16, 6, 5, 5), "padding": (1, 1)}
    got = _native.conv2d_weight_grad(x, g, **attrs)
    assert got is not None
    _close(got, _reference("conv2d_weight_grad", x, g, **attrs), 8 * 144)
    assert _native.conv2d_weight_grad(x, g[:, :, ::2, ::2], stride=(2, 2), **attrs) is None


def test_max_pooling_and_its_gradient_run_compiled():
    x = _rng(5).standard_normal((16, 6, 28, 28)).astype(np.float32)
    x[0, 0, :2, :2] = 0.5  # a tie: the first wins
    x[1, 1, 4, 5] = np.nan
    for kernel, stride, padding in [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1))]:
        attrs = {"kernel_size": kernel, "stride": stride, "padding": padding}
        got = _native.max_pool2d(x, **attrs)
        assert got is not None, attrs
        want = OPS["max_pool2d"].impl(np, x, **attrs)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
        g = _rng(6).standard_normal(want[0].shape).astype(np.float32)
        overlapping = kernel != stride
        back = _native.max_pool2d_backward(g, want[1], 28, 28, overlapping)
        assert back is not None
        ref = OPS["max_pool2d_backward"].impl(np, g, want[1], 28, 28, overlapping)
        np.testing.assert_allclose(back, ref, rtol=1e-6, atol=1e-6)
    assert _native.max_pool2d(x[:1, :1], (2, 2), (2, 2)) is None  # small: numpy's


def test_small_work_and_other_dtypes_stay_on_the_reference():
    x = np.ones((1, 1, 5, 5), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    assert _native.conv2d(x, w) is None  # a few multiply-adds: numpy's call is cheaper
    big_x = np.ones((8, 3, 32, 32))
    assert _native.conv2d(big_x, np.ones((6, 3, 5, 5))) is None  # float64
    assert _native.conv2d(big_x.astype(np.float32)[:0], np.ones((6, 3, 5, 5), np.float32)) is None


def test_training_gradients_through_compiled_kernels_match_the_reference():
    # a LeNet-sized batch: the forward, input gradient and weight gradient all run compiled
    rng = _rng(4)
    x_np = rng.standard_normal((16, 6, 14, 14)).astype(np.float32)
    w_np = (0.1 * rng.standard_normal((16, 6, 5, 5))).astype(np.float32)
    b_np = rng.standard_normal(16).astype(np.float32)
    x = graphc.from_numpy(x_np).requires_grad_()
    w = graphc.from_numpy(w_np).requires_grad_()
    b = graphc.from_numpy(b_np).requires_grad_()
    up = rng.standard_normal((16, 16, 10, 10)).astype(np.float32)
    (F.conv2d(x, w, b) * graphc.from_numpy(up)).sum().backward()
    geometry = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}
    want_x = _reference("conv_transpose2d", up, w_np, **geometry)
    want_w = _reference("conv2d_weight_grad", x_np, up, weight_shape=(16, 6, 5, 5), **geometry)
    _close(x.grad.numpy(), want_x, 16 * 25)
    _close(w.grad.numpy(), want_w, 16 * 100)
    np.testing.assert_allclose(b.grad.numpy(), up.sum((0, 2, 3)), rtol=1e-5)
    kinds = {key[0] for key, compiled in _native._compiled.items() if compiled is not None}
    assert {"conv2d", "conv_transpose2d", "conv2d_weight_grad"} <= kinds


@pytest.mark.parametrize("shape", [(16, 4, 32, 64), (3, 5, 7, 200)])
def test_softmax_and_its_gradient_run_compiled(shape):
    rng = _rng(7)
    x = (4 * rng.standard_normal(shape)).astype(np.float32)
    x[0, 0, 0, :3] = -np.inf  # masked positions
    y = _native.softmax(x, 3)
    assert y is not None
    _close(y, _reference("softmax", x, dim=3), shape[-1])
    g = rng.standard_normal(shape).astype(np.float32)
    back = _native.softmax_backward(y, g, 3)
    assert back is not None
    _close(back, _reference("softmax_backward", y, g, dim=3), shape[-1])
    assert _native.softmax(x, 2) is None  # not the last dim: numpy's
    assert _native.softmax(x[:1, :1, :2], 3) is None  # small: numpy's


@pytest.mark.parametrize("normalized", [(64,), (8, 64)])
@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, True), (False, False)])
def test_layer_norm_and_its_gradient_run_compiled(normalized, affine):
    rng = _rng(8)
    x = (3 + 2 * rng.standard_normal((32, 8, 64))).astype(np.float32)
    w = rng.standard_normal(normalized).astype(np.float32) if affine[0] else None
    b = rng.standard_normal(normalized).astype(np.float32) if affine[1] else None
    dims = tuple(range(3 - len(normalized), 3))
    y = _native.layer_norm(x, w, b, dims, 1e-5)
    assert y is not None
    _close(y, _reference("layer_norm", x, w, b, dims=dims, eps=1e-5), 64)
    g = rng.standard_normal(x.shape).astype(np.float32)
    back = _native.layer_norm_backward(x, w, g, dims, 1e-5)
    assert back is not None
    _close(back, _reference("layer_norm_backward", x, w, g, dims=dims, eps=1e-5), 64)
    assert _native.layer_norm(x, w, b, (1,), 1e-5) is None  # not the trailing dims: numpy's


def test_transformer_layer_gradients_through_compiled_kernels_match_the_reference(monkeypatch):
    # the same training step with the compiled eager kernels and with the references only
    def step(accelerated):
        monkeypatch.setattr(graphc._dispatch, "_accelerated", accelerated)
        graphc.manual_seed(0)
        layer = graphc.nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
        x = graphc.from_numpy(_rng(9).standard_normal((8, 32, 64)).astype(np.float32)).requires_grad_()
        layer(x).square().mean().backward()
        return [x.grad.numpy()] + [p.grad.numpy() for p in layer.parameters()]

    compiled = step(_native.ACCELERATED)
    kinds = {key[0] for key, c in _native._compiled.items() if c is not None}
    assert {"softmax", "softmax_backward", "layer_norm", "layer_norm_backward"} <= kinds
    for got, want in zip(compiled, step({}), strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6)


def test_environment_variable_turns_compiled_eager_kernels_off():
    code = "from graphc import _dispatch; print(len(_dispatch._accelerated))"
    env = {**os.environ, "GRAPHC_EAGER_KERNELS": "0"}
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert off.stdout.strip() == "0" and int(on.stdout) == len(_native.ACCELERATED) == 10


_HEAP = """
import numpy as np
from graphc import _allocator
a = np.ones(8 << 20, np.uint8)
for line in open("/proc/self/maps"):
    if line.rstrip().endswith("[heap]"):
        lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
        break
print(_allocator.TUNED, lo <= a.ctypes.data < hi)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_allocator_serves_arrays_of_megabytes_from_the_heap():
    # (glibc's moving threshold would map each such array afresh, and unmap it when freed,
    # until a larger one has been freed: page faults on every step of a training loop)
    def from_heap(tuning):
        env = {**os.environ, "GRAPHC_MALLOC_TUNING": tuning}
        out = subprocess.run(
            [sys.executable, "-c", _HEAP], env=env, capture_output=True, text=True, check=True
        )
        return out.stdout.split()

    tuned, inside = from_heap("1")
    if tuned != "True":
        pytest.skip("not glibc")
    assert inside == "True"
    assert from_heap("0") == ["False", "False"]


_KEPT = """
import numpy as np
from graphc import _allocator
def heap():  # (the kernel may show the heap as several adjacent mappings)
    size = 0
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith("[heap]"):
            lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
            size += hi - lo
    return size
arrays = [np.ones(4 << 20, np.uint8) for _ in range(40)]
grown = heap()
del arrays
print(_allocator.TUNED, grown >> 20, heap() >> 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_allocator_keeps_the_free_heap_of_a_step_for_the_next():
    # (a transformer's training step frees over 100 MB at its end; trimmed, the next step
    # faulted every page of it back in)
    out = subprocess.run([sys.executable, "-c", _KEPT], capture_output=True, text=True, check=True)
    tuned, grown, kept = out.stdout.split()
    if tuned != "True":
        pytest.skip("not glibc")
    assert int(grown) >= 160 and int(kept) >= 160


def test_tracing_never_compiles_an_eager_kernel(monkeypatch):
    """graphc.script runs its example through the reference (the module is compiled whole);
    a kernel compiled before is still used, and eager calls after tracing compile as before."""
    monkeypatch.setattr(_native, "_compiled", {})
    conv = graphc.nn.Conv2d(3, 6, 5).eval()
    x = graphc.tensor(_rng().standard_normal((8, 3, 32, 32)).astype(np.float32))
    scripted = graphc.script(conv, (x,))
    assert _native._compiled == {} and _native.compile_new
    _close(scripted(x).numpy(), conv(x).detach().numpy(), 75)
    assert len(_native._compiled) == 1  # the eager call compiled its kernel
    graphc.script(conv, (x,))  # and tracing uses it
    assert len(_native._compiled) == 1
