"""Turning lists of samples into batches (`default_collate`) and arrays into tensors."""

from __future__ import annotations

import collections.abc
import numbers

import numpy as np

from graphc._tensor import Tensor


def default_convert(data):
    """numpy arrays (nested anywhere in tuples, lists and dicts) become tensors."""
    from graphc._creation import as_tensor

    if isinstance(data, np.ndarray) and data.dtype.kind in "biuf":
        return as_tensor(data)
    if isinstance(data, np.generic) and data.dtype.kind in "biuf":
        return as_tensor(np.asarray(data))
    if isinstance(data, collections.abc.Mapping):
        return type(data)({k: default_convert(v) for k, v in data.items()})
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, (list, tuple)):
        return type(data)(default_convert(d) for d in data)
    return data


def default_collate(batch: list):
    """Stack a list of samples into a batch: tensors and arrays are stacked along a new first
    dim, numbers become tensors, strings stay lists, and tuples, lists and dicts are collated
    element by element.

        >>> default_collate([(graphc.zeros(2), 0), (graphc.ones(2), 1)])
        [tensor([[0., 0.], [1., 1.]]), tensor([0, 1])]
    """
    from graphc import _movement
    from graphc._creation import from_numpy, tensor

    elem = batch[0]
    if isinstance(elem, Tensor):
        shapes = {tuple(t.shape) for t in batch}
        if len(shapes) > 1:
            raise RuntimeError(
                f"stack expects each tensor to be equal size, but got {sorted(shapes)} in one batch"
            )
        return _movement.stack([t.detach() for t in batch], 0)
    if isinstance(elem, np.ndarray):
        if elem.dtype.kind not in "biuf":
            raise TypeError(
                f"default_collate: batch must contain tensors, numpy arrays, "
                f"numbers, dicts or lists; found numpy array of dtype {elem.dtype}"
            )
        return from_numpy(np.stack(batch))
    if isinstance(elem, np.generic):
        return from_numpy(np.asarray(batch))
    if isinstance(elem, bool):
        return tensor(batch)
    if isinstance(elem, numbers.Integral):
        return tensor(batch)
    if isinstance(elem, float):
        return tensor(batch, dtype=_float64())
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        return type(elem)({key: default_collate([d[key] for d in batch]) for key in elem})
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return type(elem)(*(default_collate(list(samples)) for samples in zip(*batch, strict=True)))
    if isinstance(elem, collections.abc.Sequence):
        if any(len(e) != len(elem) for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        # a list for tuples too, as PyTorch returns
        return [default_collate(list(samples)) for samples in zip(*batch, strict=True)]
    raise TypeError(
        f"default_collate: batch must contain tensors, numpy arrays, numbers, "
        f"dicts or lists; found {type(elem)}"
    )


def _float64():
    from ir.dtypes import float64

    return float64
