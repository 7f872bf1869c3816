"""Ops that graphs could not hold before they had shape rules (padding, transposed convolution,
sorting, linear algebra, scatters) captured, compiled, saved and run by the runtime, against eager;
what stays out of graphs (random numbers, data-dependent shapes) refused with a reason."""

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from codegen.cuda import emulate
from codegen.cuda.emulate import EmulatedDevice


def _upsampler():
    graphc.manual_seed(3)
    return nn.Sequential(
        nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(6, 4, (2, 3), stride=(1, 2), dilation=(2, 1), groups=2, bias=False),
    ).eval()


CASES = {
    # name: (function or module, example shape after the batch)
    "pad": (lambda x: F.pad(x, (1, 2, 0, 1), value=2.5)[..., :5, :6] + F.pad(x, (-1, 1, 2, -2)), (3, 5, 6)),
    "pad_reflect": (lambda x: F.pad(x, (2, 1, 1, 0), mode="reflect"), (3, 5, 6)),
    "conv_transpose": (_upsampler(), (4, 5, 6)),
    "sort": (lambda x: graphc.sort(x, dim=1, descending=True).values * 2, (7, 3)),
    "argsort": (lambda x: graphc.argsort(x, dim=-1).float(), (3, 7)),
    "topk": (
        lambda x: graphc.topk(x, 3, dim=1).values + graphc.topk(x, 3, 1, largest=False).indices.float(),
        (6, 4),
    ),
    "median": (lambda x: x.median(dim=1).values - graphc.quantile(x, 0.25, dim=1), (9,)),
    "kthvalue": (lambda x: x.kthvalue(3, dim=-1).values, (8,)),
    "det_inv": (lambda x: graphc.linalg.det(x)[:, None, None] * graphc.linalg.inv(x), (3, 3)),
    "svd": (lambda x: graphc.linalg.svd(x, full_matrices=False).S, (4, 3)),
    "cross": (lambda x: graphc.cross(x[:, 0], x[:, 1], dim=-1), (2, 3)),
    "scatter_add": (lambda x: graphc.zeros_like(x).scatter_add(1, x.argsort(1), x * 3), (5,)),
    "index_put": (lambda x: x.index_put((x.argmax(0),), graphc.tensor(-1.0), accumulate=True), (5,)),
}


def _run_everywhere(name, fn, features, backend, tmp_path):
    import runtime

    example = graphc.randn(2, *features)
    scripted = graphc.script(fn, (example,), backend=backend)
    scripted.save(tmp_path / f"{name}.gcm")
    loaded = runtime.load(tmp_path / f"{name}.gcm")
    for batch in (1, 5):
        x = graphc.tensor(np.random.default_rng(batch).standard_normal((batch, *features)).astype(np.float32))
        with graphc.no_grad():
            expected = fn(x).numpy()
        np.testing.assert_allclose(scripted(x).numpy(), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(loaded(x.numpy())[0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["llvm", "interpreter"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_captured_ops_run_like_eager_and_from_a_file(name, backend, tmp_path):
    fn, features = CASES[name]
    _run_everywhere(name, fn, features, backend, tmp_path)


@pytest.mark.skipif(emulate.compiler() is None, reason="needs a C++ compiler (g++) for the emulation")
@pytest.mark.parametrize("name", ["pad", "conv_transpose", "sort", "scatter_add"])
def test_captured_ops_run_on_emulated_cuda(name):
    fn, features = CASES[name]
    scripted = graphc.script(
        fn, (graphc.randn(2, *features),), device=EmulatedDevice("shuffled", max_blocks=2)
    )
    x = graphc.randn(3, *features)
    with graphc.no_grad():
        expected = fn(x).numpy()
    np.testing.assert_allclose(scripted(x).numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda x: x + graphc.randint(0, 3, (3,)), "randint, randperm and in-place fills not yet"),
        (lambda x: x[graphc.randperm(4)], "randint, randperm and in-place fills not yet"),
        (lambda x: (x * 1).cauchy_(), r"cauchy_ \(at .*test_capture_ops.py:\d+\): this random fill"),
        (lambda x: (x * 1).exponential_(), "exponential_ .*this random fill"),
        (lambda x: graphc.unique(x), "data-dependent shape"),
        (lambda x: x[x > 0], "indexing with a bool mask at .*test_capture_ops.py"),
        (lambda x: graphc.masked_select(x, x > 0), "nonzero .*depends on the values"),
        (lambda x: graphc.nonzero(x), "nonzero"),
    ],
)
def test_random_and_data_dependent_ops_are_refused(fn, match):
    with pytest.raises(graphc.TracingError, match=match):
        graphc.script(fn, (graphc.randn(4, 3),))


def test_a_constant_mask_or_index_still_selects():
    """Masks and indices that do not come from the input are constants of the graph."""
    keep = graphc.tensor([True, False, True])
    scripted = graphc.script(lambda x: x[:, keep] * 2, (graphc.randn(4, 3),))
    x = graphc.randn(6, 3)
    np.testing.assert_allclose(scripted(x).numpy(), x[:, [0, 2]].numpy() * 2)
