"""Every op graphc knows, defined once. Importing this package fills the registry."""

from ir.ops import control, conv, creation, elementwise, linalg, movement, nn, reduction  # noqa: F401
from ir.ops.registry import OPS, OpDef, Promote, get_op, register

__all__ = ["OPS", "OpDef", "Promote", "get_op", "register"]
