"""graphc: PyTorch's eager API with a compiler behind it.

>>> import graphc as torch
>>> x = torch.ones(2, 2, requires_grad=True)
>>> y = (x + 2).pow(2).mean()
>>> y.backward()
"""

from __future__ import annotations

import builtins as _builtins

from graphc import (  # noqa: E402
    _allocator,  # noqa: F401  (fixes the C allocator's thresholds for eager work)
    _methods,
    autograd,
    backends,
    cuda,
    jit,
    linalg,
    nn,
    optim,
    utils,
    version,
)
from graphc._compose import *  # noqa: F403
from graphc._creation import (
    BoolTensor,
    ByteTensor,
    CharTensor,
    DoubleTensor,
    FloatTensor,
    Generator,
    HalfTensor,
    IntTensor,
    LongTensor,
    ShortTensor,
    arange,
    as_tensor,
    bernoulli,
    default_generator,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    get_rng_state,
    initial_seed,
    linspace,
    logspace,
    manual_seed,
    normal,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randint_like,
    randn,
    randn_like,
    randperm,
    seed,
    set_rng_state,
    tensor,
    zeros,
    zeros_like,
)
from graphc._device import device
from graphc._functions import *  # noqa: F403
from graphc._functions import (  # explicit names shadowing builtins
    abs,
    all,
    any,
    max,
    min,
    pow,
    return_types,
    round,
    sum,
)
from graphc._info import finfo, iinfo
from graphc._movement import *  # noqa: F403
from graphc._movement import slice_dim
from graphc._printing import set_printoptions
from graphc._tensor import Size, Tensor, get_default_dtype, set_default_dtype
from graphc.autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from graphc.capture import ScriptModule, TracingError, compile, cond, scan, script, trace
from graphc.errors import AutogradError, DeviceError, GraphcError, ShapeError
from graphc.nn.functional import log_softmax, softmax
from graphc.serialization import load, save
from ir import dtypes as _dtypes
from ir.dtypes import (
    DType as dtype,
)
from ir.dtypes import (
    bool_ as bool,
)
from ir.dtypes import (
    float16,
    float32,
    float64,
    int8,
    int16,
    int32,
    int64,
    uint8,
)

_methods.install()

half, float, double = float16, float32, float64
short, int, long = int16, int32, int64
bfloat16 = _dtypes.bfloat16
if bfloat16 is None:
    del bfloat16


def is_tensor(obj) -> _builtins.bool:
    """Whether `obj` is a graphc Tensor."""
    return isinstance(obj, Tensor)


def numel(input: Tensor) -> _builtins.int:
    return input.numel()


def is_floating_point(input: Tensor) -> _builtins.bool:
    return input.dtype.is_floating_point


def promote_types(type1, type2):
    """The dtype both convert to (PyTorch's promotion table)."""
    return _dtypes.promote_types(type1, type2)


def result_type(tensor1, tensor2):
    """The dtype an op on these two operands (tensors or numbers) computes in."""
    from graphc._dispatch import _result_dtype
    from ir.ops import OPS

    return _result_dtype(
        OPS["add"], (tensor1, tensor2), [getattr(t, "_data", t) for t in (tensor1, tensor2)], range(2)
    )


def can_cast(from_, to) -> _builtins.bool:
    """Whether PyTorch's casting rules allow `from_` to become `to` in an in-place op."""
    return from_.category <= to.category


__version__ = "0.1.0"


def __getattr__(name: str):
    """`graphc.vision` (torchvision's role: datasets, transforms, image grids, on Pillow),
    `graphc.distributed`, `graphc.distributions`, `graphc.special` and `graphc.testing` are
    imported on first use: `import graphc` needs neither Pillow nor their import time."""
    if name in ("vision", "distributed", "distributions", "special", "testing"):
        import importlib

        return importlib.import_module(f"graphc.{name}")
    raise AttributeError(f"module 'graphc' has no attribute {name!r}")
