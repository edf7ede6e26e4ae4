"""diffGrad: Adam whose first moment is damped by a friction coefficient on the gradient change.

Algorithm 1 of the paper as the authors' code and notebook compute it (the equations below
are checked against ``shivram1987/diffGrad`` @ 73233ba ``diffGrad_v2.py`` and
``diffGrad_analytical.ipynb``, the code the paper points to):

    g   <- g + λ θ                                coupled L2 (the official code), or decoupled:
                                                  θ <- θ(1 - γλ) (weight_decouple, pytorch_optimizer ≥ 4.0)
    m_t = β1 m_{t-1} + (1 - β1) g_t
    v_t = β2 v_{t-1} + (1 - β2) g_t²
    Δg_t = g_{t-1} - g_t ,  g_0 = 0               state slot g_prev: a copy of the (L2-augmented) g_t
    ξ_t  = 1 / (1 + exp(-|Δg_t|))  ∈ [0.5, 1)     "AbsSig" friction; ξ_1 = σ(|g_1|)
    bc1 = 1 - β1^t ,  bc2 = 1 - β2^t              Python floats, t counted from 1
    denom = √v_t / √bc2 + ε                       eps_mode="after_bias_correction": √v̂_t + ε, the
                                                  paper/notebook form (default)
          = √v_t + ε                              eps_mode="eps_hat": the PyTorch code (diffGrad_v2.py,
                                                  torch-optimizer, pytorch_optimizer ≥ 4.0), with
                                                  the step γ √bc2 / bc1 (effective ε/√bc2)
    θ_t = θ_{t-1} - (γ/bc1) ξ_t m_t / denom       = γ ξ_t m̂_t / (√v̂_t + ε)

The default is the paper's √v̂ + ε because the house default is the paper's algorithm; the
two forms differ by O(ε) (discrepancy D18 of specs/rules/diffgrad.toml).  ``eps_root`` adds a
constant inside the square root, √(v_t + ε_root), which pytorch_optimizer ≥ 4.0 hard-codes to
1e-15.

Notes on the official code (discrepancies D14, D19, D20 of specs/rules/diffgrad.toml):
``diffGrad.py`` (the paper runs) stored a *reference* to p.grad as the previous gradient, so
ξ ≡ 0.5 for t ≥ 2 under ``zero_grad(set_to_none=False)``; diffGrad_v2 and every port here
store a copy (refopt too).
pytorch_optimizer 2.7.0-3.11.0 drops ξ and √bc2 and is not diffGrad.  The official code
mutates p.grad in place for the L2 term; refopt never writes into an input.

Sources: Dubey, Chakraborty, Roy, Mukherjee, Singh & Chaudhuri, diffGrad: An Optimization Method
for Convolutional Neural Networks, IEEE TNNLS 31(11):4500-4511, 2020 (arXiv 1909.11015);
shivram1987/diffGrad ``diffGrad_v2.py``; jettify/pytorch-optimizer ``torch_optimizer/diffgrad.py``;
kozistr/pytorch_optimizer ``pytorch_optimizer/optimizer/diffgrad.py``.
"""

from __future__ import annotations

from ._adam import _BETAS, _EMA, bias_corrections, ema_constants, first_moment
from ._base import Choice, Flag, Real, Rule, is_zero

__all__ = ["DiffGrad"]


class DiffGrad(Rule):
    name = "diffgrad"
    family = "diffgrad"
    title = "diffGrad: Adam with a friction coefficient from the local change of the gradient"
    citation = (
        "Dubey, Chakraborty, Roy, Mukherjee, Singh & Chaudhuri, diffGrad: An Optimization Method for "
        "Convolutional Neural Networks, IEEE TNNLS 31(11):4500-4511, 2020 (arXiv 1909.11015), Algorithm 1, "
        "as shivram1987/diffGrad diffGrad_v2.py and diffGrad_analytical.ipynb compute it"
    )
    HYPER = (
        Real("lr", 1e-3, "learning rate γ", low=0.0),
        _BETAS,
        Real("eps", 1e-8, "ε added to the denominator (where: eps_mode)", low=0.0),
        Real(
            "weight_decay",
            0.0,
            "weight decay λ: coupled L2 g + λθ (official code; ξ sees the augmented g) unless weight_decouple",
            low=0.0,
        ),
        Flag(
            "weight_decouple",
            False,
            "θ <- θ(1 - γλ) before the step instead of coupled L2 (pytorch_optimizer ≥ 4.0, where it is the "
            "default)",
        ),
        Flag("fixed_decay", False, "decoupled decay θ <- θ(1 - λ) without γ (pytorch_optimizer; ignored when coupled)"),
        Choice(
            "eps_mode",
            "after_bias_correction",
            "where ε enters: √v̂ + ε (paper, analytic notebook), or √v + ε with the step γ√bc2/bc1 (the "
            "PyTorch code: diffGrad_v2.py, torch-optimizer, pytorch_optimizer ≥ 4.0)",
            choices=("after_bias_correction", "eps_hat"),
        ),
        Real(
            "eps_root",
            0.0,
            "ε_root added to v inside the square root, √(v + ε_root) (pytorch_optimizer ≥ 4.0 hard-codes 1e-15)",
            low=0.0,
        ),
        Flag("maximize", False, "ascend instead of descend (negates g before weight decay; pytorch_optimizer)"),
        _EMA,
    )

    def slots(self):
        return ("m", "v", "g_prev")

    def _constants(self):
        beta1, beta2 = self.betas
        if self.fixed_decay:
            decay = 1.0 - self.weight_decay
        else:
            decay = 1.0 - self.lr * self.weight_decay
        return {**ema_constants(beta1, beta2), "decay": decay}

    def _scalars(self, t):  # eps_hat, torch-optimizer: γ · √bc2 / bc1
        return bias_corrections(self.lr, self.betas, t, eps_hat=self.eps_mode == "eps_hat")

    def _leaf(self, xp, p, g, s, c):
        g_in = g
        if c.maximize:
            g = -g
        if not is_zero(self.weight_decay):
            if c.weight_decouple:
                p = p * c.decay
            else:  # coupled L2: ξ below is computed from this augmented gradient
                g = g + c.weight_decay * p
        m = first_moment(xp, s["m"], g, c)
        v = c.beta2 * s["v"] + c.one_minus_beta2 * g * g  # torch's addcmul: β2 v + ((1-β2) g) g
        # friction ξ = 1 / (1 + exp(-|g_{t-1} - g_t|)), as torch-optimizer writes it
        xi = 1.0 / (1.0 + xp.exp(-xp.abs(s["g_prev"] - g)))
        trace = {"g": g, "m": m, "v": v, "xi": xi}
        if c.tracing:
            trace["m_hat"] = m / c.bc1
            trace["v_hat"] = v / c.bc2
        v_root = v if is_zero(self.eps_root) else v + c.eps_root
        if c.eps_mode == "eps_hat":  # PyTorch code: √v + ε
            denom = xp.sqrt(v_root) + c.eps
        else:  # paper: √v̂ + ε, in torch.optim.Adam's order (√v / √bc2) + ε
            denom = xp.sqrt(v_root) / c.sqrt_bc2 + c.eps
        trace["denom"] = denom
        update = c.step_size * (m * xi) / denom  # torch-optimizer: addcdiv(m·ξ, denom, value=-step)
        trace["update"] = update
        # g_prev is a COPY of the gradient the friction saw (L2-augmented when coupled): the
        # official diffGrad.py kept a reference to p.grad, which made ξ ≡ 0.5 (discrepancy D14)
        g_prev = xp.asarray(g, copy=True) if g is g_in else g
        return p - update, {"m": m, "v": v, "g_prev": g_prev}, trace
