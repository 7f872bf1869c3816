"""CUDA executables: a graph's kernels compiled for a GPU and run through a `Device`.

`CudaGraph(graph, device)` optimizes and schedules the graph as the CPU compiler does, renders
every kernel into one CUDA C module (`render.render_module`), finds code for the device's
architecture and loads it once; weights go to device memory once. `run` takes numpy or device
arrays and returns device arrays: each kernel is launched with the grid and block its sizes
need (`render.launch_config`), nodes that are not kernels (reshapes, ...) run on the reference
interpreter with the device's array module.

Code for a device of compute capability XY is the first of these its driver loads: a cubin for
sm_XY, then one for an older sm_XZ of the same major version (sm_80's runs on sm_86 and sm_89),
then PTX for each architecture at most XY, newest first, from the cache or from a trusted module
file (`embedded`); then code compiled here by NVRTC, a cubin for sm_XY where NVRTC knows
that architecture (no JIT, and a cubin from a newer CUDA 12 runs on an older CUDA 12 driver),
else PTX for the newest one it knows below it. (A driver refuses code from a newer CUDA than its
own: a file saved where NVRTC 13 ran carries such code for a CUDA 12 driver.) Compiled code is
cached by a hash of its source, kind and architecture; a file's code joins the cache once it
loads.
`cuda_artifacts` gives what a module file carries: PTX and cubins for ARCHS, and the source.

    >>> exe = CudaGraph(graph, gpu("cuda"))
    >>> (y,) = exe.run([x])              # x: numpy or cupy; y: cupy
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from codegen import library
from codegen.cuda import nvrtc
from codegen.cuda.device import Device, DeviceError, cuda_version
from codegen.cuda.render import launch_config, operands, render_module, size_values
from codegen.executable import empty_extreme, scan_runner
from codegen.host import COMPILER_VERSION
from codegen.kernel import Kernel, Pool2d
from codegen.plan import out_of_range
from codegen.schedule import KernelStep, NodeStep, dump, format_schedule, schedule
from codegen.sized import split
from ir.errors import ShapeError
from ir.graph import Graph
from ir.interpreter import bind_inputs, run_node
from ir.passes import optimize
from ir.types import concrete_shape

ARCHS = (80, 90)  # a module file carries PTX and cubins for these (A100, H100 and what JITs from them)
KINDS = ("cubin", "ptx")


def code_key(source: str, kind: str, arch: int) -> str:
    """The cache key of `source` compiled to `kind` ('ptx' or 'cubin') for `arch` (80: sm_80)."""
    return hashlib.sha256(f"graphc-cuda {COMPILER_VERSION}\n{kind} {arch}\n{source}".encode()).hexdigest()


def compiled(source: str, kind: str, arch: int) -> bytes:
    """`source` as PTX for compute_<arch> or a cubin for sm_<arch>: from the cache, else
    compiled by NVRTC and cached, with the source beside it (`<source_key>.cu`: what a cached
    cubin was made from, to read)."""
    key = code_key(source, kind, arch)
    data = library.read(key, kind)
    if data is None:
        target = f"sm_{arch}" if kind == "cubin" else f"compute_{arch}"
        data = nvrtc.compile(source, "graph.cu", arch=target)
        library.store(key, data, kind)
        library.store(source_key(source), source.encode(), "cu")
    return data


def source_key(source: str) -> str:
    """The cache key of a CUDA source itself."""
    return hashlib.sha256(f"graphc-cuda {COMPILER_VERSION}\nsource\n{source}".encode()).hexdigest()


def code_candidates(source: str, capability: int, embedded: dict[str, bytes], driver: int | None = None):
    """Code for a device of `capability`, best first (see the module's docstring): (kind,
    architecture, bytes, key) where the code comes from the cache or a trusted module file
    (`embedded`: by key), then compiled here by NVRTC. The caller takes the first its device
    loads: a driver may refuse code from a newer CUDA than its own. `key` is not None for code
    from the file, which joins the cache once it loads. NVRTC runs only when reached, and never
    compiles code the driver cannot load (`driver`: its CUDA version, 12040 for 12.4, where
    known: a cubin from a newer CUDA major version, PTX from a newer CUDA version); a
    DeviceError where it cannot compile for this GPU."""
    # a cubin runs on GPUs of its major version and a newer minor one: sm_80's on sm_86 and sm_89
    candidates = [("cubin", capability)]
    candidates += [
        ("cubin", a) for a in sorted(ARCHS, reverse=True) if a // 10 == capability // 10 and a < capability
    ]
    candidates += [("ptx", arch) for arch in sorted({*ARCHS, capability}, reverse=True) if arch <= capability]
    for kind, arch in candidates:
        key = code_key(source, kind, arch)
        data = library.read(key, kind)
        if data is not None:
            yield kind, arch, data, None
        elif key in embedded:
            yield kind, arch, embedded[key], key
    if not nvrtc.available():
        raise DeviceError(
            f"no code for this GPU (sm_{capability}): NVRTC is not installed to compile it "
            "(pip install nvidia-cuda-nvrtc-cu12, or 'nvidia-cuda-nvrtc>=13' for a CUDA 13 driver), "
            f"and no trusted module file carries code it loads for an architecture up to sm_{capability} "
            "(load it with trust_embedded_code=True)"
        )
    known = nvrtc.supported_archs()
    if capability in known:
        _check_driver(driver, "cubin")
        yield "cubin", capability, compiled(source, "cubin", capability), None
        return
    older = [arch for arch in known if arch <= capability]
    if not older:
        raise DeviceError(
            f"this GPU (sm_{capability}) is older than every architecture NVRTC {nvrtc.version()} "
            f"compiles for ({known[0]} and up)"
        )
    _check_driver(driver, "ptx")
    yield "ptx", older[-1], compiled(source, "ptx", older[-1]), None


def _check_driver(driver: int | None, kind: str) -> None:
    """DeviceError where the driver (CUDA version `driver`) could not load `kind` from this
    NVRTC: a cubin needs a driver of NVRTC's major version or later, PTX of its version."""
    if driver is None:
        return
    ours = nvrtc.version()
    theirs = cuda_version(driver)
    if (ours[0] > theirs[0]) if kind == "cubin" else (ours > theirs):
        raise DeviceError(
            f"NVRTC {ours[0]}.{ours[1]} ({nvrtc.location()}) makes {kind} code this GPU's driver "
            f"(CUDA {theirs[0]}.{theirs[1]}) cannot load: install {nvrtc.requirement(*theirs)}, "
            "or name a libnvrtc of that version in GRAPHC_NVRTC"
        )


class CudaGraph:
    """`graph` compiled for `device`; `run` may be called from several threads (on a GPU)."""

    def __init__(self, graph: Graph, device: Device, embedded: dict[str, bytes] | None = None) -> None:
        """`embedded`: PTX and cubins by key from a module file the user trusts."""
        self.source = graph
        # (values that depend only on sizes are inputs, computed once per set of sizes and
        # kept on the device: codegen.sized)
        self.graph, self.sized = split(optimize(graph))
        self.steps = schedule(self.graph)
        self.schedule_text = format_schedule(self.steps)
        self.device = device
        self.kernels = [s.kernel for s in self.steps if isinstance(s, KernelStep)]
        self.cuda_source = render_module(self.kernels)
        dump(self.graph.name, {"schedule.txt": self.schedule_text + "\n", "cu": self.cuda_source})
        self.code_kind: str | None = None  # 'ptx' or 'cubin', where the device loads code
        self.arch: int | None = None  # the architecture of that code
        self._launch = self._load(embedded or {}) if self.kernels else {}
        xp = device.xp
        with device.current():
            # weights in device memory, once: as stored (for interpreter nodes, a cond's
            # branches included) and in each dtype a kernel reads them in
            self.weights = {name: xp.asarray(data) for name, data in self.graph.all_weights()}
            self._cast: dict[tuple, object] = {}
            self._plan = [self._runner(step) for step in self.steps]
        self._symbols = sorted(self.graph.symbols())
        self._launches: dict[tuple, list] = {}  # symbol sizes -> per step, its _Launch
        # per step, the intermediates no later step reads (and no output is): dropped after it,
        # so the device's memory pool gives their memory to the next ones
        self._drops = _last_uses(self.graph, self.steps)
        self._types = {v.name: v.type for node in self.graph.nodes for v in node.outputs}
        if self.sized is not None:

            def on_device(a):
                with device.current():
                    return xp.asarray(a)

            self.sized.convert = on_device

    def _load(self, embedded: dict[str, bytes]) -> dict:
        """The device's launch functions for the kernels, from the first code it loads."""
        device = self.device
        if not device.needs_code:
            return device.load(self.cuda_source, None, None, self.kernels)
        refused = []  # what the driver would not load, and why
        try:
            for kind, arch, code, key in code_candidates(
                self.cuda_source, device.capability, embedded, device.driver_version
            ):
                try:
                    launch = device.load(self.cuda_source, code, kind, self.kernels)
                except DeviceError as e:
                    refused.append(f"{kind} for sm_{arch}: {e}")
                    continue
                if key is not None:
                    library.store(key, code, kind)  # (the file's code joins the cache once it loads)
                self.code_kind, self.arch = kind, arch
                return launch
        except DeviceError as e:
            if not refused:
                raise
            raise DeviceError(f"{e}; the driver refused what there was: {'; '.join(refused)}") from None
        raise DeviceError(f"{device.name} loads none of the code for this graph: {'; '.join(refused)}")

    def __str__(self) -> str:
        return self.schedule_text

    def run(self, arrays, weights: dict | None = None) -> list:
        """The graph's outputs, as the device's arrays, for `arrays` (numpy or the device's;
        a list in input order or a dict by name). `weights` is ignored: the device holds its
        own copy, bound when the graph was compiled."""
        xp = self.device.xp
        if self.sized is not None:
            arrays = self.sized.add(arrays)
        bindings = bind_inputs(self.graph, arrays)
        key = tuple(bindings[s] for s in self._symbols)
        launches = self._launches.get(key)
        if launches is None:  # worked out once per set of sizes
            launches = self._launches.setdefault(key, [self._configure(s, bindings) for s in self.steps])
        given = [arrays[v.name] for v in self.graph.inputs] if isinstance(arrays, dict) else arrays
        with self.device.current():
            env = {v.name: xp.asarray(a) for v, a in zip(self.graph.inputs, given, strict=True)}
            env.update(self.weights)
            checks: list = []  # (status word, kernel name) of the gathers that ran
            for step, launch, drops in zip(self._plan, launches, self._drops, strict=True):
                step(env, bindings, checks, launch)
                for name in drops:
                    del env[name]
            for status, name in checks:
                if int(status[0]):
                    raise IndexError(out_of_range(name))
        return [env[v.name] for v in self.graph.outputs]

    def memory(self, bindings: dict) -> tuple[int, int]:
        """(the most bytes of intermediates alive at once, bytes of all intermediates) of a run
        at these symbol sizes: each is freed after its last reader (a reshape is a view: its
        buffer lives while the value or any view of it may still be read)."""
        owner: dict[str, str] = {}  # a reshape's output -> the value whose buffer it views
        nbytes: dict[str, int] = {}  # a value with a buffer of its own -> its size
        for step in self.steps:
            if isinstance(step, NodeStep) and step.node.op == "reshape":
                source = step.node.inputs[0].name
                owner[step.node.outputs[0].name] = owner.get(source, source)
                continue
            for name in _made(step):
                t = self._types[name]
                nbytes[name] = (
                    int(np.prod(concrete_shape(t.shape, bindings), dtype=np.int64)) * t.dtype.itemsize
                )
        holders = {name: {name} for name in nbytes}  # a buffer -> the values still holding it
        for view, buffer in owner.items():
            if buffer in holders:
                holders[buffer].add(view)
        live = peak = 0
        for step, drops in zip(self.steps, self._drops, strict=True):
            live += sum(nbytes.get(name, 0) for name in _made(step))
            peak = max(peak, live)
            for name in drops:
                held = holders.get(owner.get(name, name))
                if held is not None and name in held:
                    held.discard(name)
                    if not held:
                        live -= nbytes[owner.get(name, name)]
        return peak, sum(nbytes.values())

    def _configure(self, step, bindings: dict) -> _Launch | None:
        """How a kernel step runs at these symbol sizes (None for an interpreter node)."""
        if isinstance(step, NodeStep):
            return None
        k = step.kernel
        shape = tuple(concrete_shape(k.out_shape, bindings))
        error = empty_extreme(k, concrete_shape(k.ranges, bindings)) if isinstance(k, Kernel) else None
        reduces = isinstance(k, Kernel) and k.reduce is not None  # (an empty sum is 0: it runs)
        runs = reduces or int(np.prod(shape, dtype=np.int64)) > 0
        grid, block = launch_config(k, bindings, **self.device.launch_limits())
        return _Launch(shape, grid, block, tuple(size_values(k, bindings)), runs, error)

    def _runner(self, step):
        xp = self.device.xp
        if isinstance(step, NodeStep):
            node = step.node
            if node.op == "scan":  # the body as CUDA kernels too, launched once per step
                from codegen import ready

                run_scan = scan_runner(node, ready(node.attrs["body"], "cuda", None, self.device), xp)
                return lambda env, bindings, checks, launch: run_scan(env)
            return lambda env, bindings, checks, launch: run_node(node, env, bindings, xp, self.weights)
        k, output = step.kernel, step.output
        function = self._launch[k.name]
        kinds = [(x.dtype or k.dtype).np for _, x in operands(k)]
        loads = [self._operand(name, kind) for name, kind in zip(step.inputs, kinds, strict=True)]
        out_dtype = np.int64 if isinstance(k, Pool2d) and k.indices else k.dtype.np
        checked = isinstance(k, Kernel) and k.checked

        def kernel(env, bindings, checks, launch: _Launch):
            if launch.error:
                raise ShapeError(launch.error)
            out = env[output] = xp.empty(launch.shape, dtype=out_dtype)
            if not launch.runs:
                return
            args = [out, *(load(env) for load in loads)]
            if checked:
                status = xp.zeros(1, dtype=np.int64)
                checks.append((status, k.name))
                args.append(status)
            function(launch.grid, launch.block, [*args, *launch.sizes])

        return kernel

    def _operand(self, name: str, dtype):
        """A function of env giving value `name` as a contiguous `dtype` array of the device (a
        weight's is made once, now)."""
        xp = self.device.xp
        if name in self.weights:
            key = (name, np.dtype(dtype))
            array = self._cast.get(key)
            if array is None:
                array = self._cast[key] = xp.ascontiguousarray(self.weights[name], dtype=dtype)
            return lambda env: array

        def load(env):
            value = env[name]
            if value.dtype != dtype or not value.flags.c_contiguous:
                value = xp.ascontiguousarray(value, dtype=dtype)
            return value

        return load


@dataclass(frozen=True)
class _Launch:
    """A kernel step at one set of symbol sizes: its output's shape, grid and block, size
    arguments; whether it computes anything (not for an empty output); an error to raise (an
    extreme over nothing)."""

    shape: tuple
    grid: int
    block: int
    sizes: tuple
    runs: bool
    error: str | None


def _made(step) -> list[str]:
    return [v.name for v in step.node.outputs] if isinstance(step, NodeStep) else [step.output]


def _read(step) -> list[str]:
    return (
        [v.name for v in step.node.inputs if v is not None]
        if isinstance(step, NodeStep)
        else list(step.inputs)
    )


def _last_uses(graph: Graph, steps: list) -> list[list[str]]:
    """Per step, the values some step makes whose last reader it is (outputs excluded)."""
    made = {name for step in steps for name in _made(step)}
    keep = {v.name for v in graph.outputs}
    last: dict[str, int] = {}
    for i, step in enumerate(steps):
        for name in (*_read(step), *_made(step)):  # (a value nobody reads goes right away)
            last[name] = i
    drops: list[list[str]] = [[] for _ in steps]
    for name, i in last.items():
        if name in made and name not in keep:
            drops[i].append(name)
    return drops


def cuda_artifacts(executables: dict[str, CudaGraph]) -> list[tuple[str, str, dict, bytes]]:
    """Module-file artifacts (target, kind, properties, bytes) with the CUDA code of
    `executables` by method name: PTX and a cubin for each of ARCHS, and the CUDA C source.
    Empty where NVRTC is not installed (a loader then compiles, or runs no CUDA)."""
    if not nvrtc.available():
        return []
    major, minor = nvrtc.version()
    out = []
    for method, exe in executables.items():
        if not exe.kernels:
            continue
        source = exe.cuda_source
        for arch in ARCHS:
            for kind in KINDS:
                properties = {
                    "key": code_key(source, kind, arch),
                    "method": method,
                    "arch": str(arch),
                    "compiler": COMPILER_VERSION,
                    "nvrtc": f"{major}.{minor}",
                }
                target = f"cuda/sm_{arch}" if kind == "cubin" else f"cuda/compute_{arch}"
                out.append((target, kind, properties, compiled(source, kind, arch)))
        out.append(("cuda", "cuda-source", {"method": method, "compiler": COMPILER_VERSION}, source.encode()))
    return out


def embedded_code(module_file) -> dict[str, bytes]:
    """The PTX and cubins a module file holds, by key (their checksums checked)."""
    return {
        a.properties["key"]: module_file.artifact_bytes(a)
        for a in module_file.artifacts
        if a.kind in KINDS and "key" in a.properties
    }
