"""Recording eager ops into a graph at the dispatch point.

A `Tracer` is installed as `graphc._dispatch.tracer` while a function runs on example inputs:
every op that runs is appended to a concrete graph (inputs with their example shapes, casts made
explicit, Python scalars as constants, parameters and buffers as named weights, other outside
tensors as constants). `capture` runs this twice, with the symbolic dims one larger the second
time; attributes that follow the symbolic sizes become symbols, and if the two recordings differ
in any other way the function took a shape-dependent path, which is reported.
"""

from __future__ import annotations

import inspect
import os
import sys

import numpy as np

from graphc import _dispatch
from graphc._tensor import Tensor
from graphc.errors import GraphcError
from ir import dtypes
from ir.errors import IRError
from ir.graph import Graph
from ir.types import TensorType


class TracingError(GraphcError, RuntimeError):
    """A function cannot be captured as written; says where and what to do instead."""


def _user_frame() -> str:
    """file:line of the innermost frame outside graphc (the user's code)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame = sys._getframe(1)
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not path.startswith(here):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


class Tracer:
    """Builds one concrete graph from the ops that run while it is installed."""

    def __init__(self, name: str, weight_names: dict[int, str], parent: Tracer | None = None) -> None:
        self.graph = Graph(name)
        self._values: dict[int, tuple] = {}  # id(tensor) -> (Value, tensor kept alive)
        self._weight_names = weight_names
        self._parent = parent  # the tracer of the enclosing graph, for a cond branch
        self._root = parent._root if parent is not None else self  # owns the constant counter
        self._constants = 0
        self.scope: list[str] = parent.scope if parent is not None else []

    # --- values ---
    def tracks(self, t: Tensor) -> bool:
        return id(t) in self._values

    def alias(self, alias: Tensor, source: Tensor) -> None:
        """Record that `alias` holds the same values as `source` (detach, .data)."""
        self._values[id(alias)] = (self._values[id(source)][0], alias)

    def add_input(self, name: str, t: Tensor) -> None:
        arr = t._data
        value = self.graph.add_input(name, TensorType(dtypes.from_numpy(arr.dtype), arr.shape))
        self._values[id(t)] = (value, t)

    def value_of(self, t: Tensor):
        known = self._values.get(id(t))
        if known is not None:
            return known[0]
        name = self._weight_names.get(id(t))
        if name is None:
            outer = self._parent
            while outer is not None:
                if outer.tracks(t):
                    raise TracingError(
                        f"a graphc.cond branch uses a tensor computed outside it (at {_user_frame()}); "
                        "pass it to the branch in `operands`"
                    )
                outer = outer._parent
            name = self._fresh_constant()
        data = np.array(t.detach().numpy(force=True), copy=True)
        value = self.graph.add_weight(name, data)
        self._values[id(t)] = (value, t)
        return value

    def _fresh_constant(self) -> str:
        root = self._root
        name = f"const{root._constants}"
        root._constants += 1
        return name

    def _constant(self, value, dtype: dtypes.DType):
        return self.graph.add_weight(self._fresh_constant(), np.asarray(value, dtype=dtype.np))

    # --- structured control flow ---
    def cond(self, pred: Tensor, true_fn, false_fn, operands: tuple):
        """Record `graphc.cond`: both branches become subgraphs of one `cond` node; the branch
        that `pred` selects for the example inputs provides the values the trace goes on with."""
        from graphc.autograd.grad_mode import no_grad

        if pred.dtype is not dtypes.bool_ or pred.numel() != 1:
            raise TracingError(
                f"graphc.cond: the predicate must be a one-element bool tensor, got {pred.dtype} of "
                f"shape {list(pred.shape)} (at {_user_frame()}); compare it, e.g. x.sum() > 0"
            )
        graphs, results, single = [], [], []
        for label, fn in (("then_branch", true_fn), ("else_branch", false_fn)):
            sub = Tracer(label, self._weight_names, parent=self)
            proxies = [Tensor._wrap(o._data) for o in operands]
            for i, p in enumerate(proxies):
                sub.add_input(f"x{i}", p)
            _dispatch.tracer = sub
            try:
                with no_grad():
                    out = fn(*proxies)
            finally:
                _dispatch.tracer = self
            outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
            sub.set_outputs(outs)
            graphs.append(sub.graph)
            results.append(outs)
            single.append(not isinstance(out, (tuple, list)))
        then_types = [v.type for v in graphs[0].outputs]
        else_types = [v.type for v in graphs[1].outputs]
        if then_types != else_types or single[0] != single[1]:
            raise TracingError(
                f"graphc.cond: the branches must return the same number of tensors with equal dtypes "
                f"and shapes; true_fn returns {then_types}, false_fn {else_types} (at {_user_frame()})"
            )
        inputs = [self.value_of(pred)] + [self.value_of(o) for o in operands]
        values = self.graph.add_node(
            "cond", inputs, {"then_branch": graphs[0], "else_branch": graphs[1]}, scope=self._scope()
        )
        taken = results[0] if bool(pred._data.reshape(())) else results[1]
        for value, t in zip(values, taken, strict=True):
            self._values[id(t)] = (value, t)
        return taken[0] if single[0] else tuple(taken)

    # --- recording ---
    def record(self, op, args: tuple, arrays: list, attrs: dict, result) -> None:
        """Append one op call (with the arrays it computed on, after promotion)."""
        # a Python scalar takes the dtype of the tensors it was promoted with (where's condition
        # is not one of them), else that of the result
        positions = op.promoted if op.promoted is not None else range(len(arrays))
        compute = next((arrays[i].dtype for i in positions if hasattr(arrays[i], "dtype")), None)
        if compute is None and op.promote.value != "none":
            first = result[0] if isinstance(result, tuple) else result
            compute = first._data.dtype
        if compute is None:
            compute = next((a.dtype for a in arrays if hasattr(a, "dtype")), None)
        inputs = []
        for a, arr in zip(args, arrays, strict=True):
            if isinstance(a, Tensor):
                value = self.value_of(a)
                if arr.dtype != a._data.dtype:
                    (value,) = self.graph.add_node(
                        "cast", [value], {"dtype": dtypes.from_numpy(arr.dtype).name}, scope=self._scope()
                    )
                inputs.append(value)
            elif a is None:
                inputs.append(None)
            elif isinstance(a, (bool, int, float)):
                dtype = (
                    dtypes.from_numpy(compute)
                    if compute is not None
                    else (dtypes.int64 if isinstance(a, int) else dtypes.float32)
                )
                inputs.append(self._constant(a, dtype))
            else:
                raise TracingError(
                    f"{op.name}: cannot record an argument of type {type(a).__name__} (at {_user_frame()})"
                )
        outs = result if isinstance(result, tuple) else (result,)
        try:
            values = self.graph.add_node(op.name, inputs, attrs, scope=self._scope())
        except IRError as e:
            raise TracingError(f"{op.name} cannot be captured yet: {e} (at {_user_frame()})") from None
        for value, out in zip(values, outs, strict=True):
            if value.type.shape != tuple(out._data.shape):
                raise TracingError(
                    f"internal: {op.name} inferred {value.type} but produced "
                    f"{list(out._data.shape)} (at {_user_frame()})"
                )
            self._values[id(out)] = (value, out)

    def _scope(self) -> str:
        return "/".join(self.scope)

    def set_outputs(self, outputs) -> None:
        values = []
        for t in outputs:
            if not isinstance(t, Tensor):
                raise TracingError(
                    f"the captured function must return tensors (or a tuple of them), got {type(t).__name__}"
                )
            values.append(self.value_of(t))
        self.graph.set_outputs(values)
        # Name what the model returns, for signatures: 'output' (or output0, output1, ...).
        names = ["output"] if len(values) == 1 else [f"output{i}" for i in range(len(values))]
        renamed = set()
        for value, name in zip(values, names, strict=True):
            if value.producer is not None and id(value) not in renamed and not self.graph.defines(name):
                self.graph.rename(value, name)
                renamed.add(id(value))

    def concretization_error(self, what: str):
        raise TracingError(
            f"{what} of a traced tensor at {_user_frame()}: while capturing, tensor values are "
            "not known (they differ for every input), so Python cannot branch on them or "
            "convert them. Use graphc.where for data-dependent choices, graphc.cond(pred, "
            "true_fn, false_fn, operands) for data-dependent branches, or compute the value "
            "outside the captured function and pass it in as a static argument."
        )


def _module_scopes(model, tracer: Tracer) -> list:
    """Hooks that keep `tracer.scope` at the path of the module running now."""
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue
        part = name.rsplit(".", 1)[-1]

        def enter(mod, args, part=part):
            tracer.scope.append(part)

        def leave(mod, args, out):
            tracer.scope.pop()

        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    return handles


def record(fn, inputs: dict[str, Tensor], weight_names: dict[int, str], name: str, model=None) -> Graph:
    """Run `fn(*inputs)` once under a tracer; the concrete graph it recorded."""
    if _dispatch.tracer is not None:
        raise TracingError("graphc.script cannot be called while another capture is running")
    tracer = Tracer(name, weight_names)
    for arg_name, t in inputs.items():
        tracer.add_input(arg_name, t)
    handles = _module_scopes(model, tracer) if model is not None else []
    _dispatch.tracer = tracer
    try:
        from graphc.autograd.grad_mode import no_grad

        with no_grad():
            out = fn(*inputs.values())
    finally:
        _dispatch.tracer = None
        for h in handles:
            h.remove()
    tracer.set_outputs(out if isinstance(out, (tuple, list)) else (out,))
    return tracer.graph


def input_names(fn, count: int) -> list[str]:
    """Names of a function's first `count` positional parameters (x, input, ...)."""
    try:
        params = [
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    names = params[:count]
    return names + [f"input{i}" for i in range(len(names), count)]
