"""The catalogue of known bugs (``specs/known_bugs.toml``): well formed, and every entry that refopt
can run is recognised by ``refopt verify`` in a small hand-written port that has exactly that bug,
while the same port without the bug passes and names nothing.

The ports are NumPy factories ``make(**hyper) -> step`` written from each entry's ``computes``
text, independently of the emulations in ``refopt.verify._bugs``.  When the environment variable
``REFOPT_OLD_RELEASES`` names a folder holding buggy releases installed side by side
(``<folder>/pytorch_optimizer-3.11.0``, ...; ``.ci/run`` installs them), the real releases are
verified too and must be named; the current releases are never named as buggy.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import refopt.vectors
from refopt import presets, rules, specs
from refopt.verify import _bugs, catalogue, known_bugs, verify

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_LOAD = refopt.vectors.load


@functools.lru_cache(maxsize=None)
def vectors(rule: str) -> dict:
    return _LOAD(rule)


def raw_catalogue() -> dict:
    with open(specs.specs_dir() / "known_bugs.toml", "rb") as fh:
        return tomllib.load(fh)


def _named(ident: dict) -> set:
    """Every catalogue id an identification names (one bug, several at once, or per group)."""
    matches = list(ident["matches"]) + [m for part in ident.get("by_group", []) for m in part["matches"]]
    return {m["bug"]["id"] for m in matches if "bug" in m} | {b["id"] for m in matches for b in m.get("bugs", [])}


# ---------------------------------------------------------------------------------------
# the file itself
# ---------------------------------------------------------------------------------------


def test_catalogue_follows_its_json_schema():
    jsonschema = pytest.importorskip("jsonschema")
    path = specs.specs_dir() / "schema" / "refopt_known_bugs_v1.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(raw_catalogue())
    bad = raw_catalogue()
    bad["bugs"][0]["kind"] = "feature"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(bad)


def test_catalogue_entries_are_consistent():
    entries = catalogue()
    ids = [b.id for b in entries]
    assert len(ids) == len(set(ids))
    # every row of the update-rule discrepancy tables that is a bug or a regression of a release
    assert {"diffgrad-official-previous-grad-alias", "pytorch_optimizer-diffgrad-no-friction",
            "pytorch_optimizer-adabelief-foreach-no-bias-correction", "pytorch_optimizer-adabelief-eps-scaled",
            "adabelief_pytorch-0.1.0-coupled-decay-no-effect", "adabelief-amsgrad-eps-drift",
            "adabelief_pytorch-0.1.0-defaults", "adabelief-grad-mutation", "diffgrad-grad-mutation",
            "optax-adabelief-residual-previous-moment", "optax-adabelief-eps-root-not-accumulated"} <= set(ids)
    for b in entries:
        for r in b.releases:
            _bugs.in_range("1.0.0", r.affected)  # parses
            if r.fixed_in:
                assert not _bugs.in_range(r.fixed_in, r.affected), (b.id, r)
        for target in b.targets:
            if target.split("@")[0] in presets.names():
                assert presets.describe(target).rule == b.rule, (b.id, target)
        emu = b.emulation
        if "function" in emu:
            assert emu["function"] in _bugs.EMULATIONS
        if "options" in emu:
            rules.get(b.rule).replace(**emu["options"])  # the options exist and are valid
        if "detect" in emu:
            assert emu["detect"] in _bugs.DETECTIONS
        if _bugs.runnable(b) or "detect" in emu:
            assert b.rule in rules.names(), b.id


@pytest.mark.parametrize("version, spec, inside", [
    ("3.11.0", ">=2.7.0,<4.0.0", True), ("4.0.0", ">=2.7.0,<4.0.0", False), ("2.7", ">=2.7.0,<4.0.0", True),
    ("2.6.9", ">=2.7.0,<4.0.0", False), ("0.1.0", "==0.1.0", True), ("0.1.1", "==0.1.0", False),
    ("2.13.0+cpu", ">=2.0", True), ("0.2.4rc1", "<0.2.4", False), ("9.9", "", True),
])
def test_version_ranges(version, spec, inside):
    assert _bugs.in_range(version, spec) is inside


def test_a_bad_version_range_is_refused():
    with pytest.raises(ValueError, match="not a comparison"):
        _bugs.in_range("1.0", "~1.0")


# ---------------------------------------------------------------------------------------
# hand-written ports, each with one catalogued bug (scalars as Python floats)
# ---------------------------------------------------------------------------------------


def diffgrad_port(alias=False, no_friction=False):
    """diffGrad as in diffGrad_v2.py with refopt's default ε placement (√v̂ + ε)."""

    def make(lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        b1, b2 = betas

        def step(p, g, state):
            if state is None:
                state = {"m": np.zeros_like(p), "v": np.zeros_like(p), "g_prev": np.zeros_like(p), "t": 0}
            t = state["t"] + 1
            m = b1 * state["m"] + (1 - b1) * g
            v = b2 * state["v"] + (1 - b2) * (g * g)
            bc1, bc2 = 1 - b1**t, 1 - b2**t
            if no_friction:  # pytorch_optimizer 2.7-3.11: m without ξ, no √bc2, 1e-15 inside the root
                p = p - (lr / bc1) * (m / (np.sqrt(v + 1e-15) + eps))
            else:
                # the aliasing bug: from step 2 on the stored "previous" gradient is this step's own
                prev = g if (alias and t >= 2) else state["g_prev"]
                xi = 1 / (1 + np.exp(-np.abs(prev - g)))
                p = p - lr * (xi * m / bc1) / (np.sqrt(v / bc2) + eps)
            return p, {"m": m, "v": v, "g_prev": g, "t": t}

        return step

    return make


def adabelief_port(*, residual_prev=False, decay_after=False, amsgrad_drift=False, eps_inside=False,
                   foreach_bug=False, eps_scaled=False):
    """AdaBelief (paper, Algorithm 2: ε accumulated in s) with one of the catalogued departures."""

    def make(lr=1e-3, betas=(0.9, 0.999), eps=1e-16, weight_decay=0.0, weight_decouple=True, amsgrad=False):
        b1, b2 = betas

        def step(p, g, state):
            if state is None:
                state = {k: np.zeros_like(p) for k in ("m", "s", "s_max")} | {"t": 0}
            t = state["t"] + 1
            bc1, bc2 = 1 - b1**t, 1 - b2**t
            if weight_decay and weight_decouple:
                p = p * (1 - lr * weight_decay)
            if weight_decay and not weight_decouple and not decay_after:
                g = g + weight_decay * p
            m_prev = state["m"]
            m = m_prev + (g - m_prev) * (1 - b1) if foreach_bug else b1 * m_prev + (1 - b1) * g
            r = g - (m_prev if residual_prev else m)
            s = b2 * state["s"] + (1 - b2) * (r * r)
            s_max = state["s_max"]
            if eps_inside:  # optax < 0.1.0: ε_root inside the root, never accumulated
                denom = np.sqrt(s / bc2 + eps) + eps
            elif amsgrad and amsgrad_drift:  # ε added to the running maximum in place
                s_max = np.maximum(s_max, s) + eps
                denom = np.sqrt(s_max / bc2) + eps
            else:
                s = s + eps
                if amsgrad:
                    s_max = np.maximum(s_max, s)
                denom = np.sqrt((s_max if amsgrad else s) / bc2) + eps
            if foreach_bug:  # pytorch_optimizer 3.10-3.11 foreach: no 1/bc1, no outer ε
                p = p - lr * (m / (np.sqrt(s) / math.sqrt(bc2)))
            elif eps_scaled:  # pytorch_optimizer 3.9: (√(s + 1e-15) + ε)/√bc2
                p = p - (lr / bc1) * (m / ((np.sqrt(s + 1e-15) + eps) / math.sqrt(bc2)))
            else:
                p = p - lr * (m / bc1) / denom
            return p, {"m": m, "s": s, "s_max": s_max, "t": t}

        return step

    return make


# id -> (rule, the port with the bug, the same port without it)
PORTS = {
    "diffgrad-official-previous-grad-alias": ("diffgrad", diffgrad_port(alias=True), diffgrad_port()),
    "pytorch_optimizer-diffgrad-no-friction": ("diffgrad", diffgrad_port(no_friction=True), diffgrad_port()),
    "pytorch_optimizer-adabelief-foreach-no-bias-correction": (
        "adabelief", adabelief_port(foreach_bug=True), adabelief_port()),
    "pytorch_optimizer-adabelief-eps-scaled": ("adabelief", adabelief_port(eps_scaled=True), adabelief_port()),
    "adabelief_pytorch-0.1.0-coupled-decay-no-effect": (
        "adabelief", adabelief_port(decay_after=True), adabelief_port()),
    "adabelief-amsgrad-eps-drift": ("adabelief", adabelief_port(amsgrad_drift=True), adabelief_port()),
    "optax-adabelief-residual-previous-moment": ("adabelief", adabelief_port(residual_prev=True), adabelief_port()),
    "optax-adabelief-eps-root-not-accumulated": (
        "adabelief", adabelief_port(residual_prev=True, eps_inside=True), adabelief_port()),
}


def test_every_runnable_entry_has_a_port_here():
    assert {b.id for r in rules.names() for b in known_bugs(r)} == set(PORTS)


@pytest.mark.parametrize("bug_id", sorted(PORTS))
def test_a_port_with_the_bug_is_named_and_the_port_without_it_passes(bug_id):
    rule, buggy, correct = PORTS[bug_id]
    data = vectors(rule)
    report = verify(buggy, rule=rule, data=data)
    assert not report.passed, report.text()
    ident = report.identification
    named = _named(ident)
    assert bug_id in named, ident["message"]
    assert bug_id in ident["message"]
    good = verify(correct, rule=rule, data=data)
    assert good.passed, good.text()
    assert good.identification is None
    # the same groups ran for both ports
    assert {(r.case.group, r.case.dtype) for r in good.results} == {(r.case.group, r.case.dtype) for r in report.results}


# ---------------------------------------------------------------------------------------
# side effects: writing into the gradient
# ---------------------------------------------------------------------------------------


def test_a_torch_optimizer_that_writes_into_its_gradient_is_reported(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    (tmp_path / "gradwriter.py").write_text(
        "import torch\n"
        "class SGDThatNegates(torch.optim.Optimizer):\n"
        "    def __init__(self, params, lr=1e-3):\n"
        "        super().__init__(params, dict(lr=lr))\n"
        "    @torch.no_grad()\n"
        "    def step(self):\n"
        "        for group in self.param_groups:\n"
        "            for p in group['params']:\n"
        "                p.grad.neg_()  # the side effect\n"
        "                p.add_(p.grad, alpha=group['lr'])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    report = verify("gradwriter:SGDThatNegates", rule="sgd", data=vectors("sgd"), dtype="float64")
    assert report.passed, report.text()  # the numbers are right ...
    effect = report.side_effects[0]  # ... but the gradient was written into
    assert effect["detection"] == "gradient-modified" and effect["first_step"] == 1
    assert effect["known_bugs"] == []  # not a catalogued package
    assert "side effect: the target wrote into the gradient" in report.text()
    assert verify("torch.optim.SGD", data=vectors("sgd"), dtype="float64").side_effects == []


def test_adabelief_pytorch_writing_coupled_decay_into_the_gradient_is_named():
    pytest.importorskip("adabelief_pytorch")
    report = verify("adabelief_pytorch.AdaBelief", data=vectors("adabelief"))
    assert report.passed, report.text()
    (effect,) = report.side_effects
    assert [b["id"] for b in effect["known_bugs"]] == ["adabelief-grad-mutation"]


# ---------------------------------------------------------------------------------------
# real releases: the buggy ones are named, the current ones are not
# ---------------------------------------------------------------------------------------

OLD = os.environ.get("REFOPT_OLD_RELEASES")

# (folder, preset, the catalogue entry it must be named as; None: it must pass)
RELEASES = [
    ("pytorch_optimizer-3.11.0", "pytorch_optimizer.DiffGrad", "pytorch_optimizer-diffgrad-no-friction"),
    ("pytorch_optimizer-3.11.0", "pytorch_optimizer.AdaBelief", "pytorch_optimizer-adabelief-foreach-no-bias-correction"),
    ("pytorch_optimizer-3.9.0", "pytorch_optimizer.DiffGrad", "pytorch_optimizer-diffgrad-no-friction"),
    ("pytorch_optimizer-3.9.0", "pytorch_optimizer.AdaBelief", "pytorch_optimizer-adabelief-eps-scaled"),
    ("adabelief-pytorch-0.1.0", "adabelief_pytorch.AdaBelief", "adabelief_pytorch-0.1.0-coupled-decay-no-effect"),
    ("adabelief-pytorch-0.1.0", "adabelief_pytorch.AdaBelief@0.1.0", None),
    ("adabelief-pytorch-0.0.5", "adabelief_pytorch.AdaBelief@0.0.5", None),
]


def _verify_in(folder: str, preset: str) -> tuple[int, dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(OLD, folder), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "refopt", "verify", preset, "--json"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.skipif(not OLD, reason="REFOPT_OLD_RELEASES is not set (.ci/run installs the buggy releases)")
@pytest.mark.parametrize("folder, preset, bug_id", RELEASES, ids=[f"{f}-{p}" for f, p, _ in RELEASES])
def test_a_real_release_is_named_by_its_known_bug(folder, preset, bug_id):
    pytest.importorskip("torch")
    if not os.path.isdir(os.path.join(OLD, folder)):
        pytest.skip(f"{folder} is not installed under {OLD}")
    code, report = _verify_in(folder, preset)
    package, _, version = folder.rpartition("-")
    assert report["implementation"]["version"] == version
    if bug_id is None:
        assert code == 0 and report["identification"] is None
        return
    assert code == 1
    assert report["implementation"]["in_range"] is False
    assert bug_id in {b["id"] for b in report["implementation"]["known_bugs"]}
    ident = report["identification"]
    named = _named(ident)
    assert bug_id in named, ident["message"]


@pytest.mark.parametrize("name", [n for n in presets.names() if not n.startswith("torch.optim.")])
def test_a_current_release_is_never_named_as_buggy(name):
    """Every preset whose package is installed passes, and no bug is named for its release
    (torch.optim's presets: tests/test_verify.py)."""
    from refopt.verify._targets import _installed

    if not _installed(name):
        pytest.skip(f"the package of {name} is not installed")
    if "@" in name:
        pytest.skip("a preset of an older release (tests above run it against that release)")
    rule = presets.describe(name).rule
    report = verify(name, data=vectors(rule))
    assert report.passed, report.text()
    assert report.identification is None
    impl = report.as_dict()["implementation"]
    assert impl["version"] and impl.get("in_range") in (True, None)
    # the releases CI installs are the fixed ones, except torch-optimizer, whose last release
    # (0.3.0) keeps adabelief-pytorch 0.0.5's amsgrad drift (its preset reproduces it); every AdaBound
    # release keeps its parameter-group bookkeeping bug (outside the rule's step, so verify passes)
    adabound_groups = {"adabound-base-lr-param-groups"}
    still_open = {"torch_optimizer.AdaBelief": {"adabelief-amsgrad-eps-drift"}, "adabound.AdaBound": adabound_groups,
                  "torch_optimizer.AdaBound": adabound_groups,
                  "pytorch_optimizer.AdaBound": adabound_groups,
                  # Adafactor's ndim >= 3 statistics (verify skips those cases for it, saying why)
                  "torch_optimizer.Adafactor": {"adafactor-approx-sq-grad-ndim3"}}.get(name, set())
    assert {b["id"] for b in impl["known_bugs"] if b["kind"] in ("bug", "regression")} == still_open


# ---------------------------------------------------------------------------------------
# refopt explain RULE --bugs
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["diffgrad", "adabelief", "adam"])
def test_explain_bugs_lists_the_rules_entries(rule, capsys):
    from refopt.cli import main

    assert main(["explain", rule, "--bugs"]) == 0
    text = capsys.readouterr().out
    entries = _bugs.for_rule(rule)
    for b in entries:
        assert f"{b.id}  [{b.kind}]  {b.implementation}" in text
        assert all(f"source: {src[:40]}" in text.replace("\n    ", " ") for src in b.sources)
    if not entries:
        assert "no known bugs" in text
    assert main(["explain", rule, "--bugs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [b.as_dict() for b in entries]


@pytest.mark.parametrize("name", sorted(_bugs.EMULATIONS))
def test_emulations_keep_float32_in_float32(name):
    """An emulation computes a float32 case in float32 (Python scalars, no NumPy float64 ones)."""
    from refopt.verify._core import Case
    from refopt.verify._data import group_hyper

    bug = next(b for b in catalogue() if b.emulation.get("function") == name)
    data = vectors(bug.rule)
    group = next(g for g in data["groups"] if g["dtype"] == "float32" and g.get("preset") is None)
    case = Case.decode(group, group["cases"][0])
    config = rules.get(bug.rule, **group_hyper(group))
    out = _bugs.EMULATIONS[name](config, case)
    assert out and all(np.asarray(p).dtype == np.float32 for p in out.values()), name
