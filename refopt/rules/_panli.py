"""Pan & Li's clipped Lion and the "clip update" variants of Adam and Lion from their shadow study.

C_c(·) is the coordinate-wise clipping of refopt.transforms: every entry clamped to [-τ, τ],
τ = s · the (⌊N c⌋+1)-th largest magnitude pooled over *every* array of the tree (c = 0: no
clipping).  Sources: Pan & Li, Toward Understanding Why Adam Converges Faster Than SGD for
Transformers (arXiv 2306.00204); panyan7/adam-vs-sgd @ d85d3a1, torch_optimizer/lion.py and
landscape_utils.py.

Clipped Lion (``clipped_lion``; torch_optimizer/lion.py, Google's Lion plus clipping)::

    g  <- -g                                    if maximize
    ĝ  = C_c(g)                                 τ from the raw gradients of the whole tree
    θ  <- θ (1 - γλ)                            decoupled weight decay, first
    c  = β1 m + (1 - β1) ĝ ;  θ <- θ - γ sign(c)
    m  = β2 m + (1 - β2) ĝ

Clipping acts only through the momentum: sign(C(g)) = sign(g) when τ > 0, so the first step
is Lion's, and the two differ only once a sign of c flips.

The "clip update" variants exist in the authors' code only as shadow-state classes
(``landscape_utils.AdamParams`` and ``LionParams`` with ``clip_update``) that produce a direction
u at a common point for the sharpness study; here they are optimizers θ <- θ + γ u:

Clip-update Adam (``clip_update_adam``)::

    m  = β1 m + (1 - β1) C_{c_g}(g)             grad_clip_fraction c_g (0: none)
    v  = β2 v + (1 - β2) g²                     the unclipped g
    d  = m̂ / (√v̂ + ε)                           m̂ = m/(1 - β1^k), v̂ = v/(1 - β2^k)
    θ  <- θ - γ C_{c_u}(d)                      τ_u pooled over the directions of every array

with k = t (``bias_correction="step"``, Adam's) or k = t + 1 (``"step_plus_1"``: the code's
``num_iters`` starts at 1 and is incremented before use, so its first step has magnitude about
0.744 instead of about 1).

Clip-update Lion (``clip_update_lion``)::

    ĝ  = C_{c_g}(g) ;  c = β1 m + (1 - β1) ĝ ;  m = β2 m + (1 - β2) ĝ
    θ  <- θ - γ sign(c)                         update_clip_fraction = 1 (Lion)
    θ  <- θ - γ C_{c_u}(c)                      update_clip_fraction < 1: the raw interpolation,
                                                clipped, not signed (c_u = 0: the raw c)

so for c_u < 1 the steps are about (1 - β1)|g|, not Lion's unit steps; the shadow study only
used the direction.
"""

from __future__ import annotations

from .. import _array, transforms
from ._adam import _BETAS
from ._base import MAXIMIZE, Choice, Pair, Real, Rule, is_zero
from ._lion import LION_BETAS

__all__ = ["ClippedLion", "ClipUpdateAdam", "ClipUpdateLion"]

_ZERO = Choice(
    "zero_threshold",
    "zero_all",
    "rank all entries, zeros included (authors' code: a mostly-zero gradient is zeroed), or only the "
    "non-zero magnitudes (refopt safeguard)",
    choices=transforms.ZERO_THRESHOLD,
)
_SCALE = Real("threshold_scale", 1.0, "factor s on every threshold: τ <- s τ (the code's threshold_scale)", low=0.0)


def _fraction(name: str, default: float, doc: str) -> Real:
    return Real(name, default, doc, low=0.0, high=1.0, high_open=False)


class _Pooled(Rule):
    """Thresholds pooled over the whole tree; no batched hyper-parameters."""

    def _validate(self):
        for h in self.HYPER:
            if not isinstance(h, (Real, Pair)):
                continue
            v = self._hyper[h.name]
            if any(not _array.is_scalar(x) for x in (v if isinstance(v, tuple) else (v,))):
                raise ValueError(
                    f"{self.name}: {h.name} must be a number; batched hyper-parameters are not supported (the "
                    f"thresholds are pooled over the whole tree)"
                )

    def _threshold(self, arrays, fraction, what):
        return transforms.top_fraction_threshold(
            arrays, fraction, threshold_scale=self.threshold_scale, zero_threshold=self.zero_threshold, what=what
        )

    @staticmethod
    def _clamp(xp, x, tau, fraction):
        return x if is_zero(fraction) else transforms.clamp(xp, x, tau)


class ClippedLion(_Pooled):
    name = "clipped_lion"
    family = "clipped_lion"
    title = "Lion with coordinate-wise clipping of the gradient entering the momentum"
    citation = (
        "Pan & Li, Toward Understanding Why Adam Converges Faster Than SGD for Transformers, arXiv 2306.00204; "
        "official code panyan7/adam-vs-sgd torch_optimizer/lion.py; Lion: Chen et al., arXiv 2302.06675"
    )
    HYPER = (
        Real("lr", 1e-4, "learning rate γ (the size of every coordinate's step)", low=0.0),
        LION_BETAS,
        Real("weight_decay", 0.0, "decoupled weight decay λ: θ <- θ(1 - γλ)", low=0.0),
        MAXIMIZE,
        _fraction("clip_fraction", 0.5, "fraction c of the gradient coordinates clipped each step (the code's "
                  "coordinate_clip, default 0 there; 0: Lion)"),
        _SCALE,
        _ZERO,
    )

    def slots(self):
        return ("m",)

    def _constants(self):
        beta1, beta2 = self.betas
        return {"one_minus_beta1": 1.0 - beta1, "one_minus_beta2": 1.0 - beta2, "decay": 1.0 - self.lr * self.weight_decay}

    def _prepare(self, xp, params, grads, slots, scalars, t):
        tau = self._threshold(grads, self.clip_fraction, f"{self.name}: grads")  # |g| whatever maximize says
        return {"tau": tau}, [{"tau": transforms.threshold_like(tau, g, 0)} for g in grads]

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        g_clip = self._clamp(xp, g, c.tau, self.clip_fraction)
        m = s["m"]
        cvec = c.beta1 * m + c.one_minus_beta1 * g_clip
        if not is_zero(self.weight_decay):
            p = p * c.decay
        update = c.lr * xp.sign(cvec)
        m_new = c.beta2 * m + c.one_minus_beta2 * g_clip
        trace = {"g": g, "g_clip": g_clip, "c": cvec, "update": update, "m": m_new}
        return p - update, {"m": m_new}, trace


class ClipUpdateAdam(_Pooled):
    name = "clip_update_adam"
    family = "clip_update_adam"
    title = "Adam whose update (not gradient) is clipped coordinate-wise: Pan & Li's shadow study"
    citation = (
        "Pan & Li, Toward Understanding Why Adam Converges Faster Than SGD for Transformers, arXiv 2306.00204; "
        "official code panyan7/adam-vs-sgd landscape_utils.py (AdamParams, clip_update)"
    )
    HYPER = (
        Real("lr", 1e-3, "learning rate γ", low=0.0),
        _BETAS,
        Real("eps", 1e-8, "ε added to √v̂", low=0.0),
        _fraction("update_clip_fraction", 0.5, "fraction c_u of the update coordinates clipped (the code's "
                  "clip_update; 0: Adam)"),
        _fraction("grad_clip_fraction", 0.0, "fraction c_g of the gradient coordinates clipped before the first "
                  "moment (0: none)"),
        _SCALE,
        _ZERO,
        Choice(
            "bias_correction",
            "step",
            "the exponent k of the bias corrections 1 - β^k: the step count t (Adam), or t + 1 as the code "
            "computes it (num_iters starts at 1)",
            choices=("step", "step_plus_1"),
        ),
    )

    def slots(self):
        return ("m", "v")

    def _constants(self):
        beta1, beta2 = self.betas
        return {"one_minus_beta1": 1.0 - beta1, "one_minus_beta2": 1.0 - beta2}

    def _scalars(self, t):
        k = t + 1 if self.bias_correction == "step_plus_1" else t
        beta1, beta2 = self.betas
        return {"bc1": 1.0 - _array.host_power(beta1, k), "bc2": 1.0 - _array.host_power(beta2, k)}

    def _moments(self, xp, g, s, c):
        g_clip = self._clamp(xp, g, c.tau_g, self.grad_clip_fraction)
        m = c.beta1 * s["m"] + c.one_minus_beta1 * g_clip
        v = c.beta2 * s["v"] + c.one_minus_beta2 * g * g
        d = (m / c.bc1) / (xp.sqrt(v / c.bc2) + c.eps)
        return g_clip, m, v, d

    def _prepare(self, xp, params, grads, slots, scalars, t):
        tau_g = self._threshold(grads, self.grad_clip_fraction, f"{self.name}: grads")
        extras = [{"tau_g": transforms.threshold_like(tau_g, g, 0)} for g in grads]
        if is_zero(self.update_clip_fraction):
            tau_u = self._threshold(grads, 0.0, f"{self.name}: updates")  # inf: nothing is clipped
        else:
            ds = []
            for p, g, s, e in zip(params, grads, slots, extras):
                c = self._coefficients(p, t, scalars, e, False)
                ds.append(self._moments(xp, g, s, c)[3])  # exactly what _leaf computes
            tau_u = self._threshold(ds, self.update_clip_fraction, f"{self.name}: updates")
        for g, e in zip(grads, extras):
            e["tau_u"] = transforms.threshold_like(tau_u, g, 0)
        return {"tau_g": tau_g, "tau_u": tau_u}, extras

    def _leaf(self, xp, p, g, s, c):
        g_clip, m, v, d = self._moments(xp, g, s, c)
        d_clip = self._clamp(xp, d, c.tau_u, self.update_clip_fraction)
        update = c.lr * d_clip
        trace = {"g": g, "g_clip": g_clip, "m": m, "v": v, "d": d, "d_clip": d_clip, "update": update}
        return p - update, {"m": m, "v": v}, trace


class ClipUpdateLion(_Pooled):
    name = "clip_update_lion"
    family = "clip_update_lion"
    title = "Lion whose interpolation is clipped instead of signed: Pan & Li's shadow study"
    citation = (
        "Pan & Li, Toward Understanding Why Adam Converges Faster Than SGD for Transformers, arXiv 2306.00204; "
        "official code panyan7/adam-vs-sgd landscape_utils.py (LionParams, clip_update)"
    )
    HYPER = (
        Real("lr", 1e-4, "learning rate γ", low=0.0),
        LION_BETAS,
        _fraction("update_clip_fraction", 0.5, "fraction c_u of the interpolation's coordinates clipped; 1: the "
                  "sign, as Lion (the code's clip_update)"),
        _fraction("grad_clip_fraction", 0.0, "fraction c_g of the gradient coordinates clipped (0: none)"),
        _SCALE,
        _ZERO,
    )

    def slots(self):
        return ("m",)

    def _constants(self):
        beta1, beta2 = self.betas
        return {"one_minus_beta1": 1.0 - beta1, "one_minus_beta2": 1.0 - beta2}

    def _interpolation(self, xp, g, s, c):
        g_clip = self._clamp(xp, g, c.tau_g, self.grad_clip_fraction)
        return g_clip, c.beta1 * s["m"] + c.one_minus_beta1 * g_clip

    def _prepare(self, xp, params, grads, slots, scalars, t):
        tau_g = self._threshold(grads, self.grad_clip_fraction, f"{self.name}: grads")
        extras = [{"tau_g": transforms.threshold_like(tau_g, g, 0)} for g in grads]
        if self.update_clip_fraction == 1.0 or is_zero(self.update_clip_fraction):
            tau_u = self._threshold(grads, 0.0, f"{self.name}: updates")  # inf: sign, or the raw c
        else:
            cs = []
            for p, g, s, e in zip(params, grads, slots, extras):
                c = self._coefficients(p, t, scalars, e, False)
                cs.append(self._interpolation(xp, g, s, c)[1])
            tau_u = self._threshold(cs, self.update_clip_fraction, f"{self.name}: updates")
        for g, e in zip(grads, extras):
            e["tau_u"] = transforms.threshold_like(tau_u, g, 0)
        return {"tau_g": tau_g, "tau_u": tau_u}, extras

    def _leaf(self, xp, p, g, s, c):
        g_clip, cvec = self._interpolation(xp, g, s, c)
        if self.update_clip_fraction == 1.0:
            d = xp.sign(cvec)
        else:
            d = self._clamp(xp, cvec, c.tau_u, self.update_clip_fraction)
        update = c.lr * d
        m_new = c.beta2 * s["m"] + c.one_minus_beta2 * g_clip
        trace = {"g": g, "g_clip": g_clip, "c": cvec, "d": d, "update": update, "m": m_new}
        return p - update, {"m": m_new}, trace
