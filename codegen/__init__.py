"""graphc's code generators: graph IR -> kernels -> native code.

So far: `schedule` fuses chains of float elementwise ops into `Kernel`s (the loop-level kernel IR
in `kernel`), `llvm.render` turns them into LLVM IR, `llvm.compiler` compiles that for this CPU,
and `executable.CompiledGraph` runs the kernels natively and every other node on the reference
interpreter. Imports `ir` only, never `graphc` or `runtime`.

    >>> from codegen.executable import compile_graph
    >>> exe = compile_graph(graph)
    >>> print(exe)                   # the schedule: which nodes went into which kernel
    >>> (y,) = exe.run([x])
"""
