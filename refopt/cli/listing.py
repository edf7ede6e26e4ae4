"""``refopt list [rules|presets]``: what refopt implements."""

from __future__ import annotations

import json

from .. import rules


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list update rules and presets", description="List update rules and presets.")
    p.add_argument("what", nargs="?", choices=("rules", "presets"), help="only rules or only presets")
    p.add_argument("--json", action="store_true",
                   help="print {rules: {name: title}, presets: {name: {rule, source, releases}}} as JSON")


def _print_rules() -> None:
    print("update rules (refopt.rules.get(name, **hyper)):")
    width = max(map(len, rules.names()))
    for name in rules.names():
        print(f"  {name:<{width}}  {rules.rule_class(name).title}")


def _print_presets() -> None:
    from .. import presets

    print("presets (refopt.presets.get(name, **kwargs)): a known implementation's conventions")
    width = max(map(len, presets.names()))
    for name in presets.names():
        p = presets.describe(name)
        print(f"  {name:<{width}}  -> {p.rule}")


def run(args) -> int:
    if args.json:
        from .. import presets

        out = {}
        if args.what in (None, "rules"):
            out["rules"] = {n: rules.rule_class(n).title for n in rules.names()}
        if args.what in (None, "presets"):
            out["presets"] = {n: {"rule": p.rule, "source": p.source, "releases": p.versions or None}
                              for n, p in ((n, presets.describe(n)) for n in presets.names())}
        print(json.dumps(out, ensure_ascii=False, indent=1))
        return 0
    if args.what in (None, "rules"):
        _print_rules()
    if args.what is None:
        print()
    if args.what in (None, "presets"):
        _print_presets()
    return 0
