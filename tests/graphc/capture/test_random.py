"""Random numbers in captured graphs: rand, randn, normal and bernoulli record the counter-based
generator (ir.ops.creation) keyed by the graph's `rng.key` input, which ScriptModule (from
graphc's generator) and the runtime (from its own) fill with a fresh key per call: a sampling
model (a VAE's reparameterization) draws new numbers on every call, on every backend."""

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
import runtime
from codegen.cuda.emulate import EmulatedDevice
from ir.ops.creation import RNG_KEY, counter_bits, counter_normal, counter_uniform, stream_key


def _draws(x):
    """Uniforms over x's (symbolic) shape, normals with x's mean, a coin per element with
    probability sigmoid(x), and two more uniform draws."""
    u = graphc.rand_like(x)
    z = graphc.normal(x, 2.0)
    coins = graphc.bernoulli(x.sigmoid())
    return u, z, coins, graphc.rand(x.shape[0], 3), graphc.rand_like(x)


DYNAMIC = {"x": {0: "batch", 1: "seq"}}


@pytest.mark.parametrize("backend", ["llvm", "interpreter"])
def test_captured_draws_follow_the_counter_generator_at_every_position(backend):
    """With a key passed in, the uniforms are exactly ir.ops.creation's generator at each
    element's C-order position of the stream of draw 0 (so symbolic strides are right); the
    other draws have their distributions."""
    scripted = graphc.script(_draws, (graphc.randn(2, 3, 5),), dynamic=DYNAMIC, backend=backend)
    assert scripted.graph.inputs[-1].name == RNG_KEY
    key = np.array(stream_key(1234), dtype=np.int64)
    graphc.manual_seed(0)  # (the statistics below are of fixed numbers)
    x = graphc.randn(600, 7, 5)
    u, z, coins, other, again = scripted(x, key)
    stream0 = counter_bits(np, np.int64(0), key)
    positions = np.arange(600 * 7 * 5, dtype=np.int64).reshape(600, 7, 5)
    np.testing.assert_array_equal(u.numpy(), counter_uniform(np, positions, stream0, np.float32))
    assert u.dtype == graphc.float32 and 0.0 <= u.min().item() and u.max().item() < 1.0
    noise = (z - x).numpy() / 2.0
    stream1 = counter_bits(np, np.int64(1), key)  # (draw 1: Box-Muller, the same definition)
    np.testing.assert_allclose(noise, counter_normal(np, positions, stream1), rtol=1e-4, atol=1e-5)
    assert abs(noise.mean()) < 0.02 and abs(noise.std() - 1.0) < 0.02
    p = x.sigmoid().numpy()
    assert set(np.unique(coins.numpy())) == {0.0, 1.0}
    assert abs((coins.numpy() - p).mean()) < 0.01  # E[coin] = p
    assert other.shape == (600, 3) and abs(other.numpy().mean() - 0.5) < 0.05
    assert abs(np.corrcoef(again.numpy().ravel(), u.numpy().ravel())[0, 1]) < 0.02  # its own stream


def test_each_call_draws_anew_and_manual_seed_repeats_them(tmp_path):
    class Sampler(nn.Module):  # a VAE's reparameterization
        def __init__(self):
            super().__init__()
            self.mu, self.logvar = nn.Linear(4, 3), nn.Linear(4, 3)

        def forward(self, x):
            mu, logvar = self.mu(x), self.logvar(x)
            return mu + graphc.randn_like(mu) * (0.5 * logvar).exp()

    model = Sampler().eval()
    scripted = graphc.script(model, (graphc.randn(2, 4),))
    x = graphc.randn(5, 4)
    graphc.manual_seed(7)
    first, second = scripted(x), scripted(x)
    graphc.manual_seed(7)
    assert np.array_equal(scripted(x).numpy(), first.numpy())
    assert not np.array_equal(first.numpy(), second.numpy())
    scripted.save(tmp_path / "sampler.gcm")
    key = np.array(stream_key(99), dtype=np.int64)
    loaded = runtime.load(tmp_path / "sampler.gcm", seed=3)
    np.testing.assert_allclose(loaded(x.numpy(), key)[0], scripted(x, key).numpy(), rtol=1e-5, atol=1e-6)
    a, b = loaded(x.numpy())[0], loaded(x.numpy())[0]
    assert not np.array_equal(a, b)
    again = runtime.load(tmp_path / "sampler.gcm", seed=3)
    np.testing.assert_array_equal(again(x.numpy())[0], a)  # the same seed, the same keys
    by_name = again.run({"x": x.numpy()})  # (inputs by name get a key too)
    assert list(by_name) == ["output"] and by_name["output"].shape == (5, 3)
    emulated = graphc.script(model, (graphc.randn(2, 4),), device=EmulatedDevice("shuffled", max_blocks=2))
    on_emulation = np.asarray(emulated(x, key)._data)
    np.testing.assert_allclose(on_emulation, scripted(x, key).numpy(), rtol=1e-5, atol=1e-6)


def test_dropout_in_training_mode_draws_a_mask_per_call():
    """F.dropout(training=True) inside a captured function (Monte Carlo dropout): a new mask
    of about p zeros on every call, the kept values scaled by 1 / (1 - p)."""
    scripted = graphc.script(lambda x: F.dropout(x, 0.25, training=True), (graphc.randn(4, 100),))
    x = graphc.ones(400, 100)
    first, second = scripted(x).numpy(), scripted(x).numpy()
    assert set(np.unique(first)) == {0.0, np.float32(1 / 0.75)}
    assert abs((first == 0).mean() - 0.25) < 0.01 and not np.array_equal(first, second)


def test_in_place_fills_draw_per_call_too():
    """uniform_, normal_ and bernoulli_ inside a captured function: a captured draw written
    into the tensor (through a view too), new numbers on every call."""

    def f(x):
        y = graphc.empty_like(x)
        y[:, :2].uniform_(-1.0, 1.0)
        y[:, 2:].normal_(3.0, 0.5)
        return y, x.clone().bernoulli_(0.25)

    scripted = graphc.script(f, (graphc.randn(4, 6),))
    y, coins = scripted(graphc.randn(5000, 6))
    u, z = y.numpy()[:, :2], y.numpy()[:, 2:]
    assert -1.0 <= u.min() and u.max() < 1.0 and abs(u.mean()) < 0.03
    assert abs(z.mean() - 3.0) < 0.02 and abs(z.std() - 0.5) < 0.02
    assert abs(coins.numpy().mean() - 0.25) < 0.01
    assert not np.array_equal(scripted(graphc.randn(5000, 6))[0].numpy(), y.numpy())


def test_random_numbers_inside_a_scan_body_are_refused():
    def f(x):
        return graphc.scan(lambda c, t: (c + graphc.rand_like(t), c), x[0], x)[1]

    with pytest.raises(graphc.TracingError, match="inside a graphc.scan body"):
        graphc.script(f, (graphc.randn(3, 2),))
    with pytest.raises(graphc.TracingError, match="randint, randperm"):
        graphc.script(lambda x: x + graphc.randint(0, 3, (2,)), (graphc.randn(3, 2),))
