"""Shared checks and small kernels of the aggregation rules (array API only).

Conventions used by every rule:

* ``X`` is an ``(n, d)`` stack of real floating vectors; results keep its dtype and device.
* ``f`` is a Python ``int >= 0``; each rule states and checks its own ``n``-versus-``f``
  condition *before any work* and raises ``ValueError`` naming the rule, ``n``, ``f`` and the
  condition.
* Ties are broken by the lowest index: selections use a *stable* ``argsort`` and take the first
  ``k`` entries.
* Coordinate-wise rules sort each coordinate; NaN has no place in an order, so NaN entries are
  read as ``+inf`` before sorting; +-inf sort naturally.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from refopt import _array
from refopt.aggregators._distances import check_stack

__all__ = [
    "check_stack",
    "check_f",
    "check_int",
    "check_float",
    "check_bool",
    "fresh",
    "require",
    "check_vector",
    "nan_to_posinf",
    "order",
    "take_rows_mean",
    "closest_to_median_mean",
    "median_of_sorted",
    "count_subsets",
]


def check_int(rule: str, name: str, value: Any, minimum: int = 0) -> int:
    """``value`` as a Python int ``>= minimum`` (bool and floats rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{rule}: {name} must be an integer >= {minimum}; got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{rule}: {name} must be an integer >= {minimum}; got {value}")
    return value


def check_bool(rule: str, name: str, value: Any) -> bool:
    """``value`` as a Python bool; anything but True/False (``'no'``, 0, 1, None) is a TypeError."""
    if not _array.is_bool(value):
        raise TypeError(f"{rule}: {name} must be True or False; got {value!r}")
    return bool(value)


def fresh(xp, v: Any) -> Any:
    """A copy of ``v`` that shares no memory with it: what a rule returns instead of one of its
    inputs (or a view of one), so that editing the result in place never edits the caller's arrays."""
    return xp.asarray(v, copy=True)


def check_float(rule: str, name: str, value: Any, *, positive: bool = True, allow_zero: bool = False) -> float:
    """``value`` as a finite Python float (> 0, or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{rule}: {name} must be a real number; got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{rule}: {name} must be finite; got {value}")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        allowed = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{rule}: {name} must be {allowed}; got {value}")
    return value


def check_f(rule: str, f: Any) -> int:
    return check_int(rule, "f", f, 0)


def require(rule: str, n: int, f: int, ok: bool, condition: str) -> None:
    """Raise the standard n-versus-f error when ``ok`` is false."""
    if not ok:
        raise ValueError(f"{rule}: needs {condition}; got n={n}, f={f}")


def check_vector(rule: str, name: str, v: Any, X: Any, d: int):
    """A ``(d,)`` vector of the same library, dtype and device as ``X``."""
    if not _array.is_array(v):
        raise TypeError(f"{rule}: {name} must be a ({d},) array like X; got {type(v).__name__}")
    _array.namespace(X, v, what=f"{rule}: X and {name}")
    if tuple(v.shape) != (d,):
        raise ValueError(f"{rule}: {name} must have shape ({d},) to match X; got {tuple(v.shape)}")
    if v.dtype != X.dtype:
        raise TypeError(
            f"{rule}: {name} must have X's dtype {_array.dtype_name(X.dtype)}; got {_array.dtype_name(v.dtype)}"
        )
    if _array.device(v) != _array.device(X):
        raise ValueError(f"{rule}: {name} is on device {_array.device(v)} but X on {_array.device(X)}")
    return v


def nan_to_posinf(xp, X):
    """NaN entries read as +inf (so a sort has an order); other entries unchanged."""
    return xp.where(xp.isnan(X), xp.asarray(math.inf, dtype=X.dtype, device=_array.device(X)), X)


def order(xp, score, finite=None):
    """Indices sorting ``score`` ascending, ties by lowest index; rows not ``finite`` last."""
    idx = xp.argsort(score, stable=True)
    if finite is None:
        return idx
    bad = xp.astype(~xp.take(finite, idx), xp.int8)
    return xp.take(idx, xp.argsort(bad, stable=True))


def take_rows_mean(xp, X, idx):
    """Mean of the rows ``idx`` of ``X``."""
    return xp.mean(xp.take(X, idx, axis=0), axis=0)


def median_of_sorted(xp, S, even: str = "average"):
    """Coordinate-wise median of a column-sorted ``(n, d)`` stack ``S``."""
    n = int(S.shape[0])
    if n % 2 == 1:
        return S[n // 2, :]
    lo, hi = S[n // 2 - 1, :], S[n // 2, :]
    if even == "lower":
        return lo
    if even == "upper":
        return hi
    # mean of the two middles; written as lo + (hi - lo)/2 would overflow-protect but change
    # rounding; (lo + hi)/2 is what np.median / torch.quantile compute
    return (lo + hi) / 2.0


def closest_to_median_mean(xp, X, k: int, even: str = "average"):
    """Per coordinate, the mean of the ``k`` values closest to the coordinate median.

    Distances ``|x - median|`` are ordered with a stable argsort along the rows, so among equally
    close values the lower row index wins (ByzFL's ``Meamed`` docstring example: f = 1 -> [2.5, 3.5, 4.5]).
    """
    Xs = nan_to_posinf(xp, X)
    med = median_of_sorted(xp, xp.sort(Xs, axis=0), even)
    dist = xp.abs(Xs - med[None, :])
    dist = xp.where(xp.isnan(dist), xp.asarray(math.inf, dtype=X.dtype, device=_array.device(X)), dist)
    idx = xp.argsort(dist, axis=0, stable=True)[:k, :]
    return xp.mean(xp.take_along_axis(Xs, idx, axis=0), axis=0)


def count_subsets(rule: str, n: int, k: int, max_subsets: Any) -> int:
    """``C(n, k)``, or a ValueError when it exceeds ``max_subsets``."""
    max_subsets = check_int(rule, "max_subsets", max_subsets, 1)
    total = math.comb(n, k)
    if total > max_subsets:
        raise ValueError(
            f"{rule}: exhaustive search over C(n, n-f) = C({n}, {k}) = {total} subsets exceeds "
            f"max_subsets={max_subsets}; pass a larger max_subsets (cost grows as C(n, f)) or use a "
            f"polynomial rule (krum, trimmed_mean, nnm + any rule)"
        )
    return total
