"""``refopt bench``: the command runs from the CLI, prints a table or JSON, and its rows are well-formed.

Only the quick sizes run here (benchmarks are not tests: no timing is asserted, only that every
figure is a positive ratio against a named peer and that the checks it reports hold).
"""

from __future__ import annotations

import json

import pytest

from refopt import bench
from refopt.cli import main


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "report.json"
    assert main(["bench", "--quick", "--section", "steps", "--section", "sweep", "--json", "--save", str(path)]) == 0
    return json.loads(path.read_text())


def test_report_has_machine_copy_bandwidth_and_rows(report):
    assert report["backend"] == "numpy" and report["quick"] is True
    assert report["copy_gbps"] > 0
    assert {"cpu", "cores", "numpy", "python"} <= set(report["machine"])
    sections = {r["section"] for r in report["rows"]}
    assert sections == {"steps", "sweep"}
    for r in report["rows"]:
        assert r["seconds"] > 0 and r["ratio"] > 0 and r["peer"]
        assert r["ratio"] == pytest.approx(r["peer_seconds"] / r["seconds"])


def test_step_rows_cover_every_rule_and_path_with_bandwidth(report):
    steps = [r for r in report["rows"] if r["section"] == "steps"]
    for rule in ("sgd", "adam", "adabelief", "diffgrad"):
        impls = {r["impl"] for r in steps if r["case"] == rule and r["size"] == "1e4"}
        assert {"reference", "fast numpy", "fast numpy, out="} <= impls
    adam = next(r for r in steps if r["case"] == "adam" and r["impl"] == "reference" and r["size"] == "1e5")
    # 28 bytes per float32 parameter for Adam (ecosystem.md §5.5)
    assert adam["gbps"] == pytest.approx(28 * 10**5 / adam["seconds"] / 1e9)
    assert adam["of_copy"] == pytest.approx(adam["gbps"] / report["copy_gbps"])


def test_sweep_checks_batched_rows_against_separate_runs(report):
    sweep = [r for r in report["rows"] if r["section"] == "sweep"]
    assert sweep[0]["peer"] == "separate refopt runs"
    assert "bit for bit: True" in sweep[0]["note"]


def test_table_and_bad_usage(capsys):
    text = bench.table({"backend": "numpy", "quick": True, "machine": {"cpu": "x", "cores": 2, "numpy": "2"},
                        "copy_gbps": 10.0, "seconds": 1.0,
                        "rows": [bench.ratio_row("steps", "adam", "1e4", "fast numpy", 1e-3, "reference", 2e-3,
                                                 gbps=1.0, of_copy=0.1, target="≥1x", met=True).as_dict()]})
    assert "2.00x" in text and "≥1x: met" in text and "[steps]" in text
    with pytest.raises(ValueError, match="unknown section 'nope'"):
        bench.run("numpy", sections=["nope"], quick=True)
    with pytest.raises(ValueError, match="backend must be one of"):
        bench.make_context("jax")
    with pytest.raises(SystemExit):
        main(["bench", "--section", "nope"])


def test_timings_keep_their_spread_through_rows_copies_and_division():
    import copy
    import pickle

    from refopt.bench._common import Row, Timing

    t = Timing([0.3, 0.1, 0.2, 0.4])
    assert float(t) == 0.1 and t.median == 0.25 and t.max == 0.4 and t.repeats == 4
    per = t / 2
    assert (float(per), per.median, per.max, per.repeats) == (0.05, 0.125, 0.2, 4)
    for again in (copy.deepcopy(t), pickle.loads(pickle.dumps(t))):
        assert (float(again), again.median, again.max, again.repeats) == (0.1, 0.25, 0.4, 4)
    row = Row("steps", "adam", "1e4", "reference", t, peer="torch", peer_seconds=Timing([0.2]), ratio=2.0).as_dict()
    assert row["seconds"] == 0.1 and type(row["seconds"]) is float
    assert row["seconds_spread"] == {"min": 0.1, "median": 0.25, "max": 0.4, "repeats": 4}
    assert row["peer_seconds_spread"]["repeats"] == 1
