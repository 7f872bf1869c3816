"""The C part of graphc: codegen._fastcall, the call path of compiled graphs (everything else is
in pyproject.toml). It is optional: without a C compiler the install goes on without it and
compiled graphs are called through ctypes (codegen/plan.py), a few microseconds slower a call."""

import numpy
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "codegen._fastcall",
            ["codegen/_fastcall.c"],
            include_dirs=[numpy.get_include()],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
