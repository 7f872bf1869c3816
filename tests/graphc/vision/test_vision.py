"""Vision datasets from files written here in the standard formats; transforms; image grids."""

import gzip
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

import graphc
from graphc.utils.data import DataLoader
from graphc.vision import datasets, transforms, utils
from graphc.vision.datasets import DatasetError


def write_cifar10(root, n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, name in enumerate(
        ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    ):
        n = n_test if name == "test_batch" else n_train
        batch = {
            "batch_label": name,
            "labels": [int(v) for v in rng.integers(0, 10, n)],
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "filenames": [f"img{i}_{k}.png" for k in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {
        "label_names": [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ],
        "num_vis": 3072,
    }
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def write_idx(path, array, gz=True):
    codes = {np.uint8: 0x08}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype.type], array.ndim)
    header += b"".join(struct.pack(">I", s) for s in array.shape)
    data = header + array.tobytes()
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def test_cifar10_reads_the_python_batches(tmp_path):
    write_cifar10(tmp_path)
    train = datasets.CIFAR10(tmp_path, train=True)
    test = datasets.CIFAR10(tmp_path, train=False, transform=transforms.ToTensor())
    assert len(train) == 60 and len(test) == 5
    img, label = train[0]
    assert isinstance(img, Image.Image) and img.size == (32, 32) and 0 <= label < 10
    x, _ = test[1]
    assert x.shape == (3, 32, 32) and x.dtype is graphc.float32 and 0 <= x.min().item() <= 1
    assert train.classes[3] == "cat" and train.class_to_idx["ship"] == 8
    loader = DataLoader(test, batch_size=4)
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and labels.dtype is graphc.int64
    assert "Number of datapoints: 60" in repr(train)


def test_cifar_refuses_code_in_pickles_and_explains_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="data_batch_1.*cifar-10-python.tar.gz.*download=True"):
        datasets.CIFAR10(tmp_path)
    write_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(DatasetError, match="refusing to load builtins.print"):
        datasets.CIFAR10(tmp_path, train=False)


def test_download_without_network_says_where_to_put_the_files(tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DatasetError, match="could not download.*Put the file there by hand"):
        datasets.CIFAR10(tmp_path, download=True)
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz"):
        datasets.MNIST(tmp_path, download=True)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_and_fashion_mnist_read_idx_files(tmp_path, gz):
    for cls, folder in ((datasets.MNIST, "MNIST"), (datasets.FashionMNIST, "FashionMNIST")):
        raw = tmp_path / folder / "raw"
        raw.mkdir(parents=True)
        images = np.random.default_rng(1).integers(0, 256, (7, 28, 28), dtype=np.uint8)
        labels = np.arange(7, dtype=np.uint8)
        write_idx(raw / "t10k-images-idx3-ubyte", images, gz)
        write_idx(raw / "t10k-labels-idx1-ubyte", labels, gz)
        ds = cls(tmp_path, train=False, transform=transforms.ToTensor())
        x, y = ds[3]
        assert len(ds) == 7 and y == 3 and x.shape == (1, 28, 28)
        assert np.allclose(x.numpy()[0] * 255, images[3])
        with pytest.raises(DatasetError, match="train-images-idx3-ubyte"):
            cls(tmp_path, train=True)


def test_truncated_idx_file_is_reported(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8), gz=False)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8), gz=False)
    path = raw / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="truncated or damaged"):
        datasets.MNIST(tmp_path, train=False)


def test_image_folder(tmp_path):
    for cls, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for k in range(2):
            Image.new("RGB", (5, 4), color).save(tmp_path / cls / f"{k}.png")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    ds = datasets.ImageFolder(tmp_path, transform=transforms.ToTensor())
    assert ds.classes == ["cat", "dog"] and len(ds) == 4
    x, y = ds[3]
    assert y == 1 and x.shape == (3, 4, 5) and x[2, 0, 0].item() == 1.0


def test_transforms():
    img = Image.fromarray(np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3))
    t = transforms.ToTensor()(img)
    assert t.shape == (3, 6, 8) and t[0, 0, 1].item() == pytest.approx(3 / 255)
    norm = transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))(t)
    assert norm[0, 0, 0].item() == pytest.approx(-1.0)
    assert transforms.Resize((3, 4))(img).size == (4, 3)
    assert transforms.Resize(3)(img).size == (4, 3)  # the shorter edge becomes 3
    assert transforms.Resize((3, 4))(t).shape == (3, 3, 4)
    assert transforms.CenterCrop(4)(img).size == (4, 4)
    assert graphc.equal(transforms.CenterCrop((2, 2))(t), t[:, 2:4, 3:5])
    graphc.manual_seed(0)
    crops = {tuple(np.array(transforms.RandomCrop(4, padding=2)(img)).ravel()[:3]) for _ in range(10)}
    assert len(crops) > 1
    flip = transforms.RandomHorizontalFlip(p=1.0)
    assert np.array_equal(np.array(flip(img)), np.array(img)[:, ::-1])
    assert graphc.equal(flip(t), t.flip(-1))
    assert transforms.Lambda(lambda x: x * 2)(t).max().item() == pytest.approx(2 * t.max().item())
    back = transforms.ToPILImage()(t)
    assert np.array_equal(np.array(back), np.array(img))


def test_make_grid_and_save_image(tmp_path):
    batch = graphc.rand(5, 3, 4, 4)
    grid = utils.make_grid(batch, nrow=2, padding=2, pad_value=0.5)
    assert grid.shape == (3, 20, 14) and grid[0, 0, 0].item() == 0.5
    assert graphc.equal(grid[:, 2:6, 2:6], batch[0])
    gray = utils.make_grid(graphc.rand(2, 1, 3, 3), padding=0)
    assert gray.shape == (3, 3, 6)
    path = tmp_path / "grid.png"
    utils.save_image(batch, path, nrow=5)
    assert Image.open(path).size == (32, 8)


def test_download_checks_the_md5_of_what_arrives(tmp_path, monkeypatch):
    import io
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: io.BytesIO(b"not the real archive"))
    with pytest.raises(DatasetError, match="checksum mismatch.*c58f30108f718f92721af3b95e74349a"):
        datasets.CIFAR10(tmp_path, download=True)
    assert not any(p.suffix == ".part" for p in tmp_path.iterdir())


def test_graphc_imports_vision_and_pillow_on_first_use():
    """`import graphc` needs neither Pillow nor its import time; `graphc.vision` still works."""
    import subprocess
    import sys
    from pathlib import Path

    probe = (
        "import sys, graphc\n"
        "before = sorted(m for m in ('PIL', 'graphc.vision') if m in sys.modules)\n"
        "transforms = graphc.vision.transforms\n"
        "print(before, 'PIL' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("]")[0] == "[" and done.stdout.split()[-1] == "True"
    with pytest.raises(AttributeError, match="no attribute 'visio'"):
        graphc.visio  # noqa: B018
