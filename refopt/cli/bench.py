"""``refopt bench``: time refopt against its peers in one process and print ratios.

Exit status 0 (the targets are reported, not enforced: a benchmark is not a test), 2 on bad
usage (an unknown section, a backend that is not installed).
"""

from __future__ import annotations

import json

from . import _progress


def add_parser(sub) -> None:
    from ..bench import BACKENDS, SECTIONS

    p = sub.add_parser(
        "bench",
        help="benchmark update steps, a batched sweep, aggregation and the simulators against peers",
        description="Time refopt's reference and fast paths against torch.optim, loops and per-pair baselines in "
        "one process; every figure is a ratio to a peer measured in the same run, plus the achieved bandwidth "
        "against the measured copy bandwidth. Sections: " + ", ".join(SECTIONS) + ".",
    )
    p.add_argument("--backend", choices=BACKENDS, default="numpy",
                   help="arrays to run refopt on (cupy needs a GPU; torch runs the reference path on tensors)")
    p.add_argument("--section", action="append", choices=SECTIONS, metavar="NAME",
                   help=f"run only this section (repeatable; default: all of {', '.join(SECTIONS)})")
    p.add_argument("--quick", action="store_true", help="small sizes and one repeat (a smoke test, seconds)")
    p.add_argument("--repeat", type=int, default=5, help="timed calls per case, best kept (default 5)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the table")
    p.add_argument("--save", metavar="PATH", help="also write the JSON report to PATH")
    _progress.add_flag(p)


def run(args) -> int:
    from .. import bench

    with _progress.Bar(None, "bench", _progress.wanted(args), unit=" timings") as bar:
        report = bench.run(args.backend, sections=args.section, quick=args.quick, repeat=args.repeat,
                           progress=lambda name: bar.describe(f"bench: {name}"), on_timed=bar.update)
    text = json.dumps(report, indent=1, ensure_ascii=False)
    if args.save:
        with open(args.save, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    print(text if args.json else bench.table(report))
    return 0
