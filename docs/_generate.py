"""Write the reference pages of the documentation from refopt itself (run by ``conf.py``).

Every page under ``docs/_generated/`` is rebuilt at each Sphinx run from the code and the specs,
so the rendered documentation cannot drift from them:

* one page per update rule, from ``specs/rules/<rule>.toml`` and the rule class: the algorithm
  box of the default configuration with rendered equations, every equation with the option
  condition under which it applies, the hyper-parameters with defaults and valid ranges, the
  state, every option with the implementations that use each variant, the presets that map onto
  it, the known discrepancies, the known bugs of real implementations (``specs/known_bugs.toml``),
  and a worked first step on the ``refopt explain`` example;
* one table of every preset, and the known-bugs catalogue as a page.

Run by hand: ``python docs/_generate.py`` writes the same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import refopt
from refopt import presets, rules, specs
from refopt.verify import _bugs

OUT = Path(__file__).resolve().parent / "_generated"


def _esc(text: object) -> str:
    """Text for a reST paragraph or table cell: markup characters escaped."""
    s = str(text)
    for ch in ("\\", "*", "`", "|", "_"):
        s = s.replace(ch, "\\" + ch)
    return s


def _title(text: str, char: str) -> list[str]:
    return [text, char * max(len(text), 3), ""]


def _table(header: list[str], rows: list[list[object]], widths: str | None = None) -> list[str]:
    out = [".. list-table::", "   :header-rows: 1"]
    if widths:
        out.append(f"   :widths: {widths}")
    out.append("")
    for row in [header, *rows]:
        cells = [(_esc(c) if str(c).strip() else "—") for c in row]
        out.append(f"   * - {cells[0]}")
        out.extend(f"     - {c}" for c in cells[1:])
    return out + [""]


def _math(latex: str) -> list[str]:
    return [".. math::", "", f"   {latex}", ""]


def _arxiv(ref: dict) -> str:
    parts = [ref.get("cite", ""), f"*{_esc(ref['title'])}*" if ref.get("title") else ""]
    if ref.get("arxiv"):
        parts.append(f"`arXiv:{ref['arxiv']} <https://arxiv.org/abs/{ref['arxiv']}>`__")
    if ref.get("doi"):
        parts.append(f"`doi:{ref['doi']} <https://doi.org/{ref['doi']}>`__")
    if ref.get("repository"):
        parts.append(f"``{ref['repository']}``")
    if ref.get("where"):
        parts.append(ref["where"])
    role = ref.get("role")
    return (f"**{role}**: " if role else "") + "; ".join(p if p.startswith(("*", "`")) else _esc(p) if p else ""
                                                         for p in parts if p)


def _worked_step(rule: rules.Rule) -> list[str]:
    """The first step of ``refopt explain``'s example, every traced quantity."""
    from refopt.cli import explain

    try:
        table = explain.step_table(rule, 1, np.dtype("float64"))
    except Exception as exc:  # pragma: no cover - a rule explain cannot run shows why
        return [f"(no worked step: {type(exc).__name__}: {_esc(exc)})", ""]
    step = table.steps[0]
    rows = []
    for label in table.labels:
        if label not in step:
            continue
        value = step[label]
        shown = f"{float(value):.9g}" if isinstance(value, (float, np.floating)) else str(value)
        rows.append([label, shown])
    if not rows:
        return []
    return [f"On the example of ``refopt explain`` ({_esc(explain.EXAMPLE)}), float64, the first step "
            f"computes (``refopt explain {rule.name} --steps 1`` prints the same; more steps with ``--steps``):", "",
            *_table(["quantity", "value at t = 1"], rows, "25 75")]


def rule_page(name: str) -> str:
    cls = rules.rule_class(name)
    rule = cls()
    spec = specs.load(name)
    raw = spec.raw
    ctx = specs.context(rule)
    lines = [f".. _rule-{name}:", "", *_title(f"{name} — {raw['title']}", "=")]
    lines += [_esc(raw["citation"]), ""]
    lines += ["References:", ""] + [f"- {_arxiv(r)}" for r in raw.get("references", [])] + [""]
    lines += [f"In Python: ``refopt.rules.{name}(**hyper)`` or ``refopt.rules.get({name!r}, **hyper)``; "
              f"the machine-readable spec is ``specs/rules/{name}.toml``.", ""]

    lines += _title("The algorithm (default options)", "-")
    lines += ["One step, in the order ``rule.trace`` reports the quantities (trace names in bold):", ""]
    for eq in spec.equations_for(ctx, partial=True):
        lines += [f"**{_esc(eq.name)}**", ""] + _math(eq.latex)
    if raw.get("symbols"):
        lines += ["Symbols:", ""] + [f"- {_esc(k)}: {_esc(v)}" for k, v in raw["symbols"].items()] + [""]

    lines += _title("Every equation and when it applies", "-")
    lines += ["Options select among these; an equation without a condition always applies.", ""]
    for e in raw["equations"]:
        when = e.get("when")
        lines += [f"**{_esc(e['name'])}**" + (f" — when ``{when}``" if when else ""), ""] + _math(e["latex"])

    lines += _title("Hyper-parameters", "-")
    hyper_rows = [[h["name"], repr(h.get("default")), h.get("valid", ""), h.get("meaning", "")] for h in raw["hyper"]]
    lines += _table(["name", "default", "valid", "meaning"], hyper_rows, "15 12 18 55")

    lines += _title("State", "-")
    lines += _table(["slot", "initial value", "meaning"],
                    [[s["name"], s.get("init", ""), s.get("meaning", "")] for s in raw["state"]], "15 20 65")

    if raw.get("options"):
        lines += _title("Options and who uses each variant", "-")
        for opt in raw["options"]:
            lines += [f"``{opt['name']}``", ""]
            lines += _table(["value", "meaning", "used by"],
                            [[repr(v["value"]), v.get("meaning", ""), "; ".join(v.get("used_by", []))]
                             for v in opt["variants"]], "15 45 40")

    mine = [presets.describe(p) for p in presets.names() if presets.describe(p).rule == name]
    if mine:
        lines += _title("Presets", "-")
        lines += ["``refopt.presets.get(NAME, **its_own_arguments)`` configures this rule like the implementation; "
                  "``refopt verify NAME`` runs the real one against the golden vectors.", ""]
        lines += _table(["preset", "read from", "releases", "notes"],
                        [[p.name, p.source, p.versions or "", p.notes] for p in mine], "22 35 10 33")

    if raw.get("discrepancies"):
        lines += _title("Known discrepancies between papers and implementations", "-")
        rows = [[d.get("ref", ""), d.get("where", ""), d.get("what", ""), d.get("impact", ""),
                 d.get("reproduce", ""), "; ".join(d.get("sources", []))] for d in raw["discrepancies"]]
        lines += _table(["id", "where", "what differs", "impact", "in refopt", "sources"], rows, "5 14 31 16 14 20")

    bugs = _bugs.for_rule(name)
    if bugs:
        lines += _title("Known bugs of real implementations", "-")
        lines += ["From ``specs/known_bugs.toml`` (:doc:`../known_bugs`); ``refopt verify`` names them when a target "
                  "follows one.", ""]
        lines += _table(["id", "kind", "implementation and versions", "what it computes"],
                        [[b.id, b.kind, f"{b.implementation}: {b.versions}", b.computes] for b in bugs], "20 10 30 40")

    lines += _title("A worked step", "-")
    lines += _worked_step(rule)
    return "\n".join(lines) + "\n"


def presets_page() -> str:
    lines = [*_title("Presets", "="),
             "A preset configures a refopt rule exactly like a known implementation, from that implementation's own "
             "argument names and defaults (``refopt.presets.get('torch.optim.Adam', lr=1e-3)``).  Arguments it cannot "
             "reproduce raise a ``ValueError`` that says why.  ``refopt verify PRESET`` runs the real implementation "
             "against the golden vectors.", ""]
    rows = [[p.name, f":ref:`{p.rule} <rule-{p.rule}>`", p.source, p.versions or ""]
            for p in (presets.describe(n) for n in presets.names())]
    out = [".. list-table::", "   :header-rows: 1", "   :widths: 25 12 48 15", ""]
    for i, row in enumerate([["preset", "rule", "read from", "releases"], *rows]):
        out.append(f"   * - {_esc(row[0])}")
        out.append(f"     - {row[1] if i else _esc(row[1])}")
        out.extend(f"     - {_esc(c) if c else '—'}" for c in row[2:])
    return "\n".join(lines + out) + "\n"


def bugs_page() -> str:
    lines = [*_title("Known bugs of real implementations", "="),
             "The catalogue ``specs/known_bugs.toml`` (format: ``specs/README.md``, \"Known bugs\"): what real "
             "implementations of these rules get wrong, release by release.  ``refopt verify`` names an entry when a "
             "target follows it; ``refopt explain RULE --bugs`` prints a rule's entries.", ""]
    for b in _bugs.catalogue():
        lines += _title(b.id, "-")
        lines += [f"**{_esc(b.kind)}** — {_esc(b.implementation)} ({_esc(b.versions)}); rule ``{b.rule}``", ""]
        lines += [f"{_esc(b.summary)}.", "", f"What it computes: {_esc(b.computes)}.", ""]
        for r in b.releases:
            fixed = f", fixed in {r.fixed_in}" if r.fixed_in else ""
            lines.append(f"- release: ``{r.package}`` {_esc(_bugs.describe_range(r.affected))}{_esc(fixed)}")
        emu = b.emulation
        how = ("refopt options " + ", ".join(f"{k}={v!r}" for k, v in emu["options"].items()) if "options" in emu
               else f"emulated in refopt.verify ({emu['function']})" if "function" in emu
               else f"detected while a target runs ({emu['detect']})" if "detect" in emu
               else f"not reproduced: {emu['none']}")
        lines.append(f"- in refopt: {_esc(how)}")
        lines += [f"- source: {_esc(s)}" for s in b.sources] + [""]
    return "\n".join(lines) + "\n"


def rules_index() -> str:
    lines = [*_title("Update rules", "="),
             "One page per rule, generated from its spec and its code.  Each rule is a pure function of frozen "
             "hyper-parameters: ``rule.init(params)``, ``rule.step(params, grads, state)``, and "
             "``rule.trace(params, grads, state)`` for every intermediate quantity.", "",
             ".. toctree::", "   :maxdepth: 1", ""]
    lines += [f"   rules/{n}" for n in rules.names()]
    return "\n".join(lines) + "\n"


def generate(out: Path = OUT) -> list[Path]:
    (out / "rules").mkdir(parents=True, exist_ok=True)
    written = []

    def write(path: Path, text: str) -> None:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)

    for name in rules.names():
        write(out / "rules" / f"{name}.rst", rule_page(name))
    write(out / "rules.rst", rules_index())
    write(out / "presets.rst", presets_page())
    write(out / "known_bugs.rst", bugs_page())
    write(out / "version.txt", refopt.__version__ if hasattr(refopt, "__version__") else "")
    return written


if __name__ == "__main__":
    for p in generate():
        print(p)
