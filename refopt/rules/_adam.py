"""Adam and its named relatives: AdamW, AMSGrad, RAdam.

Adam (Kingma & Ba, ICLR 2015, Algorithm 1), with torch.optim.Adam's conventions:

    g   <- -g                                   if maximize
    θ   <- θ (1 - γλ)                           decoupled weight decay (AdamW), or
    g   <- g + λ θ                              coupled L2 (default)
    m_t = β1 m + (1 - β1) g                     (ema="lerp": m + (1-β1)(g - m), torch's form)
    v_t = β2 v + (1 - β2) g²
    v_max = max(v_max, v_t)                     amsgrad: max of the raw, un-corrected v (torch),
                                                or of v̂_t = v_t / bc2 (amsgrad_max="bias_corrected", optax)
    bc1 = 1 - β1^t ,  bc2 = 1 - β2^t            Python floats, t counted from 1
    denom = √v_t / √bc2 + ε                     eps_mode="after_bias_correction" (paper, torch)
          = √(v̂_t + ε_root) + ε                 with eps_root > 0 (optax)
          = √(v_t / bc2 + ε)                    eps_mode="inside_sqrt"
          = √v_t + ε̂                            eps_mode="eps_hat" (paper §2's efficient form,
                                                 Keras/TF), with step γ √bc2 / bc1
    θ   <- θ - (γ / bc1) m_t / denom

RAdam (Liu et al., ICLR 2020, Algorithm 2) replaces the last two lines by a rectified
step once the variance of the adaptive term is tractable:

    ρ_∞ = 2 / (1 - β2) - 1 ,  ρ_t = ρ_∞ - 2 t β2^t / bc2
    if ρ_t passes the threshold (paper "> 4", official code ">= 5", torch "> 5"):
        r_t = √((ρ_t - 4)(ρ_t - 2) ρ_∞ / ((ρ_∞ - 4)(ρ_∞ - 2) ρ_t)) ,  l_t = √bc2 / (√v_t + ε)
        θ <- θ - γ m̂_t l_t r_t
    else (warm-up): θ <- θ - γ m̂_t ("sgd"), θ - γ m_t ("sgd_raw_m"), or no update ("none").
"""

from __future__ import annotations

import math

from .. import _array
from ._base import MAXIMIZE, Choice, Flag, Pair, Real, Rule, apply_weight_decay, is_zero, select

__all__ = ["Adam", "AdamW", "AMSGrad", "RAdam"]

_BETAS = Pair(
    "betas",
    (0.9, 0.999),
    "decay rates (β1, β2) of the first and second moment estimates",
    parts=(
        Real("beta1", 0.9, "decay of the first moment", low=0.0, high=1.0),
        Real("beta2", 0.999, "decay of the second moment", low=0.0, high=1.0),
    ),
)
_EMA = Choice(
    "ema",
    "multiply_add",
    "how the first moment is evaluated: β1 m + (1-β1) g (paper), or torch's lerp m + (1-β1)(g - m); "
    "the same number up to rounding (≤ 1 ulp per step)",
    choices=("multiply_add", "lerp"),
)


def first_moment(xp, m, g, c):
    """m_t = β1 m + (1 - β1) g, in the evaluation order ``c.ema`` names."""
    if c.ema == "lerp":  # torch.lerp: small weights add to m, large weights subtract from g
        return select(xp, c.lerp_from_start, lambda: m + c.one_minus_beta1 * (g - m), lambda: g - (g - m) * c.beta1)
    return c.beta1 * m + c.one_minus_beta1 * g


def ema_constants(beta1, beta2) -> dict:
    """Host constants that :func:`first_moment` and second-moment updates use."""
    return {
        "one_minus_beta1": 1.0 - beta1,
        "one_minus_beta2": 1.0 - beta2,
        "lerp_from_start": (1.0 - beta1) < 0.5,
    }


def bias_corrections(lr, betas, t, *, eps_hat: bool, bias_correction: bool = True) -> dict:
    """Host scalars of step ``t``: bc1 = 1 - β1^t, bc2 = 1 - β2^t, √bc2 and the step size.

    ``step_size`` is γ·√bc2/bc1 when ε is added to √v before the correction (``eps_hat``: the
    codes' form) and γ/bc1 otherwise, the denominator then being √v/√bc2 + ε.  Without
    ``bias_correction`` both corrections are 1.
    """
    beta1, beta2 = betas
    bc1 = 1.0 - _array.host_power(beta1, t) if bias_correction else 1.0
    bc2 = 1.0 - _array.host_power(beta2, t) if bias_correction else 1.0
    sqrt_bc2 = _array.host_power(bc2, 0.5)
    step_size = lr * sqrt_bc2 / bc1 if eps_hat else lr / bc1
    return {"bc1": bc1, "bc2": bc2, "sqrt_bc2": sqrt_bc2, "step_size": step_size}


class Adam(Rule):
    name = "adam"
    family = "adam"
    title = "Adam: adaptive moment estimation"
    citation = "Kingma & Ba, Adam: A Method for Stochastic Optimization, ICLR 2015 (arXiv 1412.6980), Algorithm 1"
    HYPER = (
        Real("lr", 1e-3, "learning rate γ", low=0.0),
        _BETAS,
        Real("eps", 1e-8, "ε added to the denominator (where: eps_mode)", low=0.0),
        Real("weight_decay", 0.0, "weight decay λ (coupled L2 unless decoupled_weight_decay)", low=0.0),
        Flag("amsgrad", False, "use the running maximum of the raw second moment (Reddi et al. 2018, torch's form)"),
        Flag("decoupled_weight_decay", False, "θ <- θ(1 - γλ) before the step (AdamW) instead of g + λθ"),
        MAXIMIZE,
        Choice(
            "eps_mode",
            "after_bias_correction",
            "where ε enters: √v̂ + ε (paper, torch), √(v̂ + ε), or ε̂ on the raw √v (Keras/TF)",
            choices=("after_bias_correction", "inside_sqrt", "eps_hat"),
        ),
        _EMA,
        Real(
            "eps_root",
            0.0,
            "ε_root added to v̂ inside the square root, on top of ε outside: √(v̂ + ε_root) + ε (optax)",
            low=0.0,
        ),
        Choice(
            "amsgrad_max",
            "raw",
            "what amsgrad takes the running maximum of: the raw v, later divided by the current bc2 (torch, "
            "Keras), or the bias-corrected v̂ (optax)",
            choices=("raw", "bias_corrected"),
        ),
        Flag(
            "bias_correction",
            True,
            "divide the moments by 1 - β^t (Adam); False is Reddi et al.'s AMSGrad without bias correction",
        ),
    )

    def _validate(self):
        if not is_zero(self.eps_root) and self.eps_mode != "after_bias_correction":
            raise ValueError(
                f"{self.name}: eps_root={self.eps_root!r} is only defined with eps_mode='after_bias_correction' "
                f"(√(v̂ + ε_root) + ε); got eps_mode={self.eps_mode!r}"
            )

    def slots(self):
        return ("m", "v", "v_max") if self.amsgrad else ("m", "v")

    def _constants(self):
        beta1, beta2 = self.betas
        eps_root = self.eps_root
        return {
            **ema_constants(beta1, beta2),
            "decay": 1.0 - self.lr * self.weight_decay,
            "no_eps_root": eps_root == 0 if _array.is_scalar(eps_root) else eps_root == 0,
        }

    def _scalars(self, t):
        return bias_corrections(self.lr, self.betas, t, eps_hat=self.eps_mode == "eps_hat",
                                bias_correction=self.bias_correction)

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        p, g = apply_weight_decay(p, g, c, c.decoupled_weight_decay, not is_zero(self.weight_decay))
        m = first_moment(xp, s["m"], g, c)
        v = c.beta2 * s["v"] + c.one_minus_beta2 * g * g
        new = {"m": m, "v": v}
        trace = {"g": g, "m": m, "v": v}
        v_used = v
        if self.amsgrad and c.amsgrad_max == "bias_corrected":  # optax: max over v̂, already corrected
            v_max = new["v_max"] = trace["v_max"] = xp.maximum(s["v_max"], v / c.bc2)
            v_used = v_max * c.bc2 if c.tracing else None
        elif self.amsgrad:  # torch, Keras: max over the raw v, divided by the current bc2 below
            v_used = new["v_max"] = trace["v_max"] = xp.maximum(s["v_max"], v)
        if c.tracing:
            trace["m_hat"] = m / c.bc1
            trace["v_hat"] = v_max if self.amsgrad and c.amsgrad_max == "bias_corrected" else v_used / c.bc2
        if self.amsgrad and c.amsgrad_max == "bias_corrected":
            denom = xp.sqrt(v_max + c.eps_root) + c.eps
        elif c.eps_mode == "after_bias_correction":  # torch √v/√bc2 + ε, or optax √(v̂ + ε_root) + ε
            denom = select(
                xp,
                c.no_eps_root,  # per row: a batch may mix ε_root = 0 and ε_root > 0
                lambda: xp.sqrt(v_used) / c.sqrt_bc2 + c.eps,
                lambda: xp.sqrt(v_used / c.bc2 + c.eps_root) + c.eps,
            )
        elif c.eps_mode == "inside_sqrt":
            denom = xp.sqrt(v_used / c.bc2 + c.eps)
        else:  # eps_hat: ε̂ on the raw second moment, bias correction folded into step_size
            denom = xp.sqrt(v_used) + c.eps
        trace["denom"] = denom
        update = c.step_size * m / denom
        trace["update"] = update
        return p - update, new, trace


class AdamW(Adam):
    name = "adamw"
    title = "AdamW: Adam with decoupled weight decay"
    citation = (
        "Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019 (arXiv 1711.05101), "
        "Algorithm 2, in torch.optim.AdamW's form θ <- θ(1 - γλ) (λ is the paper's λ/α)"
    )
    HYPER = tuple(
        Real("weight_decay", 1e-2, "decoupled weight decay λ: θ <- θ(1 - γλ)", low=0.0) if h.name == "weight_decay" else h
        for h in Adam.HYPER
        if h.name != "decoupled_weight_decay"
    )

    @property
    def decoupled_weight_decay(self) -> bool:
        return True

    def _coefficients(self, p, t, scalars, extra, tracing):
        bag = super()._coefficients(p, t, scalars, extra, tracing)
        bag.decoupled_weight_decay = True
        return bag


class AMSGrad(Adam):
    name = "amsgrad"
    title = "AMSGrad: Adam with the running maximum of the second moment"
    citation = (
        "Reddi, Kale & Kumar, On the Convergence of Adam and Beyond, ICLR 2018, Algorithm 2, in the form "
        "torch.optim.Adam(amsgrad=True) uses (bias corrections kept, max over the raw v)"
    )
    HYPER = tuple(
        Flag("amsgrad", True, "use the running maximum of the raw second moment") if h.name == "amsgrad" else h
        for h in Adam.HYPER
    )


class RAdam(Rule):
    name = "radam"
    family = "radam"
    title = "RAdam: Adam with a rectified adaptive learning rate"
    citation = (
        "Liu et al., On the Variance of the Adaptive Learning Rate and Beyond, ICLR 2020 (arXiv 1908.03265), "
        "Algorithm 2; thresholds of LiyuanLucasLiu/RAdam radam/radam.py and torch/optim/radam.py"
    )
    HYPER = (
        Real("lr", 1e-3, "learning rate γ", low=0.0),
        _BETAS,
        Real("eps", 1e-8, "ε added to √v in l_t (not bias-corrected; 0 gives the paper's l_t)", low=0.0),
        Real("weight_decay", 0.0, "weight decay λ (coupled L2 unless decoupled_weight_decay)", low=0.0),
        Flag("decoupled_weight_decay", False, "θ <- θ(1 - γλ) before the step instead of g + λθ"),
        MAXIMIZE,
        Choice(
            "threshold",
            "rho>4",
            "when the rectified step is taken: ρ_t > 4 (paper), ρ_t >= 5 (official code), ρ_t > 5 (torch)",
            choices=("rho>4", "rho>=5", "rho>5"),
        ),
        Choice(
            "warmup",
            "sgd",
            "step before the threshold: γ m̂ (paper, torch), γ m without bias correction (AdaBelief 0.0.5, "
            "torch-optimizer), or none at all (official RAdam, degenerated_to_sgd=False; no weight decay either)",
            choices=("sgd", "sgd_raw_m", "none"),
        ),
        _EMA,
    )

    def slots(self):
        return ("m", "v")

    def _constants(self):
        beta1, beta2 = self.betas
        return {**ema_constants(beta1, beta2), "decay": 1.0 - self.lr * self.weight_decay}

    def _scalars(self, t):
        beta1, beta2 = self.betas
        bc1 = 1.0 - _array.host_power(beta1, t)
        bc2 = 1.0 - _array.host_power(beta2, t)
        rho_inf, rho_t, rectified, r_t = rectification(beta2, t, bc2, self.threshold)
        return {"bc1": bc1, "bc2": bc2, "rho_inf": rho_inf, "rho_t": rho_t, "rectified": rectified, "r_t": r_t,
                "sqrt_bc2": _array.host_power(bc2, 0.5)}

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        p_decayed, g = apply_weight_decay(p, g, c, c.decoupled_weight_decay, not is_zero(self.weight_decay))
        m = first_moment(xp, s["m"], g, c)
        v = c.beta2 * s["v"] + c.one_minus_beta2 * g * g
        m_hat = m / c.bc1
        trace = {"g": g, "m": m, "v": v, "m_hat": m_hat}

        def adaptive():
            l_t = c.sqrt_bc2 / (xp.sqrt(v) + c.eps)
            if c.tracing:
                trace["l_t"] = l_t
            return m_hat * c.lr * l_t * c.r_t

        def warmup():
            if c.warmup == "sgd_raw_m":
                return m * c.lr
            if c.warmup == "none":
                return xp.zeros_like(m)
            return m_hat * c.lr

        update = select(xp, c.rectified, adaptive, warmup)
        trace["update"] = update
        p_new = p_decayed - update
        if c.warmup == "none":  # the official code takes no step at all, weight decay included
            p_new = select(xp, c.rectified, p_new, p)
        return p_new, {"m": m, "v": v}, trace


def rectification(beta2, t, bc2, threshold):
    """(ρ_∞, ρ_t, rectified?, r_t) on the host; r_t is NaN where the step is not rectified."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * t * _array.host_power(beta2, t) / bc2
    if threshold == "rho>4":
        rectified = rho_t > 4.0
    elif threshold == "rho>=5":
        rectified = rho_t >= 5.0
    else:
        rectified = rho_t > 5.0
    # where the step is not rectified r_t is undefined (NaN); placeholders keep the unused
    # entries of a batch free of negative roots and divisions by zero
    rho = _array.host_where(rectified, rho_t, 5.0)
    rho_max = _array.host_where(rectified, rho_inf, 6.0)
    ratio = (rho - 4.0) * (rho - 2.0) * rho_max / ((rho_max - 4.0) * (rho_max - 2.0) * rho)
    r_t = _array.host_where(rectified, _array.host_power(ratio, 0.5), math.nan)
    return rho_inf, rho_t, rectified, r_t
