"""Quadratics with a chosen spectrum: ill-conditioned, and Pan & Li's sharp-coordinate quadratics.

Every function here is ``f(x) = ½ Σ_i h_i (R x)_i²`` for curvatures ``h_i > 0`` and ``R`` the
identity or the orthonormal DCT-II matrix, so that ::

    ∇f(x) = Rᵀ (h ⊙ R x),    ∇²f = Rᵀ diag(h) R,    ∇²f v = Rᵀ (h ⊙ R v),

the minimizer is 0 and the minimum 0.  The DCT-II matrix (``dct_matrix``) is::

    R[k, n] = s_k cos(π (n + ½) k / d),   s_0 = sqrt(1/d),  s_k = sqrt(2/d) for k >= 1,

which is orthonormal (R Rᵀ = I).  It is built without any random numbers and with one
rounding per entry on every backend: ``cos(π m / (2d))`` for the integer
``m = (2n + 1) k mod 4d`` is taken from a table of Python floats (``math.cos``), so NumPy,
torch and array-api-strict get the same matrix bit for bit.

Pan & Li's sharp-coordinate quadratics: refopt's own constructions (not from the paper, which
gives no synthetic problem) that exhibit the paper's mechanism on a quadratic: d = 1000
coordinates, the first k = 10 of them (1 %) "sharp" with curvature h = 1000, the rest 1:

``sharp_st1a``  "sharp coordinates hold the loss": x0_i = 1 + 0.5 sin(i).  f0 = 7121.655;
                clipping lowers the directional sharpness of the gradient direction ~50x but
                does not improve the best one-step loss reduction (no free lunch).
``sharp_st1b``  "few sharp coordinates, loss elsewhere" (the paper's regime):
                x0_i = 0.05 (1 + 0.5 sin i) for i < k, else 1 + 0.5 sin i.  f0 = 572.2808;
                clipping lowers the sharpness 46x and raises the best one-step loss
                reduction 4.5x.
``sharp_st2``   the rotation control: ST-1b seen through R = the DCT-II matrix,
                H = Rᵀ diag(h) R and y0 = Rᵀ x0 (same spectrum, same f0, but the sharp
                directions are no longer coordinates), where clipping's benefit vanishes.

Sources: Pan & Li, "Toward Understanding Why Adam Converges Faster Than SGD for
Transformers" (arXiv 2306.00204) for the mechanism; the functions are refopt's, and every
number above is computed by refopt in float64 (``refopt.diagnostics``; checked in the
repository's ``tests/test_diagnostics.py``).
"""

from __future__ import annotations

import functools
import math
from typing import Any

from .. import _array
from ._base import Function, check_choice, check_int, check_real

__all__ = ["DiagonalQuadratic", "IllConditionedQuadratic", "SharpQuadratic", "dct_matrix"]

_PAN_LI = (
    "Pan & Li, 'Toward Understanding Why Adam Converges Faster Than SGD for Transformers' "
    "(arXiv 2306.00204) for the mechanism; the quadratic is refopt's construction (refopt.functions.SharpQuadratic)"
)


def _dct_table(d: int) -> list[float]:
    """cos(π m / (2d)) for m = 0 .. 4d-1 as Python floats."""
    return [math.cos(math.pi * m / (2 * d)) for m in range(4 * d)]


def _dct_scale(d: int) -> list[float]:
    return [math.sqrt(1.0 / d)] + [math.sqrt(2.0 / d)] * (d - 1)


def dct_matrix(dim: int, like: Any) -> Any:
    """The orthonormal DCT-II matrix of size ``dim × dim`` in ``like``'s namespace, dtype and device.

    ``R[k, n] = s_k cos(π(n + ½)k/dim)`` with ``s_0 = sqrt(1/dim)``, ``s_k = sqrt(2/dim)``.
    ``like`` is any array whose namespace, floating dtype and device the matrix should have.
    Dense: memory and time grow as dim² (8 MB for dim = 1000 in float64).
    """
    dim = check_int("dct_matrix", "dim", dim, 1)
    xp = _array.namespace(like, what="dct_matrix: like")
    if not _array.is_real_floating(xp, like.dtype):
        raise TypeError(f"dct_matrix: like must have a real floating dtype; got {_array.dtype_name(like.dtype)}")
    dev = _array.device(like)
    table = xp.asarray(_dct_table(dim), dtype=like.dtype, device=dev)
    n = xp.arange(dim, device=dev)
    m = ((2 * n[None, :] + 1) * n[:, None]) % (4 * dim)  # row k = n[:, None], column n
    cosines = xp.reshape(xp.take(table, xp.reshape(m, (-1,)), axis=0), (dim, dim))
    scale = xp.asarray(_dct_scale(dim), dtype=like.dtype, device=dev)
    return cosines * scale[:, None]


@functools.lru_cache(maxsize=8)
def _dct_transpose_times(x: tuple[float, ...]) -> tuple[float, ...]:
    """Rᵀ x in Python floats (exactly rounded sums), for start points (about 0.2 s for d = 1000)."""
    d = len(x)
    table, scale = _dct_table(d), _dct_scale(d)
    sx = [s * xi for s, xi in zip(scale, x)]
    out = []
    for n in range(d):
        step = 2 * n + 1
        out.append(math.fsum(sx[k] * table[(step * k) % (4 * d)] for k in range(d)))
    return tuple(out)


class DiagonalQuadratic(Function):
    r"""f(x) = ½ Σ h_i (R x)_i² with fixed curvatures h (see the module docstring).

    ``curvatures`` is the tuple h (Python floats), ``rotated`` says whether R is the DCT-II
    matrix (else the identity); ``rotation(like)`` returns R as an array (or None).
    """

    minimum = 0.0
    citation = ""

    def _setup(self, curvatures: tuple, rotated: bool):
        self.curvatures = tuple(float(c) for c in curvatures)
        self.dim = len(self.curvatures)
        self.rotated = bool(rotated)
        self.minimizers = ((0.0,) * self.dim,)
        self._cache: dict = {}

    def rotation(self, like: Any) -> Any:
        """R (the DCT-II matrix) in like's namespace/dtype/device, or None when not rotated."""
        return self._consts(_array.namespace(like), like)[1]

    def _consts(self, xp, like):
        key = (getattr(xp, "__name__", str(xp)), str(like.dtype), repr(_array.device(like)))
        hit = self._cache.get(key)
        if hit is None:
            h = xp.asarray(list(self.curvatures), dtype=like.dtype, device=_array.device(like))
            q = dct_matrix(self.dim, like) if self.rotated else None
            hit = self._cache[key] = (h, q)
        return hit

    def _to(self, xp, q, x):
        """R x for a batch of points (x @ Rᵀ)."""
        return x if q is None else x @ xp.matrix_transpose(q)

    def _back(self, xp, q, z):
        """Rᵀ z for a batch of vectors (z @ R)."""
        return z if q is None else z @ q

    def _value(self, xp, x):
        h, q = self._consts(xp, x)
        z = self._to(xp, q, x)
        return xp.sum(h * z * z, axis=-1) / 2.0

    def _grad(self, xp, x):
        h, q = self._consts(xp, x)
        return self._back(xp, q, h * self._to(xp, q, x))

    def _hvp(self, xp, x, v):
        h, q = self._consts(xp, x)
        out = self._back(xp, q, h * self._to(xp, q, v))
        return out + xp.zeros_like(x)  # broadcast against the points

    def _hessian(self, xp, x):
        h, q = self._consts(xp, x)
        eye = xp.eye(self.dim, dtype=x.dtype, device=_array.device(x))
        hess = self._back(xp, q, h * self._to(xp, q, eye))  # row i = H e_i
        return xp.broadcast_to(hess, tuple(x.shape) + (self.dim,))


class IllConditionedQuadratic(DiagonalQuadratic):
    r"""f(x) = ½ Σ h_i (R x)_i² with h_i = κ^{i/(n-1)}: curvatures spaced geometrically from 1 to κ.

    ``condition`` κ >= 1 is the condition number of the Hessian (for n = 1, h = (1,)).
    ``rotated=True`` applies the orthonormal DCT-II matrix R (deterministic: for n = 2 it is
    a 45° reflection, so the valley runs along a diagonal), making the problem
    non-separable; otherwise R = I and the Hessian is diagonal.  Minimum f(0) = 0; the box
    [-1, 1]ⁿ is for plots only.
    """

    name = "ill_conditioned_quadratic"
    title = "ill-conditioned quadratic ½ Σ h_i (Rx)_i², h_i = κ^(i/(n-1))"
    citation = "a standard test problem (e.g. Nocedal & Wright, Numerical Optimization, §3.3); rotation: DCT-II"

    def __init__(self, dim: int = 2, condition: float = 100.0, rotated: bool = False):
        dim = check_int(self.name, "dim", dim, 1)
        self.condition = check_real(self.name, "condition", condition, 1.0)
        if not isinstance(rotated, bool):
            raise TypeError(f"{self.name}: rotated must be True or False; got {rotated!r}")
        h = [1.0] if dim == 1 else [self.condition ** (i / (dim - 1)) for i in range(dim)]
        self._setup(h, rotated)
        self.domain = ((-1.0, 1.0),) * dim
        self.title = f"ill-conditioned quadratic, condition {self.condition:g}" + (", DCT-rotated" if rotated else "")


_REGIMES = {
    "st1a": "st1a",
    "loss_in_sharp": "st1a",
    "st1b": "st1b",
    "loss_elsewhere": "st1b",
    "st2": "st2",
    "rotated": "st2",
}
_TITLES = {
    "st1a": "Pan & Li ST-1a: sharp coordinates hold the loss",
    "st1b": "Pan & Li ST-1b: few sharp coordinates, loss elsewhere (the paper's regime)",
    "st2": "Pan & Li ST-2: ST-1b rotated by the DCT-II matrix (negative control)",
}


class SharpQuadratic(DiagonalQuadratic):
    r"""A sharp-coordinate quadratic f(x) = ½ Σ h_i (R x)_i² for Pan & Li's mechanism.

    refopt's construction (see the module docstring), not a problem of the paper.

    ``h_i = h`` for the first ``k`` coordinates and 1 for the others; ``regime`` picks the
    start point and R:

    * ``"st1a"`` (alias ``"loss_in_sharp"``): R = I, x0_i = 1 + 0.5 sin(i);
    * ``"st1b"`` (alias ``"loss_elsewhere"``, the default): R = I,
      x0_i = 0.05 (1 + 0.5 sin i) for i < k, 1 + 0.5 sin i otherwise;
    * ``"st2"`` (alias ``"rotated"``): R = the orthonormal DCT-II matrix, start y0 = Rᵀ x0
      with x0 of ST-1b, so f(y0) and the spectrum equal ST-1b's.

    Defaults d = 1000, k = 10, h = 1000.  Note numbers (float64): f0 = 7121.655 (ST-1a),
    572.2808 (ST-1b and ST-2); directional sharpness S(-g) = vᵀHv/‖v‖² at x0 = 999.915
    (ST-1a), 967.278 (ST-1b, ST-2).  The box (-inf, inf) in every coordinate: no box is used.
    """

    citation = _PAN_LI

    def __init__(self, regime: str = "st1b", dim: int = 1000, k: int = 10, h: float = 1000.0):
        self.regime = _REGIMES[check_choice("sharp_quadratic", "regime", regime, list(_REGIMES))]
        self.name = f"sharp_{self.regime}"
        dim = check_int(self.name, "dim", dim, 1)
        self.k = check_int(self.name, "k", k, 0, dim)
        self.h = check_real(self.name, "h", h, 0.0, low_open=True)
        self._setup([self.h] * self.k + [1.0] * (dim - self.k), self.regime == "st2")
        self.title = _TITLES[self.regime] + f" (d={dim}, k={self.k}, h={self.h:g})"
        self.domain = ((-math.inf, math.inf),) * dim
        self.start_source = "refopt's construction (refopt.functions.SharpQuadratic)"
        base = [1.0 + 0.5 * math.sin(i) for i in range(dim)]
        if self.regime != "st1a":
            base = [0.05 * b if i < self.k else b for i, b in enumerate(base)]
        self._x0 = tuple(base)
        self._start = None if self.regime == "st2" else self._x0

    @property
    def start(self) -> tuple:
        """x0 of the regime (for ST-2, Rᵀ x0 of ST-1b, computed on first use)."""
        if self._start is None:
            self._start = _dct_transpose_times(self._x0)
        return self._start

    @property
    def sharp_coordinates(self) -> range:
        """Indices of the sharp coordinates (in the rotated basis R x for ST-2)."""
        return range(self.k)
