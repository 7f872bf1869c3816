"""Helpers the compiler tests share (importable from any test: pyproject's pytest `pythonpath`
puts tests/ on the path)."""

import numpy as np

from codegen.executable import compile_graph
from ir.interpreter import run


def compare_with_interpreter(graph, inputs, tolerance=0.0):
    """Compile `graph`, run it and the reference interpreter on `inputs`, and check that every
    output has the same dtype and shape and agrees within `tolerance` (NaNs where the
    interpreter has them); the compiled graph, for checks of its schedule."""
    exe = compile_graph(graph)
    with np.errstate(all="ignore"):
        got, want = exe.run(inputs), run(graph, inputs)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance, equal_nan=True)
    return exe
