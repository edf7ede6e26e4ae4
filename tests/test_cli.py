"""The ``refopt`` command: list and explain."""

import re
import subprocess
import sys

import pytest

import refopt as ro
from refopt.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_every_rule_and_preset(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for name in ro.rules.names():
        assert re.search(rf"^\s+{re.escape(name)}\s", out, re.M), name
    for name in ro.presets.names():
        assert re.search(rf"^\s+{re.escape(name)}\s+-> ", out, re.M), name


def test_list_rules_only(capsys):
    code, out, _ = run(capsys, "list", "rules")
    assert code == 0 and "adabelief" in out and "torch.optim.Adam" not in out


def row(out, label):
    """The printed cells of one row of the step table."""
    match = re.search(rf"^{re.escape(label)}\s+(.*)$", out, re.M)
    assert match, f"no row {label!r}"
    return [float(x == "True") if x in ("True", "False") else float(x) for x in match.group(1).split()]


def test_explain_adabelief_prints_equations_and_golden_steps(capsys):
    code, out, _ = run(capsys, "explain", "adabelief", "--steps", "5", "--digits", "10")
    assert code == 0
    assert "s_t = β2 s_{t-1} + (1 - β2) (g_t - m_t)² + ε" in out
    # update-rules.md §5: AdaBelief (ε = 1e-16, rectify=False), θ after 1 and 5 steps
    assert row(out, "params[0]")[0] == pytest.approx(0.9988888889, rel=1e-9)
    assert row(out, "params[1]")[4] == pytest.approx(-1.99387044, rel=1e-9)
    assert row(out, "params[2]")[4] == pytest.approx(0.4938710771, rel=1e-9)
    # every quantity the trace names, in order, with t first
    labels = re.findall(r"^(\w+)(?:\[\d+\])?\s", out.split("step 1", 1)[1], re.M)
    assert labels.index("t") < labels.index("m") < labels.index("s") < labels.index("update") < labels.index("params")


def test_explain_hyper_and_dtype(capsys):
    code, out, _ = run(capsys, "explain", "radam", "--steps", "6", "--hyper", "threshold=rho>5",
                       "--hyper", "betas=(0.9, 0.999)", "--dtype", "float32")
    assert code == 0
    assert "threshold='rho>5'*" in out
    assert row(out, "rectified") == [0, 0, 0, 0, 0, 1]  # ρ_6 = 5.994 > 5: rectified from step 6
    assert row(out, "params[0]")[0] == pytest.approx(0.9955, rel=1e-7)  # §5 RAdam, float32


def test_explain_options_documents_every_hyper_parameter(capsys):
    code, out, _ = run(capsys, "explain", "adam", "--steps", "1", "--options")
    assert code == 0
    for h in ro.rules.rule_class("adam").HYPER:
        assert re.search(rf"^\s+{h.name}\s+default ", out, re.M), h.name


@pytest.mark.parametrize(
    "argv,message",
    [
        (["explain", "adamm"], r"unknown rule 'adamm'; did you mean 'adam'"),
        (["explain", "adam", "--hyper", "lr=-1"], r"adam: lr must be in \[0, inf\); got -1"),
        (["explain", "adam", "--hyper", "lr"], r"--hyper takes key=value; got 'lr'"),
        (["explain", "adam", "--steps", "0"], r"--steps must be between 1 and 1000; got 0"),
    ],
)
def test_explain_bad_input(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert re.search(message, err), err


def test_console_script_and_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "refopt", "list", "rules"], capture_output=True, text=True)
    assert done.returncode == 0 and "diffgrad" in done.stdout
