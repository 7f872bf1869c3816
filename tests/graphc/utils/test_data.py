"""Datasets, samplers and DataLoader behaviours, with and without worker processes."""

import numpy as np
import pytest

import graphc
from graphc.utils.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    default_collate,
    get_worker_info,
    random_split,
)


class Squares(Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return {"x": np.full(2, i, np.float32), "y": i * i, "name": f"s{i}"}


class Failing(Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        if i == 4:
            raise KeyError(f"sample {i} is broken")
        return i


class Range(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))


def test_samplers():
    assert list(SequentialSampler(range(5, 15))) == list(range(10))
    graphc.manual_seed(0)
    perm = list(RandomSampler(range(5, 15)))
    assert sorted(perm) == list(range(10)) and perm != list(range(10))
    batches = list(BatchSampler(RandomSampler(range(5, 15)), batch_size=3, drop_last=False))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert len(BatchSampler(range(10), 3, drop_last=True)) == 3
    assert sorted(SubsetRandomSampler([7, 8, 9])) == [7, 8, 9]
    weighted = list(WeightedRandomSampler([0.0, 0.0, 1.0], 5))
    assert weighted == [2] * 5
    assert len(list(RandomSampler(range(4), replacement=True, num_samples=9))) == 9


def test_datasets():
    ds = TensorDataset(graphc.arange(6), graphc.arange(6) * 10)
    assert len(ds) == 6 and [t.item() for t in ds[2]] == [2, 20]
    cat = ConcatDataset([ds, ds])
    assert len(cat) == 12 and cat[7][1].item() == 10 and cat[-1][0].item() == 5
    sub = Subset(ds, [5, 0])
    assert sub[0][0].item() == 5
    graphc.manual_seed(1)
    a, b = random_split(ds, [4, 2])
    assert len(a) == 4 and sorted(a.indices + b.indices) == list(range(6))
    assert [len(s) for s in random_split(range(10), [0.5, 0.3, 0.2])] == [5, 3, 2]
    with pytest.raises(ValueError, match="Size mismatch"):
        TensorDataset(graphc.zeros(3), graphc.zeros(4))


def test_default_collate_nested_structures():
    batch = default_collate([Squares()[i] for i in range(3)])
    assert batch["x"].shape == (3, 2) and batch["y"].tolist() == [0, 1, 4]
    assert batch["name"] == ["s0", "s1", "s2"]
    pairs = default_collate([(graphc.ones(2), 1.5), (graphc.zeros(2), 2.5)])
    assert isinstance(pairs, list) and pairs[1].dtype is graphc.float64
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([graphc.ones(2), graphc.ones(3)])


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_order_batches_and_drop_last(workers):
    ds = TensorDataset(graphc.arange(10).float(), graphc.arange(10))
    loader = DataLoader(ds, batch_size=4, num_workers=workers)
    assert [y.tolist() for _, y in loader] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(loader) == 3
    dropped = DataLoader(ds, batch_size=4, drop_last=True, num_workers=workers)
    assert [y.tolist() for _, y in dropped] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    graphc.manual_seed(5)
    shuffled = [y.tolist() for _, y in DataLoader(ds, batch_size=5, shuffle=True, num_workers=workers)]
    graphc.manual_seed(5)
    again = [y.tolist() for _, y in DataLoader(ds, batch_size=5, shuffle=True, num_workers=workers)]
    assert shuffled == again and sorted(sum(shuffled, [])) == list(range(10))
    unbatched = list(DataLoader(ds, batch_size=None, num_workers=workers))
    assert len(unbatched) == 10 and unbatched[3][1].item() == 3
    custom = DataLoader(ds, batch_sampler=[[9, 0], [5]], num_workers=workers)
    assert [y.tolist() for _, y in custom] == [[9, 0], [5]]


def test_worker_errors_are_reraised_with_their_traceback():
    with pytest.raises(KeyError, match="Caught KeyError in DataLoader worker process 0") as err:
        list(DataLoader(Failing(), batch_size=2, num_workers=2))
    assert "sample 4 is broken" in str(err.value) and "Traceback" in str(err.value)
    with pytest.raises(KeyError, match="sample 4 is broken"):
        list(DataLoader(Failing(), batch_size=2))


def test_iterable_datasets_with_and_without_workers():
    assert [b.tolist() for b in DataLoader(Range(7), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    out = [b.tolist() for b in DataLoader(Range(8), batch_size=2, num_workers=2)]
    assert sorted(sum(out, [])) == list(range(8)) and out[0] == [0, 2] and out[1] == [1, 3]


def test_worker_init_fn_and_worker_info_and_persistent_workers():
    class Info(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            info = get_worker_info()
            return (info.id, info.num_workers, info.seed)

    loader = DataLoader(
        Info(), batch_size=1, num_workers=2, persistent_workers=True, worker_init_fn=lambda wid: None
    )
    first = [tuple(int(v) for v in b) for b in [tuple(t.item() for t in x) for x in loader]]
    assert {f[0] for f in first} == {0, 1} and all(f[1] == 2 for f in first)
    second = [tuple(t.item() for t in x) for x in loader]  # the same workers serve epoch 2
    assert {s[2] for s in second} == {f[2] for f in first}


def test_argument_rules_match_pytorch():
    ds = TensorDataset(graphc.arange(4))
    with pytest.raises(ValueError, match="sampler option is mutually exclusive with shuffle"):
        DataLoader(ds, sampler=SequentialSampler(ds), shuffle=True)
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        DataLoader(ds, batch_sampler=[[0]], batch_size=2)
    with pytest.raises(ValueError, match="mutually exclusive with drop_last"):
        DataLoader(ds, batch_size=None, drop_last=True)
    with pytest.raises(ValueError, match="expected unspecified shuffle option"):
        DataLoader(Range(3), shuffle=True)
    with pytest.raises(ValueError, match="num_workers option should be non-negative"):
        DataLoader(ds, num_workers=-1)
    with pytest.raises(ValueError, match="prefetch_factor option could only be specified"):
        DataLoader(ds, prefetch_factor=2)
    with pytest.raises(ValueError, match="persistent_workers option needs num_workers > 0"):
        DataLoader(ds, persistent_workers=True)
    DataLoader(ds, pin_memory=True, timeout=5)  # accepted


def test_timeouts_and_the_old_next_method():
    import time

    class Slow(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            time.sleep(3)
            return i

    with pytest.raises(RuntimeError, match="DataLoader timed out after 0.5 seconds"):
        list(DataLoader(Slow(), num_workers=1, timeout=0.5))
    it = iter(DataLoader(TensorDataset(graphc.arange(4)), batch_size=2))
    assert it.next()[0].tolist() == [0, 1] and len(it) == 2
