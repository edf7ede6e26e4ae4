"""Fromage: Frobenius matched gradient descent (Bernstein, Vahdat, Yue & Liu, NeurIPS 2020).

Algorithm box (Bernstein et al., On the distance between two neural networks and the stability
of learning, arXiv 2002.03432, Algorithm 1), for every layer l -- here every array (leaf) of
the parameter tree, biases included::

    g_l   <- -g_l                                     if maximize
    r_l   = ‖θ_l‖_F / ‖g_l‖_F                         per-array Frobenius norms
    θ_l   <- (θ_l - η r_l g_l) / √(1 + η²)

The step η r_l g_l has the layer's own norm times η; when it is orthogonal to θ_l it grows
‖θ_l‖ by √(1 + η²), which the division undoes.

Conventions of the code (official repository jxbz/fromage fromage.py, the same maths in
kozistr/pytorch_optimizer pytorch_optimizer/optimizer/fromage.py and optax.fromage), each an
option here:

- ``zero_norm``: when ‖θ_l‖ = 0 or ‖g_l‖ = 0 the code takes r_l = 1, a plain SGD step
  θ - η g (``"sgd"``, default); ``"no_step"`` takes r = 0, the limit of the paper's formula
  (η r g -> 0 as g -> 0 or θ -> 0), so the array only shrinks.  The division by √(1 + η²)
  applies in both cases.
- ``p_bound``: the official code's optional bound: the norm of each array is stored as
  p_bound · ‖θ_l‖ at the first step and, after every step, an array whose norm exceeds it is
  rescaled onto it.  The bound is taken from the params that ``init`` sees.
- ``min_norm``: optax.fromage floors both norms at ``min_norm`` (1e-6 there) before the ratio
  (optax ``scale_by_trust_ratio``), which changes only arrays of norm below it.

optax evaluates the same step as θ + (-η/√(1+η²)) r g + (1/√(1+η²) - 1) θ: equal up to
rounding.  No weight decay, no momentum, no other state.

Sources: Bernstein, Vahdat, Yue & Liu, On the distance between two neural networks and the
stability of learning, NeurIPS 2020 (arXiv 2002.03432), Algorithm 1; jxbz/fromage fromage.py
(p_bound since 1bbd929); google-deepmind/optax optax/_src/alias.py ``fromage`` and
optax/_src/transform.py ``scale_by_trust_ratio`` (0.2.8).
"""

from __future__ import annotations

import math

from .. import _array
from ._adabelief import _RealOrNone
from ._base import MAXIMIZE, Choice, Real, Rule

__all__ = ["Fromage"]


class Fromage(Rule):
    name = "fromage"
    family = "fromage"
    title = "Fromage: Frobenius matched gradient descent, per-array relative steps"
    citation = (
        "Bernstein, Vahdat, Yue & Liu, On the distance between two neural networks and the stability of learning, "
        "NeurIPS 2020 (arXiv 2002.03432), Algorithm 1; official code jxbz/fromage fromage.py"
    )
    HYPER = (
        Real("lr", 0.01, "learning rate η: the relative size of each array's step", low=0.0),
        _RealOrNone(
            "p_bound",
            None,
            "bound the norm of each array by p_bound times its norm at the first step (official code); None: no bound",
            low=0.0,
        ),
        Real("min_norm", 0.0, "floor on both norms before the ratio (optax.fromage: 1e-6); 0: none", low=0.0),
        Choice(
            "zero_norm",
            "sgd",
            "when ‖θ‖ or ‖g‖ is 0: r = 1, a plain SGD step (official code, optax), or r = 0, no gradient step "
            "(the limit of the paper's formula)",
            choices=("sgd", "no_step"),
        ),
        MAXIMIZE,
    )

    def slots(self):
        return ("max_norm",) if self.p_bound is not None else ()

    def _validate(self):
        for key in ("lr", "p_bound", "min_norm"):
            if self._hyper[key] is not None and not _array.is_scalar(self._hyper[key]):
                raise ValueError(
                    f"{self.name}: {key} must be a number; batched hyper-parameters are not supported (the "
                    f"norms are per array, so a configuration cannot be a slice of one)"
                )

    def _slot_shape(self, name, p):
        return ()

    def _init_slot(self, xp, name, p):
        # the official code stores p_bound·‖θ‖ at the first step, from the params of that step
        return _array.as_array(xp.astype(xp.linalg.vector_norm(p) * self.p_bound, p.dtype))

    def _constants(self):
        return {"shrink": math.sqrt(1.0 + self.lr * self.lr)}

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        p_norm = _array.as_array(xp.linalg.vector_norm(p))  # 0-d arrays (NumPy would give scalars)
        g_norm = _array.as_array(xp.linalg.vector_norm(g))
        if self.min_norm > 0:
            p_norm = _array.as_array(xp.maximum(p_norm, xp.full_like(p_norm, self.min_norm)))
            g_norm = _array.as_array(xp.maximum(g_norm, xp.full_like(g_norm, self.min_norm)))
        ratio = _array.as_array(p_norm / g_norm)
        fallback = xp.ones_like(ratio) if self.zero_norm == "sgd" else xp.zeros_like(ratio)
        ratio = _array.as_array(xp.where((p_norm > 0.0) & (g_norm > 0.0), ratio, fallback))
        step = (c.lr * ratio) * g
        p_new = (p - step) / c.shrink
        trace = {"g": g, "p_norm": p_norm, "g_norm": g_norm, "ratio": ratio, "step": step}
        new = {}
        if self.p_bound is not None:
            bound = s["max_norm"]
            norm = _array.as_array(xp.linalg.vector_norm(p_new))
            p_new = xp.where(norm > bound, p_new * (bound / norm), p_new)
            new["max_norm"] = bound
            trace["max_norm"] = bound
        if c.tracing:  # what the step subtracts in all: θ_{t-1} - θ_t
            trace["update"] = p - p_new
        return p_new, new, trace
