"""The single dispatch point: every graphc op runs through `dispatch`.

In order: find the device (and refuse mixed devices), promote dtypes by PyTorch's rules, run the
op's reference implementation on the arrays, wrap the results, and, when grad mode is on and an
input requires grad, attach the backward node. Keep it lean: its cost per call is what eager
users feel.
"""

from __future__ import annotations

import time

import numpy as np

from graphc import _device, _native
from graphc._tensor import _DEFAULT, Tensor
from graphc.autograd import grad_mode
from graphc.errors import DeviceError
from ir import dtypes
from ir.ops.registry import OpDef, Promote

_ndarray = np.ndarray
_NONE, _FLOAT, _INTEGRAL = Promote.NONE, Promote.FLOAT, Promote.INTEGRAL
_CATEGORY = {d.np: d.category for d in dtypes.ALL}
_EMPTY: dict = {}
observer = None  # a profiler's record(name, input_shapes, seconds), when one is running
tracer = None  # the graph capture in progress (graphc.capture.Tracer), if any
_new = object.__new__
_BINARY_FAST: dict = {}  # op -> True when its binary calls may skip promotion checks
_FAST_TYPES = {Tensor}  # tensor classes the fast path takes (nn.Parameter adds itself)
# op -> compiled implementation for CPU arrays (graphc._native), returning None where the op's
# reference implementation should run
_accelerated: dict = _native.ACCELERATED if _native.enabled() else {}


def attach(op, args, attrs, outs, name) -> None:
    """Record the backward node of an op call; replaced by `graphc.autograd.rules.attach`
    when the rules are loaded (they need all of graphc, so they load after this module)."""
    from graphc.autograd import rules  # noqa: F401  (loading the rules installs them)

    globals()["attach"](op, args, attrs, outs, name)


def _binary_fast(op: OpDef) -> bool:
    fast = _BINARY_FAST.get(op)
    if fast is None:
        fast = _BINARY_FAST[op] = (
            op.num_outputs == 1 and not op.view and op.promote in (Promote.COMMON, Promote.FLOAT)
        )
    return fast


def dispatch(op: OpDef, args: tuple, attrs: dict = _EMPTY, name: str | None = None):
    """Run `op` on `args` (tensors, Python scalars or None) with `attrs`; return tensor(s).

    `name` overrides the backward node's name (PyTorch names some nodes by overload, e.g.
    `RsubBackward1`).
    """
    if observer is not None:
        return _observed(op, args, attrs, name)
    if tracer is not None:
        return _traced(op, args, attrs, name)
    if len(args) == 2 and not attrs and _binary_fast(op):
        # fast path: a CPU float tensor with a tensor of the same dtype or a Python number,
        # where numpy's own promotion already gives PyTorch's answer
        a, b = args
        if type(a) in _FAST_TYPES and a._base is None:
            da = a._data
            if type(da) is _ndarray and da.dtype.kind == "f":
                tb = type(b)
                if tb in _FAST_TYPES and b._base is None:
                    db = b._data
                    if type(db) is _ndarray and db.dtype is da.dtype:
                        out = op.impl(np, da, db)
                        result = _new(Tensor)
                        result._data = out if type(out) is _ndarray else np.asarray(out)
                        if (a._rg or b._rg) and grad_mode.state.enabled and op.differentiable:
                            attach(op, args, attrs, (result,), name)
                        return result
                elif tb is float or tb is int:
                    out = op.impl(np, da, b)
                    result = _new(Tensor)
                    result._data = out if type(out) is _ndarray else np.asarray(out)
                    if a._rg and grad_mode.state.enabled and op.differentiable:
                        attach(op, args, attrs, (result,), name)
                    return result
    arrays = []
    on_cpu = True
    needs_grad = False
    for a in args:
        if isinstance(a, Tensor):
            if a._view_version is not None and a._vc[0] != a._view_version:
                from graphc._views import refresh

                refresh(a)  # its memory changed in place since its history was recorded
            data = a._data
            if type(data) is not _ndarray:
                on_cpu = False
            needs_grad = needs_grad or a._rg
            arrays.append(data)
        else:
            arrays.append(a)
    xp = np if on_cpu else _common_module(op, args)
    if op.promote is not _NONE:
        _promote(op, args, arrays)
    out = None
    if on_cpu and op in _accelerated:  # a compiled kernel, where it covers this case
        out = _accelerated[op](*arrays, **attrs)
    if out is None:
        out = op.impl(xp, *arrays, **attrs)

    if op.num_outputs == 1:
        if type(out) is not _ndarray and on_cpu:
            out = np.asarray(out)
        result = Tensor._wrap(out)
        if op.view:
            _alias(result, args[0])
        outs = (result,)
    else:
        outs = tuple(Tensor._wrap(np.asarray(o) if on_cpu else o) for o in out)
        result = outs
    if needs_grad and grad_mode.state.enabled and op.differentiable:
        attach(op, args, attrs, outs, name)
    return result


def _observed(op: OpDef, args: tuple, attrs: dict, name: str | None):
    global observer
    record, observer = observer, None  # ops inside this one are not counted twice
    start = time.perf_counter()
    try:
        return dispatch(op, args, attrs, name)
    finally:
        shapes = tuple(tuple(a._data.shape) for a in args if isinstance(a, Tensor))
        record(op.name, shapes, time.perf_counter() - start)
        observer = record


def _traced(op: OpDef, args: tuple, attrs: dict, name: str | None):
    """Run the op and record it, with the dtypes it computed in, in the graph being captured."""
    global tracer
    capture, tracer = tracer, None  # dispatches made while running this one are not recorded
    compiling, _native.compile_new = _native.compile_new, False  # (no eager kernel compiled for it)
    try:
        arrays = [a._data if isinstance(a, Tensor) else a for a in args]
        if op.promote is not _NONE:
            _promote(op, args, arrays)
        result = dispatch(op, args, attrs, name)
    finally:
        tracer = capture
        _native.compile_new = compiling
    capture.record(op, args, arrays, attrs, result)
    return result


def _common_module(op: OpDef, args: tuple):
    devices = {}
    for a in args:
        if isinstance(a, Tensor):
            devices.setdefault(str(a.device), a)
    if len(devices) > 1:
        names = " and ".join(devices)
        raise DeviceError(
            f"{op.name}: expected all tensors to be on the same device, but found tensors on "
            f"{names}; move them with .to(device) first"
        )
    for a in args:
        if isinstance(a, Tensor):
            return _device.array_module(a._data)
    return np


def _alias(result: Tensor, base: Tensor) -> None:
    """Make `result` share `base`'s version counter when it is a view of the same memory."""
    if np.may_share_memory(result._data, base._data) if type(base._data) is _ndarray else True:
        vc = result._vc = base._version_counter()
        result._base = base._base if base._base is not None else base
        result._view_version = vc[0]


def _promote(op: OpDef, args: tuple, arrays: list) -> None:
    """Cast the promoted inputs of `op` in `arrays` to PyTorch's result dtype, in place.

    Fast path: all tensor inputs share one dtype and no Python scalar is of a higher category;
    numpy's own (NEP 50) promotion then gives PyTorch's answer without any cast.
    """
    positions = op.promoted if op.promoted is not None else range(len(args))
    first = None
    uniform = True
    has_scalar = False
    for i in positions:
        a = args[i]
        if isinstance(a, Tensor):
            d = arrays[i].dtype
            if first is None:
                first = d
            elif d != first:
                uniform = False
        elif a is not None:
            has_scalar = True
    if uniform and first is not None:
        category = _CATEGORY[first]
        if op.promote is _FLOAT:
            fast = category == dtypes.FLOAT
        elif op.promote is _INTEGRAL:
            fast = category != dtypes.FLOAT
        else:
            fast = True
        if fast and has_scalar:
            fast = all(
                _scalar_category(args[i], category) <= category
                for i in positions
                if not isinstance(args[i], Tensor)
            )
        if fast:
            return
    target = _result_dtype(op, args, arrays, positions)
    for i in positions:
        a = args[i]
        # Python scalars stay as they are: against arrays of the target dtype numpy treats
        # them as weakly typed, which is PyTorch's rule too
        if isinstance(a, Tensor) and arrays[i].dtype != target.np:
            arrays[i] = arrays[i].astype(target.np)


def _scalar_category(value, tensor_category: int) -> int:
    if value is None or isinstance(value, bool):
        return dtypes.BOOL
    if isinstance(value, int):
        return dtypes.INT
    if isinstance(value, float):
        return dtypes.FLOAT
    raise TypeError(f"expected a Tensor or a Python number, got {type(value).__name__}")


def _result_dtype(op: OpDef, args: tuple, arrays: list, positions) -> dtypes.DType:
    dims, zero_dims, scalars = [], [], []
    for i in positions:
        a = args[i]
        if isinstance(a, Tensor):
            (dims if arrays[i].ndim else zero_dims).append(dtypes.from_numpy(arrays[i].dtype))
        elif a is None:
            continue
        elif isinstance(a, bool):
            scalars.append(dtypes.bool_)
        elif isinstance(a, int):
            scalars.append(dtypes.int64)
        elif isinstance(a, float):
            scalars.append(_DEFAULT["float"])
        else:
            raise TypeError(
                f"{op.name}(): expected Tensors or Python numbers, got {type(a).__name__} at argument {i}"
            )
    target = dtypes.result_type(dims, zero_dims, scalars)
    if target is None:
        target = _DEFAULT["float"]
    if op.promote is _FLOAT and target.category != dtypes.FLOAT:
        return _DEFAULT["float"]
    if op.promote is _INTEGRAL and target.category == dtypes.FLOAT:
        raise TypeError(f"{op.name}(): only integer and bool tensors are supported, got {target}")
    return target
