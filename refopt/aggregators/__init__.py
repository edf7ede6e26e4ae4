"""Robust aggregation rules: an ``(n, d)`` stack of vectors in, one ``(d,)`` vector out.

Reference versions of the robust aggregation rules of the Byzantine-ML literature (each cited at its
function; conventions of LPD-EPFL/byzfl by default), array-API only (NumPy, torch,
array_api_strict, CuPy ...), float32 in -> float32 out, no writes into the inputs.

=====================  ==========================================  ======================
rule                   call                                        n-versus-f condition
=====================  ==========================================  ======================
average                ``mean(X)``                                 --
coordinate median      ``median(X, even="average"|"lower")``       --
trimmed mean           ``trimmed_mean(X, f)``                      n > 2f
mean around median     ``meamed(X, f)``                            n > 2f
geometric median       ``geometric_median(X, nu=, iterations=,     --
                       start=, converged=, tol=)``
Krum                   ``krum(X, f, neighbours=, squared=)``       n > 2f ("n-f-1") /
                                                                   n >= 2f+3 ("n-f-2")
Multi-Krum             ``multi_krum(X, f, m=None, ...)``           as Krum
MDA                    ``mda(X, f, max_subsets=)``                 n > 2f
Bulyan                 ``bulyan(X, f, variant=)``                  n >= 4f+3
centered clipping      ``centered_clipping(X, center, tau=,        --
                       iterations=) -> (agg, new_center)``
CGE                    ``cge(X, f)``                               n > 2f
CAF                    ``caf(X, f)``                               n > 2f
SMEA                   ``smea(X, f, max_subsets=)``                n > 2f
NNA (MoNNA mixing)     ``nna(X, pivot, f)``                        n > 2f
=====================  ==========================================  ======================

Defaults follow ByzFL (LPD-EPFL/byzfl); every other known convention is a named option.
Distances come from :func:`pairwise_sq_distances`: one Gram product, exact for close vectors,
non-finite vectors infinitely far.  Ties go to the lowest index.

``names()`` lists the rules; ``get(name, **params)`` returns a callable ``X -> (d,)`` with the
parameters bound (for ``centered_clipping`` a callable that carries its center from call to
call, like ByzFL's ``CenteredClipping``; for ``nna`` pass ``pivot=`` a vector or ``index=`` a
row, ByzFL's ``MoNNA(f, idx)``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from refopt.aggregators._coordinate import mean, meamed, median, trimmed_mean
from refopt.aggregators._distances import (
    centered_gram,
    finite_rows,
    pairwise_sq_distances,
    sq_distances_to,
)
from refopt.aggregators._iterative import centered_clipping, geometric_median
from refopt.aggregators._selection import bulyan, cge, krum, krum_scores, mda, multi_krum, nna
from refopt.aggregators._spectral import caf, smea

__all__ = [
    "mean",
    "median",
    "trimmed_mean",
    "meamed",
    "geometric_median",
    "krum",
    "krum_scores",
    "multi_krum",
    "mda",
    "bulyan",
    "centered_clipping",
    "cge",
    "caf",
    "smea",
    "nna",
    "pairwise_sq_distances",
    "sq_distances_to",
    "centered_gram",
    "finite_rows",
    "names",
    "get",
    "CenteredClipping",
]

_RULES: dict[str, Callable] = {
    "mean": mean,
    "median": median,
    "trimmed_mean": trimmed_mean,
    "meamed": meamed,
    "geometric_median": geometric_median,
    "krum": krum,
    "multi_krum": multi_krum,
    "mda": mda,
    "bulyan": bulyan,
    "centered_clipping": centered_clipping,
    "cge": cge,
    "caf": caf,
    "smea": smea,
    "nna": nna,
}


def names() -> list[str]:
    """Names accepted by :func:`get`, in the order of the table above."""
    return list(_RULES)


class CenteredClipping:
    """Centered clipping as a stateful callable: each call starts from the previous output.

    ``CenteredClipping(tau=100.0, iterations=1, center=None)``; ``.center`` holds the state.
    """

    def __init__(self, *, tau: float = 100.0, iterations: int = 1, center: Any = None):
        self.tau, self.iterations, self.center = tau, iterations, center
        # validate now, not at the first call
        from refopt.aggregators._common import check_float, check_int

        check_float("centered_clipping", "tau", tau)
        check_int("centered_clipping", "iterations", iterations, 0)

    def __call__(self, X: Any) -> Any:
        out, self.center = centered_clipping(X, self.center, tau=self.tau, iterations=self.iterations)
        return out

    def __repr__(self) -> str:
        return f"CenteredClipping(tau={self.tau}, iterations={self.iterations})"


def _bind(name: str, fn: Callable, params: dict, skip: tuple[str, ...]) -> None:
    sig = inspect.signature(fn)
    allowed = [p for p in sig.parameters if p not in skip]
    from refopt.rules._base import suggest

    for key in params:
        if key not in allowed:
            raise TypeError(f"{name}: {suggest(key, allowed, 'parameter')}")
    missing = [
        p for p in allowed
        if sig.parameters[p].default is inspect.Parameter.empty and p not in params
    ]
    if missing:
        raise TypeError(f"{name}: missing required parameter(s) {', '.join(missing)}")


def get(name: str, **params: Any) -> Callable[[Any], Any]:
    """A callable ``X -> (d,)`` for the rule ``name`` with ``params`` bound, e.g.
    ``get("trimmed_mean", f=2)`` or ``get("krum", f=1, neighbours="n-f-2")``."""
    from refopt.rules._base import suggest

    if name not in _RULES:
        raise ValueError(suggest(name, list(_RULES), "aggregator"))
    if name == "centered_clipping":
        _bind(name, centered_clipping, params, ("X",))
        return CenteredClipping(**params)
    if name == "nna":
        allowed = ("f", "pivot", "index")
        for key in params:
            if key not in allowed:
                raise TypeError(f"nna: {suggest(key, list(allowed), 'parameter')}")
        if "f" not in params or ("pivot" in params) == ("index" in params):
            raise TypeError("nna: pass f and exactly one of pivot= (a (d,) vector) or index= (a row of X)")
        f = params["f"]
        if "pivot" in params:
            pivot = params["pivot"]
            return lambda X: nna(X, pivot, f)
        from refopt.aggregators._common import check_int

        index = check_int("nna", "index", params["index"], 0)
        return lambda X: nna(X, X[index, :], f)
    fn = _RULES[name]
    _bind(name, fn, params, ("X",))

    def rule(X: Any) -> Any:
        return fn(X, **params)

    rule.__name__ = name
    rule.__doc__ = f"{name}({', '.join(f'{k}={v!r}' for k, v in params.items())}) bound by refopt.aggregators.get"
    return rule
