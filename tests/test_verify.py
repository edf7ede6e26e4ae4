"""``refopt verify``: torch.optim passes, wrong ports are caught and named, bad usage exits 2.

The vectors come from ``specs/vectors/<rule>.json`` when the file exists, else from
``refopt.vectors.generate`` (the same content); the CLI tests patch ``refopt.vectors.load``
to that provider so that they run in a checkout where the files are not written yet.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import refopt.vectors
from refopt import presets, rules
from refopt.cli import main
from refopt.verify import Tolerance, VerifyError, adapter_names, errors, invert, verify
from refopt.verify._data import Field

ROOT = Path(__file__).resolve().parent.parent
TORCH_PRESETS = [n for n in presets.names() if n.startswith("torch.optim.")]
_LOAD = refopt.vectors.load  # the real loader (the CLI tests patch refopt.vectors.load)


@functools.lru_cache(maxsize=None)
def vectors(rule: str) -> dict:
    try:
        return _LOAD(rule)
    except FileNotFoundError:
        return refopt.vectors.generate(rule)


@pytest.fixture
def patched_load(monkeypatch):
    monkeypatch.setattr(refopt.vectors, "load", lambda rule: copy.deepcopy(vectors(rule)))


# ---------------------------------------------------------------------------------------
# hand-written NumPy ports, right and wrong (Python floats for scalars: float32 stays float32)
# ---------------------------------------------------------------------------------------


def make_adam(eps_inside=False, bias_correction=True, scale=1.0):
    def make(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        b1, b2 = betas

        def step(p, g, state):
            if state is None:
                state = {"m": np.zeros_like(p), "v": np.zeros_like(p), "t": 0}
            t = state["t"] + 1
            if weight_decay:
                g = g + weight_decay * p
            m = b1 * state["m"] + (1 - b1) * g
            v = b2 * state["v"] + (1 - b2) * g * g
            bc1 = 1 - b1**t if bias_correction else 1.0
            bc2 = 1 - b2**t if bias_correction else 1.0
            denom = np.sqrt(v / bc2 + eps) if eps_inside else np.sqrt(v) / math.sqrt(bc2) + eps
            return p - (scale * lr / bc1) * m / denom, {"m": m, "v": v, "t": t}

        return step

    return make


def make_diffgrad(alias=False):
    def make(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        b1, b2 = betas

        def step(p, g, state):
            if state is None:
                state = {"m": np.zeros_like(p), "v": np.zeros_like(p), "g_prev": np.zeros_like(p), "t": 0}
            t = state["t"] + 1
            if weight_decay:
                g = g + weight_decay * p
            g_prev = g if (alias and t >= 2) else state["g_prev"]  # alias: "previous" is the current grad
            m = b1 * state["m"] + (1 - b1) * g
            v = b2 * state["v"] + (1 - b2) * g * g
            xi = 1.0 / (1.0 + np.exp(-np.abs(g_prev - g)))
            bc1, bc2 = 1 - b1**t, 1 - b2**t
            p = p - (lr / bc1) * (m * xi) / (np.sqrt(v) / math.sqrt(bc2) + eps)
            return p, {"m": m, "v": v, "g_prev": g.copy(), "t": t}

        return step

    return make


def make_adabelief(m_prev=False):
    def make(lr=1e-3, betas=(0.9, 0.999), eps=1e-16):
        b1, b2 = betas

        def step(p, g, state):
            if state is None:
                state = {"m": np.zeros_like(p), "s": np.zeros_like(p), "t": 0}
            t = state["t"] + 1
            m = b1 * state["m"] + (1 - b1) * g
            r = g - (state["m"] if m_prev else m)
            s = b2 * state["s"] + (1 - b2) * r * r + eps
            bc1, bc2 = 1 - b1**t, 1 - b2**t
            p = p - (lr / bc1) * m / (np.sqrt(s) / math.sqrt(bc2) + eps)
            return p, {"m": m, "s": s, "t": t}

        return step

    return make


def _first_failure(report):
    return next(r for r in report.results if not r.passed)


# ---------------------------------------------------------------------------------------
# error measures and tolerance classes (refopt.vectors.TOLERANCES: norm-wise over a field)
# ---------------------------------------------------------------------------------------


def test_error_measures_are_normwise_ulps_of_the_largest_magnitude():
    e = np.array([2.0, -0.5, 0.0])
    x = e.copy()
    x[1] += 4 * np.spacing(2.0)  # 4 ulps of the field's largest magnitude, 2.0
    err = errors(e, x)
    assert err.abs == 4 * 2.0**-51
    assert err.ulp == 4.0
    assert err.rel == 2.0**-51 * 2
    f = Field.measure(e, x)
    assert Tolerance.parse("ulp:4").ok(f).all() and not Tolerance.parse("ulp:3").ok(f).all()
    assert Tolerance.parse("rtol:1e-15").ok(f).all() and not Tolerance.parse("rtol:8e-16").ok(f).all()
    assert Tolerance.parse("ulp:1|atol:1e-14").ok(f).all() and not Tolerance.parse("ulp:1|atol:1e-15").ok(f).all()


def test_error_measures_non_finite_signed_zero_and_float32():
    nan, inf = math.nan, math.inf
    assert errors(np.array([nan, inf, -inf, 0.0]), np.array([nan, inf, -inf, -0.0])).ulp == 0.0
    assert errors(np.array([1.0, inf]), np.array([1.0, 1e308])).abs == inf
    assert errors(np.array([1.0, nan]), np.array([1.0, 2.0])).ulp == inf
    e32 = np.array([1.0, 3.0], dtype=np.float32)
    x32 = np.array([1.0, np.nextafter(np.float32(3.0), np.float32(4.0))], dtype=np.float32)
    assert errors(e32, x32).ulp == 1.0  # ulp(3) = 2^-22 in float32
    assert errors(np.zeros(2), np.array([0.0, 5e-324])).ulp == 1.0  # spacing(0): the smallest subnormal


@pytest.mark.parametrize("bad", ["", "ulp", "ulp:x", "close:1", "rtol:-1", None])
def test_tolerance_class_rejects_unknown_text(bad):
    with pytest.raises(ValueError):
        Tolerance.parse(bad)


# ---------------------------------------------------------------------------------------
# built-in adapters
# ---------------------------------------------------------------------------------------


def test_every_preset_has_an_adapter():
    assert set(adapter_names()) == set(presets.names())
    assert {"torch.optim.Adam", "optax.adabelief", "keras.optimizers.Adam", "adabelief_pytorch.AdaBelief@0.0.5",
            "torch_optimizer.DiffGrad", "pytorch_optimizer.AdaBelief"} <= set(adapter_names())


@pytest.mark.parametrize("name", [n for n in adapter_names()])
def test_invert_recovers_the_arguments_of_every_adapter_preset(name):
    """The preset's own configuration inverts to the implementation's defaults (learning_rate filled)."""
    p = presets.describe(name)
    filled = {k: 1e-3 for k, v in p.args.items() if v is presets.REQUIRED}
    filled.update(presets.RUNNABLE_ARGS.get(name, {}))  # defaults refopt refuses (a bfloat16 buffer)
    config = p.build(**filled)
    args = invert(p, config)
    assert args is not None
    assert p.build(**args).hyper == config.hyper
    assert {k: v for k, v in args.items() if k not in p.inert} == {
        k: v for k, v in {**p.args, **filled}.items() if k not in p.inert
    }


def test_invert_translates_hyper_parameters_and_refuses_the_impossible():
    adam = presets.describe("torch.optim.Adam")
    config = rules.get("adam", lr=0.01, betas=(0.8, 0.99), amsgrad=True, ema="lerp", weight_decay=0.1)
    args = invert(adam, config)
    assert (args["lr"], args["betas"], args["amsgrad"], args["weight_decay"]) == (0.01, (0.8, 0.99), True, 0.1)
    assert invert(adam, rules.get("adam", eps_mode="inside_sqrt", ema="lerp")) is None
    optax = presets.describe("optax.rmsprop")
    args = invert(optax, rules.get("rmsprop", lr=0.05, alpha=0.95, eps_mode="outside_sqrt", lr_in_momentum=True))
    assert (args["learning_rate"], args["decay"], args["eps_in_sqrt"], args["momentum"]) == (0.05, 0.95, False, None)


@pytest.mark.parametrize("name", TORCH_PRESETS)
def test_every_torch_optim_preset_passes(name):
    pytest.importorskip("torch")
    rule = presets.describe(name).rule
    report = verify(name, data=vectors(rule))
    assert report.passed, report.text()
    assert report.exit_code == 0
    assert {r.case.dtype for r in report.results} == {"float64", "float32"}
    assert len(report.results) >= 4
    # torch exposes its state: the slots are compared too
    compared = {q for r in report.results for q in r.compared}
    assert "params" in compared and any(q.startswith("state.") for q in compared)
    assert all(r.errors["params"].ulp <= 16 or "long_chain" in r.case.flags for r in report.results)


def test_torch_adam_covers_the_defaults_battery_and_reports_rounding_only_options():
    pytest.importorskip("torch")
    report = verify("torch.optim.Adam", data=vectors("adam"), dtype="float64")
    flags = {f for r in report.results for f in r.case.flags}
    assert {"long_chain", "huge_gradient", "tiny_gradient", "subnormal", "preset"} <= flags
    defaults = next(r for r in report.results if "defaults" in r.case.flags)
    assert "rounding only" in defaults.arguments  # torch's lerp vs the vectors' multiply-add
    assert {"adam-g11", "adam-g21"} <= {g for g, _, _ in report.skipped}  # inside_sqrt, no bias correction
    why = dict((g, w) for g, _, w in report.skipped)
    assert why["adam-g11"] == "no torch.optim.Adam arguments give eps_mode='inside_sqrt'"


def test_hyper_filters_groups_by_the_implementations_arguments():
    pytest.importorskip("torch")
    report = verify("torch.optim.SGD", data=vectors("sgd"), hyper={"nesterov": True})
    assert report.passed and report.results
    assert all("nesterov=True" in r.arguments for r in report.results)
    assert len(report.results) < len(verify("torch.optim.SGD", data=vectors("sgd")).results)


def test_optax_adapter_passes():
    pytest.importorskip("optax")
    for name in ("optax.adam", "optax.sgd", "optax.adabelief"):
        report = verify(name, data=vectors(presets.describe(name).rule))
        assert report.passed, report.text()


# ---------------------------------------------------------------------------------------
# factories: right ports pass, wrong ports are caught at the first differing step and named
# ---------------------------------------------------------------------------------------


def test_a_correct_numpy_port_passes_and_unsupported_groups_are_skipped():
    report = verify(make_adam(), rule="adam", data=vectors("adam"))
    assert report.passed, report.text()
    assert any("long_chain" in r.case.flags for r in report.results)
    # the port takes no amsgrad argument: those groups are skipped, with the reason
    assert any("takes no argument 'amsgrad'" in why for _, _, why in report.skipped)
    assert report.identification is None


def test_adam_with_eps_inside_the_square_root_is_named():
    report = verify(make_adam(eps_inside=True), rule="adam", data=vectors("adam"))
    assert not report.passed and report.exit_code == 1
    first = _first_failure(report)
    assert first.case.id == "adam-g01-c001" and first.first["t"] == 1 and first.first["quantity"] == "params"
    assert first.errors["params"].ulp > 16
    ident = report.identification
    assert [m["changes"] for m in ident["matches"]] == [{"eps_mode": "inside_sqrt"}]
    assert "matches adam with eps_mode='inside_sqrt'" in ident["message"]
    assert "where ε enters" in ident["message"]  # the option's documentation is quoted
    # float32 cannot see ε = 1e-8 next to √v̂ ~ 1: the difference is below its resolution
    assert all(r.passed for r in report.results if r.case.dtype == "float32" and "defaults" in r.case.flags
               and "tiny_gradient" not in r.case.flags)


def test_adam_without_bias_correction_is_named():
    report = verify(make_adam(bias_correction=False), rule="adam", data=vectors("adam"), dtype="float32")
    first = _first_failure(report)
    assert first.first["t"] == 1
    assert first.first["expected"] == pytest.approx(1.19, rel=1e-6)
    assert report.identification["matches"][0]["changes"] == {"bias_correction": False}
    assert "matches adam with bias_correction=False" in report.identification["message"]


def test_diffgrad_previous_gradient_aliasing_is_caught_at_step_two_and_named():
    report = verify(make_diffgrad(alias=True), rule="diffgrad", data=vectors("diffgrad"))
    assert not report.passed
    # ξ_1 = σ(|g_1|) is right; from t = 2 the aliased ξ is 0.5
    assert all(r.first["t"] >= 2 for r in report.results if not r.passed)
    assert _first_failure(report).first["t"] == 2
    ident = report.identification
    assert ident["matches"][0]["kind"] == "bug"
    assert ident["matches"][0]["bug"]["id"] == "diffgrad-official-previous-grad-alias"
    assert "diffgrad-official-previous-grad-alias" in ident["message"] and "ξ ≡ 0.5" in ident["message"]
    assert "shivram1987/diffGrad#2" in ident["message"]
    assert verify(make_diffgrad(), rule="diffgrad", data=vectors("diffgrad")).passed


def test_adabelief_residual_against_the_previous_moment_is_named():
    report = verify(make_adabelief(m_prev=True), rule="adabelief", data=vectors("adabelief"))
    first = _first_failure(report)
    assert first.first["t"] == 1  # m_0 = 0: the residual is g instead of β1 g from the first step
    assert report.identification["matches"][0]["changes"] == {"residual": "m_prev"}
    # refopt's option reproduces a catalogued optax bug: the report names the bug and the option
    assert report.identification["matches"][0]["bug"]["id"] == "optax-adabelief-residual-previous-moment"
    assert "residual='m_prev'" in report.identification["message"]
    assert "optax 0.1.0 to 0.2.3" in report.identification["message"]
    assert verify(make_adabelief(), rule="adabelief", data=vectors("adabelief")).passed


def test_an_unknown_bug_gets_the_nearest_convention():
    report = verify(make_adam(scale=1.5), rule="adam", data=vectors("adam"), dtype="float64")
    ident = report.identification
    assert not ident["matches"] and ident["nearest"] is not None
    assert "no known convention" in ident["message"] and "nearest" in ident["message"]
    assert ident["nearest"]["max_rel"] > 0


# ---------------------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------------------


PORT = textwrap.dedent(
    """
    import math
    import numpy as np

    def make(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, inside=False):
        b1, b2 = betas
        def step(p, g, state):
            m, v, t = state or (np.zeros_like(p), np.zeros_like(p), 0)
            t += 1
            g = g + weight_decay * p if weight_decay else g
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            bc1, bc2 = 1 - b1**t, 1 - b2**t
            denom = np.sqrt(v / bc2 + eps) if inside else np.sqrt(v) / math.sqrt(bc2) + eps
            return p - (lr / bc1) * m / denom, (m, v, t)
        return step

    def raises(**hyper):
        def step(p, g, state):
            raise RuntimeError("boom")
        return step

    def wrong_shape(**hyper):
        return lambda p, g, state: (p.reshape(-1)[:1], None)

    def wrong_dtype(**hyper):
        return lambda p, g, state: (p.astype(np.float16), None)

    NOT_CALLABLE = 3
    """
)


@pytest.fixture
def port(tmp_path):
    path = tmp_path / "myport.py"
    path.write_text(PORT)
    return str(path)


def test_cli_torch_adam_exits_0(patched_load, capsys):
    pytest.importorskip("torch")
    assert main(["verify", "torch.optim.Adam", "--dtype", "float64"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("PASS:")


def test_cli_port_passes_then_fails_with_json(patched_load, port, capsys):
    assert main(["verify", f"{port}:make", "--rule", "adam"]) == 0
    capsys.readouterr()
    assert main(["verify", f"{port}:make", "--rule", "adam", "--hyper", "inside=True", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "fail" and data["summary"]["failed"] > 0
    failing = [c for c in data["cases"] if c["verdict"] == "fail"]
    assert failing[0]["first_divergence"]["t"] == 1 and failing[0]["first_divergence"]["quantity"] == "params"
    assert set(failing[0]["errors"]["params"]) == {"abs", "rel", "ulp"}
    assert data["identification"]["matches"][0]["changes"] == {"eps_mode": "inside_sqrt"}


def test_cli_text_report_names_step_quantity_and_convention(patched_load, port, capsys):
    assert main(["verify", f"{port}:make", "--rule", "adam", "--hyper", "inside=True", "--dtype", "float64"]) == 1
    out = capsys.readouterr().out
    assert "FAIL adam-g01-c001 [float64]: first diverges at step t=1 in params[" in out
    assert "the target matches adam with eps_mode='inside_sqrt'" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["verify", "torch.optim.Adamm"], "unknown target 'torch.optim.Adamm'; did you mean 'torch.optim.Adam'"),
        (["verify", "keras.optimizers.Adam", "--like", "torch.optim.Adam"], "--like is for module:Name targets"),
        (["verify", "{port}:make"], "needs --rule"),
        (["verify", "{port}:make", "--rule", "adamm"], "unknown rule 'adamm'"),
        (["verify", "{port}:nothing", "--rule", "adam"], "unknown callable in"),
        (["verify", "{port}:NOT_CALLABLE", "--rule", "adam"], "not a callable factory"),
        (["verify", "no_such_module_xyz:make", "--rule", "adam"], "importing 'no_such_module_xyz'"),
        (["verify", "{port}:raises", "--rule", "adam"], "raised RuntimeError at step t=1"),
        (["verify", "{port}:wrong_shape", "--rule", "adam"], "returned params of shape (1,)"),
        (["verify", "{port}:wrong_dtype", "--rule", "adam"], "returned params of dtype float16"),
        (["verify", "{port}:make", "--rule", "adam", "--hyper", "betas=2"], "--hyper betas=2"),
        (["verify", "{port}:make", "--rule", "adam", "--hyper", "colour=1"], "takes no argument 'colour'"),
        (["verify", "torch.optim.Adam", "--rule", "sgd"], "contradicts"),
        (["verify", "torch.optim.Adam", "--hyper", "eps_mode=inside_sqrt"], "no group of the adam vectors"),
        (["verify", "torch.optim.Adam", "--hyper", "lrr=1"], "did you mean 'lr'"),
    ],
)
def test_cli_bad_usage_exits_2_with_one_line(patched_load, port, capsys, argv, message):
    if argv[1].startswith("torch"):
        pytest.importorskip("torch")
    argv = [a.replace("{port}", port) for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("refopt verify: error: ") and "\n" not in err
    assert message in err
    assert "Traceback" not in captured.err + captured.out


def test_optax_without_optax_installed_exits_2(patched_load, capsys):
    if importlib.util.find_spec("optax") is not None:
        pytest.skip("optax is installed")
    assert main(["verify", "optax.adam"]) == 2
    assert "optax is not installed" in capsys.readouterr().err


def _broken(mutate):
    data = copy.deepcopy(vectors("sgd"))
    mutate(data)
    return data


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(schema="refopt_vectors_v0"), "'schema' is 'refopt_vectors_v0'"),
        (lambda d: d.pop("groups"), "lacks 'groups'"),
        (lambda d: d["groups"][0].update(dtype="float16"), "dtype 'float16'"),
        (lambda d: d["groups"][0]["cases"][0]["params0"].pop(), "params0 has 3 numbers; the case's shape needs 4"),
        (lambda d: d["groups"][0]["cases"][0]["grads"][0].__setitem__(0, "one"), "'one'"),
        (lambda d: d["groups"][0]["cases"][0]["steps"][0].update(t=99), "t=99"),
        (lambda d: d["groups"][0]["cases"][0]["tolerance"].update(params="close"), "unknown tolerance class"),
        (lambda d: d["groups"][0]["hyper"].update(lr=-1.0), "hyper-parameters that sgd rejects"),
    ],
)
def test_a_vectors_file_failing_its_schema_is_bad_usage(mutate, message):
    with pytest.raises(VerifyError, match="fails its schema") as info:
        verify(make_adam(), rule="sgd", data=_broken(mutate))
    assert message in str(info.value)


def test_missing_vectors_file_is_bad_usage(monkeypatch, port, capsys):
    def missing(rule):
        raise FileNotFoundError(f"no vectors for {rule!r}")

    monkeypatch.setattr(refopt.vectors, "load", missing)
    assert main(["verify", f"{port}:make", "--rule", "sgd"]) == 2
    assert "no golden vectors for rule 'sgd'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# the examples
# ---------------------------------------------------------------------------------------


def _load_example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_numpy_port_checks_with_the_vectors_alone(tmp_path):
    path = tmp_path / "adam.json"
    path.write_text(json.dumps(vectors("adam")))
    text = (ROOT / "examples" / "check_numpy_port.py").read_text()
    assert "import refopt" not in text and "from refopt" not in text
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "check_numpy_port.py"), str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout and "cases pass" in done.stdout
    # the same script with ε moved inside the root fails, at step 1
    bad = tmp_path / "bad.py"
    bad.write_text(text.replace("denom = np.sqrt(v) / math.sqrt(bc2) + eps", "denom = np.sqrt(v / bc2 + eps)"))
    done = subprocess.run([sys.executable, str(bad), str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "FAIL adam-g01-c001 [float64] (defaults, first_step): step t=1, params[" in done.stdout


def test_example_torch_factories(patched_load):
    pytest.importorskip("torch")
    ex = _load_example("verify_torch_optimizer")
    report = verify(ex.make_torch_adam, rule="adam", dtype="float64")
    assert report.passed, report.text()
    buggy = verify(ex.make_buggy_adam, rule="adam", dtype="float64")
    assert buggy.identification["matches"][0]["changes"] == {"eps_mode": "inside_sqrt"}


@pytest.mark.parametrize("rule", ["normalized_sgd", "lion"])
def test_refopt_itself_passes_as_a_factory_including_tree_cases(rule):
    """A factory around refopt's own rule reproduces every group (trees: dicts of arrays)."""

    def make(**hyper):
        r = rules.get(rule, **hyper)

        def step(p, g, state):
            return r.step(p, g, r.init(p) if state is None else state)

        return step

    report = verify(make, rule=rule, data=vectors(rule))
    assert report.passed and not report.skipped
    assert all(r.errors["params"].ulp == 0 for r in report.results)
    if rule == "normalized_sgd":
        assert any(isinstance(r.case.shape, dict) for r in report.results)
