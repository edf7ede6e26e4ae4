r"""Federated server rules as pure functions: FedAvg, FedAsync, FedBuff and FedFix.

The model arithmetic is array-API; the bookkeeping is Host-side NumPy (see "Host-side parts" below).

References: Fraboni et al., JMLR 2023, arXiv:2206.10189 (the unified rule, the weights, FedFix); Nguyen et al.,
AISTATS 2022, arXiv:2106.06639 (FedBuff); Xie, Koyejo & Gupta, arXiv:1903.03934 (FedAsync); McMahan et
al., AISTATS 2017, arXiv:1602.05629, and Fraboni et al., arXiv:2107.12211 (FedAvg and client sampling).

The one rule (Fraboni et al., JMLR 2023)
----------------------------------------
Every scheme of this module is a special case of

    θ^{n+1} = θ^n + η_g · Σ_{i ∈ S_n} ω_i(n) · Δ_i,        Δ_i = U_i(θ^{ρ_i(n)}) − θ^{ρ_i(n)}

where ``U_i(θ)`` is client i's local work (K SGD steps from θ), ``ρ_i(n)`` the version of the
global model client i started from (a stale one in the asynchronous schemes), and ``ω_i(n)``
the aggregation weight. Sign convention: Fraboni's, ``Δ = local − start`` is *added*
(FedBuff/FLSim/FedJAX write ``start − local`` and subtract it; same thing). There is no
normalisation by the realised ``Σ_i ω_i(n)``. :func:`server_update` is this rule, optionally
with server momentum (``v ← β v + Σ ω Δ``, ``θ ← θ + η_g v``, i.e. ``torch.optim.SGD`` with
momentum on the pseudo-gradient ``−Σ ω Δ``).

The weights are ``ω_i(n) = d_i · (scheme factor)`` with a fixed per-client multiplier ``d_i``
(:func:`client_multipliers`):

=========  =====================  ============================================  ==========================
scheme     ``d_i`` identical      ``d_i`` unbiased (``q_i = d_i f_i = p_i``)    scheme factor
=========  =====================  ============================================  ==========================
fedavg     ``1/M``                ``p_i``                                       sampling (:func:`fedavg_weights`)
fedasync   ``1``                  ``p_i τ_i Σ_j 1/τ_j``  (= ``p_i / f_i``)      ``α s(τ)`` if α is given
fedfix     ``1``                  ``p_i ⌈τ_i / Δt⌉``                            1
fedbuff    ``1/c``                ``p_i / f̂_i`` (measured frequencies)          ``s(τ)`` · normalisation
=========  =====================  ============================================  ==========================

``f_i`` is the long-run fraction of server steps in which client i takes part. With the
unbiased multipliers the expected weights are ``q_i = p_i`` and the scheme targets the
federated objective ``Σ p_i L_i``; with identical ones it targets the surrogate
``Σ q̃_i L_i``, ``q̃_i ∝ d_i f_i``.

FedAsync (Xie et al.): ``α_t = α · s(t − τ)`` is recomputed for every update from the
base ``α`` (never multiplied into a stored α, a pitfall of TL-System/plato's implementation). Two forms:
``"mixing"`` ``θ ← (1 − α_t) θ + α_t x_new`` (the paper; it also pulls θ back toward the stale
start) and ``"delta"`` ``θ ← θ + α_t (x_new − x_start)`` (the FedBuff-style delta, = the unified
rule with ``ω = α_t``).

Staleness functions (``τ ≥ 0`` server steps): ``"constant"`` ``s = 1``;
``"polynomial"`` ``s = (1 + τ)^{−a}`` (default ``a = 0.5``: FedBuff's ``1/√(1+τ)``);
``"hinge"`` ``s = 1`` if ``τ ≤ b`` else ``1 / (a (τ − b) + 1)`` (defaults ``a = 10, b = 4``, the
FedAsync paper's setting; Plato uses ``a = 1, b = 10``).

FedBuff normalisation: the buffer's ``c`` updates get
``ω_k = d_k s(τ_k) · ν`` with ``ν = 1`` for ``"buffer"`` (Nguyen et al.'s ``Δ̄/K``, since the
identical ``d = 1/c``), ``ν = c / Σ_k s(τ_k)`` for ``"weights"`` (FedScale's division by the sum
of the staleness weights) and ``ν = c`` for ``"none"`` (FLSim's ``WEIGHTED_SUM``: the ``1/c`` is
folded into the server learning rate). With ``s ≡ 1`` ``"buffer"`` and ``"weights"`` coincide.

FedAvg client sampling (Fraboni et al., arXiv:2107.12211; all unbiased, ``E ω_i = p_i``): ``"full"`` ``ω = p``;
``"md"`` ``m`` draws from ``Cat(p)``, ``ω_i = (#draws of i)/m``; ``"uniform"`` ``m`` of ``M``
without replacement, ``ω_i = (M/m) p_i 1[i ∈ S]``. ``normalise_selected=True`` instead
renormalises ``p`` over the sampled set (McMahan et al.'s later listing, Flower, FedJAX): it
sums to 1 but is biased for unequal ``p``.

Host-side parts: the weights, staleness factors and multipliers are host numbers (Python floats or
float64 NumPy vectors; this module imports NumPy and :mod:`fractions` for them). The two
functions that touch model parameters, :func:`server_update` and :func:`fedasync_update`, are
array-API code: any library, float32 in gives float32 out, inputs are never written to.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Any, Sequence

import numpy as np

from .. import _array
from .._checks import check_int as _int
from ..rules._base import suggest

__all__ = [
    "SCHEMES",
    "STALENESS",
    "WEIGHTINGS",
    "SAMPLINGS",
    "FEDBUFF_NORMALISATIONS",
    "FEDASYNC_FORMS",
    "staleness_factor",
    "fedasync_alpha",
    "server_update",
    "fedasync_update",
    "fedavg_weights",
    "fedbuff_weights",
    "client_multipliers",
]

SCHEMES = ("fedavg", "fedasync", "fedbuff", "fedfix")
STALENESS = ("constant", "polynomial", "hinge")
WEIGHTINGS = ("identical", "unbiased")
SAMPLINGS = ("full", "md", "uniform")
FEDBUFF_NORMALISATIONS = ("buffer", "weights", "none")
FEDASYNC_FORMS = ("mixing", "delta")

_DEFAULT_A = {"constant": None, "polynomial": 0.5, "hinge": 10.0}
_DEFAULT_B = {"constant": None, "polynomial": None, "hinge": 4.0}


# --------------------------------------------------------------------------- checks
def _choice(fn: str, name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{fn}: {name}: " + suggest(str(value), list(choices), name))
    return value


def _real(fn: str, name: str, value: Any, *, low: float = -math.inf, low_open: bool = False,
          high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a real number; got {value!r}")
    x = float(value)
    ok = math.isfinite(x) and (x > low if low_open else x >= low) and x <= high
    if not ok:
        lo = "" if low == -math.inf else (f" > {low:g}" if low_open else f" >= {low:g}")
        hi = "" if high == math.inf else f" and <= {high:g}"
        raise ValueError(f"{fn}: {name} must be a finite real number{lo}{hi}; got {value!r}")
    return x


def _host_vector(fn: str, name: str, value: Any, length: int | None = None, *, positive: bool = False,
                 nonneg: bool = False) -> np.ndarray:
    """A finite float64 host vector (a copy); ValueError naming ``name`` otherwise."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{fn}: {name} must be a sequence of real numbers; got {value!r}")
    try:
        if _array.is_array(value) and not isinstance(value, np.ndarray):
            arr = _array.host_float64(value, f"{fn}: {name}")
        else:
            arr = np.array([float(v) for v in value], dtype=np.float64) if not isinstance(value, np.ndarray) \
                else np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{fn}: {name} must be a sequence of real numbers; got {value!r} ({exc})") from None
    arr = arr.reshape(-1) if arr.ndim == 0 else arr
    if arr.ndim != 1:
        raise ValueError(f"{fn}: {name} must be one-dimensional; got shape {arr.shape}")
    if length is not None and arr.shape[0] != length:
        raise ValueError(f"{fn}: {name} must have one entry per client ({length}); got {arr.shape[0]}")
    bad = ~np.isfinite(arr)
    if positive:
        bad |= arr <= 0
    elif nonneg:
        bad |= arr < 0
    if bad.any():
        k = int(np.argmax(bad))
        want = "finite and > 0" if positive else ("finite and >= 0" if nonneg else "finite")
        raise ValueError(f"{fn}: {name} must be {want}; entry {k} is {arr[k]!r}")
    return arr


# --------------------------------------------------------------------------- staleness
def staleness_factor(tau: int, kind: str = "constant", *, a: float | None = None, b: float | None = None) -> float:
    """The staleness scaling ``s(τ)`` (a Python float; see the module docstring).

    ``tau``: delay in server steps (integer ``>= 0``); ``kind``: ``"constant"``,
    ``"polynomial"`` ``(1 + τ)^{−a}`` or ``"hinge"`` (``1`` up to ``b``, then ``1/(a(τ − b) + 1)``).
    """
    fn = "staleness_factor"
    kind = _choice(fn, "staleness", kind, STALENESS)
    tau = _int(fn, "tau", tau, 0)
    if kind == "constant":
        return 1.0
    a = _DEFAULT_A[kind] if a is None else _real(fn, "a", a, low=0.0, low_open=kind == "polynomial")
    if kind == "polynomial":
        return float((1.0 + tau) ** (-a))
    b = _DEFAULT_B[kind] if b is None else _real(fn, "b", b, low=0.0)
    return 1.0 if tau <= b else 1.0 / (a * (tau - b) + 1.0)


def fedasync_alpha(alpha: float, tau: int, staleness: str = "constant", *, a: float | None = None,
                   b: float | None = None) -> float:
    """FedAsync's mixing weight ``α_t = α · s(τ)`` (recomputed from the base ``α`` every time)."""
    alpha = _real("fedasync_alpha", "alpha", alpha, low=0.0, low_open=True, high=1.0)
    return alpha * staleness_factor(tau, staleness, a=a, b=b)


# --------------------------------------------------------------------------- parameter updates
def server_update(theta: Any, deltas: Any, weights: Any, *, lr_server: float = 1.0, momentum: float = 0.0,
                  velocity: Any = None) -> tuple[Any, Any]:
    """The unified rule ``θ + η_g Σ_k ω_k Δ_k``, optionally with server momentum.

    ``theta``: the current model, shape ``S`` (any array library); ``deltas``: ``(m, *S)``, one
    delta ``Δ_k = local_k − start_k`` per aggregated update (``m = 0`` is an empty FedFix
    window); ``weights``: ``m`` host numbers ``ω_k``; ``momentum``: β in ``[0, 1)``,
    ``velocity``: the previous ``v`` (None = zeros). Returns ``(θ_new, v_new)``; ``v_new`` is
    None when ``momentum == 0`` (plain rule). The weighted sum is one reduction over the
    leading axis, so a batch of updates costs one kernel.
    """
    fn = "server_update"
    if not _array.is_array(theta) or not _array.is_array(deltas):
        raise TypeError(f"{fn}: theta and deltas must be arrays; got {type(theta).__name__} and {type(deltas).__name__}")
    xp = _array.namespace(theta, deltas, what=f"{fn}: theta and deltas")
    if not _array.is_real_floating(xp, theta.dtype) or deltas.dtype != theta.dtype:
        raise TypeError(
            f"{fn}: theta and deltas must share one real floating dtype; got {_array.dtype_name(theta.dtype)} "
            f"and {_array.dtype_name(deltas.dtype)}"
        )
    if tuple(deltas.shape[1:]) != tuple(theta.shape) or deltas.ndim != theta.ndim + 1:
        raise ValueError(f"{fn}: deltas must have shape (m, *theta.shape) = (m, {tuple(theta.shape)}); "
                         f"got {tuple(deltas.shape)}")
    m = deltas.shape[0]
    w = _host_vector(fn, "weights", weights, m)
    lr = _real(fn, "lr_server", lr_server)
    beta = _real(fn, "momentum", momentum, low=0.0, high=1.0)
    if beta >= 1.0:
        raise ValueError(f"{fn}: momentum must be in [0, 1); got {momentum!r}")
    if m == 0:
        upd = xp.zeros_like(theta)
    else:
        wl = _array.lift(w, deltas)                                  # (m,) in theta's dtype
        wl = xp.reshape(wl, (m,) + (1,) * theta.ndim)
        upd = xp.sum(wl * deltas, axis=0)
    if beta == 0.0 and velocity is None:
        return theta + lr * upd, None
    v = upd if velocity is None else beta * velocity + upd
    return theta + lr * v, v


def fedasync_update(theta: Any, local: Any, start: Any, alpha_t: float, *, form: str = "mixing") -> Any:
    """One FedAsync server update with the mixing weight ``α_t`` (Xie et al.).

    ``"mixing"``: ``(1 − α_t) θ + α_t · local``; ``"delta"``: ``θ + α_t (local − start)``.
    ``theta``, ``local``, ``start``: arrays of one shape and dtype (``start`` is only read by the
    delta form; pass ``None`` for the mixing form if you like).
    """
    fn = "fedasync_update"
    form = _choice(fn, "form", form, FEDASYNC_FORMS)
    a = _real(fn, "alpha_t", alpha_t, low=0.0, high=1.0)
    arrays = (theta, local) if form == "mixing" else (theta, local, start)
    if not all(_array.is_array(x) for x in arrays):
        raise TypeError(f"{fn}: theta, local{'' if form == 'mixing' else ' and start'} must be arrays")
    xp = _array.namespace(*arrays, what=f"{fn}: the models")
    for x in arrays[1:]:
        if tuple(x.shape) != tuple(theta.shape) or x.dtype != theta.dtype:
            raise ValueError(f"{fn}: every model must have theta's shape {tuple(theta.shape)} and dtype "
                             f"{_array.dtype_name(theta.dtype)}; got {tuple(x.shape)} {_array.dtype_name(x.dtype)}")
    del xp
    if form == "mixing":
        return (1.0 - a) * theta + a * local
    return theta + a * (local - start)


# --------------------------------------------------------------------------- host weights
def fedavg_weights(p: Any, *, sampling: str = "full", m: int | None = None, rng: Any = None,
                   normalise_selected: bool = False) -> np.ndarray:
    """FedAvg's aggregation weights ``ω`` (float64 host vector of length M).

    ``p``: client importances (normalised here to sum to 1); ``sampling``: ``"full"``, ``"md"``
    or ``"uniform"`` (``m`` clients per round, drawn with ``rng``, a
    ``numpy.random.Generator`` or an int seed); ``normalise_selected``: renormalise ``p`` over
    the sampled clients instead of the unbiased weights (the biased library convention).
    """
    fn = "fedavg_weights"
    if not isinstance(normalise_selected, (bool, np.bool_)):
        raise TypeError(f"{fn}: normalise_selected must be True or False; got {normalise_selected!r}")
    pv = _host_vector(fn, "p", p, nonneg=True)
    if pv.size == 0 or pv.sum() <= 0:
        raise ValueError(f"{fn}: p must hold at least one positive importance; got {pv.tolist()}")
    pv = pv / pv.sum()
    M = pv.size
    sampling = _choice(fn, "sampling", sampling, SAMPLINGS)
    if sampling == "full":
        if m is not None and m != M:
            raise ValueError(f"{fn}: sampling='full' uses all {M} clients; got m={m!r} (use 'md' or 'uniform')")
        return pv.copy()
    if m is None:
        raise ValueError(f"{fn}: sampling={sampling!r} needs m, the number of clients per round")
    m = _int(fn, "m", m, 1, M if sampling == "uniform" else None)
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(_int(fn, "rng", rng, 0) if rng is not None else None)
    if sampling == "md":
        counts = rng.multinomial(m, pv).astype(np.float64)
        if normalise_selected:
            sel = counts > 0
            return np.where(sel, pv, 0.0) / pv[sel].sum()
        return counts / m
    chosen = rng.choice(M, size=m, replace=False)
    mask = np.zeros(M, dtype=bool)
    mask[chosen] = True
    if normalise_selected:
        return np.where(mask, pv, 0.0) / pv[mask].sum()
    return np.where(mask, (M / m) * pv, 0.0)


def fedbuff_weights(multipliers: Any, taus: Sequence[int], *, staleness: str = "constant", a: float | None = None,
                    b: float | None = None, normalise: str = "buffer") -> np.ndarray:
    """Weights ``ω_k = d_k s(τ_k) ν`` of the ``c`` updates in a full FedBuff buffer.

    ``multipliers``: ``d_k`` of each buffered update (identical: ``1/c``); ``taus``: their
    delays; ``normalise``: ``"buffer"`` (ν = 1, the paper's ``/K``), ``"weights"``
    (ν = c / Σ s(τ_k)) or ``"none"`` (ν = c).
    """
    fn = "fedbuff_weights"
    normalise = _choice(fn, "normalise", normalise, FEDBUFF_NORMALISATIONS)
    d = _host_vector(fn, "multipliers", multipliers, nonneg=True)
    if len(taus) != d.size:
        raise ValueError(f"{fn}: taus must have one delay per buffered update ({d.size}); got {len(taus)}")
    s = np.array([staleness_factor(t, staleness, a=a, b=b) for t in taus], dtype=np.float64)
    c = d.size
    if c == 0:
        return s
    nu = 1.0 if normalise == "buffer" else (c / float(s.sum()) if normalise == "weights" else float(c))
    return d * s * nu


def _fractions(fn: str, name: str, values: Any) -> list[Fraction]:
    out = []
    for k, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{fn}: {name}[{k}] must be a real number; got {v!r}")
        f = v if isinstance(v, Fraction) else (Fraction(int(v)) if isinstance(v, numbers.Integral) else None)
        if f is None:
            x = float(v)
            if not math.isfinite(x):
                raise ValueError(f"{fn}: {name}[{k}] must be finite and > 0; got {v!r}")
            f = Fraction(repr(x))  # 0.2 means 1/5, as in refopt.federated.clock
        if f <= 0:
            raise ValueError(f"{fn}: {name}[{k}] must be finite and > 0; got {v!r}")
        out.append(f)
    return out


def client_multipliers(scheme: str, times: Sequence[Any], *, p: Any = None, weights: Any = "identical",
                       delta_t: Any = None, buffer: int | None = None, frequencies: Any = None) -> np.ndarray:
    """The per-client multipliers ``d_i`` of the module docstring's table (float64 host vector, length M).

    ``scheme`` in :data:`SCHEMES`; ``times``: the clients' task times ``τ_i`` (Fractions are
    exact); ``p``: importances (default uniform ``1/M``; normalised); ``weights``:
    ``"identical"``, ``"unbiased"`` or an explicit sequence of M multipliers (checked and
    returned as is); ``delta_t``: FedFix window; ``buffer``: FedBuff ``c``; ``frequencies``:
    measured participation ``f̂_i`` (needed by unbiased FedBuff, optional for FedAsync, where it
    replaces the deterministic closed form ``(1/τ_i)/Σ_j 1/τ_j``).
    """
    fn = "client_multipliers"
    scheme = _choice(fn, "scheme", scheme, SCHEMES)
    if isinstance(times, (str, bytes)) or not hasattr(times, "__len__") or len(times) == 0:
        raise ValueError(f"{fn}: times must be a non-empty sequence of positive client times; got {times!r}")
    taus = _fractions(fn, "times", times)
    M = len(taus)
    if p is None:
        pv = np.full(M, 1.0 / M)
    else:
        pv = _host_vector(fn, "p", p, M, nonneg=True)
        if pv.sum() <= 0:
            raise ValueError(f"{fn}: p must hold at least one positive importance; got {pv.tolist()}")
        pv = pv / pv.sum()
    if scheme == "fedbuff":
        if buffer is None:
            raise ValueError(f"{fn}: scheme 'fedbuff' needs buffer, an integer in [1, {M}]")
        c = _int(fn, "buffer", buffer, 1, M)
    if scheme == "fedfix":
        if delta_t is None:
            raise ValueError(f"{fn}: scheme 'fedfix' needs delta_t (> 0)")
        dt = _fractions(fn, "delta_t", [delta_t])[0]
    if not isinstance(weights, str):
        return _host_vector(fn, "weights", weights, M, nonneg=True)
    weights = _choice(fn, "weights", weights, WEIGHTINGS)
    if weights == "identical":
        value = {"fedavg": 1.0 / M, "fedasync": 1.0, "fedfix": 1.0}.get(scheme)
        return np.full(M, value if value is not None else 1.0 / c)
    if scheme == "fedavg":
        return pv.copy()
    if scheme == "fedfix":
        return np.array([pv[i] * math.ceil(taus[i] / dt) for i in range(M)], dtype=np.float64)
    if frequencies is None and scheme == "fedasync":
        rate = sum(1 / t for t in taus)
        return np.array([pv[i] * float(taus[i] * rate) for i in range(M)], dtype=np.float64)
    if frequencies is None:
        raise ValueError(f"{fn}: unbiased FedBuff weights p_i / f_i need the measured participation frequencies "
                         "(frequencies=...), e.g. refopt.federated.participation(schedule(...), M)")
    f = _host_vector(fn, "frequencies", [float(x) for x in frequencies], M, nonneg=True)
    zero = (f == 0) & (pv > 0)
    if zero.any():
        k = int(np.argmax(zero))
        raise ValueError(f"{fn}: client {k} never takes part (frequency 0), so no multiplier can make the "
                         "scheme unbiased; lengthen the horizon")
    return np.where(f > 0, pv / np.where(f > 0, f, 1.0), 0.0)
