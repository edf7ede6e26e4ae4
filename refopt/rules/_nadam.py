"""NAdam: Adam with Nesterov momentum and Dozat's momentum schedule.

Dozat, Incorporating Nesterov Momentum into Adam, ICLR 2016 workshop track, Algorithm 2,
in torch.optim.NAdam's form (which is the paper's schedule with ψ = 1/250 = 0.004):

    g   <- -g                                   if maximize
    θ   <- θ (1 - γλ)                           decoupled_weight_decay (NAdamW), or
    g   <- g + λ θ                              coupled L2 (default)
    μ_t = β1 (1 - ½ · 0.96^{t ψ})               schedule="torch" (paper; torch, tf.keras 2.x)
        = β1 (1 - ½ · 0.96^t)                   schedule="keras3" (Keras 3: the ψ factor is gone)
        = β1                                    schedule="constant" (optax.nadam, adam(nesterov=True))
    Π_t = Π_{t-1} · μ_t ,  Π_0 = 1              the product, accumulated step by step in float64
    m_t = β1 m + (1 - β1) g                     (ema="lerp": torch's form)
    v_t = β2 v + (1 - β2) g²
    bc2 = 1 - β2^t
    denom = √(v_t / bc2) + ε                    (+ ε_root inside the root: optax's eps_root)
    c_g = γ (1 - μ_t) / (1 - Π_t) ,  c_m = γ μ_{t+1} / (1 - Π_{t+1})       Python floats
    θ   <- (θ - c_g g / denom) - c_m m_t / denom                         torch's two addcdiv

All scalars (μ_t, μ_{t+1}, Π_t, Π_{t+1}, bc2, c_g, c_m) are computed on the host in float64
from t alone, so they equal torch's with ``torch.set_default_dtype(torch.float64)``; torch keeps
Π_t in a tensor of its *default* dtype, so with the usual float32 default a float64 run
accumulates Π_t in float32 (a known bug, ``torch-nadam-mu-product-dtype``).

With the constant schedule Π_t = β1^t and the two terms are optax's
m̂_t = β1 m_t / (1 - β1^{t+1}) + (1 - β1) g_t / (1 - β1^t) (Dozat's form without the
schedule).  The paper's Algorithm 2 also multiplies ν̂ by β2 (as optax's source remarks); no
implementation does, and neither does refopt.  Keras 3 evaluates the same two terms as
m̂ = (μ_{t+1} m)/(1 - Π_{t+1}) + ((1 - μ_t) g)/(1 - Π_t), θ -= (m̂ γ)/(√v̂ + ε) in the
parameters' dtype: equal up to rounding.

Sources: Dozat 2016 (openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ), Algorithm 2;
pytorch/pytorch torch/optim/nadam.py (2.13); keras-team/keras keras/src/optimizers/nadam.py
(3.15); google-deepmind/optax optax/_src/alias.py nadam and transform.py scale_by_adam (0.2.8).
"""

from __future__ import annotations

from .. import _array
from ._adam import _BETAS, _EMA, ema_constants, first_moment
from ._base import Choice, Flag, MAXIMIZE, Real, Rule, apply_weight_decay, is_zero

__all__ = ["NAdam"]


class NAdam(Rule):
    name = "nadam"
    family = "nadam"
    title = "NAdam: Adam with Nesterov momentum and a momentum schedule"
    citation = (
        "Dozat, Incorporating Nesterov Momentum into Adam, ICLR 2016 workshop, Algorithm 2, in "
        "torch.optim.NAdam's form (μ_t = β1(1 - ½·0.96^{tψ}), ψ = momentum_decay = 0.004)"
    )
    HYPER = (
        Real("lr", 2e-3, "learning rate γ", low=0.0),
        _BETAS,
        Real("eps", 1e-8, "ε added to √v̂", low=0.0),
        Real("weight_decay", 0.0, "weight decay λ (coupled L2 unless decoupled_weight_decay)", low=0.0),
        Real("momentum_decay", 4e-3, "ψ of the momentum schedule μ_t = β1(1 - ½·0.96^{tψ}) (schedule='torch')", low=0.0),
        Flag("decoupled_weight_decay", False, "θ <- θ(1 - γλ) before the step (NAdamW) instead of g + λθ"),
        MAXIMIZE,
        Choice(
            "schedule",
            "torch",
            "the momentum schedule μ_t: β1(1 - ½·0.96^{tψ}) (paper, torch, tf.keras 2.x), β1(1 - ½·0.96^t) "
            "(Keras 3), or the constant β1 (optax)",
            choices=("torch", "keras3", "constant"),
        ),
        Real("eps_root", 0.0, "ε_root added to v̂ inside the square root: √(v̂ + ε_root) + ε (optax)", low=0.0),
        _EMA,
    )

    def slots(self):
        return ("m", "v")

    def _constants(self):
        beta1, beta2 = self.betas
        return {**ema_constants(beta1, beta2), "decay": 1.0 - self.lr * self.weight_decay}

    def _mu(self, t):
        """μ_t on the host (a float, or a float64 array for batched hyper-parameters)."""
        beta1, _ = self.betas
        if self.schedule == "constant":
            return beta1 * 1.0
        if self.schedule == "keras3":
            return beta1 * (1.0 - 0.5 * _array.host_power(0.96, t))
        # torch: beta1 * (1. - 0.5 * (0.96 ** (step * momentum_decay))), step a float
        return beta1 * (1.0 - 0.5 * _array.host_power(0.96, float(t) * self.momentum_decay))

    def _mu_product(self, t):
        """Π_1..t accumulated in step order (torch's mu_product *= mu): O(1) per step when the steps
        come in order (the last product is kept, per host pow: the vectors swap in a correctly
        rounded one while they are written), recomputed from Π_0 = 1 otherwise."""
        cache = self.__dict__.setdefault("_mu_products", {})
        key = _array.host_power
        k, product = cache.get(key, (0, 1.0))
        if k > t:
            k, product = 0, 1.0
        while k < t:
            k += 1
            product = product * self._mu(k)
        cache[key] = (k, product)
        return product

    def _scalars(self, t):
        _, beta2 = self.betas
        bc2 = 1.0 - _array.host_power(beta2, t)
        mu_t, mu_next = self._mu(t), self._mu(t + 1)
        mu_prod = self._mu_product(t)
        mu_prod_next = mu_prod * mu_next  # torch: mu_product_next = mu_product * mu_next
        c_g = self.lr * (1.0 - mu_t) / (1.0 - mu_prod)
        c_m = self.lr * mu_next / (1.0 - mu_prod_next)
        return {"bc2": bc2, "mu_t": mu_t, "mu_next": mu_next, "mu_prod": mu_prod, "mu_prod_next": mu_prod_next,
                "c_g": c_g, "c_m": c_m}

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        # decoupled: torch's param.mul_(1 - lr * weight_decay); coupled: g + λθ
        p, g = apply_weight_decay(p, g, c, c.decoupled_weight_decay, not is_zero(self.weight_decay))
        m = first_moment(xp, s["m"], g, c)
        v = c.beta2 * s["v"] + c.one_minus_beta2 * g * g
        # torch: exp_avg_sq.div(bias_correction2).sqrt().add_(eps); optax: sqrt(v̂ + eps_root) + eps
        if is_zero(self.eps_root):
            denom = xp.sqrt(v / c.bc2) + c.eps
        else:  # adding a zero ε_root of some rows of a batch is exact: one form serves the whole batch
            denom = xp.sqrt(v / c.bc2 + c.eps_root) + c.eps
        update_g = c.c_g * g / denom  # torch: param.addcdiv_(grad, denom, value=-c_g)
        update_m = c.c_m * m / denom  # torch: param.addcdiv_(exp_avg, denom, value=-c_m)
        trace = {"g": g, "m": m, "v": v, "denom": denom, "update_g": update_g, "update_m": update_m}
        return (p - update_g) - update_m, {"m": m, "v": v}, trace
