"""`graphc.save` / `graphc.load`: checkpoints without pickle.

A file is a zip archive: `manifest.json` describes the saved structure (dicts, lists, tuples,
numbers, strings, None and tensors), and each tensor's bytes are one entry, checked by length
and CRC-32 on load. Objects that structure cannot describe (a whole Module, say) are pickled
into the archive, and loading them needs `weights_only=False`, because unpickling runs code
from the file (as in PyTorch 2.6 and later).

    >>> graphc.save({"epoch": 3, "model": net.state_dict()}, "ckpt.pt")
    >>> ckpt = graphc.load("ckpt.pt", map_location="cpu")
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from graphc import _device
from graphc._tensor import Tensor
from graphc.errors import GraphcError
from ir import dtypes
from ir.fileio import atomic_write

FORMAT = "graphc.save"
VERSION = 1


class CheckpointError(GraphcError, ValueError):
    """A file that is not a graphc checkpoint, or one that is damaged: names what is wrong."""


class _Unsupported(Exception):
    pass


class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[int, tuple[int, Tensor]] = {}

    def encode(self, obj):
        # numpy first: np.float64 is also a Python float and must stay a numpy scalar
        if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in "biuf":
            t = Tensor._wrap(np.array(obj, order="C"))
            self.tensors[id(t)] = (len(self.tensors), t)
            return {"__ndarray__": self.tensors[id(t)][0], "scalar": isinstance(obj, np.generic)}
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int):
            return obj
        if isinstance(obj, float):
            return {"__float__": repr(obj)}  # exact, and nan/inf survive
        if isinstance(obj, Tensor):
            entry = self.tensors.setdefault(id(obj), (len(self.tensors), obj))
            return {"__tensor__": entry[0]}
        if isinstance(obj, dtypes.DType):
            return {"__dtype__": obj.name}
        if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
            return {"__tuple__": [self.encode(v) for v in obj]}
        if isinstance(obj, list):
            return [self.encode(v) for v in obj]
        if type(obj) in (dict, OrderedDict):
            items = [[self.encode(k), self.encode(v)] for k, v in obj.items()]
            return {"__odict__" if type(obj) is OrderedDict else "__dict__": items}
        raise _Unsupported(type(obj).__name__)


def save(obj, f, pickle_module=None, pickle_protocol: int = 2) -> None:
    """Save `obj` to the path or binary file `f`. A path is written atomically (a temporary
    file renamed into place), so an interrupted save never leaves a half-written checkpoint."""
    encoder = _Encoder()
    manifest = {"format": FORMAT, "version": VERSION}
    payload = None
    try:
        manifest["root"] = encoder.encode(obj)
    except _Unsupported as e:
        encoder = _Encoder()
        manifest["root"] = None
        manifest["pickled"] = e.args[0]
        payload = (pickle_module or pickle).dumps(obj, protocol=max(pickle_protocol, 2))
    records = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for index, tensor in sorted(encoder.tensors.values(), key=lambda e: e[0]):
            arr = _device.to_device(tensor._data, _device.CPU)
            arr = arr if arr.flags.c_contiguous else arr.copy(order="C")  # keeps 0-d arrays 0-d
            raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            records.append(
                {
                    "dtype": dtypes.from_numpy(arr.dtype).name,
                    "shape": list(arr.shape),
                    "nbytes": len(raw),
                    "crc32": zlib.crc32(raw),
                    "requires_grad": bool(tensor.requires_grad),
                    "parameter": type(tensor).__name__ == "Parameter",
                    "device": str(tensor.device),
                }
            )
            zf.writestr(f"tensors/{index}", raw)
        if payload is not None:
            zf.writestr("object.pkl", payload)
        manifest["tensors"] = records
        zf.writestr("manifest.json", json.dumps(manifest))
    data = buffer.getvalue()
    if hasattr(f, "write"):
        f.write(data)
        return
    atomic_write(f, (data,), prefix=".graphc-save-")


def _target_device(map_location, saved: str):
    if map_location is None:
        return saved
    if callable(map_location) and not isinstance(map_location, (str, _device.device)):
        return map_location(saved)
    if isinstance(map_location, dict):
        return map_location.get(saved, saved)
    return map_location


def load(f, map_location=None, pickle_module=None, *, weights_only: bool = True, mmap=None, **unused):
    """Load what `save` wrote. `map_location` moves tensors ('cpu', a device, a dict from saved
    device names to new ones, or a function of the saved name). Files holding pickled objects
    load only with `weights_only=False`."""
    name = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", "<file>")
    try:
        zf = zipfile.ZipFile(f if hasattr(f, "read") else os.fspath(f))
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{name}: not a graphc checkpoint, or truncated ({e})") from None
    with zf:
        try:
            manifest = json.loads(zf.read("manifest.json"))
        except KeyError:
            raise CheckpointError(f"{name}: no manifest.json; not a graphc checkpoint") from None
        except (ValueError, zipfile.BadZipFile, zlib.error) as e:
            raise CheckpointError(f"{name}: the manifest is damaged ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise CheckpointError(
                f"{name}: not a graphc checkpoint (format "
                f"{manifest.get('format') if isinstance(manifest, dict) else None!r})"
            )
        if manifest.get("version", 0) > VERSION:
            raise CheckpointError(
                f"{name}: written by a newer graphc (checkpoint format "
                f"{manifest['version']}, this graphc reads up to {VERSION})"
            )
        if manifest.get("pickled"):
            if weights_only:
                raise CheckpointError(
                    f"{name} holds a pickled {manifest['pickled']} object; unpickling runs code "
                    "from the file. Load it with weights_only=False only if you trust its "
                    "source, or save a state_dict instead."
                )
            return (pickle_module or pickle).loads(zf.read("object.pkl"))
        tensors = [
            _read_tensor(zf, i, rec, name, map_location) for i, rec in enumerate(manifest.get("tensors", []))
        ]
    return _decode(manifest["root"], tensors, name)


def _read_tensor(zf, index: int, rec: dict, name: str, map_location) -> Tensor:
    from graphc.nn.parameter import Parameter

    try:
        raw = zf.read(f"tensors/{index}")
    except KeyError:
        raise CheckpointError(f"{name}: tensor {index} is missing from the archive") from None
    except (zipfile.BadZipFile, zlib.error) as e:
        raise CheckpointError(f"{name}: tensor {index} is damaged ({e})") from None
    try:
        dtype = dtypes.from_name(rec["dtype"])
        shape = tuple(int(s) for s in rec["shape"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{name}: bad description of tensor {index}: {e}") from None
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != rec.get("nbytes") or len(raw) != expected:
        raise CheckpointError(
            f"{name}: tensor {index} has {len(raw)} bytes; its shape {list(shape)} "
            f"and dtype {dtype.name} need {expected}"
        )
    if zlib.crc32(raw) != rec.get("crc32"):
        raise CheckpointError(f"{name}: checksum mismatch in tensor {index}; the file is corrupt")
    arr = np.frombuffer(raw, dtype=dtype.np.newbyteorder("<")).astype(dtype.np).reshape(shape)
    t = Tensor._wrap(arr.copy())
    target = _target_device(map_location, rec.get("device", "cpu"))
    if str(target) != "cpu":
        t = Tensor._wrap(_device.to_device(t._data, _device.resolve(target)))
    if rec.get("parameter"):
        return Parameter(t, requires_grad=rec.get("requires_grad", True))
    if rec.get("requires_grad"):
        t.requires_grad_(True)
    return t


def _decode(obj, tensors: list, name: str):
    if isinstance(obj, list):
        return [_decode(v, tensors, name) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj or "__ndarray__" in obj:
        key = "__tensor__" if "__tensor__" in obj else "__ndarray__"
        index = obj[key]
        if not isinstance(index, int) or not 0 <= index < len(tensors):
            raise CheckpointError(f"{name}: reference to tensor {index}, but the file has {len(tensors)}")
        if key == "__tensor__":
            return tensors[index]
        arr = tensors[index].detach().numpy()
        return arr[()] if obj.get("scalar") else arr
    if "__float__" in obj:
        return float(obj["__float__"])
    if "__dtype__" in obj:
        return dtypes.from_name(obj["__dtype__"])
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors, name) for v in obj["__tuple__"])
    for marker, kind in (("__dict__", dict), ("__odict__", OrderedDict)):
        if marker in obj:
            return kind(
                (_hashable(_decode(k, tensors, name)), _decode(v, tensors, name)) for k, v in obj[marker]
            )
    raise CheckpointError(f"{name}: unknown entry {sorted(obj)[:3]} in the manifest")


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key
