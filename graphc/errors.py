"""Errors raised by the graphc frontend. Each names what was expected, what was given, where."""

from ir.errors import ShapeError


class GraphcError(Exception):
    """Base class of graphc's own errors."""


class DeviceError(GraphcError, RuntimeError):
    """A device that is not available, or tensors on different devices in one op."""


class AutogradError(GraphcError, RuntimeError):
    """Misuse of autograd: backward through a freed graph, a modified saved tensor, ..."""


class DistributedError(GraphcError, ValueError):
    """Misuse of graphc.distributed (no process group, a second one, a rank that does not
    exist), or more than the one process it runs."""


__all__ = ["AutogradError", "DeviceError", "DistributedError", "GraphcError", "ShapeError"]
