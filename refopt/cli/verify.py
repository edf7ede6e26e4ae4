"""``refopt verify TARGET``: check an implementation against refopt's golden vectors.

Exit status: 0 when every case passes, 1 on a mismatch, 2 on bad usage or a target that
raises, exits, hangs or returns the wrong thing (the diagnosis is one line on stderr).  See
:mod:`refopt.verify` for what is run and compared.
"""

from __future__ import annotations

import json
import sys

from ._hyper import parse_hyper


def add_parser(sub) -> None:
    p = sub.add_parser(
        "verify",
        help="check another implementation (a preset such as torch.optim.Adam or pytorch_optimizer.DiffGrad, or "
        "module:Name) against the golden vectors",
        description="Run the golden vectors through TARGET and report, per case, the first step and quantity "
        "where it departs, the largest absolute/relative/ulp errors and a verdict; on a mismatch, name the "
        "known convention, preset or known bug it follows instead. Exit 0: all pass; 1: a mismatch; 2: bad usage, "
        "or a target that raises, exits, hangs or returns the wrong thing.",
    )
    p.add_argument(
        "target",
        help="a preset (`refopt list presets`: torch.optim.*, optax.*, keras.optimizers.*, adabelief_pytorch.AdaBelief, "
        "torch_optimizer.*, pytorch_optimizer.*), run from its installed package; or module:Name (also "
        "path/to/file.py:Name): a torch.optim.Optimizer subclass, a Keras optimizer class, a function returning an "
        "optax GradientTransformation, or a factory make(**hyper) -> step(params, grads, state) -> (params, state)",
    )
    p.add_argument("--rule", help="the rule whose vectors to use (needed for module:Name unless --like says it)")
    p.add_argument("--like", metavar="PRESET",
                   help="for module:Name: the preset whose argument names and conventions the target follows "
                   "(default: the torch.optim/keras.optimizers/optax preset of the rule for such classes and functions, "
                   "refopt's own names for a factory)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="how long one case may take in the target before it counts as hung (default 60; inf: no limit)")
    p.add_argument("--hyper", action="append", metavar="KEY=VALUE",
                   help="keep only groups with this argument value (the implementation's or refopt's name); for "
                   "module:callable, other keys are passed to the factory; repeatable")
    p.add_argument("--dtype", choices=("float64", "float32"), help="only this dtype (default: both)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    from ..verify import VerifyError, verify

    try:
        report = verify(args.target, rule=args.rule, hyper=parse_hyper(args.hyper), dtype=args.dtype, like=args.like,
                        timeout=args.timeout)
    except VerifyError as exc:
        print(f"refopt verify: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    if args.json:  # as_dict writes non-finite numbers as strings: allow_nan=False proves it
        print(json.dumps(report.as_dict(), indent=1, ensure_ascii=False, default=str, allow_nan=False))
    else:
        print(report.text())
    return report.exit_code
