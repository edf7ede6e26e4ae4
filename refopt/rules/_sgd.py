"""Stochastic gradient descent with momentum, dampening and Nesterov, as torch.optim.SGD.

Algorithm box (torch's conventions, pytorch/pytorch torch/optim/sgd.py (torch 2.11-2.13)):

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
from ._base import MAXIMIZE, Flag, Real, Rule, apply_weight_decay, is_zero, select

__all__ = ["SGD", "TorchMomentum", "MOMENTUM", "DAMPENING", "NESTEROV"]

MOMENTUM = Real("momentum", 0.0, "momentum factor μ (0: no buffer)", low=0.0)
DAMPENING = Real(
    "dampening", 0.0, "dampening τ of the buffer's gradient term (not applied at t = 1)", low=0.0, high=1.0,
    high_open=False,
)
NESTEROV = Flag("nesterov", False, "Nesterov momentum d = g + μ b (needs μ > 0 and τ = 0)")


class TorchMomentum:
    """torch.optim.SGD's momentum buffer, for every rule that steps along it.

    A mixin placed before :class:`Rule` (``class SGD(TorchMomentum, Rule)``); the rule
    declares MOMENTUM, DAMPENING and NESTEROV among its hyper-parameters.  The buffer slot
    ``b`` exists only when μ ≠ 0 somewhere (torch keeps no buffer for μ = 0); with batched μ
    the rows where μ = 0 take torch's no-buffer path, d = g.
    """

    def _validate(self):
        super()._validate()
        mu, tau = self.momentum, self.dampening
        if self.nesterov:
            mu_ok = (mu > 0) if _array.is_scalar(mu) else bool((mu > 0).all())
            if not (mu_ok and is_zero(tau)):
                raise ValueError(
                    f"{self.name}: nesterov=True needs momentum > 0 and dampening = 0; got momentum={mu!r}, "
                    f"dampening={tau!r}"
                )

    def slots(self):
        return () if is_zero(self.momentum) else ("b",)

    def _constants(self):
        mu = self.momentum
        return {
            **super()._constants(),
            "one_minus_dampening": 1.0 - self.dampening,
            "no_momentum": (mu == 0) if not _array.is_scalar(mu) else False,
        }

    def _momentum(self, xp, g, s, c, new, trace, first_gradient=True):
        """The direction d from the gradient g; records ``b`` in ``new`` and ``trace``.

        ``first_gradient``: the buffer starts as b_1 = g_1, dampening skipped (torch); False
        starts from b_0 = 0 with dampening from the first step (an EMA, as Signum).
        """
        if "b" not in s:
            return g
        if c.t == 1 and first_gradient:
            b = g  # torch: buf = clone(d_p)
        else:  # torch: buf.mul_(μ).add_(d_p, alpha=1-τ)
            b = c.momentum * s["b"] + c.one_minus_dampening * g
        d = g + c.momentum * b if c.nesterov else b  # torch: d_p.add(buf, alpha=μ)
        new["b"] = trace["b"] = b
        return select(xp, c.no_momentum, g, d)


class SGD(TorchMomentum, Rule):
    name = "sgd"
    family = "sgd"
    title = "SGD with momentum (heavy ball), dampening and Nesterov momentum"
    citation = (
        "Robbins & Monro 1951; Polyak 1964 (heavy ball); Sutskever et al., ICML 2013 (Nesterov); "
        "conventions of torch.optim.SGD (pytorch/pytorch torch/optim/sgd.py)"
    )
    HYPER = (
        Real("lr", 1e-3, "learning rate γ", low=0.0),
        MOMENTUM,
        DAMPENING,
        Real("weight_decay", 0.0, "weight decay λ (coupled L2 unless decoupled_weight_decay)", low=0.0),
        NESTEROV,
        Flag(
            "decoupled_weight_decay",
            False,
            "θ <- θ(1 - γλ) before the step (SGDW, Keras) instead of the coupled g + λθ (torch)",
        ),
        MAXIMIZE,
    )

    def _constants(self):
        return {**super()._constants(), "decay": 1.0 - self.lr * self.weight_decay}

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        p, g = apply_weight_decay(p, g, c, c.decoupled_weight_decay, not is_zero(self.weight_decay))
        new = {}
        trace = {"g": g}
        d = trace["d"] = self._momentum(xp, g, s, c, new, trace)
        update = trace["update"] = c.lr * d
        return p - update, new, trace
