"""Helpers the compiler tests share (importable from any test: pyproject's pytest `pythonpath`
puts tests/ on the path)."""

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from codegen.cuda import emulate, nvrtc
from codegen.cuda.emulate import EmulatedDevice
from codegen.cuda.executable import CudaGraph
from codegen.cuda.render import render_module
from codegen.executable import compile_graph
from codegen.schedule import KernelStep, schedule
from ir.interpreter import run
from ir.passes import optimize


def compare_with_interpreter(graph, inputs, tolerance=0.0):
    """Compile `graph`, run it and the reference interpreter on `inputs`, and check that every
    output has the same dtype and shape and agrees within `tolerance` (NaNs where the
    interpreter has them); the compiled graph, for checks of its schedule. The same graph's
    CUDA kernels are checked too (`compare_cuda_with_interpreter`)."""
    exe = compile_graph(graph)
    with np.errstate(all="ignore"):
        got, want = exe.run(inputs), run(graph, inputs)
    _check(got, want, tolerance)
    compare_cuda_with_interpreter(graph, inputs, tolerance, want)
    return exe


_compiled: set[str] = set()  # CUDA sources NVRTC has compiled and checked


def compare_cuda_with_interpreter(graph, inputs, tolerance=0.0, want=None):
    """Where NVRTC and a C++ compiler are installed: the graph's CUDA module compiles to PTX
    for sm_80 and to an sm_90 cubin without register spills, and its emulation on the CPU
    (threads shuffled, 2 blocks of 32 so grid-stride loops go round) agrees with the
    interpreter (or `want`, its outputs) within `tolerance`."""
    kernels = [s.kernel for s in schedule(optimize(graph)) if isinstance(s, KernelStep)]
    source = render_module(kernels)
    checks = None
    if nvrtc.available() and kernels and source not in _compiled:  # (once per source)
        _compiled.add(source)
        # NVRTC (through ctypes, which lets go of the GIL) on the other core while g++
        # builds the emulation below
        checks = _background.submit(_compile_for_gpus, source, len(kernels))
    exe = (
        CudaGraph(graph, EmulatedDevice("shuffled", max_blocks=2, threads=32)) if emulate.compiler() else None
    )
    if checks is not None:
        checks.result()
    if exe is None:
        return
    with np.errstate(all="ignore"):
        got = exe.run(inputs)
        want = run(graph, inputs) if want is None else want
    _check(got, want, tolerance)


def _compile_for_gpus(source: str, kernels: int) -> None:
    assert b".target sm_80" in nvrtc.compile(source, arch="compute_80")
    # PTX for compute_90, assembled to an sm_90 cubin, without register spills
    report = nvrtc.resource_report(source, arch="sm_90")
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
    assert len(spills) >= kernels and all(s == ("0", "0") for s in spills), report


_background = ThreadPoolExecutor(max_workers=1)


def _check(got, want, tolerance):
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance, equal_nan=True)
