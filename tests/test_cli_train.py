"""``refopt train PROBLEM RULE``: any rule on any problem, the loss curve, divergence reported."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refopt import problems, rules
from refopt.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_prints_the_loss_curve_and_it_falls(capsys):
    code, out, _ = run(capsys, "train", "mlp", "sgd", "--hyper", "lr=0.5", "--steps", "40", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["steps_run"] == 40 and len(report["loss"]) == 40 and report["diverged_at"] is None
    assert np.mean(report["loss"][-10:]) < 0.7 * report["loss"][0]
    code, out, _ = run(capsys, "train", "transformer", "adam", "--hyper", "lr=1e-2", "--steps", "5")
    assert code == 0 and "adam on transformer (20991 parameters, float32, numpy): 5 steps" in out


def test_the_cli_run_equals_the_library_run(capsys):
    code, out, _ = run(capsys, "train", "cnn", "adabelief", "--steps", "6", "--seed", "3", "--dtype", "float64",
                       "--json")
    problem = problems.get("cnn")
    res = problems.train(problem, rules.adabelief(), 6, 16, 3)
    assert json.loads(out)["loss"] == [float(x) for x in np.asarray(res.losses).reshape(6)]


def test_a_diverging_run_is_reported_at_its_step_and_exits_1(capsys):
    code, out, _ = run(capsys, "train", "transformer", "sgd", "--hyper", "lr=1e30", "--steps", "10", "--json")
    assert code == 1
    report = json.loads(out)  # valid JSON: the NaN is a string
    assert report["diverged_at"] == 1 and report["loss"][-1] == "nan" and report["steps_run"] == 2


@pytest.mark.parametrize("argv, message", [
    (["train", "transformr", "adam"], "did you mean 'transformer'"),
    (["train", "mlp", "adamm"], "did you mean 'adam'"),
    (["train", "mlp", "adam", "--steps", "0"], "--steps must be a positive integer"),
    (["train", "mlp", "adam", "--batch-size", "0"], "--batch-size must be a positive integer"),
    (["train", "mlp", "adam", "--threads", "0"], "--threads must be a positive integer"),
    (["train", "mlp", "adam", "--hyper", "lr=-1"], "lr"),
    (["train", "mlp", "adam", "--plot", "/no/such/dir/x.png"], "does not exist"),
])
def test_bad_usage_is_one_line_and_exit_2(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_train_plots_the_curve(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "loss.png"
    code, _, _ = run(capsys, "train", "softmax_regression", "adam", "--steps", "10", "--plot", str(path))
    assert code == 0 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_on_torch_tensors(capsys):
    pytest.importorskip("torch")
    code, out, _ = run(capsys, "train", "transformer", "adam", "--steps", "3", "--backend", "torch", "--json",
                       "--dtype", "float64")
    numpy_code, numpy_out, _ = run(capsys, "train", "transformer", "adam", "--steps", "3", "--json",
                                   "--dtype", "float64")
    assert code == numpy_code == 0
    a, b = json.loads(out)["loss"], json.loads(numpy_out)["loss"]
    assert np.allclose(a, b, rtol=1e-12, atol=0)  # the same program on another library
