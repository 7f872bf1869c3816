"""The autograd engine: backward nodes and the loop that runs them.

A `Node` is made by the dispatch point for every differentiable op whose inputs require grad. It
holds what its gradient rule needs (saved inputs, saved outputs, attributes, the shapes and
dtypes of its inputs) and `next_functions`, the edges to the nodes of its inputs. Backward is a
topological walk from the root: each node runs its rule once all its consumers have delivered
their gradients, and the engine only orders and accumulates.
"""

from __future__ import annotations

import weakref

from graphc.autograd import grad_mode
from graphc.errors import AutogradError
from ir import dtypes


class HookHandle:
    """Returned by `register_hook`; `remove()` unregisters the hook."""

    def __init__(self, hooks: list, hook) -> None:
        self._hooks, self._hook = hooks, hook
        hooks.append(hook)

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


_FREED = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward."
)


class Node:
    """A backward function: applies one op's gradient rule (`AddBackward0`, `MulBackward0`, ...)."""

    __slots__ = (
        "next_functions",
        "_name",
        "_rule",
        "attrs",
        "_inputs",
        "_versions",
        "_outputs",
        "_out_meta",
        "_in_meta",
        "_hooks",
        "_retained",
        "_freed",
        "_out_vc",
        "__weakref__",
    )

    def __init__(self, name, rule, attrs, next_functions, in_meta, out_meta) -> None:
        self._name = name
        self._rule = rule
        self.attrs = attrs
        self.next_functions = next_functions
        self._in_meta = in_meta
        self._out_meta = out_meta
        self._inputs = self._versions = self._outputs = self._out_vc = None
        self._hooks = self._retained = None
        self._freed = False

    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"<{self._name} object at {hex(id(self))}>"

    @property
    def metadata(self) -> dict:
        return {}

    # --- saved values, checked against in-place changes ---
    def _save_inputs(self, inputs) -> None:
        self._inputs = inputs
        self._versions = tuple(
            t._version_counter()[0] if hasattr(t, "_version_counter") else None for t in inputs
        )

    def _save_outputs(self, outputs) -> None:
        self._outputs = tuple(t._data for t in outputs)
        self._out_vc = tuple((t._version_counter(), t._version_counter()[0]) for t in outputs)

    def input(self, i: int):
        """Input `i` of the op as it was when the op ran (an error if it changed since)."""
        if self._freed:
            raise AutogradError(_FREED)
        t, v = self._inputs[i], self._versions[i]
        if v is not None and t._version_counter()[0] != v:
            raise _modified_error(t, i, self._name, t._version_counter()[0], v)
        return t

    @property
    def inputs(self) -> tuple:
        """All inputs of the op, each checked as by `input`."""
        if self._freed:
            raise AutogradError(_FREED)
        return tuple(self.input(i) for i in range(len(self._inputs)))

    def output(self, i: int = 0):
        """Output `i` of the op, connected to this node (so gradients of gradients work)."""
        from graphc._tensor import Tensor

        if self._freed:
            raise AutogradError(_FREED)
        vc, v = self._out_vc[i]
        if vc[0] != v:
            raise _modified_error(None, i, self._name, vc[0], v, output=True)
        out = Tensor._wrap(self._outputs[i])
        if grad_mode.state.enabled and out._data.dtype.kind == "f":
            out._rg = True
            out.grad_fn = self
            out._output_nr = i
        return out

    @property
    def needs_input_grad(self) -> tuple:
        return tuple(fn is not None for fn, _ in self.next_functions)

    def input_shape(self, i: int):
        return self._in_meta[i][0]

    def input_dtype(self, i: int):
        return dtypes.from_numpy(self._in_meta[i][1])

    def release(self) -> None:
        self._inputs = self._outputs = None
        self._freed = True

    # --- hooks and retained gradients of non-leaf outputs ---
    def _add_hook(self, output_nr: int, hook) -> HookHandle:
        if self._hooks is None:
            self._hooks = {}
        return HookHandle(self._hooks.setdefault(output_nr, []), hook)

    def _retain(self, output_nr: int, tensor) -> None:
        if self._retained is None:
            self._retained = {}
        self._retained[output_nr] = weakref.ref(tensor)

    def _pre_apply(self, grads: list) -> None:
        if self._hooks:
            for nr, hooks in self._hooks.items():
                for hook in hooks:
                    if grads[nr] is not None:
                        new = hook(grads[nr])
                        if new is not None:
                            grads[nr] = new
        if self._retained:
            for nr, ref in self._retained.items():
                t = ref()
                if t is not None and grads[nr] is not None:
                    g = grads[nr] if grad_mode.state.enabled else grads[nr].detach()
                    t.grad = g if t.grad is None else t.grad + g

    def apply(self, grads: list) -> tuple:
        """Gradients for each input (None where an input needs none), given output gradients."""
        import graphc as F

        if all(g is None for g in grads):
            return (None,) * len(self.next_functions)
        ref = next(g for g in grads if g is not None)
        for i, g in enumerate(grads):
            if g is None:
                shape, dtype = self._out_meta[i]
                grads[i] = F.zeros(shape, dtype=dtypes.from_numpy(dtype), device=ref.device)
        out = self._rule(self, *grads)
        if not isinstance(out, tuple):
            out = (out,)
        if len(out) != len(self.next_functions):
            raise AutogradError(
                f"{self._name} returned {len(out)} gradients for {len(self.next_functions)} inputs"
            )
        result = []
        for (fn, _), g, meta in zip(self.next_functions, out, self._in_meta, strict=True):
            if fn is None or g is None:
                result.append(None)
                continue
            shape, dtype = meta  # a numpy dtype
            if g._data.shape != shape:
                g = F.sum_to_size(g, shape)
            if g._data.dtype != dtype:
                g = g.to(dtypes.from_numpy(dtype))
            result.append(g)
        return tuple(result)


class AccumulateGrad:
    """The node of a leaf tensor: adds incoming gradients into `variable.grad`."""

    __slots__ = ("_variable", "__weakref__")
    next_functions = ()

    def __init__(self, variable) -> None:
        # the leaf owns its node; the node only points back weakly, so no cycle keeps either
        self._variable = weakref.ref(variable)

    @property
    def variable(self):
        return self._variable()

    def name(self) -> str:
        return "AccumulateGrad"

    def __repr__(self) -> str:
        return f"<AccumulateGrad object at {hex(id(self))}>"

    def accumulate(self, grad, create_graph: bool) -> None:
        var = self._variable()
        if var is None:  # the leaf is gone: nobody can read its gradient
            return
        if var._hooks:
            for hook in var._hooks:
                new = hook(grad)
                if new is not None:
                    grad = new
        if var.grad is None:
            # a gradient may be shared with other leaves (add passes one tensor to both inputs),
            # so a leaf gets its own copy unless the graph of the gradient is wanted
            var.grad = grad if create_graph else type(grad)._wrap(grad._data.copy())
        elif create_graph or var.grad.requires_grad:
            var.grad = var.grad + grad
        else:
            var.grad._data += grad._data
            var.grad._bump_version()


def _modified_error(t, i, name, now, then, output=False) -> AutogradError:
    what = f"output {i}" if output else f"input {i}"
    shape = f" of shape {list(t._data.shape)}" if t is not None else ""
    return AutogradError(
        f"one of the variables needed for gradient computation has been modified by an "
        f"inplace operation: the {what}{shape} saved by {name} is at version {now}; expected "
        f"version {then} instead. Use .clone() before the in-place change, or avoid it."
    )


def root_nodes(tensors) -> list:
    out = []
    for t in tensors:
        if t.grad_fn is not None:
            out.append((t.grad_fn, t._output_nr))
        elif t._rg:
            out.append((t._accumulate_node(), 0))
        else:
            raise AutogradError("element 0 of tensors does not require grad and does not have a grad_fn")
    return out


def run(roots, grads, retain_graph: bool, create_graph: bool, capture=None) -> dict | None:
    """Propagate `grads` from `roots` [(node, output_nr)] through the graph.

    Without `capture`, leaf gradients are accumulated into `.grad`. With `capture` (a set of
    (node, output_nr) pairs), nothing is accumulated and the gradients arriving at those pairs
    are returned instead (what `autograd.grad` needs).
    """
    dependents: dict = {}
    stack = [node for node, _ in roots]
    seen = set(stack)
    while stack:
        node = stack.pop()
        for nxt, _ in node.next_functions:
            if nxt is None:
                continue
            dependents[nxt] = dependents.get(nxt, 0) + 1
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)

    buffers: dict = {}
    for (node, nr), g in zip(roots, grads, strict=True):
        _add_to_buffer(buffers, node, nr, g)
    captured = {} if capture is not None else None
    ready = [node for node in dict.fromkeys(n for n, _ in roots) if dependents.get(node, 0) == 0]
    with grad_mode.set_grad_enabled(create_graph):
        while ready:
            node = ready.pop()
            node_grads = buffers.pop(node, None) or [None]
            if isinstance(node, AccumulateGrad):
                if capture is not None:
                    if (node, 0) in capture:
                        captured[node, 0] = _run_leaf_hooks(node, node_grads[0])
                elif node_grads[0] is not None:
                    node.accumulate(node_grads[0], create_graph)
                continue
            node._pre_apply(node_grads)
            if capture is not None:
                for nr, g in enumerate(node_grads):
                    if (node, nr) in capture:
                        captured[node, nr] = g
            out = node.apply(node_grads)
            if not retain_graph:
                node.release()
            for (nxt, nr), g in zip(node.next_functions, out, strict=True):
                if nxt is None:
                    continue
                if g is not None:
                    _add_to_buffer(buffers, nxt, nr, g)
                dependents[nxt] -= 1
                if dependents[nxt] == 0:
                    ready.append(nxt)
    return captured


def _run_leaf_hooks(node: AccumulateGrad, grad):
    var = node.variable
    if grad is not None and var is not None and var._hooks:
        for hook in var._hooks:
            new = hook(grad)
            if new is not None:
                grad = new
    return grad


def _add_to_buffer(buffers: dict, node, nr: int, grad) -> None:
    buf = buffers.get(node)
    if buf is None:
        n = len(node._out_meta) if isinstance(node, Node) else 1
        buf = buffers[node] = [None] * n
    buf[nr] = grad if buf[nr] is None else buf[nr] + grad
