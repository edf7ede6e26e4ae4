"""``refopt vectors --write | --check [--rule R ...]``: the golden vectors under ``specs/vectors``.

``--write`` regenerates the files from the rules; ``--check`` regenerates them in memory and
compares bytes with the files on disk (CI runs it), naming the first differing case id and
field.  Exit status: 0 when everything matches (or was written), 1 on any difference, 2 on
bad usage (an unknown rule, no mode).
"""

from __future__ import annotations

import json
import sys

from .. import vectors
from . import _progress


def add_parser(sub) -> None:
    p = sub.add_parser(
        "vectors",
        help="write or check the golden vectors (specs/vectors/<rule>.json)",
        description="Regenerate the golden vectors of every rule (--write), or regenerate them in memory and "
        "fail on any byte of difference with the files (--check).",
        epilog="Exit status: 0 when every file matches (or was written), 1 on any difference, "
        "2 on bad usage (an unknown rule, no mode).",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate and write the files")
    mode.add_argument("--check", action="store_true", help="regenerate in memory and compare bytes with the files")
    p.add_argument("--rule", action="append", metavar="R", help="only this rule (repeatable; default: every rule)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: the files written, or the files checked and every difference")
    _progress.add_flag(p)


def run(args) -> int:
    selection = args.rule or None
    if selection is not None:  # unknown names: ValueError -> exit 2 before any work
        for r in selection:
            vectors.path(r)
    if args.write:
        written = [str(t) for t in vectors.write(selection)]
        if args.json:
            print(json.dumps({"mode": "write", "written": written}))
        else:
            for target in written:
                print(f"wrote {target}")
        return 0
    names = selection or vectors.rules.names()
    with _progress.Bar(len(names), "vectors --check", _progress.wanted(args), unit=" rules") as bar:
        problems = vectors.check(selection, progress=lambda name: (bar.describe(f"checking {name}"), bar.update()))
    if args.json:
        print(json.dumps({"mode": "check", "files": len(names), "match": not problems, "differences": problems}))
        return 1 if problems else 0
    if problems:
        print(f"refopt vectors: {len(problems)} of the vectors differ from what refopt generates:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        print("(regenerate with `refopt vectors --write` if the change is intended)", file=sys.stderr)
        return 1
    print(f"refopt vectors: {len(names)} file(s) match what refopt generates")
    return 0
