"""Pan & Li's diagnostics: directional sharpness, local loss reduction, where the sharpness sits.

Notation.  At a point x with gradient g = ∇f(x) and Hessian
H = ∇²f(x), a step of size η along a direction v follows the second-order model::

    f(x + η v) ≈ f(x) + η <g, v> + (η²/2) vᵀHv

Directional sharpness (Pan & Li, README of panyan7/adam-vs-sgd; code
``landscape_utils.compute_sharpness``)::

    S(v) = vᵀHv / ‖v‖²                 sign kept (negative in non-convex regions)

It is the curvature along the unit direction v̂ = v/‖v‖, so S(αv) = S(v) for every α ≠ 0.
Hv comes from ``f.hvp(x, v)`` (the code uses the exact Hessian-vector product of double
backprop); functions without ``hvp`` fall back to central differences of the gradient,
see :func:`hessian_vector_product`.

Model-based best one-step reduction (minimising the second-order model along v)::

    <g, v̂>                             gradient correlation (negative for a descent direction)
    η* = -<g, v̂> / S(v)                best step length along the unit direction v̂
    Δ*(v) = <g, v>² / (2 vᵀHv) = <g, v̂>² / (2 S(v))

valid when S(v) > 0; when S(v) ≤ 0 the model has no minimum along the line and both are
reported as +inf.  On an exact quadratic Δ* is the exact best decrease along the line.

Empirical line search (the authors' protocol, code ``landscape_utils.search``):
L_i = f(x + i·ε·v̂) for i = 0, 1, ..., 20, stopping at the first i with L_i > L_0; when
at most 3 losses were evaluated the search restarts with ε/5 (recursively); the result is
L_0 − min_i L_i.  See :func:`line_search`.

Where the sharpness sits (code ``compute_top_mask``, ``compute_sharpness_masked``): the top-c set T of a direction u (the
coordinates with |u_i| ≥ τ_c, τ_c the threshold of coordinate-wise clipping) and the share
of uᵀHu = Σ_i u_i (Hu)_i that they carry.  See :func:`top_fraction_contribution`.

Shadow comparison (code: the ``*Params`` state objects): one trajectory, several rules fed the same
gradients, their directions compared at the same points.  See :func:`shadow`.

Every function takes points of shape ``(..., dim)`` and works on any array-API backend;
results have the batch shape ``x.shape[:-1]`` (broadcast with ``v``), in the dtype of x.

Sources: Pan & Li, Toward Understanding Why Adam Converges Faster Than SGD for Transformers,
arXiv 2306.00204; code panyan7/adam-vs-sgd ``landscape_utils.py`` (``compute_sharpness``,
``search``, ``compute_top_mask``, ``compute_sharpness_masked``, the ``*Params`` shadow
states), read at commit d85d3a1.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from . import _array, transforms
from .rules._base import Rule
from .run import _check_batch_axes, _check_steps, _check_x0, _takes_step, grad_at, resolve_function, resolve_rule, value_at

__all__ = [
    "hessian_vector_product",
    "directional_sharpness",
    "gradient_correlation",
    "model_reduction",
    "ModelReduction",
    "line_search",
    "LineSearch",
    "top_fraction_contribution",
    "TopContribution",
    "direction_norms",
    "shadow",
    "ShadowResult",
    "SHADOW_COLUMNS",
]


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def _prepare(f: Any, x: Any, v: Any, need_hvp: bool = False):
    """(xp, x, v) broadcast to one shape, after the checks every diagnostic shares."""
    f = resolve_function(f)
    for name, a in (("x", x), ("v", v)):
        if not _array.is_array(a):
            raise TypeError(f"{name} must be an array of shape (..., dim); got {type(a).__name__}")
        if a.ndim < 1:
            raise ValueError(f"{name} must have shape (..., dim); got a 0-d array")
    xp = _array.namespace(x, v, what="x and v")
    if not _array.is_real_floating(xp, x.dtype) or v.dtype != x.dtype:
        raise TypeError(
            f"x and v must be real floating arrays of one dtype; got {_array.dtype_name(x.dtype)} and "
            f"{_array.dtype_name(v.dtype)}"
        )
    if x.shape[-1] != v.shape[-1]:
        raise ValueError(f"x has shape {tuple(x.shape)} and v has shape {tuple(v.shape)}: their last axes differ")
    dim = getattr(f, "dim", None)
    if isinstance(dim, numbers.Integral) and not isinstance(dim, bool) and x.shape[-1] != dim:
        raise ValueError(f"x has shape {tuple(x.shape)}, but {getattr(f, 'name', 'the function')} has dim={dim}")
    shape = _array.broadcast_shapes(tuple(x.shape), tuple(v.shape))
    if shape is None:
        raise ValueError(f"x of shape {tuple(x.shape)} and v of shape {tuple(v.shape)} do not broadcast")
    if tuple(x.shape) != shape:
        x = xp.broadcast_to(x, shape)
    if tuple(v.shape) != shape:
        v = xp.broadcast_to(v, shape)
    return f, xp, x, v


def _dot(xp, a, b):
    return xp.sum(a * b, axis=-1)


def _unit(xp, v):
    """v / ‖v‖ (rows with v = 0 stay 0) and ‖v‖."""
    n = xp.linalg.vector_norm(v, axis=-1)
    safe = xp.where(n > 0, n, xp.ones_like(n))
    return v / safe[..., None], n


def _ratio(xp, num, den):
    """num / den, nan where den = 0 (without a division by zero)."""
    nonzero = den != 0
    safe = xp.where(nonzero, den, xp.ones_like(den))
    return xp.where(nonzero, num / safe, _full(xp, num / safe, math.nan))


def _full(xp, like, value):
    return xp.full(like.shape, value, dtype=like.dtype, device=_array.device(like))


def hessian_vector_product(f: Any, x: Any, v: Any) -> Any:
    """H(x)·v: ``f.hvp(x, v)`` when the function has one, else central differences.

    The fallback (a central difference; its error is O(h²) in the third derivative)::

        Hv ≈ ‖v‖ (∇f(x + h v̂) − ∇f(x − h v̂)) / (2h),     h = ε_mach^(1/3) · (1 + ‖x‖)

    with ε_mach the machine epsilon of x's dtype (h ≈ 6e-6·(1 + ‖x‖) in float64), the
    step that balances the O(h²) truncation and the O(ε/h) rounding errors.
    """
    f, xp, x, v = _prepare(f, x, v)
    hvp = getattr(f, "hvp", None)
    if callable(hvp):
        return hvp(x, v)
    vhat, n = _unit(xp, v)
    h = xp.finfo(x.dtype).eps ** (1.0 / 3.0) * (1.0 + xp.linalg.vector_norm(x, axis=-1))
    h = h[..., None]
    return n[..., None] * (f.grad(x + h * vhat) - f.grad(x - h * vhat)) / (2.0 * h)


# ---------------------------------------------------------------------------------------
# sharpness and the quadratic model
# ---------------------------------------------------------------------------------------


def directional_sharpness(f: Any, x: Any, v: Any) -> Any:
    """S(v) = vᵀ H(x) v / ‖v‖², the curvature of f at x along v (sign kept).

    Pan & Li's directional sharpness, computed as the authors' ``compute_sharpness`` does:
    ``<v, Hv> / ‖v‖²`` with Hv from the Hessian-vector product (:func:`hessian_vector_product`).
    Scale-invariant: S(αv) = S(v).  Shape ``x.shape[:-1]`` (broadcast with v); nan where
    v = 0 (no direction).
    """
    f, xp, x, v = _prepare(f, x, v)
    return _ratio(xp, _dot(xp, v, hessian_vector_product(f, x, v)), _dot(xp, v, v))


def gradient_correlation(f: Any, x: Any, v: Any, *, g: Any = None) -> Any:
    """<g, v̂> = <∇f(x), v> / ‖v‖: the slope of f along the unit direction (negative = descent).

    ``g`` may be given (the gradient the rule saw); otherwise ``f.grad(x)``.
    """
    f, xp, x, v = _prepare(f, x, v)
    g = f.grad(x) if g is None else g
    return _ratio(xp, _dot(xp, g, v), xp.linalg.vector_norm(v, axis=-1))


@dataclass(frozen=True)
class ModelReduction:
    """The quadratic model along one direction (arrays of the batch shape).

    ``sharpness`` S(v); ``correlation`` <g, v̂>; ``reduction`` Δ* = <g, v̂>²/(2 S);
    ``step`` η* = -<g, v̂>/S, the distance along v̂ where the model is lowest (negative when
    v points uphill).  ``reduction`` and ``step`` are +inf where S ≤ 0.
    """

    sharpness: Any
    correlation: Any
    reduction: Any
    step: Any


def model_reduction(f: Any, x: Any, v: Any, *, g: Any = None) -> ModelReduction:
    """Best one-step loss reduction of the second-order model along v (module docstring).

    ::

        S = vᵀHv/‖v‖²,  c = <g, v̂>,  η* = -c / S,  Δ* = c² / (2 S)        (S > 0)

    Δ* is invariant to the scale of v, and on a quadratic it is the exact best decrease of
    f along the line x + η v̂.  Where S ≤ 0 the model is unbounded below along the line:
    Δ* and η* are +inf there.  ``g`` defaults to ``f.grad(x)``.
    """
    f, xp, x, v = _prepare(f, x, v)
    g = f.grad(x) if g is None else g
    vhat, n = _unit(xp, v)
    s = _dot(xp, vhat, hessian_vector_product(f, x, vhat))
    corr = _dot(xp, g, vhat)
    pos = s > 0
    safe = xp.where(pos, s, xp.ones_like(s))
    inf = _full(xp, s, math.inf)
    reduction = xp.where(pos, corr * corr / (2.0 * safe), inf)
    step = xp.where(pos, -corr / safe, inf)
    nan = _full(xp, s, math.nan)
    zero_v = n == 0
    return ModelReduction(
        sharpness=xp.where(zero_v, nan, s),
        correlation=xp.where(zero_v, nan, corr),
        reduction=xp.where(zero_v, nan, reduction),
        step=xp.where(zero_v, nan, step),
    )


# ---------------------------------------------------------------------------------------
# the authors' line search
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineSearch:
    """Result of :func:`line_search` (arrays of the batch shape B unless noted).

    ``reduction``  L_0 − min_i L_i over the evaluated points (≥ 0)
    ``best_step``  i·ε of the lowest evaluated point (distance along v̂)
    ``eps``        the grid unit ε of the final search (ε_0 / 5^restarts)
    ``restarts``   how many times ε was divided by 5 (int64)
    ``count``      how many losses the final search evaluated, i = 0 .. count − 1 (int64)
    ``steps``      ``(points + 1, *B)`` the grid i·ε, i = 0 .. points
    ``losses``     ``(points + 1, *B)`` L_i for i < count, nan after (not evaluated by
                   the protocol)
    ``exhausted``  bool: still ≤ 3 points after ``max_restarts`` restarts (v points
                   uphill, or the curvature is too large for any grid tried); the last
                   search is reported
    """

    reduction: Any
    best_step: Any
    eps: Any
    restarts: Any
    count: Any
    steps: Any
    losses: Any
    exhausted: Any


def line_search(
    f: Any,
    x: Any,
    v: Any,
    eps: Any = 1.0,
    *,
    points: int = 20,
    max_restarts: int = 30,
) -> LineSearch:
    """The authors' line-search loss reduction along the unit direction v̂ = v/‖v‖.

    Protocol (code ``landscape_utils.search`` of panyan7/adam-vs-sgd)::

        L_i = f(x + i·ε·v̂),  i = 0, 1, ..., points (= 20, the code's ``distance``)
        stop after the first i with L_i > L_0 (that point is evaluated and kept)
        if at most 3 losses were evaluated: restart with ε <- ε/5
        return L_0 − min_i L_i

    ``eps`` is the grid unit ε (the authors pick one per algorithm in their configurations): a number, or an
    array of the batch shape.  The code recurses without a bound; here at most
    ``max_restarts`` restarts are made and ``exhausted`` marks runs that still stopped
    within 3 points (their reduction is then that of the last, finest grid, typically 0).
    Every run of a batch follows its own restarts; all ``points + 1`` losses of a grid are
    evaluated at once, and those the protocol would not have evaluated are set to nan.
    """
    f, xp, x, v = _prepare(f, x, v)
    if isinstance(points, bool) or not isinstance(points, numbers.Integral) or points < 3:
        raise ValueError(f"points must be an integer >= 3 (the code uses 20); got {points!r}")
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, numbers.Integral) or max_restarts < 0:
        raise ValueError(f"max_restarts must be an integer >= 0; got {max_restarts!r}")
    batch = tuple(x.shape[:-1])
    dev = _array.device(x)
    if isinstance(eps, numbers.Real) and not _array.is_bool(eps):
        eps = float(eps)
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps (the grid unit) must be a finite number > 0; got {eps!r}")
        eps_arr = xp.full(batch, float(eps), dtype=x.dtype, device=dev)
    elif _array.is_array(eps):
        host = _array.host_float64(eps, "eps")
        if not bool(((host > 0) & (abs(host) < math.inf)).all()):
            raise ValueError("eps (the grid unit) must be finite and > 0 everywhere")
        if _array.broadcast_shapes(host.shape, batch) != batch:
            raise ValueError(f"eps has shape {host.shape}, which does not broadcast to the batch shape {batch}")
        eps_arr = xp.broadcast_to(_array.lift(host, x), batch)
    else:
        raise TypeError(f"eps must be a number > 0 or an array of them; got {type(eps).__name__}")

    vhat, _ = _unit(xp, v)
    P = points + 1
    index = xp.reshape(xp.arange(P, dtype=x.dtype, device=dev), (P,) + (1,) * len(batch))
    i_int = xp.reshape(xp.arange(P, dtype=xp.int64, device=dev), (P,) + (1,) * len(batch))
    done = xp.zeros(batch, dtype=xp.bool, device=dev)
    out = None
    for r in range(max_restarts + 1):
        grid = index * eps_arr  # (P, *B): i·ε
        L = value_at(xp, f, x + grid[..., None] * vhat)  # (P, *B)
        up = L[1:, ...] > L[0:1, ...]
        any_up = xp.any(up, axis=0)
        first = xp.argmax(xp.astype(up, xp.int8), axis=0) + 1  # first i >= 1 with L_i > L_0
        count = xp.where(any_up, first + 1, xp.full(batch, P, dtype=first.dtype, device=dev))
        count = xp.astype(count, xp.int64)
        evaluated = i_int < count  # (P, *B)
        masked = xp.where(evaluated, L, _full(xp, L, math.inf))
        best = xp.argmin(masked, axis=0)
        best_i = xp.take_along_axis(masked, xp.expand_dims(best, axis=0), axis=0)[0, ...]
        this = LineSearch(
            reduction=L[0, ...] - best_i,
            best_step=xp.take_along_axis(grid, xp.expand_dims(best, axis=0), axis=0)[0, ...],
            eps=eps_arr,
            restarts=xp.full(batch, r, dtype=xp.int64, device=dev),
            count=count,
            steps=grid,
            losses=xp.where(evaluated, L, _full(xp, L, math.nan)),
            exhausted=xp.zeros(batch, dtype=xp.bool, device=dev),
        )
        take = (count > 3) & ~done
        if out is None:
            out = this
        else:
            out = LineSearch(
                *(
                    xp.where(take if a.ndim == len(batch) else take[None, ...], a, b)
                    for a, b in zip(_fields(this), _fields(out))
                )
            )
        done = done | (count > 3)
        if bool(xp.all(done)):
            break
        eps_arr = xp.where(done, eps_arr, eps_arr / 5.0)
    exhausted = ~done
    if bool(xp.any(exhausted)):  # report the last (finest) search for them
        out = LineSearch(
            *(
                xp.where(exhausted if a.ndim == len(batch) else exhausted[None, ...], a, b)
                for a, b in zip(_fields(this), _fields(out))
            )
        )
        out = dataclasses.replace(out, exhausted=exhausted)
    return out


def _fields(ls: LineSearch) -> tuple:
    return (ls.reduction, ls.best_step, ls.eps, ls.restarts, ls.count, ls.steps, ls.losses, ls.exhausted)


# ---------------------------------------------------------------------------------------
# per-coordinate contribution
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopContribution:
    """Where the sharpness of a direction u sits (arrays of the batch shape).

    ``share``          Σ_{i∈T} u_i (Hu)_i / uᵀHu  (the top set's part of the curvature)
    ``norm_share``     ‖u_T‖² / ‖u‖²
    ``sharpness``      S(u)
    ``sharpness_rest`` S(u'), u' = u with the coordinates of T set to 0
    ``ratio``          S(u') / S(u), the authors' intended "masked sharpness ratio"
                       (nan where a ratio has a zero denominator: u = 0, or T = every
                       coordinate so that u' = 0)
    ``size``           |T| (int64)
    ``tau``            the threshold τ_c (Python float, or a host array of the batch shape)
    """

    share: Any
    norm_share: Any
    sharpness: Any
    sharpness_rest: Any
    ratio: Any
    size: Any
    tau: Any


def top_fraction_contribution(f: Any, x: Any, u: Any, fraction: float = 0.01) -> TopContribution:
    """How much of uᵀHu the top-``fraction`` coordinates of u carry (code ``compute_top_mask``).

    T = {i : |u_i| ≥ τ_c} with τ_c the threshold of coordinate-wise clipping, the
    (⌊N c⌋+1)-th largest |u_i| (``refopt.transforms.top_fraction_threshold``, computed per
    run of a batch); ≥ as in the code's ``compute_top_mask``, so without ties |T| = ⌊N c⌋+1,
    the entry at the threshold included.  c = 0 gives an empty T, c = 1 all coordinates.

    Exact decomposition: uᵀHu = Σ_i u_i (Hu)_i, and::

        share      = Σ_{i∈T} u_i (Hu)_i / uᵀHu          (terms may be negative)
        norm_share = ‖u_T‖² / ‖u‖²
        ratio      = S(u') / S(u),  u' = u ⊙ 1[i ∉ T]

    The ratio is what ``compute_sharpness_masked`` intends; the released code computes the
    numerator with the unmasked product <Hu, u'> (a bug in panyan7/adam-vs-sgd at d85d3a1).
    """
    f, xp, x, u = _prepare(f, x, u)
    batch_axes = u.ndim - 1
    tau = transforms.top_fraction_threshold([u], fraction, batch_axes=batch_axes, what="u")
    top = xp.abs(u) >= transforms.threshold_like(tau, u, batch_axes)
    hu = hessian_vector_product(f, x, u)
    terms = u * hu
    zero = xp.zeros_like(u)
    total = xp.sum(terms, axis=-1)
    uu = _dot(xp, u, u)
    rest = xp.where(top, zero, u)
    s = _ratio(xp, total, uu)
    s_rest = directional_sharpness(f, x, rest)
    return TopContribution(
        share=_ratio(xp, xp.sum(xp.where(top, terms, zero), axis=-1), total),
        norm_share=_ratio(xp, xp.sum(xp.where(top, u * u, zero), axis=-1), uu),
        sharpness=s,
        sharpness_rest=s_rest,
        ratio=_ratio(xp, s_rest, s),
        size=xp.sum(xp.astype(top, xp.int64), axis=-1),
        tau=tau,
    )


def direction_norms(u: Any) -> dict[str, Any]:
    """The magnitudes the authors' ``search`` writes for a direction.

    ``l2`` ‖u‖₂, ``linf`` ‖u‖_∞, ``mean_abs`` mean |u_i|, ``max_abs`` max |u_i| (= ‖u‖_∞;
    both are listed because the code writes both).
    """
    if not _array.is_array(u) or u.ndim < 1:
        raise TypeError(f"u must be an array of shape (..., dim); got {type(u).__name__}")
    xp = _array.namespace(u, what="u")
    a = xp.abs(u)
    return {
        "l2": xp.linalg.vector_norm(u, axis=-1),
        "linf": xp.max(a, axis=-1),
        "mean_abs": xp.mean(a, axis=-1),
        "max_abs": xp.max(a, axis=-1),
    }


# ---------------------------------------------------------------------------------------
# the shadow comparison
# ---------------------------------------------------------------------------------------

#: columns of a shadow record, in table order
SHADOW_COLUMNS = (
    "step",
    "rule",
    "sharpness",
    "ratio_to_sgd",
    "correlation",
    "model_reduction",
    "model_step",
    "line_search_reduction",
    "line_search_step",
    "line_search_eps",
    "l2",
    "linf",
    "mean_abs",
    "max_abs",
)


@dataclass(frozen=True)
class ShadowResult:
    """What :func:`shadow` returns.

    ``x`` ``(n + 1, *x0.shape)`` and ``loss`` ``(n + 1, *B)``: the trajectory (n steps made;
    n < steps when it stopped because an iterate, loss or gradient was not finite, then
    ``stopped`` says why).  ``records``: one dict per (sampled step, shadow rule) with the
    keys of :data:`SHADOW_COLUMNS`; for one start point the numbers are Python floats,
    for a batch of them arrays of the batch shape.  ``directions[k][name]`` keeps the
    direction u of each rule at each sampled step k.
    """

    trajectory_rule: Any
    function: Any
    names: tuple
    x: Any
    loss: Any
    records: tuple
    directions: Mapping[int, Mapping[str, Any]]
    stopped: str | None = None

    def __repr__(self) -> str:
        fname = getattr(self.function, "name", type(self.function).__name__)
        return (
            f"ShadowResult({self.trajectory_rule.name} on {fname}, shadows {list(self.names)}, "
            f"{len(self.records)} records, {self.x.shape[0] - 1} steps)"
        )

    def table(self, columns: Sequence[str] | None = None) -> str:
        """The records as a fixed-width text table (one start point; arrays are averaged)."""
        cols = tuple(columns) if columns is not None else SHADOW_COLUMNS
        unknown = [c for c in cols if c not in SHADOW_COLUMNS]
        if unknown:
            raise ValueError(f"unknown column {unknown[0]!r}; columns are {', '.join(SHADOW_COLUMNS)}")

        def show(v):
            if v is None:
                return "-"
            if isinstance(v, str):
                return v
            if isinstance(v, int):
                return str(v)
            if not isinstance(v, float):
                v = float(_array.to_numpy(v).mean())
            return f"{v:.6g}"

        rows = [[c for c in cols]] + [[show(r[c]) for c in cols] for r in self.records]
        widths = [max(len(row[j]) for row in rows) for j in range(len(cols))]
        lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
        if self.stopped:
            lines.append(f"(trajectory stopped: {self.stopped})")
        return "\n".join(lines)


def _named_rules(shadows: Any) -> dict[str, Rule]:
    if isinstance(shadows, Mapping):
        items = list(shadows.items())
    elif isinstance(shadows, (list, tuple)):
        items = []
        for r in shadows:
            rule = resolve_rule(r, "shadow rule")
            items.append((rule.name, rule))
    else:
        raise TypeError(
            "shadows must be a dict {name: rule} or a list of rules / rule names; "
            f"got {type(shadows).__name__}"
        )
    if not items:
        raise ValueError("shadows is empty: give at least one rule to compare")
    out: dict[str, Rule] = {}
    for name, rule in items:
        if not isinstance(name, str) or not name:
            raise TypeError(f"shadow names must be non-empty strings; got {name!r}")
        key, n = name, 2
        while key in out:  # the same rule twice in a list: sgd, sgd#2, ...
            key, n = f"{name}#{n}", n + 1
        out[key] = resolve_rule(rule, f"shadow rule {name!r}")
    return out


def _scalarize(v: Any, batched: bool) -> Any:
    if batched or v is None:
        return v
    return float(_array.to_numpy(v))


def shadow(
    trajectory_rule: Any,
    function: Any,
    x0: Any,
    steps: int,
    shadows: Any,
    *,
    sample: Sequence[int] | None = None,
    eps: Any = 1.0,
    line_search_points: int = 20,
    reference: str | None = None,
    keep_directions: bool = True,
) -> ShadowResult:
    """Several rules fed the same gradients along one trajectory (Pan & Li's shadow protocol).

    Protocol (code ``landscape_utils.*Params`` of panyan7/adam-vs-sgd)::

        for k = 1 .. steps:
            g = ∇f(x_{k-1})                                 the one gradient of step k
            for every shadow rule j:
                x'_j, state_j = rule_j.step(x_{k-1}, g, state_j)
                u_j = x'_j − x_{k-1}                         its direction at x_{k-1};
                                                             state_j kept, x'_j discarded
            if k is sampled: diagnostics of every u_j at x_{k-1}
            x_k, state = trajectory_rule.step(x_{k-1}, g, state)

    For each sampled step and rule a record holds: the directional sharpness S(u), the
    ratio S(u)/|S(u_ref)| to the shadow named ``reference`` (a name of ``shadows``; default
    None: the shadow "sgd" when there is one, else the ratios are None),
    the gradient correlation <g, û>, the model's Δ* and η*, the authors' line-search
    reduction (grid unit ``eps``: a number, or a dict {shadow name: ε}; None skips the
    search), its best distance and final ε, and the norms ℓ2, ℓ∞, mean |u_i|, max |u_i|.

    Scale: u includes each rule's learning rate; sharpness, Δ*, η* along û, correlation and
    the line search do not depend on it, the norms do.  Give shadow rules ``lr=1`` to read
    the raw directions, as the authors' state objects do (their SGD direction is −m with
    an EMA momentum, i.e. ``sgd(lr=1, momentum=0.9, dampening=0.9)``).

    ``sample``: the steps k (1 .. steps) to report, default every step.  ``x0`` may hold
    many start points ``(..., dim)``.  The trajectory stops early (``result.stopped``) if
    an iterate, its loss or its gradient is not finite.
    """
    trajectory_rule = resolve_rule(trajectory_rule, "trajectory_rule")
    function = resolve_function(function)
    steps = _check_steps(steps)
    xp = _check_x0(x0, function)
    rules = _named_rules(shadows)
    _check_batch_axes(trajectory_rule, x0, "trajectory_rule")
    for name, rule in rules.items():
        _check_batch_axes(rule, x0, f"shadow rule {name!r}")
    if sample is None:
        sampled = set(range(1, steps + 1))
    else:
        try:
            sampled = {int(k) for k in sample}
        except (TypeError, ValueError):
            raise TypeError(f"sample must be a sequence of step numbers; got {sample!r}") from None
        outside = sorted(k for k in sampled if not 1 <= k <= steps)
        if outside:
            raise ValueError(f"sample holds step {outside[0]}, outside 1 .. steps = 1 .. {steps}")
    if isinstance(eps, Mapping):
        missing = [n for n in rules if n not in eps]
        extra = [n for n in eps if n not in rules]
        if missing or extra:
            raise ValueError(
                f"eps as a dict needs one grid unit per shadow rule {list(rules)}; "
                + (f"missing {missing}" if missing else f"unknown {extra}")
            )
        eps_of = dict(eps)
    elif eps is None or _array.is_scalar(eps) or _array.is_array(eps):
        eps_of = {n: eps for n in rules}
    else:
        raise TypeError(f"eps must be a number, an array, a dict {{name: eps}} or None; got {type(eps).__name__}")
    for n, e in eps_of.items():
        if _array.is_scalar(e) and not (math.isfinite(e) and e > 0):
            raise ValueError(f"eps for {n!r} must be a finite number > 0; got {e!r}")
    if reference is None:
        reference = "sgd"  # the ratios are None when no shadow has that name
    elif not isinstance(reference, str):
        raise TypeError(f"reference must be the name of a shadow rule or None; got {reference!r}")
    elif reference not in rules:
        from .rules._base import suggest

        raise ValueError("shadow: " + suggest(reference, list(rules), "reference (a shadow rule's name)"))
    if not _array.is_bool(keep_directions):
        raise TypeError(f"keep_directions must be True or False; got {keep_directions!r}")

    state = trajectory_rule.init(x0)
    states = {n: r.init(x0) for n, r in rules.items()}
    takes_step = _takes_step(function.grad)
    batched = x0.ndim > 1
    x = x0
    xs, losses = [x], [value_at(xp, function, x)]
    records: list[dict] = []
    directions: dict[int, dict[str, Any]] = {}
    stopped = None

    for k in range(1, steps + 1):
        g = grad_at(function, x, k - 1, takes_step)
        if not bool(xp.all(xp.isfinite(g))):
            stopped = f"the gradient at x_{k - 1} is not finite"
            break
        dirs = {}
        for n, rule in rules.items():
            x_shadow, states[n] = rule.step(x, g, states[n])
            dirs[n] = x_shadow - x
        if k in sampled:
            if keep_directions:
                directions[k] = dict(dirs)
            stats = {n: _direction_stats(xp, function, x, u, g, eps_of[n], line_search_points) for n, u in dirs.items()}
            ref = stats.get(reference)
            for n, st in stats.items():
                ratio = None
                if ref is not None:
                    ratio = st["sharpness"] / xp.abs(ref["sharpness"])
                row = {"step": k, "rule": n, **st, "ratio_to_sgd": ratio}
                records.append({c: (row[c] if c in ("step", "rule") else _scalarize(row[c], batched)) for c in SHADOW_COLUMNS})
        x, state = trajectory_rule.step(x, g, state)
        loss = value_at(xp, function, x)
        if not (bool(xp.all(xp.isfinite(x))) and bool(xp.all(xp.isfinite(loss)))):
            stopped = f"x_{k} or its loss is not finite"
            break
        xs.append(x)
        losses.append(loss)

    return ShadowResult(
        trajectory_rule=trajectory_rule,
        function=function,
        names=tuple(rules),
        x=xp.stack(xs),
        loss=xp.stack(losses),
        records=tuple(records),
        directions=directions,
        stopped=stopped,
    )


def _direction_stats(xp, f, x, u, g, eps, points) -> dict[str, Any]:
    model = model_reduction(f, x, u, g=g)
    out = {
        "sharpness": model.sharpness,
        "correlation": model.correlation,
        "model_reduction": model.reduction,
        "model_step": model.step,
        "line_search_reduction": None,
        "line_search_step": None,
        "line_search_eps": None,
    }
    if eps is not None:
        ls = line_search(f, x, u, eps, points=points)
        out.update(line_search_reduction=ls.reduction, line_search_step=ls.best_step, line_search_eps=ls.eps)
    out.update(direction_norms(u))
    return out
