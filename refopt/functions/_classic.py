"""Classic optimisation benchmarks with their usual search boxes and known minima.

Definitions, boxes and minima as in Surjanovic & Bingham, *Virtual Library of Simulation
Experiments: Test Functions and Datasets* (Simon Fraser University, sfu.ca/~ssurjano) and
Jamil & Yang, "A literature survey of benchmark functions for global optimization
problems", Int. J. Math. Modelling and Numerical Optimisation 4(2):150-194, 2013
(arXiv 1308.4008).  Minimizers that are not round numbers were computed here to full
float64 precision (Newton's method in 40-digit arithmetic); the references print them to
six digits.  None of these has a start point in the literature, so ``start`` is None.
"""

from __future__ import annotations

import math

from ._base import Function, Function2D, check_int, full_like

_VLSE = "Surjanovic & Bingham, Virtual Library of Simulation Experiments (sfu.ca/~ssurjano/{})"
_JY = "Jamil & Yang 2013, Int. J. Math. Model. Numer. Optim. 4(2):150-194 (arXiv 1308.4008)"


class Sphere(Function):
    r"""f(x) = Σ x_i²;  ∇f = 2x,  ∇²f = 2I.  Minimum f(0) = 0, box [-5.12, 5.12]ⁿ."""

    name = "sphere"
    title = "sphere: sum x[i]^2"
    citation = _VLSE.format("spheref.html") + "; " + _JY
    minimum = 0.0

    def __init__(self, dim: int = 2):
        self.dim = check_int(self.name, "dim", dim, 1)
        self.minimizers = ((0.0,) * self.dim,)
        self.domain = ((-5.12, 5.12),) * self.dim

    def _value(self, xp, x):
        return xp.sum(x * x, axis=-1)

    def _grad(self, xp, x):
        return 2.0 * x

    def _hvp(self, xp, x, v):
        return 2.0 * v + xp.zeros_like(x)


class Rastrigin(Function):
    r"""f(x) = 10n + Σ (x_i² - 10 cos(2π x_i)).

    ∇f = 2x + 20π sin(2πx);  ∇²f = diag(2 + 40π² cos(2πx)).  Minimum f(0) = 0, box
    [-5.12, 5.12]ⁿ, a local minimum near every integer lattice point.
    """

    name = "rastrigin"
    title = "Rastrigin: 10n + sum x[i]^2 - 10 cos(2 pi x[i])"
    citation = _VLSE.format("rastr.html") + "; " + _JY
    minimum = 0.0

    def __init__(self, dim: int = 2):
        self.dim = check_int(self.name, "dim", dim, 1)
        self.minimizers = ((0.0,) * self.dim,)
        self.domain = ((-5.12, 5.12),) * self.dim

    def _value(self, xp, x):
        return xp.sum(x * x - 10.0 * xp.cos(2.0 * math.pi * x) + 10.0, axis=-1)

    def _grad(self, xp, x):
        return 2.0 * x + 20.0 * math.pi * xp.sin(2.0 * math.pi * x)

    def _hvp(self, xp, x, v):
        return (2.0 + 40.0 * math.pi**2 * xp.cos(2.0 * math.pi * x)) * v


class Ackley(Function):
    r"""Ackley's function with a = 20, b = 0.2, c = 2π:

    f(x) = -a exp(-b r) - exp(C) + a + e,   r = sqrt(Σx_i²/n),   C = Σ cos(c x_i)/n.

    ∇f = a b e^{-br} ∇r - e^C ∇C, with ∇r = x/(n r), ∇C = -(c/n) sin(cx);
    ∇²f v = a b e^{-br} [v/(n r) - x (x·v)/(n² r³) - b (∇r·v) ∇r] - e^C [(∇C·v) ∇C - (c²/n) cos(cx) ⊙ v].

    The cone term -a exp(-b r) is not differentiable at x = 0, the global minimizer
    (f(0) = 0).  Convention there (like sign(0) = 0): the cone term contributes 0 to the
    gradient and to the Hessian-vector product, so ∇f(0) = 0, which lies in the
    subdifferential, and ∇²f(0) is the Hessian of the smooth cosine term alone.  Box
    [-32.768, 32.768]ⁿ.
    """

    name = "ackley"
    title = "Ackley (a=20, b=0.2, c=2 pi)"
    citation = _VLSE.format("ackley.html") + "; " + _JY + "; Ackley (1987)"
    minimum = 0.0
    smooth = False
    a, b, c = 20.0, 0.2, 2.0 * math.pi

    def __init__(self, dim: int = 2):
        self.dim = check_int(self.name, "dim", dim, 1)
        self.minimizers = ((0.0,) * self.dim,)
        self.domain = ((-32.768, 32.768),) * self.dim

    def _r(self, xp, x):
        r = xp.sqrt(xp.sum(x * x, axis=-1) / self.dim)
        pos = r > 0.0
        return r, pos, xp.where(pos, r, xp.ones_like(r))

    def _value(self, xp, x):
        r, _, _ = self._r(xp, x)
        cos_mean = xp.sum(xp.cos(self.c * x), axis=-1) / self.dim
        return (self.a + math.e) - self.a * xp.exp(-self.b * r) - xp.exp(cos_mean)

    def _cone(self, xp, x):
        """(a b e^{-br} masked to 0 at r = 0, safe r, ∇r) for the cone term."""
        r, pos, r_safe = self._r(xp, x)
        k = xp.where(pos, self.a * self.b * xp.exp(-self.b * r), xp.zeros_like(r))
        grad_r = x / (self.dim * r_safe[..., None])
        return k, r_safe, grad_r

    def _grad(self, xp, x):
        n = self.dim
        k, _, grad_r = self._cone(xp, x)
        e_c = xp.exp(xp.sum(xp.cos(self.c * x), axis=-1) / n)
        grad_c = -(self.c / n) * xp.sin(self.c * x)
        return k[..., None] * grad_r - e_c[..., None] * grad_c

    def _hvp(self, xp, x, v):
        n = self.dim
        k, r_safe, grad_r = self._cone(xp, x)
        r1 = r_safe[..., None]
        cone = (
            v / (n * r1)
            - x * xp.sum(x * v, axis=-1, keepdims=True) / (n * n * r1**3)
            - self.b * xp.sum(grad_r * v, axis=-1, keepdims=True) * grad_r
        )
        e_c = xp.exp(xp.sum(xp.cos(self.c * x), axis=-1) / n)[..., None]
        grad_c = -(self.c / n) * xp.sin(self.c * x)
        smooth = xp.sum(grad_c * v, axis=-1, keepdims=True) * grad_c - (self.c**2 / n) * xp.cos(self.c * x) * v
        return k[..., None] * cone - e_c * smooth


class Himmelblau(Function2D):
    r"""Himmelblau's function, f(x, y) = (x² + y - 11)² + (x + y² - 7)².

    ∇f = (4x p + 2q, 2p + 4y q) with p = x² + y - 11, q = x + y² - 7;
    ∇²f = [[12x² + 4y - 42, 4x + 4y], [4x + 4y, 4x + 12y² - 26]].
    Four global minimizers with f = 0: (3, 2), (-2.805118, 3.131313), (-3.779310, -3.283186),
    (3.584428, -1.848127); box [-5, 5]².
    """

    name = "himmelblau"
    title = "Himmelblau: (x^2+y-11)^2 + (x+y^2-7)^2"
    citation = "Himmelblau (1972), Applied Nonlinear Programming, McGraw-Hill; " + _JY
    minimizers = (
        (3.0, 2.0),
        (-2.8051180869527449, 3.1313125182505730),
        (-3.7793102533777469, -3.2831859912861694),
        (3.5844283403304917, -1.8481265269644036),
    )
    minimum = 0.0
    domain = ((-5.0, 5.0), (-5.0, 5.0))

    def _f(self, xp, a, b):
        return (a * a + b - 11.0) ** 2 + (a + b * b - 7.0) ** 2

    def _df(self, xp, a, b):
        p, q = a * a + b - 11.0, a + b * b - 7.0
        return 4.0 * a * p + 2.0 * q, 2.0 * p + 4.0 * b * q

    def _d2f(self, xp, a, b):
        return 12.0 * a * a + 4.0 * b - 42.0, 4.0 * a + 4.0 * b, 4.0 * a + 12.0 * b * b - 26.0


class Booth(Function2D):
    r"""Booth's function, f(x, y) = (x + 2y - 7)² + (2x + y - 5)².

    ∇f = (10x + 8y - 34, 8x + 10y - 38);  ∇²f = [[10, 8], [8, 10]].  Minimum f(1, 3) = 0,
    box [-10, 10]².
    """

    name = "booth"
    title = "Booth: (x+2y-7)^2 + (2x+y-5)^2"
    citation = _VLSE.format("booth.html") + "; " + _JY
    minimizers = ((1.0, 3.0),)
    minimum = 0.0
    domain = ((-10.0, 10.0), (-10.0, 10.0))

    def _f(self, xp, a, b):
        return (a + 2.0 * b - 7.0) ** 2 + (2.0 * a + b - 5.0) ** 2

    def _df(self, xp, a, b):
        return 10.0 * a + 8.0 * b - 34.0, 8.0 * a + 10.0 * b - 38.0

    def _d2f(self, xp, a, b):
        return full_like(xp, a, 10.0), full_like(xp, a, 8.0), full_like(xp, a, 10.0)


_ST_X = -2.9035340277711771  # root of 4x³ - 32x + 5 = 0
_ST_F = -39.166165703771415  # (x⁴ - 16x² + 5x)/2 there


class StyblinskiTang(Function):
    r"""Styblinski-Tang, f(x) = ½ Σ (x_i⁴ - 16x_i² + 5x_i).

    ∇f = 2x³ - 16x + 2.5;  ∇²f = diag(6x² - 16).  Minimum at x_i = -2.903534 for every i,
    f = -39.166166·n; box [-5, 5]ⁿ.  (2ⁿ - 1 further local minima, with x_i ≈ 2.7468 in some
    coordinates.)
    """

    name = "styblinski_tang"
    title = "Styblinski-Tang: sum (x[i]^4 - 16 x[i]^2 + 5 x[i])/2"
    citation = _VLSE.format("stybtang.html") + "; " + _JY
    smooth = True

    def __init__(self, dim: int = 2):
        self.dim = check_int(self.name, "dim", dim, 1)
        self.minimizers = ((_ST_X,) * self.dim,)
        self.minimum = _ST_F * self.dim
        self.domain = ((-5.0, 5.0),) * self.dim

    def _value(self, xp, x):
        x2 = x * x
        return xp.sum(x2 * x2 - 16.0 * x2 + 5.0 * x, axis=-1) / 2.0

    def _grad(self, xp, x):
        return 2.0 * x**3 - 16.0 * x + 2.5

    def _hvp(self, xp, x, v):
        return (6.0 * x * x - 16.0) * v


class GoldsteinPrice(Function2D):
    r"""Goldstein-Price, f = A·B with

    A = 1 + u² P,   u = x + y + 1,   P = 19 - 14x + 3x² - 14y + 6xy + 3y²,
    B = 30 + w² Q,  w = 2x - 3y,     Q = 18 - 32x + 12x² + 48y - 36xy + 27y².

    ∇A = 2uP∇u + u²∇P, ∇²A = 2P∇u∇uᵀ + 2u(∇u∇Pᵀ + ∇P∇uᵀ) + u²∇²P (likewise B);
    ∇f = B∇A + A∇B;  ∇²f = B∇²A + A∇²B + ∇A∇Bᵀ + ∇B∇Aᵀ.
    Minimum f(0, -1) = 3, box [-2, 2]² (with several local minima).
    """

    name = "goldstein_price"
    title = "Goldstein-Price"
    citation = _VLSE.format("goldpr.html") + "; " + _JY + "; Goldstein & Price (1971)"
    minimizers = ((0.0, -1.0),)
    minimum = 3.0
    domain = ((-2.0, 2.0), (-2.0, 2.0))

    @staticmethod
    def _parts(xp, a, b):
        u = a + b + 1.0
        P = 19.0 - 14.0 * a + 3.0 * a * a - 14.0 * b + 6.0 * a * b + 3.0 * b * b
        Pa = -14.0 + 6.0 * a + 6.0 * b  # ∂P/∂x = ∂P/∂y
        A = 1.0 + u * u * P
        Aa = 2.0 * u * P + u * u * Pa  # ∇u = (1, 1), so ∂A/∂x = ∂A/∂y
        w = 2.0 * a - 3.0 * b
        Q = 18.0 - 32.0 * a + 12.0 * a * a + 48.0 * b - 36.0 * a * b + 27.0 * b * b
        Qa = -32.0 + 24.0 * a - 36.0 * b
        Qb = 48.0 - 36.0 * a + 54.0 * b
        B = 30.0 + w * w * Q
        Ba = 4.0 * w * Q + w * w * Qa  # ∇w = (2, -3)
        Bb = -6.0 * w * Q + w * w * Qb
        return u, P, Pa, A, Aa, w, Q, Qa, Qb, B, Ba, Bb

    def _f(self, xp, a, b):
        p = self._parts(xp, a, b)
        return p[3] * p[9]

    def _df(self, xp, a, b):
        u, P, Pa, A, Aa, w, Q, Qa, Qb, B, Ba, Bb = self._parts(xp, a, b)
        return B * Aa + A * Ba, B * Aa + A * Bb

    def _d2f(self, xp, a, b):
        u, P, Pa, A, Aa, w, Q, Qa, Qb, B, Ba, Bb = self._parts(xp, a, b)
        # ∇²A: every entry equals 2P + 4u Pa + 6u² (∇u = (1, 1), ∇²P = 6 everywhere)
        Ah = 2.0 * P + 4.0 * u * Pa + 6.0 * u * u
        # ∇²B = 2Q ∇w∇wᵀ + 2w(∇w∇Qᵀ + ∇Q∇wᵀ) + w² ∇²Q,  ∇²Q = [[24, -36], [-36, 54]]
        Baa = 8.0 * Q + 8.0 * w * Qa + 24.0 * w * w
        Bab = -12.0 * Q + 2.0 * w * (2.0 * Qb - 3.0 * Qa) - 36.0 * w * w
        Bbb = 18.0 * Q - 12.0 * w * Qb + 54.0 * w * w
        haa = B * Ah + A * Baa + 2.0 * Aa * Ba
        hab = B * Ah + A * Bab + Aa * Bb + Ba * Aa
        hbb = B * Ah + A * Bbb + 2.0 * Aa * Bb
        return haa, hab, hbb


class SixHumpCamel(Function2D):
    r"""Six-hump camel, f(x, y) = (4 - 2.1x² + x⁴/3) x² + xy + (-4 + 4y²) y².

    ∇f = (8x - 8.4x³ + 2x⁵ + y, x - 8y + 16y³);
    ∇²f = [[8 - 25.2x² + 10x⁴, 1], [1, -8 + 48y²]].
    Two global minimizers ±(0.0898420, -0.7126564), f = -1.0316285; box [-3, 3] × [-2, 2];
    four further local minima.
    """

    name = "six_hump_camel"
    title = "six-hump camel: (4-2.1x^2+x^4/3)x^2 + xy + (-4+4y^2)y^2"
    citation = _VLSE.format("camel6.html") + "; " + _JY
    minimizers = ((0.089842013100318062, -0.71265640302073963), (-0.089842013100318062, 0.71265640302073963))
    minimum = -1.0316284534898774
    domain = ((-3.0, 3.0), (-2.0, 2.0))

    def _f(self, xp, a, b):
        a2, b2 = a * a, b * b
        return (4.0 - 2.1 * a2 + a2 * a2 / 3.0) * a2 + a * b + (-4.0 + 4.0 * b2) * b2

    def _df(self, xp, a, b):
        a2 = a * a
        return 8.0 * a - 8.4 * a2 * a + 2.0 * a2 * a2 * a + b, a - 8.0 * b + 16.0 * b**3

    def _d2f(self, xp, a, b):
        a2 = a * a
        return 8.0 - 25.2 * a2 + 10.0 * a2 * a2, full_like(xp, a, 1.0), -8.0 + 48.0 * b * b
