"""Adagrad, as torch.optim.Adagrad, with Keras's ε placement as an option.

Algorithm box (torch's conventions, pytorch/pytorch torch/optim/adagrad.py (torch 2.11-2.13)):

    g   <- -g                                  if maximize (before weight decay)
    g   <- g + λ θ                             coupled L2 weight decay
    γ_t = γ / (1 + (t - 1) η)                  η = lr_decay (t = 1 on the first step)
    s   = s + g²                               s_0 = initial_accumulator_value
    denom = √s + ε                             eps_mode="outside_sqrt" (Duchi et al., torch)
    denom = √(s + ε)                           eps_mode="inside_sqrt"  (Keras)
    θ   <- θ - γ_t g / denom

Duchi, Hazan & Singer (2011) diagonal AdaGrad: θ <- θ - η g / (δ + √s), δ outside the root;
there is no lr_decay (a Lua-torch legacy that torch keeps).  Keras
(keras-team/keras keras/src/optimizers/adagrad.py) evaluates θ - (γ g)/√(s + ε) with
defaults lr 1e-3, initial_accumulator_value 0.1, ε 1e-7 (discrepancy D27 of
specs/rules/adagrad.toml).

Sources: Duchi, Hazan & Singer, Adaptive Subgradient Methods for Online Learning and
Stochastic Optimization, JMLR 12 (2011); pytorch/pytorch torch/optim/adagrad.py.
"""

from __future__ import annotations

from .. import _array
from ._base import DECOUPLED_WEIGHT_DECAY, MAXIMIZE, Choice, Real, Rule, apply_weight_decay, is_zero

__all__ = ["Adagrad"]


class Adagrad(Rule):
    name = "adagrad"
    family = "adagrad"
    title = "Adagrad: per-coordinate steps scaled by the root of the summed squared gradients"
    citation = (
        "Duchi, Hazan & Singer, Adaptive Subgradient Methods for Online Learning and Stochastic "
        "Optimization, JMLR 12:2121-2159 (2011); conventions of torch.optim.Adagrad "
        "(pytorch/pytorch torch/optim/adagrad.py)"
    )
    HYPER = (
        Real("lr", 1e-2, "learning rate γ", low=0.0),
        Real("lr_decay", 0.0, "learning-rate decay η: γ_t = γ / (1 + (t-1) η)", low=0.0),
        Real("weight_decay", 0.0, "coupled L2 penalty λ added to the gradient", low=0.0),
        Real("initial_accumulator_value", 0.0, "starting value s_0 of the sum of squared gradients", low=0.0),
        Real("eps", 1e-10, "ε added to the denominator (where: eps_mode)", low=0.0),
        MAXIMIZE,
        DECOUPLED_WEIGHT_DECAY,
        Choice(
            "eps_mode",
            "outside_sqrt",
            "where ε enters: √s + ε (Duchi et al., torch) or √(s + ε) (Keras)",
            choices=("outside_sqrt", "inside_sqrt"),
        ),
    )

    def slots(self):
        return ("s",)

    def _init_slot(self, xp, name, p):
        zeros = xp.zeros(p.shape, dtype=p.dtype, device=_array.device(p))
        s0 = self.initial_accumulator_value
        if is_zero(s0):
            return zeros
        return zeros + _array.lift(s0, p)  # a Python float is rounded once to p's dtype

    def _constants(self):
        # Keras decays with its (undecayed) learning rate: θ - θ·λ·γ
        return {"decay": 1.0 - self.lr * self.weight_decay}

    def _scalars(self, t):
        # torch: clr = lr / (1 + (step - 1) * lr_decay), a Python float on the host
        return {"lr_t": self.lr / (1.0 + (t - 1) * self.lr_decay)}

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        # torch: grad.add(param, alpha=λ); Keras: θ - θ·λ·γ before the step
        p, g = apply_weight_decay(p, g, c, c.decoupled_weight_decay, not is_zero(self.weight_decay))
        s_new = s["s"] + g * g  # torch: state_sum.addcmul_(g, g, value=1)
        if c.eps_mode == "outside_sqrt":  # torch: state_sum.sqrt().add_(ε)
            denom = xp.sqrt(s_new) + c.eps
        else:  # Keras: sqrt(accumulator + ε)
            denom = xp.sqrt(s_new + c.eps)
        update = c.lr_t * g / denom  # torch: param.addcdiv_(g, denom, value=-γ_t)
        trace = {"g": g, "s": s_new, "denom": denom, "update": update}
        return p - update, {"s": s_new}, trace
