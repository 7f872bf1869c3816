"""CUDA code generation verified without a GPU: every kernel of these graphs (pointwise,
reductions, row kernels, gathers, matmuls and convolutions with their epilogues, max pooling,
the convolution weight and pooling gradients) renders to CUDA
C that NVRTC compiles to PTX for sm_80 and sm_90 and assembles to an sm_90 cubin without
register spills, and the same source, compiled as C++ and run by emulated CUDA threads
(fibers; blocks in sequence, threads forward, reversed and shuffled, few enough that
grid-stride loops go round), matches the reference interpreter. A missing barrier fails in
some order, a barrier some threads skip is reported, an index out of range raises, and
kernels the renderer cannot do yet say so."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cuda_graphs import GRAPHS, inputs, products, with_weights

from codegen.cuda import emulate, nvrtc
from codegen.cuda.emulate import EmulatedDevice
from codegen.cuda.executable import CudaGraph
from codegen.cuda.render import UnsupportedKernel, render_kernel, supported
from codegen.schedule import KernelStep, schedule
from ir.interpreter import run
from ir.parser import parse_graph
from ir.passes import optimize

needs_nvrtc = pytest.mark.skipif(
    not nvrtc.available(), reason="needs NVRTC (pip install nvidia-cuda-nvrtc-cu12)"
)
needs_cxx = pytest.mark.skipif(
    emulate.compiler() is None, reason="needs a C++ compiler (g++) for the emulation"
)
# the NVRTCs installed beside the one in use (the dev extra installs CUDA 12's and CUDA 13's)
OTHER_NVRTCS = [
    path
    for path in nvrtc.wheel_libraries()
    if nvrtc.available() and os.path.realpath(path) != os.path.realpath(nvrtc.location())
]


def _kernels(text):
    graph = with_weights(text)
    optimized = optimize(graph)
    steps = schedule(optimized)
    kernels = [s.kernel for s in steps if isinstance(s, KernelStep)]
    assert kernels and all(supported(k) for k in kernels)
    assert all(isinstance(s, KernelStep) or s.node.op == "reshape" for s in steps)
    return graph, optimized, steps, kernels


@needs_nvrtc
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_kernels_compile_to_ptx_and_cubins_without_spills(name):
    _, _, _, kernels = _kernels(GRAPHS[name])
    for k in kernels:
        source = render_kernel(k)
        for arch in ("compute_80", "compute_90"):
            ptx = nvrtc.compile(source, f"{k.name}.cu", arch=arch).decode()
            assert f".entry {k.name}(" in ptx and f".target sm_{arch[-2:]}" in ptx
        cubin = nvrtc.compile(source, f"{k.name}.cu", arch="sm_90")
        assert cubin[:4] == b"\x7fELF"
        report = nvrtc.resource_report(source, f"{k.name}.cu", arch="sm_90")
        assert "0 bytes spill stores, 0 bytes spill loads" in report, report


@needs_cxx
@pytest.mark.parametrize("order", ["forward", "reverse", "shuffled"])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_emulated_kernels_match_the_interpreter(name, order):
    graph = with_weights(GRAPHS[name])
    # 2 blocks of 32 threads (a tiled product's are 256): the grid-stride loops go round
    exe = CudaGraph(graph, EmulatedDevice(order, max_blocks=2, threads=32))
    for batch in (1, 3, 64):
        arrays = inputs(graph, batch, seed=batch, special=not products(name))
        with np.errstate(all="ignore"):
            want = run(graph, arrays)
            got = exe.run(arrays)
        for g, expected in zip(got, want, strict=True):
            assert g.dtype == expected.dtype and g.shape == expected.shape
            if g.dtype.kind == "f":
                tolerance = 2e-5 if products(name) else 2e-6  # (sums in another order)
                np.testing.assert_allclose(g, expected, rtol=tolerance, atol=tolerance, equal_nan=True)
            else:
                np.testing.assert_array_equal(g, expected)


def test_kernels_it_cannot_render_say_what_is_missing():
    g = parse_graph("""
graph g(%x: f32[batch,3,12,12]) weights(%w: f32[4,3,3,3]) {
  %0: f32[batch,4,10,10] = conv2d[stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1](%x, %w)
  return %0
}""")
    (step,) = schedule(optimize(g))
    packed = dataclasses.replace(step.kernel, w_packed=True)  # (the CPU executable's layout)
    assert supported(step.kernel) and not supported(packed)
    with pytest.raises(UnsupportedKernel, match="not packed for the CPU"):
        render_kernel(packed)


@needs_cxx
def test_max_pooling_takes_a_nan_anywhere_in_the_window():
    graph, optimized, steps, _ = _kernels(
        GRAPHS["max pooling, values and indices (NaN wins, then the first maximum)"]
    )
    values, indices = steps[0].kernel, steps[1].kernel
    assert not values.indices and indices.indices
    x = np.arange(2 * 3 * 9 * 8, dtype=np.float32).reshape(2, 3, 9, 8)
    x[1, 2, 3, 3] = np.nan  # the last tap of its window (rows 2-3, columns 2-3)
    x[0, 0, 0, 0] = 1000.0  # the first tap, and the largest
    got_values = emulate.run(values, [x], {"batch": 2})
    got_indices = emulate.run(indices, [x], {"batch": 2})
    assert np.isnan(got_values[1, 2, 1, 1]) and got_indices[1, 2, 1, 1] == 3 * 8 + 3
    assert got_values[0, 0, 0, 0] == 1000.0 and got_indices[0, 0, 0, 0] == 0
    want = run(graph, [x])
    np.testing.assert_array_equal(got_values, want[0])
    np.testing.assert_array_equal(got_indices, want[1])


@needs_cxx
def test_a_gather_index_out_of_range_raises():
    g = parse_graph(GRAPHS["gathers"])
    optimized = optimize(g)
    step = schedule(optimized)[0]
    assert step.kernel.checked and len(step.kernel.inputs) == 3
    x = np.ones((2, 7), np.float32)
    m = np.ones((2, 3), np.float32)
    good = np.array([[0, 6, 3], [1, 2, 0]], np.int64)
    np.testing.assert_allclose(
        emulate.run(step.kernel, [x, good, m], {"batch": 2}), np.full((2, 3), np.e), rtol=1e-6
    )
    for bad in (7, -1):
        index = good.copy()
        index[1, 2] = bad
        with pytest.raises(IndexError, match="out of range"):
            emulate.run(step.kernel, [x, index, m], {"batch": 2})


def _reduction_step():
    g = parse_graph("""
graph g(%x: f32[batch,300]) {
  %0: f32[batch] = sum[dims=(1,), keepdim=False](%x)
  return %0
}""")
    (step,) = schedule(optimize(g))
    return g, step


@needs_cxx
def test_a_missing_barrier_is_reported_as_a_race_in_every_thread_order():
    g, step = _reduction_step()
    x = np.random.default_rng(0).standard_normal((4, 300)).astype(np.float32)
    want = run(g, [x])[0]
    source = render_kernel(step.kernel)
    np.testing.assert_allclose(emulate.run(step.kernel, [x], {"batch": 4}, source=source), want, rtol=1e-5)
    # without the barrier after the warps leave their sums, the first warp may read one not yet
    # made: the shared array's race detector sees the write and the read between the same barriers
    broken = source.replace("    __syncthreads();\n", "", 1)
    assert broken != source
    race = r"partial0\[\d\] (written while another thread reads|read while another thread writes) it"
    for order in emulate.ORDERS:
        with pytest.raises(emulate.SharedMemoryFault, match=race + " between the same two barriers"):
            emulate.run(step.kernel, [x], {"batch": 4}, order, source=broken)


@needs_cxx
def test_a_shared_array_indexed_out_of_bounds_is_reported():
    g, step = _reduction_step()
    store = "partial0[threadIdx.x / 32] = acc0;"
    source = render_kernel(step.kernel).replace(store, "partial0[threadIdx.x / 16] = acc0;", 1)
    assert source != render_kernel(step.kernel)
    x = np.zeros((2, 300), np.float32)
    with pytest.raises(
        emulate.SharedMemoryFault, match=r"partial0\[8\] indexed out of bounds \(thread 128\)"
    ):
        emulate.run(step.kernel, [x], {"batch": 2}, source=source)


@needs_cxx
def test_a_barrier_some_threads_skip_is_reported():
    g, step = _reduction_step()
    store = "    if (threadIdx.x % 32 == 0) partial0[threadIdx.x / 32] = acc0;"
    source = render_kernel(step.kernel).replace(store, store + "\n    if (threadIdx.x > 0) return;", 1)
    assert source != render_kernel(step.kernel)
    x = np.zeros((2, 300), np.float32)
    with pytest.raises(RuntimeError, match="barrier was reached by some threads"):
        emulate.run(step.kernel, [x], {"batch": 2}, source=source)


@needs_cxx
def test_a_shuffle_some_lanes_of_a_warp_skip_is_reported():
    g, step = _reduction_step()
    loop = "    for (int offset = 16; offset > 0; offset /= 2)\n"
    source = render_kernel(step.kernel).replace(loop, "    if (threadIdx.x % 32 == 5) continue;\n" + loop, 1)
    assert source != render_kernel(step.kernel)
    x = np.zeros((2, 300), np.float32)
    with pytest.raises(RuntimeError, match="barrier was reached by some threads"):
        emulate.run(step.kernel, [x], {"batch": 2}, source=source)


@needs_cxx
def test_shuffles_read_the_partner_lane_after_it_wrote(monkeypatch):
    # the warp's sum is right in every thread order because every lane leaves its value before
    # any lane reads: an emulation without that first wait reads stale slots in some order
    g, step = _reduction_step()
    x = np.random.default_rng(1).standard_normal((3, 300)).astype(np.float32)
    want = run(g, [x])[0]
    for order in emulate.ORDERS:
        np.testing.assert_allclose(emulate.run(step.kernel, [x], {"batch": 3}, order), want, rtol=1e-5)
    wait = "  memcpy(gc_lanes[me], &value, sizeof(T));\n  gc_warp_sync();\n"
    assert wait in emulate.HEADER
    monkeypatch.setattr(emulate, "HEADER", emulate.HEADER.replace(wait, wait.split("\n")[0] + "\n"))
    results = [emulate.run(step.kernel, [x], {"batch": 3}, o) for o in emulate.ORDERS]
    assert any(not np.allclose(r, want, rtol=1e-5) for r in results)


COMPILE_EVERY_GRAPH = """
from cuda_graphs import GRAPHS, with_weights
from codegen.cuda import nvrtc
from codegen.cuda.render import render_module
from codegen.schedule import KernelStep, schedule
from ir.passes import optimize

for name, text in GRAPHS.items():
    steps = schedule(optimize(with_weights(text)))
    source = render_module([s.kernel for s in steps if isinstance(s, KernelStep)])
    ptx = nvrtc.compile(source, "graph.cu", arch="compute_80").decode()
    assert ".target sm_80" in ptx, name
    assert nvrtc.compile(source, "graph.cu", arch="sm_90")[:4] == b"\\x7fELF", name
    report = nvrtc.resource_report(source, "graph.cu", arch="sm_90")
    spills = report.count("bytes spill stores") - report.count(" 0 bytes spill stores, 0 bytes spill loads")
    assert spills == 0, report
print(nvrtc.location(), *nvrtc.version())
"""


@pytest.mark.parametrize(
    "library", OTHER_NVRTCS or [pytest.param(None, marks=pytest.mark.skip(reason="one NVRTC is installed"))]
)
def test_every_graph_compiles_with_the_other_installed_nvrtc(library):
    """Code from CUDA 12's NVRTC runs on CUDA 12 and 13 drivers, CUDA 13's on 13 only (a GPU
    machine may have only that one): each installed NVRTC compiles every graph's module, in a
    process of its own (GRAPHC_NVRTC picks the library)."""
    tests = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "GRAPHC_NVRTC": library, "PYTHONPATH": os.pathsep.join([tests, *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", COMPILE_EVERY_GRAPH], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    location, major, _ = done.stdout.split()
    assert location == library and int(major) != nvrtc.version()[0]


def test_graphc_nvrtc_names_the_library_and_a_missing_one_says_so(monkeypatch, tmp_path):
    try:
        monkeypatch.setenv("GRAPHC_NVRTC", str(tmp_path / "libnvrtc.so.99"))
        nvrtc._library.cache_clear()
        assert not nvrtc.available()
        with pytest.raises(
            nvrtc.NvrtcUnavailable, match=r"GRAPHC_NVRTC names .*libnvrtc.so.99.*no such file"
        ):
            nvrtc.version()
    finally:
        monkeypatch.delenv("GRAPHC_NVRTC")
        nvrtc._library.cache_clear()
    assert nvrtc.requirement(12, 4) == "nvidia-cuda-nvrtc-cu12==12.4.*"  # (the wheels' names differ)
    assert nvrtc.requirement(13, 0) == "nvidia-cuda-nvrtc==13.0.*"


@needs_nvrtc
def test_compile_errors_name_the_source_line():
    source = 'extern "C" __global__ void k(float* y) {\n  y[0] = undefined_name;\n}\n'
    with pytest.raises(nvrtc.CudaCompileError, match=r"identifier \"undefined_name\" is undefined") as info:
        nvrtc.compile(source, "broken.cu")
    assert "    2 |   y[0] = undefined_name;" in str(info.value)


@needs_cxx
def test_a_tile_restaged_before_every_thread_has_read_it_is_a_race():
    g = with_weights("""
graph g(%x: f32[batch,40]) weights(%w: f32[40,24]) {
  %0: f32[batch,24] = matmul(%x, %w)
  return %0
}""")
    (step,) = schedule(optimize(g))
    x = np.random.default_rng(2).standard_normal((5, 40)).astype(np.float32)
    w = g.weight_data[step.inputs[1]]
    source = render_kernel(step.kernel)
    np.testing.assert_allclose(emulate.run(step.kernel, [x, w], {"batch": 5}), x @ w, rtol=1e-5, atol=1e-5)
    # the barrier after the products: without it the next K step stages As over values in use
    last = source.rindex("      __syncthreads();\n")
    broken = source[:last] + source[last:].replace("      __syncthreads();\n", "", 1)
    with pytest.raises(
        emulate.SharedMemoryFault, match=r"(As|Bs)\[\d+\] written while another thread reads it"
    ):
        emulate.run(step.kernel, [x, w], {"batch": 5}, "shuffled", source=broken)
