"""What ``refopt verify`` can check: built-in adapters for torch.optim and optax, and factories.

Host-side module (NumPy; torch, jax and optax are imported lazily, inside the adapters only).

A *target* turns one group of vectors into a *stepper*: a function ``(params, grads) ->
(params, slots)`` over NumPy arrays that keeps the target's own state between calls.
``slots`` maps refopt state names (``m``, ``v``, ...) to arrays when the target exposes its
state, else it is None; then only the parameters are compared.

Three kinds of target:

``torch.optim.Adam`` (any ``torch.optim.*`` preset)
    runs the real ``torch.optim`` class on a single tensor;
``optax.adam`` (any ``optax.*`` preset)
    runs the real optax transformation (float64 groups switch on ``jax_enable_x64``);
``module:callable`` or ``path/to/file.py:callable``
    a factory ``make(**hyper) -> step`` with ``step(params, grads, state) -> (params, state)``
    over NumPy arrays, ``state=None`` on the first call.  ``make`` receives refopt's
    hyper-parameter names (``lr``, ``betas``, ``eps``...): those the group sets and those its
    signature names; a group that sets an argument ``make`` does not take, to a value other
    than refopt's default, is skipped.  A ``state`` that is a dict of arrays named like
    refopt's slots is compared too; a third returned item, a dict, is ignored.

For a preset target, a group of vectors applies when some arguments of the implementation
make the preset build exactly the group's refopt configuration: the arguments are found by
inverting the preset's ``to_hyper`` (see :func:`invert`).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import presets, rules
from ..presets import REQUIRED
from ..rules._base import Pair, suggest
from ._data import DTYPES, VerifyError

ADAPTER_PREFIXES = ("torch.optim.", "optax.")
_LIBRARY = {"torch.optim.": "torch", "optax.": "optax"}

# torch.optim state key -> refopt slot name
TORCH_SLOTS = {
    "exp_avg": "m",
    "exp_avg_sq": "v",
    "max_exp_avg_sq": "v_max",
    "momentum_buffer": "b",
    "square_avg": "v",
    "grad_avg": "g_bar",
    "sum": "s",
    "acc_delta": "u",
}


def adapter_names() -> list[str]:
    """Every preset that has a built-in adapter (whether or not its library is installed)."""
    return [n for n in presets.names() if n.startswith(ADAPTER_PREFIXES)]


def _installed(name: str) -> bool:
    for prefix, module in _LIBRARY.items():
        if name.startswith(prefix):
            return importlib.util.find_spec(module) is not None
    return False


# ---------------------------------------------------------------------------------------
# inverting a preset: refopt configuration -> the implementation's own arguments
# ---------------------------------------------------------------------------------------


def flat_hyper(rule: rules.Rule) -> dict[str, Any]:
    """Validated hyper-parameters with pairs split: ``betas`` -> ``betas[0]``, ``betas[1]``."""
    out = {}
    for h in type(rule).HYPER:
        v = rule.hyper[h.name]
        if isinstance(h, Pair):
            for i, x in enumerate(v):
                out[f"{h.name}[{i}]"] = x
        else:
            out[h.name] = v
    return out


# options that change only the rounding of the same formula (the vectors' ulp:N class allows
# "lerp vs multiply-add EMAs"): a group that differs from a preset only in these still applies
ROUNDING_OPTIONS = ("ema",)


def same_config(a: rules.Rule, b: rules.Rule, ignore: tuple = ()) -> bool:
    if type(a) is not type(b):
        return False
    fa, fb = flat_hyper(a), flat_hyper(b)
    return all(fa[k] == fb[k] for k in fa if k not in ignore)


@dataclass
class _Mapping:
    numeric: list[tuple[str, int | None, str]] = field(default_factory=list)  # (arg, component, refopt key)
    tables: list[tuple[str, str, dict]] = field(default_factory=list)  # (arg, refopt key, {arg value: refopt value})


_PROBED: dict[str, tuple[dict, _Mapping]] = {}


def _build(preset, args):
    try:
        return preset.build(**args)
    except (ValueError, TypeError):
        return None


def _probe(preset) -> tuple[dict, _Mapping]:
    """Which implementation argument sets which refopt hyper-parameter, found by trying values.

    Each numeric argument is set to a distinctive value and the refopt key that takes that
    value is recorded; each bool argument is flipped and every refopt key that changes is
    recorded with its value for both settings.
    """
    if preset.name in _PROBED:
        return _PROBED[preset.name]
    base_args = {k: (1e-3 if v is REQUIRED else v) for k, v in preset.args.items()}
    mapping = _Mapping()
    base = _build(preset, base_args)
    if base is None:
        _PROBED[preset.name] = (base_args, mapping)
        return base_args, mapping
    flat0 = flat_hyper(base)
    probes: dict[str, Any] = {}
    for i, (arg, default) in enumerate(preset.args.items()):
        if arg in preset.inert or isinstance(default, bool):
            continue
        if isinstance(default, tuple):
            comps = [(j, 0.0123 + 0.0011 * i + 0.0003 * j) for j in range(len(default))]
        elif default is None or default is REQUIRED or isinstance(default, (int, float)):
            comps = [(None, 0.0123 + 0.0011 * i)]
        else:
            continue
        for j, value in comps:
            trial = dict(base_args)
            if j is None:
                trial[arg] = value
            else:
                trial[arg] = tuple(value if k == j else x for k, x in enumerate(default))
            built = _build(preset, trial)
            if built is None:
                continue
            for key, x in flat_hyper(built).items():
                if x == value and flat0.get(key) != value:
                    mapping.numeric.append((arg, j, key))
                    probes[arg] = trial[arg]
                    break
    for arg, default in preset.args.items():
        if arg in preset.inert or not isinstance(default, bool):
            continue
        contexts = [base_args] + [{**base_args, a: v} for a, v in probes.items()]
        for ctx in contexts:
            b0 = _build(preset, ctx)
            b1 = _build(preset, {**ctx, arg: not default})
            if b0 is None or b1 is None:
                continue
            f0, f1 = flat_hyper(b0), flat_hyper(b1)
            for key in f0:
                if f0[key] != f1[key]:
                    mapping.tables.append((arg, key, {default: f0[key], (not default): f1[key]}))
            break
    _PROBED[preset.name] = (base_args, mapping)
    return base_args, mapping


def invert(preset, config: rules.Rule, exact: bool = True, ignore: tuple = ()) -> dict | None:
    """Arguments of ``preset``'s implementation that build ``config``, or None when none do.

    Options named in ``ignore`` (:data:`ROUNDING_OPTIONS`) may differ.

    With ``exact=False`` the numeric arguments are carried over and the bools left at their
    defaults, and the arguments are returned whenever the preset accepts them: "the preset
    with this group's learning rate, betas and epsilon".
    """
    if preset.rule != config.name:
        return None
    base_args, mapping = _probe(preset)
    flat = flat_hyper(config)
    args = {k: v for k, v in base_args.items()}
    for arg, comp, key in mapping.numeric:
        value = flat.get(key)
        if value is None:
            return None
        default = preset.args[arg]
        if default is None and key in flat and value == flat_hyper(_build(preset, base_args))[key]:
            continue  # optax's momentum=None is refopt's 0
        if comp is None:
            args[arg] = value
        else:
            current = list(args[arg])
            current[comp] = value
            args[arg] = tuple(current)
    if exact:
        for arg, key, table in mapping.tables:
            hits = [a for a, r in table.items() if r == flat.get(key)]
            if not hits and key in ignore:
                continue
            if not hits:
                return None
            args[arg] = hits[0] if args[arg] not in hits else args[arg]
    built = _build(preset, args)
    if built is None:
        return None
    if exact and not same_config(built, config, ignore):
        return None
    return args


# ---------------------------------------------------------------------------------------
# targets
# ---------------------------------------------------------------------------------------


class Target:
    """Base: ``name``, ``rule``, and ``prepare(group_config, group_hyper)``."""

    name: str
    rule: str | None
    kind: str

    def prepare(self, config: rules.Rule, stored: dict) -> tuple[dict, str] | str:
        """The arguments to start this target on a group and their readable form, or the reason
        (a string) why the target cannot be given this group's configuration."""
        raise NotImplementedError

    def start(self, args: dict, dtype: str) -> Callable:
        raise NotImplementedError


class PresetTarget(Target):
    """A torch.optim or optax optimizer, run through its own library."""

    kind = "adapter"

    def __init__(self, name: str):
        self.name = name
        self.preset = presets.describe(name)
        self.rule = self.preset.rule

    def prepare(self, config, stored):
        args = invert(self.preset, config, ignore=ROUNDING_OPTIONS)
        if args is None:
            loose = invert(self.preset, config, exact=False)
            built = _build(self.preset, loose) if loose is not None else None
            if built is None or type(built) is not type(config):
                return f"{self.name} cannot be given this configuration"
            have, want = flat_hyper(built), flat_hyper(config)
            diff = [f"{k}={want[k]!r}" for k in want if have.get(k) != want[k] and k not in ROUNDING_OPTIONS]
            return f"no {self.name} arguments give {', '.join(diff) or 'this configuration'}"
        shown = {k: v for k, v in args.items() if k not in self.preset.inert and v != self.preset.args.get(k)}
        text = ", ".join(f"{k}={v!r}" for k, v in shown.items()) or "defaults"
        built = flat_hyper(self.preset.build(**args))
        for k in ROUNDING_OPTIONS:
            if k in built and built[k] != config.hyper.get(k):
                text += f" ({self.name} evaluates {k}={built[k]!r}, the vectors {config.hyper.get(k)!r}: rounding only)"
        return args, text

    def accepts(self, key: str) -> bool:
        return key in self.preset.args

    def start(self, args, dtype):
        if self.name.startswith("torch.optim."):
            return _torch_stepper(self.name.split(".")[-1], args, dtype, self.preset.inert)
        return _optax_stepper(self.name.split(".", 1)[1], args, dtype)


def _torch_stepper(cls_name, args, dtype, inert):
    import torch

    cls = getattr(torch.optim, cls_name)
    kwargs = {k: v for k, v in args.items() if k not in inert}
    holder: dict[str, Any] = {}

    def step(params, grads):
        if "p" not in holder:
            holder["p"] = torch.nn.Parameter(torch.from_numpy(np.array(params, copy=True)))
            holder["opt"] = cls([holder["p"]], **kwargs)
        p, opt = holder["p"], holder["opt"]
        p.grad = torch.from_numpy(np.array(grads, copy=True))
        opt.step()
        slots = {}
        for key, value in opt.state[p].items():
            if key in TORCH_SLOTS and isinstance(value, torch.Tensor) and value.shape == p.shape:
                slots[TORCH_SLOTS[key]] = value.detach().numpy().copy()
        return p.detach().numpy().copy(), slots

    return step


def _optax_stepper(fn_name, args, dtype):
    import jax

    if dtype == "float64":  # idempotent; without it jax silently computes float64 inputs in float32
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import optax

    tx = getattr(optax, fn_name)(**args)
    holder: dict[str, Any] = {}

    def step(params, grads):
        p = holder.get("p")
        if p is None:
            p = jnp.asarray(params, dtype=DTYPES[dtype])
            holder["state"] = tx.init(p)
        updates, holder["state"] = tx.update(jnp.asarray(grads, dtype=DTYPES[dtype]), holder["state"], p)
        holder["p"] = optax.apply_updates(p, updates)
        return np.asarray(holder["p"]), None

    return step


class CallableTarget(Target):
    """A factory ``make(**hyper) -> step(params, grads, state) -> (params, state)``."""

    kind = "callable"

    def __init__(self, name: str, make: Callable, rule: str | None):
        self.name = name
        self.make = make
        self.rule = rule
        try:
            sig = inspect.signature(make)
        except (TypeError, ValueError):
            sig = None
        params = sig.parameters.values() if sig is not None else ()
        self.var_kw = sig is None or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        self.names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        self.extra: dict = {}

    def accepts(self, key: str) -> bool:
        return self.var_kw or key in self.names

    def prepare(self, config, stored):
        defaults = {h.name: h.default for h in type(config).HYPER}
        args = {}
        for key, value in config.hyper.items():
            if key in stored or (not self.var_kw and key in self.names):
                if self.accepts(key):
                    args[key] = value
                elif value != defaults.get(key):  # the group needs an argument the factory does not take
                    return f"it takes no argument {key!r} (the group has {key}={value!r})"
        args.update(self.extra)
        shown = {k: v for k, v in args.items() if k in stored or k in self.extra}
        return args, ", ".join(f"{k}={v!r}" for k, v in shown.items()) or "defaults"

    def start(self, args, dtype):
        try:
            user_step = self.make(**args)
        except Exception as exc:
            raise VerifyError(f"{self.name}({_short(args)}) raised {type(exc).__name__}: {exc}") from None
        if not callable(user_step):
            raise VerifyError(f"{self.name}(...) returned {type(user_step).__name__}, not a step function")
        holder: dict[str, Any] = {"state": None}

        def step(params, grads):
            out = user_step(params, grads, holder["state"])
            if not isinstance(out, tuple) or len(out) not in (2, 3):
                raise VerifyError(
                    f"the step function of {self.name} returned {type(out).__name__}; it must return "
                    f"(params, state)"
                )
            new_params, holder["state"] = out[0], out[1]
            state = holder["state"]
            slots = None
            if isinstance(state, dict) and all(isinstance(v, np.ndarray) for v in state.values()):
                slots = state
            return new_params, slots

        return step


def _short(args: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def _load_callable(text: str) -> Callable:
    module_name, _, attr = text.rpartition(":")
    if not module_name or not attr:
        raise VerifyError(f"target {text!r} must be 'module:callable' or 'file.py:callable'")
    try:
        if module_name.endswith(".py"):
            if not os.path.isfile(module_name):
                raise VerifyError(f"target {text!r}: no file {module_name!r}")
            spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(module_name))[0], module_name)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except VerifyError:
        raise
    except Exception as exc:
        raise VerifyError(f"target {text!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            known = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
            raise VerifyError(f"target {text!r}: " + suggest(part, known, f"callable in {module_name}"))
        obj = getattr(obj, part)
    if not callable(obj):
        raise VerifyError(f"target {text!r}: {attr} is a {type(obj).__name__}, not a callable factory")
    return obj


def resolve(target: Any, rule: str | None = None) -> Target:
    """A :class:`Target` for a preset name, a ``module:callable`` string, or a factory."""
    if rule is not None and rule not in rules.names():
        raise VerifyError(suggest(rule, rules.names(), "rule"))
    if callable(target) and not isinstance(target, str):
        if rule is None:
            raise VerifyError("a factory target needs the rule its vectors come from (rule=..., --rule)")
        return CallableTarget(getattr(target, "__qualname__", repr(target)), target, rule)
    if not isinstance(target, str):
        raise VerifyError(f"target must be a preset name or 'module:callable'; got {type(target).__name__}")
    if target in presets.names():
        if not target.startswith(ADAPTER_PREFIXES):
            raise VerifyError(
                f"{target} is a preset without a built-in adapter (adapters exist for torch.optim.* and optax.*); "
                f"wrap it in a factory and pass 'module:callable' with --rule {presets.describe(target).rule}"
            )
        if not _installed(target):
            lib = next(m for p, m in _LIBRARY.items() if target.startswith(p))
            raise VerifyError(f"{target}: {lib} is not installed, so its adapter cannot run")
        t = PresetTarget(target)
        if rule is not None and rule != t.rule:
            raise VerifyError(f"{target} is checked against the vectors of {t.rule!r}; --rule {rule!r} contradicts it")
        return t
    if ":" in target:
        if rule is None:
            raise VerifyError(f"target {target!r} needs --rule (the rule whose vectors it should reproduce)")
        return CallableTarget(target, _load_callable(target), rule)
    available = [n for n in adapter_names() if _installed(n)]
    raise VerifyError(
        suggest(target, available, "target") + "; or give 'module:callable' (a factory make(**hyper) -> step)"
    )
