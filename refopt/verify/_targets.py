"""What ``refopt verify`` can check: real implementations as they are, and factories.

Host-side module (NumPy; torch, jax, optax and keras are imported lazily, inside the adapters).

A *target* turns one group of vectors into a *stepper*: a function ``(params, grads) ->
(params, slots)`` over NumPy arrays that keeps the target's own state between calls.
``slots`` maps refopt state names (``m``, ``v``, ...) to arrays when the target exposes its
state under known names (``torch.optim`` classes), else it is None; then only the parameters
are compared.  A stepper may carry ``side_effects``: a dict, filled while it runs, of what
the target did to objects it was given (``"gradient-modified"``: the step at which it first
wrote into the gradient).

What a target can be, and how it is run:

a preset name (``refopt list presets``)
    the implementation the preset describes, imported from its package: ``torch.optim.*``,
    ``adabelief_pytorch.AdaBelief`` (and its ``@version`` presets), ``torch_optimizer.*``,
    ``pytorch_optimizer.*`` (torch optimizer classes), ``optax.*`` (functions returning a
    GradientTransformation) and ``keras.optimizers.*`` (Keras 3 classes, on whichever backend
    is installed: ``KERAS_BACKEND`` when set, else torch, jax, tensorflow in that order);
``module:Name`` or ``path/to/file.py:Name``
    recognised by what it is: a ``torch.optim.Optimizer`` subclass, a Keras optimizer class,
    a function returning an optax ``GradientTransformation``, or a factory ``make(**hyper) ->
    step`` with ``step(params, grads, state) -> (params, state)`` over NumPy arrays
    (``state=None`` on the first call; a dict of arrays named like refopt's slots is compared
    too; a third returned item is ignored).

Arguments.  A group of vectors is one refopt configuration; the arguments that make an
implementation compute it are found by inverting a preset (:func:`invert`): the target's own
preset, the one named with ``like=`` (``--like``), or, for a class or optax function given as
``module:Name``, the ``torch.optim``/``keras.optimizers``/``optax`` preset of the rule when there
is one.  Without a preset (plain factories, and rules no library has) refopt's own names are
passed.  Only the arguments that the target's signature names are passed -- a ``**kwargs``
that would swallow anything does not count, except for a plain factory, whose contract is
``make(**hyper)``; a group that needs an argument the target does not take, at a value other
than its default, is skipped and listed with the reason, never failed.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import io
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import presets, rules
from ..presets import REQUIRED
from ..rules._base import Pair, suggest
from ._data import DTYPES, VerifyError

# preset name prefix -> (module imported to run it, its PyPI package)
FAMILIES = {
    "torch.optim.": ("torch", "torch"),
    "optax.": ("optax", "optax"),
    "keras.optimizers.": ("keras", "keras"),
    "adabelief_pytorch.": ("adabelief_pytorch", "adabelief-pytorch"),
    "torch_optimizer.": ("torch_optimizer", "torch-optimizer"),
    "pytorch_optimizer.": ("pytorch_optimizer", "pytorch_optimizer"),
    "transformers.": ("transformers", "transformers"),
    "optimizers.": ("optimizers", ""),  # the AdaBelief repository's experiment folder (no package)
    "adabound.": ("adabound", "adabound"),
}
ADAPTER_PREFIXES = tuple(FAMILIES)

# torch.optim state key -> refopt slot name (compared only for torch.optim's own classes:
# other packages reuse the names for other quantities)
TORCH_SLOTS = {
    "exp_avg": "m",
    "exp_avg_sq": "v",
    "max_exp_avg_sq": "v_max",
    "momentum_buffer": "b",
    "square_avg": "v",
    "grad_avg": "g_bar",
    "sum": "s",
    "acc_delta": "u",
    "variance": "v",  # Adafactor's unfactored second moment (its row_var/col_var keep reduced shapes)
}

KINDS = {
    "torch": "torch.optim.Optimizer subclass",
    "keras": "Keras optimizer class",
    "optax": "function returning an optax GradientTransformation",
    "factory": "factory make(**hyper) -> step",
}


def adapter_names() -> list[str]:
    """Every preset that has a built-in adapter (whether or not its package is installed)."""
    return [n for n in presets.names() if n.startswith(ADAPTER_PREFIXES)]


def _family(name: str) -> tuple[str, str] | None:
    return next((v for prefix, v in FAMILIES.items() if name.startswith(prefix)), None)


def _installed(name: str) -> bool:
    fam = _family(name)
    return fam is not None and importlib.util.find_spec(fam[0]) is not None


def package_version(package: str | None) -> str | None:
    """The installed version of a PyPI package, or None."""
    if not package:
        return None
    for candidate in (package, package.replace("-", "_"), package.replace("_", "-")):
        try:
            return importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def package_of(obj: Any) -> str | None:
    """The PyPI package that provides ``obj``'s top-level module (None for a local file)."""
    top = (getattr(obj, "__module__", None) or "").split(".")[0]
    if not top:
        return None
    try:
        dists = importlib.metadata.packages_distributions().get(top)
    except Exception:  # pragma: no cover - broken metadata of some unrelated package
        dists = None
    return dists[0] if dists else None


def _keras_backend() -> None:
    """Keras 3 reads KERAS_BACKEND once, at import: pick an installed backend unless the user did."""
    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND"):
        return
    for backend, module in (("torch", "torch"), ("jax", "jax"), ("tensorflow", "tensorflow")):
        if importlib.util.find_spec(module) is not None:
            os.environ["KERAS_BACKEND"] = backend
            return


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
    base_args.update(presets.RUNNABLE_ARGS.get(preset.name, {}))  # defaults that refopt refuses
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
            if b0 is None or b1 is None or type(b0) is not type(b1):  # optax.adam(nesterov=True) is NAdam
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
            default = preset.args[arg] if comp is None else preset.args[arg][comp]
            if default is None and key in flat:
                continue  # None given as None (torch Adafactor's eps=(None, ε2), Fromage's p_bound)
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


def _signature(obj: Any) -> tuple[set, bool]:
    """(the parameter names it takes by keyword, whether it has ``**kwargs``) of a function,
    or of a class's constructor (``self`` and a torch optimizer's ``params`` left out)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return set(), True
    ps = sig.parameters.values()
    names = {p.name for p in ps if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if inspect.isclass(obj):
        names.discard("params")
    return names, any(p.kind is p.VAR_KEYWORD for p in ps)


def kind_of(obj: Any, name: str) -> str:
    """``"torch"``, ``"keras"``, ``"optax"`` or ``"factory"`` (see :data:`KINDS`)."""
    if inspect.isclass(obj):
        torch = sys.modules.get("torch")
        if torch is not None and issubclass(obj, torch.optim.Optimizer):
            return "torch"
        keras = sys.modules.get("keras")
        if keras is not None and issubclass(obj, keras.optimizers.Optimizer):
            return "keras"
        raise VerifyError(f"target {name!r} is a class but neither a torch.optim.Optimizer subclass nor a Keras "
                          f"optimizer; give such a class, an optax-style function or a factory make(**hyper) -> step")
    if not callable(obj):
        raise VerifyError(f"target {name!r} is a {type(obj).__name__}, not a class or a callable factory")
    if (getattr(obj, "__module__", None) or "").split(".")[0] == "optax":
        return "optax"
    return "factory"  # a factory whose result has init/update is run as an optax transformation


def default_mapping(kind: str, rule: str) -> presets.Preset | None:
    """The preset whose argument names a ``module:Name`` target of this kind follows by default."""
    prefix = {"torch": "torch.optim.", "keras": "keras.optimizers.", "optax": "optax."}.get(kind)
    if prefix is None:
        return None
    return next((presets.describe(n) for n in presets.names()
                 if n.startswith(prefix) and presets.describe(n).rule == rule), None)


class Target:
    """One implementation to verify: what it is, how its arguments are named, how to run it.

    ``preset``: the preset the target *is* (a preset name was given), or None.
    ``mapping``: the preset whose argument names and conventions it follows (``preset``, the
    ``like`` preset, or :func:`default_mapping`), or None for refopt's own names.
    """

    def __init__(self, name: str, obj: Any, rule: str, kind: str, *, preset: presets.Preset | None = None,
                 mapping: presets.Preset | None = None, package: str | None = None):
        self.name, self.obj, self.rule, self.kind = name, obj, rule, kind
        self.preset = preset
        self.mapping = mapping
        self.package = package if package is not None else package_of(obj)
        self.version = package_version(self.package)
        self.names, self.var_kw = _signature(obj)
        self.extra: dict = {}  # more arguments from --hyper (not refopt hyper-parameters)

    @property
    def kind_text(self) -> str:
        return KINDS[self.kind]

    def accepts(self, key: str) -> bool:
        """Whether ``key`` can be passed: named in the signature (a plain factory's ``**hyper``
        takes anything)."""
        return key in self.names or (self.kind == "factory" and self.var_kw)

    def prepare(self, config: rules.Rule, stored: dict) -> tuple[dict, str] | str:
        """The arguments to start this target on a group and their readable form, or the reason
        (a string) why the target cannot be given this group's configuration."""
        if self.mapping is None:
            return self._prepare_own_names(config, stored)
        return self._prepare_preset(config)

    def _prepare_preset(self, config):
        preset = self.mapping
        args = invert(preset, config, ignore=ROUNDING_OPTIONS)
        if args is None:
            loose = invert(preset, config, exact=False)
            built = _build(preset, loose) if loose is not None else None
            if built is None or type(built) is not type(config):
                return f"{preset.name} cannot be given this configuration"
            have, want = flat_hyper(built), flat_hyper(config)
            diff = [f"{k}={want[k]!r}" for k in want if have.get(k) != want[k] and k not in ROUNDING_OPTIONS]
            return f"no {preset.name} arguments give {', '.join(diff) or 'this configuration'}"
        passed = {}
        for key, value in args.items():
            if key in preset.inert:
                continue
            if self.accepts(key):
                passed[key] = value
            elif value != preset.args.get(key):
                return f"{self.name} takes no argument {key!r} (the group needs {key}={value!r})"
        passed.update(self.extra)
        shown = {k: v for k, v in passed.items() if v != preset.args.get(k)}
        text = ", ".join(f"{k}={v!r}" for k, v in shown.items()) or "defaults"
        built = flat_hyper(preset.build(**args))
        for k in ROUNDING_OPTIONS:
            if k in built and built[k] != config.hyper.get(k):
                text += f" ({preset.name} evaluates {k}={built[k]!r}, the vectors {config.hyper.get(k)!r}: rounding only)"
        return passed, text

    def _prepare_own_names(self, config, stored):
        defaults = {h.name: h.default for h in type(config).HYPER}
        args = {}
        for key, value in config.hyper.items():
            if key in stored or key in self.names:
                if self.accepts(key):
                    args[key] = value
                elif value != defaults.get(key):  # the group needs an argument the target does not take
                    return f"it takes no argument {key!r} (the group has {key}={value!r})"
        args.update(self.extra)
        shown = {k: v for k, v in args.items() if k in stored or k in self.extra}
        return args, ", ".join(f"{k}={v!r}" for k, v in shown.items()) or "defaults"

    def case_skip_reason(self, case) -> str | None:
        """Why one case of an applicable group cannot be run through this target, or None."""
        xla = self.kind == "optax" or (self.kind == "keras" and os.environ.get("KERAS_BACKEND") == "jax")
        if xla and "subnormal" in case.flags:
            return ("XLA flushes subnormal numbers to zero on CPU and GPU (jax's default), so this case's "
                    "subnormal inputs read as 0 there; refopt keeps them")
        shapes = case.shape.values() if isinstance(case.shape, dict) else [case.shape]
        if self.name == "torch_optimizer.Adafactor" and any(len(s) >= 3 for s in shapes):
            return ("torch-optimizer's Adafactor takes the row mean without keepdim, so an array of ndim >= 3 "
                    "raises or is mis-broadcast (specs/rules/adafactor.toml, discrepancy A3)")
        if self.name == "keras.optimizers.Adafactor" and case.dtype == "float64":
            return ("Keras 3 computes parts of Adafactor's float64 step in float32 (ops.mean casts float64 to "
                    "float32 on the torch backend; other backends differ), so its float64 steps agree with "
                    "refopt only to about 1e-7")
        return None

    def start(self, args: dict, dtype: str) -> Callable:
        """A fresh stepper for one case."""
        if self.kind == "torch":
            known = (getattr(self.obj, "__module__", "") or "").startswith("torch.optim")
            return _torch_stepper(self.obj, args, self.name, known)
        if self.kind == "keras":
            return _keras_stepper(self.obj, args, dtype, self.name)
        made = _call(self.name, self.obj, args)
        if hasattr(made, "init") and hasattr(made, "update"):
            return _transformation_stepper(made, dtype)
        if self.kind == "optax":
            raise VerifyError(f"{self.name}({_short(args)}) returned {type(made).__name__}, not a GradientTransformation")
        if not callable(made):
            raise VerifyError(f"{self.name}(...) returned {type(made).__name__}, not a step function")
        return _factory_stepper(made, self.name)


def _call(name: str, fn: Callable, args: dict) -> Any:
    try:
        with _quiet():
            return fn(**args)
    except VerifyError:
        raise
    except Exception as exc:
        raise VerifyError(f"{name}({_short(args)}) raised {type(exc).__name__}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else ""


@contextlib.contextmanager
def _quiet():
    """Keep what an implementation prints (adabelief-pytorch's change log) out of the report."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _leaves(tree: Any) -> tuple[list, list | None]:
    if isinstance(tree, dict):
        return list(tree.values()), list(tree)
    return [tree], None


def _rebuild(leaves: list, keys: list | None) -> Any:
    return dict(zip(keys, leaves)) if keys is not None else leaves[0]


@contextlib.contextmanager
def _torch_default_dtype(torch, dtype):
    """torch keeps some per-step scalars in its *default* dtype (NAdam's μ product): a float64 case runs
    with torch's default dtype float64, as torch's own float64 tests do (with the float32 default the
    product is accumulated in float32: the known bug torch-nadam-mu-product-dtype)."""
    saved = torch.get_default_dtype()
    if dtype == torch.float64:
        torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


def _torch_stepper(cls, kwargs: dict, name: str, known_slots: bool) -> Callable:
    import torch

    holder: dict[str, Any] = {"t": 0}
    effects: dict[str, int] = {}

    def step(params, grads):
        leaves, keys = _leaves(params)
        if "ps" not in holder:
            holder["ps"] = [torch.nn.Parameter(torch.from_numpy(np.array(x, copy=True))) for x in leaves]
            with _quiet(), _torch_default_dtype(torch, holder["ps"][0].dtype):
                holder["opt"] = cls(holder["ps"], **kwargs)
        ps, opt = holder["ps"], holder["opt"]
        holder["t"] += 1
        given = [np.array(g, copy=True) for g in _leaves(grads)[0]]
        for p, g in zip(ps, given):
            p.grad = torch.from_numpy(g.copy())
        with _quiet(), _torch_default_dtype(torch, ps[0].dtype):
            opt.step()
        if "gradient-modified" not in effects and any(
            not np.array_equal(p.grad.detach().numpy(), g, equal_nan=True) for p, g in zip(ps, given)
        ):
            effects["gradient-modified"] = holder["t"]
        slots = None
        if known_slots:
            per_leaf = [{TORCH_SLOTS[k]: v.detach().numpy().copy() for k, v in opt.state[p].items()
                         if k in TORCH_SLOTS and isinstance(v, torch.Tensor) and v.shape == p.shape} for p in ps]
            names = set.intersection(*(set(s) for s in per_leaf)) if per_leaf else set()
            slots = {n: _rebuild([s[n] for s in per_leaf], keys) for n in names}
        return _rebuild([p.detach().numpy().copy() for p in ps], keys), slots

    step.side_effects = effects
    return step


def _keras_stepper(cls, kwargs: dict, dtype: str, name: str) -> Callable:
    _keras_backend()
    import keras

    holder: dict[str, Any] = {}

    def step(params, grads):
        leaves, keys = _leaves(params)
        if "vars" not in holder:
            holder["vars"] = [keras.Variable(np.array(x, copy=True), dtype=dtype) for x in leaves]
            with _quiet():
                holder["opt"] = cls(**kwargs)
        gs = [keras.ops.convert_to_tensor(np.array(g, copy=True), dtype=dtype) for g in _leaves(grads)[0]]
        holder["opt"].apply_gradients(list(zip(gs, holder["vars"])))
        with warnings.catch_warnings():  # Keras' torch backend converts through a deprecated NumPy path
            warnings.simplefilter("ignore", DeprecationWarning)
            return _rebuild([np.array(keras.ops.convert_to_numpy(v.value)) for v in holder["vars"]], keys), None

    return step


def _transformation_stepper(tx, dtype: str) -> Callable:
    import jax

    if dtype == "float64":  # idempotent; without it jax silently computes float64 inputs in float32
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    holder: dict[str, Any] = {}

    def step(params, grads):
        p = holder.get("p")
        if p is None:
            p = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=DTYPES[dtype]), params)
            holder["state"] = tx.init(p)
        g = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=DTYPES[dtype]), grads)
        updates, holder["state"] = tx.update(g, holder["state"], p)
        holder["p"] = jax.tree_util.tree_map(lambda a, u: jnp.asarray(a + u).astype(a.dtype), p, updates)
        return jax.tree_util.tree_map(np.asarray, holder["p"]), None

    return step


def _factory_stepper(user_step: Callable, name: str) -> Callable:
    holder: dict[str, Any] = {"state": None}

    def step(params, grads):
        out = user_step(params, grads, holder["state"])
        if not isinstance(out, tuple) or len(out) not in (2, 3):
            raise VerifyError(f"the step function of {name} returned {type(out).__name__}; it must return "
                              f"(params, state)")
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
            if module_name.split(".")[0] == "keras":
                _keras_backend()
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



def _import_preset(name: str) -> Any:
    """The class or function a preset describes: ``pytorch_optimizer.DiffGrad`` ->
    ``pytorch_optimizer.DiffGrad``; ``adabelief_pytorch.AdaBelief@0.1.0`` -> the installed
    ``adabelief_pytorch.AdaBelief``."""
    module_name, _, attr = name.split("@")[0].rpartition(".")
    if module_name.startswith("keras"):
        _keras_backend()
    try:
        with _quiet():
            module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        package = _family(name)[1]
        raise VerifyError(f"{name}: the installed {package} has no {attr} ({type(exc).__name__}: "
                          f"{_first_line(exc)})") from None
    except Exception as exc:
        raise VerifyError(f"{name}: importing {module_name} raised {type(exc).__name__}: {_first_line(exc)}") from None


def resolve(target: Any, rule: str | None = None, like: str | None = None) -> Target:
    """A :class:`Target` for a preset name, a ``module:Name`` string, or a class/factory object.

    ``rule``: whose vectors (needed for ``module:Name`` and objects unless ``like`` says it);
    ``like``: the preset whose argument names and conventions the target follows.
    """
    if rule is not None and rule not in rules.names():
        raise VerifyError(suggest(rule, rules.names(), "rule"))
    mapping = None
    if like is not None:
        if like not in presets.names():
            raise VerifyError("--like: " + suggest(str(like), presets.names(), "preset"))
        mapping = presets.describe(like)
        if rule is not None and rule != mapping.rule:
            raise VerifyError(f"--like {like} follows the rule {mapping.rule!r}; --rule {rule!r} contradicts it")
        rule = mapping.rule
    if isinstance(target, str) and target in presets.names():
        if like is not None:
            raise VerifyError(f"--like is for module:Name targets; {target} is a preset and follows its own conventions")
        preset = presets.describe(target)
        fam = _family(target)
        if fam is None:
            raise VerifyError(f"{target} names no importable implementation; give 'module:Name' with --like {target}")
        if not _installed(target):
            if not fam[1]:  # a repository's folder, never released as a package
                raise VerifyError(f"{target}: the module {fam[0]!r} is not importable; it is a folder of the source "
                                  f"repository ({presets.describe(target).source}): put its parent folder on "
                                  f"PYTHONPATH")
            raise VerifyError(f"{target}: {fam[1]} is not installed, so its adapter cannot run (pip install {fam[1]})")
        if rule is not None and rule != preset.rule:
            raise VerifyError(f"{target} is checked against the vectors of {preset.rule!r}; --rule {rule!r} contradicts it")
        obj = _import_preset(target)
        return Target(target, obj, preset.rule, kind_of(obj, target), preset=preset, mapping=preset, package=fam[1])
    if isinstance(target, str) and ":" in target:
        if rule is None:
            raise VerifyError(f"target {target!r} needs --rule (the rule whose vectors it should reproduce) or --like")
        obj = _load_callable(target)
        name = target
    elif isinstance(target, str):
        available = [n for n in adapter_names() if _installed(n)]
        raise VerifyError(suggest(target, available, "target") + "; or give 'module:Name' (an optimizer class, an "
                          "optax-style function or a factory make(**hyper) -> step) with --rule")
    elif callable(target):
        if rule is None:
            raise VerifyError("a class or factory target needs the rule its vectors come from (rule=..., --rule)")
        obj, name = target, getattr(target, "__qualname__", repr(target))
    else:
        raise VerifyError(f"target must be a preset name or 'module:Name'; got {type(target).__name__}")
    kind = kind_of(obj, name)
    if mapping is None:
        mapping = default_mapping(kind, rule)
    return Target(name, obj, rule, kind, mapping=mapping)
