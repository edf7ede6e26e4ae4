"""Named conventions of known implementations: ``presets.get("torch.optim.Adam", lr=1e-3)``.

A preset's name is the implementation's import path, with ``@version`` where behaviour
changed between versions.  It takes that implementation's own argument names and defaults,
and returns a refopt rule configured to compute what that implementation computes.  Each
preset cites the source file it was read from.  Arguments that change nothing numerically
(``foreach``, ``fused``, ``capturable``, ``differentiable``, dtype knobs left at None) are
accepted and ignored; an argument value refopt cannot reproduce raises a ValueError that
says so, rather than silently computing something else.

Rounding-level differences remain where an implementation evaluates the same formula in
another order (for example optax applies weight decay as ``-lr·(u + λθ)`` where refopt
computes ``θ(1 - γλ) - γu``, and Keras/optax compute bias corrections in the parameters'
dtype); each preset's ``notes`` say so.  Those are ulp-level in float32 and ~1e-16 in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from . import rules
from .rules._base import suggest

__all__ = ["Preset", "names", "get", "describe"]

REQUIRED = object()  # an argument the implementation requires (optax's learning_rate)
_INERT_TORCH = {"foreach": None, "fused": None, "capturable": False, "differentiable": False}


@dataclass(frozen=True)
class Preset:
    """How one implementation maps onto a refopt rule."""

    name: str
    rule: str
    source: str
    args: Mapping[str, Any]
    to_hyper: Callable[[dict], dict]
    notes: str = ""
    inert: tuple[str, ...] = ()  # accepted, no numeric effect (they choose a kernel or a name)

    def build(self, **kwargs: Any) -> rules.Rule:
        unknown = [k for k in kwargs if k not in self.args]
        if unknown:
            raise TypeError(
                f"{self.name}: unknown argument {unknown[0]!r}"
                + _close(unknown[0], list(self.args))
                + f" (it takes {', '.join(self.args)})"
            )
        merged = {**self.args, **kwargs}
        missing = [k for k, v in merged.items() if v is REQUIRED]
        if missing:
            raise TypeError(f"{self.name}: missing required argument {missing[0]!r}")
        return rules.get(self.rule, **self.to_hyper(merged))


def _close(key: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, known, n=3)
    return f"; did you mean {', '.join(map(repr, close))}?" if close else ""


def _unsupported(preset: str, arg: str, value: Any, why: str) -> ValueError:
    return ValueError(f"{preset}: {arg}={value!r} is not reproduced by refopt ({why})")


_PRESETS: dict[str, Preset] = {}


def _add(name, rule, source, args, to_hyper, notes="", inert=()):
    _PRESETS[name] = Preset(name, rule, source, dict(args), to_hyper, notes, tuple(inert))


# ---------------------------------------------------------------------------------------
# torch.optim (pytorch/pytorch torch/optim/*.py, read at 2.11, re-run on 2.13)
# ---------------------------------------------------------------------------------------

_add(
    "torch.optim.SGD",
    "sgd",
    "pytorch/pytorch torch/optim/sgd.py (lr default 1e-3 since 2.2)",
    dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False, foreach=None,
         differentiable=False, fused=None),
    lambda a: dict(lr=a["lr"], momentum=a["momentum"], dampening=a["dampening"], weight_decay=a["weight_decay"],
                   nesterov=a["nesterov"], maximize=a["maximize"]),
    inert=("foreach", "differentiable", "fused"),
)


def _torch_adam(a, decoupled=None):
    return dict(
        lr=a["lr"], betas=tuple(a["betas"]), eps=a["eps"], weight_decay=a["weight_decay"], amsgrad=a["amsgrad"],
        maximize=a["maximize"], ema="lerp",
        **({"decoupled_weight_decay": a["decoupled_weight_decay"]} if decoupled is None else {}),
    )


_add(
    "torch.optim.Adam",
    "adam",
    "pytorch/pytorch torch/optim/adam.py",
    dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, foreach=None, maximize=False,
         capturable=False, differentiable=False, fused=None, decoupled_weight_decay=False),
    _torch_adam,
    notes="first moment via lerp (ema='lerp'); amsgrad takes the max of the raw v and divides by the current bc2",
    inert=tuple(_INERT_TORCH),
)
_add(
    "torch.optim.AdamW",
    "adamw",
    "pytorch/pytorch torch/optim/adamw.py",
    dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False, foreach=None,
         capturable=False, differentiable=False, fused=None),
    lambda a: _torch_adam(a, decoupled=True),
    notes="θ <- θ(1 - γλ): torch's λ is Loshchilov & Hutter's λ/α",
    inert=tuple(_INERT_TORCH),
)
_add(
    "torch.optim.RAdam",
    "radam",
    "pytorch/pytorch torch/optim/radam.py",
    dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False, foreach=None,
         maximize=False, capturable=False, differentiable=False),
    lambda a: dict(lr=a["lr"], betas=tuple(a["betas"]), eps=a["eps"], weight_decay=a["weight_decay"],
                   decoupled_weight_decay=a["decoupled_weight_decay"], maximize=a["maximize"], threshold="rho>5",
                   warmup="sgd", ema="lerp"),
    notes="rectified when ρ_t > 5; the first steps are SGD steps γ·m̂",
    inert=("foreach", "capturable", "differentiable"),
)


# ---------------------------------------------------------------------------------------
# optax (google-deepmind/optax optax/_src/alias.py and transform.py, 0.2.8)
# ---------------------------------------------------------------------------------------


def _no(preset, a, key, default, why):
    if a[key] != default:
        raise _unsupported(preset, key, a[key], why)


def _optax_sgd(a):
    _no("optax.sgd", a, "accumulator_dtype", None, "state has the params' dtype")
    return dict(lr=a["learning_rate"], momentum=a["momentum"] or 0.0, nesterov=a["nesterov"])


_add(
    "optax.sgd",
    "sgd",
    "google-deepmind/optax optax/_src/alias.py sgd (trace: t = g + μ t; nesterov g + μ t)",
    dict(learning_rate=REQUIRED, momentum=None, nesterov=False, accumulator_dtype=None),
    _optax_sgd,
    notes="optax's trace starts at 0, so its first buffer is g, like torch's; no dampening",
)


def _optax_adam(name, decoupled=False):
    def to_hyper(a):
        _no(name, a, "mu_dtype", None, "state has the params' dtype")
        _no(name, a, "nesterov", False, "the Nesterov (NAdam-like) first moment is not a refopt option")
        out = dict(lr=a["learning_rate"], betas=(a["b1"], a["b2"]), eps=a["eps"], eps_root=a["eps_root"])
        if decoupled:
            _no(name, a, "mask", None, "weight decay applies to every parameter array")
            out.update(weight_decay=a["weight_decay"], decoupled_weight_decay=True)
        return out

    return to_hyper


_OPTAX_ADAM_ARGS = dict(learning_rate=REQUIRED, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, mu_dtype=None)
_add(
    "optax.adam",
    "adam",
    "google-deepmind/optax optax/_src/alias.py adam, transform.py scale_by_adam",
    {**_OPTAX_ADAM_ARGS, "nesterov": False},
    _optax_adam("optax.adam"),
    notes="update m̂/(√(v̂ + eps_root) + eps); bias corrections in the params' dtype (ulp-level in float32)",
)
_add(
    "optax.adamw",
    "adam",
    "google-deepmind/optax optax/_src/alias.py adamw (scale_by_adam, add_decayed_weights, scale_by_learning_rate)",
    {**_OPTAX_ADAM_ARGS, "weight_decay": 1e-4, "mask": None, "nesterov": False},
    _optax_adam("optax.adamw", decoupled=True),
    notes="optax subtracts lr·(u + λθ); refopt computes θ(1 - γλ) - γu: equal up to rounding",
)


def _optax_amsgrad(a):
    _no("optax.amsgrad", a, "mu_dtype", None, "state has the params' dtype")
    if a["bias_correction_mu"] != a["bias_correction_nu"]:
        raise _unsupported(
            "optax.amsgrad", "bias_correction_mu", a["bias_correction_mu"],
            "refopt corrects both moments or neither (bias_correction)",
        )
    return dict(lr=a["learning_rate"], betas=(a["b1"], a["b2"]), eps=a["eps"], eps_root=a["eps_root"], amsgrad=True,
                amsgrad_max="bias_corrected", bias_correction=a["bias_correction_mu"])


_add(
    "optax.amsgrad",
    "adam",
    "google-deepmind/optax optax/_src/alias.py amsgrad, transform.py scale_by_amsgrad",
    {**_OPTAX_ADAM_ARGS, "bias_correction_mu": True, "bias_correction_nu": True},
    _optax_amsgrad,
    notes="the running maximum is taken over the bias-corrected v̂ (torch: over the raw v)",
)


# ---------------------------------------------------------------------------------------
# Keras 3 (keras-team/keras keras/src/optimizers/*.py, 3.15)
# ---------------------------------------------------------------------------------------

_KERAS_COMMON = dict(
    weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False, ema_momentum=0.99,
    ema_overwrite_frequency=None, loss_scale_factor=None, gradient_accumulation_steps=None, name=None,
)


def _keras_common(name, a):
    for key in ("clipnorm", "clipvalue", "global_clipnorm", "loss_scale_factor", "gradient_accumulation_steps"):
        _no(name, a, key, None, "compose a refopt.transforms clip or scale the gradient yourself")
    _no(name, a, "use_ema", False, "an EMA of the weights is not part of the update rule")
    wd = a["weight_decay"]
    return {} if wd in (None, 0, 0.0) else {"weight_decay": wd, "decoupled_weight_decay": True}


def _keras_sgd(a):
    return dict(lr=a["learning_rate"], momentum=a["momentum"], nesterov=a["nesterov"], **_keras_common("keras.optimizers.SGD", a))


_add(
    "keras.optimizers.SGD",
    "sgd",
    "keras-team/keras keras/src/optimizers/sgd.py; weight decay in base_optimizer.py (θ - θ·λ·lr)",
    dict(learning_rate=0.01, momentum=0.0, nesterov=False, **_KERAS_COMMON),
    _keras_sgd,
    notes="Keras keeps lr inside the buffer (m = μm - γg): identical to torch's form for a constant lr",
    inert=("ema_momentum", "ema_overwrite_frequency", "name"),
)


def _keras_adam(a):
    return dict(lr=a["learning_rate"], betas=(a["beta_1"], a["beta_2"]), eps=a["epsilon"], amsgrad=a["amsgrad"],
                eps_mode="eps_hat", **_keras_common("keras.optimizers.Adam", a))


_add(
    "keras.optimizers.Adam",
    "adam",
    "keras-team/keras keras/src/optimizers/adam.py",
    dict(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **_KERAS_COMMON),
    _keras_adam,
    notes="ε̂ on the raw √v with step γ√bc2/bc1 (effective ε = ε̂/√bc2); Keras writes both moments as "
    "v + (1-β)(x - v) and computes β^t in the params' dtype (ulp-level in float32)",
    inert=("ema_momentum", "ema_overwrite_frequency", "name"),
)


def names() -> list[str]:
    """Every preset name."""
    return list(_PRESETS)


def describe(name: str) -> Preset:
    """The :class:`Preset` record: rule, source, the implementation's arguments and defaults."""
    if name not in _PRESETS:
        raise ValueError(suggest(str(name), list(_PRESETS), "preset"))
    return _PRESETS[name]


def get(name: str, **kwargs: Any) -> rules.Rule:
    """A rule configured like the implementation ``name``, from that implementation's arguments."""
    return describe(name).build(**kwargs)
