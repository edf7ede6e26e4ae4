"""An exact simulated clock for federated schemes: who is aggregated when, on which model.

Host-side module: it may import NumPy (only to draw random client times) and uses
:class:`fractions.Fraction` for every time, so there is no floating-point window hazard.
No model parameters are touched here; :mod:`refopt.federated.simulate` replays the
schedule with array-API arithmetic.

Reference: Fraboni et al., JMLR 2023, arXiv:2206.10189, and the authors' code
``Accenture/Labs-Federated-Learning`` (branch ``asynchronous_FL``): client times and event semantics.

Client times
------------
Every task of client ``i`` (``K`` local steps, whatever ``K`` is) takes a fixed time ``τ_i``;
all clients start at ``t = 0`` from the initial model ``θ^0``; there is no communication time.
:func:`client_times` builds the ``τ_i``:

* ``"F-X"`` -- the paper's linear spread, "the fastest client is X % faster than the slowest"
  (Fraboni et al.'s experiments)::

      τ_i = 1 − i · (X/100) / (M − 1),     i = 0 .. M−1

  so client 0 is the slowest (``τ_0 = 1``) and client ``M−1`` the fastest (``1 − X/100``).
  ``"F-80"`` gives ``1, 41/45, …, 1/5`` *exactly* (the authors' float code gets
  ``0.19999999999999996`` for the last one -- with accumulated float times their FedFix windows then miss some of that client's
  completions, so it takes part in about 79 % of the Δt = 0.2 windows instead of all; exact
  rational times avoid it).
* ``"exp"`` -- ``τ_i ~ Exp(1)`` (mean 1), one draw per client; ``"half_normal"`` --
  ``τ_i = |N(0, 1)|`` (the per-user duration model of facebookresearch/FLSim). Drawn on the host with
  ``numpy.random.default_rng(seed)`` and converted exactly with ``Fraction(float)``.
* a sequence of ``M`` positive finite numbers. ``int``/``Fraction``/``Decimal`` are exact;
  a ``float`` is read as the shortest decimal that prints as it (``0.2`` means ``1/5``,
  ``Fraction(repr(x))``), because that is what a person typing ``0.2`` means; strings such as
  ``"1/5"`` are accepted as well.

Event semantics
---------------
Server step ``n`` (1-based) aggregates the updates of the clients in ``S_n`` into ``θ^{n-1}`` and
produces ``θ^n``. A client in ``S_n`` started its work from ``θ^{ρ}`` (``ρ`` = ``started``); its
delay (staleness) is ``n − 1 − ρ``. Simultaneous completions are ordered by client index.

``"fedavg"``
    step ``n`` at ``n · max_j τ_j``; ``S_n`` = all clients; everybody waits for the slowest and
    restarts from ``θ^n``; delay 0.
``"fedasync"``
    one step per client completion; the finisher immediately restarts from the new model; the
    others keep working on their stale model. Clients finishing at the same instant become
    consecutive steps, lowest index first.
``"fedfix"`` (window ``Δt``)
    step ``n`` at ``n · Δt`` -- *every* window is a server step, even an empty one;
    ``S_n`` = the clients whose completion time is ``≤ n Δt`` and that have not been aggregated
    yet. Finished clients idle until the window end, then restart from ``θ^n`` at ``n Δt``;
    unfinished clients keep computing on their stale model (no drop, no partial work).
``"fedbuff"`` (buffer ``c``), ``variant="fraboni"`` (default; the authors' variant)
    a step happens at the time of the ``c``-th earliest pending completion; ``S_n`` = the ``c``
    clients with the earliest completion times (ties by index). Buffered clients wait until the
    buffer is full, then all ``c`` restart from ``θ^n`` at that time; others keep working.
``"fedbuff"``, ``variant="nguyen"`` (Nguyen et al., AISTATS 2022, arXiv:2106.06639)
    every finished client is handed the *current* model at once and restarts (constant
    concurrency ``M``); its update waits in the buffer; when the ``c``-th update arrives the server
    steps, and the client whose arrival filled the buffer restarts from the new model. A fast
    client may then appear more than once in the same buffer (``clients`` repeats its index).

With ``buffer = 1`` both FedBuff variants reduce to ``"fedasync"``; FedFix with
``Δt ≥ max τ_i`` has FedAvg's steps (same ``clients`` and ``started``, times ``n Δt``).

The horizon is a simulated-time limit: exactly the steps with ``time ≤ horizon`` are returned.
Internally all times are scaled to integer ticks (the least common denominator of the client
times, ``Δt`` and the horizon), so every comparison is integer arithmetic.
"""

from __future__ import annotations

import heapq
import itertools
import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from ..rules._base import suggest

__all__ = [
    "SCHEMES",
    "SPEED_MODELS",
    "FEDBUFF_VARIANTS",
    "ServerEvent",
    "client_times",
    "count_steps",
    "schedule",
    "to_fraction",
    "measured_participation",
    "measured_mean_delays",
]

SCHEMES = ("fedavg", "fedasync", "fedbuff", "fedfix")
SPEED_MODELS = ("F-X", "exp", "half_normal")
FEDBUFF_VARIANTS = ("fraboni", "nguyen")

_FX = re.compile(r"^[Ff]-(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class ServerEvent:
    """One server step (aggregation).

    ``step``: the server step ``n`` (1-based: the n-th aggregation; it produces ``θ^n``).
    ``time``: simulated time of the aggregation (exact).
    ``clients``: the clients whose updates are aggregated, sorted by index (empty for an empty
    FedFix window; a repeated index only in the Nguyen FedBuff variant).
    ``started``: for each of those clients, the server step whose global model it started from
    (0 = the initial model); the delay is ``step − 1 − started``.
    """

    step: int
    time: Fraction
    clients: tuple[int, ...]
    started: tuple[int, ...]

    @property
    def delays(self) -> tuple[int, ...]:
        """Staleness ``n − 1 − ρ_i(n)`` of each aggregated update (0 = fresh)."""
        return tuple(self.step - 1 - s for s in self.started)


# --------------------------------------------------------------------------- conversions
def to_fraction(x, name: str = "value", *, positive: bool = True) -> Fraction:
    """Exact rational value of a user number (see the module docstring for floats)."""
    if isinstance(x, bool) or not isinstance(x, (numbers.Real, Decimal, str)):
        raise TypeError(f"{name} must be a real number, got {x!r} ({type(x).__name__})")
    try:
        if isinstance(x, (Fraction, numbers.Integral)):
            v = Fraction(int(x)) if isinstance(x, numbers.Integral) else x
        elif isinstance(x, Decimal):
            if not x.is_finite():
                raise ValueError
            v = Fraction(x)
        elif isinstance(x, str):
            v = Fraction(x.strip())
        else:
            f = float(x)
            if not math.isfinite(f):
                raise ValueError
            v = Fraction(repr(f))
    except (ValueError, ZeroDivisionError, OverflowError):
        raise ValueError(f"{name} must be a finite real number, got {x!r}") from None
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {x!r}")
    return v


def client_times(model, clients: int, *, seed=None) -> tuple[Fraction, ...]:
    """Exact time ``τ_i`` of one task of each of ``clients`` clients (module docstring).

    ``model``: ``"F-X"`` (e.g. ``"F-80"``, ``0 ≤ X < 100``), ``"exp"``, ``"half_normal"``
    (seeded host draws), or a sequence of ``clients`` positive finite numbers.
    """
    if isinstance(clients, bool) or not isinstance(clients, numbers.Integral) or clients < 1:
        raise ValueError(f"clients must be a positive integer, got {clients!r}")
    M = int(clients)
    if isinstance(model, str):
        m = _FX.match(model.strip())
        if m:
            X = Fraction(m.group(1))
            if not 0 <= X < 100:
                raise ValueError(f"speed model {model!r}: X must be in [0, 100) so that every time is > 0")
            if M == 1:
                return (Fraction(1),)
            return tuple(1 - i * (X / 100) / (M - 1) for i in range(M))
        name = model.strip().lower().replace("-", "_")
        if name in ("exp", "half_normal"):
            import numpy as np  # host-side draw only

            rng = np.random.default_rng(seed)
            out: list[Fraction] = []
            while len(out) < M:
                v = float(rng.exponential(1.0) if name == "exp" else abs(rng.standard_normal()))
                if v > 0.0:  # a draw of exactly 0 (probability ~0) is redrawn
                    out.append(Fraction(v))
            return tuple(out)
        raise ValueError(suggest(model, ["F-80", "F-0", "F-X", "exp", "half_normal"], "speed model")
                         + "; or give a sequence of positive client times")
    if isinstance(model, (bytes, bytearray)) or not isinstance(model, Sequence) and not hasattr(model, "__len__"):
        raise TypeError(f"speed model must be 'F-X', 'exp', 'half_normal' or a sequence of client times, got {model!r}")
    vals = list(model.tolist() if hasattr(model, "tolist") else model)
    if len(vals) != M:
        raise ValueError(f"client times: got {len(vals)} times for clients={M}; give exactly one per client")
    return tuple(to_fraction(v, f"client time [{i}]") for i, v in enumerate(vals))


# --------------------------------------------------------------------------- schedule
def _check(scheme, times, horizon, delta_t, buffer, variant):
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        raise ValueError(suggest(str(scheme), SCHEMES, "scheme"))
    if isinstance(times, str) or not hasattr(times, "__len__") or len(times) == 0:
        raise ValueError(f"times must be a non-empty sequence of positive client times, got {times!r}")
    taus = tuple(to_fraction(t, f"times[{i}]") for i, t in enumerate(times))
    H = to_fraction(horizon, "horizon")
    if scheme == "fedfix":
        if delta_t is None:
            raise ValueError("scheme 'fedfix' needs delta_t (the window length, > 0)")
        dt = to_fraction(delta_t, "delta_t")
    elif delta_t is not None:
        raise ValueError(f"delta_t={delta_t!r} only applies to scheme 'fedfix', not {scheme!r}")
    else:
        dt = None
    if scheme == "fedbuff":
        if buffer is None or isinstance(buffer, bool) or not isinstance(buffer, numbers.Integral):
            raise ValueError(f"scheme 'fedbuff' needs an integer buffer in [1, {len(taus)}], got {buffer!r}")
        if not 1 <= buffer <= len(taus):
            raise ValueError(f"buffer={buffer!r} must be in [1, number of clients = {len(taus)}]")
        if variant not in FEDBUFF_VARIANTS:
            raise ValueError(suggest(str(variant), FEDBUFF_VARIANTS, "FedBuff variant"))
        c = int(buffer)
    elif buffer is not None:
        raise ValueError(f"buffer={buffer!r} only applies to scheme 'fedbuff', not {scheme!r}")
    else:
        c = None
    return taus, H, dt, c


def count_steps(scheme: str, times, *, horizon, delta_t=None, buffer=None, variant: str = "fraboni") -> int:
    """How many server steps :func:`schedule` would list, computed without building it.

    Exact for ``"fedavg"`` (⌊H / max τ⌋), ``"fedasync"`` (Σ_i ⌊H / τ_i⌋) and ``"fedfix"``
    (⌊H / Δt⌋); for ``"fedbuff"`` an upper bound, ⌊Σ_i ⌊H / τ_i⌋ / c⌋ (each step consumes c
    completed tasks, and client i completes at most ⌊H / τ_i⌋ tasks by time H). Exact rational
    arithmetic, O(M) work whatever the horizon: call it to refuse a schedule too large to build.
    """
    taus, H, dt, c = _check(scheme, times, horizon, delta_t, buffer, variant)

    def floor_div(a: Fraction, b: Fraction) -> int:
        return (a.numerator * b.denominator) // (a.denominator * b.numerator)

    if scheme == "fedavg":
        return floor_div(H, max(taus))
    if scheme == "fedfix":
        return floor_div(H, dt)
    tasks = sum(floor_div(H, t) for t in taus)
    return tasks if scheme == "fedasync" else tasks // c


def schedule(scheme: str, times, *, horizon, delta_t=None, buffer=None, variant: str = "fraboni",
             max_steps: int | None = None) -> list[ServerEvent]:
    """All server steps of ``scheme`` with ``time ≤ horizon`` (semantics: module docstring).

    ``times``: one positive task time per client (e.g. from :func:`client_times`).
    ``delta_t``: FedFix window (required for, and only for, ``"fedfix"``).
    ``buffer``: FedBuff buffer size ``c``, ``1 ≤ c ≤ M`` (required for, and only for, ``"fedbuff"``).
    ``variant``: FedBuff semantics, ``"fraboni"`` (default) or ``"nguyen"``.
    ``max_steps``: optional cap on the number of returned steps (a guard for tiny times).
    """
    taus, H, dt, c = _check(scheme, times, horizon, delta_t, buffer, variant)
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, numbers.Integral)
                                  or max_steps < 0):
        raise ValueError(f"max_steps must be a non-negative integer or None, got {max_steps!r}")
    gen = _events(scheme, taus, H, dt, c, variant)
    return list(gen if max_steps is None else itertools.islice(gen, int(max_steps)))


def _events(scheme, taus, H, dt, c, variant):
    """Generate the steps lazily (validated arguments; ``H=None`` means no horizon)."""
    # integer ticks: L = lcm of all denominators
    L = 1
    for v in taus + ((H,) if H is not None else ()) + ((dt,) if dt is not None else ()):
        L = math.lcm(L, v.denominator)
    tk = [int(v * L) for v in taus]
    Hk = math.inf if H is None else int(H * L)
    M = len(tk)
    n = 0

    def event(t: int, pairs) -> ServerEvent:
        pairs = sorted(pairs)
        return ServerEvent(n, Fraction(t, L), tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))

    if scheme == "fedavg":
        T = max(tk)
        while (n + 1) * T <= Hk:
            n += 1
            yield event(n * T, [(i, n - 1) for i in range(M)])
        return

    # pending completions: (finish tick, client, started step)
    heap = [(tk[i], i, 0) for i in range(M)]
    heapq.heapify(heap)

    if scheme == "fedasync" or (scheme == "fedbuff" and c == 1):
        while heap[0][0] <= Hk:
            t, i, s = heapq.heappop(heap)
            n += 1
            yield event(t, [(i, s)])
            heapq.heappush(heap, (t + tk[i], i, n))
        return

    if scheme == "fedfix":
        D = int(dt * L)
        while (n + 1) * D <= Hk:
            n += 1
            end = n * D
            agg = []
            while heap and heap[0][0] <= end:
                _, i, s = heapq.heappop(heap)
                agg.append((i, s))
            yield event(end, agg)
            for i, _ in agg:  # idle until the window end, then restart from θ^n
                heapq.heappush(heap, (end + tk[i], i, n))
        return

    # fedbuff, c >= 2
    if variant == "fraboni":
        while True:
            firsts = heapq.nsmallest(c, heap)
            t = firsts[-1][0]
            if t > Hk:
                return
            for _ in range(c):
                heapq.heappop(heap)
            n += 1
            yield event(t, [(i, s) for _, i, s in firsts])
            for _, i, _s in firsts:
                heapq.heappush(heap, (t + tk[i], i, n))

    # nguyen: restart at once from the current model
    buf: list[tuple[int, int]] = []
    while heap[0][0] <= Hk:
        t, i, s = heapq.heappop(heap)
        buf.append((i, s))
        if len(buf) == c:
            n += 1
            yield event(t, buf)
            buf = []
        heapq.heappush(heap, (t + tk[i], i, n))


# --------------------------------------------------------------------------- measurements
def measured_participation(events: Sequence[ServerEvent], clients: int) -> tuple[Fraction, ...]:
    """Measured participation frequency ``f̂_i`` = (updates of client i) / (server steps), exact.

    Zeros if there are no steps. (In the Nguyen FedBuff variant a repeated index counts twice,
    so ``Σ_i f̂_i = c`` in every FedBuff variant.)
    """
    counts = [0] * clients
    for e in events:
        for i in e.clients:
            counts[i] += 1
    n = len(events)
    return tuple(Fraction(k, n) if n else Fraction(0) for k in counts)


def measured_mean_delays(events: Sequence[ServerEvent], clients: int) -> tuple[Fraction | None, ...]:
    """Measured mean delay of each client's aggregated updates (``None`` if it never took part)."""
    tot = [0] * clients
    cnt = [0] * clients
    for e in events:
        for i, d in zip(e.clients, e.delays):
            tot[i] += d
            cnt[i] += 1
    return tuple(Fraction(t, k) if k else None for t, k in zip(tot, cnt))
