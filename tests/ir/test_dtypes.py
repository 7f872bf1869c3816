"""PyTorch's type promotion, checked against values PyTorch documents."""

import pytest

from ir import dtypes as d


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (d.int32, d.float16, d.float16),
        (d.uint8, d.int8, d.int16),
        (d.uint8, d.int64, d.int64),
        (d.bool_, d.uint8, d.uint8),
        (d.int16, d.int32, d.int32),
        (d.float32, d.float64, d.float64),
        (d.bool_, d.bool_, d.bool_),
        (d.uint8, d.int32, d.int32),
    ],
)
def test_promote_types_matches_pytorch_table(a, b, expected):
    assert d.promote_types(a, b) is expected
    assert d.promote_types(b, a) is expected


def test_result_type_gives_priority_to_dimensioned_tensors():
    # float32 tensor + float64 0-d tensor stays float32; int tensor + float 0-d -> that float
    assert d.result_type([d.float32], [d.float64], []) is d.float32
    assert d.result_type([d.int32], [d.float64], []) is d.float64
    # int tensor + Python float -> the default float; bool tensor + int -> int64
    assert d.result_type([d.int32], [], [d.float32]) is d.float32
    assert d.result_type([d.bool_], [], [d.int64]) is d.int64
    assert d.result_type([d.uint8], [], [d.int64]) is d.uint8


def test_dtype_names_round_trip_and_print_under_graphc():
    for dt in d.ALL:
        assert d.from_name(dt.name) is dt
        assert d.from_numpy(dt.np) is dt
    assert repr(d.float32) == "graphc.float32"
    with pytest.raises(TypeError, match="unknown dtype"):
        d.from_name("float8")


BFLOAT16_ON_FIRST_USE = """
import sys
from ir import dtypes
first = "ml_dtypes" in sys.modules
import ml_dtypes, numpy as np
found = dtypes.from_numpy(np.zeros(2, ml_dtypes.bfloat16).dtype)  # before bfloat16.np was asked for
print(first, found is dtypes.bfloat16, dtypes.bfloat16.np == np.dtype(ml_dtypes.bfloat16))
"""


def test_bfloat16_loads_ml_dtypes_on_first_use():
    """A process that never meets bfloat16 does not import ml_dtypes (~4 ms of a deployed
    model's start-up); an array of it still maps to graphc's bfloat16."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("ml_dtypes")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", BFLOAT16_ON_FIRST_USE], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "True"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        d.float32.nope  # noqa: B018
