"""Scaling of the MPI collaborative simulator: steps per second against the number of ranks.

    python examples/mpi_scaling.py                     # 1, 2, 3 ranks, the default size
    python examples/mpi_scaling.py --ranks 1 2 4 8 --features 4096 --nodes 33

The parent process launches ``mpiexec -n N`` on this same file (``--worker``) for every N. Each
run is MoNNA under sign flipping with h honest nodes and a softmax-regression model of
d = (features + 1) · classes parameters, on a synthetic Gaussian mixture (float64).

Per step every rank computes the gradients of its ⌈h/N⌉ or ⌊h/N⌋ nodes, then one ``Allgatherv``
gives every rank all h half-step models and losses: rank r sends h_r (d + 1) doubles and receives
(h − h_r)(d + 1) doubles. The mixing (the (n, n) distance matrix and the nearest-neighbour
averages) is computed by every rank on the gathered models, so it does not shrink with N: the
gradient work scales, the mixing and the exchange do not (module doc of refopt.mpi).

Reported per N: steps per second of the simulation loop (slowest rank) and the speed-up over
N = 1; rank 0's exchange bytes per step computed from the sizes and those that went through MPI
(counted by the communicator); the time per step spent inside ``Allgatherv`` during the run
(slowest rank; it includes waiting for the slowest rank to arrive) and its share of the step;
the same ``Allgatherv`` timed alone, back to back ("alone ms") and the bandwidth that implies
(all bytes received by all ranks / time); and a digest of the final models, which must be the
same for every N.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np


def worker(args) -> None:
    from refopt import mpi as _mpi, problems
    from refopt.collaborative import simulate

    comm = _mpi.from_environment()
    X, y, Xt, yt = problems.gaussian_mixture(args.samples, args.features, args.classes, seed=0)
    data = (X, y, Xt[:200], yt[:200])
    problem = problems.softmax_regression(args.features, args.classes)
    h = args.nodes - 1
    if comm.is_mpi:
        comm.barrier()
    result = simulate("monna", problem, data, nodes=args.nodes, byzantine=1, attack="sign_flipping",
                      steps=args.steps, lr=0.1, batch_size=args.batch, seed=0, eval_every=args.steps,
                      eval_size=100, comm=comm)
    stats = dict(comm.stats, loop_seconds=result.seconds)
    # the same exchange alone (no computation between the calls, so no waiting for a slower rank)
    offsets = _mpi.partition(h, comm.size)
    rows = [offsets[r + 1] - offsets[r] for r in range(comm.size)]
    block = np.zeros((rows[comm.rank], problem.dim + 1))
    bare = _mpi.LocalComm() if not comm.is_mpi else _mpi.MPIComm(comm.comm)
    for _ in range(3):  # warm-up
        bare.allgather_rows([block], rows)
    bare.stats["seconds"] = 0.0
    for _ in range(args.steps):
        bare.allgather_rows([block], rows)
    stats["bare_seconds"] = bare.stats["seconds"]
    everyone = comm.comm.gather(stats, root=0) if comm.is_mpi else [stats]
    if comm.rank != 0:
        return
    d = problem.dim
    mine = offsets[1] - offsets[0]  # rank 0 owns the largest block
    evals = 2  # step 0 and the last step: (h_r, 2) doubles each
    computed_sent = args.steps * mine * (d + 1) * 8 + evals * mine * 2 * 8
    computed_recv = args.steps * (h - mine) * (d + 1) * 8 + evals * (h - mine) * 2 * 8
    slowest_loop = max(s["loop_seconds"] for s in everyone)
    slowest_exchange = max(s["seconds"] for s in everyone)
    print(json.dumps({
        "ranks": comm.size, "nodes": args.nodes, "honest": h, "dim": d, "steps": args.steps,
        "steps_per_second": args.steps / slowest_loop,
        "exchange_seconds_per_step": slowest_exchange / args.steps,
        "exchange_share_of_step": slowest_exchange / slowest_loop,
        "rank0_bytes_sent_per_step_computed": computed_sent / args.steps,
        "rank0_bytes_sent_per_step_measured": everyone[0]["bytes_sent"] / args.steps,
        "rank0_bytes_received_per_step_computed": computed_recv / args.steps,
        "rank0_bytes_received_per_step_measured": everyone[0]["bytes_received"] / args.steps,
        "total_bytes_moved_per_step": sum(s["bytes_received"] for s in everyone) / args.steps,
        "bare_exchange_seconds_per_step": max(s["bare_seconds"] for s in everyone) / args.steps,
        "mpi": comm.MPI.Get_library_version().splitlines()[0].strip() if comm.is_mpi else "serial",
        "theta_sha256": hashlib.sha256(np.ascontiguousarray(result.theta).tobytes()).hexdigest()[:16],
    }))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--nodes", type=int, default=17, help="nodes, one of them Byzantine (default 17: 16 honest)")
    p.add_argument("--features", type=int, default=2048)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--samples", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    exe = shutil.which("mpiexec")
    if exe is None:
        print("mpiexec not found: pip install 'refopt[mpi]'", file=sys.stderr)
        return 2
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    extra = ["--oversubscribe"] if "Open MPI" in version else []
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    forwarded = [f"--{k}={getattr(args, k)}" for k in ("nodes", "features", "classes", "samples", "batch", "steps")]
    rows = []
    for n in args.ranks:
        proc = subprocess.run([exe, *extra, "-n", str(n), sys.executable, str(Path(__file__).resolve()), "--worker",
                               *forwarded], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    r0 = rows[0]
    print(f"MoNNA, {r0['honest']} honest nodes + 1 Byzantine, d = {r0['dim']} parameters, float64, "
          f"{r0['steps']} steps, {os.cpu_count()} CPU cores, {rows[-1]['mpi']}")
    print(f"{'ranks':>5} {'steps/s':>8} {'speed-up':>8} {'sent/step':>11} {'(computed)':>11} {'recv/step':>11} "
          f"{'(computed)':>11} {'exch ms/step':>12} {'share':>6} {'alone ms':>8} {'GB/s':>6}  theta digest")
    for r in rows:
        recv = r["rank0_bytes_received_per_step_measured"]
        alone = r["bare_exchange_seconds_per_step"]
        bw = r["total_bytes_moved_per_step"] / alone / 1e9 if alone > 0 and r["total_bytes_moved_per_step"] else float("nan")
        print(f"{r['ranks']:>5} {r['steps_per_second']:>8.2f} {r['steps_per_second'] / r0['steps_per_second']:>8.2f} "
              f"{r['rank0_bytes_sent_per_step_measured'] / 1e6:>9.3f}MB {r['rank0_bytes_sent_per_step_computed'] / 1e6:>9.3f}MB "
              f"{recv / 1e6:>9.3f}MB {r['rank0_bytes_received_per_step_computed'] / 1e6:>9.3f}MB "
              f"{1e3 * r['exchange_seconds_per_step']:>12.3f} {r['exchange_share_of_step']:>6.1%} {1e3 * alone:>8.3f} "
              f"{bw:>6.2f}  {r['theta_sha256']}")
    same = len({r["theta_sha256"] for r in rows}) == 1
    print("final models identical for every rank count" if same else "FINAL MODELS DIFFER between rank counts")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
