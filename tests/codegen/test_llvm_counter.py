"""Positions computed in place (`arange(n)` as the kernel IR's `Index`) and the counter-based
random generator built on them: the same bits from numpy's reference, the interpreter, the
compiled CPU kernel and the emulated CUDA kernel."""

import numpy as np
import pytest
from compiled import compare_with_interpreter

import codegen.sized as sized
from codegen.executable import compile_graph
from graphc import _native
from ir.graph import Graph
from ir.interpreter import run
from ir.ops.creation import counter_bits, counter_uniform, stream_key
from ir.ops.registry import OPS
from ir.parser import parse_graph


def test_positions_are_computed_in_place_or_stored_where_read_in_memory():
    g = parse_graph("""
graph g(%x: f32[n], %y: f32[batch,n]) {
  %0: f32[n] = arange[dtype='float32', end='n', start=0, step=1]()
  %1: f32[n] = mul(%x, %0)
  %2: f32[batch,n] = add(%y, %1)
  %3: i64[n] = arange[dtype='int64', end='n', start=0, step=1]()
  %4: f32[n] = cast[dtype='float32'](%3)
  %5: f32[batch,n] = sub(%2, %4)
  return %5, %3
}""")
    rng = np.random.default_rng(0)
    exe = compare_with_interpreter(
        g, [rng.standard_normal(7).astype(np.float32), np.ones((3, 7), np.float32)]
    )
    kernels = [s.kernel for s in exe.steps]
    # the int64 positions are an output: stored once by a kernel of their own, read back by the
    # other; the float ones exist only inside it, broadcast along the batch
    assert kernels[0].inputs == () and "index0" in str(exe).splitlines()[0]
    assert "cast[float32](index1)" in str(exe).splitlines()[1]
    assert exe.native is not None


def test_a_single_position_broadcast_is_not_the_kernels_positions():
    from codegen.schedule import format_schedule, schedule

    g = parse_graph("""
graph g(%y: f32[batch,5]) {
  %0: f32[1] = arange[dtype='float32', end=1, start=0, step=1]()
  %1: f32[batch,5] = add(%y, %0)
  return %1
}""")
    text = format_schedule(schedule(g))  # (unoptimized: constant folding would take the arange)
    assert "index1" not in text and "index0" in text  # stored by a kernel over [1], then read


def test_cheap_positions_are_not_size_dependent_inputs():
    # (positions gathered from a weight are: test_sized)
    g = parse_graph("""
graph g(%x: i64[n], %key: i64[]) weights(%m: i64[]) {
  %0: i64[n] = arange[dtype='int64', end='n', start=0, step=1]()
  %1: i64[n] = mul(%0, %m)
  %2: i64[n] = add(%1, %key)
  %3: i64[n] = bitwise_xor(%2, %x)
  return %3
}""")
    g.weight_data["m"] = np.array(-7, np.int64)
    main, extra = sized.split(g)
    assert extra is None and main is g
    x, key = np.arange(5, dtype=np.int64) * 3, np.array(11, np.int64)
    exe = compare_with_interpreter(g, [x, key])
    assert len(exe.steps) == 1


def _splitmix64(state: int, count: int) -> list[int]:
    """SplitMix64 on Python's integers, as published: add the golden gamma, then mix."""
    out, mask = [], (1 << 64) - 1
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append(z ^ (z >> 31))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2**40 + 3])
def test_the_generator_is_splitmix64_in_int64_arithmetic(seed):
    # the stream of `seed` starts from SplitMix64's mix of seed * gamma; the int64 version
    # (wrapping products, masked arithmetic shifts) gives its bits exactly
    mask = (1 << 64) - 1
    start = _splitmix64((seed * 0x9E3779B97F4A7C15 - 0x9E3779B97F4A7C15) & mask, 1)[0]
    bits = counter_bits(np, np.arange(1000, dtype=np.int64), stream_key(seed))
    assert [int(b) & mask for b in bits] == _splitmix64(start, 1000)


def test_the_generators_numbers():
    u = counter_uniform(np, np.arange(1 << 20, dtype=np.int64), stream_key(1))
    assert 0 <= u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 2e-3 and abs(u.var() - 1 / 12) < 1e-3
    counts = np.histogram(u, 64, (0, 1))[0]
    expected = u.size / 64
    assert ((counts - expected) ** 2 / expected).sum() < 120  # chi-square, 63 degrees of freedom
    other = counter_uniform(np, np.arange(1 << 16, dtype=np.int64), stream_key(2))
    assert abs(np.corrcoef(u[: 1 << 16], other)[0, 1]) < 0.02  # neighbouring seeds
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01  # neighbouring counters
    assert u.dtype == np.float32 and ((u * 2.0**24) % 1 == 0).all()  # 24 bits
    double = counter_uniform(np, np.arange(1000, dtype=np.int64), stream_key(1), np.float64)
    assert double.dtype == np.float64 and ((double * 2.0**24) % 1 != 0).mean() > 0.99  # 53 bits
    np.testing.assert_array_equal(np.floor(double * 2.0**24), u[:1000] * 2.0**24)  # the same top bits


def test_bernoulli_is_the_same_everywhere():
    rng = np.random.default_rng(3)
    p = rng.random((300, 70)).astype(np.float32)
    p[0, :4] = [0.0, 1.0, 0.5, 1e-8]
    want = OPS["bernoulli"].impl(np, p, seed=123)
    assert want.dtype == np.float32 and want[0, 0] == 0 and want[0, 1] == 1
    assert abs(want.mean() - p.mean()) < 0.01
    assert not (want == OPS["bernoulli"].impl(np, p, seed=124)).all()
    got = _native.bernoulli(p, 123)  # through a compiled kernel
    assert got is not None
    np.testing.assert_array_equal(got, want)
    graph = _native._compiled[("bernoulli", "float32")].source
    key = np.array(stream_key(123), np.int64)
    np.testing.assert_array_equal(run(graph, [p.reshape(-1), key])[0].reshape(p.shape), want)
    exe = compare_with_interpreter(graph, [p.reshape(-1)[:200], key])  # the CUDA kernels too
    # one kernel: each hash step reads its value twice, and computes it twice rather than store it
    assert len(exe.steps) == 1 and exe.native is not None
    assert _native.bernoulli(p[:2, :2], 123) is None  # small: the reference's
    double = p.astype(np.float64)  # 53 random bits each
    np.testing.assert_array_equal(_native.bernoulli(double, 123), OPS["bernoulli"].impl(np, double, seed=123))


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_bernoulli_of_other_dtypes(dtype):
    p = np.full((400, 100), 0.25, dtype)
    out = OPS["bernoulli"].impl(np, p, seed=9)
    assert out.dtype == dtype and set(np.unique(out)) == {0, 1}
    assert abs(float(out.mean()) - 0.25) < 0.01


def test_dropout_masks_are_the_same_with_and_without_compiled_kernels(monkeypatch):
    import graphc

    x = graphc.ones(64, 512)

    def masks(accelerated):
        monkeypatch.setattr(graphc._dispatch, "_accelerated", accelerated)
        graphc.manual_seed(5)
        return graphc.nn.functional.dropout(x, 0.3).numpy()

    fast, reference = masks(_native.ACCELERATED), masks({})
    np.testing.assert_array_equal(fast, reference)
    assert set(np.unique(fast)) == {0.0, np.float32(1 / 0.7)}
    assert abs((fast == 0).mean() - 0.3) < 0.01


def test_int64_positions_through_every_backend_at_several_sizes():
    g = Graph("g")
    from ir import dtypes
    from ir.types import TensorType

    x = g.add_input("x", TensorType(dtypes.int64, ("n",)))
    (i,) = g.add_node("arange", [], {"start": 0, "end": "n", "step": 1, "dtype": "int64"})
    (y,) = g.add_node("left_shift", [i, x])
    g.set_outputs([y])
    exe = compile_graph(g)
    for n in (1, 5, 1000):
        values = np.arange(n, dtype=np.int64) % 70 - 3
        np.testing.assert_array_equal(exe.run([values])[0], run(g, [values])[0])
    compare_with_interpreter(g, [np.arange(40, dtype=np.int64) % 70 - 3])


@pytest.mark.parametrize("levels", [3, 12])
def test_integer_values_read_twice_are_computed_again_up_to_a_size(levels):
    # z = z ^ (z >> 1), `levels` times: the expression doubles at each level; past
    # MAX_RECOMPUTED nodes a value is stored and read back instead
    lines, z = [], "%x"
    for i in range(levels):
        lines.append(f"  %s{i}: i64[n] = right_shift({z}, %one)")
        lines.append(f"  %z{i}: i64[n] = bitwise_xor({z}, %s{i})")
        z = f"%z{i}"
    g = parse_graph("graph g(%x: i64[n]) weights(%one: i64[]) {\n" + "\n".join(lines) + f"\n  return {z}\n}}")
    g.weight_data["one"] = np.array(1, np.int64)
    exe = compare_with_interpreter(g, [np.arange(-50, 50, dtype=np.int64) * 987654321])
    assert (len(exe.steps) == 1) == (levels == 3)
