"""Host-side start vectors for the problems (this module imports NumPy on purpose).

Start vectors are float64 NumPy arrays drawn from ``numpy.random.default_rng(seed)``, so that
every backend starts from the same numbers; the caller converts them once with
``xp.asarray(v, dtype=..., device=...)``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["linear_layers_init", "zeros", "normal_init", "gaussian_batch", "windows", "rows_batch", "batch_pool", "losses_array", "all_finite"]


def zeros(dim: int) -> np.ndarray:
    return np.zeros(dim, dtype=np.float64)


def linear_layers_init(seed: int, layers: list[tuple[int, int]]) -> np.ndarray:
    """``torch.nn.Linear``'s default initialisation of consecutive layers, flattened.

    Layer ``(fan_in, fan_out)`` contributes its weight ``(fan_out, fan_in)`` (row-major) then
    its bias ``(fan_out,)``, every entry drawn from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` --
    the distribution torch uses (Kaiming-uniform with a = sqrt(5) for the weight, the same
    bound for the bias), though not torch's random stream.
    """
    rng = np.random.default_rng(seed)
    pieces = []
    for fan_in, fan_out in layers:
        bound = 1.0 / math.sqrt(fan_in)
        pieces.append(rng.uniform(-bound, bound, size=fan_out * fan_in))
        pieces.append(rng.uniform(-bound, bound, size=fan_out))
    return np.concatenate(pieces).astype(np.float64)


def normal_init(seed: int, layout: list, std: float) -> np.ndarray:
    """GPT-2's initialisation of a flat layout ``[(name, shape, start, stop), ...]``: entries named
    ``tok``/``pos``/``*_w`` drawn N(0, std²) in layout order, ``*_g`` (LayerNorm gains) 1, the rest 0."""
    rng = np.random.default_rng(seed)
    out = np.zeros(layout[-1][3] if layout else 0)
    for name, _shape, a, b in layout:
        leaf = name.split(".")[-1]
        if leaf in ("tok", "pos") or leaf.endswith("_w"):
            out[a:b] = rng.normal(0.0, std, size=b - a)
        elif leaf.endswith("_g"):
            out[a:b] = 1.0
    return out


def gaussian_batch(seed: int, size: int, features: int, classes: int):
    """``X ~ N(0, 1) (size, features)`` then ``y ~ U{0..classes-1} (size,)`` from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((size, features))
    y = rng.integers(0, max(classes, 1), size=size).astype(np.int64)
    return X, y


def windows(tokens: np.ndarray, context: int, size: int, seed: int):
    """``size`` windows of ``context + 1`` consecutive tokens at offsets uniform from ``default_rng(seed)``:
    ``(X (size, context), y (size, context))``, y the tokens one step later."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, tokens.size - context, size=size)
    w = tokens[starts[:, None] + np.arange(context + 1)]
    return np.array(w[:, :-1], dtype=np.int64), np.array(w[:, 1:], dtype=np.int64)


def rows_batch(X: np.ndarray, y: np.ndarray, size: int, seed: int):
    """``size`` rows of ``(X, y)`` drawn without replacement (with, when size > rows) by ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(X.shape[0], size=size, replace=size > X.shape[0])
    return np.array(X[idx], dtype=np.float64), np.array(y[idx], dtype=np.int64)


def batch_pool(X, y, seed: int):
    """A draw ``(batch_size) -> (X_b, y_b, integer_x)`` of rows of the host data ``(X, y)``, without
    replacement within a batch, all draws from one ``default_rng(seed)`` stream."""
    from .. import _array

    X = _array.to_numpy(X) if _array.is_array(X) else np.asarray(X)
    y = _array.to_numpy(y) if _array.is_array(y) else np.asarray(y)
    if X.ndim < 1 or y.ndim < 1 or X.shape[0] != y.shape[0] or X.shape[0] < 1:
        raise ValueError(f"train: data X and y must hold the same number (>= 1) of examples along axis 0; got shapes "
                         f"{X.shape} and {y.shape}")
    rng = np.random.default_rng(seed)
    integer_x = X.dtype.kind in "iu"

    def draw(size: int):
        idx = rng.choice(X.shape[0], size=size, replace=size > X.shape[0])
        Xb = np.array(X[idx], dtype=np.int64 if integer_x else np.float64)
        return Xb, np.array(y[idx], dtype=np.int64), integer_x

    return draw


def losses_array(losses: list) -> np.ndarray:
    """The recorded per-step losses as one float64 array ``(steps, ...)``."""
    if not losses:
        return np.zeros((0,), dtype=np.float64)
    return np.stack([np.asarray(v, dtype=np.float64) for v in losses])


def all_finite(values) -> bool:
    return bool(np.isfinite(values).all())
