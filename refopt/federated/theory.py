"""Closed forms for federated schemes on a deterministic clock: what a simulation must match.

Host-side module: exact :class:`fractions.Fraction` arithmetic; NumPy is used only for the
eigenvalues of the stability analysis (:func:`spectral_radius`). Optima given as arrays are
combined with array-API arithmetic (:func:`fixed_point`).

Reference: Fraboni et al., JMLR 2023, arXiv:2206.10189 (the framework, the weights, the surrogate objective); the
closed forms below follow from its definitions for deterministic task times.

Framework. The server step is ``θ^{n+1} = θ^n + η_g Σ_i ω_i(n) Δ_i(θ^{ρ_i(n)})`` with
``ω_i(n) = d_i · 1[i ∈ S_n]``. With ``f_i = P(i ∈ S_n)`` the long-run participation frequency,
the expected weight is ``q_i = d_i f_i`` and the scheme optimises the surrogate
``L̃ = Σ_i q̃_i L_i``, ``q̃_i = q_i / Σ_j q_j``. The weights are

* ``"identical"``: ``d_i = 1`` (FedAsync, FedFix), ``1/c`` (FedBuff), ``1/M`` (FedAvg);
* ``"unbiased"``: ``d_i = p_i / f_i`` so that ``q_i = p_i`` (the authors' code's ``*_weight`` schemes):
  FedAvg ``p_i``; FedAsync ``p_i τ_i Σ_j 1/τ_j``; FedFix ``p_i ⌈τ_i/Δt⌉``; FedBuff ``p_i / f̂_i``.

Closed forms (deterministic task times ``τ_i``, all clients starting at ``t = 0``):

========== ============================ ================================ ==================
scheme     ``f_i``                      mean delay                       steps per time
========== ============================ ================================ ==================
fedavg     ``1``                        ``0``                            ``1 / max τ``
fedasync   ``(1/τ_i) / Σ_j 1/τ_j``      ``τ_i Σ_{j≠i} 1/τ_j``            ``Σ_j 1/τ_j``
fedfix     ``1 / ⌈τ_i/Δt⌉``             ``⌈τ_i/Δt⌉ − 1`` (exactly)       ``1 / Δt``
fedbuff    from the periodic schedule   from the periodic schedule       from the schedule
========== ============================ ================================ ==================

FedBuff (the authors' variant) has no closed form; its deterministic schedule is eventually
periodic (the state -- each client's remaining time and the age of its model -- takes finitely
many values), so the stationary ``f_i``, delays and throughput are computed *exactly* from the
detected cycle. ``horizon=`` instead measures them on the finite schedule ``[0, horizon]``,
which is what the authors' code does for its ``FedBuff weight`` mode (a look-ahead on its precomputed schedule).

Example (M = 10, F-80): FedAsync slowest client ``f = 0.0470``, mean delay ``20.28``;
fastest ``0.2350`` and ``3.26``; ``Σ 1/τ_j = 21.28``. Quadratic fixed points ``Σ q̃_i θ_i*`` with
``θ_i* = i`` and identical weights: FedAsync 5.9635, FedFix-0.5 5.3571, FedFix-0.8 5.1176,
FedFix-0.2 5.978, FedBuff-5 5.85; with unbiased weights always ``Σ p_i θ_i* = 4.5``.
"""

from __future__ import annotations

import itertools
import math
import numbers
from fractions import Fraction

from ..rules._base import suggest
from .clock import FEDBUFF_VARIANTS, _check, _events, schedule, to_fraction

__all__ = [
    "WEIGHTS",
    "participation",
    "mean_delays",
    "max_delays",
    "steps_per_time",
    "multipliers",
    "expected_weights",
    "surrogate_weights",
    "fixed_point",
    "async_exponential",
    "async_f0_threshold",
    "spectral_radius",
    "stability_threshold",
    "periodic_schedule",
]

WEIGHTS = ("identical", "unbiased")


# --------------------------------------------------------------------------- helpers
def _prep(scheme, times, delta_t, buffer, variant="fraboni"):
    # reuse the clock's validation (horizon is irrelevant here: pass 1)
    taus, _, dt, c = _check(scheme, times, 1, delta_t, buffer, variant)
    return taus, dt, c


def _ceil_div(a: Fraction, b: Fraction) -> int:
    return -((-a) // b)


def _importance(p, M: int) -> tuple[Fraction, ...]:
    if p is None:
        return (Fraction(1, M),) * M
    if isinstance(p, str) or not hasattr(p, "__len__"):
        raise TypeError(f"p must be a sequence of {M} client importances, got {p!r}")
    vals = list(p.tolist() if hasattr(p, "tolist") else p)
    if len(vals) != M:
        raise ValueError(f"p has {len(vals)} entries but there are {M} clients; give one importance per client")
    ps = tuple(to_fraction(v, f"p[{i}]", positive=False) for i, v in enumerate(vals))
    if any(v < 0 for v in ps) or sum(ps) == 0:
        raise ValueError(f"p must be non-negative with a positive sum, got {vals!r}")
    s = sum(ps)
    return tuple(v / s for v in ps)


def periodic_schedule(scheme, times, *, delta_t=None, buffer=None, max_steps: int = 20_000):
    """The eventually periodic part of a deterministic schedule: ``(cycle_events, cycle_time)``.

    The state after step ``n`` at time ``t`` is, per client, (time left on its task, ``n`` − the
    step of the model it works on); when a state repeats, the steps in between repeat forever.
    ``cycle_events`` are those steps (with their original step numbers) and ``cycle_time`` the
    simulated time they span. Works for every scheme (FedBuff: the authors' variant). Raises
    ``ValueError`` when no state repeats within ``max_steps`` steps (e.g. FedAsync with F-80,
    whose period is the least common multiple of the 10 task times).
    """
    taus, dt, c = _prep(scheme, times, delta_t, buffer)
    M = len(taus)
    restart = [Fraction(0)] * M
    version = [0] * M
    seen = {tuple((taus[i], 0) for i in range(M)): (0, Fraction(0))}
    events = []
    for e in itertools.islice(_events(scheme, taus, None, dt, c, "fraboni"), max_steps):
        events.append(e)
        n, t = e.step, e.time
        for i in e.clients:
            restart[i] = t
            version[i] = n
        state = tuple((restart[i] + taus[i] - t, n - version[i]) for i in range(M))
        if state in seen:
            n0, t0 = seen[state]
            return events[n0:n], t - t0
        seen[state] = (n, t)
    raise ValueError(f"scheme {scheme!r}: the schedule did not become periodic within max_steps={max_steps} "
                     "steps; measure on a finite horizon instead (horizon=...)")


def _measured(scheme, taus, dt, c, variant, horizon):
    from .clock import measured_mean_delays, measured_participation

    ev = schedule(scheme, taus, horizon=horizon, delta_t=dt, buffer=c, variant=variant)
    if not ev:
        raise ValueError(f"horizon={horizon!r} contains no server step")
    return ev, measured_participation(ev, len(taus)), measured_mean_delays(ev, len(taus))


def _fedbuff_stats(taus, dt, c, variant, horizon):
    """(f, mean delay, max delay, steps per time) for FedBuff, exact cycle or measured."""
    M = len(taus)
    if horizon is not None:
        ev, f, d = _measured("fedbuff", taus, dt, c, variant, horizon)
        mx = [max((dl for e in ev for i, dl in zip(e.clients, e.delays) if i == k), default=None) for k in range(M)]
        return f, d, tuple(mx), Fraction(len(ev)) / to_fraction(horizon, "horizon")
    if variant != "fraboni":
        raise ValueError("the exact stationary FedBuff statistics exist for variant='fraboni'; "
                         f"for variant={variant!r} pass horizon=... to measure them on a schedule")
    cyc, T = periodic_schedule("fedbuff", taus, buffer=c)
    from .clock import measured_mean_delays, measured_participation

    mx = [max((dl for e in cyc for i, dl in zip(e.clients, e.delays) if i == k), default=None) for k in range(M)]
    return measured_participation(cyc, M), measured_mean_delays(cyc, M), tuple(mx), Fraction(len(cyc)) / T


def _check_variant(variant):
    if variant not in FEDBUFF_VARIANTS:
        raise ValueError(suggest(str(variant), FEDBUFF_VARIANTS, "FedBuff variant"))


# --------------------------------------------------------------------------- closed forms
def participation(scheme, times, *, delta_t=None, buffer=None, variant="fraboni", horizon=None):
    """Long-run participation frequency ``f_i = P(i ∈ S_n)`` of each client, exact."""
    _check_variant(variant)
    taus, dt, c = _prep(scheme, times, delta_t, buffer, variant)
    if scheme == "fedavg":
        return (Fraction(1),) * len(taus)
    if scheme == "fedasync":
        lam = sum(1 / t for t in taus)
        return tuple((1 / t) / lam for t in taus)
    if scheme == "fedfix":
        return tuple(Fraction(1, _ceil_div(t, dt)) for t in taus)
    return _fedbuff_stats(taus, dt, c, variant, horizon)[0]


def mean_delays(scheme, times, *, delta_t=None, buffer=None, variant="fraboni", horizon=None):
    """Long-run mean delay (in server steps) of each client's updates, exact."""
    _check_variant(variant)
    taus, dt, c = _prep(scheme, times, delta_t, buffer, variant)
    if scheme == "fedavg":
        return (Fraction(0),) * len(taus)
    if scheme == "fedasync":
        lam = sum(1 / t for t in taus)
        return tuple(t * (lam - 1 / t) for t in taus)
    if scheme == "fedfix":
        return tuple(Fraction(_ceil_div(t, dt) - 1) for t in taus)
    return _fedbuff_stats(taus, dt, c, variant, horizon)[1]


def max_delays(scheme, times, *, delta_t=None, buffer=None, variant="fraboni", horizon=None):
    """Largest delay of each client: FedAvg 0, FedFix ``⌈τ_i/Δt⌉ − 1`` (exact), FedBuff from the
    periodic schedule (or measured on ``horizon``). FedAsync has no closed form here: it is
    measured on ``[0, horizon]`` (``horizon`` required; F-80, M = 10: 25 for the slowest client)."""
    _check_variant(variant)
    taus, dt, c = _prep(scheme, times, delta_t, buffer, variant)
    if scheme == "fedavg":
        return (0,) * len(taus)
    if scheme == "fedfix":
        return tuple(_ceil_div(t, dt) - 1 for t in taus)
    if scheme == "fedbuff":
        return _fedbuff_stats(taus, dt, c, variant, horizon)[2]
    if horizon is None:
        raise ValueError("FedAsync's maximum delay has no closed form here; pass horizon=... to measure it")
    ev = schedule(scheme, taus, horizon=horizon)
    return tuple(max((dl for e in ev for i, dl in zip(e.clients, e.delays) if i == k), default=None)
                 for k in range(len(taus)))


def steps_per_time(scheme, times, *, delta_t=None, buffer=None, variant="fraboni", horizon=None):
    """Server steps per unit of simulated time : ``1/max τ``, ``Σ 1/τ_j``, ``1/Δt``."""
    _check_variant(variant)
    taus, dt, c = _prep(scheme, times, delta_t, buffer, variant)
    if scheme == "fedavg":
        return 1 / max(taus)
    if scheme == "fedasync":
        return sum(1 / t for t in taus)
    if scheme == "fedfix":
        return 1 / dt
    return _fedbuff_stats(taus, dt, c, variant, horizon)[3]


def multipliers(scheme, times, *, weights="identical", p=None, delta_t=None, buffer=None,
                variant="fraboni", horizon=None):
    """Per-client multipliers ``d_i`` (module docstring), ``ω_i(n) = d_i 1[i ∈ S_n]``.

    ``weights="identical"``: 1 (FedAsync, FedFix), ``1/c`` (FedBuff), ``1/M`` (FedAvg).
    ``weights="unbiased"``: ``p_i / f_i`` (so ``E ω_i = p_i``); ``p`` defaults to uniform ``1/M``.
    """
    if weights not in WEIGHTS:
        raise ValueError(suggest(str(weights), WEIGHTS, "weights"))
    _check_variant(variant)
    taus, dt, c = _prep(scheme, times, delta_t, buffer, variant)
    M = len(taus)
    ps = _importance(p, M)
    if weights == "identical":
        one = {"fedavg": Fraction(1, M), "fedbuff": Fraction(1, c) if c else None}.get(scheme, Fraction(1))
        return (one,) * M
    f = participation(scheme, taus, delta_t=dt, buffer=c, variant=variant, horizon=horizon)
    if any(v == 0 for v in f):
        raise ValueError("unbiased weights need every client to take part; client "
                         f"{f.index(0)} never does (lengthen the horizon)")
    return tuple(pi / fi for pi, fi in zip(ps, f))


def expected_weights(scheme, times, *, weights="identical", p=None, delta_t=None, buffer=None,
                     variant="fraboni", horizon=None):
    """Expected aggregation weights ``q_i = E ω_i(n) = d_i f_i``; ``η_eff = η_g Σ_i q_i``."""
    kw = dict(delta_t=delta_t, buffer=buffer, variant=variant, horizon=horizon)
    d = multipliers(scheme, times, weights=weights, p=p, **kw)
    f = participation(scheme, times, **kw)
    return tuple(di * fi for di, fi in zip(d, f))


def surrogate_weights(scheme, times, *, weights="identical", p=None, delta_t=None, buffer=None,
                      variant="fraboni", horizon=None):
    """Normalised expected weights ``q̃_i = q_i / Σ_j q_j`` of the surrogate objective."""
    q = expected_weights(scheme, times, weights=weights, p=p, delta_t=delta_t, buffer=buffer,
                         variant=variant, horizon=horizon)
    s = sum(q)
    return tuple(v / s for v in q)


def fixed_point(scheme, times, optima, *, weights="identical", p=None, delta_t=None, buffer=None,
                variant="fraboni", horizon=None):
    """Quadratic fixed point ``θ̄ = Σ_i q̃_i θ_i*`` (``A_i = I``, any ``K``, ``η_l``).

    ``optima``: one optimum per client -- numbers (returns a Python float, computed exactly
    first), or an array of shape ``(M, ...)`` (returns an array in its namespace and dtype).
    """
    qt = surrogate_weights(scheme, times, weights=weights, p=p, delta_t=delta_t, buffer=buffer,
                           variant=variant, horizon=horizon)
    M = len(qt)
    from .. import _array

    if _array.is_array(optima):
        _array.namespace(optima)  # a supported array backend (raises otherwise)
        if optima.ndim < 1 or optima.shape[0] != M:
            raise ValueError(f"optima must have a leading axis of {M} clients, got shape {tuple(optima.shape)}")
        total = optima[0, ...] * float(qt[0])
        for i in range(1, M):
            total = total + optima[i, ...] * float(qt[i])
        return total
    if isinstance(optima, str) or not hasattr(optima, "__len__"):
        raise TypeError(f"optima must be a sequence of {M} numbers or an (M, ...) array, got {optima!r}")
    vals = list(optima)
    if len(vals) != M:
        raise ValueError(f"optima has {len(vals)} entries but there are {M} clients")
    xs = [to_fraction(v, f"optima[{i}]", positive=False) for i, v in enumerate(vals)]
    return float(sum(q * x for q, x in zip(qt, xs)))


def async_exponential(rates):
    """FedAsync with ``T_i ~ Exp(λ_i)`` per task: ``(f_i, mean delay_i, Λ)``.

    The per-step winner is i.i.d. ``Cat(λ/Λ)``: ``f_i = λ_i/Λ``; the delay is Geometric with
    success ``π_i = λ_i/Λ``, mean ``(Λ − λ_i)/λ_i``; ``Λ = Σ λ_j`` steps per unit time.
    """
    if isinstance(rates, str) or not hasattr(rates, "__len__") or len(rates) == 0:
        raise ValueError(f"rates must be a non-empty sequence of positive numbers, got {rates!r}")
    lam = [to_fraction(r, f"rates[{i}]") for i, r in enumerate(rates)]
    L = sum(lam)
    return tuple(v / L for v in lam), tuple((L - v) / v for v in lam), L


# --------------------------------------------------------------------------- stability
def async_f0_threshold(clients: int) -> float:
    """F-0 FedAsync with unbiased weights (``d = 1``): ``x_{n+1} = x_n − a x_{n−(M−1)}`` is stable
    iff ``0 < a < 2 sin(π / (2(2M − 1)))`` (0.3473 / 0.1652 / 0.0805 for M = 5 / 10 / 20)."""
    if isinstance(clients, bool) or not isinstance(clients, numbers.Integral) or clients < 1:
        raise ValueError(f"clients must be a positive integer, got {clients!r}")
    return 2.0 * math.sin(math.pi / (2 * (2 * clients - 1)))


def _period_steps(scheme, times, weights, p, delta_t, buffer):
    cyc, _ = periodic_schedule(scheme, times, delta_t=delta_t, buffer=buffer)
    d = multipliers(scheme, times, weights=weights, p=p, delta_t=delta_t, buffer=buffer)
    steps = [[(float(d[i]), e.step - 1 - s) for i, s in zip(e.clients, e.started)] for e in cyc]
    D = max((lag for st in steps for _, lag in st), default=0)
    return steps, D


def spectral_radius(scheme, times, a, *, weights="unbiased", p=None, delta_t=None, buffer=None) -> float:
    """Spectral radius of the period map of the homogeneous scalar quadratic.

    Model: ``A_i = I``, all ``θ_i* = 0``; with ``a = η_g φ``, ``φ = 1 − (1 − η_l)^K``, a step is
    ``x_n = x_{n−1} − a Σ_{i∈S_n} d_i x_{ρ_i(n)}``. Over one period of the (eventually periodic)
    schedule this is a linear map on ``(x_n, …, x_{n−D})``; the scheme is stable iff its spectral
    radius is ``< 1``. (With curvature ``λ`` replace ``φ`` by ``1 − (1 − η_l λ)^K``.)
    """
    a = float(to_fraction(a, "a", positive=False))
    steps, D = _period_steps(scheme, times, weights, p, delta_t, buffer)
    return _radius(steps, D, a)


def _radius(steps, D, a):
    import numpy as np  # host-side eigenvalues

    P = np.eye(D + 1)
    for st in steps:
        S = np.zeros((D + 1, D + 1))
        S[0, 0] = 1.0
        for w, lag in st:
            S[0, lag] -= a * w
        S[1:, :-1] += np.eye(D)  # shift history
        P = S @ P
    return float(np.max(np.abs(np.linalg.eigvals(P))))


def stability_threshold(scheme, times, *, weights="unbiased", p=None, delta_t=None, buffer=None,
                        a_max: float = 4.0, tol: float = 1e-4) -> float:
    """Edge ``a*`` of the stable interval ``(0, a*)`` of the homogeneous quadratic.

    FedAvg: ``2 / Σ_i d_i`` (``= 2`` for unbiased weights). Otherwise: scan the spectral radius
    of the period map (:func:`spectral_radius`) on a grid of ``a`` up to ``a_max``, then bisect
    the first crossing to ``tol``. The stable set of a heterogeneous periodic schedule need not
    be an interval: this is the edge of the piece that starts at ``a = 0+``.
    Returns ``inf`` if every grid point up to ``a_max`` is stable.
    """
    d = multipliers(scheme, times, weights=weights, p=p, delta_t=delta_t, buffer=buffer)
    if scheme == "fedavg":
        return 2.0 / float(sum(d))

    steps, D = _period_steps(scheme, times, weights, p, delta_t, buffer)

    def rho(a):
        return _radius(steps, D, a)

    grid = [a_max * k / 400 for k in range(1, 401)]
    lo = 0.0
    for g in grid:
        if rho(g) >= 1.0:
            hi = g
            while hi - lo > tol:
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if rho(mid) < 1.0 else (lo, mid)
            return 0.5 * (lo + hi)
        lo = g
    return math.inf
