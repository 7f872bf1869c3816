"""Image grids and saving (torchvision.utils' make_grid and save_image)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

import graphc as G
from graphc._tensor import Tensor


def make_grid(
    tensor,
    nrow: int = 8,
    padding: int = 2,
    normalize: bool = False,
    value_range=None,
    scale_each: bool = False,
    pad_value: float = 0.0,
) -> Tensor:
    """Tile a batch (B, C, H, W) (or a list of CHW tensors) into one CHW image, `nrow` per
    row, with `padding` pixels of `pad_value` around each."""
    if isinstance(tensor, (list, tuple)):
        tensor = G.stack(list(tensor), 0)
    if not isinstance(tensor, Tensor):
        raise TypeError(f"tensor or list of tensors expected, got {type(tensor).__name__}")
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() == 3:
        tensor = tensor.unsqueeze(0) if tensor.shape[0] in (1, 3) else tensor.unsqueeze(1)
    if tensor.shape[1] == 1:
        tensor = G.cat([tensor] * 3, 1)
    arr = tensor.detach().cpu().numpy().astype(np.float32, copy=True)
    if normalize:

        def norm(a, lo_hi):
            lo, hi = lo_hi if lo_hi is not None else (a.min(), a.max())
            a = np.clip(a, lo, hi)
            return (a - lo) / max(hi - lo, 1e-5)

        arr = np.stack([norm(a, value_range) for a in arr]) if scale_each else norm(arr, value_range)
    if arr.shape[0] == 1:
        return G.from_numpy(arr[0])
    count, channels, h, w = arr.shape
    cols = min(nrow, count)
    rows = int(math.ceil(count / cols))
    height, width = h + padding, w + padding
    grid = np.full((channels, rows * height + padding, cols * width + padding), pad_value, dtype=np.float32)
    for k in range(count):
        y, x = divmod(k, cols)
        grid[
            :, y * height + padding : y * height + padding + h, x * width + padding : x * width + padding + w
        ] = arr[k]
    return G.from_numpy(grid)


def save_image(tensor, fp, format: str | None = None, **kwargs) -> None:
    """Save a tensor (or batch, tiled with make_grid's options) as an image file."""
    grid = make_grid(tensor, **kwargs)
    arr = (grid.numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8).transpose(1, 2, 0)
    Image.fromarray(arr).save(fp, format=format)
