"""What a GPU run of graphc needs, and whether this machine has it: tests/gpu/run.sh prints this
first and stops (exit status 2) where something is missing, saying what to install or carry.

    python tests/gpu/environment.py              # for a real GPU run
    python tests/gpu/environment.py --dry-run    # cupy and the GPU stood in for: neither needed

A GPU machine may have no package registry: what is missing then travels as wheels in `.whl/`
at the repository root, which run.sh installs into a private folder.
"""

import importlib
import platform
import re
import sys

MISSING = []


def report(what: str, detail: str, ok: bool | None = True) -> None:
    """One line; ok None: absent, but the run does without it."""
    print(f"{'ok' if ok else 'absent' if ok is None else 'MISSING':8} {what}: {detail}")
    if ok is False:
        MISSING.append(what)


def module(name: str, requirement: str):
    """The module `name` imported, or None (reported missing, with `requirement` to install;
    a version below the requirement's `>=` is reported too)."""
    try:
        found = importlib.import_module(name)
    except Exception as error:  # (an ImportError, or a package too old for the code importing it)
        report(name, f"{type(error).__name__}: {error} (needs {requirement})", ok=False)
        return None
    version = getattr(found, "__version__", "present")
    oldest = re.search(r">=([\d.]+)", requirement)
    if oldest and hasattr(found, "__version__") and _numbers(version) < _numbers(oldest[1]):
        report(name, f"{version}, too old (needs {requirement})", ok=False)
        return None
    report(name, version)
    return found


def _numbers(version: str) -> tuple:
    return tuple(int(n) for n in re.findall(r"\d+", version)[:3])


def main(argv: list[str]) -> int:
    dry = "--dry-run" in argv
    report("python", f"{platform.python_version()} ({sys.executable})", ok=sys.version_info >= (3, 11))
    for name, requirement in [
        ("numpy", "numpy>=1.26"),
        ("llvmlite", "llvmlite>=0.45"),
        ("ml_dtypes", "ml_dtypes>=0.4"),
        ("pytest", "pytest>=8"),
        ("hypothesis", "hypothesis>=6.100"),
    ]:
        module(name, requirement)
    if module("google.protobuf", "protobuf>=4.25,<8") is not None:  # (the module file's generated code
        module("ir.proto.gcm_pb2", "protobuf>=4.25,<8")  # checks the version it was generated for)
    if module("graphc", "the repository root on PYTHONPATH") is None:
        return finish(dry)
    # the rest as `graphc-runtime env` sees it: NVRTC is needed; cupy and a GPU unless stood in for
    from runtime.environment import report as machine

    needed = {"NVRTC"} if dry else {"NVRTC", "cupy", "GPU"}
    for row in machine():
        if row.what in ("python", "numpy", "protobuf", "llvmlite"):
            continue  # (reported above, against graphc's oldest versions)
        if dry and row.what in ("cupy", "GPU", "backends"):
            continue
        report(row.what, row.detail, ok=True if row.ok else False if row.what in needed else None)
    if dry:
        report("cupy and the GPU", "stood in for (tests/gpu/dry_run.py: numpy arrays, emulated threads)")
        return finish(dry)
    try:
        import torch
    except ImportError:
        report("torch", "absent (the benchmarks then leave PyTorch CUDA out)")
    else:
        report("torch", f"{torch.__version__}, CUDA {'available' if torch.cuda.is_available() else 'absent'}")
    return finish(dry)


def finish(dry: bool) -> int:
    if not MISSING:
        print("everything the GPU run needs is here" + (" (a dry run)" if dry else ""))
        return 0
    if MISSING == ["GPU"]:
        print("missing: a GPU that cupy can use (an NVIDIA GPU and its driver); nothing to run here")
        return 2
    print(
        f"missing: {', '.join(MISSING)}. With a package registry: python -m pip install -e '.[dev,cuda]' "
        "(a CUDA 12 driver) or '.[dev,cuda13]' (CUDA 13). Without one, download the wheels where pip "
        "works (python -m pip download --no-deps --only-binary=:all: --python-version X.Y "
        "--platform manylinux2014_x86_64 -d .whl NAME==VERSION) and carry .whl/ to the repository root"
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
