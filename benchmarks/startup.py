"""Cold start of a deployed model: a fresh process imports its runtime, loads the model file and
runs the first inference. graphc's runtime (.gcm) against ONNX Runtime (.onnx) and TorchScript
(.pt) on the same weights, in the same run, for the MLP and the tutorial LeNet.

Run: python benchmarks/startup.py [--repeat N]     (needs torch, onnxruntime, onnx, onnxscript)

Two numbers per case, medians over N fresh processes: `in-process` is import + load + first
inference measured inside the process; `process` is the whole `python -c ...` wall time as a
shell would see it (interpreter start and exit included). The child processes may write bytecode
caches (PYTHONDONTWRITEBYTECODE is cleared for them) and a first, unrecorded round writes them:
an installed wheel ships compiled bytecode, so a deployment never compiles graphc's sources at
start-up either.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def models(nn, F):
    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(784, 256), nn.Linear(256, 128), nn.Linear(128, 10)

        def forward(self, x):
            return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    class LeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = x.view(x.size(0), -1)
            return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    return {"mlp": (MLP(), (784,)), "lenet": (LeNet(), (1, 32, 32))}


def export(directory: Path) -> dict[str, tuple]:
    """Write each model as .gcm, .onnx and .pt (same weights), and one input batch as .npy."""
    import torch

    import graphc

    graphc.manual_seed(0)
    ours = models(graphc.nn, graphc.nn.functional)
    theirs = models(torch.nn, torch.nn.functional)
    out = {}
    for name, (model, shape) in ours.items():
        tmodel = theirs[name][0]
        tmodel.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()})
        model.eval(), tmodel.eval()
        x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
        np.save(directory / f"{name}.npy", x)
        graphc.script(model, (graphc.tensor(np.repeat(x, 2, 0)),)).save(directory / f"{name}.gcm")
        example = torch.from_numpy(np.repeat(x, 2, 0))
        torch.jit.trace(tmodel, example).save(str(directory / f"{name}.pt"))
        torch.onnx.export(
            tmodel,
            (example,),
            str(directory / f"{name}.onnx"),
            input_names=["x"],
            output_names=["y"],
            dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
            dynamo=True,
        )
        with torch.no_grad():
            expected = tmodel(torch.from_numpy(x)).numpy()
        out[name] = expected
    return out


PROGRAMS = {
    "graphc runtime": ("import runtime\nm = runtime.load({model}.gcm)\n(y,) = m(np.load({model}.npy))\n"),
    "ONNX Runtime": (
        "import onnxruntime as ort\n"
        "s = ort.InferenceSession({model}.onnx, providers=['CPUExecutionProvider'])\n"
        "(y,) = s.run(None, {{'x': np.load({model}.npy)}})\n"
    ),
    "TorchScript": (
        "import torch\n"
        "m = torch.jit.load({model}.pt)\n"
        "with torch.no_grad():\n"
        "    y = m(torch.from_numpy(np.load({model}.npy))).numpy()\n"
    ),
}


def run_once(program: str, directory: Path, name: str) -> tuple[float, float, np.ndarray]:
    base = repr(str(directory / name))
    body = program.replace("{model}.gcm", base + " + '.gcm'").replace("{model}.onnx", base + " + '.onnx'")
    body = body.replace("{model}.pt", base + " + '.pt'").replace("{model}.npy", base + " + '.npy'")
    body = body.replace("{{", "{").replace("}}", "}")
    code = (
        "import time\nt0 = time.perf_counter()\nimport numpy as np\n"
        + body
        + f"t1 = time.perf_counter()\nnp.save({str(directory / 'y.npy')!r}, np.asarray(y))\nprint(t1 - t0)\n"
    )
    start = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return float(proc.stdout.strip().splitlines()[-1]), wall, np.load(directory / "y.npy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        expected = export(directory)
        print("| model | runtime | in-process ms | process ms |")
        print("|---|---|---:|---:|")
        for name in expected:
            inner = {rt: [] for rt in PROGRAMS}
            wall = {rt: [] for rt in PROGRAMS}
            for round_ in range(args.repeat + 1):  # rounds alternate runtimes; round 0 warms caches
                for rt, program in PROGRAMS.items():
                    t_in, t_wall, y = run_once(program, directory, name)
                    np.testing.assert_allclose(y, expected[name], rtol=1e-4, atol=1e-5)
                    if round_:
                        inner[rt].append(t_in * 1e3)
                        wall[rt].append(t_wall * 1e3)
            for rt in PROGRAMS:
                t_in, t_wall = np.median(inner[rt]), np.median(wall[rt])
                print(f"| {name} | {rt} | {t_in:.0f} | {t_wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
