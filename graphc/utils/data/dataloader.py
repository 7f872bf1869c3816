"""`DataLoader`: batches from a dataset, in order, optionally fetched by worker processes.

Workers are real processes. The main process hands out batches of indices (at most
`prefetch_factor` per worker ahead), puts results back in sampler order, and re-raises a worker's
exception in the main process with the worker's traceback. The argument rules are PyTorch's.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
import traceback
from dataclasses import dataclass
from typing import Any

from graphc.utils.data.collate import default_collate, default_convert
from graphc.utils.data.dataset import IterableDataset
from graphc.utils.data.sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker process knows about itself (`get_worker_info()` inside a worker)."""

    id: int
    num_workers: int
    seed: int
    dataset: Any


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """This worker's id, the number of workers, its seed and its dataset copy; None in the main
    process."""
    return _worker_info


class _InfiniteConstantSampler(Sampler):
    def __iter__(self):
        while True:
            yield None


class DataLoader:
    """Iterate over `dataset` in batches.

    >>> loader = DataLoader(dataset, batch_size=4, shuffle=True, num_workers=2)
    >>> for inputs, labels in loader:
    ...     ...
    """

    def __init__(
        self,
        dataset,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler=None,
        batch_sampler=None,
        num_workers: int = 0,
        collate_fn=None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn=None,
        multiprocessing_context=None,
        generator=None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
    ) -> None:
        self._workers: _WorkerPool | None = None
        if num_workers < 0:
            raise ValueError(
                "num_workers option should be non-negative; use num_workers=0 to disable multiprocessing."
            )
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError(
                "prefetch_factor option could only be specified in "
                "multiprocessing.let num_workers > 0 to enable multiprocessing, "
                "otherwise set prefetch_factor to None."
            )
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        if prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            for name, value in (("shuffle", shuffle), ("sampler", sampler), ("batch_sampler", batch_sampler)):
                if value is not None and value is not False:
                    raise ValueError(
                        f"DataLoader with IterableDataset: expected unspecified "
                        f"{name} option, but got {name}={value}"
                    )
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "batch_sampler option is mutually exclusive with batch_size, "
                    "shuffle, sampler, and drop_last"
                )
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError(
                "batch_size=None option disables auto-batching and is mutually exclusive with drop_last"
            )
        if sampler is None:
            if self._iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self.num_workers, self.prefetch_factor = num_workers, prefetch_factor
        self.pin_memory, self.timeout = pin_memory, timeout
        self.worker_init_fn, self.generator = worker_init_fn, generator
        self.persistent_workers = persistent_workers
        self.multiprocessing_context = multiprocessing_context
        self.collate_fn = (
            collate_fn
            if collate_fn is not None
            else (default_collate if batch_sampler is not None else default_convert)
        )

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    def _index_batches(self):
        if self._iterable:
            return None
        return iter(self.batch_sampler) if self._auto_collation else iter(self.sampler)

    def __iter__(self) -> _LoaderIterator:
        if self.num_workers == 0:
            return _LoaderIterator(self._single_process(), self.__len__)
        pool = self._workers
        if pool is None or not self.persistent_workers:
            if pool is not None:
                pool.shutdown()
            pool = _WorkerPool(self)
            if self.persistent_workers:
                self._workers = pool
        return _LoaderIterator(pool.epoch(self._index_batches()), self.__len__)

    def _single_process(self):
        fetch = _Fetcher(
            self.dataset,
            self._auto_collation,
            self.collate_fn,
            self.drop_last,
            self.batch_size,
            self._iterable,
        )
        if self._iterable:
            yield from fetch.iterate()
            return
        for indices in self._index_batches():
            yield fetch(indices)

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)  # a TypeError when the dataset has no length, as in PyTorch
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self.batch_sampler) if self._auto_collation else len(self.sampler)

    def __del__(self) -> None:
        if self._workers is not None:
            self._workers.shutdown()


class _LoaderIterator:
    """One pass over a DataLoader; also answers the old `.next()` the tutorials call."""

    def __init__(self, batches, length) -> None:
        self._batches, self._length = batches, length  # length: the loader's __len__

    def __iter__(self) -> _LoaderIterator:
        return self

    def __next__(self):
        return next(self._batches)

    next = __next__

    def __len__(self) -> int:
        return self._length()


class _Fetcher:
    """Turns a batch of indices (or one index) into a collated batch."""

    def __init__(self, dataset, auto_collation, collate_fn, drop_last, batch_size, iterable):
        self.dataset, self.auto_collation, self.collate_fn = dataset, auto_collation, collate_fn
        self.drop_last, self.batch_size, self.iterable = drop_last, batch_size, iterable

    def __call__(self, indices):
        if self.auto_collation:
            getitems = getattr(self.dataset, "__getitems__", None)
            samples = getitems(indices) if getitems else [self.dataset[i] for i in indices]
            return self.collate_fn(samples)
        return self.collate_fn(self.dataset[indices])

    def iterate(self):
        """Batches of an iterable dataset (this process's share of it)."""
        it = iter(self.dataset)
        if not self.auto_collation:
            for sample in it:
                yield self.collate_fn(sample)
            return
        while True:
            batch = []
            for sample in it:
                batch.append(sample)
                if len(batch) == self.batch_size:
                    break
            if not batch or (len(batch) < self.batch_size and self.drop_last):
                return
            yield self.collate_fn(batch)
            if len(batch) < self.batch_size:
                return


class _RemoteError:
    """An exception raised in a worker, carried to the main process with its traceback."""

    def __init__(self, worker_id: int, exc: BaseException) -> None:
        self.exc_type = type(exc)
        self.message = (
            f"Caught {type(exc).__name__} in DataLoader worker process {worker_id}.\n"
            f"Original {''.join(traceback.format_exception(exc))}"
        )

    def reraise(self):
        try:
            err = self.exc_type(self.message)
        except Exception:  # exception types whose constructor takes other arguments
            err = RuntimeError(self.message)
        raise err


_DONE = "__graphc_iterable_worker_done__"


def _worker_loop(worker_id, loader_args, index_queue, result_queue, seed):
    global _worker_info
    # results nobody reads any more (after an error, at shutdown) must not keep us from exiting
    result_queue.cancel_join_thread()
    dataset, auto_collation, collate_fn, drop_last, batch_size, iterable, num_workers, init_fn = loader_args
    from graphc._creation import manual_seed

    manual_seed(seed)
    random.seed(seed)
    _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
    fetch = _Fetcher(dataset, auto_collation, collate_fn, drop_last, batch_size, iterable)
    try:
        if init_fn is not None:
            init_fn(worker_id)
    except Exception as e:  # reported for the first task
        init_error = _RemoteError(worker_id, e)
    else:
        init_error = None
    stream = None
    while True:
        task = index_queue.get()
        if task is None:
            return
        epoch, task_id, indices = task
        if init_error is not None:
            result_queue.put((epoch, task_id, init_error))
            continue
        try:
            if iterable:
                if stream is None or indices == "restart":
                    stream = fetch.iterate()
                data = next(stream, _DONE)
            else:
                data = fetch(indices)
        except Exception as e:
            data = _RemoteError(worker_id, e)
        result_queue.put((epoch, task_id, data))


class _WorkerPool:
    """Worker processes, their queues, and the in-order delivery of one epoch at a time."""

    def __init__(self, loader: DataLoader) -> None:
        from graphc._creation import default_generator

        ctx = loader.multiprocessing_context
        if isinstance(ctx, str) or ctx is None:
            ctx = multiprocessing.get_context(ctx)
        # settings copied, not the loader itself: a pool kept by a loader must not keep it alive
        self.persistent, self.timeout = loader.persistent_workers, loader.timeout
        self.prefetch_factor, self.iterable = loader.prefetch_factor, loader._iterable
        self.result_queue = ctx.Queue()
        self.index_queues = []
        self.workers = []
        gen = loader.generator or default_generator
        base_seed = gen.next_seed() % (1 << 63)
        args = (
            loader.dataset,
            loader._auto_collation,
            loader.collate_fn,
            loader.drop_last,
            loader.batch_size,
            loader._iterable,
            loader.num_workers,
            loader.worker_init_fn,
        )
        for i in range(loader.num_workers):
            q = ctx.Queue()
            q.cancel_join_thread()
            w = ctx.Process(
                target=_worker_loop, args=(i, args, q, self.result_queue, base_seed + i), daemon=True
            )
            w.start()
            self.index_queues.append(q)
            self.workers.append(w)
        self.epoch_id = 0
        self.closed = False

    def _get(self):
        timeout = self.timeout
        while True:
            try:
                return self.result_queue.get(timeout=timeout or 1.0)
            except queue.Empty:
                if timeout:
                    raise RuntimeError(f"DataLoader timed out after {timeout} seconds") from None
                dead = [w for w in self.workers if not w.is_alive()]
                if dead:
                    self.shutdown()
                    pids = ", ".join(str(w.pid) for w in dead)
                    codes = ", ".join(str(w.exitcode) for w in dead)
                    raise RuntimeError(
                        f"DataLoader worker (pid(s) {pids}) exited unexpectedly with exit code(s) {codes}"
                    ) from None

    def epoch(self, index_batches):
        self.epoch_id += 1
        epoch = self.epoch_id
        try:
            if self.iterable:
                yield from self._iterable_epoch(epoch)
            else:
                yield from self._map_epoch(epoch, index_batches)
        finally:
            if not self.persistent:
                self.shutdown()

    def _map_epoch(self, epoch, index_batches):
        n = len(self.workers)
        ahead = max(self.prefetch_factor, 1) * n
        sent = received = 0
        buffer = {}
        exhausted = False

        def send() -> bool:
            nonlocal sent
            try:
                indices = next(index_batches)
            except StopIteration:
                return False
            self.index_queues[sent % n].put((epoch, sent, indices))
            sent += 1
            return True

        while not exhausted and sent < ahead:
            exhausted = not send()
        while received < sent:
            while received not in buffer:
                got_epoch, task_id, data = self._get()
                if got_epoch == epoch:
                    buffer[task_id] = data
            data = buffer.pop(received)
            received += 1
            if not exhausted:
                exhausted = not send()
            if isinstance(data, _RemoteError):
                self.shutdown()
                data.reraise()
            yield data

    def _iterable_epoch(self, epoch):
        active = list(range(len(self.workers)))
        first = {w: True for w in active}
        task = 0
        while active:
            for w in list(active):
                self.index_queues[w].put((epoch, task, "restart" if first[w] else "next"))
                first[w] = False
                got_epoch, _, data = self._get()
                while got_epoch != epoch:
                    got_epoch, _, data = self._get()
                task += 1
                if isinstance(data, _RemoteError):
                    self.shutdown()
                    data.reraise()
                if isinstance(data, str) and data == _DONE:
                    active.remove(w)
                    continue
                yield data

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        for q in self.index_queues:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        for w in self.workers:
            w.join(timeout=1)
            if w.is_alive():  # e.g. at interpreter exit, when queues no longer deliver
                w.terminate()
                w.join(timeout=1)
