"""A fused elementwise chain: GELU with the tanh approximation over 1M and 16M float32 values.
graphc's compiled kernel (one pass over memory, split over the cores) against numpy, PyTorch
eager and ONNX Runtime (when installed), in the same run.

Run: python benchmarks/elementwise.py [--repeat N]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import graphc
from codegen.executable import compile_graph

C = 0.7978845608028654  # sqrt(2 / pi)


def gelu(lib, x):
    return 0.5 * x * (1.0 + lib.tanh(C * (x + 0.044715 * x * x * x)))


def best_ms(fn, repeat: int) -> float:
    """The best of `repeat` calls, in ms, after a warm-up call. The peers' thread pools spin
    for a while after each call and would take the cores from whoever runs next: they are
    given time to go to sleep first."""
    time.sleep(0.3)
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def torch_or_none():
    """PyTorch on 2 threads (as every peer here), or None where it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(2)
    return torch


def ort_inference(model):
    """An ONNX Runtime session of `model` (an onnx ModelProto) on 2 threads, on the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def ort_session():
    try:
        import onnxruntime  # noqa: F401  (installed?)
        from onnx import TensorProto, helper
    except ImportError:
        return None

    def const(name, value):
        return helper.make_node(
            "Constant", [], [name], value=helper.make_tensor(name, TensorProto.FLOAT, [], [value])
        )

    nodes = [
        const("half", 0.5), const("one", 1.0), const("c", C), const("k", 0.044715),
        helper.make_node("Mul", ["x", "x"], ["x2"]),
        helper.make_node("Mul", ["x2", "x"], ["x3"]),
        helper.make_node("Mul", ["k", "x3"], ["kx3"]),
        helper.make_node("Add", ["x", "kx3"], ["inner"]),
        helper.make_node("Mul", ["c", "inner"], ["scaled"]),
        helper.make_node("Tanh", ["scaled"], ["t"]),
        helper.make_node("Add", ["one", "t"], ["onept"]),
        helper.make_node("Mul", ["half", "x"], ["hx"]),
        helper.make_node("Mul", ["hx", "onept"], ["y"]),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "gelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
    )
    return ort_inference(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    graph = graphc.script(lambda x: gelu(graphc, x), (graphc.randn(8),)).graph
    exe = compile_graph(graph)
    print(f"# {platform.processor() or platform.machine()}, schedule:\n# {exe}")
    sizes = (1 << 20, 1 << 24)
    xs = {n: np.random.default_rng(0).standard_normal(n).astype(np.float32) for n in sizes}
    expected = {n: gelu(np, x) for n, x in xs.items()}
    # One library after the other, so no library's idle thread pool competes with the one
    # being measured.
    times: dict[str, dict[int, float]] = {"graphc": {}, "numpy": {}, "torch": {}, "ort": {}}
    for n, x in xs.items():
        np.testing.assert_allclose(exe.run([x])[0], expected[n], rtol=1e-5, atol=1e-6)
        times["graphc"][n] = best_ms(lambda x=x: exe.run([x]), args.repeat)
    for n, x in xs.items():
        times["numpy"][n] = best_ms(lambda x=x: gelu(np, x), args.repeat)
    torch = torch_or_none()
    session = ort_session()
    if torch is not None:
        for n, x in xs.items():
            tx = torch.from_numpy(x)
            times["torch"][n] = best_ms(lambda tx=tx: gelu(torch, tx), args.repeat)
    if session is not None:
        for n, x in xs.items():
            np.testing.assert_allclose(session.run(None, {"x": x})[0], expected[n], rtol=1e-5, atol=1e-6)
            times["ort"][n] = best_ms(lambda x=x: session.run(None, {"x": x}), args.repeat)
    print("| elements | numpy ms | graphc ms | torch eager ms | ONNX Runtime ms | graphc GB/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    nan = float("nan")
    for n, x in xs.items():
        t = {lib: times[lib].get(n, nan) for lib in times}
        gbs = 2 * x.nbytes / (t["graphc"] * 1e-3) / 1e9
        row = [f"{n:,}"] + [f"{t[lib]:.2f}" for lib in ("numpy", "graphc", "torch", "ort")] + [f"{gbs:.1f}"]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
