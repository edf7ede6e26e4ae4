"""``refopt run RULE FUNCTION``: one trajectory (or several starts), its loss, a CSV and a plot."""

from __future__ import annotations

import argparse

import csv
import json
import sys

import numpy as np

from .. import functions, rules
from ..run import run as run_rule
from ._hyper import parse_hyper
from ._plot import contour, pyplot
from . import _progress


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a rule on a synthetic function and print its trajectory",
        description="Run an update rule on a synthetic function from one or several start points.",
    )
    p.add_argument("rule", help="rule name (refopt list rules)")
    p.add_argument("function", help=f"function name, one of: {', '.join(functions.names())}")
    p.add_argument("--hyper", action="append", metavar="KEY=VALUE", help="a hyper-parameter of the rule; repeatable")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="a parameter of the function, e.g. dim=10; repeatable")
    p.add_argument("--steps", type=int, default=100, help="number of steps (default 100)")
    p.add_argument("--x0", action="append", metavar="X[,Y,...]",
                   help="a start point, comma-separated (write --x0=-1,2 when it starts with a minus sign); repeat for several runs (default: the function's start)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="dtype of the start points and of every step (default float64)")
    p.add_argument("--csv", metavar="PATH", help="write step, run, coordinates and loss of every iterate")
    p.add_argument("--plot", metavar="PATH", help="write a plot (contours and trajectories in 2-D, x or loss versus step otherwise)")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None,
                   help="evaluate the steps with refopt.fast (--fast) or rule.step (--no-fast); default: the fast "
                        "path when the rule has one and the parameters have at least 32768 elements. The same "
                        "bits either way")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: every run's iterates and losses, and where it diverged")
    _progress.add_flag(p)


def _start(function, items, dtype) -> np.ndarray:
    if not items:
        if function.start is None:
            lo_hi = np.array(function.domain, dtype=np.float64)
            point = lo_hi[:, 0] + 0.8 * (lo_hi[:, 1] - lo_hi[:, 0])  # off-centre: centres are often minimizers
            print(f"{function.name} has no published start point; using {point.tolist()}", file=sys.stderr)
            return point.astype(dtype)
        return np.asarray(function.start, dtype=dtype)
    points = []
    for item in items:
        try:
            point = [float(v) for v in item.split(",")]
        except ValueError:
            raise ValueError(f"--x0 takes comma-separated numbers; got {item!r}") from None
        if len(point) != function.dim:
            raise ValueError(f"--x0 {item!r} has {len(point)} coordinates but {function.name} has dim {function.dim}")
        points.append(point)
    x0 = np.asarray(points, dtype=dtype)
    return x0[0] if len(points) == 1 else x0


def run(args) -> int:
    if args.steps < 1:
        raise ValueError(f"--steps must be a positive integer; got {args.steps}")
    rule = rules.get(args.rule, **parse_hyper(args.hyper))
    function = functions.get(args.function, **parse_hyper(args.param))
    x0 = _start(function, args.x0, np.dtype(args.dtype))
    with np.errstate(over="ignore", invalid="ignore"):
        with _progress.Bar(args.steps, f"{rule.name} on {function.name}", _progress.wanted(args) and
                           (args.steps >= 2000 or args.progress is True), unit=" steps") as bar:
            result = run_rule(rule, function, x0, args.steps, progress=bar.step, fast=args.fast)
    x = np.asarray(result.x).reshape(args.steps + 1, -1, function.dim)
    loss = np.asarray(result.loss).reshape(args.steps + 1, -1)
    minimizers = np.asarray(function.minimizers, dtype=np.float64)
    diverged = np.asarray(result.diverged_at).reshape(-1)

    if args.json:
        num = lambda v: _json_number(float(v))  # noqa: E731
        print(json.dumps({
            "rule": rule.name, "hyper": {k: repr(v) for k, v in rule.hyper.items()}, "function": function.name,
            "steps": args.steps, "dtype": args.dtype,
            "runs": [{"x0": [num(v) for v in x[0, r]], "diverged_at": None if diverged[r] < 0 else int(diverged[r]),
                      "x": [[num(v) for v in x[k, r]] for k in range(args.steps + 1)],
                      "loss": [num(v) for v in loss[:, r]]} for r in range(x.shape[1])],
        }, allow_nan=False))
        return _write_outputs(args, rule, function, x, loss, quiet=True)
    print(f"{rule!r} on {function.name} ({function.title}), {args.steps} steps, {args.dtype}")
    every = max(1, args.steps // 10)
    shown = sorted(set(range(0, args.steps + 1, every)) | {args.steps})
    diverged_at = np.asarray(result.diverged_at).reshape(-1)
    for r in range(x.shape[1]):
        print(f"\nrun {r}: start {x[0, r].tolist()}")
        print(f"  {'step':>7}  {'loss':>14}  x")
        for k in shown:
            if 0 <= diverged_at[r] <= k:
                print(f"  {diverged_at[r]:>7}  diverged (see the report below); frozen at step {diverged_at[r] - 1}")
                break
            coords = ", ".join(f"{v:.6g}" for v in x[k, r, :6]) + (", ..." if function.dim > 6 else "")
            print(f"  {k:>7}  {loss[k, r]:>14.8g}  [{coords}]")
        if len(minimizers):
            d = np.linalg.norm(minimizers - x[-1, r], axis=-1)
            print(f"  distance to the nearest known minimizer {minimizers[np.argmin(d)].tolist()}: {d.min():.3g}"
                  f" (minimum value {function.minimum:.6g})")
    if result.any_diverged:
        print("\n" + result.report())
    return _write_outputs(args, rule, function, x, loss, quiet=False)


def _json_number(v: float):
    return v if np.isfinite(v) else ("nan" if np.isnan(v) else ("inf" if v > 0 else "-inf"))


def _write_outputs(args, rule, function, x, loss, quiet: bool) -> int:
    say = (lambda text: print(text, file=sys.stderr)) if quiet else print
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["step", "run", *[f"x{i}" for i in range(function.dim)], "loss"])
            for k in range(args.steps + 1):
                for r in range(x.shape[1]):
                    w.writerow([k, r, *(repr(float(v)) for v in x[k, r]), repr(float(loss[k, r]))])
        say(f"\nwrote {args.csv}")
    if args.plot:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 5))
        label = lambda r: f"{rule.name} from {x[0, r].tolist()}" if x.shape[1] > 1 else rule.name  # noqa: E731
        if function.dim == 2:
            contour(ax, function, {label(r): x[:, r] for r in range(x.shape[1])},
                    title=f"{rule.name} on {function.name}, {args.steps} steps")
        else:
            for r in range(x.shape[1]):
                ys = x[:, r, 0] if function.dim == 1 else loss[:, r]
                ax.plot(np.arange(args.steps + 1), ys, label=label(r))
            ax.set_xlabel("step")
            ax.set_ylabel("x" if function.dim == 1 else "loss")
            if function.dim > 1 and np.all(loss > 0):
                ax.set_yscale("log")
            ax.set_title(f"{rule.name} on {function.name}", fontsize=9)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        plt.close(fig)
        say(f"wrote {args.plot}")
    return 0
