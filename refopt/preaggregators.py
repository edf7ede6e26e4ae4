"""Pre-aggregations: maps from an ``(n, d)`` stack of vectors to another stack, run before a robust rule.

A *pre-aggregation* transforms the n received vectors
into m vectors that are then handed to an ordinary robust aggregator F.  The point is to make a
weak rule strong: Allouah et al. ("Fixing by mixing", AISTATS 2023) prove that if F is
(f, κ)-robust then F∘NNM is (f, κ')-robust with κ' ≤ (8f/(n − f))·(κ + 1) (PMLR 206), i.e. of the
optimal order O(f/n) whatever F is.

Functions (every one pure, array API only, float32 in -> float32 out, no write into its input):

``nnm(X, f)``
    nearest-neighbour mixing: y_i = mean of the n − f vectors nearest to x_i (itself included).
``bucketing(X, s, *, seed=None, rng=None)``
    random permutation, buckets of s vectors, one mean per bucket -> ⌈n/s⌉ vectors.
``clipping(X, c=2.0, *, f=None, center=None)``
    y_i = center + (x_i − center)·min(1, c/‖x_i − center‖); ``c`` is a threshold or the name of an
    adaptive rule ("arc", "cs_plus", "second_largest").
``arc(X, f)``
    adaptive robust clipping: the k = ⌊2f(n − f)/n⌋ largest vectors are clipped to the norm of the
    (k + 1)-th largest.
``compose(*pre, aggregator, f=None)``
    a callable ``X -> (d,)`` that runs the pre-aggregations in order, then the aggregator, as
    ByzFL's ``RobustAggregator`` does.

Conventions:

* ``X`` is an ``(n, d)`` real-floating array of any array-API library, or a list/tuple of
  ``(d,)`` vectors of one library, dtype and device (they are stacked).
* ``f`` is a Python int ≥ 0; every rule checks its own n-versus-f condition before any work.
* Distances come from :func:`refopt.aggregators.pairwise_sq_distances` (one matrix product,
  exact for close vectors).  A vector holding a NaN or an infinity is infinitely far from every
  other vector; ties are broken by the lowest index (stable sort).
* Randomness (bucketing) comes only from an explicit seed or ``numpy.random.Generator``: the
  permutation is drawn on the host (:func:`refopt._array.host_generator`) and moved next to ``X``
  (:func:`refopt._array.from_host`).
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from typing import Any, Callable


from refopt import _array

__all__ = ["nnm", "bucketing", "clipping", "arc", "compose", "names", "get", "CLIPPING_RULES"]

CLIPPING_RULES = ("arc", "cs_plus", "second_largest")
"""Names of the adaptive thresholds :func:`clipping` understands (besides a number)."""


# ---------------------------------------------------------------------------------------
# validation helpers (shared with refopt.attacks)
# ---------------------------------------------------------------------------------------


def as_stack(X: Any, where: str, name: str = "X", min_rows: int = 1):
    """Validate (and if needed stack) an ``(n, d)`` stack; return ``(xp, X, n, d)``.

    Accepts one 2-D real-floating array, or a non-empty list/tuple of 1-D arrays of one library,
    one dtype, one device and one length.  Errors name ``where`` and ``name``.
    """
    label = f"{where}: {name}"
    if isinstance(X, (list, tuple)):
        if not X:
            raise ValueError(f"{label} must hold at least {min_rows} vector(s); got an empty {type(X).__name__}")
        for i, v in enumerate(X):
            if not _array.is_array(v):
                raise TypeError(f"{label}[{i}] must be an array; got {type(v).__name__}")
        xp = _array.namespace(*X, what=label)
        dtypes = {_array.dtype_name(v.dtype) for v in X}
        if len(dtypes) > 1:
            raise TypeError(f"{label} mixes dtypes {sorted(dtypes)}; give vectors of one dtype (float32 or float64)")
        devices = {str(_array.device(v)) for v in X}
        if len(devices) > 1:
            raise ValueError(f"{label} mixes devices {sorted(devices)}; move the vectors to one device")
        shapes = {tuple(v.shape) for v in X}
        if len(shapes) > 1 or len(next(iter(shapes))) != 1:
            raise ValueError(f"{label} must be 1-D vectors of one length; got shapes {sorted(shapes)}")
        X = xp.stack(list(X), axis=0)
    elif not _array.is_array(X):
        raise TypeError(f"{label} must be an (n, d) array (or a list of (d,) vectors); got {type(X).__name__}")
    xp = _array.namespace(X, what=label)
    if X.ndim != 2:
        raise ValueError(f"{label} must be a 2-D (n, d) stack of n vectors; got shape {tuple(X.shape)}")
    if not _array.is_real_floating(xp, X.dtype) or X.dtype not in (xp.float32, xp.float64):
        raise TypeError(f"{label} must have a real floating dtype (float32 or float64); got {_array.dtype_name(X.dtype)}")
    n, d = int(X.shape[0]), int(X.shape[1])
    if n < min_rows or d < 1:
        raise ValueError(f"{label} must hold at least {min_rows} vector(s) of dimension >= 1; got shape {(n, d)}")
    return xp, X, n, d


def check_int(value: Any, where: str, name: str, low: int = 0) -> int:
    """A Python int ≥ ``low`` (NumPy integers accepted, bools and floats refused)."""
    if _array.is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {name} must be an int >= {low}; got {value!r} ({type(value).__name__})")
    value = int(value)
    if value < low:
        raise ValueError(f"{where}: {name} must be an int >= {low}; got {value}")
    return value


def check_bool(value: Any, where: str, name: str) -> bool:
    """A Python bool; anything but True/False (``'no'``, 0, 1, None) is a TypeError."""
    if not _array.is_bool(value):
        raise TypeError(f"{where}: {name} must be True or False; got {value!r}")
    return bool(value)


def check_real(value: Any, where: str, name: str, *, positive: bool = False, nonneg: bool = False) -> float:
    """A finite Python float (NumPy scalars become Python floats: weak, never promote float32)."""
    if _array.is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a real number; got {value!r} ({type(value).__name__})")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{where}: {name} must be finite; got {value!r}")
    if positive and not x > 0:
        raise ValueError(f"{where}: {name} must be > 0; got {value!r}")
    if nonneg and not x >= 0:
        raise ValueError(f"{where}: {name} must be >= 0; got {value!r}")
    return x


def _need_majority(where: str, n: int, f: int) -> None:
    if not n > 2 * f:
        raise ValueError(f"{where} needs n > 2f (an honest majority); got n={n}, f={f}")


def _sq_distances(X):
    from refopt.aggregators import pairwise_sq_distances

    return pairwise_sq_distances(X)


def _finite_rows(xp, X):
    return xp.all(xp.isfinite(X), axis=1)


def _row_norms(xp, X):
    """Euclidean norms of the rows, scaled so that huge finite vectors do not overflow.

    ‖x‖ = m·‖x/m‖ with m = max|x_k|; a zero row has norm 0; a row with a NaN/inf has norm +inf
    (NaN is mapped to +inf so that it sorts as the largest).
    """
    finite = _finite_rows(xp, X)
    zero = xp.zeros((), dtype=X.dtype, device=_array.device(X))
    Xf = xp.where(finite[:, None], X, zero)
    m = xp.max(xp.abs(Xf), axis=1)
    safe = xp.where(m > 0, m, xp.ones((), dtype=X.dtype, device=_array.device(X)))
    norms = m * xp.sqrt(xp.sum((Xf / safe[:, None]) ** 2, axis=1))
    return xp.where(finite, norms, xp.asarray(math.inf, dtype=X.dtype, device=_array.device(X)))


# ---------------------------------------------------------------------------------------
# NNM
# ---------------------------------------------------------------------------------------


def nnm(X: Any, f: int) -> Any:
    """Nearest-neighbour mixing (Allouah et al., AISTATS 2023; ByzFL ``NNM(f)``).

    For every i = 1..n::

        y_i = (1/(n − f)) · Σ_{j ∈ N_i} x_j,   N_i = the n − f vectors of X nearest to x_i

    (x_i itself is in N_i: its distance is 0).  Requires n > 2f.  Ties in distance are broken by
    the lowest index, which reproduces ByzFL's docstring example::

        nnm([[1,2,3],[4,5,6],[7,8,9]], f=1) = [[2.5,3.5,4.5],[2.5,3.5,4.5],[5.5,6.5,7.5]]

    (row 1 is equally far from rows 0 and 2; row 0 wins).  A non-finite vector is infinitely far
    from the others, so no finite vector mixes it in while at least n − f vectors are finite; its
    own output (itself plus the lowest-index vectors) stays non-finite for the next rule to reject.

    Cost: one (n, n) distance matrix and one (n, n)·(n, d) product, O(n²d).

    Returns an (n, d) array of X's dtype and device.
    """
    xp, X, n, d = as_stack(X, "nnm")
    f = check_int(f, "nnm", "f")
    _need_majority("nnm", n, f)
    k = n - f
    D = _sq_distances(X)
    D = xp.where(xp.isnan(D), xp.asarray(math.inf, dtype=D.dtype, device=_array.device(D)), D)
    order = xp.argsort(D, axis=1, stable=True)  # (n, n): row i, nearest first, ties by index
    ranks = xp.argsort(order, axis=1, stable=True)  # rank of column j in row i
    S = ranks < k  # (n, n) selection mask, exactly k True per row
    finite = _finite_rows(xp, X)
    zero = xp.zeros((), dtype=X.dtype, device=_array.device(X))
    Xz = xp.where(finite[:, None], X, zero)
    # sum of the selected vectors (0/1 weights are exact), then one division by k
    Y = xp.matmul(xp.astype(S, X.dtype), Xz) / float(k)
    touched = xp.any(S & ~finite[None, :], axis=1)  # rows whose selection holds a non-finite vector
    if bool(xp.any(touched)):
        rows = []
        for i in range(n):
            if bool(touched[i]):
                idx = order[i, :k]
                rows.append(xp.sum(xp.take(X, idx, axis=0), axis=0) / float(k))
            else:
                rows.append(Y[i, :])
        Y = xp.stack(rows, axis=0)
    return Y


# ---------------------------------------------------------------------------------------
# Bucketing
# ---------------------------------------------------------------------------------------


def _generator(seed: Any, rng: Any, where: str) -> Any:
    if seed is not None:
        seed = check_int(seed, where, "seed")
    return _array.host_generator(seed, rng, where)


def bucketing(X: Any, s: int, *, seed: int | None = None, rng: Any = None) -> Any:
    """Bucketing (Karimireddy, He & Jaggi, ICLR 2022; ByzFL ``Bucketing(s)``).

    Draw a random permutation π of 0..n−1, cut π into consecutive buckets of s indices (the last
    bucket holds the remaining n mod s when s does not divide n) and return one mean per bucket::

        y_b = mean(x_{π(bs)}, ..., x_{π(min(n, (b+1)s) − 1)}),   b = 0..⌈n/s⌉ − 1.

    The permutation is ``rng.permutation(n)`` of a NumPy ``Generator`` -- ``default_rng(seed)``
    when ``seed`` is given (the same permutation at every call), or the ``rng`` passed (advanced by
    each call, so successive calls draw fresh buckets).  One of the two is required.  s = 1 only
    shuffles the rows.  The paper uses s = 2; theory needs s·f/n small.  Bucketing has no f; when
    it is composed with a rule, that rule's f counts the buckets a Byzantine vector can reach (at
    most f).

    Returns a (⌈n/s⌉, d) array of X's dtype and device.
    """
    xp, X, n, d = as_stack(X, "bucketing")
    s = check_int(s, "bucketing", "s", low=1)
    gen = _generator(seed, rng, "bucketing")
    perm = gen.permutation(n)
    idx = _array.from_host(perm, X, dtype=xp.int64)
    P = xp.take(X, idx, axis=0)
    full = n // s
    parts = []
    if full:
        parts.append(xp.mean(xp.reshape(P[: full * s, :], (full, s, d)), axis=1))
    if full * s < n:
        parts.append(xp.mean(P[full * s :, :], axis=0)[None, :])
    return xp.concat(parts, axis=0) if len(parts) > 1 else parts[0]


# ---------------------------------------------------------------------------------------
# Clipping and ARC
# ---------------------------------------------------------------------------------------


def _clip_to(xp, X, center, norms, threshold):
    """center + (x_i − center)·min(1, t/‖x_i − center‖); rows with a non-finite norm -> center."""
    dev = _array.device(X)
    one = xp.ones((), dtype=X.dtype, device=dev)
    over = norms > threshold
    scale = xp.where(over, threshold / xp.where(over, norms, one), one)
    finite = xp.isfinite(norms)
    V = X if center is None else X - center[None, :]
    V = xp.where(finite[:, None], V, xp.zeros((), dtype=X.dtype, device=dev))
    Y = V * scale[:, None]
    return Y if center is None else Y + center[None, :]


def _arc_count(n: int, f: int) -> int:
    """k = ⌊2 (f/n) (n − f)⌋ computed exactly in integers (ByzFL computes it in floats)."""
    return (2 * f * (n - f)) // n


def clipping(X: Any, c: float | str = 2.0, *, f: int | None = None, center: Any = None) -> Any:
    """Clipping of every vector (static by default).

    ::

        y_i = center + (x_i − center) · min(1, τ / ‖x_i − center‖)

    with ``center`` = 0 unless given (a (d,) vector; with a node's own model this is the
    self-centred clipping of ClippedGossip / MoNNA's SCC baseline).  The threshold τ is

    * a number ``c > 0``: *static clipping* (ByzFL ``Clipping(c)``, default c = 2.0).  Example
      (ByzFL's docstring): row [1, 2, 3] with c = 2 -> [0.53452248, 1.06904497, 1.60356745];
    * ``"arc"`` (needs f, n > 2f): the norm of the (k + 1)-th largest vector, k = ⌊2f(n − f)/n⌋,
      i.e. :func:`arc` (Allouah et al., NeurIPS 2024);
    * ``"cs_plus"`` (needs f, n > 2f): the (n − 2f)-th smallest norm -- CS+'s rule (Gaucher et
      al., ICML 2025) with uniform weights: cut where the cumulative weight reaches the total
      minus twice the Byzantine weight, so the 2f largest vectors are clipped;
    * ``"second_largest"`` (n ≥ 2): the second-largest norm -- the practical threshold of the
      ClippedGossip code (He, Karimireddy & Jaggi 2022).

    Clipping never increases a norm and leaves vectors at or under τ unchanged.  A vector with a
    NaN or an infinity has no usable direction; it is replaced by ``center`` (it contributes
    nothing -- ClippedGossip's convention for NaN neighbours, epfml/byzantine-robust-decentralized-optimizer).  Norms are computed with
    scaling, so a huge but finite float32 vector is clipped, not turned into NaN.

    Returns an (n, d) array of X's dtype and device.
    """
    xp, X, n, d = as_stack(X, "clipping")
    if center is not None:
        if not _array.is_array(center):
            raise TypeError(f"clipping: center must be a (d,) array; got {type(center).__name__}")
        _array.namespace(X, center, what="clipping: X and center")
        if tuple(center.shape) != (d,):
            raise ValueError(f"clipping: center must have shape ({d},) to match X; got {tuple(center.shape)}")
        if center.dtype != X.dtype:
            raise TypeError(
                f"clipping: center has dtype {_array.dtype_name(center.dtype)} but X has {_array.dtype_name(X.dtype)}"
            )
        if str(_array.device(center)) != str(_array.device(X)):
            raise ValueError(f"clipping: center is on {_array.device(center)} but X is on {_array.device(X)}")
    if isinstance(c, str):
        if c not in CLIPPING_RULES:
            from refopt.rules._base import suggest

            raise ValueError("clipping: " + suggest(c, CLIPPING_RULES, "adaptive threshold"))
        if c in ("arc", "cs_plus"):
            if f is None:
                raise ValueError(f"clipping: the adaptive threshold {c!r} needs f=<int>")
            f = check_int(f, "clipping", "f")
            _need_majority(f"clipping (threshold {c!r})", n, f)
        elif n < 2:
            raise ValueError(f"clipping: the threshold 'second_largest' needs n >= 2 vectors; got n={n}")
    else:
        c = check_real(c, "clipping", "c", positive=True)
    V = X if center is None else X - center[None, :]
    norms = _row_norms(xp, V)
    if isinstance(c, str):
        srt = xp.sort(norms)  # ascending; non-finite (+inf) last
        if c == "arc":
            rank = n - _arc_count(n, f) - 1  # (k+1)-th largest
        elif c == "cs_plus":
            rank = n - 2 * f - 1  # (n-2f)-th smallest
        else:
            rank = n - 2
        threshold = srt[rank]
        # a non-finite threshold clips nothing finite (more non-finite vectors than clipped slots)
        threshold = xp.where(xp.isfinite(threshold), threshold, xp.asarray(math.inf, dtype=X.dtype, device=_array.device(X)))
    else:
        threshold = c
    return _clip_to(xp, X, center, norms, threshold)


def arc(X: Any, f: int) -> Any:
    """Adaptive robust clipping (Allouah, Guerraoui, Gupta, Jellouli, Rizk & Stephan, NeurIPS 2024).

    With k = ⌊2 (f/n) (n − f)⌋ (computed exactly in integers), the k vectors of largest norm are
    clipped to the norm of the (k + 1)-th largest; the others are unchanged (ByzFL ``ARC(f)``;
    its docstring writes "x_{π(k)}" for what the code uses, a norm).  Ties in norm do
    not matter: clipping a vector to its own norm changes nothing.  Requires n > 2f.  Example
    (ByzFL's docstring): X = [[1,2,3],[4,5,6],[7,8,9]], f = 1 -> k = 1, the last row is clipped to
    ‖[4,5,6]‖ = √77: [4.41004009, 5.04004582, 5.67005155].  Non-finite vectors count as the
    largest and are replaced by 0 (see :func:`clipping`).
    """
    xp, X, n, d = as_stack(X, "arc")
    f = check_int(f, "arc", "f")
    _need_majority("arc", n, f)
    return clipping(X, "arc", f=f)


# ---------------------------------------------------------------------------------------
# composition
# ---------------------------------------------------------------------------------------


def _needs_f(stage: Callable) -> bool:
    """True when ``stage`` has a parameter named ``f`` without a default (so f must be passed)."""
    try:
        sig = inspect.signature(stage)
    except (TypeError, ValueError):
        return False
    p = sig.parameters.get("f")
    return p is not None and p.default is inspect.Parameter.empty and p.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def _stage_name(stage: Callable) -> str:
    if isinstance(stage, functools.partial):
        return _stage_name(stage.func)
    return getattr(stage, "__name__", type(stage).__name__)


def compose(*pre: Callable, aggregator: Callable, f: int | None = None) -> Callable[[Any], Any]:
    """Chain pre-aggregations and an aggregator: ``X -> aggregator(pre_k(...pre_1(X)))``.

    This is ByzFL's ``RobustAggregator(agg, pre_agg_list)``: the pre-aggregations run in the given
    order, each mapping an (n, d) stack to an (m, d) stack, and the aggregator maps the last stack
    to one (d,) vector.  The standard recipe of ByzFL's benchmark is
    ``compose(partial(clipping, c=2.0), nnm, aggregator=trimmed_mean, f=f)`` (LPD-EPFL/byzfl, its benchmark's defaults).

    ``f`` is forwarded the way ByzFL's benchmark does it: the same declared f goes to every stage
    that *requires* an argument named ``f`` (``nnm``, ``arc``, ``trimmed_mean``, ``krum``, ...),
    as ``stage(Y, f=f)``; stages with f already bound (``functools.partial(nnm, f=2)``) or without
    an f are called as ``stage(Y)``.  A stage that needs f when none was given is an error here,
    at composition time.  Each stage checks its own n-versus-f condition when called.

    The returned callable validates X and checks that every stage returns a stack and the
    aggregator a (d,) vector (an aggregator with state, such as ``centered_clipping``, must be
    wrapped by the caller).
    """
    stages = list(pre)
    if aggregator is None or not callable(aggregator):
        raise TypeError(f"compose: aggregator must be a callable X -> (d,); got {aggregator!r}")
    for i, st in enumerate(stages):
        if not callable(st):
            raise TypeError(f"compose: pre-aggregation #{i} must be a callable X -> (m, d); got {st!r}")
    if f is not None:
        f = check_int(f, "compose", "f")
    plan = []
    for st in stages + [aggregator]:
        needs = _needs_f(st)
        if needs and f is None:
            raise ValueError(f"compose: stage {_stage_name(st)!r} needs f; pass compose(..., f=<int>)")
        plan.append((st, needs))
    names = [_stage_name(st) for st, _ in plan]

    def composed(X: Any) -> Any:
        xp, Y, n, d = as_stack(X, "compose(" + " -> ".join(names) + ")")
        for j, (st, needs) in enumerate(plan[:-1]):
            Y = st(Y, f=f) if needs else st(Y)
            if not _array.is_array(Y) or Y.ndim != 2 or int(Y.shape[1]) != d:
                shape = tuple(Y.shape) if _array.is_array(Y) else type(Y).__name__
                raise ValueError(f"compose: pre-aggregation {names[j]!r} must return an (m, {d}) stack; got {shape}")
        st, needs = plan[-1]
        out = st(Y, f=f) if needs else st(Y)
        if not _array.is_array(out) or tuple(out.shape) != (d,):
            shape = tuple(out.shape) if _array.is_array(out) else type(out).__name__
            raise ValueError(f"compose: aggregator {names[-1]!r} must return a ({d},) vector; got {shape}")
        return out

    composed.__name__ = "∘".join(reversed(names))
    composed.__doc__ = f"{' -> '.join(names)} (refopt.preaggregators.compose, f={f})"
    return composed


_REGISTRY = {"nnm": nnm, "bucketing": bucketing, "clipping": clipping, "arc": arc}


def names() -> list[str]:
    """Names of the pre-aggregations (for :func:`get` and the CLI)."""
    return sorted(_REGISTRY)


def get(name: str, **params: Any) -> Callable[[Any], Any]:
    """The pre-aggregation ``name`` with ``params`` bound: a callable ``X -> (m, d)``.

    ``get("nnm", f=2)``, ``get("bucketing", s=2, seed=0)``, ``get("clipping", c=1.0)``.
    Parameters are checked when the callable runs (they are the function's own arguments).
    """
    if name not in _REGISTRY:
        from refopt.rules._base import suggest

        raise ValueError(suggest(name, list(_REGISTRY), "pre-aggregation"))
    fn = _REGISTRY[name]
    sig = inspect.signature(fn)
    unknown = [k for k in params if k not in sig.parameters or k == "X"]
    if unknown:
        allowed = [k for k in sig.parameters if k != "X"]
        raise TypeError(f"pre-aggregation {name!r} has no parameter(s) {unknown}; it takes {allowed}")
    return functools.partial(fn, **params)
