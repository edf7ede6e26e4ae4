"""Byzantine attacks: what f faulty nodes send, computed from the honest vectors.

Every vector attack has the signature ``attack(honest, f, **params) -> (f, d)``: ``honest`` is the
``(h, d)`` stack of honest vectors (gradients, momenta or models -- the same object the defence
sees), ``f`` the number of Byzantine vectors to produce; unless said otherwise all f
rows are the same vector (the omniscient, "same vector to every node" threat model of ByzFL and
of the MoNNA code).  ``f = 0`` gives a ``(0, d)`` array.  Notation: μ = honest mean,
σ = coordinate-wise standard deviation of the honest vectors (``ddof`` stated).

=========================  ==============================================================
``sign_flipping``          −μ
``scaled_sign_flipping``   −(h/f)·μ   (MoNNA repo ``scaledSF``)
``ipm`` (= ``foe``)        −ε·μ       (inner-product manipulation / Fall of Empires; ε = 2.0 as ByzFL)
``alie``                   μ + sign·z·σ  (A Little Is Enough; z a number or a z rule of :func:`alie_z`)
``mimic``                  a copy of one honest vector
``mimic_heuristic``        mimic with the warm-up heuristic; returns ``(vectors, state)``
``inf`` / ``nan``          all +∞ / all NaN
``gaussian``               N(mean, std²)^d, seeded
``optimal_byzfl``          ByzFL's one-sided line search of the IPM/ALIE factor against the defender
``optimal_monna``          MoNNA's two-sided line search of the ALIE/FOE factor against the defender
                           (``attack="foe"``: the line-searched FOE, ``refopt collab --attack optimal_foe``;
                           the name ``foe`` alone always means the fixed −ε·μ above)
``dissensus``              gossip: per receiving node, ``(h, d)`` (see its docstring)
``label_flipping``         data level: labels y -> K − 1 − y
=========================  ==============================================================

Array API only through :func:`refopt._array.namespace`; float32 in -> float32 out; no write into
the inputs.  Seeded draws (``gaussian``, the mimic heuristic's start vector) come from a host
``numpy.random.Generator`` (:func:`refopt._array.host_generator`) and are moved next to the honest
vectors (:func:`refopt._array.from_host`); ``dissensus`` reads its small (n, n) mixing matrix on the
host in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Callable, Sequence


from refopt import _array
from refopt.preaggregators import as_stack, check_bool, check_int, check_real, compose

__all__ = [
    "sign_flipping",
    "scaled_sign_flipping",
    "ipm",
    "foe",
    "alie",
    "alie_z",
    "mimic",
    "MimicState",
    "mimic_heuristic",
    "inf",
    "nan",
    "gaussian",
    "optimal_byzfl",
    "optimal_monna",
    "line_search_byzfl",
    "line_search_monna",
    "dissensus",
    "label_flipping",
    "names",
    "get",
]


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def _honest(honest: Any, f: Any, where: str, min_rows: int = 1):
    xp, H, h, d = as_stack(honest, where, "honest", min_rows=min_rows)
    f = check_int(f, where, "f")
    return xp, H, h, d, f


def _tile(xp, v, f: int):
    """f copies of the (d,) vector v as a fresh (f, d) array."""
    d = int(v.shape[0])
    if f == 0:
        return xp.zeros((0, d), dtype=v.dtype, device=_array.device(v))
    return xp.asarray(xp.broadcast_to(v[None, :], (f, d)), copy=True)


def _mean(xp, H):
    return xp.mean(H, axis=0)


def _std(xp, H, ddof: int, where: str):
    h = int(H.shape[0])
    if h - ddof <= 0:
        raise ValueError(f"{where}: the standard deviation with ddof={ddof} needs more than {ddof} honest vector(s); got {h}")
    return xp.std(H, axis=0, correction=ddof)


def _full(xp, H, f: int, value: float):
    return xp.full((f, int(H.shape[1])), value, dtype=H.dtype, device=_array.device(H))


# ---------------------------------------------------------------------------------------
# simple attacks
# ---------------------------------------------------------------------------------------


def sign_flipping(honest: Any, f: int) -> Any:
    """Sign flipping: every Byzantine node sends −μ (ByzFL ``SignFlipping``, MoNNA ``signflipping``).

    Example (ByzFL's docstring): honest [[1,2,3],[4,5,6],[7,8,9]] -> [−4, −5, −6].
    """
    xp, H, h, d, f = _honest(honest, f, "sign_flipping")
    return _tile(xp, -_mean(xp, H), f)


def scaled_sign_flipping(honest: Any, f: int) -> Any:
    """Scaled sign flipping: −(h/f)·μ, so that the plain mean of all n = h + f vectors is 0
    (MoNNA repo ``scaledSF``)."""
    xp, H, h, d, f = _honest(honest, f, "scaled_sign_flipping")
    if f == 0:
        return _tile(xp, _mean(xp, H), 0)
    return _tile(xp, _mean(xp, H) * (-float(h) / float(f)), f)


def ipm(honest: Any, f: int, *, epsilon: float = 2.0) -> Any:
    """Inner-product manipulation / Fall of Empires (Xie, Koyejo & Gupta, UAI 2019): −ε·μ.

    Default ε = 2.0 (ByzFL ``InnerProductManipulation(tau=2.0)``); epfml uses 0.1, Garfield 10.
    Example (ByzFL's docstring): honest [[1,2,3],[4,5,6],[7,8,9]], ε = 2 -> [−8, −10, −12].
    (The MoNNA code's line-searched "empire" is (1 − s)·μ: :func:`optimal_monna` with
    ``attack="foe"``.)
    """
    xp, H, h, d, f = _honest(honest, f, "ipm")
    eps = check_real(epsilon, "ipm", "epsilon")
    return _tile(xp, _mean(xp, H) * (-eps), f)


foe = ipm


def alie_z(n: int, f: int, rule: str = "paper") -> float:
    """The z of "A Little Is Enough" from the number of nodes.

    With s = ⌊n/2 + 1⌋ − f supporters needed:

    * ``"paper"`` (Baruch, Baruch & Goldberg 2019): z = Φ⁻¹((n − s)/n);
    * ``"epfml"`` (Karimireddy, He & Jaggi's code): z = Φ⁻¹((n − f − s)/(n − f)).

    Φ⁻¹ is the standard normal quantile (``statistics.NormalDist().inv_cdf``).  Values:
    n = 20, f = 8 -> s = 3, z = 1.036 (paper) / 0.674 (epfml); n = 26, f = 5 -> s = 9,
    z = 0.396 / 0.180.  Raises when the quantile's argument is not in (0, 1) (f too large: no
    supporters are needed, or too small a count).
    """
    n = check_int(n, "alie_z", "n", low=1)
    f = check_int(f, "alie_z", "f")
    if rule not in ("paper", "epfml"):
        from refopt.rules._base import suggest

        raise ValueError("alie_z: " + suggest(rule, ["paper", "epfml"], "z rule"))
    s = (n // 2 + 1) - f
    p = (n - s) / n if rule == "paper" else ((n - f - s) / (n - f) if n > f else math.nan)
    if not (0.0 < p < 1.0) or s <= 0:
        raise ValueError(
            f"alie_z: rule {rule!r} is undefined for n={n}, f={f} (s = floor(n/2 + 1) - f = {s}; "
            f"the normal quantile needs an argument in (0, 1), got {p})"
        )
    return NormalDist().inv_cdf(p)


def alie(honest: Any, f: int, *, z: float | str = 1.5, n: int | None = None, sign: int = 1, ddof: int = 1) -> Any:
    """A Little Is Enough (Baruch, Baruch & Goldberg, NeurIPS 2019): μ + sign·z·σ.

    * ``z``: a number (default 1.5 = ByzFL's τ) or a z rule of :func:`alie_z` -- ``"paper"`` or
      ``"epfml"`` -- evaluated at ``n`` (default h + f) and f.  (Garfield hard-codes 1.035.)
    * ``sign``: +1 (ByzFL, Garfield, MoNNA: μ + zσ, default) or −1 (paper and epfml: μ − zσ).
    * ``ddof``: σ's delta degrees of freedom; 1 (unbiased) as ByzFL's code and MoNNA (ByzFL's
      docstring says 1/n -- the code wins).

    Example (ByzFL's docstring): honest [[1,2,3],[4,5,6],[7,8,9]], z = 1.5, ddof = 1 -> [8.5, 9.5, 10.5].
    """
    xp, H, h, d, f = _honest(honest, f, "alie")
    ddof = check_int(ddof, "alie", "ddof")
    if sign not in (1, -1) or isinstance(sign, bool):
        raise ValueError(f"alie: sign must be +1 or -1; got {sign!r}")
    if isinstance(z, str):
        total = h + f if n is None else check_int(n, "alie", "n", low=1)
        zval = alie_z(total, f, z)
    else:
        if n is not None:
            raise ValueError("alie: n is only used with a z rule ('paper' or 'epfml'); got a numeric z and n")
        zval = check_real(z, "alie", "z")
    sigma = _std(xp, H, ddof, "alie")
    return _tile(xp, _mean(xp, H) + sigma * (float(sign) * zval), f)


def mimic(honest: Any, f: int, *, index: int = 0) -> Any:
    """Mimic (Karimireddy, He & Jaggi, ICLR 2022): every Byzantine node copies honest vector
    ``index`` (ByzFL ``Mimic(epsilon=index)``, default 0).  Example (ByzFL's docstring): -> [1, 2, 3].
    For the warm-up heuristic that chooses the index, see :func:`mimic_heuristic`."""
    xp, H, h, d, f = _honest(honest, f, "mimic")
    index = check_int(index, "mimic", "index")
    if index >= h:
        raise ValueError(f"mimic: index must be in [0, {h - 1}] (h = {h} honest vectors); got {index}")
    return _tile(xp, H[index, :], f)


@dataclass(frozen=True)
class MimicState:
    """Explicit state of :func:`mimic_heuristic`.

    ``t``: number of calls so far; ``mu``: running mean of the honest means (``(d,)`` or None before
    the first call); ``z``: current unit direction (``(d,)`` or None); ``target``: the honest index
    chosen last (None before any choice).
    """

    t: int = 0
    mu: Any = None
    z: Any = None
    target: int | None = None


def _unit(xp, v, fallback):
    nrm = xp.sqrt(xp.sum(v * v))
    ok = nrm > 0
    return xp.where(ok, v / xp.where(ok, nrm, xp.ones_like(nrm)), fallback)


def mimic_heuristic(
    honest: Any,
    f: int,
    state: MimicState | None = None,
    *,
    warmup: int = 1,
    variant: str = "epfml",
    seed: int = 0,
) -> tuple[Any, MimicState]:
    """Mimic with the warm-up heuristic that picks whom to copy; returns ``(vectors, state)``.

    The attacker estimates the honest mean μ and the top principal direction z of the honest
    vectors by an online power iteration, then copies the honest vector most aligned with z (the
    node whose data pulls most away from the rest).  At call t (t = 0, 1, ...), with ā_t the honest
    mean of this call::

        t = 0:   μ = ā_0;  z₀ ~ N(0, I_d) (seeded);  c = Σ_i <x_i − μ, z₀>(x_i − μ);  z = c/‖c‖
        0 < t < warmup:   μ ← (t μ + ā_t)/(t + 1);  c = Σ_i <x_i − μ, z>(x_i − μ);
                          z ← (t z + c/‖c‖)/(t + 1);  z ← z/‖z‖

    Target choice, by ``variant``:

    * ``"epfml"`` (Karimireddy et al.'s code, ``MimicVariantAttacker``; warm-up default 1):
      during the warm-up the target is argmax_i <x_i, z>; afterwards that index is **fixed**.
    * ``"byzfl"`` (ByzFL ``WorkerWithMaxVariance`` and the MoNNA repo's ``mimic_heuristic``,
      which used warmup = 100): during the warm-up copy honest vector 0; afterwards the target is
      argmax_i |<x_i, z>| **recomputed at every call** with z frozen.

    Ties go to the lowest index.  A zero c (all honest vectors equal) keeps the previous z.  The
    start vector z₀ is drawn on the host with ``numpy.random.default_rng(seed)`` (the epfml code
    seeds a torch generator with 0 -- same distribution, different numbers).  ``state=None``
    starts afresh; pass the returned state to the next call.  The honest set must keep its size
    and order across calls (indices refer to it).
    """
    xp, H, h, d, f = _honest(honest, f, "mimic_heuristic")
    warmup = check_int(warmup, "mimic_heuristic", "warmup", low=1 if variant == "epfml" else 0)
    if variant not in ("epfml", "byzfl"):
        from refopt.rules._base import suggest

        raise ValueError("mimic_heuristic: " + suggest(variant, ["epfml", "byzfl"], "variant"))
    seed = check_int(seed, "mimic_heuristic", "seed")
    if state is None:
        state = MimicState()
    if not isinstance(state, MimicState):
        raise TypeError(f"mimic_heuristic: state must be a MimicState or None; got {type(state).__name__}")
    if state.mu is not None and tuple(state.mu.shape) != (d,):
        raise ValueError(f"mimic_heuristic: state was built for vectors of shape {tuple(state.mu.shape)}; got d={d}")
    if state.target is not None and state.target >= h:
        raise ValueError(f"mimic_heuristic: state.target={state.target} is not an index of the {h} honest vectors")
    t, mu, z, target = state.t, state.mu, state.z, state.target
    avg = _mean(xp, H)
    if t < warmup:
        if t == 0:
            mu = avg
            z = _array.from_host(_array.host_generator(seed, None, "mimic_heuristic").standard_normal(d), H)
            D = H - mu[None, :]
            c = xp.sum(D * xp.matmul(D, z)[:, None], axis=0)
            z = _unit(xp, c, _unit(xp, z, z))
        else:
            a = float(t) / float(t + 1)
            b = 1.0 / float(t + 1)
            mu = mu * a + avg * b
            D = H - mu[None, :]
            c = xp.sum(D * xp.matmul(D, z)[:, None], axis=0)
            z_new = z * a + _unit(xp, c, xp.zeros_like(c)) * b
            z = _unit(xp, z_new, z)
        if variant == "epfml":
            target = int(xp.argmax(xp.matmul(H, z)))
        else:
            target = 0
    else:
        if variant == "byzfl":
            target = 0 if z is None else int(xp.argmax(xp.abs(xp.matmul(H, z))))
    vectors = _tile(xp, H[target, :], f)
    return vectors, MimicState(t=t + 1, mu=mu, z=z, target=target)


def inf(honest: Any, f: int) -> Any:
    """All coordinates +∞ (ByzFL ``Inf``; ByzFL returns float64 -- here the honest dtype)."""
    xp, H, h, d, f = _honest(honest, f, "inf")
    return _full(xp, H, f, math.inf)


def nan(honest: Any, f: int) -> Any:
    """All coordinates NaN (MoNNA repo ``nan``, AggregaThor's ``average-nan`` tests)."""
    xp, H, h, d, f = _honest(honest, f, "nan")
    return _full(xp, H, f, math.nan)


def gaussian(
    honest: Any,
    f: int,
    *,
    mean: float = 0.0,
    std: float = 1.0,
    seed: int | None = None,
    rng: Any = None,
    independent: bool = False,
) -> Any:
    """Gaussian noise N(mean, std²)^d (ByzFL ``Gaussian(mu=0, sigma=1)``).

    Drawn in float64 on the host by ``rng`` (or ``numpy.random.default_rng(seed)``; one of the two
    is required) and rounded once to the honest dtype.  ``independent=False`` (ByzFL): one vector
    sent by all f nodes; ``True``: f independent draws (row by row from the same generator).
    """
    from refopt.preaggregators import _generator

    xp, H, h, d, f = _honest(honest, f, "gaussian")
    mean = check_real(mean, "gaussian", "mean")
    std = check_real(std, "gaussian", "std", nonneg=True)
    gen = _generator(seed, rng, "gaussian")
    independent = check_bool(independent, "gaussian", "independent")
    rows = f if independent else 1
    out = _array.from_host(gen.normal(mean, std, size=(rows if f else 0, d)), H)
    return out if independent or f == 0 else _tile(xp, out[0, :], f)


# ---------------------------------------------------------------------------------------
# line-search ("optimal") attacks
# ---------------------------------------------------------------------------------------


def line_search_byzfl(score: Callable[[float], float], *, evals: int = 20, start: float = 0.0, delta: float = 10.0, ratio: float = 0.8) -> float:
    """ByzFL's one-sided line search (``Optimal_*`` attacks, LPD-EPFL/byzfl).

    Evaluate ``start``; *expansion*: probe best + Δ, on improvement move there and double Δ, on the
    first failure set Δ ← ratio·Δ and stop; *contraction*: probe best + Δ (always on the right of
    the best point), keep it if better, Δ ← ratio·Δ, until ``evals`` evaluations are spent.
    "Better" is a strict ``>``; a NaN score never wins.  Returns the best point.
    """
    remaining = evals
    best_x = start
    best_y = score(best_x)
    remaining -= 1
    while remaining > 0:
        x = best_x + delta
        y = score(x)
        remaining -= 1
        if y > best_y:
            best_x, best_y = x, y
            delta *= 2.0
        else:
            delta *= ratio
            break
    while remaining > 0:
        x = best_x + delta
        y = score(x)
        remaining -= 1
        if y > best_y:
            best_x, best_y = x, y
        delta *= ratio
    return best_x


def line_search_monna(score: Callable[[float], float], *, evals: int = 16, start: float = 0.0, delta: float = 1.0, ratio: float = 0.8) -> float:
    """The MoNNA code's two-sided line search on x ≥ 0 (``tools.line_maximize`` of
    LPD-EPFL/robust-collaborative-learning).

    Same expansion as :func:`line_search_byzfl`.  Contraction: the probe point moves from the last
    probe, towards the best point -- right by Δ if the last probe is left of the best, otherwise
    left by Δ (halving back towards the last probe while the result would be negative) -- so it
    alternates around the best point; Δ ← ratio·Δ after each probe.  Returns the best point.
    """
    remaining = evals
    best_x = start
    best_y = score(best_x)
    remaining -= 1
    prop_x = best_x
    while remaining > 0:
        prop_x = best_x + delta
        y = score(prop_x)
        remaining -= 1
        if y > best_y:
            best_x, best_y = prop_x, y
            delta *= 2.0
        else:
            delta *= ratio
            break
    while remaining > 0:
        if prop_x < best_x:
            prop_x = prop_x + delta
        else:
            x = prop_x - delta
            while x < 0:
                x = (x + prop_x) / 2.0
            prop_x = x
        y = score(prop_x)
        remaining -= 1
        if y > best_y:
            best_x, best_y = prop_x, y
        delta *= ratio
    return best_x


def _direction(kind: Any, where: str, allowed: Sequence[str]):
    if callable(kind):
        return kind
    if kind not in allowed:
        from refopt.rules._base import suggest

        raise ValueError(f"{where}: " + suggest(str(kind), list(allowed), "attack") + "; or pass a callable (honest, tau) -> (d,)")
    return kind


def _objective(xp, H, mu, f, defender, make, where):
    d = int(H.shape[1])

    def score(tau: float) -> float:
        v = make(tau)
        if not _array.is_array(v) or tuple(v.shape) != (d,):
            raise ValueError(f"{where}: the attack callable must return a ({d},) vector; got {getattr(v, 'shape', type(v).__name__)}")
        stack = xp.concat([H, _tile(xp, v, f)], axis=0)
        out = defender(stack)
        if not _array.is_array(out) or out.ndim not in (1, 2) or int(out.shape[-1]) != d:
            raise ValueError(f"{where}: the aggregator must return a ({d},) vector or an (m, {d}) stack of per-node outputs")
        if out.ndim == 2:  # per-node outputs (NNA, SCC): average them (as the MoNNA code does)
            out = xp.mean(out, axis=0)
        diff = out - mu
        return float(xp.sqrt(xp.sum(diff * diff)))

    return score


def _defender(aggregator, preaggregators, f, where):
    if aggregator is None:
        raise ValueError(
            f"{where} optimises against the defender's aggregator: pass aggregator=<callable X -> (d,)> "
            "(the rule the honest nodes actually use, with its pre-aggregations)"
        )
    if not callable(aggregator):
        raise TypeError(f"{where}: aggregator must be a callable X -> (d,); got {aggregator!r}")
    pre = tuple(preaggregators or ())
    if not pre:
        return aggregator
    return compose(*pre, aggregator=aggregator, f=f)


def _line_searched(xp, H, f, kind, defender, search, start, return_factor, where):
    return_factor = check_bool(return_factor, where, "return_factor")
    """f copies of the vector v(s) whose factor s the line ``search`` picks to maximise the damage.

    Directions: "ipm" v = −s·μ; "alie" v = μ + s·σ (ddof = 1); "foe" v = μ − s·μ = (1 − s)·μ; or a
    callable ``(honest, s) -> (d,)``.  With f = 0 there is nothing to send and s = ``start``.
    """
    mu = _mean(xp, H)
    if kind == "ipm":
        make = lambda s: mu * (-s)  # noqa: E731
    elif kind == "alie":
        sigma = _std(xp, H, 1, where)
        make = lambda s: mu + sigma * s  # noqa: E731
    elif kind == "foe":
        make = lambda s: mu - mu * s  # noqa: E731
    else:
        make = lambda s: kind(H, s)  # noqa: E731
    if f == 0:
        out = _tile(xp, mu, 0)
        return (out, start) if return_factor else out
    s = search(_objective(xp, H, mu, f, defender, make, where))
    out = _tile(xp, make(s), f)
    return (out, s) if return_factor else out


def optimal_byzfl(
    honest: Any,
    f: int,
    *,
    aggregator: Callable | None = None,
    preaggregators: Sequence[Callable] = (),
    attack: str | Callable = "ipm",
    evals: int = 20,
    start: float = 0.0,
    delta: float = 10.0,
    ratio: float = 0.8,
    return_factor: bool = False,
) -> Any:
    """ByzFL's ``Optimal_InnerProductManipulation`` / ``Optimal_ALittleIsEnough``.

    The attack vector has a factor τ -- ``"ipm"``: −τ·μ, ``"alie"``: μ + τ·σ (ddof = 1), or a
    callable ``(honest, tau) -> (d,)`` -- and τ is chosen to maximise the damage to the defender::

        τ* ≈ argmax_τ ‖F(pre(honest ∪ f × v(τ))) − μ‖₂

    by :func:`line_search_byzfl` (ByzFL defaults: 20 evaluations, start 0, Δ = 10, ratio 0.8).
    ``aggregator`` (required: the defender's own rule F) and ``preaggregators`` (run first, with
    f forwarded as in :func:`refopt.preaggregators.compose`) must be the ones the honest nodes
    use; ByzFL's class defaults (Average after Clipping(2)) make the objective flat once the
    Byzantine vector is clipped (τ* = 10 whatever the honest vectors).  An aggregator may return an (m, d) stack of per-node
    outputs; their mean is used.  The stack is ``[honest; f copies]``.

    Example (ByzFL's docstring setting): honest [[1,2,3],[4,5,6],[7,8,9]], f = 1, F = trimmed mean (f = 1) after
    [NNM(1), Clipping(2)]: "ipm" -> τ* = 10·0.8¹² = 0.68719477, vector [−2.74877907, −3.43597384,
    −4.1231686]; "alie" -> τ* = 2.97328372, [12.91985116, 13.91985116, 14.91985116].

    Returns the (f, d) vectors, or ``(vectors, τ*)`` with ``return_factor=True``.
    """
    where = "optimal_byzfl"
    xp, H, h, d, f = _honest(honest, f, where)
    kind = _direction(attack, where, ("ipm", "alie"))
    defender = _defender(aggregator, preaggregators, f, where)
    evals = check_int(evals, where, "evals", low=1)
    start = check_real(start, where, "start")
    delta = check_real(delta, where, "delta")
    if delta == 0.0:
        raise ValueError(f"{where}: delta must be non-zero; got {delta!r}")
    ratio = check_real(ratio, where, "ratio")
    if not 0.5 < ratio < 1.0:
        raise ValueError(f"{where}: ratio must be in (0.5, 1); got {ratio!r}")
    search = lambda objective: line_search_byzfl(objective, evals=evals, start=start, delta=delta, ratio=ratio)  # noqa: E731
    return _line_searched(xp, H, f, kind, defender, search, start, return_factor, where)


def optimal_monna(
    honest: Any,
    f: int,
    *,
    aggregator: Callable | None = None,
    preaggregators: Sequence[Callable] = (),
    attack: str | Callable = "alie",
    evals: int = 16,
    start: float = 0.0,
    delta: float = 1.0,
    ratio: float = 0.8,
    return_factor: bool = False,
) -> Any:
    """The MoNNA code's line-searched attacks ``little`` and ``empire``
    (LPD-EPFL/robust-collaborative-learning, attacks/).

    The Byzantine vector is μ + s·u with s ≥ 0 and the direction u -- ``"alie"``: u = σ (ddof = 1),
    ``"foe"``: u = −μ (so the vector is (1 − s)·μ), ``"ipm"``: the vector is −s·μ (the strict
    "empire" of the same code base), or a callable ``(honest, s) -> (d,)`` -- and s maximises

        ‖F(honest ∪ f × v(s)) − μ‖   (the code maximises its square: same maximiser)

    by :func:`line_search_monna` (two-sided contraction; the code's ``factor = −16`` means 16
    evaluations, start 0, Δ = 1, ratio 0.8).  ``aggregator`` is the defender's rule (required);
    for NNA / SCC pass a callable that returns every honest node's output as an (h, d) stack: the
    mean of those outputs is compared with μ, as the MoNNA code does.

    Returns the (f, d) vectors, or ``(vectors, s*)`` with ``return_factor=True``.
    """
    where = "optimal_monna"
    xp, H, h, d, f = _honest(honest, f, where)
    kind = _direction(attack, where, ("alie", "foe", "ipm"))
    defender = _defender(aggregator, preaggregators, f, where)
    evals = check_int(evals, where, "evals", low=1)
    start = check_real(start, where, "start", nonneg=True)
    delta = check_real(delta, where, "delta", positive=True)
    ratio = check_real(ratio, where, "ratio")
    if not 0.5 < ratio < 1.0:
        raise ValueError(f"{where}: ratio must be in (0.5, 1); got {ratio!r}")
    search = lambda objective: line_search_monna(objective, evals=evals, start=start, delta=delta, ratio=ratio)  # noqa: E731
    return _line_searched(xp, H, f, kind, defender, search, start, return_factor, where)


# ---------------------------------------------------------------------------------------
# gossip and data-level attacks
# ---------------------------------------------------------------------------------------


def dissensus(
    honest: Any,
    f: int,
    *,
    weights: Any,
    byzantine: Sequence[int] | None = None,
    epsilon: float = 1.5,
) -> Any:
    """Dissensus attack for gossip (He, Karimireddy & Jaggi 2022; epfml/byzantine-robust-decentralized-optimizer): per receiving node.

    Signature differs from the other attacks because the vector depends on the receiver.
    ``weights`` is the (n, n) mixing matrix W over all n = h + f nodes (any array library; read on
    the host), ``byzantine`` the f indices of the Byzantine nodes (default: the last f, i.e.
    nodes h..n−1); the honest nodes are the others, in increasing order, matching the rows of
    ``honest``.  For honest node i with at least one Byzantine neighbour, every Byzantine
    neighbour sends::

        v_i = x_i − ε · (Σ_{j ∈ N_i ∩ H} W_ij (x_j − x_i)) / (Σ_{k ∈ N_i ∩ B} W_ik)

    which cancels (ε = 1) or reverses (ε > 1) the honest pull of node i towards consensus
    (ε = 1.5 in the epfml experiments, ``dissensus1.5``).  For a node without Byzantine
    neighbour v_i = x_i (never received).  Returns an (h, d) array: row r is what the Byzantine
    neighbours of honest node r send to it.
    """
    where = "dissensus"
    xp, H, h, d, f = _honest(honest, f, where)
    eps = check_real(epsilon, where, "epsilon")
    if _array.is_array(weights):
        W = _array.host_float64(weights, f"{where}: weights")  # host float64 bookkeeping
    else:
        raise TypeError(f"{where}: weights must be an (n, n) array (the mixing matrix); got {type(weights).__name__}")
    n = h + f
    if W.shape != (n, n):
        raise ValueError(f"{where}: weights must have shape (n, n) = ({n}, {n}) for h={h} honest and f={f} Byzantine nodes; got {W.shape}")
    if _array.first_violation(W, W >= 0) is not None:
        raise ValueError(f"{where}: weights must be finite and non-negative")
    if byzantine is None:
        byz = list(range(h, n))
    else:
        byz = [check_int(b, where, "byzantine[i]") for b in byzantine]
        if len(byz) != f or len(set(byz)) != f or any(b >= n for b in byz):
            raise ValueError(f"{where}: byzantine must be {f} distinct node indices in [0, {n - 1}]; got {list(byzantine)}")
    hon = [i for i in range(n) if i not in set(byz)]
    Whh = W[hon][:, hon]
    wb = W[hon][:, byz].sum(axis=1)  # zeros when f = 0
    A = _array.from_host(Whh, H)
    rs = _array.from_host(Whh.sum(axis=1), H)
    has = wb > 0
    inv = _array.from_host(_array.host_where(has, 1.0 / _array.host_where(has, wb, 1.0), 0.0), H)
    pull = xp.matmul(A, H) - H * rs[:, None]
    return H - pull * (inv * eps)[:, None]


def label_flipping(y: Any, num_classes: int) -> Any:
    """Label flipping at the data level: y -> K − 1 − y (K = ``num_classes``; 9 − y on MNIST/CIFAR-10).

    Byzantine nodes compute honest-looking gradients on flipped labels (ByzFL flips client side;
    the MoNNA code sends the mean of the honest nodes' flipped gradients as a model step,
    peerToPeer.py of LPD-EPFL/robust-collaborative-learning).  ``y`` is an integer array of any
    library with values in [0, K); returns the flipped
    labels with the same dtype and device.
    """
    if not _array.is_array(y):
        raise TypeError(f"label_flipping: y must be an integer array of labels; got {type(y).__name__}")
    xp = _array.namespace(y, what="label_flipping: y")
    if not xp.isdtype(y.dtype, "integral"):
        raise TypeError(f"label_flipping: y must have an integer dtype; got {_array.dtype_name(y.dtype)}")
    K = check_int(num_classes, "label_flipping", "num_classes", low=2)
    if math.prod(y.shape) > 0:
        lo, hi = int(xp.min(y)), int(xp.max(y))
        if lo < 0 or hi >= K:
            raise ValueError(f"label_flipping: labels must be in [0, {K - 1}] for num_classes={K}; got values in [{lo}, {hi}]")
    return (K - 1) - y


# ---------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable] = {
    "sign_flipping": sign_flipping,
    "scaled_sign_flipping": scaled_sign_flipping,
    "ipm": ipm,
    "foe": ipm,
    "alie": alie,
    "mimic": mimic,
    "inf": inf,
    "nan": nan,
    "gaussian": gaussian,
    "optimal_byzfl": optimal_byzfl,
    "optimal_monna": optimal_monna,
}


def names() -> list[str]:
    """Names of the vector attacks with the ``(honest, f) -> (f, d)`` signature (for :func:`get`)."""
    return sorted(_REGISTRY)


def get(name: str, **params: Any) -> Callable[[Any, int], Any]:
    """The attack ``name`` with ``params`` bound: a callable ``(honest, f) -> (f, d)``.

    ``get("alie", z="paper")``, ``get("optimal_monna", aggregator=my_rule)``.  The stateful
    :func:`mimic_heuristic`, the per-receiver :func:`dissensus` and the data-level
    :func:`label_flipping` have other signatures and are not in this registry.
    """
    import functools
    import inspect

    if name not in _REGISTRY:
        from refopt.rules._base import suggest

        raise ValueError(suggest(name, list(_REGISTRY), "attack"))
    fn = _REGISTRY[name]
    sig = inspect.signature(fn)
    unknown = [k for k in params if k not in sig.parameters or k in ("honest", "f")]
    if unknown:
        allowed = [k for k in sig.parameters if k not in ("honest", "f")]
        raise TypeError(f"attack {name!r} has no parameter(s) {unknown}; it takes {allowed}")
    if name in ("optimal_byzfl", "optimal_monna") and params.get("aggregator") is None:
        raise ValueError(f"attack {name!r} needs aggregator=<the defender's rule>")
    return functools.partial(fn, **params)
