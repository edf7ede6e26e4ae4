"""Lion (EvoLved Sign Momentum), as the authors' code writes it.

Algorithm box (Chen et al. 2023, Algorithm 2 / Program 1, in the official code's form):

    g  <- -g                                    if maximize
    c  = β1 m + (1 - β1) g                      interpolation used for the step only
    θ  <- θ (1 - γλ)                            decoupled weight decay, applied first
    θ  <- θ - γ sign(c)                         sign(0) = 0
    m  = β2 m + (1 - β2) g                      m_0 = 0; the state uses β2, not β1

The paper writes θ <- θ - γ (sign(c) + λθ), the same number as the two lines above up to
rounding; the official PyTorch code (and Pan & Li's copy, panyan7/adam-vs-sgd
torch_optimizer/lion.py) multiplies θ by (1 - γλ) before the signed step, which is what this
rule evaluates.  optax.lion adds λθ to the signed update instead and defaults weight_decay to
1e-3 (a preset's concern).

Sources: Chen et al., Symbolic Discovery of Optimization Algorithms, NeurIPS 2023
(arXiv 2302.06675), Algorithm 2; google/automl lion/lion_pytorch.py and lucidrains/lion-pytorch
lion_pytorch/lion_pytorch.py (defaults lr 1e-4, betas (0.9, 0.99), weight_decay 0);
panyan7/adam-vs-sgd torch_optimizer/lion.py (the same update).
"""

from __future__ import annotations

from ._base import Flag, Pair, Real, Rule, is_zero

__all__ = ["Lion"]

LION_BETAS = Pair(  # also the clipped and clip-update Lion's (refopt.rules._panli)
    "betas",
    (0.9, 0.99),
    "(β1, β2): β1 interpolates the step direction, β2 updates the momentum state",
    parts=(
        Real("beta1", 0.9, "interpolation weight of m in the step direction c", low=0.0, high=1.0),
        Real("beta2", 0.99, "decay of the momentum state m", low=0.0, high=1.0),
    ),
)


class Lion(Rule):
    name = "lion"
    family = "lion"
    title = "Lion: the sign of an interpolated momentum, with decoupled weight decay"
    citation = (
        "Chen et al., Symbolic Discovery of Optimization Algorithms, NeurIPS 2023 (arXiv 2302.06675), "
        "Algorithm 2; official code google/automl lion/lion_pytorch.py"
    )
    HYPER = (
        Real("lr", 1e-4, "learning rate γ (the size of every coordinate's step)", low=0.0),
        LION_BETAS,
        Real("weight_decay", 0.0, "decoupled weight decay λ: θ <- θ(1 - γλ)", low=0.0),
        Flag("maximize", False, "ascend instead of descend (negates g)"),
    )

    def slots(self):
        return ("m",)

    def _constants(self):
        beta1, beta2 = self.betas
        return {
            "one_minus_beta1": 1.0 - beta1,
            "one_minus_beta2": 1.0 - beta2,
            "decay": 1.0 - self.lr * self.weight_decay,
        }

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        m = s["m"]
        cvec = c.beta1 * m + c.one_minus_beta1 * g  # official: exp_avg * β1 + g * (1 - β1)
        if not is_zero(self.weight_decay):
            p = p * c.decay  # official: p.data.mul_(1 - lr * wd), before the step
        update = c.lr * xp.sign(cvec)  # official: p.add_(sign(c), alpha=-lr)
        m_new = c.beta2 * m + c.one_minus_beta2 * g  # official: exp_avg.mul_(β2).add_(g, alpha=1-β2)
        trace = {"g": g, "c": cvec, "update": update, "m": m_new}
        return p - update, {"m": m_new}, trace
