"""What every learning problem shares: the :class:`Problem` interface and its input checks.

A problem is a differentiable loss ``L(θ; X, y)`` of a flat parameter vector θ of length
``dim``, evaluated for many parameter vectors at once (one per node or client)::

    loss, grad = problem.loss_grad(theta, X, y)
        theta  (..., dim)         float32 or float64, any array-API library
        X      (..., b, features) same namespace, dtype and device as theta
        y      (..., b)           integer class labels in [0, num_classes)
        loss   (...,)             the mean loss over the b examples (+ the penalty)
        grad   (..., dim)         its exact gradient with respect to theta

    problem.accuracy(theta, X, y) -> (...,)   fraction of the b examples classified right

The leading axes ``...`` of theta, X and y broadcast against each other, so the common cases
are all one call:

* ``theta (nodes, dim)``, ``X (nodes, b, features)``, ``y (nodes, b)``: every node on its
  own batch (the collaborative and federated simulators);
* ``theta (nodes, dim)``, ``X (n_test, features)``, ``y (n_test,)``: every node on the same
  test set;
* ``theta (dim,)``, ``X (b, features)``, ``y (b,)``: one model, one batch.

The result has theta's namespace, dtype and device; float32 in gives float32 out (every
constant is a Python float, rounded to the array's dtype at use). Nothing passed in is
modified. ``init(seed)`` returns a float64 NumPy vector of length ``dim`` that is the same on
every machine and backend (convert it with ``xp.asarray(v, dtype=..., device=...)``).

Problems without data (the quadratic clients of :mod:`refopt.problems._quadratic`) accept
``X=None, y=None``.
"""

from __future__ import annotations

from typing import Any

from .. import _array
from .._checks import check_choice, check_int, check_real

__all__ = ["Problem", "BatchLoss", "InputTypeError", "check_int", "check_real", "check_choice", "FD_STEP"]

FD_STEP = 2.0 ** -17
"""The relative step of the central-difference HVP (≈ ∛(2⁻⁵²) ≈ 6.1e-6, see :meth:`Problem.hvp`)."""


class InputTypeError(TypeError, ValueError):
    """An input of the wrong dtype: both a TypeError (its type is wrong) and a ValueError (a bad argument)."""


class Problem:
    """A loss of a flat parameter vector with an exact gradient (see the module docstring).

    Subclasses set ``name``, ``dim``, ``features`` and ``num_classes`` and implement
    ``_loss_grad(xp, theta, X, Y)`` (``Y`` is the one-hot float matrix of the labels, or
    None), ``_logits(xp, theta, X)`` for classifiers, and ``init(seed)``.
    """

    name: str = ""
    dim: int = 0
    features: int = 0
    num_classes: int = 0
    needs_data: bool = True

    # -- public interface ------------------------------------------------------------------

    def loss_grad(self, theta: Any, X: Any = None, y: Any = None) -> tuple[Any, Any]:
        """``(loss (...,), grad (..., dim))``: the batch-mean loss and its exact gradient."""
        xp, Y = self._check(theta, X, y)
        return self._loss_grad(xp, theta, X, Y)

    def loss(self, theta: Any, X: Any = None, y: Any = None) -> Any:
        """The loss alone (same computation as :meth:`loss_grad`)."""
        return self.loss_grad(theta, X, y)[0]

    def grad(self, theta: Any, X: Any = None, y: Any = None) -> Any:
        """The gradient alone (same computation as :meth:`loss_grad`)."""
        return self.loss_grad(theta, X, y)[1]

    def logits(self, theta: Any, X: Any) -> Any:
        """The class scores ``(..., b, num_classes)`` of a classifier."""
        xp, _ = self._check(theta, X, None, need_y=False)
        return self._logits(xp, theta, X)

    def predict(self, theta: Any, X: Any) -> Any:
        """The predicted class ``(..., b)``: the arg-max of the logits (the lowest index on ties)."""
        return _argmax_last(_array.namespace(theta), self.logits(theta, X))

    def accuracy(self, theta: Any, X: Any, y: Any) -> Any:
        """The fraction ``(...,)`` of the b examples whose predicted class equals y (theta's dtype)."""
        xp, _ = self._check(theta, X, y, one_hot=False)
        pred = _argmax_last(xp, self._logits(xp, theta, X))
        hit = xp.astype(pred == xp.astype(y, pred.dtype), theta.dtype)
        return xp.mean(hit, axis=-1)

    def init(self, seed: int = 0):  # pragma: no cover - abstract
        """A float64 NumPy start vector of length ``dim`` (the same on every machine)."""
        raise NotImplementedError

    def zeros(self):
        """The all-zero float64 NumPy start vector."""
        from ._host import zeros

        return zeros(self.dim)

    def hvp(self, theta: Any, v: Any, X: Any = None, y: Any = None, *, method: str = "auto") -> Any:
        """The Hessian-vector product ``∇²L(θ) v`` ``(..., dim)`` (theta's dtype), one v per theta row.

        ``method="auto"`` (the default) gives the exact product where the problem has one -- every
        built-in problem does: softmax regression, the MLP, the CNN and the transformer
        differentiate their forward and backward passes along v (Pearlmutter's R-operator), the
        quadratic clients multiply by A_i -- and the central difference below otherwise (a
        subclass without a closed form). ``method="difference"`` forces the central difference of
        float64 gradients along v::

            Hv ≈ (∇L(θ + h v) − ∇L(θ − h v)) / (2h),   h = 2⁻¹⁷ · max(1, ‖θ‖_∞) / ‖v‖_∞

        computed in float64 whatever theta's dtype (then rounded to it). Its error, coordinate by
        coordinate, is at most

            (h² / 6) · max_{|s| ≤ h} |∂³ₛ ∇ᵢL(θ + s v)|   (truncation: the Taylor remainder)
          + (δᵢ + u Σⱼ |Hᵢⱼ| |θⱼ|) / h                    (rounding)

        where δᵢ bounds the float64 rounding error of ∇ᵢL and u = 2⁻⁵³ (θ ± h v are rounded
        to float64). With θ and v scaled to O(1), the first term is ~h²/6 ≈ 1e-11 times the third
        derivative and the second ~u/h ≈ 1.5e-11 times the gradient's and Hessian's scales: the
        step 2⁻¹⁷ ≈ ∛(2⁻⁵²) is the one that balances the two, so the result carries about
        ten significant digits (the tests check 1e-6 relative against torch's double
        backward). A point where the loss is not twice differentiable (a ReLU kink, a
        max-pooling tie) within h of θ gives a one-sided difference instead.
        """
        method = check_choice(self.name, "method", method, ("auto", "difference"))
        xp, _ = self._check(theta, X, y)
        if not _array.is_array(v):
            raise TypeError(f"{self.name}: v must be an array of the shape of theta; got {type(v).__name__}")
        xp = _array.namespace(theta, v, what=f"{self.name}: theta and v")
        if v.dtype != theta.dtype:
            raise InputTypeError(f"{self.name}: v must have theta's dtype {_array.dtype_name(theta.dtype)}; got "
                                 f"{_array.dtype_name(v.dtype)}")
        if tuple(v.shape) != tuple(theta.shape):
            raise ValueError(f"{self.name}: v must have the shape of theta {tuple(theta.shape)}; got {tuple(v.shape)}")
        if _array.device(v) != _array.device(theta):
            raise ValueError(f"{self.name}: v and theta must be on the same device; got {_array.device(v)} and "
                             f"{_array.device(theta)}")
        if method == "difference":
            return self._hvp_difference(xp, theta, v, X, y)
        return self._hvp(xp, theta, v, X, y)

    def _hvp(self, xp, theta, v, X, y):
        return self._hvp_difference(xp, theta, v, X, y)

    def _hvp_difference(self, xp, theta, v, X, y):
        f64 = xp.float64
        t, w = xp.astype(theta, f64), xp.astype(v, f64)
        if X is not None and _array.is_real_floating(xp, X.dtype):
            X = xp.astype(X, f64)
        tn = xp.max(xp.abs(t), axis=-1, keepdims=True)
        vn = xp.max(xp.abs(w), axis=-1, keepdims=True)
        zero = vn == 0.0
        h = FD_STEP * xp.where(tn > 1.0, tn, xp.ones_like(tn)) / xp.where(zero, xp.ones_like(vn), vn)
        if self.needs_data:
            gp, gm = self.grad(t + h * w, X, y), self.grad(t - h * w, X, y)
        else:
            gp, gm = self.grad(t + h * w), self.grad(t - h * w)
        hv = xp.where(zero, xp.zeros_like(gp), (gp - gm) / (2.0 * h))
        return xp.astype(hv, theta.dtype)

    def on_batch(self, X: Any = None, y: Any = None) -> "BatchLoss":
        """The loss on one fixed batch as a function of θ alone: an object with ``name``, ``dim``,
        ``value(θ)``, ``grad(θ)`` and ``hvp(θ, v)`` -- what :mod:`refopt.diagnostics` and
        :func:`refopt.run` take. X and y must live where θ will (same namespace and device)."""
        return BatchLoss(self, X, y)

    def example_batch(self, size: int, seed: int = 0, *, like: Any = None):
        """A valid ``(X, y)`` of ``size`` examples (for tests, docs and smoke checks).

        The default: X standard normal ``(size, features)`` float64, y uniform labels ``(size,)``
        int64, both from ``numpy.random.default_rng(seed)`` (X first). NumPy arrays, or arrays next
        to ``like`` (its namespace and device; X in its dtype) when it is given.
        """
        from ._host import gaussian_batch

        size = check_int(self.name, "size", size, 1)
        seed = check_int(self.name, "seed", seed, 0)
        X, y = gaussian_batch(seed, size, self.features, self.num_classes)
        return self._convert(X, y, like)

    def _convert(self, X, y, like, *, integer_x: bool = False):
        if like is None:
            return X, y
        if not _array.is_array(like):
            raise TypeError(f"{self.name}: like must be an array; got {type(like).__name__}")
        xp = _array.namespace(like)
        Xc = _array.from_host(X, like, dtype=xp.int64 if integer_x else None)
        return Xc, _array.from_host(y, like, dtype=xp.int64)

    # -- to implement ----------------------------------------------------------------------

    def _loss_grad(self, xp, theta, X, Y):  # pragma: no cover - abstract
        raise NotImplementedError

    def _logits(self, xp, theta, X):  # pragma: no cover - abstract
        raise NotImplementedError(f"{self.name} is not a classifier: it has no logits or accuracy")

    # -- checks ----------------------------------------------------------------------------

    def _check(self, theta, X, y, *, need_y: bool = True, one_hot: bool = True):
        """Validate theta, X and y; return (namespace, one-hot labels or None)."""
        fn = self.name
        if not _array.is_array(theta):
            raise TypeError(
                f"{fn}: theta must be an array of shape (..., {self.dim}) with a real floating dtype; "
                f"got {type(theta).__name__}"
            )
        xp = _array.namespace(theta, what=f"{fn}: theta")
        if not _array.is_real_floating(xp, theta.dtype):
            raise InputTypeError(
                f"{fn}: theta must have a real floating dtype (float32 or float64); got "
                f"{_array.dtype_name(theta.dtype)}"
            )
        if theta.ndim == 0 or theta.shape[-1] != self.dim:
            raise ValueError(
                f"{fn}: theta must have shape (..., {self.dim}) (the flat parameter vector has "
                f"{self.dim} entries); got shape {tuple(theta.shape)}"
            )
        if not self.needs_data:
            if X is not None or y is not None:
                raise TypeError(f"{fn}: this problem has no data; call it with theta only (X=None, y=None)")
            return xp, None
        if X is None:
            raise TypeError(f"{fn}: X is required: an array of shape (..., b, {self.features})")
        if not _array.is_array(X):
            raise TypeError(f"{fn}: X must be an array of shape (..., b, {self.features}); got {type(X).__name__}")
        xp = _array.namespace(theta, X, what=f"{fn}: theta and X")
        if X.dtype != theta.dtype:
            raise InputTypeError(
                f"{fn}: X and theta must have the same dtype; got X {_array.dtype_name(X.dtype)} and "
                f"theta {_array.dtype_name(theta.dtype)} (convert X first, e.g. xp.astype(X, theta.dtype))"
            )
        if _array.device(X) != _array.device(theta):
            raise ValueError(
                f"{fn}: X and theta must be on the same device; got {_array.device(X)} and {_array.device(theta)}"
            )
        if X.ndim < 2 or X.shape[-1] != self.features:
            raise ValueError(
                f"{fn}: X must have shape (..., b, {self.features}) ({self.features} features per example); "
                f"got shape {tuple(X.shape)}"
            )
        if X.shape[-2] == 0:
            raise ValueError(f"{fn}: X holds no examples (b = 0); got shape {tuple(X.shape)}")
        lead = _array.broadcast_shapes(tuple(theta.shape[:-1]), tuple(X.shape[:-2]))
        if lead is None:
            raise ValueError(
                f"{fn}: the leading axes of theta {tuple(theta.shape)} and X {tuple(X.shape)} do not broadcast"
            )
        if y is None:
            if need_y:
                raise TypeError(f"{fn}: y is required: integer labels of shape (..., b)")
            return xp, None
        if not _array.is_array(y):
            raise TypeError(f"{fn}: y must be an integer array of shape (..., b); got {type(y).__name__}")
        xp = _array.namespace(theta, X, y, what=f"{fn}: theta, X and y")
        if not xp.isdtype(y.dtype, "integral"):
            raise InputTypeError(f"{fn}: y must hold integer class labels; got dtype {_array.dtype_name(y.dtype)}")
        if _array.device(y) != _array.device(theta):
            raise ValueError(
                f"{fn}: y and theta must be on the same device; got {_array.device(y)} and {_array.device(theta)}"
            )
        if y.ndim < 1 or y.shape[-1] != X.shape[-2]:
            raise ValueError(
                f"{fn}: y must have shape (..., b) with b = {X.shape[-2]} (the examples of X); "
                f"got shape {tuple(y.shape)}"
            )
        if _array.broadcast_shapes(lead, tuple(y.shape[:-1])) is None:
            raise ValueError(
                f"{fn}: the leading axes of y {tuple(y.shape)} do not broadcast with theta "
                f"{tuple(theta.shape)} and X {tuple(X.shape)}"
            )
        low, high = int(xp.min(y)), int(xp.max(y))
        if low < 0 or high >= self.num_classes:
            bad = low if low < 0 else high
            raise ValueError(
                f"{fn}: y must hold class labels in [0, {self.num_classes - 1}]; got the label {bad}"
            )
        if not one_hot:
            return xp, None
        classes = xp.arange(self.num_classes, dtype=y.dtype, device=_array.device(y))
        return xp, xp.astype(y[..., None] == classes, theta.dtype)

    def __repr__(self) -> str:
        return f"<refopt problem {self.name!r}, dim={self.dim}>"


class BatchLoss:
    """``θ ↦ L(θ; X, y)`` on a fixed batch (see :meth:`Problem.on_batch`)."""

    def __init__(self, problem: Problem, X: Any, y: Any):
        self.problem, self.X, self.y = problem, X, y
        self.name = f"{problem.name} on a batch"
        self.dim = problem.dim

    def _args(self):
        return () if not self.problem.needs_data else (self.X, self.y)

    def value(self, theta: Any) -> Any:
        return self.problem.loss(theta, *self._args())

    def grad(self, theta: Any) -> Any:
        return self.problem.grad(theta, *self._args())

    def value_grad(self, theta: Any) -> tuple[Any, Any]:
        return self.problem.loss_grad(theta, *self._args())

    def hvp(self, theta: Any, v: Any) -> Any:
        return self.problem.hvp(theta, v, *self._args())

    def __repr__(self) -> str:
        return f"<refopt batch loss of {self.problem!r}>"


def _argmax_last(xp, z):
    """arg-max over the last axis (the array API returns the first maximum on ties)."""
    return xp.argmax(z, axis=-1)


def cross_entropy(xp, logits, Y):
    """Mean cross-entropy ``(...,)`` and ``(softmax - Y) / b`` ``(..., b, C)`` for one-hot ``Y``.

    With ``z = logits - max_c logits`` (for stability) and ``lse = log Σ_c exp z_c``:
    ``CE = lse - Σ_c Y_c z_c`` per example, ``∂CE/∂logits = softmax(z) - Y``.
    """
    z = logits - xp.max(logits, axis=-1, keepdims=True)
    e = xp.exp(z)
    s = xp.sum(e, axis=-1, keepdims=True)
    lse = xp.log(s)
    per_example = xp.sum(Y * (lse - z), axis=-1)
    b = logits.shape[-2]
    loss = xp.mean(per_example, axis=-1)
    G = (e / s - Y) / float(b)
    return loss, G
