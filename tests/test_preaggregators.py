"""refopt.preaggregators: ByzFL docstring vectors (robust-collab.md §8), hand examples, the
(f, κ) bound of F∘NNM (note §3.2) under attacks, bucketing's seeding, composition, bad input."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refopt import attacks as A
from refopt import preaggregators as P

X8 = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])


# ---------------------------------------------------------------------------------------
# the defender's rules: refopt.aggregators when it exports them, else small array-API stand-ins
# ---------------------------------------------------------------------------------------


def _local_trimmed_mean(X, f):
    import array_api_compat

    xp = array_api_compat.array_namespace(X)
    n = X.shape[0]
    S = xp.sort(xp.where(xp.isnan(X), xp.asarray(math.inf, dtype=X.dtype), X), axis=0)
    return xp.mean(S[f : n - f, :], axis=0)


def _local_median(X):
    import array_api_compat

    xp = array_api_compat.array_namespace(X)
    n = X.shape[0]
    S = xp.sort(xp.where(xp.isnan(X), xp.asarray(math.inf, dtype=X.dtype), X), axis=0)
    return (S[(n - 1) // 2, :] + S[n // 2, :]) / 2.0


def _rule(name):
    try:
        import refopt.aggregators as agg

        fn = getattr(agg, name)
    except (ImportError, AttributeError):
        fn = {"trimmed_mean": _local_trimmed_mean, "median": _local_median}[name]
    return fn


def trimmed_mean(X, f):
    return _rule("trimmed_mean")(X, f)


def median(X):
    return _rule("median")(X)


# ---------------------------------------------------------------------------------------
# note §8 vectors, every backend
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_byzfl_vectors(backend, dtype):
    X = backend.asarray(X8, dtype)
    tol = dict(rtol=1e-6 if dtype == np.float32 else 1e-12, atol=0)
    y = P.nnm(X, 1)
    assert y.dtype == X.dtype
    np.testing.assert_allclose(backend.to_numpy(y), [[2.5, 3.5, 4.5], [2.5, 3.5, 4.5], [5.5, 6.5, 7.5]], **tol)
    c = backend.to_numpy(P.clipping(X, 2.0))
    np.testing.assert_allclose(c[0], [0.53452248, 1.06904497, 1.60356745], rtol=1e-7 if dtype == np.float64 else 1e-6)
    np.testing.assert_allclose(np.linalg.norm(c.astype(np.float64), axis=1), [2.0, 2.0, 2.0], rtol=1e-6)
    a = P.arc(X, 1)
    assert a.dtype == X.dtype
    a = backend.to_numpy(a)
    np.testing.assert_array_equal(a[:2], X8[:2])
    np.testing.assert_allclose(a[2], [4.41004009, 5.04004582, 5.67005155], rtol=1e-8 if dtype == np.float64 else 1e-6)
    # inputs are untouched (the read-only backend would raise on a write)
    np.testing.assert_array_equal(backend.to_numpy(X), X8.astype(dtype))


def test_nnm_by_hand_with_k_3(backend):
    # n = 4, f = 1, k = 3: distances from x0 = 0: x1 (1), x2 (4), x3 (100) -> {0, 1, 2}
    X = np.array([[0.0], [1.0], [2.0], [10.0]])
    y = backend.to_numpy(P.nnm(backend.asarray(X), 1))
    np.testing.assert_allclose(y[:, 0], [1.0, 1.0, 1.0, 13.0 / 3.0])


def test_nnm_non_finite_vectors_are_never_mixed_in(backend):
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [np.nan, 0.0]])
    y = backend.to_numpy(P.nnm(backend.asarray(X), 1))
    np.testing.assert_allclose(y[:4], np.tile(X[:4].mean(0), (4, 1)))
    assert not np.all(np.isfinite(y[4]))  # its own output stays non-finite for the next rule


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(3, 9), d=st.integers(1, 5))
def test_nnm_permutation_equivariant(seed, n, d):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    f = (n - 1) // 2
    perm = rng.permutation(n)
    np.testing.assert_allclose(P.nnm(X[perm], f), P.nnm(X, f)[perm], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------
# bucketing
# ---------------------------------------------------------------------------------------


def test_bucketing_by_hand(backend):
    X = np.arange(15.0).reshape(5, 3)
    perm = np.random.default_rng(7).permutation(5)
    y = P.bucketing(backend.asarray(X), 2, seed=7)
    assert tuple(y.shape) == (3, 3)
    y = backend.to_numpy(y)
    np.testing.assert_allclose(y[0], X[perm[:2]].mean(0))
    np.testing.assert_allclose(y[1], X[perm[2:4]].mean(0))
    np.testing.assert_allclose(y[2], X[perm[4]])  # the last bucket holds one vector


def test_bucketing_is_deterministic_given_the_seed(backend):
    X = backend.asarray(np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32))
    a = backend.to_numpy(P.bucketing(X, 3, seed=11))
    b = backend.to_numpy(P.bucketing(X, 3, seed=11))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32
    # a Generator is advanced by each call: two calls draw two permutations; same stream, same draws
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    first = [backend.to_numpy(P.bucketing(X, 2, rng=g1)) for _ in range(3)]
    second = [backend.to_numpy(P.bucketing(X, 2, rng=g2)) for _ in range(3)]
    for u, v in zip(first, second):
        np.testing.assert_array_equal(u, v)
    assert not all(np.array_equal(first[0], u) for u in first[1:])
    # bucket means preserve the overall mean when s divides n
    Xn = backend.to_numpy(X)
    np.testing.assert_allclose(P.bucketing(Xn, 4, seed=1).mean(0), Xn.mean(0), rtol=1e-5)


# ---------------------------------------------------------------------------------------
# clipping variants
# ---------------------------------------------------------------------------------------


def test_clipping_static_and_center(backend):
    X = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    y = backend.to_numpy(P.clipping(backend.asarray(X), 1.0))
    np.testing.assert_allclose(y, [[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]])
    c = np.array([1.0, 1.0])
    y = backend.to_numpy(P.clipping(backend.asarray(X), 1.0, center=backend.asarray(c)))
    # [3,4] - c = [2,3] (norm √13) -> c + [2,3]/√13; [0.3,0.4]-c has norm √(0.49+0.36) < 1: kept
    np.testing.assert_allclose(y[0], c + np.array([2.0, 3.0]) / math.sqrt(13.0))
    np.testing.assert_allclose(y[1], X[1])
    np.testing.assert_allclose(y[2], c - np.array([1.0, 1.0]) / math.sqrt(2.0))


def test_clipping_adaptive_thresholds(backend):
    X = backend.asarray(X8)
    norms = np.linalg.norm(X8, axis=1)  # √14, √77, √194
    y = backend.to_numpy(P.clipping(X, "cs_plus", f=1))  # the (n-2f) = 1st smallest norm: √14
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), [norms[0]] * 3)
    np.testing.assert_allclose(y[2], X8[2] * norms[0] / norms[2])
    y = backend.to_numpy(P.clipping(X, "second_largest"))
    np.testing.assert_allclose(y, backend.to_numpy(P.arc(X, 1)))  # here both cut at √77
    np.testing.assert_allclose(backend.to_numpy(P.clipping(X, "arc", f=1)), backend.to_numpy(P.arc(X, 1)))


def test_arc_counts_and_f_zero(backend):
    X = np.diag(np.arange(1.0, 11.0))  # norms 1..10
    # n = 10, f = 3: k = floor(2*3*7/10) = 4 -> rows with norms 7..10 clipped to 6
    y = backend.to_numpy(P.arc(backend.asarray(X), 3))
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), [1, 2, 3, 4, 5, 6, 6, 6, 6, 6])
    np.testing.assert_array_equal(backend.to_numpy(P.arc(backend.asarray(X), 0)), X)


def test_clipping_huge_and_non_finite_vectors(backend):
    X = np.array([[1e30, 1e30], [np.inf, 0.0], [np.nan, 1.0], [0.5, 0.0]], dtype=np.float32)
    y = backend.to_numpy(P.clipping(backend.asarray(X), 2.0))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[0], [math.sqrt(2.0), math.sqrt(2.0)], rtol=1e-6)
    np.testing.assert_array_equal(y[1:3], 0.0)  # no direction: replaced by the centre
    np.testing.assert_array_equal(y[3], X[3])


# ---------------------------------------------------------------------------------------
# (f, κ) of F∘NNM under attacks (note §3.2)
# ---------------------------------------------------------------------------------------


def kappa_trimmed_mean(n, f):
    r = f / (n - 2 * f)
    return 6.0 * r * (1.0 + r)


def kappa_median(n, f):
    return 4.0 * (1.0 + f / (n - 2 * f)) ** 2


def kappa_after_nnm(kappa, n, f):
    return 8.0 * f / (n - f) * (kappa + 1.0)


ATTACKS = {
    "sign_flipping": A.sign_flipping,
    "scaled_sign_flipping": A.scaled_sign_flipping,
    "ipm": functools.partial(A.ipm, epsilon=0.1),
    "alie": A.alie,
    "alie_paper": functools.partial(A.alie, z="paper"),
    "mimic": A.mimic,
    "inf": A.inf,
    "nan": A.nan,
    "gaussian": functools.partial(A.gaussian, std=10.0, seed=3),
}


def empirical_kappa(F, H, byz):
    """‖F(H ∪ B) − x̄_H‖² / ((1/h) Σ ‖x_i − x̄_H‖²), the honest set as S."""
    out = np.asarray(F(np.concatenate([H, byz], axis=0)), dtype=np.float64)
    mean = H.mean(0)
    var = np.mean(np.sum((H - mean) ** 2, axis=1))
    return float(np.sum((out - mean) ** 2) / var)


@settings(max_examples=30)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(5, 14),
    d=st.integers(1, 6),
    attack=st.sampled_from(sorted(ATTACKS)),
    rule=st.sampled_from(["trimmed_mean", "median"]),
    ffrac=st.floats(0.05, 0.49),
)
def test_nnm_then_rule_is_f_kappa_robust_under_attacks(seed, n, d, attack, rule, ffrac):
    f = max(1, min((n - 1) // 2, int(ffrac * n)))
    h = n - f
    rng = np.random.default_rng(seed)
    H = rng.normal(size=(h, d)) * rng.uniform(0.1, 10.0) + rng.normal(size=d) * 5.0
    byz = ATTACKS[attack](H, f)
    if rule == "trimmed_mean":
        F = lambda Y: trimmed_mean(P.nnm(Y, f), f)  # noqa: E731
        bound = kappa_after_nnm(kappa_trimmed_mean(n, f), n, f)
    else:
        F = lambda Y: median(P.nnm(Y, f))  # noqa: E731
        bound = kappa_after_nnm(kappa_median(n, f), n, f)
    ratio = empirical_kappa(F, H, byz)
    assert ratio <= bound, (attack, rule, n, f, ratio, bound)


@pytest.mark.parametrize("n,f", [(10, 3), (26, 5)])
def test_nnm_trimmed_mean_kappa_under_the_optimal_attack(n, f):
    """The defender-aware line search is the strongest attack here; still inside the bound."""
    rng = np.random.default_rng(n)
    H = rng.normal(size=(n - f, 10)) + 1.0
    F = lambda Y: trimmed_mean(P.nnm(Y, f), f)  # noqa: E731
    bound = kappa_after_nnm(kappa_trimmed_mean(n, f), n, f)
    for kind in ("alie", "foe"):
        byz = A.optimal_monna(H, f, aggregator=F, attack=kind)
        ratio = empirical_kappa(F, H, byz)
        assert 0.0 < ratio <= bound, (kind, ratio, bound)
        # the lower bound of any (f, κ)-robust rule (note §3.2) says how far a rule can be pushed
        # on *some* input; it is not an assumption-free floor for this one input


# ---------------------------------------------------------------------------------------
# composition
# ---------------------------------------------------------------------------------------


def test_compose_forwards_f_like_byzfl(backend):
    X = backend.asarray(X8)
    agg = P.compose(P.nnm, aggregator=trimmed_mean, f=1)
    out = backend.to_numpy(agg(X))
    np.testing.assert_allclose(out, [2.5, 3.5, 4.5])
    # an already-bound f is not overridden; stages without f are called on X alone
    agg2 = P.compose(functools.partial(P.clipping, c=2.0), functools.partial(P.nnm, f=1), aggregator=median)
    expected = median(P.nnm(P.clipping(X8, 2.0), 1))
    np.testing.assert_allclose(backend.to_numpy(agg2(X)), expected, rtol=1e-12)
    assert P.get("nnm", f=1)(X8).shape == (3, 3)


def test_compose_errors():
    with pytest.raises(ValueError, match="needs f"):
        P.compose(P.nnm, aggregator=median)
    with pytest.raises(TypeError, match="aggregator must be a callable"):
        P.compose(P.nnm, aggregator=None, f=1)
    bad = P.compose(aggregator=lambda Y: Y, f=1)
    with pytest.raises(ValueError, match=r"must return a \(3,\) vector"):
        bad(X8)


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------


def test_bad_input(backend):
    X = backend.asarray(X8)
    with pytest.raises(ValueError, match=r"nnm needs n > 2f.*n=3, f=2"):
        P.nnm(X, 2)
    with pytest.raises(ValueError, match=r"arc needs n > 2f"):
        P.arc(X, 2)
    with pytest.raises(ValueError, match="2-D"):
        P.nnm(backend.asarray(X8[0]), 0)
    with pytest.raises(TypeError, match="real floating"):
        P.nnm(backend.asarray(X8.astype(np.int64)), 1)
    with pytest.raises(TypeError, match="f must be an int"):
        P.nnm(X, 1.0)
    with pytest.raises(TypeError, match="f must be an int"):
        P.nnm(X, True)
    with pytest.raises(ValueError, match="f must be an int >= 0"):
        P.nnm(X, -1)
    with pytest.raises(ValueError, match="seed=<int>"):
        P.bucketing(X, 2)
    with pytest.raises(ValueError, match="s must be an int >= 1"):
        P.bucketing(X, 0, seed=1)
    with pytest.raises(ValueError, match="c must be > 0"):
        P.clipping(X, 0.0)
    with pytest.raises(ValueError, match="did you mean 'cs_plus'"):
        P.clipping(X, "cs_plu", f=1)
    with pytest.raises(ValueError, match="needs f"):
        P.clipping(X, "arc")


def test_mixed_lists():
    v32, v64 = np.ones(3, np.float32), np.ones(3)
    with pytest.raises(TypeError, match="mixes dtypes"):
        P.nnm([v32, v64, v64], 1)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="one array library"):
        P.nnm([v64, torch.ones(3, dtype=torch.float64), v64], 1)
    np.testing.assert_allclose(P.nnm([X8[0], X8[1], X8[2]], 1), P.nnm(X8, 1))
    with pytest.raises(ValueError, match="did you mean 'nnm'"):
        P.get("nmm")
