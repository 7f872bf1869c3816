"""Models that take only sizes that are multiples of some number (a U-Net's skip connections),
upsampling at any size (transposed convolutions, interpolate, pixel shuffle), and sizes that
are multiples of a symbol (`h_times_2`)."""

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from codegen.cuda.emulate import EmulatedDevice
from ir.errors import InputError

SPATIAL = {"x": {0: "batch", 2: "h", 3: "w"}}


class _UNet(nn.Module):
    """`depth` poolings down and as many transposed convolutions up, each concatenated with
    the skip connection of its size (the sizes meet only where they are multiples of 2^depth)."""

    def __init__(self, depth: int = 1, up: str = "transposed") -> None:
        super().__init__()
        self.depth, self.up = depth, up
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.down = nn.ModuleList(nn.Conv2d(4, 4, 3, padding=1) for _ in range(depth))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(4, 4, 2, stride=2) for _ in range(depth))
        self.merge = nn.ModuleList(nn.Conv2d(8, 4, 1) for _ in range(depth))
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        x = F.relu(self.stem(x))
        skips = []
        for conv in self.down:
            skips.append(x)
            x = F.relu(conv(F.max_pool2d(x, 2)))
        for up, merge, skip in zip(self.ups, self.merge, reversed(skips), strict=True):
            if self.up == "transposed":
                x = up(x)
            else:
                x = F.interpolate(
                    x, scale_factor=2, mode=self.up, align_corners=False if self.up != "nearest" else None
                )
            x = F.relu(merge(graphc.cat([skip, x], 1)))
        return self.head(x)


def _check(scripted, net, sizes):
    for shape in sizes:
        x = graphc.randn(*shape)
        with graphc.no_grad():
            np.testing.assert_allclose(np.asarray(scripted(x)._data), net(x).numpy(), rtol=1e-4, atol=1e-5)


def test_a_unet_scripts_for_every_size_its_skip_connections_take(tmp_path):
    """Sizes of any value fail (a pooled and upsampled odd size is one less than the skip):
    capture finds that the model takes multiples of 2 (the input dims h_div_2_times_2), and the
    graph runs at every even size, on every backend and from a module file; an odd size is an
    InputError that says so."""
    import runtime

    graphc.manual_seed(0)
    net = _UNet().eval()
    example = (graphc.randn(2, 3, 8, 12),)
    sizes = [(1, 3, 2, 6), (3, 3, 14, 4), (2, 3, 32, 18)]
    for backend in ("llvm", "interpreter"):
        scripted = graphc.script(net, example, dynamic=SPATIAL, backend=backend)
        assert str(scripted.graph.inputs[0].type) == "f32[batch,3,h_div_2_times_2,w_div_2_times_2]"
        _check(scripted, net, sizes)
    with pytest.raises(InputError, match="'h_div_2_times_2' takes multiples of 2, which 7 is not"):
        scripted(graphc.randn(1, 3, 7, 8))
    scripted.save(tmp_path / "unet.gcm")
    loaded = runtime.load(tmp_path / "unet.gcm")
    emulated = graphc.script(net, example, dynamic=SPATIAL, device=EmulatedDevice("shuffled", max_blocks=2))
    for shape in sizes[:2]:
        x = graphc.randn(*shape)
        with graphc.no_grad():
            want = net(x).numpy()
        np.testing.assert_allclose(loaded(x.numpy())[0], want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(emulated(x)._data), want, rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="multiples of 2"):
        loaded(np.zeros((1, 3, 6, 5), np.float32))


def test_the_multiple_is_the_smallest_that_works_and_only_where_needed():
    """Two poolings need multiples of 4; the batch, which no skip connection meets, stays
    any size; a symbol that only one spatial dim needs keeps the other free."""
    graphc.manual_seed(1)
    net = _UNet(depth=2).eval()
    scripted = graphc.script(net, (graphc.randn(2, 3, 16, 8),), dynamic=SPATIAL, backend="interpreter")
    assert str(scripted.graph.inputs[0].type) == "f32[batch,3,h_div_4_times_4,w_div_4_times_4]"
    _check(scripted, net, [(3, 3, 4, 12), (1, 3, 20, 8)])

    def halves_rows(x):  # (only the rows are pooled and upsampled)
        return x + graphc.repeat_interleave(x[:, :, ::2], 2, dim=2)

    scripted = graphc.script(halves_rows, (graphc.randn(2, 3, 8, 5),), dynamic=SPATIAL, backend="interpreter")
    assert str(scripted.graph.inputs[0].type) == "f32[batch,3,h_div_2_times_2,w]"
    _check(scripted, halves_rows, [(1, 3, 6, 3), (2, 3, 2, 9)])


def test_a_model_that_needs_other_multiples_keeps_the_first_error():
    """Multiples are powers of 2: a model that takes multiples of 3 is refused with the error
    of sizes of any value."""

    def thirds(x):
        return x + graphc.repeat_interleave(x[:, :, ::3], 3, dim=2)

    with pytest.raises(graphc.TracingError, match="second time with the symbolic dims larger"):
        graphc.script(thirds, (graphc.randn(2, 3, 6, 8),), dynamic=SPATIAL)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_upsampling_by_interpolation_scripts_at_any_size(mode):
    graphc.manual_seed(2)
    net = _UNet(up=mode).eval()
    scripted = graphc.script(net, (graphc.randn(2, 3, 8, 12),), dynamic=SPATIAL)
    _check(scripted, net, [(1, 3, 2, 6), (3, 3, 14, 4)])


@pytest.mark.parametrize("align_corners", [False, True])
def test_interpolate_by_a_whole_factor_follows_the_input_size(align_corners):
    """Without skip connections any size works: the output size is h_times_2 (h_times_3)."""

    def fn(x):
        return F.interpolate(x, scale_factor=(2, 3), mode="bilinear", align_corners=align_corners)

    scripted = graphc.script(fn, (graphc.randn(2, 3, 5, 4),), dynamic=SPATIAL, backend="interpreter")
    assert str(scripted.graph.outputs[0].type) == "f32[batch,3,h_times_2,w_times_3]"
    _check(scripted, fn, [(1, 3, 1, 1), (2, 3, 7, 2), (1, 3, 3, 10)])
    compiled = graphc.script(fn, (graphc.randn(2, 3, 5, 4),), dynamic=SPATIAL)
    _check(compiled, fn, [(1, 3, 1, 1), (2, 3, 7, 2)])


def test_interpolate_values_follow_pytorch():
    """PyTorch's conventions, worked by hand: nearest repeats rows; bilinear without aligned
    corners samples at (i + 0.5) / 2 - 0.5 (clamped at 0), with aligned corners at
    i * (n - 1) / (2n - 1)."""
    row = graphc.tensor([[[[0.0, 1.0, 2.0]]]])
    near = F.interpolate(row, scale_factor=(1, 3), mode="nearest")
    np.testing.assert_array_equal(near.numpy().ravel(), [0, 0, 0, 1, 1, 1, 2, 2, 2])
    half = F.interpolate(row, scale_factor=(1, 2), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(half.numpy().ravel(), [0, 0.25, 0.75, 1.25, 1.75, 2])
    corners = F.interpolate(row, scale_factor=(1, 2), mode="bilinear", align_corners=True)
    np.testing.assert_allclose(corners.numpy().ravel(), [0, 0.4, 0.8, 1.2, 1.6, 2], rtol=1e-6)
    odd = F.interpolate(row, size=(1, 5), mode="nearest")  # (not a whole factor: floor(i * 3 / 5))
    np.testing.assert_array_equal(odd.numpy().ravel(), [0, 0, 1, 1, 2])


def test_resizing_to_another_inputs_size_is_refused_where_the_two_are_unrelated():
    """interpolate(x, size=y.shape[-2:]) with x and y of independent sizes: the graph cannot
    say that y's size is twice x's, so capture refuses it (both examples happen to be whole
    factors; a graph computing x's rows for twice x's size would be wrong elsewhere)."""

    def fn(x, y):
        return F.interpolate(x, size=y.shape[-1:], mode="nearest")

    dynamic = {"x": {2: "n"}, "y": {2: "big_n"}}  # (the second recording: n 5, big_n 10)
    with pytest.raises(
        graphc.TracingError, match=r"reshape: shape \['big_n'\] is invalid for input of shape \['n', 2\]"
    ):
        graphc.script(fn, (graphc.randn(1, 2, 4), graphc.randn(1, 2, 8)), dynamic=dynamic)


def test_pixel_shuffle_and_reshapes_by_multiples_of_sizes():
    graphc.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2), nn.PixelUnshuffle(2)).eval()
    scripted = graphc.script(
        net, (graphc.randn(2, 3, 5, 4),), dynamic={"input": {0: "batch", 2: "h", 3: "w"}}
    )
    assert str(scripted.graph.nodes[-1].outputs[0].type) == "f32[batch,12,h,w]"
    _check(scripted, net, [(1, 3, 1, 7), (3, 3, 6, 2)])

    def flat(x):  # numbers that are multiples of a size: x.numel(), x.size(0) * 2
        return x.reshape(x.size(0) * 2, -1) * x.numel()

    scripted = graphc.script(flat, (graphc.randn(4, 6),), backend="interpreter")
    assert str(scripted.graph.outputs[0].type) == "f32[batch_times_2,3]"
    _check(scripted, flat, [(1, 6), (7, 6)])
