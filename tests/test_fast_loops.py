"""Loops refopt owns (refopt.run, refopt.problems.train) take the fast path by default where it
applies, and give the reference's bits either way; the switch forces either path."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import refopt as ro
import refopt.fast as fast

ENGINES = ["numpy"] + (["numba"] if importlib.util.find_spec("numba") is not None else [])


@pytest.fixture
def fast_calls(monkeypatch):
    """Counts the fast path's steps (the reference path never calls FusedRule.step)."""
    calls = []
    real = fast.FusedRule.step

    def counted(self, *args, **kwargs):
        calls.append(self.engine)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(fast.FusedRule, "step", counted)
    return calls


def _same_run(a, b):
    return (np.array_equal(a.x, b.x, equal_nan=True) and np.array_equal(a.loss, b.loss, equal_nan=True)
            and np.array_equal(a.grad_norm, b.grad_norm, equal_nan=True) and np.array_equal(a.diverged_at, b.diverged_at))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("rule", [ro.rules.adam(lr=0.05), ro.rules.diffgrad(lr=0.05, weight_decay=0.01),
                                  ro.rules.sgd(lr=1e-3, momentum=0.9, nesterov=True), ro.rules.radam(lr=0.05),
                                  ro.rules.adabelief(lr=0.05, amsgrad=True)], ids=lambda r: r.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_run_on_the_fast_path_equals_the_reference(rule, engine, dtype, fast_calls):
    x0 = np.random.default_rng(1).uniform(-2, 2, (300, 2)).astype(dtype)
    frozen = x0.copy()
    want = ro.run(rule, "rosenbrock", x0, 40, fast=False)
    assert fast_calls == []
    got = ro.run(rule, "rosenbrock", x0, 40, fast=engine)
    assert fast_calls == [engine] * 40
    assert _same_run(want, got)
    assert np.array_equal(x0, frozen)  # the start points are only read
    assert got.x.dtype == dtype  # every iterate kept: equal to the reference's, none overwritten by a later step


def test_run_diverging_on_the_fast_path_freezes_runs_as_the_reference(fast_calls):
    x0 = np.array([[1.5, 1.5], [-1.0, 1.0], [0.5, 0.2]])
    rule = ro.rules.sgd(lr=0.05)  # diverges on Rosenbrock from the first start point
    want = ro.run(rule, "rosenbrock", x0, 30, fast=False)
    got = ro.run(rule, "rosenbrock", x0, 30, fast=True)
    assert want.any_diverged and _same_run(want, got) and len(fast_calls) == 30
    assert want.report() == got.report()


def test_run_chooses_the_fast_path_by_size_and_rule(monkeypatch, fast_calls):
    big = np.full((fast.AUTO_MIN_ELEMENTS // 2, 2), 0.5)  # exactly AUTO_MIN_ELEMENTS
    small = big[:100]
    ro.run(ro.rules.adam(), "rosenbrock", small, 3)
    ro.run(ro.rules.adam(), "rosenbrock", big[:-1], 3)  # two elements short
    assert fast_calls == []  # below AUTO_MIN_ELEMENTS: the reference
    ro.run(ro.rules.adam(), "rosenbrock", big, 3)
    assert len(fast_calls) == 3
    fast_calls.clear()
    ro.run(ro.rules.clipped_adam(batch_axes=1), "rosenbrock", big, 2)  # no fast path: the reference, silently
    ro.run(ro.rules.adam(lr=np.full((big.shape[0], 1), 1e-3)), "rosenbrock", big, 2)  # batched: the same
    ro.run(ro.rules.adam(), "rosenbrock", big, 2, trace=True)  # a trace is the reference's
    assert fast_calls == []
    monkeypatch.setattr(fast, "AUTO_MIN_ELEMENTS", 10)
    ro.run(ro.rules.adam(), "rosenbrock", small, 2)
    assert len(fast_calls) == 2


def test_run_fast_switch_is_checked():
    x0 = np.zeros((4, 2))
    with pytest.raises(ValueError, match="fast=True: no fast path for clipped_adam"):
        ro.run(ro.rules.clipped_adam(batch_axes=1), "rosenbrock", x0, 2, fast=True)
    with pytest.raises(ValueError, match=r"fast must be None \(automatic\), True, False, 'numpy' or 'numba'; got 'cuda'"):
        ro.run(ro.rules.adam(), "rosenbrock", x0, 2, fast="cuda")
    with pytest.raises(ValueError, match="cannot record a trace"):
        ro.run(ro.rules.adam(), "rosenbrock", x0, 2, fast=True, trace=True)
    with pytest.raises(ValueError, match="batched hyper-parameters"):
        ro.run(ro.rules.adam(lr=np.full((4, 1), 1e-3)), "rosenbrock", x0, 2, fast=True)


def test_run_fast_path_refuses_other_array_libraries():
    xps = pytest.importorskip("array_api_strict")
    x0 = xps.asarray(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NumPy and CuPy arrays, not array_api_strict"):
        ro.run(ro.rules.adam(), "rosenbrock", x0, 2, fast=True)
    assert ro.run(ro.rules.adam(), "rosenbrock", x0, 2).steps == 2  # automatic: the reference


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("problem, params, dtype", [
    ("cnn", {}, np.float32), ("transformer", {}, np.float64),
], ids=["cnn", "transformer"])
def test_train_on_the_fast_path_equals_the_reference(problem, params, dtype, engine, fast_calls):
    prob = ro.problems.get(problem, **params)
    theta0 = np.asarray(prob.init(3), dtype=dtype)
    frozen = theta0.copy()
    rule = ro.rules.adam(lr=1e-2, weight_decay=1e-3)
    want = ro.problems.train(prob, rule, 6, batch_size=8, seed=3, theta0=theta0, fast=False)
    got = ro.problems.train(prob, rule, 6, batch_size=8, seed=3, theta0=theta0, fast=engine)
    assert fast_calls == [engine] * 6
    assert np.array_equal(want.theta, got.theta) and np.array_equal(want.losses, got.losses)
    assert np.array_equal(theta0, frozen) and got.theta is not theta0  # theta0 is copied, then stepped in place


def test_train_fast_switch_needs_a_rule():
    prob = ro.problems.get("random_quadratic_clients", clients=3, dim=5)

    class Plain:  # a duck-typed rule: init and step only
        def init(self, p):
            return None

        def step(self, p, g, s):
            return p - 0.1 * g, s

    assert ro.problems.train(prob, Plain(), 3).steps_run == 3
    with pytest.raises(ValueError, match="fast=True needs a refopt.rules.Rule"):
        ro.problems.train(prob, Plain(), 3, fast=True)
    with pytest.raises(ValueError, match="train: fast=True: no fast path"):
        ro.problems.train(prob, ro.rules.clipped_adam(), 3, fast=True)
