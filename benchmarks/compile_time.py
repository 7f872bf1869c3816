"""Compile time of the tutorial LeNet: `graphc.script` + compilation + the first call, with a cold
code cache (an empty GRAPHC_CACHE_DIR) and a warm one (filled by an earlier process), against
torch.compile with a cold and a warm inductor cache, each in fresh processes.

Run: python benchmarks/compile_time.py [--repeat N] [--no-torch]

Medians over N processes; the import of the library is measured apart (it is not compile time;
the compiler's own modules, imported by the first script, are counted). Bytecode caches may
be written (PYTHONDONTWRITEBYTECODE is cleared), as an installed wheel has them.
Targets (issue 5): under 1 s cold, under 50 ms warm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

GRAPHC = """
import time
start = time.perf_counter()
import numpy as np
import graphc
from startup import models
imported = time.perf_counter()
model, shape = models(graphc.nn, graphc.nn.functional)["lenet"]
model.eval()
x = graphc.tensor(np.zeros((2, *shape), np.float32))
begin = time.perf_counter()
scripted = graphc.script(model, (x,))
scripted(x)
done = time.perf_counter()
print("RESULT", {"import": imported - start, "compile": done - begin})
"""

TORCH = """
import time
start = time.perf_counter()
import numpy as np
import torch
from startup import models
imported = time.perf_counter()
torch.set_num_threads(2)
model, shape = models(torch.nn, torch.nn.functional)["lenet"]
model.eval()
x = torch.zeros((2, *shape))
begin = time.perf_counter()
compiled = torch.compile(model)
with torch.no_grad():
    compiled(x)
done = time.perf_counter()
print("RESULT", {"import": imported - start, "compile": done - begin})
"""


def run(code: str, env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=HERE, env=env, capture_output=True, text=True, check=True
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :].replace("'", '"'))


def measure(code: str, cache_variable: str, repeat: int) -> tuple[dict, dict]:
    """(cold, warm) medians of `code`'s timings: cold with a fresh cache directory each time,
    warm with one filled by an unrecorded first run."""
    base = {k: v for k, v in os.environ.items() if k not in ("GRAPHC_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR")}
    base["PYTHONPATH"] = os.pathsep.join([str(HERE), base.get("PYTHONPATH", "")])
    base.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed wheel ships its bytecode
    cold, warm = [], []
    with tempfile.TemporaryDirectory() as shared:
        run(code, {**base, cache_variable: shared})  # fills the warm cache (and bytecode caches)
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as fresh:
                cold.append(run(code, {**base, cache_variable: fresh}))
            warm.append(run(code, {**base, cache_variable: shared}))

    def median(results):
        return {key: statistics.median(r[key] for r in results) for key in results[0]}

    return median(cold), median(warm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-torch", action="store_true", help="skip torch.compile (about 10 s a process)")
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, medians of {args.repeat} fresh processes")
    print("| LeNet | cold cache | warm cache | import |")
    print("|---|---:|---:|---:|")
    cases = [("graphc.script + compile + first call", GRAPHC, "GRAPHC_CACHE_DIR")]
    if not args.no_torch:
        try:
            import torch  # noqa: F401  (installed?)

            cases.append(("torch.compile + first call", TORCH, "TORCHINDUCTOR_CACHE_DIR"))
        except ImportError:
            pass
    for name, code, variable in cases:
        cold, warm = measure(code, variable, args.repeat)
        print(
            f"| {name} | {cold['compile'] * 1e3:.0f} ms | {warm['compile'] * 1e3:.1f} ms "
            f"| {warm['import'] * 1e3:.0f} ms |",
            flush=True,
        )


if __name__ == "__main__":
    main()
