"""`finfo` and `iinfo`: the numeric limits of graphc's dtypes, as `torch.finfo`/`torch.iinfo`."""

from __future__ import annotations

import numpy as np

from graphc._tensor import get_default_dtype
from ir.dtypes import DType


def _limits(dtype: DType, floating: bool):
    if dtype.name == "bfloat16":  # (numpy's finfo does not know ml_dtypes' types)
        import ml_dtypes

        return ml_dtypes.finfo(dtype.np)
    return np.finfo(dtype.np) if floating else np.iinfo(dtype.np)


class finfo:  # noqa: N801 (PyTorch's name)
    """Limits of a floating-point dtype (the default dtype if none): bits, eps, max, min, tiny
    (= smallest_normal), resolution, dtype (its name)."""

    def __init__(self, type: DType | None = None) -> None:  # noqa: A002 (PyTorch's name)
        dtype = get_default_dtype() if type is None else type
        if not isinstance(dtype, DType) or not dtype.is_floating_point:
            raise TypeError(
                f"finfo() requires a floating point input type, got {dtype}. "
                "Use iinfo to handle integer types"
            )
        info = _limits(dtype, True)
        self.bits = int(info.bits)
        self.eps, self.max, self.min = float(info.eps), float(info.max), float(info.min)
        self.tiny = self.smallest_normal = float(info.smallest_normal)
        self.resolution = 10.0 ** -int(info.precision)  # (numpy keeps it in the dtype: 0.0010004 for half)
        self.dtype = dtype.name

    def __repr__(self) -> str:
        values = ", ".join(
            f"{k}={getattr(self, k):g}"
            for k in ("resolution", "min", "max", "eps", "smallest_normal", "tiny")
        )
        return f"finfo({values}, dtype={self.dtype})"


class iinfo:  # noqa: N801 (PyTorch's name)
    """Limits of an integer dtype: bits, max, min, dtype (its name)."""

    def __init__(self, type: DType) -> None:  # noqa: A002 (PyTorch's name)
        if not isinstance(type, DType) or type.is_floating_point or type.name == "bool":
            raise TypeError(
                f"iinfo() requires an integer input type, got {type}. Use finfo to handle floating types"
            )
        info = _limits(type, False)
        self.bits, self.max, self.min, self.dtype = int(info.bits), int(info.max), int(info.min), type.name

    def __repr__(self) -> str:
        return f"iinfo(min={float(self.min):g}, max={float(self.max):g}, dtype={self.dtype})"
