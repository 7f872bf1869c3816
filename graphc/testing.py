"""`graphc.testing.assert_close`: PyTorch's tensor comparison for tests."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from graphc._tensor import Tensor
from ir import dtypes

__all__ = ["assert_close"]

# PyTorch's default tolerances (rtol, atol) by dtype; integers and bools compare exactly
_TOLERANCES = {
    "float16": (1e-3, 1e-5),
    "bfloat16": (1.6e-2, 1e-5),
    "float32": (1.3e-6, 1e-5),
    "float64": (1e-7, 1e-7),
}


def assert_close(
    actual,
    expected,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    equal_nan: bool = False,
    check_device: bool = True,
    check_dtype: bool = True,
    check_layout: bool = True,
    check_stride: bool = False,
    msg: str | None = None,
) -> None:
    """AssertionError unless `actual` and `expected` (tensors, numbers, or sequences and
    mappings of them, compared element by element) are close: |actual - expected| <= atol +
    rtol * |expected| everywhere, with the same shapes (and dtypes and devices unless told
    not to check). rtol and atol default by dtype as PyTorch's; give both or neither."""
    if (rtol is None) != (atol is None):
        raise ValueError(f"assert_close: give both rtol and atol, or neither (got rtol={rtol}, atol={atol})")
    _compare(actual, expected, rtol, atol, equal_nan, check_device, check_dtype, msg, "")


def _compare(actual, expected, rtol, atol, equal_nan, check_device, check_dtype, msg, where: str) -> None:
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        if set(actual) != set(expected):
            raise AssertionError(f"The keys differ{where}: {sorted(actual)} != {sorted(expected)}")
        for key in expected:
            _compare(
                actual[key],
                expected[key],
                rtol,
                atol,
                equal_nan,
                check_device,
                check_dtype,
                msg,
                f"{where}[{key!r}]",
            )
        return
    sequences = (Sequence,)
    if isinstance(expected, sequences) and isinstance(actual, sequences) and not isinstance(expected, str):
        if len(actual) != len(expected):
            raise AssertionError(f"The lengths differ{where}: {len(actual)} != {len(expected)}")
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _compare(a, e, rtol, atol, equal_nan, check_device, check_dtype, msg, f"{where}[{i}]")
        return
    a, e = _array(actual, where), _array(expected, where)
    if isinstance(actual, Tensor) and isinstance(expected, Tensor):
        if check_device and actual.device != expected.device:
            raise AssertionError(f"The devices differ{where}: {actual.device} != {expected.device}")
        if check_dtype and actual.dtype != expected.dtype:
            raise AssertionError(f"The dtypes differ{where}: {actual.dtype} != {expected.dtype}")
    elif check_dtype and isinstance(actual, Tensor) != isinstance(expected, Tensor):
        raise AssertionError(f"The types differ{where}: {type(actual).__name__} != {type(expected).__name__}")
    if a.shape != e.shape:
        raise AssertionError(f"The shapes differ{where}: {list(a.shape)} != {list(e.shape)}")
    if rtol is None:
        name = dtypes.from_numpy(np.result_type(a.dtype, e.dtype)).name
        rtol, atol = _TOLERANCES.get(name, (0.0, 0.0))
    if a.dtype.kind in "biu" and e.dtype.kind in "biu":
        close = a == e
    else:
        a64, e64 = a.astype(np.float64), e.astype(np.float64)
        with np.errstate(all="ignore"):
            close = (a64 == e64) | (np.abs(a64 - e64) <= atol + rtol * np.abs(e64))
        if equal_nan:
            close |= np.isnan(a64) & np.isnan(e64)
    if close.all():
        return
    raise AssertionError(msg or _mismatch(a, e, close, rtol, atol, where))


def _array(value, where: str) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.detach().numpy(force=True)
    if isinstance(value, (bool, int, float, np.ndarray, np.generic)):
        return np.asarray(value)
    raise TypeError(f"assert_close{where}: cannot compare a {type(value).__name__}")


def _mismatch(a: np.ndarray, e: np.ndarray, close: np.ndarray, rtol: float, atol: float, where: str) -> str:
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    total, bad = close.size, int((~close).sum())
    with np.errstate(all="ignore"):
        absolute = np.where(close, 0.0, np.nan_to_num(np.abs(a64 - e64), nan=np.inf))
        relative = np.where(close, 0.0, absolute / np.abs(e64))
    worst_abs = np.unravel_index(np.nanargmax(absolute), a.shape) if a.ndim else ()
    worst_rel = np.unravel_index(np.nanargmax(relative), a.shape) if a.ndim else ()
    return (
        f"Tensor-likes are not close{where}!\n\n"
        f"Mismatched elements: {bad} / {total} ({100 * bad / total:.1f}%)\n"
        f"Greatest absolute difference: {absolute[worst_abs]} at index {tuple(int(i) for i in worst_abs)} "
        f"(up to {atol} allowed)\n"
        f"Greatest relative difference: {relative[worst_rel]} at index {tuple(int(i) for i in worst_rel)} "
        f"(up to {rtol} allowed)"
        + ("" if math.isfinite(float(absolute[worst_abs])) else "\n(a NaN or infinity differs)")
    )
