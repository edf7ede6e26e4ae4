"""Distance-based selection rules: Krum, Multi-Krum, MDA, Bulyan, CGE and NNA (MoNNA's mixing).

All of them read the pairwise squared distances of :func:`pairwise_sq_distances` (one Gram
product, exact for close vectors) or the distances to one vector.  A vector with a NaN or an
infinity is infinitely far from everything, so it is never selected while enough finite vectors
remain; ties are broken by the lowest index (stable sorts, first subset in lexicographic order).
Sources: each rule's paper and LPD-EPFL/byzfl, cited at each function.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from refopt import _array
from refopt.aggregators._common import (
    check_bool,
    fresh,
    check_f,
    check_int,
    check_stack,
    check_vector,
    closest_to_median_mean,
    count_subsets,
    order,
    require,
    take_rows_mean,
)
from refopt.aggregators._distances import finite_rows, pairwise_sq_distances, sq_distances_to

__all__ = ["krum", "multi_krum", "krum_scores", "mda", "bulyan", "cge", "nna"]

_NEIGHBOURS = ("n-f-1", "n-f-2")
DEFAULT_MAX_SUBSETS = 100_000


def _neighbour_count(rule: str, neighbours: str, n: int, f: int) -> int:
    if neighbours not in _NEIGHBOURS:
        raise ValueError(f"{rule}: neighbours must be one of {_NEIGHBOURS}; got {neighbours!r}")
    if neighbours == "n-f-1":
        require(rule, n, f, n > 2 * f, "n > 2f (neighbours='n-f-1', ByzFL convention)")
        return n - f - 1
    require(rule, n, f, n >= 2 * f + 3, "n >= 2f + 3 (neighbours='n-f-2', the Krum paper)")
    return n - f - 2


def _scores_from(xp, D, q: int, squared: bool):
    """Krum scores: for each row the sum of its ``q`` smallest distances to *other* rows."""
    n = int(D.shape[0])
    dev = _array.device(D)
    if q == 0:
        return xp.zeros((n,), dtype=D.dtype, device=dev)
    M = D if squared else xp.sqrt(D)
    eye = xp.arange(n, device=dev)[:, None] == xp.arange(n, device=dev)[None, :]
    M = xp.where(eye, xp.asarray(math.inf, dtype=D.dtype, device=dev), M)
    return xp.sum(xp.sort(M, axis=1)[:, :q], axis=1)


def krum_scores(X: Any, f: int, *, neighbours: str = "n-f-1", squared: bool = True) -> Any:
    """Krum score of every row: ``score(i) = sum_{j in N_i} ||x_i - x_j||^2`` over the ``q``
    nearest *other* rows (``q = n - f - 1`` or ``n - f - 2``); plain distances with
    ``squared=False``.  Rows with non-finite entries score ``+inf``."""
    f = check_f("krum", f)
    xp, n, d = check_stack(X)
    q = _neighbour_count("krum", neighbours, n, f)
    return _scores_from(xp, pairwise_sq_distances(X), q, check_bool("krum", "squared", squared))


def krum(X: Any, f: int, *, neighbours: str = "n-f-1", squared: bool = True) -> Any:
    """Krum (Blanchard et al. NeurIPS 2017): the row with the lowest Krum score.

    ``score(i)`` sums the (squared) distances from ``x_i`` to its ``q`` nearest other rows.

    * ``neighbours="n-f-1"`` (default; ByzFL, Allouah et al. analyses, MoNNA repo) needs
      ``n > 2f``; ``"n-f-2"`` (the paper, AggregaThor, epfml, Flower) needs ``n >= 2f + 3``.
    * ``squared=True`` (default; paper, ByzFL) or ``False`` (plain distances, MoNNA repo krum.py).

    Ties: lowest index (ByzFL's docstring example, all scores equal, returns row 0).  Rows with
    non-finite entries are never chosen while a finite row exists.
    """
    f = check_f("krum", f)
    xp, n, d = check_stack(X)
    q = _neighbour_count("krum", neighbours, n, f)
    scores = _scores_from(xp, pairwise_sq_distances(X), q, check_bool("krum", "squared", squared))
    best = order(xp, scores, finite_rows(X))[0]
    return fresh(xp, X[int(best), :])  # a row of X is a view of the caller's array


def multi_krum(
    X: Any, f: int, m: int | None = None, *, neighbours: str = "n-f-1", squared: bool = True
) -> Any:
    """Multi-Krum: the average of the ``m`` rows with the lowest Krum scores.

    Default ``m = n - f`` (ByzFL ``MultiKrum``); AggregaThor uses ``m = n - f - 2`` with
    ``neighbours="n-f-2"``.  ``m = 1`` is Krum.  (Flower weights the average by example counts and
    epfml returns the *sum*: neither is reproduced here.)
    """
    f = check_f("multi_krum", f)
    xp, n, d = check_stack(X)
    q = _neighbour_count("multi_krum", neighbours, n, f)
    m = n - f if m is None else check_int("multi_krum", "m", m, 1)
    if m > n:
        raise ValueError(f"multi_krum: m must be between 1 and n={n}; got m={m}")
    scores = _scores_from(xp, pairwise_sq_distances(X), q, check_bool("multi_krum", "squared", squared))
    return take_rows_mean(xp, X, order(xp, scores, finite_rows(X))[:m])


def _subsets_array(xp, subsets, dev):
    return xp.asarray(subsets, dtype=xp.int64, device=dev)


def _best_subset(xp, X, f, max_subsets, rule, value_of_batch):
    """The first subset (lexicographic order) of size n-f with the strictly smallest value."""
    n = int(X.shape[0])
    k = n - f
    count_subsets(rule, n, k, max_subsets)
    dev = _array.device(X)
    per = max(1, (1 << 20) // max(1, k * k))
    combos = itertools.combinations(range(n), k)
    best_value, best_subset = math.inf, None
    while True:
        batch = list(itertools.islice(combos, per))
        if not batch:
            break
        S = _subsets_array(xp, batch, dev)
        vals = value_of_batch(S)
        i = int(xp.argmin(vals))  # first occurrence on ties
        v = float(vals[i])
        if best_subset is None or v < best_value:
            best_value, best_subset = v, batch[i]
    return best_subset


def _gather_sub(xp, M, S):
    """``M[S_b][:, S_b]`` for every subset row ``S_b`` of ``S``: shape (B, k, k)."""
    n = int(M.shape[0])
    B, k = int(S.shape[0]), int(S.shape[1])
    flat = S[:, :, None] * n + S[:, None, :]
    return xp.reshape(xp.take(xp.reshape(M, (-1,)), xp.reshape(flat, (-1,))), (B, k, k))


def mda(X: Any, f: int, *, max_subsets: int = DEFAULT_MAX_SUBSETS) -> Any:
    """Minimum-diameter averaging (El Mhamdi et al. PODC 2020): the mean of the ``n - f`` rows
    whose diameter ``max_{i,j in S} ||x_i - x_j||`` is smallest.

    Exhaustive over the ``C(n, f)`` subsets (ByzFL ``MDA``, MoNNA repo ``brute``); raises a
    ``ValueError`` before any work when ``C(n, f) > max_subsets``.  Ties: the first subset in
    lexicographic order (ByzFL: strict ``<`` while enumerating ``itertools.combinations``).
    Needs ``n > 2f``.
    """
    f = check_f("mda", f)
    xp, n, d = check_stack(X)
    require("mda", n, f, n > 2 * f, "n > 2f")
    count_subsets("mda", n, n - f, max_subsets)
    D = pairwise_sq_distances(X)

    def diameters(S):
        sub = _gather_sub(xp, D, S)
        return xp.max(xp.reshape(sub, (int(S.shape[0]), -1)), axis=1)

    best = _best_subset(xp, X, f, max_subsets, "mda", diameters)
    return take_rows_mean(xp, X, xp.asarray(best, dtype=xp.int64, device=_array.device(X)))


_BULYAN = ("paper", "aggregathor", "scores_once")


def bulyan(X: Any, f: int, variant: str = "paper", *, squared: bool = True) -> Any:
    """Bulyan (El Mhamdi, Guerraoui, Rouault ICML 2018): select ``theta`` rows with Krum, then
    per coordinate average the ``beta = theta - 2f`` selected values closest to their median.

    ``variant``:

    * ``"paper"`` (default; also Flower's legacy ``aggregate_bulyan``): ``theta = n - 2f``; each
      pick is Krum on the rows not yet picked, re-scored on that shrinking pool with
      ``q = max(1, p - f - 2)`` neighbours for a pool of size ``p`` (Flower clips ``q`` at 1 too);
      the pick leaves the pool.
    * ``"aggregathor"``: the AggregaThor / Garfield count ``theta = n - 2f - 2`` (their
      ``s = n - 2f - 2``), picks as in ``"paper"``.
    * ``"scores_once"`` (Flower Message API ``select_multikrum``): the ``theta = n - 2f`` rows with
      the lowest Krum scores computed *once* on all ``n`` rows (``q = n - f - 2``), no re-scoring
      after removal (deviates from the paper).

    All variants need ``n >= 4f + 3`` (so ``beta >= 1``).  Ties: lowest index.
    """
    f = check_f("bulyan", f)
    if variant not in _BULYAN:
        raise ValueError(f"bulyan: variant must be one of {_BULYAN}; got {variant!r}")
    xp, n, d = check_stack(X)
    require("bulyan", n, f, n >= 4 * f + 3, "n >= 4f + 3")
    dev = _array.device(X)
    theta = n - 2 * f - (2 if variant == "aggregathor" else 0)
    beta = theta - 2 * f
    D = pairwise_sq_distances(X)
    finite = finite_rows(X)
    if variant == "scores_once":
        scores = _scores_from(xp, D, n - f - 2, check_bool("bulyan", "squared", squared))
        picked = order(xp, scores, finite)[:theta]
    else:
        pool = list(range(n))
        chosen = []
        for _ in range(theta):
            idx = xp.asarray(pool, dtype=xp.int64, device=dev)
            sub = xp.take(xp.take(D, idx, axis=0), idx, axis=1)
            q = max(1, len(pool) - f - 2)
            q = min(q, len(pool) - 1)
            scores = _scores_from(xp, sub, q, check_bool("bulyan", "squared", squared))
            j = int(order(xp, scores, xp.take(finite, idx))[0])
            chosen.append(pool.pop(j))
        picked = xp.asarray(chosen, dtype=xp.int64, device=dev)
    return closest_to_median_mean(xp, xp.take(X, picked, axis=0), beta)


def cge(X: Any, f: int) -> Any:
    """Comparative gradient elimination (Gupta & Vaidya): the mean of the ``n - f`` rows of
    smallest Euclidean norm (MoNNA repo cge.py).  Needs ``n > 2f``.  Ties: lowest index; rows with
    non-finite entries have norm ``+inf``."""
    f = check_f("cge", f)
    xp, n, d = check_stack(X)
    require("cge", n, f, n > 2 * f, "n > 2f")
    zero = xp.zeros((d,), dtype=X.dtype, device=_array.device(X))
    norms = sq_distances_to(X, zero)
    return take_rows_mean(xp, X, order(xp, norms, finite_rows(X))[: n - f])


def nna(X: Any, pivot: Any, f: int) -> Any:
    """Nearest-neighbour averaging, the mixing step of MoNNA (Farhadkhani et al. ICML 2023):
    the mean of the ``n - f`` rows of ``X`` nearest to ``pivot`` (a ``(d,)`` vector, typically the
    receiving node's own momentum).  Ties: lowest index.  Needs ``n > 2f`` (ByzFL ``MoNNA`` /
    arXiv:2209.10931).  ByzFL's ``MoNNA(f, idx)`` is ``nna(X, X[idx], f)``.

    The MoNNA repository's code convention (a node receives ``n - f`` vectors and averages the
    ``n - 2f`` nearest) is ``nna(received, own, f)`` with ``received`` of ``n - f`` rows: the
    caller chooses the stack; the rule always keeps ``rows - f``.  A pivot with a NaN or an
    infinity gives a NaN vector (no row is nearer to it than another).
    """
    f = check_f("nna", f)
    xp, n, d = check_stack(X)
    check_vector("nna", "pivot", pivot, X, d)
    require("nna", n, f, n > 2 * f, "n > 2f")
    dist = sq_distances_to(X, pivot)
    out = take_rows_mean(xp, X, order(xp, dist, finite_rows(X))[: n - f])
    # a pivot with a NaN or an infinity is at no finite distance from any row: no row is nearer than
    # another, so NaN propagates (as IEEE arithmetic would), instead of the first rows by index
    nan = xp.asarray(math.nan, dtype=X.dtype, device=_array.device(X))
    return xp.where(xp.all(xp.isfinite(pivot)), out, nan)
