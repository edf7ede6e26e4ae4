"""Naming the convention a mismatching target follows.

Host-side module (runs refopt on NumPy arrays).

When a target disagrees with the vectors, the same inputs (``params0`` and the gradient
sequence of the failing cases) are run through refopt itself in every *variant* of the
group's configuration:

* each option changed alone -- every other value of each :class:`~refopt.rules._base.Choice`,
  each :class:`~refopt.rules._base.Flag` flipped -- then every pair of changes, and (when
  nothing has matched and the rule has few options) every triple;
* every preset of the rule, given the group's numeric hyper-parameters;
* the known implementation bugs that no refopt option reproduces (:data:`KNOWN_BUGS`), run by
  an emulation here.

The target *matches* a variant when its parameters agree with that variant's at every
recorded step within the case's tolerance class, or within :data:`ROUNDING_ULP` ulps (an
evaluation-order difference).  Of the matching variants those with the fewest changes are
reported, each with its option's documentation; when none matches, the nearest one (smallest
largest relative error) is reported.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable


from .. import presets, rules
from ..rules._base import Choice, Flag, State
from ._data import Field
from ._targets import flat_hyper, invert

ROUNDING_ULP = 64
MAX_CANDIDATES = 300
MAX_CASES = 6


@dataclass
class Candidate:
    label: str  # "eps_mode='inside_sqrt'", "preset optax.adam", "known bug: ..."
    kind: str  # "option", "preset", "bug", "base"
    changes: dict
    doc: str
    size: int  # number of changes (0 for the vectors' own configuration)
    runner: Callable  # (config, case) -> {t: params} or None when it does not apply


def _run_rule(rule, case, hook=None):
    p = case.params0
    state = rule.init(p)
    out = {}
    for t, g in enumerate(case.grads, 1):
        if hook is not None:
            state = hook(rule, p, g, state, t)
        p, state = rule.step(p, g, state)
        if t in case.recorded:
            out[t] = p
    return out


def _variant_runner(changes):
    def run(config, case):
        try:
            rule = config.replace(**changes)
        except (ValueError, TypeError):
            return None
        return _run_rule(rule, case)

    return run


def _preset_runner(preset):
    def run(config, case):
        args = invert(preset, config, exact=False)
        if args is None:
            return None
        return _run_rule(preset.build(**args), case)

    return run


def _diffgrad_alias(config, case):
    """diffGrad whose previous gradient is the current one from step 2 on (a stored reference)."""

    def hook(rule, p, g, state, t):
        if t < 2:
            return state
        _, _, trace = rule.trace(p, g, state)  # trace["g"]: the gradient ξ sees (after L2, maximize)
        return State(state.rule, state.t, {**state.slots, "g_prev": trace["g"]})

    return _run_rule(config, case, hook)


KNOWN_BUGS: dict[str, list[tuple[str, str, Callable]]] = {
    "diffgrad": [
        (
            "previous-gradient aliasing",
            "the official diffGrad.py stored a reference to p.grad as previous_grad, so Δg ≡ 0 and ξ ≡ 0.5 "
            "from step 2 on (diffGrad becomes Adam at half the step; update-rules.md §2.1, discrepancy §4 #14, "
            "shivram1987/diffGrad#2); no refopt option reproduces it: store a copy of the gradient",
            _diffgrad_alias,
        )
    ],
}


def _options(rule_cls) -> list[tuple[str, Any, str]]:
    """(name, value, doc) for every single change of one option away from ``default``-agnostic values."""
    out = []
    for h in rule_cls.HYPER:
        if isinstance(h, Choice):
            out.extend((h.name, c, h.doc) for c in h.choices)
        elif isinstance(h, Flag):
            out.extend([(h.name, False, h.doc), (h.name, True, h.doc)])
    return out


def candidates(rule_name: str, configs: list) -> list[Candidate]:
    """Every variant to try, for the group configurations ``configs`` of the failing cases."""
    rule_cls = rules.rule_class(rule_name)
    out = [Candidate("the vectors' own configuration", "base", {}, "", 0, _variant_runner({}))]
    ref = configs[0]
    singles = [(n, v, d) for n, v, d in _options(rule_cls) if ref.hyper.get(n) != v]
    docs = {n: d for n, _, d in singles}
    for size in (1, 2, 3):
        if size == 3 and len(singles) > 10:
            break
        for combo in itertools.combinations(singles, size):
            names = [n for n, _, _ in combo]
            if len(set(names)) < size:
                continue
            changes = {n: v for n, v, _ in combo}
            label = ", ".join(f"{n}={v!r}" for n, v in changes.items())
            doc = "; ".join(f"{n}: {docs[n]}" for n in changes)
            out.append(Candidate(label, "option", changes, doc, size, _variant_runner(changes)))
    for name in presets.names():
        p = presets.describe(name)
        if p.rule == rule_name:
            out.append(Candidate(f"preset {name}", "preset", {}, f"{p.source}" + (f"; {p.notes}" if p.notes else ""),
                                 1, _preset_runner(p)))
    for label, doc, runner in KNOWN_BUGS.get(rule_name, []):
        out.append(Candidate(f"known bug: {label}", "bug", {}, doc, 1, runner))
    return sorted(out, key=lambda c: c.size)  # stable: options, then presets, then bugs, per size


def _distance(case, target_out, cand_out):
    """(within tolerance, within rounding, largest rel error, largest ulp error) over the recorded steps."""
    strict = rounding = True
    rel = ulp = 0.0
    from ._core import flat

    tol = case.tolerance("params")
    for t, got in target_out.items():
        f = Field.measure(flat(cand_out[t]), flat(got))
        err = f.errors()
        strict &= bool(tol.ok(f).all())
        rounding &= err.ulp <= ROUNDING_ULP
        rel, ulp = max(rel, err.rel), max(ulp, err.ulp)
    return strict, rounding or strict, rel, ulp


def identify(rule_name: str, failing: list) -> dict:
    """``failing``: (case, config, target params by step) of the failing cases."""
    chosen = sorted(failing, key=lambda f: len(f[0].grads))[:MAX_CASES]
    cands = candidates(rule_name, [c for _, c, _ in chosen])
    results = []
    seen: set = set()
    matched_size = None
    for cand in cands:
        if matched_size is not None and cand.size > matched_size:
            break
        if len(results) >= MAX_CANDIDATES:
            break
        if cand.kind in ("option", "base"):
            try:
                key = tuple(tuple(sorted(flat_hyper(cfg.replace(**cand.changes)).items(), key=str)) for _, cfg, _ in chosen)
            except (ValueError, TypeError):
                continue
            if key in seen:
                continue
            seen.add(key)
        strict = rounding = True
        rel = ulp = 0.0
        ran = False
        try:
            for case, config, target_out in chosen:
                cand_out = cand.runner(config, case)
                if cand_out is None:
                    raise ValueError("not applicable")
                s, r, e, u = _distance(case, target_out, cand_out)
                strict &= s
                rounding &= r
                rel, ulp = max(rel, e), max(ulp, u)
                ran = True
        except (ValueError, TypeError, ArithmeticError):
            continue
        if not ran:
            continue
        results.append((cand, strict, rounding, rel, ulp))
        if rounding and matched_size is None:
            matched_size = cand.size
    matches = [r for r in results if r[2]]
    if matches:
        best = min(r[0].size for r in matches)
        matches = sorted((r for r in matches if r[0].size == best), key=lambda r: (not r[1], r[3]))
    nearest = min(results, key=lambda r: (r[3], r[4])) if results else None

    def entry(r):
        cand, strict, rounding, rel, ulp = r
        return {"variant": cand.label, "kind": cand.kind, "changes": {k: v for k, v in cand.changes.items()},
                "doc": cand.doc, "within_tolerance": strict, "within_rounding": rounding,
                "max_rel": rel, "max_ulp": ulp}

    out = {
        "cases_used": [c.id for c, _, _ in chosen],
        "tried": len(results),
        "matches": [entry(r) for r in matches],
        "nearest": entry(nearest) if nearest is not None and not matches else None,
    }
    out["message"] = _message(rule_name, out)
    return out


def _message(rule_name: str, ident: dict) -> str:
    matches = ident["matches"]
    if matches:
        first = matches[0]
        if first["kind"] == "base":
            return (
                f"the target computes the vectors' own {rule_name} configuration, but differs from it by rounding "
                f"(up to {first['max_ulp']:.0f} ulp, more than the vectors' tolerance class allows): an "
                f"evaluation-order difference, not another convention"
            )
        parts = []
        for m in matches:
            how = "" if m["within_tolerance"] else f" up to rounding ({m['max_ulp']:.0f} ulp)"
            if m["kind"] == "option":
                parts.append(f"{rule_name} with {m['variant']}{how} — {m['doc']}")
            elif m["kind"] == "preset":
                parts.append(f"{m['variant'][len('preset '):]}{how} — {m['doc']}")
            else:
                parts.append(f"the {m['variant']}{how} — {m['doc']}")
        return "the target matches " + "; or ".join(parts)
    near = ident["nearest"]
    if near is None:
        return "no known convention or preset of this rule could be run on these cases"
    return (
        f"no known convention, preset or known bug of {rule_name} matches; the nearest is {near['variant']} "
        f"(largest relative error {near['max_rel']:.3g}, {near['max_ulp']:.3g} ulp) — "
        f"{near['doc'] or 'the configuration of the vectors'}: look for a bug in the port"
    )
