"""graphc's code generators: graph IR -> kernels -> native code.

`schedule` partitions a graph into kernels of the kernel IR (`kernel`: elementwise expressions
with reductions, matmuls and convolutions with epilogues, max pooling); `llvm.render` turns them
into LLVM IR, `llvm.compiler` compiles that for this CPU (`host` says what the code depends on,
`library` caches it as shared libraries), `plan` runs a whole graph in one native call over a
planned arena (its execution plan, data compiled into the library, runs the graph again without
scheduling it: `plan.planned`), `llvm.pool` splits large kernels over the cores, and
`executable.CompiledGraph` ties it together (interpreter nodes included; `specialized`
compiles graphs with symbolic image sizes once per size). `cuda.render`
turns the same kernels into CUDA C, `cuda.nvrtc` compiles it, `cuda.device` loads and launches
it (cupy, or `cuda.emulate` on the CPU) and `cuda.executable.CudaGraph` runs a graph on a GPU.
Imports `ir` only, never `graphc` or `runtime`.

    >>> from codegen.executable import compile_graph
    >>> exe = compile_graph(graph)
    >>> print(exe)                   # the schedule: which nodes went into which kernel
    >>> (y,) = exe.run([x])
"""

BACKENDS = ("interpreter", "llvm", "cuda")  # what codegen.executable.executable makes ready to run


def ready(graph, backend: str = "llvm", embedded: dict | None = None, device=None):
    """`graph` ready to run on `backend` (codegen.executable.executable's arguments). On the
    CPU, a graph whose compiled library (with its execution plan) is in the cache or in
    `embedded` runs from that plan (codegen.plan.planned): the compiler (scheduler, kernel IR,
    LLVM) is imported only where the code must be made here. A graph whose convolutions or
    poolings read symbolic spatial dims is compiled once per size of those
    (codegen.specialized.PerSize)."""
    if backend in ("llvm", "cuda"):
        from codegen.specialized import PerSize, fixed_symbols

        fixed = fixed_symbols(graph)
        if fixed:
            return PerSize(graph, fixed, lambda g: _ready(g, backend, embedded, device))
    return _ready(graph, backend, embedded, device)


def _ready(graph, backend: str, embedded: dict | None, device):
    if backend == "llvm":
        from codegen.plan import planned

        exe = planned(graph, embedded)
        if exe is not None:
            return exe
    from codegen.executable import executable

    return executable(graph, backend, embedded, device)
