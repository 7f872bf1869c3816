"""The LLVM backend: kernel IR -> LLVM IR (`render`) -> native code for this CPU (`compiler`)."""
