"""Reliability of the collaborative and federated simulators and of their CLIs: divergence reported
(step, quantity) with valid JSON, unbounded schedules refused before they are built, seeded
predictions, outputs and memory checked before the work, options that do not apply refused."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import refopt
import refopt.cli.collab as cli_collab
import refopt.cli.fed as cli_fed
from refopt import collaborative as C, federated as F, mpi
from refopt.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def strict_json(text):
    """json.loads that refuses NaN/Infinity (which are not JSON)."""
    def bad(name):
        raise AssertionError(f"invalid JSON constant {name}")
    return json.loads(text, parse_constant=bad)


SMALL = ["--nodes", "6", "--byzantine", "1", "--dataset", "gaussian_mixture"]


# ---------------------------------------------------------------------------------------
# collaborative: divergence
# ---------------------------------------------------------------------------------------


class Quadratic:
    """L_i(θ) = mean over the batch of ½‖θ − x‖²; the gradient turns NaN from call ``nan_from`` on,
    the test loss (batches as large as the test set) is multiplied by ``test_scale`` from the
    ``scale_from``-th evaluation on."""

    num_classes = 2

    def __init__(self, dim=3, nan_from=None, test_scale=1.0, scale_from=10**9, test_size=2):
        self.dim, self.nan_from, self.calls = dim, nan_from, 0
        self.test_scale, self.scale_from, self.evals, self.test_size = test_scale, scale_from, 0, test_size

    def init(self, seed=0):
        return np.zeros(self.dim)

    def loss_grad(self, theta, X, y):
        xp = refopt._array.namespace(theta)
        diff = theta[:, None, :] - X
        loss = 0.5 * xp.mean(xp.sum(diff * diff, axis=2), axis=1)
        g = xp.mean(diff, axis=1)
        if X.shape[1] == self.test_size:
            if self.evals >= self.scale_from:
                loss = loss * self.test_scale
        else:
            self.calls += 1
            if self.nan_from is not None and self.calls >= self.nan_from:
                g = g * math.nan
        return loss, g

    def accuracy(self, theta, X, y):
        self.evals += 1
        return refopt._array.namespace(theta).zeros((theta.shape[0],), dtype=theta.dtype)


def _data(h=6, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    X = 5.0 + rng.standard_normal((h * 4, dim))
    y = np.zeros(X.shape[0], dtype=np.int64)
    split = [np.arange(4 * i, 4 * i + 4) for i in range(h)]
    return (X, y, X[:2], y[:2]), split


@pytest.mark.parametrize("algorithm", ["monna", "nna", "dsgd", "mocwtm"])
def test_nan_models_are_reported_not_averaged_away(algorithm):
    # before: NNA and MoNNA treated the NaN half-steps as "infinitely far" rows and returned zeros,
    # with diverged_at=None
    data, split = _data()
    r = C.simulate(algorithm, Quadratic(nan_from=3), data, nodes=7, byzantine=1, attack="sign_flipping", steps=10,
                   lr=0.1, batch_size=3, split=split, eval_every=5)
    assert r.diverged_at == 3 and r.diverged_quantity == "honest half-step models"
    assert r.steps_done == 2 and r.loss.size == 2 and np.all(np.isfinite(r.theta))
    d = r.to_dict()
    assert d["diverged_at"] == 3 and d["diverged_quantity"] == "honest half-step models"


def test_exploding_training_loss_is_divergence():
    # lr 2.5 on ½‖θ − x‖²: θ − x is multiplied by −1.5 every step, the loss grows 2.25× per step and stays finite
    data, split = _data()
    r = C.simulate("dsgd", Quadratic(), data, nodes=6, steps=60, lr=2.5, momentum=0.0, batch_size=4, split=split,
                   eval_every=10)
    assert r.diverged_quantity == "training loss" and 15 < r.diverged_at < 40
    assert np.all(np.isfinite(r.loss)) and r.loss.size == r.diverged_at - 1
    # blowup=None: only non-finite values count, and these stay finite
    r = C.simulate("dsgd", Quadratic(), data, nodes=6, steps=60, lr=2.5, momentum=0.0, batch_size=4, split=split,
                   eval_every=10, blowup=None)
    assert r.diverged_at is None and r.steps_done == 60


def test_exploding_test_loss_is_divergence():
    # before: a test loss of 1e28 was "no divergence"
    data, split = _data()
    prob = Quadratic(test_scale=1e28, scale_from=3)  # evaluations 0, 5 fine; from the one at step 10 on, ×1e28
    r = C.simulate("monna", prob, data, nodes=6, steps=20, lr=0.1, batch_size=3, split=split, eval_every=5)
    assert r.diverged_at == 10 and r.diverged_quantity == "test loss"
    assert list(r.eval_steps) == [0, 5] and r.steps_done == 9 and np.all(r.test_loss < 1e3)


def test_collab_cli_huge_lr_reports_divergence_as_json(capsys):
    # before: TypeError "unsupported operand type(s) for ** or pow(): 'NoneType' and 'float'"
    code, out, err = run(capsys, "collab", "--steps", "5", "--lr", "1e300", "--json", *SMALL)
    assert code == 0, err
    data = strict_json(out)
    assert data["diverged_at"] == 1 and data["diverged_quantity"]
    code, out, err = run(capsys, "collab", "--steps", "5", "--lr", "1e300", *SMALL)
    assert code == 0 and "diverged at step 1" in out, err


def test_collab_to_dict_writes_nonfinite_numbers_as_strings():
    data, split = _data()
    r = C.simulate("dsgd", Quadratic(), data, nodes=6, steps=2, lr=0.1, batch_size=3, split=split)
    r.seconds = 0.0
    r.test_loss = np.array([math.nan, -math.inf])
    d = r.to_dict()
    assert d["steps_per_second"] == "inf" and d["final_test_loss"] == "-inf" and d["test_loss"] == ["nan", "-inf"]
    json.dumps(d, allow_nan=False)


def test_lr_schedule_values_are_checked_naming_the_step():
    data, split = _data()
    kw = dict(nodes=6, steps=8, batch_size=3, split=split)
    with pytest.raises(ValueError, match=r"lr returned -1\.0 at step 0"):
        C.simulate("dsgd", Quadratic(), data, lr=lambda t: -1.0, **kw)
    with pytest.raises(ValueError, match=r"lr returned nan at step 5"):
        C.simulate("dsgd", Quadratic(), data, lr=lambda t: 0.1 if t < 5 else math.nan, **kw)
    prob = Quadratic()
    with pytest.raises(ValueError, match=r"at step 3"):
        C.simulate("dsgd", prob, data, lr=lambda t: 0.1 if t != 3 else True, **kw)
    assert prob.calls == 0  # refused before any work


# ---------------------------------------------------------------------------------------
# collaborative: attacks by name (issue 16)
# ---------------------------------------------------------------------------------------


def test_collab_cli_mimic_runs(capsys):
    # before: "simulate: unknown attack 'mimic_heuristic'"
    code, out, err = run(capsys, "collab", "--attack", "mimic", "--steps", "3", "--json", *SMALL)
    assert code == 0, err
    assert strict_json(out)["config"]["attack"] == "mimic_heuristic"


def test_simulate_mimic_heuristic_by_name_is_seeded():
    data, split = _data()
    kw = dict(nodes=7, byzantine=1, attack="mimic_heuristic", steps=4, lr=0.1, batch_size=3, split=split, seed=3)
    a = C.simulate("monna", Quadratic(), data, **kw)
    b = C.simulate("monna", Quadratic(), data, **kw)
    np.testing.assert_array_equal(a.theta, b.theta)


def test_foe_names_one_attack(capsys):
    # simulate("foe") and refopt.attacks.foe are the fixed −2μ; the CLI's line-searched FOE is optimal_foe, and
    # --attack foe is its deprecated alias, with a note on stderr
    assert cli_collab.ATTACKS["optimal_foe"] == ("optimal_monna", {"attack": "foe"})
    assert cli_collab.ATTACKS["ipm"][0] == "ipm" and refopt.attacks.foe is refopt.attacks.ipm
    code, new, err_new = run(capsys, "collab", "--attack", "optimal_foe", "--steps", "3", "--json", *SMALL)
    assert code == 0 and "deprecated" not in err_new
    code, old, err_old = run(capsys, "collab", "--attack", "foe", "--steps", "3", "--json", *SMALL)
    assert code == 0 and "--attack foe is deprecated" in err_old and "optimal_foe" in err_old
    a, b = strict_json(new), strict_json(old)
    assert a["accuracy"] == b["accuracy"] and a["loss"] == b["loss"]


# ---------------------------------------------------------------------------------------
# federated: divergence, valid JSON
# ---------------------------------------------------------------------------------------


def test_fed_cli_exploding_run_is_valid_json(capsys):
    # before: exit 0 with "final_params": NaN, which is not JSON
    code, out, err = run(capsys, "fed", "--lr-local", "10", "--json", "--horizon", "100")
    assert code == 0, err
    data = strict_json(out)
    assert data["diverged_at"] == 3 and data["diverged_quantity"] == "federated loss"
    assert data["server_steps"] == 2 and isinstance(data["final_params"], float)
    code, out, _ = run(capsys, "fed", "--lr-local", "10", "--horizon", "100")
    assert code == 0 and "diverged at server step 3 (federated loss" in out


def test_fed_nonfinite_model_is_detected_at_its_step():
    # the model is checked after every server step, not only at the evaluations (every 1000 steps here)
    r = F.simulate("fedfix", "quadratic", delta_t=0.5, lr_local=10.0, horizon=1000, blowup=None, eval_every=1000)
    assert r.diverged_quantity == "global model" and r.diverged_at > 100
    assert r.server_steps == r.diverged_at - 1 and np.all(np.isfinite(r.final_params))
    assert list(r.steps) == [0]
    json.dumps(r.to_dict(), allow_nan=False)
    assert r.to_dict()["diverged_at"] == r.diverged_at


def test_fed_to_dict_writes_nonfinite_numbers_as_strings():
    r = F.simulate("fedavg", "quadratic", horizon=3, lr_local=0.1)
    r.final_params = np.array([math.nan])
    r.steps_per_second = math.inf
    d = r.to_dict()
    assert d["final_params"] == "nan" and d["steps_per_second"] == "inf"
    json.dumps(d, allow_nan=False)


# ---------------------------------------------------------------------------------------
# federated: schedules bounded before they are built
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme,kw", [("fedavg", {}), ("fedasync", {}), ("fedfix", {"delta_t": 0.3}),
                                       ("fedbuff", {"buffer": 3}), ("fedbuff", {"buffer": 3, "variant": "nguyen"})])
def test_count_steps_matches_the_schedule(scheme, kw):
    times = F.client_times("exp", 6, seed=1)
    n = F.clock.count_steps(scheme, times, horizon=40, **kw)
    built = len(F.schedule(scheme, times, horizon=40, **kw))
    if scheme == "fedbuff":
        assert built <= n  # an upper bound (in the authors' variant clients wait for the buffer to fill)
    else:
        assert n == built


@pytest.mark.parametrize("argv", [["--delta-t", "1e-6"], ["--horizon", "1e9"],
                                  ["--scheme", "fedasync", "--speeds", "1,1e-9", "--clients", "2"]])
def test_fed_cli_refuses_unbounded_schedules(capsys, argv):
    # before: the whole schedule was built first, memory growing until killed
    code, _, err = run(capsys, "fed", *argv)
    assert code == 2 and "--max-steps 1,000,000" in err and err.count("\n") == 1, err


def test_fed_cli_max_steps_flag(capsys):
    code, _, err = run(capsys, "fed", "--horizon", "100", "--max-steps", "100")
    assert code == 2 and "200 server steps" in err and "--max-steps 100" in err
    code, out, err = run(capsys, "fed", "--horizon", "100", "--max-steps", "200", "--json")
    assert code == 0 and strict_json(out)["server_steps"] == 200
    code, _, err = run(capsys, "fed", "--max-steps", "0")
    assert code == 2 and "--max-steps must be a positive integer" in err


def test_fed_api_refuses_a_schedule_above_the_limit():
    with pytest.raises(ValueError, match=r"3,000,000,000 server steps .* more than the 10,000,000"):
        F.simulate("fedfix", "quadratic", delta_t=1e-6, horizon=3000)
    with pytest.raises(ValueError, match=r"max_steps"):
        F.simulate("fedasync", "quadratic", speeds=[1.0, 1e-9], clients=2, horizon=3000)
    r = F.simulate("fedfix", "quadratic", delta_t=1e-6, horizon=3000, max_steps=5)  # capped: fine
    assert r.server_steps == 5


# ---------------------------------------------------------------------------------------
# federated: seeded prediction, options that do not apply
# ---------------------------------------------------------------------------------------


def test_fed_predicted_fixed_point_is_seeded(capsys):
    # before: the prediction drew the client times without the seed (6.74, 4.74, 4.17 on three runs)
    argv = ("fed", "--scheme", "fedasync", "--speeds", "exp", "--seed", "5", "--horizon", "20", "--json")
    first = strict_json(run(capsys, *argv)[1])
    second = strict_json(run(capsys, *argv)[1])
    assert first["predicted_fixed_point"] == second["predicted_fixed_point"]
    times = F.client_times("exp", 10, seed=5)
    assert first["client_times"] == [str(t) for t in times]
    assert first["predicted_fixed_point"] == pytest.approx(
        float(F.theory.fixed_point("fedasync", times, list(range(10)), weights="identical")), rel=1e-12)


@pytest.mark.parametrize("argv,message", [
    (["--scheme", "fedavg", "--alpha", "0.5"], "--alpha applies to --scheme fedasync only, not fedavg"),
    (["--scheme", "fedfix", "--buffer", "3"], "--buffer applies to --scheme fedbuff only, not fedfix"),
    (["--scheme", "fedfix", "--staleness", "hinge"], "--staleness applies to --scheme fedbuff and fedasync only"),
    (["--scheme", "fedasync", "--delta-t", "0.5"], "--delta-t applies to --scheme fedfix only, not fedasync"),
    (["--scheme", "fedasync", "--staleness", "hinge"], "applies to fedasync with --alpha only"),
])
def test_fed_cli_rejects_options_of_other_schemes(capsys, argv, message):
    code, _, err = run(capsys, "fed", *argv)
    assert code == 2 and message in err, err


@pytest.mark.parametrize("kw,message", [
    (dict(scheme="fedasync", alpha=0.5, form="bogus"), r"form.*'mixing'.*'delta'|form.*bogus"),
    (dict(scheme="fedasync", form="bogus"), r"form"),
    (dict(scheme="fedbuff", buffer=2, variant="bogus"), r"variant"),
    (dict(scheme="fedfix", delta_t=0.5, variant="nguyen"), r"variant='nguyen' applies to scheme 'fedbuff' only"),
    (dict(scheme="fedavg", form="delta"), r"form='delta' applies to scheme 'fedasync' with alpha only"),
    (dict(scheme="fedavg", dtype="float16"), r"dtype must be 'float64' or 'float32'; got 'float16'"),
    (dict(scheme="fedavg", dtype=np.float32), r"dtype must be 'float64' or 'float32'"),
])
def test_fed_api_rejects_bogus_names(kw, message):
    with pytest.raises(ValueError, match=message) as info:
        F.simulate(problem="quadratic", horizon=3, **kw)
    if "bogus" in str(kw):
        assert "bogus" in str(info.value)


def test_collab_api_rejects_float16():
    data, split = _data()
    with pytest.raises(ValueError, match=r"dtype must be 'float64' or 'float32'; got 'float16'"):
        C.simulate("dsgd", Quadratic(), data, nodes=6, steps=2, split=split, dtype="float16")


# ---------------------------------------------------------------------------------------
# CLI: outputs, extras and memory checked before the work; expected failures are one line
# ---------------------------------------------------------------------------------------


@pytest.fixture
def no_simulation(monkeypatch):
    """Make any simulation fail loudly: the checks under test must come before it."""
    def boom(*a, **k):
        raise AssertionError("the simulation ran before the check")
    monkeypatch.setattr(cli_collab, "simulate", boom)
    monkeypatch.setattr(cli_fed, "simulate", boom)


@pytest.mark.parametrize("command", ["collab", "fed"])
def test_bad_plot_path_is_refused_before_the_work(capsys, tmp_path, no_simulation, command):
    code, _, err = run(capsys, command, "--plot", str(tmp_path / "missing" / "x.png"))
    assert code == 2 and "does not exist" in err and err.count("\n") == 1, err
    code, _, err = run(capsys, command, "--plot", str(tmp_path))
    assert code == 2 and "is a directory" in err, err


@pytest.mark.parametrize("command", ["collab", "fed"])
def test_missing_matplotlib_is_refused_before_the_work(capsys, tmp_path, monkeypatch, no_simulation, command):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, _, err = run(capsys, command, "--plot", str(tmp_path / "x.png"))
    assert code == 2 and "pip install 'refopt[plot]'" in err and err.count("\n") == 1, err


def test_impossible_allocation_is_refused_before_the_work(capsys, monkeypatch, no_simulation):
    monkeypatch.setattr(cli_collab, "simulate", C.simulate)  # the check is simulate's own, before its set-up
    monkeypatch.setattr(mpi, "available_memory", lambda: 2**30)
    code, _, err = run(capsys, "collab", "--batch-size", "100000000", "--steps", "2")
    assert code == 2 and "GiB of memory, more than the 1 GiB available" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("exc,expected", [
    (ImportError("No module named 'cupy'", name="cupy"), "No module named 'cupy'"),
    (ImportError("plots need matplotlib: pip install 'refopt[plot]'"), "pip install"),
    (FileNotFoundError(2, "No such file or directory", "/nope/out.json"), "No such file or directory"),
    (PermissionError(13, "Permission denied", "/root/x"), "Permission denied"),
    (MemoryError(), "out of memory"),
])
def test_main_turns_expected_failures_into_one_line(capsys, monkeypatch, exc, expected):
    def fail(args):
        raise exc
    monkeypatch.setattr(cli_fed, "run", fail)
    code, _, err = run(capsys, "fed")
    assert code == 2 and err.startswith("refopt fed: error: ") and expected in err and err.count("\n") == 1, err


@pytest.mark.parametrize("exc", [ImportError("cannot import name 'x' from 'refopt.rules'", name="refopt.rules"),
                                 ImportError("something broke"), RuntimeError("a bug")])
def test_main_keeps_tracebacks_for_bugs(monkeypatch, exc):
    def fail(args):
        raise exc
    monkeypatch.setattr(cli_fed, "run", fail)
    with pytest.raises(type(exc)):
        main(["fed"])


# ---------------------------------------------------------------------------------------
# under mpiexec: divergence is reported the same way, no traceback, no MPI_Abort
# ---------------------------------------------------------------------------------------


def _mpiexec():
    import importlib.util
    import shutil
    import subprocess

    if importlib.util.find_spec("mpi4py") is None or shutil.which("mpiexec") is None:
        return None
    exe = shutil.which("mpiexec")
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    extra = []
    if "Open MPI" in version or "OpenRTE" in version:
        import os

        extra = ["--oversubscribe"] + (["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])
    return [exe] + extra


@pytest.mark.mpi
@pytest.mark.skipif(_mpiexec() is None, reason="mpi4py or mpiexec missing: pip install 'refopt[mpi]'")
@pytest.mark.parametrize("argv,key", [
    (["collab", "--steps", "5", "--lr", "1e300", "--json", *SMALL], "diverged_at"),
    (["fed", "--lr-local", "10", "--horizon", "50", "--json"], "diverged_at"),
])
def test_divergence_under_mpiexec_is_one_valid_json(argv, key):
    # before: collab died with a traceback on every rank and MPI_Abort
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL"))}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(root))
    proc = subprocess.run(_mpiexec() + ["-n", "2", sys.executable, "-m", "refopt", *argv], capture_output=True,
                          text=True, timeout=120, env=env, cwd=root)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stdout.count("\n") == 1  # rank 0 only
    assert strict_json(proc.stdout)[key] is not None


def test_federated_bool_flags_are_bools():
    with pytest.raises(TypeError, match=r"normalise_selected must be True or False; got 'no'"):
        F.rules.fedavg_weights(np.ones(3) / 3, sampling="uniform", m=2, rng=0, normalise_selected="no")
    with pytest.raises(TypeError, match=r"record_params must be True, False or None; got 1"):
        F.simulate("fedavg", "quadratic", horizon=3, record_params=1)


# ---------------------------------------------------------------------------------------
# a sweep: every numeric option of collab and fed with edge values gives a valid JSON report or one
# line of error (exit 2), never a traceback
# ---------------------------------------------------------------------------------------

EDGE_VALUES = ("-1", "0", "nan", "inf", "1e300", "2.5")
COLLAB_BASE = ["collab", "--steps", "3", *SMALL, "--json"]
FED_BASE = ["fed", "--horizon", "20", "--json"]
COLLAB_OPTIONS = ("--nodes", "--byzantine", "--alpha", "--steps", "--batch-size", "--lr", "--seed")
FED_OPTIONS = ("--clients", "--delta-t", "--horizon", "--lr-local", "--lr-server", "--local-steps", "--seed",
               "--max-steps", "--speeds")


def _with(base, option, value):
    argv = list(base)
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    return argv


@pytest.mark.parametrize("argv", [_with(COLLAB_BASE, o, v) for o in COLLAB_OPTIONS for v in EDGE_VALUES]
                         + [_with(FED_BASE, o, v) for o in FED_OPTIONS for v in EDGE_VALUES]
                         + [_with(FED_BASE + ["--scheme", s], o, v) for s, o in
                            [("fedbuff", "--buffer"), ("fedasync", "--alpha")] for v in EDGE_VALUES],
                         ids=lambda a: " ".join(a[a.index("--json") + 1:] if a[-1] != "--json" else a[1:]))
def test_edge_values_give_a_report_or_one_line(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: a value of the wrong type, with its usage line
        assert exc.code == 2
        return
    out, err = capsys.readouterr()
    if code == 0:
        strict_json(out)
    else:
        assert code == 2 and err.startswith(f"refopt {argv[0]}: error: ") and err.count("\n") == 1, err


def test_fed_too_many_clients_is_refused_before_the_work(capsys, monkeypatch, no_simulation):
    monkeypatch.setattr(mpi, "available_memory", lambda: 2**30)
    code, _, err = run(capsys, "fed", "--clients", "10000000")
    assert code == 2 and "--clients 10,000,000 needs about" in err and err.count("\n") == 1, err
    with pytest.raises(ValueError, match=r"simulate: clients=10,000,000 needs about .* GiB"):
        F.simulate("fedavg", "quadratic", clients=10_000_000, horizon=1)


def test_collab_memory_is_checked_before_the_schedule_and_the_graph(monkeypatch):
    monkeypatch.setattr(mpi, "available_memory", lambda: 2**30)
    data, split = _data()
    calls = []

    def schedule(t):
        calls.append(t)
        return 0.1
    with pytest.raises(ValueError, match=r"steps=1,000,000,000.* needs about .* GiB of memory, more than the 1 GiB"):
        C.simulate("dsgd", Quadratic(), data, nodes=6, steps=10**9, lr=schedule, batch_size=3, split=split)
    assert calls == []  # refused before the schedule is evaluated
    with pytest.raises(ValueError, match=r"nodes=1,000,000 \(the communication graph\) needs about"):
        C.simulate("dsgd", Quadratic(), data, nodes=10**6, steps=2)
