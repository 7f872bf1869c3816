"""graphc's standalone runtime: load a `.gcm` module file and run it, without the frontend.

    >>> import runtime
    >>> model = runtime.load("lenet.gcm")
    >>> model.inputs                      # [Signature(name='x', dtype='float32', shape=('batch', 1, 32, 32))]
    >>> (logits,) = model(images)         # numpy in, numpy out; any batch size

Imports `ir` (schema, verifier, reference interpreter), never `graphc`. Graphs run on the
reference interpreter until compiled artifacts arrive with the compiler.
"""

from ir.errors import InputError, ModuleFormatError
from runtime.loader import DeviceError, LoadedModule, Signature, load

__all__ = ["DeviceError", "InputError", "LoadedModule", "ModuleFormatError", "Signature", "load"]
