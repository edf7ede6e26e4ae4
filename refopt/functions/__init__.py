"""Synthetic test functions with exact gradients, Hessian-vector products and known minima.

``refopt.functions.names()`` lists them; ``refopt.functions.get(name, **params)`` builds one
(n-dimensional functions take ``dim=``; some take more parameters, see each docstring).
Each is also reachable as a class under its name (``refopt.functions.rosenbrock(dim=5)``).
Every function evaluates many points at once, on any array-API backend::

    f = refopt.functions.get("beale")
    f.value(x), f.grad(x), f.hvp(x, v), f.hessian(x)      # x: shape (..., f.dim)
    f.minimizers, f.minimum, f.domain, f.start, f.local_minima

Families (one module each):

* the diffGrad paper's 1-D functions (``_diffgrad``): ``diffgrad_f1``, ``diffgrad_f2``,
  ``diffgrad_f3`` and ``diffgrad_f2_notebook`` (the F2 the official notebook's gradient
  describes);
* the AdaBelief paper's toys (``_adabelief``): ``abs_sum``, ``abs_rotated``,
  ``quad_rotated``, ``abs_scaled``, ``beale``, ``log_beale``, ``rosenbrock``;
* classic benchmarks (``_classic``): ``sphere``, ``rastrigin``, ``ackley``, ``himmelblau``,
  ``booth``, ``styblinski_tang``, ``goldstein_price``, ``six_hump_camel``;
* quadratics (``_quadratic``): ``ill_conditioned_quadratic`` and Pan & Li's
  sharp-coordinate quadratics ``sharp_st1a``, ``sharp_st1b``, ``sharp_st2`` (also
  ``sharp_quadratic`` with ``regime=``);
* ``noisy(f, sigma, seed)`` (``_stochastic``): seeded Gaussian gradient noise;
* ``dct_matrix(dim, like)``: the orthonormal DCT-II matrix the rotated quadratics use.

Conventions at kinks (sign(0) = 0, the left branch at a piecewise boundary) are in
``refopt.functions._base``.
"""

from __future__ import annotations

import importlib
import inspect

from ..rules._base import suggest
from ._base import Function
from ._quadratic import dct_matrix
from ._stochastic import Noisy, noisy, stochastic

# name -> (module, class, fixed parameters)
_FUNCTIONS: dict[str, tuple[str, str, dict]] = {
    "diffgrad_f1": ("_diffgrad", "DiffGradF1", {}),
    "diffgrad_f2": ("_diffgrad", "DiffGradF2", {}),
    "diffgrad_f2_notebook": ("_diffgrad", "DiffGradF2Notebook", {}),
    "diffgrad_f3": ("_diffgrad", "DiffGradF3", {}),
    "abs_sum": ("_adabelief", "AbsSum", {}),
    "abs_rotated": ("_adabelief", "AbsRotated", {}),
    "quad_rotated": ("_adabelief", "QuadRotated", {}),
    "abs_scaled": ("_adabelief", "AbsScaled", {}),
    "beale": ("_adabelief", "Beale", {}),
    "log_beale": ("_adabelief", "LogBeale", {}),
    "rosenbrock": ("_adabelief", "Rosenbrock", {}),
    "sphere": ("_classic", "Sphere", {}),
    "rastrigin": ("_classic", "Rastrigin", {}),
    "ackley": ("_classic", "Ackley", {}),
    "himmelblau": ("_classic", "Himmelblau", {}),
    "booth": ("_classic", "Booth", {}),
    "styblinski_tang": ("_classic", "StyblinskiTang", {}),
    "goldstein_price": ("_classic", "GoldsteinPrice", {}),
    "six_hump_camel": ("_classic", "SixHumpCamel", {}),
    "ill_conditioned_quadratic": ("_quadratic", "IllConditionedQuadratic", {}),
    "sharp_quadratic": ("_quadratic", "SharpQuadratic", {}),
    "sharp_st1a": ("_quadratic", "SharpQuadratic", {"regime": "st1a"}),
    "sharp_st1b": ("_quadratic", "SharpQuadratic", {"regime": "st1b"}),
    "sharp_st2": ("_quadratic", "SharpQuadratic", {"regime": "st2"}),
}


def names() -> list[str]:
    """Names of every synthetic function."""
    return list(_FUNCTIONS)


def function_class(name: str) -> type[Function]:
    """The class behind ``name``; ValueError with close matches when unknown."""
    if not isinstance(name, str) or name not in _FUNCTIONS:
        raise ValueError(suggest(str(name), list(_FUNCTIONS), "function"))
    module, cls, _ = _FUNCTIONS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def get(name: str, **params) -> Function:
    """The function called ``name`` with the given parameters (``dim=``, ...).

    Unknown parameters are a TypeError that lists the allowed ones; a 2-D (or 1-D)
    function accepts ``dim`` only when it equals its dimension.
    """
    cls = function_class(name)
    fixed = _FUNCTIONS[name][2]
    allowed = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self" and p.name not in fixed
    ]
    params = dict(params)
    if "dim" in params and "dim" not in allowed:
        if isinstance(params["dim"], bool) or params["dim"] != cls.dim:
            raise ValueError(f"{name} is {cls.dim}-dimensional only; got dim={params['dim']!r}")
        del params["dim"]
    unknown = [p for p in params if p not in allowed]
    if unknown:
        took = f"takes the parameters {', '.join(allowed)}" if allowed else "takes no parameters"
        hints = [suggest(p, allowed, "parameter") if allowed else f"unknown parameter {p!r}" for p in unknown]
        raise TypeError(f"{name} {took}; " + "; ".join(hints))
    return cls(**fixed, **params)


def __getattr__(name: str):
    if name in _FUNCTIONS and not _FUNCTIONS[name][2]:
        return function_class(name)
    raise AttributeError(f"module 'refopt.functions' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *(n for n in _FUNCTIONS if not _FUNCTIONS[n][2])])


__all__ = ["Function", "Noisy", "names", "get", "function_class", "noisy", "stochastic", "dct_matrix"]
