"""The rule specs (specs/rules/<rule>.toml) agree with the code, exactly.

For every rule and a set of configurations that reaches every flag and choice value:
the trace names and their order are the spec's equations filtered by their ``when``
conditions (at every step, so that per-step conditions such as RAdam's ``rectified`` are
exercised); the state slots are the spec's state fields filtered the same way, with the
documented initial values; the hyper-parameters (names, order, defaults, valid ranges,
choices) are exactly ``HYPER``; the options list every flag and choice value; the presets
are exactly those that build the rule, with their sources; and the rows of the notes'
discrepancy table (update-rules.md §4) that concern the rule are all there.  Adding a
hyper-parameter or a traced quantity without updating the spec fails here.

Also: the condition language, finding the specs in a checkout and in an installed wheel,
clear errors for broken spec files, and ``refopt explain`` printing the spec's equations.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

import refopt as ro
from refopt import specs
from refopt.cli import main
from refopt.cli._hyper import parse_hyper
from refopt.rules._base import Choice, Flag, Int, Pair, Real

RULES = ro.rules.names()

# hyper-parameters under which every single flag/choice flip is tried (flips that the rule
# rejects as invalid combinations are skipped; coverage of every value is asserted below)
BASES: dict[str, list[dict]] = {
    "sgd": [{}, {"momentum": 0.9, "weight_decay": 0.1}, {"momentum": 0.9, "dampening": 0.5},
            {"weight_decay": 0.1, "decoupled_weight_decay": True}],
    "adam": [{}, {"weight_decay": 0.1, "amsgrad": True}, {"eps_root": 1e-8}, {"decoupled_weight_decay": True},
             {"amsgrad": True, "amsgrad_max": "bias_corrected", "eps_root": 1e-10}],
    "adamw": [{}, {"amsgrad": True}, {"eps_root": 1e-8}, {"amsgrad": True, "amsgrad_max": "bias_corrected"}],
    "amsgrad": [{}, {"weight_decay": 0.1}, {"eps_root": 1e-8}, {"amsgrad_max": "bias_corrected"},
                {"decoupled_weight_decay": True}, {"amsgrad": False}],
    "radam": [{}, {"weight_decay": 0.1}, {"threshold": "rho>4", "warmup": "none"},
              {"weight_decay": 0.1, "decoupled_weight_decay": True, "warmup": "none"}],
    "adabelief": [
        {}, {"rectify": True}, {"amsgrad": True}, {"rectify": True, "amsgrad": True},
        {"weight_decay": 0.1}, {"weight_decay": 0.1, "weight_decouple": False}, {"eps_root": 1e-12},
        {"amsgrad": True, "amsgrad_eps": "after_max"}, {"rectify": True, "degenerated_to_sgd": False},
        {"rectify": True, "rectified_denom": "raw_amsgrad", "amsgrad": True},
        {"rectify": True, "rectified_denom": "bias_corrected", "eps_mode": "inside_sqrt"},
        {"nesterov": True, "amsgrad": True}, {"amsgrad": True, "eps_root": 1e-12},
    ],
    "diffgrad": [{}, {"weight_decay": 0.1}, {"eps_root": 1e-15}, {"weight_decay": 0.1, "weight_decouple": True}],
    "rmsprop": [{}, {"momentum": 0.9}, {"centered": True, "momentum": 0.5, "weight_decay": 0.1},
                {"weight_decay": 0.1, "decoupled_weight_decay": True, "initial_accumulator_value": 0.1}],
    "adagrad": [{}, {"weight_decay": 0.1, "initial_accumulator_value": 0.1},
                {"weight_decay": 0.1, "decoupled_weight_decay": True, "lr_decay": 0.1}],
    "adadelta": [{}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True}],
    "lion": [{}, {"weight_decay": 0.1}],
    "signsgd": [{}, {"momentum": 0.9}, {"momentum": 0.9, "dampening": 0.9}],
    "normalized_sgd": [{}, {"momentum": 0.9}, {"momentum": 0.9, "dampening": 0.5, "eps": 1e-8}],
    "clipped_sgd": [{}, {"momentum": 0.9, "weight_decay": 0.1}, {"clip_fraction": 0.0}],
    "clipped_adam": [{}, {"amsgrad": True}, {"weight_decay": 0.1}, {"clip_fraction": 0.0}],
    "adabound": [{}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True},
                 {"eps_root": 1e-15, "amsbound": True}, {"step_decay": "sqrt_t", "bias_correction": False, "eps": 0.0}],
    "amsbound": [{}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True},
                 {"eps_root": 1e-15, "amsbound": False}],
    "yogi": [{}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True},
             {"eps_mode": "after_bias_correction", "eps_root": 1e-8}, {"initial_momentum_value": 1e-6}],
    "adamax": [{}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True}],
    "nadam": [{}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True}, {"eps_root": 1e-8}],
    "msvag": [{}, {"beta2": 0.999, "rho_cap": None, "clamp": False, "weight_decay": 0.1}],
    "fromage": [{}, {"p_bound": 2.0}, {"min_norm": 1e-6}],
    "adafactor": [{}, {"beta1": 0.9}, {"weight_decay": 0.1}, {"eps": (None, 1e-3), "eps1_mode": "clamp"},
                  {"beta2_cap": 0.999, "decay_dtype": "float32"}],
    "clipped_adafactor": [{}, {"clip_fraction": 0.0}, {"beta1": 0.9, "weight_decay": 0.1}, {"eps": (None, 1e-3)}],
    "clipped_lion": [{}, {"clip_fraction": 0.0, "weight_decay": 0.1}],
    "clip_update_adam": [{}, {"update_clip_fraction": 0.0, "grad_clip_fraction": 0.5}],
    "clip_update_lion": [{}, {"update_clip_fraction": 1.0, "grad_clip_fraction": 0.5}, {"update_clip_fraction": 0.0}],
}
STEPS = 6  # RAdam / AdaBelief with β2 = 0.999 rectify from t = 5 (ρ_t > 4) or t = 6 (> 5, ≥ 5)

# rows of update-rules.md §4 that concern each rule (the notes' discrepancy table)
DISCREPANCY_ROWS = {
    "adabelief": range(1, 14),
    "diffgrad": range(14, 21),
    "sgd": (21, 22),
    "adam": (17, 23, 24, 25),
    "amsgrad": (24,),
    "adamw": (25,),
    "rmsprop": (26,),
    "adagrad": (27,),
    "adadelta": (28,),
    "radam": (29,),
}


def _option_values(h) -> list:
    return list(h.choices) if isinstance(h, Choice) else [False, True]


def configurations(rule: str) -> list[dict]:
    """The bases, and every base with one flag/choice changed, deduplicated; invalid
    combinations (a ValueError at construction) are left out."""
    cls = ro.rules.rule_class(rule)
    options = [h for h in cls.HYPER if isinstance(h, (Choice, Flag))]
    out, seen = [], set()
    for base in BASES[rule]:
        for h in [None, *options]:
            for value in [None] if h is None else _option_values(h):
                hyper = dict(base) if h is None else {**base, h.name: value}
                key = tuple(sorted(hyper.items()))
                if key in seen:
                    continue
                seen.add(key)
                try:
                    cls(**hyper)
                except ValueError:
                    continue
                out.append(hyper)
    return out


def _problem(theta):
    """The notes' golden problem (update-rules.md §5): g = Aθ + B + θ³."""
    return np.array([3.0, 0.5, 10.0]) * theta + np.array([0.5, -1.0, 0.2]) + theta**3


def _steps(rule):
    theta = np.array([1.0, -2.0, 0.5])
    state = rule.init(theta)
    for _ in range(STEPS):
        theta, state, trace = rule.trace(theta, _problem(theta), state)
        yield trace


def _step_context(rule, trace) -> dict:
    ctx = specs.context(rule)
    ctx.update({k: v for k, v in trace.items() if not isinstance(v, np.ndarray)})
    return ctx


class _Specs(dict):
    def __missing__(self, name):
        self[name] = specs.load(name)
        return self[name]


@pytest.fixture(scope="module")
def all_specs():
    return _Specs()


def test_every_rule_has_exactly_one_spec():
    assert specs.names() == sorted(RULES)


# ---------------------------------------------------------------------------------------
# equations <-> trace, state <-> slots
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule_name", RULES)
def test_trace_names_and_order_are_the_spec_equations(rule_name, all_specs):
    spec = all_specs[rule_name]
    cls = ro.rules.rule_class(rule_name)
    configs = configurations(rule_name)
    covered = {(h.name, v): False for h in cls.HYPER if isinstance(h, (Choice, Flag)) for v in _option_values(h)}
    used = set()
    for hyper in configs:
        rule = cls(**hyper)
        for h in cls.HYPER:
            if (h.name, rule.hyper[h.name]) in covered:
                covered[h.name, rule.hyper[h.name]] = True
        for trace in _steps(rule):
            ctx = _step_context(rule, trace)
            chosen = spec.equations_for(ctx)
            used.update(id(eq) for eq in chosen)
            assert [eq.name for eq in chosen] == list(trace), (hyper, trace["t"])
            for eq in chosen:  # kind: a host scalar per step, or arrays shaped like the params
                is_array = isinstance(trace[eq.name], np.ndarray)
                assert is_array == (eq.kind == "array"), (eq.name, type(trace[eq.name]))
    missing = [k for k, ok in covered.items() if not ok]
    assert not missing, f"no valid configuration reaches {missing}"
    dead = [f"{eq.name} [when {eq.when}]" for eq in spec.equations if id(eq) not in used]
    assert not dead, f"equations no tested configuration selects: {dead}"


@pytest.mark.parametrize("rule_name", RULES)
def test_state_fields_are_the_slots_with_their_initial_values(rule_name, all_specs):
    spec = all_specs[rule_name]
    cls = ro.rules.rule_class(rule_name)
    theta = np.array([1.0, -2.0, 0.5])
    for hyper in configurations(rule_name):
        rule = cls(**hyper)
        ctx = specs.context(rule)
        assert spec.state_for(ctx) == list(rule.slots()), hyper
        state = rule.init(theta)
        for field in spec.state:
            if field.applies(ctx):
                if field.init != "0" and field.init not in rule.hyper:
                    continue  # a documented expression of the initial params (fromage's p_bound·‖θ0‖)
                want = 0.0 if field.init == "0" else float(rule.hyper[field.init])
                # a slot may be shaped otherwise than the params (adafactor's empty unused statistics)
                np.testing.assert_array_equal(state[field.name], np.full(state[field.name].shape, want))


def test_trace_names_follow_a_new_quantity(all_specs, monkeypatch):
    """A traced quantity the spec does not list breaks the equality (the guard works)."""
    from refopt.rules import _lion

    leaf = _lion.Lion._leaf

    def with_extra(self, xp, p, g, s, c):
        p_new, new, trace = leaf(self, xp, p, g, s, c)
        return p_new, new, {**trace, "extra": g}

    monkeypatch.setattr(_lion.Lion, "_leaf", with_extra)
    rule = ro.rules.lion()
    trace = next(_steps(rule))
    assert all_specs["lion"].trace_names(_step_context(rule, trace)) != list(trace)


# ---------------------------------------------------------------------------------------
# hyper-parameters, options, presets, discrepancies, references
# ---------------------------------------------------------------------------------------


def _real_fields(h) -> dict:
    return {"low": float(h.low), "high": float(h.high), "low_open": h.low_open, "high_open": h.high_open}


def _expected_hyper(h) -> dict:
    """The spec entry that the declaration ``h`` demands (meaning excluded)."""
    if isinstance(h, Pair):
        parts = [{"name": p.name, "default": p.default, "valid": p.valid, **_real_fields(p)} for p in h.parts]
        return {"name": h.name, "kind": "pair", "default": list(h.default), "valid": h.valid, "parts": parts}
    if isinstance(h, Flag):
        return {"name": h.name, "kind": "flag", "default": h.default, "valid": h.valid}
    if isinstance(h, Choice):
        return {"name": h.name, "kind": "choice", "default": h.default, "valid": h.valid, "choices": list(h.choices)}
    if isinstance(h, Int):
        out = {"name": h.name, "kind": "int", "default": h.default, "valid": h.valid, "low": h.low}
        return out if h.high is None else {**out, "high": h.high}
    assert isinstance(h, Real), h
    if type(h) is Real:
        return {"name": h.name, "kind": "real", "default": h.default, "valid": h.valid, **_real_fields(h)}
    # AdaBelief's eps_root: a Real that may be None ("none" in TOML, which has no null)
    assert h.valid.startswith("None or "), h
    default = "none" if h.default is None else h.default
    return {"name": h.name, "kind": "real_or_none", "default": default, "valid": h.valid, **_real_fields(h)}


@pytest.mark.parametrize("rule_name", RULES)
def test_hyper_parameters_are_exactly_the_declarations(rule_name, all_specs):
    cls = ro.rules.rule_class(rule_name)
    entries = all_specs[rule_name].hyper
    assert [e["name"] for e in entries] == [h.name for h in cls.HYPER]
    for h, entry in zip(cls.HYPER, entries):
        got = {k: v for k, v in entry.items() if k != "meaning"}
        if "parts" in got:
            got["parts"] = [{k: v for k, v in p.items() if k != "meaning"} for p in got["parts"]]
        want = _expected_hyper(h)
        assert got == want, h.name
        assert type(got["default"]) is type(want["default"]), h.name  # 1 vs 1.0 vs true
        assert entry.get("meaning"), f"{h.name} has no meaning"


@pytest.mark.parametrize("rule_name", RULES)
def test_options_list_every_variant_with_its_implementations(rule_name, all_specs):
    cls = ro.rules.rule_class(rule_name)
    options = {o["name"]: o for o in all_specs[rule_name].options}
    declared = [h for h in cls.HYPER if isinstance(h, (Choice, Flag))]
    assert list(options) == [h.name for h in declared]
    for h in declared:
        variants = options[h.name]["variants"]
        # choices in their declared order; a flag's default first
        want = list(h.choices) if isinstance(h, Choice) else [h.default, not h.default]
        assert [v["value"] for v in variants] == want, h.name
        for v in variants:
            assert v.get("meaning") and v.get("used_by"), (h.name, v["value"])
            assert all(isinstance(u, str) and u for u in v["used_by"]), (h.name, v["value"])


@pytest.mark.parametrize("rule_name", RULES)
def test_presets_are_exactly_those_of_the_rule(rule_name, all_specs):
    listed = {p["name"]: p for p in all_specs[rule_name].presets}
    mine = [n for n in ro.presets.names() if ro.presets.describe(n).rule == rule_name]
    assert sorted(listed) == sorted(mine)
    for name in mine:
        assert listed[name]["source"] == ro.presets.describe(name).source, name


@pytest.mark.parametrize("rule_name", RULES)
def test_discrepancies_cover_the_notes_table(rule_name, all_specs):
    spec = all_specs[rule_name]
    cls = ro.rules.rule_class(rule_name)
    options = {h.name: h for h in cls.HYPER if isinstance(h, (Choice, Flag))}
    rows = set()
    for d in spec.discrepancies:
        assert d.get("ref") and d.get("what") and d.get("where") and d.get("sources"), d
        match = re.fullmatch(r"D(\d+)", d["ref"])
        if match:
            rows.add(int(match.group(1)))
        if "reproduce" in d:  # a conjunction of option values that reproduces the convention
            hyper = {}
            for part in d["reproduce"].split(" and "):
                name, value = re.fullmatch(r"\s*(\w+)\s*=\s*(.+?)\s*", part).groups()
                assert name in options, (d["ref"], name)
                parsed = specs.Condition(f"{name} = {value}")
                hyper[name] = next(v for v in _option_values(options[name]) if parsed.evaluate({name: v}))
            cls(**hyper)  # a valid configuration
    assert set(DISCREPANCY_ROWS.get(rule_name, ())) <= rows, sorted(set(DISCREPANCY_ROWS.get(rule_name, ())) - rows)
    if rule_name not in DISCREPANCY_ROWS:
        assert spec.discrepancies, "every rule states its known differences (or why a convention was chosen)"


@pytest.mark.parametrize("rule_name", RULES)
def test_title_citation_and_references(rule_name, all_specs):
    spec = all_specs[rule_name]
    cls = ro.rules.rule_class(rule_name)
    assert spec.raw["schema"] == specs.SCHEMA
    assert spec.title == cls.title and spec.citation == cls.citation
    assert spec.raw["family"] == (cls.family or cls.name)
    refs = spec.references
    assert refs and all(r.get("cite") and r.get("role") for r in refs)
    cited = set(re.findall(r"arXiv (\d{4}\.\d{4,5})", spec.citation))
    assert cited <= {r.get("arxiv") for r in refs}, cited
    for r in refs:
        assert "arxiv" not in r or re.fullmatch(r"\d{4}\.\d{4,5}", r["arxiv"]), r


@pytest.mark.parametrize("rule_name", RULES)
def test_conditions_read_only_known_names(rule_name, all_specs):
    spec = all_specs[rule_name]
    cls = ro.rules.rule_class(rule_name)
    known = {h.name for h in cls.HYPER} | {p.name for h in cls.HYPER for p in getattr(h, "parts", ())}
    per_step = {eq.name for eq in spec.equations if eq.kind == "scalar"}
    for eq in spec.equations:
        if eq.when is not None:
            assert eq.when.names <= known | per_step, (eq.name, str(eq.when))
            # per-step names are computed before they are read
            for name in eq.when.names - known:
                first = next(i for i, e in enumerate(spec.equations) if e.name == name)
                assert first < spec.equations.index(eq), (eq.name, name)
    for field in spec.state:
        if field.when is not None:
            assert field.when.names <= known, (field.name, str(field.when))


# ---------------------------------------------------------------------------------------
# the condition language
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,ctx,want",
    [
        ('a = true', {"a": True}, True),
        ('a = true', {"a": np.bool_(False)}, False),
        ('m = "lerp"', {"m": "lerp"}, True),
        ('m != "lerp"', {"m": "lerp"}, False),
        ("x = 0", {"x": 0.0}, True),
        ("x != 0", {"x": 1e-300}, True),
        ("x = 1e-8", {"x": 1e-8}, True),
        ("x = inf", {"x": math.inf}, True),
        ("x = none", {"x": None}, True),
        ("x = 0", {"x": None}, False),
        ("x != 0", {"x": np.array([0.0, 0.1])}, True),
        ("x = 0", {"x": np.zeros((2, 1))}, True),
        ("a = true or b = true and c = true", {"a": True, "b": False, "c": False}, True),  # and binds tighter
        ("(a = true or b = true) and c = true", {"a": True, "b": False, "c": False}, False),
        ("not a = true and b = true", {"a": False, "b": True}, True),
        ("not (a = true and b = true)", {"a": True, "b": True}, False),
    ],
)
def test_condition_evaluation(text, ctx, want):
    assert specs.Condition(text).evaluate(ctx) is want


def test_condition_partial_is_three_valued():
    c = specs.Condition('a = true and rectified = true')
    assert c.evaluate({"a": True}, partial=True) is None
    assert c.evaluate({"a": False}, partial=True) is False
    assert specs.Condition('a = true or r = true').evaluate({"a": True}, partial=True) is True
    assert specs.Condition('not r = true').evaluate({}, partial=True) is None
    assert c.names == {"a", "rectified"}
    with pytest.raises(ValueError, match=r"reads 'rectified', which the context does not hold"):
        c.evaluate({"a": True})


@pytest.mark.parametrize(
    "text,ctx,want",
    [
        ('rectified = false and warmup = "sgd"', {"warmup": "sgd"}, "rectified = false"),
        ('rectified = false and warmup = "sgd"', {"warmup": "none"}, False),
        ('d = false and (rectified = true or warmup != "none")', {"d": False, "warmup": "none"}, "rectified = true"),
        ('d = false and (rectified = true or warmup != "none")', {"d": False, "warmup": "sgd"}, True),
        ('a = true and (r = true or s = 1.5)', {"a": True}, "r = true or s = 1.5"),
        ('not (r = true or s = none)', {}, "not (r = true or s = none)"),
        ('(r = true or s = 1) and q = "x"', {}, '(r = true or s = 1) and q = "x"'),
    ],
)
def test_condition_residual_keeps_only_the_undecided_part(text, ctx, want):
    got = specs.Condition(text).residual(ctx)
    assert got == want
    if isinstance(got, str):  # the residual is itself a condition, equal on the unknown names
        assert specs.Condition(got).names == specs.Condition(text).names - set(ctx)


@pytest.mark.parametrize(
    "text,message",
    [
        ("", r"non-empty string"),
        ("a == true", r"cannot read|expected"),
        ("a = ", r"expected value"),
        ("a true", r"expected = or != after 'a'"),
        ("(a = true", r"expected \)"),
        ("a = true b = false", r"unexpected 'b'"),
        ("a = 'x'", r"cannot read"),
    ],
)
def test_condition_syntax_errors(text, message):
    with pytest.raises(ValueError, match=message):
        specs.Condition(text)


@pytest.mark.parametrize("text,value", [("a = true", 1.0), ('a = "x"', True), ("a = 1", "x"), ("a = 1", True)])
def test_condition_type_mismatch_is_an_error(text, value):
    with pytest.raises(ValueError, match="compares a="):
        specs.Condition(text).evaluate({"a": value})


# ---------------------------------------------------------------------------------------
# finding and reading the files
# ---------------------------------------------------------------------------------------


def _make_specs(folder: Path) -> Path:
    (folder / "rules").mkdir(parents=True)
    return folder


def test_locate_prefers_the_packaged_copy(tmp_path):
    pkg = tmp_path / "site-packages" / "refopt"
    pkg.mkdir(parents=True)
    packaged = _make_specs(pkg / "_specs")
    _make_specs(tmp_path / "site-packages" / "specs")
    assert specs.locate(pkg) == packaged


def test_locate_falls_back_to_the_checkout(tmp_path):
    pkg = tmp_path / "repo" / "refopt"
    pkg.mkdir(parents=True)
    checkout = _make_specs(tmp_path / "repo" / "specs")
    assert specs.locate(pkg) == checkout
    (pkg / "_specs").mkdir()  # an empty _specs (no rules/) is not taken
    assert specs.locate(pkg) == checkout


def test_locate_names_both_places_when_missing(tmp_path):
    pkg = tmp_path / "refopt"
    pkg.mkdir()
    with pytest.raises(FileNotFoundError, match=r"_specs.*and in .*specs"):
        specs.locate(pkg)


def test_this_refopt_finds_its_specs():
    here = specs.specs_dir()
    package = Path(ro.__file__).resolve().parent
    assert here in (package / "_specs", package.parent / "specs")
    assert (here / "rules" / "adabelief.toml").is_file()


def test_every_spec_follows_the_json_schema(all_specs):
    jsonschema = pytest.importorskip("jsonschema")
    schema_path = specs.specs_dir() / "schema" / f"{specs.SCHEMA}.schema.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for name in RULES:
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(dict(all_specs[name].raw))]
        assert not errors, (name, errors[:3])
    broken = dict(all_specs["adam"].raw)
    broken["hyper"] = [{**broken["hyper"][0], "default": "fast"}, *broken["hyper"][1:]]
    assert not validator.is_valid(broken)
    assert not validator.is_valid({**all_specs["adam"].raw, "colour": "red"})


def test_unknown_rule_suggests_close_names():
    with pytest.raises(ValueError, match=r"no rule spec for 'adabelif'; did you mean 'adabelief'"):
        specs.load("adabelif")


_MINIMAL = """
schema = "refopt_rule_spec_v1"
rule = "toy"
title = "t"
citation = "c"
references = []
hyper = []
state = []
[[equations]]
name = "t"
kind = "scalar"
text = "t = t + 1"
latex = 't \\leftarrow t + 1'
"""


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda s: s, None),
        (lambda s: s.replace('rule = "toy"', 'rule = "other"'), r"rule is 'other' but the file is named 'toy.toml'"),
        (lambda s: s.replace('schema = "refopt_rule_spec_v1"', 'schema = "x_v9"'), r"schema is 'x_v9'"),
        (lambda s: s.replace("state = []\n", ""), r"missing key 'state'"),
        (lambda s: s.replace('kind = "scalar"', 'kind = "vector"'), r"equations\[0\] \(t\): kind must be"),
        (lambda s: s + 'when = "a =="\n', r"equations\[0\] \(t\): condition"),
        (lambda s: s + 'colour = "red"\n', r"equations\[0\] has unknown key 'colour'"),
        (lambda s: s.replace('text = "t = t + 1"', 'text = ""'), r"needs a non-empty string 'text'"),
        (lambda s: s + "[[[", r"not valid TOML"),
    ],
)
def test_parse_reports_the_file_and_the_key(tmp_path, edit, message):
    path = tmp_path / "toy.toml"
    path.write_text(edit(_MINIMAL), encoding="utf-8")
    if message is None:
        spec = specs.parse(path)
        assert spec.rule == "toy" and spec.trace_names({}) == ["t"]
        return
    with pytest.raises(ValueError, match=message) as info:
        specs.parse(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------------
# refopt explain reads its equations from the specs
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule_name,hyper",
    [(name, []) for name in RULES]
    + [("adam", ["eps_mode=eps_hat", "amsgrad=True"]), ("adabelief", ["rectify=True", "amsgrad=True"]),
       ("rmsprop", ["centered=True", "momentum=0.9"]), ("sgd", ["momentum=0.9", "nesterov=True"])],
)
def test_explain_prints_the_equations_that_apply(capsys, rule_name, hyper):
    argv = ["explain", rule_name, "--steps", "1"] + [x for h in hyper for x in ("--hyper", h)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    box = out.split("\nequations (", 1)[1].split("\nwhere:", 1)[0]
    rule = ro.rules.get(rule_name, **parse_hyper(hyper))
    ctx = specs.context(rule)
    lines = box.strip("\n").splitlines()[1:]
    shown = [eq for eq in specs.load(rule_name).equations if eq.applies(ctx, partial=True) is not False]
    assert len(lines) == len(shown)
    for line, eq in zip(lines, shown):  # in order: trace name, plain text, [when <per-step part>]
        match = re.fullmatch(rf"\s+{re.escape(eq.name)}\s+{re.escape(eq.text)}(?:\s+\[when (.*)\])?", line)
        assert match, (line, eq.name, eq.text)
        rest = eq.when.residual(ctx) if eq.when is not None else True
        assert match.group(1) == (rest if isinstance(rest, str) else None)


def test_explain_radam_marks_the_rectified_lines(capsys):
    assert main(["explain", "radam", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\s+l_t\s+l_t = .*\[when rectified = true\]$", out, re.M)
    assert re.search(r"^\s+update\s+u_t = .*\[when rectified = false\]$", out, re.M)
