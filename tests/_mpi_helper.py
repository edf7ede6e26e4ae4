"""Helper launched by tests/test_mpi.py under ``mpiexec -n N``; not a test module itself.

Usage: ``python tests/_mpi_helper.py MODE OUTDIR``

``run``        every rank runs small collaborative and federated simulations through the Python
               API (``comm`` from the environment) and saves its results to
               ``OUTDIR/rank{r}.npz``; rank 0 also runs the two CLI commands and writes their
               stdout to ``OUTDIR/collab.json`` and ``OUTDIR/fed.json``.
``fail-loop``  rank 1 raises inside the simulation loop (its attack callable fails at the third
               step): every rank must be aborted with a message naming rank 1.
``fail-setup`` rank 1 alone raises while setting up (an agreed phase): rank 0 prints one error
               naming rank 1 and every rank exits with status 2.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys

import numpy as np

from refopt import mpi as _mpi, problems
from refopt.cli import main as cli_main
from refopt.collaborative import monna_lr
from refopt.collaborative import simulate as collab_simulate
from refopt.federated import simulate as fed_simulate

# the configurations the tests compare with the serial run (tests/test_mpi.py imports these)
COLLAB_RUNS = {
    # MoNNA under the line-searched ALIE attack, paper's receive sets, 7 honest nodes (uneven on 2 and 3 ranks)
    "monna_alie": dict(algorithm="monna", nodes=9, byzantine=2, attack="optimal_monna",
                       attack_params={"attack": "alie"}, alpha=1.0),
    # the code's random receive subsets and the model-level label flipping, on an MLP
    "mocwtm_lf_code": dict(algorithm="mocwtm", nodes=8, byzantine=1, attack="label_flipping", convention="code",
                           model="mlp"),
}
FED_RUNS = {
    "fedfix": dict(scheme="fedfix", delta_t=0.5, horizon=100),
    "fedbuff_softmax": dict(scheme="fedbuff", buffer=3, problem="softmax", horizon=6, clients=7, speeds="exp",
                            local_steps=2, batch_size=16),
}
COLLAB_CLI = ["collab", "--algorithm", "monna", "--attack", "alie", "--nodes", "9", "--byzantine", "2",
              "--steps", "6", "--json"]
FED_CLI = ["fed", "--scheme", "fedfix", "--delta-t", "0.5", "--horizon", "200", "--json"]


def collab_results(comm=None) -> dict:
    data = problems.load_dataset("digits")
    features = data[0].shape[1]
    out = {}
    for name, cfg in COLLAB_RUNS.items():
        cfg = dict(cfg)
        algorithm = cfg.pop("algorithm")
        model = cfg.pop("model", "softmax")
        problem = problems.softmax_regression(features, 10) if model == "softmax" else problems.mlp(features, 12, 10)
        r = collab_simulate(algorithm, problem, data, steps=8, lr=monna_lr, batch_size=10, seed=1, eval_every=4,
                            eval_size=150, comm=comm, **cfg)
        for key in ("theta", "loss", "spread", "drift", "accuracy", "accuracy_min", "accuracy_node0", "test_loss"):
            out[f"{name}.{key}"] = np.asarray(getattr(r, key))
    return out


def fed_results(comm=None) -> dict:
    out = {}
    for name, cfg in FED_RUNS.items():
        cfg = dict(cfg)
        scheme = cfg.pop("scheme")
        r = fed_simulate(scheme, cfg.pop("problem", "quadratic"), comm=comm, **cfg)
        out[f"{name}.final_params"] = r.final_params
        out[f"{name}.loss"] = r.loss
        out[f"{name}.steps"] = r.steps
        if r.accuracy is not None:
            out[f"{name}.accuracy"] = r.accuracy
    return out


def _failing_attack(comm):
    calls = {"n": 0}

    def attack(honest, f):
        calls["n"] += 1
        if comm.rank == 1 and calls["n"] == 3:
            raise RuntimeError("injected failure on rank 1")
        return -honest[:f, :]

    return attack


def main(mode: str, outdir: str) -> int:
    if mode == "run":
        comm = _mpi.from_environment()
        results = {**collab_results(comm), **fed_results(comm)}
        np.savez(os.path.join(outdir, f"rank{comm.rank}.npz"), **results)
        for name, argv in (("collab", COLLAB_CLI), ("fed", FED_CLI)):
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                code = cli_main(argv)
            if code != 0:
                return code
            if comm.rank == 0:
                with open(os.path.join(outdir, f"{name}.json"), "w") as fh:
                    fh.write(buf.getvalue())
            elif buf.getvalue():
                raise AssertionError(f"rank {comm.rank} printed to stdout: {buf.getvalue()[:200]!r}")
        return 0
    if mode == "fail-loop":
        comm = _mpi.from_environment()
        data = problems.load_dataset("digits")
        problem = problems.softmax_regression(data[0].shape[1], 10)
        collab_simulate("monna", problem, data, nodes=6, byzantine=1, attack=_failing_attack(comm), steps=20,
                        batch_size=5, eval_size=50, comm=comm)
        return 0
    if mode == "fail-setup":
        def body(comm):
            with comm.agreed("set-up"):
                if comm.rank == 1:
                    raise ValueError("bad thing on rank 1")
            comm.barrier()
            return 0

        return _mpi.run_cli("helper", body)
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "."))
