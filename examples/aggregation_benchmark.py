"""Aggregation time for a large stack: refopt.aggregators against a per-pair Python loop.

    python examples/aggregation_benchmark.py                # n = 100, d = 10**6, float32
    python examples/aggregation_benchmark.py --quick        # n = 20, d = 10**4
    python examples/aggregation_benchmark.py --simulators   # also simulator steps per second
    python examples/aggregation_benchmark.py --json

A thin script over the benchmark sections ``refopt/bench/aggregation.py`` (Krum, NNM + trimmed
mean, geometric median: refopt's call against the per-pair loop baseline, results checked equal)
and ``refopt/bench/simulators.py`` (collaborative and federated simulators against per-node
loops); the module docstrings say exactly what is timed.  ``refopt bench`` runs the same
sections next to the others.  Exit status 1 if some result differs from its baseline.

Host-side example: imports NumPy.
"""

from __future__ import annotations

import argparse
import json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=("numpy", "torch", "cupy"), default="numpy")
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    p.add_argument("--repeat", type=int, default=3, help="best of this many refopt runs")
    p.add_argument("--simulators", action="store_true", help="also the simulator section")
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    a = p.parse_args(argv)

    from refopt.bench import aggregation, copy_bandwidth, make_context, simulators

    ctx = make_context(a.backend, quick=a.quick, repeat=a.repeat)
    ctx.copy_gbps = copy_bandwidth(ctx)
    rows = aggregation.run(ctx)
    if a.simulators:
        rows += simulators.run(ctx)
    ok = True
    if not a.json:
        print(f"{'case':<38}{'refopt [s]':>12}{'peer [s]':>12}{'ratio':>9}  check")
    for r in rows:
        ok &= r.note.startswith("equal")
        if a.json:
            print(json.dumps(r.as_dict(), ensure_ascii=False))
        else:
            print(f"{r.case:<38}{r.seconds:12.4g}{r.peer_seconds:12.4g}{r.ratio:9.2f}  {r.note}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
