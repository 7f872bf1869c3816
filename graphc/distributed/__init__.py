"""`graphc.distributed`: torch.distributed's API for one process (world size 1).

graphc trains in one process, so a process group here has exactly one member: rank 0 of 1.
That is enough for scripts written for `torch.distributed` (the cheat sheet's DDP recipe:
`init_process_group`, `DistributedDataParallel`, `DistributedSampler`, collectives,
`destroy_process_group`) to run unchanged on one machine, where every collective leaves its
tensors as they are (the sum, mean, minimum... of one tensor is that tensor). Asking for more
processes (`world_size`, or `WORLD_SIZE` in the environment, above 1) is a DistributedError:
multi-process training is not implemented. `python -m graphc.distributed.launch` runs a
script as the launcher's one process.

    >>> import graphc.distributed as dist
    >>> dist.init_process_group("gloo")
    >>> dist.all_reduce(t)                     # t unchanged: the sum over one process
    >>> dist.destroy_process_group()
"""

from __future__ import annotations

import enum
import os
import threading

from graphc.errors import DistributedError

BACKENDS = ("gloo", "nccl", "mpi", "ucc")


class ReduceOp(enum.Enum):
    """How a collective combines the processes' tensors."""

    SUM = "sum"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    BAND = "band"
    BOR = "bor"
    BXOR = "bxor"
    AVG = "avg"


class ProcessGroup:
    """A group of processes: here the one process, rank 0 of 1."""

    def __init__(self, backend: str) -> None:
        self.backend = backend

    def rank(self) -> int:
        return 0

    def size(self) -> int:
        return 1

    def __repr__(self) -> str:
        return f"ProcessGroup(backend={self.backend!r}, rank=0, world_size=1)"


class Work:
    """The handle of a collective started with `async_op=True` (done at once here)."""

    def wait(self, timeout=None) -> bool:
        return True

    def is_completed(self) -> bool:
        return True


class GroupMember:
    WORLD: ProcessGroup | None = None  # the default group, once initialized


_lock = threading.Lock()


def is_available() -> bool:
    return True


def is_gloo_available() -> bool:
    return True


def is_nccl_available() -> bool:
    return True


def is_mpi_available() -> bool:
    return False


def is_initialized() -> bool:
    return GroupMember.WORLD is not None


def _env_int(name: str, given: int, default: int) -> int:
    if given != -1:
        return given
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise DistributedError(
            f"init_process_group: environment variable {name}={text!r} is not an integer"
        ) from None


def init_process_group(
    backend: str | None = None,
    init_method: str | None = None,
    timeout=None,
    world_size: int = -1,
    rank: int = -1,
    store=None,
    group_name: str = "",
    pg_options=None,
    device_id=None,
) -> None:
    """Start the default process group: this process, rank 0 of a world of 1. `world_size`
    and `rank` default to WORLD_SIZE and RANK in the environment (as the `env://` method
    reads them; 1 and 0 where unset). `backend`: 'gloo', 'nccl', 'mpi', 'ucc' or a
    'device:backend' list such as 'cpu:gloo,cuda:nccl' (default 'gloo'); with one process
    nothing is sent, so each works on any device."""
    name = "gloo" if backend is None else str(backend).lower()
    parts = [p.split(":")[-1] for p in name.split(",")]
    if not all(p in BACKENDS for p in parts):
        raise DistributedError(f"init_process_group: unknown backend {backend!r}; expected one of {BACKENDS}")
    if init_method is not None and not str(init_method).startswith(("env://", "tcp://", "file://")):
        raise DistributedError(
            f"init_process_group: unknown init_method {init_method!r}; expected 'env://', 'tcp://...' or 'file://...'"
        )
    size = _env_int("WORLD_SIZE", world_size, 1)
    me = _env_int("RANK", rank, 0)
    if size != 1:
        raise DistributedError(
            f"init_process_group: world_size {size} asked for (from "
            f"{'the argument' if world_size != -1 else 'WORLD_SIZE'}); graphc.distributed runs one process "
            "(world size 1): multi-process training is not implemented"
        )
    if me != 0:
        raise DistributedError(f"init_process_group: rank {me} of a world of 1; the one process is rank 0")
    with _lock:
        if GroupMember.WORLD is not None:
            raise DistributedError("trying to initialize the default process group twice!")
        GroupMember.WORLD = ProcessGroup(name)


def _group(group, what: str) -> ProcessGroup:
    world = GroupMember.WORLD
    if world is None:
        raise DistributedError(
            f"{what}: Default process group has not been initialized, please make sure to call "
            "init_process_group."
        )
    if group is not None and not isinstance(group, ProcessGroup):
        raise DistributedError(
            f"{what}: expected a ProcessGroup (or None for the default one), got {group!r}"
        )
    return group or world


def destroy_process_group(group: ProcessGroup | None = None) -> None:
    """End the default group (or `group`, the default one or one from `new_group`)."""
    _group(group, "destroy_process_group")
    if group is None or group is GroupMember.WORLD:
        GroupMember.WORLD = None


def new_group(
    ranks=None, timeout=None, backend: str | None = None, pg_options=None, **kwargs
) -> ProcessGroup:
    """A group of `ranks` (default all): only [0] exists here."""
    world = _group(None, "new_group")
    if ranks is not None and sorted(ranks) != [0]:
        raise DistributedError(f"new_group: ranks {list(ranks)} asked for; the world has rank 0 only")
    return ProcessGroup(backend or world.backend)


def get_rank(group: ProcessGroup | None = None) -> int:
    return _group(group, "get_rank").rank()


def get_world_size(group: ProcessGroup | None = None) -> int:
    return _group(group, "get_world_size").size()


def get_backend(group: ProcessGroup | None = None) -> str:
    return _group(group, "get_backend").backend


def _done(async_op: bool) -> Work | None:
    return Work() if async_op else None


def _collective(what: str, tensor, group, **ranks: int) -> None:
    """The checks of every collective: a process group, a graphc.Tensor, ranks that exist."""
    from graphc._tensor import Tensor

    _group(group, what)
    if not isinstance(tensor, Tensor):
        raise DistributedError(f"{what}: expected a graphc.Tensor, got {type(tensor).__name__}")
    for argument, rank in ranks.items():
        if rank != 0:
            raise DistributedError(f"{what}: invalid {argument} rank {rank}; the world has rank 0 only")


def _one_each(items: list | None, what: str, name: str) -> None:
    """`items` holds one entry per process: one."""
    if items is None or len(items) != 1:
        given = "is None" if items is None else f"has {len(items)} entries"
        raise DistributedError(f"{what}: {name} {given}; it takes one per process, and the world size is 1")


def _check_op(op, what: str) -> None:
    if not isinstance(op, ReduceOp):
        raise DistributedError(f"{what}: expected a ReduceOp (e.g. ReduceOp.SUM), got {op!r}")


def barrier(group: ProcessGroup | None = None, async_op: bool = False, device_ids=None) -> Work | None:
    _group(group, "barrier")
    return _done(async_op)


def all_reduce(tensor, op: ReduceOp = ReduceOp.SUM, group=None, async_op: bool = False) -> Work | None:
    """Combine `tensor` over the processes, in place: over one process it stays as it is."""
    _collective("all_reduce", tensor, group)
    _check_op(op, "all_reduce")
    return _done(async_op)


def reduce(
    tensor, dst: int = 0, op: ReduceOp = ReduceOp.SUM, group=None, async_op: bool = False
) -> Work | None:
    _collective("reduce", tensor, group, dst=dst)
    _check_op(op, "reduce")
    return _done(async_op)


def broadcast(tensor, src: int = 0, group=None, async_op: bool = False) -> Work | None:
    _collective("broadcast", tensor, group, src=src)
    return _done(async_op)


def all_gather(tensor_list: list, tensor, group=None, async_op: bool = False) -> Work | None:
    """Every process's `tensor` into `tensor_list` (one tensor per process: here one)."""
    _collective("all_gather", tensor, group)
    _one_each(tensor_list, "all_gather", "tensor_list")
    tensor_list[0].copy_(tensor)
    return _done(async_op)


def gather(tensor, gather_list: list | None = None, dst: int = 0, group=None, async_op: bool = False):
    _collective("gather", tensor, group, dst=dst)
    _one_each(gather_list, "gather", "gather_list")
    gather_list[0].copy_(tensor)
    return _done(async_op)


def scatter(tensor, scatter_list: list | None = None, src: int = 0, group=None, async_op: bool = False):
    _collective("scatter", tensor, group, src=src)
    _one_each(scatter_list, "scatter", "scatter_list")
    tensor.copy_(scatter_list[0])
    return _done(async_op)


def all_gather_object(object_list: list, obj, group=None) -> None:
    _group(group, "all_gather_object")
    _one_each(object_list, "all_gather_object", "object_list")
    object_list[0] = obj


def broadcast_object_list(object_list: list, src: int = 0, group=None, device=None) -> None:
    _group(group, "broadcast_object_list")
    if src != 0:
        raise DistributedError(f"broadcast_object_list: invalid src rank {src}; the world has rank 0 only")


__all__ = [
    "GroupMember",
    "ProcessGroup",
    "ReduceOp",
    "Work",
    "all_gather",
    "all_gather_object",
    "all_reduce",
    "barrier",
    "broadcast",
    "broadcast_object_list",
    "destroy_process_group",
    "gather",
    "get_backend",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "is_available",
    "is_gloo_available",
    "is_initialized",
    "is_mpi_available",
    "is_nccl_available",
    "new_group",
    "reduce",
    "scatter",
]
