"""The cupy stand-ins (tests/fake_cupy.py) name only what real cupy has: where cupy is installed
(the `cuda` extra), every attribute the stand-ins define, down to the methods of their classes,
exists in cupy under the same path. A stand-in that drifted from cupy would let the GPU
device's tests pass against an API no GPU run could meet."""

import inspect
import types

import pytest
from fake_cupy import fake_cupy, numpy_cupy


def _paths(stand_in, prefix="cupy"):
    """(dotted path, attribute) for everything the stand-in defines itself, recursively."""
    names = (
        vars(stand_in)
        if not inspect.isclass(stand_in)
        else {
            n: v for n, v in vars(stand_in).items() if not n.startswith("_") or n in ("__enter__", "__exit__")
        }
    )
    for name, value in names.items():
        if name.startswith("__") and name not in ("__enter__", "__exit__"):
            continue  # the module's own dunders and its numpy fallback (__getattr__)
        yield f"{prefix}.{name}", value
        if (
            isinstance(value, types.SimpleNamespace)
            or inspect.isclass(value)
            and value.__module__ == "fake_cupy"
        ):
            yield from _paths(value, f"{prefix}.{name}")


@pytest.mark.parametrize("stand_in", [numpy_cupy, lambda: fake_cupy([])], ids=["numpy_cupy", "fake_cupy"])
def test_stand_ins_name_only_what_cupy_has(stand_in):
    cupy = pytest.importorskip("cupy")
    missing = []
    for path, _ in _paths(stand_in()):
        found = cupy
        for part in path.split(".")[1:]:
            if not hasattr(found, part):
                missing.append(path)
                break
            found = getattr(found, part)
    assert not missing, f"the stand-in names what cupy {cupy.__version__} lacks: {missing}"


def test_the_walk_sees_every_level():
    paths = {path for path, _ in _paths(fake_cupy([]))}
    assert {
        "cupy.cuda.function.Module.load",
        "cupy.cuda.function.Module.get_function",
        "cupy.cuda.Device.compute_capability",
        "cupy.cuda.Device.__enter__",
        "cupy.cuda.runtime.driverGetVersion",
        "cupy.cuda.driver.CUDADriverError",
    } <= paths
    assert {"cupy.ndarray.get", "cupy.ndarray.device", "cupy.asarray"} <= {p for p, _ in _paths(numpy_cupy())}
