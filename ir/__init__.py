"""graphc's graph IR: dtypes, the op registry with reference semantics, and (later) graphs,
passes and the module-file schema. Depends on numpy and protobuf only."""

from ir import dtypes
from ir.errors import IRError, OpError, ShapeError, UnknownOpError
from ir.ops import OPS, OpDef, Promote, get_op

__all__ = [
    "OPS",
    "IRError",
    "OpDef",
    "OpError",
    "Promote",
    "ShapeError",
    "UnknownOpError",
    "dtypes",
    "get_op",
]
