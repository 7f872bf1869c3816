"""The native worker pool: every part of a job runs exactly once, concurrent callers and forked
children get correct results, a process with live workers exits promptly, a worker on the
dispatcher's CPU moves off it, and an idle worker ends up asleep."""

import multiprocessing
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import codegen.plan as plan
from codegen.executable import _address, compile_graph
from codegen.llvm.pool import Pool
from ir.parser import parse_graph

GRAPH = """
graph g(%x: f32[batch,64]) {
  %0: f32[batch,64] = exp(%x)
  %1: f32[batch,64] = mul(%0, %x)
  return %1
}"""


def _forced_parallel(monkeypatch, workers: int = 3):
    monkeypatch.setattr(plan, "PARALLEL_MIN_POINTS", 0)
    monkeypatch.setattr(plan, "workers", lambda: workers)


def test_every_part_runs_once_for_any_split():
    exe = compile_graph(parse_graph(GRAPH))
    entry = exe._functions[exe.steps[0].kernel.name]
    pool = Pool(3)
    try:
        for rows in (1, 2, 7, 100, 1001):
            x = np.random.default_rng(rows).standard_normal((rows, 64)).astype(np.float32)
            for parts in (1, 2, 3, 5, 16):
                out = np.full_like(x, np.nan)
                pool.run(entry.packed, (_address(out), _address(x)), rows, min(parts, rows))
                np.testing.assert_allclose(out, np.exp(x) * x, rtol=1e-6)
    finally:
        pool.close()


def test_concurrent_callers(monkeypatch):
    _forced_parallel(monkeypatch)
    exe = compile_graph(parse_graph(GRAPH))
    failures = []

    def call(seed):
        x = np.random.default_rng(seed).standard_normal((50 + seed, 64)).astype(np.float32)
        for _ in range(20):
            (out,) = exe.run([x])
            if not np.allclose(out, np.exp(x) * x, rtol=1e-6):
                failures.append(seed)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def _child(queue):
    exe = compile_graph(parse_graph(GRAPH))
    x = np.linspace(-1, 1, 64 * 300, dtype=np.float32).reshape(300, 64)
    plan.PARALLEL_MIN_POINTS = 0
    (out,) = exe.run([x])
    queue.put(bool(np.allclose(out, np.exp(x) * x, rtol=1e-6)))


def test_a_forked_child_gets_its_own_workers(monkeypatch):
    _forced_parallel(monkeypatch)
    exe = compile_graph(parse_graph(GRAPH))
    exe.run([np.ones((300, 64), np.float32)])  # the parent's pool exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue,))
    process.start()
    assert queue.get(timeout=60) is True
    process.join(timeout=60)
    assert process.exitcode == 0


def test_a_process_with_workers_exits_promptly():
    code = (
        "import numpy as np, codegen.plan as p\n"
        "from codegen.executable import compile_graph\n"
        "from ir.parser import parse_graph\n"
        f"exe = compile_graph(parse_graph({GRAPH!r}))\n"
        "p.PARALLEL_MIN_POINTS = 0\n"
        "print(exe.run([np.ones((1000, 64), np.float32)])[0].sum())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert abs(float(done.stdout) - np.e * 64000) < 1e-4 * np.e * 64000


STEP_ASIDE = f"""
import os, time
import numpy as np
import codegen.executable as e
import codegen.plan as p
from codegen.llvm import pool
from ir.parser import parse_graph

def cpu_of(tid):
    return int(open(f"/proc/self/task/{{tid}}/stat").read().rsplit(")", 1)[1].split()[36])

def cpu_seconds(tid):
    fields = open(f"/proc/self/task/{{tid}}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

p.PARALLEL_MIN_POINTS = 0
p.workers = lambda: 2
exe = e.compile_graph(parse_graph({GRAPH!r}))
x = np.ones((1000, 64), np.float32)
here, elsewhere = sorted(os.sched_getaffinity(0))[:2]
os.sched_setaffinity(0, {{elsewhere}})  # this thread (the dispatcher) first elsewhere
exe.run([x])
worker = pool._pool._threads[0].native_id
os.sched_setaffinity(worker, {{here}})  # the worker on `here` ...
time.sleep(0.01)
assert cpu_of(worker) == here
os.sched_setaffinity(0, {{here}})
exe.run([x])  # ... a job from `here` ...
time.sleep(0.01)
os.sched_setaffinity(worker, {{here, elsewhere}})  # ... and the worker may leave: it does
deadline = time.time() + 0.3
while cpu_of(worker) == here and time.time() < deadline:
    time.sleep(0.01)
moved = cpu_of(worker) != here
time.sleep(1.5)  # idle: spin, poll about half a second, then the futex
asleep = pool._pool._state[pool.SLEEPERS] == 1
before = cpu_seconds(worker)
time.sleep(1.0)
print(moved, asleep, cpu_seconds(worker) - before)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2, reason="needs Linux and 2 CPUs"
)
def test_a_worker_leaves_the_dispatchers_cpu_and_an_idle_one_sleeps():
    done = subprocess.run([sys.executable, "-c", STEP_ASIDE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    moved, asleep, busy = done.stdout.split()
    assert moved == "True"  # it did not wait for the scheduler to move it
    assert asleep == "True"
    assert float(busy) <= 0.03  # asleep on its futex: no spinning after each 10 ms timeout
