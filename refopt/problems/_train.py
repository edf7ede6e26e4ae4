"""Train any problem with any refopt rule on mini-batches from a seeded stream.

::

    res = refopt.problems.train(refopt.problems.get("transformer"), refopt.rules.adam(lr=1e-2),
                                steps=200, batch_size=16, seed=0)
    res.losses          # float64 NumPy (steps_run, ...): the mini-batch loss before each step
    res.diverged_at     # None, or the first step whose loss is not finite (the run stops there)
    res.theta           # the parameters after the last step taken

The stream: step k trains on ``problem.example_batch(batch_size, seed=(seed << 32) + k)`` --
or, when ``data=(X, y)`` (host arrays) is given, on ``batch_size`` rows drawn without
replacement by ``numpy.random.default_rng(seed)``, one draw per step. ``theta0`` defaults to
``problem.init(seed)`` as float64 NumPy; pass an array of any library (and dtype) to train on
that backend: batches are moved next to it. Problems without data (quadratic clients) take no
batches. A loss with leading axes (many parameter vectors, e.g. ``theta0 (nodes, dim)``) is
recorded whole; the run diverges at the first step where any entry is not finite. With
``theta0 (K, dim)`` and a rule whose hyper-parameters have shape ``(K, 1)`` (e.g.
``adam(lr=np.array([[1e-3], [1e-2]]))``), K configurations train in one array program on the same
batches, equal to K separate runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import _array
from ..rules._base import Rule
from ._base import Problem, check_int

__all__ = ["TrainResult", "train"]


@dataclass
class TrainResult:
    """What :func:`train` returns (see the module docstring)."""

    theta: Any
    losses: Any
    diverged_at: int | None
    steps_run: int

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None


def train(problem: Problem, rule: Any, steps: int, batch_size: int = 16, seed: int = 0, *,
          theta0: Any = None, data: tuple | None = None, progress: Any = None,
          fast: bool | str | None = None) -> TrainResult:
    """Run ``steps`` steps of ``rule`` on ``problem`` (module docstring); stop at the first non-finite loss.

    ``progress``: called as ``progress(k, steps)`` after step k (a progress-bar hook).
    ``fast``: how the updates are evaluated, the same bits either way (see ``refopt.run``): None
    (default) takes :mod:`refopt.fast` when the rule has a fast path, ``theta`` is NumPy or CuPy
    and has at least ``refopt.fast.AUTO_MIN_ELEMENTS`` elements; True or an engine name forces
    it, False forces ``rule.step``.  The fast path steps a copy of ``theta0`` and the state in
    place; ``theta0`` itself is never written."""
    from ._host import all_finite, batch_pool, losses_array

    fn = "train"
    if not isinstance(problem, Problem):
        raise TypeError(f"{fn}: problem must be a refopt.problems.Problem; got {type(problem).__name__}")
    if not (hasattr(rule, "init") and hasattr(rule, "step")):
        raise TypeError(f"{fn}: rule must be a refopt rule (with init and step); got {type(rule).__name__}")
    steps = check_int(fn, "steps", steps, 0)
    batch_size = check_int(fn, "batch_size", batch_size, 1)
    seed = check_int(fn, "seed", seed, 0)
    theta = problem.init(seed) if theta0 is None else theta0
    if not _array.is_array(theta):
        raise TypeError(f"{fn}: theta0 must be an array of shape (..., {problem.dim}); got {type(theta).__name__}")
    if theta.ndim == 0 or theta.shape[-1] != problem.dim:
        raise ValueError(f"{fn}: theta0 must have shape (..., {problem.dim}); got shape {tuple(theta.shape)}")
    if progress is not None and not callable(progress):
        raise TypeError(f"{fn}: progress must be a callable progress(k, steps) or None; got {type(progress).__name__}")
    draw = None
    if data is not None:
        if not problem.needs_data:
            raise ValueError(f"{fn}: {problem.name} takes no data; do not pass data")
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise TypeError(f"{fn}: data must be a pair (X, y) of arrays")
        draw = batch_pool(data[0], data[1], seed)
    state = rule.init(theta)
    fused = None
    if isinstance(rule, Rule):
        from .. import fast as fast_paths

        fused = fast_paths.for_loop(rule, theta, fast, what=f"{fn}: fast")
    elif fast not in (None, False):
        raise ValueError(f"{fn}: fast={fast!r} needs a refopt.rules.Rule; got {type(rule).__name__}")
    if fused is not None:
        theta = _array.namespace(theta).asarray(theta, copy=True)  # stepped in place from here on
    losses, diverged_at = [], None
    for k in range(steps):
        if not problem.needs_data:
            loss, g = problem.loss_grad(theta)
        else:
            if draw is None:
                X, y = problem.example_batch(batch_size, (seed << 32) + k, like=theta)
            else:
                X, y, integer_x = draw(batch_size)
                X, y = problem._convert(X, y, theta, integer_x=integer_x)
            loss, g = problem.loss_grad(theta, X, y)
        host = _array.to_numpy(loss)
        losses.append(host)
        if not all_finite(host):
            diverged_at = k
            break
        if fused is not None:
            theta, state = fused.step(theta, g, state, out=(theta, state))
        else:
            theta, state = rule.step(theta, g, state)
        if progress is not None:
            progress(k + 1, steps)
    return TrainResult(theta=theta, losses=losses_array(losses), diverged_at=diverged_at, steps_run=len(losses))
