"""Image datasets read from their standard on-disk formats (torchvision's role).

CIFAR-10/100 come as pickled batches; they are read with an unpickler that only rebuilds
plain containers and numpy arrays, so a hostile file cannot run code. MNIST and Fashion-MNIST
are idx files (gzipped or not). `download=True` fetches the official archives and checks their
MD5 sums; where the network is unreachable the error says which files to put where.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from graphc.errors import GraphcError
from graphc.utils.data import Dataset


class DatasetError(GraphcError, RuntimeError):
    """A dataset's files are missing, damaged or of the wrong format."""


class VisionDataset(Dataset):
    """Base: a root folder plus optional transforms of the image and the target."""

    def __init__(self, root, transform=None, target_transform=None) -> None:
        self.root = os.path.expanduser(str(root))
        self.transform, self.target_transform = transform, target_transform

    def _apply(self, img, target):
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __repr__(self) -> str:
        lines = [
            f"Dataset {type(self).__name__}",
            f"    Number of datapoints: {len(self)}",
            f"    Root location: {self.root}",
        ]
        lines += [f"    {line}" for line in self.extra_repr().splitlines()]
        if self.transform is not None:
            lines.append(f"    Transform: {self.transform!r}".replace("\n", "\n    "))
        return "\n".join(lines)

    def extra_repr(self) -> str:
        return ""


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, dest: Path, md5: str, where: str) -> None:
    """Fetch `url` to `dest` (atomically) and check its MD5."""
    if dest.exists() and _md5(dest) == md5:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"could not download {url} ({e}). Put the file there by hand: {where}") from None
    if _md5(tmp) != md5:
        tmp.unlink()
        raise DatasetError(f"checksum mismatch for {url}: expected MD5 {md5}")
    os.replace(tmp, dest)


def _extract_tar(archive: Path, into: Path) -> None:
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            target = (into / member.name).resolve()
            if not str(target).startswith(str(into.resolve())):
                raise DatasetError(f"{archive}: member {member.name!r} escapes the folder")
        tar.extractall(into)  # members checked above


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays, and nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name} from a dataset file (only arrays and plain data are allowed)"
        )


def _load_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise DatasetError(f"{path} is not a readable CIFAR batch ({e})") from None


class CIFAR10(VisionDataset):
    """CIFAR-10 from `root/cifar-10-batches-py` (the python version of the dataset)."""

    base_folder = "cifar-10-batches-py"
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    filename = "cifar-10-python.tar.gz"
    tgz_md5 = "c58f30108f718f92721af3b95e74349a"
    train_list = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]
    test_list = ["test_batch"]
    meta = {"filename": "batches.meta", "key": "label_names"}
    labels_key = "labels"

    def __init__(
        self, root, train: bool = True, transform=None, target_transform=None, download: bool = False
    ) -> None:
        super().__init__(root, transform, target_transform)
        self.train = train
        folder = Path(self.root) / self.base_folder
        files = (self.train_list if train else self.test_list) + [self.meta["filename"]]
        if download and not all((folder / f).exists() for f in files):
            archive = Path(self.root) / self.filename
            _download(self.url, archive, self.tgz_md5, self._where())
            _extract_tar(archive, Path(self.root))
        missing = [f for f in files if not (folder / f).exists()]
        if missing:
            raise DatasetError(
                f"{type(self).__name__}: {', '.join(missing)} not found. "
                f"{self._where()}, or pass download=True"
            )
        data, targets = [], []
        for name in files[:-1]:
            batch = _load_batch(folder / name)
            try:
                data.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                targets.extend(int(t) for t in batch[self.labels_key])
            except (KeyError, ValueError) as e:
                raise DatasetError(f"{folder / name}: not a CIFAR batch ({e})") from None
        self.data = np.concatenate(data).transpose(0, 2, 3, 1)  # HWC, as torchvision keeps it
        self.targets = targets
        if len(self.targets) != len(self.data):
            raise DatasetError(f"{folder}: {len(self.data)} images but {len(self.targets)} labels")
        meta = _load_batch(folder / self.meta["filename"])
        self.classes = list(meta[self.meta["key"]])
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    def _where(self) -> str:
        return (
            f"Download {self.url} (MD5 {self.tgz_md5}) and extract it into {self.root} "
            f"(giving {Path(self.root) / self.base_folder})"
        )

    def __getitem__(self, index: int):
        return self._apply(Image.fromarray(self.data[index]), self.targets[index])

    def __len__(self) -> int:
        return len(self.data)

    def extra_repr(self) -> str:
        return f"Split: {'Train' if self.train else 'Test'}"


class CIFAR100(CIFAR10):
    """CIFAR-100 (fine labels) from `root/cifar-100-python`."""

    base_folder = "cifar-100-python"
    url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    filename = "cifar-100-python.tar.gz"
    tgz_md5 = "eb9058c3a382ffc7106e4002c42a8d85"
    train_list = ["train"]
    test_list = ["test"]
    meta = {"filename": "meta", "key": "fine_label_names"}
    labels_key = "fine_labels"


def _read_idx(path: Path) -> np.ndarray:
    """An idx file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"{path}: cannot read ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DatasetError(f"{path}: not an idx file (bad magic {raw[:4]!r})")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) * np.dtype(dtype).itemsize
    if len(raw) - offset != expected:
        raise DatasetError(
            f"{path}: {len(raw) - offset} data bytes, the header promises "
            f"{expected}; the file is truncated or damaged"
        )
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder(">"), offset=offset).reshape(dims)


_IDX_TYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.int16,
    0x0C: np.int32,
    0x0D: np.float32,
    0x0E: np.float64,
}


class MNIST(VisionDataset):
    """MNIST from `root/MNIST/raw` idx files (`train-images-idx3-ubyte[.gz]`, ...)."""

    mirror = "https://ossci-datasets.s3.amazonaws.com/mnist/"
    resources = [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ]
    classes = [
        "0 - zero",
        "1 - one",
        "2 - two",
        "3 - three",
        "4 - four",
        "5 - five",
        "6 - six",
        "7 - seven",
        "8 - eight",
        "9 - nine",
    ]

    def __init__(
        self, root, train: bool = True, transform=None, target_transform=None, download: bool = False
    ) -> None:
        super().__init__(root, transform, target_transform)
        self.train = train
        raw = Path(self.root) / type(self).__name__ / "raw"
        prefix = "train" if train else "t10k"
        wanted = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
        found = [self._find(raw, name) for name in wanted]
        if download and None in found:
            for name, md5 in self.resources:
                if name.startswith(prefix):
                    _download(self.mirror + name, raw / name, md5, self._where(raw))
            found = [self._find(raw, name) for name in wanted]
        if None in found:
            missing = [n for n, f in zip(wanted, found, strict=True) if f is None]
            raise DatasetError(
                f"{type(self).__name__}: {', '.join(missing)}[.gz] not found in "
                f"{raw}. {self._where(raw)}, or pass download=True"
            )
        self.data = _read_idx(found[0]).astype(np.uint8)
        self.targets = _read_idx(found[1]).astype(np.int64)
        if self.data.ndim != 3 or len(self.data) != len(self.targets):
            raise DatasetError(
                f"{raw}: images {self.data.shape} and labels {self.targets.shape} do not match"
            )
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    @staticmethod
    def _find(folder: Path, name: str) -> Path | None:
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.exists():
                return candidate
        return None

    def _where(self, raw: Path) -> str:
        names = ", ".join(f"{n} (MD5 {m})" for n, m in self.resources)
        return f"Put {names} from {self.mirror} into {raw}"

    def __getitem__(self, index: int):
        return self._apply(Image.fromarray(self.data[index], mode="L"), int(self.targets[index]))

    def __len__(self) -> int:
        return len(self.data)

    def extra_repr(self) -> str:
        return f"Split: {'Train' if self.train else 'Test'}"


class FashionMNIST(MNIST):
    """Fashion-MNIST, in MNIST's format, from `root/FashionMNIST/raw`."""

    mirror = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    resources = [
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ]
    classes = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]


IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def pil_loader(path: str) -> Image.Image:
    """Open an image file as RGB."""
    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")


class DatasetFolder(VisionDataset):
    """Samples from `root/<class>/**/<file>`: (loaded file, class index), classes sorted."""

    def __init__(
        self, root, loader, extensions=None, transform=None, target_transform=None, is_valid_file=None
    ) -> None:
        super().__init__(root, transform, target_transform)
        if not os.path.isdir(self.root):
            raise DatasetError(f"{type(self).__name__}: folder {self.root} does not exist")
        self.classes = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        if not self.classes:
            raise DatasetError(f"Couldn't find any class folder in {self.root}.")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        if is_valid_file is None:
            exts = tuple(x.lower() for x in (extensions or ()))

            def is_valid_file(path: str) -> bool:
                return path.lower().endswith(exts)

        self.samples = []
        for cls in self.classes:
            for dirpath, _, files in sorted(os.walk(os.path.join(self.root, cls), followlinks=True)):
                for name in sorted(files):
                    path = os.path.join(dirpath, name)
                    if is_valid_file(path):
                        self.samples.append((path, self.class_to_idx[cls]))
        if not self.samples:
            raise DatasetError(
                f"Found no valid file for the classes {', '.join(self.classes)}"
                f" in {self.root}. Supported extensions are: "
                f"{', '.join(extensions or ())}"
            )
        self.loader = loader
        self.targets = [t for _, t in self.samples]
        self.imgs = self.samples

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        return self._apply(self.loader(path), target)

    def __len__(self) -> int:
        return len(self.samples)


class ImageFolder(DatasetFolder):
    """Images in `root/<class>/<image>` folders."""

    def __init__(
        self, root, transform=None, target_transform=None, loader=pil_loader, is_valid_file=None
    ) -> None:
        super().__init__(
            root,
            loader,
            IMG_EXTENSIONS if is_valid_file is None else None,
            transform,
            target_transform,
            is_valid_file,
        )
