"""graphc's code generators: graph IR -> kernels for LLVM (CPU) and CUDA.

Nothing is generated yet: the capture/IR issue and the CPU compiler issue build this package.
It imports `ir` only, never `graphc` or `runtime`.
"""
