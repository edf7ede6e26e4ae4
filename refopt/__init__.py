"""refopt: reference implementations of optimizer update rules and aggregation schemes.

Every algorithm is a pure function written against the Python array API standard, so one
code base runs on NumPy, CuPy, array-api-strict, PyTorch and JAX arrays.
"""

from . import (
    aggregators,
    attacks,
    collaborative,
    diagnostics,
    fast,
    federated,
    functions,
    mpi,
    preaggregators,
    presets,
    problems,
    rules,
    transforms,
)
from .run import RunResult, run

__version__ = "0.1.0"

__all__ = [
    "aggregators", "attacks", "collaborative", "diagnostics", "fast", "federated", "functions", "mpi", "preaggregators", "presets",
    "problems", "rules", "run", "RunResult", "transforms", "__version__",
]
