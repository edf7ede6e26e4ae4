"""Naming the convention a mismatching target follows.

Host-side module (runs refopt on NumPy arrays).

When a target disagrees with the vectors, the same inputs (``params0`` and the gradient
sequence of the failing cases) are run through refopt itself in every *variant* of the
group's configuration:

* each option changed alone -- every other value of each :class:`~refopt.rules._base.Choice`,
  each :class:`~refopt.rules._base.Flag` flipped -- then every pair of changes, and (when
  nothing has matched and the rule has few options) every triple;
* every preset of the rule, given the group's numeric hyper-parameters;
* the known bugs and regressions of real implementations (``specs/known_bugs.toml``, read by
  :mod:`refopt.verify._bugs`): through refopt's options where they reproduce one, else through
  its emulation.

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
from ..rules._base import Choice, Flag
from . import _bugs
from ._data import Field
from ._targets import flat_hyper, invert

ROUNDING_ULP = 64
MAX_CANDIDATES = 300
MAX_CASES = 6
ORDER = {"base": 0, "bug": 1, "preset": 2, "option": 3}  # at equal size: the more specific name first


@dataclass
class Candidate:
    label: str  # "eps_mode='inside_sqrt'", "preset optax.adam", "known bug: ..."
    kind: str  # "option", "preset", "bug", "base"
    changes: dict
    doc: str
    size: int  # number of changes (0 for the vectors' own configuration)
    runner: Callable  # (config, case) -> {t: params} or None when it does not apply
    bug: Any = None  # the catalogue entry (refopt.verify._bugs.KnownBug) of a "bug" candidate


def _run_rule(rule, case):
    p = case.params0
    state = rule.init(p)
    out = {}
    for t, g in enumerate(case.grads, 1):
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


def known_bugs(rule_name: str) -> list:
    """The catalogue entries of a rule that :func:`identify` can run (see ``specs/known_bugs.toml``)."""
    return [b for b in _bugs.for_rule(rule_name) if _bugs.runnable(b)]


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
    bug_options = []
    for bug in _bugs.for_rule(rule_name):
        if not _bugs.runnable(bug):
            continue
        options = dict(bug.emulation.get("options", {}))
        runner = _variant_runner(options) if options else _bugs.emulation(bug)
        doc = f"{bug.computes} [{bug.kind}; {bug.versions}; sources: {'; '.join(bug.sources)}]"
        out.append(Candidate(f"known {bug.kind} {bug.id}", "bug", options, doc, len(options) or 1, runner, bug))
        bug_options.append(options)
    # an option change that a catalogue entry names is reported as that entry, which says more
    out = [c for c in out if not (c.kind == "option" and c.changes in bug_options)]
    return sorted(out, key=lambda c: (c.size, ORDER[c.kind]))


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


MAX_GROUPS = 8


def identify(rule_name: str, failing: list) -> dict:
    """``failing``: (case, config, target params by step) of the failing cases.

    The variants are tried on the failing cases together first; when none matches and the
    cases come from several groups, each group is identified on its own (a target may take
    different code paths for different configurations, as pytorch_optimizer 3.10-3.11 does).
    """
    out = _identify_cases(rule_name, failing)
    groups: dict = {}
    for f in failing:
        groups.setdefault((f[0].group, f[0].dtype), []).append(f)
    if not out["matches"] and len(groups) > 1:
        parts = [{"groups": [f"{g} [{d}]"], **_identify_cases(rule_name, fs)}
                 for (g, d), fs in list(groups.items())[:MAX_GROUPS]]
        if any(p["matches"] for p in parts):
            out["by_group"] = parts
            out["matches"] = []
            out["message"] = "different groups follow different variants: " + "; ".join(
                f"{', '.join(p['groups'])}: {p['message']}" for p in parts)
    return out


def _identify_cases(rule_name: str, failing: list) -> dict:
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
        matches = sorted((r for r in matches if r[0].size == best), key=lambda r: (ORDER[r[0].kind], not r[1], r[3]))
    nearest = min(results, key=lambda r: (r[3], r[4])) if results else None

    def entry(r):
        cand, strict, rounding, rel, ulp = r
        e = {"variant": cand.label, "kind": cand.kind, "changes": {k: v for k, v in cand.changes.items()},
             "doc": cand.doc, "within_tolerance": strict, "within_rounding": rounding,
             "max_rel": rel, "max_ulp": ulp}
        if cand.bug is not None:
            e["bug"] = cand.bug.as_dict()
        elif cand.kind == "option":
            covering = _covering_bugs(rule_name, cand.changes)
            if covering:  # several catalogued bugs at once (a release that has more than one)
                e["bugs"] = [b.as_dict() for b in covering]
        return e

    out = {
        "cases_used": [c.id for c, _, _ in chosen],
        "tried": len(results),
        "matches": [entry(r) for r in matches],
        "nearest": entry(nearest) if nearest is not None and not matches else None,
    }
    out["message"] = _message(rule_name, out)
    return out


def _covering_bugs(rule_name: str, changes: dict) -> list:
    """Catalogue entries whose options together make up exactly ``changes``, or []."""
    parts = [b for b in known_bugs(rule_name) if "options" in b.emulation
             and all(changes.get(k, object()) == v for k, v in b.emulation["options"].items())]
    union = {k: v for b in parts for k, v in b.emulation["options"].items()}
    return parts if parts and union == changes else []


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
            if m["kind"] == "option" and m.get("bugs"):
                named = "; and ".join(f"{b['implementation']} ({b['versions']}): {b['summary']} — known {b['kind']} "
                                      f"{b['id']}" for b in m["bugs"])
                parts.append(f"{rule_name} with {m['variant']}{how}, which is {len(m['bugs'])} known bugs at once: "
                             f"{named}")
            elif m["kind"] == "option":
                parts.append(f"{rule_name} with {m['variant']}{how} — {m['doc']}")
            elif m["kind"] == "preset":
                parts.append(f"{m['variant'][len('preset '):]}{how} — {m['doc']}")
            else:
                bug = m["bug"]
                opts = ", ".join(f"{k}={v!r}" for k, v in m["changes"].items())
                also = f" (in refopt: {rule_name} with {opts})" if opts else ""
                parts.append(f"{bug['implementation']} ({bug['versions']}){how}: {bug['summary']} — known {bug['kind']} "
                             f"{bug['id']}{also}; sources: {'; '.join(bug['sources'])}")
        return "the target matches " + "; or ".join(parts)
    near = ident["nearest"]
    if near is None:
        return "no known convention or preset of this rule could be run on these cases"
    return (
        f"no known convention, preset or known bug of {rule_name} matches; the nearest is {near['variant']} "
        f"(largest relative error {near['max_rel']:.3g}, {near['max_ulp']:.3g} ulp) — "
        f"{near['doc'] or 'the configuration of the vectors'}: look for a bug in the port"
    )
