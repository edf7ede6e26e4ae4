"""refopt.diagnostics: Pan & Li's sharpness, model and line-search reductions, contributions, shadows.

Reference numbers: notes clipping.md §5 (sharp-coordinate quadratics ST-1a, ST-1b, ST-2; d = 1000,
h_i = 1000 for i < 10 else 1), asserted to the digits the note prints.
"""

from __future__ import annotations

import importlib
import math

import array_api_compat
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refopt import diagnostics as D
from refopt import rules, transforms

# ---------------------------------------------------------------------------------------
# test functions of our own (duck typing), built as the note defines them
# ---------------------------------------------------------------------------------------

D_ = 1000
I_ = np.arange(D_)
H_DIAG = np.where(I_ < 10, 1000.0, 1.0)
X_ST1A = 1 + 0.5 * np.sin(I_)
X_ST1B = np.where(I_ < 10, 0.05 * (1 + 0.5 * np.sin(I_)), 1 + 0.5 * np.sin(I_))


def _ns(x):
    return array_api_compat.array_namespace(x)


def _like(a, x):
    return _ns(x).asarray(a, dtype=x.dtype, device=array_api_compat.device(x))


class DiagQuadratic:
    """f(x) = ½ Σ h_i x_i²."""

    name = "diag_quadratic"

    def __init__(self, h):
        self.h = np.asarray(h, dtype=np.float64)
        self.dim = self.h.shape[0]

    def value(self, x):
        return 0.5 * _ns(x).sum(_like(self.h, x) * x * x, axis=-1)

    def grad(self, x, *, step=None):
        return _like(self.h, x) * x

    def hvp(self, x, v):
        return _like(self.h, x) * v


class DenseQuadratic:
    """f(x) = ½ xᵀHx for a symmetric H (possibly indefinite)."""

    name = "dense_quadratic"

    def __init__(self, H):
        self.H = np.asarray(H, dtype=np.float64)
        self.dim = self.H.shape[0]

    def value(self, x):
        return 0.5 * _ns(x).sum(x * (x @ _like(self.H, x)), axis=-1)

    def grad(self, x, *, step=None):
        return x @ _like(self.H, x)

    def hvp(self, x, v):
        return v @ _like(self.H, x)


class LogCosh:
    """f(x) = Σ log cosh(x_i − c_i); ∇f = tanh(x − c); ∇²f = diag(sech²(x − c))."""

    name = "logcosh"

    def __init__(self, c, with_hvp=True):
        self.c = np.asarray(c, dtype=np.float64)
        self.dim = self.c.shape[0]
        if with_hvp:
            self.hvp = self._hvp

    def value(self, x):
        xp = _ns(x)
        return xp.sum(xp.log(xp.cosh(x - _like(self.c, x))), axis=-1)

    def grad(self, x, *, step=None):
        return _ns(x).tanh(x - _like(self.c, x))

    def _hvp(self, x, v):
        xp = _ns(x)
        return v / xp.cosh(x - _like(self.c, x)) ** 2


def dct_q(d):
    """Orthonormal DCT-II matrix: Q[k, n] = sqrt(2/d) cos(π (n + ½) k / d), row 0 divided by √2."""
    k = np.arange(d)[:, None]
    n = np.arange(d)[None, :]
    q = np.sqrt(2.0 / d) * np.cos(np.pi * (n + 0.5) * k / d)
    q[0] /= np.sqrt(2.0)
    return q


def clip(g, c):
    return transforms.clip_top_fraction(g, c)[0]


def near_printed(value, printed: str):
    """|value - printed| within half a unit of the printed last digit."""
    text = printed.replace("−", "-")
    decimals = len(text.split(".")[1]) if "." in text else 0
    assert abs(float(value) - float(text)) <= 0.5 * 10.0 ** (-decimals) * (1 + 1e-9), (float(value), printed)


def _functions():
    try:
        functions = importlib.import_module("refopt.functions")
    except ImportError:
        return None
    return functions if hasattr(functions, "get") else None


# ---------------------------------------------------------------------------------------
# clipping.md §5 tables
# ---------------------------------------------------------------------------------------

# ST-1b: direction -> (S, <g, v̂>, Δ*, η*)
ST1B = {
    "-g": ("967.278", "-184.23", "17.544", "0.190"),
    "-C.01": ("20.8172", "-57.457", "79.292", "2.760"),
    "-C.02": ("20.8112", "-57.453", "79.305", "2.761"),
    "-C.1": ("20.3516", "-57.175", "80.314", "2.809"),
    "-C.5": ("14.4297", "-52.829", "96.706", "3.661"),
    "-sign": ("10.99", "-48.633", "107.60", "4.425"),
}


def _directions(g):
    return {
        "-g": -g,
        "-C.01": -clip(g, 0.01),
        "-C.02": -clip(g, 0.02),
        "-C.1": -clip(g, 0.1),
        "-C.5": -clip(g, 0.5),
        "-sign": -np.sign(g),
    }


@pytest.mark.parametrize("source", ["built here", "refopt.functions"])
def test_st1b_table(source):
    if source == "built here":
        f, x0 = DiagQuadratic(H_DIAG), X_ST1B
    else:
        functions = _functions()
        if functions is None:
            pytest.skip("refopt.functions is not there yet")
        f = functions.get("sharp_st1b")
        x0 = np.asarray(f.start, dtype=np.float64)
        np.testing.assert_allclose(x0, X_ST1B, rtol=1e-15)
    near_printed(f.value(x0), "572.2808")
    g = f.grad(x0)
    for name, v in _directions(g).items():
        m = D.model_reduction(f, x0, v)
        s, corr, delta, eta = ST1B[name]
        near_printed(m.sharpness, s)
        near_printed(D.directional_sharpness(f, x0, v), s)
        near_printed(m.correlation, corr)
        near_printed(D.gradient_correlation(f, x0, v), corr)
        near_printed(m.reduction, delta)
        near_printed(m.step, eta)
    # the mechanism: sharpness drops > 10x, the best one-step reduction rises
    sgd = D.model_reduction(f, x0, -g)
    clipped = D.model_reduction(f, x0, -clip(g, 0.01))
    assert float(sgd.sharpness) / float(clipped.sharpness) > 40
    assert float(clipped.reduction) / float(sgd.reduction) > 4


def test_st1b_on_every_backend(backend):
    f = DiagQuadratic(H_DIAG)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        x0 = backend.freeze(backend.asarray(X_ST1B, dtype))
        g = f.grad(x0)
        for v, (s, _, delta, _) in ((-g, ST1B["-g"]), (-clip(g, 0.01), ST1B["-C.01"])):
            m = D.model_reduction(f, x0, v)
            assert m.sharpness.dtype == x0.dtype and m.reduction.dtype == x0.dtype
            exact = D.model_reduction(f, X_ST1B, -clip(f.grad(X_ST1B), 0.01) if s == "20.8172" else -f.grad(X_ST1B))
            np.testing.assert_allclose(backend.to_numpy(m.sharpness), float(exact.sharpness), rtol=tol)
            np.testing.assert_allclose(backend.to_numpy(m.reduction), float(exact.reduction), rtol=tol)
            if dtype == np.float64:
                near_printed(backend.to_numpy(m.sharpness), s)


# ST-2 (rotation control): direction -> (S, Δ*)
ST2 = {
    "-g": ("967.278", "17.544"),
    "-C.01": ("992.002", "16.659"),
    "-C.1": ("866.821", "14.512"),
    "-C.5": ("587.175", "11.055"),
    "-sign": ("472.524", "10.183"),
}


@pytest.mark.parametrize("source", ["built here", "refopt.functions"])
def test_st2_rotation_control(source):
    if source == "built here":
        q = dct_q(D_)
        np.testing.assert_allclose(q @ q.T, np.eye(D_), atol=1e-12)
        f = DenseQuadratic(q.T @ (H_DIAG[:, None] * q))
        y0 = q.T @ X_ST1B
    else:
        functions = _functions()
        if functions is None:
            pytest.skip("refopt.functions is not there yet")
        f = functions.get("sharp_st2")
        y0 = np.asarray(f.start, dtype=np.float64)
    near_printed(f.value(y0), "572.2808")
    g = f.grad(y0)
    dirs = _directions(g)
    for name, (s, delta) in ST2.items():
        m = D.model_reduction(f, y0, dirs[name])
        near_printed(m.sharpness, s)
        near_printed(m.reduction, delta)
    # clipping now hurts: the advantage is gone under rotation
    assert float(D.model_reduction(f, y0, dirs["-C.01"]).reduction) < float(D.model_reduction(f, y0, -g).reduction)


def test_st1a_top_coordinates_hold_the_sharpness(backend):
    f = DiagQuadratic(H_DIAG)
    x = backend.asarray(X_ST1A)
    u = -f.grad(x)
    c = D.top_fraction_contribution(f, x, u, 0.01)
    near_printed(backend.to_numpy(c.share), "0.99999992")  # clipping.md §5, ST-1a
    near_printed(backend.to_numpy(c.sharpness), "999.915")
    # [D] computed for this test: T holds 11 coordinates (|u_i| >= τ, the code's compute_top_mask),
    # the 10 sharp ones and one flat one; without them the direction sees only h = 1
    assert int(backend.to_numpy(c.size)) == 11
    np.testing.assert_allclose(backend.to_numpy(c.sharpness_rest), 1.0, rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(c.ratio), 1.0 / 999.9154308017602, rtol=1e-10)
    un = X_ST1A * H_DIAG
    top = np.abs(un) >= np.sort(np.abs(un))[::-1][10]
    np.testing.assert_allclose(backend.to_numpy(c.norm_share), (un[top] ** 2).sum() / (un**2).sum(), rtol=1e-12)
    assert c.tau == pytest.approx(np.sort(np.abs(un))[::-1][10], rel=0, abs=0)


def test_top_contribution_edge_fractions_and_batches():
    f = DiagQuadratic([5.0, 1.0, 2.0, 3.0])
    x = np.array([[1.0, 2.0, -1.0, 0.5], [0.1, -3.0, 2.0, 1.0]])
    u = -f.grad(x)
    none = D.top_fraction_contribution(f, x, u, 0.0)
    np.testing.assert_array_equal(none.share, [0.0, 0.0])
    np.testing.assert_array_equal(none.size, [0, 0])
    every = D.top_fraction_contribution(f, x, u, 1.0)
    np.testing.assert_allclose(every.share, [1.0, 1.0], rtol=1e-15)
    np.testing.assert_array_equal(every.size, [4, 4])
    assert np.isnan(every.sharpness_rest).all() and np.isnan(every.ratio).all()  # u' = 0: no direction left
    half = D.top_fraction_contribution(f, x, u, 0.25)  # k = 1: τ = 2nd largest |u_i| per run
    for r in range(2):
        tau = np.sort(np.abs(u[r]))[::-1][1]
        assert half.tau[r] == tau
        t = np.abs(u[r]) >= tau
        hu = f.hvp(x[r], u[r])
        np.testing.assert_allclose(half.share[r], (u[r][t] * hu[t]).sum() / (u[r] * hu).sum(), rtol=1e-14)


# ---------------------------------------------------------------------------------------
# properties of the sharpness and the model
# ---------------------------------------------------------------------------------------

_vec = st.lists(st.floats(-10, 10, allow_nan=False), min_size=5, max_size=5).map(np.array)


@given(v=_vec, alpha=st.floats(1e-3, 1e3) | st.floats(-1e3, -1e-3), seed=st.integers(0, 50))
def test_sharpness_and_model_are_scale_invariant(v, alpha, seed):
    if np.linalg.norm(v) < 1e-3:
        v = v + 1.0
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(5, 5))
    f = DenseQuadratic((a + a.T) / 2)  # indefinite in general: the sign is kept
    x = rng.normal(size=5)
    s = D.directional_sharpness(f, x, v)
    np.testing.assert_allclose(D.directional_sharpness(f, x, alpha * v), s, rtol=1e-9, atol=1e-12)
    dense = v @ f.H @ v / (v @ v)
    np.testing.assert_allclose(s, dense, rtol=1e-9, atol=1e-12)
    m1, m2 = D.model_reduction(f, x, v), D.model_reduction(f, x, abs(alpha) * v)
    if float(s) > 1e-6:
        np.testing.assert_allclose(m2.reduction, m1.reduction, rtol=1e-8)
        np.testing.assert_allclose(m2.step, m1.step, rtol=1e-8)
    elif float(s) <= 0:
        assert m1.reduction == math.inf and m1.step == math.inf


def test_hvp_sharpness_equals_dense_on_every_backend(backend):
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 6))
    H = a @ a.T - 6.0 * np.eye(6)
    f = DenseQuadratic(H)
    x = rng.normal(size=(4, 6))
    v = rng.normal(size=(4, 6))
    got = backend.to_numpy(D.directional_sharpness(f, backend.asarray(x), backend.asarray(v)))
    want = np.einsum("bi,ij,bj->b", v, H, v) / (v * v).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert (want < 0).any() and (want > 0).any()  # both signs are reported as they are


def test_finite_difference_fallback_matches_the_exact_hvp(backend):
    c = np.array([0.3, -1.0, 2.0, 0.0, 0.7])
    exact, fd = LogCosh(c), LogCosh(c, with_hvp=False)
    assert not hasattr(fd, "hvp")
    rng = np.random.default_rng(1)
    x = backend.asarray(rng.normal(size=(3, 5)))
    v = backend.asarray(rng.normal(size=(3, 5)) * 5)
    np.testing.assert_allclose(
        backend.to_numpy(D.hessian_vector_product(fd, x, v)), backend.to_numpy(exact.hvp(x, v)), rtol=1e-7, atol=1e-8
    )
    np.testing.assert_allclose(
        backend.to_numpy(D.directional_sharpness(fd, x, v)),
        backend.to_numpy(D.directional_sharpness(exact, x, v)),
        rtol=1e-7,
    )


def test_model_reduction_is_exact_on_a_quadratic():
    f = DiagQuadratic(H_DIAG)
    x0 = X_ST1B
    for v in _directions(f.grad(x0)).values():
        m = D.model_reduction(f, x0, v)
        vhat = v / np.linalg.norm(v)
        np.testing.assert_allclose(f.value(x0) - f.value(x0 + float(m.step) * vhat), float(m.reduction), rtol=1e-9)


def test_non_positive_curvature_gives_inf():
    f = DenseQuadratic(np.diag([1.0, -2.0, 0.0]))
    x = np.array([1.0, 1.0, 1.0])
    m = D.model_reduction(f, x, np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]]))
    np.testing.assert_array_equal(m.sharpness, [-2.0, 0.0, 1.0])
    np.testing.assert_array_equal(m.reduction, [math.inf, math.inf, 0.5])
    np.testing.assert_array_equal(m.step, [math.inf, math.inf, 1.0])


# ---------------------------------------------------------------------------------------
# the authors' line search
# ---------------------------------------------------------------------------------------


def literal_search(f, x, u, eps, distance=20):
    """A line-by-line transcription of landscape_utils.search (one run, NumPy)."""
    norm = float(np.linalg.norm(u))
    losses = []
    for i in range(int(distance) + 1):
        lr = i * eps
        losses.append(float(f.value(x + lr * u / norm)))
        if losses[-1] > losses[0]:
            break
    if len(losses) <= 3:
        return literal_search(f, x, u, eps / 5, distance)
    return losses[0] - min(losses), eps, losses


def test_line_search_follows_the_authors_protocol(backend):
    f = LogCosh([0.3, -1.0, 2.0, 0.0, 0.7])
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6, 5))
    u = -f.grad(x) * rng.uniform(0.1, 10, size=(6, 1)) + 0.05 * rng.normal(size=(6, 5))
    eps = np.array([0.05, 0.5, 3.0, 20.0, 0.2, 1.0])  # some of them force restarts
    res = D.line_search(f, backend.asarray(x), backend.asarray(u), backend.asarray(eps))
    losses = backend.to_numpy(res.losses)
    assert losses.shape == (21, 6)
    for r in range(6):
        red, e, ls = literal_search(f, x[r], u[r], float(eps[r]))
        np.testing.assert_allclose(backend.to_numpy(res.reduction)[r], red, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(backend.to_numpy(res.eps)[r], e, rtol=1e-14)
        assert int(backend.to_numpy(res.count)[r]) == len(ls)
        assert int(backend.to_numpy(res.restarts)[r]) == round(math.log(eps[r] / e, 5))
        np.testing.assert_allclose(losses[: len(ls), r], ls, rtol=1e-12)
        assert np.isnan(losses[len(ls):, r]).all()
    assert backend.to_numpy(res.restarts).max() >= 1


def test_line_search_is_below_and_close_to_the_model_on_a_quadratic():
    f = DiagQuadratic(H_DIAG)
    x0 = X_ST1B
    for v in _directions(f.grad(x0)).values():
        m = D.model_reduction(f, x0, v)
        coarse = D.line_search(f, x0, v, 1.0)
        assert float(coarse.reduction) <= float(m.reduction) * (1 + 1e-12)
        fine = D.line_search(f, x0, v, float(m.step) / 9.5)  # the grid passes within ε/2 of η*
        assert float(fine.reduction) <= float(m.reduction) * (1 + 1e-12)
        assert float(fine.reduction) >= float(m.reduction) * (1 - 1 / 9.5**2)
        assert int(fine.restarts) == 0 and int(fine.count) == 21 or float(fine.best_step) > 0


def test_line_search_uphill_is_exhausted_and_reports_zero():
    f = DiagQuadratic([1.0, 2.0])
    x = np.array([1.0, 1.0])
    res = D.line_search(f, x, f.grad(x), 1.0, max_restarts=5)
    assert bool(res.exhausted) and int(res.restarts) == 5
    assert float(res.reduction) == 0.0 and float(res.eps) == pytest.approx(1.0 / 5**5)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"eps": 0.0}, ValueError, "eps"),
        ({"eps": -1.0}, ValueError, "eps"),
        ({"eps": "big"}, TypeError, "eps must be a number"),
        ({"points": 2}, ValueError, "points must be an integer >= 3"),
        ({"max_restarts": -1}, ValueError, "max_restarts"),
    ],
)
def test_line_search_bad_input(kwargs, exc, match):
    f = DiagQuadratic([1.0, 2.0])
    with pytest.raises(exc, match=match):
        D.line_search(f, np.ones(2), -np.ones(2), **kwargs)


def test_bad_points_and_directions_are_named():
    f = DiagQuadratic([1.0, 2.0])
    with pytest.raises(ValueError, match="last axes differ"):
        D.directional_sharpness(f, np.ones(2), np.ones(3))
    with pytest.raises(TypeError, match="one dtype"):
        D.directional_sharpness(f, np.ones(2), np.ones(2, dtype=np.float32))
    with pytest.raises(TypeError, match="v must be an array"):
        D.directional_sharpness(f, np.ones(2), [1.0, 2.0])
    with pytest.raises(ValueError, match="dim=2"):
        D.model_reduction(f, np.ones(3), np.ones(3))


def test_direction_norms():
    u = np.array([[3.0, -4.0, 0.0, 1.0]])
    n = D.direction_norms(u)
    np.testing.assert_allclose(n["l2"], [math.sqrt(26.0)])
    np.testing.assert_array_equal(n["linf"], [4.0])
    np.testing.assert_array_equal(n["max_abs"], [4.0])
    np.testing.assert_array_equal(n["mean_abs"], [2.0])


# ---------------------------------------------------------------------------------------
# the shadow comparison
# ---------------------------------------------------------------------------------------


def test_shadow_reproduces_the_st1b_first_step():
    """At step 1 the shadow directions are −g, −C.01(g) and −sign(g) (lr = 1, no momentum)."""
    f = DiagQuadratic(H_DIAG)
    shadows = {
        "sgd": rules.get("sgd", lr=1.0),
        "clip .01": rules.get("clipped_sgd", lr=1.0, clip_fraction=0.01),
        "sign": rules.get("signsgd", lr=1.0),
    }
    res = D.shadow(rules.get("sgd", lr=1e-4), f, X_ST1B, 3, shadows, sample=[1, 3], eps={"sgd": 0.1, "clip .01": 1.0, "sign": 1.0})
    first = {r["rule"]: r for r in res.records if r["step"] == 1}
    assert list(first) == ["sgd", "clip .01", "sign"]
    for name, key in (("sgd", "-g"), ("clip .01", "-C.01"), ("sign", "-sign")):
        s, corr, delta, eta = ST1B[key]
        near_printed(first[name]["sharpness"], s)
        near_printed(first[name]["correlation"], corr)
        near_printed(first[name]["model_reduction"], delta)
        near_printed(first[name]["model_step"], eta)
        assert 0 < first[name]["line_search_reduction"] <= first[name]["model_reduction"]
        assert isinstance(first[name]["sharpness"], float)
    assert first["sgd"]["ratio_to_sgd"] == 1.0
    near_printed(first["clip .01"]["ratio_to_sgd"], f"{20.8172 / 967.278:.4f}")
    g = f.grad(X_ST1B)
    np.testing.assert_allclose(first["sgd"]["l2"], np.linalg.norm(g), rtol=1e-12)
    assert first["sign"]["linf"] == 1.0 and first["sign"]["mean_abs"] == 1.0
    np.testing.assert_array_equal(res.directions[1]["sign"], -np.sign(g))
    assert [r["step"] for r in res.records] == [1, 1, 1, 3, 3, 3]
    assert res.x.shape == (4, D_) and res.loss.shape == (4,)
    text = res.table()
    assert "ratio_to_sgd" in text.splitlines()[0] and "clip .01" in text
    assert res.stopped is None


def test_shadow_with_identical_rules_gives_identical_directions(backend):
    f = LogCosh([0.3, -1.0, 2.0, 0.0])
    x0 = backend.asarray(np.array([1.0, 2.0, -1.0, 0.5]))
    adam = rules.get("adam", lr=1.0)
    res = D.shadow(rules.get("sgd", lr=0.1), f, x0, 6, [adam, adam, rules.get("adam", lr=1.0)], eps=0.5)
    assert res.names == ("adam", "adam#2", "adam#3")
    for k, dirs in res.directions.items():
        a = backend.to_numpy(dirs["adam"])
        np.testing.assert_array_equal(backend.to_numpy(dirs["adam#2"]), a)
        np.testing.assert_array_equal(backend.to_numpy(dirs["adam#3"]), a)
    by_step = {}
    for r in res.records:
        by_step.setdefault(r["step"], []).append(r)
    for rows in by_step.values():
        for key in ("sharpness", "correlation", "model_reduction", "line_search_reduction", "l2"):
            assert rows[0][key] == rows[1][key] == rows[2][key]
        assert rows[0]["ratio_to_sgd"] is None  # no shadow named "sgd"
    # the shadows never move the trajectory: it is the trajectory rule's own run
    from refopt.run import run

    np.testing.assert_array_equal(backend.to_numpy(res.x), backend.to_numpy(run(rules.get("sgd", lr=0.1), f, x0, 6).x))


def test_shadow_of_the_trajectory_rule_is_its_own_step():
    """A shadow equal to the trajectory rule proposes exactly the step the trajectory takes."""
    f = LogCosh([0.3, -1.0, 2.0])
    traj = rules.get("adam", lr=0.2)
    res = D.shadow(traj, f, np.array([1.0, 2.0, -1.0]), 5, {"same": traj}, eps=None)
    for k in range(1, 6):
        np.testing.assert_allclose(res.directions[k]["same"], res.x[k] - res.x[k - 1], rtol=1e-13, atol=1e-16)
    assert all(r["line_search_reduction"] is None for r in res.records)


def test_shadow_batched_starts_give_arrays():
    f = DiagQuadratic([10.0, 1.0, 1.0])
    x0 = np.array([[1.0, 2.0, 3.0], [0.1, -1.0, 2.0]])
    res = D.shadow("sgd", f, x0, 2, ["sgd", "signsgd"], sample=[2])
    rows = {r["rule"]: r for r in res.records}
    assert rows["sgd"]["sharpness"].shape == (2,)
    for b in range(2):
        single = D.shadow("sgd", f, x0[b], 2, ["sgd", "signsgd"], sample=[2])
        srows = {r["rule"]: r for r in single.records}
        for name in ("sgd", "signsgd"):
            for key in ("sharpness", "ratio_to_sgd", "line_search_reduction", "mean_abs"):
                np.testing.assert_allclose(rows[name][key][b], srows[name][key], rtol=1e-14)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"shadows": []}, ValueError, "shadows is empty"),
        ({"shadows": "sgd"}, TypeError, "shadows must be a dict"),
        ({"shadows": ["sgdd"]}, ValueError, "did you mean 'sgd'"),
        ({"sample": [0]}, ValueError, "outside 1 .. steps"),
        ({"sample": [4]}, ValueError, "outside 1 .. steps"),
        ({"eps": {"sgd": 1.0}}, ValueError, "missing"),
        ({"eps": -1.0}, ValueError, "eps for 'sgd'"),
        ({"steps": 0}, ValueError, "steps must be a positive integer"),
    ],
)
def test_shadow_bad_input(kwargs, exc, match):
    f = DiagQuadratic([1.0, 2.0])
    args = {"shadows": ["sgd", "adam"], "steps": 3, **kwargs}
    extra = {k: v for k, v in kwargs.items() if k not in ("shadows", "steps")}
    with pytest.raises(exc, match=match):
        D.shadow("sgd", f, np.ones(2), args["steps"], args["shadows"], **extra)


def test_shadow_on_the_real_sharp_quadratic():
    functions = _functions()
    if functions is None:
        pytest.skip("refopt.functions is not there yet")
    f = functions.get("sharp_st1b")
    x0 = np.asarray(f.start, dtype=np.float64)
    res = D.shadow(
        "sgd", f, x0, 1, {"sgd": rules.get("sgd", lr=1.0), "clip": rules.get("clipped_sgd", lr=1.0, clip_fraction=0.01)}
    )
    rows = {r["rule"]: r for r in res.records}
    near_printed(rows["sgd"]["sharpness"], "967.278")
    near_printed(rows["clip"]["sharpness"], "20.8172")
    assert rows["clip"]["ratio_to_sgd"] < 0.1
