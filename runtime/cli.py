"""`graphc-runtime`: inspect, run and time a .gcm module file from the shell.

    graphc-runtime info lenet.gcm
    graphc-runtime run lenet.gcm --input x=images.npy --output logits.npy
    graphc-runtime bench lenet.gcm --batch 64
    graphc-runtime env              # the backends this machine has, and what the others lack

Inputs are read with `numpy.load(allow_pickle=False)`: neither the module nor the inputs can run code.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ir.errors import IRError
from runtime.loader import LoadedModule, Signature, load


class UsageError(Exception):
    """A command line that names something the module does not have."""


def _shape(sig: Signature) -> str:
    return "[" + ", ".join(str(d) for d in sig.shape) + "]"


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def info(model: LoadedModule, path: str, out) -> None:
    mf = model.module_file
    print(f"{path}: module format {mf.format_version}, op set {mf.opset_version}", file=out)
    print(f"producer: {mf.producer or '(unknown)'}", file=out)
    for key, value in sorted(mf.metadata.items()):
        print(f"metadata: {key} = {value}", file=out)
    for method in model.methods:
        inputs, outputs = model.signature(method)
        graph = mf.methods[method]
        print(f"\nmethod {method}", file=out)
        for sig in inputs:
            print(f"  input  {sig.name}: {sig.dtype}{_shape(sig)}", file=out)
        for sig in outputs:
            print(f"  output {sig.name}: {sig.dtype}{_shape(sig)}", file=out)
        ops = Counter(node.op for node in graph.nodes)
        listed = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in sorted(ops.items()))
        print(f"  ops ({len(graph.nodes)} nodes): {listed}", file=out)
    total = sum(w.nbytes for w in mf.weights.values())
    print(f"\nweights: {len(mf.weights)} tensors, {_bytes(total)}", file=out)
    for name, w in mf.weights.items():
        print(f"  {name}: {w.dtype}{list(w.shape)}", file=out)
    print(
        f"artifacts: {len(mf.artifacts) or 'none (the llvm backend compiles the graphs on load)'}", file=out
    )
    here = None  # the target of native code compiled on this CPU by this compiler
    for a in mf.artifacts:
        method = a.properties.get("method")
        what = f"method {method}" if method else "worker pool"
        fits = ""
        if a.kind == "shared-library":
            if here is None:
                import platform

                from codegen.host import fingerprint

                here = f"{platform.machine()}/{fingerprint()}"
            fits = (
                ": for this CPU and compiler (used with --trust-embedded-code)"
                if a.target == here
                else ": for another CPU or compiler version (the graphs are compiled here instead)"
            )
        print(f"  {a.target} {a.kind} ({what}): {_bytes(a.length)}{fits}", file=out)


def _read_inputs(specs: list[str], inputs: list[Signature]) -> dict[str, np.ndarray]:
    if len(specs) == 1 and "=" not in specs[0] and len(inputs) == 1:
        specs = [f"{inputs[0].name}={specs[0]}"]
    names = {sig.name for sig in inputs}
    arrays = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep:
            raise UsageError(
                f"--input {spec!r}: name the input as NAME=FILE.npy; the inputs are {sorted(names)}"
            )
        if name not in names:
            raise UsageError(f"--input {spec!r}: the method has no input {name!r}; it has {sorted(names)}")
        try:
            arrays[name] = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UsageError(f"--input {spec!r}: cannot read {file} as a .npy array ({e})") from None
    missing = sorted(names - set(arrays))
    if missing:
        raise UsageError(f"missing --input for {missing}")
    return arrays


def run_command(model: LoadedModule, args, out) -> None:
    inputs, outputs = model.signature(args.method)
    arrays = _read_inputs(args.input, inputs)
    results = model.run(arrays, method=args.method)
    results = {k: np.asarray(v.get() if hasattr(v, "get") else v) for k, v in results.items()}
    if args.output is None:
        for name, value in results.items():
            print(f"{name}: {value.dtype}{list(value.shape)}", file=out)
            print(np.array2string(value, threshold=50, edgeitems=3), file=out)
        return
    target = Path(args.output)
    if target.suffix == ".npz":
        np.savez(target, **results)
    elif len(results) == 1:
        np.save(target, next(iter(results.values())))
    else:
        raise UsageError(f"--output {args.output}: the method has {len(results)} outputs; use a .npz file")
    print(f"wrote {', '.join(results)} to {target}", file=out)


def _compiled() -> int:
    """How many LLVM modules this process has compiled (0 before the compiler is imported)."""
    compiler = sys.modules.get("codegen.llvm.compiler")
    return compiler.stats["compiled"] if compiler else 0


def _origin(model: LoadedModule, method: str, compiled_here: bool) -> str:
    """Where `method`'s code came from at load."""
    exe = model._executables[method]
    if model.backend == "interpreter":
        return "the reference interpreter: nothing compiled"
    if model.backend == "cuda":
        return f"CUDA {exe.code_kind} for sm_{exe.arch}" if exe.code_kind else "CUDA: no kernels"
    if type(exe).__name__ == "PlannedGraph":
        return "code for this CPU run from its execution plan: not scheduled, not compiled"
    if compiled_here:
        return "compiled here"
    return "scheduled here, code from the cache" if exe.library_key else "no kernels to compile"


def bench(model: LoadedModule, args, out) -> None:
    inputs, _ = model.signature(args.method)
    dims = dict(d.split("=", 1) for d in args.dim)
    rng = np.random.default_rng(0)
    arrays = {}
    for sig in inputs:
        shape = []
        for d in sig.shape:
            if isinstance(d, int):
                shape.append(d)
            else:
                shape.append(int(dims.get(d, args.batch)))
        dtype = np.dtype(sig.dtype) if sig.dtype != "bool" else np.bool_
        if np.issubdtype(dtype, np.floating):
            arrays[sig.name] = rng.standard_normal(shape).astype(dtype)
        else:
            arrays[sig.name] = rng.integers(0, 2, size=shape).astype(dtype)
    host = arrays
    arrays = {k: model.to_device(v) for k, v in arrays.items()}  # (on a GPU: no copies in the timing)
    for _ in range(args.warmup):
        model.run(arrays, method=args.method)
    model.synchronize()
    times = []
    deadline = time.perf_counter() + args.max_seconds
    for _ in range(args.iters):
        start = time.perf_counter()
        model.run(arrays, method=args.method)
        model.synchronize()
        times.append(time.perf_counter() - start)
        if time.perf_counter() > deadline:
            break
    ms = np.array(times) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in arrays.items())
    print(f"{args.model} {args.method}({shapes}) on {model.device}, {len(times)} runs", file=out)
    seconds, compiled_here = args.load
    print(f"load: {seconds * 1e3:.1f} ms ({_origin(model, args.method, compiled_here)})", file=out)
    print(f"latency ms: p50 {p50:.3f}  p90 {p90:.3f}  p99 {p99:.3f}  min {ms.min():.3f}", file=out)
    print(f"throughput: {args.batch * 1e3 / p50:.1f} samples/s at batch {args.batch}", file=out)
    memory = model.memory(host, method=args.method)
    if memory is not None:
        needed, total = memory
        how = (
            f"one arena of {_bytes(needed)}"
            if model.backend == "llvm"
            else f"at most {_bytes(needed)} alive at once"
        )
        print(
            f"memory: {how} holds intermediates of {_bytes(total)} in all "
            "(buffers whose lifetimes do not overlap share it)",
            file=out,
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphc-runtime", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="signature, ops, weights and artifacts")
    p.add_argument("model")
    p = sub.add_parser("run", help="run a method on .npy inputs")
    p.add_argument("model")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy", required=True)
    p.add_argument("--output", metavar="FILE.npy|FILE.npz")
    p.add_argument("--method", default="forward")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--backend", choices=["llvm", "cuda", "interpreter"], help="default: llvm on the CPU, cuda on a GPU"
    )
    p.add_argument("--trust-embedded-code", action="store_true", help="use the file's compiled code")
    p = sub.add_parser("bench", help="latency percentiles and throughput on random inputs")
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=1, help="size of every symbolic dim (default 1)")
    p.add_argument("--dim", action="append", default=[], metavar="SYMBOL=SIZE", help="size of one symbol")
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--max-seconds", type=float, default=10.0)
    p.add_argument("--method", default="forward")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--backend", choices=["llvm", "cuda", "interpreter"], help="default: llvm on the CPU, cuda on a GPU"
    )
    p.add_argument("--trust-embedded-code", action="store_true", help="use the file's compiled code")
    sub.add_parser("env", help="the backends this machine has (llvm, cuda) and what the others lack")
    p = sub.add_parser("cache", help="the compiled-code cache: where it is and what it holds")
    p.add_argument("--clear", action="store_true", help="delete the code it holds (compiled again on need)")
    return parser


def env(out) -> None:
    from runtime.environment import report

    rows = report()
    width = max(len(row.what) for row in rows)
    for row in rows:
        print(f"{' ' if row.ok else '!'} {row.what + ':':{width + 1}} {row.detail}", file=out)


CACHED = {".so": "CPU libraries", ".o": "object files", ".ptx": "PTX modules", ".cubin": "cubins"}


def cache(clear: bool, out) -> None:
    """What the code cache holds (each graphc or CPU change leaves the old code behind: keys
    name both); `clear` deletes it: graphc's files only (code, checksums, unfinished writes)."""
    from codegen.library import cache_dir

    directory = cache_dir()
    if directory is None:
        print("code cache: off (GRAPHC_CACHE_DIR is set and empty)", file=out)
        return
    ours = [
        f
        for f in (directory.iterdir() if directory.is_dir() else ())
        if f.is_file() and (f.suffix in (*CACHED, ".sha256") or f.name.startswith(".lib-"))
    ]
    sizes = {}
    for f in ours:
        try:
            sizes[f] = f.stat().st_size
        except OSError:  # (gone since: another process cleared it)
            sizes[f] = 0
    counts = [f"{sum(f.suffix == suffix for f in ours)} {what}" for suffix, what in CACHED.items()]
    print(f"code cache: {directory}", file=out)
    print(f"  {', '.join(counts)}: {_bytes(sum(sizes.values()))} in {len(ours)} files", file=out)
    if clear:
        for f in ours:
            f.unlink(missing_ok=True)
        print(f"cleared: {len(ours)} files, {_bytes(sum(sizes.values()))}", file=out)


def main(argv: list[str] | None = None, out=None) -> int:
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    if args.command == "env":
        env(out)
        return 0
    if args.command == "cache":
        cache(args.clear, out)
        return 0
    try:
        started, compiled = time.perf_counter(), _compiled()
        model = load(
            args.model,
            device=getattr(args, "device", "cpu"),
            # `info` reads the file only: nothing to compile
            backend="interpreter" if args.command == "info" else args.backend,
            trust_embedded_code=getattr(args, "trust_embedded_code", False),
        )
        args.load = (time.perf_counter() - started, _compiled() > compiled)
        if args.command == "info":
            info(model, args.model, out)
        elif args.command == "run":
            run_command(model, args, out)
        else:
            if args.batch < 1 or args.iters < 1:
                raise UsageError("--batch and --iters must be at least 1")
            bench(model, args, out)
    except (IRError, UsageError, KeyError, OSError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"graphc-runtime: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
