"""`graphc.script` / `graphc.trace`: capture a model or function as a graph with symbolic dims.

    >>> scripted = graphc.script(net, (graphc.randn(4, 1, 32, 32),))
    >>> print(scripted.graph)          # batch is symbolic: one graph for every batch size
    >>> scripted(graphc.randn(64, 1, 32, 32))

The function runs twice on the example inputs, the second time with every symbolic dim
larger (the first by 1, the next by 2, ...). Attributes that follow the symbolic sizes
(x.view(x.size(0), -1), ...) become symbols; any other difference between the two recordings
means a Python branch depends on a shape, and is reported instead of being baked in. A model
that fails so may take only multiples of some power of 2 (a U-Net): capture then looks for the
smallest multiples that work, and the graph takes exactly those sizes (`h_div_4_times_4`).
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np

from graphc._creation import from_numpy
from graphc._tensor import Tensor
from graphc.capture.tracer import TracingError, input_names, record, unflatten_outputs
from ir import dtypes
from ir.errors import IRError, ModuleFormatError
from ir.graph import Graph
from ir.infer import subgraph_inputs
from ir.ops.creation import with_key
from ir.types import Sizes, TensorType, base_symbol, concrete_shape, derived_name
from ir.verify import verify

OUTPUTS_KEY = "graphc.outputs"  # module metadata: per method, how its outputs nest (JSON)


def _grow(arr: np.ndarray, dims: dict[int, str], sizes: dict[str, int]) -> np.ndarray:
    """The array with each symbolic dim grown to its size in `sizes` (its first slice repeated
    at the end)."""
    for d, sym in dims.items():
        first = np.take(arr, [0] * (sizes[sym] - arr.shape[d]), axis=d)
        arr = np.concatenate([arr, first], axis=d)
    return arr


def _symbolize(a1, a2, b1: dict, b2: dict, where: str):
    """One attribute value from two recordings: equal stays, sizes that follow a symbol become
    that symbol."""
    if isinstance(a1, (tuple, list)) and isinstance(a2, (tuple, list)) and len(a1) == len(a2):
        return type(a1)(_symbolize(x, y, b1, b2, where) for x, y in zip(a1, a2, strict=True))
    if a1 == a2 and type(a1) is type(a2):
        return a1
    if isinstance(a1, int) and isinstance(a2, int):
        sym = _size_of(a1, a2, b1, b2)
        if sym is not None:
            return sym
        raise TracingError(
            f"{where}: a size that changes with the input shape ({a1} -> {a2}) "
            f"is neither one of the symbolic dims {dict(b1)} nor a multiple of one; other "
            "arithmetic on sizes is not supported yet"
        )
    raise TracingError(f"{where}: an attribute differs between input shapes ({a1!r} -> {a2!r})")


def _size_of(a1: int, a2: int, b1: dict, b2: dict) -> str | None:
    """The symbolic dim (or multiple of one: x.size(2) * 2 is h_times_2) that is a1 in the
    first recording and a2 in the second; None if none is."""
    for sym, size in b1.items():
        if a1 == size and a2 == b2[sym]:
            return sym
    for sym, size in list(b1.items()):
        if 0 < size < a1 and a1 % size == 0 and a2 == a1 // size * b2[sym]:
            return derived_name(sym, 0, 1, a1 // size)
    return None


def _constant(out: Graph, name: str, d1: np.ndarray, d2: np.ndarray, b1: dict, b2: dict):
    """A weight or constant, the same in both recordings; a number that follows a symbolic size
    (x.size(0) in arithmetic) becomes a `full` node of that size."""
    if np.array_equal(d1, d2, equal_nan=d1.dtype.kind in "fc"):
        return out.add_weight(name, d1)
    if d1.size == 1 and d2.size == 1 and float(d1.item()).is_integer() and float(d2.item()).is_integer():
        sym = _size_of(int(d1.item()), int(d2.item()), b1, b2)
        if sym is not None:
            attrs = {"shape": tuple(d1.shape), "value": sym, "dtype": dtypes.from_numpy(d1.dtype).name}
            return out.add_node("full", [], attrs, names=[name])[0]
    raise TracingError(
        f"graphc.script: the constant {name} holds {_show(d1)} for input sizes {dict(b1)} but "
        f"{_show(d2)} for {dict(b2)}: it was computed in Python from tensor sizes or values. A number "
        "equal to a symbolic size (x.size(0)) or a multiple of one (x.size(0) * 2) is supported; "
        "anything else that follows the input (x.numel(), x.size(0) - 1, a value read from a "
        "tensor) is not yet: compute it with tensor ops from the input instead."
    )


def _show(data: np.ndarray) -> str:
    return repr(data.item()) if data.size == 1 else f"an array of shape {list(data.shape)}"


class _ReplayError(TracingError):
    """The symbolic graph fails at operation `index`, where the dims of `symbols` (base
    symbols) disagree."""

    def __init__(self, message: str, index: int, types) -> None:
        super().__init__(message)
        self.index, self.symbols = index, _disagreeing(types)


def _disagreeing(types) -> set[str]:
    """The base symbols of the dims in which types of one rank differ (what a cat or a
    broadcast needs equal); all their symbols where there are none."""
    found = set()
    for a in types:
        for b in types:
            if a.rank == b.rank:
                found.update(
                    base_symbol(d)
                    for x, y in zip(a.shape, b.shape, strict=True)
                    for d in (x, y)
                    if x != y and isinstance(d, str)
                )
    return found or {base_symbol(d) for t in types for d in t.shape if isinstance(d, str)}


def _replay(g1: Graph, g2: Graph, symbolic_inputs: list[TensorType], b1: dict, b2: dict, name: str) -> Graph:
    """The graph g1 with symbolic inputs and attributes, checked against g2."""
    if len(g1.nodes) != len(g2.nodes) or [n.op for n in g1.nodes] != [n.op for n in g2.nodes]:
        first = next(
            (i for i, (x, y) in enumerate(zip(g1.nodes, g2.nodes, strict=False)) if x.op != y.op),
            min(len(g1.nodes), len(g2.nodes)),
        )
        ops1 = g1.nodes[first].op if first < len(g1.nodes) else "end"
        ops2 = g2.nodes[first].op if first < len(g2.nodes) else "end"
        raise TracingError(
            f"graphc.script: the model ran different operations for input sizes {b1} and {b2} "
            f"(operation {first}: {ops1} vs {ops2}); a Python branch or loop depends on a "
            "tensor's shape. Make it shape-independent, or keep the dim static "
            "(dynamic={input name: {}})."
        )
    out = Graph(name)
    env = {}
    for value, t in zip(g1.inputs, symbolic_inputs, strict=True):
        env[value.name] = out.add_input(value.name, t)
    for wname, value in g1.weights.items():
        other = g2.weights.get(wname)
        if other is None or other.type != value.type:
            raise TracingError(
                f"graphc.script: the tensor {wname} has a shape that changes with the input "
                f"shape ({value.type} vs {other.type if other else 'absent'}): it is created "
                "from sizes in Python (e.g. graphc.zeros(x.size(0), ...)). Create it from the "
                "input instead (graphc.zeros_like, x.new_zeros(...))."
            )
        env[wname] = _constant(out, wname, g1.weight_data[wname], g2.weight_data[wname], b1, b2)
    for i, (n1, n2) in enumerate(zip(g1.nodes, g2.nodes, strict=True)):
        where = f"operation {i} ({n1.op}{' in ' + n1.scope if n1.scope else ''})"
        if [v and v.name for v in n1.inputs] != [v and v.name for v in n2.inputs]:
            raise TracingError(
                f"{where}: its inputs differ between input sizes; a Python branch depends on a tensor's shape"
            )
        attrs = {}
        for k, v in n1.attrs.items():
            if isinstance(v, Graph):  # a cond branch or scan body: replayed with symbolic types
                operand_types = subgraph_inputs(n1.op, [env[x.name].type for x in n1.inputs], n1.attrs)
                try:
                    attrs[k] = _replay(v, n2.attrs[k], operand_types, b1, b2, v.name)
                except _ReplayError as e:
                    raise _ReplayError(str(e), i, operand_types) from None
            else:
                attrs[k] = _symbolize(v, n2.attrs[k], b1, b2, where)
        try:
            values = out.add_node(
                n1.op,
                [env[v.name] if v is not None else None for v in n1.inputs],
                attrs,
                names=[v.name for v in n1.outputs],
                scope=n1.scope,
            )
        except IRError as e:
            raise _ReplayError(
                f"{where}: {e}", i, [env[v.name].type for v in n1.inputs if v is not None]
            ) from None
        for v, c1, c2 in zip(values, n1.outputs, n2.outputs, strict=True):
            if (
                concrete_shape(v.type.shape, b1) != c1.type.shape
                or concrete_shape(v.type.shape, b2) != c2.type.shape
            ):
                raise _ReplayError(
                    f"{where}: the symbolic shape {v.type} does not match the "
                    f"recorded shapes {c1.type} and {c2.type}",
                    i,
                    [v.type],
                )
            env[v.name] = v
    out.set_outputs([env[v.name] for v in g1.outputs])
    verify(out)
    return out


def capture(fn, example_inputs, dynamic=None, model=None, name: str = "forward") -> Graph:
    """The graph of `fn` on inputs like `example_inputs`, with symbolic dims per `dynamic`
    ({input name: {dim: symbol}}; by default dim 0 of every input is 'batch'); its outputs are
    the tensors `fn` returns, nested tuples and lists flattened in order."""
    return _capture(fn, example_inputs, dynamic, model, name)[0]


def _capture(fn, example_inputs, dynamic=None, model=None, name: str = "forward") -> tuple[Graph, object]:
    """`capture`, and the structure of fn's outputs (graphc.capture.tracer.flatten_outputs)."""
    examples = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    arrays = []
    for x in examples:
        if isinstance(x, Tensor):
            arrays.append(x.detach().numpy(force=True))
        elif isinstance(x, np.ndarray):
            arrays.append(x)
        else:
            raise TracingError(f"example inputs must be tensors or numpy arrays, got {type(x).__name__}")
    names = input_names(fn, len(arrays))
    if dynamic is None:
        dynamic = {n: ({0: "batch"} if a.ndim else {}) for n, a in zip(names, arrays, strict=True)}
    unknown = sorted(set(dynamic) - set(names))
    if unknown:
        raise TracingError(f"dynamic names inputs {unknown}, but the inputs are {names}")
    b1 = Sizes()
    for n, a in zip(names, arrays, strict=True):
        for d, sym in dynamic.get(n, {}).items():
            if b1.setdefault(sym, a.shape[d]) != a.shape[d]:
                raise TracingError(
                    f"symbol {sym!r} has sizes {b1[sym]} and {a.shape[d]} in the example inputs"
                )
    empty = sorted(s for s, v in b1.items() if v == 0)
    if empty:
        raise TracingError(
            f"the example inputs have no elements along the symbolic dims {empty}: capture needs "
            "at least one there (the graph then takes any size, 0 too)"
        )
    weight_names = {}
    if model is not None:
        weight_names = {id(t): n for n, t in list(model.named_parameters()) + list(model.named_buffers())}
    g1, structure = record(
        fn,
        {n: from_numpy(np.array(a)) for n, a in zip(names, arrays, strict=True)},
        weight_names,
        name,
        model,
    )

    def second(b2: Sizes) -> Graph:
        """The recording at the sizes `b2`."""
        grown = {n: from_numpy(_grow(a, dynamic.get(n, {}), b2)) for n, a in zip(names, arrays, strict=True)}
        try:
            g2, other = record(fn, grown, weight_names, name, model)
        except TracingError:
            raise
        except Exception as e:  # (the examples ran: the larger sizes did not)
            raise TracingError(
                f"graphc.script runs the function a second time with the symbolic dims larger ({b2}, "
                f"the examples had {b1}) to tell sizes from constants, and that run failed: "
                f"{type(e).__name__}: {e}. Give example inputs below the largest sizes the model takes."
            ) from e
        if other != structure:
            raise TracingError(
                f"graphc.script: the function returns differently nested outputs for input sizes {b1} "
                f"and {b2}; a Python branch depends on a tensor's shape"
            )
        return g2

    def replay(g2: Graph, b2: Sizes, multiples: dict[str, int]) -> Graph:
        """g1 with symbolic dims, checked against g2; a symbol with a multiple m > 1 takes
        only multiples of m (its dims are `h_div_m_times_m`)."""
        dim = {s: _multiple_dim(s, multiples.get(s, 1)) for s in b1}
        s1, s2 = Sizes(), Sizes()
        for sym, d in dim.items():
            s1.bind(d, b1[sym])
            s2.bind(d, b2[sym])
        symbolic = []
        for n, v in zip(names, g1.inputs, strict=False):
            dims = dynamic.get(n, {})
            shape = tuple(dim[dims[i]] if i in dims else s for i, s in enumerate(v.type.shape))
            symbolic.append(TensorType(v.type.dtype, shape))
        symbolic += [v.type for v in g1.inputs[len(names) :]]  # (rng.key, where it draws random numbers)
        return _replay(g1, g2, symbolic, s1, s2, name)

    try:
        b2 = _grown(b1, {})
        return replay(second(b2), b2, {}), structure
    except TracingError as plain:
        # the model may take only sizes that are multiples of some number (a U-Net's skip
        # connections meet only where each pooling halves the size exactly)
        multiples = _find_multiples(b1, second, replay)
        if multiples:
            b3 = _grown(b1, multiples)
            try:  # (recorded again at sizes grown by those multiples only: the graph's domain)
                return replay(second(b3), b3, multiples), structure
            except TracingError:
                pass
        if isinstance(plain, _ReplayError):
            raise TracingError(str(plain)) from None
        raise


def _multiple_dim(symbol: str, m: int) -> str:
    """The name of a dim that takes the sizes of `symbol` that are multiples of `m`."""
    return symbol if m == 1 else derived_name(f"{symbol}_div_{m}", 0, 1, m)


def _grown(b1: Sizes, multiples: dict[str, int]) -> Sizes:
    """The sizes of the second recording: each symbol larger by a multiple of its own
    multiple, every symbol (and multiple's base) by a different amount, so that a number
    following one symbol (seq - 3) cannot pass for another (batch) that it happens to equal
    in one recording."""
    growths, steps, b2 = set(), set(), Sizes()
    for sym, size in b1.items():
        m, c = multiples.get(sym, 1), 1
        while m * c in growths or (m > 1 and c in steps):  # (steps: of the bases h_div_m)
            c += 1
        growths.add(m * c)
        if m > 1:
            steps.add(c)
        b2[sym] = size + m * c
    return b2


_MAX_MULTIPLE = 64


def _relaxed(multiples: dict[str, int], g2: Graph, b2: Sizes, replay) -> dict[str, int]:
    """`multiples` with each symbol's as small as the graph still allows (the search doubles
    every symbol of a failing operation, where one of them may have been enough)."""
    for sym in multiples:
        while multiples[sym] > 1:
            trial = {**multiples, sym: multiples[sym] // 2}
            try:
                replay(g2, b2, trial)
            except TracingError:
                break
            multiples = trial
    return multiples


def _find_multiples(b1: Sizes, second, replay) -> dict[str, int] | None:
    """For a model that failed to capture with sizes of any value: the multiple of each symbol
    (powers of 2, at most what its example size allows) that lets it capture, found on a
    recording at sizes that keep every power of 2 of the examples; None where there is none."""
    allowed = {s: math.gcd(v, _MAX_MULTIPLE) for s, v in b1.items()}
    if all(m == 1 for m in allowed.values()):
        return None
    b2 = _grown(b1, allowed)
    try:
        g2 = second(b2)
    except TracingError:
        return None
    multiples = {s: 1 for s in b1}
    try:
        replay(g2, b2, multiples)
        return None  # (the plain sizes failed for another reason)
    except _ReplayError as e:
        failure = e
    except TracingError:
        return None
    while True:
        owners = {base_symbol(_multiple_dim(s, m)): s for s, m in multiples.items()}
        wanted = [owners[b] for b in failure.symbols if b in owners]
        trial = dict(multiples)
        while True:  # double the multiples of the symbols that disagree until it gets past
            grown = [s for s in wanted if allowed[s] % (trial[s] * 2) == 0]
            if not grown:
                return None
            for s in grown:
                trial[s] *= 2
            try:
                replay(g2, b2, trial)
                return _relaxed(trial, g2, b2, replay)
            except _ReplayError as e:
                if e.index > failure.index:
                    multiples, failure = trial, e
                    break
            except TracingError:
                return None


class ScriptModule:
    """A captured model: call it like the original; `.graph` is the IR it runs, on `backend`
    ('interpreter', the reference; 'llvm', fused kernels compiled for this CPU; 'cuda',
    CUDA kernels on `device`, a codegen.cuda.device.Device)."""

    def __init__(
        self,
        graphs: dict[str, Graph],
        backend: str = "llvm",
        embedded: dict | None = None,
        device=None,
        outputs: dict | None = None,
    ) -> None:
        from codegen import BACKENDS

        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        if (backend == "cuda") != (device is not None):
            raise ValueError("ScriptModule: backend 'cuda' takes a CUDA device, and only it does")
        self._graphs = dict(graphs)
        self.backend = backend
        self.cuda_device = device  # (codegen.cuda.device.Device) where backend is 'cuda'
        self._embedded = embedded or {}  # trusted compiled code from a module file, by cache key
        self._executables: dict = {}
        # per method, how its outputs nest (graphc.capture.tracer.flatten_outputs); a method
        # not named returns one tensor, or a tuple of its outputs
        self._outputs = dict(outputs or {})
        for method, structure in self._outputs.items():
            count = len(self._graphs[method].outputs) if method in self._graphs else -1
            if _leaf_count(structure) != count:
                raise ValueError(
                    f"ScriptModule: the output structure of method {method!r} does not fit its "
                    f"{count} outputs: {structure!r:.200}"
                )

    def _executable(self, method: str):
        exe = self._executables.get(method)
        if exe is None:  # compiled on first use, once per method (code in the cache runs from its plan)
            from codegen import ready

            exe = ready(self._graphs[method], self.backend, self._embedded, self.cuda_device)
            exe = self._executables.setdefault(method, exe)
        return exe

    @property
    def graph(self) -> Graph:
        return self._graphs["forward"]

    @property
    def methods(self) -> list[str]:
        return list(self._graphs)

    def _run(self, method: str, *inputs):
        if self.backend == "cuda":  # the device's arrays in and out (tensors on CUDA stay there)
            arrays = [x.detach()._data if isinstance(x, Tensor) else x for x in inputs]
            arrays = self._keyed(method, arrays)
            outs = [
                Tensor._wrap(self.cuda_device.xp.asarray(o)) for o in self._executable(method).run(arrays)
            ]
        else:
            arrays = [
                x.detach().numpy(force=True) if isinstance(x, Tensor) else np.asarray(x) for x in inputs
            ]
            outs = [
                from_numpy(np.asarray(o)) for o in self._executable(method).run(self._keyed(method, arrays))
            ]
        structure = self._outputs.get(method)
        if structure is not None:
            return unflatten_outputs(structure, outs)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _keyed(self, method: str, arrays: list) -> list:
        """`arrays`, and where the method draws random numbers and they leave out its last
        input `rng.key`, a key from graphc's generator (graphc.manual_seed makes the draws
        repeatable)."""
        from graphc._creation import default_generator

        return with_key(self._graphs[method], arrays, default_generator.next_seed)

    def __call__(self, *inputs):
        return self._run("forward", *inputs)

    def to(self, device) -> ScriptModule:
        """Run on `device` from now on ('cpu', 'cuda', 'cuda:N', a graphc.device, or a
        codegen.cuda.device.Device): the graphs are compiled for it on the next call (CUDA
        kernels on a GPU, the llvm backend on the CPU). In place, as PyTorch's `Module.to`."""
        if device is None:
            raise TypeError("ScriptModule.to: expected a device ('cpu', 'cuda', 'cuda:N'), got None")
        target = _cuda_target(device, None)  # (graphc's DeviceError: an unknown device, no CUDA)
        backend = "cuda" if target is not None else ("llvm" if self.backend == "cuda" else self.backend)
        if (backend, target) != (self.backend, self.cuda_device):
            self.backend, self.cuda_device = backend, target
            self._executables = {}
        return self

    def cuda(self, device=None) -> ScriptModule:
        return self.to("cuda" if device is None else f"cuda:{device}" if isinstance(device, int) else device)

    def cpu(self) -> ScriptModule:
        return self.to("cpu")

    def save(self, path, metadata: dict[str, str] | None = None) -> None:
        """Write all methods, their weights and `metadata` to a .gcm module file (atomically;
        or to a binary file object such as io.BytesIO); the standalone `runtime` package
        loads it. With backend 'llvm' the file also carries
        the methods' compiled code for CPUs like this one (compiled now if need be); with
        'cuda', their PTX and cubins for sm_80 and sm_90 and the CUDA C source (where NVRTC
        is installed). A loader uses compiled code only when asked to trust it."""
        from graphc import __version__
        from ir.module_file import write_module

        artifacts = []
        if self.backend == "llvm":
            from codegen.executable import library_artifacts

            artifacts = library_artifacts({m: self._executable(m) for m in self._graphs})
        elif self.backend == "cuda":
            from codegen.cuda.executable import cuda_artifacts

            artifacts = cuda_artifacts({m: self._executable(m) for m in self._graphs})
        metadata = dict(metadata or {})
        if self._outputs:  # (the runtime returns the outputs flat; graphc.load nests them again)
            metadata[OUTPUTS_KEY] = json.dumps(self._outputs)
        write_module(
            path, self._graphs, producer=f"graphc {__version__}", metadata=metadata, artifacts=artifacts
        )

    def __getattr__(self, name: str):
        graphs = self.__dict__.get("_graphs", {})
        if name in graphs:
            return lambda *inputs: self._run(name, *inputs)
        raise AttributeError(f"ScriptModule has no method {name!r}; it has {list(graphs)}")

    def __repr__(self) -> str:
        return f"ScriptModule(methods={self.methods})"


def script(
    model_or_fn,
    example_inputs,
    dynamic=None,
    methods: dict | list | None = None,
    backend: str | None = None,
    device=None,
):
    """Capture `model_or_fn` (an nn.Module or a function of tensors) on `example_inputs`.

    `methods` maps method names to callables, or lists method names of the module (default:
    {'forward': the model}); a module is captured in eval mode (a warning says so when it was
    training). `device` 'cuda' (or 'cuda:N', or where the module's parameters live on CUDA)
    compiles each method to CUDA kernels on first call; on the CPU, `backend` 'llvm' (the
    default) compiles for this CPU and 'interpreter' runs the graph on the reference
    interpreter. `device` may also be a codegen.cuda.device.Device (the CPU emulation of CUDA
    in codegen.cuda.emulate, for tests).
    """
    from graphc.nn.module import Module

    model = model_or_fn if isinstance(model_or_fn, Module) else None
    target = _cuda_target(device, model)
    if backend is None:
        backend = "cuda" if target is not None else "llvm"
    if (backend == "cuda") != (target is not None):
        where = "a CUDA device" if target is not None else "the CPU"
        raise ValueError(f"graphc.script: backend {backend!r} does not run on {where}")
    was_training = model is not None and model.training
    if was_training:
        warnings.warn(
            "graphc.script captures modules in eval mode (dropout off, batch norm "
            "using running statistics); the module was in training mode and is "
            "restored afterwards",
            stacklevel=2,
        )
        model.eval()
    # a module on CUDA is captured on the CPU (the graph is the same; the examples are CPU
    # arrays) and moved back afterwards
    home = _parameter_device(model)
    if home is not None and home.type == "cuda":
        model.to("cpu")
    try:
        targets = _method_targets(model_or_fn, model, methods)
        graphs, outputs = {}, {}
        for method, fn in targets.items():
            examples = example_inputs[method] if isinstance(example_inputs, dict) else example_inputs
            fn_for_names = fn.forward if isinstance(fn, Module) else fn
            call = fn if not isinstance(fn, Module) else fn.__call__
            fn_named = _named(call, fn_for_names)
            graphs[method], structure = _capture(fn_named, examples, dynamic, model, method)
            count = len(graphs[method].outputs)
            if structure != "T" and (count < 2 or structure != ["tuple", ["T"] * count]):
                outputs[method] = structure  # (one tensor or a flat tuple of 2+ is the default)
        return ScriptModule(graphs, backend, device=target, outputs=outputs)
    finally:
        if was_training:
            model.train()
        if home is not None and home.type == "cuda":
            model.to(home)


def _parameter_device(model):
    """The device of `model`'s first parameter (None: no module, or no parameters)."""
    if model is None:
        return None
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else None


def _cuda_target(device, model):
    """The codegen CUDA device to compile for: from `device`, else from where `model`'s
    parameters live (None: the CPU)."""
    from codegen.cuda.device import Device, gpu
    from graphc._device import resolve

    if isinstance(device, Device):
        return device
    if device is None:
        device = _parameter_device(model)
    if device is None:
        return None
    resolved = resolve(device)  # (graphc's DeviceError where CUDA is not available)
    if resolved.type != "cuda":
        return None
    return gpu(f"cuda:{resolved.index or 0}")


def _named(call, named):
    """`call` with the parameter names of `named` (for input names in the graph)."""

    def wrapper(*args):
        return call(*args)

    try:
        import inspect

        wrapper.__signature__ = inspect.signature(named)
    except (TypeError, ValueError):
        pass
    return wrapper


def _method_targets(model_or_fn, model, methods) -> dict:
    if methods is None:
        return {"forward": model_or_fn}
    if isinstance(methods, dict):
        return dict(methods)
    if isinstance(methods, (list, tuple)) and all(isinstance(m, str) for m in methods):
        if model is None:
            raise TypeError("graphc.script: method names need an nn.Module; pass a dict of callables")
        targets = {}
        for name in methods:
            fn = model if name == "forward" else getattr(model, name, None)
            if not callable(fn):
                raise AttributeError(f"graphc.script: {type(model).__name__} has no method {name!r}")
            targets[name] = fn
        return targets
    raise TypeError(
        "graphc.script: methods must be a dict of name -> callable or a list of method names, "
        f"got {type(methods).__name__}"
    )


trace = script


def load(
    path, backend: str | None = None, trust_embedded_code: bool = False, device=None, map_location=None
) -> ScriptModule:
    """A ScriptModule from a .gcm module written by `ScriptModule.save` (a path, the file's
    bytes or a binary file object such as io.BytesIO), for `device` (or `map_location`, as
    PyTorch names it; default the CPU; 'cuda' compiles CUDA kernels). With
    `trust_embedded_code=True`, compiled code the file carries for this CPU or GPU is used
    instead of compiling (it is native code: trust the file's author); otherwise it is
    ignored."""
    from ir.module_file import read_module

    target = _cuda_target(device if device is not None else map_location, None)
    backend = backend or ("cuda" if target is not None else "llvm")
    module = read_module(path)
    outputs = {}
    if OUTPUTS_KEY in module.metadata:
        try:
            outputs = json.loads(module.metadata[OUTPUTS_KEY])
            if not isinstance(outputs, dict):
                raise ValueError("not an object")
            for method, structure in outputs.items():
                graph = module.methods.get(method)
                if graph is None or _leaf_count(structure) != len(graph.outputs):
                    raise ValueError(f"method {method!r} has no such outputs")
        except (ValueError, TypeError) as e:
            raise ModuleFormatError(
                f"{path}: metadata {OUTPUTS_KEY!r} is not an output structure ({e})"
            ) from None
    embedded = {}
    if trust_embedded_code:  # (both kinds, by key: the module may move between devices)
        from codegen.cuda.executable import embedded_code
        from codegen.library import embedded_libraries

        embedded = {**embedded_libraries(module), **embedded_code(module)}
    return ScriptModule(module.methods, backend, embedded, target, outputs)


def _leaf_count(structure) -> int:
    """The tensors in an output structure (ValueError if it is not one)."""
    if structure == "T":
        return 1
    if (
        isinstance(structure, list)
        and len(structure) == 2
        and structure[0] in ("tuple", "list")
        and isinstance(structure[1], list)
    ):
        return sum(_leaf_count(s) for s in structure[1])
    raise ValueError(f"not an output structure: {structure!r:.80}")
