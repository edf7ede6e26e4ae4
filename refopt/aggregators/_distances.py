"""Pairwise squared distances of an ``(n, d)`` stack: one matrix product, exact where it matters.

Robust aggregation rules (Krum, MDA, NNM, NNA, ...) only look at the ``n x n`` matrix of squared
Euclidean distances ``D[i, j] = ||x_i - x_j||^2``.  ``d`` is large (10^5 .. 10^7) and ``n``
small (<= a few hundred), so the fast way is the *Gram form*::

    D[i, j] = s_i + s_j - 2 <y_i, y_j>,   y_i = x_i - c,   s_i = ||y_i||^2,

one matrix product ``Y @ Y.T``.  Its flaw is cancellation: when ``x_i`` and ``x_j`` are close
compared with their size, ``s_i + s_j`` and ``2 <y_i, y_j>`` are nearly equal and the difference
keeps only the rounding noise (in float32 two vectors that differ by one part in 10^4 can come
out at distance 0, or negative).  That is exactly the regime NNA/Krum care about (honest vectors
close to each other).  This module therefore:

1. **centres** the stack at the mean ``c`` of its finite rows (translation does not change
   distances but removes the common offset that causes most of the cancellation);
2. **accumulates the Gram matrix in float64** (column chunk by column chunk, so the float64 copy
   never exceeds a few tens of MB), whatever the input dtype;
3. **bounds the rounding error** of every entry: with ``u`` the float64 unit roundoff the Gram
   entry is off by about ``2 u sqrt(d) (s_i + s_j)`` (a statistical, not a worst-case, bound);
   a pair is *recomputed exactly* -- ``sum((x_i - x_j)^2)`` with the differences taken in float64,
   which is exact for float32 inputs -- whenever that error could exceed the target relative
   accuracy ``r`` of the result, i.e. when ``D[i, j] <= tau (s_i + s_j)`` with
   ``tau = min(1, 2 u sqrt(d) / r)``.  The target is ``r = 2^-24`` (float32 rounding) for float32
   results and ``r = 2^-26`` for float64 ones, so in practice only genuinely close pairs are
   recomputed and every entry is correct to about the output's own precision (float32) or to
   ``~1e-8`` relative (float64; pairs with heavy cancellation are exact there too);
4. treats a vector with any NaN or +-inf entry as **infinitely far** from every other vector:
   its row and column are ``+inf`` (the convention of LPD-EPFL/robust-collaborative-learning and
   LPD-EPFL/AggregaThor), so a
   distance-based rule never selects it; the diagonal is an exact ``0`` for every row.

The result has the input's dtype and device.  ``method="exact"`` skips the Gram product and
computes every pair by differences (the slow reference path that the tests compare against).

Array API only (``refopt._array.namespace``); no NumPy here.
"""

from __future__ import annotations

import math
from typing import Any

from refopt import _array

__all__ = ["pairwise_sq_distances", "sq_distances_to", "centered_gram", "finite_rows", "check_stack"]

# Temporary float64 arrays are kept below this many elements (2^22 * 8 B = 32 MiB).
_CHUNK_ELEMENTS = 1 << 22


def check_stack(X: Any, what: str = "X"):
    """Validate an ``(n, d)`` real-floating stack; return ``(xp, n, d)``."""
    if not _array.is_array(X):
        raise TypeError(f"{what} must be an (n, d) array of vectors; got {type(X).__name__}")
    xp = _array.namespace(X, what=what)
    if X.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (n, d) stack of n vectors; got shape {tuple(X.shape)}")
    if not _array.is_real_floating(xp, X.dtype) or X.dtype not in (xp.float32, xp.float64):
        raise TypeError(
            f"{what} must have a real floating dtype (float32 or float64); got {_array.dtype_name(X.dtype)}"
        )
    n, d = int(X.shape[0]), int(X.shape[1])
    if n < 1 or d < 1:
        raise ValueError(f"{what} must hold at least one vector of dimension >= 1; got shape {(n, d)}")
    return xp, n, d


def _finite_rows(xp, X):
    return xp.all(xp.isfinite(X), axis=1)


def _column_chunks(n: int, d: int):
    width = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for a in range(0, d, width):
        yield a, min(d, a + width)


def _exact_pairs(xp, X, I, J, f64, dev):
    """``sum((X[I] - X[J])^2)`` per pair, differences and sums in float64."""
    d = int(X.shape[1])
    P = int(I.shape[0])
    per = max(1, _CHUNK_ELEMENTS // d)
    out = []
    for a in range(0, P, per):
        b = min(P, a + per)
        Xi = xp.astype(xp.take(X, I[a:b], axis=0), f64)
        Xj = xp.astype(xp.take(X, J[a:b], axis=0), f64)
        diff = Xi - Xj
        out.append(xp.sum(diff * diff, axis=1))
    if not out:
        return xp.zeros((0,), dtype=f64, device=dev)
    return xp.concat(out) if len(out) > 1 else out[0]


def _scatter_symmetric(xp, D, I, J, values, n, f64, dev):
    """``D`` with ``D[I[p], J[p]] = D[J[p], I[p]] = values[p]``, written without in-place updates.

    One-hot matrices ``E_I, E_J`` (P, n) give ``V = E_I^T diag(values) E_J``; every entry of ``V``
    is a single product ``value * 1`` plus exact zeros, so the scattered values are exact.
    """
    ar = xp.arange(n, device=dev)
    EI = xp.astype(I[:, None] == ar[None, :], f64)
    EJ = xp.astype(J[:, None] == ar[None, :], f64)
    V = xp.matmul(xp.matrix_transpose(EI), values[:, None] * EJ)
    M = xp.matmul(xp.matrix_transpose(EI), EJ) > 0.5
    V = V + xp.matrix_transpose(V)
    M = M | xp.matrix_transpose(M)
    return xp.where(M, V, D)


def centered_gram(X: Any, *, finite: Any = None) -> Any:
    """Float64 Gram matrix ``G = Y Y^T`` of the rows centred at the mean of the finite rows.

    Rows with a non-finite entry are replaced by the centre (a zero row of ``Y``).  Accumulated
    column chunk by column chunk so the float64 temporaries stay small.  Translation-invariant
    quantities (distances, covariances of subsets) can be read off ``G`` exactly up to float64
    rounding: ``||x_i - x_j||^2 = G_ii + G_jj - 2 G_ij``.
    """
    xp, n, d = check_stack(X)
    dev = _array.device(X)
    f64 = xp.float64
    if finite is None:
        finite = _finite_rows(xp, X)
    count = int(xp.sum(xp.astype(finite, xp.int64)))
    all_finite = count == n
    Xz = X if all_finite else xp.where(finite[:, None], X, xp.zeros((), dtype=X.dtype, device=dev))
    zero = xp.zeros((), dtype=f64, device=dev)
    G = xp.zeros((n, n), dtype=f64, device=dev)
    for a, b in _column_chunks(n, d):
        Y = xp.astype(Xz[:, a:b], f64)
        Y = Y - xp.sum(Y, axis=0) / float(max(count, 1))
        if not all_finite:
            Y = xp.where(finite[:, None], Y, zero)
        G = G + xp.matmul(Y, xp.matrix_transpose(Y))
    return G


def finite_rows(X: Any) -> Any:
    """Boolean ``(n,)``: the rows of ``X`` whose entries are all finite."""
    xp = _array.namespace(X)
    return _finite_rows(xp, X)


def pairwise_sq_distances(X: Any, *, method: str = "auto") -> Any:
    """Matrix of squared Euclidean distances ``D[i, j] = ||x_i - x_j||^2`` of the rows of ``X``.

    Parameters
    ----------
    X : (n, d) array, float32 or float64, any array-API backend.
    method : ``"auto"`` (default) -- Gram product accumulated in float64 with exact recomputation
        of every pair whose Gram value may have lost accuracy to cancellation (see the module
        docstring); ``"exact"`` -- every pair by differences (slow reference path).

    Returns
    -------
    (n, n) array of ``X``'s dtype and device: symmetric, exact ``0`` diagonal, ``>= 0``, ``+inf``
    in the rows and columns of vectors that contain a NaN or an infinity (except the diagonal).
    """
    xp, n, d = check_stack(X)
    if method not in ("auto", "exact"):
        raise ValueError(f"method must be 'auto' or 'exact'; got {method!r}")
    dev = _array.device(X)
    f64 = xp.float64
    finite = _finite_rows(xp, X)
    both = finite[:, None] & finite[None, :]
    eye = xp.arange(n, device=dev)[:, None] == xp.arange(n, device=dev)[None, :]
    Xz = xp.where(finite[:, None], X, xp.zeros((), dtype=X.dtype, device=dev))

    if method == "exact":
        ii = xp.reshape(xp.broadcast_to(xp.arange(n, device=dev)[:, None], (n, n)), (-1,))
        jj = xp.reshape(xp.broadcast_to(xp.arange(n, device=dev)[None, :], (n, n)), (-1,))
        upper = ii < jj
        I, J = ii[upper], jj[upper]
        vals = _exact_pairs(xp, Xz, I, J, f64, dev)
        D = _scatter_symmetric(xp, xp.zeros((n, n), dtype=f64, device=dev), I, J, vals, n, f64, dev)
    else:
        # 1. centre at the mean of the finite rows; Gram matrix accumulated in float64
        G = centered_gram(X, finite=finite)
        s = xp.linalg.diagonal(G) if hasattr(xp, "linalg") else xp.diagonal(G)
        ssum = s[:, None] + s[None, :]
        D = xp.maximum(ssum - 2.0 * G, 0.0)
        # 2. recompute the pairs whose Gram value may be dominated by rounding
        target = 2.0**-24 if X.dtype == xp.float32 else 2.0**-26
        tau = min(1.0, 2.0 * 2.0**-53 * math.sqrt(d) / target)
        ii = xp.arange(n, device=dev)[:, None]
        jj = xp.arange(n, device=dev)[None, :]
        suspect = both & (ii < jj) & (D <= tau * ssum)
        if bool(xp.any(suspect)):
            I, J = xp.nonzero(suspect)
            vals = _exact_pairs(xp, Xz, I, J, f64, dev)
            D = _scatter_symmetric(xp, D, I, J, vals, n, f64, dev)

    inf = xp.asarray(math.inf, dtype=f64, device=dev)
    D = xp.where(both, D, inf)
    D = xp.where(eye, xp.zeros((), dtype=f64, device=dev), D)
    return xp.astype(D, X.dtype)


def sq_distances_to(X: Any, y: Any) -> Any:
    """Squared distances ``||x_i - y||^2`` from each row of ``X`` to one vector ``y`` (exact path).

    Differences are taken in float64 (exact for float32 inputs) chunk by chunk; a row of ``X``
    with a non-finite entry is at ``+inf``, and so is every row when ``y`` itself is not finite.
    Result in ``X``'s dtype, shape ``(n,)``.
    """
    xp, n, d = check_stack(X)
    dev = _array.device(X)
    f64 = xp.float64
    finite = _finite_rows(xp, X) & xp.all(xp.isfinite(y))
    total = xp.zeros((n,), dtype=f64, device=dev)
    for a, b in _column_chunks(n, d):
        diff = xp.astype(X[:, a:b], f64) - xp.astype(y[a:b], f64)[None, :]
        diff = xp.where(finite[:, None], diff, xp.zeros((), dtype=f64, device=dev))
        total = total + xp.sum(diff * diff, axis=1)
    total = xp.where(finite, total, xp.asarray(math.inf, dtype=f64, device=dev))
    return xp.astype(total, X.dtype)
