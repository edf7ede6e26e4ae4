"""Batched mixing rules: every honest node combines what it received, all nodes at once.

Array-API only.  Each function takes the stack of *sent* vectors ``S`` of shape ``(n, d)`` --
rows ``0 .. h-1`` are the honest nodes' half-step models, rows ``h .. n-1`` the Byzantine
vectors (the simulator's convention: Byzantine nodes are the *last* indices) -- and a boolean
receive mask ``mask`` of shape ``(h, n)``: ``mask[i, j]`` says that honest node i received
row j (its own row is always received).  It returns the ``(h, d)`` stack of new honest models.
No function loops over nodes: the work is a fixed number of array operations (a distance
matrix, a sort along the node axis, one matrix product), whatever h and n are; iterative rules
(geometric median, clipping) loop over their few *iterations* only.

Rules (the MoNNA paper, Farhadkhani et al., ICML 2023, arXiv:2209.10931, and its code
LPD-EPFL/robust-collaborative-learning; ``R_i`` = the rows node i received, r_i = |R_i|):

``gossip(W, S)``
    linear D-SGD mixing θ_i = Σ_j W_ij S_j (W the (h, n) honest rows of the mixing matrix).
``nna(S, mask, f)``
    nearest-neighbour averaging with pivot = own half-step: the mean of the r_i − f rows of
    R_i nearest (ℓ2) to S_i, ties by lowest index (honest rows before Byzantine ones; the
    pivot itself is always kept, at distance 0).  MoNNA's mixing.
``trimmed_mean(S, mask, f)``
    per node and coordinate, drop the f smallest and f largest received values and average
    the r_i − 2f others (BRIDGE / MoCWTM).
``geometric_median(S, mask, nu, iterations)``
    per node, smoothed Weiszfeld from z = 0 over R_i: β_j = 1/max(‖z − S_j‖, ν),
    z ← Σ β_j S_j / Σ β_j (MoGM / GM; MoNNA repo's ``rfa``: ν = 0.1, 3 iterations).
``self_centered_clipping(S, mask, tau, iterations)``
    per node, centered clipping around its own half-step: v ← S_i, then ``iterations`` times
    v ← v + (1/r_i) Σ_{j∈R_i} (S_j − v)·min(1, τ/‖S_j − v‖) (SCC; MoNNA repo τ = 2, 3 iterations;
    ClippedGossip of He et al. on the complete graph).

Non-finite rows (Inf/NaN attacks) are treated as infinitely far: NNA never selects them (and a
node whose own row is not finite gets NaN), the geometric median and clipping give them weight
0, the trimmed mean sorts NaN as +inf (so at most f of them are trimmed away per side).  Linear
gossip lets them through, as D-SGD does.

Distances come from :func:`refopt.aggregators.pairwise_sq_distances` (one Gram product, exact
where cancellation bites, +inf for non-finite rows), imported when first used.
"""

from __future__ import annotations

import math
from typing import Any

from .. import _array

__all__ = [
    "cross_sq_distances",
    "finite_rows",
    "gossip",
    "nna",
    "trimmed_mean",
    "geometric_median",
    "self_centered_clipping",
]


def _aggregators():
    from .. import aggregators  # helper module; imported on use

    return aggregators


def finite_rows(S: Any) -> Any:
    """``(n,)`` bool: rows whose entries are all finite."""
    xp = _array.namespace(S)
    return xp.all(xp.isfinite(S), axis=1)


def _zero_nonfinite(S: Any) -> Any:
    """S with every non-finite entry replaced by 0 (only used where such rows get weight 0, so
    that 0·inf or 0·nan never reaches a matrix product)."""
    xp = _array.namespace(S)
    return xp.where(xp.isfinite(S), S, xp.zeros_like(S))


def cross_sq_distances(P: Any, S: Any) -> Any:
    """``(p, n)`` squared distances ‖P_i − S_j‖² (one pairwise call on the stacked rows)."""
    xp = _array.namespace(P, S)
    p = P.shape[0]
    D = _aggregators().pairwise_sq_distances(xp.concat([P, S], axis=0))
    return D[:p, p:]


def _counts(xp, mask, dtype):
    return xp.astype(xp.sum(xp.astype(mask, xp.int64), axis=1), dtype)


def gossip(W: Any, S: Any) -> Any:
    """θ = W S (W: (h, n) rows of a mixing matrix, already an array next to S)."""
    return W @ S


def nna(S: Any, mask: Any, f: int, *, distances: Any = None) -> Any:
    """MoNNA's mixing for every honest node at once (see the module doc).

    ``distances`` may pass the ``(h, n)`` squared distances from rows 0..h-1 of S to all rows
    (computed here when omitted).  Selection: stable argsort of each node's distance row, with
    rows it did not receive set to +inf, keeps the r_i − f first; the kept rows are averaged by
    one ``(h, n) @ (n, d)`` product with weights 1/(r_i − f).  A node whose own row (its pivot)
    is not finite gets a NaN row: no received row is nearer to it than another (as
    :func:`refopt.aggregators.nna`).
    """
    xp = _array.namespace(S)
    h = mask.shape[0]
    D = distances if distances is not None else _aggregators().pairwise_sq_distances(S)[:h, :]
    D = xp.where(mask, D, xp.full_like(D, math.inf))
    keep = _counts(xp, mask, xp.int64) - f                      # (h,)
    order = xp.argsort(D, axis=1, stable=True)
    rank = xp.argsort(order, axis=1, stable=True)              # rank of each column in its row
    selected = rank < keep[:, None]
    A = xp.astype(selected, S.dtype) / xp.astype(keep, S.dtype)[:, None]
    out = A @ _zero_nonfinite(S)
    nan = xp.asarray(math.nan, dtype=S.dtype, device=_array.device(S))
    return xp.where(finite_rows(S[:h, ...])[:, None], out, nan)


def trimmed_mean(S: Any, mask: Any, f: int) -> Any:
    """Coordinate-wise trimmed mean of each node's received rows (one (h, d, n) sort along the last axis)."""
    xp = _array.namespace(S)
    h, n = mask.shape
    St = xp.permute_dims(xp.where(xp.isnan(S), xp.full_like(S, math.inf), S), (1, 0))   # (d, n), NaN read as +inf
    T = xp.where(mask[:, None, :], St[None, :, :], xp.full_like(St, math.inf)[None, :, :])  # not received: +inf, last
    T = xp.sort(T, axis=2)
    r = _counts(xp, mask, xp.int64)
    pos = xp.arange(n, dtype=xp.int64, device=_array.device(S))[None, :]
    window = (pos >= f) & (pos < (r - f)[:, None])                  # (h, n), the same for every coordinate
    kept = xp.where(window[:, None, :], T, xp.zeros_like(T))
    return xp.sum(kept, axis=2) / xp.astype(r - 2 * f, S.dtype)[:, None]


def geometric_median(S: Any, mask: Any, *, nu: float = 0.1, iterations: int = 3, start: Any = None) -> Any:
    """Smoothed Weiszfeld per node over its received rows, from ``start`` ((h, d); zeros by default)."""
    xp = _array.namespace(S)
    h = mask.shape[0]
    usable = mask & finite_rows(S)[None, :]
    S0 = _zero_nonfinite(S)
    Z = xp.zeros((h, S.shape[1]), dtype=S.dtype, device=_array.device(S)) if start is None else start
    for _ in range(iterations):
        dist = xp.sqrt(cross_sq_distances(Z, S0))
        beta = xp.where(usable, 1.0 / xp.maximum(dist, nu), xp.zeros_like(dist))
        Z = (beta @ S0) / xp.sum(beta, axis=1)[:, None]
    return Z


def self_centered_clipping(S: Any, mask: Any, *, tau: float = 2.0, iterations: int = 3) -> Any:
    """Centered clipping around each node's own half-step, over its received rows.

    One iteration is a weighted combination v ← (1 − Σ_j w_j) v + Σ_j w_j S_j with
    w_j = min(1, τ/‖S_j − v‖)/r_i for received finite rows (0 otherwise): one distance matrix
    and one matrix product.
    """
    xp = _array.namespace(S)
    h = mask.shape[0]
    usable = mask & finite_rows(S)[None, :]
    S0 = _zero_nonfinite(S)
    r = _counts(xp, mask, S.dtype)
    V = S[:h, :]
    for _ in range(iterations):
        norm = xp.sqrt(cross_sq_distances(V, S0))
        w = xp.where(usable, tau / xp.maximum(norm, tau), xp.zeros_like(norm)) / r[:, None]
        V = V * (1.0 - xp.sum(w, axis=1))[:, None] + w @ S0
    return V
