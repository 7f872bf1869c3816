"""`graphc.utils.data.distributed.DistributedSampler` (PyTorch's module path)."""

from graphc.utils.data.sampler import DistributedSampler

__all__ = ["DistributedSampler"]
