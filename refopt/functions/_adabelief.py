"""The toy problems of the AdaBelief paper's Fig. 3, and Rosenbrock in n dimensions.

Zhuang, Tang, Ding, Tatikonda, Dvornek, Papademetris, Duncan, "AdaBelief Optimizer:
Adapting Stepsizes by the Belief in Observed Gradients", NeurIPS 2020 (arXiv 2010.07468),
Fig. 3.  Only Beale's start point (-2.5, -2.5) and box [-4, 4]² come from the authors' own
material (juntang-zhuang/Adabelief-Optimizer ``imgs/Beale2.gif``, ``imgs/beale3.png``); the
authors' material that refopt could check states no start point, box, learning rate or
iteration count for the other panels, so those are the third-party reproductions'
(``seiyab/adabelief-toy-examples-pytorch`` ``src/problems/toy.py``,
``Shreyans06/Exploring-AdaBelief-Edge-in-Optimization``), and ``start_source`` says so.

Subgradient convention for ``|u|``: ``d|u|/du = sign(u)`` with ``sign(0) = 0`` (torch's
``abs`` backward), and the Hessian of the piecewise-linear functions is 0 everywhere.
"""

from __future__ import annotations

from ._base import Function, Function2D, check_int, full_like, sign

_PAPER = (
    "Zhuang et al., 'AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients', "
    "NeurIPS 2020 (arXiv 2010.07468), Fig. 3"
)
_SEIYAB = "third-party reproduction seiyab/adabelief-toy-examples-pytorch (src/problems/toy.py); not stated in the paper"
_BOX3 = ((-3.0, 3.0), (-3.0, 3.0))


class AbsSum(Function):
    r"""f(x) = Σ_i |x_i|  (the paper's Fig. 3(a) is the 2-D case |x| + |y|).

    ∇f = sign(x) with sign(0) = 0; ∇²f = 0.  The paper's motivating example: Adam's second
    moments are equal in both coordinates, AdaBelief's s_x ≈ 0 < s_y gives a larger step
    along x.  From the start (-2.5, 0) the y-gradient is sign(0) = 0 throughout.
    """

    name = "abs_sum"
    title = "|x| + |y| (sum of absolute values)"
    citation = _PAPER + " (a)"
    minimum = 0.0
    smooth = False

    def __init__(self, dim: int = 2):
        self.dim = check_int(self.name, "dim", dim, 1)
        self.minimizers = ((0.0,) * self.dim,)
        self.domain = ((-3.0, 3.0),) * self.dim
        if self.dim == 2:
            self.start, self.start_source = (-2.5, 0.0), _SEIYAB
        else:
            self.start, self.start_source = None, ""

    def _value(self, xp, x):
        return xp.sum(xp.abs(x), axis=-1)

    def _grad(self, xp, x):
        return sign(xp, x)

    def _hvp(self, xp, x, v):
        return xp.zeros_like(x) * v


class AbsRotated(Function2D):
    r"""f(x, y) = |x + y| + |x - y| / 10  (Fig. 3(b): the abs problem rotated by 45° and stretched).

    ∇f = sign(x + y)·(1, 1) + sign(x - y)/10·(1, -1) with sign(0) = 0; ∇²f = 0.
    """

    name = "abs_rotated"
    title = "|x + y| + |x - y|/10"
    citation = _PAPER + " (b)"
    minimizers = ((0.0, 0.0),)
    minimum = 0.0
    domain = _BOX3
    start = (2.5, 0.0)
    start_source = _SEIYAB
    smooth = False

    def _f(self, xp, a, b):
        return xp.abs(a + b) + xp.abs(a - b) / 10.0

    def _df(self, xp, a, b):
        s, d = sign(xp, a + b), sign(xp, a - b) / 10.0
        return s + d, s - d

    def _d2f(self, xp, a, b):
        z = xp.zeros_like(a)
        return z, z, z


class QuadRotated(Function2D):
    r"""f(x, y) = (x + y)² + (x - y)²/10  (Fig. 3(c): a rotated, ill-conditioned quadratic).

    ∇f = 2(x+y)(1, 1) + (x-y)/5 (1, -1);  ∇²f = [[2.2, 1.8], [1.8, 2.2]] (eigenvalues 4 and
    0.4 along (1, 1) and (1, -1): condition number 10).
    """

    name = "quad_rotated"
    title = "(x + y)^2 + (x - y)^2/10"
    citation = _PAPER + " (c)"
    minimizers = ((0.0, 0.0),)
    minimum = 0.0
    domain = _BOX3
    start = (2.5, 0.0)
    start_source = _SEIYAB

    def _f(self, xp, a, b):
        return (a + b) ** 2 + (a - b) ** 2 / 10.0

    def _df(self, xp, a, b):
        s, d = 2.0 * (a + b), (a - b) / 5.0
        return s + d, s - d

    def _d2f(self, xp, a, b):
        return full_like(xp, a, 2.2), full_like(xp, a, 1.8), full_like(xp, a, 2.2)


class AbsScaled(Function2D):
    r"""f(x, y) = |x|/10 + |y|  (Fig. 3(d) as ``Shreyans06/Exploring-AdaBelief-Edge-in-Optimization``
    reproduces it -- unverified against the paper).

    ∇f = (sign(x)/10, sign(y)) with sign(0) = 0; ∇²f = 0.  That reproduction uses
    β1 = β2 = 0.3, start (0.5, 1.5) and 100 iterations.
    """

    name = "abs_scaled"
    title = "|x|/10 + |y|"
    citation = _PAPER + " (d), as reproduced by Shreyans06/Exploring-AdaBelief-Edge-in-Optimization"
    minimizers = ((0.0, 0.0),)
    minimum = 0.0
    domain = _BOX3
    start = (0.5, 1.5)
    start_source = "third-party reproduction Shreyans06/Exploring-AdaBelief-Edge-in-Optimization; unverified vs the paper"
    smooth = False

    def _f(self, xp, a, b):
        return xp.abs(a) / 10.0 + xp.abs(b)

    def _df(self, xp, a, b):
        return sign(xp, a) / 10.0, sign(xp, b)

    def _d2f(self, xp, a, b):
        z = xp.zeros_like(a)
        return z, z, z


def _beale_terms(xp, a, b):
    """Beale's residuals r_i = c_i - a + a b^i and their derivatives, i = 1, 2, 3."""
    b2 = b * b
    b3 = b2 * b
    r = (1.5 - a + a * b, 2.25 - a + a * b2, 2.625 - a + a * b3)
    ra = (b - 1.0, b2 - 1.0, b3 - 1.0)  # ∂r_i/∂a = b^i - 1
    rb = (a, 2.0 * a * b, 3.0 * a * b2)  # ∂r_i/∂b = i a b^(i-1)
    rab = (full_like(xp, a, 1.0), 2.0 * b, 3.0 * b2)  # ∂²r_i/∂a∂b = i b^(i-1)
    rbb = (xp.zeros_like(a), 2.0 * a, 6.0 * a * b)  # ∂²r_i/∂b² = i(i-1) a b^(i-2)
    return r, ra, rb, rab, rbb


class Beale(Function2D):
    r"""Beale's function, f(x, y) = (1.5 - x + xy)² + (2.25 - x + xy²)² + (2.625 - x + xy³)².

    With residuals r_i = c_i - x + x yⁱ:  ∇f = Σ 2 r_i ∇r_i,  ∇²f = Σ 2(∇r_i ∇r_iᵀ + r_i ∇²r_i),
    ∇r_i = (yⁱ - 1, i x yⁱ⁻¹), ∇²r_i = [[0, i yⁱ⁻¹], [i yⁱ⁻¹, i(i-1) x yⁱ⁻²]].
    Global minimum f(3, 0.5) = 0.  The benchmark box is [-4.5, 4.5]² (Surjanovic & Bingham);
    this is the AdaBelief figure's [-4, 4]² with the authors' start (-2.5, -2.5)
    (``imgs/Beale2.gif``).  The figure may show ``log_beale`` instead (see there).
    """

    name = "beale"
    title = "Beale: (1.5-x+xy)^2 + (2.25-x+xy^2)^2 + (2.625-x+xy^3)^2"
    citation = (
        _PAPER + " (e)/(f), official animation imgs/Beale2.gif; Beale (1958); "
        "Surjanovic & Bingham, Virtual Library of Simulation Experiments (sfu.ca/~ssurjano/beale.html)"
    )
    minimizers = ((3.0, 0.5),)
    minimum = 0.0
    domain = ((-4.0, 4.0), (-4.0, 4.0))
    start = (-2.5, -2.5)
    start_source = "official AdaBelief animation imgs/Beale2.gif"

    def _f(self, xp, a, b):
        r = _beale_terms(xp, a, b)[0]
        return r[0] ** 2 + r[1] ** 2 + r[2] ** 2

    def _df(self, xp, a, b):
        r, ra, rb, _, _ = _beale_terms(xp, a, b)
        ga = 2.0 * (r[0] * ra[0] + r[1] * ra[1] + r[2] * ra[2])
        gb = 2.0 * (r[0] * rb[0] + r[1] * rb[1] + r[2] * rb[2])
        return ga, gb

    def _d2f(self, xp, a, b):
        r, ra, rb, rab, rbb = _beale_terms(xp, a, b)
        haa = 2.0 * (ra[0] ** 2 + ra[1] ** 2 + ra[2] ** 2)
        hab = 2.0 * sum(ra[i] * rb[i] + r[i] * rab[i] for i in range(3))
        hbb = 2.0 * sum(rb[i] ** 2 + r[i] * rbb[i] for i in range(3))
        return haa, hab, hbb


class LogBeale(Function2D):
    r"""g(x, y) = log(1 + f(x, y)) / 10 with f Beale's function.

    ∇g = ∇f / (10(1 + f));  ∇²g = ∇²f / (10(1 + f)) - ∇f ∇fᵀ / (10(1 + f)²).
    Same minimizer (3, 0.5), minimum 0.  The z-axis of the AdaBelief Beale figure spans
    about 0 to 1.1, which matches this transform on [-4, 4]² (max ≈ 1.12): the plotted and
    probably optimised objective.  This is refopt's inference from the official figure
    (``imgs/beale3.png``), not stated in any text by the authors; it is also the transform of
    the Shreyans06 reproduction, and plain Beale at the reproductions' lr 1e-3 is unstable
    for SGD (seiyab's report), which fits a transformed objective.
    """

    name = "log_beale"
    title = "log(1 + Beale)/10"
    citation = Beale.citation + "; transform inferred by refopt from the z-range (0 to 1.1) of the official figure imgs/beale3.png"
    minimizers = ((3.0, 0.5),)
    minimum = 0.0
    domain = ((-4.0, 4.0), (-4.0, 4.0))
    start = (-2.5, -2.5)
    start_source = Beale.start_source

    _beale = Beale()

    def _f(self, xp, a, b):
        return xp.log1p(self._beale._f(xp, a, b)) / 10.0

    def _df(self, xp, a, b):
        w = 1.0 / (10.0 * (1.0 + self._beale._f(xp, a, b)))
        ga, gb = self._beale._df(xp, a, b)
        return ga * w, gb * w

    def _d2f(self, xp, a, b):
        w = 1.0 / (1.0 + self._beale._f(xp, a, b))
        ga, gb = self._beale._df(xp, a, b)
        haa, hab, hbb = self._beale._d2f(xp, a, b)
        return (
            (haa - w * ga * ga) * w / 10.0,
            (hab - w * ga * gb) * w / 10.0,
            (hbb - w * gb * gb) * w / 10.0,
        )


class Rosenbrock(Function):
    r"""Rosenbrock's function in n ≥ 2 dimensions, f(x) = Σ_{i<n-1} 100(x_{i+1} - x_i²)² + (1 - x_i)².

    ∂f/∂x_i = -400 x_i (x_{i+1} - x_i²) - 2(1 - x_i) [i < n-1] + 200 (x_i - x_{i-1}²) [i > 0];
    ∇²f is tridiagonal: H_ii = (1200 x_i² - 400 x_{i+1} + 2)[i < n-1] + 200 [i > 0],
    H_{i,i+1} = H_{i+1,i} = -400 x_i.  Global minimum f(1, ..., 1) = 0 (for 4 ≤ n ≤ 7 there
    is also a local minimum near (-1, 1, ..., 1)).  For n = 2 this is the AdaBelief figure's
    (g)/(h) with the reproduction's box [-6, 6]² and start (-4, -4); for other n the box is
    [-6, 6]ⁿ and no start is given.  The benchmark literature uses [-5, 10]ⁿ.
    """

    name = "rosenbrock"
    title = "Rosenbrock: sum 100(x[i+1]-x[i]^2)^2 + (1-x[i])^2"
    citation = (
        _PAPER + " (g)/(h); Rosenbrock (1960), Computer Journal 3(3):175-184; "
        "Surjanovic & Bingham, Virtual Library of Simulation Experiments (sfu.ca/~ssurjano/rosen.html)"
    )
    minimum = 0.0

    def __init__(self, dim: int = 2):
        self.dim = check_int(self.name, "dim", dim, 2)
        self.minimizers = ((1.0,) * self.dim,)
        self.domain = ((-6.0, 6.0),) * self.dim
        if self.dim == 2:
            self.start, self.start_source = (-4.0, -4.0), _SEIYAB
        else:
            self.start, self.start_source = None, ""

    def _value(self, xp, x):
        a, b = x[..., :-1], x[..., 1:]
        return xp.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2, axis=-1)

    def _grad(self, xp, x):
        a, b = x[..., :-1], x[..., 1:]
        t = b - a * a
        left = -400.0 * a * t - 2.0 * (1.0 - a)  # d/dx_i of the i-th term, i < n-1
        right = 200.0 * t  # d/dx_{i+1} of the i-th term
        zero = xp.zeros_like(x[..., :1])
        return xp.concat([left, zero], axis=-1) + xp.concat([zero, right], axis=-1)

    def _hvp(self, xp, x, v):
        x, v = xp.broadcast_arrays(x, v)
        a, b = x[..., :-1], x[..., 1:]
        zero = xp.zeros_like(x[..., :1])
        diag = xp.concat([1200.0 * a * a - 400.0 * b + 2.0, zero], axis=-1) + xp.concat(
            [zero, full_like(xp, b, 200.0)], axis=-1
        )
        off = -400.0 * a  # H[i, i+1]
        upper = xp.concat([off * v[..., 1:], zero], axis=-1)  # H[i, i+1] v[i+1]
        lower = xp.concat([zero, off * v[..., :-1]], axis=-1)  # H[i, i-1] v[i-1]
        return diag * v + upper + lower
