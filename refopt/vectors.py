"""Golden vectors: every rule's expected params, state and trace, step by step, as JSON.

Host-side module: it builds NumPy arrays, runs the rules on them and writes
the results, so it imports NumPy directly (the house rule that only ``refopt._array``
imports NumPy does not apply here, as for ``refopt.cli``).

One file per rule, ``specs/vectors/<rule>.json`` (``refopt/_specs/vectors`` in an installed
wheel), described by ``specs/schema/refopt_vectors_v1.schema.json`` and, for porters, by
``specs/README.md``.  The layout follows the conformance vectors of Wycheproof (C2SP/wycheproof,
``doc/formats.md``) and NIST CAVP's known-answer and Monte Carlo tests: a file holds *groups*
of shared hyper-parameters and dtype, a group holds *cases* with a stable id, a comment and
flags saying why the case exists (the flags are explained in the file's ``notes``); every case
lists its inputs (``params0``, ``grads`` for every step) and the expected ``params``,
``state`` and ``trace`` (every intermediate quantity, named as in the rule's spec) after
every step -- or, for the 1000-step chain, after the checkpoint steps only, like a Monte
Carlo test.  Each field carries a tolerance class (:data:`TOLERANCES`).

Numbers round-trip exactly: float64 values are written with Python's ``repr`` (shortest
decimal that reads back to the same double); float32 values with the shortest decimal that
reads back to the same float32 (``str(np.float32(x))``) -- parsing it as a double and then
rounding to float32 gives the value back, which :func:`encode` asserts; NaN and ±inf are
the strings ``"nan"``, ``"inf"``, ``"-inf"``.  Per-step scalars in traces (bias corrections,
...) are float64 in every group: refopt computes them on the host in float64 and rounds
them once to the parameters' dtype at use.

Generation is deterministic: inputs come from a small splitmix64 generator written here
(independent of NumPy's generator streams), keys are written in a fixed order, there are no
time stamps.  The two transcendental operations the rules use -- ``exp`` (diffGrad's friction
ξ) and the host's ``pow`` (bias corrections, RAdam's r_t) -- are *correctly rounded* while the
vectors are generated (computed with Python's ``decimal`` at 60 digits, then rounded once),
because NumPy's SIMD ``exp`` differs in the last bit between CPUs (AVX-512 vs AVX2 vs
baseline, measured) and ``pow`` comes from the platform's libm.  refopt on NumPy agrees with
the vectors to within 1 ulp in those quantities; everything else (+ - * / sqrt, comparisons,
sums in NumPy's fixed pairwise order) is bit-for-bit what refopt computes.  The substitution
(:func:`_reference_math`) patches ``array_api_compat.numpy.exp`` and ``refopt._array.host_power``
for the duration of :func:`generate` only; do not run refopt in other threads meanwhile.  ``refopt vectors --check`` (:func:`check`) regenerates every file in memory
and compares bytes.
"""

from __future__ import annotations

import contextlib
import decimal
import json
import math
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import __version__, presets, rules
from .rules._base import Choice, Flag, Int, Pair, Real

__all__ = [
    "SCHEMA",
    "FLAGS",
    "TOLERANCES",
    "specs_dir",
    "path",
    "schema_path",
    "load",
    "decode",
    "encode",
    "cases",
    "within",
    "generate",
    "dumps",
    "write",
    "check",
]

SCHEMA = "refopt_vectors_v1"
DTYPES = ("float64", "float32")

FLAGS: dict[str, str] = {
    "alternating_signs": "the gradient changes sign every step: moments cancel, EMA and state-carry bugs show",
    "factored": "params hold a vector, a matrix and a 3-D tensor: per-array norms and Adafactor's factored row/column statistics (last two axes)",
    "batched": "batch_axes=1: the leading axis indexes independent configurations (pooled quantities per row)",
    "defaults": "every hyper-parameter at the rule's default",
    "first_step": "starts from the initial state (t = 0 before the step): bias corrections at their extreme",
    "huge_gradient": "gradients of magnitude ~1e30: squares overflow float32 to inf (and stay finite in float64)",
    "long_chain": "1000 chained steps on the quartic of refopt explain's example (specs/README.md); only checkpoint steps are recorded",
    "multi_step": "several steps with every intermediate recorded after each step",
    "non_finite": "some expected value is NaN or ±inf (compare: same non-finite value at the same place)",
    "option": "a non-default option value (a numerical convention or variant)",
    "preset": "the group's hyper-parameters come from a refopt preset (a known implementation)",
    "sparse_gradient": "some gradient entries are exactly zero",
    "subnormal": "subnormal inputs; GPUs and fast-math builds may flush them to zero (FTZ/DAZ) and then differ",
    "tiny_gradient": "gradients of magnitude ~1e-30: squares underflow float32 to zero (and stay normal in float64)",
    "tree": "params are a dict of arrays: pooled quantities (norms, thresholds) span every leaf",
    "weight_decay": "weight decay is active",
    "zero_gradient": "the gradient is exactly zero (also from the zero initial state)",
}

TOLERANCES: dict[str, str] = {
    "exact": "the same value: integers and booleans equal; floats equal as numbers (NaN matches NaN, +0 matches -0)",
    "ulp:N": (
        "every element within N units in the last place of the field's largest finite magnitude, in the "
        "field's dtype: |actual - expected| <= N * ulp(max_j |expected_j|), ulp(x) = spacing at x "
        "(numpy.spacing), ulp(0) = the smallest subnormal; non-finite values must match exactly. Allows "
        "contraction into fused multiply-adds, lerp vs multiply-add EMAs, a correctly rounded or faithful exp, "
        "and the summation order of short reductions"
    ),
    "rtol:X": (
        "norm-wise relative: max_j |actual_j - expected_j| <= X * max_j |expected_j| over the field (for a "
        "scalar, |actual - expected| <= X * |expected|); non-finite values must match exactly. Used for host "
        "scalars computed by pow/sqrt in another order and for the long chains, where rounding differences "
        "accumulate over 1000 steps"
    ),
}

# tolerance classes per field kind (see _tolerance)
_ARRAY_TOL = "ulp:16"
_SCALAR_TOL = {"float64": "rtol:1e-13", "float32": "rtol:1e-6"}
_CHAIN_TOL = {"float64": "rtol:1e-11", "float32": "rtol:1e-3"}

# the quartic of refopt explain's example (refopt.cli.explain): g = A ⊙ θ + B + θ³
_QUARTIC_A = (3.0, 0.5, 10.0)
_QUARTIC_B = (0.5, -1.0, 0.2)
_QUARTIC_THETA0 = (1.0, -2.0, 0.5)
_CHAIN_STEPS = 1000
_CHAIN_EVERY = 100
# At their default learning rates RMSprop (no momentum) and Adadelta reach the quartic's minimum
# within a few hundred steps; there their normalized steps rattle and amplify a 1-ulp difference to
# 1e-2 within the chain.  Their chains run in a group of their own with a smaller lr, which stays
# in the smooth regime (measured: 1-ulp perturbations of params and state every step move the
# checkpoints by < 3e-14 in float64 and < 2e-5 in float32 for every rule).
_CHAIN_HYPER = {"rmsprop": {"lr": 1e-3}, "adadelta": {"lr": 0.1}}

# rules whose quantities are pooled over the whole tree: they get a dict-tree case
_POOLED = ("normalized_sgd", "clipped_sgd", "clipped_adam", "clipped_lion", "clip_update_adam", "clip_update_lion")

# rules that work per array (norms, factored statistics): their cases include a tree of a vector, a
# matrix and a 3-D tensor, in every group
_FACTORED_TREE = ("fromage", "adafactor", "clipped_adafactor")
_FACTORED_SHAPE = {"v": [3], "w": [2, 3], "x": [2, 2, 3]}

# values that switch on a real-valued option whose default is 0 (or None)
_OPTION_REALS = {
    "momentum": 0.9,
    "dampening": 0.5,
    "eps_root": 1e-12,
    "lr_decay": 0.01,
    "initial_accumulator_value": 0.1,
    "eps": 1e-8,
}
# what an option needs to have any effect
_COMPANIONS: dict[str, dict[str, Any]] = {
    "nesterov": {"momentum": 0.9},
    "dampening": {"momentum": 0.9},
    "buffer_init": {"momentum": 0.9},
    "lr_in_momentum": {"momentum": 0.9},
    "decoupled_weight_decay": {"weight_decay": 0.1},
    "weight_decouple": {"weight_decay": 0.1},
    "fixed_decay": {"weight_decay": 0.1, "weight_decouple": True},
    "decay_placement": {"weight_decay": 0.1},
    "amsgrad_max": {"amsgrad": True},
    # ε = 1e-8 (adabelief-pytorch 0.0.5's default; the adam family's anyway), so that where ε
    # enters the running maximum shows: adding it to s_max every step (adabelief-pytorch < 0.2.0)
    "amsgrad": {"eps": 1e-8},
    "amsgrad_eps": {"amsgrad": True, "eps": 1e-8},
    "degenerated_to_sgd": {"rectify": True},
    "sgd_phase": {"rectify": True},
    "rectified_denom": {"rectify": True, "amsgrad": True},
    "eps1_mode": {"eps": (None, 1e-3)},  # Adafactor's clamps take torch's machine epsilon
}
# required preset arguments (optax's learning_rate) get this value
_PRESET_REQUIRED = {"learning_rate": 1e-3}


# ---------------------------------------------------------------------------------------
# where the files are
# ---------------------------------------------------------------------------------------


def specs_dir() -> Path:
    """The specs folder: ``refopt/_specs`` in an installed wheel, ``../specs`` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_specs", here.parent / "specs"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"refopt's specs folder was not found (looked for {here / '_specs'} and {here.parent / 'specs'})"
    )


def _check_rule(rule: str) -> str:
    if not isinstance(rule, str) or rule not in rules.names():
        raise ValueError(rules._base.suggest(str(rule), rules.names(), "rule"))
    return rule


def path(rule: str) -> Path:
    """The vectors file of ``rule``."""
    return specs_dir() / "vectors" / f"{_check_rule(rule)}.json"


def schema_path() -> Path:
    """The JSON Schema of the vectors files."""
    return specs_dir() / "schema" / f"{SCHEMA}.schema.json"


def load(rule: str) -> dict:
    """The parsed vectors of ``rule`` (numbers as Python floats; decode arrays with :func:`decode`)."""
    p = path(rule)
    if not p.is_file():
        raise FileNotFoundError(f"no vectors for {rule!r}: {p} is missing (run `refopt vectors --write`)")
    data = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"{p} is not a {SCHEMA} file (its 'schema' is {data.get('schema') if isinstance(data, dict) else None!r})")
    return data


def cases(data: dict) -> Iterator[tuple[dict, dict]]:
    """Every ``(group, case)`` of a loaded vectors file, in file order."""
    for group in data["groups"]:
        for case in group["cases"]:
            yield group, case


# ---------------------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------------------

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"dtype must be float64 or float32; got {dt}")
    return dt


def _number(x: float, dt: np.dtype) -> float | str:
    """One float as a JSON value that reads back exactly in ``dt``."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if dt == np.float32:
        exact = np.float32(x)
        v = float(str(exact))
        back = np.float32(v)
        if back.view(np.uint32) != exact.view(np.uint32):  # pragma: no cover - would be a NumPy bug
            raise AssertionError(f"float32 value {exact!r} does not round-trip through {v!r}")
        return v
    return float(x)


def encode(values: Any, dtype: Any = None) -> list:
    """A flat (C-order) JSON list of an array's values, exact in ``dtype`` (default: its own)."""
    arr = np.asarray(values)
    dt = _dtype(arr.dtype if dtype is None else dtype)
    return [_number(float(x), dt) for x in arr.astype(dt, copy=False).reshape(-1).tolist()]


def decode(values: Any, dtype: Any) -> np.ndarray:
    """A flat array of ``dtype`` from a JSON list (numbers and "nan"/"inf"/"-inf").

    A single JSON number (a trace scalar) gives an array of one element.
    """
    dt = _dtype(dtype)
    if not isinstance(values, list):
        values = [values]
    out = []
    for i, v in enumerate(values):
        if isinstance(v, str):
            if v not in _NON_FINITE:
                raise ValueError(f"element {i} is the string {v!r}; only 'nan', 'inf' and '-inf' are allowed")
            out.append(_NON_FINITE[v])
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"element {i} is {v!r}; expected a number or 'nan', 'inf', '-inf'")
        else:
            out.append(float(v))
    return np.array(out, dtype=np.float64).astype(dt)


def within(tolerance: str, expected: Any, actual: Any, dtype: Any) -> tuple[bool, dict[str, float]]:
    """Whether ``actual`` meets ``expected`` under a tolerance class, and the errors measured.

    ``expected`` and ``actual`` are decoded arrays (or Python scalars / bools); ``dtype`` is the
    dtype the ulps are counted in.  Returns ``(ok, {"max_abs", "max_rel", "max_ulp"})`` where
    ``max_rel`` is norm-wise (relative to the largest finite ``|expected|``) and ``max_ulp``
    counts ulps of that largest magnitude -- the quantities the classes bound (:data:`TOLERANCES`).
    """
    if isinstance(expected, bool) or isinstance(actual, bool):
        ok = isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
        return ok, {"max_abs": 0.0 if ok else math.inf, "max_rel": 0.0 if ok else math.inf,
                    "max_ulp": 0.0 if ok else math.inf}
    dt = _dtype(dtype)
    e = np.asarray(expected, dtype=np.float64).reshape(-1)
    a = np.asarray(actual, dtype=np.float64).reshape(-1)
    if e.shape != a.shape:
        return False, {"max_abs": math.inf, "max_rel": math.inf, "max_ulp": math.inf}
    fin = np.isfinite(e)
    same_nonfinite = bool(np.all((np.isnan(e) & np.isnan(a)) | (e == a) | fin))
    scale = float(np.max(np.abs(e[fin]))) if fin.any() else 0.0
    diff = np.abs(a[fin] - e[fin]) if fin.any() else np.zeros(0)
    if not np.all(np.isfinite(a[fin])):
        same_nonfinite = False
    with np.errstate(invalid="ignore"):
        max_abs = float(np.max(diff)) if diff.size else 0.0
    ulp = float(np.spacing(dt.type(scale)))
    errors = {
        "max_abs": max_abs if same_nonfinite else math.inf,
        "max_rel": (max_abs / scale if scale else (0.0 if max_abs == 0 else math.inf)) if same_nonfinite else math.inf,
        "max_ulp": max_abs / ulp if same_nonfinite else math.inf,
    }
    if not same_nonfinite:
        return False, errors
    kind, _, arg = tolerance.partition(":")
    if kind == "exact":
        return max_abs == 0.0, errors
    if kind == "ulp":
        return max_abs <= int(arg) * ulp, errors
    if kind == "rtol":
        return max_abs <= float(arg) * scale, errors
    raise ValueError(f"unknown tolerance class {tolerance!r} (known: exact, ulp:N, rtol:X)")


def _hyper_json(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return _number(value, np.dtype(np.float64))
    if isinstance(value, tuple):
        return [_hyper_json(v) for v in value]
    raise TypeError(f"cannot write the hyper-parameter value {value!r}")  # pragma: no cover


# ---------------------------------------------------------------------------------------
# inputs: a portable generator
# ---------------------------------------------------------------------------------------


class _Rand:
    """splitmix64: the same stream on every machine and NumPy version."""

    def __init__(self, key: str):
        self.state = zlib.crc32(key.encode("utf-8"))

    def _next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return z ^ (z >> 31)

    def uniform(self, low: float, high: float) -> float:
        u = (self._next() >> 11) / float(1 << 53)
        return low + (high - low) * u

    def values(self, n: int, low: float, high: float, *, nonzero: bool = True) -> list[float]:
        """``n`` values in [low, high) with four significant digits (short, readable)."""
        out = []
        while len(out) < n:
            x = float(f"{self.uniform(low, high):.4g}")
            if nonzero and x == 0.0:
                continue
            out.append(x)
        return out

    def signs(self, n: int) -> list[float]:
        return [1.0 if self._next() & 1 else -1.0 for _ in range(n)]


def _size(shape: Any) -> int:
    return int(np.prod(shape)) if not isinstance(shape, dict) else sum(_size(s) for s in shape.values())


# ---------------------------------------------------------------------------------------
# running a rule
# ---------------------------------------------------------------------------------------


def _to_tree(flat: Any, shape: Any, dt: np.dtype) -> Any:
    if isinstance(shape, dict):
        return {k: _to_tree(flat[k], s, dt) for k, s in shape.items()}
    return np.array(flat, dtype=np.float64).astype(dt).reshape(shape)


def _encode_tree(x: Any, dt: np.dtype) -> Any:
    if isinstance(x, dict):
        return {k: _encode_tree(v, dt) for k, v in x.items()}
    arr = np.asarray(x)
    if arr.dtype == np.float64 and dt == np.float32:
        # a per-configuration host value (clipping threshold with batch_axes > 0): float64 like scalars
        return encode(arr, np.float64)
    if arr.dtype != dt:  # pragma: no cover - a rule broke float32 in -> float32 out
        raise AssertionError(f"an array of dtype {arr.dtype} in a {dt} group")
    return encode(arr, dt)


def _trace_value(v: Any, dt: np.dtype) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return _number(v, np.dtype(np.float64))
    return _encode_tree(v, dt)


def _non_finite(x: Any) -> bool:
    if isinstance(x, dict):
        return any(_non_finite(v) for v in x.values())
    if isinstance(x, list):
        return any(_non_finite(v) for v in x)
    return isinstance(x, str)


def _run_case(rule, dt: np.dtype, shape: Any, params0: Any, grads: list | None, *, steps: int,
              record: set[int] | None = None, objective=None) -> dict:
    """Run ``rule`` and record inputs and outputs.  ``grads`` may be None when ``objective``
    computes them from the params (the long chain)."""
    p = _to_tree(params0, shape, dt)
    state = rule.init(p)
    out: dict[str, Any] = {
        "shape": shape,
        "params0": _encode_tree(p, dt),
        "state0": {k: _encode_tree(v, dt) for k, v in state.slots.items()},
        "grads": [],
        "steps": [],
        "host": set(),  # trace entries that are host values (float64 scalars, per-configuration lists)
    }
    for i in range(steps):
        g = objective(p) if objective is not None else _to_tree(grads[i], shape, dt)
        out["grads"].append(_encode_tree(g, dt))
        p, state, trace = rule.trace(p, g, state)
        for k, v in trace.items():
            if isinstance(v, np.ndarray) and not isinstance(shape, dict) and list(v.shape) != list(shape):
                out["host"].add(k)
        if record is not None and state.t not in record:
            continue
        out["steps"].append({
            "t": state.t,
            "params": _encode_tree(p, dt),
            "state": {k: _encode_tree(v, dt) for k, v in state.slots.items()},
            "trace": {k: _trace_value(v, dt) for k, v in trace.items() if k not in ("t", "params")},
        })
    return out


def _tolerance(case: dict, dt: str, kind: str, host: set[str]) -> dict[str, str]:
    """A tolerance class for every field of a case (see :data:`TOLERANCES`)."""
    array_tol = _CHAIN_TOL[dt] if kind == "long_chain" else _ARRAY_TOL
    scalar_tol = _CHAIN_TOL[dt] if kind == "long_chain" else _SCALAR_TOL[dt]
    tol = {"params": array_tol}
    for slot in case["steps"][0]["state"]:
        tol[f"state.{slot}"] = array_tol
    # a trace entry may appear only at some steps (RAdam's l_t once rectified): the union, in order
    names: dict[str, Any] = {}
    for step in case["steps"]:
        for name, v in step["trace"].items():
            names.setdefault(name, v)
    for name, v in names.items():
        if isinstance(v, bool) or isinstance(v, int):
            tol[f"trace.{name}"] = "exact"
        elif isinstance(v, (float, str)) or name in host:
            tol[f"trace.{name}"] = scalar_tol
        else:
            tol[f"trace.{name}"] = array_tol
    return tol


# ---------------------------------------------------------------------------------------
# what each rule gets
# ---------------------------------------------------------------------------------------


def _base_shape(rule_name: str, hyper: dict, defaults: bool) -> list[int]:
    batched = hyper.get("batch_axes", 0) == 1
    if rule_name == "clipped_sgd":  # clip_fraction 0.1 clips one coordinate in ten
        return [2, 5]
    return [2, 3] if batched else [4] if defaults else [3]


def _configs(name: str) -> list[dict]:
    """Groups' configurations (before the dtype split): defaults, weight decay, options, presets."""
    cls = rules.rule_class(name)
    declared = {h.name: h for h in cls.HYPER}
    configs = [{"key": "defaults", "hyper": {}, "preset": None, "flags": ["defaults"],
                "comment": f"{name} with every hyper-parameter at its default"}]
    seen = {cls().__repr__()}

    def add(key, hyper, flags, comment, preset=None, preset_args=None):
        try:
            built = presets.get(preset, **(preset_args or {})) if preset else cls(**hyper)
        except (ValueError, TypeError):
            return
        r = repr(built)
        if r in seen and not preset:
            return
        seen.add(r)
        configs.append({"key": key, "hyper": hyper, "preset": preset, "preset_args": preset_args,
                        "flags": flags, "comment": comment})

    if name in _CHAIN_HYPER:
        hyper = _CHAIN_HYPER[name]
        shown = ", ".join(f"{k}={v!r}" for k, v in hyper.items())
        configs.append({"key": "long_chain", "hyper": hyper, "preset": None, "flags": [], "chain_only": True,
                        "comment": f"{name} with {shown} for the long chain (at the default it reaches the "
                                   f"minimum early and then amplifies rounding differences chaotically)"})
    wd = declared.get("weight_decay")
    if wd is not None and wd.default == 0:
        add("weight_decay", {"weight_decay": 0.1}, ["weight_decay"], f"{name} with weight_decay=0.1")
    for h in cls.HYPER:
        if isinstance(h, Flag):
            values = [not h.default]
        elif isinstance(h, Choice):
            values = [c for c in h.choices if c != h.default]
        elif isinstance(h, Int):
            values = [1] if h.name == "batch_axes" else []
        elif isinstance(h, Real) and not isinstance(h, Pair) and h.name in _OPTION_REALS and (h.default in (0, None)):
            values = [_OPTION_REALS[h.name]]
        else:
            values = []
        for value in values:
            hyper = {h.name: value}
            extra = {k: v for k, v in _COMPANIONS.get(h.name, {}).items()
                     if k in declared and k != h.name and declared[k].default != v}
            if h.name == "threshold" and "rectify" in declared:
                extra["rectify"] = True
            try:
                cls(**{**extra, **hyper})
            except (ValueError, TypeError):
                extra = {}
            full = {**extra, **hyper}
            flags = ["option"]
            if full.get("weight_decay"):
                flags.append("weight_decay")
            if h.name == "batch_axes":
                flags.append("batched")
            shown = ", ".join(f"{k}={v!r}" for k, v in hyper.items())
            also = ", ".join(f"{k}={v!r}" for k, v in extra.items())
            add(f"{h.name}={value}", full, flags,
                f"option {shown}" + (f" (with {also}, so that it has an effect)" if also else ""))
    for pname in presets.names():
        pre = presets.describe(pname)
        if pre.rule != name:
            continue
        args = {k: _PRESET_REQUIRED[k] for k, v in pre.args.items() if v is presets.REQUIRED}
        args.update(presets.RUNNABLE_ARGS.get(pname, {}))  # defaults that refopt refuses
        flags = ["preset"]
        built = presets.get(pname, **args)
        if built.hyper.get("weight_decay"):
            flags.append("weight_decay")
        shown = f"{pname}({', '.join(f'{k}={v!r}' for k, v in args.items())})"
        add(f"preset:{pname}", None, flags, f"preset {shown}: {pre.source}", preset=pname, preset_args=args)
    return configs


def _case_specs(name: str, config: dict, shape: list[int]) -> list[dict]:
    """The cases of one group: the full battery for the defaults, a short run otherwise."""
    key = f"{name}/{config['key']}"
    n = _size(shape)
    out = []

    def rand(kind):
        return _Rand(f"{key}/{kind}")

    def steps_of(r, k, low=-1.0, high=1.0):
        return [r.values(n, low, high) for _ in range(k)]

    r = rand("multi_step")
    p0 = r.values(n, -2.0, 2.0)
    chain = {"kind": "long_chain", "flags": ["first_step", "long_chain"], "steps": _CHAIN_STEPS,
             "params0": None, "grads": None,
             "comment": (f"{_CHAIN_STEPS} steps on f(θ) = Σ A θ²/2 + B θ + θ⁴/4 (refopt explain's example) from "
                         f"θ0 = {list(_QUARTIC_THETA0)}, g = (A·θ + B) + (θ·θ)·θ in the group's dtype "
                         f"(A = {list(_QUARTIC_A)}, B = {list(_QUARTIC_B)} rounded to it); every gradient "
                         f"is stored; recorded at t = 1 and every {_CHAIN_EVERY} steps")}
    if config.get("chain_only"):
        return [chain]
    factored = None
    if name in _FACTORED_TREE:
        rf = rand("factored")
        fshape = _FACTORED_SHAPE
        factored = {"kind": "tree", "flags": ["factored", "first_step", "multi_step", "tree"], "steps": 3,
                    "params0": {k: rf.values(_size(s), -2.0, 2.0) for k, s in fshape.items()},
                    "grads": [{k: rf.values(_size(s), -1.0, 1.0) for k, s in fshape.items()} for _ in range(3)],
                    "shape": fshape,
                    "comment": "params {'v': vector, 'w': 2x3 matrix, 'x': 2x2x3 tensor}: per-array and factored quantities"}
    if config["key"] != "defaults":
        out.append({"kind": "multi_step", "flags": ["first_step", "multi_step"], "steps": 3, "params0": p0,
                    "grads": steps_of(r, 3), "comment": "three steps from the initial state, random gradients"})
        if factored is not None:
            out.append(factored)
        return out
    out.append({"kind": "first_step", "flags": ["first_step"], "steps": 1, "params0": p0,
                "grads": steps_of(r, 1), "comment": "one step from the initial state"})
    r = rand("zero")
    p0 = r.values(n, -2.0, 2.0)
    out.append({"kind": "zero_gradient", "flags": ["first_step", "zero_gradient"], "steps": 3, "params0": p0,
                "grads": [[0.0] * n, r.values(n, -1.0, 1.0), [0.0] * n],
                "comment": "zero gradient on the first step, a random one, zero again (with non-zero state)"})
    r = rand("huge")
    p0 = r.values(n, -2.0, 2.0)
    out.append({"kind": "huge_gradient", "flags": ["first_step", "huge_gradient"], "steps": 2, "params0": p0,
                "grads": [[s * m * 1e30 for s, m in zip(r.signs(n), r.values(n, 0.5, 1.5))] for _ in range(2)],
                "comment": "gradients of magnitude ~1e30"})
    r = rand("tiny")
    p0 = r.values(n, -2.0, 2.0)
    out.append({"kind": "tiny_gradient", "flags": ["first_step", "tiny_gradient"], "steps": 2, "params0": p0,
                "grads": [[s * m * 1e-30 for s, m in zip(r.signs(n), r.values(n, 0.5, 1.5))] for _ in range(2)],
                "comment": "gradients of magnitude ~1e-30"})
    r = rand("alternating")
    p0 = r.values(n, -2.0, 2.0)
    base = r.values(n, 0.1, 1.0)
    out.append({"kind": "alternating_signs", "flags": ["first_step", "alternating_signs", "multi_step"],
                "steps": 6, "params0": p0, "grads": [[(-1.0) ** t * b for b in base] for t in range(6)],
                "comment": "the same gradient with its sign flipped every step"})
    out.append({"kind": "subnormal", "flags": ["first_step", "subnormal"], "steps": 2, "params0": None,
                "grads": None, "comment": "subnormal gradients (and one subnormal parameter) in the group's dtype"})
    r = rand("sparse")
    p0 = r.values(n, -2.0, 2.0)
    sparse = []
    for _ in range(3):
        g = r.values(n, -1.0, 1.0)
        for i in range(0, n, 2):
            g[i] = 0.0
        sparse.append(g)
    out.append({"kind": "sparse_gradient", "flags": ["first_step", "sparse_gradient", "multi_step"], "steps": 3,
                "params0": p0, "grads": sparse, "comment": "every other gradient entry is exactly zero"})
    r = rand("several")
    p0 = r.values(n, -2.0, 2.0)
    out.append({"kind": "multi_step", "flags": ["first_step", "multi_step"], "steps": 8, "params0": p0,
                "grads": steps_of(r, 8), "comment": "eight steps, random gradients, every intermediate recorded"})
    if name in _POOLED:
        r = rand("tree")
        tshape = {"a": [3], "b": [2, 2]} if name != "clipped_sgd" else {"a": [6], "b": [2, 2]}
        p0 = {k: r.values(_size(s), -2.0, 2.0) for k, s in tshape.items()}
        grads = [{k: r.values(_size(s), -1.0, 1.0) for k, s in tshape.items()} for _ in range(3)]
        out.append({"kind": "tree", "flags": ["first_step", "multi_step", "tree"], "steps": 3, "params0": p0,
                    "grads": grads, "shape": tshape,
                    "comment": "params {'a', 'b'}: the pooled quantity spans both leaves"})
    if factored is not None:
        out.append(factored)
    if name not in _CHAIN_HYPER:
        out.append(chain)
    return out


def _subnormals(dt: np.dtype, n: int) -> tuple[list[float], list[list[float]]]:
    tiny = float(np.finfo(dt).smallest_subnormal)
    normal = float(np.finfo(dt).smallest_normal)
    pattern = [tiny, -3 * tiny, normal / 4, -normal / 1024, 17 * tiny, normal / 2]
    grads = [[pattern[(i + t) % len(pattern)] for i in range(n)] for t in range(2)]
    params0 = [normal / 8] + [0.25 * (i + 1) * (-1) ** i for i in range(1, n)]
    return params0, grads


def _quartic(shape, dt):
    n = _size(shape)
    a = np.array([_QUARTIC_A[i % 3] for i in range(n)], dtype=np.float64).astype(dt).reshape(shape)
    b = np.array([_QUARTIC_B[i % 3] for i in range(n)], dtype=np.float64).astype(dt).reshape(shape)
    theta0 = [_QUARTIC_THETA0[i % 3] for i in range(n)]

    def grad(theta):
        return (a * theta + b) + (theta * theta) * theta

    return theta0, grad


def _build(name: str, config: dict):
    if config["preset"]:
        return presets.get(config["preset"], **(config.get("preset_args") or {}))
    return rules.get(name, **config["hyper"])


_CONTEXT = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN, Emax=10**6, Emin=-(10**6))


def _round_to(d: decimal.Decimal, dt: np.dtype) -> float:
    """The float of ``dt`` nearest to the decimal ``d`` (ties to even), as a Python float."""
    f = float(d)  # correctly rounded to float64
    if dt == np.float64 or not math.isfinite(f):
        return float(dt.type(f))
    r = np.float32(f)
    if float(r) != f:  # f may sit exactly on a float32 midpoint: decide with the exact value
        lo, hi = (r, np.nextafter(r, np.float32(np.inf))) if float(r) < f else (np.nextafter(r, np.float32(-np.inf)), r)
        mid = (float(lo) + float(hi)) / 2  # exact in float64
        if f == mid and d != decimal.Decimal(mid):
            r = hi if d > decimal.Decimal(mid) else lo
    return float(r)


def _exact_exp(x):
    """Correctly rounded elementwise exp of a NumPy array (the vectors' reference exp)."""
    arr = np.asarray(x)
    dt = arr.dtype

    def one(v: float) -> float:
        if math.isnan(v):
            return math.nan
        if math.isinf(v):
            return math.inf if v > 0 else 0.0
        return _round_to(decimal.Decimal(v).exp(_CONTEXT), dt)

    out = np.array([one(float(v)) for v in arr.reshape(-1).tolist()], dtype=np.float64).astype(dt)
    return out.reshape(arr.shape)


def _exact_power(base, exponent):
    """Correctly rounded ``base ** exponent`` (an int, 0.5 or any real) on the host, like ``_array.host_power``."""
    if isinstance(base, np.ndarray):
        return np.array([_exact_power(float(b), exponent) for b in base.reshape(-1).tolist()],
                        dtype=np.float64).reshape(base.shape)
    b = float(base)
    if isinstance(exponent, np.ndarray):  # a batched exponent (NAdam's t·ψ): element by element
        return np.array([_exact_power(b, float(e)) for e in exponent.reshape(-1).tolist()],
                        dtype=np.float64).reshape(exponent.shape)
    if math.isnan(b) or math.isinf(b) or b < 0 or not math.isfinite(float(exponent)):
        return b**exponent
    d = decimal.Decimal(b)
    if exponent == 0.5:
        r = d.sqrt(_CONTEXT)
    elif float(exponent).is_integer():
        r = _CONTEXT.power(d, int(exponent))
    elif b == 0:
        return b**exponent
    else:  # a real exponent (NAdam's 0.96^{tψ}): decimal's power is correctly rounded at 60 digits
        r = _CONTEXT.power(d, decimal.Decimal(float(exponent)))
    return _round_to(r, np.dtype(np.float64))


@contextlib.contextmanager
def _reference_math():
    """Correctly rounded exp and host pow while the vectors are generated (see the module docstring)."""
    import array_api_compat.numpy as npx

    from . import _array

    saved = npx.exp, _array.host_power
    npx.exp, _array.host_power = _exact_exp, _exact_power
    try:
        yield
    finally:
        npx.exp, _array.host_power = saved


def generate(rule: str) -> dict:
    """The vectors of ``rule`` as a dict, exactly what :func:`write` writes."""
    name = _check_rule(rule)
    with np.errstate(all="ignore"), _reference_math():  # overflow to inf and 0/0 are what some cases are about
        return _generate(name)


def _generate(name: str) -> dict:
    groups = []
    flags_used: set[str] = set()
    for config in _configs(name):
        built = _build(name, config)
        shape = _base_shape(name, dict(built.hyper), config["key"] == "defaults")
        for dt_name in DTYPES:
            dt = np.dtype(dt_name)
            gid = f"{name}-g{len(groups) + 1:02d}"
            group_cases = []
            for spec in _case_specs(name, config, shape):
                kind = spec["kind"]
                cshape = spec.get("shape", shape)
                steps = spec["steps"]
                if kind == "subnormal":
                    params0, grads = _subnormals(dt, _size(cshape))
                    run = _run_case(built, dt, cshape, params0, grads, steps=steps)
                elif kind == "long_chain":
                    chain_shape = [3]
                    theta0, grad = _quartic(chain_shape, dt)
                    record = {1, *range(_CHAIN_EVERY, _CHAIN_STEPS + 1, _CHAIN_EVERY)}
                    run = _run_case(built, dt, chain_shape, theta0, None, steps=steps, record=record,
                                    objective=grad)
                else:
                    run = _run_case(built, dt, cshape, spec["params0"], spec["grads"], steps=steps)
                flags = list(spec["flags"])
                for f in config["flags"]:
                    if f not in flags:
                        flags.append(f)
                if _non_finite(run["steps"]):
                    flags.append("non_finite")
                flags = sorted(set(flags))
                flags_used.update(flags)
                case = {
                    "id": f"{gid}-c{len(group_cases) + 1:03d}",
                    "comment": spec["comment"],
                    "flags": flags,
                    "shape": run["shape"],
                    "params0": run["params0"],
                    "state0": run["state0"],
                    "grads": run["grads"],
                    "checkpoints": kind == "long_chain",
                    "steps": run["steps"],
                }
                case["tolerance"] = _tolerance(case, dt_name, kind, run["host"])
                group_cases.append(case)
            comment = f"{config['comment']} ({dt_name})"
            group = {
                "id": gid,
                "comment": comment,
                "dtype": dt_name,
                "hyper": {k: _hyper_json(v) for k, v in built.hyper.items()},
                "preset": config["preset"],
            }
            if config["preset"]:
                group["preset_args"] = {k: _hyper_json(v) for k, v in (config.get("preset_args") or {}).items()}
            group["cases"] = group_cases
            groups.append(group)
    cls = rules.rule_class(name)
    return {
        "schema": SCHEMA,
        "rule": name,
        "title": cls.title,
        "generator": {"name": "refopt", "version": __version__},
        "notes": {k: FLAGS[k] for k in sorted(flags_used)},
        "tolerances": dict(TOLERANCES),
        "groups": groups,
    }


# ---------------------------------------------------------------------------------------
# writing and checking
# ---------------------------------------------------------------------------------------


def _inline(x: Any) -> bool:
    if isinstance(x, dict):
        return False
    if isinstance(x, list):
        return all(_inline(v) for v in x)
    return True


def _emit(x: Any, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if _inline(x):
        out.append(json.dumps(x, ensure_ascii=False, allow_nan=False))
        return
    if isinstance(x, dict):
        if not x:
            out.append("{}")
            return
        if all(not isinstance(v, (dict, list)) for v in x.values()) and len(x) <= 4:
            out.append(json.dumps(x, ensure_ascii=False, allow_nan=False))
            return
        out.append("{\n")
        for i, (k, v) in enumerate(x.items()):
            out.append(f"{pad} {json.dumps(k, ensure_ascii=False)}: ")
            _emit(v, indent + 1, out)
            out.append(",\n" if i < len(x) - 1 else "\n")
        out.append(pad + "}")
        return
    out.append("[\n")
    for i, v in enumerate(x):
        out.append(pad + " ")
        _emit(v, indent + 1, out)
        out.append(",\n" if i < len(x) - 1 else "\n")
    out.append(pad + "]")


def dumps(data: dict) -> str:
    """The canonical text of a vectors file: one space of indent per level, number lists on one line."""
    out: list[str] = []
    _emit(data, 0, out)
    out.append("\n")
    return "".join(out)


def _selected(selection: Any) -> list[str]:
    if selection is None:
        return rules.names()
    if isinstance(selection, str):
        selection = [selection]
    return [_check_rule(r) for r in selection]


def write(rules_: Any = None) -> list[Path]:
    """Regenerate and write the vectors of ``rules_`` (a name, a list, or None for every rule)."""
    written = []
    for name in _selected(rules_):
        target = path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(dumps(generate(name)).encode("utf-8"))
        written.append(target)
    return written


def _first_differences(old: Any, new: Any, where: str, out: list[str], limit: int) -> None:
    if len(out) >= limit:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for k in list(new) + [k for k in old if k not in new]:
            if k not in old:
                out.append(f"{where}.{k}: missing from the file")
            elif k not in new:
                out.append(f"{where}.{k}: in the file but not generated")
            else:
                _first_differences(old[k], new[k], f"{where}.{k}" if where else k, out, limit)
            if len(out) >= limit:
                return
        return
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new) and not _inline(new):
        for i, (a, b) in enumerate(zip(old, new)):
            _first_differences(a, b, f"{where}[{i}]", out, limit)
        return
    if old != new or type(old) is not type(new):
        show = lambda v: (json.dumps(v)[:120] + ("..." if len(json.dumps(v)) > 120 else ""))
        out.append(f"{where}: the file has {show(old)}, refopt generates {show(new)}")


def _locate(old: dict, new: dict, limit: int = 5) -> list[str]:
    """Differences named by case id and field (``adam-g01-c002 steps[1].state.m: ...``)."""
    found: list[str] = []
    top_old = {k: v for k, v in old.items() if k != "groups"}
    top_new = {k: v for k, v in new.items() if k != "groups"}
    _first_differences(top_old, top_new, "", found, limit)
    old_groups = {g.get("id"): g for g in old.get("groups", []) if isinstance(g, dict)}
    for g in new["groups"]:
        if len(found) >= limit:
            break
        og = old_groups.get(g["id"])
        if og is None:
            found.append(f"group {g['id']}: missing from the file")
            continue
        _first_differences({k: v for k, v in og.items() if k != "cases"},
                           {k: v for k, v in g.items() if k != "cases"}, f"group {g['id']}", found, limit)
        old_cases = {c.get("id"): c for c in og.get("cases", []) if isinstance(c, dict)}
        for c in g["cases"]:
            if len(found) >= limit:
                break
            oc = old_cases.get(c["id"])
            if oc is None:
                found.append(f"case {c['id']}: missing from the file")
                continue
            sub: list[str] = []
            _first_differences(oc, c, "", sub, limit - len(found))
            found.extend(f"case {c['id']} {s}" for s in sub)
    extra = set(old_groups) - {g["id"] for g in new["groups"]}
    if extra and len(found) < limit:
        found.append(f"groups in the file but not generated: {', '.join(sorted(map(str, extra)))}")
    return found


def check(rules_: Any = None, progress=None) -> list[str]:
    """Regenerate in memory and compare bytes with the files; a list of differences (empty: all equal).

    Each difference names the rule and file, then the first differing case id and field.
    With ``rules_=None`` a vectors file for an unknown rule is reported too.  ``progress``, when
    given, is called with each rule's name before it is checked.
    """
    problems: list[str] = []
    for name in _selected(rules_):
        if progress is not None:
            progress(name)
        target = path(name)
        expected = dumps(generate(name)).encode("utf-8")
        if not target.is_file():
            problems.append(f"{name}: {target} is missing (run `refopt vectors --write`)")
            continue
        actual = target.read_bytes()
        if actual == expected:
            continue
        head = f"{name}: {target} differs from what refopt generates"
        try:
            old = json.loads(actual.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(f"{head}: the file is not valid JSON ({exc})")
            continue
        where = _locate(old, json.loads(expected.decode("utf-8"))) if isinstance(old, dict) else []
        if not where:
            i = next((i for i, (a, b) in enumerate(zip(actual, expected)) if a != b), min(len(actual), len(expected)))
            line = actual[:i].count(b"\n") + 1
            where = [f"same values, different bytes from byte {i} (line {line}): formatting or number spelling"]
        problems.append(head + ":\n    " + "\n    ".join(where))
    if rules_ is None:
        folder = specs_dir() / "vectors"
        if folder.is_dir():
            for f in sorted(folder.glob("*.json")):
                if f.stem not in rules.names():
                    problems.append(f"{f.stem}: {f} is not the vectors file of any rule (remove it)")
    return problems
