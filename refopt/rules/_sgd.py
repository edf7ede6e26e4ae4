"""Stochastic gradient descent with momentum, dampening and Nesterov, as torch.optim.SGD.

Algorithm box (torch's conventions, notes update-rules.md §3.1):

    g  <- -g                                  if maximize (before weight decay)
    g  <- g + λ θ                             coupled L2 weight decay (torch), or
    θ  <- θ (1 - γλ)                          decoupled (decoupled_weight_decay=True: SGDW, Keras)
    b_1 = g_1                                 the buffer starts at the first gradient:
    b_t = μ b_{t-1} + (1 - τ) g_t   (t > 1)   dampening τ is skipped at t = 1
    d  = g + μ b_t   if nesterov  else  b_t   (d = g when μ = 0: no buffer at all)
    θ  <- θ - γ d

The learning rate stays outside the buffer (Sutskever et al. and TF put it inside; the two
agree only for a constant learning rate), and Nesterov is the look-ahead-free form.
"""

from __future__ import annotations

from .. import _array
from ._base import Flag, Real, Rule, is_zero, select

__all__ = ["SGD"]


class SGD(Rule):
    name = "sgd"
    family = "sgd"
    title = "SGD with momentum (heavy ball), dampening and Nesterov momentum"
    citation = (
        "Robbins & Monro 1951; Polyak 1964 (heavy ball); Sutskever et al., ICML 2013 (Nesterov); "
        "conventions of torch.optim.SGD (pytorch/pytorch torch/optim/sgd.py)"
    )
    HYPER = (
        Real("lr", 1e-3, "learning rate γ", low=0.0),
        Real("momentum", 0.0, "momentum factor μ (0: no buffer)", low=0.0),
        Real("dampening", 0.0, "dampening τ of the buffer's gradient term (not applied at t = 1)", low=0.0, high=1.0, high_open=False),
        Real("weight_decay", 0.0, "coupled L2 penalty λ added to the gradient", low=0.0),
        Flag("nesterov", False, "Nesterov momentum (needs μ > 0 and τ = 0)"),
        Flag(
            "decoupled_weight_decay",
            False,
            "θ <- θ(1 - γλ) before the step (SGDW, Keras) instead of the coupled g + λθ (torch)",
        ),
        Flag("maximize", False, "ascend instead of descend (negates g before weight decay)"),
    )

    def _validate(self):
        mu, tau = self.momentum, self.dampening
        if self.nesterov:
            mu_ok = (mu > 0) if _array.is_scalar(mu) else bool((mu > 0).all())
            if not (mu_ok and is_zero(tau)):
                raise ValueError(
                    f"sgd: nesterov=True needs momentum > 0 and dampening = 0; got momentum={mu!r}, "
                    f"dampening={tau!r}"
                )

    def slots(self):
        return () if is_zero(self.momentum) else ("b",)

    def _constants(self):
        mu = self.momentum
        # with batched momentum, entries with μ = 0 take torch's no-buffer path (d = g)
        no_momentum = (mu == 0) if not _array.is_scalar(mu) else False
        return {
            "one_minus_dampening": 1.0 - self.dampening,
            "no_momentum": no_momentum,
            "decay": 1.0 - self.lr * self.weight_decay,
        }

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        if not is_zero(self.weight_decay):
            if c.decoupled_weight_decay:
                p = p * c.decay
            else:
                g = g + c.weight_decay * p
        new = {}
        trace = {"g": g}
        if "b" in s:
            b = g if c.t == 1 else c.momentum * s["b"] + c.one_minus_dampening * g
            d = g + c.momentum * b if c.nesterov else b
            d = select(xp, c.no_momentum, g, d)
            new["b"] = b
            trace["b"] = b
        else:
            d = g
        trace["d"] = d
        update = c.lr * d
        trace["update"] = update
        return p - update, new, trace
