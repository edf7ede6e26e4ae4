r"""Classifiers with exact gradients: softmax (multinomial logistic) regression and a one-hidden-layer MLP.

Both are written in the array API and evaluate many parameter vectors at once (see
:mod:`refopt.problems._base` for the shapes). Loss = mean cross-entropy over the batch plus
an optional penalty on the whole parameter vector (biases included, as ``torch.optim``'s
``weight_decay`` does):

    penalty="squared" (default):  + (l2 / 2) ‖θ‖²     gradient + l2 θ   (= weight decay l2)
    penalty="norm":               + l2 ‖θ‖            gradient + l2 θ / ‖θ‖  (0 at θ = 0)

``"norm"`` is what MoNNA's code adds ("NLL + 1e-4·‖θ‖": in LPD-EPFL/robust-collaborative-learning,
``experiments/loss.py``'s ``l2`` is the plain Euclidean norm, not its square).

Flat parameter layout (the order of ``torch.nn.utils.parameters_to_vector`` for the torch
model named below, so a flat vector moves between refopt and torch unchanged):

softmax_regression(F, C)         = ``nn.Linear(F, C)``
    θ = [ W (C, F) row-major | b (C) ],       dim = C·F + C
    logits = X Wᵀ + b

mlp(F, H, C, activation)         = ``nn.Sequential(nn.Linear(F, H), act, nn.Linear(H, C))``
    θ = [ W1 (H, F) | b1 (H) | W2 (C, H) | b2 (C) ],   dim = H·F + H + C·H + C
    a = X W1ᵀ + b1,  h = act(a),  logits = h W2ᵀ + b2
    act = tanh (act' = 1 - h²) or relu (act'(a) = 1 if a > 0 else 0, as torch: 0 at a = 0)

Backward pass (G = (softmax(logits) - onehot(y)) / b, the gradient of the mean cross-entropy
with respect to the logits):  ∂W2 = Gᵀ h, ∂b2 = Σ_b G, ∂h = G W2, ∂a = ∂h ⊙ act'(a),
∂W1 = ∂aᵀ X, ∂b1 = Σ_b ∂a; for softmax regression ∂W = Gᵀ X, ∂b = Σ_b G.

``init(seed)`` draws torch.nn.Linear's default distribution (U(±1/sqrt(fan_in)) for weights
and biases) from NumPy's ``default_rng(seed)``; ``zeros()`` is the all-zero vector (a fine
start for the convex softmax regression, not for the MLP whose hidden units would stay equal).
"""

from __future__ import annotations

from .. import _array
from ._base import Problem, check_choice, check_int, check_real, cross_entropy

__all__ = ["SoftmaxRegression", "MLP", "softmax_regression", "mlp"]

PENALTIES = ("squared", "norm")
ACTIVATIONS = ("tanh", "relu")


def _flat(xp, a, lead, n):
    return xp.reshape(a, (*lead, n))


def _penalty(xp, theta, l2: float, form: str):
    """(penalty (...,), its gradient (..., dim)) for the whole parameter vector."""
    if form == "squared":
        return (l2 / 2.0) * xp.sum(theta * theta, axis=-1), l2 * theta
    norm = xp.sqrt(xp.sum(theta * theta, axis=-1))
    safe = xp.where(norm > 0.0, norm, xp.ones_like(norm))
    grad = xp.where(norm[..., None] > 0.0, theta / safe[..., None], xp.zeros_like(theta))
    return l2 * norm, l2 * grad


def _softmax(xp, z):
    e = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def _softmax_jvp(xp, pr, dz, b: int):
    """The cross-entropy gradient's derivative along ż: p ⊙ (ż − Σ p ż) / b."""
    return pr * (dz - xp.sum(pr * dz, axis=-1, keepdims=True)) * (1.0 / b)


class _Classifier(Problem):
    def _setup(self, l2, penalty):
        self.l2 = check_real(self.name, "l2", l2, 0.0)
        self.penalty = check_choice(self.name, "penalty", penalty, PENALTIES)

    def _add_penalty(self, xp, theta, loss, grad):
        if self.l2 == 0.0:
            return loss, grad
        p, pg = _penalty(xp, theta, self.l2, self.penalty)
        return loss + p, grad + pg


    def _penalty_hvp(self, xp, theta, v):
        """The penalty's Hessian times v: l2 v ("squared"); l2 (v/‖θ‖ − θ (θ·v)/‖θ‖³) ("norm", 0 at θ = 0)."""
        if self.l2 == 0.0:
            return 0.0
        if self.penalty == "squared":
            return self.l2 * v
        norm = xp.sqrt(xp.sum(theta * theta, axis=-1, keepdims=True))
        safe = xp.where(norm > 0.0, norm, xp.ones_like(norm))
        tv = xp.sum(theta * v, axis=-1, keepdims=True)
        h = v / safe - theta * (tv / (safe * safe * safe))
        return self.l2 * xp.where(norm > 0.0, h, xp.zeros_like(h))


class SoftmaxRegression(_Classifier):
    """Multinomial logistic regression with a bias: ``logits = X Wᵀ + b`` (layout in the module docstring)."""

    def __init__(self, features: int, classes: int, l2: float = 0.0, *, penalty: str = "squared"):
        self.name = "softmax_regression"
        self.features = check_int(self.name, "features", features, 1)
        self.num_classes = check_int(self.name, "classes", classes, 2)
        self._setup(l2, penalty)
        self.dim = self.num_classes * self.features + self.num_classes

    def unflatten(self, theta):
        """``(W (..., C, F), b (..., C))`` views of a flat parameter array."""
        C, F = self.num_classes, self.features
        lead = tuple(theta.shape[:-1])
        xp = _array.namespace(theta)
        W = xp.reshape(theta[..., : C * F], (*lead, C, F))
        return W, theta[..., C * F :]

    def _logits(self, xp, theta, X):
        W, b = self.unflatten(theta)
        return X @ xp.matrix_transpose(W) + b[..., None, :]

    def _loss_grad(self, xp, theta, X, Y):
        logits = self._logits(xp, theta, X)
        loss, G = cross_entropy(xp, logits, Y)
        lead = tuple(G.shape[:-2])
        C, F = self.num_classes, self.features
        dW = xp.matrix_transpose(G) @ X                    # (..., C, F)
        db = xp.sum(G, axis=-2)                            # (..., C)
        grad = xp.concat([_flat(xp, dW, lead, C * F), db], axis=-1)
        return self._add_penalty(xp, theta, loss, grad)

    def _hvp(self, xp, theta, v, X, y):
        """Exact: with p = softmax(z), z = X Wᵀ + b and the direction's ż = X V_Wᵀ + v_b, the
        logits' Hessian (diag p − p pᵀ)/b applied to ż is ṗ/b, ṗ = p ⊙ (ż − Σ p ż); then
        H v = [ (ṗ/b)ᵀ X | Σ ṗ/b ] plus the penalty's Hessian applied to v."""
        W, b = self.unflatten(theta)
        VW, vb = self.unflatten(v)
        pr = _softmax(xp, self._logits(xp, theta, X))
        dz = X @ xp.matrix_transpose(VW) + vb[..., None, :]
        R = _softmax_jvp(xp, pr, dz, X.shape[-2])
        lead = tuple(R.shape[:-2])
        C, F = self.num_classes, self.features
        hv = xp.concat([_flat(xp, xp.matrix_transpose(R) @ X, lead, C * F), xp.sum(R, axis=-2)], axis=-1)
        return hv + self._penalty_hvp(xp, theta, v)

    def init(self, seed: int = 0):
        from ._host import linear_layers_init

        return linear_layers_init(check_int(self.name, "seed", seed, 0), [(self.features, self.num_classes)])

    def __repr__(self):
        return (f"<refopt problem softmax_regression features={self.features} classes={self.num_classes} "
                f"l2={self.l2:g} ({self.penalty}), dim={self.dim}>")


class MLP(_Classifier):
    """One hidden layer: ``logits = act(X W1ᵀ + b1) W2ᵀ + b2`` (layout in the module docstring)."""

    def __init__(self, features: int, hidden: int, classes: int, l2: float = 0.0, *,
                 activation: str = "tanh", penalty: str = "squared"):
        self.name = "mlp"
        self.features = check_int(self.name, "features", features, 1)
        self.hidden = check_int(self.name, "hidden", hidden, 1)
        self.num_classes = check_int(self.name, "classes", classes, 2)
        self.activation = check_choice(self.name, "activation", activation, ACTIVATIONS)
        self._setup(l2, penalty)
        F, H, C = self.features, self.hidden, self.num_classes
        self._sizes = (H * F, H, C * H, C)
        self.dim = sum(self._sizes)

    def unflatten(self, theta):
        """``(W1 (..., H, F), b1 (..., H), W2 (..., C, H), b2 (..., C))`` of a flat parameter array."""
        xp = _array.namespace(theta)
        F, H, C = self.features, self.hidden, self.num_classes
        lead = tuple(theta.shape[:-1])
        o1 = H * F
        o2 = o1 + H
        o3 = o2 + C * H
        W1 = xp.reshape(theta[..., :o1], (*lead, H, F))
        b1 = theta[..., o1:o2]
        W2 = xp.reshape(theta[..., o2:o3], (*lead, C, H))
        b2 = theta[..., o3:]
        return W1, b1, W2, b2

    def _forward(self, xp, theta, X):
        W1, b1, W2, b2 = self.unflatten(theta)
        a = X @ xp.matrix_transpose(W1) + b1[..., None, :]
        h = xp.tanh(a) if self.activation == "tanh" else xp.where(a > 0.0, a, xp.zeros_like(a))
        logits = h @ xp.matrix_transpose(W2) + b2[..., None, :]
        return a, h, W2, logits

    def _logits(self, xp, theta, X):
        return self._forward(xp, theta, X)[3]

    def _loss_grad(self, xp, theta, X, Y):
        a, h, W2, logits = self._forward(xp, theta, X)
        loss, G = cross_entropy(xp, logits, Y)            # G: (..., b, C)
        lead = tuple(G.shape[:-2])
        F, H, C = self.features, self.hidden, self.num_classes
        dW2 = xp.matrix_transpose(G) @ h                   # (..., C, H)
        db2 = xp.sum(G, axis=-2)
        dh = G @ W2                                        # (..., b, H)
        if self.activation == "tanh":
            da = dh * (1.0 - h * h)
        else:
            da = xp.where(a > 0.0, dh, xp.zeros_like(dh))
        dW1 = xp.matrix_transpose(da) @ X                  # (..., H, F)
        db1 = xp.sum(da, axis=-2)
        grad = xp.concat([_flat(xp, dW1, lead, H * F), db1, _flat(xp, dW2, lead, C * H), db2], axis=-1)
        return self._add_penalty(xp, theta, loss, grad)

    def _hvp(self, xp, theta, v, X, y):
        """Exact (Pearlmutter's R-operator: the directional derivative along v of every forward and
        backward quantity). With Ṙ the derivative along v, V1 vb1 V2 vb2 the blocks of v::

            ȧ = X V1ᵀ + vb1,  ḣ = act'(a) ȧ,  ż = ḣ W2ᵀ + h V2ᵀ + vb2,  Ġ = p ⊙ (ż − Σ p ż) / b
            H v = [ ȧ'ᵀ X | Σ ȧ' | Ġᵀ h + Gᵀ ḣ | Σ Ġ ],   ȧ' = (Ġ W2 + G V2) ⊙ act'(a) + (G W2) ⊙ act''(a) ȧ

        with tanh: act' = 1 − h², act'' = −2 h (1 − h²); relu: act' = [a > 0], act'' = 0."""
        _, Y = self._check(theta, X, y)
        a, h, W2, logits = self._forward(xp, theta, X)
        V1, vb1, V2, vb2 = self.unflatten(v)
        _, G = cross_entropy(xp, logits, Y)
        pr = _softmax(xp, logits)
        if self.activation == "tanh":
            d1 = 1.0 - h * h
        else:
            d1 = xp.astype(a > 0.0, h.dtype)
        Ra = X @ xp.matrix_transpose(V1) + vb1[..., None, :]
        Rh = d1 * Ra
        Rz = Rh @ xp.matrix_transpose(W2) + h @ xp.matrix_transpose(V2) + vb2[..., None, :]
        RG = _softmax_jvp(xp, pr, Rz, X.shape[-2])
        dh = G @ W2
        Rda = (RG @ W2 + G @ V2) * d1
        if self.activation == "tanh":
            Rda = Rda + dh * (-2.0 * h * d1) * Ra
        lead = tuple(RG.shape[:-2])
        F, H, C = self.features, self.hidden, self.num_classes
        hv = xp.concat([_flat(xp, xp.matrix_transpose(Rda) @ X, lead, H * F), xp.sum(Rda, axis=-2),
                        _flat(xp, xp.matrix_transpose(RG) @ h + xp.matrix_transpose(G) @ Rh, lead, C * H),
                        xp.sum(RG, axis=-2)], axis=-1)
        return hv + self._penalty_hvp(xp, theta, v)

    def init(self, seed: int = 0):
        from ._host import linear_layers_init

        seed = check_int(self.name, "seed", seed, 0)
        return linear_layers_init(seed, [(self.features, self.hidden), (self.hidden, self.num_classes)])

    def __repr__(self):
        return (f"<refopt problem mlp features={self.features} hidden={self.hidden} classes={self.num_classes} "
                f"{self.activation} l2={self.l2:g} ({self.penalty}), dim={self.dim}>")


def softmax_regression(features: int, classes: int, l2: float = 0.0, *, penalty: str = "squared") -> SoftmaxRegression:
    """Multinomial logistic regression with a bias (see :class:`SoftmaxRegression`)."""
    return SoftmaxRegression(features, classes, l2, penalty=penalty)


def mlp(features: int, hidden: int, classes: int, l2: float = 0.0, *, activation: str = "tanh",
        penalty: str = "squared") -> MLP:
    """A one-hidden-layer perceptron (see :class:`MLP`)."""
    return MLP(features, hidden, classes, l2, activation=activation, penalty=penalty)
