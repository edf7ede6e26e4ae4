"""The diffGrad paper's three synthetic 1-D functions, and the F2 its notebook actually optimised.

Dubey et al., "diffGrad: An Optimization Method for Convolutional Neural Networks", IEEE
TNNLS 31(11):4500-4511, 2020 (arXiv 1909.11015), section on synthetic functions; official
code ``shivram1987/diffGrad`` (``diffGrad_analytical.ipynb``); closed forms as in
``mhaut/AngularGrad`` ``analytical/main.py`` (whose F1 and F3 derivatives equal the notebook's
and whose F2 derivative is the exact one).  The minima and the trajectories quoted below were
computed by refopt from these definitions.

Protocol of the paper's figure: domain [-1, 1], start x0 = -1, lr 0.1, β1 = 0.95,
β2 = 0.999, ε = 1e-8, 299 updates.  Each piecewise definition is written "left branch for
x <= a, right branch for x > a", and at a boundary the value and the derivatives are the
left branch's, exactly as written (so F1'(0) = 0.6, F3'(0) = -7/8, F3'(-0.5) = -1).
"""

from __future__ import annotations

from ._base import Function1D, full_like

_PAPER = (
    "Dubey, Chakraborty, Roy, Mukherjee, Singh, Chaudhuri, 'diffGrad: An Optimization Method for "
    "Convolutional Neural Networks', IEEE TNNLS 31(11):4500-4511, 2020 (arXiv 1909.11015); "
    "code shivram1987/diffGrad diffGrad_analytical.ipynb"
)
_DOMAIN = ((-1.0, 1.0),)
_START = (-1.0,)
_START_SOURCE = "diffGrad_analytical.ipynb (x0 = -1 for all three functions)"


class DiffGradF1(Function1D):
    r"""diffGrad F1: two parabolas joined at a kink, a global and a local minimum.

    ::

        F1(x) = (x + 0.3)^2          x <= 0
                (x - 0.2)^2 + 0.05   x > 0
        F1'(x) = 2x + 0.6 (x <= 0);  2x - 0.4 (x > 0)          F1''(x) = 2

    Continuous (F1(0) = 0.09) with a kink at 0, where the gradient is the left branch's 0.6.
    Global minimum F1(-0.3) = 0; local minimum F1(0.2) = 0.05.  In the paper's figure Adam
    overshoots the kink and settles at 0.2, diffGrad reaches -0.3.
    """

    name = "diffgrad_f1"
    title = "diffGrad F1: (x+0.3)^2 for x<=0, (x-0.2)^2+0.05 for x>0"
    citation = _PAPER
    minimizers = ((-0.3,),)
    minimum = 0.0
    domain = _DOMAIN
    start = _START
    start_source = _START_SOURCE
    local_minima = (((0.2,), 0.05),)
    breakpoints = (0.0,)
    smooth = False

    def _f(self, xp, x):
        return xp.where(x <= 0.0, (x + 0.3) ** 2, (x - 0.2) ** 2 + 0.05)

    def _df(self, xp, x):
        return xp.where(x <= 0.0, 2.0 * x + 0.6, 2.0 * x - 0.4)

    def _d2f(self, xp, x):
        return full_like(xp, x, 2.0)


class DiffGradF2(Function1D):
    r"""diffGrad F2 exactly as defined: a steep line, then a cubic with oscillation.

    ::

        F2(x) = -40x - 35.15               x <= -0.9
                x^3 + x sin(8x) + 0.85     x > -0.9
        F2'(x)  = -40 ;  3x^2 + sin(8x) + 8x cos(8x)
        F2''(x) = 0   ;  6x + 16 cos(8x) - 64x sin(8x)

    **Not continuous at -0.9**: the left branch gives F2(-0.9) = 0.85, the right branch tends
    to 0.83530 (a jump of 0.0147).  Minima on [-1, 1]: global x ≈ -0.642919, F2 ≈ 1.198e-4;
    local x = 0 (F2 = 0.85) and x ≈ 0.588053 (F2 ≈ 0.465318).  The official notebook coded
    a different derivative for the right branch: see ``diffgrad_f2_notebook``.
    """

    name = "diffgrad_f2"
    title = "diffGrad F2: -40x-35.15 for x<=-0.9, x^3+x sin(8x)+0.85 for x>-0.9 (jump at -0.9)"
    citation = _PAPER
    minimizers = ((-0.64291859891526175,),)
    minimum = 1.1977146994464420e-4
    domain = _DOMAIN
    start = _START
    start_source = _START_SOURCE
    local_minima = (((0.0,), 0.85), ((0.58805347607924605,), 0.46531810345742706))
    breakpoints = (-0.9,)
    smooth = False
    jump = (0.85, 0.83530107746423775)
    """(left value F2(-0.9), right limit) at the discontinuity x = -0.9."""

    def _f(self, xp, x):
        return xp.where(x <= -0.9, -40.0 * x - 35.15, x**3 + x * xp.sin(8.0 * x) + 0.85)

    def _df(self, xp, x):
        right = 3.0 * x**2 + xp.sin(8.0 * x) + 8.0 * x * xp.cos(8.0 * x)
        return xp.where(x <= -0.9, full_like(xp, x, -40.0), right)

    def _d2f(self, xp, x):
        right = 6.0 * x + 16.0 * xp.cos(8.0 * x) - 64.0 * x * xp.sin(8.0 * x)
        return xp.where(x <= -0.9, xp.zeros_like(x), right)


_F2N_C = -36.706250790343936
"""-40·(-0.9) + c = G(-0.9) with G(x) = x³ + x sin(8x)/8 − 7cos(8x)/64: c = G(-0.9) − 36."""


class DiffGradF2Notebook(Function1D):
    r"""The function whose derivative the official diffGrad notebook coded for F2.

    ``diffGrad_analytical.ipynb`` codes the gradient of F2 as ``-40`` for x <= -0.9 and
    ``x·cos(8x) + sin(8x) + 3x²`` for x > -0.9: the factor 8 of ``8x·cos(8x)`` is missing
    (discrepancy D15 of specs/rules/diffgrad.toml).  A gradient fixes a function up
    to a constant on each branch; this is the one with that gradient, made continuous::

        G(x) = -40x + c                               x <= -0.9,   c = G_r(-0.9) - 36
               x^3 + x sin(8x)/8 - 7 cos(8x)/64       x > -0.9     (= G_r(x))
        G'(x)  = -40 ;  3x^2 + sin(8x) + x cos(8x)                 (the notebook's gradient)
        G''(x) = 0   ;  6x + 9 cos(8x) - 8x sin(8x)

    (d/dx [x sin(8x)/8 - 7cos(8x)/64] = sin(8x)/8 + x cos(8x) + 7 sin(8x)/8.)  c ≈ -36.70625.
    Continuous, with a kink at -0.9 where the slope jumps from -40 to +1.0888: the kink is
    the global minimizer, G(-0.9) ≈ -0.706251 (0 lies in the subdifferential [-40, 1.0888];
    the gradient returned there is the left branch's -40).  Local minima: x = 0 (G = -7/64)
    and x ≈ 0.583948 (G ≈ 0.130653).  So the published F2 trajectories (Adam → 0, diffGrad
    bouncing on the kink at -0.9) are trajectories on this function, not on F2.
    """

    name = "diffgrad_f2_notebook"
    title = "diffGrad F2 as the official notebook's gradient implies (x cos(8x) instead of 8x cos(8x))"
    citation = _PAPER + "; its F2 gradient lacks the factor 8 of 8x·cos(8x) (discrepancy D15, specs/rules/diffgrad.toml)"
    minimizers = ((-0.9,),)
    minimum = -0.70625079034393564
    domain = _DOMAIN
    start = _START
    start_source = _START_SOURCE
    local_minima = (((0.0,), -0.109375), ((0.58394840580036297,), 0.13065257065550842))
    breakpoints = (-0.9,)
    smooth = False
    left_constant = _F2N_C

    def _f(self, xp, x):
        right = x**3 + x * xp.sin(8.0 * x) / 8.0 - 7.0 * xp.cos(8.0 * x) / 64.0
        return xp.where(x <= -0.9, -40.0 * x + _F2N_C, right)

    def _df(self, xp, x):
        right = x * xp.cos(8.0 * x) + xp.sin(8.0 * x) + 3.0 * x**2
        return xp.where(x <= -0.9, full_like(xp, x, -40.0), right)

    def _d2f(self, xp, x):
        right = 6.0 * x + 9.0 * xp.cos(8.0 * x) - 8.0 * x * xp.sin(8.0 * x)
        return xp.where(x <= -0.9, xp.zeros_like(x), right)


class DiffGradF3(Function1D):
    r"""diffGrad F3: an even, continuous, piecewise function with a narrow central valley.

    ::

        F3(x) = x^2          x <= -0.5          F3'(x) = 2x
                0.75 + x     -0.5 < x <= -0.4            1
                -7x/8        -0.4 < x <= 0               -7/8
                7x/8         0 < x <= 0.4                7/8
                0.75 - x     0.4 < x <= 0.5              -1
                x^2          x > 0.5                     2x

    F3'' = 2 on the parabolas, 0 on the lines.  Global minimum F3(0) = 0 (a kink: the
    gradient returned there is the left branch's -7/8, the subdifferential is [-7/8, 7/8]);
    local minima at the kinks x = ±0.5, F3 = 0.25 (subdifferential [-1, 1]), separated
    from the valley by ridges of height 0.35 at x = ±0.4.
    """

    name = "diffgrad_f3"
    title = "diffGrad F3: even piecewise function, valley at 0, local minima at ±0.5"
    citation = _PAPER
    minimizers = ((0.0,),)
    minimum = 0.0
    domain = _DOMAIN
    start = _START
    start_source = _START_SOURCE
    local_minima = (((-0.5,), 0.25), ((0.5,), 0.25))
    breakpoints = (-0.5, -0.4, 0.0, 0.4, 0.5)
    smooth = False

    def _pieces(self, xp, x, a, b, c, d, e, f):
        return xp.where(
            x <= -0.5, a,
            xp.where(x <= -0.4, b, xp.where(x <= 0.0, c, xp.where(x <= 0.4, d, xp.where(x <= 0.5, e, f)))),
        )

    def _f(self, xp, x):
        sq = x**2
        return self._pieces(xp, x, sq, 0.75 + x, -7.0 * x / 8.0, 7.0 * x / 8.0, 0.75 - x, sq)

    def _df(self, xp, x):
        c = lambda v: full_like(xp, x, v)  # noqa: E731
        return self._pieces(xp, x, 2.0 * x, c(1.0), c(-7.0 / 8.0), c(7.0 / 8.0), c(-1.0), 2.0 * x)

    def _d2f(self, xp, x):
        two, zero = full_like(xp, x, 2.0), xp.zeros_like(x)
        return self._pieces(xp, x, two, zero, zero, zero, zero, two)

