"""``refopt explain`` prints, under each label, the number ``rule.trace`` gives for it.

Every rule and every option value (each value of a Choice, each Flag both ways) runs for ten
steps on explain's example problem.  The step table is checked twice: its structure
(:func:`refopt.cli.explain.step_table`) against ``rule.trace`` computed here, bit for bit, and
the text that ``refopt explain`` prints (parsed row by row) against the same trace.  A quantity
that a step does not compute (RAdam's ``l_t`` before rectification starts) must be printed as
absent, never borrowed from another row.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import refopt as ro
from refopt.cli import explain, main
from refopt.rules._base import Choice, Flag

STEPS = 10

# explain's example, written out again so that the test does not trust the module's constants
A = np.array([3.0, 0.5, 10.0])
B = np.array([0.5, -1.0, 0.2])
THETA0 = np.array([1.0, -2.0, 0.5])

# hyper-parameters that make an option do something: nesterov needs momentum, the decay
# placements need a weight decay
ENABLERS = {"momentum": 0.9, "weight_decay": 0.1}
# options that act only under another one
CONTEXT = {
    ("adam", "amsgrad_max"): {"amsgrad": True},
    ("adamw", "amsgrad_max"): {"amsgrad": True},
    ("amsgrad", "amsgrad_max"): {"amsgrad": True},
    ("adabelief", "amsgrad_eps"): {"amsgrad": True},
    ("adabelief", "threshold"): {"rectify": True},
    ("adabelief", "degenerated_to_sgd"): {"rectify": True},
    ("adabelief", "sgd_phase"): {"rectify": True},
    ("adabelief", "rectified_denom"): {"rectify": True, "amsgrad": True},
    ("adafactor", "eps1_mode"): {"eps": (None, 1e-3)},  # the clamps take torch's machine epsilon
    ("clipped_adafactor", "eps1_mode"): {"eps": (None, 1e-3)},
}


def configurations():
    for name in ro.rules.names():
        cls = ro.rules.rule_class(name)
        declared = {h.name for h in cls.HYPER}
        yield pytest.param(name, {}, id=f"{name}-defaults")
        enablers = {k: v for k, v in ENABLERS.items() if k in declared}
        for h in cls.HYPER:
            if isinstance(h, Choice):
                values = h.choices
            elif isinstance(h, Flag):
                values = (True, False)
            else:
                continue
            for value in values:
                hyper = {**enablers, **CONTEXT.get((name, h.name), {}), h.name: value}
                yield pytest.param(name, hyper, id=f"{name}-{h.name}={value}")


def expected_steps(rule, steps=STEPS, dtype=np.float64):
    """``{label: value}`` per step, from ``rule.trace`` on explain's example."""
    theta = THETA0.astype(dtype)
    state = rule.init(theta)
    out = []
    for _ in range(steps):
        grad = (A * theta.astype(np.float64) + B + theta.astype(np.float64) ** 3).astype(dtype)
        before = theta
        theta, state, trace = rule.trace(theta, grad, state)
        rows = {}
        for name, value in {"params_in": before, "grad": grad, **trace}.items():
            if isinstance(value, np.ndarray):
                for i, x in enumerate(value.reshape(-1)):
                    rows[f"{name}[{i}]"] = x
            else:
                rows[name] = value
        out.append(rows)
    return out


def parse_tables(text: str) -> dict[int, dict[str, str]]:
    """The printed step tables as ``{step: {label: cell}}``."""
    tables: dict[int, dict[str, str]] = {}
    steps: list[int] = []
    for line in text.split("example:", 1)[1].splitlines()[1:]:
        if not line.strip():
            steps = []
            continue
        if line[0] == " ":  # a block's header: the labels column is blank
            steps = [int(k) for k in re.findall(r"step (\d+)", line)]
            assert steps, line
            for k in steps:
                tables[k] = {}
            continue
        label, *cells = line.split()
        assert len(cells) == len(steps), f"row {label!r} has {len(cells)} cells for {len(steps)} steps: {line!r}"
        for k, cell in zip(steps, cells):
            assert label not in tables[k], f"row {label!r} printed twice at step {k}"
            tables[k][label] = cell
    return tables


def same(cell: str, value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return cell == str(bool(value))
    if isinstance(value, (int, np.integer)):
        return cell == str(int(value))
    x = float(value)
    y = float(cell)
    return (np.isnan(x) and np.isnan(y)) or x == y


def same_json(got, value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return got is bool(value)
    if isinstance(value, (int, np.integer)):
        return type(got) is int and got == int(value)
    x = float(value)
    if np.isnan(x):
        return got == "nan"
    if np.isinf(x):
        return got == ("inf" if x > 0 else "-inf")
    return type(got) is float and got == x


def hyper_args(hyper: dict) -> list[str]:
    args = []
    for key, value in hyper.items():
        args += ["--hyper", f"{key}={value}"]
    return args


@pytest.mark.parametrize("name,hyper", list(configurations()))
def test_printed_table_equals_trace(capsys, name, hyper):
    rule = ro.rules.get(name, **hyper)
    expected = expected_steps(rule)

    # the structure: every label of every step, bit for bit; a label absent from a step's trace
    # is absent from that step's row, and labels keep trace order
    table = explain.step_table(rule, STEPS)
    assert len(table.steps) == STEPS
    for k, (rows, want) in enumerate(zip(table.steps, expected), start=1):
        assert list(rows) == list(want), f"step {k}: labels differ"
        for label, value in want.items():
            got = rows[label]
            assert type(got) is type(value) or (isinstance(got, np.floating) and isinstance(value, np.floating)), label
            assert same(explain._fmt(got, 17), value), f"step {k}, {label}: {got!r} != {value!r}"
    union = [label for rows in expected for label in rows]
    assert set(table.labels) == set(union)
    for rows in expected:  # each step's labels appear in table order
        positions = [table.labels.index(label) for label in rows]
        assert positions == sorted(positions)

    # the text: each printed cell parses back to the traced number (17 digits round-trip
    # float64), absent quantities print as the em dash
    assert main(["explain", name, "--steps", str(STEPS), "--digits", "17", *hyper_args(hyper)]) == 0
    out = capsys.readouterr().out
    printed = parse_tables(out)
    assert sorted(printed) == list(range(1, STEPS + 1))
    for k, want in enumerate(expected, start=1):
        assert set(printed[k]) == set(table.labels), f"step {k}: printed rows differ from the table's labels"
        for label, cell in printed[k].items():
            if label in want:
                assert same(cell, want[label]), f"step {k}, {label}: printed {cell!r}, trace {want[label]!r}"
            else:
                assert cell == explain.ABSENT, f"step {k}, {label}: printed {cell!r} for a quantity not traced"

    # --json: the same table, every number exact, absent quantities left out
    assert main(["explain", name, "--steps", str(STEPS), "--json", *hyper_args(hyper)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rule"] == name and doc["labels"] == list(table.labels)
    for k, (got, want) in enumerate(zip(doc["steps"], expected), start=1):
        assert list(got) == list(want), f"step {k}: JSON labels differ from the trace's"
        for label, value in want.items():
            assert same_json(got[label], value), f"step {k}, {label}: JSON {got[label]!r}, trace {value!r}"


@pytest.mark.parametrize(
    "name,hyper,late,first",
    [
        ("radam", {"threshold": "rho>5"}, "l_t[0]", 6),  # the README's example: ρ_6 = 5.99 > 5
        ("radam", {}, "l_t[0]", 5),  # ρ_5 = 4.99 > 4
        ("adabelief", {"rectify": True}, "denom_rect[0]", 6),  # ρ_6 = 5.99 >= 5
    ],
)
def test_late_quantity_is_absent_before_it_appears(capsys, name, hyper, late, first):
    """The issue's cases: a quantity traced from the first rectified step on."""
    rule = ro.rules.get(name, **hyper)
    expected = expected_steps(rule, steps=7)
    assert late not in expected[first - 2] and late in expected[first - 1]
    assert main(["explain", name, "--steps", "7", *hyper_args(hyper)]) == 0
    printed = parse_tables(capsys.readouterr().out)
    for k in range(1, 8):
        cells = printed[k]
        want = expected[k - 1]
        assert cells[late] == (explain.ABSENT if k < first else explain._fmt(want[late], 8))
        for label in ("update[0]", "params[0]", "params_in[0]"):
            assert float(cells[label]) == pytest.approx(float(want[label]), rel=1e-7), (k, label)
        if k > 1:  # what goes in at step k is what came out of step k - 1
            assert cells["params_in[1]"] == printed[k - 1]["params[1]"]


def test_float32_table_keeps_float32_values():
    rule = ro.rules.get("radam", threshold="rho>5")
    table = explain.step_table(rule, 7, "float32")
    expected = expected_steps(rule, steps=7, dtype=np.float32)
    for rows, want in zip(table.steps, expected):
        for label in ("m[1]", "update[2]", "params[0]"):
            assert rows[label].dtype == np.float32 and rows[label] == want[label]
    assert table.cell(7, "l_t[0]", 8) == explain._fmt(expected[6]["l_t[0]"], 8)
    assert table.cell(5, "l_t[0]", 8) == explain.ABSENT
