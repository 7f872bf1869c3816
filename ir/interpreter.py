"""The reference interpreter: runs a graph on numpy (or cupy) arrays through each op's
reference implementation. The golden semantics every backend is tested against.

    >>> run(graph, [np.ones((3, 784), np.float32)])   # 'batch' binds to 3
"""

from __future__ import annotations

import numpy as np

from ir import dtypes
from ir.errors import InputError
from ir.ops import OPS
from ir.types import Sizes, concrete_shape, derived


def bind_inputs(graph, arrays) -> Sizes:
    """Check `arrays` against the graph's input types; return the symbol bindings (derived
    dims worked out on use), after checking that the graph's slices of symbolic sizes fit."""
    if isinstance(arrays, dict):
        missing = [v.name for v in graph.inputs if v.name not in arrays]
        extra = sorted(set(arrays) - {v.name for v in graph.inputs})
        if missing or extra:
            raise InputError(
                f"graph {graph.name}: missing inputs {missing}, unexpected "
                f"{extra}; expected {[v.name for v in graph.inputs]}"
            )
        arrays = [arrays[v.name] for v in graph.inputs]
    if len(arrays) != len(graph.inputs):
        raise InputError(
            f"graph {graph.name} takes {len(graph.inputs)} inputs "
            f"({', '.join(v.name for v in graph.inputs)}), got {len(arrays)}"
        )
    bindings = Sizes()
    for value, arr in zip(graph.inputs, arrays, strict=True):
        expected = value.type
        dtype = dtypes.from_numpy(arr.dtype) if hasattr(arr, "dtype") else None
        if dtype is not expected.dtype:
            raise InputError(
                f"input {value.name!r}: expected dtype {expected.dtype.name}, got "
                f"{arr.dtype if hasattr(arr, 'dtype') else type(arr).__name__}"
            )
        if len(arr.shape) != expected.rank:
            raise InputError(
                f"input {value.name!r}: expected shape {list(expected.shape)}, got {list(arr.shape)}"
            )
        for d, size in zip(expected.shape, arr.shape, strict=True):
            if isinstance(d, int):
                if d != size:
                    raise InputError(
                        f"input {value.name!r}: expected shape {list(expected.shape)}, got {list(arr.shape)}"
                    )
            else:
                try:
                    bindings.bind(d, size)
                except ValueError as e:
                    raise InputError(
                        f"input {value.name!r} of shape {list(arr.shape)} does not fit "
                        f"{list(expected.shape)}: {e}"
                    ) from None
    _check_slices(graph, bindings)
    return bindings


def _check_slices(graph, sizes: Sizes) -> None:
    """Each slice of a symbolic size (or to a symbolic stop) keeps, with these sizes, as many
    elements as its output's type says (`x[:, -3:]` needs seq >= 3; `pe[:, :seq]` needs
    seq <= len(pe)); an InputError names the slice and the sizes otherwise."""
    for node in graph.nodes:
        if node.op != "slice":
            continue
        a = node.attrs
        dim, start, stop, step = a["dim"], a["start"], a["stop"], a["step"]
        n = node.inputs[0].type.shape[dim]
        if isinstance(n, int) and not isinstance(stop, str):
            continue
        size = sizes[n] if isinstance(n, str) else n
        bound_stop = sizes[stop] if isinstance(stop, str) else stop
        picked = range(size)[slice(start, bound_stop, step)]
        kept = len(picked)
        out = node.outputs[0].type.shape[dim]
        expected = sizes[out] if isinstance(out, str) else out
        # (compiled code reads from `start`, or `size + start`: a start Python clamps is refused)
        if kept != expected or (kept and picked.start != (start if start >= 0 else size + start)):
            bound = ", ".join(f"{k}={v}" for k, v in sorted(sizes.items()) if derived(k) is None)
            scope = f" in {node.scope}" if node.scope else ""
            if isinstance(n, int):
                why = f"its stop {stop!r} is {bound_stop} here, past the {n} elements of the dim"
            else:
                why = f"it needs {n!r} to be longer than {size}"
            raise InputError(
                f"graph {graph.name}: %{node.outputs[0].name} (slice{scope}) takes "
                f"[{start}:{'' if stop is None else stop}:{step}] of dim {dim} ({n!r}), with "
                f"{expected} elements{'' if isinstance(out, int) else f' ({out})'} in the graph; for "
                f"inputs with {bound} {why}"
            )


def run(graph, arrays, xp=np, weights: dict | None = None) -> list:
    """Outputs of `graph` for input `arrays` (a list in input order, or a dict by name)."""
    env, bindings = start(graph, arrays, weights)
    for node in graph.nodes:
        run_node(node, env, bindings, xp, weights)
    return [env[v.name] for v in graph.outputs]


def start(graph, arrays, weights: dict | None = None) -> tuple[dict, dict[str, int]]:
    """The values a run of `graph` starts from (inputs and weights by name), and the sizes of
    its symbols, after checking the inputs against the graph's signature."""
    bindings = bind_inputs(graph, arrays)
    if isinstance(arrays, dict):
        arrays = [arrays[v.name] for v in graph.inputs]
    env = {v.name: a for v, a in zip(graph.inputs, arrays, strict=True)}
    data = graph.weight_data if weights is None else weights
    env.update({name: data[name] for name in graph.weights})
    return env, bindings


def run_node(node, env: dict, bindings: dict[str, int], xp=np, weights: dict | None = None) -> None:
    """Compute one node from the values in `env` and add its outputs there."""
    args = [None if v is None else env[v.name] for v in node.inputs]
    attrs = bind_attrs(node.attrs, bindings) if bindings else node.attrs
    if node.op == "cond" and weights is not None:  # branches read weights from the same table
        branch = attrs["then_branch"] if bool(args[0].reshape(())) else attrs["else_branch"]
        outs = run(branch, args[1:], xp=xp, weights=weights)
        out = tuple(outs) if len(outs) != 1 else outs[0]
    elif node.op == "scan" and weights is not None:
        from ir.ops.control import scan

        out = scan(xp, args, weights=weights, **attrs)
    else:
        out = OPS[node.op].impl(xp, *args, **attrs)
    outs = out if len(node.outputs) > 1 else (out,)
    for value, result in zip(node.outputs, outs, strict=True):
        env[value.name] = xp.asarray(result)


def bind_attrs(attrs: dict, bindings: dict[str, int]) -> dict:
    """Attributes with symbolic sizes (reshape to ('batch', 400)) replaced by bound ones."""

    def bind(value):
        if isinstance(value, str):
            return bindings.get(value, value)
        if isinstance(value, (tuple, list)):
            return type(value)(bind(v) for v in value)
        return value

    return {k: bind(v) for k, v in attrs.items()}


def output_shapes(graph, bindings: dict[str, int]) -> list[tuple[int, ...]]:
    """The concrete output shapes for these symbol bindings."""
    return [concrete_shape(v.type.shape, bindings) for v in graph.outputs]
