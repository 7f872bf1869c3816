"""`graphc.vision`: datasets, transforms and image utilities (torchvision's role)."""

from graphc.vision import datasets, transforms, utils

__all__ = ["datasets", "transforms", "utils"]
