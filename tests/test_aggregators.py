"""Tests of refopt.aggregators: the note's ByzFL vectors, conventions, properties, robustness.

Numbers: robust-collab.md §8 (ByzFL docstrings, re-derived there with stable ties) and §3.2
(the (f, kappa) bound of the coordinate-wise trimmed mean).  Independent NumPy re-implementations
below (``_ref_*``) are written from the note's definitions, not from the library code.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refopt.aggregators as A

X3 = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])

# ---------------------------------------------------------------------------------------------
# §8: ByzFL docstring vectors


SECTION8 = [
    ("mean", lambda X, B: A.mean(X), [4, 5, 6]),
    ("median", lambda X, B: A.median(X), [4, 5, 6]),
    ("trimmed_mean", lambda X, B: A.trimmed_mean(X, 1), [4, 5, 6]),
    ("centered_clipping", lambda X, B: A.centered_clipping(X)[0], [4, 5, 6]),
    ("caf", lambda X, B: A.caf(X, 1), [4, 5, 6]),
    ("geometric_median", lambda X, B: A.geometric_median(X, nu=0.1, iterations=3), [3.78788764, 4.78788764, 5.78788764]),
    ("krum", lambda X, B: A.krum(X, 1), [1, 2, 3]),
    ("multi_krum", lambda X, B: A.multi_krum(X, 1), [2.5, 3.5, 4.5]),
    ("mda", lambda X, B: A.mda(X, 1), [2.5, 3.5, 4.5]),
    ("nna(idx=1)", lambda X, B: A.nna(X, X[1, :], 1), [2.5, 3.5, 4.5]),
    ("meamed", lambda X, B: A.meamed(X, 1), [2.5, 3.5, 4.5]),
    ("smea", lambda X, B: A.smea(X, 1), [2.5, 3.5, 4.5]),
]


@pytest.mark.parametrize("case", SECTION8, ids=[c[0] for c in SECTION8])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_section8_vectors(backend, case, dtype):
    name, call, expected = case
    X = backend.asarray(X3, dtype)
    out = call(X, backend)
    assert out.dtype == X.dtype
    got = backend.to_numpy(out)
    tol = 1e-8 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
    np.testing.assert_array_equal(backend.to_numpy(X), X3.astype(dtype))  # input untouched


def test_section8_geometric_median_digits():
    got = A.geometric_median(X3)
    np.testing.assert_allclose(got, [3.78788764, 4.78788764, 5.78788764], atol=5e-9)
    # converged, it is the true median of three collinear points: the middle one
    np.testing.assert_allclose(A.geometric_median(X3, converged=True, tol=1e-12), [4, 5, 6], atol=1e-9)


def test_get_matches_section8():
    assert A.names()[:3] == ["mean", "median", "trimmed_mean"]
    np.testing.assert_allclose(A.get("trimmed_mean", f=1)(X3), [4, 5, 6])
    np.testing.assert_allclose(A.get("nna", f=1, index=1)(X3), [2.5, 3.5, 4.5])
    np.testing.assert_allclose(A.get("nna", f=1, pivot=X3[1])(X3), [2.5, 3.5, 4.5])
    np.testing.assert_allclose(A.get("krum", f=1, squared=False)(X3), [1, 2, 3])
    cc = A.get("centered_clipping", tau=1.0)
    first = cc(X3)
    second = cc(X3)  # starts from the first output
    ref1, c1 = A.centered_clipping(X3, None, tau=1.0)
    ref2, _ = A.centered_clipping(X3, c1, tau=1.0)
    np.testing.assert_allclose(first, ref1)
    np.testing.assert_allclose(second, ref2)
    assert not np.allclose(first, second)
    for name in ("trimmed_mean", "meamed", "krum", "multi_krum", "mda", "cge", "caf", "smea"):
        assert A.get(name, f=1)(X3).shape == (3,)
    for name in ("mean", "median", "geometric_median"):
        assert A.get(name)(X3).shape == (3,)


# ---------------------------------------------------------------------------------------------
# conventions against independent NumPy references


def _ref_sqdist(X):
    X = X.astype(np.float64)
    return ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)


def _ref_krum_scores(X, q, squared=True):
    D = _ref_sqdist(X)
    if not squared:
        D = np.sqrt(D)
    n = len(X)
    return np.array([np.sort(np.delete(D[i], i))[:q].sum() for i in range(n)])


def _ref_bulyan_paper(X, f, theta, squared=True):
    pool = list(range(len(X)))
    picked = []
    for _ in range(theta):
        P = X[pool]
        q = min(max(1, len(pool) - f - 2), len(pool) - 1)
        s = _ref_krum_scores(P, q, squared)
        j = int(np.argmin(s))
        picked.append(pool.pop(j))
    S = X[picked]
    beta = theta - 2 * f
    med = np.median(S, axis=0)
    idx = np.argsort(np.abs(S - med), axis=0, kind="stable")[:beta]
    return np.take_along_axis(S, idx, axis=0).mean(0)


def _ref_mda(X, f):
    D = _ref_sqdist(X)
    best, best_s = np.inf, None
    for S in itertools.combinations(range(len(X)), len(X) - f):
        diam = max(D[i, j] for i in S for j in S)
        if diam < best:
            best, best_s = diam, S
    return X[list(best_s)].mean(0)


def _ref_smea(X, f):
    best, best_s = np.inf, None
    for S in itertools.combinations(range(len(X)), len(X) - f):
        Y = X[list(S)]
        C = np.cov(Y.T, bias=True)
        lam = np.linalg.eigvalsh(np.atleast_2d(C))[-1]
        if lam < best:
            best, best_s = lam, S
    return X[list(best_s)].mean(0)


def _ref_caf(X, f):
    n = len(X)
    c = np.ones(n)
    best, best_mu = np.inf, None
    while c.sum() > n - 2 * f:
        mu = (c[:, None] * X).sum(0) / c.sum()
        Dd = X - mu
        cov = (c[:, None, None] * Dd[:, :, None] * Dd[:, None, :]).sum(0) / c.sum()
        w, V = np.linalg.eigh(cov)
        if w[-1] < best:
            best, best_mu = w[-1], mu
        tau = (Dd @ V[:, -1]) ** 2
        c = c * (1 - tau / tau.max())
    return best_mu


def _data(seed, n, d, scale=1.0):
    return np.random.default_rng(seed).normal(size=(n, d)) * scale


def test_krum_conventions():
    X = _data(1, 9, 4)
    f = 2
    for neighbours, q in [("n-f-1", 6), ("n-f-2", 5)]:
        for squared in (True, False):
            s = A.krum_scores(X, f, neighbours=neighbours, squared=squared)
            ref = _ref_krum_scores(X, q, squared)
            np.testing.assert_allclose(s, ref, rtol=1e-12)
            np.testing.assert_array_equal(A.krum(X, f, neighbours=neighbours, squared=squared), X[np.argmin(ref)])
            for m in (1, 3, None):
                mm = len(X) - f if m is None else m
                want = X[np.argsort(ref, kind="stable")[:mm]].mean(0)
                np.testing.assert_allclose(
                    A.multi_krum(X, f, m, neighbours=neighbours, squared=squared), want, rtol=1e-12
                )


def test_median_even_conventions(backend):
    X = np.array([[1.0, 10.0], [3.0, -2.0], [2.0, 0.0], [8.0, 1.0]])
    Xb = backend.asarray(X)
    np.testing.assert_array_equal(backend.to_numpy(A.median(Xb)), np.median(X, axis=0))
    np.testing.assert_array_equal(backend.to_numpy(A.median(Xb, even="lower")), [2.0, 0.0])


def test_bulyan_variants():
    X = _data(3, 11, 5)
    f = 2
    np.testing.assert_allclose(A.bulyan(X, f), _ref_bulyan_paper(X, f, 11 - 4), rtol=1e-12)
    np.testing.assert_allclose(A.bulyan(X, f, "aggregathor"), _ref_bulyan_paper(X, f, 11 - 6), rtol=1e-12)
    s = _ref_krum_scores(X, 11 - f - 2)
    S = X[np.argsort(s, kind="stable")[: 11 - 4]]
    med = np.median(S, axis=0)
    idx = np.argsort(np.abs(S - med), axis=0, kind="stable")[: 11 - 8]
    np.testing.assert_allclose(A.bulyan(X, f, "scores_once"), np.take_along_axis(S, idx, 0).mean(0), rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exhaustive_and_spectral_rules_match_references(seed):
    X = _data(seed, 7, 3)
    X[6] += 4.0  # one outlier
    f = 2
    np.testing.assert_allclose(A.mda(X, f), _ref_mda(X, f), rtol=1e-12)
    np.testing.assert_allclose(A.smea(X, f), _ref_smea(X, f), rtol=1e-10)
    np.testing.assert_allclose(A.caf(X, f), _ref_caf(X, f), rtol=1e-9, atol=1e-12)


def test_cge_and_nna_definitions():
    X = _data(5, 8, 3)
    f = 3
    norms = np.linalg.norm(X, axis=1)
    np.testing.assert_allclose(A.cge(X, f), X[np.argsort(norms, kind="stable")[:5]].mean(0), rtol=1e-12)
    p = X[2] + 0.1
    dist = ((X - p) ** 2).sum(1)
    np.testing.assert_allclose(A.nna(X, p, f), X[np.argsort(dist, kind="stable")[:5]].mean(0), rtol=1e-12)


def test_geometric_median_options():
    X = _data(7, 6, 4)
    # one smoothed Weiszfeld step by hand, from a given start
    z0 = np.full(4, 0.5)
    w = (1 / 6) / np.maximum(np.linalg.norm(X - z0, axis=1), 0.2)
    np.testing.assert_allclose(
        A.geometric_median(X, nu=0.2, iterations=1, start=z0), (w[:, None] * X).sum(0) / w.sum(), rtol=1e-12
    )
    z = A.geometric_median(X, converged=True, tol=1e-13, nu=1e-9)
    # first-order optimality of sum ||z - x_i||: the unit vectors sum to ~0
    u = (z - X) / np.linalg.norm(z - X, axis=1)[:, None]
    assert np.linalg.norm(u.sum(0)) < 1e-8


def test_centered_clipping_iterations():
    X = _data(9, 5, 3) * 10
    v = np.zeros(3)
    for _ in range(3):
        diff = X - v
        s = np.minimum(1.0, 2.0 / np.linalg.norm(diff, axis=1))
        v = v + (diff * s[:, None]).mean(0)
    agg, center = A.centered_clipping(X, np.zeros(3), tau=2.0, iterations=3)
    np.testing.assert_allclose(agg, v, rtol=1e-12)
    np.testing.assert_array_equal(agg, center)


# ---------------------------------------------------------------------------------------------
# hypothesis properties


def _rules(n, f):
    """(name, callable, tolerance for equivariance) of the rules valid for (n, f)."""
    out = [
        ("mean", lambda X: A.mean(X), 1e-12),
        ("median", lambda X: A.median(X), 1e-12),
        ("trimmed_mean", lambda X: A.trimmed_mean(X, f), 1e-12),
        ("meamed", lambda X: A.meamed(X, f), 1e-12),
        ("mda", lambda X: A.mda(X, f), 1e-12),
        ("caf", lambda X: A.caf(X, f), 1e-8),
        ("smea", lambda X: A.smea(X, f), 1e-10),
        # nu is absolute: scale it with the spread so that the rule is scale-equivariant
        ("gm_converged", lambda X: A.geometric_median(
            X, converged=True, tol=1e-13, start=A.mean(X), nu=0.1 * float(np.std(X, axis=0).mean())), 1e-7),
    ]
    if n - f - 1 >= 2:  # with one neighbour, mutual nearest neighbours always tie
        out.append(("krum", lambda X: A.krum(X, f), 1e-12))
        out.append(("multi_krum", lambda X: A.multi_krum(X, f), 1e-12))
    if n >= 2 * f + 3 and n - f - 2 >= 2:
        out.append(("krum_paper", lambda X: A.krum(X, f, neighbours="n-f-2", squared=False), 1e-12))
    if n >= 4 * f + 3:
        out.append(("bulyan", lambda X: A.bulyan(X, f), 1e-12))
        out.append(("bulyan_once", lambda X: A.bulyan(X, f, "scores_once"), 1e-12))
    return out


stacks = st.tuples(
    st.integers(0, 2**31 - 1),  # seed
    st.integers(3, 8),  # n
    st.integers(2, 5),  # d (>= 2: on a line, sums of plain distances tie exactly)
).map(lambda t: (t[0], t[1], t[2], t[0] % ((t[1] - 1) // 2 + 1)))  # f with n > 2f


def _close(a, b, tol, scale=1.0, name=""):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale, err_msg=name)


@given(stacks)
def test_permutation_invariance(params):
    seed, n, d, f = params
    X = _data(seed, n, d)
    perm = np.random.default_rng(seed + 1).permutation(n)
    for name, rule, tol in _rules(n, f):
        if name == "bulyan" and f < 3:
            continue  # its last Krum picks use one neighbour: mutual nearest neighbours tie exactly
        _close(rule(X[perm]), rule(X), max(tol, 1e-12), scale=np.abs(X).max(), name=name)


@given(stacks, st.floats(-1e3, 1e3), st.floats(1e-3, 1e3))
def test_translation_and_scale_equivariance(params, shift, scale):
    seed, n, d, f = params
    X = _data(seed, n, d)
    t = np.random.default_rng(seed + 2).normal(size=d) * shift
    for name, rule, tol in _rules(n, f):
        base = rule(X)
        mag = np.abs(X).max() + np.abs(t).max()
        _close(rule(X + t), base + t, max(tol, 1e-9), scale=mag, name=name)
        _close(rule(X * scale), base * scale, max(tol, 1e-9), scale=np.abs(X).max() * scale, name=name)
    # centered clipping: equivariant when the center and tau move with the data
    c = X[0] * 0.3
    agg, _ = A.centered_clipping(X, c, tau=0.7, iterations=2)
    agg_t, _ = A.centered_clipping(X + t, c + t, tau=0.7, iterations=2)
    agg_s, _ = A.centered_clipping(X * scale, c * scale, tau=0.7 * scale, iterations=2)
    _close(agg_t, agg + t, 1e-9, np.abs(X).max() + np.abs(t).max())
    _close(agg_s, agg * scale, 1e-9, np.abs(X).max() * scale)


@given(stacks, st.sampled_from(["huge", "sign_flip", "alie", "nan", "inf"]))
def test_coordinatewise_rules_stay_in_honest_range(params, attack):
    seed, n, d, f = params
    h = n - f
    H = _data(seed, h, d)
    B = _attack(attack, H, f, seed)
    X = np.concatenate([H, B]) if f else H
    X = X[np.random.default_rng(seed).permutation(n)]
    lo, hi = H.min(0), H.max(0)
    for out in (A.median(X), A.median(X, even="lower"), A.trimmed_mean(X, f)):
        assert np.all(out >= lo - 1e-12) and np.all(out <= hi + 1e-12)


@given(stacks)
def test_averaging_rules_stay_in_input_range_without_attack(params):
    seed, n, d, f = params
    X = _data(seed, n, d)
    lo, hi = X.min(0) - 1e-9, X.max(0) + 1e-9
    for name, rule, _ in _rules(n, f):
        out = rule(X)
        assert np.all(out >= lo) and np.all(out <= hi), name
    out = A.geometric_median(X)  # one step from 0 already lands in the hull
    assert np.all(out >= lo) and np.all(out <= hi)


def _attack(kind, H, f, seed):
    d = H.shape[1]
    mu, sd = H.mean(0), H.std(0, ddof=1)
    if kind == "huge":
        return np.tile(1e6 * np.ones(d), (f, 1))
    if kind == "sign_flip":
        return np.tile(-mu, (f, 1))
    if kind == "alie":
        return np.tile(mu - 1.5 * sd, (f, 1))
    if kind == "ipm":
        return np.tile(-2.0 * mu, (f, 1))
    if kind == "gauss":
        return np.random.default_rng(seed).normal(size=(f, d)) * 100
    if kind == "nan":
        return np.full((f, d), np.nan)
    if kind == "inf":
        return np.full((f, d), np.inf)
    raise AssertionError(kind)


@given(
    st.integers(0, 2**31 - 1),
    st.sampled_from([(7, 1), (10, 2), (15, 3), (26, 5), (20, 6)]),
    st.sampled_from(["huge", "sign_flip", "alie", "ipm", "gauss"]),
)
def test_trimmed_mean_empirical_kappa_below_bound(seed, nf, attack):
    """||F(X) - mean_S||^2 / ((1/|S|) sum_S ||x_i - mean_S||^2) <= 6f/(n-2f) (1 + f/(n-2f)) (§3.2)."""
    n, f = nf
    rng = np.random.default_rng(seed)
    H = rng.normal(size=(n - f, 8)) + rng.normal(size=8) * 3
    X = np.concatenate([H, _attack(attack, H, f, seed)])
    X = X[rng.permutation(n)]
    mu = H.mean(0)
    var = ((H - mu) ** 2).sum(1).mean()
    ratio = ((A.trimmed_mean(X, f) - mu) ** 2).sum() / var
    bound = 6 * f / (n - 2 * f) * (1 + f / (n - 2 * f))
    assert ratio <= bound
    assert f / (n - 2 * f) <= bound  # the note's lower bound is below the upper bound


# ---------------------------------------------------------------------------------------------
# non-finite vectors


DISTANCE_RULES = [
    ("krum", lambda X: A.krum(X, 2)),
    ("krum_paper", lambda X: A.krum(X, 2, neighbours="n-f-2")),
    ("multi_krum", lambda X: A.multi_krum(X, 2)),
    ("mda", lambda X: A.mda(X, 2)),
    ("bulyan", lambda X: A.bulyan(X, 2)),
    ("bulyan_once", lambda X: A.bulyan(X, 2, "scores_once")),
    ("cge", lambda X: A.cge(X, 2)),
    ("nna", lambda X: A.nna(X, X[0, :], 2)),
    ("caf", lambda X: A.caf(X, 2)),
    ("smea", lambda X: A.smea(X, 2)),
    ("geometric_median", lambda X: A.geometric_median(X)),
    ("centered_clipping", lambda X: A.centered_clipping(X)[0]),
    ("trimmed_mean", lambda X: A.trimmed_mean(X, 2)),
    ("median", lambda X: A.median(X)),
    ("meamed", lambda X: A.meamed(X, 2)),
]


@pytest.mark.parametrize("case", DISTANCE_RULES, ids=[c[0] for c in DISTANCE_RULES])
@pytest.mark.parametrize("poison", ["nan", "inf", "mixed"])
def test_non_finite_vectors_are_ignored(backend, case, poison):
    name, rule = case
    H = _data(11, 9, 4)
    bad = np.full((2, 4), np.nan if poison == "nan" else np.inf)
    if poison == "mixed":
        bad = np.array([[1.0, np.nan, 0.0, 2.0], [-np.inf, 0.0, 1.0, 1.0]])
    X = np.concatenate([H[:3], bad[:1], H[3:], bad[1:]])  # rows 3 and 10 poisoned
    out = backend.to_numpy(rule(backend.asarray(X)))
    assert np.all(np.isfinite(out)), (name, out)
    assert np.all(out >= H.min(0) - 1e-12) and np.all(out <= H.max(0) + 1e-12)
    if name in ("krum", "krum_paper"):
        assert any(np.array_equal(out, h) for h in H)
    if name == "geometric_median":  # rows dropped: same as on the honest rows only
        np.testing.assert_allclose(out, A.geometric_median(H), rtol=1e-12)
    if name == "mda":
        np.testing.assert_allclose(out, H.mean(0), rtol=1e-12)


def test_pairwise_distances_non_finite_rows(backend):
    X = _data(2, 5, 3)
    X[1, 2] = np.nan
    X[4, 0] = -np.inf
    D = backend.to_numpy(A.pairwise_sq_distances(backend.asarray(X)))
    assert np.all(np.diag(D) == 0)
    for i in (1, 4):
        assert np.all(np.isinf(np.delete(D[i], i))) and np.all(np.isinf(np.delete(D[:, i], i)))
    ok = [0, 2, 3]
    np.testing.assert_allclose(D[np.ix_(ok, ok)], _ref_sqdist(X[ok]), rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(D, D.T)


# ---------------------------------------------------------------------------------------------
# distances: exact where the Gram form cancels


def test_float32_close_vectors_distances_exact(backend):
    rng = np.random.default_rng(4)
    base = rng.normal(size=2000) * 100
    X = (base + rng.normal(size=(6, 2000)) * 1e-3).astype(np.float32)
    X[3] = X[2]  # an exact duplicate
    X[4] = X[2]
    X[4, 7] = np.nextafter(X[4, 7], np.float32(np.inf))  # one ulp apart
    X = np.concatenate([X, 1e4 * np.ones((1, 2000), np.float32)])  # a far vector moves the mean
    exact = _ref_sqdist(X)  # float64 of the float32 values
    D = backend.to_numpy(A.pairwise_sq_distances(backend.asarray(X)))
    assert D.dtype == np.float32
    np.testing.assert_allclose(D, exact.astype(np.float32), rtol=2e-7, atol=0)
    assert D[2, 3] == 0 and D[2, 4] > 0
    # the plain float32 Gram form is useless here (what the recomputation repairs)
    s = (X.astype(np.float32) ** 2).sum(1)
    naive = s[:, None] + s[None, :] - 2 * (X @ X.T)
    assert np.max(np.abs(naive[:6, :6] - exact[:6, :6]) / (exact[:6, :6] + 1e-30)) > 1.0
    # the reference path
    E = backend.to_numpy(A.pairwise_sq_distances(backend.asarray(X), method="exact"))
    np.testing.assert_allclose(E, exact.astype(np.float32), rtol=2e-7, atol=0)


@given(st.integers(0, 2**31 - 1), st.integers(2, 9), st.integers(1, 40), st.floats(-8, 8))
def test_distances_match_direct_differences(seed, n, d, log_offset):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * 10.0 ** rng.uniform(-6, 0) + 10.0**log_offset * rng.normal(size=d)
    if n > 3:
        X[1] = X[0] + 1e-9 * rng.normal(size=d)
    exact = _ref_sqdist(X)
    D = A.pairwise_sq_distances(X)
    np.testing.assert_allclose(D, exact, rtol=1e-7, atol=0)
    X32 = X.astype(np.float32)
    D32 = A.pairwise_sq_distances(X32)
    np.testing.assert_allclose(D32, _ref_sqdist(X32).astype(np.float32), rtol=1e-6, atol=0)


# ---------------------------------------------------------------------------------------------
# backends, dtypes, errors


ALL_RULES = [
    ("mean", lambda X: A.mean(X)),
    ("median", lambda X: A.median(X)),
    ("median_lower", lambda X: A.median(X, even="lower")),
    ("trimmed_mean", lambda X: A.trimmed_mean(X, 2)),
    ("meamed", lambda X: A.meamed(X, 2)),
    ("geometric_median", lambda X: A.geometric_median(X, iterations=5)),
    ("krum", lambda X: A.krum(X, 2)),
    ("krum_paper", lambda X: A.krum(X, 2, neighbours="n-f-2", squared=False)),
    ("multi_krum", lambda X: A.multi_krum(X, 2, 4)),
    ("mda", lambda X: A.mda(X, 2)),
    ("bulyan", lambda X: A.bulyan(X, 2)),
    ("bulyan_aggregathor", lambda X: A.bulyan(X, 1, "aggregathor")),
    ("bulyan_once", lambda X: A.bulyan(X, 2, "scores_once")),
    ("centered_clipping", lambda X: A.centered_clipping(X, None, tau=0.5, iterations=3)[0]),
    ("cge", lambda X: A.cge(X, 2)),
    ("caf", lambda X: A.caf(X, 2)),
    ("smea", lambda X: A.smea(X, 2)),
    ("nna", lambda X: A.nna(X, X[3, :], 2)),
]


@pytest.mark.parametrize("case", ALL_RULES, ids=[c[0] for c in ALL_RULES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_backend_agrees_with_numpy(backend, case, dtype):
    name, rule = case
    X = _data(21, 11, 6).astype(dtype)
    X[5] += 3.0
    want = rule(X.copy())
    Xb = backend.asarray(X)
    out = rule(Xb)
    assert out.dtype == Xb.dtype and tuple(out.shape) == (6,)
    tol = 1e-10 if dtype == np.float64 else 3e-5
    np.testing.assert_allclose(backend.to_numpy(out), want, rtol=tol, atol=tol)
    np.testing.assert_array_equal(backend.to_numpy(Xb), X)


N_F_ERRORS = [
    ("trimmed_mean", lambda X, f: A.trimmed_mean(X, f), 2, "n > 2f"),
    ("meamed", lambda X, f: A.meamed(X, f), 2, "n > 2f"),
    ("krum", lambda X, f: A.krum(X, f), 2, "n > 2f"),
    ("krum", lambda X, f: A.krum(X, f, neighbours="n-f-2"), 1, "n >= 2f + 3"),
    ("multi_krum", lambda X, f: A.multi_krum(X, f), 2, "n > 2f"),
    ("mda", lambda X, f: A.mda(X, f), 2, "n > 2f"),
    ("bulyan", lambda X, f: A.bulyan(X, f), 1, "n >= 4f + 3"),
    ("cge", lambda X, f: A.cge(X, f), 2, "n > 2f"),
    ("caf", lambda X, f: A.caf(X, f), 2, "n > 2f"),
    ("smea", lambda X, f: A.smea(X, f), 2, "n > 2f"),
    ("nna", lambda X, f: A.nna(X, X[0], f), 2, "n > 2f"),
]


@pytest.mark.parametrize("case", N_F_ERRORS, ids=[f"{c[0]}-{c[3]}" for c in N_F_ERRORS])
def test_n_versus_f_errors(case):
    name, call, f, cond = case
    X = _data(0, 4, 3)
    with pytest.raises(ValueError) as e:
        call(X, f)
    msg = str(e.value)
    assert name in msg and "n=4" in msg and f"f={f}" in msg and cond in msg


def test_bad_inputs():
    X = _data(0, 5, 3)
    with pytest.raises(ValueError, match="2-D"):
        A.mean(X[0])
    with pytest.raises(TypeError, match="floating"):
        A.median(np.ones((3, 2), dtype=np.int64))
    with pytest.raises(TypeError, match="f must be an integer"):
        A.trimmed_mean(X, 1.0)
    with pytest.raises(TypeError, match="f must be an integer"):
        A.krum(X, True)
    with pytest.raises(ValueError, match="f must be an integer >= 0"):
        A.cge(X, -1)
    with pytest.raises(ValueError, match="even"):
        A.median(X, even="middle")
    with pytest.raises(ValueError, match="neighbours"):
        A.krum(X, 1, neighbours="n-f")
    with pytest.raises(ValueError, match="variant"):
        A.bulyan(_data(0, 7, 2), 1, "flower")
    with pytest.raises(ValueError, match="m must be"):
        A.multi_krum(X, 1, 6)
    with pytest.raises(TypeError, match="dtype"):
        A.nna(X, X[0].astype(np.float32), 1)
    with pytest.raises(ValueError, match="shape"):
        A.geometric_median(X, start=np.zeros(4))
    with pytest.raises(ValueError, match="nu"):
        A.geometric_median(X, nu=0.0)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="one array library"):
        A.centered_clipping(X, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown aggregator 'krun'.*'krum'"):
        A.get("krun", f=1)
    with pytest.raises(TypeError, match="unknown parameter 'ff'"):
        A.get("trimmed_mean", ff=1)
    with pytest.raises(TypeError, match="missing"):
        A.get("trimmed_mean")
    with pytest.raises(TypeError, match="exactly one of pivot"):
        A.get("nna", f=1)


def test_exhaustive_rules_guard_against_blowup():
    X = _data(0, 30, 2)
    for rule in (A.mda, A.smea):
        with pytest.raises(ValueError, match=r"C\(30, 20\) = 30045015 subsets exceeds max_subsets=100000"):
            rule(X, 10)
        with pytest.raises(ValueError, match="max_subsets=10"):
            rule(_data(0, 6, 2), 2, max_subsets=10)
    np.testing.assert_allclose(A.mda(_data(0, 6, 2), 2, max_subsets=15), _ref_mda(_data(0, 6, 2), 2))
