"""The `Tensor` class: an array on a device plus the state autograd needs.

A tensor wraps a numpy (CPU) or cupy (CUDA) array. Views share the array's memory and a version
counter with their base, so in-place changes are seen through every view and autograd can tell
when a tensor it saved was modified. The math methods (`add`, `sin`, `__mul__`, ...) are
installed from `graphc._functions`, which routes every op through the dispatch point.
"""

from __future__ import annotations

import numpy as np

from graphc import _device
from graphc.autograd import grad_mode
from graphc.autograd.engine import AccumulateGrad
from graphc.errors import AutogradError
from ir import dtypes


class Size(tuple):
    """A tensor's shape: a tuple of ints that prints as `graphc.Size([2, 3])`."""

    def __repr__(self) -> str:
        return f"graphc.Size({list(self)})"

    __str__ = __repr__

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n

    def __getitem__(self, key):
        out = tuple.__getitem__(self, key)
        return Size(out) if isinstance(key, slice) else out


_DEFAULT = {"float": dtypes.float32}


def get_default_dtype() -> dtypes.DType:
    """The dtype of floating tensors made from Python floats and by `rand`, `zeros`, ...."""
    return _DEFAULT["float"]


def set_default_dtype(dtype: dtypes.DType) -> None:
    """Set the default floating dtype (float32, float64, float16 or bfloat16)."""
    if not isinstance(dtype, dtypes.DType) or not dtype.is_floating_point:
        raise TypeError(f"set_default_dtype() expects a floating dtype, got {dtype!r}")
    _DEFAULT["float"] = dtype


class Tensor:
    """A multi-dimensional array with autograd, on the CPU (numpy) or a CUDA GPU (cupy).

        >>> x = graphc.ones(2, 2, requires_grad=True)
        >>> (x * 3).sum().backward()
        >>> x.grad
        tensor([[3., 3.],
                [3., 3.]])

    `graphc.Tensor(5, 3)` makes an uninitialised float tensor of that size, as in PyTorch;
    `graphc.Tensor([1, 2])` a float tensor from data. Prefer `graphc.tensor(data)`.
    """

    # Instance state lives in __dict__; these class attributes are the defaults, so creating a
    # tensor sets only `_data` (this keeps the dispatch point fast).
    _rg = False  # requires_grad
    grad = None
    grad_fn = None
    _output_nr = 0
    _vc = None  # version counter [int], shared with views; made on first need
    _base = None  # the tensor whose memory this view shares
    _view_version = None  # the shared version when this view's history was last recorded
    _retains_grad = False
    _acc = None  # this leaf's AccumulateGrad node, made on first need
    _hooks = None  # hooks of a leaf, run before its gradient is accumulated
    __array_priority__ = 1000  # numpy defers `ndarray op tensor` to the tensor

    def __init__(self, *args, dtype=None, device=None) -> None:
        dtype = get_default_dtype() if dtype is None else dtype
        if len(args) == 1 and not isinstance(args[0], int):
            if isinstance(args[0], Tensor):
                arr = args[0]._data.astype(dtype.np)
            else:
                from graphc._creation import _array_from_data

                arr = _array_from_data(args[0], dtype)
        else:
            shape = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
            arr = np.empty(tuple(shape), dtype.np)
        self._data = _device.to_device(arr, _device.resolve(device))

    @classmethod
    def _wrap(cls, arr) -> Tensor:
        t = object.__new__(Tensor)
        t._data = arr
        return t

    # --- basic properties ---
    @property
    def data(self) -> Tensor:
        """This tensor's values without history (shares memory; changes are not tracked)."""
        out = Tensor._wrap(self._data)
        out._vc = self._version_counter()
        _same_value(out, self)
        return out

    @data.setter
    def data(self, value: Tensor) -> None:
        self._data = value._data

    @property
    def shape(self) -> Size:
        return Size(self._data.shape)

    def size(self, dim: int | None = None):
        """The shape, or the size of one dim."""
        if dim is None:
            return Size(self._data.shape)
        return self._data.shape[_wrap_dim(dim, self._data.ndim)]

    def dim(self) -> int:
        return self._data.ndim

    ndim = property(dim)

    def numel(self) -> int:
        return int(self._data.size)

    nelement = numel

    def element_size(self) -> int:
        return self._data.itemsize

    @property
    def dtype(self) -> dtypes.DType:
        return dtypes.from_numpy(self._data.dtype)

    @property
    def device(self) -> _device.device:
        return _device.device_of(self._data)

    @property
    def is_cuda(self) -> bool:
        return type(self._data) is not np.ndarray

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    @property
    def T(self) -> Tensor:
        return self.permute(*reversed(range(self.dim())))

    @property
    def mT(self) -> Tensor:
        return self.transpose(-2, -1)

    @property
    def output_nr(self) -> int:
        return self._output_nr

    @property
    def _version(self) -> int:
        return self._version_counter()[0]

    def _version_counter(self) -> list:
        vc = self._vc
        if vc is None:
            vc = self._vc = [0]
        return vc

    def _bump_version(self) -> None:
        self._version_counter()[0] += 1

    # --- autograd state ---
    @property
    def requires_grad(self) -> bool:
        return self._rg

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if self.grad_fn is not None:
            raise AutogradError(
                "you can only change requires_grad flags of leaf variables; to use a computed "
                "tensor without gradients, take var.detach()"
            )
        if value and not self.dtype.is_floating_point:
            raise AutogradError(
                f"only tensors of floating point dtype can require gradients; got {self.dtype}"
            )
        self._rg = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set `requires_grad` in place and return this tensor."""
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        """Keep `.grad` for this non-leaf tensor after backward."""
        if not self._rg:
            raise AutogradError("can't retain_grad on a tensor that has requires_grad=False")
        if self.grad_fn is None:
            return
        self._retains_grad = True
        self.grad_fn._retain(self._output_nr, self)

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad

    def register_hook(self, hook):
        """Call `hook(grad)` when this tensor's gradient is computed; a non-None return value
        replaces the gradient. Returns a handle with `.remove()`."""
        if not self._rg:
            raise AutogradError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            return self.grad_fn._add_hook(self._output_nr, hook)
        from graphc.autograd.engine import HookHandle

        if self._hooks is None:
            self._hooks = []
        return HookHandle(self._hooks, hook)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None) -> None:
        """Compute the gradient of this tensor with respect to the graph leaves and accumulate
        it into their `.grad`. `gradient` is required unless this tensor has one element."""
        from graphc.autograd import backward

        backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    def detach(self) -> Tensor:
        """A tensor sharing this one's memory (and version counter) with no history."""
        out = Tensor._wrap(self._data)
        out._vc = self._version_counter()
        _same_value(out, self)
        return out

    def detach_(self) -> Tensor:
        """Detach this tensor from its history in place (it becomes a leaf)."""
        if self._base is not None and self._base._rg and grad_mode.is_grad_enabled():
            raise AutogradError("can't detach_() a view of a tensor that requires grad; use detach() instead")
        self._view_version = None
        self.grad_fn = None
        self._output_nr = 0
        self._rg = False
        return self

    def _accumulate_node(self):
        node = self._acc
        if node is None:
            node = self._acc = AccumulateGrad(self)
        return node

    # --- conversion ---
    def numpy(self, *, force: bool = False) -> np.ndarray:
        """The numpy array behind this CPU tensor (memory is shared both ways)."""
        _no_concrete_values(self, "numpy()")
        if self._rg and not force:
            raise AutogradError(
                "can't call numpy() on a tensor that requires grad; use tensor.detach().numpy()"
            )
        if type(self._data) is not np.ndarray:
            if not force:
                raise TypeError(
                    f"can't convert a {self.device} tensor to numpy; copy it to the CPU first "
                    "with tensor.cpu()"
                )
            return self._data.get()
        return self._data

    def __array__(self, dtype=None, copy=None):
        _no_concrete_values(self, "conversion to a numpy array")
        arr = self._data if type(self._data) is np.ndarray else self._data.get()
        return arr if dtype is None else arr.astype(dtype)

    def item(self):
        """The value of a one-element tensor as a Python number."""
        _no_concrete_values(self, "item()")
        if self._data.size != 1:
            raise ValueError(
                f"a Tensor with {self._data.size} elements cannot be converted to a Python scalar"
            )
        return self._data.reshape(()).item()

    def tolist(self):
        """The values as nested Python lists (a number for a 0-d tensor)."""
        _no_concrete_values(self, "tolist()")
        return self._data.tolist()

    def __int__(self) -> int:
        return int(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __bool__(self) -> bool:
        _no_concrete_values(self, "bool()")
        if self._data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self._data.size} elements is ambiguous")
        return bool(self.item())

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        from graphc._printing import tensor_repr

        return tensor_repr(self)

    def __format__(self, spec: str) -> str:
        if self._data.ndim == 0:
            return self.item().__format__(spec)
        return object.__format__(self, spec)

    def __reduce_ex__(self, protocol):
        arr = self._data if type(self._data) is np.ndarray else self._data.get()
        return (_rebuild, (arr, self._rg))

    def __deepcopy__(self, memo):
        if self.grad_fn is not None:
            raise AutogradError("only leaf tensors (created explicitly by the user) support deepcopy")
        out = Tensor._wrap(self._data.copy())
        out._rg = self._rg
        if self.grad is not None:
            out.grad = self.grad.__deepcopy__(memo)
        memo[id(self)] = out
        return out


def _rebuild(arr, requires_grad):
    t = Tensor._wrap(arr)
    t._rg = requires_grad
    return t


def _wrap_dim(dim: int, ndim: int) -> int:
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})"
        )
    return dim % n


def reset_grads(tensors, set_to_none: bool = True) -> None:
    """Clear the `.grad` of each tensor: drop it (set_to_none) or zero it in place."""
    for t in tensors:
        if t.grad is None:
            continue
        if set_to_none:
            t.grad = None
        else:
            t.grad = t.grad.detach()
            t.grad.zero_()


def _no_concrete_values(t: Tensor, what: str) -> None:
    """Inside a graph capture a tensor's values are not known; taking them would bake one
    example's data into the graph."""
    from graphc import _dispatch

    capture = _dispatch.tracer
    if capture is not None and capture.tracks(t):
        capture.concretization_error(what)


def _same_value(alias: Tensor, source: Tensor) -> None:
    """A capture sees `alias` (a detached copy) as the same graph value as `source`."""
    from graphc import _dispatch

    capture = _dispatch.tracer
    if capture is not None and capture.tracks(source):
        capture.alias(alias, source)
