"""Iterative rules: geometric median (smoothed Weiszfeld) and centered clipping.

Geometric median: ``argmin_y sum_i ||y - x_i||``, approximated by the
*smoothed Weiszfeld* iteration of RFA (Pillutla et al.): with ``alpha_i = 1/n``,

    beta_i = alpha_i / max(||z - x_i||, nu),      z <- sum_i beta_i x_i / sum_i beta_i.

ByzFL and the MoNNA repository run ``T = 3`` iterations from ``z_0 = 0`` with ``nu = 0.1``
(these are the defaults here), which is *not* converged: ByzFL's docstring example
``[3.78788764, 4.78788764, 5.78788764]`` for ``[[1,2,3],[4,5,6],[7,8,9]]`` is three steps from
zero, not the median ``[4, 5, 6]``.  ``converged=True`` iterates until the step is at most
``tol * max(||z||, 1)`` (or ``max_iterations``); the limit is the minimiser of the smoothed
objective (equal to the geometric median when no point is within ``nu`` of it).  Rows with a NaN
or an infinity are dropped (ByzFL drops +-inf rows; here NaN rows too, as the MoNNA code's
``rfa`` gives a NaN distance weight 0).

Centered clipping (Karimireddy, He, Jaggi ICML 2021):

    v_{l+1} = v_l + (1/n) sum_i (x_i - v_l) min(1, tau / ||x_i - v_l||),   l = 0 .. L-1,

from ``v_0 = center`` (the previous aggregate: the rule is stateful, the state is passed in and
returned).  ByzFL defaults ``L = 1``, ``tau = 100``, ``v_0 = 0``; epfml ``L = 3``, ``tau = 10``;
MoNNA repo's self-centered clipping ``L = 3``, ``tau = 0.4`` with the node's own model as center.
A row with a non-finite entry contributes nothing (its clipped difference has no direction).
"""

from __future__ import annotations

import math
from typing import Any

from refopt import _array
from refopt.aggregators._common import check_bool, check_float, check_int, check_stack, check_vector, fresh
from refopt.aggregators._distances import finite_rows

__all__ = ["geometric_median", "centered_clipping"]


def _row_norms(xp, Y):
    return xp.sqrt(xp.sum(Y * Y, axis=1))


# Elements of one (n, w) column block of the distance pass: 2^20 float32 entries are 4 MiB, a
# block that stays in the last-level cache while it is subtracted and reduced.
_GM_BLOCK_ELEMENTS = 1 << 20


def _sq_distances_to(xp, X, z, f64):
    """``||x_i - z||^2`` for every row, in float64: one pass over ``X``, column block by block.

    The differences are taken in ``X``'s dtype (as ``X - z`` would be), each block reduced with
    ``vecdot`` (a BLAS dot product per row on NumPy) and the block sums accumulated in float64,
    so a float32 stack cannot overflow the sum and the total carries no more than one float32
    rounding per block.  Temporaries are one ``(n, w)`` block, never an ``(n, d)`` copy.
    """
    n, d = int(X.shape[0]), int(X.shape[1])
    width = max(1, _GM_BLOCK_ELEMENTS // max(n, 1))
    total = None
    for a in range(0, d, width):
        b = min(d, a + width)
        diff = X[:, a:b] - z[None, a:b]
        part = xp.astype(xp.vecdot(diff, diff, axis=-1), f64)
        total = part if total is None else total + part
    return total


def geometric_median(
    X: Any,
    *,
    nu: float = 0.1,
    iterations: int = 3,
    start: Any = None,
    converged: bool = False,
    tol: float = 1e-7,
    max_iterations: int = 10_000,
) -> Any:
    """Smoothed-Weiszfeld approximation of the geometric median of the rows of ``X``.

    Parameters
    ----------
    nu : smoothing floor on the distances (ByzFL 0.1).
    iterations : Weiszfeld steps when ``converged=False`` (ByzFL / MoNNA repo 3, epfml RFA 8).
    start : ``z_0``, a ``(d,)`` vector like ``X`` (default zeros, as ByzFL).
    converged : iterate until ``||z_{t+1} - z_t|| <= tol * max(||z_t||, 1)`` (at most
        ``max_iterations`` steps) instead of a fixed count.

    How one step is computed (the cost is two reads of ``X`` per step and nothing else):

    1. the ``n`` distances ``||x_i - z_t||`` by *differences*, column block by column block
       (:func:`_sq_distances_to`: ``X[:, a:b] - z[a:b]`` in ``X``'s dtype, squared and summed per
       row, block sums added in float64).  No Gram form ``||x||^2 - 2 x.z + ||z||^2`` is used: it
       cancels catastrophically exactly when ``z`` sits inside a tight cloud of honest vectors,
       which is where the median lands;
    2. ``beta_i = (1/n) / max(dist_i, nu)`` in ``X``'s dtype, and the new estimate as one
       matrix-vector product ``z_{t+1} = (beta @ X) / sum(beta)``.

    Rows with a NaN or an infinity are dropped.  They are found without a separate pass: such a
    row has a non-finite distance in the first step (float64 sums cannot overflow for float32
    data), and only then is every row checked with ``isfinite`` and the stack reduced to its
    finite rows (``alpha_i`` stays ``1/n``, which cancels in the quotient anyway).
    """
    xp, n, d = check_stack(X)
    nu = check_float("geometric_median", "nu", nu)
    iterations = check_int("geometric_median", "iterations", iterations, 0)
    tol = check_float("geometric_median", "tol", tol)
    max_iterations = check_int("geometric_median", "max_iterations", max_iterations, 1)
    converged = check_bool("geometric_median", "converged", converged)
    dev = _array.device(X)
    f64 = xp.float64
    if start is None:
        z = xp.zeros((d,), dtype=X.dtype, device=dev)
    else:
        z = check_vector("geometric_median", "start", start, X, d)
    alpha = 1.0 / n
    steps = max_iterations if converged else iterations
    Xz = X
    sq = None
    for t in range(steps):
        if sq is None:
            sq = _sq_distances_to(xp, Xz, z, f64)
        if t == 0 and not bool(xp.all(xp.isfinite(sq))):
            # a non-finite distance: a row with NaN/inf (or a non-finite start, or float64 overflow)
            finite = finite_rows(X)
            if not bool(xp.all(finite)):
                idx = xp.nonzero(finite)[0]
                Xz = xp.take(X, idx, axis=0)
                sq = xp.take(sq, idx)
        dist = xp.astype(xp.sqrt(sq), X.dtype)
        beta = alpha / xp.maximum(dist, nu)
        if int(Xz.shape[0]) == 0:  # no finite row: 0/0, as a sum over no rows gives
            z_new = xp.full((d,), math.nan, dtype=X.dtype, device=dev)
        else:
            z_new = xp.matmul(beta, Xz) / xp.sum(beta)
        sq = None
        if converged:
            step = float(xp.sqrt(xp.sum((z_new - z) ** 2)))
            scale = max(float(xp.sqrt(xp.sum(z * z))), 1.0)
            z = z_new
            if not step > tol * scale:  # also stops on NaN (no finite row)
                break
        else:
            z = z_new
    return fresh(xp, z) if z is start else z  # no step taken: never hand back the caller's start


def centered_clipping(
    X: Any, center: Any = None, *, tau: float = 100.0, iterations: int = 1
) -> tuple[Any, Any]:
    """Centered clipping; returns ``(aggregate, new_center)`` (the same values twice, in two fresh
    arrays: the next call should start from this aggregate, ByzFL's ``m``).

    ``center`` is ``v_0`` (default zeros, ByzFL); ``tau`` the clipping radius (ByzFL 100);
    ``iterations`` is ``L`` (ByzFL 1).  ``min(1, tau/||x_i - v||)`` is taken as 1 when
    ``x_i = v``.  No n-versus-f condition (the rule has no ``f``).
    """
    xp, n, d = check_stack(X)
    tau = check_float("centered_clipping", "tau", tau)
    iterations = check_int("centered_clipping", "iterations", iterations, 0)
    dev = _array.device(X)
    if center is None:
        v = xp.zeros((d,), dtype=X.dtype, device=dev)
    else:
        v = check_vector("centered_clipping", "center", center, X, d)
    finite = finite_rows(X)
    Xz = xp.where(finite[:, None], X, xp.zeros((), dtype=X.dtype, device=dev))
    for _ in range(iterations):
        diff = Xz - v[None, :]
        norm = _row_norms(xp, diff)
        safe = xp.where(norm > tau, norm, xp.ones((), dtype=X.dtype, device=dev))
        scale = xp.where(norm > tau, tau / safe, xp.ones((), dtype=X.dtype, device=dev))
        scale = xp.where(finite, scale, xp.zeros((), dtype=X.dtype, device=dev))
        v = v + xp.sum(diff * scale[:, None], axis=0) / float(n)
    if v is center:  # no iteration: never hand back the caller's center
        v = fresh(xp, v)
    return v, fresh(xp, v)  # two arrays: editing the aggregate must not edit the next call's center
