"""``refopt fed`` and ``refopt reproduce fedfix``."""

import json
import re

import pytest

from refopt.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_fed_json_fields_and_fixed_point(capsys):
    code, out, _ = run(capsys, "fed", "--scheme", "fedfix", "--delta-t", "0.5", "--horizon", "3000", "--json")
    assert code == 0
    data = json.loads(out)
    for key in ("final_params", "optimum", "predicted_fixed_point", "participation", "mean_delay",
                "server_steps", "simulated_time"):
        assert key in data, key
    assert len(data["participation"]) == len(data["mean_delay"]) == 10
    assert data["optimum"] == pytest.approx(4.5)
    assert data["predicted_fixed_point"] == pytest.approx(5.3571, abs=1e-4)  # federated.md §6
    assert abs(data["final_params"] - data["predicted_fixed_point"]) <= 0.02


def test_fed_unbiased_weights_recover_the_optimum(capsys):
    code, out, _ = run(capsys, "fed", "--scheme", "fedasync", "--weights", "unbiased", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["predicted_fixed_point"] == pytest.approx(4.5)
    assert abs(data["final_params"] - 4.5) <= 0.02


def test_fed_text_table(capsys):
    code, out, _ = run(capsys, "fed", "--scheme", "fedbuff", "--buffer", "5", "--horizon", "50")
    assert code == 0
    assert re.search(r"^\s+1\s+41/45\s+0\.\d{4}\s+\d+\.\d{3}$", out, re.M)  # exact rational client time


@pytest.mark.parametrize(
    "argv,message",
    [
        (["fed", "--delta-t", "0"], r"delta_t must be > 0, got 0"),
        (["fed", "--scheme", "fedbuff", "--buffer", "11"], r"buffer=11 must be in \[1, number of clients = 10\]"),
        (["fed", "--speeds", "1,-2,3", "--clients", "3"], r"client time \[1\] must be > 0, got -2"),
        (["fed", "--horizon", "-1"], r"--horizon must be a positive finite time; got -1"),
    ],
)
def test_fed_bad_input(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and re.search(message, err), err


def test_reproduce_fedfix(capsys):
    code, out, _ = run(capsys, "reproduce", "fedfix", "--no-plots")
    assert code == 0, out
    assert out.count("agrees") == 10 and "DIFFERS" not in out
