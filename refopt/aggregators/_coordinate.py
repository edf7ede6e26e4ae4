"""Average and the coordinate-wise rules: median, trimmed mean, meamed.

All act on each coordinate ``k`` separately, on the ``n`` values ``[x_1]_k .. [x_n]_k``:

* ``mean``:          (1/n) sum_i x_i.
* ``median``:        the middle value; for even ``n`` the mean of the two middle values
  (``even="average"``: ByzFL / MoNNA repo / ``np.median`` / ``torch.quantile(0.5)``) or the lower
  one (``even="lower"``: plain ``torch.median``).
* ``trimmed_mean``:  sort, drop the ``f`` smallest and the ``f`` largest, average the ``n - 2f``
  left (Yin et al. ICML 2018; ByzFL ``TrMean``).  Needs ``n > 2f``; ``f = 0`` is the mean.
* ``meamed``:        the mean of the ``n - f`` values closest to the median (Xie et al. 2018;
  ByzFL ``Meamed``).  Needs ``n > 2f``.  Equally close values: lower row index first.

NaN entries are read as ``+inf`` before sorting (so a NaN vector is trimmed like a huge one);
``mean`` propagates them, as an average must.
"""

from __future__ import annotations

from typing import Any

from refopt.aggregators._common import (
    check_f,
    check_stack,
    closest_to_median_mean,
    median_of_sorted,
    nan_to_posinf,
    require,
)

__all__ = ["mean", "median", "trimmed_mean", "meamed"]

_EVEN = ("average", "lower")


def mean(X: Any) -> Any:
    """Average of the rows: ``(1/n) sum_i x_i`` (no robustness; ByzFL ``Average``)."""
    xp, n, d = check_stack(X)
    return xp.mean(X, axis=0)


def median(X: Any, *, even: str = "average") -> Any:
    """Coordinate-wise median (CWMed, Yin et al. 2018).

    ``even`` selects the even-``n`` convention: ``"average"`` (default; ByzFL, ``np.median``) is the
    mean of the two middle values, ``"lower"`` the lower middle value (``torch.median``).
    """
    xp, n, d = check_stack(X)
    if even not in _EVEN:
        raise ValueError(f"median: even must be one of {_EVEN}; got {even!r}")
    return median_of_sorted(xp, xp.sort(nan_to_posinf(xp, X), axis=0), even)


def trimmed_mean(X: Any, f: int) -> Any:
    """Coordinate-wise trimmed mean (CWTM): per coordinate drop the f smallest and f largest.

    ``[F(x)]_k = 1/(n - 2f) * sum_{j=f+1}^{n-f} [x_(j)]_k`` with ``[x_(1)]_k <= ... <= [x_(n)]_k``.
    Needs ``n > 2f`` (ByzFL raises for ``2f >= n``); ``f = 0`` returns the plain mean, as ByzFL
    does.  (Flower's ``FedTrimmedAvg`` trims a *fraction* ``floor(beta n)`` per side instead; pass
    ``f = floor(beta * n)`` to reproduce it.)  (f, kappa)-robust with
    ``kappa <= 6f/(n-2f) * (1 + f/(n-2f))`` (Allouah et al., "Fixing by Mixing", AISTATS 2023, PMLR 206).
    """
    f = check_f("trimmed_mean", f)
    xp, n, d = check_stack(X)
    require("trimmed_mean", n, f, n > 2 * f, "n > 2f")
    if f == 0:
        return xp.mean(X, axis=0)
    S = xp.sort(nan_to_posinf(xp, X), axis=0)
    return xp.mean(S[f : n - f, :], axis=0)


def meamed(X: Any, f: int) -> Any:
    """Mean around the median: per coordinate, the mean of the ``n - f`` values closest to the
    coordinate median (even ``n``: mean of the two middles).  Needs ``n > 2f``.

    Ties in ``|x - median|`` go to the lower row index (ByzFL uses ``argpartition``, whose tie
    order is unspecified; with stable ties ByzFL's docstring example gives [2.5, 3.5, 4.5]).
    """
    f = check_f("meamed", f)
    xp, n, d = check_stack(X)
    require("meamed", n, f, n > 2 * f, "n > 2f")
    return closest_to_median_mean(xp, X, n - f)
