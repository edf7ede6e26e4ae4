"""Tests of the benchmark sections ``aggregation`` and ``simulators`` (quick NumPy context).

The sections time refopt against peers written in the bench; these tests check what a report
relies on: one row per case with the documented fields, a positive ratio equal to
``peer_seconds / seconds``, and results that were compared and found equal.  The per-pair
baselines themselves are checked against independent NumPy formulas on a small stack.
"""

from __future__ import annotations

import math

import array_api_compat.numpy as npx
import numpy as np
import pytest

from refopt.bench import aggregation, simulators
from refopt.bench._common import Context, Row


def _quick():
    return Context("numpy", npx, quick=True, repeat=1)


def _check_rows(rows, section, cases):
    assert [r.case for r in rows] == cases
    for r in rows:
        assert isinstance(r, Row)
        assert r.section == section and r.impl.startswith("refopt") and r.peer
        assert r.seconds > 0 and r.peer_seconds > 0
        assert r.ratio is not None and r.ratio > 0
        assert math.isclose(r.ratio, r.peer_seconds / r.seconds)
        assert r.note.startswith("equal"), (r.case, r.note)  # results were compared and agree
        d = r.as_dict()
        assert d["section"] == section and "ratio" in d and "note" in d


def test_aggregation_section_quick():
    rows = aggregation.run(_quick())
    _check_rows(rows, "aggregation", ["krum", "nnm+trimmed_mean", "geometric_median"])
    for r in rows:
        assert r.target == aggregation.TARGET
        assert r.met == (r.ratio >= 5.0)  # equal results, so met is the ratio test alone
        assert r.gbps is not None and r.gbps > 0
        assert "n=20 d=10000 f=3" in r.size
    assert "max |diff|" in rows[1].note and "max |diff|" in rows[2].note


def test_simulators_section_quick():
    rows = simulators.run(_quick())
    _check_rows(rows, "simulators", [
        "collab dsgd", "collab monna, sign_flipping", "collab monna, alie (line-searched)",
        "fed fedavg quadratic", "fed fedfix quadratic", "fed fedavg softmax", "fed fedfix softmax",
    ])
    for r in rows:
        assert r.met is None and r.target is None  # reported, no target in the issue
        assert "steps/s" in r.note


def test_make_stack_layout():
    X = aggregation.make_stack(6, 50, 2)
    assert X.dtype == np.float32 and X.shape == (6, 50)
    np.testing.assert_array_equal(X[0], X[1])  # the f attack rows are identical: -3 * center
    center = -X[0] / 3.0
    assert np.abs(X[2:] - center).max() < 1.0  # honest rows: center + 0.1 N(0, 1)


def test_loop_baselines_match_definitions():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(7, 5))
    D = aggregation.loop_sq_distances(X)
    np.testing.assert_allclose(D, ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1), rtol=1e-12, atol=1e-12)
    f = 2
    scores = np.sort(D, axis=1)[:, 1: 7 - f]  # drop the zero self-distance, n - f - 1 nearest
    assert aggregation.loop_krum(D, f) == int(np.argmin(scores.sum(1)))
    Y = np.stack([X[np.argsort(D[i], kind="stable")[: 7 - f]].mean(0) for i in range(7)])
    np.testing.assert_allclose(aggregation.loop_nnm_trimmed_mean(X, D, f), np.sort(Y, 0)[f: 7 - f].mean(0),
                               rtol=1e-12)
    # the note's three-point geometric-median vector (robust-collab.md §8: T = 3 from 0, nu = 0.1)
    X3 = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    np.testing.assert_allclose(aggregation.loop_geometric_median(X3, 0.1, 3),
                               [3.78788764, 4.78788764, 5.78788764], atol=5e-9)


@pytest.mark.parametrize("algorithm,attack,params", [
    ("dsgd", None, None), ("monna", "sign_flipping", None),
])
def test_collab_peer_equals_simulator(algorithm, attack, params):
    from refopt import problems
    from refopt.collaborative import monna_lr, simulate

    data = problems.load_dataset("digits")
    problem = problems.softmax_regression(data[0].shape[1], 10)
    nb = 0 if attack is None else 3
    r = simulate(algorithm, problem, data, nodes=10, byzantine=nb, f=3, attack=attack, attack_params=params,
                 steps=4, lr=monna_lr, alpha=1.0, seed=2, batch_size=25, eval_every=4)
    final, seconds = simulators.collab_peer(algorithm, problem, data, nodes=10, byzantine=nb, attack=attack,
                                            attack_params=params, steps=4, alpha=1.0, seed=2, batch_size=25,
                                            xp=npx)
    assert seconds > 0
    np.testing.assert_allclose(final, r.theta, rtol=1e-10, atol=1e-12)
