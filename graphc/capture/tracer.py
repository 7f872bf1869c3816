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


def _version(t: Tensor) -> int:
    """The version of `t`'s memory (bumped by every in-place change, shared by its views)."""
    vc = t._vc
    return vc[0] if vc is not None else 0


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
        # id(tensor) -> (Value, tensor kept alive, the tensor's memory version when recorded)
        self._values: dict[int, tuple] = {}
        # id(view) -> (the tensor it views, view op, attrs): how a write through it reaches the source
        self._views: dict[int, tuple] = {}
        self._weight_names = weight_names
        self._parent = parent  # the tracer of the enclosing graph, for a cond branch or scan body
        # for a scan body: the enclosing graph's tensors it reads, in the order they became its
        # last inputs (None: a graph that takes no such tensors)
        self.lifted: list[Tensor] | None = None
        self._rng_key = None  # the `rng.key` input, once a random op needs it
        self._streams = 0  # random draws recorded so far (each its own stream of the key)
        self._root = parent._root if parent is not None else self  # owns the constant counter
        self._constants = 0
        self.scope: list[str] = parent.scope if parent is not None else []

    # --- values ---
    def tracks(self, t: Tensor) -> bool:
        return id(t) in self._values

    def _set(self, t: Tensor, value) -> None:
        self._values[id(t)] = (value, t, _version(t))

    def alias(self, alias: Tensor, source: Tensor) -> None:
        """Record that `alias` holds the same values as `source` (detach, .data): it shares its
        memory, so a write through either changes both."""
        self._set(alias, self.value_of(source))
        self._views[id(alias)] = (source, "alias", {})

    # --- in-place changes ---
    def write(self, target: Tensor, result: Tensor) -> None:
        """`target` was changed in place to `result`'s values (an in-place op, a fill, a copy, an
        assignment): from now on it stands for `result`'s graph value, and so, through the view
        ops that made it, do the tensors it is a view of (each the old value with the view's
        elements replaced). Other views of the same memory are stale until `value_of` makes them
        again from their sources. Every write path bumps the memory's version once before this."""
        self._assign(target, self.value_of(result), _version(target) - 1)

    def _assign(self, target: Tensor, value, before: int) -> None:
        name = self._weight_names.get(id(target))
        if name is not None:
            raise TracingError(
                f"the model changes its weight {name!r} in place (at {_user_frame()}); a captured "
                "graph keeps no state between calls. Compute the new value out of place, or make "
                "the change outside the captured function."
            )
        dtype = dtypes.from_numpy(target._data.dtype)
        if value.type.dtype is not dtype:
            value = self._node("cast", [value], {"dtype": dtype.name})
        self._set(target, value)
        link = self._views.get(id(target))
        if link is not None:
            source, op, attrs = link
            old = self._at(source, before)  # the source as it was just before this write
            self._assign(source, self._unview(old, value, source, op, attrs), before)

    def _node(self, op: str, inputs: list, attrs: dict):
        return self.graph.add_node(op, inputs, attrs, scope=self._scope())[0]

    def _unview(self, old, new, source: Tensor, op: str, attrs: dict):
        """The value of `source` (now `old`) after its view made by `op` became `new`."""
        shape = tuple(source._data.shape)
        if op == "alias":
            return new
        if op in ("reshape", "squeeze", "unsqueeze"):
            return self._node("reshape", [new], {"shape": shape})
        if op == "permute":
            return self._node("permute", [new], {"dims": tuple(int(i) for i in np.argsort(attrs["dims"]))})
        if op == "select":
            dim = attrs["dim"] % len(shape)
            widened = self._node("unsqueeze", [new], {"dim": dim})
            return self._place(old, widened, dim, attrs["index"] % shape[dim], 1, shape)
        if op == "slice":
            dim = attrs["dim"] % len(shape)
            start, _, step = slice(attrs["start"], attrs["stop"], attrs["step"]).indices(shape[dim])
            return self._place(old, new, dim, start, new.type.shape[dim], shape, step)
        raise TracingError(
            f"a tensor made by {op} is changed in place (at {_user_frame()}); the capture cannot "
            "carry that change to the tensor it views. Write the change out of place (graphc.where, "
            "graphc.cat)."
        )

    def _place(self, old, new, dim: int, start: int, length: int, shape: tuple, step: int = 1):
        """`old` (of `shape`) with positions start, start + step, ... (`length` of them) along
        `dim` set to `new`'s values: an index_put at start + step * arange(length). The sizes
        are node attributes, so one that follows a symbolic size (a derived one too: the
        length of x[:, 1:] is seq_minus_1) becomes it; an empty slice writes nothing."""
        i64 = dtypes.int64
        positions = self._node("arange", [], {"start": 0, "end": length, "step": 1, "dtype": "int64"})
        if step != 1:
            positions = self._node("mul", [positions, self._constant(step, i64)], {})
        if start:
            first = self._node("full", [], {"shape": (), "value": start, "dtype": "int64"})
            positions = self._node("add", [positions, first], {})
        indexed = (False,) * dim + (True,)
        return self._node("index_put", [old, new, positions], {"positions": indexed, "accumulate": False})

    def _at(self, t: Tensor, version: int):
        """The value of tracked `t` at memory version `version`: as recorded, or, for a view
        whose memory changed through its source or another view since, the same view of the
        source's value at that version."""
        value, _, recorded = self._values[id(t)]
        if recorded == version:
            return value
        link = self._views.get(id(t))
        if link is None:
            raise TracingError(
                f"a tensor used at {_user_frame()} was changed in place through a tensor that "
                "shares its memory in a way the capture cannot follow (a view made outside "
                "graphc's view ops, or a random fill). Write that change out of place "
                "(graphc.where, graphc.cat, masked_fill) or apply it to the tensor itself."
            )
        source, op, attrs = link
        value = self._at(source, version)
        if op != "alias":
            value = self._node(op, [value], attrs)
        self._values[id(t)] = (value, t, version)
        return value

    def add_input(self, name: str, t: Tensor) -> None:
        arr = t._data
        self._set(t, self.graph.add_input(name, TensorType(dtypes.from_numpy(arr.dtype), arr.shape)))

    def value_of(self, t: Tensor):
        if id(t) in self._values:
            return self._at(t, _version(t))
        name = self._weight_names.get(id(t))
        if name is None and self.lifted is not None and self._parent._reaches(t):
            self._parent.value_of(t)  # (checks that the enclosing graphs can provide it)
            self.add_input(f"lifted{len(self.lifted)}", t)
            self.lifted.append(t)
            return self._values[id(t)][0]
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
        self._set(t, value)
        return value

    def _fresh_constant(self) -> str:
        root = self._root
        name = f"const{root._constants}"
        root._constants += 1
        return name

    def _constant(self, value, dtype: dtypes.DType):
        return self.graph.add_weight(self._fresh_constant(), np.asarray(value, dtype=dtype.np))

    def _reaches(self, t: Tensor) -> bool:
        """Whether this tracer or one enclosing it records `t`."""
        tracer = self
        while tracer is not None:
            if tracer.tracks(t):
                return True
            tracer = tracer._parent
        return False

    # --- structured control flow ---
    def scan(self, combine_fn, init: list, xs: list, args, reverse: bool) -> tuple[list, list, object]:
        """Record `graphc.scan` along dim 0 of `xs`: `combine_fn` traced once, on the first
        step, as the body of one `scan` node (tensors of this graph it reads become its last
        inputs); the example's own loop gives the values the trace goes on with. Returns
        what `graphc.capture.control.scan_eagerly` does."""
        from graphc.autograd.grad_mode import no_grad
        from graphc.capture.control import _leaves, returned, scan_eagerly

        if xs[0].shape[0] == 0:
            raise TracingError(
                f"graphc.scan over 0 steps (at {_user_frame()}): capture it with an example of at "
                "least one step (the graph then runs any number, 0 too)"
            )
        sub = Tracer("body", self._weight_names, parent=self)
        sub.lifted = []
        carries = [Tensor._wrap(c._data) for c in init]
        first = [Tensor._wrap(x._data[-1 if reverse else 0]) for x in xs]
        for i, c in enumerate(carries):
            sub.add_input(f"carry{i}", c)
        for i, x in enumerate(first):
            sub.add_input(f"x{i}", x)
        _dispatch.tracer = sub
        try:
            with no_grad():
                new, y = returned(combine_fn(*args(carries, first)))
            new_carries, _ = _leaves("graphc.scan: the carry combine_fn returns", new)
            ys, _ = _leaves("graphc.scan: the output combine_fn returns", y, empty=True)
            given = [(c.dtype, tuple(c.shape)) for c in init]
            if [(c.dtype, tuple(c.shape)) for c in new_carries] != given:
                raise TracingError(
                    f"graphc.scan: combine_fn must return a carry like init: init is {given}, the "
                    f"carry returned {[(c.dtype, tuple(c.shape)) for c in new_carries]} (at {_user_frame()})"
                )
            sub.set_outputs([*new_carries, *ys])
        finally:
            _dispatch.tracer = self
        inputs = [self.value_of(t) for t in (*init, *xs, *sub.lifted)]
        attrs = {"body": sub.graph, "carries": len(init), "sequences": len(xs), "reverse": reverse}
        values = self.graph.add_node("scan", inputs, attrs, scope=self._scope())
        _dispatch.tracer = None  # the example's values, from the eager loop (not recorded)
        try:
            with no_grad():
                final, stacked, packing = scan_eagerly(combine_fn, init, xs, args, reverse)
        finally:
            _dispatch.tracer = self
        for value, t in zip(values, [*final, *stacked], strict=True):
            self._set(t, value)
        return final, stacked, packing

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
            self._set(t, value)
        return taken[0] if single[0] else tuple(taken)

    # --- recording ---
    # --- random numbers ---
    def _random(self, name: str, args: tuple, attrs: dict, result: Tensor) -> None:
        """Record a draw of `uniform`, `normal` or `bernoulli` as the counter-based generator
        (ir.ops.creation.counter_uniform) written out in graph ops, keyed by the graph's
        `rng.key` input (a fresh key per call: ScriptModule and the runtime supply it) and a
        stream number per draw, so each call and each draw gets its own numbers."""
        from ir.ops.creation import RNG_KEY, GraphArrays, counter_bits, counter_normal, counter_uniform

        if self._parent is not None:
            raise TracingError(
                f"{name}: random numbers inside a graphc.scan body or graphc.cond branch cannot be "
                f"captured yet (at {_user_frame()}); draw them outside and pass them in"
            )
        if self._rng_key is None:
            self._rng_key = self.graph.add_input(RNG_KEY, TensorType(dtypes.int64, ()))
        i64 = dtypes.int64
        ops = GraphArrays(self._node, lambda array: self.graph.add_weight(self._fresh_constant(), array))
        key = counter_bits(ops, self._constant(self._streams, i64), self._rng_key)  # this draw's stream
        self._streams += 1
        shape = tuple(result._data.shape)
        dtype = result._data.dtype
        index = self._positions(shape)
        number = np.dtype(dtype).type
        if name == "bernoulli":
            u = counter_uniform(ops, index, key, np.float64 if dtype == np.float64 else np.float32)
            value = ops.asarray(self._node("lt", [u, self.value_of(args[0])], {}), dtype)
        elif name == "uniform":
            u = counter_uniform(ops, index, key, dtype)
            value = ops.add(ops.multiply(u, number(attrs["high"] - attrs["low"])), number(attrs["low"]))
        else:
            z = counter_normal(ops, index, key, dtype)
            value = ops.add(ops.multiply(z, number(attrs["std"])), number(attrs["mean"]))
        self._set(result, value)

    def _positions(self, shape: tuple):
        """Each element's position in a C-order tensor of `shape` (int64), from an arange per
        dim and strides that are products of the sizes (constants a symbolic size replaces)."""
        i64 = dtypes.int64
        if not shape:
            return self._constant(0, i64)
        total, stride = None, None
        for d in range(len(shape) - 1, -1, -1):
            along = self._node("arange", [], {"start": 0, "end": shape[d], "step": 1, "dtype": "int64"})
            placed = [1] * len(shape)
            placed[d] = shape[d]
            along = self._node("reshape", [along], {"shape": tuple(placed)})
            term = along if stride is None else self._node("mul", [along, stride], {})
            total = term if total is None else self._node("add", [total, term], {})
            size = self._constant(shape[d], i64)
            stride = size if stride is None else self._node("mul", [stride, size], {})
        return total

    def record(self, op, args: tuple, arrays: list, attrs: dict, result) -> None:
        """Append one op call (with the arrays it computed on, after promotion)."""
        if op.name in ("uniform", "normal", "bernoulli"):
            return self._random(op.name, args, attrs, result)
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
            self._set(out, value)
        if op.view and len(outs) == 1 and outs[0]._base is not None and isinstance(args[0], Tensor):
            self._views[id(outs[0])] = (args[0], op.name, attrs)

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

    def data_dependent(self, what: str, instead: str):
        """Refuse an operation whose result's shape depends on tensor values."""
        raise TracingError(
            f"{what} at {_user_frame()}: its result's shape depends on the values of a traced "
            f"tensor, which a graph cannot express; {instead}"
        )

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


def record(
    fn, inputs: dict[str, Tensor], weight_names: dict[int, str], name: str, model=None
) -> tuple[Graph, object]:
    """Run `fn(*inputs)` once under a tracer: the concrete graph it recorded (its outputs the
    tensors returned, flattened) and the structure they were returned in (`flatten_outputs`)."""
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
    leaves, structure = flatten_outputs(out)
    tracer.set_outputs(leaves)
    return tracer.graph, structure


def flatten_outputs(out) -> tuple[list, object]:
    """The tensors a function returned (a tensor, or tuples and lists of them, nested), in
    order, and the structure to rebuild it with (`unflatten_outputs`): "T" for a tensor, else
    ["tuple" or "list", [the items' structures]] (JSON, for module files)."""
    leaves: list = []

    def walk(x):
        if isinstance(x, Tensor):
            leaves.append(x)
            return "T"
        if isinstance(x, (tuple, list)):
            return ["tuple" if isinstance(x, tuple) else "list", [walk(v) for v in x]]
        raise TracingError(
            f"the captured function must return tensors, or tuples and lists of them, got {type(x).__name__}"
        )

    return leaves, walk(out)


def unflatten_outputs(structure, leaves: list):
    """The outputs `leaves` in the nesting `structure` (from `flatten_outputs`)."""
    items = iter(leaves)

    def build(s):
        if s == "T":
            return next(items)
        kind, children = s
        built = [build(c) for c in children]
        return tuple(built) if kind == "tuple" else built

    return build(structure)


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
