"""RMSprop, plain and centered, as torch.optim.RMSprop, with the TF/Keras conventions as options.

Algorithm box (torch's conventions, pytorch/pytorch torch/optim/rmsprop.py (torch 2.11-2.13);
no bias correction):

    g  <- -g                                      if maximize (before weight decay)
    g  <- g + λ θ                                 coupled L2 weight decay
    v  = α v + (1 - α) g²                         v_0 = initial_accumulator_value (0 in torch)
    ḡ  = α ḡ + (1 - α) g                          centered only, ḡ_0 = 0
    denom = √(v - ḡ²) + ε    (centered)   or   √v + ε        eps_mode="outside_sqrt" (torch)
    denom = √(v - ḡ² + ε)    (centered)   or   √(v + ε)      eps_mode="inside_sqrt" (TF/Keras, Graves)
    μ = 0:   θ <- θ - γ g / denom
    μ > 0:   b = μ b + g / denom ;      θ <- θ - γ b         lr outside the buffer (torch)
             b = μ b + γ g / denom ;    θ <- θ - b           lr_in_momentum=True (Keras, Graves)

The two momentum forms agree for a constant learning rate (up to rounding); they differ
once γ changes between steps, because torch's buffer carries no learning-rate history.

Sources: Hinton, Srivastava & Swersky, Neural Networks for Machine Learning, lecture 6e
(RMSprop: decay 0.9, no ε); Graves, Generating Sequences With Recurrent Neural Networks,
arXiv 1308.0850, eqs. (38)-(41) (centered form, ε inside the root, lr inside the momentum
buffer); pytorch/pytorch torch/optim/rmsprop.py (the defaults and the box above);
keras-team/keras keras/src/optimizers/rmsprop.py (lr 1e-3, rho 0.9, ε 1e-7, √(v [- ḡ²] + ε),
b = μ b + γ g/denom).  Discrepancy D26 of specs/rules/rmsprop.toml.
"""

from __future__ import annotations

from .. import _array
from ._base import DECOUPLED_WEIGHT_DECAY, MAXIMIZE, Choice, Flag, Real, Rule, apply_weight_decay, is_zero, select

__all__ = ["RMSprop"]


class RMSprop(Rule):
    name = "rmsprop"
    family = "rmsprop"
    title = "RMSprop: gradient divided by a running root mean square (plain or centered)"
    citation = (
        "Hinton, Neural Networks for Machine Learning, lecture 6e (2012); Graves, arXiv 1308.0850 (2013), "
        "eqs. 38-41 (centered); conventions of torch.optim.RMSprop (pytorch/pytorch torch/optim/rmsprop.py)"
    )
    HYPER = (
        Real("lr", 1e-2, "learning rate γ", low=0.0),
        Real("alpha", 0.99, "smoothing constant α of the running averages", low=0.0, high=1.0),
        Real("eps", 1e-8, "ε added to the denominator (where: eps_mode)", low=0.0),
        Real("weight_decay", 0.0, "coupled L2 penalty λ added to the gradient", low=0.0),
        Real("momentum", 0.0, "momentum factor μ (0: no buffer)", low=0.0),
        Flag("centered", False, "divide by the estimated standard deviation √(v - ḡ²) instead of √v"),
        MAXIMIZE,
        DECOUPLED_WEIGHT_DECAY,
        Choice(
            "eps_mode",
            "outside_sqrt",
            "where ε enters: √v + ε (torch) or √(v + ε) (TF/Keras, Graves 2013)",
            choices=("outside_sqrt", "inside_sqrt"),
        ),
        Flag(
            "lr_in_momentum",
            False,
            "keep γ inside the momentum buffer, b = μ b + γ g/denom, θ <- θ - b (Keras, Graves 2013) "
            "instead of torch's b = μ b + g/denom, θ <- θ - γ b",
        ),
        Real(
            "initial_accumulator_value",
            0.0,
            "v_0, the starting value of the running mean square (optax's initial_scale; torch starts at 0)",
            low=0.0,
        ),
        Choice(
            "ema",
            "multiply_add",
            "how ḡ is evaluated (centered only): α ḡ + (1-α) g, or torch's lerp ḡ + (1-α)(g - ḡ); "
            "the same number up to rounding (≤ 1 ulp per step)",
            choices=("multiply_add", "lerp"),
        ),
    )

    def slots(self):
        names = ["v"]
        if self.centered:
            names.append("g_bar")
        if not is_zero(self.momentum):
            names.append("b")
        return tuple(names)

    def _init_slot(self, xp, name, p):
        if name == "v" and not is_zero(self.initial_accumulator_value):
            v0 = _array.lift(self.initial_accumulator_value, p)
            return xp.zeros(p.shape, dtype=p.dtype, device=_array.device(p)) + v0
        return super()._init_slot(xp, name, p)

    def _constants(self):
        mu = self.momentum
        one_minus_alpha = 1.0 - self.alpha
        return {
            "decay": 1.0 - self.lr * self.weight_decay,
            "one_minus_alpha": one_minus_alpha,
            "lerp_from_start": one_minus_alpha < 0.5,
            # with batched momentum, entries with μ = 0 take torch's no-buffer path
            "no_momentum": (mu == 0) if not _array.is_scalar(mu) else False,
        }

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        # torch: grad.add(param, alpha=λ); Keras: θ - θ·λ·γ before the step
        p, g = apply_weight_decay(p, g, c, c.decoupled_weight_decay, not is_zero(self.weight_decay))
        # torch: square_avg.mul_(α).addcmul_(g, g, value=1-α)  ->  α v + ((1-α) g) g
        v = c.alpha * s["v"] + c.one_minus_alpha * g * g
        new = {"v": v}
        trace = {"g": g, "v": v}
        if c.centered:
            g_bar = s["g_bar"]
            if c.ema == "lerp":  # torch: grad_avg.lerp_(g, 1-α)
                g_bar = select(
                    xp,
                    c.lerp_from_start,
                    lambda: g_bar + c.one_minus_alpha * (g - g_bar),
                    lambda: g - (g - g_bar) * c.alpha,
                )
            else:
                g_bar = c.alpha * g_bar + c.one_minus_alpha * g
            new["g_bar"] = trace["g_bar"] = g_bar
            second = v - g_bar * g_bar  # torch: square_avg.addcmul(ḡ, ḡ, value=-1)
        else:
            second = v
        if c.eps_mode == "outside_sqrt":  # torch: √(·) + ε
            denom = xp.sqrt(second) + c.eps
        else:  # TF/Keras and Graves: √(· + ε)
            denom = xp.sqrt(second + c.eps)
        trace["denom"] = denom
        if "b" in s:
            if c.lr_in_momentum:  # Keras: b = μ b + (γ g)/denom ; θ <- θ - b
                b = c.momentum * s["b"] + c.lr * g / denom
                update = b
            else:  # torch: buf.mul_(μ).addcdiv_(g, denom) ; param.add_(buf, alpha=-γ)
                b = c.momentum * s["b"] + g / denom
                update = c.lr * b
            update = select(xp, c.no_momentum, lambda: c.lr * g / denom, update)
            new["b"] = trace["b"] = b
        else:  # torch: param.addcdiv_(g, denom, value=-γ)  ->  θ + ((-γ) g)/denom
            update = c.lr * g / denom
        trace["update"] = update
        return p - update, new, trace
