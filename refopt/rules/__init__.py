"""Update rules: pure ``init`` / ``step`` / ``trace`` functions of frozen hyper-parameters.

``refopt.rules.names()`` lists them; ``refopt.rules.get(name, **hyper)`` builds one by
name; each is also reachable under its name (``refopt.rules.adabelief(lr=1e-3)``).
Modules are imported on first use, so ``import refopt`` stays fast.
"""

from __future__ import annotations

import importlib

from ._base import Rule, State, suggest

# name -> (module, class): one module per algorithm family
_RULES: dict[str, tuple[str, str]] = {
    "sgd": ("_sgd", "SGD"),
    "adam": ("_adam", "Adam"),
    "adamw": ("_adam", "AdamW"),
    "amsgrad": ("_adam", "AMSGrad"),
    "radam": ("_adam", "RAdam"),
    "adabelief": ("_adabelief", "AdaBelief"),
    "diffgrad": ("_diffgrad", "DiffGrad"),
    "rmsprop": ("_rmsprop", "RMSprop"),
    "adagrad": ("_adagrad", "Adagrad"),
    "adadelta": ("_adadelta", "Adadelta"),
    "lion": ("_lion", "Lion"),
    "signsgd": ("_sign", "SignSGD"),
    "normalized_sgd": ("_sign", "NormalizedSGD"),
    "clipped_sgd": ("_clipped", "ClippedSGD"),
    "clipped_adam": ("_clipped", "ClippedAdam"),
    "adabound": ("_adabound", "AdaBound"),
    "amsbound": ("_adabound", "AMSBound"),
    "yogi": ("_yogi", "Yogi"),
    "adamax": ("_adamax", "Adamax"),
    "nadam": ("_nadam", "NAdam"),
    "msvag": ("_msvag", "MSVAG"),
    "fromage": ("_fromage", "Fromage"),
    "adafactor": ("_adafactor", "Adafactor"),
    "clipped_adafactor": ("_adafactor", "ClippedAdafactor"),
    "clipped_lion": ("_panli", "ClippedLion"),
    "clip_update_adam": ("_panli", "ClipUpdateAdam"),
    "clip_update_lion": ("_panli", "ClipUpdateLion"),
}


def names() -> list[str]:
    """Names of every update rule."""
    return list(_RULES)


def rule_class(name: str) -> type[Rule]:
    """The class of the rule called ``name``; ValueError with close matches when unknown."""
    if not isinstance(name, str) or name not in _RULES:
        raise ValueError(suggest(str(name), list(_RULES), "rule"))
    module, cls = _RULES[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def get(name: str, **hyper) -> Rule:
    """The rule called ``name`` with the given hyper-parameters."""
    return rule_class(name)(**hyper)


def __getattr__(name: str):
    if name in _RULES:
        return rule_class(name)
    raise AttributeError(f"module 'refopt.rules' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_RULES])


__all__ = ["Rule", "State", "names", "get", "rule_class", *_RULES]
