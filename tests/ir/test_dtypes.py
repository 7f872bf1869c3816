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
