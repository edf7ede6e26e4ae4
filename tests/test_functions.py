"""refopt.functions: exact derivatives, known minima, the notes' numbers, backends, bad input.

Numbers come from the reference notes: diffGrad F1-F3 from update-rules.md §2.3, the
sharp-coordinate quadratics from clipping.md §5.  Derivatives are checked against central
finite differences (gradients from values, Hessian-vector products from gradients) at
points drawn by hypothesis inside each function's box, away from kinks and jumps.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import refopt.functions as F
from refopt.functions import dct_matrix

EXPECTED_NAMES = {
    "diffgrad_f1", "diffgrad_f2", "diffgrad_f3", "diffgrad_f2_notebook",
    "abs_sum", "abs_rotated", "quad_rotated", "abs_scaled", "beale", "log_beale", "rosenbrock",
    "sphere", "rastrigin", "ackley", "himmelblau", "booth", "styblinski_tang", "goldstein_price",
    "six_hump_camel", "ill_conditioned_quadratic", "sharp_quadratic", "sharp_st1a", "sharp_st1b", "sharp_st2",
}

# every function at its defaults (1000-dim ones shrunk for the derivative checks) plus n-dim variants
SMALL_SHARP = {"dim": 24, "k": 3, "h": 50.0}
CONFIGS = [
    (n, SMALL_SHARP if n.startswith("sharp") else {}) for n in sorted(EXPECTED_NAMES)
] + [
    ("rosenbrock", {"dim": 5}),
    ("sphere", {"dim": 3}),
    ("rastrigin", {"dim": 4}),
    ("ackley", {"dim": 3}),
    ("styblinski_tang", {"dim": 3}),
    ("abs_sum", {"dim": 3}),
    ("ill_conditioned_quadratic", {"dim": 5, "condition": 1e3, "rotated": True}),
    ("ill_conditioned_quadratic", {"dim": 1}),
]
IDS = [n + "".join(f"-{k}{v}" for k, v in p.items()) for n, p in CONFIGS]

MARGIN = 1e-3  # distance kept from kinks and jumps by the finite-difference checks
H = 1e-6  # finite-difference step (float64)


def box(f):
    """The sampling box: the function's domain, with [-2, 2] where it is unbounded."""
    lo = np.array([b[0] if math.isfinite(b[0]) else -2.0 for b in f.domain])
    hi = np.array([b[1] if math.isfinite(b[1]) else 2.0 for b in f.domain])
    return lo, hi


def smooth_here(f, x):
    """Rows of x (shape (n, dim)) at least MARGIN from every kink/jump of f (a bool mask)."""
    name = f.name
    if hasattr(f, "breakpoints"):
        return np.all(np.abs(x[:, :1] - np.asarray(f.breakpoints)) > MARGIN, axis=1)
    if name == "abs_sum":
        return np.all(np.abs(x) > MARGIN, axis=1)
    if name == "abs_scaled":
        return np.all(np.abs(x) > MARGIN, axis=1)
    if name == "abs_rotated":
        return (np.abs(x[:, 0] + x[:, 1]) > MARGIN) & (np.abs(x[:, 0] - x[:, 1]) > MARGIN)
    if name == "ackley":
        return np.linalg.norm(x, axis=1) > 0.05
    assert f.smooth, name
    return np.ones(len(x), bool)


def points(f, unit):
    lo, hi = box(f)
    return lo + (hi - lo) * unit


unit_points = lambda dim: hnp.arrays(  # noqa: E731
    np.float64, (4, dim), elements=st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False)
)


# ---------------------------------------------------------------------------------------
# registry and metadata
# ---------------------------------------------------------------------------------------


def test_names_and_get():
    assert set(F.names()) == EXPECTED_NAMES
    for name in F.names():
        f = F.get(name)
        assert isinstance(f, F.Function)
        assert f.name == name or (name == "sharp_quadratic" and f.name == "sharp_st1b")
    assert F.rosenbrock(dim=4).dim == 4  # the class under its name
    assert F.get("sharp_quadratic", regime="loss_in_sharp").name == "sharp_st1a"
    assert F.get("sharp_quadratic", regime="rotated").rotated
    assert F.get("beale", dim=2).dim == 2


def test_unknown_name_and_parameters():
    with pytest.raises(ValueError, match="unknown function 'rosenbrok'.*'rosenbrock'"):
        F.get("rosenbrok")
    with pytest.raises(TypeError, match="rosenbrock takes the parameters dim.*'dims'.*did you mean 'dim'"):
        F.get("rosenbrock", dims=3)
    with pytest.raises(TypeError, match="beale takes no parameters"):
        F.get("beale", scale=2.0)
    with pytest.raises(ValueError, match="beale is 2-dimensional only; got dim=3"):
        F.get("beale", dim=3)
    with pytest.raises(ValueError, match="rosenbrock: dim must be an integer >= 2; got 1"):
        F.get("rosenbrock", dim=1)
    with pytest.raises(TypeError, match="sphere: dim must be an integer"):
        F.get("sphere", dim=2.0)
    with pytest.raises(ValueError, match="condition must be a finite real number >= 1"):
        F.get("ill_conditioned_quadratic", condition=0.5)
    with pytest.raises(ValueError, match="regime.*'st1b'"):
        F.get("sharp_quadratic", regime="st1")
    with pytest.raises(ValueError, match="k must be an integer in \\[0, 5\\]; got 6"):
        F.get("sharp_st1a", dim=5, k=6)
    with pytest.raises(ValueError, match="h must be a finite real number > 0"):
        F.get("sharp_st1b", h=0.0)
    with pytest.raises(TypeError, match="sharp_st1a takes the parameters dim, k, h; unknown parameter 'regime'"):
        F.get("sharp_st1a", regime="st2")


@pytest.mark.parametrize("name,params", CONFIGS, ids=IDS)
def test_metadata(name, params):
    f = F.get(name, **params)
    assert isinstance(f.dim, int) and f.dim >= 1
    assert isinstance(f.title, str) and f.title and isinstance(f.citation, str) and f.citation
    assert type(f.minimum) is float
    assert len(f.domain) == f.dim and all(lo < hi for lo, hi in f.domain)
    for p in f.minimizers:
        assert len(p) == f.dim and all(type(c) is float for c in p)
        assert all(lo <= c <= hi for c, (lo, hi) in zip(p, f.domain))
    if f.start is not None:
        assert len(f.start) == f.dim and all(type(c) is float for c in f.start) and f.start_source
    for p, v in f.local_minima:
        assert len(p) == f.dim and type(v) is float and v > f.minimum
    assert f.name in f.describe()


# ---------------------------------------------------------------------------------------
# derivatives
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,params", CONFIGS, ids=IDS)
@settings(max_examples=20)
@given(data=st.data())
def test_grad_matches_central_differences(name, params, data):
    f = F.get(name, **params)
    x = points(f, data.draw(unit_points(f.dim)))
    x = x[smooth_here(f, x)]
    if len(x) == 0:
        return
    eye = np.eye(f.dim)
    step = H * np.maximum(1.0, np.abs(x))[:, None, :] * eye  # (n, dim, dim): one row per coordinate
    up, down = f.value(x[:, None, :] + step), f.value(x[:, None, :] - step)
    fd = (up - down) / (2 * np.diagonal(step, axis1=1, axis2=2))
    g = f.grad(x)
    scale = 1.0 + np.maximum(np.abs(up), np.abs(down)).max(axis=1, keepdims=True)
    # rounding error of the difference quotient: about eps·|f| / step
    np.testing.assert_allclose(fd, g, rtol=1e-6, atol=1e-7 + 2e-8 * scale.max())


@pytest.mark.parametrize("name,params", CONFIGS, ids=IDS)
@settings(max_examples=20)
@given(data=st.data())
def test_hvp_matches_differences_of_the_gradient(name, params, data):
    f = F.get(name, **params)
    x = points(f, data.draw(unit_points(f.dim)))
    v = data.draw(hnp.arrays(np.float64, (f.dim,), elements=st.floats(-1.0, 1.0, allow_subnormal=False)))
    x = x[smooth_here(f, x)]
    if len(x) == 0:
        return
    h = H * max(1.0, float(np.abs(x).max()))
    fd = (f.grad(x + h * v) - f.grad(x - h * v)) / (2 * h)
    hv = f.hvp(x, v)
    assert hv.shape == x.shape
    gscale = 1.0 + np.abs(f.grad(x)).max()
    np.testing.assert_allclose(fd, hv, rtol=1e-5, atol=1e-6 + 2e-8 * gscale)


@pytest.mark.parametrize("name,params", CONFIGS, ids=IDS)
def test_hessian_is_symmetric_and_matches_hvp(name, params):
    f = F.get(name, **params)
    rng = np.random.default_rng(7)
    lo, hi = box(f)
    x = lo + (hi - lo) * rng.random((3, 2, f.dim))
    v = rng.standard_normal((2, f.dim))
    hess = f.hessian(x)
    assert hess.shape == x.shape + (f.dim,)
    np.testing.assert_allclose(hess, np.swapaxes(hess, -1, -2), rtol=1e-12, atol=1e-12 * np.abs(hess).max())
    hv = f.hvp(x, v)
    assert hv.shape == (3, 2, f.dim)
    np.testing.assert_allclose(
        np.einsum("...ij,...j->...i", hess, np.broadcast_to(v, x.shape)), hv, rtol=1e-10, atol=1e-10 * np.abs(hv).max()
    )
    # v broadcasting against one point: (dim,) point, (4, dim) vectors
    hv1 = f.hvp(x[0, 0], rng.standard_normal((4, f.dim)))
    assert hv1.shape == (4, f.dim)


@pytest.mark.parametrize("name,params", CONFIGS, ids=IDS)
def test_batched_evaluation_equals_pointwise(name, params):
    f = F.get(name, **params)
    rng = np.random.default_rng(3)
    lo, hi = box(f)
    x = lo + (hi - lo) * rng.random((5, 7, f.dim))
    v = rng.standard_normal((5, 7, f.dim))
    val, g, hv, hs = f.value(x), f.grad(x), f.hvp(x, v), f.hessian(x)
    assert val.shape == (5, 7) and g.shape == x.shape and hv.shape == x.shape
    for i in (0, 3):
        for j in (0, 4, 6):
            np.testing.assert_allclose(f.value(x[i, j]), val[i, j], rtol=1e-14, atol=0)
            np.testing.assert_allclose(f.grad(x[i, j]), g[i, j], rtol=1e-14, atol=1e-300)
            np.testing.assert_allclose(f.hvp(x[i, j], v[i, j]), hv[i, j], rtol=1e-12, atol=1e-12 * np.abs(hv).max())
            np.testing.assert_allclose(f.hessian(x[i, j]), hs[i, j], rtol=1e-12, atol=1e-300)
    assert np.ndim(f.value(x[0, 0])) == 0


# ---------------------------------------------------------------------------------------
# minima
# ---------------------------------------------------------------------------------------


def one_sided(f, p, i, side):
    """The one-sided partial derivative of f at p along coordinate i (side = ±1), from the gradient
    just beside the kink (the gradient is continuous on each side of it)."""
    q = np.array(p)
    q[i] += side * 1e-9
    return float(f.grad(q)[i])


@pytest.mark.parametrize("name,params", CONFIGS, ids=IDS)
def test_minimizers_have_zero_gradient_and_the_minimum(name, params):
    f = F.get(name, **params)
    listed = [(p, f.minimum) for p in f.minimizers] + list(f.local_minima)
    for p, fmin in listed:
        x = np.asarray(p)
        assert f.value(x) == pytest.approx(fmin, abs=1e-12 * max(1.0, abs(fmin)))
        g = f.grad(x)
        if np.all(np.abs(g) <= 1e-9):
            continue
        # at a kink 0 must lie in the subdifferential: the one-sided derivatives bracket 0
        assert not f.smooth, (name, p, g)
        for i in range(f.dim):
            lo, hi = one_sided(f, p, i, -1.0), one_sided(f, p, i, 1.0)
            assert lo <= 1e-9 and hi >= -1e-9, (name, p, i, lo, hi)


def test_global_minimum_is_lowest_on_a_grid():
    for name in ["diffgrad_f1", "diffgrad_f2", "diffgrad_f2_notebook", "diffgrad_f3", "himmelblau", "booth",
                 "goldstein_price", "six_hump_camel", "beale", "log_beale", "styblinski_tang", "rastrigin", "ackley"]:
        f = F.get(name)
        axes = [np.linspace(lo, hi, 2001 if f.dim == 1 else 301) for lo, hi in f.domain]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
        assert f.value(grid).min() >= f.minimum - 1e-12, name


def test_sign_convention_at_kinks():
    x = np.zeros(2)
    np.testing.assert_array_equal(F.get("abs_sum").grad(x), [0.0, 0.0])
    np.testing.assert_array_equal(F.get("abs_rotated").grad(x), [0.0, 0.0])
    np.testing.assert_array_equal(F.get("abs_scaled").grad(np.array([0.0, -2.0])), [0.0, -1.0])
    np.testing.assert_array_equal(F.get("abs_sum").grad(np.array([-2.5, 0.0])), [-1.0, 0.0])
    np.testing.assert_array_equal(F.get("ackley", dim=3).grad(np.zeros(3)), np.zeros(3))
    # piecewise definitions use the left branch at the boundary
    assert F.get("diffgrad_f1").grad(np.zeros(1))[0] == 0.6
    assert F.get("diffgrad_f2").grad(np.array([-0.9]))[0] == -40.0
    f3 = F.get("diffgrad_f3")
    np.testing.assert_array_equal(
        f3.grad(np.array([[-0.5], [-0.4], [0.0], [0.4], [0.5]]))[:, 0], [-1.0, 1.0, -7 / 8, 7 / 8, -1.0]
    )


# ---------------------------------------------------------------------------------------
# the notes' numbers
# ---------------------------------------------------------------------------------------


def test_diffgrad_f1_f3_values():
    f1, f3 = F.get("diffgrad_f1"), F.get("diffgrad_f3")
    assert f1.value(np.zeros(1)) == pytest.approx(0.09, abs=1e-15)  # continuous at the kink
    assert f1.value(np.array([1e-12])) == pytest.approx(0.09, abs=1e-11)
    np.testing.assert_allclose(f3.value(np.array([[-0.4], [0.4], [-0.5], [0.5]])), [0.35, 0.35, 0.25, 0.25], atol=1e-15)
    x = np.linspace(-1, 1, 101)[:, None]
    np.testing.assert_allclose(f3.value(x), f3.value(-x), atol=1e-15)  # even


def test_diffgrad_f2_jump_and_minima():
    f2 = F.get("diffgrad_f2")
    assert f2.value(np.array([-0.9])) == pytest.approx(0.85, abs=1e-13)
    right = float(f2.value(np.array([-0.9 + 1e-12])))
    assert right == pytest.approx(0.83530, abs=5e-6)
    assert f2.jump == (0.85, pytest.approx(right, abs=1e-10))
    (xstar,), = f2.minimizers
    assert xstar == pytest.approx(-0.64292, abs=5e-6)
    assert f2.minimum == pytest.approx(1.198e-4, abs=5e-8)
    assert [p[0] for p, _ in f2.local_minima] == [0.0, pytest.approx(0.5881, abs=5e-5)]
    assert [v for _, v in f2.local_minima] == [0.85, pytest.approx(0.4653, abs=5e-5)]


def test_diffgrad_f2_notebook_gradient_is_the_notebooks():
    f = F.get("diffgrad_f2_notebook")
    x = np.linspace(-0.9 + 1e-9, 1.0, 301)
    np.testing.assert_allclose(f.grad(x[:, None])[:, 0], x * np.cos(8 * x) + np.sin(8 * x) + 3 * x**2, rtol=0, atol=1e-14)
    left = np.linspace(-1.0, -0.9, 11)
    np.testing.assert_array_equal(f.grad(left[:, None])[:, 0], -40.0)
    # the function differs from F2 by design: x³ + x sin(8x)/8 − 7cos(8x)/64 on the right
    np.testing.assert_allclose(f.value(x[:, None]), x**3 + x * np.sin(8 * x) / 8 - 7 * np.cos(8 * x) / 64, atol=1e-15)
    # continuous at -0.9 (the left constant is chosen so), and the kink is the global minimizer
    assert f.value(np.array([-0.9])) == pytest.approx(float(f.value(np.array([-0.9 + 1e-13]))), abs=1e-11)
    assert f.minimizers == ((-0.9,),) and f.minimum == pytest.approx(-0.70625079, abs=1e-8)
    assert one_sided(f, (-0.9,), 0, 1.0) == pytest.approx(1.0888, abs=1e-4)  # slope -40 | +1.0888
    # the published F2 minimum of the true function is not a stationary point here
    assert abs(f.grad(np.array([-0.64291859891526175]))[0]) > 1.0


def test_sharp_quadratic_numbers_of_the_note():
    a, b, c = F.get("sharp_st1a"), F.get("sharp_st1b"), F.get("sharp_st2")
    assert a.dim == b.dim == c.dim == 1000 and a.k == 10 and a.h == 1000.0
    i = np.arange(1000)
    np.testing.assert_allclose(a.start, 1 + 0.5 * np.sin(i), rtol=0, atol=0)
    np.testing.assert_allclose(b.start, np.where(i < 10, 0.05, 1.0) * (1 + 0.5 * np.sin(i)), rtol=0, atol=1e-16)

    def sharpness(f, x, v):
        return float(v @ f.hvp(x, v) / (v @ v))

    for f, f0, s in [(a, 7121.655, 999.915), (b, 572.2808, 967.278), (c, 572.2808, 967.278)]:
        x0 = np.asarray(f.start)
        assert f.value(x0) == pytest.approx(f0, abs=5e-4 if f0 > 1000 else 5e-5), f.name
        g = f.grad(x0)
        assert sharpness(f, x0, -g) == pytest.approx(s, abs=5e-4), f.name
    # ST-1b: ‖g‖ = -<g, -ĝ> = 184.23, Δ* = <g,v>²/(2 vᵀHv) = 17.544, η* = 0.190 along v̂
    x0 = np.asarray(b.start)
    g = b.grad(x0)
    assert np.linalg.norm(g) == pytest.approx(184.23, abs=5e-3)
    assert (g @ g) ** 2 / (2 * g @ b.hvp(x0, g)) == pytest.approx(17.544, abs=5e-4)
    # sharp coordinates hold 92.2% of f0 and 99.99% of ‖g‖² in ST-1a; 2.87% and 96.7% in ST-1b
    for f, share_f, share_g, tol in [(a, 0.922, 0.9999, 5e-5), (b, 0.0287, 0.967, 5e-4)]:
        x0 = np.asarray(f.start)
        g = f.grad(x0)
        part = 0.5 * 1000 * (x0[:10] ** 2).sum() / float(f.value(x0))
        assert part == pytest.approx(share_f, abs=5e-4)
        assert (g[:10] ** 2).sum() / (g @ g) == pytest.approx(share_g, abs=tol)
    # ST-2: the same problem seen through the DCT-II rotation
    q = c.rotation(np.zeros(1))
    np.testing.assert_allclose(q @ np.asarray(c.start), b.start, atol=1e-12)
    np.testing.assert_allclose(c.grad(np.asarray(c.start)), q.T @ b.grad(np.asarray(b.start)), atol=1e-10)
    # clipped direction of the note's table: −C.01(g) in ST-1b has S = 20.8172, in ST-2 992.002
    for f, s in [(b, 20.8172), (c, 992.002)]:
        x0 = np.asarray(f.start)
        g = f.grad(x0)
        tau = np.sort(np.abs(g))[::-1][int(1000 * 0.01)]
        u = -np.clip(g, -tau, tau)
        assert sharpness(f, x0, u) == pytest.approx(s, abs=5e-3), f.name


def test_dct_matrix_is_orthonormal(backend):
    for d in (1, 2, 7, 1000):
        like = backend.asarray(np.zeros(1))
        q = backend.to_numpy(dct_matrix(d, like))
        assert q.dtype == np.float64
        np.testing.assert_allclose(q @ q.T, np.eye(d), rtol=0, atol=1e-13)
        n = np.arange(d)
        ref = np.sqrt(2.0 / d) * np.cos(np.pi * (n[None, :] + 0.5) * n[:, None] / d)
        ref[0] /= np.sqrt(2.0)
        np.testing.assert_allclose(q, ref, rtol=0, atol=1e-13)
    q32 = backend.to_numpy(dct_matrix(64, backend.asarray(np.zeros(1, np.float32))))
    assert q32.dtype == np.float32
    np.testing.assert_allclose(q32 @ q32.T, np.eye(64), rtol=0, atol=2e-6)


def test_ill_conditioned_quadratic_spectrum():
    f = F.get("ill_conditioned_quadratic", dim=4, condition=1e4, rotated=True)
    assert f.curvatures == pytest.approx((1.0, 10 ** (4 / 3), 10 ** (8 / 3), 1e4))
    ev = np.linalg.eigvalsh(f.hessian(np.zeros(4)))
    np.testing.assert_allclose(ev, f.curvatures, rtol=1e-12)
    assert F.get("ill_conditioned_quadratic").hessian(np.zeros(2)).tolist() == [[1.0, 0.0], [0.0, 100.0]]


# ---------------------------------------------------------------------------------------
# backends and dtypes
# ---------------------------------------------------------------------------------------

BACKEND_CONFIGS = [
    (n, p) for n, p in CONFIGS if not (n == "ill_conditioned_quadratic" and p.get("dim") == 1)
]


def _points(f, n=6, seed=11):
    rng = np.random.default_rng(seed)
    lo, hi = box(f)
    return lo + (hi - lo) * rng.random((n, f.dim)), rng.standard_normal((n, f.dim))


@pytest.mark.parametrize("name,params", BACKEND_CONFIGS, ids=[n + "".join(f"-{k}{v}" for k, v in p.items()) for n, p in BACKEND_CONFIGS])
def test_backends_agree_with_numpy(backend, name, params):
    f = F.get(name, **params)
    x, v = _points(f)
    ref = [f.value(x), f.grad(x), f.hvp(x, v), f.hessian(x)]
    for dtype, rtol in [(np.float64, 1e-12), (np.float32, 2e-4)]:
        bx = backend.freeze(backend.asarray(x, dtype))
        bv = backend.freeze(backend.asarray(v, dtype))
        out = [f.value(bx), f.grad(bx), f.hvp(bx, bv), f.hessian(bx)]
        for r, o in zip(ref, out):
            o = backend.to_numpy(o)
            assert o.dtype == dtype, (name, dtype, o.dtype)
            np.testing.assert_allclose(o, r, rtol=rtol, atol=rtol * (1.0 + np.abs(r).max()))
        np.testing.assert_array_equal(backend.to_numpy(bx), x.astype(dtype))  # input untouched


def test_default_st2_on_backends(backend):
    f = F.get("sharp_st2")
    x0 = np.asarray(f.start)
    g = backend.to_numpy(f.grad(backend.asarray(x0)))
    s = float(g @ backend.to_numpy(f.hvp(backend.asarray(x0), backend.asarray(g))) / (g @ g))
    assert s == pytest.approx(967.278, abs=5e-4)
    assert float(backend.to_numpy(f.value(backend.asarray(x0, np.float32)))) == pytest.approx(572.2808, rel=1e-5)


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------


def test_bad_points(backend):
    f = F.get("rosenbrock", dim=3)
    with pytest.raises(ValueError, match=r"rosenbrock: x must have shape \(\.\.\., 3\).*got shape \(4, 2\)"):
        f.value(backend.asarray(np.zeros((4, 2))))
    with pytest.raises(ValueError, match=r"got shape \(\)"):
        f.grad(backend.asarray(np.float64(1.0)))
    with pytest.raises(TypeError, match="rosenbrock: x must have a real floating dtype.*int"):
        f.grad(backend.asarray(np.zeros(3, dtype=np.int64)))
    with pytest.raises(TypeError, match="rosenbrock: x must be an array"):
        f.value([1.0, 2.0, 3.0])
    x = backend.asarray(np.zeros(3))
    with pytest.raises(ValueError, match=r"rosenbrock: v must have shape \(\.\.\., 3\)"):
        f.hvp(x, backend.asarray(np.zeros(2)))
    with pytest.raises(ValueError, match="do not broadcast"):
        f.hvp(backend.asarray(np.zeros((2, 3))), backend.asarray(np.zeros((4, 3))))
    with pytest.raises(TypeError, match="same dtype"):
        f.hvp(x, backend.asarray(np.zeros(3, np.float32)))
    with pytest.raises(TypeError, match=r"diffgrad_f1: x must have a real floating dtype \(float32 or float64\); got an array of dtype bool"):
        F.get("diffgrad_f1").value(backend.asarray(np.zeros(1, bool)))


def test_mixed_libraries_rejected():
    torch = pytest.importorskip("torch")
    f = F.get("sphere")
    with pytest.raises(TypeError, match="one array library"):
        f.hvp(np.zeros(2), torch.zeros(2, dtype=torch.float64))


# ---------------------------------------------------------------------------------------
# the stochastic wrapper
# ---------------------------------------------------------------------------------------


def test_noisy_is_deterministic_in_seed_and_step(backend):
    base = F.get("rosenbrock", dim=3)
    f = F.noisy(base, sigma=0.5, seed=4)
    assert f.stochastic and not base.stochastic and f.dim == 3 and f.minimizers == base.minimizers
    x = backend.freeze(backend.asarray(np.array([[0.5, -0.2, 1.0], [1.0, 1.0, 1.0]])))
    g = lambda fn, step: backend.to_numpy(fn.grad(x, step=step))  # noqa: E731
    clean = backend.to_numpy(base.grad(x))
    np.testing.assert_array_equal(g(f, 3), g(f, 3))
    assert not np.array_equal(g(f, 3), g(f, 4))
    assert not np.array_equal(g(f, 3), g(F.noisy(base, 0.5, seed=5), 3))
    noise = np.random.default_rng([4, 3]).standard_normal(3) * 0.5  # the documented generator
    np.testing.assert_allclose(g(f, 3), clean + noise, rtol=1e-15, atol=1e-15)
    np.testing.assert_array_equal(backend.to_numpy(f.noise(x, 3)), np.broadcast_to(noise, (2, 3)))
    # value, hvp and hessian are noiseless
    np.testing.assert_array_equal(backend.to_numpy(f.value(x)), backend.to_numpy(base.value(x)))
    np.testing.assert_array_equal(backend.to_numpy(f.hvp(x, x)), backend.to_numpy(base.hvp(x, x)))
    np.testing.assert_array_equal(backend.to_numpy(f.hessian(x)), backend.to_numpy(base.hessian(x)))
    # float32 stays float32: the float64 draw rounded once
    x32 = backend.asarray(np.ones(3), np.float32)
    g32 = backend.to_numpy(f.grad(x32, step=3))
    assert g32.dtype == np.float32
    np.testing.assert_array_equal(g32, np.zeros(3, np.float32) + noise.astype(np.float32))


def test_noisy_shared_noise_makes_batches_equal_separate_runs():
    f = F.noisy("himmelblau", sigma=1.0, seed=0)
    x = np.array([[0.0, 1.0], [2.0, -1.0], [3.0, 2.0]])
    batched = f.grad(x, step=7)
    for i in range(3):
        np.testing.assert_array_equal(f.grad(x[i], step=7), batched[i])
    pp = F.noisy("himmelblau", sigma=1.0, seed=0, per_point=True)
    n = pp.noise(x, 7)
    assert n.shape == (3, 2) and not np.array_equal(n[0], n[1])
    np.testing.assert_array_equal(n, np.random.default_rng([0, 7]).standard_normal((3, 2)))


def test_noisy_statistics():
    f = F.noisy("sphere", sigma=0.3, seed=1)
    draws = np.stack([f.noise(np.zeros(2), t) for t in range(4000)])
    assert abs(draws.mean()) < 4 * 0.3 / math.sqrt(8000)
    assert draws.std() == pytest.approx(0.3, rel=0.03)
    assert abs(np.corrcoef(draws[:-1, 0], draws[1:, 0])[0, 1]) < 0.06  # steps are independent


def test_noisy_bad_input():
    f = F.noisy("sphere", sigma=0.1)
    with pytest.raises(TypeError, match="noisy_sphere.grad needs step="):
        f.grad(np.zeros(2))
    with pytest.raises(ValueError, match="step must be an integer >= 0; got -1"):
        f.grad(np.zeros(2), step=-1)
    with pytest.raises(ValueError, match="sigma must be a finite real number >= 0"):
        F.noisy("sphere", sigma=-1.0)
    with pytest.raises(TypeError, match="seed must be an integer"):
        F.noisy("sphere", sigma=1.0, seed=1.5)
    with pytest.raises(ValueError, match="unknown function 'sphre'"):
        F.noisy("sphre", sigma=1.0)
    with pytest.raises(ValueError, match=r"noisy_sphere: x must have shape \(\.\.\., 2\)"):
        f.grad(np.zeros(3), step=0)
    # deterministic functions accept (and ignore) step=, so one loop drives both kinds
    np.testing.assert_array_equal(F.get("sphere").grad(np.ones(2), step=5), [2.0, 2.0])
