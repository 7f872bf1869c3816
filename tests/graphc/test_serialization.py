"""graphc.save / graphc.load: round trips, map_location, the pickle boundary, damaged files."""

import math
import os
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import graphc
import graphc.nn as nn
from graphc.serialization import CheckpointError


def test_state_dict_and_checkpoint_round_trip(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = graphc.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(graphc.ones(2, 3)).sum().backward()
    opt.step()
    path = tmp_path / "ckpt.pt"
    graphc.save(
        {
            "epoch": 7,
            "loss": 0.25,
            "state_dict": model.state_dict(),
            "optimizer": opt.state_dict(),
            "note": "hi",
            "none": None,
            "shape": (2, 3),
            "nan": math.nan,
        },
        path,
    )
    ckpt = graphc.load(path)
    assert ckpt["epoch"] == 7 and ckpt["loss"] == 0.25 and ckpt["note"] == "hi"
    assert ckpt["none"] is None and ckpt["shape"] == (2, 3) and math.isnan(ckpt["nan"])
    assert isinstance(ckpt["state_dict"], OrderedDict)
    fresh = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    fresh.load_state_dict(ckpt["state_dict"])
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert graphc.equal(a, b)
    opt2 = graphc.optim.SGD(fresh.parameters(), lr=0.5, momentum=0.9)
    opt2.load_state_dict(ckpt["optimizer"])
    assert opt2.param_groups[0]["lr"] == 0.1 and 0 in ckpt["optimizer"]["state"]


def test_dtypes_sharing_parameters_and_numpy(tmp_path):
    shared = graphc.arange(6, dtype=graphc.int16).view(2, 3)
    obj = [
        shared,
        shared,
        graphc.tensor([True, False]),
        graphc.ones(2, dtype=graphc.float16),
        nn.Parameter(graphc.zeros(2)),
        np.arange(3),
        np.float32(1.5),
        graphc.float64,
    ]
    path = tmp_path / "x.pt"
    graphc.save(obj, path)
    out = graphc.load(path)
    assert out[0] is out[1] and out[0].dtype is graphc.int16 and out[0].shape == (2, 3)
    assert out[2].tolist() == [True, False] and out[3].dtype is graphc.float16
    assert isinstance(out[4], nn.Parameter) and out[4].requires_grad
    assert (out[5] == np.arange(3)).all() and out[6] == np.float32(1.5)
    assert out[7] is graphc.float64


def test_file_objects_and_map_location(tmp_path):
    import io

    buf = io.BytesIO()
    graphc.save({"w": graphc.ones(2)}, buf)
    buf.seek(0)
    assert graphc.load(buf, map_location="cpu")["w"].tolist() == [1.0, 1.0]
    buf.seek(0)
    assert graphc.load(buf, map_location=lambda dev: "cpu")["w"].device.type == "cpu"
    buf.seek(0)
    with pytest.raises(graphc.DeviceError, match="CUDA is not available"):
        graphc.load(buf, map_location="cuda")


def test_whole_modules_are_pickled_and_need_weights_only_false(tmp_path):
    model = nn.Linear(2, 2)
    path = tmp_path / "model.pkl"
    graphc.save(model, path)
    with pytest.raises(CheckpointError, match="pickled Linear object.*weights_only=False"):
        graphc.load(path)
    loaded = graphc.load(path, weights_only=False)
    assert graphc.equal(loaded.weight, model.weight)


def test_damaged_files_give_clear_errors(tmp_path):
    path = tmp_path / "c.pt"
    graphc.save({"w": graphc.arange(100.0)}, path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a graphc checkpoint, or truncated"):
        graphc.load(truncated)
    corrupt = tmp_path / "corrupt.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(corrupt, "w") as dst:
        for item in src.infolist():
            blob = src.read(item)
            if item.filename == "tensors/0":
                blob = blob[:-1] + bytes([blob[-1] ^ 0xFF])
            dst.writestr(item, blob)
    with pytest.raises(CheckpointError, match="checksum mismatch in tensor 0"):
        graphc.load(corrupt)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(CheckpointError, match="no manifest.json"):
        graphc.load(other)
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a graphc checkpoint"):
        graphc.load(text)


def test_saves_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "keep.pt"
    graphc.save({"v": 1}, path)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        graphc.save({"v": 2}, path)
    monkeypatch.undo()
    assert graphc.load(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["keep.pt"]  # no temporary left behind


def test_zero_dim_tensors_keep_their_shape(tmp_path):
    graphc.save({"n": graphc.tensor(3), "x": np.float64(2.0)}, tmp_path / "z.pt")
    out = graphc.load(tmp_path / "z.pt")
    assert out["n"].shape == () and out["n"].item() == 3 and out["x"] == 2.0
    assert graphc.tensor(5).contiguous().shape == ()
