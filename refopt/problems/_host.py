"""Host-side start vectors for the problems (this module imports NumPy on purpose).

Start vectors are float64 NumPy arrays drawn from ``numpy.random.default_rng(seed)``, so that
every backend starts from the same numbers; the caller converts them once with
``xp.asarray(v, dtype=..., device=...)``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["linear_layers_init", "zeros"]


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
