r"""Quadratic clients with known optima: a test problem for federated rules whose fixed points have closed forms.

Client i of M has the loss

    L_i(θ) = ½ (θ - θ_i*)ᵀ A_i (θ - θ_i*),     ∇L_i(θ) = A_i (θ - θ_i*),

with optimum θ_i* and a symmetric positive-definite curvature A_i, given as one of

    None            A_i = I for every client (the simplest setting, where the fixed points are weighted means)
    (M,)            A_i = a_i I (one positive number per client)
    (M, d)          A_i = diag(a_i) (positive diagonals)
    (M, d, d)       full symmetric positive-definite matrices

The federated objective with client weights p (uniform by default, normalised to sum to 1)
is L(θ) = Σ_i p_i L_i(θ); its minimiser (:meth:`QuadraticClients.optimum`) is

    θ* = (Σ_i p_i A_i)⁻¹ Σ_i p_i A_i θ_i*         (= Σ_i p_i θ_i* when every A_i = I).

Example: ``quadratic_clients(range(10))`` is the 1-D problem with
θ_i* = i, A_i = 1, whose federated optimum with uniform p is 4.5.

Shapes: :meth:`loss_grad` takes ``theta (..., M, d)`` -- row i is client i's parameter -- or
any shape that broadcasts against ``(M, d)``, e.g. ``theta (d,)`` evaluates every client at
the same point; it returns ``loss (..., M)`` and ``grad (..., M, d)`` in theta's namespace,
dtype and device. There is no data: call it with theta only.

Host-side: this module imports NumPy to hold the constants (float64) and to compute the
closed forms (:meth:`optimum`, :meth:`minimum`, :func:`random_quadratic_clients`); the loss
and gradient themselves are array-API code on theta's backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _array
from ._base import Problem, check_int, check_real

__all__ = ["QuadraticClients", "quadratic_clients", "random_quadratic_clients"]


def _host(value: Any, name: str) -> np.ndarray:
    try:
        if isinstance(value, range) or (isinstance(value, (list, tuple))):
            arr = np.asarray(value, dtype=np.float64)
        else:
            arr = _array.host_float64(value, name) if _array.is_array(value) else np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"quadratic_clients: {name} must be an array of real numbers; got {value!r} ({exc})") from None
    return np.array(arr, dtype=np.float64, copy=True)


class QuadraticClients(Problem):
    """M quadratic clients ``L_i(θ) = ½ (θ - θ_i*)ᵀ A_i (θ - θ_i*)`` (see the module docstring)."""

    needs_data = False
    num_classes = 0
    features = 0

    def __init__(self, optima: Any, curvatures: Any = None):
        self.name = "quadratic_clients"
        opt = _host(optima, "optima")
        if opt.ndim == 1:
            opt = opt[:, None]
        if opt.ndim != 2 or opt.shape[0] < 1 or opt.shape[1] < 1:
            raise ValueError(
                f"quadratic_clients: optima must have shape (M,) or (M, d) with M >= 1 clients; got shape {opt.shape}"
            )
        if not np.isfinite(opt).all():
            raise ValueError("quadratic_clients: optima must be finite")
        M, d = opt.shape
        self.clients, self.dim = M, d
        self.optima = opt
        self.optima.flags.writeable = False
        if curvatures is None:
            self.kind = "identity"
            curv = np.ones((M, 1))
        else:
            curv = _host(curvatures, "curvatures")
            if curv.shape == (M,):
                self.kind, curv = "scalar", curv[:, None]
            elif curv.shape == (M, d):
                self.kind = "diagonal"
            elif curv.shape == (M, d, d):
                self.kind = "full"
            else:
                raise ValueError(
                    f"quadratic_clients: curvatures must have shape (M,) = ({M},), (M, d) = ({M}, {d}) or "
                    f"(M, d, d) = ({M}, {d}, {d}); got shape {curv.shape}"
                )
            if not np.isfinite(curv).all():
                raise ValueError("quadratic_clients: curvatures must be finite")
            if self.kind == "full":
                if not np.allclose(curv, np.swapaxes(curv, -1, -2), rtol=1e-12, atol=0.0):
                    raise ValueError("quadratic_clients: every curvature matrix A_i must be symmetric")
                low = np.linalg.eigvalsh(curv).min(axis=-1)
                if (low <= 0).any():
                    i = int(np.argmax(low <= 0))
                    raise ValueError(
                        f"quadratic_clients: every A_i must be positive definite; A_{i} has the eigenvalue {low[i]:g}"
                    )
            elif (curv <= 0).any():
                i = int(np.argwhere(curv <= 0)[0][0])
                raise ValueError(f"quadratic_clients: curvatures must be > 0; client {i} has {curv[i].min():g}")
        self.curvatures = curv
        self.curvatures.flags.writeable = False
        self._cache: dict = {}

    # -- closed forms (host, float64) ------------------------------------------------------

    def hessians(self) -> np.ndarray:
        """The curvature matrices A_i as a float64 NumPy array ``(M, d, d)``."""
        M, d = self.clients, self.dim
        if self.kind == "full":
            return np.array(self.curvatures)
        diag = np.broadcast_to(self.curvatures, (M, d))
        return np.einsum("ij,jk->ijk", diag, np.eye(d))

    def _weights(self, weights: Any) -> np.ndarray:
        if weights is None:
            return np.full(self.clients, 1.0 / self.clients)
        w = _host(weights, "weights").reshape(-1)
        if w.shape != (self.clients,):
            raise ValueError(
                f"quadratic_clients: weights must have one entry per client ({self.clients}); got shape {w.shape}"
            )
        if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"quadratic_clients: weights must be finite, >= 0 and not all 0; got {w.tolist()}")
        return w / w.sum()

    def optimum(self, weights: Any = None) -> np.ndarray:
        """argmin_θ Σ_i p_i L_i(θ) = (Σ p_i A_i)⁻¹ Σ p_i A_i θ_i* (float64 NumPy ``(d,)``); p uniform by default."""
        p = self._weights(weights)
        if self.kind == "full":
            H = np.einsum("i,ijk->jk", p, self.curvatures)
            r = np.einsum("i,ijk,ik->j", p, self.curvatures, self.optima)
            return np.linalg.solve(H, r)
        diag = np.broadcast_to(self.curvatures, (self.clients, self.dim))
        return (p[:, None] * diag * self.optima).sum(0) / (p[:, None] * diag).sum(0)

    def minimum(self, weights: Any = None) -> float:
        """min_θ Σ_i p_i L_i(θ) (a Python float)."""
        p = self._weights(weights)
        r = self.optimum(weights)[None, :] - self.optima
        Ar = np.einsum("ijk,ik->ij", self.hessians(), r)
        return float(0.5 * (p * (r * Ar).sum(-1)).sum())

    def init(self, seed: int = 0) -> np.ndarray:
        """The zero vector (float64 NumPy ``(d,)``); ``seed`` is checked and otherwise unused."""
        check_int(self.name, "seed", seed, 0)
        return np.zeros(self.dim, dtype=np.float64)

    # -- array-API evaluation --------------------------------------------------------------

    def _consts(self, theta):
        key = (type(theta).__module__, str(theta.dtype), repr(_array.device(theta)))
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = (_array.lift(self.optima, theta), _array.lift(self.curvatures, theta))
        return hit

    def _check_theta(self, theta):
        xp, _ = self._check(theta, None, None)
        lead = tuple(theta.shape[:-1])
        if _array.broadcast_shapes(lead, (self.clients,)) is None:
            raise ValueError(
                f"quadratic_clients: theta must have shape (..., {self.clients}, {self.dim}) (one row per client) "
                f"or broadcast against it; got shape {tuple(theta.shape)}"
            )
        return xp

    def _loss_grad(self, xp, theta, X, Y):
        opt, curv = self._consts(theta)
        r = theta - opt                                         # (..., M, d)
        if self.kind == "full":
            g = (curv @ r[..., None])[..., 0]
        else:
            g = curv * r
        return xp.sum(r * g, axis=-1) / 2.0, g

    def loss_grad(self, theta: Any, X: Any = None, y: Any = None):
        """``(loss (..., M), grad (..., M, d))``: every client's loss and gradient at its row of theta."""
        if X is not None or y is not None:
            raise TypeError("quadratic_clients: this problem has no data; call loss_grad(theta) without X and y")
        xp = self._check_theta(theta)
        return self._loss_grad(xp, theta, None, None)

    def hvp(self, theta: Any, v: Any, X: Any = None, y: Any = None, *, method: str = "auto"):
        """``(..., M, d)``: every client's Hessian A_i times its row of v (exact unless method="difference")."""
        if X is not None or y is not None:
            raise TypeError("quadratic_clients: this problem has no data; call hvp(theta, v) without X and y")
        self._check_theta(theta)
        return super().hvp(theta, v, method=method)

    def _hvp(self, xp, theta, v, X, y):
        """Exact: row i of v times its client's A_i (the Hessian of L_i)."""
        _, curv = self._consts(theta)
        if self.kind == "full":
            return (curv @ v[..., None])[..., 0]
        return xp.broadcast_to(curv * v, tuple(_array.broadcast_shapes(tuple(v.shape), tuple(curv.shape))))

    def example_batch(self, size: int = 1, seed: int = 0, *, like: Any = None):
        """``(None, None)``: quadratic clients take no data (``size`` and ``seed`` are checked only)."""
        check_int(self.name, "size", size, 1)
        check_int(self.name, "seed", seed, 0)
        return None, None

    def global_loss_grad(self, theta: Any, weights: Any = None):
        """``(L (...,), ∇L (..., d))`` of the federated objective Σ_i p_i L_i at points theta ``(..., d)``."""
        xp = self._check_theta(theta)
        p = _array.lift(self._weights(weights), theta)          # (M,)
        loss, g = self._loss_grad(xp, theta[..., None, :], None, None)
        return xp.sum(p * loss, axis=-1), xp.sum(p[:, None] * g, axis=-2)

    def accuracy(self, theta, X=None, y=None):
        raise TypeError("quadratic_clients: quadratic clients are not a classifier; there is no accuracy")

    def logits(self, theta, X=None):
        raise TypeError("quadratic_clients: quadratic clients are not a classifier; there are no logits")

    def __repr__(self):
        return f"<refopt problem quadratic_clients M={self.clients} d={self.dim} curvature={self.kind}>"


def quadratic_clients(optima: Any, curvatures: Any = None) -> QuadraticClients:
    """M quadratic clients with optima ``(M,)`` or ``(M, d)`` and optional curvatures (see the module docstring)."""
    return QuadraticClients(optima, curvatures)


def random_quadratic_clients(clients: int, dim: int, seed: int = 0, *, spread: float = 1.0,
                             eigenvalues: tuple[float, float] = (0.5, 2.0)) -> QuadraticClients:
    """A seeded random instance: θ_i* ~ N(0, spread² I), A_i = Q_i diag(λ_i) Q_iᵀ.

    λ_i uniform in ``eigenvalues = (low, high)`` (0 < low <= high), Q_i a random orthogonal
    matrix (QR of a Gaussian matrix, signs fixed by the diagonal of R); everything drawn from
    ``numpy.random.default_rng(seed)`` in the order optima, eigenvalues, rotations.
    """
    fn = "random_quadratic_clients"
    M = check_int(fn, "clients", clients, 1)
    d = check_int(fn, "dim", dim, 1)
    seed = check_int(fn, "seed", seed, 0)
    spread = check_real(fn, "spread", spread, 0.0)
    if not isinstance(eigenvalues, (tuple, list)) or len(eigenvalues) != 2:
        raise TypeError(f"{fn}: eigenvalues must be a pair (low, high); got {eigenvalues!r}")
    low = check_real(fn, "eigenvalues[0]", eigenvalues[0], 0.0, low_open=True)
    high = check_real(fn, "eigenvalues[1]", eigenvalues[1], low)
    rng = np.random.default_rng(seed)
    optima = spread * rng.standard_normal((M, d))
    lam = rng.uniform(low, high, size=(M, d))
    q, r = np.linalg.qr(rng.standard_normal((M, d, d)))
    q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[:, None, :]
    A = np.einsum("mij,mj,mkj->mik", q, lam, q)
    A = (A + np.swapaxes(A, -1, -2)) / 2.0
    return QuadraticClients(optima, A)
