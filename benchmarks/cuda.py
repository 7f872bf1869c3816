"""graphc's compiled CUDA kernels against eager cupy (what graphc's eager CUDA device runs) and
PyTorch CUDA, in the same run: the MLP 784-512-512-10 and the tutorial LeNet at batch 1 and 256
(runtime.load(device="cuda") of a .gcm file, against the same model run eagerly by graphc on
CUDA tensors and by PyTorch), the GELU-tanh chain at 1M and 16M float32 values
(one fused kernel against cupy's and PyTorch's op-by-op eager), a transformer text classifier
(benchmarks/transformer.py's, at batch x length 1 x 32 and 16 x 128), and float32 GEMM at n =
256 to 4096 (the tiled kernel against cuBLAS through cupy and PyTorch), in GFLOP/s.

Run on a machine with an NVIDIA GPU: python benchmarks/cuda.py [--repeat N]
(needs cupy and NVRTC: pip install -e ".[cuda]", or ".[cuda13]" for a CUDA 13 driver, or
tests/gpu/run.sh with what the machine has; PyTorch CUDA is
compared where `torch.cuda.is_available()`). Without a GPU it says so and exits.

Every cell is the median over N rounds of the mean time of a batch of calls sized to take about
20 ms, synchronized at the end of each batch; inputs and outputs stay on the device (no copies
in the timing); results are checked against the peers first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import infer  # noqa: E402
from elementwise import gelu  # noqa: E402
from infer import models  # noqa: E402


def per_call_ms(fn, sync, repeat: int) -> float:
    return infer.per_call_ms(fn, repeat, sync, settle=0.0)


def torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, one round: checks the script runs (tests/gpu/dry_run.py)",
    )
    args = parser.parse_args()
    batches, elements, sides = ((1, 256), (1 << 20, 1 << 24), (256, 1024, 2048, 4096))
    shapes = ((1, 32), (16, 128))  # the transformer's batch x length
    if args.quick:
        batches, elements, sides, args.repeat = (1, 3), (1000,), (70,), 1
        shapes = ((1, 4), (2, 6))

    import graphc

    if not graphc.cuda.is_available():
        print(
            "benchmarks/cuda.py: no CUDA GPU here (graphc.cuda.is_available() is False); nothing to measure"
        )
        return
    import cupy

    import runtime
    from codegen.cuda.device import cuda_version, gpu
    from codegen.cuda.executable import CudaGraph

    torch = torch_cuda()
    device = gpu("cuda")
    sync = device.synchronize
    from codegen.cuda import nvrtc

    driver = device.driver_version
    print(f"# {device.name}, sm_{device.capability}, cupy {cupy.__version__}", end="")
    print(f", driver CUDA {'.'.join(map(str, cuda_version(driver)))}" if driver else "", end="")
    print(f", NVRTC {'.'.join(map(str, nvrtc.version()))}" if nvrtc.available() else ", no NVRTC", end="")
    print(f", torch {torch.__version__}" if torch else ", no PyTorch CUDA")

    # models: the runtime on a .gcm file against PyTorch CUDA eager on the same weights
    graphc.manual_seed(0)
    ours = models(graphc.nn, graphc.nn.functional)
    theirs = models(torch.nn, torch.nn.functional) if torch else {}
    print("\n| model | batch | graphc runtime (cuda) | graphc eager (cupy) | PyTorch CUDA eager |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, features) in ours.items():
            model.eval()
            path = Path(tmp) / "model.gcm"
            graphc.script(model, (graphc.randn(2, *features),), backend="interpreter").save(path)
            loaded = runtime.load(path, device="cuda")
            peer = None
            if torch:
                peer = theirs[name][0].cuda().eval()
                peer.load_state_dict({k: torch.tensor(v.numpy()) for k, v in model.state_dict().items()})
            eager = models(graphc.nn, graphc.nn.functional)[name][0].eval()  # the same weights, on the GPU
            eager.load_state_dict(model.state_dict())
            eager.cuda()
            for batch in batches:
                x = np.random.default_rng(batch).standard_normal((batch, *features)).astype(np.float32)
                dx = loaded.to_device(x)
                want = model(graphc.tensor(x)).detach().numpy()
                np.testing.assert_allclose(loaded(x)[0], want, rtol=1e-3, atol=1e-4)
                ms = per_call_ms(lambda dx=dx, loaded=loaded: loaded(dx), sync, args.repeat)
                gx = graphc.tensor(x, device="cuda")
                with graphc.no_grad():
                    np.testing.assert_allclose(eager(gx).cpu().numpy(), want, rtol=1e-3, atol=1e-4)
                    eager_ms = per_call_ms(lambda gx=gx, eager=eager: eager(gx), sync, args.repeat)
                cell = "-"
                if peer is not None:
                    tx = torch.tensor(x, device="cuda")
                    with torch.no_grad():
                        np.testing.assert_allclose(peer(tx).cpu().numpy(), want, rtol=1e-3, atol=1e-4)
                        call = lambda tx=tx, peer=peer: peer(tx)  # noqa: E731
                        cell = f"{per_call_ms(call, torch.cuda.synchronize, args.repeat):.3f}"
                print(f"| {name} | {batch} | {ms:.3f} | {eager_ms:.3f} | {cell} |")

    # a transformer (benchmarks/transformer.py's text classifier), batch and length dynamic
    from transformer import VOCAB, classifier

    graphc.manual_seed(0)
    net = classifier(graphc).eval()
    dynamic = {"tokens": {0: "batch", 1: "seq"}}
    example = graphc.randint(0, VOCAB, (2, 8))
    peer = None
    if torch:
        peer = classifier(torch).cuda().eval()
        peer.load_state_dict({k: torch.tensor(v.numpy()) for k, v in net.state_dict().items()})
    eager = classifier(graphc).eval()
    eager.load_state_dict(net.state_dict())
    eager.cuda()
    print(
        "\n| transformer batch x length | graphc runtime (cuda) | graphc eager (cupy) | PyTorch CUDA eager |"
    )
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "transformer.gcm"
        graphc.script(net, (example,), dynamic=dynamic, backend="interpreter").save(path)
        loaded = runtime.load(path, device="cuda")
        for n, length in shapes:
            tokens = np.random.default_rng(n).integers(0, VOCAB, (n, length))
            with graphc.no_grad():
                want = net(graphc.tensor(tokens)).numpy()
            np.testing.assert_allclose(loaded(tokens)[0], want, rtol=1e-3, atol=1e-4)
            dt = loaded.to_device(tokens)
            ms = per_call_ms(lambda dt=dt: loaded(dt), sync, args.repeat)
            gt = graphc.tensor(tokens, device="cuda")
            with graphc.no_grad():
                np.testing.assert_allclose(eager(gt).cpu().numpy(), want, rtol=1e-3, atol=1e-4)
                eager_ms = per_call_ms(lambda gt=gt: eager(gt), sync, args.repeat)
            cell = "-"
            if peer is not None:
                tt = torch.tensor(tokens, device="cuda")
                with torch.no_grad():
                    np.testing.assert_allclose(peer(tt).cpu().numpy(), want, rtol=1e-3, atol=1e-4)
                    cell = f"{per_call_ms(lambda tt=tt: peer(tt), torch.cuda.synchronize, args.repeat):.3f}"
            print(f"| {n} x {length} | {ms:.3f} | {eager_ms:.3f} | {cell} |")

    # the GELU chain: one fused kernel against op-by-op eager
    graph = graphc.script(lambda x: gelu(graphc, x), (graphc.randn(8),), backend="interpreter").graph
    fused = CudaGraph(graph, device)
    print("\n| GELU-tanh elements | graphc fused (cuda) | cupy eager | PyTorch CUDA eager |")
    print("|---:|---:|---:|---:|")
    for n in elements:
        x = cupy.asarray(np.random.default_rng(0).standard_normal(n).astype(np.float32))
        np.testing.assert_allclose(fused.run([x])[0].get(), gelu(cupy, x).get(), rtol=1e-5, atol=1e-6)
        ours_ms = per_call_ms(lambda x=x: fused.run([x]), sync, args.repeat)
        cupy_ms = per_call_ms(lambda x=x: gelu(cupy, x), sync, args.repeat)
        cell = "-"
        if torch:
            tx = torch.as_tensor(x, device="cuda")
            cell = f"{per_call_ms(lambda tx=tx: gelu(torch, tx), torch.cuda.synchronize, args.repeat):.3f}"
        print(f"| {n} | {ours_ms:.3f} | {cupy_ms:.3f} | {cell} |")

    # GEMM: the tiled kernel against cuBLAS
    mm = graphc.script(
        lambda a, b: a @ b,
        (graphc.randn(6, 8), graphc.randn(8, 10)),
        dynamic={"a": {0: "m", 1: "k"}, "b": {0: "k", 1: "n"}},
        backend="interpreter",
    )
    product = CudaGraph(mm.graph, device)
    print("\n| n | graphc tiled (GFLOP/s) | cupy / cuBLAS | PyTorch CUDA |")
    print("|---:|---:|---:|---:|")
    for n in sides:
        rng = np.random.default_rng(n)
        a, b = (cupy.asarray(rng.standard_normal((n, n)).astype(np.float32)) for _ in range(2))
        np.testing.assert_allclose(product.run([a, b])[0].get(), (a @ b).get(), rtol=1e-3, atol=1e-2)
        flops = 2 * n**3 / 1e6  # per ms -> GFLOP/s
        ours_ms = per_call_ms(lambda a=a, b=b: product.run([a, b]), sync, args.repeat)
        cupy_ms = per_call_ms(lambda a=a, b=b: a @ b, sync, args.repeat)
        cell = "-"
        if torch:
            ta, tb = torch.as_tensor(a, device="cuda"), torch.as_tensor(b, device="cuda")
            call = lambda ta=ta, tb=tb: ta @ tb  # noqa: E731
            cell = f"{flops / per_call_ms(call, torch.cuda.synchronize, args.repeat):.0f}"
        print(f"| {n} | {flops / ours_ms:.0f} | {flops / cupy_ms:.0f} | {cell} |")


if __name__ == "__main__":
    main()
