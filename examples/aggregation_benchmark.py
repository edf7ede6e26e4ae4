"""Aggregation time for a large stack: refopt.aggregators against a per-pair Python loop.

    python examples/aggregation_benchmark.py                 # n = 100, d = 10**6, float32
    python examples/aggregation_benchmark.py --d 100000 --f 10 --repeat 3

For each rule the same quantity is computed twice:

* **refopt**: the library call (pairwise distances from one Gram product accumulated in float64,
  exact recomputation of close pairs; see refopt/aggregators/_distances.py);
* **loop**: a plain NumPy version that computes every distance it needs pair by pair in a
  Python loop (``sum((x_i - x_j)**2)`` with float64 accumulation), then applies the rule's
  definition.

and the script checks that the two give the same result (the same Krum winner, the same NNM +
trimmed-mean vector to float32 rounding, the same geometric median) and prints the time ratio.
Rows: krum, nnm + trimmed_mean (skipped with a message if refopt.preaggregators.nnm is missing),
geometric_median (T Weiszfeld steps: the loop computes the n distances ||x_i - z|| one by one).

Host-side example: imports NumPy.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import refopt.aggregators as A


def loop_sq_distances(X: np.ndarray) -> np.ndarray:
    n = X.shape[0]
    D = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            diff = X[i] - X[j]
            D[i, j] = D[j, i] = float(np.dot(diff.astype(np.float64), diff.astype(np.float64)))
    return D


def loop_krum(X: np.ndarray, f: int) -> int:
    D = loop_sq_distances(X)
    n = X.shape[0]
    q = n - f - 1
    scores = [np.sort(np.delete(D[i], i))[:q].sum() for i in range(n)]
    return int(np.argmin(scores))


def loop_nnm_trimmed_mean(X: np.ndarray, f: int) -> np.ndarray:
    D = loop_sq_distances(X)
    n = X.shape[0]
    Y = np.stack([X[np.argsort(D[i], kind="stable")[: n - f]].mean(0) for i in range(n)])
    return np.sort(Y, axis=0)[f : n - f].mean(0)


def loop_geometric_median(X: np.ndarray, nu: float, T: int) -> np.ndarray:
    z = np.zeros(X.shape[1], dtype=X.dtype)
    n = X.shape[0]
    for _ in range(T):
        beta = np.empty(n, dtype=X.dtype)
        for i in range(n):
            diff = X[i] - z
            beta[i] = (1.0 / n) / max(float(np.sqrt(np.dot(diff, diff))), nu)
        z = (beta[:, None] * X).sum(0) / beta.sum()
    return z


def timed(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--d", type=int, default=10**6)
    p.add_argument("--f", type=int, default=10)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--repeat", type=int, default=1, help="best of this many refopt runs")
    p.add_argument("--iterations", type=int, default=3, help="Weiszfeld steps (ByzFL default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--simulator-steps", type=int, default=200, help="steps for the simulator rate (0: skip)")
    a = p.parse_args(argv)

    rng = np.random.default_rng(a.seed)
    center = rng.normal(size=a.d).astype(a.dtype)
    X = (center + 0.1 * rng.normal(size=(a.n, a.d))).astype(a.dtype)  # honest: a tight cloud
    X[: a.f] = -3.0 * center  # f sign-flipped, scaled vectors
    print(f"n={a.n} d={a.d} f={a.f} dtype={a.dtype}  ({X.nbytes / 2**20:.0f} MiB)")
    print(f"{'rule':<24}{'refopt [s]':>12}{'loop [s]':>12}{'ratio':>10}  check")

    def row(name, t_ref, t_loop, ok):
        print(f"{name:<24}{t_ref:12.3f}{t_loop:12.3f}{t_loop / t_ref:10.1f}  {'equal' if ok else 'DIFFERENT'}")
        return ok

    all_ok = True
    t_ref, out = timed(lambda: A.krum(X, a.f), a.repeat)
    t_loop, k = timed(lambda: loop_krum(X, a.f), 1)
    all_ok &= row("krum", t_ref, t_loop, np.array_equal(out, X[k]))

    try:
        from refopt.preaggregators import nnm
    except ImportError as exc:
        print(f"{'nnm + trimmed_mean':<24}skipped: refopt.preaggregators.nnm not available ({exc})")
    else:
        t_ref, out = timed(lambda: A.trimmed_mean(nnm(X, a.f), a.f), a.repeat)
        t_loop, ref = timed(lambda: loop_nnm_trimmed_mean(X, a.f), 1)
        tol = 1e-5 if a.dtype == "float32" else 1e-12
        all_ok &= row("nnm + trimmed_mean", t_ref, t_loop, np.allclose(out, ref, rtol=tol, atol=tol))

    t_ref, out = timed(lambda: A.geometric_median(X, iterations=a.iterations), a.repeat)
    t_loop, ref = timed(lambda: loop_geometric_median(X, 0.1, a.iterations), 1)
    tol = 1e-5 if a.dtype == "float32" else 1e-12
    all_ok &= row(f"geometric_median (T={a.iterations})", t_ref, t_loop, np.allclose(out, ref, rtol=tol, atol=tol))

    t_ref, D = timed(lambda: A.pairwise_sq_distances(X), a.repeat)
    print(f"(pairwise_sq_distances alone: {t_ref:.3f} s)")
    if a.simulator_steps:
        simulator_rate(a.simulator_steps)
    return 0 if all_ok else 1


def simulator_rate(steps: int) -> None:
    """Steps per second of the collaborative simulator at the MoNNA paper's size (26 nodes, 5 Byzantine)."""
    from refopt import problems
    from refopt.collaborative import monna_lr, simulate

    data = problems.load_dataset("digits")
    problem = problems.softmax_regression(data[0].shape[1], 10)
    print(f"\ncollaborative simulator, 26 nodes (5 Byzantine), softmax regression on digits, {steps} steps")
    for label, algorithm, attack, params in (
        ("dsgd, no attack", "dsgd", None, None),
        ("monna, sign flipping", "monna", "sign_flipping", None),
        ("monna, line-searched ALIE", "monna", "optimal_monna", {"attack": "alie"}),
    ):
        byz = 0 if attack is None else 5
        r = simulate(algorithm, problem, data, nodes=26, byzantine=byz, attack=attack, attack_params=params,
                     steps=steps, lr=monna_lr, alpha=1.0, seed=0, eval_every=steps)
        print(f"  {label:<28}{r.steps_per_second:10.0f} steps/s")


if __name__ == "__main__":
    raise SystemExit(main())
