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

import dataclasses
import numbers
import struct
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from . import rules
from .rules._base import suggest

__all__ = ["Preset", "names", "get", "describe"]

# presets whose defaults refopt refuses (pytorch_optimizer's bfloat16 momentum buffer): the arguments that
# the golden vectors and `refopt verify` use in their place
RUNNABLE_ARGS = {"pytorch_optimizer.AdaFactor": {"betas": (None, 0.999)}}
# pairs whose default has no None but that take one (pytorch_optimizer's betas=(None, β2): no momentum)
_PAIRS_WITH_NONE = {("pytorch_optimizer.AdaFactor", "betas")}
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
    versions: str = ""  # the releases it reproduces, as a PEP 440 range ("" where no bound is known)
    # when one implementation computes two refopt rules depending on an argument (optax.adam's
    # nesterov=True is NAdam): the rule for the merged arguments; ``rule`` is the one its defaults build
    rule_for: Callable[[dict], str] | None = None

    def build(self, **kwargs: Any) -> rules.Rule:
        unknown = [k for k in kwargs if k not in self.args]
        if unknown:
            raise TypeError(
                f"{self.name}: unknown argument {unknown[0]!r}"
                + _close(unknown[0], list(self.args))
                + f" (it takes {', '.join(self.args)})"
            )
        for key, value in kwargs.items():
            _check_argument(self.name, key, value, self.args[key])
        merged = {**self.args, **kwargs}
        missing = [k for k, v in merged.items() if v is REQUIRED]
        if missing:
            raise TypeError(f"{self.name}: missing required argument {missing[0]!r}")
        rule = self.rule if self.rule_for is None else self.rule_for(merged)
        try:
            return rules.get(rule, **self.to_hyper(merged))
        except (ValueError, TypeError) as exc:
            if str(exc).startswith(self.name):
                raise
            raise type(exc)(f"{self.name}: {exc}") from None


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_argument(preset: str, key: str, value: Any, default: Any) -> None:
    """The implementation's argument has the type of its default: a bool flag, a number, a pair
    of numbers.  Values refopt cannot reproduce are refused later by the preset itself."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TypeError(f"{preset}: {key} must be True or False; got {value!r}")
    elif isinstance(default, tuple):
        none_ok = None in default or (preset, key) in _PAIRS_WITH_NONE
        if not isinstance(value, (tuple, list)) or len(value) != len(default) or not all(
                _is_real(x) or (x is None and none_ok) for x in value):
            raise TypeError(f"{preset}: {key} must be a pair of numbers like {default!r}; got {value!r}")
    elif _is_real(default) or default is REQUIRED:
        if not _is_real(value):
            raise TypeError(f"{preset}: {key} must be a number; got {value!r}")


def _close(key: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, known, n=3)
    return f"; did you mean {', '.join(map(repr, close))}?" if close else ""


def _unsupported(preset: str, arg: str, value: Any, why: str) -> ValueError:
    return ValueError(f"{preset}: {arg}={value!r} is not reproduced by refopt ({why})")


_PRESETS: dict[str, Preset] = {}


def _add(name, rule, source, args, to_hyper, notes="", inert=(), versions="", rule_for=None):
    _PRESETS[name] = Preset(name, rule, source, dict(args), to_hyper, notes, tuple(inert), versions, rule_for)


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


_add(
    "torch.optim.RMSprop",
    "rmsprop",
    "pytorch/pytorch torch/optim/rmsprop.py",
    dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, capturable=False,
         foreach=None, maximize=False, differentiable=False),
    lambda a: dict(lr=a["lr"], alpha=a["alpha"], eps=a["eps"], weight_decay=a["weight_decay"], momentum=a["momentum"],
                   centered=a["centered"], maximize=a["maximize"], ema="lerp"),
    notes="ε outside the root, γ outside the momentum buffer, no bias correction; ḡ via lerp",
    inert=("capturable", "foreach", "differentiable"),
)
_add(
    "torch.optim.Adagrad",
    "adagrad",
    "pytorch/pytorch torch/optim/adagrad.py",
    dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10, foreach=None,
         maximize=False, differentiable=False, fused=None),
    lambda a: dict(lr=a["lr"], lr_decay=a["lr_decay"], weight_decay=a["weight_decay"],
                   initial_accumulator_value=a["initial_accumulator_value"], eps=a["eps"], maximize=a["maximize"]),
    notes="γ_t = γ/(1 + (t-1)·lr_decay); ε outside the root",
    inert=("foreach", "differentiable", "fused"),
)
_add(
    "torch.optim.Adadelta",
    "adadelta",
    "pytorch/pytorch torch/optim/adadelta.py",
    dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, foreach=None, capturable=False, maximize=False,
         differentiable=False),
    lambda a: dict(lr=a["lr"], rho=a["rho"], eps=a["eps"], weight_decay=a["weight_decay"], maximize=a["maximize"]),
    notes="ε inside both roots; E[Δ²] accumulates the update before γ scales it (Zeiler's rule has no γ)",
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
    # without momentum optax skips the trace altogether, nesterov included: plain SGD
    return dict(lr=a["learning_rate"], momentum=a["momentum"] or 0.0, nesterov=a["nesterov"] and bool(a["momentum"]))


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
        out = dict(lr=a["learning_rate"], betas=(a["b1"], a["b2"]), eps=a["eps"], eps_root=a["eps_root"])
        if a["nesterov"]:  # optax's NAdam: m̂ = β1 m/(1-β1^{t+1}) + (1-β1) g/(1-β1^t), i.e. a constant μ
            out["schedule"] = "constant"
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
    notes="update m̂/(√(v̂ + eps_root) + eps); bias corrections in the params' dtype (ulp-level in float32); "
    "nesterov=True builds the rule nadam with schedule='constant' (optax's NAdam)",
    rule_for=lambda a: "nadam" if a["nesterov"] else "adam",
)
_add(
    "optax.adamw",
    "adam",
    "google-deepmind/optax optax/_src/alias.py adamw (scale_by_adam, add_decayed_weights, scale_by_learning_rate)",
    {**_OPTAX_ADAM_ARGS, "weight_decay": 1e-4, "mask": None, "nesterov": False},
    _optax_adam("optax.adamw", decoupled=True),
    notes="optax subtracts lr·(u + λθ); refopt computes θ(1 - γλ) - γu: equal up to rounding; nesterov=True "
    "builds the rule nadam (NAdamW)",
    rule_for=lambda a: "nadam" if a["nesterov"] else "adam",
)
# optax.nadam and optax.nadamw are functools.partial(adam / adamw, nesterov=True)
_add(
    "optax.nadam",
    "nadam",
    "google-deepmind/optax optax/_src/alias.py nadam = partial(adam, nesterov=True), transform.py scale_by_adam",
    {**_OPTAX_ADAM_ARGS, "nesterov": True},
    _optax_adam("optax.nadam"),
    notes="no momentum schedule (schedule='constant'): m̂ = β1 m/(1-β1^{t+1}) + (1-β1) g/(1-β1^t); "
    "nesterov=False is optax.adam",
    rule_for=lambda a: "nadam" if a["nesterov"] else "adam",
)
_add(
    "optax.nadamw",
    "nadam",
    "google-deepmind/optax optax/_src/alias.py nadamw = partial(adamw, nesterov=True)",
    {**_OPTAX_ADAM_ARGS, "weight_decay": 1e-4, "mask": None, "nesterov": True},
    _optax_adam("optax.nadamw", decoupled=True),
    notes="optax subtracts lr·(u + λθ); refopt computes θ(1 - γλ) - γu: equal up to rounding",
    rule_for=lambda a: "nadam" if a["nesterov"] else "adam",
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


def _optax_adabelief(a):
    return dict(lr=a["learning_rate"], betas=(a["b1"], a["b2"]), eps=a["eps"], eps_root=a["eps_root"],
                nesterov=a["nesterov"], rectify=False)


_add(
    "optax.adabelief",
    "adabelief",
    "google-deepmind/optax optax/_src/alias.py adabelief, transform.py scale_by_belief (>= 0.2.4)",
    dict(learning_rate=REQUIRED, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, nesterov=False),
    _optax_adabelief,
    notes="eps_root is accumulated into s, eps is added outside the root; before 0.2.4 optax's residual used "
    "m_{t-1} (refopt option residual='m_prev')",
)


def _optax_rmsprop(a):
    _no("optax.rmsprop", a, "nesterov", False, "refopt's RMSprop momentum has no Nesterov form")
    _no("optax.rmsprop", a, "bias_correction", False, "refopt's RMSprop has no bias correction")
    return dict(lr=a["learning_rate"], alpha=a["decay"], eps=a["eps"], initial_accumulator_value=a["initial_scale"],
                eps_mode="inside_sqrt" if a["eps_in_sqrt"] else "outside_sqrt", centered=a["centered"],
                momentum=a["momentum"] or 0.0, lr_in_momentum=True)


_add(
    "optax.rmsprop",
    "rmsprop",
    "google-deepmind/optax optax/_src/alias.py rmsprop, transform.py scale_by_rms / scale_by_stddev",
    dict(learning_rate=REQUIRED, decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt=True, centered=False,
         momentum=None, nesterov=False, bias_correction=False),
    _optax_rmsprop,
    notes="ε inside the root by default; the learning rate is applied before the momentum trace (γ inside the buffer)",
)
_add(
    "optax.adagrad",
    "adagrad",
    "google-deepmind/optax optax/_src/alias.py adagrad, transform.py scale_by_rss",
    dict(learning_rate=REQUIRED, initial_accumulator_value=0.1, eps=1e-7),
    lambda a: dict(lr=a["learning_rate"], initial_accumulator_value=a["initial_accumulator_value"], eps=a["eps"],
                   eps_mode="inside_sqrt"),
    notes="g·rsqrt(S + ε), and 0 where S = 0 (then g = 0 too, so the step is 0 either way)",
)


def _optax_adadelta(a):
    _no("optax.adadelta", a, "weight_decay_mask", None, "weight decay applies to every parameter array")
    if a["learning_rate"] is not None:
        return dict(lr=a["learning_rate"], rho=a["rho"], eps=a["eps"], weight_decay=a["weight_decay"])
    # scale_by_learning_rate(None) is the identity, without the sign flip: optax then ADDS Δ,
    # an ascent step. That is maximize=True with γ = 1 -- exactly, while there is no weight decay
    # (optax would ascend on g + λθ, refopt's maximize decays on -g + λθ).
    if a["weight_decay"] != 0:
        raise _unsupported(
            "optax.adadelta", "weight_decay", a["weight_decay"],
            "with learning_rate=None optax ascends along g + λθ, which no refopt option reproduces",
        )
    return dict(lr=1.0, rho=a["rho"], eps=a["eps"], maximize=True)


_add(
    "optax.adadelta",
    "adadelta",
    "google-deepmind/optax optax/_src/alias.py adadelta, transform.py scale_by_adadelta",
    dict(learning_rate=None, rho=0.9, eps=1e-6, weight_decay=0.0, weight_decay_mask=None),
    _optax_adadelta,
    notes="learning_rate=None (the default) skips scale_by_learning_rate altogether, sign flip included, so "
    "optax adds Δ and ascends the objective; refopt reproduces that as maximize=True with γ = 1. Weight decay "
    "is coupled (added to the gradient first)",
)


def _optax_lion(a):
    _no("optax.lion", a, "mu_dtype", None, "state has the params' dtype")
    _no("optax.lion", a, "mask", None, "weight decay applies to every parameter array")
    return dict(lr=a["learning_rate"], betas=(a["b1"], a["b2"]), weight_decay=a["weight_decay"])


_add(
    "optax.lion",
    "lion",
    "google-deepmind/optax optax/_src/alias.py lion, transform.py scale_by_lion",
    dict(learning_rate=REQUIRED, b1=0.9, b2=0.99, mu_dtype=None, weight_decay=1e-3, mask=None),
    _optax_lion,
    notes="optax subtracts lr·(sign(c) + λθ); refopt computes θ(1 - γλ) - γ·sign(c): equal up to rounding",
)


# ---------------------------------------------------------------------------------------
# Keras 3 (keras-team/keras keras/src/optimizers/*.py, 3.15)
# ---------------------------------------------------------------------------------------

_KERAS_COMMON = dict(
    weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False, ema_momentum=0.99,
    ema_overwrite_frequency=None, loss_scale_factor=None, gradient_accumulation_steps=None, name=None,
)


def _keras_lr(a) -> float:
    """Keras keeps learning_rate in a Variable of dtype floatx() (float32) and casts it to the
    parameters' dtype at each step (base_optimizer.py): even float64 training sees the float32
    rounding of the learning rate."""
    return struct.unpack("f", struct.pack("f", float(a["learning_rate"])))[0]


def _keras_common(name, a):
    for key in ("clipnorm", "clipvalue", "global_clipnorm", "loss_scale_factor", "gradient_accumulation_steps"):
        _no(name, a, key, None, "compose a refopt.transforms clip or scale the gradient yourself")
    _no(name, a, "use_ema", False, "an EMA of the weights is not part of the update rule")
    wd = a["weight_decay"]
    return {} if wd in (None, 0, 0.0) else {"weight_decay": wd, "decoupled_weight_decay": True}


def _keras_sgd(a):
    return dict(lr=_keras_lr(a), momentum=a["momentum"], nesterov=a["nesterov"], **_keras_common("keras.optimizers.SGD", a))


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
    return dict(lr=_keras_lr(a), betas=(a["beta_1"], a["beta_2"]), eps=a["epsilon"], amsgrad=a["amsgrad"],
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


def _keras_rmsprop(a):
    return dict(lr=_keras_lr(a), alpha=a["rho"], eps=a["epsilon"], momentum=a["momentum"], centered=a["centered"],
                eps_mode="inside_sqrt", lr_in_momentum=True, **_keras_common("keras.optimizers.RMSprop", a))


_add(
    "keras.optimizers.RMSprop",
    "rmsprop",
    "keras-team/keras keras/src/optimizers/rmsprop.py",
    dict(learning_rate=1e-3, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **_KERAS_COMMON),
    _keras_rmsprop,
    notes="ε inside the root, γ inside the momentum buffer",
    inert=("ema_momentum", "ema_overwrite_frequency", "name"),
)


def _keras_adagrad(a):
    return dict(lr=_keras_lr(a), initial_accumulator_value=a["initial_accumulator_value"], eps=a["epsilon"],
                eps_mode="inside_sqrt", **_keras_common("keras.optimizers.Adagrad", a))


_add(
    "keras.optimizers.Adagrad",
    "adagrad",
    "keras-team/keras keras/src/optimizers/adagrad.py",
    dict(learning_rate=1e-3, initial_accumulator_value=0.1, epsilon=1e-7, **_KERAS_COMMON),
    _keras_adagrad,
    notes="γ g/√(S + ε): ε inside the root; the accumulator starts at 0.1",
    inert=("ema_momentum", "ema_overwrite_frequency", "name"),
)


def _keras_adadelta(a):
    return dict(lr=_keras_lr(a), rho=a["rho"], eps=a["epsilon"], **_keras_common("keras.optimizers.Adadelta", a))


_add(
    "keras.optimizers.Adadelta",
    "adadelta",
    "keras-team/keras keras/src/optimizers/adadelta.py",
    dict(learning_rate=1e-3, rho=0.95, epsilon=1e-7, **_KERAS_COMMON),
    _keras_adadelta,
    notes="learning_rate defaults to 1e-3, a 1000x slower Adadelta than Zeiler's (γ = 1)",
    inert=("ema_momentum", "ema_overwrite_frequency", "name"),
)


# ---------------------------------------------------------------------------------------
# AdaBelief and diffGrad packages
# ---------------------------------------------------------------------------------------

_AB_ARGS = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-16, weight_decay=0.0, amsgrad=False, weight_decouple=True,
                fixed_decay=False, rectify=True, degenerated_to_sgd=True)


def _ab_common(a):
    return dict(lr=a["lr"], betas=tuple(a["betas"]), eps=a["eps"], weight_decay=a["weight_decay"],
                amsgrad=a["amsgrad"], weight_decouple=a["weight_decouple"], fixed_decay=a["fixed_decay"],
                rectify=a["rectify"])


# 0.0.5 semantics, which torch-optimizer 0.3.0 ported: ρ_t > 4, SGD phase γ·m without bias
# correction, the rectified step on the usual (bias-corrected) denominator, and amsgrad whose
# maximum gains +ε in place every step.
_AB_005 = dict(threshold="rho>4", sgd_phase="m", rectified_denom="bias_corrected", amsgrad_eps="after_max")

_add(
    "adabelief_pytorch.AdaBelief",
    "adabelief",
    "juntang-zhuang/Adabelief-Optimizer pypi_packages/adabelief_pytorch0.2.1/adabelief_pytorch/AdaBelief.py "
    "(0.2.0 and 0.2.1)",
    {**_AB_ARGS, "print_change_log": True},
    lambda a: dict(_ab_common(a), degenerated_to_sgd=a["degenerated_to_sgd"]),
    notes="rectify=True by default (ρ_t >= 5, the first 5 steps are γ·m̂ steps); coupled decay mutates p.grad "
    "in place there, never here",
    inert=("print_change_log",),
)
_add(
    "adabelief_pytorch.AdaBelief@0.1.0",
    "adabelief",
    "juntang-zhuang/Adabelief-Optimizer pypi_packages/adabelief_pytorch0.1.0/adabelief_pytorch/AdaBelief.py",
    _AB_ARGS,
    lambda a: dict(_ab_common(a), degenerated_to_sgd=a["degenerated_to_sgd"], amsgrad_eps="after_max",
                   decay_placement="after_moments"),
    notes="coupled weight decay is applied after the moments, so it has no effect (fixed in 0.2.0)",
)
_add(
    "adabelief_pytorch.AdaBelief@0.0.5",
    "adabelief",
    "juntang-zhuang/Adabelief-Optimizer pypi_packages/adabelief_pytorch0.0.5/adabelief_pytorch/AdaBelief.py",
    dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, weight_decouple=False,
         fixed_decay=False, rectify=False),
    lambda a: dict(_ab_common(a), **_AB_005),
    notes="defaults eps 1e-8, weight_decouple False, rectify False; rectified from ρ_t > 4",
)
_add(
    "torch_optimizer.AdaBelief",
    "adabelief",
    "jettify/pytorch-optimizer torch_optimizer/adabelief.py (torch-optimizer 0.3.0)",
    dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, weight_decouple=False,
         fixed_decay=False, rectify=False),
    lambda a: dict(_ab_common(a), **_AB_005),
    notes="a port of adabelief-pytorch 0.0.5",
)


def _po_adabelief(a):
    if a["n_sma_threshold"] != 5:
        raise _unsupported("pytorch_optimizer.AdaBelief", "n_sma_threshold", a["n_sma_threshold"],
                           "refopt's thresholds are ρ_t > 4, >= 5 and > 5")
    return dict(lr=a["lr"], betas=tuple(a["betas"]), eps=a["eps"], weight_decay=a["weight_decay"],
                weight_decouple=a["weight_decouple"], fixed_decay=a["fixed_decay"], rectify=a["rectify"],
                threshold="rho>=5", degenerated_to_sgd=a["degenerated_to_sgd"], amsgrad=a["ams_bound"],
                rectified_denom="raw_amsgrad", maximize=a["maximize"], ema="lerp")


_add(
    "pytorch_optimizer.AdaBelief",
    "adabelief",
    "kozistr/pytorch_optimizer pytorch_optimizer/optimizer/adabelief.py (>= 4.0.0; 3.10-3.11 drop 1/bc1 and ε)",
    dict(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0, weight_decouple=True, fixed_decay=False, rectify=False,
         n_sma_threshold=5, degenerated_to_sgd=True, ams_bound=False, foreach=None, eps=1e-16, maximize=False),
    _po_adabelief,
    notes="ams_bound is amsgrad, also used in the rectified branch",
    inert=("foreach",),
)
_add(
    "torch_optimizer.DiffGrad",
    "diffgrad",
    "jettify/pytorch-optimizer torch_optimizer/diffgrad.py (torch-optimizer 0.3.0) = shivram1987/diffGrad diffGrad_v2.py",
    dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0),
    lambda a: dict(lr=a["lr"], betas=tuple(a["betas"]), eps=a["eps"], weight_decay=a["weight_decay"],
                   eps_mode="eps_hat"),
    notes="ε on the raw √v with step γ√bc2/bc1 (the paper's analytic form puts ε after bias correction)",
)


def _po_diffgrad(a):
    _no("pytorch_optimizer.DiffGrad", a, "rectify", False, "rectified diffGrad is not in the paper")
    _no("pytorch_optimizer.DiffGrad", a, "ams_bound", False, "amsgrad diffGrad is not in the paper")
    return dict(lr=a["lr"], betas=tuple(a["betas"]), eps=a["eps"], weight_decay=a["weight_decay"],
                weight_decouple=a["weight_decouple"], fixed_decay=a["fixed_decay"], maximize=a["maximize"],
                eps_mode="eps_hat", eps_root=1e-15, ema="lerp")


_add(
    "pytorch_optimizer.DiffGrad",
    "diffgrad",
    "kozistr/pytorch_optimizer pytorch_optimizer/optimizer/diffgrad.py (>= 4.0.0; 2.7-3.11 are not diffGrad)",
    dict(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0, weight_decouple=True, fixed_decay=False, rectify=False,
         n_sma_threshold=5, degenerated_to_sgd=True, ams_bound=False, eps=1e-8, maximize=False, foreach=None),
    _po_diffgrad,
    notes="decoupled weight decay by default; a hard-coded 1e-15 inside the root",
    inert=("foreach", "n_sma_threshold", "degenerated_to_sgd"),
)



# ---------------------------------------------------------------------------------------
# Adafactor, Fromage, M-SVAG (refopt.rules.adafactor / fromage / msvag)
# ---------------------------------------------------------------------------------------


def _dtype_name(x) -> str:
    """'float64' for torch.float64, jnp.float64, numpy.float64 or the string itself."""
    return str(getattr(x, "__name__", x)).rsplit(".", 1)[-1]


def _torch_adafactor(a):
    return dict(lr=a["lr"], beta2_decay=a["beta2_decay"], eps=tuple(a["eps"]), d=a["d"],
                weight_decay=a["weight_decay"], maximize=a["maximize"], eps1_mode="clamp", factored="last_two",
                weight_decay_mode="lr")


_add(
    "torch.optim.Adafactor",
    "adafactor",
    "pytorch/pytorch torch/optim/_adafactor.py (2.13)",
    dict(lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0, foreach=None, maximize=False),
    _torch_adafactor,
    notes="ε1 (None: the dtype's machine epsilon) clamps the statistics instead of being added to g²; lr is the "
          "relative-step cap; weight decay θ(1 - lr·λ) with that cap; factored over the last two axes of ndim >= 2",
    inert=("foreach",),
)


def _hf_adafactor(name, lr_key, eps_key):
    def to_hyper(a):
        if a[lr_key] is not None and a["relative_step"] and name == "transformers.Adafactor":
            raise _unsupported(name, lr_key, a[lr_key], "transformers raises: lr cannot be given with relative_step=True")
        if not a["relative_step"] and a[lr_key] is None:
            raise _unsupported(name, "relative_step", False, "the implementation needs an lr without relative_step")
        if a["warmup_init"] and not a["relative_step"]:
            raise _unsupported(name, "warmup_init", True, "warmup_init needs relative_step=True")
        lr = 1e-2 if a["relative_step"] else a[lr_key]
        return dict(lr=lr, beta2_decay=a["decay_rate"], eps=tuple(a[eps_key]), d=a["clip_threshold"],
                    weight_decay=a["weight_decay"], beta1=a["beta1"] or 0.0, relative_step=a["relative_step"],
                    warmup_init=a["warmup_init"], scale_parameter=a["scale_parameter"], factored="last_two",
                    weight_decay_mode="relative")

    return to_hyper


_add(
    "transformers.Adafactor",
    "adafactor",
    "huggingface/transformers src/transformers/optimization.py Adafactor (5.25.0; a copy of fairseq's)",
    dict(lr=None, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8, beta1=None, weight_decay=0.0,
         scale_parameter=True, relative_step=True, warmup_init=False),
    _hf_adafactor("transformers.Adafactor", "lr", "eps"),
    notes="relative step min(1e-2, 1/√t) (lr must be None then); β1 on the scaled update; weight decay θ - λα_tθ; "
          "half-precision params are computed in float32 there (refopt takes float32/float64 only)",
)
_add(
    "torch_optimizer.Adafactor",
    "adafactor",
    "jettify/pytorch-optimizer torch_optimizer/adafactor.py (0.3.0)",
    dict(lr=None, eps2=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8, beta1=None, weight_decay=0.0,
         scale_parameter=True, relative_step=True, warmup_init=False),
    _hf_adafactor("torch_optimizer.Adafactor", "lr", "eps2"),
    notes="HF's algorithm; lr is ignored when relative_step=True; for arrays of ndim >= 3 its _approx_sq_grad "
          "(mean without keepdim) raises or mis-broadcasts -- refopt computes the intended statistics",
)


def _optax_adafactor(a):
    name = "optax.adafactor"
    _no(name, a, "decay_offset", 0, "the β̂2 schedule starts at step 0")
    _no(name, a, "weight_decay_mask", None, "weight decay applies to every array")
    if a["clipping_threshold"] is None:
        raise _unsupported(name, "clipping_threshold", None, "update clipping is always on (pass a large d)")
    if a["momentum"] is not None and _dtype_name(a["dtype_momentum"]) != "float64":
        raise _unsupported(name, "dtype_momentum", _dtype_name(a["dtype_momentum"]),
                           "the first moment has the params' dtype; pass dtype_momentum=jnp.float64 with float64 params")
    lr = 1.0 if a["learning_rate"] is None else a["learning_rate"]
    return dict(lr=lr, relative_step=False, beta2_decay=-a["decay_rate"], eps=(a["eps"], 1e-3),
                d=a["clipping_threshold"], scale_parameter=a["multiply_by_parameter_scale"],
                beta1=a["momentum"] or 0.0, weight_decay=a["weight_decay_rate"] or 0.0, weight_decay_mode="unscaled",
                factored="two_largest" if a["factored"] else "none",
                min_dim_size_to_factor=int(a["min_dim_size_to_factor"]), decay_dtype="float32")


_add(
    "optax.adafactor",
    "adafactor",
    "google-deepmind/optax optax/_src/alias.py adafactor, optax/_src/factorized.py scale_by_factored_rms (0.2.8)",
    dict(learning_rate=None, min_dim_size_to_factor=128, decay_rate=0.8, decay_offset=0,
         multiply_by_parameter_scale=True, clipping_threshold=1.0, momentum=None, dtype_momentum="float32",
         weight_decay_rate=None, eps=1e-30, factored=True, weight_decay_mask=None),
    _optax_adafactor,
    notes="no relative step: learning_rate=None means a step of 1·max(1e-3, RMS(θ))·Û; factors the two largest "
          "axes only if the smaller has >= min_dim_size_to_factor (128) entries; β̂2t in float32; weight decay "
          "added to the scaled update (not lr-scaled)",
    inert=("dtype_momentum",),
)


def _keras_adafactor(a):
    name = "keras.optimizers.Adafactor"
    for key in ("clipnorm", "clipvalue", "global_clipnorm", "loss_scale_factor", "gradient_accumulation_steps"):
        _no(name, a, key, None, "compose a refopt.transforms clip or scale the gradient yourself")
    _no(name, a, "use_ema", False, "an EMA of the weights is not part of the update rule")
    wd = a["weight_decay"]
    # keras always takes ρ_t = min(lr, 1/√t) and scales by max(ε2, RMS(θ)), whatever relative_step says
    return dict(lr=_keras_lr(a), beta2_decay=a["beta_2_decay"], eps=(a["epsilon_1"], a["epsilon_2"]),
                d=a["clip_threshold"], factored="last_two", weight_decay=wd or 0.0, weight_decay_mode="lr_first",
                alpha_float32=True)


_add(
    "keras.optimizers.Adafactor",
    "adafactor",
    "keras-team/keras keras/src/optimizers/adafactor.py; weight decay in base_optimizer.py (θ - θ·λ·lr) (3.15.1)",
    dict(learning_rate=0.001, beta_2_decay=-0.8, epsilon_1=1e-30, epsilon_2=1e-3, clip_threshold=1.0,
         relative_step=True, **_KERAS_COMMON),
    _keras_adafactor,
    notes="ρ_t = min(learning_rate, 1/√t) whether or not relative_step is set (the default 1e-3 is 10x the "
          "paper's 1e-2); learning_rate rounded to float32 (a Keras Variable); α_t evaluated in float32",
    inert=("relative_step", "ema_momentum", "ema_overwrite_frequency", "name"),
)


def _po_adafactor(a):
    name = "pytorch_optimizer.AdaFactor"
    _no(name, a, "ams_bound", False, "the AMSBound form is not in the paper")
    _no(name, a, "fixed_decay", False, "only the lr-scaled decoupled decay is reproduced")
    _no(name, a, "weight_decouple", True, "only the decoupled decay θ - λα_tθ is reproduced")
    betas = tuple(a["betas"])
    if len(betas) != 2:
        raise _unsupported(name, "betas", betas, "a third beta (CAME-style) is not reproduced")
    beta1, beta2 = betas
    if beta1 is not None and _dtype_name(a["momentum_dtype"]) not in ("float64",):
        raise _unsupported(name, "momentum_dtype", _dtype_name(a["momentum_dtype"]),
                           "a momentum buffer in another dtype than the params' is not reproduced; pass "
                           "momentum_dtype=torch.float64 with float64 params, or betas=(None, β2)")
    if a["warmup_init"] and not a["relative_step"]:
        raise _unsupported(name, "warmup_init", True, "warmup_init needs relative_step=True")
    lr = 1e-2 if a["relative_step"] else a["lr"]
    return dict(lr=lr, beta2_decay=a["decay_rate"], eps=(a["eps1"], a["eps2"]), d=a["clip_threshold"],
                weight_decay=a["weight_decay"], maximize=a["maximize"], beta1=beta1 or 0.0,
                relative_step=a["relative_step"], warmup_init=a["warmup_init"], scale_parameter=a["scale_parameter"],
                factored="last_two", weight_decay_mode="relative", beta2_cap=beta2)


_add(
    "pytorch_optimizer.AdaFactor",
    "adafactor",
    "kozistr/pytorch_optimizer pytorch_optimizer/optimizer/adafactor.py (4.1.0)",
    dict(lr=1e-3, betas=(0.9, 0.999), decay_rate=-0.8, weight_decay=0.0, weight_decouple=True, fixed_decay=False,
         clip_threshold=1.0, ams_bound=False, scale_parameter=True, relative_step=True, warmup_init=False,
         eps1=1e-30, eps2=1e-3, momentum_dtype="bfloat16", foreach=None, maximize=False),
    _po_adafactor,
    notes="its default first moment lives in a bfloat16 buffer, which refopt does not reproduce (refused; "
          "betas=(None, 0.999) or momentum_dtype=torch.float64); β̂2t capped at betas[1]; lr ignored when "
          "relative_step=True",
    inert=("foreach", "momentum_dtype"),
)


def _optax_fromage(a):
    return dict(lr=a["learning_rate"], min_norm=a["min_norm"])


_add(
    "optax.fromage",
    "fromage",
    "google-deepmind/optax optax/_src/alias.py fromage, transform.py scale_by_trust_ratio (0.2.8)",
    dict(learning_rate=REQUIRED, min_norm=1e-6),
    _optax_fromage,
    notes="norms floored at min_norm; evaluated as θ + (-η/√(1+η²)) r g + (1/√(1+η²) - 1) θ: equal up to rounding",
)
_add(
    "pytorch_optimizer.Fromage",
    "fromage",
    "kozistr/pytorch_optimizer pytorch_optimizer/optimizer/fromage.py (4.1.0; the maths of jxbz/fromage fromage.py)",
    dict(lr=1e-2, p_bound=None, maximize=False, foreach=None),
    lambda a: dict(lr=a["lr"], p_bound=a["p_bound"], maximize=a["maximize"]),
    notes="r = 1 (a plain SGD step) when a norm is 0; p_bound stored from the first step's params",
    inert=("foreach",),
)
def _adabelief_repo_msvag(a):
    beta1, beta2 = tuple(a["betas"])
    return dict(lr=a["lr"], beta=beta1, beta2=beta2, rho_cap=None, clamp=False, rho_form="adabelief_repo",
                weight_decay=a["weight_decay"])


_add(
    "optimizers.MSVAG",
    "msvag",
    "juntang-zhuang/Adabelief-Optimizer PyTorch_Experiments/classification_cifar10/optimizers/MSVAG.py @ 2855178 "
    "(the AdaBelief paper's M-SVAG baseline; imported there as optimizers.MSVAG)",
    dict(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0),
    _adabelief_repo_msvag,
    notes="v is an EMA with β1 bias-corrected with β2; no ρ cap (no step at t = 1), no clamp of γ; coupled L2 "
          "weight decay; reproduced from the repository's numbers (no package to run)",
)
_add(
    "pytorch_optimizer.MSVAG",
    "msvag",
    "kozistr/pytorch_optimizer pytorch_optimizer/optimizer/msvag.py (4.1.0; a port of lballes/msvag msvag.py)",
    dict(lr=1e-2, beta=0.9, maximize=False, foreach=None),
    lambda a: dict(lr=a["lr"], beta=a["beta"], maximize=a["maximize"], ema="lerp"),
    notes="ρ capped at 0.9999, γ: NaN -> 0 then clipped to [0, 1]; first moment via lerp",
    inert=("foreach",),
)

# ---------------------------------------------------------------------------------------
# NAdam, Adamax, Yogi, AdaBound / AMSBound (refopt.rules.nadam, adamax, yogi, adabound)
# ---------------------------------------------------------------------------------------

_add(
    "torch.optim.NAdam",
    "nadam",
    "pytorch/pytorch torch/optim/nadam.py (2.13)",
    dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3, decoupled_weight_decay=False,
         foreach=None, maximize=False, capturable=False, differentiable=False),
    lambda a: dict(lr=a["lr"], betas=tuple(a["betas"]), eps=a["eps"], weight_decay=a["weight_decay"],
                   momentum_decay=a["momentum_decay"], decoupled_weight_decay=a["decoupled_weight_decay"],
                   maximize=a["maximize"], schedule="torch", ema="lerp"),
    notes="μ_t = β1(1 - ½·0.96^{tψ}); torch keeps the μ product in its default dtype, so compare float64 runs "
    "under torch.set_default_dtype(torch.float64) (known bug torch-nadam-mu-product-dtype)",
    inert=("foreach", "capturable", "differentiable"),
)
_add(
    "torch.optim.Adamax",
    "adamax",
    "pytorch/pytorch torch/optim/adamax.py (2.13)",
    dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, foreach=None, maximize=False, differentiable=False,
         capturable=False),
    lambda a: dict(lr=a["lr"], betas=tuple(a["betas"]), eps=a["eps"], weight_decay=a["weight_decay"],
                   maximize=a["maximize"], eps_mode="in_max", ema="lerp"),
    notes="u = max(β2 u, |g| + ε): ε inside the maximum and stored in u; first moment via lerp",
    inert=("foreach", "differentiable", "capturable"),
)
_add(
    "optax.adamax",
    "adamax",
    "google-deepmind/optax optax/_src/alias.py adamax, transform.py scale_by_adamax (0.2.8)",
    dict(learning_rate=REQUIRED, b1=0.9, b2=0.999, eps=1e-8),
    lambda a: dict(lr=a["learning_rate"], betas=(a["b1"], a["b2"]), eps=a["eps"], eps_mode="in_max"),
    notes="u = max(|g| + ε, β2 u); optax divides the bias-corrected m̂ by u, then scales by -lr (rounding only)",
)


def _optax_adamaxw(a):
    _no("optax.adamaxw", a, "mask", None, "weight decay applies to every parameter array")
    return dict(lr=a["learning_rate"], betas=(a["b1"], a["b2"]), eps=a["eps"], eps_mode="in_max",
                weight_decay=a["weight_decay"], decoupled_weight_decay=True)


_add(
    "optax.adamaxw",
    "adamax",
    "google-deepmind/optax optax/_src/alias.py adamaxw (scale_by_adamax, add_decayed_weights) (0.2.8)",
    dict(learning_rate=REQUIRED, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4, mask=None),
    _optax_adamaxw,
    notes="optax subtracts lr·(u + λθ); refopt computes θ(1 - γλ) - γu: equal up to rounding",
)


def _keras_nadam(a):
    return dict(lr=_keras_lr(a), betas=(a["beta_1"], a["beta_2"]), eps=a["epsilon"], schedule="keras3",
                **_keras_common("keras.optimizers.Nadam", a))


_add(
    "keras.optimizers.Nadam",
    "nadam",
    "keras-team/keras keras/src/optimizers/nadam.py (3.15)",
    dict(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **_KERAS_COMMON),
    _keras_nadam,
    notes="μ_t = β1(1 - ½·0.96^t): Keras 3 dropped tf.keras's 0.004 factor (μ_1 = 0.468, torch 0.450); one μ "
    "product per optimizer, computed in the parameters' dtype (ulp-level in float32); with floatx float32 Keras "
    "rounds a weight-decayed float64 variable to float32 (not reproduced)",
    inert=("ema_momentum", "ema_overwrite_frequency", "name"),
)


def _keras_adamax(a):
    return dict(lr=_keras_lr(a), betas=(a["beta_1"], a["beta_2"]), eps=a["epsilon"], eps_mode="in_denominator",
                **_keras_common("keras.optimizers.Adamax", a))


_add(
    "keras.optimizers.Adamax",
    "adamax",
    "keras-team/keras keras/src/optimizers/adamax.py (3.15)",
    dict(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **_KERAS_COMMON),
    _keras_adamax,
    notes="u = max(β2 u, |g|) without ε; θ -= (γ m)/((1 - β1^t)(u + ε)); with floatx float32 Keras rounds a "
    "weight-decayed float64 variable to float32 (not reproduced)",
    inert=("ema_momentum", "ema_overwrite_frequency", "name"),
)


def _optax_yogi(a):
    return dict(lr=a["learning_rate"], betas=(a["b1"], a["b2"]), eps=a["eps"], initial_accumulator_value=1e-6,
                initial_momentum_value=1e-6, eps_mode="after_bias_correction")


_add(
    "optax.yogi",
    "yogi",
    "google-deepmind/optax optax/_src/alias.py yogi, transform.py scale_by_yogi (0.2.8)",
    dict(learning_rate=REQUIRED, b1=0.9, b2=0.999, eps=1e-3),
    _optax_yogi,
    notes="both moments start at 1e-6 (scale_by_yogi's initial_accumulator_value, not exposed by optax.yogi); "
    "m̂/(√v̂ + ε) after bias correction",
)


def _torch_optimizer_yogi(a):
    return dict(lr=a["lr"], betas=tuple(a["betas"]), eps=a["eps"], initial_accumulator_value=a["initial_accumulator"],
                initial_momentum_value=a["initial_accumulator"], weight_decay=a["weight_decay"],
                eps_mode="after_bias_correction")


_add(
    "torch_optimizer.Yogi",
    "yogi",
    "jettify/pytorch-optimizer torch_optimizer/yogi.py (torch-optimizer 0.3.0)",
    dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-3, initial_accumulator=1e-6, weight_decay=0.0),
    _torch_optimizer_yogi,
    notes="initial_accumulator starts both moments (TF-Addons starts only v there); ε after bias correction; "
    "coupled L2",
)


def _po_yogi(a):
    return dict(lr=a["lr"], betas=tuple(a["betas"]), eps=a["eps"], initial_accumulator_value=a["initial_accumulator"],
                initial_momentum_value=a["initial_accumulator"], weight_decay=a["weight_decay"],
                decoupled_weight_decay=a["weight_decouple"], fixed_decay=a["fixed_decay"], maximize=a["maximize"],
                eps_mode="after_bias_correction", ema="lerp")


_add(
    "pytorch_optimizer.Yogi",
    "yogi",
    "kozistr/pytorch_optimizer pytorch_optimizer/optimizer/yogi.py (4.1.0)",
    dict(lr=1e-2, betas=(0.9, 0.999), initial_accumulator=1e-6, weight_decay=0.0, weight_decouple=True,
         fixed_decay=False, eps=1e-3, maximize=False, foreach=None),
    _po_yogi,
    notes="as torch-optimizer, with decoupled weight decay by default and a lerp first moment",
    inert=("foreach",),
)


def _luolc_adabound(name):
    def to_hyper(a):
        if not 0.0 <= a["gamma"] < 1.0:  # the package refuses it ("Invalid gamma parameter")
            raise _unsupported(name, "gamma", a["gamma"], "the implementation accepts 0 <= gamma < 1 only")
        if a["gamma"] == 0.0:
            raise _unsupported(name, "gamma", a["gamma"], "the implementation divides by gamma·t at its first step")
        if a["lr"] == 0:
            raise _unsupported(name, "lr", a["lr"], "the implementation divides by the lr it was built with")
        return dict(lr=a["lr"], betas=tuple(a["betas"]), final_lr=a["final_lr"], gamma=a["gamma"], eps=a["eps"],
                    weight_decay=a["weight_decay"], amsbound=a["amsbound"])

    return to_hyper


_ADABOUND_ARGS = dict(lr=1e-3, betas=(0.9, 0.999), final_lr=0.1, gamma=1e-3, eps=1e-8, weight_decay=0.0,
                      amsbound=False)
_add(
    "adabound.AdaBound",
    "adabound",
    "Luolc/AdaBound adabound/adabound.py (adabound 0.0.5)",
    _ADABOUND_ARGS,
    _luolc_adabound("adabound.AdaBound"),
    notes="amsbound=True is AMSBound (the maximum of the raw v); the bounds are relative to the lr at construction "
    "(refopt's base_lr); coupled L2",
)
_add(
    "torch_optimizer.AdaBound",
    "adabound",
    "jettify/pytorch-optimizer torch_optimizer/adabound.py (torch-optimizer 0.3.0)",
    _ADABOUND_ARGS,
    _luolc_adabound("torch_optimizer.AdaBound"),
    notes="a line-for-line port of adabound 0.0.5",
)


def _po_adabound(a):
    return dict(lr=a["lr"], betas=tuple(a["betas"]), final_lr=a["final_lr"], gamma=a["gamma"], eps=a["eps"],
                weight_decay=a["weight_decay"], decoupled_weight_decay=a["weight_decouple"],
                fixed_decay=a["fixed_decay"], amsbound=a["ams_bound"], maximize=a["maximize"], eps_root=1e-15,
                ema="lerp")


_add(
    "pytorch_optimizer.AdaBound",
    "adabound",
    "kozistr/pytorch_optimizer pytorch_optimizer/optimizer/adabound.py (4.1.0)",
    dict(lr=1e-3, final_lr=0.1, betas=(0.9, 0.999), gamma=1e-3, weight_decay=0.0, weight_decouple=True,
         fixed_decay=False, ams_bound=False, eps=1e-8, maximize=False, foreach=None),
    _po_adabound,
    notes="a hard-coded 1e-15 inside the root (√(v + 1e-15) + ε); decoupled weight decay by default; ams_bound is "
    "AMSBound",
    inert=("foreach",),
)


def _po_adamax(a):
    return dict(lr=a["lr"], betas=tuple(a["betas"]), eps=a["eps"], weight_decay=a["weight_decay"],
                decoupled_weight_decay=a["weight_decouple"], fixed_decay=a["fixed_decay"], maximize=a["maximize"],
                eps_mode="in_max", ema="lerp")


_add(
    "pytorch_optimizer.AdaMax",
    "adamax",
    "kozistr/pytorch_optimizer pytorch_optimizer/optimizer/adamax.py (4.1.0)",
    dict(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0, weight_decouple=False, fixed_decay=False, eps=1e-8,
         maximize=False, foreach=None),
    _po_adamax,
    notes="torch.optim.Adamax's formula with lr 1e-3 and pytorch_optimizer's weight-decay options",
    inert=("foreach",),
)


# The releases each preset reproduces, where the release history says where that starts or
# ends (``refopt verify`` reports an installed version outside the range).  The sources are
# the ones each preset cites; Keras 3 rewrote the optimizers of tf.keras.
_VERSIONS = {
    "adabelief_pytorch.AdaBelief": ">=0.2.0",
    "adabelief_pytorch.AdaBelief@0.1.0": "==0.1.0",
    "adabelief_pytorch.AdaBelief@0.0.5": "==0.0.5",
    "torch_optimizer.AdaBelief": "==0.3.0",
    "torch_optimizer.DiffGrad": "==0.3.0",
    "pytorch_optimizer.AdaBelief": ">=4.0.0",
    "pytorch_optimizer.DiffGrad": ">=4.0.0",
    "optax.adabelief": ">=0.2.4",
    "torch.optim.SGD": ">=2.2",
    "adabound.AdaBound": "==0.0.5",
    "torch_optimizer.AdaBound": "==0.3.0",
    "torch_optimizer.Yogi": "==0.3.0",
    "pytorch_optimizer.AdaBound": ">=4.1.0",
    "pytorch_optimizer.Yogi": ">=4.1.0",
    "pytorch_optimizer.AdaMax": ">=4.1.0",
    **{n: ">=3.0" for n in _PRESETS if n.startswith("keras.optimizers.")},
}
for _name, _range in _VERSIONS.items():
    _PRESETS[_name] = dataclasses.replace(_PRESETS[_name], versions=_range)


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
