"""The CUDA executable without a GPU: whole graphs (an MLP with softmax, LeNet, a gather with
labels, a cond whose branches hold weights, interpreter nodes between kernels) compiled by
CudaGraph and run by the CPU emulation of CUDA threads match the reference interpreter at
several batch sizes with one compiled module; and the code a GPU would load is chosen as the
module docstring says (cache, trusted file, NVRTC: cubin for the device's own architecture,
else the newest PTX below it), with a DeviceError naming what is missing."""

import sys
import weakref

import numpy as np
import pytest
from fake_cupy import fake_cupy
from testmodels import Gated, LeNet

import graphc
import graphc.nn as nn
from codegen import library
from codegen.cuda import emulate, nvrtc
from codegen.cuda import executable as cuda_executable
from codegen.cuda.device import Device, DeviceError
from codegen.cuda.emulate import EmulatedDevice
from codegen.cuda.executable import CudaGraph, code_candidates, code_key, source_key
from codegen.executable import executable
from ir import dtypes
from ir.errors import InputError
from ir.graph import Graph
from ir.interpreter import run
from ir.parser import parse_graph
from ir.types import TensorType

needs_cxx = pytest.mark.skipif(
    emulate.compiler() is None, reason="needs a C++ compiler (g++) for the emulation"
)
needs_nvrtc = pytest.mark.skipif(
    not nvrtc.available(), reason="needs NVRTC (pip install nvidia-cuda-nvrtc-cu12)"
)


def _mlp_graph():
    graphc.manual_seed(3)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 10), nn.Softmax(dim=1))
    return graphc.script(model.eval(), (graphc.randn(2, 20),), backend="interpreter").graph


def _lenet_graph():
    graphc.manual_seed(4)
    return graphc.script(LeNet().eval(), (graphc.randn(2, 1, 32, 32),), backend="interpreter").graph


def _compare(exe, graph, inputs):
    got = exe.run(inputs)
    want = run(graph, inputs)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert type(g) is np.ndarray and g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


@needs_cxx
@pytest.mark.parametrize("order", ["forward", "reverse", "shuffled"])
def test_mlp_and_lenet_match_the_interpreter_at_every_batch_size(order):
    rng = np.random.default_rng(0)
    for graph, features in ((_mlp_graph(), (20,)), (_lenet_graph(), (1, 32, 32))):
        exe = CudaGraph(graph, EmulatedDevice(order, max_blocks=3))  # (grid-stride loops go round)
        assert exe.kernels and exe.code_kind is None  # (the emulation runs the source)
        for batch in (1, 5):
            _compare(exe, graph, [rng.standard_normal((batch, *features)).astype(np.float32)])


@needs_cxx
def test_interpreter_nodes_run_between_kernels_on_the_device_arrays():
    # cumsum and atan2 have no kernels: the interpreter runs them on one kernel's output (and
    # a weight on the device) for the next; a weight is also an output
    g = Graph("g")
    x = g.add_input("x", TensorType(dtypes.float32, ("batch", 6)))
    w = g.add_weight("w", np.linspace(-2.0, 3.0, 6, dtype=np.float32))
    (e,) = g.add_node("exp", [x], {})
    (c,) = g.add_node("cumsum", [e], {"dim": 1})
    (a,) = g.add_node("atan2", [c, w], {})
    (m,) = g.add_node("mul", [a, x], {})
    (total,) = g.add_node("sum", [m], {"dims": (1,), "keepdim": False})
    g.set_outputs([total, w])
    exe = CudaGraph(g, EmulatedDevice("shuffled", max_blocks=2))
    assert "cumsum" in exe.schedule_text and "atan2" in exe.schedule_text and len(exe.kernels) == 2
    _compare(exe, g, [np.random.default_rng(1).standard_normal((7, 6)).astype(np.float32)])


@needs_cxx
def test_a_gather_by_labels_matches_and_an_index_out_of_range_raises():
    def loss(x, labels):
        return graphc.nn.functional.cross_entropy(x, labels)

    graph = graphc.script(loss, (graphc.randn(3, 5), graphc.tensor([0, 4, 2])), backend="interpreter").graph
    exe = CudaGraph(graph, EmulatedDevice("reverse", max_blocks=2))
    x = np.random.default_rng(2).standard_normal((6, 5)).astype(np.float32)
    labels = np.array([0, 4, 2, 1, 3, 4])
    _compare(exe, graph, [x, labels])
    with pytest.raises(IndexError, match="out of range"):
        exe.run([x, np.array([0, 4, 2, 1, 5, 4])])


@needs_cxx
def test_cond_branches_read_their_weights_from_the_device():
    graphc.manual_seed(5)
    model = Gated().eval()
    graph = graphc.script(model, (graphc.randn(3, 4),), backend="interpreter").graph
    exe = CudaGraph(graph, EmulatedDevice())
    rng = np.random.default_rng(3)
    for scale in (1.0, -1.0, 5.0, -5.0):  # both branches
        _compare(exe, graph, [scale * np.abs(rng.standard_normal((4, 4))).astype(np.float32)])


@needs_cxx
def test_empty_batches_and_empty_reductions_behave_as_on_the_cpu():
    graph = parse_graph("""
graph g(%x: f32[batch,4]) {
  %0: f32[batch,4] = relu(%x)
  %1: f32[4] = sum[dims=(0,), keepdim=False](%0)
  %2: f32[4] = amax[dims=(0,), keepdim=False](%0)
  return %0, %1, %2
}""")
    exe = CudaGraph(graph, EmulatedDevice())
    cpu = executable(graph, "llvm")
    x = np.zeros((0, 4), np.float32)
    with pytest.raises(Exception) as on_cpu:
        cpu.run([x])
    with pytest.raises(type(on_cpu.value), match="empty"):
        exe.run([x])
    sums = parse_graph("""
graph g(%x: f32[batch,4]) {
  %0: f32[batch,4] = relu(%x)
  %1: f32[4] = sum[dims=(0,), keepdim=False](%0)
  return %0, %1
}""")
    relu, total = CudaGraph(sums, EmulatedDevice()).run([x])
    assert relu.shape == (0, 4)
    np.testing.assert_array_equal(total, np.zeros(4, np.float32))


def test_weights_go_to_the_device_once_and_inputs_are_checked():
    graph = _mlp_graph()
    exe = CudaGraph(graph, EmulatedDevice())
    cast = dict(exe._cast)
    assert cast and all(a.flags.c_contiguous for a in cast.values())
    with pytest.raises(InputError, match="expected dtype float32"):
        exe.run([np.zeros((2, 20), np.float64)])
    with pytest.raises(InputError, match=r"expected shape \['batch', 20\]"):
        exe.run([np.zeros((2, 19), np.float32)])
    assert exe._cast == cast  # (bound once: no new copies)


# --- which code a GPU loads ---

SOURCE = 'extern "C" __global__ void k(float* out) { out[threadIdx.x] = 1.0f; }\n'


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def select_code(*args, **kwargs) -> tuple[str, int, bytes]:
    """The first code a GPU is offered: (kind, architecture, bytes)."""
    return next(code_candidates(*args, **kwargs))[:3]


def _no_nvrtc(monkeypatch):
    monkeypatch.setattr(nvrtc, "available", lambda: False)

    def refuse(*args, **kwargs):
        raise AssertionError("NVRTC was called")

    monkeypatch.setattr(nvrtc, "compile", refuse)


@needs_nvrtc
def test_nvrtc_compiles_a_cubin_for_the_devices_own_architecture_and_caches_it(cache, monkeypatch):
    kind, arch, code = select_code(SOURCE, 86, {})
    assert (kind, arch) == ("cubin", 86) and code[:4] == b"\x7fELF"
    assert library.read(code_key(SOURCE, "cubin", 86), "cubin") == code
    assert library.read(source_key(SOURCE), "cu") == SOURCE.encode()  # (what it was made from)
    _no_nvrtc(monkeypatch)  # the cache serves it now
    assert select_code(SOURCE, 86, {}) == (kind, arch, code)


@needs_nvrtc
def test_a_gpu_newer_than_nvrtc_gets_ptx_for_the_newest_architecture_it_knows(cache):
    newest = nvrtc.supported_archs()[-1]
    kind, arch, code = select_code(SOURCE, newest + 10, {})
    assert (kind, arch) == ("ptx", newest)
    assert f".target sm_{newest}".encode() in code


@needs_nvrtc
def test_nvrtc_never_compiles_code_the_driver_cannot_load(cache):
    major, minor = nvrtc.version()
    # a cubin needs a driver of NVRTC's major version, any minor one
    assert select_code(SOURCE, 86, {}, driver=major * 1000)[0] == "cubin"
    with pytest.raises(
        DeviceError,
        match=rf"NVRTC {major}\.{minor} \(.*libnvrtc.*\) makes cubin code this GPU's driver "
        rf"\(CUDA {major - 1}\.8\) cannot load: install .*=={major - 1}\.8\.\*",
    ):
        select_code(SOURCE, 89, {}, driver=(major - 1) * 1000 + 80)
    assert library.read(code_key(SOURCE, "cubin", 89), "cubin") is None  # (nothing compiled)
    # PTX (for a GPU newer than NVRTC knows) needs a driver of NVRTC's version
    newest = nvrtc.supported_archs()[-1]
    if minor > 0:
        with pytest.raises(DeviceError, match=rf"makes ptx code .* \(CUDA {major}\.{minor - 1}\)"):
            select_code(SOURCE, newest + 10, {}, driver=major * 1000 + (minor - 1) * 10)
    assert select_code(SOURCE, newest + 10, {}, driver=major * 1000 + minor * 10)[:2] == ("ptx", newest)


def test_trusted_code_is_taken_for_the_architecture_it_fits(cache, monkeypatch):
    _no_nvrtc(monkeypatch)
    embedded = {
        code_key(SOURCE, "ptx", 80): b"ptx 80",
        code_key(SOURCE, "ptx", 90): b"ptx 90",
        code_key(SOURCE, "cubin", 90): b"cubin 90",
    }
    assert select_code(SOURCE, 90, embedded) == ("cubin", 90, b"cubin 90")
    assert select_code(SOURCE, 89, embedded) == ("ptx", 80, b"ptx 80")  # (PTX JITs forward, never back)
    # sm_80's cubin runs on sm_86 and sm_89 (same major version, newer minor), not on sm_90
    with_80 = {**embedded, code_key(SOURCE, "cubin", 80): b"cubin 80"}
    assert select_code(SOURCE, 86, with_80) == select_code(SOURCE, 89, with_80) == ("cubin", 80, b"cubin 80")
    assert select_code(SOURCE, 90, {k: v for k, v in with_80.items() if v != b"cubin 90"}) == (
        "ptx",
        90,
        b"ptx 90",
    )
    with pytest.raises(DeviceError, match=r"no code for this GPU \(sm_75\)"):  # (nor on an older one)
        select_code(SOURCE, 75, with_80)
    assert select_code(SOURCE, 100, embedded) == ("ptx", 90, b"ptx 90")
    with pytest.raises(DeviceError, match=r"no code for this GPU \(sm_75\).*trust_embedded_code=True"):
        select_code(SOURCE, 75, embedded)
    # the offers, best first: the cubin, then PTX from the newest architecture down
    offers = code_candidates(SOURCE, 100, embedded, None)
    assert [next(offers)[:3], next(offers)[:3]] == [("ptx", 90, b"ptx 90"), ("ptx", 80, b"ptx 80")]
    with pytest.raises(DeviceError, match="NVRTC is not installed"):  # (then NVRTC's, absent here)
        next(offers)


class _Driver(Device):
    """A GPU whose driver loads only the code in `loads` (a CUDA 12 driver refuses what CUDA
    13's NVRTC made); it records what it was offered."""

    name, capability, driver_version = "cuda:0 (a CUDA 12 driver)", 90, 12040

    def __init__(self, loads=()):
        self.loads, self.offered = set(loads), []

    def load(self, source, code, kind, kernels):
        self.offered.append(code)
        if code not in self.loads:
            raise DeviceError(f"CUDA_ERROR_UNSUPPORTED_PTX_VERSION ({code.decode()})")
        return {k.name: lambda grid, block, args: None for k in kernels}


def test_code_the_driver_refuses_is_passed_over_and_only_code_it_loads_joins_the_cache(cache, monkeypatch):
    _no_nvrtc(monkeypatch)
    graph = parse_graph("graph g(%x: f32[n]) {\n  %0: f32[n] = exp(%x)\n  return %0\n}")
    source = CudaGraph(graph, EmulatedDevice()).cuda_source
    embedded = {  # a file saved where NVRTC 13 ran, with PTX for compute_80 a CUDA 12 driver JITs
        code_key(source, "cubin", 90): b"cubin from CUDA 13",
        code_key(source, "ptx", 90): b"PTX 9.0",
        code_key(source, "ptx", 80): b"PTX 8.0",
    }
    with pytest.raises(
        DeviceError,
        match=r"NVRTC is not installed.*the driver refused what there was: cubin for "
        r"sm_90: CUDA_ERROR.*\(cubin from CUDA 13\); ptx for sm_90: .*; ptx for sm_80: ",
    ):
        CudaGraph(graph, _Driver(), embedded)
    assert all(
        library.read(key, kind) is None for key, kind in zip(embedded, ("cubin", "ptx", "ptx"), strict=True)
    )
    device = _Driver(loads={b"PTX 8.0"})
    exe = CudaGraph(graph, device, embedded)
    assert device.offered == [b"cubin from CUDA 13", b"PTX 9.0", b"PTX 8.0"]
    assert (exe.code_kind, exe.arch) == ("ptx", 80)
    assert library.read(code_key(source, "ptx", 80), "ptx") == b"PTX 8.0"  # loaded: it joins the cache
    assert library.read(code_key(source, "cubin", 90), "cubin") is None  # refused: it stays out
    device = _Driver(loads={b"PTX 8.0"})
    CudaGraph(graph, device, {})  # the cache serves it now, without the file
    assert device.offered == [b"PTX 8.0"]


def test_code_of_another_source_is_never_taken(cache, monkeypatch):
    _no_nvrtc(monkeypatch)
    other = {code_key(SOURCE + "// changed\n", "cubin", 90): b"cubin 90"}
    with pytest.raises(DeviceError, match="NVRTC is not installed"):
        select_code(SOURCE, 90, other)


@needs_cxx
@needs_nvrtc
def test_a_device_that_needs_code_gets_its_cubin(cache):
    graph = _mlp_graph()
    device = EmulatedDevice(capability=80, needs_code=True)
    exe = CudaGraph(graph, device)
    assert (exe.code_kind, exe.arch) == ("cubin", 80)
    ((kind, code),) = device.loaded
    assert kind == "cubin" and code == cuda_executable.compiled(exe.cuda_source, "cubin", 80)
    _compare(exe, graph, [np.ones((3, 20), np.float32)])


@needs_cxx
def test_graphc_dump_writes_the_schedule_and_the_cuda_source(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_DUMP", str(tmp_path))
    exe = CudaGraph(_mlp_graph(), EmulatedDevice())
    assert (tmp_path / f"{exe.graph.name}.cu").read_text() == exe.cuda_source
    assert (tmp_path / f"{exe.graph.name}.schedule.txt").read_text() == exe.schedule_text + "\n"
    assert all(f'extern "C" __global__ void {k.name}(' in exe.cuda_source for k in exe.kernels)


class _CountingNumpy:
    """numpy, counting the bytes of the arrays `empty` made that are still alive (the kernels'
    outputs), and the most at once."""

    def __init__(self):
        self.live = self.peak = 0

    def __getattr__(self, name):
        return getattr(np, name)

    def empty(self, shape, dtype):
        array = np.empty(shape, dtype)
        self.live += array.nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(array, self._free, array.nbytes)
        return array

    def _free(self, nbytes):
        self.live -= nbytes


@needs_cxx
def test_intermediates_are_freed_after_their_last_reader():
    graph = _lenet_graph()
    device = EmulatedDevice()
    counting = device.xp = _CountingNumpy()
    exe = CudaGraph(graph, device)
    x = np.random.default_rng(4).standard_normal((8, 1, 32, 32)).astype(np.float32)
    (y,) = exe.run([x])
    peak, total = exe.memory({"batch": 8})
    # the first convolution's output and its pooling are the peak: later ones reuse that memory
    assert counting.peak == peak < 0.8 * total
    assert counting.live == y.nbytes  # the output alone is left
    np.testing.assert_allclose(y, run(graph, [x])[0], rtol=2e-5, atol=2e-6)


@needs_nvrtc
def test_the_gpu_device_loads_the_cubin_and_launches_every_kernel_with_its_arguments(cache, monkeypatch):
    from codegen.cuda.device import gpu
    from codegen.cuda.render import launch_config, parameters

    launches = []
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(launches))
    device = gpu("cuda:0")
    assert device.capability == 90 and device.name == "cuda:0 (Fake H100)"
    cupy = sys.modules["cupy"]  # 'cuda' alone is the current device
    monkeypatch.setattr(cupy.cuda.runtime, "getDeviceCount", lambda: 2)
    monkeypatch.setattr(cupy.cuda.runtime, "getDevice", lambda: 1)
    assert gpu("cuda").index == 1 and gpu("cuda:0").index == 0
    monkeypatch.setattr(cupy.cuda.runtime, "getDevice", lambda: 0)
    graph = _lenet_graph()
    device.driver_version = (nvrtc.version()[0] - 1) * 1000 + 80  # the driver's version is heeded
    with pytest.raises(DeviceError, match=r"makes cubin code this GPU's driver .* cannot load"):
        CudaGraph(graph, device)
    major, minor = nvrtc.version()
    device.driver_version = major * 1000 + minor * 10  # (a driver as new as the NVRTC in use)
    exe = CudaGraph(graph, device)
    assert (exe.code_kind, exe.arch) == ("cubin", 90)
    x = np.zeros((3, 1, 32, 32), np.float32)
    exe.run([x])
    by_name = {k.name: k for k in exe.kernels}
    assert [name for name, *_ in launches] == [s.kernel.name for s in exe.steps if hasattr(s, "kernel")]
    for name, grid, block, args in launches:
        k = by_name[name]
        assert (grid[0], block[0]) == launch_config(k, {"batch": 3})
        kinds = [ctype for ctype, _ in parameters(k)]
        assert len(args) == len(kinds)
        for ctype, arg in zip(kinds, args, strict=True):
            if "*" in ctype:
                assert isinstance(arg, np.ndarray) and arg.flags.c_contiguous
            else:
                assert type(arg) is int
    device.synchronize()
    assert launches[-1] == "synchronize"
    # PTX goes to the driver too, as a C string
    from codegen.cuda.executable import compiled

    ptx = compiled(exe.cuda_source, "ptx", 80)
    launch = device.load(exe.cuda_source, ptx, "ptx", exe.kernels)
    assert set(launch) == set(by_name)
    # a driver too old for NVRTC's PTX: a DeviceError that says what to install

    def too_new(self, image):
        raise sys.modules["cupy"].cuda.driver.CUDADriverError(
            "CUDA_ERROR_UNSUPPORTED_PTX_VERSION: the provided PTX was compiled with an unsupported toolchain."
        )

    monkeypatch.setattr(sys.modules["cupy"].cuda.function.Module, "load", too_new)
    device.driver_version = 12040
    with pytest.raises(DeviceError, match=r"driver \(CUDA 12.4\) is older .* nvidia-cuda-nvrtc-cu12==12.4"):
        device.load(exe.cuda_source, ptx, "ptx", exe.kernels)
    device.driver_version = 13000  # CUDA 13's NVRTC wheel has another name
    with pytest.raises(DeviceError, match=r"driver \(CUDA 13.0\) is older .* nvidia-cuda-nvrtc==13.0"):
        device.load(exe.cuda_source, ptx, "ptx", exe.kernels)


def test_a_graph_without_kernels_runs_its_nodes_and_loads_no_code():
    graph = parse_graph("""
graph g(%x: f32[batch,6]) {
  %0: f32[batch,2,3] = reshape[shape=("batch", 2, 3)](%x)
  return %0
}""")
    device = EmulatedDevice(needs_code=True)
    exe = CudaGraph(graph, device)
    assert exe.kernels == [] and exe.cuda_source == "" and device.loaded == []
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(exe.run([x])[0], x.reshape(2, 2, 3))
