"""Every call the op definitions and the CUDA path make through the array module (`xp.name(...)`,
cupy on a GPU) exists in cupy and takes the arguments given: cupy mirrors numpy only in part
(`cupy.indices` has no `sparse=`, for one), and without a GPU nothing else would find out.

Checked from the source against cupy's signatures: the installed cupy's where there is one (it
imports without a GPU), else a snapshot of them (tests/cupy_signatures.json), so machines
without cupy check too. A call of a function the snapshot lacks fails until the snapshot is
made again where cupy is installed: `python tests/test_cupy_api.py`.
"""

import ast
import inspect
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).with_name("cupy_signatures.json")
MISSING = "missing"  # (a name cupy does not have)


def _xp_calls():
    """(file, line, dotted name after `xp.`, the call node) for every `xp.a.b(...)` call."""
    for package in ("ir", "graphc", "codegen", "runtime"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if not isinstance(node, ast.Call):
                    continue
                parts, f = [], node.func
                while isinstance(f, ast.Attribute):
                    parts.append(f.attr)
                    f = f.value
                if isinstance(f, ast.Name) and f.id == "xp" and parts:
                    yield path.relative_to(ROOT), node.lineno, ".".join(reversed(parts)), node


def _live(cupy, name: str):
    """cupy's `name` as the check sees it: its parameters as [name, kind] pairs, None where it
    has no signature to read (a ufunc), or MISSING."""
    function = cupy
    for part in name.split("."):
        if not hasattr(function, part):
            return MISSING
        function = getattr(function, part)
    try:
        return [[p.name, p.kind.name] for p in inspect.signature(function).parameters.values()]
    except (TypeError, ValueError):
        return None


def _problem(parameters, call: ast.Call) -> str | None:
    if parameters == MISSING:
        return "cupy has no such function"
    if parameters is None:
        return None
    kinds = {kind for _, kind in parameters}
    names = {name for name, kind in parameters if kind != "POSITIONAL_ONLY"}
    unknown = [k.arg for k in call.keywords if k.arg and k.arg not in names]
    if unknown and "VAR_KEYWORD" not in kinds:
        return f"cupy's takes no {', '.join(unknown)}="
    positional = [name for name, kind in parameters if kind in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")]
    starred = any(isinstance(a, ast.Starred) for a in call.args)
    if len(call.args) > len(positional) and "VAR_POSITIONAL" not in kinds and not starred:
        return f"cupy's takes {len(positional)} positional arguments, {len(call.args)} given"
    return None


def _signatures() -> tuple[str, dict]:
    """(where they come from, cupy's signatures by name): the installed cupy's, else the snapshot's."""
    try:
        import cupy
    except ImportError:
        snapshot = json.loads(SNAPSHOT.read_text())
        return f"the snapshot of cupy {snapshot['cupy']}", snapshot["functions"]
    return f"cupy {cupy.__version__}", {name: _live(cupy, name) for _, _, name, _ in _xp_calls()}


def test_every_array_module_call_is_one_cupy_takes():
    source, signatures = _signatures()
    calls = list(_xp_calls())
    assert len(calls) > 100  # (the walk finds the op definitions' calls)
    unknown = sorted({name for _, _, name, _ in calls} - set(signatures))
    assert not unknown, (
        f"{source} lacks {unknown}: make it again with cupy installed (pip install cupy-cuda12x: no GPU "
        "needed), then python tests/test_cupy_api.py"
    )
    problems = [
        f"{path}:{line}: xp.{name}: {why}"
        for path, line, name, call in calls
        if (why := _problem(signatures[name], call))
    ]
    assert not problems, f"against {source}:\n" + "\n".join(problems)


def test_the_snapshot_is_the_installed_cupys():
    cupy = pytest.importorskip("cupy")
    snapshot = json.loads(SNAPSHOT.read_text())["functions"]
    names = {name for _, _, name, _ in _xp_calls()}
    assert {name: snapshot.get(name) for name in names} == {name: _live(cupy, name) for name in names}


def test_the_check_sees_a_call_cupy_would_refuse():
    (call,) = [n for n in ast.walk(ast.parse("xp.indices(shape, sparse=True)")) if isinstance(n, ast.Call)]
    indices = [["dimensions", "POSITIONAL_OR_KEYWORD"], ["dtype", "POSITIONAL_OR_KEYWORD"]]
    assert _problem(indices, call) == "cupy's takes no sparse="
    assert _problem(MISSING, call) == "cupy has no such function"
    (call,) = [n for n in ast.walk(ast.parse("xp.indices(a, b, c)")) if isinstance(n, ast.Call)]
    assert _problem(indices, call) == "cupy's takes 2 positional arguments, 3 given"


if __name__ == "__main__":  # make the snapshot again (needs cupy, not a GPU)
    import cupy

    functions = {name: _live(cupy, name) for name in sorted({name for _, _, name, _ in _xp_calls()})}
    lines = [f"  {json.dumps(name)}: {json.dumps(parameters)}" for name, parameters in functions.items()]
    text = f'{{\n "cupy": "{cupy.__version__}",\n "functions": {{\n' + ",\n".join(lines) + "\n }\n}\n"
    SNAPSHOT.write_text(text)
    print(f"{SNAPSHOT}: {len(functions)} functions of cupy {cupy.__version__}", file=sys.stderr)
