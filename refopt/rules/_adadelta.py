"""Adadelta, as torch.optim.Adadelta (Zeiler's Algorithm 1 with a learning rate on the step).

Algorithm box (torch's conventions, pytorch/pytorch torch/optim/adadelta.py (torch 2.11-2.13)):

    g      <- -g                               if maximize (before weight decay)
    g      <- g + λ θ                          coupled L2 weight decay
    v      = ρ v + (1 - ρ) g²                  E[g²]_t, v_0 = 0
    rms_g  = √(v + ε)                          RMS[g]_t          (ε inside the root)
    rms_Δ  = √(u + ε)                          RMS[Δθ]_{t-1}     (ε inside the root; old u)
    Δ      = (rms_Δ / rms_g) g
    u      = ρ u + (1 - ρ) Δ²                  E[Δθ²]_t, u_0 = 0, accumulated BEFORE γ scales Δ
    θ      <- θ - γ Δ

Zeiler (2012) has no learning rate (γ = 1, torch's default) and used ρ = 0.95, ε = 1e-6
(§4.4); torch scales only the applied step by γ, never u, and defaults ρ = 0.9.  Keras
(keras-team/keras keras/src/optimizers/adadelta.py) has the same box with lr 1e-3, ρ 0.95,
ε 1e-7 (discrepancy D28 of specs/rules/adadelta.toml).

Sources: Zeiler, ADADELTA: An Adaptive Learning Rate Method, arXiv 1212.5701, Algorithm 1;
pytorch/pytorch torch/optim/adadelta.py.
"""

from __future__ import annotations

from ._base import DECOUPLED_WEIGHT_DECAY, MAXIMIZE, Real, Rule, apply_weight_decay, is_zero

__all__ = ["Adadelta"]


class Adadelta(Rule):
    name = "adadelta"
    family = "adadelta"
    title = "Adadelta: steps in the units of θ from running averages of g² and Δθ²"
    citation = (
        "Zeiler, ADADELTA: An Adaptive Learning Rate Method, arXiv 1212.5701 (2012), Algorithm 1; "
        "conventions of torch.optim.Adadelta (pytorch/pytorch torch/optim/adadelta.py)"
    )
    HYPER = (
        Real("lr", 1.0, "learning rate γ scaling the applied step only (1: Zeiler's algorithm)", low=0.0),
        Real("rho", 0.9, "decay ρ of the running averages of g² and Δθ²", low=0.0, high=1.0, high_open=False),
        Real("eps", 1e-6, "ε inside both square roots", low=0.0),
        Real("weight_decay", 0.0, "coupled L2 penalty λ added to the gradient", low=0.0),
        MAXIMIZE,
        DECOUPLED_WEIGHT_DECAY,
    )

    def slots(self):
        return ("v", "u")

    def _constants(self):
        return {"one_minus_rho": 1.0 - self.rho, "decay": 1.0 - self.lr * self.weight_decay}

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        # torch: grad.add(param, alpha=λ); Keras: θ - θ·λ·γ before the step
        p, g = apply_weight_decay(p, g, c, c.decoupled_weight_decay, not is_zero(self.weight_decay))
        v = c.rho * s["v"] + c.one_minus_rho * g * g  # torch: mul_(ρ).addcmul_(g, g, value=1-ρ)
        rms_g = xp.sqrt(v + c.eps)  # torch: square_avg.add(ε).sqrt_()
        rms_delta = xp.sqrt(s["u"] + c.eps)  # torch: acc_delta.add(ε).sqrt_(), the previous u
        delta = rms_delta / rms_g * g  # torch: delta.div_(std).mul_(g)
        u = c.rho * s["u"] + c.one_minus_rho * delta * delta  # before the lr scaling
        update = c.lr * delta  # torch: param.add_(delta, alpha=-γ)
        trace = {"g": g, "v": v, "rms_g": rms_g, "rms_delta": rms_delta, "delta": delta, "u": u, "update": update}
        return p - update, {"v": v, "u": u}, trace
