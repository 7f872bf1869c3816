"""The import arrows of DESIGN.md: runtime never imports graphc; ir imports none of the others;
codegen never imports graphc or runtime. Checked on every import statement, lazy ones too."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "ir": {"graphc", "codegen", "runtime"},
    "codegen": {"graphc", "runtime"},
    "runtime": {"graphc"},
}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_follow_the_layering(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package} has no files"
    bad = {str(f.relative_to(ROOT)): sorted(_imported_packages(f) & FORBIDDEN[package]) for f in files}
    assert {f: p for f, p in bad.items() if p} == {}


def test_layering_check_catches_a_bad_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from graphc import tensor\n")
    assert _imported_packages(bad) & FORBIDDEN["runtime"] == {"graphc"}


def test_importing_the_runtime_leaves_the_compiler_for_when_a_module_loads():
    """DESIGN.md: runtime imports codegen lazily. `import runtime` (for `graphc-runtime info` and
    `env`, and the reference interpreter's backend) brings in neither the scheduler and kernel IR
    nor llvmlite; loading a module for the CPU compiler does."""
    import subprocess
    import sys

    probe = (
        "import sys, runtime\n"
        "heavy = ('codegen.executable', 'codegen.schedule', 'codegen.kernel', 'llvmlite')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
