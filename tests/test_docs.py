"""The documentation's reference pages are generated from the code and the specs (docs/_generate.py):
every rule, preset and known bug has its page or row, and what a page shows agrees with the code.
CI builds the whole site with Sphinx, warnings as errors (.ci/run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from refopt import presets, rules
from refopt.cli.explain import step_table
from refopt.verify import catalogue

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    if not (DOCS / "_generate.py").exists():
        pytest.skip("docs/ is not in this distribution")
    spec = importlib.util.spec_from_file_location("refopt_docs_generate", DOCS / "_generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path_factory.mktemp("generated")
    mod.generate(out)
    return out


def test_every_rule_has_a_page_with_its_box_hyper_parameters_and_a_worked_step(generated):
    index = (generated / "rules.rst").read_text(encoding="utf-8")
    for name in rules.names():
        page = (generated / "rules" / f"{name}.rst").read_text(encoding="utf-8")
        assert f"   rules/{name}" in index
        assert ".. math::" in page and "Hyper-parameters" in page and "A worked step" in page
        for h in rules.rule_class(name).HYPER:
            assert f"   * - {h.name.replace('_', chr(92) + '_')}" in page, (name, h.name)
        # the worked step shows the first step's numbers as refopt explain computes them
        step = step_table(rules.get(name), 1).steps[0]
        assert f"     - {float(step['params[0]']):.9g}" in page, name


def test_every_preset_and_known_bug_is_listed(generated):
    table = (generated / "presets.rst").read_text(encoding="utf-8")
    for name in presets.names():
        assert f"   * - {name.replace('_', chr(92) + '_')}" in table, name
    bugs = (generated / "known_bugs.rst").read_text(encoding="utf-8")
    for b in catalogue():
        assert b.id in bugs


def test_api_pages_cover_aggregators_attacks_and_simulators():
    text = "".join(p.read_text(encoding="utf-8") for p in (DOCS / "api").glob("*.rst"))
    for module in ("refopt.aggregators", "refopt.preaggregators", "refopt.attacks", "refopt.collaborative",
                   "refopt.federated", "refopt.functions", "refopt.problems", "refopt.verify", "refopt.diagnostics"):
        assert f".. automodule:: {module}\n" in text, module


def test_every_rule_class_shows_its_signature_and_docstring_to_help():
    import inspect
    import pydoc

    for name in rules.names():
        cls = rules.rule_class(name)
        sig = inspect.signature(cls)
        assert [p.name for p in sig.parameters.values()] == [h.name for h in cls.HYPER], name
        assert all(p.default == h.default for p, h in zip(sig.parameters.values(), cls.HYPER)), name
        doc = pydoc.render_doc(cls, renderer=pydoc.plaintext)
        assert cls.title in doc and f"refopt explain {name}" in doc, name
        for h in cls.HYPER:
            assert f"{h.name} = {h.default!r}" in doc, (name, h.name)
