"""Reading golden-vector files for ``refopt verify``: shape checks, decoding, tolerances, errors.

Host-side module: it reads JSON and compares NumPy arrays, so it imports NumPy directly (the
verifier never runs refopt on anything but NumPy arrays).

The error measures follow the tolerance classes of ``refopt.vectors.TOLERANCES``, which are
*norm-wise* over a field (all elements of ``params``, or of one state slot, at one step; all
leaves of a tree together).  With ``e`` the expected and ``x`` the actual values of a field,
``scale = max_j |e_j|`` over the finite ``e_j`` and ``unit = spacing(scale)`` in the field's
dtype (``spacing(0)`` is the smallest subnormal):

    abs = max_j |x_j - e_j|
    rel = abs / scale                          what ``rtol:X`` bounds (abs <= X * scale)
    ulp = abs / unit                           what ``ulp:N`` bounds (abs <= N * unit)

``exact`` is ``ulp:0`` (equal as numbers: +0 matches -0).  A NaN matches a NaN and an
infinity the same infinity; any other disagreement in finiteness is an infinite error.
Several classes joined by ``|`` pass when any of them does.  The first diverging *element*
is the first one whose own error exceeds the bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

SCHEMA = "refopt_vectors_v1"
DTYPES = {"float64": np.float64, "float32": np.float32}
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class VerifyError(ValueError):
    """Bad usage: an unknown target or rule, a target that raises or returns the wrong thing,
    a vectors file that fails its schema.  The CLI prints the message on one line, exit 2."""


# ---------------------------------------------------------------------------------------
# loading and decoding
# ---------------------------------------------------------------------------------------


def _vectors_module():
    try:
        from .. import vectors
    except ImportError as exc:  # pragma: no cover - the module ships with refopt
        raise VerifyError(f"refopt.vectors is not available ({exc}); golden vectors cannot be read") from None
    return vectors


def load(rule: str) -> dict:
    """The vectors of ``rule`` (``specs/vectors/<rule>.json``), checked against the schema."""
    vectors = _vectors_module()
    try:
        data = vectors.load(rule)
    except FileNotFoundError as exc:
        raise VerifyError(f"no golden vectors for rule {rule!r} ({exc})") from None
    except (ValueError, TypeError) as exc:
        raise VerifyError(f"golden vectors for {rule!r} could not be read: {exc}") from None
    check(data, rule)
    return data


def decode(values: Any, dtype: str) -> np.ndarray:
    """A flat list of JSON numbers (non-finite ones as "nan"/"inf"/"-inf") as a 1-D array."""
    try:
        dec = getattr(_vectors_module(), "decode", None)
    except VerifyError:
        dec = None
    if dec is not None:
        return np.asarray(dec(values, dtype), dtype=DTYPES[dtype]).reshape(-1)
    if not isinstance(values, list):  # a scalar trace entry
        values = [values]
    return np.array([_NONFINITE[v] if isinstance(v, str) else v for v in values], dtype=np.float64).astype(
        DTYPES[dtype]
    )


def hyper_value(value: Any) -> Any:
    """A JSON hyper-parameter as Python: lists become tuples (``betas``), "inf" becomes inf."""
    if isinstance(value, list):
        return tuple(hyper_value(v) for v in value)
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    return value


def group_hyper(group: dict) -> dict:
    return {k: hyper_value(v) for k, v in group["hyper"].items()}


# ---------------------------------------------------------------------------------------
# schema (structure and consistency; enough to never crash on a malformed file)
# ---------------------------------------------------------------------------------------


def _fail(where: str, what: str):
    raise VerifyError(f"vectors file fails its schema: {where} {what}")


def _number_list(x, n, where):
    if not isinstance(x, list):
        _fail(where, f"must be a list of {n} numbers; got {type(x).__name__}")
    if n is not None and len(x) != n:
        _fail(where, f"has {len(x)} numbers; the case's shape needs {n}")
    for v in x:
        if isinstance(v, bool) or not (isinstance(v, (int, float)) or v in _NONFINITE):
            _fail(where, f"holds {v!r}, which is neither a JSON number nor 'nan'/'inf'/'-inf'")


def _is_shape(shape) -> bool:
    return isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)


def _check_shape(shape, where):
    ok = _is_shape(shape) or (
        isinstance(shape, dict) and shape and all(isinstance(k, str) and _is_shape(v) for k, v in shape.items())
    )
    if not ok:
        _fail(where, f"has shape {shape!r}; a shape is a list of non-negative ints, or an object of them (a tree)")


def _values(x, shape, where, sized=True):
    """``sized=False``: a state slot, whose arrays may have their own sizes (Adafactor's row and
    column statistics)."""
    if isinstance(shape, dict):
        if not isinstance(x, dict) or list(x) != list(shape):
            _fail(where, f"must be an object with the keys {list(shape)} of the case's shape")
        for k, s in shape.items():
            _number_list(x[k], math.prod(s) if sized else None, f"{where}[{k!r}]")
    else:
        _number_list(x, math.prod(shape) if sized else None, where)


def check(data: Any, rule: str | None = None) -> None:
    """Raise :class:`VerifyError` naming the first place where ``data`` breaks the format."""
    if not isinstance(data, dict):
        _fail("the top level", f"must be an object; got {type(data).__name__}")
    for key in ("schema", "rule", "groups"):
        if key not in data:
            _fail("the top level", f"lacks {key!r}")
    if data["schema"] != SCHEMA:
        _fail("'schema'", f"is {data['schema']!r}; this refopt reads {SCHEMA!r}")
    if rule is not None and data["rule"] != rule:
        _fail("'rule'", f"is {data['rule']!r} but the file was loaded for {rule!r}")
    if not isinstance(data["groups"], list):
        _fail("'groups'", "must be a list")
    for gi, group in enumerate(data["groups"]):
        gw = f"groups[{gi}]"
        if not isinstance(group, dict):
            _fail(gw, "must be an object")
        for key in ("id", "dtype", "hyper", "cases"):
            if key not in group:
                _fail(gw, f"lacks {key!r}")
        gw = f"group {group['id']!r}"
        if group["dtype"] not in DTYPES:
            _fail(gw, f"has dtype {group['dtype']!r}; allowed: float64, float32")
        if not isinstance(group["hyper"], dict) or not isinstance(group["cases"], list):
            _fail(gw, "needs 'hyper' as an object and 'cases' as a list")
        for ci, case in enumerate(group["cases"]):
            cw = f"{gw} cases[{ci}]"
            if not isinstance(case, dict):
                _fail(cw, "must be an object")
            for key in ("id", "shape", "params0", "grads", "steps"):
                if key not in case:
                    _fail(cw, f"lacks {key!r}")
            cw = f"case {case['id']!r}"
            shape = case["shape"]
            _check_shape(shape, cw)
            _values(case["params0"], shape, f"{cw} params0")
            if not isinstance(case["grads"], list):
                _fail(f"{cw} grads", "must be a list (one flat list per step)")
            for k, g in enumerate(case["grads"]):
                _values(g, shape, f"{cw} grads[{k}]")
            if not isinstance(case["steps"], list):
                _fail(f"{cw} steps", "must be a list")
            last = 0
            for k, step in enumerate(case["steps"]):
                sw = f"{cw} steps[{k}]"
                if not isinstance(step, dict) or "t" not in step or "params" not in step:
                    _fail(sw, "must be an object with 't' and 'params'")
                t = step["t"]
                if not isinstance(t, int) or isinstance(t, bool) or not last < t <= len(case["grads"]):
                    _fail(sw, f"has t={t!r}; t must increase and lie in 1..{len(case['grads'])} (the number of grads)")
                last = t
                _values(step["params"], shape, f"{sw} params")
                for slot, values in (step.get("state") or {}).items():
                    _values(values, shape, f"{sw} state[{slot!r}]", sized=False)
            for quantity, cls in (case.get("tolerance") or {}).items():
                try:
                    Tolerance.parse(cls)
                except ValueError as exc:
                    _fail(f"{cw} tolerance[{quantity!r}]", str(exc))


# ---------------------------------------------------------------------------------------
# tolerances and errors
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """The elementwise absolute errors of one field, with the field's scale and unit."""

    ab: np.ndarray
    scale: float
    unit: float

    @classmethod
    def measure(cls, expected: np.ndarray, got: np.ndarray) -> "Field":
        e = expected.astype(np.float64)
        x = got.astype(np.float64)
        with np.errstate(all="ignore"):
            same = (e == x) | (np.isnan(e) & np.isnan(x))
            ab = np.where(same, 0.0, np.abs(x - e))
            ab = np.where(np.isnan(ab), np.inf, ab)
        finite = np.abs(e[np.isfinite(e)])
        scale = float(finite.max()) if finite.size else 0.0
        unit = float(np.spacing(expected.dtype.type(scale)))
        return cls(ab, scale, unit)

    def errors(self) -> "Errors":
        if self.ab.size == 0:
            return Errors()
        worst = float(self.ab.max())
        if worst == 0.0:
            return Errors()
        rel = worst / self.scale if self.scale > 0 else math.inf
        return Errors(worst, rel, worst / self.unit)


@dataclass(frozen=True)
class Tolerance:
    """A tolerance class such as ``exact``, ``ulp:16``, ``rtol:1e-9`` or ``ulp:2|atol:1e-300``."""

    text: str
    parts: tuple[tuple[str, float], ...]

    @classmethod
    def parse(cls, text: Any) -> "Tolerance":
        if not isinstance(text, str) or not text:
            raise ValueError(f"a tolerance class is a string such as 'exact' or 'ulp:4'; got {text!r}")
        parts = []
        for item in text.split("|"):
            kind, _, number = item.strip().partition(":")
            if kind == "exact" and not number:
                parts.append(("ulp", 0.0))
                continue
            if kind not in ("ulp", "rtol", "atol"):
                raise ValueError(f"unknown tolerance class {text!r} (known: exact, ulp:N, rtol:X, atol:X, joined by '|')")
            try:
                value = float(number)
            except ValueError:
                raise ValueError(f"tolerance class {text!r} needs a number after {kind!r}") from None
            if not value >= 0:
                raise ValueError(f"tolerance class {text!r} needs a non-negative bound")
            parts.append((kind, value))
        return cls(text, tuple(parts))

    def ok(self, f: Field) -> np.ndarray:
        """Elementwise: which elements are within the bound."""
        out = np.zeros(f.ab.shape, dtype=bool)
        for kind, bound in self.parts:
            limit = {"ulp": bound * f.unit, "rtol": bound * f.scale, "atol": bound}[kind]
            out |= f.ab <= limit
        return out


EXACT = Tolerance.parse("exact")


@dataclass
class Errors:
    """Largest errors seen so far for one quantity (see the module docstring)."""

    abs: float = 0.0
    rel: float = 0.0
    ulp: float = 0.0

    def update(self, other: "Errors") -> None:
        self.abs = max(self.abs, other.abs)
        self.rel = max(self.rel, other.rel)
        self.ulp = max(self.ulp, other.ulp)

    def as_dict(self) -> dict:
        return {"abs": json_float(self.abs), "rel": json_float(self.rel), "ulp": json_float(self.ulp)}


def json_float(x: float):
    x = float(x)
    return x if math.isfinite(x) else ("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))


def errors(expected: np.ndarray, got: np.ndarray) -> Errors:
    """Norm-wise errors of ``got`` against ``expected`` (arrays of one floating dtype)."""
    return Field.measure(np.asarray(expected).reshape(-1), np.asarray(got).reshape(-1)).errors()
