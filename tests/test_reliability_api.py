"""Reliability of the aggregation, attack, diagnostics and rule APIs: fresh results (no aliasing of the
caller's arrays), bool flags that are bools, float32/float64 only, a NaN pivot that propagates, a
shadow reference that exists."""

from __future__ import annotations

import math

import numpy as np
import pytest

import refopt as ro
from refopt import aggregators as A, attacks as T, preaggregators as P

X = np.random.default_rng(0).normal(size=(9, 4))


# ---------------------------------------------------------------------------------------
# no result shares memory with an input
# ---------------------------------------------------------------------------------------


def test_krum_returns_a_fresh_array():
    # before: krum returned X[best, :], a view: editing the result edited the caller's stack
    Xc = X.copy()
    for f in (0, 2):
        out = A.krum(Xc, f=f)
        assert not np.shares_memory(out, Xc)
        out[:] = 1e9
        np.testing.assert_array_equal(Xc, X)


def test_geometric_median_never_returns_the_start():
    start = np.zeros(4)
    out = A.geometric_median(X, iterations=0, start=start)
    assert out is not start and not np.shares_memory(out, start)
    out[:] = 5.0
    assert np.all(start == 0.0)
    np.testing.assert_array_equal(A.geometric_median(X, iterations=3), A.geometric_median(X.copy(), iterations=3))


def test_centered_clipping_returns_two_fresh_arrays():
    center = np.zeros(4)
    agg, new_center = A.centered_clipping(X, center, iterations=0)
    assert agg is not center and new_center is not agg and not np.shares_memory(agg, new_center)
    agg[:] = 7.0
    assert np.all(center == 0.0) and np.all(new_center == 0.0)
    # the stateful form keeps its own state when the caller edits the output
    cc = A.CenteredClipping(tau=1.0)
    out = cc(X)
    kept = np.array(cc.center, copy=True)
    out[:] = 1e9
    np.testing.assert_array_equal(cc.center, kept)


def test_no_aggregator_aliases_its_input():
    import inspect

    for name in A.names():
        if name == "nna":
            rule = A.get(name, f=1, index=0)
        else:
            rule = A.get(name, f=1) if "f" in inspect.signature(getattr(A, name)).parameters else A.get(name)
        Xc = X.copy()
        out = rule(Xc)
        for o in out if isinstance(out, tuple) else (out,):
            assert not np.shares_memory(o, Xc), name


# ---------------------------------------------------------------------------------------
# nna with a non-finite pivot
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nna_non_finite_pivot_gives_nan(bad):
    # before: every distance was NaN and the first n − f rows by index were averaged
    pivot = X[0].copy()
    pivot[2] = bad
    out = A.nna(X, pivot, f=2)
    assert out.shape == (4,) and np.all(np.isnan(out))
    np.testing.assert_array_equal(A.nna(X, X[3], f=2), A.nna(X, X[3].copy(), f=2))  # finite pivots unchanged
    assert np.all(np.isfinite(A.nna(X, X[3], f=2)))


# ---------------------------------------------------------------------------------------
# bool flags are bools
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("call,name", [
    (lambda v: A.krum(X, f=1, squared=v), "squared"),
    (lambda v: A.krum_scores(X, f=1, squared=v), "squared"),
    (lambda v: A.multi_krum(X, f=1, squared=v), "squared"),
    (lambda v: A.bulyan(X, f=1, squared=v), "squared"),
    (lambda v: A.geometric_median(X, converged=v), "converged"),
    (lambda v: T.gaussian(X, 2, seed=0, independent=v), "independent"),
    (lambda v: T.optimal_monna(X, 2, aggregator=A.mean, return_factor=v), "return_factor"),
    (lambda v: T.optimal_byzfl(X, 2, aggregator=A.mean, return_factor=v), "return_factor"),
    (lambda v: ro.rules.adam(amsgrad=v), "amsgrad"),
])
@pytest.mark.parametrize("value", ["no", 0, 1, None, 1.0])
def test_non_bool_flags_are_refused(call, name, value):
    # before: squared='no' counted as True
    with pytest.raises(TypeError, match=rf"{name} must be True or False; got {value!r}"):
        call(value)


def test_bool_flags_still_work():
    assert np.array_equal(A.krum(X, f=1, squared=np.bool_(False)), A.krum(X, f=1, squared=False))


# ---------------------------------------------------------------------------------------
# float32 and float64 only
# ---------------------------------------------------------------------------------------


def test_float16_is_refused_where_float32_or_float64_is_promised():
    h = X.astype(np.float16)
    with pytest.raises(TypeError, match=r"float32 or float64.*float16"):
        A.krum(h, f=1)
    with pytest.raises(TypeError, match=r"float32 or float64.*float16"):
        A.trimmed_mean(h, f=1)
    with pytest.raises(TypeError, match=r"float32 or float64.*float16"):
        P.nnm(h, f=1)
    with pytest.raises(TypeError, match=r"float32 or float64.*float16"):
        T.alie(h, 2)
    rule = ro.rules.adam(lr=1e-3)
    with pytest.raises(TypeError, match=r"params has dtype float16; update rules need .*float32 or float64"):
        rule.init(np.ones(3, dtype=np.float16))
    p = np.ones(3, dtype=np.float32)
    assert rule.step(p, p, rule.init(p))[0].dtype == np.float32


# ---------------------------------------------------------------------------------------
# diagnostics.shadow: the reference must be one of the shadows
# ---------------------------------------------------------------------------------------


def test_shadow_reference_must_name_a_shadow():
    f = ro.functions.get("sharp_st1b")
    x0 = np.array(f.start)
    shadows = {"sgd": ro.rules.sgd(lr=1.0), "adam": ro.rules.adam(lr=1.0)}
    kw = dict(sample=[1], eps=None)
    # before: reference='nope' gave None ratios without a word
    with pytest.raises(ValueError, match=r"unknown reference .*'nope'.*known: adam, sgd"):
        ro.diagnostics.shadow(ro.rules.sgd(lr=1e-3), f, x0, 2, shadows, reference="nope", **kw)
    with pytest.raises(TypeError, match=r"keep_directions must be True or False"):
        ro.diagnostics.shadow(ro.rules.sgd(lr=1e-3), f, x0, 2, shadows, keep_directions="no", **kw)
    by_default = ro.diagnostics.shadow(ro.rules.sgd(lr=1e-3), f, x0, 2, shadows, **kw)
    explicit = ro.diagnostics.shadow(ro.rules.sgd(lr=1e-3), f, x0, 2, shadows, reference="sgd", **kw)
    assert [r["ratio_to_sgd"] for r in by_default.records] == [r["ratio_to_sgd"] for r in explicit.records]
    relative = ro.diagnostics.shadow(ro.rules.sgd(lr=1e-3), f, x0, 2, shadows, reference="adam", **kw)
    assert all(r["ratio_to_sgd"] is not None for r in relative.records)
    without_sgd = ro.diagnostics.shadow(ro.rules.sgd(lr=1e-3), f, x0, 2, {"adam": ro.rules.adam(lr=1.0)}, **kw)
    assert all(r["ratio_to_sgd"] is None for r in without_sgd.records)


def test_mixing_nna_node_with_a_non_finite_own_row_gets_nan():
    # before: its distances were all +inf but its own (0), and it averaged the first rows by index
    from refopt.collaborative import mixing

    S = X.copy()
    S[1, 0] = math.nan
    mask = np.ones((4, 9), dtype=bool)
    out = mixing.nna(S, mask, 2)
    assert np.all(np.isnan(out[1])) and np.all(np.isfinite(out[[0, 2, 3]]))
    clean = mixing.nna(X, mask, 2)
    np.testing.assert_array_equal(out[0], mixing.nna(np.where(np.arange(9)[:, None] == 1, np.inf, X), mask, 2)[0])
    assert np.all(np.isfinite(clean))
