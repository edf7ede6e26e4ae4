"""A stochastic-gradient wrapper: a function whose gradient carries seeded Gaussian noise.

``noisy(f, sigma, seed)`` returns a function with the same value, Hessian and known facts
as ``f`` and a gradient ::

    grad(x, step=t) = ∇f(x) + σ ξ_t,      ξ_t ~ N(0, I) drawn from Generator(seed, t).

The noise is a pure function of ``(seed, step)``: calling ``grad`` twice with the same step
gives the same noise, and nothing is stored between calls, so a run can be replayed or
resumed from any step.  ``value``, ``hvp`` and ``hessian`` are noiseless (the quantities a
diagnostic wants); the noise is an unbiased perturbation of the gradient only, like a
minibatch gradient of a loss whose mean is f.

Host-side module: it imports NumPy for its random number generator.  The noise is drawn
in float64 on the host with ``numpy.random.Generator(PCG64(SeedSequence([seed, step])))``
(``numpy.random.default_rng([seed, step])``), rounded once to the points' dtype and moved
next to them with ``xp.asarray(..., device=...)``; so every backend and device sees the
same noise, and a float32 run sees the float64 draw rounded to float32.

Shared or per-point noise (``per_point``):

* ``False`` (default): one draw of shape ``(dim,)`` per step, the same for every point of
  a batch (common random numbers).  A batch of K start points or K hyper-parameter
  settings then sees exactly the noise each of the K separate runs sees, so a batched
  run equals the separate runs.
* ``True``: an independent draw for every point, shape ``x.shape`` (the draw depends on
  the batch shape, so a batched run no longer equals separate runs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _array
from ._base import Function, check_int, check_real

__all__ = ["Noisy", "noisy"]


class Noisy(Function):
    """``base`` with seeded Gaussian gradient noise of standard deviation ``sigma`` (see module)."""

    stochastic = True

    def __init__(self, base: Function, sigma: float, seed: int = 0, per_point: bool = False):
        if not isinstance(base, Function):
            raise TypeError(f"noisy: f must be a refopt function (or its name); got {type(base).__name__}")
        self.base = base
        self.sigma = check_real("noisy", "sigma", sigma, 0.0)
        self.seed = check_int("noisy", "seed", seed, 0)
        if not isinstance(per_point, bool):
            raise TypeError(f"noisy: per_point must be True or False; got {per_point!r}")
        self.per_point = per_point
        self.name = f"noisy_{base.name}"
        self.title = f"{base.title} + N(0, {self.sigma:g}^2 I) gradient noise (seed {self.seed})"
        self.citation = base.citation
        self.smooth = base.smooth
        self.dim = base.dim
        self.minimizers = base.minimizers
        self.minimum = base.minimum
        self.domain = base.domain
        self.start_source = base.start_source
        self.local_minima = base.local_minima

    @property
    def start(self):
        return self.base.start

    def noise(self, x: Any, step: int) -> Any:
        """σ ξ_step as it is added to the gradient at the points ``x`` (shape ``x.shape``)."""
        xp = self._check(x, "x")
        step = check_int(self.name, "step", step, 0)
        return self._noise(xp, x, step)

    def _noise(self, xp, x, step: int):
        shape = tuple(x.shape) if self.per_point else (self.dim,)
        rng = np.random.default_rng([self.seed, step])
        draw = rng.standard_normal(shape) * self.sigma  # float64 on the host
        host = draw.astype(_host_dtype(x))  # one rounding to the points' dtype
        out = xp.asarray(host, dtype=x.dtype, device=_array.device(x))
        if not self.per_point:
            out = xp.broadcast_to(out, tuple(x.shape))
        return out

    def grad(self, x: Any, *, step: int | None = None) -> Any:
        """∇f(x) + σ ξ_step; ``step`` (an int >= 0, the step count t) is required."""
        xp = self._check(x, "x")
        if step is None:
            raise TypeError(
                f"{self.name}.grad needs step= (an integer >= 0, the step number): the noise is a function "
                f"of (seed, step), so that runs are reproducible"
            )
        step = check_int(self.name, "step", step, 0)
        return self.base._grad(xp, x) + self._noise(xp, x, step)

    def _value(self, xp, x):
        return self.base._value(xp, x)

    def _grad(self, xp, x):  # the noiseless gradient (used by nothing that wants noise)
        return self.base._grad(xp, x)

    def _hvp(self, xp, x, v):
        return self.base._hvp(xp, x, v)

    def _hessian(self, xp, x):
        return self.base._hessian(xp, x)

    def __repr__(self) -> str:
        return f"<refopt function {self.name!r}, dim={self.dim}, sigma={self.sigma:g}, seed={self.seed}>"


def _host_dtype(x) -> Any:
    name = _array.dtype_name(x.dtype)
    return np.dtype(name) if name in ("float16", "float32", "float64") else np.float64


def noisy(f: Function | str, sigma: float, seed: int = 0, *, per_point: bool = False) -> Noisy:
    """``f`` (a function or its name) with seeded Gaussian gradient noise N(0, sigma² I).

    ``grad(x, step=t)`` adds the draw of Generator(seed, t); ``value``/``hvp``/``hessian``
    are noiseless; ``noise(x, step)`` returns the draw alone.  See the module docstring.
    """
    if isinstance(f, str):
        from . import get

        f = get(f)
    return Noisy(f, sigma, seed, per_point)


stochastic = noisy
