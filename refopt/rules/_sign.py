"""Sign and normalised SGD: torch-SGD momentum, then the sign or the unit direction of the step.

Both rules share torch.optim.SGD's momentum (refopt.rules.sgd), as Pan & Li's ``sign_sgd.py``
and ``normalized_sgd.py`` do (panyan7/adam-vs-sgd @ d85d3a1, torch_optimizer/; their coordinate
clipping lives in refopt's clipped rules, not here):

    g  <- -g                                    if maximize (before weight decay)
    g  <- g + λ θ                               coupled L2 weight decay
    b_1 = g_1,  b_t = μ b_{t-1} + (1 - τ) g_t   buffer_init="first_gradient" (torch, Pan & Li)
    b_t = μ b_{t-1} + (1 - τ) g_t,  b_0 = 0     buffer_init="zero" (an EMA, Signum)
    d  = g + μ b   if nesterov   else   b       (d = g when μ = 0: no buffer)

signSGD (Bernstein et al. 2018, Algorithm 1; Signum = Algorithm 2):

    θ <- θ - γ sign(d)                          sign(0) = 0: a zero coordinate does not move

Signum is m_t = β m_{t-1} + (1 - β) g_t with m_0 = 0 and θ <- θ - γ sign(m_t), i.e.
``signsgd(momentum=β, dampening=β, buffer_init="zero")``.  With torch's buffer start
(b_1 = g_1) and dampening = momentum the first step is the same (sign((1-β) g) = sign(g))
but g_1 keeps weight β^{t-1} instead of (1-β)β^{t-1} afterwards.  Apache MXNet's ``Signum``
optimizer (state = μ state + (1-μ) g, zero state) is the zero-start form.

Normalised SGD (normalised gradient descent with momentum, e.g. Cutkosky & Mehta 2020):

    θ <- θ - γ d / (‖d‖ + ε)                    norm="global": one Euclidean norm over the tree
    θ <- θ - γ √n d / (‖d‖ + ε)                 scale_by_sqrt_n=True (n = number of coordinates)

norm="per_tensor" takes ‖d‖ (and n) of each parameter array separately: Pan & Li's
``normalized_sgd.py`` is ``norm="per_tensor", scale_by_sqrt_n=True`` (d·√n/‖d‖, evaluated as
(d / ‖d‖)·√n).  A zero direction has no unit vector: where ‖d‖ + ε = 0 (so d = 0) the step is
zero, the convention sign(0) = 0 extends to (Pan & Li's code produces 0/0 = NaN there).

``batch_axes = k`` says that the first k axes of every parameter array index independent
configurations (K runs stacked as (K, d)): norms and n are then taken per index of those
axes, so a batched run equals the K separate runs.

Sources: Bernstein, Wang, Azizzadenesheli & Anandkumar, signSGD: Compressed Optimisation for
Non-Convex Problems, ICML 2018 (arXiv 1802.04434), Algorithms 1-2; Cutkosky & Mehta, Momentum
Improves Normalized SGD, ICML 2020; panyan7/adam-vs-sgd torch_optimizer/sign_sgd.py and
torch_optimizer/normalized_sgd.py @ d85d3a1 (the multi-tensor path: the single-tensor path that
``foreach=None`` selects ignores the sign, the normalisation and the clipping).
"""

from __future__ import annotations

import math

from ._base import MAXIMIZE, Choice, Flag, Int, Real, Rule, is_zero
from ._sgd import DAMPENING, MOMENTUM, NESTEROV, TorchMomentum

__all__ = ["SignSGD", "NormalizedSGD"]

_MOMENTUM_HYPER = (
    Real("lr", 1e-3, "learning rate γ", low=0.0),
    MOMENTUM,
    DAMPENING,
    Real("weight_decay", 0.0, "coupled L2 penalty λ added to the gradient", low=0.0),
    NESTEROV,
    MAXIMIZE,
    Choice(
        "buffer_init",
        "first_gradient",
        "how the momentum buffer starts: b_1 = g_1 (torch.optim.SGD, Pan & Li) or b_0 = 0 with dampening "
        "applied from the first step (an EMA, as Signum)",
        choices=("first_gradient", "zero"),
    ),
)


class _Direction(TorchMomentum, Rule):
    """The (momentum) direction d before sign/normalisation, shared by both rules."""

    def _direction(self, xp, p, g, s, c):
        """(new slots, trace entries g [, b], d, and d)."""
        if c.maximize:
            g = -g
        if not is_zero(self.weight_decay):
            g = g + c.weight_decay * p  # torch: d_p.add(param, alpha=λ)
        new, trace = {}, {"g": g}
        d = trace["d"] = self._momentum(xp, g, s, c, new, trace, first_gradient=c.buffer_init == "first_gradient")
        return new, trace, d


class SignSGD(_Direction):
    name = "signsgd"
    family = "signsgd"
    title = "signSGD / Signum: a step of fixed size γ along the sign of the (momentum) gradient"
    citation = (
        "Bernstein et al., signSGD: Compressed Optimisation for Non-Convex Problems, ICML 2018 "
        "(arXiv 1802.04434), Algorithms 1-2; torch-SGD momentum as in panyan7/adam-vs-sgd "
        "torch_optimizer/sign_sgd.py"
    )
    HYPER = _MOMENTUM_HYPER

    def _leaf(self, xp, p, g, s, c):
        new, trace, d = self._direction(xp, p, g, s, c)
        update = c.lr * xp.sign(d)  # Pan & Li: param.add_(sign(d), alpha=-lr); sign(0) = 0
        trace["update"] = update
        return p - update, new, trace


class NormalizedSGD(_Direction):
    name = "normalized_sgd"
    family = "normalized_sgd"
    title = "Normalised SGD: a step of length γ along the unit (momentum) direction"
    citation = (
        "Normalised gradient descent with momentum (Cutkosky & Mehta, Momentum Improves Normalized SGD, "
        "ICML 2020); per-tensor √n form of panyan7/adam-vs-sgd torch_optimizer/normalized_sgd.py"
    )
    HYPER = _MOMENTUM_HYPER + (
        Choice(
            "norm",
            "global",
            "which norm divides d: one over the whole parameter tree, or one per parameter array (Pan & Li)",
            choices=("global", "per_tensor"),
        ),
        Flag("scale_by_sqrt_n", False, "multiply the unit direction by √n, n = its number of coordinates (Pan & Li)"),
        Real("eps", 0.0, "ε added to the norm: d / (‖d‖ + ε); a zero d gives a zero step either way", low=0.0),
        Int("batch_axes", 0, "leading axes of every parameter array that index independent configurations; "
            "norms are taken per index of these axes"),
    )

    def _check_hyper_shapes(self, leaves, paths):
        super()._check_hyper_shapes(leaves, paths)
        k = self.batch_axes
        for p, path in zip(leaves, paths):
            if len(p.shape) < k:
                raise ValueError(
                    f"{self.name}: batch_axes={k} needs every parameter array to have at least {k} axes; "
                    f"{path} has shape {tuple(p.shape)}"
                )
        if k and self.norm == "global":
            first = tuple(leaves[0].shape[:k])
            for p, path in zip(leaves, paths):
                if tuple(p.shape[:k]) != first:
                    raise ValueError(
                        f"{self.name}: with norm='global' and batch_axes={k} every parameter array must share its "
                        f"first {k} axes; {paths[0]} starts with {first} but {path} has shape {tuple(p.shape)}"
                    )

    def _prepare(self, xp, params, grads, slots, scalars, t):
        k = self.batch_axes
        pre, sums, sizes = [], [], []
        for p, g, s in zip(params, grads, slots):
            c = self._coefficients(p, t, scalars, None, False)
            new, trace, d = self._direction(xp, p, g, s, c)
            axes = tuple(range(k, len(d.shape)))
            keep = self.norm == "per_tensor"
            sq = xp.sum(d * d, axis=axes, keepdims=keep) if axes else d * d
            pre.append((new, trace, d))
            sums.append(sq)
            sizes.append(math.prod(d.shape[k:]))
        if self.norm == "global":
            total = sums[0]
            for sq in sums[1:]:
                total = total + sq
            norm = xp.sqrt(total)
            norms = [xp.reshape(norm, tuple(d.shape[:k]) + (1,) * (len(d.shape) - k)) for _, _, d in pre]
            sizes = [sum(sizes)] * len(pre)
        else:
            norms = [xp.sqrt(sq) for sq in sums]
        extras = [
            {"direction": direction, "d_norm": norm, "sqrt_n": n**0.5}
            for direction, norm, n in zip(pre, norms, sizes)
        ]
        return {}, extras

    def _leaf(self, xp, p, g, s, c):
        new, trace, d = c.direction
        norm = c.d_norm  # ‖d‖ shaped to broadcast against d
        if c.tracing:
            trace["norm"] = xp.broadcast_to(norm, tuple(d.shape))
        denom = norm if is_zero(self.eps) else norm + c.eps
        # ‖d‖ + ε = 0 only where d = 0: dividing by 1 there gives the zero step exactly
        denom = xp.where(denom == 0, xp.ones_like(denom), denom)
        u = d / denom  # Pan & Li: p / p.norm() * sqrt(numel)
        if c.scale_by_sqrt_n:
            u = u * c.sqrt_n
        update = c.lr * u  # Pan & Li: torch._foreach_add_(params, u, alpha=-lr)
        trace["update"] = update
        return p - update, new, trace
