"""CUDA code generation: kernels of the shared kernel IR (codegen.kernel) rendered as CUDA C
(`render`), compiled by NVRTC (`nvrtc`) to PTX and cubins without a GPU."""
