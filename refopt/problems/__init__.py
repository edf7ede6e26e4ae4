"""Small learning problems with exact gradients, and the data to train them on.

Models (array API, many parameter vectors at once; shapes in :mod:`refopt.problems._base`)::

    p = refopt.problems.softmax_regression(64, 10, l2=1e-4)     # or mlp(64, 32, 10, activation="relu")
    theta0 = p.init(seed)                  # float64 NumPy (p.dim,), the same on every machine
    loss, grad = p.loss_grad(theta, X, y)  # theta (nodes, dim), X (nodes, b, 64), y (nodes, b)
    acc = p.accuracy(theta, X_test, y_test)

    t = refopt.problems.get("transformer")     # 1 layer, width 32, 2 heads, context 64: 20 991 parameters
    X, y = t.example_batch(16, seed=0)         # token windows of the seeded character corpus (char_corpus)
    c = refopt.problems.get("cnn")             # 2 conv + ReLU + max-pool layers and a dense head: 1 898
    Hv = p.hvp(theta, v, X, y)                 # Hessian-vector product (exact or float64 central difference)
    res = refopt.problems.train(t, refopt.rules.adam(lr=1e-2), steps=100, batch_size=16, seed=0)
    res.losses, res.diverged_at                # per-step mini-batch losses; first non-finite step or None

    q = refopt.problems.quadratic_clients(range(10))            # θ_i* = i, A_i = 1: a known federated optimum
    q.loss_grad(theta)                     # theta (..., M, d) -> loss (..., M), grad (..., M, d)
    q.optimum(weights)                     # argmin Σ p_i L_i, closed form (4.5 here)

Data (host side, NumPy)::

    X_tr, y_tr, X_te, y_te = refopt.problems.load_dataset("digits")   # bundled, no download
    X_tr, y_tr, X_te, y_te = refopt.problems.gaussian_mixture(2000, 20, 10, seed=0)
    parts = refopt.problems.dirichlet_split(y_tr, nodes=21, alpha=1.0, seed=0)   # MoNNA's procedure

``names()`` / ``get(name, **params)`` build the models by name.
"""

from __future__ import annotations

from ..rules._base import suggest
from ._base import BatchLoss, InputTypeError, Problem
from ._cnn import CNN, cnn
from ._corpus import ALPHABET, SplitMix64, char_corpus, decode, encode
from ._data import DATASETS, dataset_info, dataset_names, digits_images, gaussian_mixture, load_dataset
from ._models import MLP, SoftmaxRegression, mlp, softmax_regression
from ._quadratic import QuadraticClients, quadratic_clients, random_quadratic_clients
from ._split import SPLIT_METHODS, class_proportions, dirichlet_split
from ._train import TrainResult, train
from ._transformer import Transformer, transformer

__all__ = [
    "Problem",
    "BatchLoss",
    "SoftmaxRegression",
    "MLP",
    "QuadraticClients",
    "CNN",
    "Transformer",
    "InputTypeError",
    "cnn",
    "transformer",
    "char_corpus",
    "decode",
    "encode",
    "ALPHABET",
    "SplitMix64",
    "softmax_regression",
    "mlp",
    "quadratic_clients",
    "random_quadratic_clients",
    "gaussian_mixture",
    "load_dataset",
    "dataset_names",
    "dataset_info",
    "digits_images",
    "DATASETS",
    "dirichlet_split",
    "class_proportions",
    "SPLIT_METHODS",
    "names",
    "get",
    "train",
    "TrainResult",
]

_BUILDERS = {
    "softmax_regression": softmax_regression,
    "mlp": mlp,
    "cnn": cnn,
    "transformer": transformer,
    "quadratic_clients": quadratic_clients,
    "random_quadratic_clients": random_quadratic_clients,
}


def names() -> list[str]:
    """Names of the problem builders."""
    return list(_BUILDERS)


def get(name: str, **params) -> Problem:
    """Build a problem by name, e.g. ``get("mlp", features=64, hidden=32, classes=10)``, ``get("transformer")``."""
    if not isinstance(name, str) or name not in _BUILDERS:
        raise ValueError(suggest(str(name), list(_BUILDERS), "problem"))
    return _BUILDERS[name](**params)
