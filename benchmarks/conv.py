"""Convolution layers (conv2d + bias + ReLU, float32, NCHW): graphc's compiled kernel against
PyTorch eager and ONNX Runtime, in the same run, in GFLOP/s. The layers: the LeNet's two (batch
256), a 3-channel 3x3 stem, 3x3 padded layers of 32, 64 and 512 channels (ResNet's 56x56,
28x28 and 7x7 stages, batch 8), and two high-resolution layers at batch 1 (a U-Net's first
stage, 16 channels at 256x256; 64 channels at 112x112). The `path` column says which of
graphc's three convolution kernels the layer got on this machine (direct: output pixels along
the vector lanes, read straight from the input rows; channels: output channels along the lanes;
packed: im2col panels).

Run: python benchmarks/conv.py [--repeat N]     (torch and onnxruntime are optional)
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

# name, batch, input channels, output channels, size, kernel, padding
LAYERS = (
    ("LeNet conv1", 256, 1, 6, 32, 5, 0),
    ("LeNet conv2", 256, 6, 16, 14, 5, 0),
    ("3x3 stem", 8, 3, 16, 32, 3, 1),
    ("3x3 32ch 56x56", 8, 32, 32, 56, 3, 1),
    ("3x3 64ch 28x28", 8, 64, 64, 28, 3, 1),
    ("3x3 512ch 7x7", 8, 512, 512, 7, 3, 1),
    ("3x3 16ch 256x256", 1, 16, 16, 256, 3, 1),
    ("3x3 64ch 112x112", 1, 64, 64, 112, 3, 1),
)


def graph(c: int, h: int, w: np.ndarray, bias: np.ndarray, padding: int) -> Graph:
    g = Graph("conv")
    x = g.add_input("x", TensorType(dtypes.float32, ("batch", c, h, h)))
    attrs = {"stride": (1, 1), "padding": (padding, padding), "dilation": (1, 1), "groups": 1}
    (y,) = g.add_node("conv2d", [x, g.add_weight("w", w), g.add_weight("b", bias)], attrs)
    (y,) = g.add_node("relu", [y])
    g.set_outputs([y])
    return g


def ort_session(w: np.ndarray, bias: np.ndarray, padding: int):
    try:
        import onnxruntime  # noqa: F401  (installed?)
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    pads = [padding] * 4
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=pads),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    spec = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, None)  # noqa: E731
    weights = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "b")]
    model = helper.make_model(
        helper.make_graph(nodes, "conv", [spec("x")], [spec("y")], initializer=weights),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    return ort_inference(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    torch = torch_or_none()
    from llvmlite import ir

    from codegen.host import vector_bits
    from codegen.llvm.render import _ConvEmitter

    print(f"# {platform.processor() or platform.machine()}, 2 threads; GFLOP/s (conv + bias + ReLU)")
    print("| layer | path | graphc | torch eager | ONNX Runtime |")
    print("|---|---|---:|---:|---:|")
    for name, batch, c, co, h, k, padding in LAYERS:
        rng = np.random.default_rng(c * co)
        x = rng.standard_normal((batch, c, h, h)).astype(np.float32)
        w = (rng.standard_normal((co, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
        bias = rng.standard_normal(co).astype(np.float32)
        exe = compile_graph(graph(c, h, w, bias, padding))
        path = _ConvEmitter(ir.Module(), exe.steps[0].kernel, vector_bits()).path()
        runners = {"graphc": lambda exe=exe, x=x: exe.run([x])[0]}
        if torch is not None:
            tx, tw, tb = (torch.from_numpy(a) for a in (x, w, bias))
            runners["torch"] = lambda tx=tx, tw=tw, tb=tb, p=padding: torch.relu(
                torch.nn.functional.conv2d(tx, tw, tb, padding=p)
            ).numpy()
        session = ort_session(w, bias, padding)
        if session is not None:
            runners["ort"] = lambda session=session, x=x: session.run(None, {"x": x})[0]
        want = runners["graphc"]() if torch is None else runners["torch"]()
        out = h + 2 * padding - k + 1
        flops = 2 * batch * co * c * k * k * out * out
        cells = []
        for runner in ("graphc", "torch", "ort"):
            fn = runners.get(runner)
            if fn is None:
                cells.append("-")
                continue
            np.testing.assert_allclose(fn(), want, rtol=1e-3, atol=1e-3, err_msg=runner)
            seconds = best_ms(fn, args.repeat) / 1e3
            cells.append(f"{flops / seconds / 1e9:.1f}")
        print(f"| {name} (batch {batch}) | {path} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
