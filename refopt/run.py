"""Run an update rule on a synthetic function: every iterate, every loss, and a divergence report.

``refopt.run(rule, function, x0, steps)`` is the loop every experiment on a test function
writes by hand, done once::

    g_0 = ∇f(x_0)
    for k = 1 .. steps:
        x_k, state = rule.step(x_{k-1}, g_{k-1}, state)        (rule.trace when trace=True)
        L_k = f(x_k);  g_k = ∇f(x_k)

Many runs at once
    ``x0`` has shape ``(..., dim)``: every index of the leading axes is one run (one start
    point).  Hyper-parameters of the rule may be arrays that broadcast against ``x0`` (a
    learning rate of shape ``(K, 1)`` with ``x0`` of shape ``(K, dim)``): K configurations
    advance in one call, and the result equals K separate runs exactly (the rules are
    written for that; the functions evaluate every point on its own).  Rules that pool a
    statistic over the whole parameter array (the clipped rules' top-fraction threshold)
    must be told which axes index runs: ``batch_axes = x0.ndim - 1``; ``run`` checks it.

Divergence
    After every step each run is checked: its iterate, its loss and its gradient must be
    finite, and its loss must stay below ``L_0 + blowup · (1 + |L_0|)`` (``L_0`` that run's
    starting loss; ``blowup=None`` checks finiteness only).  The first step k at which a
    run fails is recorded with the reason and the offending loss, and the run is frozen:
    rows ``k, k+1, ...`` of ``x``, ``loss`` and ``grad_norm`` repeat its last good values
    (those of step k-1), so no NaN or inf ever enters the tables.  Frozen runs are masked,
    not removed, which keeps every array rectangular and a batched run equal to separate
    runs.  ``result.report()`` says which runs diverged, when and why.

Stochastic functions
    When ``function.grad`` takes a ``step`` keyword, it is called as ``grad(x, step=k)``
    with the index k of the iterate (0 for x_0), so a seeded noisy gradient is reproducible
    and the same in a batched and in a separate run.

Host side: the divergence summary (``diverged``, ``diverged_at``, ``reasons``) is made of
host NumPy arrays obtained through ``refopt._array.to_numpy``; this module imports no
array library itself.
"""

from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from . import _array
from .rules._base import Rule, suggest

__all__ = ["run", "RunResult", "Divergence", "REASONS", "resolve_rule", "resolve_function", "value_at", "grad_at"]

#: reason codes of the divergence report (0 = did not diverge); checked in this order
REASONS = {
    1: "iterate not finite",
    2: "loss not finite",
    3: "gradient not finite",
    4: "loss blew up",
}


@dataclass(frozen=True)
class Divergence:
    """One diverged run: where it sits in the batch, when and why it stopped.

    ``step`` is the first k whose iterate x_k failed a check; ``value`` is the loss
    f(x_k) there (possibly nan or inf); ``last_loss`` is the loss of the frozen iterate
    x_{k-1}.
    """

    index: tuple
    step: int
    reason: str
    value: float
    last_loss: float

    def __str__(self) -> str:
        where = "run" if self.index == () else f"run {self.index}"
        return (
            f"{where}: diverged at step {self.step} ({self.reason}; loss there {self.value:.6g}); "
            f"frozen at step {self.step - 1}, loss {self.last_loss:.6g}"
        )


@dataclass(frozen=True)
class RunResult:
    """What :func:`run` returns.

    Arrays belong to the namespace, device and dtype of ``x0``, with ``B = x0.shape[:-1]``
    the batch shape (``()`` for one run):

    ``x``          ``(steps + 1, *B, dim)``  x_0 ... x_steps
    ``loss``       ``(steps + 1, *B)``       f(x_k)
    ``grad_norm``  ``(steps + 1, *B)``       ‖g_k‖₂ of the gradient used at step k + 1
                                            (for the last row, the gradient at x_steps)
    ``grads``      ``(steps + 1, *B, dim)``  the gradients themselves (``keep_grads=True``)
    ``traces``     ``{name: (n, ...)}``      ``trace=True``: every quantity ``rule.trace``
                                            returns, stacked over the n steps where it
                                            appears (``trace_steps[name]`` lists them,
                                            1-based); array quantities have the shape of
                                            x0, per-step scalars the batch shape of the
                                            hyper-parameters they come from.  Python
                                            floats are stored in x0's dtype (the rounding
                                            the rule applies when it uses them), ints as
                                            int64, bools as bool.

    Divergence summary (host NumPy arrays of shape ``B``): ``diverged`` (bool),
    ``diverged_at`` (the first failing step, -1 when the run never diverged),
    ``reason_codes`` (keys of :data:`REASONS`, 0 for none); ``divergences`` lists them
    as :class:`Divergence` records; ``report()`` is the human summary.
    """

    rule: Any
    function: Any
    steps: int
    x: Any
    loss: Any
    grad_norm: Any
    diverged: Any
    diverged_at: Any
    reason_codes: Any
    divergences: tuple
    grads: Any = None
    traces: Mapping[str, Any] | None = None
    trace_steps: Mapping[str, tuple] | None = None
    blowup: float | None = None

    @property
    def batch_shape(self) -> tuple:
        return tuple(self.loss.shape[1:])

    @property
    def runs(self) -> int:
        return math.prod(self.batch_shape)

    @property
    def any_diverged(self) -> bool:
        return bool(self.diverged.any())

    @property
    def x_final(self) -> Any:
        """x_steps (the last good iterate for a run that diverged)."""
        return self.x[-1, ...]

    @property
    def loss_final(self) -> Any:
        return self.loss[-1, ...]

    def report(self, limit: int = 20) -> str:
        """A few lines for a human: the setting, then each diverged run (at most ``limit``)."""
        fname = getattr(self.function, "name", type(self.function).__name__)
        shape = (f"{self.runs} run{'s' if self.runs != 1 else ''} (batch shape {self.batch_shape})" if self.batch_shape else "1 run")
        head = f"{self.rule!r} on {fname}: {shape} x {self.steps} steps"
        if not self.divergences:
            return f"{head}; no run diverged"
        n = len(self.divergences)
        first = min(d.step for d in self.divergences)
        lines = [
            f"{head}; {n} of {self.runs} diverged (first at step {first}); a diverged run is frozen at its "
            f"last good iterate, so x and loss hold no nan/inf"
        ]
        lines += ["  " + str(d) for d in self.divergences[:limit]]
        if n > limit:
            lines.append(f"  ... and {n - limit} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()

    def __repr__(self) -> str:
        fname = getattr(self.function, "name", type(self.function).__name__)
        n = len(self.divergences)
        return (
            f"RunResult({self.rule.name} on {fname}, x {tuple(self.x.shape)}, "
            f"{n} of {self.runs} run{'s' if self.runs != 1 else ''} diverged)"
        )


# ---------------------------------------------------------------------------------------
# checks and helpers
# ---------------------------------------------------------------------------------------


def resolve_rule(rule: Any, what: str = "rule") -> Rule:
    """A :class:`~refopt.rules.Rule` from a rule or a rule name (defaults)."""
    if isinstance(rule, str):
        from . import rules

        if rule not in rules.names():
            raise ValueError(suggest(rule, rules.names(), what))
        return rules.get(rule)
    if not isinstance(rule, Rule):
        raise TypeError(f"{what} must be a refopt rule (refopt.rules.get(name, ...)) or a rule name; got {type(rule).__name__}")
    return rule


def resolve_function(function: Any, what: str = "function") -> Any:
    """A function object from an object with ``value`` and ``grad``, or a name of refopt.functions."""
    if isinstance(function, str):
        from . import functions  # imported on use: the catalogue is only needed for names

        known = list(functions.names())
        if function not in known:
            raise ValueError(suggest(function, known, what))
        return functions.get(function)
    for method in ("value", "grad"):
        if not callable(getattr(function, method, None)):
            raise TypeError(
                f"{what} must have value(x) and grad(x) methods (a refopt.functions function or one of "
                f"your own) or be a function name; {type(function).__name__} has no {method}()"
            )
    return function


def _takes_step(fn: Callable) -> bool:
    try:
        return "step" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def value_at(xp: Any, function: Any, x: Any) -> Any:
    """f(x) as an array; a NumPy scalar (what NumPy reductions return for one point) becomes 0-d."""
    v = function.value(x)
    if not _array.is_array(v) and isinstance(v, numbers.Real) and not _array.is_bool(v):
        dtype = v.dtype if hasattr(v, "dtype") else x.dtype
        v = xp.asarray(v, dtype=dtype, device=_array.device(x))
    return v


def grad_at(function: Any, x: Any, step: int, takes_step: bool | None = None) -> Any:
    """∇f(x) for the iterate of index ``step``: ``grad(x, step=step)`` when grad takes it."""
    if takes_step is None:
        takes_step = _takes_step(function.grad)
    return function.grad(x, step=step) if takes_step else function.grad(x)


def _check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"steps must be a positive integer; got {steps!r}")
    if steps < 1:
        raise ValueError(f"steps must be a positive integer (the number of updates); got {steps!r}")
    return int(steps)


def _check_x0(x0: Any, function: Any) -> Any:
    if not _array.is_array(x0):
        raise TypeError(
            f"x0 must be an array of shape (..., dim) (NumPy, torch, ...); got {type(x0).__name__}"
        )
    xp = _array.namespace(x0, what="x0")
    if not _array.is_real_floating(xp, x0.dtype):
        raise TypeError(f"x0 has dtype {_array.dtype_name(x0.dtype)}; it must be a real floating array (float32 or float64)")
    if x0.ndim < 1:
        raise ValueError("x0 must have at least one axis: shape (..., dim), the last axis the point's coordinates")
    dim = getattr(function, "dim", None)
    if isinstance(dim, numbers.Integral) and not isinstance(dim, bool) and x0.shape[-1] != dim:
        name = getattr(function, "name", type(function).__name__)
        raise ValueError(f"x0 has shape {tuple(x0.shape)}, but {name} is defined in dim={dim}: the last axis must have size {dim}")
    if x0.shape[-1] == 0:
        raise ValueError(f"x0 has shape {tuple(x0.shape)}: the last axis (the coordinates) is empty")
    if not bool(xp.all(xp.isfinite(x0))):
        host = _array.to_numpy(x0)
        bad = (host != host) | (abs(host) == math.inf)
        idx = tuple(int(i[0]) for i in bad.nonzero())
        raise ValueError(f"x0 must be finite everywhere; got {float(host[idx])!r} at index {idx}")
    return xp


def _check_batch_axes(rule: Rule, x0: Any, what: str = "rule") -> None:
    batch_axes = rule.hyper.get("batch_axes")
    if batch_axes is not None and batch_axes != x0.ndim - 1:
        raise ValueError(
            f"{what} {rule.name} pools a statistic over the whole parameter array; with x0 of shape "
            f"{tuple(x0.shape)} each of the {x0.ndim - 1} leading axes indexes a separate run, so it needs "
            f"batch_axes={x0.ndim - 1} (got batch_axes={batch_axes}): use rule.replace(batch_axes={x0.ndim - 1})"
        )


def _check_outputs(xp, function, x0, loss, g) -> None:
    name = getattr(function, "name", type(function).__name__)
    batch = tuple(x0.shape[:-1])
    if not _array.is_array(loss) or tuple(loss.shape) != batch:
        shape = tuple(loss.shape) if _array.is_array(loss) else type(loss).__name__
        raise ValueError(f"{name}.value(x) must return an array of shape x.shape[:-1] = {batch}; got {shape}")
    if not _array.is_array(g) or tuple(g.shape) != tuple(x0.shape):
        shape = tuple(g.shape) if _array.is_array(g) else type(g).__name__
        raise ValueError(f"{name}.grad(x) must return an array of the shape of x, {tuple(x0.shape)}; got {shape}")
    for label, arr in (("value", loss), ("grad", g)):
        if arr.dtype != x0.dtype:
            raise TypeError(
                f"{name}.{label}(x) returned dtype {_array.dtype_name(arr.dtype)} for x of dtype "
                f"{_array.dtype_name(x0.dtype)}; a function must keep the dtype of its input"
            )
    if not bool(xp.all(xp.isfinite(loss))):
        raise ValueError(f"{name} is not finite at x0 (loss {_array.to_numpy(loss).ravel()[:4]}...): choose another start point")
    if not bool(xp.all(xp.isfinite(g))):
        raise ValueError(f"the gradient of {name} is not finite at x0: choose another start point")


def _trace_array(xp, value: Any, like: Any) -> Any:
    """One trace value as an array of ``like``'s namespace (None for values that are not numbers)."""
    dev = _array.device(like)
    if _array.is_bool(value):
        return xp.asarray(bool(value), device=dev)
    if isinstance(value, numbers.Integral):
        return xp.asarray(int(value), dtype=xp.int64, device=dev)
    if isinstance(value, numbers.Real):
        return xp.asarray(float(value), dtype=like.dtype, device=dev)
    if isinstance(value, _array.HostArray):
        return _array.lift(value, like)
    if _array.is_array(value):
        return value
    return None


def _stack_traces(xp, collected: dict[str, list], like: Any) -> tuple[dict, dict]:
    traces, steps_of = {}, {}
    for key, items in collected.items():
        arrays = [(k, _trace_array(xp, v, like)) for k, v in items]
        arrays = [(k, a) for k, a in arrays if a is not None]
        if not arrays:
            continue
        shape = _array.broadcast_shapes(*[tuple(a.shape) for _, a in arrays])
        if shape is None:
            continue  # a quantity whose shape changes from step to step cannot be stacked
        traces[key] = xp.stack([xp.broadcast_to(a, shape) for _, a in arrays])
        steps_of[key] = tuple(k for k, _ in arrays)
    return traces, steps_of


# ---------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------


def run(
    rule: Any,
    function: Any,
    x0: Any,
    steps: int,
    *,
    trace: bool = False,
    keep_grads: bool = False,
    blowup: float | None = 1e8,
    progress: Callable[[int, int], Any] | None = None,
    fast: bool | str | None = None,
) -> RunResult:
    """Run ``rule`` on ``function`` from ``x0`` for ``steps`` updates; see the module docstring.

    Parameters
    ----------
    rule:
        a :class:`~refopt.rules.Rule` (hyper-parameters may be arrays that broadcast against
        ``x0``), or a rule name (its defaults).
    function:
        any object with ``value(x)`` (shape ``x.shape[:-1]``) and ``grad(x)`` (shape
        ``x.shape``) for ``x`` of shape ``(..., dim)``; or a name of ``refopt.functions``.
        When it has an integer ``dim``, ``x0.shape[-1]`` must equal it.
    x0:
        start points, shape ``(..., dim)``, a finite real floating array of any backend.
    steps:
        number of updates (>= 1); the result holds ``steps + 1`` iterates.
    trace:
        also record ``rule.trace`` at every step (``result.traces``).
    keep_grads:
        also keep every gradient (``result.grads``); their norms are always kept.
    blowup:
        a run diverges when its loss exceeds ``L_0 + blowup·(1 + |L_0|)``; None: only
        non-finite values count.
    progress:
        called as ``progress(k, steps)`` after step k (a progress bar hook); the library
        prints nothing itself.
    fast:
        how the steps are evaluated; the result is the same bits either way.  None (default):
        :mod:`refopt.fast` when the rule has a fast path, the arrays are NumPy or CuPy, ``x0``
        has at least ``refopt.fast.AUTO_MIN_ELEMENTS`` elements and no trace is asked;
        True: the fast path (a ValueError when there is none); False: ``rule.step``;
        ``"numpy"``/``"numba"``: the fast path on that engine.  The fast path steps ``run``'s
        own state in place and each iterate into a fresh array (every iterate is kept).

    Every argument is checked, and the function evaluated once at ``x0``, before the
    first step.
    """
    rule = resolve_rule(rule)
    function = resolve_function(function)
    steps = _check_steps(steps)
    if not _array.is_bool(trace):
        raise TypeError(f"trace must be True or False; got {trace!r}")
    if not _array.is_bool(keep_grads):
        raise TypeError(f"keep_grads must be True or False; got {keep_grads!r}")
    if blowup is not None:
        if isinstance(blowup, bool) or not isinstance(blowup, numbers.Real) or not (float(blowup) > 0):
            raise ValueError(f"blowup must be a number > 0 or None; got {blowup!r}")
        blowup = float(blowup)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable progress(k, steps) or None; got {type(progress).__name__}")
    xp = _check_x0(x0, function)
    _check_batch_axes(rule, x0)
    state = rule.init(x0)  # checks batched hyper-parameter shapes against x0
    if trace and fast not in (None, False):
        raise ValueError(f"fast={fast!r} cannot record a trace (trace=True steps with rule.trace); use fast=None or False")
    from . import fast as fast_paths

    fused = None if trace else fast_paths.for_loop(rule, x0, fast)

    takes_step = _takes_step(function.grad)
    x = x0
    loss = value_at(xp, function, x)
    g = grad_at(function, x, 0, takes_step)
    _check_outputs(xp, function, x0, loss, g)

    dev = _array.device(x0)
    batch = tuple(x0.shape[:-1])
    alive = xp.ones(batch, dtype=xp.bool, device=dev)
    diverged_at = xp.full(batch, -1, dtype=xp.int64, device=dev)
    codes = xp.zeros(batch, dtype=xp.int8, device=dev)
    bad_value = xp.zeros(batch, dtype=x0.dtype, device=dev)
    last_loss = xp.zeros(batch, dtype=x0.dtype, device=dev)
    limit = None if blowup is None else loss + blowup * (1.0 + xp.abs(loss))
    code_arrays = {c: xp.full(batch, c, dtype=xp.int8, device=dev) for c in REASONS}

    xs, losses, gnorms = [x], [loss], [xp.linalg.vector_norm(g, axis=-1)]
    grads = [g] if keep_grads else None
    collected: dict[str, list] = {}

    for k in range(1, steps + 1):
        if trace:
            x_new, state, tr = rule.trace(x, g, state)
            for key, value in tr.items():
                collected.setdefault(key, []).append((k, value))
        elif fused is not None:  # the state is run's own: stepped in place
            x_new, state = fused.step(x, g, state, out=(xp.empty_like(x), state))
        else:
            x_new, state = rule.step(x, g, state)
        loss_new = value_at(xp, function, x_new)
        g_new = grad_at(function, x_new, k, takes_step)

        # which check fails first, per run (0: none)
        checks = [
            ~xp.all(xp.isfinite(x_new), axis=-1),
            ~xp.isfinite(loss_new),
            ~xp.all(xp.isfinite(g_new), axis=-1),
        ]
        if limit is not None:
            checks.append(loss_new > limit)
        code = xp.zeros(batch, dtype=xp.int8, device=dev)
        for c, failed in reversed(list(zip(REASONS, checks))):
            code = xp.where(failed, code_arrays[c], code)
        newly = alive & (code != 0)
        diverged_at = xp.where(newly, xp.full(batch, k, dtype=xp.int64, device=dev), diverged_at)
        codes = xp.where(newly, code, codes)
        bad_value = xp.where(newly, loss_new, bad_value)
        last_loss = xp.where(newly, loss, last_loss)
        alive = alive & ~newly

        # frozen runs keep their last good iterate, loss and gradient
        x = xp.where(alive[..., None], x_new, x)
        loss = xp.where(alive, loss_new, loss)
        g = xp.where(alive[..., None], g_new, g)
        xs.append(x)
        losses.append(loss)
        gnorms.append(xp.linalg.vector_norm(g, axis=-1))
        if keep_grads:
            grads.append(g)
        if progress is not None:
            progress(k, steps)

    traces = trace_steps = None
    if trace:
        traces, trace_steps = _stack_traces(xp, collected, x0)

    at = _array.to_numpy(diverged_at)
    code_h = _array.to_numpy(codes)
    value_h = _array.to_numpy(bad_value)
    last_h = _array.to_numpy(last_loss)
    diverged = at >= 0
    records = []
    for idx in zip(*diverged.nonzero()) if batch else ([()] if bool(diverged) else []):
        idx = tuple(int(i) for i in idx)
        records.append(
            Divergence(idx, int(at[idx]), REASONS[int(code_h[idx])], float(value_h[idx]), float(last_h[idx]))
        )
    records.sort(key=lambda d: (d.step, d.index))
    return RunResult(
        rule=rule,
        function=function,
        steps=steps,
        x=xp.stack(xs),
        loss=xp.stack(losses),
        grad_norm=xp.stack(gnorms),
        diverged=diverged,
        diverged_at=at,
        reason_codes=code_h,
        divergences=tuple(records),
        grads=xp.stack(grads) if keep_grads else None,
        traces=traces,
        trace_steps=trace_steps,
        blowup=blowup,
    )
