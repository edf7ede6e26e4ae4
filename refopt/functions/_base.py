"""What every synthetic function shares: the :class:`Function` interface and its input checks.

A function ``f: R^dim -> R`` is evaluated at many points at once.  A point set is an array
``x`` of shape ``(..., dim)`` from any array-API library (NumPy, CuPy, torch, JAX,
array-api-strict) with a real floating dtype; every leading axis indexes a separate point::

    f.value(x)       -> shape x.shape[:-1]         f(x) at every point
    f.grad(x)        -> shape x.shape              ∇f(x)
    f.hvp(x, v)      -> shape broadcast(x, v)      ∇²f(x) v, exact (no finite differences)
    f.hessian(x)     -> shape x.shape + (dim,)     the dense ∇²f(x)

The result has x's namespace, dtype and device: a float32 input gives a float32 result
(constants are Python floats, which the array API rounds to the array's dtype at use).
Nothing passed in is modified.

Known facts about the function are plain Python data, so that they never depend on a
backend: ``minimizers`` (the global minimizers, a tuple of points), ``minimum`` (the global
minimum value), ``domain`` (the box ``((low, high), ...)`` the paper or the benchmark
literature searches; every function here is *defined* on all of R^dim, the box is only
where it is usually studied and plotted), ``start`` (the paper's start point, or None where
none is known; ``start_source`` says where it comes from) and ``local_minima`` (the
non-global local minima as ``(point, value)`` pairs, where they are known).

Kinks and jumps.  Where a function is not differentiable the gradient is a fixed choice,
the same on every backend:

* ``|u|`` has the derivative ``sign(u)`` with ``sign(0) = 0`` -- what torch's ``abs``
  backward returns, and an element of the subdifferential [-1, 1];
* a piecewise definition "A(x) if x <= a, B(x) if x > a" uses A (and A's derivatives)
  at the boundary x = a, exactly as the definition is written;
* the Hessian of a piecewise-linear part is 0 (also at its kinks).

Each function's docstring repeats the choices that apply to it.  ``smooth`` is True when
the function is twice continuously differentiable everywhere.
"""

from __future__ import annotations

import math
from typing import Any

from .. import _array
from .._checks import check_choice, check_int, check_real

__all__ = ["Function", "check_int", "check_real", "check_choice"]


class Function:
    """A synthetic test function ``R^dim -> R`` with exact derivatives (see the module docstring).

    Subclasses set the class attributes below (or instance attributes in ``__init__``) and
    implement ``_value``, ``_grad`` and ``_hvp`` on validated inputs; ``_hessian`` defaults
    to ``H e_i`` for every basis vector (H is symmetric, so these rows are its columns).
    """

    name: str = ""
    title: str = ""
    citation: str = ""
    dim: int = 0
    minimizers: tuple = ()
    minimum: float = math.nan
    domain: tuple = ()
    start: tuple | None = None
    start_source: str = ""
    local_minima: tuple = ()
    smooth: bool = True
    stochastic: bool = False

    # -- public interface ------------------------------------------------------------------

    def value(self, x: Any) -> Any:
        """f(x) at every point of ``x`` (shape ``(..., dim)``); shape ``x.shape[:-1]``."""
        xp = self._check(x, "x")
        return self._value(xp, x)

    __call__ = value

    def grad(self, x: Any, *, step: int | None = None) -> Any:
        """∇f(x), shape ``x.shape``.

        ``step`` is accepted (and ignored) so that a loop can call every function the same
        way; a stochastic wrapper (:func:`refopt.functions.noisy`) uses it to pick its noise.
        """
        xp = self._check(x, "x")
        return self._grad(xp, x)

    def hvp(self, x: Any, v: Any) -> Any:
        """The exact Hessian-vector product ∇²f(x) v; x and v broadcast against each other."""
        xp = self._check(x, "x")
        self._check(v, "v")
        xp = _array.namespace(x, v, what=f"{self.name}: x and v")
        if x.dtype != v.dtype:
            raise TypeError(
                f"{self.name}: x and v must have the same dtype; got {_array.dtype_name(x.dtype)} "
                f"and {_array.dtype_name(v.dtype)}"
            )
        if _array.device(x) != _array.device(v):
            raise ValueError(
                f"{self.name}: x and v must be on the same device; got {_array.device(x)} and {_array.device(v)}"
            )
        shape = _array.broadcast_shapes(tuple(x.shape), tuple(v.shape))
        if shape is None:
            raise ValueError(
                f"{self.name}: the shapes of x {tuple(x.shape)} and v {tuple(v.shape)} do not broadcast"
            )
        out = self._hvp(xp, x, v)
        if tuple(out.shape) != shape:
            out = xp.broadcast_to(out, shape)
        return out

    def hessian(self, x: Any) -> Any:
        """The dense Hessian ∇²f(x), shape ``x.shape + (dim,)``."""
        xp = self._check(x, "x")
        return self._hessian(xp, x)

    # -- to implement ----------------------------------------------------------------------

    def _value(self, xp, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def _grad(self, xp, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def _hvp(self, xp, x, v):  # pragma: no cover - abstract
        raise NotImplementedError

    def _hessian(self, xp, x):
        eye = xp.eye(self.dim, dtype=x.dtype, device=_array.device(x))
        return self._hvp(xp, x[..., None, :], eye)

    # -- helpers ---------------------------------------------------------------------------

    def _check(self, x: Any, what: str):
        where = f"{self.name}: {what}"
        if not _array.is_array(x):
            raise TypeError(
                f"{where} must be an array of shape (..., {self.dim}) with a real floating dtype "
                f"(any array-API library); got {type(x).__name__}"
            )
        xp = _array.namespace(x, what=where)
        if not _array.is_real_floating(xp, x.dtype):
            raise TypeError(
                f"{where} must have a real floating dtype (float32 or float64); got an array of dtype "
                f"{_array.dtype_name(x.dtype)} (convert it first, e.g. xp.astype(x, xp.float64))"
            )
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"{where} must have shape (..., {self.dim}): {self.name} is {self.dim}-dimensional, "
                f"so the last axis must have length {self.dim}; got shape {tuple(x.shape)}"
            )
        return xp

    def __repr__(self) -> str:
        return f"<refopt function {self.name!r}, dim={self.dim}>"

    def describe(self) -> str:
        """A few lines for a terminal: title, minimum, domain and start."""
        lines = [f"{self.name}: {self.title}", f"  dim {self.dim}; global minimum {self.minimum:.10g}"]
        mins = self.minimizers
        if self.dim <= 4:
            lines.append("  minimizers " + "; ".join("(" + ", ".join(f"{c:.6g}" for c in p) + ")" for p in mins))
            lo_hi = {tuple(b) for b in self.domain}
            if len(lo_hi) == 1:
                (lo, hi), = lo_hi
                lines.append(f"  domain [{lo:g}, {hi:g}]^{self.dim}")
            else:
                lines.append("  domain " + " x ".join(f"[{lo:g}, {hi:g}]" for lo, hi in self.domain))
            if self.start is not None:
                lines.append("  start (" + ", ".join(f"{c:g}" for c in self.start) + f")  [{self.start_source}]")
        if self.local_minima:
            lines.append(
                "  local minima "
                + "; ".join("(" + ", ".join(f"{c:.6g}" for c in p) + f") f={fv:.6g}" for p, fv in self.local_minima)
            )
        lines.append(f"  source: {self.citation}")
        return "\n".join(lines)


class Function1D(Function):
    """A function of one variable; subclasses implement ``_f``, ``_df``, ``_d2f`` on ``x[..., 0]``."""

    dim = 1

    def _value(self, xp, x):
        return self._f(xp, x[..., 0])

    def _grad(self, xp, x):
        return self._df(xp, x[..., 0])[..., None]

    def _hvp(self, xp, x, v):
        return self._d2f(xp, x[..., 0])[..., None] * v

    def _hessian(self, xp, x):
        return self._d2f(xp, x[..., 0])[..., None, None]


class Function2D(Function):
    """A function of two variables (a, b); subclasses implement ``_f``, ``_df`` -> (fa, fb)
    and ``_d2f`` -> (faa, fab, fbb), each on the component arrays."""

    dim = 2

    def _value(self, xp, x):
        return self._f(xp, x[..., 0], x[..., 1])

    def _grad(self, xp, x):
        ga, gb = self._df(xp, x[..., 0], x[..., 1])
        return xp.stack(_broadcast(xp, ga, gb), axis=-1)

    def _hvp(self, xp, x, v):
        haa, hab, hbb = self._d2f(xp, x[..., 0], x[..., 1])
        va, vb = v[..., 0], v[..., 1]
        return xp.stack(_broadcast(xp, haa * va + hab * vb, hab * va + hbb * vb), axis=-1)

    def _hessian(self, xp, x):
        haa, hab, hbb = _broadcast(xp, *self._d2f(xp, x[..., 0], x[..., 1]), x[..., 0])[:3]
        return xp.stack([xp.stack([haa, hab], axis=-1), xp.stack([hab, hbb], axis=-1)], axis=-2)


def _broadcast(xp, *arrays):
    """Arrays broadcast to one shape (the pieces of a gradient may be constants in one variable)."""
    return list(xp.broadcast_arrays(*arrays))


def full_like(xp, x, value: float):
    """An array of x's shape, dtype and device filled with the Python float ``value``."""
    return xp.full(x.shape, value, dtype=x.dtype, device=_array.device(x))


def sign(xp, u):
    """sign(u) with sign(0) = 0: the derivative of |u| that torch's abs backward uses."""
    return xp.sign(u)
