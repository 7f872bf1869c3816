"""`graphc.backends`: PyTorch's switches for vendor libraries, kept for compatibility.

graphc does not use cuDNN; `cudnn.deterministic` and `cudnn.benchmark` are accepted and have
nothing to change (graphc's CPU and CUDA kernels are deterministic already).
"""

from graphc.backends import cudnn

__all__ = ["cudnn"]
