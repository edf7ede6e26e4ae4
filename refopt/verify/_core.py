"""The verifier: run golden vectors through a target, compare, report, identify.

Host-side module (NumPy arrays only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import rules
from ..rules._base import suggest
from . import _data, _identify
from ._data import DTYPES, EXACT, Errors, Field, Tolerance, VerifyError, decode, group_hyper, json_float
from ._targets import CallableTarget, PresetTarget, Target, resolve


# ---------------------------------------------------------------------------------------
# decoded cases
# ---------------------------------------------------------------------------------------


def flat(tree: Any) -> np.ndarray:
    """All elements of an array or a dict of arrays, as one 1-D array (keys in order)."""
    if isinstance(tree, dict):
        return np.concatenate([np.asarray(v).reshape(-1) for v in tree.values()]) if tree else np.zeros(0)
    return np.asarray(tree).reshape(-1)


@dataclass
class Case:
    """One case of a vectors file, decoded to arrays (or dicts of arrays) of the group's dtype."""

    id: str
    group: str
    dtype: str
    comment: str
    flags: list
    shape: Any  # a tuple, or a dict of tuples for a tree
    params0: Any
    grads: list
    steps: list  # (t, params, {slot: tree})
    tolerances: dict

    @property
    def recorded(self) -> set:
        return {t for t, _, _ in self.steps}

    def tolerance(self, quantity: str) -> Tolerance:
        text = self.tolerances.get(quantity)
        if text is None and quantity.startswith("state."):
            text = self.tolerances.get("params")
        return Tolerance.parse(text) if text is not None else EXACT

    @classmethod
    def decode(cls, group: dict, case: dict) -> "Case":
        dtype = group["dtype"]
        raw = case["shape"]
        shape = {k: tuple(v) for k, v in raw.items()} if isinstance(raw, dict) else tuple(raw)

        def arr(values):
            if isinstance(shape, dict):
                return {k: decode(values[k], dtype).reshape(s) for k, s in shape.items()}
            return decode(values, dtype).reshape(shape)

        steps = [
            (s["t"], arr(s["params"]), {k: arr(v) for k, v in (s.get("state") or {}).items()})
            for s in case["steps"]
        ]
        return cls(str(case["id"]), str(group["id"]), dtype, case.get("comment", ""), list(case.get("flags", [])),
                   shape, arr(case["params0"]), [arr(g) for g in case["grads"]], steps, dict(case.get("tolerance") or {}))


def group_config(rule: str, group: dict) -> rules.Rule:
    """The refopt rule a group's vectors were generated with."""
    stored = group_hyper(group)
    try:
        return rules.get(rule, **stored)
    except (ValueError, TypeError) as first:
        preset = group.get("preset")
        if preset:
            from .. import presets

            try:
                return presets.get(preset, **stored)
            except (ValueError, TypeError):
                pass
        raise VerifyError(f"vectors file fails its schema: group {group['id']!r} has hyper-parameters that "
                          f"{rule} rejects: {first}") from None


# ---------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------


@dataclass
class CaseResult:
    case: Case
    arguments: str
    passed: bool
    first: dict | None
    errors: dict = field(default_factory=dict)  # quantity -> Errors
    compared: list = field(default_factory=list)  # quantities compared
    outputs: dict = field(default_factory=dict, repr=False)  # t -> params (the target's)

    def as_dict(self) -> dict:
        c = self.case
        return {
            "group": c.group, "case": c.id, "dtype": c.dtype, "flags": c.flags, "comment": c.comment,
            "arguments": self.arguments, "steps": len(c.grads), "verdict": "pass" if self.passed else "fail",
            "first_divergence": self.first, "compared": self.compared,
            "errors": {q: e.as_dict() for q, e in self.errors.items()},
            "tolerance": {q: c.tolerance(q).text for q in self.compared},
        }


@dataclass
class Report:
    target: str
    kind: str
    rule: str
    dtypes: list
    results: list
    skipped: list  # (group id, dtype, reason)
    identification: dict | None = None

    @property
    def failed(self) -> list:
        return [r for r in self.results if not r.passed]

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def summary(self) -> dict:
        groups = {(r.case.group, r.case.dtype) for r in self.results}
        return {"groups": len(groups), "cases": len(self.results), "passed": len(self.results) - len(self.failed),
                "failed": len(self.failed), "groups_skipped": len(self.skipped)}

    def as_dict(self) -> dict:
        return {
            "target": self.target, "kind": self.kind, "rule": self.rule, "dtypes": self.dtypes,
            "verdict": "pass" if self.passed else "fail", "summary": self.summary(),
            "cases": [r.as_dict() for r in self.results],
            "skipped_groups": [{"group": g, "dtype": d, "reason": why} for g, d, why in self.skipped],
            "identification": self.identification,
        }

    def text(self) -> str:
        lines = [f"refopt verify {self.target} against the {self.rule} vectors ({', '.join(self.dtypes)})"]
        for g, d, why in self.skipped:
            lines.append(f"skip {g} [{d}]: {why}")
        for r in self.results:
            c = r.case
            head = f"{'ok  ' if r.passed else 'FAIL'} {c.id} [{c.dtype}]"
            p = r.errors.get("params", Errors())
            tol = c.tolerance("params").text
            if r.passed:
                lines.append(f"{head}: {len(c.grads)} steps, max {_g(p.ulp)} ulp, rel {_g(p.rel)} (tolerance {tol})")
                continue
            f = r.first
            lines.append(
                f"{head}: first diverges at step t={f['t']} in {f['quantity']}[{f['index']}]: expected "
                f"{f['expected']!r}, got {f['got']!r} (abs {_g(f['abs'])}, rel {_g(f['rel'])}, {_g(f['ulp'])} ulp; "
                f"tolerance {f['tolerance']})"
            )
            for q, e in r.errors.items():
                lines.append(f"       {q}: max abs {_g(e.abs)}, rel {_g(e.rel)}, {_g(e.ulp)} ulp over {len(c.grads)} steps")
            if c.comment:
                lines.append(f"       case: {c.comment}" + (f" [{', '.join(c.flags)}]" if c.flags else ""))
            lines.append(f"       arguments: {r.arguments}")
        s = self.summary()
        lines.append(f"{'PASS' if self.passed else 'FAIL'}: {s['passed']} of {s['cases']} cases in {s['groups']} "
                     f"group(s) pass, {s['failed']} fail; {s['groups_skipped']} group(s) skipped")
        if self.identification:
            lines.append(self.identification["message"])
        return "\n".join(lines)


def _g(x: float) -> str:
    return f"{x:.3g}" if isinstance(x, float) and not x.is_integer() or not math.isfinite(x) else str(int(x))


_scalar = json_float


# ---------------------------------------------------------------------------------------
# running a case
# ---------------------------------------------------------------------------------------


def _returned(x: Any, case: Case, target: str, t: int) -> Any:
    where = f"at step t={t} of case {case.id}"
    if isinstance(case.shape, dict):
        if not isinstance(x, dict) or list(x) != list(case.shape):
            raise VerifyError(f"{target} returned {type(x).__name__} as params {where}; the input was a dict with "
                              f"the keys {list(case.shape)}")
        return {k: _leaf(x[k], s, case.dtype, f"{target} returned params[{k!r}]", where) for k, s in case.shape.items()}
    return _leaf(x, case.shape, case.dtype, f"{target} returned params", where)


def _leaf(x: Any, shape: tuple, dtype: str, what: str, where: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception:
            raise VerifyError(f"{what} of type {type(x).__name__} {where}; it must be a NumPy array") from None
    if x.shape != shape:
        raise VerifyError(f"{what} of shape {x.shape} {where}; the input had shape {shape}")
    if x.dtype != DTYPES[dtype]:
        raise VerifyError(f"{what} of dtype {x.dtype} {where}; the input had dtype {dtype}")
    return x


def _copy(tree: Any) -> Any:
    return {k: v.copy() for k, v in tree.items()} if isinstance(tree, dict) else tree.copy()


def _same_layout(got: Any, want: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(got, dict) and list(got) == list(want) and all(_same_layout(got[k], want[k]) for k in want)
    return isinstance(got, np.ndarray) and got.shape == want.shape and got.dtype == want.dtype


def compare(case: Case, quantity: str, want: Any, got: Any) -> tuple[Errors, dict | None]:
    """Errors of one field at one step, and the first element beyond the tolerance (or None)."""
    e, x = flat(want), flat(got)
    f = Field.measure(e, x)
    tol = case.tolerance(quantity)
    ok = tol.ok(f)
    if ok.all():
        return f.errors(), None
    i = int(np.argmin(ok))
    err = f.errors()
    return err, {
        "quantity": quantity, "index": i, "expected": _scalar(e[i]), "got": _scalar(x[i]),
        "abs": _scalar(err.abs), "rel": _scalar(err.rel), "ulp": _scalar(err.ulp), "tolerance": tol.text,
    }


def run_case(target: Target, args: dict, arguments: str, case: Case) -> CaseResult:
    stepper = target.start(args, case.dtype)
    expected = {t: (p, s) for t, p, s in case.steps}
    p = case.params0
    result = CaseResult(case, arguments, True, None)
    for t, g in enumerate(case.grads, 1):
        try:
            new, slots = stepper(_copy(p), _copy(g))
        except VerifyError:
            raise
        except Exception as exc:
            text = str(exc).splitlines()[0] if str(exc) else ""
            raise VerifyError(f"{target.name} raised {type(exc).__name__} at step t={t} of case {case.id}: {text}") from None
        p = _returned(new, case, target.name, t)
        if t not in expected:
            continue
        result.outputs[t] = p
        want_p, want_s = expected[t]
        quantities = [("params", want_p, p)]
        for slot, want in want_s.items():
            got = (slots or {}).get(slot)
            if got is not None and _same_layout(got, want):
                quantities.append((f"state.{slot}", want, got))
        for quantity, want, got in quantities:
            if quantity not in result.compared:
                result.compared.append(quantity)
                result.errors[quantity] = Errors()
            err, bad = compare(case, quantity, want, got)
            result.errors[quantity].update(err)
            if bad is not None and result.passed:
                result.passed = False
                result.first = {"t": t, **bad}
    return result


# ---------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return v


def _filters(target: Target, rule: str, hyper: dict) -> tuple[dict, dict]:
    """Split ``--hyper`` into filters on the implementation's arguments and on refopt's hyper."""
    rule_cls = rules.rule_class(rule)
    declared = {h.name: h for h in rule_cls.HYPER}
    impl, ref = {}, {}
    for key, value in hyper.items():
        if isinstance(target, PresetTarget) and key in target.preset.args:
            impl[key] = _norm(value)
        elif key in declared:
            try:
                ref[key] = _norm(declared[key].validate(_data.hyper_value(value), rule))
            except (ValueError, TypeError) as exc:
                raise VerifyError(f"--hyper {key}={value!r}: {exc}") from None
        elif isinstance(target, CallableTarget):
            if not target.accepts(key):
                raise VerifyError(f"--hyper {key}: {target.name} takes no argument {key!r} and {rule} has no "
                                  f"such hyper-parameter")
            target.extra[key] = value
        else:
            known = list(target.preset.args) if isinstance(target, PresetTarget) else []
            raise VerifyError("--hyper: " + suggest(key, known + list(declared), f"argument of {target.name}"))
    return impl, ref


def verify(target: Any, rule: str | None = None, hyper: dict | None = None, dtype: str | None = None,
           data: dict | None = None, identify: bool = True) -> Report:
    """Run the golden vectors of ``rule`` through ``target`` and compare every recorded step.

    ``target``: a preset with an adapter (``"torch.optim.Adam"``, ``"optax.adam"``), a
    ``"module:callable"`` string, or a factory itself.  ``rule`` is needed for factories.
    ``hyper`` keeps only the groups whose arguments (the implementation's names, or refopt's)
    have these values; for a factory, keys that are not hyper-parameters of the rule are passed
    to it as extra arguments.  ``dtype``: "float64", "float32" or None for both.  ``data``
    replaces the vectors file (the same format, for tests).  Raises :class:`VerifyError` for bad
    usage; a mismatch is a failing :class:`Report`, with the matching convention named in
    ``report.identification`` when ``identify``.
    """
    if dtype is not None and dtype not in DTYPES:
        raise VerifyError(f"dtype must be 'float64' or 'float32'; got {dtype!r}")
    t = resolve(target, rule)
    rule = t.rule
    impl_filter, ref_filter = _filters(t, rule, dict(hyper or {}))
    if data is None:
        data = _data.load(rule)
    else:
        _data.check(data, rule)
    dtypes = [dtype] if dtype else ["float64", "float32"]
    # the huge- and tiny-gradient cases overflow and underflow on purpose: no NumPy warnings
    with np.errstate(all="ignore"):
        return _verify(t, rule, data, dtypes, impl_filter, ref_filter, hyper, identify)


def _verify(t, rule, data, dtypes, impl_filter, ref_filter, hyper, identify) -> Report:
    results, skipped, failing = [], [], []
    for group in data["groups"]:
        if group["dtype"] not in dtypes:
            continue
        config = group_config(rule, group)
        prepared = t.prepare(config, group_hyper(group))
        if isinstance(prepared, str):
            skipped.append((str(group["id"]), group["dtype"], prepared))
            continue
        args, shown = prepared
        if any(_norm(args.get(k)) != v for k, v in impl_filter.items()) or any(
            _norm(config.hyper[k]) != v for k, v in ref_filter.items()
        ):
            continue
        for raw in group["cases"]:
            case = Case.decode(group, raw)
            res = run_case(t, args, shown, case)
            results.append(res)
            if not res.passed:
                failing.append((case, config, res.outputs))
    if not results:
        what = f" with {', '.join(f'{k}={v!r}' for k, v in (hyper or {}).items())}" if hyper else ""
        raise VerifyError(
            f"no group of the {rule} vectors in {' or '.join(dtypes)}{what} can be run through {t.name} "
            f"({len(skipped)} group(s) need arguments it cannot take)"
        )
    report = Report(t.name, t.kind, rule, dtypes, results, skipped)
    if failing and identify:
        report.identification = _identify.identify(rule, failing)
    return report
