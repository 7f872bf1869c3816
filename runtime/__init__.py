"""graphc's standalone runtime: load a `.gcm` module file and run it, without the frontend.

    >>> import runtime
    >>> model = runtime.load("lenet.gcm")
    >>> model.inputs                      # [Signature(name='x', dtype='float32', shape=('batch', 1, 32, 32))]
    >>> (logits,) = model(images)         # numpy in, numpy out; any batch size

Imports `ir` (schema, verifier, reference interpreter), never `graphc`; the compiler
(`codegen`) is imported when a module loads for a compiled backend ('llvm' on the CPU, the
default; 'cuda'), so `import runtime` and `graphc-runtime info`/`env` stay light.
"""

from ir.errors import InputError, ModuleFormatError
from runtime.loader import DeviceError, LoadedModule, Signature, load

__all__ = ["DeviceError", "InputError", "LoadedModule", "ModuleFormatError", "Signature", "load"]
