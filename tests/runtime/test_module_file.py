"""The .gcm module file: saved graphs run in the standalone runtime exactly as eager graphc does,
in a process that cannot import graphc; damaged or hostile files fail with ModuleFormatError
before anything is trusted; saving is atomic."""

import io
import os
import struct
import subprocess
import sys
import textwrap
import threading
import types
import zlib
from pathlib import Path

import numpy as np
import pytest
from testmodels import Gated, LeNet, TwoMethods

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
import runtime
from ir.errors import InputError, ModuleFormatError
from ir.module_file import ALIGN, HEADER, MAGIC, read_module
from ir.proto import gcm_pb2

ROOT = Path(__file__).resolve().parents[2]


def _mlp():
    graphc.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3), nn.LogSoftmax(dim=1)).eval()


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory):
    model = _mlp()
    path = tmp_path_factory.mktemp("gcm") / "mlp.gcm"
    # graphs and weights only (no compiled code): the file-format tests flip every byte
    graphc.script(model, (graphc.randn(4, 6),), backend="interpreter").save(path, metadata={"task": "test"})
    return model, path


def _eager(model, x):
    with graphc.no_grad():
        return model(graphc.tensor(x)).numpy()


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_lenet_round_trip_matches_eager(tmp_path, batch):
    graphc.manual_seed(1)
    model = LeNet().eval()
    path = tmp_path / "lenet.gcm"
    graphc.script(model, (graphc.randn(2, 1, 32, 32),)).save(path)
    x = np.random.default_rng(batch).standard_normal((batch, 1, 32, 32)).astype(np.float32)
    loaded = runtime.load(path)
    (out,) = loaded(x)
    np.testing.assert_allclose(out, _eager(model, x), rtol=1e-5, atol=1e-6)
    again = graphc.jit.load(path)(graphc.tensor(x))  # one output: a tensor, as in torch
    np.testing.assert_allclose(again.numpy(), out, rtol=0, atol=0)


def test_loaded_module_describes_itself(mlp_file):
    _, path = mlp_file
    loaded = runtime.load(path)
    assert loaded.methods == ["forward"]
    assert loaded.metadata == {"task": "test"}
    assert loaded.producer == f"graphc {graphc.__version__}"
    (inp,), (out,) = loaded.signature()
    assert inp.dtype == "float32" and isinstance(inp.shape[0], str) and inp.shape[1:] == (6,)
    assert out.dtype == "float32" and out.shape[1:] == (3,)
    by_name = loaded.run({inp.name: np.zeros((2, 6), np.float32)})
    assert list(by_name) == [out.name] and by_name[out.name].shape == (2, 3)
    assert "forward" in repr(loaded)


def test_weights_are_read_only_views(mlp_file):
    _, path = mlp_file
    module = read_module(path)
    for w in module.weights.values():
        assert not w.flags.writeable
        with pytest.raises(ValueError):
            w[...] = 0


def test_runtime_rejects_bad_inputs_clearly(mlp_file):
    _, path = mlp_file
    loaded = runtime.load(path)
    with pytest.raises(InputError, match="dtype"):
        loaded(np.zeros((2, 6), np.int64))
    with pytest.raises(InputError, match="shape"):
        loaded(np.zeros((2, 5), np.float32))
    with pytest.raises(InputError, match="takes 1 inputs"):
        loaded(np.zeros((2, 6), np.float32), np.zeros((2, 6), np.float32))
    with pytest.raises(KeyError, match="no method 'predict'"):
        loaded(np.zeros((2, 6), np.float32), method="predict")
    with pytest.raises(runtime.DeviceError, match="unknown device"):
        runtime.load(path, device="tpu")


def test_cuda_without_cupy_or_driver_is_a_device_error(mlp_file):
    try:
        import cupy
    except ImportError:
        with pytest.raises(runtime.DeviceError, match="cupy"):
            runtime.load(mlp_file[1], device="cuda")
        return
    try:
        cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:  # cupy installed on a machine without a driver
        with pytest.raises(runtime.DeviceError, match="not usable here"):
            runtime.load(mlp_file[1], device="cuda")
    else:
        pytest.skip("a CUDA driver is here; tests/gpu and tests/graphc/test_cuda.py test the GPU path")


class ConvBNDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 8 * 8, 5)
        self.bn1 = nn.BatchNorm1d(5)

    def forward(self, x):
        x = self.drop(F.relu(self.bn(self.conv(x))))
        return self.bn1(self.fc(x.flatten(1)))


def _trained_bn_model():
    graphc.manual_seed(5)
    model = ConvBNDropout()
    opt = graphc.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):  # running statistics and weights move away from their initial values
        opt.zero_grad()
        model(graphc.randn(8, 3, 8, 8)).sum().backward()
        opt.step()
    return model.eval()


MODELS = {
    "mlp": (_mlp, (6,), ["forward"]),
    "lenet": (lambda: LeNet().eval(), (1, 32, 32), ["forward"]),
    "bn-dropout": (_trained_bn_model, (3, 8, 8), ["forward"]),
    "two-methods": (lambda: TwoMethods().eval(), (6,), ["forward", "embed"]),
    "cond": (lambda: Gated(6).eval(), (6,), ["forward"]),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_runtime_runs_in_a_process_that_cannot_import_graphc(tmp_path, name):
    """script -> save -> load in a fresh process where `import graphc` (and every dependency but
    numpy and protobuf) fails -> the outputs equal eager graphc at batch sizes 1, 7 and 64, all
    from one file."""
    make, shape, methods = MODELS[name]
    graphc.manual_seed(0)
    model = make()
    path = tmp_path / f"{name}.gcm"
    graphc.script(model, (graphc.randn(2, *shape),), methods=methods).save(path)
    rng = np.random.default_rng(3)
    inputs = {f"b{b}": rng.standard_normal((b, *shape)).astype(np.float32) for b in (1, 7, 64)}
    np.savez(tmp_path / "in.npz", **inputs)
    script = textwrap.dedent(
        f"""
        import sys
        for blocked in ("graphc", "ml_dtypes", "llvmlite", "PIL", "tensorboardX", "torch"):
            sys.modules[blocked] = None  # importing it now raises ImportError: numpy + protobuf only
        import numpy as np
        import runtime
        m = runtime.load({str(path)!r})
        outs = {{}}
        with np.load({str(tmp_path / "in.npz")!r}) as z:
            for key in z.files:
                for method in m.methods:
                    (outs[method + "-" + key],) = m(z[key], method=method)
        np.savez({str(tmp_path / "out.npz")!r}, **outs)
        assert not any(k == "graphc" or k.startswith("graphc.") for k, v in sys.modules.items() if v)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "out.npz") as outs:
        assert len(outs.files) == 3 * len(methods)
        for key, x in inputs.items():
            for method in methods:
                fn = model if method == "forward" else getattr(model, method)
                with graphc.no_grad():
                    expected = fn(graphc.tensor(x)).numpy()
                np.testing.assert_allclose(outs[f"{method}-{key}"], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("again", [False, True])
def test_concurrent_calls_agree(mlp_file, again):
    model, path = mlp_file
    loaded = runtime.load(path)
    if again:  # its library is in the cache now: this module runs from the library's plan
        loaded = runtime.load(path)
        assert type(loaded._executables["forward"]).__name__ == "PlannedGraph"
    xs = [np.random.default_rng(i).standard_normal((i + 1, 6)).astype(np.float32) for i in range(8)]
    expected = [loaded(x)[0] for x in xs]
    results = [None] * len(xs)

    def work(i):
        for _ in range(20):
            (out,) = loaded(xs[i])
            if not np.array_equal(out, expected[i]):
                return
        results[i] = True

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * len(xs)


def test_multiple_methods_share_weights(tmp_path):
    graphc.manual_seed(2)

    model = TwoMethods(4, 4, 2).eval()
    scripted = graphc.script(model, (graphc.randn(3, 4),), methods=["forward", "embed"])
    scripted.save(tmp_path / "two.gcm")
    loaded = runtime.load(tmp_path / "two.gcm")
    assert sorted(loaded.methods) == ["embed", "forward"]
    x = np.ones((5, 4), np.float32)
    with graphc.no_grad():
        ref = model.embed(graphc.tensor(x)).numpy()
    np.testing.assert_allclose(loaded(x, method="embed")[0], ref, rtol=1e-6)
    stored = gcm_pb2.Module.FromString(_metadata_bytes(tmp_path / "two.gcm")).weights
    # each shared weight is stored once
    assert sorted(w.name for w in stored) == ["body.bias", "body.weight", "head.bias", "head.weight"]


# --- saving is atomic ---


def test_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, mlp_file, monkeypatch):
    model, _ = mlp_file
    path = tmp_path / "m.gcm"
    scripted = graphc.script(model, (graphc.randn(2, 6),))
    scripted.save(path)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        scripted.save(path, metadata={"new": "yes"})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gcm"]


# --- damaged and hostile files ---


def _header(path):
    return HEADER.unpack_from(Path(path).read_bytes(), 0)


def _metadata_bytes(path):
    data = Path(path).read_bytes()
    _, _, _, off, length, _, _ = HEADER.unpack_from(data, 0)
    return data[off : off + length]


def _write_with_metadata(src, dst, mutate):
    """Copy `src` to `dst` with its metadata message changed by `mutate` and every checksum in the
    header made right again, so only the semantic checks can catch the change."""
    data = Path(src).read_bytes()
    magic, fmt, opset, off, length, _, reserved = HEADER.unpack_from(data, 0)
    module = gcm_pb2.Module.FromString(data[off : off + length])
    mutate(module)
    meta = module.SerializeToString()
    header = HEADER.pack(magic, fmt, opset, off, len(meta), zlib.crc32(meta), reserved)
    Path(dst).write_bytes(header + data[HEADER.size : off] + meta)
    return dst


def _patched(src, dst, offset, new: bytes):
    data = bytearray(Path(src).read_bytes())
    data[offset : offset + len(new)] = new
    Path(dst).write_bytes(bytes(data))
    return dst


def _first_output_dim(module):
    return module.methods[0].nodes[0].outputs[0].type.shape[0]


def test_a_module_loads_from_bytes_and_binary_file_objects(mlp_file):
    """As ONNX Runtime takes a model's bytes: fetched from a store, never written to disk."""
    model, path = mlp_file
    data = path.read_bytes()
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    with open(path, "rb") as f:
        for source in (data, bytearray(data), memoryview(data), io.BytesIO(data), f):
            np.testing.assert_allclose(runtime.load(source)(x)[0], _eager(model, x), rtol=1e-5, atol=1e-6)
    changing = bytearray(data)
    loaded = runtime.load(changing)  # (copied once: changing the bytearray later changes nothing)
    changing[:] = bytes(len(changing))
    np.testing.assert_allclose(loaded(x)[0], _eager(model, x), rtol=1e-5, atol=1e-6)
    assert not loaded.module_file.weights["0.weight"].flags.writeable
    with pytest.raises(ModuleFormatError, match="^<bytes>: truncated: 20 bytes"):
        runtime.load(data[:20])
    damaged = bytearray(data)
    damaged[-1] ^= 0xFF
    with pytest.raises(ModuleFormatError, match="^<bytes>: metadata checksum mismatch"):
        runtime.load(bytes(damaged))
    with open(path, encoding="latin-1") as text, pytest.raises(TypeError, match="binary mode"):
        runtime.load(text)


def test_a_module_saves_to_a_binary_file_object(tmp_path):
    graphc.manual_seed(5)
    model = TwoMethods(4, 4, 2).eval()
    scripted = graphc.script(model, (graphc.randn(3, 4),), methods=["forward", "embed"])
    buffer = io.BytesIO()
    scripted.save(buffer)
    scripted.save(tmp_path / "two.gcm")
    assert buffer.getvalue() == (tmp_path / "two.gcm").read_bytes()
    loaded = graphc.jit.load(io.BytesIO(buffer.getvalue()))
    x = graphc.randn(2, 4)
    np.testing.assert_array_equal(loaded(x).numpy(), scripted(x).numpy())
    with open(tmp_path / "text.gcm", "w") as text, pytest.raises(TypeError, match="binary mode"):
        scripted.save(text)


def test_wrong_magic(tmp_path, mlp_file):
    bad = _patched(mlp_file[1], tmp_path / "bad.gcm", 0, b"PK\x03\x04")
    with pytest.raises(ModuleFormatError, match="not a graphc module file"):
        runtime.load(bad)
    (tmp_path / "empty.gcm").write_bytes(b"")
    with pytest.raises(ModuleFormatError, match="truncated: 0 bytes"):
        runtime.load(tmp_path / "empty.gcm")


def test_newer_versions_are_refused_with_advice(tmp_path, mlp_file):
    src = mlp_file[1]
    fmt, opset = _header(src)[1:3]
    with pytest.raises(ModuleFormatError, match=rf"module format {fmt + 1}.*Upgrade graphc"):
        runtime.load(_patched(src, tmp_path / "f.gcm", 8, struct.pack("<I", fmt + 1)))
    with pytest.raises(ModuleFormatError, match=rf"op set {opset + 1}.*Upgrade graphc"):
        runtime.load(_patched(src, tmp_path / "o.gcm", 12, struct.pack("<I", opset + 1)))

    def newer(m):
        m.opset_version += 1

    with pytest.raises(ModuleFormatError, match="newer"):
        runtime.load(_write_with_metadata(src, tmp_path / "m.gcm", newer))


def test_truncation_at_every_section_boundary(tmp_path, mlp_file):
    src = mlp_file[1]
    data = Path(src).read_bytes()
    meta = gcm_pb2.Module.FromString(_metadata_bytes(src))
    _, _, _, off, length, _, _ = HEADER.unpack_from(data, 0)
    cuts = {0, 7, HEADER.size - 1, HEADER.size, off, off + length // 2, off + length - 1}
    for w in meta.weights:
        cuts |= {w.offset, w.offset + w.length // 2, w.offset + w.length}
    for cut in sorted(cuts):
        (tmp_path / "t.gcm").write_bytes(data[:cut])
        with pytest.raises(ModuleFormatError, match="truncated|outside"):
            read_module(tmp_path / "t.gcm")


def test_every_single_byte_flip_is_caught_or_harmless(tmp_path, mlp_file):
    """Flip each byte of a small file: the load fails with ModuleFormatError, or (padding, the
    reserved field) it succeeds and computes exactly what the original computes."""
    model, src = mlp_file
    data = Path(src).read_bytes()
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    (expected,) = runtime.load(src, backend="interpreter")(x)
    harmless = 0
    bad = tmp_path / "flip.gcm"
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x5A
        bad.write_bytes(bytes(flipped))
        try:
            loaded = runtime.load(bad, backend="interpreter")  # the file format, not the compiler
        except ModuleFormatError:
            continue
        harmless += 1
        np.testing.assert_array_equal(loaded(x)[0], expected, err_msg=f"byte {i} flipped")
    assert harmless < len(data) // 4  # most bytes are covered by a checksum


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda m: setattr(m.weights[0], "offset", m.weights[0].offset + 1), "outside the weights"),
        (lambda m: setattr(m.weights[0], "offset", 1 << 62), "outside the weights"),
        (lambda m: setattr(m.weights[0], "length", m.weights[0].length + 4), "bytes stored"),
        (lambda m: m.weights[0].type.shape[0].__setattr__("size", 1 << 40), "bytes stored"),
        (lambda m: m.weights[0].type.shape[0].__setattr__("size", 1 << 60), "bytes stored"),
        (lambda m: _first_output_dim(m).__setattr__("size", 1 << 60), "differ|elements"),
        (lambda m: m.weights[0].type.shape[0].__setattr__("size", -3), "bad type|bytes stored"),
        (lambda m: setattr(m.weights[0].type, "dtype", "float128x"), "bad type"),
        (lambda m: m.weights[0].type.shape[0].__setattr__("symbol", "n"), "concrete shapes"),
        (lambda m: setattr(m.weights[0], "crc32", m.weights[0].crc32 ^ 1), "checksum"),
        (lambda m: setattr(m.methods[0].nodes[0], "op", "os.system"), "unknown op|os.system"),
        (lambda m: m.methods[0].nodes[1].inputs.__setitem__(0, "ghost"), "'ghost' is not defined"),
        (lambda m: m.methods[0].weights.append("missing.weight"), "does not hold"),
        (lambda m: m.methods[0].outputs.append("nowhere"), "'nowhere' is not defined"),
        (lambda m: m.methods[0].nodes[0].outputs[0].type.shape.add(size=2), "declared output types"),
        (lambda m: m.methods.append(m.methods[0]), "appears twice"),
        (lambda m: m.ClearField("methods"), "no method"),
        (lambda m: m.artifacts.add(target="x", offset=1 << 40, length=8), "artifact"),
    ],
    ids=[
        "unaligned-offset",
        "offset-past-end",
        "length-mismatch",
        "absurd-shape",
        "2^60-element-weight",
        "2^60-element-value",
        "negative-dim",
        "bad-dtype",
        "symbolic-weight",
        "weight-crc",
        "unknown-op",
        "undefined-input",
        "missing-weight",
        "undefined-output",
        "wrong-declared-type",
        "duplicate-method",
        "no-methods",
        "artifact-outside",
    ],
)
def test_hostile_metadata_is_refused(tmp_path, mlp_file, mutate, message):
    bad = _write_with_metadata(mlp_file[1], tmp_path / "bad.gcm", mutate)
    with pytest.raises(ModuleFormatError, match=message):
        runtime.load(bad)


def test_metadata_that_does_not_parse(tmp_path, mlp_file):
    src = mlp_file[1]
    data = Path(src).read_bytes()
    magic, fmt, opset, off, length, _, reserved = HEADER.unpack_from(data, 0)
    garbage = b"\xff" * length
    header = HEADER.pack(magic, fmt, opset, off, length, zlib.crc32(garbage), reserved)
    (tmp_path / "g.gcm").write_bytes(header + data[HEADER.size : off] + garbage)
    with pytest.raises(ModuleFormatError, match="does not parse"):
        runtime.load(tmp_path / "g.gcm")


def test_layout_is_aligned_and_documented(mlp_file):
    data = Path(mlp_file[1]).read_bytes()
    assert data[:8] == MAGIC
    for w in gcm_pb2.Module.FromString(_metadata_bytes(mlp_file[1])).weights:
        assert w.offset % ALIGN == 0
    assert (ROOT / "ir" / "proto" / "README.md").exists()


def test_script_methods_must_name_real_methods():
    model = _mlp()
    with pytest.raises(AttributeError, match="no method 'predict'"):
        graphc.script(model, (graphc.randn(2, 6),), methods=["forward", "predict"])
    with pytest.raises(TypeError, match="list of method names"):
        graphc.script(model, (graphc.randn(2, 6),), methods=3)


def test_a_graph_that_would_allocate_2_to_the_60_elements_is_refused(tmp_path):
    from ir.graph import Graph
    from ir.module_file import write_module

    g = Graph("forward")
    (huge,) = g.add_node("full", [], {"shape": (1 << 30, 1 << 30), "value": 0.0, "dtype": "float32"})
    (total,) = g.add_node("sum", [huge], {})
    g.set_outputs([total])
    write_module(tmp_path / "huge.gcm", {"forward": g})
    with pytest.raises(ModuleFormatError, match="1152921504606846976 elements"):
        runtime.load(tmp_path / "huge.gcm")


def test_cuda_binding_without_a_gpu(mlp_file, monkeypatch):
    """device='cuda' with the interpreter puts weights and inputs on the device through cupy's
    API (here a numpy-backed stand-in): device arrays in give device arrays out, numpy in gives
    numpy out. The compiled CUDA path runs in tests/runtime/test_cuda_runtime.py (emulated) and
    under the `cuda` marker (a real GPU)."""

    class DeviceArray(np.ndarray):
        def get(self):
            return np.asarray(self).copy()

    fake = types.ModuleType("cupy")
    fake.__getattr__ = lambda name: getattr(np, name)
    fake.asarray = lambda a, dtype=None: (
        a if type(a) is DeviceArray else np.array(a, dtype=dtype).view(DeviceArray)
    )

    class CUDARuntimeError(RuntimeError):
        pass

    fake.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, CUDARuntimeError=CUDARuntimeError)
    )
    monkeypatch.setitem(sys.modules, "cupy", fake)
    model, path = mlp_file
    loaded = runtime.load(path, device="cuda", backend="interpreter")
    assert all(type(w) is DeviceArray for w in loaded._weights.values())
    x = np.random.default_rng(5).standard_normal((4, 6)).astype(np.float32)
    (out,) = loaded(x)
    assert type(out) is np.ndarray
    np.testing.assert_allclose(out, runtime.load(path)(x)[0], rtol=1e-6)
    (on_device,) = loaded(loaded.to_device(x))
    assert type(on_device) is DeviceArray
    np.testing.assert_array_equal(on_device.get(), out)
    with pytest.raises(runtime.DeviceError, match="device 'cuda:3' was requested but only 1 GPU"):
        runtime.load(path, device="cuda:3", backend="interpreter")
    fake.cuda.runtime.getDeviceCount = lambda: 0
    for backend in ("interpreter", None):  # (None: the compiled CUDA backend)
        with pytest.raises(runtime.DeviceError, match="no GPU"):
            runtime.load(path, device="cuda", backend=backend)

    def no_driver():
        raise CUDARuntimeError("cudaErrorInsufficientDriver")

    fake.cuda.runtime.getDeviceCount = no_driver
    with pytest.raises(runtime.DeviceError, match="not usable here: cudaErrorInsufficientDriver"):
        runtime.load(path, device="cuda")


def test_the_generated_protobuf_code_runs_on_the_oldest_protobuf_pinned():
    """A protobuf runtime refuses generated code newer than itself: the protoc that generated
    ir/proto/gcm_pb2.py must be no newer than the oldest runtime pyproject.toml allows."""
    import re
    import tomllib

    root = Path(__file__).resolve().parents[2]
    generated = (root / "ir" / "proto" / "gcm_pb2.py").read_text()
    made_by = re.search(r"# Protobuf Python Version: (\d+)\.(\d+)", generated)
    dependencies = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in dependencies if d.startswith("protobuf")]
    oldest = re.search(r">=(\d+)\.(\d+)", pin)
    assert made_by and oldest, (generated[:300], pin)
    assert tuple(map(int, made_by.groups())) <= tuple(map(int, oldest.groups())), (made_by[0], pin)
