"""MPI scale-out of refopt.collaborative and refopt.federated (refopt.mpi).

The partition helpers and the serial communicator are tested in-process. The MPI runs launch
``mpiexec -n N`` (N = 1, 2, 3 on one machine; 3 ranks oversubscribe a 2-core runner) on
tests/_mpi_helper.py and on ``python -m refopt``, and are skipped when mpi4py or mpiexec is
missing (``pip install 'refopt[mpi]'``). What they check:

* MoNNA under ALIE, MoCWTM under label flipping with the code's random receive sets (MLP),
  FedFix on the quadratic clients and FedBuff on softmax clients give, on every rank and for
  1, 2 and 3 ranks (uneven blocks included), arrays equal bit for bit (float64) to the serial
  in-process run;
* ``refopt collab --json`` and ``refopt fed --json`` print, on rank 0 only, the serial output
  byte for byte once the timing fields (steps_per_second, wall_seconds) are blanked;
* a rank that raises inside the loop aborts every rank with a message naming it, no hang;
* a rank that raises while setting up, more ranks than nodes or clients, and a missing mpi4py
  under mpiexec give one clear error (rank 0) and exit status 2.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refopt import mpi as _mpi
from refopt.cli import main as cli_main

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _mpi_helper as helper  # noqa: E402

TIMEOUT = 120  # seconds per launch; a hang fails the test instead of blocking CI


# ---------------------------------------------------------------------------------------
# in-process: partition, serial communicator
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,size,offsets",
    [(7, 1, [0, 7]), (7, 2, [0, 4, 7]), (7, 3, [0, 3, 5, 7]), (6, 3, [0, 2, 4, 6]), (3, 3, [0, 1, 2, 3])],
)
def test_partition_contiguous_blocks_differing_by_at_most_one(n, size, offsets):
    assert _mpi.partition(n, size) == offsets
    sizes = np.diff(offsets)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == n


def test_partition_rejects_more_ranks_than_items():
    with pytest.raises(ValueError, match=r"4 MPI ranks but only 3 clients .*at most 3 ranks \(mpiexec -n 3\)"):
        _mpi.partition(3, 4, what="clients")
    with pytest.raises(TypeError, match="size must be a positive int"):
        _mpi.partition(3, 0)


def test_local_comm_is_the_identity():
    comm = _mpi.LocalComm()
    a, b = np.arange(6.0).reshape(3, 2), np.ones(3)
    out = comm.allgather_rows([a, b], [3])
    assert out[0] is a and out[1] is b
    with pytest.raises(ValueError, match="unchanged"):  # errors pass through untouched
        with comm.agreed("x"):
            raise ValueError("unchanged")


def test_simulators_reject_a_bad_comm():
    from refopt.federated import simulate

    with pytest.raises(TypeError, match="comm must be None"):
        simulate("fedfix", "quadratic", delta_t=0.5, horizon=1, comm="world")


def test_serial_run_is_not_under_mpi(monkeypatch):
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "REFOPT_MPI"):
        monkeypatch.delenv(var, raising=False)
    assert isinstance(_mpi.from_environment(), _mpi.LocalComm)
    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setenv("REFOPT_MPI", "0")
    assert isinstance(_mpi.from_environment(), _mpi.LocalComm)


# ---------------------------------------------------------------------------------------
# launching mpiexec
# ---------------------------------------------------------------------------------------


def _mpiexec():
    """(argv prefix for N ranks) or None when MPI is not available to this interpreter."""
    if importlib.util.find_spec("mpi4py") is None:
        return None
    local = Path(sys.executable).parent / "mpiexec"
    exe = str(local) if local.exists() else shutil.which("mpiexec")
    if exe is None:
        return None
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    extra = []
    if "Open MPI" in version or "OpenRTE" in version:  # Open MPI refuses more ranks than cores, and root
        extra = ["--oversubscribe"] + (["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])
    return [exe] + extra


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="mpi4py or mpiexec missing: pip install 'refopt[mpi]'")


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL")) and k != "REFOPT_MPI"}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


def launch(n, *argv, env=None):
    cmd = MPIEXEC + ["-n", str(n), sys.executable] + list(argv)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env or _env(), cwd=HERE.parent)


def _blank_timing(text: str) -> str:
    return re.sub(r'"(steps_per_second|wall_seconds)": [^,}]+', r'"\1": 0', text)


@pytest.fixture(scope="module")
def serial():
    """The serial in-process run: arrays of the helper's configurations and the CLI outputs."""
    arrays = {**helper.collab_results(), **helper.fed_results()}
    outputs = {}
    for name, argv in (("collab", helper.COLLAB_CLI), ("fed", helper.FED_CLI)):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert cli_main(argv) == 0
        outputs[name] = buf.getvalue()
    return arrays, outputs


@needs_mpi
@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_mpi_runs_equal_the_serial_run_bit_for_bit(ranks, serial, tmp_path):
    arrays, outputs = serial
    proc = launch(ranks, str(HERE / "_mpi_helper.py"), "run", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in range(ranks):  # every rank holds the same result
        got = np.load(tmp_path / f"rank{rank}.npz")
        assert sorted(got.files) == sorted(arrays)
        for key, want in arrays.items():
            assert got[key].dtype == want.dtype and got[key].shape == want.shape, key
            assert np.array_equal(got[key], want, equal_nan=True), f"{key} differs on rank {rank} of {ranks}"
    # the numbers are real ones (not, say, all zeros): the models moved and stayed finite
    assert np.all(np.isfinite(arrays["monna_alie.theta"])) and np.all(arrays["monna_alie.spread"] > 0)
    assert np.all(np.isfinite(arrays["mocwtm_lf_code.loss"])) and np.all(arrays["mocwtm_lf_code.spread"] > 0)
    assert abs(float(arrays["fedfix.final_params"][0]) - 5.357) < 0.6  # heading to the FedFix fixed point 5.357
    for name in ("collab", "fed"):
        text = (tmp_path / f"{name}.json").read_text()
        assert _blank_timing(text) == _blank_timing(outputs[name])  # byte for byte, timing blanked
        json.loads(text)


@needs_mpi
@pytest.mark.mpi
def test_cli_entry_point_prints_once_under_mpiexec():
    proc = launch(2, "-m", "refopt", *helper.FED_CLI)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("\n") == 1 and proc.stdout.startswith('{"scheme": "fedfix"')  # rank 0 only
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        cli_main(helper.FED_CLI)
    assert _blank_timing(proc.stdout) == _blank_timing(buf.getvalue())


@needs_mpi
@pytest.mark.mpi
def test_a_failing_rank_aborts_every_rank_with_its_message(tmp_path):
    proc = launch(2, str(HERE / "_mpi_helper.py"), "fail-loop", str(tmp_path))
    assert proc.returncode != 0
    assert "refopt: rank 1 of 2 failed in collaborative simulate: RuntimeError: injected failure on rank 1" in proc.stderr
    assert "aborting all ranks" in proc.stderr


@needs_mpi
@pytest.mark.mpi
def test_a_rank_failing_in_set_up_gives_one_error_on_rank_0(tmp_path):
    proc = launch(2, str(HERE / "_mpi_helper.py"), "fail-setup", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert lines == ["refopt helper: error: rank 1 of 2 failed in set-up: ValueError: bad thing on rank 1"], proc.stderr


@needs_mpi
@pytest.mark.mpi
@pytest.mark.parametrize(
    "argv,message",
    [
        (["collab", "--nodes", "4", "--byzantine", "2", "--attack", "sign_flipping", "--steps", "2"],
         r"^refopt collab: error: simulate: 3 MPI ranks but only 2 honest nodes \(nodes=4, byzantine=2\) to share "
         r"among them; run with at most 2 ranks \(mpiexec -n 2\)$"),
        (["fed", "--clients", "2", "--horizon", "5"],
         r"^refopt fed: error: simulate: 3 MPI ranks but only 2 clients to share among them; run with at most 2 "
         r"ranks \(mpiexec -n 2\)$"),
        (["fed", "--horizon", "-1"], r"^refopt fed: error: --horizon must be a positive finite time; got -1.0$"),
    ],
)
def test_bad_input_under_mpi_one_clear_error(argv, message):
    proc = launch(3, "-m", "refopt", *argv)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert re.fullmatch(message, proc.stderr.strip()), proc.stderr  # printed once, by rank 0


@needs_mpi
@pytest.mark.mpi
def test_mpiexec_without_mpi4py_says_how_to_install(tmp_path):
    fake = tmp_path / "mpi4py"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('No module named mpi4py (stand-in)')\n")
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    proc = launch(2, "-m", "refopt", "fed", "--horizon", "5", env=env)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert err.count("error") == 1 and "mpi4py is not importable" in err and "pip install 'refopt[mpi]'" in err, err
