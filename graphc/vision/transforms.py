"""Image transforms (torchvision.transforms' common set) for PIL images and CHW tensors.
Random transforms draw from graphc's generator, so `graphc.manual_seed` makes them repeat."""

from __future__ import annotations

import numbers

import numpy as np
from PIL import Image

import graphc as G
from graphc._tensor import Tensor


def _size_pair(size) -> tuple[int, int]:
    if isinstance(size, numbers.Number):
        return (int(size), int(size))
    if len(size) == 1:
        return (int(size[0]), int(size[0]))
    return (int(size[0]), int(size[1]))


def _image_size(img) -> tuple[int, int]:
    """(height, width) of a PIL image or a (..., H, W) tensor."""
    if isinstance(img, Image.Image):
        return img.size[1], img.size[0]
    return img.shape[-2], img.shape[-1]


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms) -> None:
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        body = "".join(f"\n    {t!r}" for t in self.transforms)
        return f"{type(self).__name__}({body}\n)"


class ToTensor:
    """PIL image or HWC numpy array -> CHW float tensor; uint8 values scaled into [0, 1]."""

    def __call__(self, pic) -> Tensor:
        if isinstance(pic, Image.Image):
            arr = np.array(pic, copy=True)
            if pic.mode == "1":
                arr = arr.astype(np.uint8) * 255
        elif isinstance(pic, np.ndarray):
            arr = pic
        else:
            raise TypeError(f"pic should be PIL Image or ndarray. Got {type(pic)}")
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3:
            raise ValueError(f"pic should be 2 or 3 dimensional. Got {arr.ndim} dimensions.")
        out = np.ascontiguousarray(arr.transpose(2, 0, 1))
        if out.dtype == np.uint8:
            return G.from_numpy(out.astype(np.float32) / 255.0)
        return G.from_numpy(out.astype(np.float32) if out.dtype.kind != "f" else out)

    def __repr__(self) -> str:
        return "ToTensor()"


class PILToTensor:
    """PIL image -> CHW uint8 tensor (no scaling)."""

    def __call__(self, pic) -> Tensor:
        arr = np.array(pic, copy=True)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        return G.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    def __repr__(self) -> str:
        return "PILToTensor()"


class ToPILImage:
    """CHW tensor (floats in [0, 1] or uint8) or HWC array -> PIL image."""

    def __init__(self, mode=None) -> None:
        self.mode = mode

    def __call__(self, pic):
        if isinstance(pic, Tensor):
            arr = pic.detach().cpu().numpy()
            if arr.ndim == 3:
                arr = arr.transpose(1, 2, 0)
            if arr.dtype.kind == "f":
                arr = (arr * 255).clip(0, 255).round().astype(np.uint8)
        else:
            arr = pic
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        return Image.fromarray(arr, mode=self.mode)

    def __repr__(self) -> str:
        return "ToPILImage()"


class Normalize:
    """(x - mean) / std per channel of a CHW (or NCHW) float tensor."""

    def __init__(self, mean, std, inplace: bool = False) -> None:
        self.mean, self.std, self.inplace = list(mean), list(std), inplace
        if any(s == 0 for s in self.std):
            raise ValueError(
                f"std evaluated to zero after conversion to float, leading to division by zero: {self.std}"
            )

    def __call__(self, tensor: Tensor) -> Tensor:
        if not isinstance(tensor, Tensor) or not tensor.dtype.is_floating_point:
            raise TypeError(f"Normalize expects a float tensor, got {type(tensor).__name__}")
        shape = (-1, 1, 1)
        mean = G.tensor(self.mean, dtype=tensor.dtype).reshape(shape)
        std = G.tensor(self.std, dtype=tensor.dtype).reshape(shape)
        if self.inplace:
            return tensor.sub_(mean).div_(std)
        return (tensor - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class Resize:
    """Resize: an int resizes the smaller edge to it (keeping the aspect ratio), a pair
    gives (height, width). Bilinear by default."""

    def __init__(self, size, interpolation=Image.BILINEAR, max_size=None, antialias=True):
        self.size, self.interpolation = size, interpolation

    def _target(self, h: int, w: int) -> tuple[int, int]:
        if isinstance(self.size, numbers.Number) or len(self.size) == 1:
            short = int(self.size if isinstance(self.size, numbers.Number) else self.size[0])
            if h <= w:
                return short, int(short * w / h)
            return int(short * h / w), short
        return int(self.size[0]), int(self.size[1])

    def __call__(self, img):
        h, w = _image_size(img)
        th, tw = self._target(h, w)
        if isinstance(img, Image.Image):
            return img.resize((tw, th), self.interpolation)
        from graphc.nn.functional import interpolate

        mode = "nearest" if self.interpolation == Image.NEAREST else "bilinear"
        batched = img.unsqueeze(0) if img.dim() == 3 else img
        out = interpolate(
            batched.float() if not batched.dtype.is_floating_point else batched,
            size=(th, tw),
            mode=mode,
            align_corners=False if mode != "nearest" else None,
        )
        return out.squeeze(0) if img.dim() == 3 else out

    def __repr__(self) -> str:
        return f"Resize(size={self.size})"


def _crop(img, top: int, left: int, height: int, width: int):
    if isinstance(img, Image.Image):
        return img.crop((left, top, left + width, top + height))
    return img[..., top : top + height, left : left + width]


class CenterCrop:
    """Crop the center (padding with zeros when the image is smaller)."""

    def __init__(self, size) -> None:
        self.size = _size_pair(size)

    def __call__(self, img):
        h, w = _image_size(img)
        th, tw = self.size
        if th > h or tw > w:
            img = _pad(
                img,
                [
                    max((tw - w) // 2, 0),
                    max((th - h) // 2, 0),
                    max((tw - w + 1) // 2, 0),
                    max((th - h + 1) // 2, 0),
                ],
                0,
            )
            h, w = _image_size(img)
        return _crop(img, int(round((h - th) / 2.0)), int(round((w - tw) / 2.0)), th, tw)

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


def _pad(img, padding, fill):
    """padding = [left, top, right, bottom]."""
    left, top, right, bottom = padding
    if isinstance(img, Image.Image):
        out = Image.new(img.mode, (img.size[0] + left + right, img.size[1] + top + bottom), fill)
        out.paste(img, (left, top))
        return out
    from graphc.nn.functional import pad

    return pad(img, (left, right, top, bottom), value=fill)


class RandomCrop:
    """Crop a random `size` window, after optional padding."""

    def __init__(
        self, size, padding=None, pad_if_needed: bool = False, fill=0, padding_mode: str = "constant"
    ) -> None:
        if padding_mode != "constant":
            raise ValueError(f"RandomCrop: padding_mode {padding_mode!r} is not supported; use 'constant'")
        self.size = _size_pair(size)
        self.padding, self.pad_if_needed, self.fill = padding, pad_if_needed, fill

    def __call__(self, img):
        if self.padding is not None:
            p = self.padding
            p = [p] * 4 if isinstance(p, int) else list(p) * 2 if len(p) == 2 else list(p)
            img = _pad(img, p, self.fill)
        h, w = _image_size(img)
        th, tw = self.size
        if self.pad_if_needed and (h < th or w < tw):
            img = _pad(img, [max(tw - w, 0), max(th - h, 0)] * 2, self.fill)
            h, w = _image_size(img)
        if h < th or w < tw:
            raise ValueError(f"Required crop size {(th, tw)} is larger than input image size {(h, w)}")
        top = int(G.randint(0, h - th + 1, (1,)).item())
        left = int(G.randint(0, w - tw + 1, (1,)).item())
        return _crop(img, top, left, th, tw)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror left-right with probability `p`."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img):
        if G.rand(1).item() < self.p:
            if isinstance(img, Image.Image):
                return img.transpose(Image.FLIP_LEFT_RIGHT)
            return img.flip(-1)
        return img

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Lambda:
    """Apply a user function."""

    def __init__(self, lambd) -> None:
        if not callable(lambd):
            raise TypeError(f"Argument lambd should be callable, got {type(lambd).__name__}")
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)

    def __repr__(self) -> str:
        return "Lambda()"
