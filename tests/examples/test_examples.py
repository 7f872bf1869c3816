import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fit_polynomial_learns_sine():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from fit_polynomial import fit
    finally:
        sys.path.pop(0)
    coeffs, loss = fit(steps=600)
    assert loss < 60  # from ~thousands at random init
    assert 0.6 < coeffs[1] < 1.1 and -0.15 < coeffs[3] < -0.03


def test_fit_polynomial_runs_as_a_script():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "fit_polynomial.py"),
                          "--steps", "50"], capture_output=True, text=True, check=True)
    assert "result: y =" in out.stdout
