"""graphc.distributed: torch.distributed's API for one process. The cheat sheet's DDP recipe runs
unchanged (directly and through the launcher), collectives over one process leave tensors as
they are, and what needs more than one process, or a process group that is not there, is a
DistributedError saying so."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc
import graphc.distributed as dist
from graphc.errors import DistributedError

ROOT = Path(__file__).resolve().parents[2]

SEED_RECIPE = """
import argparse
import graphc as torch
import graphc.distributed as dist
from graphc.nn.parallel import DistributedDataParallel as DDP

parser = argparse.ArgumentParser()
parser.add_argument("--local_rank", type=int)
parser.add_argument("--epochs", type=int, default=1)
args = parser.parse_args()
torch.distributed.init_process_group(backend="nccl", init_method="env://")
torch.manual_seed(0)
model = DDP(torch.nn.Linear(4, 2), device_ids=[args.local_rank])
dataset = torch.utils.data.TensorDataset(torch.randn(10, 4), torch.randn(10, 2))
sampler = torch.utils.data.distributed.DistributedSampler(dataset)
dataloader = torch.utils.data.DataLoader(dataset, 4, num_workers=0, sampler=sampler)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(args.epochs):
    sampler.set_epoch(epoch)
    for x, y in dataloader:
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
print(dist.get_rank(), dist.get_world_size(), args.local_rank, args.epochs, dist.get_backend())
dist.destroy_process_group()
"""


@pytest.fixture(autouse=True)
def _no_group():
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def _run(tmp_path, *command, env=None):
    script = tmp_path / "train.py"
    script.write_text(SEED_RECIPE)
    argv = [sys.executable, *[str(script) if c == "train.py" else c for c in command]]
    environment = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    return subprocess.run(
        argv, cwd=ROOT, env={**environment, **(env or {})}, capture_output=True, text=True, timeout=120
    )


def test_the_cheat_sheets_ddp_recipe_runs_through_the_launcher(tmp_path):
    done = _run(
        tmp_path, "-m", "graphc.distributed.launch", "--nproc_per_node=1", "train.py", "--epochs", "2"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "1", "0", "2", "nccl"]


def test_torchruns_command_line_passes_the_local_rank_in_the_environment_only(tmp_path):
    done = _run(tmp_path, "-m", "graphc.distributed.run", "--nproc-per-node", "1", "train.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "1", "None", "1", "nccl"]
    done = _run(tmp_path, "-m", "graphc.distributed.run", "--nproc-per-node", "2", "train.py")
    assert done.returncode != 0 and "graphc.distributed.run: 1 node(s) x 2 process(es)" in done.stderr


def test_the_recipe_runs_without_a_launcher_and_refuses_more_processes(tmp_path):
    done = _run(tmp_path, "train.py", "--local_rank", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "1", "0", "1", "nccl"]
    done = _run(tmp_path, "train.py", env={"WORLD_SIZE": "2"})
    assert done.returncode != 0
    assert "DistributedError: init_process_group: world_size 2 asked for (from WORLD_SIZE)" in done.stderr
    done = _run(tmp_path, "-m", "graphc.distributed.launch", "--nproc_per_node=4", "train.py")
    assert done.returncode != 0 and "4 process(es) asked for" in done.stderr


def test_collectives_over_one_process_leave_tensors_as_they_are():
    dist.init_process_group("gloo", world_size=1, rank=0)
    assert (dist.get_rank(), dist.get_world_size(), dist.is_initialized()) == (0, 1, True)
    t = graphc.tensor([1.0, -2.0, 3.0])
    for op in dist.ReduceOp:
        assert dist.all_reduce(t, op=op) is None
        np.testing.assert_array_equal(t.numpy(), [1.0, -2.0, 3.0])
    work = dist.all_reduce(t, async_op=True)
    assert work.wait() and work.is_completed()
    dist.broadcast(t, src=0)
    dist.reduce(t, dst=0)
    gathered = [graphc.zeros(3)]
    dist.all_gather(gathered, t)
    np.testing.assert_array_equal(gathered[0].numpy(), t.numpy())
    into = [graphc.zeros(3)]
    dist.gather(t * 2, into, dst=0)
    np.testing.assert_array_equal(into[0].numpy(), [2.0, -4.0, 6.0])
    out = graphc.zeros(3)
    dist.scatter(out, [t + 1], src=0)
    np.testing.assert_array_equal(out.numpy(), [2.0, -1.0, 4.0])
    objects = [None]
    dist.all_gather_object(objects, {"step": 3})
    assert objects == [{"step": 3}]
    assert dist.new_group([0]).size() == 1
    dist.barrier()


def test_misuse_is_a_distributed_error():
    with pytest.raises(DistributedError, match="has not been initialized"):
        dist.get_rank()
    with pytest.raises(DistributedError, match="unknown backend 'bogus'"):
        dist.init_process_group("bogus")
    with pytest.raises(DistributedError, match="world_size 3 asked for"):
        dist.init_process_group("gloo", world_size=3)
    with pytest.raises(DistributedError, match="rank 1 of a world of 1"):
        dist.init_process_group("gloo", rank=1)
    dist.init_process_group("cpu:gloo,cuda:nccl")
    with pytest.raises(DistributedError, match="twice"):
        dist.init_process_group("gloo")
    t = graphc.ones(2)
    with pytest.raises(DistributedError, match="invalid src rank 1"):
        dist.broadcast(t, src=1)
    with pytest.raises(DistributedError, match="expected a ReduceOp"):
        dist.all_reduce(t, op="sum")
    with pytest.raises(DistributedError, match="expected a graphc.Tensor, got ndarray"):
        dist.all_reduce(np.ones(2))
    with pytest.raises(DistributedError, match="tensor_list has 2 entries; it takes one per process"):
        dist.all_gather([graphc.ones(2), graphc.ones(2)], t)
    with pytest.raises(DistributedError, match="ranks \\[0, 1\\]"):
        dist.new_group([0, 1])
    assert isinstance(DistributedError("x"), ValueError)  # (PyTorch raises ValueError for these)
    dist.destroy_process_group()
    assert not dist.is_initialized()
