"""AdaBound and AMSBound: Adam (AMSGrad) whose per-coordinate step is clipped into bounds that
tighten towards a final SGD learning rate.

Luo, Xiong, Liu & Sun, Adaptive Gradient Methods with Dynamic Bound of Learning Rate, ICLR
2019 (arXiv 1902.09843), Algorithms 2 (AdaBound) and 3 (AMSBound), in the form of the
authors' code (Luolc/AdaBound adabound/adabound.py, released as adabound 0.0.5):

    g   <- -g                                   if maximize
    g   <- g + λ θ                              coupled L2 (official); or θ <- θ(1 - γλ) first
                                                (decoupled_weight_decay, pytorch_optimizer), θ(1 - λ)
                                                with fixed_decay (the repository's AdaBoundW, up to rounding)
    m_t = β1 m + (1 - β1) g                     (ema="lerp": pytorch_optimizer's torch.lerp)
    v_t = β2 v + (1 - β2) g²
    v_max = max(v_max, v_t)                     amsbound: the maximum of the raw v
    denom = √v_t + ε                            (√(v_t + ε_root) + ε: pytorch_optimizer's 1e-15)
    bc1 = 1 - β1^t ,  bc2 = 1 - β2^t            Python floats (1 with bias_correction=False)
    step_size = γ √bc2 / bc1                    the Kingma-Ba "efficient" form: ε acts as ε/√bc2 on √v̂
    η* = final_lr · γ / γ_0                     γ_0 = base_lr (the learning rate at construction)
    lower = η* (1 - 1/(gamma·t + 1)) ,  upper = η* (1 + 1/(gamma·t))
    η_t = clip(step_size / denom, lower, upper)                          (÷ √t with step_decay="sqrt_t")
    θ   <- θ - η_t m_t                          m_t is NOT bias-corrected: the clip acts on a rate
                                                that carries 1/bc1 (10× at t = 1 with β1 = 0.9)

Why the code's form is the default: the paper's box (no bias correction, no ε, η_t = η̂_t/√t,
time-varying β1t) is what the regret analysis needs, but neither the authors' experiments nor
any released implementation runs it -- Luolc/AdaBound, torch-optimizer and pytorch_optimizer all
compute the box above, and the baselines of later papers (AdaBelief's among them) were produced
with the PyPI package.  The paper's box is ``bias_correction=False, eps=0, step_decay="sqrt_t"``
(with constant β1); its experiments' bounds 0.1 ∓ 0.1/((1-β2)t [+1]) are ``final_lr=0.1,
gamma=1-β2``.

``base_lr`` (None: the current ``lr``) is the learning rate the official code captured when the
optimizer was built: with an lr schedule (``rule.replace(lr=...)``) keep base_lr at the initial
value and the bounds follow the schedule, as in the code (η* = final_lr·lr/base_lr).  A base
learning rate of 0 gives η* = 0 (pytorch_optimizer's convention; the official code divides by it).

Sources: Luo et al., arXiv 1902.09843, Algorithms 2-3 and §5; Luolc/AdaBound
adabound/adabound.py (adabound 0.0.5; AdaBoundW in the repository only); jettify/pytorch-optimizer
torch_optimizer/adabound.py (0.3.0); kozistr/pytorch_optimizer pytorch_optimizer/optimizer/adabound.py
and base/optimizer.py apply_ams_bound (4.1.0).
"""

from __future__ import annotations

from .. import _array
from ._adabelief import _RealOrNone
from ._adam import _BETAS, _EMA, ema_constants, first_moment
from ._base import Choice, Flag, MAXIMIZE, Real, Rule, apply_weight_decay, is_zero

__all__ = ["AdaBound", "AMSBound"]


class AdaBound(Rule):
    name = "adabound"
    family = "adabound"
    title = "AdaBound: Adam with per-coordinate steps clipped into bounds converging to SGD's"
    citation = (
        "Luo, Xiong, Liu & Sun, Adaptive Gradient Methods with Dynamic Bound of Learning Rate, ICLR 2019 "
        "(arXiv 1902.09843), Algorithm 2, in the authors' code's form (Luolc/AdaBound adabound/adabound.py, "
        "adabound 0.0.5): bias corrections, ε on the raw √v, no 1/√t"
    )
    HYPER = (
        Real("lr", 1e-3, "learning rate γ (Adam's step size)", low=0.0),
        _BETAS,
        Real("final_lr", 0.1, "the SGD learning rate η* that both bounds converge to", low=0.0),
        Real("gamma", 1e-3, "the speed of convergence of the bounds", low=0.0, low_open=True),
        Real("eps", 1e-8, "ε added to √v (the raw, un-corrected second moment)", low=0.0),
        Real("weight_decay", 0.0, "weight decay λ (coupled L2 unless decoupled_weight_decay)", low=0.0),
        Flag("amsbound", False, "AMSBound: use the running maximum of the raw second moment"),
        _RealOrNone(
            "base_lr",
            None,
            "the learning rate γ_0 the bounds are relative to, η* = final_lr·γ/γ_0 (None: γ itself)",
            low=0.0,
            low_open=True,
        ),
        Flag("decoupled_weight_decay", False, "θ <- θ(1 - γλ) before the step (pytorch_optimizer's weight_decouple) instead of g + λθ"),
        Flag("fixed_decay", False, "decoupled decay θ <- θ(1 - λ) without γ (pytorch_optimizer; the repository's AdaBoundW)"),
        MAXIMIZE,
        Flag("bias_correction", True, "step_size = γ√bc2/bc1 (every implementation); False: γ, the paper's box"),
        Choice(
            "step_decay",
            "none",
            "divide the clipped rate by √t (the paper's η_t = η̂_t/√t) or not (every implementation)",
            choices=("none", "sqrt_t"),
        ),
        Real("eps_root", 0.0, "ε_root inside the root, √(v + ε_root) + ε (pytorch_optimizer: 1e-15)", low=0.0),
        _EMA,
    )

    def slots(self):
        return ("m", "v", "v_max") if self.amsbound else ("m", "v")

    def _constants(self):
        beta1, beta2 = self.betas
        decay = 1.0 - self.weight_decay if self.fixed_decay else 1.0 - self.lr * self.weight_decay
        return {**ema_constants(beta1, beta2), "decay": decay}

    def _scalars(self, t):
        beta1, beta2 = self.betas
        bc1 = 1.0 - _array.host_power(beta1, t) if self.bias_correction else 1.0
        bc2 = 1.0 - _array.host_power(beta2, t) if self.bias_correction else 1.0
        step_size = self.lr * _array.host_power(bc2, 0.5) / bc1  # official: lr * math.sqrt(bc2) / bc1
        base = self.lr if self.base_lr is None else self.base_lr
        positive = base > 0
        # official: final_lr * lr / base_lr; pytorch_optimizer: ... if base_lr > 0 else 0
        eta_star = _array.host_where(positive, self.final_lr * self.lr / _array.host_where(positive, base, 1.0), 0.0)
        lower = eta_star * (1.0 - 1.0 / (self.gamma * t + 1.0))
        upper = eta_star * (1.0 + 1.0 / (self.gamma * t))
        out = {"bc1": bc1, "bc2": bc2, "step_size": step_size, "eta_star": eta_star, "lower": lower, "upper": upper}
        if self.step_decay == "sqrt_t":
            out["sqrt_t"] = _array.host_power(float(t), 0.5)
        return out

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        p, g = apply_weight_decay(p, g, c, c.decoupled_weight_decay, not is_zero(self.weight_decay))
        m = first_moment(xp, s["m"], g, c)
        v = c.beta2 * s["v"] + c.one_minus_beta2 * g * g  # official: addcmul_(1 - β2, g, g)
        new = {"m": m, "v": v}
        trace = {"g": g, "m": m, "v": v}
        v_used = v
        if self.amsbound:  # official: torch.max(max_exp_avg_sq, exp_avg_sq)
            v_used = new["v_max"] = trace["v_max"] = xp.maximum(s["v_max"], v)
        if is_zero(self.eps_root):
            denom = xp.sqrt(v_used) + c.eps
        else:  # pytorch_optimizer: (v + 1e-15).sqrt().add(ε)
            denom = xp.sqrt(v_used + c.eps_root) + c.eps
        # official: full_like(denom, step_size).div_(denom).clamp_(lower, upper).mul_(exp_avg)
        eta = xp.minimum(xp.maximum(c.step_size / denom, c.lower), c.upper)
        if c.step_decay == "sqrt_t":
            eta = eta / c.sqrt_t
        update = eta * m
        trace.update(denom=denom, eta=eta, update=update)
        return p - update, new, trace


class AMSBound(AdaBound):
    name = "amsbound"
    title = "AMSBound: AdaBound with the running maximum of the second moment"
    citation = (
        "Luo, Xiong, Liu & Sun, Adaptive Gradient Methods with Dynamic Bound of Learning Rate, ICLR 2019 "
        "(arXiv 1902.09843), Algorithm 3, in the authors' code's form (Luolc/AdaBound adabound/adabound.py "
        "with amsbound=True): the maximum of the raw second moment"
    )
    HYPER = tuple(
        Flag("amsbound", True, "use the running maximum of the raw second moment (False: AdaBound)") if h.name == "amsbound" else h
        for h in AdaBound.HYPER
    )
