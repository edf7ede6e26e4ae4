"""M-SVAG: momentum with stochastic variance adaptation (Balles & Hennig, "Dissecting Adam").

Algorithm box (Balles & Hennig, ICML 2018, arXiv 1705.07774, Section 4 and Algorithm "M-SVAG";
in the evaluation order of the official TensorFlow code, lballes/msvag msvag/msvag.py, and of
its PyTorch port kozistr/pytorch_optimizer pytorch_optimizer/optimizer/msvag.py)::

    g   <- -g                                   if maximize
    g   <- g + λ θ                              coupled L2 (only the AdaBelief repository's copy has it)
    m   = β m + (1 - β) g                       ONE β for both moments (default 0.9)
    v   = β v + (1 - β) g²
    bc  = 1 - β^t                               host scalars, t counted from 1
    m̂   = m / bc ,  v̂ = v / bc_v                bc_v = bc (official); 1 - β2^t (AdaBelief repository)
    ρ   = (1 - β^{2t}) (1 - β)² / ((1 - β²) (1 - β^t)²)     the variance correction of an EMA
    ρ   <- min(ρ, rho_cap)                      official code: cap 0.9999 ("rho = 1 in the first step")
    s   = (v̂ - m̂²) / (1 - ρ)                    variance estimate
    γ   = m̂² / (ρ s + m̂²)                       variance-adaptation factor (NaN -> 0)
    γ   <- clip(γ, 0, 1)                        official code (clamp=True)
    θ   <- θ - lr m̂ γ

At t = 1 the official form has ρ capped at 0.9999 and v̂ = m̂², so γ = 1 and the first step is
plain SGD θ - lr g.  The paper's formula has no cap and no clamp; with ρ = 1 at t = 1 the
variance estimate is infinite and γ = 0 (the first step does not move).

The AdaBelief repository's copy (juntang-zhuang/Adabelief-Optimizer
PyTorch_Experiments/classification_cifar10/optimizers/MSVAG.py, used for the M-SVAG curves of
the AdaBelief paper) is a modified torch Adam: both moments decay with β1 but v̂ is
bias-corrected with β2 (``variant="adabelief_repo"``), ρ is written
(1 - β1)/(1 + β1) · (1 + β1^t)/(1 - β1^t), neither the cap nor the clamp is applied, and
coupled L2 weight decay is added to the gradient.  With its default betas (0.9, 0.999), v̂ is
inflated by (1 - β1^t)/(1 - β2^t) (×100 at t = 1), which damps γ for thousands of steps, and
the first step does not move (ρ = 1 exactly).  Its preset is
``Adabelief-Optimizer.MSVAG`` (refopt.presets).

Sources: Balles & Hennig, Dissecting Adam: The Sign, Magnitude and Variance of Stochastic
Gradients, ICML 2018 (arXiv 1705.07774); lballes/msvag msvag/msvag.py @ d2d467b;
kozistr/pytorch_optimizer pytorch_optimizer/optimizer/msvag.py (4.1.0);
juntang-zhuang/Adabelief-Optimizer PyTorch_Experiments/classification_cifar10/optimizers/MSVAG.py
@ 2855178.
"""

from __future__ import annotations

from .. import _array
from ._adabelief import _RealOrNone
from ._adam import _EMA, first_moment
from ._base import MAXIMIZE, Choice, Flag, Real, Rule, apply_weight_decay, is_zero

__all__ = ["MSVAG"]


class MSVAG(Rule):
    name = "msvag"
    family = "msvag"
    title = "M-SVAG: momentum with stochastic variance adaptation"
    citation = (
        "Balles & Hennig, Dissecting Adam: The Sign, Magnitude and Variance of Stochastic Gradients, ICML 2018 "
        "(arXiv 1705.07774); official code lballes/msvag msvag/msvag.py"
    )
    HYPER = (
        Real("lr", 1e-2, "learning rate α (the official code requires it; 1e-2 is pytorch_optimizer's default)",
             low=0.0),
        Real("beta", 0.9, "decay β of both moment estimates", low=0.0, high=1.0),
        _RealOrNone(
            "beta2",
            None,
            "β2 of the bias correction of v (AdaBelief repository: 1 - β2^t); None: the same β as the EMA",
            low=0.0,
            high=1.0,
        ),
        _RealOrNone(
            "rho_cap",
            0.9999,
            "ρ <- min(ρ, rho_cap) (official code 0.9999, so that the first step is SGD); None: no cap (paper)",
            low=0.0,
            high=1.0,
            high_open=False,
        ),
        Flag("clamp", True, "γ <- clip(γ, 0, 1) (official code); False: the paper's formula"),
        Choice(
            "rho_form",
            "official",
            "how ρ is evaluated: (1 - β^{2t})(1 - β)²/((1 - β²)(1 - β^t)²) (official code) or "
            "(1 - β)/(1 + β)·(1 + β^t)/(1 - β^t) (AdaBelief repository); equal up to rounding",
            choices=("official", "adabelief_repo"),
        ),
        Real("weight_decay", 0.0, "coupled L2 weight decay λ: g <- g + λθ (AdaBelief repository)", low=0.0),
        MAXIMIZE,
        _EMA,
    )

    def slots(self):
        return ("m", "v")

    def _constants(self):
        # first_moment reads beta1 / one_minus_beta1; M-SVAG's single β serves both moments
        return {"beta1": self.beta, "one_minus_beta1": 1.0 - self.beta, "lerp_from_start": (1.0 - self.beta) < 0.5}

    def _scalars(self, t):
        beta = self.beta
        bp = _array.host_power(beta, t)
        bc = 1.0 - bp
        beta2 = self.beta2 if self.beta2 is not None else beta
        bc_v = bc if self.beta2 is None else 1.0 - _array.host_power(beta2, t)
        if self.rho_form == "official":  # pytorch_optimizer get_rho: (1 - bp²)(1 - β)² / ((1 - β²)(1 - bp)²)
            rho = (1.0 - bp**2) * (1.0 - beta) ** 2
            rho = rho / ((1.0 - beta**2) * (1.0 - bp) ** 2)
        else:  # (1 - β)/(1 + β) · (1 + β^t)/(1 - β^t), left to right
            rho = (1.0 - beta) / (1.0 + beta) * (1.0 + bp) / (1.0 - bp)
        if self.rho_cap is not None:
            rho = _array.host_where(rho < self.rho_cap, rho, self.rho_cap)
        return {"bc": bc, "bc_v": bc_v, "rho": rho, "one_minus_rho": 1.0 - rho}

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        p, g = apply_weight_decay(p, g, c, False, not is_zero(self.weight_decay))
        m = first_moment(xp, s["m"], g, c)
        v = c.beta * s["v"] + c.one_minus_beta1 * g * g
        m_hat = m / c.bc
        v_hat = v / c.bc_v
        m2 = m_hat * m_hat
        var = (v_hat - m2) / c.one_minus_rho  # s: infinite (or NaN) when ρ = 1
        gamma = m2 / (var * c.rho + m2)
        zero = xp.zeros_like(gamma)
        if self.clamp:  # NaN -> 0, then clip to [0, 1], written with comparisons only
            gamma = xp.where(gamma > 0.0, xp.minimum(gamma, xp.ones_like(gamma)), zero)
        else:  # NaN -> 0 (NaN fails both comparisons)
            gamma = xp.where(gamma >= 0.0, gamma, xp.where(gamma < 0.0, gamma, zero))
        update = c.lr * m_hat * gamma
        trace = {"g": g, "m": m, "v": v, "m_hat": m_hat, "v_hat": v_hat, "s": var, "gamma": gamma, "update": update}
        return p - update, {"m": m, "v": v}, trace
