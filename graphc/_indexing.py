"""`tensor[key]` and `tensor[key] = value` with numpy's (and PyTorch's) semantics.

Basic indexing (ints, slices, None, ...) becomes select/slice/unsqueeze views; integer and
boolean tensor indices become one `index` op, with numpy's placement of the indexed dims.
Assignment writes into the tensor's memory, so views see it; under autograd it is recorded as
an `index_put` whose result replaces the tensor's history. Inside a graph capture an assignment
is recorded as the ops that compute the new value (`_captured_setitem`).
"""

from __future__ import annotations

import numpy as np

from graphc import _device, _dispatch
from graphc._dispatch import dispatch
from graphc._movement import select, slice_dim, unsqueeze
from graphc._tensor import Tensor
from graphc.autograd import grad_mode
from ir.ops import OPS


def _is_advanced(k) -> bool:
    return isinstance(k, (Tensor, list, np.ndarray)) and not isinstance(k, bool)


def _as_index_array(k, xp):
    if isinstance(k, Tensor):
        arr = k._data
    else:
        arr = np.asarray(k)
        if arr.dtype.kind == "f" or (arr.size == 0 and arr.dtype.kind != "b"):
            arr = arr.astype(np.int64) if arr.size == 0 else arr
    if arr.dtype.kind == "f":
        raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
    return arr if xp is np else xp.asarray(arr)


def _dims_consumed(k) -> int:
    if k is None or k is Ellipsis:
        return 0
    if isinstance(k, (Tensor, np.ndarray)) and str(k.dtype).endswith("bool"):
        return k.ndim
    return 1


def _normalize(key, ndim: int) -> list:
    key = list(key) if isinstance(key, tuple) else [key]
    consumed = sum(_dims_consumed(k) for k in key)
    if consumed > ndim:
        raise IndexError(f"too many indices for tensor of dimension {ndim}")
    ellipses = [i for i, k in enumerate(key) if k is Ellipsis]
    if len(ellipses) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if ellipses:
        i = ellipses[0]
        key[i : i + 1] = [slice(None)] * (ndim - consumed)
    else:
        key += [slice(None)] * (ndim - consumed)
    return key


def getitem(self: Tensor, key) -> Tensor:
    """`self[key]`: views for basic indexing, a gather for tensor and list indices."""
    xp = _device.array_module(self._data)
    key = _normalize(key, self.dim())
    advanced = any(_is_advanced(k) for k in key)
    out = self
    dim = 0
    positions, arrays = [], []
    for k in key:
        if k is None:
            out = unsqueeze(out, dim)
            positions.append(False)
            dim += 1
        elif isinstance(k, slice):
            if k != slice(None):
                out = slice_dim(out, dim, k.start, k.stop, 1 if k.step is None else k.step)
            positions.append(False)
            dim += 1
        elif isinstance(k, (bool, np.bool_)):
            raise IndexError("indexing with a Python bool is not supported; use a bool tensor")
        elif not advanced and isinstance(k, (int, np.integer)) or _is_int_tensor_0d(k, advanced):
            out = select(out, dim, int(k))
        else:
            arr = _as_index_array(k if not isinstance(k, (int, np.integer)) else np.int64(k), xp)
            if arr.dtype == np.bool_:
                if _dispatch.tracer is not None and isinstance(k, Tensor) and _dispatch.tracer.tracks(k):
                    _dispatch.tracer.data_dependent(
                        "indexing with a bool mask",
                        "use graphc.where(mask, x, 0), x.masked_fill(~mask, 0) or a product with the mask",
                    )
                _check_mask(arr, out.shape[dim : dim + arr.ndim], dim)
                for i in xp.nonzero(arr):
                    arrays.append(i.astype(np.int64))
                    positions.append(True)
                dim += arr.ndim
            else:
                # an integer tensor goes in as itself, so a trace sees where it came from
                arrays.append(k if isinstance(k, Tensor) and k.device == self.device else arr)
                positions.append(True)
                dim += 1
    if not arrays:
        return out
    positions += [False] * (out.dim() - len(positions))
    index_tensors = tuple(a if isinstance(a, Tensor) else Tensor._wrap(a) for a in arrays)
    return dispatch(OPS["index"], (out, *index_tensors), {"positions": tuple(positions)})


def _is_int_tensor_0d(k, advanced: bool) -> bool:
    return (
        not advanced
        and isinstance(k, Tensor)
        and k.dim() == 0
        and k.dtype.name in ("int64", "int32", "int16", "int8", "uint8")
    )


def _check_mask(mask, shape, dim: int) -> None:
    if tuple(mask.shape) != tuple(shape):
        raise IndexError(
            f"the shape of the mask {list(mask.shape)} at index {dim} does not "
            f"match the shape of the indexed tensor {list(shape)}"
        )


def _numpy_key(key, xp):
    parts = key if isinstance(key, tuple) else (key,)
    return tuple(
        _as_index_array(k, xp) if _is_advanced(k) else int(k) if isinstance(k, Tensor) else k for k in parts
    )


def setitem(self: Tensor, key, value) -> None:
    """`self[key] = value`: writes into this tensor's memory (views see the change)."""
    from graphc._methods import check_inplace, record_inplace

    if _dispatch.tracer is not None:
        _captured_setitem(self, key, value)
        return
    xp = _device.array_module(self._data)
    np_key = _numpy_key(key, xp)
    tracked = grad_mode.state.enabled and (self._rg or (isinstance(value, Tensor) and value._rg))
    if not tracked:
        if isinstance(value, Tensor):
            if value.device != self.device:
                value = value.to(self.device)
            value = value._data
        try:
            self._data[np_key] = value
        except ValueError as e:
            raise ValueError(f"setitem: {e} (tensor shape {list(self.shape)})") from None
        self._bump_version()
        return
    check_inplace(self)
    flat_ids = xp.asarray(xp.arange(self.numel()).reshape(self._data.shape)[np_key])
    flat = self.reshape(-1)
    new = dispatch(
        OPS["index_put"],
        (flat, value, Tensor._wrap(flat_ids)),
        {"positions": (True,), "accumulate": False},
        name="CopySlices",
    )
    record_inplace(self, new.reshape(self.shape))


def _captured_setitem(self: Tensor, key, value) -> None:
    """`self[key] = value` inside a graph capture, as ops the graph records: a copy into the
    view for basic keys (ints, slices, None, ...), a `where` for a bool mask with a value that
    broadcasts over the masked elements, an `index_put` for integer index tensors."""
    from graphc import _creation as C
    from graphc import _functions as F
    from graphc._methods import record_inplace

    parts = list(key) if isinstance(key, tuple) else [key]
    if not any(_is_advanced(k) for k in parts):
        self[key].copy_(value)
        return
    normalized = _normalize(key, self.dim())
    advanced = [i for i, k in enumerate(normalized) if _is_advanced(k)]
    plain = all(k == slice(None) for i, k in enumerate(normalized) if i not in advanced)
    if not isinstance(value, Tensor):
        value = C.tensor(value, dtype=self.dtype, device=self.device)
    value = F.cast(value, self.dtype)
    masks = [normalized[i] for i in advanced if str(getattr(normalized[i], "dtype", "")).endswith("bool")]
    capture = _dispatch.tracer
    if plain and masks and len(advanced) == 1:
        mask = normalized[advanced[0]]
        if not isinstance(mask, Tensor):
            mask = C.tensor(np.asarray(mask), device=self.device)
        start = advanced[0]
        _check_mask(mask, self.shape[start : start + mask.dim()], start)
        rest = self.dim() - start - mask.dim()
        if value.dim() > rest:
            capture.data_dependent(
                "assigning a tensor to x[mask]",
                "assign a value that broadcasts over the masked elements (a number, or one value per "
                "trailing dim), or use graphc.where(mask, values, x)",
            )
        condition = mask.reshape(*mask.shape, *([1] * rest))
        record_inplace(self, F.where(condition, value, self))
        return
    if plain and not masks:
        indices = tuple(
            k if isinstance(k, Tensor) else C.tensor(np.asarray(k), device=self.device)
            for k in (normalized[i] for i in advanced)
        )
        positions = tuple(i in advanced for i in range(len(normalized)))
        if advanced == list(range(advanced[0], advanced[-1] + 1)):
            attrs = {"positions": positions, "accumulate": False}
            result = dispatch(OPS["index_put"], (self, value, *indices), attrs)
            record_inplace(self, result)
            return
    from graphc.capture.tracer import TracingError, _user_frame

    raise TracingError(
        f"an assignment x[key] = value at {_user_frame()} mixes index tensors with other indices in "
        "a way a captured graph does not record yet; inside a capture, assign through basic "
        "indexing (ints, slices), one bool mask, or integer index tensors next to each other with "
        "full slices elsewhere"
    )
