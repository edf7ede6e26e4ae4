"""Datasets: the bundled 8×8 digits and seeded Gaussian mixtures (Host-side: this module imports NumPy).

Every loader returns ``(X_train, y_train, X_test, y_test)`` as NumPy arrays: X float64 of
shape ``(n, features)``, y int64 of shape ``(n,)``. Move them to a backend once with
``xp.asarray(X, dtype=..., device=...)``.

``load_dataset("digits")``
    The UCI "Optical Recognition of Handwritten Digits" test set (Alpaydin & Kaynak, 1998) as
    shipped by scikit-learn's ``load_digits``: 1797 images of 8×8 pixels, 10 classes, pixel
    counts 0..16 scaled to [0, 1] by dividing by 16. Bundled in ``refopt/problems/data/
    digits.npz`` (48 KB; source, licence and checksum in ``data/README.md``), so nothing is
    downloaded. The train/test split is fixed and stored in the file: stratified, 20 % of each
    class (rounded) to the test set, drawn once with ``numpy.random.default_rng(0)`` (class by
    class, a permutation of that class's indices, the first round(0.2·count) to test) -- 1438
    training and 359 test images. Examples keep the file's order (ascending original index).

``gaussian_mixture(n, features, classes, seed)``
    Balanced classes (``y = i mod classes`` for i < n, then shuffled), class means
    ``μ_k = separation · u_k`` with u_k uniform on the unit sphere, examples ``μ_y + N(0, noise² I)``;
    the last ``round(test_fraction · n)`` examples are the test set. All draws from
    ``numpy.random.default_rng(seed)`` in the order: means, labels, noise.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

from ._base import check_int, check_real

__all__ = ["DATASETS", "dataset_names", "load_dataset", "gaussian_mixture", "dataset_info"]

DATASETS = {
    "digits": {
        "title": "UCI optical recognition of handwritten digits, 8x8 (scikit-learn's load_digits)",
        "features": 64,
        "num_classes": 10,
        "image_shape": (8, 8),
        "train": 1438,
        "test": 359,
        "source": "https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
        "license": "CC BY 4.0 (UCI Machine Learning Repository)",
        "citation": "E. Alpaydin, C. Kaynak (1998). Optical Recognition of Handwritten Digits. "
                    "UCI Machine Learning Repository. doi:10.24432/C50P49",
    },
    "gaussian_mixture": {
        "title": "seeded isotropic Gaussian mixture (defaults n=2000, features=20, classes=10, seed=0)",
        "features": None,
        "num_classes": None,
    },
}


def dataset_names() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return list(DATASETS)


def dataset_info(name: str) -> dict:
    """A copy of what is known about a dataset (features, classes, source, licence)."""
    _check_name(name)
    return dict(DATASETS[name])


def _check_name(name):
    from ..rules._base import suggest

    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError("load_dataset: " + suggest(str(name), list(DATASETS), "dataset"))


@functools.lru_cache(maxsize=1)
def _digits_raw():
    with resources.files(__package__).joinpath("data", "digits.npz").open("rb") as fh:
        with np.load(fh) as z:
            out = {k: np.array(z[k]) for k in ("pixels", "labels", "train", "test")}
    for v in out.values():
        v.flags.writeable = False
    return out


def load_dataset(name: str, **params):
    """``(X_train, y_train, X_test, y_test)`` NumPy arrays of a named dataset (see the module docstring).

    ``"digits"`` takes no parameters; ``"gaussian_mixture"`` takes those of :func:`gaussian_mixture`
    (defaults n=2000, features=20, classes=10, seed=0).
    """
    _check_name(name)
    if name == "digits":
        if params:
            raise TypeError(f"load_dataset: 'digits' takes no parameters; got {sorted(params)}")
        raw = _digits_raw()
        X = raw["pixels"].astype(np.float64) / 16.0
        y = raw["labels"].astype(np.int64)
        tr, te = raw["train"].astype(np.int64), raw["test"].astype(np.int64)
        return X[tr], y[tr], X[te], y[te]
    kw = {"n": 2000, "features": 20, "classes": 10, "seed": 0}
    unknown = set(params) - {"n", "features", "classes", "seed", "separation", "noise", "test_fraction"}
    if unknown:
        raise TypeError(f"load_dataset: unknown parameters for 'gaussian_mixture': {sorted(unknown)}")
    kw.update(params)
    return gaussian_mixture(**kw)


def gaussian_mixture(n: int, features: int, classes: int, seed: int = 0, *, separation: float = 3.0,
                     noise: float = 1.0, test_fraction: float = 0.2):
    """``(X_train, y_train, X_test, y_test)`` from a seeded isotropic Gaussian mixture.

    ``n`` examples in all (train + test), ``features`` dimensions, ``classes`` balanced classes,
    means at distance ``separation`` from the origin in random directions, noise standard
    deviation ``noise``; the last ``round(test_fraction · n)`` examples are the test set.
    """
    fn = "gaussian_mixture"
    n = check_int(fn, "n", n, 2)
    features = check_int(fn, "features", features, 1)
    classes = check_int(fn, "classes", classes, 2)
    seed = check_int(fn, "seed", seed, 0)
    separation = check_real(fn, "separation", separation, 0.0)
    noise = check_real(fn, "noise", noise, 0.0)
    test_fraction = check_real(fn, "test_fraction", test_fraction, 0.0)
    n_test = int(round(test_fraction * n))
    if not 1 <= n_test <= n - 1:
        raise ValueError(
            f"{fn}: test_fraction must leave at least one training and one test example; got {test_fraction!r} "
            f"with n = {n} (round(test_fraction * n) = {n_test})"
        )
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((classes, features))
    norms = np.linalg.norm(u, axis=1, keepdims=True)
    means = separation * u / np.where(norms > 0, norms, 1.0)
    y = rng.permutation(np.arange(n) % classes).astype(np.int64)
    X = means[y] + noise * rng.standard_normal((n, features))
    cut = n - n_test
    return X[:cut], y[:cut], X[cut:], y[cut:]


def digits_images(X) -> np.ndarray:
    """Reshape digits rows ``(n, 64)`` into images ``(n, 8, 8)`` (row-major, as in the file)."""
    X = np.asarray(X)
    return X.reshape(*X.shape[:-1], 8, 8)

