"""The generated matmul kernel against numpy's sgemm (OpenBLAS), PyTorch and ONNX Runtime, in
the same run, at n = 64, 256, 1024, 2048 (float32, square).

Run: python benchmarks/gemm.py [--repeat N] [--sizes 64 256 ...]     (torch and onnxruntime are optional)

Two graphc rows: `graphc (input b)` runs the compiled graph of `a @ b` with both operands as
inputs, so b is packed into panels on every call; `graphc (weight b)` has b as a weight, packed
once when the graph is compiled, as for a linear layer. Best of N calls; every result is
checked against numpy.
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
from elementwise import best_ms, ort_inference, torch_or_none

from codegen.executable import compile_graph
from ir import dtypes
from ir.graph import Graph
from ir.types import TensorType

SIZES = (64, 256, 1024, 2048)


def graph(n: int, weight: np.ndarray | None) -> Graph:
    g = Graph("gemm")
    a = g.add_input("a", TensorType(dtypes.float32, (n, n)))
    b = (
        g.add_weight("b", weight)
        if weight is not None
        else g.add_input("b", TensorType(dtypes.float32, (n, n)))
    )
    (y,) = g.add_node("matmul", [a, b])
    g.set_outputs([y])
    return g


def ort_session():
    try:
        import onnxruntime  # noqa: F401  (installed?)
        from onnx import TensorProto, helper
    except ImportError:
        return None
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    spec = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", "n"])  # noqa: E731
    model = helper.make_model(
        helper.make_graph([node], "gemm", [spec("a"), spec("b")], [spec("y")]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    return ort_inference(model)


def make_runners(n: int, a: np.ndarray, b: np.ndarray, torch, session) -> dict:
    by_input, by_weight = compile_graph(graph(n, None)), compile_graph(graph(n, b))
    runners = {
        "numpy": lambda: a @ b,
        "input": lambda: by_input.run([a, b])[0],
        "weight": lambda: by_weight.run([a])[0],
    }
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        runners["torch"] = lambda: torch.matmul(ta, tb).numpy()
    if session is not None:
        runners["ort"] = lambda: session.run(None, {"a": a, "b": b})[0]
    return runners


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    args = parser.parse_args()
    torch = torch_or_none()
    session = ort_session()
    print(f"# {platform.processor() or platform.machine()}, numpy {np.__version__}, 2 threads; GFLOP/s")
    print("| n | numpy | graphc (input b) | graphc (weight b) | torch | ONNX Runtime |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        rng = np.random.default_rng(n)
        a = rng.standard_normal((n, n)).astype(np.float32)
        b = rng.standard_normal((n, n)).astype(np.float32)
        want = a @ b
        runners = make_runners(n, a, b, torch, session)
        repeat = args.repeat if n <= 1024 else max(3, args.repeat // 4)
        cells = []
        for name in ("numpy", "input", "weight", "torch", "ort"):
            fn = runners.get(name)
            if fn is None:
                cells.append("-")
                continue
            np.testing.assert_allclose(fn(), want, rtol=1e-3, atol=1e-3 * np.sqrt(n), err_msg=name)
            seconds = best_ms(fn, repeat) / 1e3
            cells.append(f"{2 * n**3 / seconds / 1e9:.1f}")
        print(f"| {n} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
