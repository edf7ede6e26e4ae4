"""``refopt explain RULE``: a rule's equations and every traced quantity of its first steps.

The equations are read from the rule's spec (``specs/rules/<rule>.toml``, see
:mod:`refopt.specs`): the plain-text form of every equation that applies under the chosen
hyper-parameters, in trace order, with its trace name on the left, so each line names a row
of the step table below.  A line that applies on some steps only (RAdam's rectified step)
carries its condition in brackets.

The built-in example has three coordinates with different curvature and a quartic term, so
that each quantity differs between coordinates and the gradient is not a multiple of θ (a
multiple would hide weight decay from the Adam family, which is invariant to gradient scale).
refopt's golden vectors (``specs/vectors/``) use the same problem, so a porter can compare the
printed numbers with a vector file.  On it refopt's parameters after 1 and 5 steps match, to
the 10 significant digits recorded in the repository's tests (``tests/test_golden_core.py``,
``test_rules_baselines.py``, ``test_adabelief.py``, ``test_diffgrad.py``), those of
``torch.optim`` 2.13 (CPU), ``adabelief-pytorch`` 0.2.1 and ``torch-optimizer`` 0.3.0.

The step table is built as data first (:func:`step_table`: one dict per step, keyed by row
label) and then formatted (:func:`format_table`), so that a quantity a step does not compute
-- RAdam's adaptive rate ``l_t`` before rectification starts -- is shown as absent at that
step instead of shifting the rows below it.  ``--json`` prints the same table as data
(:func:`table_json`), every number exact.
"""

from __future__ import annotations

import json
import math
import textwrap
import unicodedata
from dataclasses import dataclass

import numpy as np

from .. import _array, _tree, rules, specs
from ._hyper import parse_hyper

EXAMPLE = "f(θ) = Σ_i A_i θ_i²/2 + B_i θ_i + θ_i⁴/4,  A = [3, 0.5, 10],  B = [0.5, -1, 0.2],  θ_0 = [1, -2, 0.5]"
_A = np.array([3.0, 0.5, 10.0])
_B = np.array([0.5, -1.0, 0.2])
_THETA0 = np.array([1.0, -2.0, 0.5])
_COLUMNS = 6  # steps per table block


def add_parser(sub) -> None:
    p = sub.add_parser(
        "explain",
        help="print a rule's equations and every intermediate quantity of its first steps",
        description="Print a rule's equations, its hyper-parameters, and a table of every traced quantity "
        f"for the first N steps on a small example: {EXAMPLE}.",
    )
    p.add_argument("rule", help="rule name (see `refopt list rules`)")
    p.add_argument("--steps", type=int, default=3, help="number of steps to show (default 3)")
    p.add_argument("--hyper", action="append", metavar="KEY=VALUE", help="a hyper-parameter, e.g. lr=0.1 or betas=(0.9,0.99); repeatable")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="dtype of the example (default float64)")
    p.add_argument("--digits", type=int, default=8, help="significant digits printed (default 8; 17 round-trips float64)")
    p.add_argument("--options", action="store_true", help="also document every hyper-parameter: default, valid range, meaning")
    p.add_argument("--bugs", action="store_true",
                   help="print only the known bugs and regressions of real implementations of this rule (the catalogue "
                   "specs/known_bugs.toml that refopt verify uses to name them): releases, what each computes instead, "
                   "sources, and how refopt reproduces it; with --json, as a list of objects")
    p.add_argument("--json", action="store_true",
                   help="print the equations and the step table as JSON instead (every number exact: a float32 value "
                   "as the double it equals; NaN and infinities as the strings \"nan\", \"inf\", \"-inf\"; a quantity "
                   "absent at a step is left out of that step's object)")


def _gradient(theta: np.ndarray) -> np.ndarray:
    return _A * theta + _B + theta**3


def _fmt(value, digits: int) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.{digits}g}"


def _rows(trace: dict) -> dict[str, object]:
    """Flatten one step's trace into ``{row label: value}``, one row per coordinate
    (``m[0]``, ``m[1]``, ...) and one per scalar (``t``, ``rectified``)."""
    rows: dict[str, object] = {}
    for name, value in trace.items():
        if _array.is_array(value) or isinstance(value, (dict, list, tuple)):
            leaves, _, paths = _tree.flatten(value, name)
            for leaf, path in zip(leaves, paths):
                flat = _array.to_numpy(leaf).reshape(-1)
                for i, x in enumerate(flat):
                    rows[f"{path}[{i}]"] = x
        else:
            rows[name] = value
    return rows


def _merge(order: list[str], labels: list[str]) -> None:
    """Add to ``order`` the labels it lacks, each right after the label that precedes it in
    ``labels`` (so RAdam's ``l_t``, traced from the first rectified step on, lands between
    ``m_hat`` and ``update`` however late it first appears)."""
    known = set(order)
    previous = None
    for label in labels:
        if label not in known:
            at = order.index(previous) + 1 if previous is not None else 0
            order.insert(at, label)
            known.add(label)
        previous = label


@dataclass(frozen=True)
class StepTable:
    """Every traced quantity of the first steps, keyed by name.

    ``labels`` lists every row that appears at any step, in trace order; ``steps[k]`` maps
    the labels present at step ``k + 1`` to their values (a quantity that a step does not
    compute, such as RAdam's ``l_t`` before rectification starts, is absent from that
    step's dict and printed as an em dash, ``ABSENT``).
    """

    labels: tuple[str, ...]
    steps: tuple[dict, ...]

    def cell(self, step: int, label: str, digits: int) -> str:
        """The printed text of one cell; ``step`` counts from 1."""
        values = self.steps[step - 1]
        return _fmt(values[label], digits) if label in values else ABSENT


ABSENT = "\u2014"  # an em dash: the quantity is not computed at this step


def step_table(rule, steps: int, dtype="float64") -> StepTable:
    """Run ``rule`` for ``steps`` steps on the example problem and collect, per step, the
    parameters going in (``params_in``), the gradient (``grad``) and every quantity of
    ``rule.trace``, one row per coordinate."""
    dtype = np.dtype(dtype)
    theta = _THETA0.astype(dtype)
    state = rule.init(theta)
    order: list[str] = []
    table = []
    for _ in range(steps):
        grad = _gradient(theta.astype(np.float64)).astype(dtype)
        theta_before = theta
        theta, state, trace = rule.trace(theta, grad, state)
        rows = _rows({"params_in": theta_before, "grad": grad, **trace})
        _merge(order, list(rows))
        table.append(rows)
    return StepTable(tuple(order), tuple(table))


def _json_value(value):
    """A trace value as JSON: bools and ints as such, floats exactly (``repr``), non-finite
    values as strings."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    if isinstance(value, (float, np.floating)):
        x = float(value)
        return x if math.isfinite(x) else ("nan" if math.isnan(x) else "inf" if x > 0 else "-inf")
    return value


def table_json(rule, table: StepTable, dtype, box: str) -> dict:
    """The JSON document of ``refopt explain --json``."""
    return {
        "rule": rule.name,
        "hyper": {k: _json_value(v) for k, v in rule.hyper.items()},
        "example": EXAMPLE,
        "dtype": np.dtype(dtype).name,
        "equations": box.splitlines(),
        "labels": list(table.labels),
        "steps": [{label: _json_value(v) for label, v in rows.items()} for rows in table.steps],
    }


def format_table(table: StepTable, digits: int) -> str:
    """The step table as text: blocks of up to six steps, one row per label, absent cells
    shown as ``ABSENT``."""
    width = max(len(label) for label in table.labels)
    cell_width = digits + 8
    lines = []
    for start in range(0, len(table.steps), _COLUMNS):
        block = range(start + 1, min(start + _COLUMNS, len(table.steps)) + 1)
        lines.append("")
        lines.append(" " * width + "".join(f"  {'step ' + str(k):>{cell_width}}" for k in block))
        for label in table.labels:
            cells = "".join(f"  {table.cell(k, label, digits):>{cell_width}}" for k in block)
            lines.append(f"{label:<{width}}{cells}")
    return "\n".join(lines)


def equations(rule) -> str:
    """The algorithm box of a configured rule, from its spec: one line per equation that
    applies, ``trace name  plain-text form``, in trace order."""
    spec = specs.load(rule.name)
    return specs.format_equations(spec, specs.context(rule), indent="")


def symbols(rule, box: str) -> str:
    """The spec's symbols that the printed equations use, one per line: ``γ  lr``."""
    table = {k: v for k, v in specs.load(rule.name).symbols.items() if k in box}

    def columns(text):  # combining accents (m̂) take no column
        return sum(not unicodedata.combining(ch) for ch in text)

    width = max((columns(k) for k in table), default=0)
    return "\n".join(f"{k}{' ' * (width - columns(k))}  {v}" for k, v in table.items())


def print_bugs(rule: str, as_json: bool) -> None:
    """The catalogue entries of one rule, for people or as JSON."""
    from ..verify import _bugs

    entries = _bugs.for_rule(rule)
    if as_json:
        print(json.dumps([b.as_dict() for b in entries], ensure_ascii=False, indent=1))
        return
    if not entries:
        print(f"{rule}: no known bugs of real implementations are catalogued (specs/known_bugs.toml)")
        return
    print(f"{rule}: known bugs and regressions of real implementations (specs/known_bugs.toml; refopt verify "
          f"names them when a target follows one)")
    for b in entries:
        print()
        print(f"{b.id}  [{b.kind}]  {b.implementation}")
        for label, text in (("summary", b.summary), ("computes", b.computes), ("versions", b.versions)):
            print(textwrap.fill(f"{label}: {text}", 100, initial_indent="  ", subsequent_indent="    "))
        for r in b.releases:
            fixed = f", fixed in {r.fixed_in}" if r.fixed_in else ""
            print(f"  release: {r.package} {_bugs.describe_range(r.affected)}{fixed}")
        emu = b.emulation
        how = (f"refopt {rule} with " + ", ".join(f"{k}={v!r}" for k, v in emu["options"].items()) if "options" in emu
               else f"emulated by refopt.verify ({emu['function']})" if "function" in emu
               else f"detected while verify runs the target ({emu['detect']})" if "detect" in emu
               else f"not reproduced: {emu['none']}")
        print(textwrap.fill(f"in refopt: {how}", 100, initial_indent="  ", subsequent_indent="    "))
        for src in b.sources:
            print(textwrap.fill(f"source: {src}", 100, initial_indent="  ", subsequent_indent="    "))


def run(args) -> int:
    if args.steps < 1 or args.steps > 1000:
        raise ValueError(f"--steps must be between 1 and 1000; got {args.steps}")
    if not 1 <= args.digits <= 17:
        raise ValueError(f"--digits must be between 1 and 17; got {args.digits}")
    cls = rules.rule_class(args.rule)
    rule = cls(**parse_hyper(args.hyper))
    dtype = np.dtype(args.dtype)
    if args.bugs:
        print_bugs(rule.name, args.json)
        return 0
    if args.json:
        table = step_table(rule, args.steps, dtype)
        print(json.dumps(table_json(rule, table, dtype, equations(rule)), ensure_ascii=False, indent=1))
        return 0

    print(f"{rule.name}: {cls.title}")
    print(textwrap.fill(f"source: {cls.citation}", 100, subsequent_indent="  "))
    print()
    box = equations(rule)
    print(f"equations (specs/rules/{rule.name}.toml; trace names on the left):")
    print(textwrap.indent(box, "  "))
    print("where:")
    print(textwrap.indent(symbols(rule, box), "  "))
    print()
    changed = [h.name for h in cls.HYPER if rule.hyper[h.name] != h.default]
    settings = ", ".join(f"{k}={v!r}{'*' if k in changed else ''}" for k, v in rule.hyper.items())
    print(textwrap.fill(f"hyper-parameters ({'* = not the default; ' if changed else ''}--options documents each): {settings}",
                        100, subsequent_indent="  "))
    if args.options:
        print()
        for h in cls.HYPER:
            print(f"  {h.name:<24} default {h.default!r}; valid: {h.valid}")
            print(textwrap.indent(textwrap.fill(h.doc, 88), " " * 28))
    print()
    print(f"example: {EXAMPLE}  ({args.dtype}, gradient evaluated exactly)")

    print(format_table(step_table(rule, args.steps, dtype), args.digits))
    return 0
