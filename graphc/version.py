"""`graphc.version`: versions of graphc and of the CUDA toolkit it was built against (none)."""

__version__ = "0.1.0"
cuda = None
