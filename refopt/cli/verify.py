"""``refopt verify TARGET``: check an implementation against refopt's golden vectors.

Exit status: 0 when every case passes, 1 on a mismatch, 2 on bad usage (the diagnosis is one
line on stderr).  See :mod:`refopt.verify` for what is run and compared.
"""

from __future__ import annotations

import json
import sys

from ._hyper import parse_hyper


def add_parser(sub) -> None:
    p = sub.add_parser(
        "verify",
        help="check another implementation (torch.optim.X, optax.x, module:callable) against the golden vectors",
        description="Run the golden vectors through TARGET and report, per case, the first step and quantity "
        "where it departs, the largest absolute/relative/ulp errors and a verdict; on a mismatch, name the "
        "known convention, preset or bug it follows instead. Exit 0: all pass; 1: a mismatch; 2: bad usage.",
    )
    p.add_argument(
        "target",
        help="a built-in adapter (torch.optim.Adam, optax.adam, ...: `refopt list presets`) or module:callable "
        "(also path/to/file.py:callable), a factory make(**hyper) -> step(params, grads, state) -> (params, state)",
    )
    p.add_argument("--rule", help="the rule whose vectors to use (needed for module:callable)")
    p.add_argument("--hyper", action="append", metavar="KEY=VALUE",
                   help="keep only groups with this argument value (the implementation's or refopt's name); for "
                   "module:callable, other keys are passed to the factory; repeatable")
    p.add_argument("--dtype", choices=("float64", "float32"), help="only this dtype (default: both)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    from ..verify import VerifyError, verify

    try:
        report = verify(args.target, rule=args.rule, hyper=parse_hyper(args.hyper), dtype=args.dtype)
    except VerifyError as exc:
        print(f"refopt verify: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), indent=1, ensure_ascii=False, default=str))
    else:
        print(report.text())
    return report.exit_code
