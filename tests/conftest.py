"""Shared fixtures: array backends, a fixed hypothesis profile, and the notes' golden problem.

Backends (fixture ``backend``):
  numpy            plain NumPy arrays
  numpy_readonly   NumPy arrays marked read-only: any write into an input raises
  strict           array_api_strict on its default CPU device
  strict_device2   array_api_strict on "device2", whose default float dtype is float32
  torch            torch tensors on the CPU (when torch is installed)
  cupy             CuPy arrays (only when a GPU answers)
Inputs are always built with NumPy and converted, so only the code under test runs on
the backend; ``backend.to_numpy`` brings results back for comparison.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import refopt._tree as tree

# Deterministic in CI: a fixed profile, no database, no deadline (2-core machines).
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=40,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@dataclass
class Backend:
    name: str
    xp: Any
    _asarray: Callable[[np.ndarray], Any]
    _to_numpy: Callable[[Any], np.ndarray]
    readonly: bool = False

    def asarray(self, a, dtype=None):
        a = np.asarray(a, dtype=dtype if dtype is not None else np.asarray(a).dtype)
        return self._asarray(a)

    def tree(self, t, dtype=None):
        """A NumPy tree converted leaf by leaf."""
        return tree.tree_map(lambda a: self.asarray(a, dtype), t)

    def freeze(self, t):
        """Mark every array of a tree (or a State's slots) read-only on the read-only backend."""
        if self.readonly:
            for leaf in tree.flatten(t, "tree")[0]:
                leaf.flags.writeable = False
        return t

    def to_numpy(self, x):
        return self._to_numpy(x)

    def tree_to_numpy(self, t):
        return tree.tree_map(self._to_numpy, t)

    def __repr__(self):
        return self.name


def _numpy_backends():
    import array_api_compat.numpy as npx

    def readonly(a):
        a = np.array(a, copy=True)
        a.flags.writeable = False
        return a

    yield Backend("numpy", npx, lambda a: np.array(a, copy=True), np.asarray)
    yield Backend("numpy_readonly", npx, readonly, np.asarray, readonly=True)


def _strict_backends():
    try:
        import array_api_strict as xs
    except ImportError:
        return
    def to_np(x):
        if x.device != xs.Device("CPU_DEVICE"):
            x = xs.asarray(x, device=xs.Device("CPU_DEVICE"), copy=True)
        return np.array(np.from_dlpack(x), copy=True)

    yield Backend("strict", xs, lambda a: xs.asarray(a), to_np)
    dev2 = xs.Device("device2")
    yield Backend("strict_device2", xs, lambda a: xs.asarray(a, device=dev2), to_np)


def _torch_backend():
    try:
        torch = importlib.import_module("torch")
        import array_api_compat.torch as tx
    except ImportError:
        return
    yield Backend("torch", tx, lambda a: torch.asarray(np.array(a, copy=True)), lambda x: x.detach().cpu().numpy().copy())


def _cupy_backend():
    try:
        cupy = importlib.import_module("cupy")
        if cupy.cuda.runtime.getDeviceCount() == 0:
            return
        import array_api_compat.cupy as cx
    except Exception:
        return
    yield Backend("cupy", cx, lambda a: cupy.asarray(a), lambda x: cupy.asnumpy(x))


BACKENDS = [*_numpy_backends(), *_strict_backends(), *_torch_backend(), *_cupy_backend()]
BACKEND_NAMES = [b.name for b in BACKENDS]


@pytest.fixture(params=BACKENDS, ids=BACKEND_NAMES)
def backend(request) -> Backend:
    return request.param


@pytest.fixture
def numpy_backend() -> Backend:
    return BACKENDS[0]


# The notes' golden problem (update-rules.md §5): f(θ) = Σ A θ²/2 + B θ + θ⁴/4.
GOLDEN_A = np.array([3.0, 0.5, 10.0])
GOLDEN_B = np.array([0.5, -1.0, 0.2])
GOLDEN_THETA0 = np.array([1.0, -2.0, 0.5])


def golden_grad(theta: np.ndarray) -> np.ndarray:
    return GOLDEN_A * theta + GOLDEN_B + theta**3


def golden_run(rule, steps: int, backend: Backend | None = None, dtype=np.float64) -> np.ndarray:
    """θ after ``steps`` steps of ``rule`` on the golden problem (gradient evaluated in NumPy)."""
    theta = GOLDEN_THETA0.astype(dtype)
    to = (lambda a: backend.asarray(a, dtype)) if backend else (lambda a: np.array(a, dtype=dtype))
    back = backend.to_numpy if backend else np.asarray
    p = to(theta)
    state = rule.init(p)
    for _ in range(steps):
        g = to(golden_grad(back(p).astype(np.float64)).astype(dtype))
        p, state = rule.step(p, g, state)
    return back(p)
