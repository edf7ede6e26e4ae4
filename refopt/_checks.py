"""Validation of scalar parameters shared by refopt.functions and refopt.problems.

Each check returns the value as a Python number (never a NumPy scalar) or raises a TypeError or
ValueError that names the owner, the parameter, the value and what is allowed.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

__all__ = ["check_int", "check_real", "check_choice"]


def check_int(fn: str, name: str, value: Any, low: int, high: int | None = None) -> int:
    """A Python int parameter in [low, high]; TypeError/ValueError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{fn}: {name} must be an integer >= {low}; got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        allowed = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
        raise ValueError(f"{fn}: {name} must be {allowed}; got {value!r}")
    return value


def check_real(fn: str, name: str, value: Any, low: float = -math.inf, low_open: bool = False) -> float:
    """A finite Python float parameter > low (or >= low); TypeError/ValueError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a real number; got {value!r}")
    x = float(value)
    ok = math.isfinite(x) and (x > low if low_open else x >= low)
    if not ok:
        bound = "" if low == -math.inf else (f" > {low:g}" if low_open else f" >= {low:g}")
        raise ValueError(f"{fn}: {name} must be a finite real number{bound}; got {value!r}")
    return x


def check_choice(fn: str, name: str, value: Any, choices: Sequence[str]) -> str:
    from .rules._base import suggest

    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{fn}: {name}: " + suggest(str(value), list(choices), "value"))
    return value
