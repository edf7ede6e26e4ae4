"""refopt.attacks: ByzFL docstring vectors and line-search optima (robust-collab.md §8), the ALIE z
rules (§4/§8), the two line searches probe by probe, optimal attacks beat sign flipping against
the same defender, mimic's explicit state, dissensus by hand, label flipping, bad input."""

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


def _trimmed_mean(X, f):
    try:
        from refopt.aggregators import trimmed_mean
    except ImportError:  # pragma: no cover - stand-in until refopt.aggregators lands
        import array_api_compat

        xp = array_api_compat.array_namespace(X)
        return xp.mean(xp.sort(X, axis=0)[f : X.shape[0] - f, :], axis=0)
    return trimmed_mean(X, f)


def _median(X):
    try:
        from refopt.aggregators import median
    except ImportError:  # pragma: no cover
        return np.median(X, axis=0)
    return median(X)


def _mean(X):
    import array_api_compat

    return array_api_compat.array_namespace(X).mean(X, axis=0)


# ---------------------------------------------------------------------------------------
# note §8 vectors, every backend
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_byzfl_vectors(backend, dtype):
    H = backend.asarray(X8, dtype)
    cases = {
        "sign_flipping": (A.sign_flipping(H, 2), [-4, -5, -6]),
        "ipm": (A.ipm(H, 2), [-8, -10, -12]),
        "alie": (A.alie(H, 2), [8.5, 9.5, 10.5]),
        "mimic": (A.mimic(H, 2), [1, 2, 3]),
        "inf": (A.inf(H, 2), [math.inf] * 3),
        "scaled_sign_flipping": (A.scaled_sign_flipping(H, 2), [-6, -7.5, -9]),  # -(3/2)·μ
    }
    for name, (out, expected) in cases.items():
        assert tuple(out.shape) == (2, 3), name
        assert out.dtype == H.dtype, name
        got = backend.to_numpy(out)
        np.testing.assert_allclose(got, np.tile(expected, (2, 1)), rtol=1e-6, err_msg=name)
    assert np.all(np.isnan(backend.to_numpy(A.nan(H, 1))))
    assert tuple(A.sign_flipping(H, 0).shape) == (0, 3)
    np.testing.assert_array_equal(backend.to_numpy(H), X8.astype(dtype))


def test_optimal_byzfl_vectors(backend):
    """Opt-IPM / Opt-ALIE of note §8: TrMean(1) after [NNM(1), Clipping(2)], f = 1."""
    H = backend.asarray(X8)
    pre = [P.nnm, functools.partial(P.clipping, c=2.0)]
    v, tau = A.optimal_byzfl(H, 1, aggregator=_trimmed_mean, preaggregators=pre, attack="ipm", return_factor=True)
    assert tau == pytest.approx(10 * 0.8**12, rel=1e-12)
    np.testing.assert_allclose(backend.to_numpy(v), [[-2.74877907, -3.43597384, -4.1231686]], rtol=1e-8)
    v, tau = A.optimal_byzfl(H, 1, aggregator=_trimmed_mean, preaggregators=pre, attack="alie", return_factor=True)
    assert tau == pytest.approx(2.97328372, rel=1e-8)
    np.testing.assert_allclose(backend.to_numpy(v), [[12.91985116, 13.91985116, 14.91985116]], rtol=1e-8)
    # ByzFL's class defaults (Average after Clipping(2)): the objective is flat -> tau = 10
    v, tau = A.optimal_byzfl(H, 1, aggregator=_mean, preaggregators=[functools.partial(P.clipping, c=2.0)], return_factor=True)
    assert tau == 10.0
    np.testing.assert_allclose(backend.to_numpy(v), [[-40.0, -50.0, -60.0]])


def test_alie_z_rules():
    assert A.alie_z(20, 8) == pytest.approx(1.036, abs=5e-4)
    assert A.alie_z(20, 8, "epfml") == pytest.approx(0.674, abs=5e-4)
    assert A.alie_z(26, 5) == pytest.approx(0.396, abs=5e-4)
    assert A.alie_z(26, 5, "epfml") == pytest.approx(0.180, abs=5e-4)
    H = np.random.default_rng(0).normal(size=(12, 4))
    mu, sd = H.mean(0), H.std(0, ddof=1)
    np.testing.assert_allclose(A.alie(H, 8, z="paper")[0], mu + A.alie_z(20, 8) * sd)
    np.testing.assert_allclose(A.alie(H, 8, z="epfml", sign=-1)[0], mu - A.alie_z(20, 8, "epfml") * sd)
    np.testing.assert_allclose(A.alie(H, 2, z="paper", n=20)[0], mu + A.alie_z(20, 2) * sd)
    np.testing.assert_allclose(A.alie(H, 1, z=1.0, ddof=0)[0], mu + H.std(0))


# ---------------------------------------------------------------------------------------
# the two line searches, probe by probe
# ---------------------------------------------------------------------------------------


def _probes(search, **kw):
    seen = []

    def score(x):
        seen.append(x)
        return -((x - 2.5) ** 2)

    best = search(score, **kw)
    return best, seen


def test_line_search_monna_is_two_sided():
    best, seen = _probes(A.line_search_monna, evals=7)
    # expansion 0, 1, 3, 7 (fails: Δ 4 -> 3.2); contraction alternates around the best (3):
    # 7 - 3.2 = 3.8, Δ 2.56: 3.8 - 2.56 = 1.24, Δ 2.048: 1.24 + 2.048 = 3.288
    np.testing.assert_allclose(seen, [0, 1, 3, 7, 3.8, 1.24, 3.288])
    assert best == 3


def test_line_search_byzfl_is_one_sided():
    best, seen = _probes(A.line_search_byzfl, evals=7, delta=1.0)
    # same expansion; contraction always probes best + Δ: 3 + 3.2, 3 + 2.56, 3 + 2.048
    np.testing.assert_allclose(seen, [0, 1, 3, 7, 6.2, 5.56, 5.048])
    assert best == 3
    assert all(x >= 3 for x in seen[3:])


# ---------------------------------------------------------------------------------------
# optimal attacks against the defender's own rule are worse than sign flipping
# ---------------------------------------------------------------------------------------


def _distance(F, H, byz):
    return float(np.linalg.norm(np.asarray(F(np.concatenate([H, byz]))) - H.mean(0)))


@pytest.mark.parametrize("n,f", [(10, 3), (15, 4), (26, 5)])
@pytest.mark.parametrize("rule", ["trimmed_mean", "median", "nnm+trimmed_mean", "nnm+median"])
def test_optimal_attacks_beat_sign_flipping(n, f, rule):
    H = np.random.default_rng(0).normal(1.0, 1.0, size=(n - f, 20))
    F = {
        "trimmed_mean": lambda X: _trimmed_mean(X, f),
        "median": _median,
        "nnm+trimmed_mean": lambda X: _trimmed_mean(P.nnm(X, f), f),
        "nnm+median": lambda X: _median(P.nnm(X, f)),
    }[rule]
    sf = _distance(F, H, A.sign_flipping(H, f))
    byzfl = max(_distance(F, H, A.optimal_byzfl(H, f, aggregator=F, attack=k)) for k in ("ipm", "alie"))
    monna = max(_distance(F, H, A.optimal_monna(H, f, aggregator=F, attack=k)) for k in ("alie", "foe", "ipm"))
    assert byzfl > sf and monna > sf, (sf, byzfl, monna)


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(4, 12))
def test_monna_ipm_search_never_loses_to_sign_flipping(seed, n):
    """The two-sided search probes s = 1 (= sign flipping) and keeps the best probe."""
    f = (n - 1) // 2
    H = np.random.default_rng(seed).normal(size=(n - f, 3)) + 0.5
    F = lambda X: _trimmed_mean(P.nnm(X, f), f)  # noqa: E731
    sf = _distance(F, H, A.sign_flipping(H, f))
    assert _distance(F, H, A.optimal_monna(H, f, aggregator=F, attack="ipm")) >= sf


def test_optimal_attack_averages_per_node_outputs(backend):
    """An aggregator that returns one output per honest node (NNA) is scored by their mean."""
    H = backend.asarray(np.random.default_rng(1).normal(size=(7, 4)))
    f = 2

    def per_node(X):
        from refopt.aggregators import nna

        import array_api_compat

        xp = array_api_compat.array_namespace(X)
        return xp.stack([nna(X, X[i, :], f) for i in range(7)], axis=0)

    pytest.importorskip("refopt.aggregators")
    v, s = A.optimal_monna(H, f, aggregator=per_node, attack="alie", return_factor=True)
    assert tuple(v.shape) == (2, 4) and s >= 0.0


# ---------------------------------------------------------------------------------------
# mimic heuristic: explicit state
# ---------------------------------------------------------------------------------------


def _outlier_stack(rng, h=6, d=5, who=3):
    H = rng.normal(scale=0.1, size=(h, d))
    H[who, 0] += 5.0
    return H


def test_mimic_heuristic_byzfl_variant_targets_the_outlier(backend):
    rng = np.random.default_rng(0)
    state = None
    for t in range(4):
        H = backend.asarray(_outlier_stack(rng))
        v, new = A.mimic_heuristic(H, 2, state, warmup=2, variant="byzfl")
        assert new.t == t + 1
        target = 0 if t < 2 else 3  # warm-up copies node 0, then the largest |<x_i, z>|
        assert new.target == target
        np.testing.assert_array_equal(backend.to_numpy(v), np.tile(backend.to_numpy(H)[target], (2, 1)))
        state = new


def test_mimic_heuristic_epfml_fixes_the_target_after_warmup():
    rng = np.random.default_rng(1)
    H0 = _outlier_stack(rng)
    v, s1 = A.mimic_heuristic(H0, 1)  # warmup = 1: choose now, then keep
    chosen = s1.target
    assert chosen == int(np.argmax(H0 @ s1.z))
    assert abs(abs(s1.z[0]) - 1.0) < 1e-2  # the power iteration found the outlier direction
    for _ in range(3):
        H = _outlier_stack(rng, who=5)
        v, s2 = A.mimic_heuristic(H, 1, s1)
        assert s2.target == chosen and s2.t == s1.t + 1
        np.testing.assert_array_equal(v[0], H[chosen])
        s1 = s2
    # deterministic given the seed; the state is a value (inputs unchanged)
    a, sa = A.mimic_heuristic(H0, 1, seed=4)
    b, sb = A.mimic_heuristic(H0, 1, seed=4)
    np.testing.assert_array_equal(sa.z, sb.z)


# ---------------------------------------------------------------------------------------
# gossip and data-level attacks
# ---------------------------------------------------------------------------------------


def test_dissensus_by_hand(backend):
    H = backend.asarray(X8)
    W = np.full((4, 4), 0.25)  # complete graph of 4 nodes, node 3 Byzantine
    v = backend.to_numpy(A.dissensus(H, 1, weights=W))
    # node 0: pull = 0.25 ((4 - 1) + (7 - 1)) = 2.25 per coordinate, Byzantine weight 0.25:
    # v = 1 - 1.5 * 2.25 / 0.25 = -12.5
    np.testing.assert_allclose(v, [[-12.5, -11.5, -10.5], [4.0, 5.0, 6.0], [20.5, 21.5, 22.5]])


def test_dissensus_with_epsilon_one_freezes_gossip(backend):
    """ε = 1 cancels the honest pull exactly: one gossip step leaves every attacked node in place."""
    rng = np.random.default_rng(3)
    n, byz = 6, [1]  # only nodes 0 and 2 neighbour node 1
    A_ = np.array([[0, 1, 1, 0, 0, 1], [1, 0, 1, 0, 0, 0], [1, 1, 0, 1, 1, 0],
                   [0, 0, 1, 0, 1, 0], [0, 0, 1, 1, 0, 1], [1, 0, 0, 0, 1, 0]], dtype=float)
    deg = A_.sum(1)
    W = np.where(A_ > 0, 1.0 / (1.0 + np.maximum(deg[:, None], deg[None, :])), 0.0)  # Metropolis-Hastings
    W += np.diag(1.0 - W.sum(1))
    hon = [i for i in range(n) if i not in byz]
    Xh = rng.normal(size=(5, 3))
    v = backend.to_numpy(A.dissensus(backend.asarray(Xh), 1, weights=W, byzantine=byz, epsilon=1.0))
    attacked = 0
    full = np.zeros((n, 3))
    for r, i in enumerate(hon):
        full[:] = 0.0
        full[hon] = Xh
        full[byz] = v[r]  # what node i receives from its Byzantine neighbours
        stepped = W[i] @ full
        if W[i, byz].sum() > 0:
            attacked += 1
            np.testing.assert_allclose(stepped, Xh[r], atol=1e-12)
        else:
            np.testing.assert_array_equal(v[r], Xh[r])  # never received: its own vector
    assert attacked == 2  # nodes 0 and 2 neighbour node 1


def test_label_flipping(backend):
    y = backend.asarray(np.array([0, 3, 9, 5]))
    np.testing.assert_array_equal(backend.to_numpy(A.label_flipping(y, 10)), [9, 6, 0, 4])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 9\]"):
        A.label_flipping(backend.asarray(np.array([0, 10])), 10)
    with pytest.raises(TypeError, match="integer dtype"):
        A.label_flipping(backend.asarray(np.array([0.0, 1.0])), 10)


def test_gaussian_is_seeded(backend):
    H = backend.asarray(X8.astype(np.float32))
    a = backend.to_numpy(A.gaussian(H, 3, seed=5))
    b = backend.to_numpy(A.gaussian(H, 3, seed=5))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a[0], a[2])  # ByzFL: one vector for all
    np.testing.assert_allclose(a[0], np.random.default_rng(5).normal(size=(1, 3))[0].astype(np.float32))
    c = backend.to_numpy(A.gaussian(H, 3, mean=1.0, std=0.0, independent=True, rng=np.random.default_rng(0)))
    np.testing.assert_array_equal(c, 1.0)


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------


def test_bad_input(backend):
    H = backend.asarray(X8)
    with pytest.raises(ValueError, match="aggregator"):
        A.optimal_byzfl(H, 1)
    with pytest.raises(ValueError, match="aggregator"):
        A.optimal_monna(H, 1, attack="foe")
    with pytest.raises(ValueError, match="needs aggregator"):
        A.get("optimal_monna")
    with pytest.raises(ValueError, match="2-D"):
        A.sign_flipping(backend.asarray(X8[0]), 1)
    with pytest.raises(ValueError, match="f must be an int >= 0"):
        A.alie(H, -1)
    with pytest.raises(ValueError, match="undefined for n=7, f=4"):
        A.alie(H, 4, z="paper")
    with pytest.raises(ValueError, match="did you mean 'epfml'"):
        A.alie(H, 1, z="epfl")
    with pytest.raises(ValueError, match=r"index must be in \[0, 2\]"):
        A.mimic(H, 1, index=3)
    with pytest.raises(ValueError, match="more than 1 honest"):
        A.alie(backend.asarray(X8[:1]), 1)
    with pytest.raises(ValueError, match=r"shape \(n, n\) = \(4, 4\)"):
        A.dissensus(H, 1, weights=np.eye(3))
    with pytest.raises(ValueError, match="seed=<int>"):
        A.gaussian(H, 1)
    with pytest.raises(ValueError, match="ratio"):
        A.optimal_byzfl(H, 1, aggregator=_mean, ratio=0.4)


def test_mixed_and_unknown():
    with pytest.raises(TypeError, match="mixes dtypes"):
        A.sign_flipping([np.ones(2), np.ones(2, np.float32)], 1)
    with pytest.raises(ValueError, match="did you mean 'sign_flipping'"):
        A.get("sign_fliping")
    with pytest.raises(TypeError, match="no parameter"):
        A.get("ipm", tau=2.0)
    np.testing.assert_allclose(A.get("ipm", epsilon=0.5)(X8, 1), [[-2.0, -2.5, -3.0]])
    assert "optimal_monna" in A.names()
