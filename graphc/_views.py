"""Autograd through in-place changes of views (PyTorch's CopySlices and view regeneration).

A view shares memory with its base. When a view is changed in place under autograd, the base's
new value is "the old base with the view's elements replaced" (an `index_put` at the flat
positions the view covers), and the view becomes a gather from that new base. When the base (or
another view of it) changes in place, a view's recorded history is stale; the dispatch point
notices through the shared version counter and regenerates the view's history from its base
before the view is used.
"""

from __future__ import annotations

import numpy as np

from graphc import _device
from graphc._dispatch import dispatch
from graphc._tensor import Tensor
from graphc.errors import AutogradError
from ir.ops import OPS


def _address(arr) -> int:
    return arr.__array_interface__["data"][0] if type(arr) is np.ndarray else arr.data.ptr


def flat_positions(view: Tensor, base: Tensor) -> Tensor:
    """For each element of `view`, its flat index in `base` (an int64 tensor shaped like view)."""
    b, v = base._data, view._data
    if not b.flags.c_contiguous:
        raise AutogradError(
            "in-place changes through a view of a non-contiguous tensor that requires grad are "
            "not supported; make the base contiguous first (tensor.contiguous())"
        )
    itemsize = b.itemsize
    offset = (_address(v) - _address(b)) // itemsize
    ids = np.full(v.shape, offset, dtype=np.int64)
    for d, (size, stride) in enumerate(zip(v.shape, v.strides, strict=True)):
        shape = [1] * v.ndim
        shape[d] = size
        ids = ids + (np.arange(size, dtype=np.int64) * (stride // itemsize)).reshape(shape)
    return Tensor._wrap(_device.to_device(ids, base.device))


def refresh(view: Tensor) -> None:
    """Bring a view's autograd history up to date after an in-place change of its memory."""
    view._view_version = view._vc[0]
    base = view._base
    if not base._rg:
        return
    flat = base.reshape(-1)
    fresh = dispatch(
        OPS["index"], (flat, flat_positions(view, base)), {"positions": (True,)}, name="AsStridedBackward0"
    )
    view.grad_fn, view._output_nr, view._rg = fresh.grad_fn, 0, True


def copy_slices(view: Tensor, result: Tensor) -> Tensor:
    """Write `result` (which has autograd history) into `view` and rebase both histories."""
    base = view._base
    ids = flat_positions(view, base)
    new_flat = dispatch(
        OPS["index_put"],
        (base.reshape(-1), result, ids),
        {"positions": (True,), "accumulate": False},
        name="CopySlices",
    )
    new_base = new_flat.reshape(base.shape)
    view._data[...] = result._data
    view._bump_version()
    base.grad_fn, base._output_nr, base._rg = new_base.grad_fn, 0, True
    fresh = dispatch(OPS["index"], (new_flat, ids), {"positions": (True,)}, name="AsStridedBackward0")
    view.grad_fn, view._output_nr, view._rg = fresh.grad_fn, 0, True
    view._view_version = view._vc[0]
    return view
