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

__all__ = ["Problem", "check_int", "check_real", "check_choice"]


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
            raise TypeError(
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
            raise TypeError(
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
            raise TypeError(f"{fn}: y must hold integer class labels; got dtype {_array.dtype_name(y.dtype)}")
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
