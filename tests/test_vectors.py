"""Golden vectors (refopt.vectors, `refopt vectors`): the files match the rules byte for byte,
follow their schema, round-trip every number exactly, and replay on every backend."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refopt import presets, rules, vectors
from refopt.cli import main
from refopt.rules._base import Choice, Flag

RULES = rules.names()


@pytest.fixture(scope="module")
def loaded():
    return {r: vectors.load(r) for r in RULES}


@pytest.fixture(scope="module")
def schema():
    return json.loads(vectors.schema_path().read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def generated():
    """Every rule's regenerated vectors, once (tests that only exercise check() reuse them)."""
    return {r: vectors.generate(r) for r in RULES}


@pytest.fixture
def scratch(tmp_path, monkeypatch, generated):
    """A copy of the specs folder that the module reads instead of the real one; generation
    is served from the module's cache (a fresh generation, made once)."""
    shutil.copytree(vectors.specs_dir() / "vectors", tmp_path / "vectors")
    monkeypatch.setattr(vectors, "specs_dir", lambda: tmp_path)
    monkeypatch.setattr(vectors, "generate", lambda rule: generated[vectors._check_rule(rule)])
    return tmp_path


# ---------------------------------------------------------------------------------------
# --check and --write
# ---------------------------------------------------------------------------------------


def test_check_passes_for_every_rule(generated, monkeypatch):
    # ``generated`` is a fresh generation of every rule (made once for the module): check()
    # compares exactly it, byte for byte, with the files
    monkeypatch.setattr(vectors, "generate", lambda rule: generated[vectors._check_rule(rule)])
    assert vectors.check() == []


def test_generation_is_deterministic_and_ignores_numpy_global_state():
    np.random.seed(1)
    first = vectors.dumps(vectors.generate("lion"))
    np.random.seed(2)
    np.random.random(10)
    assert vectors.dumps(vectors.generate("lion")) == first
    assert first.encode("utf-8") == vectors.path("lion").read_bytes()


def _perturb_first_param(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    case = data["groups"][0]["cases"][1]
    step = case["steps"][0]
    x = step["params"][2]
    step["params"][2] = float(np.nextafter(x, math.inf))  # one ulp
    path.write_text(vectors.dumps(data), encoding="utf-8")
    return case["id"]


def test_a_one_ulp_change_is_reported_with_case_id_and_field(scratch):
    case_id = _perturb_first_param(scratch / "vectors" / "lion.json")
    problems = vectors.check("lion")
    assert len(problems) == 1
    assert case_id in problems[0] and "steps[0].params" in problems[0]
    assert vectors.check("sgd") == []


def test_formatting_only_change_is_reported(scratch):
    p = scratch / "vectors" / "sgd.json"
    p.write_bytes(p.read_bytes().replace(b'"schema": ', b'"schema":  ', 1))
    (problem,) = vectors.check("sgd")
    assert "same values, different bytes" in problem and "line 2" in problem


def test_missing_and_stray_files_are_reported(scratch):
    (scratch / "vectors" / "lion.json").unlink()
    (scratch / "vectors" / "adamx.json").write_text("{}")
    problems = vectors.check()
    assert any("lion" in p and "missing" in p for p in problems)
    assert any("adamx" in p and "not the vectors file of any rule" in p for p in problems)


def test_write_restores_a_changed_file(scratch):
    _perturb_first_param(scratch / "vectors" / "signsgd.json")
    assert vectors.check("signsgd")
    assert vectors.write(["signsgd"]) == [scratch / "vectors" / "signsgd.json"]
    assert vectors.check("signsgd") == []


def test_cli_exit_status(scratch, capsys):
    assert main(["vectors", "--check", "--rule", "lion"]) == 0
    assert "match" in capsys.readouterr().out
    case_id = _perturb_first_param(scratch / "vectors" / "lion.json")
    assert main(["vectors", "--check", "--rule", "lion", "--rule", "sgd"]) == 1
    err = capsys.readouterr().err
    assert case_id in err and "--write" in err
    assert main(["vectors", "--write", "--rule", "lion"]) == 0
    assert main(["vectors", "--check", "--rule", "lion"]) == 0
    capsys.readouterr()
    assert main(["vectors", "--check", "--rule", "adamm"]) == 2
    assert "did you mean 'adam'" in capsys.readouterr().err
    for argv in (["vectors"], ["vectors", "--write", "--check"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


def test_api_errors():
    with pytest.raises(ValueError, match="did you mean 'adam'"):
        vectors.path("adamm")
    with pytest.raises(ValueError, match="float64 or float32"):
        vectors.decode([1.0], "float16")
    with pytest.raises(ValueError, match="only 'nan', 'inf' and '-inf'"):
        vectors.decode(["NaN"], "float64")
    with pytest.raises(ValueError, match="unknown tolerance class"):
        vectors.within("abs:1", [1.0], [1.0], "float64")


# ---------------------------------------------------------------------------------------
# the schema
# ---------------------------------------------------------------------------------------


def _validate(instance, schema, root=None, where="$"):
    """A small validator for the JSON Schema keywords the vectors schema uses; a list of errors."""
    root = schema if root is None else root
    if "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return _validate(instance, node, root, where)
    errors = []
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}

    def is_type(x, t):
        if t == "number":
            return isinstance(x, (int, float)) and not isinstance(x, bool)
        if t == "integer":
            return isinstance(x, int) and not isinstance(x, bool)
        return isinstance(x, types[t])

    if "type" in schema:
        ts = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(is_type(instance, t) for t in ts):
            return [f"{where}: {instance!r:.60} is not of type {ts}"]
    if "const" in schema and instance != schema["const"]:
        errors.append(f"{where}: must be {schema['const']!r}")
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{where}: {instance!r} not in {schema['enum']}")
    if "anyOf" in schema and not any(not _validate(instance, s, root, where) for s in schema["anyOf"]):
        errors.append(f"{where}: matches none of anyOf")
    if "pattern" in schema and isinstance(instance, str) and not re.search(schema["pattern"], instance):
        errors.append(f"{where}: {instance!r} does not match {schema['pattern']}")
    if "minimum" in schema and is_type(instance, "number") and instance < schema["minimum"]:
        errors.append(f"{where}: below {schema['minimum']}")
    if isinstance(instance, dict):
        for key in schema.get("required", []):
            if key not in instance:
                errors.append(f"{where}: lacks {key!r}")
        if len(instance) < schema.get("minProperties", 0):
            errors.append(f"{where}: too few properties")
        props = schema.get("properties", {})
        for key, value in instance.items():
            if "propertyNames" in schema:
                errors += _validate(key, schema["propertyNames"], root, f"{where} key {key!r}")
            if key in props:
                errors += _validate(value, props[key], root, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}: unexpected property {key!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += _validate(value, schema["additionalProperties"], root, f"{where}.{key}")
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0):
            errors.append(f"{where}: too few items")
        if schema.get("uniqueItems") and len({json.dumps(x) for x in instance}) != len(instance):
            errors.append(f"{where}: items are not unique")
        if "items" in schema:
            for i, item in enumerate(instance):
                errors += _validate(item, schema["items"], root, f"{where}[{i}]")
                if len(errors) > 5:
                    break
    return errors


_KNOWN_KEYWORDS = {"$schema", "$id", "$defs", "$ref", "title", "description", "type", "const", "enum", "anyOf",
                   "pattern", "minimum", "required", "minProperties", "properties", "propertyNames",
                   "additionalProperties", "minItems", "uniqueItems", "items"}


def _keywords(schema, out):
    if isinstance(schema, dict):
        for k, v in schema.items():
            out.add(k)
            if k in ("properties", "$defs"):
                for sub in v.values():
                    _keywords(sub, out)
            elif k != "enum" and k != "const":
                _keywords(v, out)
    elif isinstance(schema, list):
        for v in schema:
            _keywords(v, out)
    return out


def test_the_small_validator_understands_every_keyword_of_the_schema(schema):
    assert _keywords(schema, set()) <= _KNOWN_KEYWORDS
    assert schema["$schema"].endswith("draft/2020-12/schema")


@pytest.mark.parametrize("rule", RULES)
def test_every_file_validates_against_the_schema(rule, loaded, schema):
    assert _validate(loaded[rule], schema) == []


def test_the_schema_rejects_malformed_files(loaded, schema):
    good = loaded["lion"]
    bad = json.loads(json.dumps(good))
    bad["groups"][0]["cases"][0]["expected"] = 1  # additionalProperties: false
    assert any("unexpected property 'expected'" in e for e in _validate(bad, schema))
    bad = json.loads(json.dumps(good))
    bad["groups"][0]["cases"][0]["tolerance"]["params"] = "ulps:4"
    assert _validate(bad, schema)
    bad = json.loads(json.dumps(good))
    bad["groups"][0]["cases"][0]["params0"][0] = "NaN"
    assert _validate(bad, schema)
    bad = json.loads(json.dumps(good))
    bad["groups"][0]["dtype"] = "float16"
    assert _validate(bad, schema)


def test_jsonschema_agrees(loaded, schema):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for rule in ("lion", "clipped_sgd"):  # a small one and one with trees (all: ~17 s)
        assert not list(validator.iter_errors(loaded[rule])), rule
    bad = json.loads(json.dumps(loaded["lion"]))
    bad["groups"][0]["cases"][0]["steps"][0]["extra"] = []
    assert list(validator.iter_errors(bad))


# ---------------------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_special_values_round_trip_bit_for_bit(dtype):
    fi = np.finfo(dtype)
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, fi.smallest_subnormal, -fi.smallest_subnormal,
                  fi.smallest_normal, fi.smallest_normal * (1 - fi.eps), fi.max, -fi.max, 0.1, 1 / 3], dtype=dtype)
    text = json.dumps(vectors.encode(x), allow_nan=False)
    assert '"nan", "inf", "-inf"' in text
    back = vectors.decode(json.loads(text), dtype)
    assert back.dtype == np.dtype(dtype)
    uint = np.uint64 if dtype == "float64" else np.uint32
    assert np.array_equal(back.view(uint), x.view(uint))


@given(st.integers(0, 2**32 - 1))
def test_every_float32_bit_pattern_round_trips(bits):
    x = np.array([bits], dtype=np.uint32).view(np.float32)
    back = vectors.decode(json.loads(json.dumps(vectors.encode(x))), "float32")
    if np.isnan(x[0]):
        assert np.isnan(back[0])
    else:
        assert back.view(np.uint32)[0] == bits


@given(st.integers(0, 2**64 - 1))
def test_every_float64_bit_pattern_round_trips(bits):
    x = np.array([bits], dtype=np.uint64).view(np.float64)
    back = vectors.decode(json.loads(json.dumps(vectors.encode(x))), "float64")
    if np.isnan(x[0]):
        assert np.isnan(back[0])
    else:
        assert back.view(np.uint64)[0] == bits


def _arrays(x):
    """Every flat number list inside a case field."""
    if isinstance(x, dict):
        for v in x.values():
            yield from _arrays(v)
    elif isinstance(x, list) and x and isinstance(x[0], list):
        for v in x:
            yield from _arrays(v)
    elif isinstance(x, list):
        yield x


def test_float32_values_are_exactly_float32_and_written_shortest(loaded):
    for rule in ("adam", "diffgrad", "clipped_adam"):
        for group, case in vectors.cases(loaded[rule]):
            if group["dtype"] != "float32":
                continue
            fields = [case["params0"], case["grads"]] + [[s["params"], s["state"]] for s in case["steps"]]
            # per-configuration host values (clipping thresholds with batch_axes=1) are float64 like
            # every host scalar: their tolerance class is the scalars' rtol, not ulps of the dtype
            fields += [v for s in case["steps"] for k, v in s["trace"].items()
                       if isinstance(v, (list, dict)) and case["tolerance"][f"trace.{k}"].startswith("ulp")]
            for field in fields:
                for arr in _arrays(field):
                    for v in arr:
                        if isinstance(v, float):
                            # v is the shortest decimal of a float32: it reads back to itself
                            assert float(str(np.float32(v))) == v, (case["id"], v)


def test_subnormal_cases_hold_subnormals_in_their_dtype(loaded):
    for group, case in vectors.cases(loaded["adam"]):
        if "subnormal" not in case["flags"]:
            continue
        fi = np.finfo(group["dtype"])
        g = vectors.decode(case["grads"][0], group["dtype"])
        assert np.all((g != 0) & (np.abs(g) < fi.smallest_normal))
        assert fi.smallest_subnormal in np.abs(g)


# ---------------------------------------------------------------------------------------
# content
# ---------------------------------------------------------------------------------------

_BATTERY = {"first_step", "zero_gradient", "huge_gradient", "tiny_gradient", "alternating_signs", "subnormal",
            "multi_step", "long_chain", "sparse_gradient"}


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_has_the_battery_options_and_presets(rule, loaded):
    data = loaded[rule]
    assert data["rule"] == rule and data["schema"] == vectors.SCHEMA
    flags = {dt: set() for dt in vectors.DTYPES}
    ids = set()
    for group, case in vectors.cases(data):
        flags[group["dtype"]].update(case["flags"])
        assert case["id"].startswith(group["id"] + "-c") and case["id"] not in ids
        ids.add(case["id"])
        assert set(case["flags"]) <= set(data["notes"])
    for dt in vectors.DTYPES:
        assert _BATTERY <= flags[dt], (dt, _BATTERY - flags[dt])
        if "weight_decay" in {h.name for h in rules.rule_class(rule).HYPER}:
            assert "weight_decay" in flags[dt]
    hypers = [g["hyper"] for g in data["groups"]]
    for h in rules.rule_class(rule).HYPER:
        values = [not h.default] if isinstance(h, Flag) else list(h.choices) if isinstance(h, Choice) else []
        for value in values:
            assert any(x[h.name] == value for x in hypers), (h.name, value)
    want = {p for p in presets.names() if presets.describe(p).rule == rule}
    have = {g["preset"] for g in data["groups"] if g["preset"]}
    assert have == want
    for g in data["groups"]:
        dtypes = {x["dtype"] for x in data["groups"] if x["comment"].rsplit(" (", 1)[0] == g["comment"].rsplit(" (", 1)[0]}
        assert dtypes == set(vectors.DTYPES), g["id"]


@pytest.mark.parametrize("rule", RULES)
def test_steps_fields_and_tolerances_are_consistent(rule, loaded):
    for group, case in vectors.cases(loaded[rule]):
        ts = [s["t"] for s in case["steps"]]
        if case["checkpoints"]:
            assert len(case["grads"]) == 1000
            assert ts == [1, *range(100, 1001, 100)]
        else:
            assert ts == list(range(1, len(case["grads"]) + 1))
        fields = {"params"}
        for s in case["steps"]:
            fields |= {f"state.{k}" for k in s["state"]} | {f"trace.{k}" for k in s["trace"]}
        assert set(case["tolerance"]) == fields, case["id"]
        assert set(case["state0"]) == set(case["steps"][0]["state"])
        for cls in case["tolerance"].values():
            assert re.fullmatch(r"exact|ulp:\d+|rtol:[0-9.e+-]+", cls)
            assert cls.partition(":")[0] + (":N" if "ulp" in cls else ":X" if "rtol" in cls else "") in loaded[rule]["tolerances"]


def test_non_finite_flag_marks_exactly_the_cases_with_non_finite_values(loaded):
    seen = False
    for group, case in vectors.cases(loaded["adam"]):
        text = json.dumps(case["steps"])
        has = any(s in text for s in ('"nan"', '"inf"', '"-inf"'))
        assert has == ("non_finite" in case["flags"]), case["id"]
        seen |= has
    assert seen  # float32 squares of 1e30 overflow


def test_the_chain_starts_on_the_notes_golden_problem(loaded):
    """update-rules.md §5: one step of Adam() and AdaBelief 0.2.1 (rectify=False) from θ0 = [1, -2, 0.5]."""
    golden = {"adam": [0.999, -1.999, 0.499], "adabelief": [0.9988888889, -1.998888889, 0.4988888889],
              "diffgrad": [0.999010987, -1.999000045, 0.4990048448]}
    for rule, after1 in golden.items():
        for group, case in vectors.cases(loaded[rule]):
            if case["checkpoints"]:
                assert case["params0"] == [1.0, -2.0, 0.5]
                got = vectors.decode(case["steps"][0]["params"], group["dtype"])
                np.testing.assert_allclose(got, after1, rtol=1e-9 if group["dtype"] == "float64" else 1e-6)


# ---------------------------------------------------------------------------------------
# replaying the vectors through refopt on every backend
# ---------------------------------------------------------------------------------------


def _tree(values, shape, dtype, backend):
    if isinstance(shape, dict):
        return {k: _tree(values[k], s, dtype, backend) for k, s in shape.items()}
    return backend.asarray(vectors.decode(values, dtype).reshape(shape))


def _flat(x, backend):
    if isinstance(x, dict):
        return np.concatenate([_flat(v, backend) for v in x.values()])
    return np.asarray(backend.to_numpy(x)).reshape(-1)


def _expected(v, dtype):
    if isinstance(v, dict):
        return np.concatenate([vectors.decode(x, dtype) for x in v.values()])
    if isinstance(v, list):
        return vectors.decode(v, dtype)
    return v


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("rule", ["adam", "adabelief", "clipped_adam", "normalized_sgd"])
def test_replay_on_backend_within_tolerance(rule, backend, loaded):
    """Run the defaults groups' short cases (and the tree case) through refopt on ``backend``."""
    worst = 0.0
    for group, case in vectors.cases(loaded[rule]):
        if group["preset"] or case["checkpoints"] or not group["id"].endswith(("g01", "g02")):
            continue
        if backend.name == "cupy" and "subnormal" in case["flags"]:
            continue  # may be flushed to zero on a GPU (the flag says so)
        dt = group["dtype"]
        rule_obj = rules.get(rule, **{k: tuple(v) if isinstance(v, list) else v for k, v in group["hyper"].items()})
        p = _tree(case["params0"], case["shape"], dt, backend)
        state = rule_obj.init(p)
        steps = {s["t"]: s for s in case["steps"]}
        for t, g in enumerate(case["grads"], 1):
            p, state, trace = rule_obj.trace(p, _tree(g, case["shape"], dt, backend), state)
            want = steps[t]
            fields = {"params": (want["params"], p)}
            fields.update({f"state.{k}": (v, state[k]) for k, v in want["state"].items()})
            fields.update({f"trace.{k}": (v, trace[k]) for k, v in want["trace"].items()})
            for name, (exp, got) in fields.items():
                exp = _expected(exp, dt)
                got = got if isinstance(got, (bool, int, float)) else _flat(got, backend)
                ok, err = vectors.within(case["tolerance"][name], exp, got, dt)
                assert ok, (case["id"], t, name, err)
                if name == "params":
                    worst = max(worst, err["max_ulp"])
    if backend.name in ("numpy", "numpy_readonly", "strict", "strict_device2"):
        assert worst == 0.0  # the same arithmetic in the same order: bit for bit


def test_within_classes():
    assert vectors.within("exact", [0.0, np.nan], [-0.0, np.nan], "float64")[0]
    assert not vectors.within("exact", [1.0], [np.nextafter(1.0, 2.0)], "float64")[0]
    ok, err = vectors.within("ulp:2", [1.0, 1e-20], [1.0, 1e-20 + 1.5 * 2.0**-52], "float64")
    assert ok and 1.0 < err["max_ulp"] <= 2.0  # ulps of the field's largest magnitude
    assert not vectors.within("ulp:1", [1.0, 0.0], [1.0, 3 * 2.0**-52], "float64")[0]
    assert vectors.within("rtol:1e-3", [100.0, 1.0], [100.0, 1.09], "float32")[0]
    assert not vectors.within("rtol:1e-3", [np.inf], [1e300], "float64")[0]
    assert not vectors.within("rtol:1", [1.0, 2.0], [1.0], "float64")[0]
    assert vectors.within("exact", True, True, "float64")[0]
    assert not vectors.within("exact", True, 1.0, "float64")[0]


# ---------------------------------------------------------------------------------------
# reference math: the vectors do not depend on the CPU's SIMD exp or the libm's pow
# ---------------------------------------------------------------------------------------


def test_reference_exp_and_pow_are_correctly_rounded():
    assert vectors._exact_exp(np.array([1.0]))[0] == 2.718281828459045  # e, correctly rounded
    assert vectors._exact_exp(np.array([1.0], dtype=np.float32))[0] == np.float32(2.7182817)
    x = np.linspace(-30.0, 5.0, 501)
    ref = vectors._exact_exp(x)
    assert np.all(np.abs(ref - np.exp(x)) <= np.spacing(ref))  # libm/SIMD exp is within 1 ulp
    x32 = x.astype(np.float32)
    e32 = vectors._exact_exp(x32)
    assert e32.dtype == np.float32 and e32.shape == x32.shape
    assert np.array_equal(e32, np.exp(x32.astype(np.float64)).astype(np.float32))
    special = vectors._exact_exp(np.array([-np.inf, np.inf, np.nan, -800.0, 800.0]))
    assert special[0] == 0.0 and special[1] == np.inf and np.isnan(special[2])
    assert special[3] == 0.0 and special[4] == np.inf
    assert vectors._exact_exp(np.array(-745.0))[()] == 5e-324  # rounds to the smallest subnormal
    for base in (0.9, 0.999, 0.99, 0.5):
        for t in (1, 2, 7, 100, 1000):
            assert abs(vectors._exact_power(base, t) - base**t) <= np.spacing(base**t)  # libm: within 1 ulp
    assert vectors._exact_power(0.001, 0.5) == math.sqrt(0.001)
    batched = vectors._exact_power(np.array([0.9, 0.99]), 3)
    assert batched.dtype == np.float64 and list(batched) == [0.9**3, 0.99**3]


def test_reference_math_is_restored_after_generation():
    import array_api_compat.numpy as npx

    import refopt._array as _array

    before = npx.exp, _array.host_power
    vectors.generate("lion")
    assert (npx.exp, _array.host_power) == before
    assert npx.exp is not vectors._exact_exp


def test_check_passes_without_the_simd_exp_kernels():
    """NumPy picks its exp kernel by CPU (AVX-512, AVX2, baseline): diffGrad's bytes must not change."""
    import os
    import subprocess
    import sys

    core = pytest.importorskip("numpy._core._multiarray_umath")
    dispatch = [f for f in getattr(core, "__cpu_dispatch__", []) if getattr(core, "__cpu_features__", {}).get(f)]
    if not dispatch:
        pytest.skip("NumPy has no dispatched SIMD kernels on this CPU")
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(dispatch)}
    out = subprocess.run([sys.executable, "-m", "refopt", "vectors", "--check", "--rule", "diffgrad"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
