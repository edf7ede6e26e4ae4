"""Yogi: Adam whose second moment moves additively, by at most (1 - β2) g² per step.

Zaheer, Reddi, Sachan, Kale & Kumar, Adaptive Methods for Nonconvex Optimization, NeurIPS
2018, Algorithm 2, in the form of the first author's TensorFlow Addons implementation
(tensorflow/addons tensorflow_addons/optimizers/yogi.py), the official code:

    g   <- -g                                   if maximize
    g   <- g + λ θ                              coupled L2 (torch-optimizer); or θ <- θ(1 - γλ) first
                                                (decoupled_weight_decay, pytorch_optimizer; fixed_decay: θ(1 - λ))
    m_0 = initial_momentum_value ,  v_0 = initial_accumulator_value
    m_t = β1 m + (1 - β1) g                     (ema="lerp": pytorch_optimizer's torch.lerp)
    v_t = v - (1 - β2) sign(v - g²) g²          sign(0) = 0: v is kept when v = g² exactly
    bc1 = 1 - β1^t ,  bc2 = 1 - β2^t            Python floats (1 with bias_correction=False)
    denom = √v_t + ε   ,  u = (γ √bc2 / bc1) m_t / denom        eps_mode="eps_hat" (TF-Addons, keras-contrib)
    denom = √v_t / √bc2 + ε ,  u = (γ / bc1) m_t / denom        eps_mode="after_bias_correction"
                                                (torch-optimizer, pytorch_optimizer, optax; optax adds
                                                 ε_root inside the root: √(v_t/bc2 + ε_root) + ε)
    θ   <- θ - u

The paper's box has no bias correction and m_0 = v_0 = 0 (its text proposes v_0 = the mean g² of
a large mini-batch at θ_0): ``bias_correction=False, initial_accumulator_value=0``; there both
eps_modes coincide.  TF-Addons starts m at 0 and v at ``initial_accumulator_value = 1e-6``
(the author's default since tensorflow/addons#1077); keras-contrib starts both at 0; optax,
torch-optimizer and pytorch_optimizer start *both* moments at 1e-6 (``initial_momentum_value``).
TF-Addons' l1/l2 proximal terms and its ``activation="tanh"`` variant are not reproduced.

Why the defaults: torch has no Yogi, so the names are the torch family's (lr, betas, eps) and
the defaults the official TF-Addons code's: lr 1e-2, ε 1e-3, m_0 = 0, v_0 = 1e-6, ε on the raw
√v with step γ√bc2/bc1.

Sources: Zaheer et al., NeurIPS 2018 (papers.nips.cc paper 8186), Algorithm 2;
tensorflow/addons tensorflow_addons/optimizers/yogi.py; keras-team/keras-contrib
keras_contrib/optimizers/yogi.py; google-deepmind/optax optax/_src/transform.py scale_by_yogi
(0.2.8); jettify/pytorch-optimizer torch_optimizer/yogi.py (0.3.0); kozistr/pytorch_optimizer
pytorch_optimizer/optimizer/yogi.py (4.1.0).
"""

from __future__ import annotations

from .. import _array
from ._adam import _BETAS, _EMA, bias_corrections, ema_constants, first_moment
from ._base import Choice, Flag, MAXIMIZE, Real, Rule, apply_weight_decay, is_zero, select

__all__ = ["Yogi"]


class Yogi(Rule):
    name = "yogi"
    family = "yogi"
    title = "Yogi: adaptive steps with an additive, sign-controlled second moment"
    citation = (
        "Zaheer, Reddi, Sachan, Kale & Kumar, Adaptive Methods for Nonconvex Optimization, NeurIPS 2018, "
        "Algorithm 2, in the form of the first author's code (tensorflow/addons "
        "tensorflow_addons/optimizers/yogi.py): bias corrections, ε on the raw √v, v_0 = 1e-6"
    )
    HYPER = (
        Real("lr", 1e-2, "learning rate γ", low=0.0),
        _BETAS,
        Real("eps", 1e-3, "ε added to the denominator (where: eps_mode)", low=0.0),
        Real("initial_accumulator_value", 1e-6, "v_0, the initial second moment", low=0.0),
        Real("initial_momentum_value", 0.0, "m_0, the initial first moment (1e-6 in optax and the torch ports)", low=0.0),
        Real("weight_decay", 0.0, "weight decay λ (coupled L2 unless decoupled_weight_decay)", low=0.0),
        Flag("decoupled_weight_decay", False, "θ <- θ(1 - γλ) before the step (pytorch_optimizer's weight_decouple) instead of g + λθ"),
        Flag("fixed_decay", False, "decoupled decay θ <- θ(1 - λ) without γ (pytorch_optimizer's fixed_decay)"),
        MAXIMIZE,
        Choice(
            "eps_mode",
            "eps_hat",
            "where ε enters: on the raw √v with step γ√bc2/bc1 (TF-Addons, keras-contrib), or after the bias "
            "correction, √v̂ + ε (torch-optimizer, pytorch_optimizer, optax)",
            choices=("eps_hat", "after_bias_correction"),
        ),
        Flag("bias_correction", True, "divide the moments by 1 - β^t (every implementation); False is the paper's box"),
        Real("eps_root", 0.0, "ε_root inside the root, √(v̂ + ε_root) + ε (optax; eps_mode='after_bias_correction')", low=0.0),
        _EMA,
    )

    def _validate(self):
        if not is_zero(self.eps_root) and self.eps_mode != "after_bias_correction":
            raise ValueError(
                f"yogi: eps_root={self.eps_root!r} is only defined with eps_mode='after_bias_correction' "
                f"(√(v̂ + ε_root) + ε); got eps_mode={self.eps_mode!r}"
            )

    def slots(self):
        return ("m", "v")

    def _init_slot(self, xp, name, p):
        zeros = xp.zeros(p.shape, dtype=p.dtype, device=_array.device(p))
        value = self.initial_momentum_value if name == "m" else self.initial_accumulator_value
        if is_zero(value):
            return zeros
        return zeros + _array.lift(value, p)  # a Python float is rounded once to p's dtype

    def _constants(self):
        beta1, beta2 = self.betas
        decay = 1.0 - self.weight_decay if self.fixed_decay else 1.0 - self.lr * self.weight_decay
        return {**ema_constants(beta1, beta2), "decay": decay, "no_eps_root": self.eps_root == 0}

    def _scalars(self, t):  # eps_hat, TF-Addons: lr * sqrt(1 - β2^t) / (1 - β1^t)
        return bias_corrections(self.lr, self.betas, t, eps_hat=self.eps_mode == "eps_hat",
                                bias_correction=self.bias_correction)

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        p, g = apply_weight_decay(p, g, c, c.decoupled_weight_decay, not is_zero(self.weight_decay))
        m = first_moment(xp, s["m"], g, c)
        g2 = g * g
        # torch-optimizer: exp_avg_sq.addcmul_(sign(v - g²), g², value=-(1 - β2)); the factor ±1 or 0 is exact
        v = s["v"] - c.one_minus_beta2 * xp.sign(s["v"] - g2) * g2
        if c.eps_mode == "eps_hat":
            denom = xp.sqrt(v) + c.eps
        else:  # torch-optimizer: (√v / √bc2) + ε; optax: √(v̂ + ε_root) + ε (per row: a batch may mix them)
            denom = select(xp, c.no_eps_root, lambda: xp.sqrt(v) / c.sqrt_bc2 + c.eps,
                           lambda: xp.sqrt(v / c.bc2 + c.eps_root) + c.eps)
        update = c.step_size * m / denom
        trace = {"g": g, "m": m, "v": v, "denom": denom, "update": update}
        return p - update, {"m": m, "v": v}, trace
