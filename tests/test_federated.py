"""Server rules (refopt.federated.rules) and the simulator (refopt.federated.simulate).

Numbers from shared/reference/federated.md: §1.5 (multipliers, participation, delays), §4.1 (the
selected-set bias), §6 P4 (quadratic fixed points), P7 (reductions), P11 (FedBuff normalisation).
"""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest

from refopt.federated import clock, rules, theory
from refopt.federated.simulate import simulate

F80 = clock.client_times("F-80", 10)
OPTIMA = list(range(10))


# ----------------------------------------------------------------------------- rules
def test_staleness_functions():
    assert rules.staleness_factor(7) == 1.0
    assert rules.staleness_factor(3, "polynomial") == 0.5                      # (1 + 3)^(-1/2)
    assert rules.staleness_factor(3, "polynomial", a=2.0) == 1.0 / 16.0
    assert rules.staleness_factor(4, "hinge") == 1.0                           # τ <= b = 4
    assert rules.staleness_factor(6, "hinge") == 1.0 / 21.0                    # 1 / (10 (6 - 4) + 1)
    assert rules.staleness_factor(12, "hinge", a=1.0, b=10.0) == 1.0 / 3.0     # Plato's a = 1, b = 10
    # α_t is recomputed from the base α: it never depends on earlier stalenesses (Plato #335)
    seq = [rules.fedasync_alpha(0.6, t, "polynomial") for t in (0, 8, 8, 0)]
    assert seq == [0.6, 0.6 / 3.0, 0.6 / 3.0, 0.6]


def test_server_update_values(backend):
    theta = backend.freeze(backend.asarray(np.array([1.0, -2.0])))
    deltas = backend.freeze(backend.asarray(np.array([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])))
    new, v = rules.server_update(theta, deltas, [0.5, 0.25, 0.125], lr_server=2.0)
    assert v is None
    np.testing.assert_allclose(backend.to_numpy(new), [1.0 + 2 * (0.5 + 0.5), -2.0 + 2 * (0.5 + 0.5)], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(backend.to_numpy(theta), [1.0, -2.0])        # inputs untouched
    empty = backend.asarray(np.zeros((0, 2)))
    same, _ = rules.server_update(theta, empty, [])                             # empty FedFix window
    np.testing.assert_array_equal(backend.to_numpy(same), [1.0, -2.0])
    # server momentum: v1 = u1, v2 = β v1 + u2, θ += η v
    d1 = backend.asarray(np.array([[1.0, 1.0]]))
    t1, v1 = rules.server_update(theta, d1, [1.0], lr_server=0.5, momentum=0.9)
    t2, v2 = rules.server_update(t1, d1, [1.0], lr_server=0.5, momentum=0.9, velocity=v1)
    np.testing.assert_allclose(backend.to_numpy(v2), [1.9, 1.9], rtol=1e-15)
    np.testing.assert_allclose(backend.to_numpy(t2), [1.0 + 0.5 + 0.95, -2.0 + 0.5 + 0.95], rtol=1e-15)


def test_server_update_float32_stays_float32():
    theta = np.ones(3, dtype=np.float32)
    new, _ = rules.server_update(theta, np.ones((2, 3), dtype=np.float32), np.array([0.1, 0.2]), lr_server=1.0)
    assert new.dtype == np.float32
    np.testing.assert_allclose(new, 1.3, rtol=1e-6)


def test_fedasync_forms(backend):
    x = backend.asarray(np.array([2.0, 0.0]))          # current model x_{t-1}
    start = backend.asarray(np.array([1.0, 1.0]))      # stale x_τ
    new = backend.asarray(np.array([3.0, -1.0]))       # client result
    mix = backend.to_numpy(rules.fedasync_update(x, new, start, 0.25, form="mixing"))
    dlt = backend.to_numpy(rules.fedasync_update(x, new, start, 0.25, form="delta"))
    np.testing.assert_allclose(mix, [2.25, -0.25], rtol=1e-15)
    np.testing.assert_allclose(dlt, [2.5, -0.5], rtol=1e-15)
    # note §3: mixing = delta + α (x_τ - x_{t-1}), the pull back toward the stale start
    np.testing.assert_allclose(mix, dlt + 0.25 * (np.array([1.0, 1.0]) - np.array([2.0, 0.0])), rtol=1e-15)


def test_fedavg_sampling_weights():
    rng = np.random.default_rng(0)
    p = np.array([1.0, 1.0, 2.0])
    np.testing.assert_allclose(rules.fedavg_weights(p), [0.25, 0.25, 0.5])
    md = np.array([rules.fedavg_weights(p, sampling="md", m=2, rng=rng) for _ in range(4000)])
    np.testing.assert_allclose(md.sum(1), 1.0)                                 # Σ ω = 1 always (MD)
    np.testing.assert_allclose(md.mean(0), [0.25, 0.25, 0.5], atol=0.02)      # unbiased
    un = np.array([rules.fedavg_weights(p, sampling="uniform", m=2, rng=rng) for _ in range(4000)])
    np.testing.assert_allclose(un.mean(0), [0.25, 0.25, 0.5], atol=0.02)
    assert set(np.count_nonzero(un, axis=1)) == {2}
    # note §4.1: renormalising over the sampled set is biased: E[w] = (0.278, 0.278, 0.444)
    sel = np.array([rules.fedavg_weights(p, sampling="uniform", m=2, rng=rng, normalise_selected=True)
                    for _ in range(6000)])
    np.testing.assert_allclose(sel.mean(0), [5 / 18, 5 / 18, 4 / 9], atol=0.015)


def test_fedbuff_normalisations():
    d = [0.2] * 5
    same = rules.fedbuff_weights(d, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(same, 0.2)
    np.testing.assert_allclose(rules.fedbuff_weights(d, [0, 1, 2, 3, 4], normalise="weights"), 0.2)  # s ≡ 1
    taus = [0, 3, 8, 3, 0]
    s = np.array([1.0, 0.5, 1.0 / 3.0, 0.5, 1.0])
    buf = rules.fedbuff_weights(d, taus, staleness="polynomial")
    wts = rules.fedbuff_weights(d, taus, staleness="polynomial", normalise="weights")
    non = rules.fedbuff_weights(d, taus, staleness="polynomial", normalise="none")
    np.testing.assert_allclose(buf, 0.2 * s)
    np.testing.assert_allclose(non, s)
    np.testing.assert_allclose(wts.sum(), 1.0)
    np.testing.assert_allclose(wts.sum() / buf.sum(), 5 / s.sum())          # P11: step enlarged by K / Σ s >= 1


def test_client_multipliers_match_note_and_theory():
    d = rules.client_multipliers("fedasync", F80, weights="unbiased")
    assert round(d[0], 3) == 2.128 and round(d[-1], 3) == 0.426             # note §1.5 table, M = 10
    np.testing.assert_allclose(d, [float(v) for v in theory.multipliers("fedasync", F80, weights="unbiased")],
                               rtol=1e-14)
    fix = rules.client_multipliers("fedfix", F80, weights="unbiased", delta_t=Fraction(1, 5))
    # exact time: the fastest client (τ = 1/5) has ⌈τ/Δt⌉ = 1 (the authors' floats got 2 or a drift, §1.9)
    np.testing.assert_allclose(fix, [0.1 * k for k in (5, 5, 5, 4, 4, 3, 3, 2, 2, 1)], rtol=1e-14)
    np.testing.assert_allclose(rules.client_multipliers("fedfix", F80, delta_t=0.2), 1.0)
    np.testing.assert_allclose(rules.client_multipliers("fedbuff", F80, buffer=5), 0.2)
    np.testing.assert_allclose(rules.client_multipliers("fedavg", F80, weights="unbiased", p=range(1, 11)),
                               np.arange(1, 11) / 55)
    with pytest.raises(ValueError, match="frequencies"):
        rules.client_multipliers("fedbuff", F80, buffer=5, weights="unbiased")


def test_rules_bad_input():
    with pytest.raises(ValueError, match="did you mean 'polynomial'"):
        rules.staleness_factor(1, "polynomal")
    with pytest.raises(ValueError, match="one entry per client"):
        rules.client_multipliers("fedasync", F80, weights=[1.0] * 9)
    with pytest.raises(ValueError, match="buffer"):
        rules.client_multipliers("fedbuff", F80, buffer=11)
    with pytest.raises(ValueError, match="times"):
        rules.client_multipliers("fedasync", [1.0, -0.5])
    with pytest.raises(ValueError, match="weights"):
        rules.server_update(np.zeros(2), np.zeros((2, 2)), [1.0])
    with pytest.raises(ValueError, match="alpha"):
        rules.fedasync_alpha(1.5, 0)


# ----------------------------------------------------------------------------- simulate: fixed points
# lr 0.003, K = 1: Δ_i = −0.003 (θ − i). Horizons give ≳ 8 e-folds of contraction (rate
# η_l Σ_i q_i × steps per time unit); the iterates then circle the fixed point within ~0.01.
IDENTICAL = [
    ("fedasync", {}, 200, 5.9635),
    ("fedfix", {"delta_t": Fraction(1, 2)}, 300, 5.3571),
    ("fedfix", {"delta_t": Fraction(4, 5)}, 300, 5.1176),
    ("fedbuff", {"buffer": 5}, 900, 5.85),
]


@pytest.mark.parametrize("scheme,kw,horizon,note", IDENTICAL, ids=["async", "fedfix-0.5", "fedfix-0.8", "fedbuff-5"])
def test_identical_weights_reach_the_biased_fixed_point(scheme, kw, horizon, note):
    pred = theory.fixed_point(scheme, F80, OPTIMA, weights="identical", **kw)
    assert abs(pred - note) < 1e-3                                            # note §6 P4
    r = simulate(scheme, "quadratic", clients=10, speeds="F-80", horizon=horizon, local_steps=1,
                 lr_local=0.003, weights="identical", eval_every=10, **kw)
    assert abs(r.optimum[0] - 4.5) < 1e-12
    assert abs(r.final_params[0] - pred) < 0.02
    # the realised expected weights q̂ give the same surrogate (they are measured, not assumed)
    assert abs(float(r.surrogate_weights @ np.arange(10)) - pred) < 0.01


UNBIASED = [
    ("fedavg", {}, 2800),
    ("fedasync", {}, 160),
    ("fedfix", {"delta_t": Fraction(1, 2)}, 1400),
    ("fedfix", {"delta_t": Fraction(4, 5)}, 2200),
    ("fedbuff", {"buffer": 5}, 900),
]


@pytest.mark.parametrize("scheme,kw,horizon", UNBIASED, ids=["fedavg", "async", "fedfix-0.5", "fedfix-0.8", "fedbuff-5"])
def test_unbiased_weights_reach_the_federated_optimum(scheme, kw, horizon):
    r = simulate(scheme, "quadratic", clients=10, speeds="F-80", horizon=horizon, lr_local=0.003,
                 weights="unbiased", eval_every=50, **kw)
    assert abs(r.final_params[0] - 4.5) < 0.02
    np.testing.assert_allclose(r.expected_weights.sum(), 1.0, atol=0.01)


def test_fedfix_with_long_window_is_fedavg_bit_for_bit():
    """note §6 P7: Δt >= max τ_i gives FedAvg's iterates exactly (float64, every step)."""
    for problem, extra in (("quadratic", {}),
                           ("softmax", {"local_steps": 3, "local_momentum": 0.9, "batch_size": 16})):
        avg = simulate("fedavg", problem, clients=6, horizon=12, lr_local=0.05, weights="unbiased", eval_every=1,
                       record_params=True, **extra)
        for dt in (1, Fraction(3, 2)):
            fix = simulate("fedfix", problem, clients=6, horizon=12 * dt, delta_t=dt, lr_local=0.05,
                           weights="unbiased", eval_every=1, record_params=True, **extra)
            assert fix.server_steps == avg.server_steps == 12
            np.testing.assert_array_equal(fix.params, avg.params)
            np.testing.assert_array_equal(fix.loss, avg.loss)
            np.testing.assert_array_equal(fix.times, avg.times * float(dt))


def test_participation_and_delays_recorded():
    r = simulate("fedasync", "quadratic", horizon=300, lr_local=0.003, eval_every=100)
    # note §1.5: slowest f = 0.0470, mean delay 20.28; fastest 0.2350 and 3.26 (to 1 %)
    np.testing.assert_allclose(r.participation[[0, -1]], [0.0470, 0.2350], rtol=0.01)
    np.testing.assert_allclose(r.mean_delay[[0, -1]], [20.28, 3.26], rtol=0.01)
    assert 24 <= r.max_delay[0] <= 25                                         # note: 25 over horizon 2000
    fix = simulate("fedfix", "quadratic", horizon=60, delta_t=Fraction(1, 5), eval_every=100)
    # exact clock: the fastest client (τ = Δt = 0.2) takes part in every window (note P10)
    assert fix.participation[-1] == 1.0 and fix.mean_delay[-1] == 0.0
    np.testing.assert_array_equal(fix.mean_delay, [4, 4, 4, 3, 3, 2, 2, 1, 1, 0])


def test_single_client_async_is_centralized_sgd():
    """note §6 P7: FedAsync with M = 1 is plain SGD: θ_n = 3 (1 − (1 − η)^n)."""
    from refopt.problems import quadratic_clients

    r = simulate("fedasync", quadratic_clients([3.0]), speeds=[1], horizon=20, lr_local=0.1, eval_every=1)
    np.testing.assert_allclose(r.params[:, 0], 3.0 * (1.0 - 0.9 ** np.arange(21)), rtol=1e-13, atol=1e-15)


def test_fedasync_alpha_mixing_and_fedbuff_options_run():
    r = simulate("fedasync", "quadratic", horizon=50, alpha=0.5, staleness="polynomial", lr_local=0.05)
    assert np.isfinite(r.final_params).all() and 4.5 < r.final_params[0] < 7.0
    d = simulate("fedasync", "quadratic", horizon=50, alpha=0.5, form="delta", staleness="hinge", lr_local=0.05)
    assert d.final_params[0] != r.final_params[0]
    b = simulate("fedbuff", "quadratic", horizon=50, buffer=3, variant="nguyen", staleness="polynomial",
                 normalise="weights", server_momentum=0.5, lr_local=0.01)
    assert np.isfinite(b.final_params).all() and b.server_steps > 0
    s = simulate("fedavg", "quadratic", horizon=400, sampling="md", sample=4, lr_local=0.02, weights="unbiased")
    assert abs(s.final_params[0] - 4.5) < 0.3


def test_backends_agree(backend):
    ref = simulate("fedbuff", "quadratic", horizon=20, buffer=3, lr_local=0.05, eval_every=5)
    r = simulate("fedbuff", "quadratic", horizon=20, buffer=3, lr_local=0.05, eval_every=5, xp=backend.xp)
    np.testing.assert_allclose(r.final_params, ref.final_params, rtol=1e-12)
    r32 = simulate("fedbuff", "quadratic", horizon=20, buffer=3, lr_local=0.05, eval_every=5, xp=backend.xp,
                   dtype="float32")
    np.testing.assert_allclose(r32.final_params, ref.final_params, rtol=1e-5)


def test_softmax_on_dirichlet_digits_learns():
    r = simulate("fedfix", "softmax", clients=10, delta_t=Fraction(1, 2), horizon=150, local_steps=5,
                 lr_local=0.1, weights="unbiased", split_alpha=0.1, batch_size=32, seed=1)
    assert r.server_steps == 300
    assert r.accuracy[0] < 0.3 and r.accuracy[-1] > 0.8                      # chance = 0.1
    assert r.loss[-1] < 0.5 * r.loss[0]
    out = json.loads(json.dumps(r.to_dict()))
    assert out["server_steps"] == 300 and len(out["participation"]) == 10


# ----------------------------------------------------------------------------- bad input
@pytest.fixture
def no_schedule(monkeypatch):
    """Fail the test if a simulation gets as far as building its schedule."""

    def boom(*a, **k):  # pragma: no cover - only reached on a bug
        raise AssertionError("the simulation started before the input was checked")

    monkeypatch.setattr(clock, "schedule", boom)


@pytest.mark.parametrize("kwargs,match", [
    ({"scheme": "fedasnyc"}, "did you mean 'fedasync'"),
    ({"scheme": "fedasync", "weights": [1.0] * 9}, "one entry per client"),
    ({"scheme": "fedasync", "weights": "unbaised"}, "did you mean 'unbiased'"),
    ({"scheme": "fedbuff", "buffer": 11}, "buffer=11"),
    ({"scheme": "fedbuff"}, "needs an integer buffer"),
    ({"scheme": "fedfix", "delta_t": 0}, "delta_t"),
    ({"scheme": "fedfix", "delta_t": -0.5}, "delta_t"),
    ({"scheme": "fedfix"}, "needs delta_t"),
    ({"scheme": "fedavg", "delta_t": 0.5}, "only applies to scheme 'fedfix'"),
    ({"scheme": "fedasync", "speeds": [1.0] * 9 + [-1.0]}, "client time"),
    ({"scheme": "fedasync", "speeds": [1.0] * 9 + [math.inf]}, "client time"),
    ({"scheme": "fedasync", "clients": 5, "problem": "quadratic", "speeds": [1.0] * 4}, "clients=5"),
    ({"scheme": "fedfix", "delta_t": 0.5, "alpha": 0.5}, "alpha"),
    ({"scheme": "fedasync", "alpha": 0.5, "weights": "unbiased"}, "mixing form"),
    ({"scheme": "fedfix", "delta_t": 0.5, "staleness": "hinge"}, "no staleness"),
    ({"scheme": "fedasync", "horizon": 0}, "horizon"),
    ({"scheme": "fedasync", "lr_local": -1.0}, "lr_local"),
])
def test_bad_input_raises_before_simulating(no_schedule, kwargs, match):
    kw = {"problem": "quadratic", "horizon": 10}
    kw.update(kwargs)
    scheme = kw.pop("scheme")
    with pytest.raises((ValueError, TypeError), match=match):
        simulate(scheme, **kw)


def test_quadratic_problem_size_mismatch(no_schedule):
    from refopt.problems import quadratic_clients

    with pytest.raises(ValueError, match="does not match"):
        simulate("fedasync", quadratic_clients(range(4)), clients=10, horizon=5)
