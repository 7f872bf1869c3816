"""Errors raised by the graph IR and the op definitions."""


class IRError(Exception):
    """Base class of every error the `ir` package raises."""


class ShapeError(IRError, ValueError, RuntimeError):
    """Shapes that do not fit an op: names the op and every shape involved. A RuntimeError too,
    which PyTorch raises for these (code written for it catches `RuntimeError`)."""


class OpError(IRError, TypeError):
    """An op asked for with inputs or attributes it does not accept."""


class UnknownOpError(IRError, KeyError):
    """A name that is not in the op registry."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


class VerifyError(IRError):
    """A graph that breaks an invariant: names the node and what is wrong."""


class InputError(IRError, ValueError):
    """Inputs that do not fit a graph's signature: names the input, expected and given."""


class ModuleFormatError(IRError, ValueError):
    """A .gcm file that is not valid: names the file, the field and the offset at fault."""
