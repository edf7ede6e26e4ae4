"""AdaBelief: Adam with the second moment replaced by the "belief" s_t in the gradient.

Algorithm 2 of the paper in its final form (README image ``imgs/adabelief-algo2.png``; the
author confirms it in juntang-zhuang/Adabelief-Optimizer#61), which is also what the
official code computes (juntang-zhuang/Adabelief-Optimizer
pypi_packages/adabelief_pytorch0.2.1/adabelief_pytorch/AdaBelief.py with rectify=False):

    m_t = β1 m_{t-1} + (1 - β1) g_t
    s_t = β2 s_{t-1} + (1 - β2) (g_t - m_t)² + ε     ε is ACCUMULATED into the state; the
                                                       residual uses the UPDATED m_t
    bc1 = 1 - β1^t ,  bc2 = 1 - β2^t                  Python floats, t counted from 1
    m̂_t = m_t / bc1 ,  ŝ_t = s_t / bc2
    denom = √s_t / √bc2 + ε                           the official evaluation order of √ŝ_t + ε
    θ_t = θ_{t-1} - (γ / bc1) m_t / denom

The paper's projection Π is the identity (unconstrained problems).  Options, every one
named after the implementation that uses it (the implementations, their files and versions,
and the discrepancies D1-D13 are listed in specs/rules/adabelief.toml):

weight decay (not in Algorithm 2; adabelief-pytorch's options)
    weight_decouple=True   θ <- θ(1 - γλ) before the step (official ≥ 0.1.0, kozistr, optax
                           main's weight_decay); fixed_decay=True: θ <- θ(1 - λ) (no γ)
    weight_decouple=False  coupled L2, g <- g + λθ (0.0.5, torch-optimizer).  The official code
                           does this by mutating ``p.grad`` in place; refopt never writes into
                           an input.
    decay_placement="after_moments"   adabelief-pytorch 0.1.0 adds λθ to g only after the
                           moments were updated, so coupled L2 has no effect at all (verified;
                           fixed in 0.2.0); decoupled decay is unaffected by the placement.

ε (eps_root, when given, is the inner ε; otherwise eps serves both places)
    eps_mode="accumulated"   s_t includes + ε (paper final, adabelief-pytorch all versions,
                             adabelief-tf, torch-optimizer, pytorch_optimizer, optax ≥ 0.1.0
                             through its eps_root)
    eps_mode="none"          no ε in s_t: denom = √ŝ_t + ε (paper appendix and arXiv v1 with the
                             bias correction; optax with eps_root=0)
    eps_mode="inside_sqrt"   s_t without ε, denom = √(ŝ_t + ε_root) + ε (optax before 0.1.0,
                             whose defaults were eps=0, eps_root=1e-16)
    residual="m_prev"        s_t uses g_t - m_{t-1} (optax before 0.2.4: not the paper)

AMSGrad (code option, never used in the paper)
    amsgrad_eps="before_max"   s_t += ε, then s_max = max(s_max, s_t)  (official ≥ 0.2.0,
                               pytorch_optimizer's ams_bound)
    amsgrad_eps="after_max"    s_t keeps no ε; s_max = max(s_max, s_t) + ε, the ε added to the
                               stored maximum every step (official 0.0.5 and 0.1.0, torch-optimizer)
    denom = √s_max / √bc2 + ε

rectification (rectify=True; RAdam's, copied into the official code)
    ρ_∞ = 2/(1-β2) - 1 ,  ρ_t = ρ_∞ - 2tβ2^t/bc2 ,  r_t = √((ρ_t-4)(ρ_t-2)ρ_∞ / ((ρ_∞-4)(ρ_∞-2)ρ_t))
    rectified (threshold "rho>=5" official ≥ 0.1.0 and pytorch_optimizer; "rho>4" 0.0.5 and
    torch-optimizer; "rho>5" torch.optim.RAdam):
        rectified_denom="raw"             θ -= γ r_t √bc2 / bc1 · m_t / (√s_t + ε)  (official ≥ 0.1.0:
                                          ε effectively ε/√bc2, amsgrad's s_max ignored though updated)
        rectified_denom="raw_amsgrad"     the same with s_max when amsgrad (pytorch_optimizer)
        rectified_denom="bias_corrected"  θ -= γ r_t / bc1 · m_t / denom, the usual denominator with
                                          s_max when amsgrad (0.0.5, torch-optimizer, adabelief-tf)
    otherwise, when degenerated_to_sgd (always in 0.0.5 / torch-optimizer):
        sgd_phase="m_hat"  θ -= γ m̂_t (official ≥ 0.1.0, pytorch_optimizer)
        sgd_phase="m"      θ -= γ m_t, no bias correction (0.0.5, torch-optimizer)
    and no step at all (moments and decoupled decay still applied) without degenerated_to_sgd.

others
    nesterov=True  m̂_t = β1 m_t / (1 - β1^{t+1}) + (1 - β1) g_t / bc1 (optax's option)
    maximize=True  g <- -g before weight decay (pytorch_optimizer's option)
    ema="lerp"     m_t = m + (1 - β1)(g - m), torch's lerp (pytorch_optimizer ≥ 4.0)

Sources: Zhuang et al., AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
Gradients, NeurIPS 2020 (arXiv 2010.07468), Algorithm 2; juntang-zhuang/Adabelief-Optimizer
``pypi_packages/adabelief_pytorch{0.0.5,0.1.0,0.2.0,0.2.1}/adabelief_pytorch/AdaBelief.py``;
optax ``optax/_src/transform.py`` (scale_by_belief); kozistr/pytorch_optimizer
``pytorch_optimizer/optimizer/adabelief.py``; jettify/pytorch-optimizer
``torch_optimizer/adabelief.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._adam import _BETAS, _EMA, ema_constants, first_moment, rectification
from .. import _array
from ._base import Choice, Flag, Real, Rule, is_zero, select

__all__ = ["AdaBelief"]


@dataclass(frozen=True)
class _RealOrNone(Real):
    """A :class:`Real` that may also be None, meaning "the same as another hyper-parameter"."""

    @property
    def valid(self) -> str:
        return f"None or a real number in {super().valid}"

    def validate(self, value: Any, rule: str) -> Any:
        if value is None:
            return None
        return super().validate(value, rule)


class AdaBelief(Rule):
    name = "adabelief"
    family = "adabelief"
    title = "AdaBelief: adapting step sizes by the belief in observed gradients"
    citation = (
        "Zhuang, Tang, Ding, Tatikonda, Dvornek, Papademetris & Duncan, AdaBelief Optimizer: Adapting "
        "Stepsizes by the Belief in Observed Gradients, NeurIPS 2020 (arXiv 2010.07468), Algorithm 2 in its "
        "final form (ε accumulated into s_t), as juntang-zhuang/Adabelief-Optimizer adabelief_pytorch 0.2.x "
        "computes it with rectify=False"
    )
    HYPER = (
        Real("lr", 1e-3, "learning rate γ", low=0.0),
        _BETAS,
        Real(
            "eps",
            1e-16,
            "ε added to the denominator, and (unless eps_root is given) the ε accumulated into s_t "
            "(official default since 0.1.0; 0.0.5 and torch-optimizer use 1e-8)",
            low=0.0,
        ),
        _RealOrNone(
            "eps_root",
            None,
            "the inner ε (accumulated into s_t, or inside the square root with eps_mode='inside_sqrt'); "
            "None: the same as eps, as in the paper and adabelief-pytorch (optax names it eps_root)",
            low=0.0,
        ),
        Real("weight_decay", 0.0, "weight decay λ (decoupled unless weight_decouple=False)", low=0.0),
        Flag(
            "weight_decouple",
            True,
            "θ <- θ(1 - γλ) before the step (official ≥ 0.1.0, pytorch_optimizer) instead of the coupled "
            "L2 g + λθ (0.0.5, torch-optimizer)",
        ),
        Flag("fixed_decay", False, "decoupled decay θ <- θ(1 - λ) without γ (ignored when coupled, as officially)"),
        Flag("amsgrad", False, "normalise by the running maximum s_max of s_t (called ams_bound by pytorch_optimizer)"),
        Choice(
            "amsgrad_eps",
            "before_max",
            "with amsgrad and an accumulated ε: s_t += ε then s_max = max(s_max, s_t) (official ≥ 0.2.0, "
            "pytorch_optimizer), or s_max = max(s_max, s_t) + ε with s_t kept free of ε (0.0.5, 0.1.0, "
            "torch-optimizer)",
            choices=("before_max", "after_max"),
        ),
        Flag("rectify", False, "RAdam's rectification (official default True since 0.1.0; not in the paper)"),
        Choice(
            "threshold",
            "rho>=5",
            "when the rectified step is taken: ρ_t >= 5 (official ≥ 0.1.0, pytorch_optimizer), ρ_t > 4 "
            "(0.0.5, torch-optimizer), ρ_t > 5 (torch.optim.RAdam)",
            choices=("rho>4", "rho>=5", "rho>5"),
        ),
        Flag(
            "degenerated_to_sgd",
            True,
            "before the threshold take an SGD-with-momentum step (sgd_phase); False: no step at all",
        ),
        Choice(
            "sgd_phase",
            "m_hat",
            "the step before the threshold: γ m̂_t (official ≥ 0.1.0, pytorch_optimizer) or γ m_t without "
            "bias correction (0.0.5, torch-optimizer)",
            choices=("m_hat", "m"),
        ),
        Choice(
            "rectified_denom",
            "raw",
            "denominator of the rectified step: √s_t + ε with γ r_t √bc2/bc1, amsgrad ignored (official ≥ 0.1.0), "
            "the same with s_max under amsgrad (pytorch_optimizer), or the usual √ŝ + ε with γ r_t/bc1 "
            "(0.0.5, torch-optimizer, adabelief-tf)",
            choices=("raw", "raw_amsgrad", "bias_corrected"),
        ),
        Choice(
            "eps_mode",
            "accumulated",
            "the inner ε: accumulated into s_t (paper, official, optax ≥ 0.1.0), absent (paper appendix, "
            "arXiv v1), or inside the square root √(ŝ_t + ε_root) + ε without accumulation (optax < 0.1.0)",
            choices=("accumulated", "none", "inside_sqrt"),
        ),
        Choice(
            "residual",
            "m_t",
            "the belief residual g_t - m_t with the updated m_t (paper, everyone since optax 0.2.4) or "
            "g_t - m_{t-1} (optax < 0.2.4)",
            choices=("m_t", "m_prev"),
        ),
        Choice(
            "decay_placement",
            "before_moments",
            "where coupled L2 is added to g: before the moments (all but one version), or after them, "
            "where it has no effect (adabelief-pytorch 0.1.0)",
            choices=("before_moments", "after_moments"),
        ),
        Flag("nesterov", False, "Nesterov form of m̂_t, β1 m_t/(1-β1^{t+1}) + (1-β1) g_t/bc1 (optax's option)"),
        Flag("maximize", False, "ascend instead of descend (negates g before weight decay; pytorch_optimizer)"),
        _EMA,
    )

    def _validate(self):
        if self.rectify and self.nesterov:
            raise ValueError(
                "adabelief: nesterov=True is not defined together with rectify=True (no implementation "
                "combines them); set one of them to False"
            )
        if self.rectify and self.eps_mode == "inside_sqrt" and self.rectified_denom != "bias_corrected":
            raise ValueError(
                f"adabelief: rectified_denom={self.rectified_denom!r} divides by the raw √s_t + ε, which is "
                f"not defined with eps_mode='inside_sqrt'; use rectified_denom='bias_corrected' or another eps_mode"
            )

    # -- configuration --------------------------------------------------------------------

    def slots(self):
        return ("m", "s", "s_max") if self.amsgrad else ("m", "s")

    @property
    def _eps_after_max(self) -> bool:
        return self.amsgrad and self.amsgrad_eps == "after_max" and self.eps_mode == "accumulated"

    def _constants(self):
        beta1, beta2 = self.betas
        if self.fixed_decay:
            decay = 1.0 - self.weight_decay
        else:
            decay = 1.0 - self.lr * self.weight_decay
        eps_inner = self.eps if self.eps_root is None else self.eps_root
        return {**ema_constants(beta1, beta2), "decay": decay, "eps_inner": eps_inner}

    def _scalars(self, t):
        beta1, beta2 = self.betas
        bc1 = 1.0 - _array.host_power(beta1, t)
        bc2 = 1.0 - _array.host_power(beta2, t)
        sqrt_bc2 = _array.host_power(bc2, 0.5)
        out = {"bc1": bc1, "bc2": bc2, "sqrt_bc2": sqrt_bc2, "step_size": self.lr / bc1}
        if self.nesterov:
            out["bc1_next"] = 1.0 - _array.host_power(beta1, t + 1)
        if self.rectify:
            rho_inf, rho_t, rectified, r_t = rectification(beta2, t, bc2, self.threshold)
            out.update(rho_inf=rho_inf, rho_t=rho_t, rectified=rectified, r_t=r_t)
            if self.rectified_denom == "bias_corrected":  # 0.0.5 / torch-optimizer: r_t γ / bc1
                out["rect_step"] = r_t * self.lr / bc1
            else:  # official: √(bc2 ·(…)) / bc1 · γ, i.e. √bc2 folded into r_t
                out["rect_step"] = r_t * sqrt_bc2 / bc1 * self.lr
            out["sgd_step"] = self.lr / bc1 if self.sgd_phase == "m_hat" else self.lr
        return out

    # -- one parameter array --------------------------------------------------------------

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        if not is_zero(self.weight_decay):
            if c.weight_decouple:  # θ(1 - γλ), or θ(1 - λ) with fixed_decay
                p = p * c.decay
            elif c.decay_placement == "before_moments":  # coupled L2 (official: grad.add_(p, alpha=λ))
                g = g + c.weight_decay * p
            # "after_moments" (0.1.0): λθ is added to the gradient after its last use -- no effect
        m = first_moment(xp, s["m"], g, c)  # official: exp_avg.mul_(β1).add_(g, alpha=1-β1)
        r = g - (m if c.residual == "m_t" else s["m"])
        # torch's addcmul: s β2 + ((1-β2) r) r
        s_t = c.beta2 * s["s"] + c.one_minus_beta2 * r * r
        accumulate = c.eps_mode == "accumulated"
        if accumulate and not self._eps_after_max:
            s_t = s_t + c.eps_inner  # the in-place exp_avg_var.add_(eps) of the official code
        new = {"m": m, "s": s_t}
        trace = {"g": g, "m": m, "s": s_t}
        s_used = s_t
        if self.amsgrad:
            s_max = xp.maximum(s["s_max"], s_t)
            if self._eps_after_max:  # 0.0.5 / 0.1.0: max_exp_avg_var.add_(eps) every step
                s_max = s_max + c.eps_inner
            s_used = new["s_max"] = trace["s_max"] = s_max

        bias_corrected_denom = not self.rectify or c.rectified_denom == "bias_corrected"
        m_hat = None
        if c.nesterov:
            m_hat = c.beta1 * (m / c.bc1_next) + c.one_minus_beta1 * (g / c.bc1)
        elif c.tracing:
            m_hat = m / c.bc1
        if c.tracing:
            trace["m_hat"] = m_hat
            trace["s_hat"] = s_used / c.bc2
        denom = None
        if bias_corrected_denom or c.tracing:
            if c.eps_mode == "inside_sqrt":  # optax < 0.1.0: √(ν/bc2 + ε_root) + ε
                denom = xp.sqrt(s_used / c.bc2 + c.eps_inner) + c.eps
            else:  # official order: (√s / √bc2) + ε
                denom = xp.sqrt(s_used) / c.sqrt_bc2 + c.eps
            trace["denom"] = denom

        if not self.rectify:
            if c.nesterov:  # optax: γ · (m̂ / denom)
                update = c.lr * (m_hat / denom)
            else:  # official addcdiv: ((γ/bc1) m) / denom
                update = c.step_size * m / denom
            trace["update"] = update
            return p - update, new, trace

        def adaptive():
            if c.rectified_denom == "bias_corrected":
                return c.rect_step * m / denom
            # official: √s_t + ε on the raw state (s_t, not s_max, unless raw_amsgrad)
            s_raw = s_used if c.rectified_denom == "raw_amsgrad" else s_t
            denom_rect = xp.sqrt(s_raw) + c.eps
            if c.tracing:
                trace["denom_rect"] = denom_rect
            return c.rect_step * m / denom_rect

        def sgd():
            if not c.degenerated_to_sgd:
                return xp.zeros_like(m)
            return m * c.sgd_step  # official: p.add_(m, alpha=-(1/bc1)·γ); 0.0.5: alpha=-γ

        update = select(xp, c.rectified, adaptive, sgd)
        trace["update"] = update
        return p - update, new, trace
