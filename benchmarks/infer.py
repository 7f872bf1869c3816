"""Inference latency of a deployed model: graphc's runtime (the .gcm file compiled for this CPU,
backend 'llvm') against ONNX Runtime, TorchScript and torch.compile on the same weights, in the
same run: the MLP 784-512-512-10 and the tutorial LeNet at batch 1 and 256.

Run: python benchmarks/infer.py [--repeat N] [--no-compile]
     (needs torch, onnxruntime, onnx, onnxscript; --no-compile skips torch.compile, which
     takes seconds to compile each model)

Every runtime uses 2 threads. Each cell is the median over N rounds of the mean time of a
batch of calls sized to take about 20 ms; outputs are checked against PyTorch eager.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import models as small_models  # noqa: E402  (the LeNet definition)

THREADS = 2


def models(nn, F):
    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(784, 512), nn.Linear(512, 512), nn.Linear(512, 10)

        def forward(self, x):
            return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    return {"MLP 784-512-512-10": (MLP(), (784,)), "LeNet": small_models(nn, F)["lenet"]}


def per_call_ms(fn, repeat: int, sync=None, settle: float = 0.3) -> float:
    """Milliseconds a call of `fn`: the median over `repeat` rounds of the mean of a batch of
    calls sized to take about 20 ms; `sync()` (a GPU's synchronize) ends every batch."""
    sync = sync or (lambda: None)
    # every runtime's thread pool spins for a while after a call and would take the cores from
    # whoever runs next: let them go to sleep first
    time.sleep(settle)
    fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    once = max(time.perf_counter() - start, 1e-6)
    calls = max(1, int(0.02 / once))
    rounds = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        rounds.append((time.perf_counter() - start) / calls)
    return float(np.median(rounds)) * 1e3


def peer_runners(loaded, eager, scripted, session, compiled, input_name: str, array, tensor) -> dict:
    """Calls of one input through graphc's runtime, PyTorch eager, TorchScript, ONNX Runtime
    and (when not None) torch.compile, each giving a numpy array."""
    runners = {
        "graphc": lambda: loaded(array)[0],
        "eager": lambda: eager(tensor).numpy(),
        "torchscript": lambda: scripted(tensor).numpy(),
        "ort": lambda: session.run(None, {input_name: array})[0],
    }
    if compiled is not None:
        runners["torch.compile"] = lambda: compiled(tensor).numpy()
    return runners


def torch_peers(
    theirs, example: np.ndarray, path, names: tuple[str, str], dynamic_shapes: dict, args, ort, torch
):
    """PyTorch model `theirs` as the peers: ONNX Runtime (exported from `example` with
    `dynamic_shapes`, input and output named `names`, to `path`.onnx), TorchScript (frozen)
    and torch.compile (None with --no-compile), each with THREADS threads:
    (session, scripted, compiled)."""
    torch.onnx.export(
        theirs,
        (torch.from_numpy(example),),
        f"{path}.onnx",
        input_names=[names[0]],
        output_names=[names[1]],
        dynamic_shapes=dynamic_shapes,
        dynamo=True,
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = ort.InferenceSession(f"{path}.onnx", options, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        scripted = torch.jit.freeze(torch.jit.script(theirs))
        compiled = None if args.no_compile else torch.compile(theirs, dynamic=True)
    return session, scripted, compiled


def checked_row(label: str, runners: dict, expected: np.ndarray, repeat: int, columns: int = 5) -> None:
    """Print one table row: each runner's output checked against `expected`, then its time a
    call (per_call_ms); '-' for the columns no runner filled. Call it under torch.no_grad()."""
    cells = []
    for key, fn in runners.items():
        np.testing.assert_allclose(fn(), expected, rtol=1e-3, atol=1e-4, err_msg=key)
        cells.append(f"{per_call_ms(fn, repeat):.3f} ms")
    cells += ["-"] * (columns - len(cells))
    print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


def start(description: str):
    """The command line (--repeat, --no-compile) and the peers, with THREADS threads each, the
    machine's line printed: (args, onnxruntime, torch)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    torch.set_num_threads(THREADS)
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, ", end="")
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {THREADS} threads")
    return args, ort, torch


def main() -> None:
    args, ort, torch = start(__doc__.splitlines()[0])

    import graphc
    import runtime

    graphc.manual_seed(0)
    ours = models(graphc.nn, graphc.nn.functional)
    theirs = models(torch.nn, torch.nn.functional)
    print("| model | batch | graphc runtime | ONNX Runtime | TorchScript | torch.compile |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, shape) in ours.items():
            tmodel = theirs[name][0]
            state = {k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()}
            tmodel.load_state_dict(state)
            model.eval(), tmodel.eval()
            example = torch.randn(2, *shape)
            path = Path(tmp) / "model"
            graphc.script(model, (graphc.tensor(example.numpy()),)).save(f"{path}.gcm")
            loaded = runtime.load(f"{path}.gcm", backend="llvm")
            torch.onnx.export(
                tmodel,
                (example,),
                f"{path}.onnx",
                input_names=["x"],
                output_names=["y"],
                dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                dynamo=True,
            )
            options = ort.SessionOptions()
            options.intra_op_num_threads = THREADS
            session = ort.InferenceSession(f"{path}.onnx", options, providers=["CPUExecutionProvider"])
            with torch.no_grad():
                scripted = torch.jit.freeze(torch.jit.trace(tmodel, example))
                compiled = None if args.no_compile else torch.compile(tmodel, dynamic=False)
            for batch in (1, 256):
                x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32)
                tx = torch.from_numpy(x)
                with torch.no_grad():
                    expected = tmodel(tx).numpy()
                runners = {
                    "graphc": lambda x=x, m=loaded: m(x)[0],
                    "ort": lambda x=x, s=session: s.run(None, {"x": x})[0],
                    "torchscript": lambda tx=tx, m=scripted: m(tx).numpy(),
                }
                if compiled is not None:
                    runners["torch.compile"] = lambda tx=tx, m=compiled: m(tx).numpy()
                cells = []
                for key, fn in runners.items():
                    with torch.no_grad():
                        np.testing.assert_allclose(fn(), expected, rtol=1e-4, atol=1e-4, err_msg=key)
                        cells.append(f"{per_call_ms(fn, args.repeat):.3f} ms")
                cells += ["-"] * (4 - len(cells))
                print(f"| {name} | {batch} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
