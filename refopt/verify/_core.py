"""The verifier: run golden vectors through a target, compare, report, identify.

Host-side module (NumPy arrays only).
"""

from __future__ import annotations

import math
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import rules
from ..rules._base import suggest
from . import _bugs, _data, _identify
from ._data import DTYPES, EXACT, Errors, Field, Tolerance, VerifyError, decode, group_hyper, json_float
from ._targets import Target, _first_line, resolve

# how long one case may take in the target before it counts as hung (``--timeout``)
CASE_TIMEOUT = 60.0
MAX_TIMEOUT = 1e6  # seconds (11.6 days); the interval timer takes no more, and inf means no limit


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

        def slot(values):  # a state slot may have a shape of its own (Adafactor's statistics): kept flat
            try:
                return arr(values)
            except ValueError:
                if isinstance(shape, dict):
                    return {k: decode(values[k], dtype) for k in shape}
                return decode(values, dtype)

        steps = [
            (s["t"], arr(s["params"]), {k: slot(v) for k, v in (s.get("state") or {}).items()})
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
    side_effects: dict = field(default_factory=dict)  # detection -> first step it was seen

    def as_dict(self) -> dict:
        c = self.case
        return {
            "group": c.group, "case": c.id, "dtype": c.dtype, "flags": c.flags, "comment": c.comment,
            "arguments": self.arguments, "steps": len(c.grads), "verdict": "pass" if self.passed else "fail",
            "first_divergence": self.first, "compared": self.compared,
            "errors": {q: e.as_dict() for q, e in self.errors.items()},
            "tolerance": {q: c.tolerance(q).text for q in self.compared},
            "side_effects": dict(self.side_effects),
        }


@dataclass
class Report:
    target: str
    kind: str  # what the target is (see refopt.verify._targets.KINDS)
    rule: str
    dtypes: list
    results: list
    skipped: list  # (group id, dtype, reason)
    identification: dict | None = None
    implementation: dict = field(default_factory=dict)  # package, version, preset, reproduces, in_range, known_bugs
    side_effects: list = field(default_factory=list)  # {"detection", "cases", "first_step", "known_bugs"}

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
                "failed": len(self.failed), "skipped": len(self.skipped)}

    def as_dict(self) -> dict:
        """The whole report as JSON-ready data (non-finite numbers as "nan"/"inf"/"-inf")."""
        runs = {}
        for r in self.results:
            runs.setdefault((r.case.group, r.case.dtype), []).append(r)
        groups_run = [{"group": g, "dtype": d, "arguments": rs[0].arguments, "cases": len(rs),
                       "verdict": "pass" if all(r.passed for r in rs) else "fail"} for (g, d), rs in runs.items()]
        return json_safe({
            "target": self.target, "kind": self.kind, "rule": self.rule, "dtypes": self.dtypes,
            "implementation": self.implementation,
            "verdict": "pass" if self.passed else "fail", "summary": self.summary(),
            "groups_run": groups_run,
            "cases": [r.as_dict() for r in self.results],
            "skipped_groups": [{"group": g, "dtype": d, "reason": why} for g, d, why in self.skipped],
            "side_effects": self.side_effects,
            "identification": self.identification,
        })

    def text(self) -> str:
        lines = [f"refopt verify {self.target} against the {self.rule} vectors ({', '.join(self.dtypes)})"]
        impl = self.implementation
        about = f"target: {self.kind}"
        if impl.get("package"):
            about += f"; installed {impl['package']} {impl.get('version') or '(version unknown)'}"
        if impl.get("follows"):
            about += f"; arguments as {impl['follows']}"
        lines.append(about)
        if impl.get("reproduces") is not None:
            verdict = {True: "this release is inside it", False: "this release is OUTSIDE it: expect differences",
                       None: "the installed version is unknown"}[impl.get("in_range")]
            lines.append(f"preset {impl['preset']} reproduces {impl['package']} {impl['reproduces']}: {verdict}")
        for bug in impl.get("known_bugs", []):
            lines.append(f"known bug of this release: {bug['id']} — {bug['summary']}")
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
                f"{_exact(f['expected'])}, got {_exact(f['got'])} (abs {_g(f['abs'])}, rel {_g(f['rel'])}, {_g(f['ulp'])} ulp; "
                f"tolerance {f['tolerance']})"
            )
            for q, e in r.errors.items():
                lines.append(f"       {q}: max abs {_g(e.abs)}, rel {_g(e.rel)}, {_g(e.ulp)} ulp over {len(c.grads)} steps")
            if c.comment:
                lines.append(f"       case: {c.comment}" + (f" [{', '.join(c.flags)}]" if c.flags else ""))
            lines.append(f"       arguments: {r.arguments}")
        s = self.summary()
        lines.append(f"{'PASS' if self.passed else 'FAIL'}: {s['passed']} of {s['cases']} cases in {s['groups']} "
                     f"group(s) pass, {s['failed']} fail; {s['skipped']} group(s) or case(s) skipped")
        for effect in self.side_effects:
            named = "; ".join(f"known: {b['id']} — {b['summary']}" for b in effect["known_bugs"])
            lines.append(f"side effect: {SIDE_EFFECTS[effect['detection']]} (first at step t={effect['first_step']}, "
                         f"{len(effect['cases'])} case(s)){'; ' + named if named else ''}")
        if self.identification:
            lines.append(self.identification["message"])
        return "\n".join(lines)


SIDE_EFFECTS = {"gradient-modified": "the target wrote into the gradient it was given (torch.optim never does)"}


def _g(x: Any) -> str:
    """A number for the text report (also a "nan"/"inf" string from :func:`json_float`)."""
    if isinstance(x, str):
        return x
    x = float(x)
    if not math.isfinite(x):
        return json_float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else f"{x:.3g}"


def _exact(x: Any) -> str:
    """A value as it round-trips (``repr``), or the "nan"/"inf" string of a non-finite one."""
    return x if isinstance(x, str) else repr(x)


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float written as "nan"/"inf"/"-inf" (valid JSON)."""
    if isinstance(obj, float):
        return json_float(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj


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


class _TimeUp(BaseException):
    """Raised into a target that outran its time (a BaseException: ``except Exception`` in the
    target cannot swallow it)."""


@contextmanager
def _time_limit(seconds: float | None):
    """Interrupt the block after ``seconds`` (SIGALRM; on the main thread of a POSIX process --
    elsewhere there is no limit).  A target stuck inside one C call is interrupted when it returns
    to Python."""
    usable = (seconds is not None and seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def ring(signum, frame):
        raise _TimeUp()

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _call_target(target: Target, fn: Callable, case: Case, t: int) -> Any:
    """Run one call into the target; whatever goes wrong inside it is the target's failure."""
    where = f"at step t={t} of case {case.id}" if t else f"starting case {case.id}"
    try:
        return fn()
    except (VerifyError, _TimeUp):
        raise
    except SystemExit as exc:
        raise VerifyError(f"{target.name} called sys.exit({exc.code!r}) {where}") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise VerifyError(f"{target.name} raised {type(exc).__name__} {where}: {_first_line(exc)}") from None


def run_case(target: Target, args: dict, arguments: str, case: Case, timeout: float | None = CASE_TIMEOUT) -> CaseResult:
    """Run one case through a fresh instance of the target; a target that raises, exits, hangs
    past ``timeout`` seconds or returns the wrong thing raises :class:`VerifyError`."""
    try:
        with _time_limit(timeout):
            return _run_case(target, args, arguments, case)
    except _TimeUp:
        raise VerifyError(f"{target.name} did not finish case {case.id} ({len(case.grads)} steps) within "
                          f"{timeout:g} s: it hangs, or is far too slow (--timeout)") from None


def _run_case(target: Target, args: dict, arguments: str, case: Case) -> CaseResult:
    stepper = _call_target(target, lambda: target.start(args, case.dtype), case, 0)
    expected = {t: (p, s) for t, p, s in case.steps}
    p = case.params0
    result = CaseResult(case, arguments, True, None)
    for t, g in enumerate(case.grads, 1):
        new, slots = _call_target(target, lambda: stepper(_copy(p), _copy(g)), case, t)
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
    result.side_effects = dict(getattr(stepper, "side_effects", None) or {})
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
    """Split ``--hyper`` into filters on the implementation's arguments and on refopt's hyper;
    other keys the target takes become extra arguments passed to it."""
    rule_cls = rules.rule_class(rule)
    declared = {h.name: h for h in rule_cls.HYPER}
    impl, ref = {}, {}
    for key, value in hyper.items():
        if target.mapping is not None and key in target.mapping.args:
            impl[key] = _norm(value)
        elif key in declared:
            try:
                ref[key] = _norm(declared[key].validate(_data.hyper_value(value), rule))
            except (ValueError, TypeError) as exc:
                raise VerifyError(f"--hyper {key}={value!r}: {exc}") from None
        elif target.accepts(key):
            target.extra[key] = value
        elif target.preset is None:
            raise VerifyError(f"--hyper {key}: {target.name} takes no argument {key!r} and {rule} has no such "
                              f"hyper-parameter")
        else:
            raise VerifyError("--hyper: " + suggest(key, list(target.preset.args) + list(declared),
                                                    f"argument of {target.name}"))
    return impl, ref


def verify(target: Any, rule: str | None = None, hyper: dict | None = None, dtype: str | None = None,
           data: dict | None = None, identify: bool = True, like: str | None = None,
           timeout: float | None = CASE_TIMEOUT) -> Report:
    """Run the golden vectors of ``rule`` through ``target`` and compare every recorded step.

    ``target``: a preset name (``"torch.optim.Adam"``, ``"optax.adam"``,
    ``"pytorch_optimizer.DiffGrad"``, ...), a ``"module:Name"`` string, or the object itself (a
    torch optimizer class, a Keras optimizer class, an optax-style function, or a factory
    ``make(**hyper) -> step``).  ``rule`` is needed for the last two forms unless ``like`` (a
    preset whose argument names and conventions the target follows) says it.  ``hyper`` keeps
    only the groups whose arguments (the implementation's names, or refopt's) have these
    values; keys that are neither but that the target takes are passed to it.  ``dtype``:
    "float64", "float32" or None for both.  ``data`` replaces the vectors file (the same format,
    for tests).  ``timeout``: seconds one case may take in the target (None: no limit).

    Raises :class:`VerifyError` for bad usage and for a target that raises, exits, hangs or
    returns the wrong thing; a mismatch is a failing :class:`Report`, with the convention,
    preset or known bug it follows named in ``report.identification`` when ``identify``.
    """
    if dtype is not None and dtype not in DTYPES:
        raise VerifyError(f"dtype must be 'float64' or 'float32'; got {dtype!r}")
    if timeout is not None and not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
                                    and 0 < timeout <= MAX_TIMEOUT or timeout == math.inf):
        raise VerifyError(f"timeout must be a number of seconds in (0, {MAX_TIMEOUT:g}], inf or None (no limit); "
                          f"got {timeout!r}")
    if timeout == math.inf:
        timeout = None
    t = resolve(target, rule, like)
    rule = t.rule
    impl_filter, ref_filter = _filters(t, rule, dict(hyper or {}))
    if data is None:
        data = _data.load(rule)
    else:
        _data.check(data, rule)
    dtypes = [dtype] if dtype else ["float64", "float32"]
    # the huge- and tiny-gradient cases overflow and underflow on purpose: no NumPy warnings
    with np.errstate(all="ignore"):
        return _verify(t, rule, data, dtypes, impl_filter, ref_filter, hyper, identify, timeout)


def _implementation(t: Target) -> dict:
    """What the report says about the implementation: package, version, preset range, bugs."""
    out: dict = {"package": t.package, "version": t.version,
                 "follows": t.mapping.name if t.mapping is not None and t.mapping is not t.preset else None}
    if t.preset is not None:
        out["preset"] = t.preset.name
        reproduces = t.preset.versions or None
        out["reproduces"] = reproduces
        if reproduces is not None:
            out["in_range"] = _bugs.in_range(t.version, reproduces) if t.version else None
    out["known_bugs"] = [{"id": b.id, "kind": b.kind, "summary": b.summary}
                         for b in _bugs.for_rule(t.rule) if b.affects(t.package, t.version)]
    return out


def _side_effects(t: Target, results: list) -> list:
    seen: dict = {}
    for r in results:
        for detection, step in r.side_effects.items():
            e = seen.setdefault(detection, {"detection": detection, "cases": [], "first_step": step})
            e["cases"].append(r.case.id)
            e["first_step"] = min(e["first_step"], step)
    for e in seen.values():
        e["known_bugs"] = [{"id": b.id, "summary": b.summary, "sources": list(b.sources)} for b in
                           _bugs.side_effect_bugs(e["detection"], t.rule, t.package, t.version, t.name)]
    return list(seen.values())


def _verify(t, rule, data, dtypes, impl_filter, ref_filter, hyper, identify, timeout) -> Report:
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
            why = t.case_skip_reason(case)
            if why is not None:
                skipped.append((case.id, case.dtype, why))
                continue
            res = run_case(t, args, shown, case, timeout)
            results.append(res)
            if not res.passed:
                failing.append((case, config, res.outputs))
    if not results:
        what = f" with {', '.join(f'{k}={v!r}' for k, v in (hyper or {}).items())}" if hyper else ""
        raise VerifyError(
            f"no group of the {rule} vectors in {' or '.join(dtypes)}{what} can be run through {t.name} "
            f"({len(skipped)} group(s) need arguments it cannot take)"
        )
    report = Report(t.name, t.kind_text, rule, dtypes, results, skipped, implementation=_implementation(t),
                    side_effects=_side_effects(t, results))
    if failing and identify:
        report.identification = _identify.identify(rule, failing)
    return report
