"""Adafactor (Shazeer & Stern, ICML 2018), and Pan & Li's Adafactor with coordinate-wise clipping.

Algorithm box (Shazeer & Stern, Adafactor: Adaptive Learning Rates with Sublinear Memory Cost,
arXiv 1804.04235, Algorithms 4 and 5 with the relative step of Section 8 and the update
clipping of Section 6), for one array X of the tree; a matrix has rows i and columns j::

    g    <- -g                                        if maximize
    ρ_t  = min(lr, 1/√t)                              relative step (lr = 1e-2 in the paper);
                                                      min(1e-6 t, 1/√t) with warmup_init; lr if not relative_step
    α_t  = max(ε2, RMS(X_{t-1})) ρ_t                  parameter scale (ρ_t alone if not scale_parameter)
    β̂2t  = 1 - t^{beta2_decay}                        (β̂21 = 0: the first step's statistics are g²)
    G²   = g² + ε1                                    (ε1 = 1e-30)
    R_t  = β̂2t R_{t-1} + (1 - β̂2t) mean_j G²          row statistics      } factored arrays:
    C_t  = β̂2t C_{t-1} + (1 - β̂2t) mean_i G²          column statistics   } matrices, and tensors
    V̂_t  = (R_t / mean_i R_t) C_t                                         } over their last two axes
    V̂_t  = β̂2t V̂_{t-1} + (1 - β̂2t) G²                unfactored arrays (vectors, scalars)
    U_t  = g / √V̂_t
    Û_t  = U_t / max(1, RMS(U_t) / d)                 update clipping, d = 1
    m_t  = β1 m_{t-1} + (1 - β1) α_t Û_t              optional first moment (β1 > 0); u_t = m_t
    u_t  = α_t Û_t                                    otherwise
    X_t  = X_{t-1} - u_t                              (weight decay: see below)

RMS(x) = ‖x‖₂ / √numel(x), over the whole array.  Sums and means give the same V̂ (R C / 1ᵀR
with sums equals the form above with means, which every implementation uses).  ρ_t = 1e-2 for
t ≤ 10⁴: with the paper's defaults the relative step is constant for 10 000 steps.

Conventions of the implementations, each an option (the default is the paper's box, which
HF transformers ``Adafactor``, torch-optimizer ``Adafactor`` and Pan & Li's copy compute):

- ``eps1_mode``: ε1 added to g² before the means (paper, HF, torch-optimizer, optax,
  pytorch_optimizer), or torch.optim.Adafactor's clamps V = R C / max(mean R, ε1) and
  U = g / √max(V, ε1²) on the raw g² (``"clamp"``; torch's ε1 = None is the dtype's machine
  epsilon, ``eps=(None, ε2)`` here too).
- ``factored``: which arrays get row/column statistics: ndim ≥ 2 over the last two axes
  (``"last_two"``: HF, torch.optim, torch-optimizer, pytorch_optimizer), exactly 2-D
  (``"exactly_2d"``: the paper's box, tensor2tensor), the two largest axes and only when the
  smaller of them has at least ``min_dim_size_to_factor`` entries (``"two_largest"``: optax,
  whose default 128 leaves every small layer unfactored), or never (``"none"``).
- ``weight_decay_mode``: X <- X - λ α_t X before the step (``"relative"``: HF,
  torch-optimizer, pytorch_optimizer), X <- X (1 - lr λ) with lr the relative-step cap
  (``"lr"``: torch.optim), or u_t <- u_t + λ X_{t-1} (``"unscaled"``: optax
  ``add_decayed_weights``), or X <- X (1 - lr λ) before everything else, so that RMS sees the
  decayed X (``"lr_first"``: Keras 3's base-optimizer decay).  Otherwise RMS(X_{t-1}) is taken
  before any decay.
- ``decay_dtype``: β̂2t computed in float64 on the host, or in float32 (``"float32"``: optax's
  ``_decay_rate_pow`` casts the step count to float32, 1.7e-11 apart from HF by step 3).
- ``beta2_cap``: β̂2t <- min(β̂2t, beta2_cap) (pytorch_optimizer's betas[1] = 0.999, which binds
  after t ≈ 5623).
- ``alpha_float32``: Keras 3 evaluates α_t in float32 even for float64 params (measured on
  keras 3.15.1 with the torch and jax backends: its steps equal float32(α_t)·Û_t exactly).
- ``beta1``: the optional first moment, an EMA of the scaled update α_t Û_t without bias
  correction (HF, optax, pytorch_optimizer; 0 = none, the default of every implementation but
  pytorch_optimizer).

Pan & Li's ``clipped_adafactor`` (panyan7/adam-vs-sgd torch_optimizer/adafactor.py) clips the
numerator: U_t = C(g) / √V̂_t with C the top-fraction clipping of refopt.transforms, its
threshold τ pooled over every array of the tree from the raw gradients; the statistics R, C,
V̂ still see the unclipped g² + ε1.

State: ``v`` for unfactored arrays, ``v_row`` (R, with the column axis kept as 1) and ``v_col``
(C, with the row axis kept as 1) for factored ones, ``m`` when β1 > 0; a slot an array does
not use holds a 0-d zero.  The trace reports the same three statistics, V̂,
U, RMS(U), Û, α and u for every array.

Sources: Shazeer & Stern, Adafactor: Adaptive Learning Rates with Sublinear Memory Cost, ICML
2018 (arXiv 1804.04235), Algorithms 4-5, Sections 6-8; pytorch/pytorch torch/optim/_adafactor.py
(2.13); huggingface/transformers src/transformers/optimization.py ``Adafactor`` (5.25.0);
google-deepmind/optax optax/_src/factorized.py and alias.py ``adafactor`` (0.2.8);
jettify/pytorch-optimizer torch_optimizer/adafactor.py (0.3.0); kozistr/pytorch_optimizer
pytorch_optimizer/optimizer/adafactor.py (4.1.0); Pan & Li, arXiv 2306.00204, with
panyan7/adam-vs-sgd torch_optimizer/adafactor.py @ d85d3a1.
"""

from __future__ import annotations

import math
import struct

from .. import _array, transforms
from ._adabelief import _RealOrNone
from ._base import MAXIMIZE, Choice, Flag, Int, Pair, Real, Rule, is_zero

__all__ = ["Adafactor", "ClippedAdafactor"]


def _f32(x: float) -> float:
    """``x`` rounded to float32, as a Python float."""
    return struct.unpack("f", struct.pack("f", x))[0]


class Adafactor(Rule):
    name = "adafactor"
    family = "adafactor"
    title = "Adafactor: factored second moments, relative step sizes and update clipping"
    citation = (
        "Shazeer & Stern, Adafactor: Adaptive Learning Rates with Sublinear Memory Cost, ICML 2018 "
        "(arXiv 1804.04235), Algorithms 4-5; torch.optim.Adafactor's names"
    )
    HYPER = (
        Real("lr", 1e-2, "ρ cap of the relative step ρ_t = min(lr, 1/√t) (torch); the step size itself when "
             "relative_step is False", low=0.0),
        Real("beta2_decay", -0.8, "β̂2t = 1 - t^beta2_decay (the paper's -0.8)", low=-math.inf, high=0.0,
             high_open=False),
        Pair(
            "eps",
            (1e-30, 1e-3),
            "(ε1, ε2): ε1 regularises g² (where: eps1_mode; None = the dtype's machine epsilon, torch), ε2 "
            "floors the parameter scale",
            parts=(
                _RealOrNone("eps1", 1e-30, "ε1 on the squared gradient (None: finfo(dtype).eps, torch)", low=0.0),
                Real("eps2", 1e-3, "ε2: the parameter scale is max(ε2, RMS(X))", low=0.0),
            ),
        ),
        Real("d", 1.0, "update clipping threshold d: Û = U / max(1, RMS(U)/d)", low=0.0, low_open=True),
        Real("weight_decay", 0.0, "weight decay λ (form: weight_decay_mode)", low=0.0),
        MAXIMIZE,
        Real("beta1", 0.0, "first-moment decay β1 on the scaled update (0: no first moment, the paper's default)",
             low=0.0, high=1.0),
        Flag("relative_step", True, "ρ_t = min(lr, 1/√t) (paper, torch); False: ρ_t = lr (HF relative_step=False, "
             "optax)"),
        Flag("warmup_init", False, "ρ_t = min(1e-6 t, 1/√t) instead of min(lr, 1/√t) (HF warmup_init)"),
        Flag("scale_parameter", True, "α_t = max(ε2, RMS(X_{t-1})) ρ_t; False: α_t = ρ_t"),
        Choice(
            "eps1_mode",
            "add",
            "ε1 added to g² before the means (paper, HF, optax) or used as clamps on the raw statistics "
            "(torch.optim)",
            choices=("add", "clamp"),
        ),
        Choice(
            "factored",
            "last_two",
            "which arrays are factored: ndim >= 2 over the last two axes (HF, torch), exactly 2-D (paper), "
            "the two largest axes if the smaller has >= min_dim_size_to_factor entries (optax), or none",
            choices=("last_two", "exactly_2d", "two_largest", "none"),
        ),
        Int("min_dim_size_to_factor", 128, "with factored='two_largest': the smaller of the two largest axes "
            "must have at least this many entries (optax's default 128)"),
        Choice(
            "weight_decay_mode",
            "relative",
            "X <- X - λ α_t X (HF), X(1 - lr λ) (torch.optim), u <- u + λ X (optax), or X(1 - lr λ) before "
            "the step, RMS(X) taken after it (Keras)",
            choices=("relative", "lr", "unscaled", "lr_first"),
        ),
        Choice("decay_dtype", "float64", "precision of β̂2t: float64 on the host, or float32 (optax)",
               choices=("float64", "float32")),
        _RealOrNone("beta2_cap", None, "β̂2t <- min(β̂2t, beta2_cap) (pytorch_optimizer: 0.999); None: no cap",
                    low=0.0, high=1.0, high_open=False),
        Flag("alpha_float32", False, "α_t rounded to float32 whatever the params' dtype (keras 3, measured)"),
    )

    # -- configuration ------------------------------------------------------------------

    def _validate(self):
        for h in self.HYPER:
            if not isinstance(h, (Real, Pair)):
                continue
            v = self._hyper[h.name]
            parts = v if isinstance(v, tuple) else (v,)
            if any(x is not None and not _array.is_scalar(x) for x in parts):
                raise ValueError(
                    f"{self.name}: {h.name} must be a number; batched hyper-parameters are not supported (RMS and "
                    f"the factored statistics are per array, so a configuration cannot be a slice of one)"
                )

        eps1 = self.eps[0]
        if self.eps1_mode == "clamp" and eps1 is not None and eps1 * eps1 < 2.0**-126:
            raise ValueError(
                f"{self.name}: eps1_mode='clamp' clamps V at ε1² and eps1={eps1!r} gives ε1² = {eps1 * eps1!r}, "
                f"which is 0 in float32 (U = g/0 for a zero gradient); give eps=(None, ε2) for torch's "
                f"machine epsilon, or ε1 >= 1.1e-19"
            )

    def slots(self):
        return ("v", "v_row", "v_col", "m") if self.beta1 > 0 else ("v", "v_row", "v_col")

    def factored_axes(self, shape: tuple) -> tuple[int, int] | None:
        """(row axis, column axis) of an array of ``shape`` when it is factored, else None.

        Row statistics are means over the column axis and column statistics means over the
        row axis; every other axis indexes independent matrices.
        """
        n = len(shape)
        if self.factored == "none" or n < 2:
            return None
        if self.factored == "last_two":
            return n - 2, n - 1
        if self.factored == "exactly_2d":
            return (0, 1) if n == 2 else None
        order = sorted(range(n), key=lambda i: shape[i])  # optax: np.argsort(shape) (stable for small n)
        second, largest = order[-2], order[-1]
        if shape[second] < self.min_dim_size_to_factor:
            return None
        return second, largest

    def _slot_shape(self, name, p):
        shape = tuple(p.shape)
        axes = self.factored_axes(shape)
        if name == "m":
            return shape
        if name == "v":
            return shape if axes is None else ()
        if axes is None:
            return ()
        keep = axes[1] if name == "v_row" else axes[0]  # the axis the statistic averages over, kept as 1
        return tuple(1 if i == keep else s for i, s in enumerate(shape))

    def _init_slot(self, xp, name, p):
        return xp.zeros(self._slot_shape(name, p), dtype=p.dtype, device=_array.device(p))

    # -- per-step scalars -----------------------------------------------------------------

    def _scalars(self, t):
        tf = float(t)
        if not self.relative_step:
            rho = self.lr
        else:
            inv_sqrt = 1.0 / _array.host_power(tf, 0.5)
            cap = 1e-6 * tf if self.warmup_init else self.lr
            rho = cap if cap < inv_sqrt else inv_sqrt
        if self.decay_dtype == "float32":  # optax: t in float32, 1 - t^(-0.8) in float32
            beta2t = _f32(1.0 - _f32(_f32(tf) ** _f32(self.beta2_decay)))
            one_minus = _f32(1.0 - beta2t)
        else:
            beta2t = 1.0 - tf**self.beta2_decay
            one_minus = 1.0 - beta2t
        if self.beta2_cap is not None and beta2t > self.beta2_cap:
            beta2t = self.beta2_cap
            one_minus = 1.0 - beta2t
        return {"rho": rho, "beta2t": beta2t, "one_minus_beta2t": one_minus}

    def _constants(self):
        return {"one_minus_beta1": 1.0 - self.beta1, "decay": 1.0 - self.lr * self.weight_decay}

    # -- the step of one array --------------------------------------------------------------

    def _numerator(self, xp, g, c):
        """The gradient in U = numerator / √V̂ (Pan & Li clip it)."""
        return g

    def _leaf(self, xp, p, g, s, c):
        if c.maximize:
            g = -g
        trace = {"g": g}
        numel = math.prod(p.shape)
        sqrt_numel = math.sqrt(numel)
        if self.weight_decay_mode == "lr_first" and not is_zero(self.weight_decay):
            p = p * c.decay  # Keras decays the variable before the step, so RMS sees the decayed X
        rms_p = _array.as_array(xp.linalg.vector_norm(p) / sqrt_numel)  # RMS(X_{t-1}), before any weight decay
        if self.scale_parameter:
            scale = xp.maximum(rms_p, xp.full_like(rms_p, c.eps2))
            alpha = _array.as_array(scale * c.rho)
        else:
            alpha = xp.full_like(rms_p, c.rho)
        if self.alpha_float32:  # keras 3 evaluates α_t in float32 (measured on 3.15.1, torch and jax backends)
            alpha = _array.as_array(xp.astype(xp.astype(alpha, xp.float32), p.dtype))
        eps1 = c.eps1 if c.eps1 is not None else float(xp.finfo(p.dtype).eps)
        axes = self.factored_axes(tuple(p.shape))
        empty = xp.zeros((), dtype=p.dtype, device=_array.device(p))  # a statistic this array does not use
        sq = g * g
        if self.eps1_mode == "add":
            sq = sq + eps1
        num = self._numerator(xp, g, c)
        if axes is not None:
            row_axis, col_axis = axes
            r = c.beta2t * s["v_row"] + c.one_minus_beta2t * xp.mean(sq, axis=col_axis, keepdims=True)
            col = c.beta2t * s["v_col"] + c.one_minus_beta2t * xp.mean(sq, axis=row_axis, keepdims=True)
            r_mean = xp.mean(r, axis=row_axis, keepdims=True)
            new = {"v_row": r, "v_col": col, "v": empty}
            if self.eps1_mode == "add":
                # HF: rsqrt(R / mean R) ⊗ rsqrt(C), times g
                factor = (1.0 / xp.sqrt(r / r_mean)) * (1.0 / xp.sqrt(col))
                u = factor * num
                v_hat = (r / r_mean) * col if c.tracing else None
            else:
                # torch.optim: V = R C / max(mean R, ε1); U = g / √max(V, ε1²)
                v_hat = (r * col) / xp.maximum(r_mean, xp.full_like(r_mean, eps1))
                v_hat = xp.maximum(v_hat, xp.full_like(v_hat, eps1 * eps1))
                u = (1.0 / xp.sqrt(v_hat)) * num
        else:
            v = c.beta2t * s["v"] + c.one_minus_beta2t * sq
            new = {"v_row": empty, "v_col": empty, "v": v}
            v_hat = v
            if self.eps1_mode == "clamp":
                v_hat = xp.maximum(v, xp.full_like(v, eps1 * eps1))
            u = (1.0 / xp.sqrt(v_hat)) * num
        trace.update(new)
        if c.tracing:
            trace["v_hat"] = v_hat
        trace["u"] = u
        rms_u = _array.as_array(xp.linalg.vector_norm(u) / sqrt_numel)
        trace["rms_u"] = rms_u
        clip = _array.as_array(xp.maximum(rms_u / c.d, xp.ones_like(rms_u)))
        u_hat = u / clip
        trace["u_hat"] = u_hat
        trace["alpha"] = alpha
        update = alpha * u_hat
        if self.beta1 > 0:
            m = c.beta1 * s["m"] + c.one_minus_beta1 * update
            new["m"] = trace["m"] = update = m
        if not is_zero(self.weight_decay):
            if self.weight_decay_mode == "relative":
                p = p - (c.weight_decay * alpha) * p
            elif self.weight_decay_mode == "lr":
                p = p * c.decay
            elif self.weight_decay_mode == "unscaled":
                update = update + c.weight_decay * p
        trace["update"] = update
        return p - update, new, trace


class ClippedAdafactor(Adafactor):
    name = "clipped_adafactor"
    family = "clipped_adafactor"
    title = "Adafactor with coordinate-wise clipping of the gradient in the numerator"
    citation = (
        "Pan & Li, Toward Understanding Why Adam Converges Faster Than SGD for Transformers, arXiv 2306.00204; "
        "official code panyan7/adam-vs-sgd torch_optimizer/adafactor.py; Adafactor: Shazeer & Stern, arXiv 1804.04235"
    )
    HYPER = (
        *Adafactor.HYPER,
        Real("clip_fraction", 0.5, "fraction c of the coordinates clipped each step (the code's coordinate_clip; "
             "0: no clipping)", low=0.0, high=1.0, high_open=False),
        Real("threshold_scale", 1.0, "factor s on the threshold: τ <- s τ (the code's threshold_scale)", low=0.0),
        Choice(
            "zero_threshold",
            "zero_all",
            "rank all entries, zeros included (authors' code: a mostly-zero gradient is zeroed), or only the "
            "non-zero magnitudes (refopt safeguard)",
            choices=transforms.ZERO_THRESHOLD,
        ),
    )

    def _prepare(self, xp, params, grads, slots, scalars, t):
        # τ from the raw gradients of the whole tree (|g| does not depend on maximize)
        tau = transforms.top_fraction_threshold(
            grads,
            self.clip_fraction,
            threshold_scale=self.threshold_scale,
            zero_threshold=self.zero_threshold,
            what=f"{self.name}: grads",
        )
        return {"tau": tau}, [{"tau": transforms.threshold_like(tau, g, 0)} for g in grads]

    def _numerator(self, xp, g, c):
        if is_zero(self.clip_fraction):
            return g
        return transforms.clamp(xp, g, c.tau)
