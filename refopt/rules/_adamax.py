"""Adamax: Adam with the infinity norm of past gradients in place of the second moment.

Kingma & Ba, Adam: A Method for Stochastic Optimization, ICLR 2015 (arXiv 1412.6980),
Algorithm 2 (Section 7.1), in torch.optim.Adamax's conventions:

    g   <- -g                                   if maximize
    g   <- g + λ θ                              coupled L2 (torch); or θ <- θ(1 - γλ) first
                                                (decoupled_weight_decay, θ(1 - λ) with fixed_decay)
    m_t = β1 m + (1 - β1) g                     (ema="lerp": torch's m + (1-β1)(g - m))
    u_t = max(β2 u, |g| + ε)                    eps_mode="in_max": ε inside the maximum and stored
                                                in u (torch, optax, pytorch_optimizer); with ε = 0
                                                this is the paper's u_t = max(β2 u, |g|)
    u_t = max(β2 u, |g|)                        eps_mode="in_denominator" (Keras): ε is added to
                                                u only in the denominator below
    bc1 = 1 - β1^t                              a Python float; u is not bias-corrected
    denom = u_t            (in_max)   or   u_t + ε   (in_denominator)
    θ   <- θ - (γ / bc1) m_t / denom

Why these defaults: torch has the rule, so its names and defaults (lr 2e-3 = the paper's α,
ε = 1e-8 inside the maximum) are the defaults; the paper's box, which has no ε at all, is
``eps=0``.  Keras keeps u free of ε and adds ε (1e-7 by default) to u in the denominator
(keras-team/keras keras/src/optimizers/adamax.py, 3.x): the two agree whenever |g| + ε wins
the maximum and differ by about β2·ε/u relatively when β2·u wins it.

Sources: Kingma & Ba, arXiv 1412.6980, Algorithm 2; pytorch/pytorch torch/optim/adamax.py
(2.13); google-deepmind/optax optax/_src/transform.py scale_by_adamax (0.2.8);
kozistr/pytorch_optimizer pytorch_optimizer/optimizer/adamax.py (4.1.0);
keras-team/keras keras/src/optimizers/adamax.py (3.15).
"""

from __future__ import annotations

from .. import _array
from ._adam import _BETAS, _EMA, ema_constants, first_moment
from ._base import Choice, Flag, MAXIMIZE, Real, Rule, apply_weight_decay, is_zero

__all__ = ["Adamax"]


class Adamax(Rule):
    name = "adamax"
    family = "adamax"
    title = "Adamax: Adam with the infinity norm of past gradients"
    citation = (
        "Kingma & Ba, Adam: A Method for Stochastic Optimization, ICLR 2015 (arXiv 1412.6980), Algorithm 2, "
        "in torch.optim.Adamax's form (ε inside the maximum; eps=0 is the paper's box)"
    )
    HYPER = (
        Real("lr", 2e-3, "learning rate γ (the paper's α)", low=0.0),
        _BETAS,
        Real("eps", 1e-8, "ε (where: eps_mode); 0 gives the paper's box", low=0.0),
        Real("weight_decay", 0.0, "weight decay λ (coupled L2 unless decoupled_weight_decay)", low=0.0),
        MAXIMIZE,
        Flag("decoupled_weight_decay", False, "θ <- θ(1 - γλ) before the step instead of g + λθ (pytorch_optimizer's weight_decouple)"),
        Flag("fixed_decay", False, "decoupled decay θ <- θ(1 - λ) without γ (pytorch_optimizer's fixed_decay)"),
        Choice(
            "eps_mode",
            "in_max",
            "where ε enters: inside the maximum, u = max(β2 u, |g| + ε) (torch, optax, pytorch_optimizer), or "
            "added to u in the denominator only (Keras)",
            choices=("in_max", "in_denominator"),
        ),
        _EMA,
    )

    def slots(self):
        return ("m", "u")

    def _constants(self):
        beta1, beta2 = self.betas
        decay = 1.0 - self.weight_decay if self.fixed_decay else 1.0 - self.lr * self.weight_decay
        return {**ema_constants(beta1, beta2), "decay": decay}

    def _scalars(self, t):
        beta1, _ = self.betas
        bc1 = 1.0 - _array.host_power(beta1, t)
        return {"bc1": bc1, "step_size": self.lr / bc1}

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        p, g = apply_weight_decay(p, g, c, c.decoupled_weight_decay, not is_zero(self.weight_decay))
        m = first_moment(xp, s["m"], g, c)
        if c.eps_mode == "in_max":  # torch: maximum(exp_inf.mul_(β2), grad.abs().add_(ε))
            u = xp.maximum(c.beta2 * s["u"], xp.abs(g) + c.eps)
            denom = u
        else:  # Keras: u = maximum(β2 u, |g|); (γ m) / ((1 - β1^t)(u + ε))
            u = xp.maximum(c.beta2 * s["u"], xp.abs(g))
            denom = u + c.eps
        update = c.step_size * m / denom  # torch: param.addcdiv_(m, u, value=-γ/bc1)
        trace = {"g": g, "m": m, "u": u, "denom": denom, "update": update}
        return p - update, {"m": m, "u": u}, trace
