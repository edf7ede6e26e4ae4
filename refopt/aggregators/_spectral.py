"""Spectral filters: CAF and SMEA (LPD-EPFL/byzfl ``CAF``, ``SMEA``).

Both look at the top eigenvalue of an empirical covariance
``Sigma = (1/W) sum_i c_i (x_i - mu)(x_i - mu)^T`` (``mu`` the ``c``-weighted mean,
``W = sum_i c_i``).  ``Sigma`` is ``d x d``, but its non-zero eigenvalues are those of the
``n x n`` matrix ``(1/W) C^{1/2} K C^{1/2}`` with ``K`` the Gram matrix of the centred rows,
so both rules work on the float64 Gram matrix of :func:`centered_gram` and call an exact ``n x n``
symmetric eigen-solver.  ByzFL instead runs *one* power iteration from a random start, so its
result is random; the exact top eigenvalue is what the rules are defined with (and what
refopt's tests use).

* **SMEA** (Allouah et al. ICML 2023): the mean of the ``(n - f)``-subset whose covariance has
  the smallest top eigenvalue; exhaustive over ``C(n, f)`` subsets (guarded by ``max_subsets``);
  ties to the first subset in lexicographic order.
* **CAF** (Allouah, Guerraoui, Stephan ICML 2025): weights ``c = 1``; while ``sum c > n - 2f``:
  ``mu_c``, top eigenpair ``(lambda, v)`` of ``Sigma_c``, ``tau_i = ((x_i - mu_c)^T v)^2``,
  ``c_i <- c_i (1 - tau_i / max_j tau_j)``; return the ``mu_c`` with the smallest ``lambda`` seen
  (first one on ties).  Each round zeroes at least one weight, so at most ``n`` rounds.  When the
  weighted covariance vanishes (all remaining rows equal) the current mean is returned.

Rows with a NaN or an infinity get weight 0 from the start (CAF) / make a subset's eigenvalue
``+inf`` (SMEA).  With a repeated top eigenvalue the eigenvector (and so CAF's next weights) is
whatever the backend's solver returns.
"""

from __future__ import annotations

import math
from typing import Any

from refopt import _array
from refopt.aggregators._common import check_f, check_stack, count_subsets, require, take_rows_mean
from refopt.aggregators._distances import centered_gram, finite_rows
from refopt.aggregators._selection import DEFAULT_MAX_SUBSETS, _best_subset, _gather_sub

__all__ = ["caf", "smea"]


def smea(X: Any, f: int, *, max_subsets: int = DEFAULT_MAX_SUBSETS) -> Any:
    """Smallest-maximum-eigenvalue averaging; see the module docstring.  Needs ``n > 2f``."""
    f = check_f("smea", f)
    xp, n, d = check_stack(X)
    require("smea", n, f, n > 2 * f, "n > 2f")
    count_subsets("smea", n, n - f, max_subsets)
    k = n - f
    dev = _array.device(X)
    f64 = xp.float64
    finite = finite_rows(X)
    G = centered_gram(X, finite=finite)
    J = xp.eye(k, dtype=f64, device=dev) - 1.0 / k
    bad_row = xp.astype(~finite, f64)

    def top_eigenvalues(S):
        sub = _gather_sub(xp, G, S)  # (B, k, k)
        B = xp.matmul(xp.matmul(J, sub), J) / float(k)
        lam = xp.linalg.eigvalsh(B)[:, -1]
        bad = xp.sum(xp.reshape(xp.take(bad_row, xp.reshape(S, (-1,))), S.shape), axis=1) > 0
        return xp.where(bad, xp.asarray(math.inf, dtype=f64, device=dev), lam)

    best = _best_subset(xp, X, f, max_subsets, "smea", top_eigenvalues)
    return take_rows_mean(xp, X, xp.asarray(best, dtype=xp.int64, device=dev))


def caf(X: Any, f: int) -> Any:
    """Covariance-bound agnostic filter; see the module docstring.  Needs ``n > 2f``."""
    f = check_f("caf", f)
    xp, n, d = check_stack(X)
    require("caf", n, f, n > 2 * f, "n > 2f")
    dev = _array.device(X)
    f64 = xp.float64
    finite = finite_rows(X)
    G = centered_gram(X, finite=finite)
    c = xp.astype(finite, f64)
    ones = xp.ones((n,), dtype=f64, device=dev)
    best_lam, best_c = math.inf, None
    while float(xp.sum(c)) > n - 2 * f:
        W = float(xp.sum(c))
        P = xp.eye(n, dtype=f64, device=dev) - ones[:, None] * c[None, :] / W  # rows: x_i - mu_c
        K = xp.matmul(xp.matmul(P, G), xp.matrix_transpose(P))
        r = xp.sqrt(c)
        M = r[:, None] * K * r[None, :] / W
        vals, vecs = xp.linalg.eigh(M)
        lam = float(vals[-1])
        if best_c is None or lam < best_lam:
            best_lam, best_c = lam, c
        if not lam > 0.0:
            break
        u = vecs[:, -1]
        proj = xp.matmul(K, r * u) / math.sqrt(W * lam)  # (x_i - mu_c)^T v
        tau = proj * proj
        tmax = float(xp.max(tau))
        if not tmax > 0.0:
            break
        c = c * (1.0 - tau / tmax)
        c = xp.maximum(c, 0.0)
    if best_c is None:  # too many non-finite rows for even one round: mean of the finite ones
        best_c = xp.astype(finite, f64)
    # mu_c = sum_i c_i x_i / sum_i c_i, as ByzFL computes it
    w = xp.astype(best_c, X.dtype)
    Xz = xp.where(finite[:, None], X, xp.zeros((), dtype=X.dtype, device=dev))
    return xp.matmul(w[None, :], Xz)[0, :] / xp.sum(w)
