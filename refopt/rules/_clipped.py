"""SGD and Adam with Pan & Li's coordinate-wise clipping of the gradient (adaptive top fraction).

C(·) clamps every entry to [-τ, τ], where τ = s · (the (⌊N c⌋+1)-th largest |g_i|) is pooled
over *every* parameter array and recomputed each step (refopt.transforms; the authors'
``clip_top_coordinates``): the top fraction c of the coordinates is clipped, whatever their
scale.  Clipping happens on the gradient, before momentum / moment estimation, as in the
authors' ``SGDClip`` and ``AdamClip`` (panyan7/adam-vs-sgd @ d85d3a1, torch_optimizer/).

Clipped SGD (``SGDClip``, torch.optim.SGD's API and buffer rule, see refopt.rules.sgd)::

    g  <- -g                                  if maximize
    ĝ  = C(g)                                 τ from the raw gradients of the whole tree
    ĝ  <- ĝ + λ θ                             coupled L2 weight decay, after clipping
    b_1 = ĝ_1;  b_t = μ b_{t-1} + (1 - τ_d) ĝ_t    (dampening τ_d skipped at t = 1)
    d  = ĝ + μ b_t  if nesterov  else  b_t    (d = ĝ when μ = 0)
    θ  <- θ - γ d

Clipped Adam (``AdamClip``, torch.optim.Adam's API)::

    g  <- -g                                  if maximize
    g  <- g + λ θ                             coupled L2 weight decay, *before* clipping
    m  = β1 m + (1 - β1) C(g)                 τ from the L2-augmented gradients of the tree
    v  = β2 v + (1 - β2) g²                   the second moment sees the UNclipped g
    v_max = max(v_max, v)                     if amsgrad (torch's form)
    θ  <- θ - γ m̂ / (√v̂ + ε)                  m̂ = m/(1 - β1^t), v̂ = v/(1 - β2^t)

At t = 1, m̂ = C(g) and √v̂ = |g|, so the first step is γ C(g) / (|g| + ε) per coordinate
(up to rounding): |update| < γ on every clipped coordinate, even on the first step.

Conventions (read in panyan7/adam-vs-sgd @ d85d3a1: torch_optimizer/, algorithm_list.py):
- ``clip_fraction`` is the code's ``coordinate_clip``; its defaults are the paper's settings,
  0.1 for SGD and 0.5 for Adam (the code's classes default to 0, i.e. no clipping, which
  would make these rules plain SGD and Adam); ``threshold_scale`` s = 1 everywhere.
- The released code clips only in its multi-tensor (``foreach=True``) path: its functional
  wrappers map ``foreach=None`` to the single-tensor path, which ignores ``coordinate_clip``,
  and ``train_utils.py`` builds the optimizers without ``foreach``.  These rules implement
  the intended multi-tensor path.  Its ``maximize`` for SGD follows the torch of its
  time (θ + γ d, weight decay added to the un-negated gradient); here, as in refopt's
  ``sgd`` and current torch, g is negated first, so clip_fraction = 0 gives ``sgd`` exactly.
- ``zero_threshold``: the code ranks all entries, zeros included, so a gradient with more
  than a (1 - c) fraction of exact zeros is zeroed; ``"nonzero"`` ranks only the non-zero
  magnitudes (a refopt safeguard, see refopt.transforms).
- ``batch_axes``: leading axes of every parameter array that index independent
  configurations; τ is computed per configuration so that a batched run equals separate
  runs.  Set it whenever hyper-parameters are batched along those axes.

Sources: Pan & Li, Toward Understanding Why Adam Converges Faster Than SGD for Transformers,
arXiv 2306.00204; panyan7/adam-vs-sgd torch_optimizer/sgd_clip.py (``SGDClip``,
``_multi_tensor_sgd``) and torch_optimizer/adam_clip.py (``AdamClip``, ``_multi_tensor_adam``).
"""

from __future__ import annotations

from .. import _array, transforms
from ._adam import _BETAS, _EMA, ema_constants, first_moment
from ._base import MAXIMIZE, Choice, Flag, Int, Real, Rule, apply_weight_decay, is_zero
from ._sgd import DAMPENING, MOMENTUM, NESTEROV, TorchMomentum

__all__ = ["ClippedSGD", "ClippedAdam"]


def _clip_hyper(default: float) -> tuple:
    return (
        Real(
            "clip_fraction",
            default,
            "fraction c of the coordinates clipped each step (the code's coordinate_clip; 0: no clipping)",
            low=0.0,
            high=1.0,
            high_open=False,
        ),
        Real("threshold_scale", 1.0, "factor s on the threshold: τ <- s τ (the code's threshold_scale)", low=0.0),
        Int("batch_axes", 0, "leading axes of every parameter array that index independent configurations"),
        Choice(
            "zero_threshold",
            "zero_all",
            "rank all entries, zeros included (authors' code: a mostly-zero gradient is zeroed), or only the "
            "non-zero magnitudes (refopt safeguard)",
            choices=transforms.ZERO_THRESHOLD,
        ),
    )


class _Clipped(Rule):
    """What both rules share: the checks, and τ pooled over the tree in ``_prepare``."""

    def _validate(self):
        for key in ("clip_fraction", "threshold_scale"):
            value = self._hyper[key]
            if not _array.is_scalar(value):
                transforms.config_shape(value.shape, self.batch_axes, f"{self.name}: {key}")

    def _clip_input(self, xp, p, g):
        """The gradient that C(·) sees, as ``_leaf`` computes it (overridden by Adam)."""
        return g

    def _prepare(self, xp, params, grads, slots, scalars, t):
        # with clip_fraction = 0 nothing is clipped and τ = inf whatever the gradients
        gs = grads if is_zero(self.clip_fraction) else [self._clip_input(xp, p, g) for p, g in zip(params, grads)]
        tau = transforms.top_fraction_threshold(
            gs,
            self.clip_fraction,
            threshold_scale=self.threshold_scale,
            batch_axes=self.batch_axes,
            zero_threshold=self.zero_threshold,
            what=f"{self.name}: grads",
        )
        return {"tau": tau}, [{"tau": transforms.threshold_like(tau, g, self.batch_axes)} for g in grads]

    def _clip(self, xp, g, c):
        """ĝ = C(g) with the pooled τ; skipped (no rounding at all) when clip_fraction = 0."""
        if is_zero(self.clip_fraction):
            return g
        return transforms.clamp(xp, g, c.tau)


class ClippedSGD(TorchMomentum, _Clipped):
    name = "clipped_sgd"
    family = "clipped_sgd"
    title = "SGD with coordinate-wise clipping of the top fraction of gradient entries"
    citation = (
        "Pan & Li, Toward Understanding Why Adam Converges Faster Than SGD for Transformers, arXiv 2306.00204; "
        "official code panyan7/adam-vs-sgd torch_optimizer/sgd_clip.py (SGDClip, multi-tensor path)"
    )
    HYPER = (
        Real("lr", 1e-3, "learning rate γ", low=0.0),
        MOMENTUM,
        DAMPENING,
        Real("weight_decay", 0.0, "coupled L2 penalty λ, added to the clipped gradient", low=0.0),
        NESTEROV,
        Flag("maximize", False, "ascend instead of descend (negates g first)"),
        *_clip_hyper(0.1),
    )

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        trace = {"g": g}
        g_hat = self._clip(xp, g, c)  # SGDClip: clip first, from the raw gradients
        trace["g_clip"] = g_hat
        if not is_zero(self.weight_decay):
            g_hat = g_hat + c.weight_decay * p  # torch _foreach_add(grads_clip, params, alpha=wd)
        trace["g_hat"] = g_hat
        new = {}
        d = trace["d"] = self._momentum(xp, g_hat, s, c, new, trace)
        update = c.lr * d
        trace["update"] = update
        return p - update, new, trace


class ClippedAdam(_Clipped):
    name = "clipped_adam"
    family = "clipped_adam"
    title = "Adam with coordinate-wise clipping of the gradient entering the first moment"
    citation = (
        "Pan & Li, Toward Understanding Why Adam Converges Faster Than SGD for Transformers, arXiv 2306.00204; "
        "official code panyan7/adam-vs-sgd torch_optimizer/adam_clip.py (AdamClip, multi-tensor path)"
    )
    HYPER = (
        Real("lr", 1e-3, "learning rate γ", low=0.0),
        _BETAS,
        Real("eps", 1e-8, "ε added to √v̂ (after bias correction, as torch)", low=0.0),
        Real("weight_decay", 0.0, "coupled L2 weight decay λ, added before clipping", low=0.0),
        Flag("amsgrad", False, "use the running maximum of the raw second moment (torch's form)"),
        MAXIMIZE,
        *_clip_hyper(0.5),
        _EMA,
    )

    def slots(self):
        return ("m", "v", "v_max") if self.amsgrad else ("m", "v")

    def _constants(self):
        beta1, beta2 = self.betas
        return ema_constants(beta1, beta2)

    def _scalars(self, t):
        beta1, beta2 = self.betas
        bc1 = 1.0 - _array.host_power(beta1, t)
        bc2 = 1.0 - _array.host_power(beta2, t)
        return {"bc1": bc1, "bc2": bc2, "sqrt_bc2": _array.host_power(bc2, 0.5), "step_size": self.lr / bc1}

    def _clip_input(self, xp, p, g):
        # exactly the g + λθ that _leaf computes (same lifted λ, same order), so τ is the code's
        if self.maximize:
            g = -g
        if not is_zero(self.weight_decay):
            g = g + _array.lift(self.weight_decay, p) * p
        return g

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        p, g = apply_weight_decay(p, g, c, False, not is_zero(self.weight_decay))
        trace = {"g": g}
        g_clip = self._clip(xp, g, c)  # AdamClip: clip after the L2 term, before the moments
        trace["g_clip"] = g_clip
        m = first_moment(xp, s["m"], g_clip, c)
        v = c.beta2 * s["v"] + c.one_minus_beta2 * g * g  # the unclipped g
        new = {"m": m, "v": v}
        trace["m"] = m
        trace["v"] = v
        v_used = v
        if self.amsgrad:
            v_used = new["v_max"] = trace["v_max"] = xp.maximum(s["v_max"], v)
        if c.tracing:
            trace["m_hat"] = m / c.bc1
            trace["v_hat"] = v_used / c.bc2
        denom = xp.sqrt(v_used) / c.sqrt_bc2 + c.eps  # torch: (√v / √bc2) + ε
        trace["denom"] = denom
        update = c.step_size * m / denom  # torch: addcdiv(m, denom, value=-lr/bc1)
        trace["update"] = update
        return p - update, new, trace
