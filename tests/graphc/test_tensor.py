"""The Tensor API: creation and dtype inference, indexing and views, the numpy bridge,
in-place ops and out=, conversions, devices."""

import numpy as np
import pytest

import graphc


def test_tensor_infers_dtypes_like_pytorch():
    assert graphc.tensor([1, 2]).dtype is graphc.int64
    assert graphc.tensor([1.0, 2]).dtype is graphc.float32
    assert graphc.tensor([True, False]).dtype is graphc.bool
    assert graphc.tensor(np.ones(2)).dtype is graphc.float64
    assert graphc.tensor(np.ones(2, np.int32)).dtype is graphc.int32
    assert graphc.tensor([]).dtype is graphc.float32
    assert graphc.tensor([graphc.tensor(1.0), graphc.tensor(2.0)]).tolist() == [1.0, 2.0]
    assert graphc.tensor(((2, 4, 6), [3, 6, 9])).shape == (2, 3)
    with pytest.raises(ValueError, match="uneven"):
        graphc.tensor([[1, 2], [3]])
    with pytest.raises(TypeError):
        graphc.tensor(["a"])


def test_tensor_copies_and_from_numpy_shares():
    a = np.ones(3)
    t = graphc.tensor(a)
    s = graphc.from_numpy(a)
    a[0] = 7
    assert t[0].item() == 1 and s[0].item() == 7
    s[1] = 9
    assert a[1] == 9
    n = graphc.ones(2).numpy()
    assert isinstance(n, np.ndarray)


def test_factories():
    assert graphc.zeros(2, 3).shape == (2, 3) and graphc.zeros((2, 3)).tolist() == [[0] * 3] * 2
    assert graphc.ones((5, 3), dtype=graphc.int16).dtype is graphc.int16
    assert graphc.full((2,), 7).dtype is graphc.int64 and graphc.full((2,), 7.0).dtype is graphc.float32
    assert graphc.eye(2, 3).tolist() == [[1, 0, 0], [0, 1, 0]]
    assert graphc.arange(5).tolist() == [0, 1, 2, 3, 4] and graphc.arange(5).dtype is graphc.int64
    assert graphc.arange(1, 2.5, 0.5).tolist() == [1.0, 1.5, 2.0]
    assert graphc.linspace(0, 1, 5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert graphc.Tensor(5, 3).shape == (5, 3) and graphc.Tensor(5, 3).dtype is graphc.float32
    assert graphc.Tensor([1, 2]).dtype is graphc.float32
    assert graphc.FloatTensor([0.1, 1.0]).dtype is graphc.float32
    assert graphc.LongTensor(2, 2).dtype is graphc.int64
    x = graphc.rand(2, 3, dtype=graphc.float64)
    assert graphc.zeros_like(x).dtype is graphc.float64 and graphc.rand_like(x).shape == (2, 3)
    assert x.new_zeros(4).dtype is graphc.float64 and x.new_tensor([1, 2]).dtype is graphc.float64
    assert x.new_full((2,), 3).tolist() == [3.0, 3.0]
    assert graphc.empty(2, 2).shape == (2, 2) and graphc.ones_like(x).sum().item() == 6


def test_random_ops_are_reproducible_and_well_distributed():
    graphc.manual_seed(1729)
    r1, r2 = graphc.rand(2, 2), graphc.rand(2, 2)
    graphc.manual_seed(1729)
    r3, r4 = graphc.rand(2, 2), graphc.rand(2, 2)
    assert graphc.equal(r1, r3) and graphc.equal(r2, r4) and not graphc.equal(r1, r2)
    graphc.manual_seed(0)
    big = graphc.randn(100000)
    assert abs(big.mean().item()) < 0.02 and abs(big.std().item() - 1) < 0.02
    u = graphc.rand(100000)
    assert 0 <= u.min().item() and u.max().item() < 1
    ints = graphc.randint(3, 7, (1000,))
    assert ints.min().item() == 3 and ints.max().item() == 6 and ints.dtype is graphc.int64
    assert sorted(graphc.randperm(5).tolist()) == [0, 1, 2, 3, 4]
    g = graphc.Generator().manual_seed(5)
    a = graphc.rand(3, generator=g)
    assert graphc.equal(a, graphc.rand(3, generator=graphc.Generator().manual_seed(5)))
    n = graphc.normal(2.0, 0.5, size=(10000,))
    assert abs(n.mean().item() - 2) < 0.05
    state = graphc.get_rng_state()
    x = graphc.rand(2)
    graphc.set_rng_state(state)
    assert graphc.equal(x, graphc.rand(2))


def test_basic_indexing_returns_views():
    a = graphc.ones(2, 2)
    b = a
    a[0][1] = 561
    assert b.tolist() == [[1, 561], [1, 1]]
    x = graphc.arange(24).view(2, 3, 4)
    assert x[1, 2, 3].item() == 23 and x[-1].shape == (3, 4)
    assert x[:, 1].shape == (2, 4) and x[..., 0].shape == (2, 3) and x[None].shape == (1, 2, 3, 4)
    assert x[:, ::2, 1:3].tolist() == [[[1, 2], [9, 10]], [[13, 14], [21, 22]]]
    v = x[0, :, 1]
    v[0] = -1
    assert x[0, 0, 1].item() == -1 and v._version == x._version
    with pytest.raises(IndexError, match="out of bounds"):
        x[2]
    with pytest.raises(IndexError, match="too many indices"):
        x[0, 0, 0, 0]
    with pytest.raises(ValueError, match="step must be positive"):
        x[::-1]


def test_advanced_indexing_matches_numpy():
    n = np.arange(24).reshape(2, 3, 4)
    x = graphc.tensor(n)
    for key in [
        ([1, 0],),
        (graphc.tensor([1, 1]),),
        (slice(None), [0, 2], 1),
        (0, slice(None), [1, 2]),
        ([0, 1], slice(None), [1, 2]),
        (x > 10,),
        (x[:, :, 0] > 5,),
        (Ellipsis, [3, 0]),
    ]:
        np_key = tuple(k.numpy() if isinstance(k, graphc.Tensor) else k for k in key)
        assert x[key].tolist() == n[np_key].tolist(), key


def test_setitem_broadcasts_and_masks():
    x = graphc.zeros(3, 4)
    x[1] = 5
    x[:, 0] = graphc.tensor([1.0, 2.0, 3.0])
    x[x > 4] = -1
    x[[0, 2], [3, 3]] = 9
    assert x.tolist() == [[1, 0, 0, 9], [2, -1, -1, -1], [3, 0, 0, 9]]
    with pytest.raises(ValueError):
        x[0] = graphc.ones(3)


def test_inplace_ops_out_and_version():
    a = graphc.ones(2, 2)
    v0 = a._version
    assert a.add_(graphc.ones(2, 2)) is a and a._version == v0 + 1
    a.mul_(3).sub_(1).div_(5)
    assert a.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    a += 1
    a *= 2
    assert a.tolist() == [[4.0, 4.0], [4.0, 4.0]]
    with pytest.raises(TypeError, match="can't be cast"):
        graphc.ones(2, dtype=graphc.int64).add_(1.5)
    with pytest.raises(graphc.ShapeError, match="doesn't match the broadcast shape"):
        graphc.ones(2).add_(graphc.ones(2, 2))
    r = graphc.empty(2)
    out = graphc.add(graphc.ones(2), 1, out=r)
    assert out is r and r.tolist() == [2.0, 2.0]
    graphc.rand(2, 2, out=r)
    assert r.shape == (2, 2)
    z = graphc.zeros(3)
    z.fill_(2).zero_()
    assert z.tolist() == [0, 0, 0]
    z.copy_(graphc.tensor([1, 2, 3]))
    assert z.tolist() == [1.0, 2.0, 3.0]
    b = graphc.rand(3, 226, 226)
    b.unsqueeze_(0)
    assert b.shape == (1, 3, 226, 226)
    b.squeeze_()
    assert b.shape == (3, 226, 226)


def test_conversions():
    x = graphc.tensor([1.7, -1.7])
    assert x.long().tolist() == [1, -1] and x.int().dtype is graphc.int32
    assert x.double().dtype is graphc.float64 and x.half().dtype is graphc.float16
    assert x.to(graphc.int32).tolist() == [1, -1] and x.bool().tolist() == [True, True]
    assert x.type_as(graphc.tensor([1])).dtype is graphc.int64
    assert x.type() == "graphc.FloatTensor" and x.to("cpu") is x
    assert x.item.__self__ is x and graphc.tensor([3]).item() == 3
    assert float(graphc.tensor(2.5)) == 2.5 and int(graphc.tensor(3)) == 3
    with pytest.raises(ValueError, match="cannot be converted to a Python scalar"):
        x.item()
    assert x.clone() is not x and graphc.equal(x.clone(), x)
    assert x.size() == graphc.Size([2]) and x.size(0) == 2 and x.dim() == 1 and x.numel() == 2
    assert graphc.Size([2, 3]) == (2, 3) and repr(graphc.Size([2, 3])) == "graphc.Size([2, 3])"
    assert x.is_floating_point() and x.device == graphc.device("cpu")
    assert str(graphc.float32) == "graphc.float32"


def test_devices_without_cuda():
    assert graphc.cuda.is_available() is False and graphc.cuda.device_count() == 0
    d = graphc.device("cuda:1")
    assert d.type == "cuda" and d.index == 1 and str(d) == "cuda:1"
    with pytest.raises(graphc.DeviceError, match="CUDA is not available"):
        graphc.ones(2, device="cuda")
    with pytest.raises(graphc.DeviceError, match="CUDA is not available"):
        graphc.ones(2).cuda()
    with pytest.raises(graphc.DeviceError, match="unknown device type"):
        graphc.device("gpu")


def test_bfloat16_when_ml_dtypes_is_installed():
    pytest.importorskip("ml_dtypes")
    x = graphc.tensor([1.5, 2.25], dtype=graphc.bfloat16)
    assert repr(x) == "tensor([1.5000, 2.2500], dtype=graphc.bfloat16)"
    assert (x + 1).dtype is graphc.bfloat16 and (x * graphc.ones(2)).dtype is graphc.float32
    assert graphc.promote_types(graphc.bfloat16, graphc.float16) is graphc.float32
    y = graphc.ones(2, dtype=graphc.bfloat16, requires_grad=True)
    (y * 3).sum().backward()
    assert y.grad.dtype is graphc.bfloat16 and y.grad.tolist() == [3.0, 3.0]
