"""``refopt run`` and ``refopt reproduce``, and the example scripts."""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from refopt.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_prints_the_trajectory_and_writes_csv(capsys, tmp_path):
    path = tmp_path / "run.csv"
    code, out, _ = run(capsys, "run", "diffgrad", "diffgrad_f1", "--x0", "-1", "--steps", "299",
                       "--hyper", "lr=0.1", "--hyper", "betas=(0.95, 0.999)", "--csv", str(path))
    assert code == 0
    assert "distance to the nearest known minimizer [-0.3]" in out
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 300 and rows[0]["x0"] == "-1.0"
    assert float(rows[-1]["x0"]) == pytest.approx(-0.300071, abs=1e-6)  # update-rules.md §2.3


def test_run_several_starts_and_divergence_report(capsys):
    code, out, _ = run(capsys, "run", "sgd", "rosenbrock", "--hyper", "lr=0.1", "--steps", "50",
                       "--x0=-1,1", "--x0", "0.5,0.5")
    assert code == 0
    assert "run 0: start [-1.0, 1.0]" in out and "run 1: start [0.5, 0.5]" in out
    assert re.search(r"^\s+3\s+diverged \(see the report below\); frozen at step 2$", out, re.M)
    assert re.search(r"run \(0,\): diverged at step 3 \(loss blew up", out)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["run", "adam", "rosenbrok"], r"unknown function 'rosenbrok'.*'rosenbrock'"),
        (["run", "adam", "rosenbrock", "--x0", "1,2,3"], r"--x0 '1,2,3' has 3 coordinates but rosenbrock has dim 2"),
        (["run", "adam", "rosenbrock", "--x0", "a,b"], r"--x0 takes comma-separated numbers"),
        (["run", "adam", "rosenbrock", "--steps", "0"], r"--steps must be a positive integer; got 0"),
    ],
)
def test_run_bad_input(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and re.search(message, err), err


@pytest.mark.parametrize("experiment", ["diffgrad", "adabelief", "clipping"])
def test_reproduce_agrees_with_the_papers(capsys, experiment):
    code, out, _ = run(capsys, "reproduce", experiment, "--no-plots")
    assert code == 0, out
    assert "DIFFERS" not in out
    assert out.count("agrees") >= {"diffgrad": 8, "adabelief": 3, "clipping": 19}[experiment]


def test_reproduce_writes_plots(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    code, out, _ = run(capsys, "reproduce", "diffgrad", "--out", str(tmp_path))
    assert code == 0
    png = tmp_path / "diffgrad.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_run_writes_a_contour_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "beale.png"
    code, _, _ = run(capsys, "run", "adabelief", "log_beale", "--hyper", "lr=0.01", "--steps", "100", "--plot", str(path))
    assert code == 0 and path.stat().st_size > 20_000


EXAMPLES = [
    ("diffgrad_toy_functions.py", [], r"diffgrad_f1\s+diffgrad\s+-0\.300071"),
    ("adabelief_beale.py", [], r"adabelief\s+ends at \(\+3\.000, \+0\.500\)"),
    ("clipping_sharpness.py", [], r"-clip_1%\(g\)\s+sharpness\s+20\.817"),
    ("sweep_thousands.py", ["400", "200"], r"equals its separate run bit for bit"),
    ("train_transformer.py", [], r"step   0  loss 4\.5636(.|\n)*step 299  loss 2\.\d"),
]


@pytest.mark.parametrize("script,args,expect", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_examples_run(script, args, expect):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "error::RuntimeWarning"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.search(expect, done.stdout), done.stdout


def test_reproduce_all_runs_the_five_papers_with_monna_quick(capsys, monkeypatch):
    """`reproduce all` covers every paper; MoNNA's grid runs in its quick mode unless --full."""
    from refopt.cli import reproduce

    calls = []

    def fake(name):
        def runner(out, **kw):
            calls.append((name, kw))
            return reproduce.Outcome(name, "protocol", [reproduce.Row("row", "-", "x", None)])
        return runner

    monkeypatch.setattr(reproduce, "RUNNERS", {n: fake(n) for n in reproduce.RUNNERS})
    code, out, _ = run(capsys, "reproduce", "all", "--no-plots")
    assert code == 0
    assert [n for n, _ in calls] == ["diffgrad", "adabelief", "clipping", "sharpness", "monna", "fedfix"]
    assert dict(calls)["sharpness"]["quick"] is True and dict(calls)["sharpness"]["seeds"] == 1
    assert dict(calls)["monna"]["quick"] is True and dict(calls)["monna"]["steps"] == 200
    calls.clear()
    run(capsys, "reproduce", "all", "--no-plots", "--full", "--steps", "50")
    assert "quick" not in dict(calls)["monna"] and dict(calls)["monna"]["steps"] == 50


def test_monna_quick_mode_judges_no_verdict():
    from refopt.cli.reproduce import monna_experiment

    outcome = monna_experiment(None, seeds=1, steps=3, quick=True, noisy_steps=3)
    assert all(r.ok is None for r in outcome.rows)
    assert outcome.passed and "QUICK MODE" in outcome.render()


@pytest.mark.parametrize("experiment, kwargs", [
    ("diffgrad", {}), ("adabelief", {}), ("clipping", {}), ("monna", {"seeds": 2, "steps": 4, "noisy_steps": 4}),
    ("sharpness", {"seeds": 2, "checkpoints": (2, 4)}),
])
def test_every_figure_is_written_with_titled_and_labelled_axes(experiment, kwargs, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from refopt.cli import reproduce

    figures = []
    real_save = reproduce._save

    def keep(fig, out, name):
        figures.append(fig)
        return real_save(fig, out, name)

    monkeypatch.setattr(reproduce, "_save", keep)
    outcome = reproduce.RUNNERS[experiment](str(tmp_path), **kwargs)
    assert outcome.plots and all((tmp_path / p.rsplit("/", 1)[-1]).stat().st_size > 20_000 for p in outcome.plots)
    for fig in figures:
        assert fig._suptitle is not None and fig._suptitle.get_text()
        for ax in fig.axes:
            assert ax.get_title(), experiment
            # a shared axis is labelled once (the bottom row's x, the left column's y)
            assert any(a.get_xlabel() for a in ax.get_shared_x_axes().get_siblings(ax)), (experiment, ax.get_title())
            assert any(a.get_ylabel() for a in ax.get_shared_y_axes().get_siblings(ax)), (experiment, ax.get_title())


def test_sharpness_quick_mode_measures_every_direction_without_verdicts():
    from refopt.cli.reproduce import SHARPNESS_DIRECTIONS, sharpness_experiment

    outcome = sharpness_experiment(None, seeds=1, checkpoints=(3,), quick=True)
    assert all(r.ok is None for r in outcome.rows) and "QUICK MODE" in outcome.render()
    measured = [r for r in outcome.rows if "S, Δ*, top-1% share" in r.what]
    assert [r.what.split("  ")[0].strip() for r in measured] == list(SHARPNESS_DIRECTIONS)
    assert all(r.refopt.startswith("S ") for r in measured)
