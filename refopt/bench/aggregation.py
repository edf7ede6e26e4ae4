"""Benchmark section ``aggregation``: robust aggregation of a large stack against a per-pair loop.

The target refopt sets itself: at ``n = 100`` vectors of ``d = 10^6`` float32 entries, each rule at least 5x
faster than the straightforward implementation, with equal results.  For every rule the same
quantity is computed twice, in one process, on the context's backend:

* **refopt** -- the library call, timed with ``ctx.time`` (best of ``ctx.repeat``):

  - ``krum(X, f)`` (ByzFL's ``n - f - 1`` neighbours, squared distances);
  - ``trimmed_mean(nnm(X, f), f)`` (nearest-neighbour mixing, then the coordinate-wise trimmed
    mean);
  - ``geometric_median(X)`` (smoothed Weiszfeld, ``nu = 0.1``, ``T = 3`` steps from 0, ByzFL's
    defaults).

  The distance-based rules read one ``n x n`` matrix of squared distances made by one Gram
  product accumulated in float64 with close pairs recomputed exactly
  (``refopt/aggregators/_distances.py``); the geometric median makes two passes over ``X`` per
  step (``refopt/aggregators/_iterative.py``).

* **loop** -- the per-pair baseline written here, timed once: a Python loop over the
  ``n (n - 1) / 2`` pairs ``(i, j)`` computing ``||x_i - x_j||^2`` from the difference (taken in
  the data's dtype, squared and summed in float64), then the rule's definition on that matrix (Krum: the
  ``n - f - 1`` smallest distances of each row summed, lowest index wins; NNM: the mean of the
  ``n - f`` nearest rows of each row, ties to the lowest index, then the sorted-coordinate trimmed
  mean).  The distance matrix is the same for both rules, so it is computed and timed once and
  its time is added to each rule's own time.  Geometric median: per Weiszfeld step a loop over the
  ``n`` rows computing ``||x_i - z||`` one by one, then the weighted mean.

Results are compared: Krum must select the same vector (``equal`` means bit-identical); the
averaging rules agree to float32 rounding (``allclose`` with ``rtol = atol = 1e-5`` for float32,
``1e-12`` for float64; the row's ``note`` gives the largest absolute difference).

Sizes: ``n = 100, d = 10^6, f = 10`` (``ctx.quick``: ``n = 20, d = 10^4, f = 3``).  The stack is a
tight honest cloud (``center + 0.1 N(0, 1)``) with ``f`` sign-flipped, scaled rows ``-3 center``.

Host-side tooling: this module imports NumPy (data generation, result checks).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from refopt import _array
from refopt.bench._common import Context, Row, ratio_row

SECTION = "aggregation"
TARGET = "≥5x vs per-pair loop"

__all__ = ["run", "make_stack", "loop_sq_distances", "loop_krum", "loop_nnm_trimmed_mean",
           "loop_geometric_median", "SECTION", "TARGET"]


# ---------------------------------------------------------------------------------------------
# backend helpers


def _put(ctx: Context, a: np.ndarray) -> Any:
    """A host array on the context's backend and device (a copy)."""
    a = np.array(a, copy=True)
    dev = ctx.device
    return ctx.xp.asarray(a, device=dev) if dev is not None else ctx.xp.asarray(a)


def make_stack(n: int, d: int, f: int, dtype: str = "float32", seed: int = 0) -> np.ndarray:
    """The benchmark stack: ``n - f`` honest rows ``center + 0.1 N(0, 1)``, ``f`` rows ``-3 center``."""
    rng = np.random.default_rng(seed)
    center = rng.standard_normal(d, dtype=np.float32)
    X = rng.standard_normal((n, d), dtype=np.float32)
    X *= np.float32(0.1)
    X += center
    X[:f] = np.float32(-3.0) * center
    return X.astype(dtype, copy=False)


# ---------------------------------------------------------------------------------------------
# the per-pair baselines (array-API code, so they run on the measured backend too)


def loop_sq_distances(X: Any) -> np.ndarray:
    """``D[i, j] = ||x_i - x_j||^2`` pair by pair: a Python loop over ``i < j``, float64 sums of
    the squared differences (the differences themselves in ``X``'s dtype).

    Returns a host float64 ``(n, n)`` matrix (each entry is brought to the host as it is made,
    as a straightforward implementation would).
    """
    xp = _array.namespace(X)
    n = int(X.shape[0])
    D = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            diff = xp.astype(X[i, :] - X[j, :], xp.float64)
            D[i, j] = D[j, i] = float(xp.vecdot(diff, diff))
    return D


def loop_krum(D: np.ndarray, f: int) -> int:
    """Index Krum selects from the loop's distance matrix: smallest sum of ``n - f - 1`` nearest."""
    n = D.shape[0]
    q = n - f - 1
    scores = [float(np.sort(np.delete(D[i], i))[:q].sum()) for i in range(n)]
    return int(np.argmin(scores))  # first minimum: lowest index wins


def loop_nnm_trimmed_mean(X: Any, D: np.ndarray, f: int) -> Any:
    """NNM (mean of each row's ``n - f`` nearest rows, stable ties) then the trimmed mean."""
    xp = _array.namespace(X)
    n = int(X.shape[0])
    rows = []
    for i in range(n):
        near = np.argsort(D[i], kind="stable")[: n - f]
        acc = X[int(near[0]), :]
        for j in near[1:]:
            acc = acc + X[int(j), :]
        rows.append(acc / float(n - f))
    Y = xp.sort(xp.stack(rows), axis=0)
    return xp.mean(Y[f: n - f, :], axis=0)


def loop_geometric_median(X: Any, nu: float = 0.1, iterations: int = 3) -> Any:
    """Smoothed Weiszfeld from 0, the ``n`` distances ``||x_i - z||`` one by one per step."""
    xp = _array.namespace(X)
    n, d = int(X.shape[0]), int(X.shape[1])
    z = xp.zeros((d,), dtype=X.dtype, device=_array.device(X))
    for _ in range(iterations):
        betas = []
        for i in range(n):
            diff = X[i, :] - z
            betas.append((1.0 / n) / max(math.sqrt(float(xp.vecdot(diff, diff))), nu))
        num = betas[0] * X[0, :]
        for i in range(1, n):
            num = num + betas[i] * X[i, :]
        z = num / sum(betas)
    return z


# ---------------------------------------------------------------------------------------------
# the section


def _close(a: Any, b: Any, tol: float) -> tuple[bool, float]:
    a, b = _array.to_numpy(a).astype(np.float64), _array.to_numpy(b).astype(np.float64)
    return bool(np.allclose(a, b, rtol=tol, atol=tol)), float(np.max(np.abs(a - b)))


def run(ctx: Context) -> list[Row]:
    """Krum, NNM + trimmed mean and the geometric median: refopt against the per-pair loop."""
    import refopt.aggregators as A
    from refopt.preaggregators import nnm

    n, d, f = (20, 10**4, 3) if ctx.quick else (100, 10**6, 10)
    repeat = 1 if ctx.quick else None
    size = f"n={n} d={d} f={f} float32"
    X = _put(ctx, make_stack(n, d, f))
    tol = 1e-5
    rows: list[Row] = []

    nbytes = float(n * d * 4)

    def row(case, t_ref, t_loop, ok, note, passes=1):
        # achieved bandwidth: the bytes the rule must at least read (``passes`` reads of X)
        gbps = passes * nbytes / t_ref / 1e9
        of_copy = gbps / ctx.copy_gbps if ctx.copy_gbps else None
        rows.append(ratio_row(SECTION, case, size, "refopt", t_ref, "per-pair loop", t_loop, gbps=gbps,
                              of_copy=of_copy, note=note, target=TARGET, met=bool(ok and t_loop / t_ref >= 5.0)))

    # the loop's distance matrix, shared by Krum and NNM (timed once)
    box: dict[str, Any] = {}
    t_D = ctx.time(lambda: box.__setitem__("D", loop_sq_distances(X)), repeat=1, warmup=0)
    D = box["D"]

    # Krum
    t_ref = ctx.time(lambda: A.krum(X, f), repeat=repeat)
    out = A.krum(X, f)
    t_sel = ctx.time(lambda: box.__setitem__("k", loop_krum(D, f)), repeat=1, warmup=0)
    k = box["k"]
    same = bool(np.array_equal(_array.to_numpy(out), _array.to_numpy(X[k, :])))
    row("krum", t_ref, t_D + t_sel, same,
        f"{'equal' if same else 'DIFFERENT'} (loop picks row {k}); loop = {t_D:.3g} s distances + {t_sel:.3g} s rule")

    # NNM + trimmed mean
    t_ref = ctx.time(lambda: A.trimmed_mean(nnm(X, f), f), repeat=repeat)
    out = A.trimmed_mean(nnm(X, f), f)
    t_rule = ctx.time(lambda: box.__setitem__("y", loop_nnm_trimmed_mean(X, D, f)), repeat=1, warmup=0)
    ok, diff = _close(out, box["y"], tol)
    row("nnm+trimmed_mean", t_ref, t_D + t_rule, ok,
        f"{'equal' if ok else 'DIFFERENT'} (max |diff| {diff:.2g}, tol {tol:g}); "
        f"loop = {t_D:.3g} s distances + {t_rule:.3g} s rule")

    # geometric median
    t_ref = ctx.time(lambda: A.geometric_median(X, nu=0.1, iterations=3), repeat=repeat)
    out = A.geometric_median(X, nu=0.1, iterations=3)
    t_loop = ctx.time(lambda: box.__setitem__("z", loop_geometric_median(X, 0.1, 3)), repeat=1, warmup=0)
    ok, diff = _close(out, box["z"], tol)
    row("geometric_median", t_ref, t_loop, ok,
        f"{'equal' if ok else 'DIFFERENT'} (max |diff| {diff:.2g}, tol {tol:g}); T=3, nu=0.1; "
        "both make ~2 passes over X per step, so 5x is not expected", passes=6)
    return rows
