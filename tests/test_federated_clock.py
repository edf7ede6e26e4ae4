"""The exact federated clock and the closed forms of shared/reference/federated.md §1.5, §6."""

from __future__ import annotations

import math
from fractions import Fraction as F

import numpy as np
import pytest

from refopt.federated import theory
from refopt.federated.clock import (
    ServerEvent,
    client_times,
    measured_mean_delays,
    measured_participation,
    schedule,
)

F80 = client_times("F-80", 10)
THETA = list(range(10))  # θ_i* = i, client 0 slowest


def _key(events):
    return [(e.step, e.clients, e.started) for e in events]


# --------------------------------------------------------------------------- client times
def test_f80_times_exact():
    assert F80 == tuple(F(45 - 4 * i, 45) for i in range(10))
    assert F80[0] == 1 and F80[-1] == F(1, 5)
    assert client_times("F-0", 4) == (F(1),) * 4
    assert client_times("F-80", 1) == (F(1),)
    assert client_times("F-50", 3) == (F(1), F(3, 4), F(1, 2))
    assert client_times("F-12.5", 2) == (F(1), F(7, 8))


def test_random_times_seeded_and_exact():
    for model in ("exp", "half_normal", "half-normal"):
        a = client_times(model, 6, seed=3)
        assert a == client_times(model, 6, seed=3)
        assert a != client_times(model, 6, seed=4)
        assert all(isinstance(v, F) and v > 0 for v in a)
    rng = np.random.default_rng(3)
    assert client_times("exp", 2, seed=3) == tuple(F(float(rng.exponential(1.0))) for _ in range(2))


def test_user_times_decimal_reading():
    assert client_times([0.2, 1, F(1, 3), "2/7"], 4) == (F(1, 5), F(1), F(1, 3), F(2, 7))
    assert client_times(np.array([0.5, 0.25]), 2) == (F(1, 2), F(1, 4))


# --------------------------------------------------------------------------- FedAsync (note §1.5)
def test_async_closed_forms_table():
    f = theory.participation("fedasync", F80)
    d = theory.mean_delays("fedasync", F80)
    assert round(float(theory.steps_per_time("fedasync", F80)), 2) == 21.28
    assert (round(float(f[0]), 4), round(float(d[0]), 2)) == (0.0470, 20.28)
    assert (round(float(f[-1]), 4), round(float(d[-1]), 2)) == (0.2350, 3.26)
    assert sum(f) == 1
    dm = theory.multipliers("fedasync", F80, weights="unbiased")
    assert (round(float(dm[0]), 3), round(float(dm[-1]), 3)) == (2.128, 0.426)
    for M, lam, d0, d1 in [(20, 41.31, 2.065, 0.413), (50, 101.61, 2.032, 0.406)]:
        t = client_times("F-80", M)
        assert round(float(theory.steps_per_time("fedasync", t)), 2) == lam
        dm = theory.multipliers("fedasync", t, weights="unbiased")
        assert (round(float(dm[0]), 3), round(float(dm[-1]), 3)) == (d0, d1)


def test_async_simulated_matches_closed_forms():
    ev = schedule("fedasync", F80, horizon=2000)
    f, d = measured_participation(ev, 10), measured_mean_delays(ev, 10)
    fc, dc = theory.participation("fedasync", F80), theory.mean_delays("fedasync", F80)
    for i in range(10):
        assert abs(f[i] / fc[i] - 1) < 0.01 and abs(d[i] / dc[i] - 1) < 0.01
    assert abs(len(ev) / 2000 / theory.steps_per_time("fedasync", F80) - 1) < 0.01
    assert max(dl for e in ev for i, dl in zip(e.clients, e.delays) if i == 0) == 25  # note: max 25
    assert all(len(e.clients) == 1 for e in ev)
    assert [e.step for e in ev] == list(range(1, len(ev) + 1))
    assert all(a.time <= b.time for a, b in zip(ev, ev[1:])) and ev[-1].time <= 2000


def test_async_ties_by_index_round_robin():
    ev = schedule("fedasync", [1, 1, 1], horizon=3)
    assert _key(ev) == [(1, (0,), (0,)), (2, (1,), (0,)), (3, (2,), (0,)),
                        (4, (0,), (1,)), (5, (1,), (2,)), (6, (2,), (3,)),
                        (7, (0,), (4,)), (8, (1,), (5,)), (9, (2,), (6,))]
    assert [e.time for e in ev] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert all(dl == 2 for e in ev[3:] for dl in e.delays)  # F-0: delay exactly M − 1
    # a later index finishing together with an earlier one comes after it
    ev = schedule("fedasync", [F(1, 2), 1], horizon=1)
    assert _key(ev) == [(1, (0,), (0,)), (2, (0,), (1,)), (3, (1,), (0,))]


def test_exponential_race_closed_forms():
    f, d, lam = theory.async_exponential([1, 2, 5])
    assert f == (F(1, 8), F(1, 4), F(5, 8)) and d == (F(7), F(3), F(3, 5)) and lam == 8


# --------------------------------------------------------------------------- FedFix
@pytest.mark.parametrize("dt, periods", [(F(1, 5), (5, 5, 5, 4, 4, 3, 3, 2, 2, 1)),
                                         (F(1, 2), (2,) * 6 + (1,) * 4),
                                         (F(4, 5), (2,) * 3 + (1,) * 7)])
def test_fedfix_exact(dt, periods):
    ev = schedule("fedfix", F80, horizon=60 * dt, delta_t=float(dt))  # a float Δt is read as decimal
    assert len(ev) == 60 and [e.time for e in ev] == [n * dt for n in range(1, 61)]
    f = measured_participation(ev, 10)
    assert f == theory.participation("fedfix", F80, delta_t=dt) == tuple(F(1, k) for k in periods)
    for e in ev:  # every single delay is exactly ⌈τ_i/Δt⌉ − 1, every window of a period
        assert e.clients == tuple(i for i in range(10) if e.step % periods[i] == 0)
        assert e.delays == tuple(periods[i] - 1 for i in e.clients)
    assert measured_mean_delays(ev, 10) == theory.mean_delays("fedfix", F80, delta_t=dt)
    assert theory.max_delays("fedfix", F80, delta_t=dt) == tuple(k - 1 for k in periods)
    assert theory.steps_per_time("fedfix", F80, delta_t=dt) == 1 / dt


@pytest.mark.parametrize("M", [10, 20, 50])
def test_fedfix_no_float_window_hazard(M):
    # the authors' float F-80 time of the fastest client is not 0.2 (note §1.9) ...
    tau_float = 1 - (M - 1) * (0.8 / (M - 1))
    assert tau_float != 0.2
    # ... the exact clock's is, so with Δt = 0.2 it takes part in every window, with delay 0
    t = client_times("F-80", M)
    ev = schedule("fedfix", t, horizon=40, delta_t=0.2)
    assert len(ev) == 200 and all((M - 1) in e.clients for e in ev)
    assert measured_participation(ev, M)[-1] == 1
    assert all(e.delays[e.clients.index(M - 1)] == 0 for e in ev)


def test_fedfix_boundary_decimal_reading():
    # τ = 0.27 and Δt = 0.09 are 3 windows apart; their binary floats are not
    assert math.ceil(F(0.27) / F(0.09)) != 3
    ev = schedule("fedfix", [0.27], horizon=F(90, 100), delta_t=0.09)
    assert [e.step for e in ev if e.clients] == [3, 6, 9]
    assert all(e.delays == (2,) for e in ev if e.clients)


def test_fedfix_empty_windows_count():
    ev = schedule("fedfix", [1, 1], horizon=2, delta_t=F(1, 4))
    assert [e.clients for e in ev] == [(), (), (), (0, 1), (), (), (), (0, 1)]
    assert ev[7].started == (4, 4) and ev[7].delays == (3, 3)


@pytest.mark.parametrize("dt", [1, 1.5, 7])
def test_fedfix_large_window_is_fedavg(dt):
    fix = schedule("fedfix", F80, horizon=30, delta_t=dt)
    avg = schedule("fedavg", F80, horizon=len(fix))  # max τ = 1
    assert _key(fix) == _key(avg) and len(fix) == int(30 // F(str(dt)))
    assert all(e.clients == tuple(range(10)) and e.delays == (0,) * 10 for e in avg)
    if dt == 1:
        assert fix == avg


def test_fedavg_schedule():
    ev = schedule("fedavg", [F(1, 3), F(1, 2)], horizon=F(3, 2))
    assert ev == [ServerEvent(n, F(n, 2), (0, 1), (n - 1, n - 1)) for n in (1, 2, 3)]
    assert theory.steps_per_time("fedavg", [F(1, 3), F(1, 2)]) == 2


# --------------------------------------------------------------------------- FedBuff
def test_fedbuff_fraboni_periodic_grouping():
    f = theory.participation("fedbuff", F80, buffer=5)
    assert f == (F(1, 4), F(1, 4), F(1, 3), F(1, 3), F(1, 3), F(1, 2), F(1, 2), F(1, 2), F(1), F(1))
    assert sum(f) == 5
    assert round(float(theory.steps_per_time("fedbuff", F80, buffer=5)), 2) == 3.46
    ev = schedule("fedbuff", F80, horizon=400, buffer=5)
    fm = measured_participation(ev, 10)
    assert all(abs(a / b - 1) < 0.01 for a, b in zip(fm, f))
    assert all(len(e.clients) == 5 for e in ev)
    assert theory.participation("fedbuff", F80, buffer=5, horizon=400) == fm


def test_fedbuff_small_cases_both_variants():
    fr = schedule("fedbuff", [1, F(1, 3)], horizon=2, buffer=2)
    assert _key(fr) == [(1, (0, 1), (0, 0)), (2, (0, 1), (1, 1))]
    assert [e.time for e in fr] == [1, 2]
    ng = schedule("fedbuff", [1, F(1, 3)], horizon=1, buffer=2, variant="nguyen")
    assert _key(ng) == [(1, (1, 1), (0, 0)), (2, (0, 1), (0, 1))]
    assert [e.time for e in ng] == [F(2, 3), 1]


@pytest.mark.parametrize("variant", ["fraboni", "nguyen"])
def test_fedbuff_reductions(variant):
    assert schedule("fedbuff", F80, horizon=20, buffer=1, variant=variant) == schedule("fedasync", F80, horizon=20)
    eq = schedule("fedbuff", [F(2, 3)] * 4, horizon=2, buffer=4, variant=variant)
    if variant == "fraboni":  # note §6 P7: buffer = M, equal speeds ≡ FedAvg
        assert eq == schedule("fedavg", [F(2, 3)] * 4, horizon=2)
    else:  # only the client that fills the buffer restarts from the new model
        assert _key(eq) == [(1, (0, 1, 2, 3), (0, 0, 0, 0)), (2, (0, 1, 2, 3), (0, 0, 0, 1)),
                            (3, (0, 1, 2, 3), (1, 1, 1, 2))]


# --------------------------------------------------------------------------- theory: fixed points
@pytest.mark.parametrize("scheme, kw, digits, value", [
    ("fedasync", {}, 4, 5.9635),
    ("fedfix", {"delta_t": 0.5}, 4, 5.3571),
    ("fedfix", {"delta_t": 0.8}, 4, 5.1176),
    ("fedfix", {"delta_t": 0.2}, 3, 5.978),
    ("fedbuff", {"buffer": 5}, 2, 5.85),
])
def test_quadratic_fixed_points(scheme, kw, digits, value):
    assert round(theory.fixed_point(scheme, F80, THETA, **kw), digits) == value
    assert theory.fixed_point(scheme, F80, THETA, weights="unbiased", **kw) == 4.5
    q = theory.expected_weights(scheme, F80, weights="unbiased", **kw)
    assert q == (F(1, 10),) * 10


def test_fixed_point_identical_async_is_rate_weighted():
    qt = theory.surrogate_weights("fedasync", F80)
    assert (round(float(qt[0]), 4), round(float(qt[-1]), 4)) == (0.0470, 0.2350)
    assert qt[-1] / qt[0] == 5


def test_fixed_point_nonuniform_p():
    p = [1, 2, 3, 4, 0, 0, 0, 0, 0, 10]
    want = sum(pi * i for pi, i in zip(p, range(10))) / sum(p)
    for scheme, kw in [("fedavg", {}), ("fedasync", {}), ("fedfix", {"delta_t": 0.2})]:
        assert theory.fixed_point(scheme, F80, THETA, weights="unbiased", p=p, **kw) == pytest.approx(want, abs=1e-12)
    assert theory.multipliers("fedavg", F80, weights="identical") == (F(1, 10),) * 10
    assert theory.multipliers("fedbuff", F80, weights="identical", buffer=5) == (F(1, 5),) * 10


def test_fixed_point_arrays(backend):
    opt = np.stack([np.array([i, -2.0 * i]) for i in range(10)]).astype(np.float32)
    out = theory.fixed_point("fedfix", F80, backend.asarray(opt), delta_t=0.5)
    got = backend.to_numpy(out)
    assert got.dtype == np.float32 and got.shape == (2,)
    np.testing.assert_allclose(got, [5.357142857, -10.71428571], rtol=1e-6)


# --------------------------------------------------------------------------- theory: stability (P6)
def test_stability_thresholds():
    for M, want in [(5, 0.3473), (10, 0.1652), (20, 0.0805)]:
        assert round(theory.async_f0_threshold(M), 4) == want
    for M in (5, 10):
        a = theory.stability_threshold("fedasync", client_times("F-0", M))
        assert abs(a - theory.async_f0_threshold(M)) < 2e-4
    assert theory.stability_threshold("fedavg", F80) == 2.0
    assert theory.stability_threshold("fedavg", F80, weights="identical") == 2.0
    f0 = client_times("F-0", 10)
    assert abs(theory.stability_threshold("fedfix", f0, delta_t=0.2) - 0.4) < 2e-4
    assert abs(theory.stability_threshold("fedfix", f0, delta_t=0.5) - 1.0) < 2e-4
    # FedFix-0.8, F-80: the stable set is not an interval; contracting again at a = 3.5
    assert theory.spectral_radius("fedfix", F80, 3.5, delta_t=0.8) < 1
    assert theory.spectral_radius("fedfix", F80, 2.0, delta_t=0.8) > 1
    assert theory.spectral_radius("fedfix", F80, 0.5, delta_t=0.8) < 1


def test_fedbuff_cycle_delays():
    assert theory.mean_delays("fedbuff", F80, buffer=5) == tuple(map(F, (3, 3, 2, 2, 2, 1, 1, 1, 0, 0)))


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    (dict(scheme="fedfix", delta_t=0), "delta_t must be > 0"),
    (dict(scheme="fedfix", delta_t=-0.5), "delta_t must be > 0"),
    (dict(scheme="fedfix", delta_t=float("nan")), "delta_t must be a finite"),
    (dict(scheme="fedfix"), "needs delta_t"),
    (dict(scheme="fedasync", delta_t=0.5), "only applies to scheme 'fedfix'"),
    (dict(scheme="fedbuff", buffer=11), r"buffer=11 must be in \[1, number of clients = 10\]"),
    (dict(scheme="fedbuff", buffer=0), r"buffer=0 must be in \[1"),
    (dict(scheme="fedbuff"), "needs an integer buffer"),
    (dict(scheme="fedbuff", buffer=True), "needs an integer buffer"),
    (dict(scheme="fedbuff", buffer=2, variant="nguyn"), "did you mean 'nguyen'"),
    (dict(scheme="fedavg", buffer=2), "only applies to scheme 'fedbuff'"),
    (dict(scheme="fedasyn"), "unknown scheme 'fedasyn'; did you mean 'fedasync'"),
    (dict(scheme="fedasync", horizon=0), "horizon must be > 0"),
    (dict(scheme="fedasync", horizon=float("inf")), "horizon must be a finite"),
])
def test_schedule_bad_input(kwargs, match):
    kw = dict(horizon=10) | kwargs
    with pytest.raises(ValueError, match=match):
        schedule(kw.pop("scheme"), F80, **kw)


@pytest.mark.parametrize("times, match", [
    ([1, -0.5], r"times\[1\] must be > 0"),
    ([1, 0], r"times\[1\] must be > 0"),
    ([1, float("nan")], r"times\[1\] must be a finite"),
    ([float("inf"), 1], r"times\[0\] must be a finite"),
    ([], "non-empty sequence"),
])
def test_schedule_bad_times(times, match):
    with pytest.raises(ValueError, match=match):
        schedule("fedasync", times, horizon=1)


def test_client_times_bad_input():
    with pytest.raises(ValueError, match="did you mean 'exp'"):
        client_times("expo", 3)
    with pytest.raises(ValueError, match="did you mean 'half_normal'"):
        client_times("half_norml", 3)
    with pytest.raises(ValueError, match=r"X must be in \[0, 100\)"):
        client_times("F-100", 3)
    with pytest.raises(ValueError, match="got 2 times for clients=3"):
        client_times([1, 2], 3)
    with pytest.raises(ValueError, match=r"client time \[0\] must be > 0"):
        client_times([-1.0], 1)
    with pytest.raises(ValueError, match="clients must be a positive integer"):
        client_times("F-80", 0)
    with pytest.raises(TypeError, match="real number"):
        client_times([True], 1)


def test_theory_bad_input():
    with pytest.raises(ValueError, match="did you mean 'unbiased'"):
        theory.multipliers("fedasync", F80, weights="unbiassed")
    with pytest.raises(ValueError, match="p has 3 entries but there are 10 clients"):
        theory.fixed_point("fedasync", F80, THETA, weights="unbiased", p=[1, 2, 3])
    with pytest.raises(ValueError, match="optima has 2 entries"):
        theory.fixed_point("fedasync", F80, [1, 2])
    with pytest.raises(ValueError, match="did not become periodic"):
        theory.periodic_schedule("fedasync", F80, max_steps=500)
    with pytest.raises(ValueError, match="pass horizon"):
        theory.participation("fedbuff", F80, buffer=5, variant="nguyen")
