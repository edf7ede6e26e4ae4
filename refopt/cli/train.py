"""``refopt train PROBLEM RULE``: train a problem of ``refopt.problems`` with any update rule.

Mini-batches come from a seeded stream (``refopt.problems.train``); the loss curve is printed
as a table of a few points (``--json``: every step), plotted with ``--plot``, and a run whose
loss stops being finite is reported at that step and stopped.  ``--backend torch|cupy`` trains
on that library's arrays (CuPy: on the GPU) with the same code.
"""

from __future__ import annotations

import argparse

import json
import math
import sys

import numpy as np

from .. import problems, rules
from .._threads import blas_threads
from . import _progress
from ._hyper import parse_hyper
from ._plot import check_plot, pyplot

BACKENDS = ("numpy", "torch", "cupy")
# classifiers train on the bundled 8x8 digits by default (sizes from the data); the transformer on
# refopt's character corpus and the CNN on digit images come from their example_batch
DIGITS_SIZES = {"mlp": {"features": 64, "hidden": 32, "classes": 10}, "softmax_regression": {"features": 64, "classes": 10}}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a problem (transformer, cnn, mlp, softmax_regression, ...) with any update rule",
        description="Train PROBLEM (refopt.problems.names()) with RULE (refopt.rules.names()) on mini-batches from a "
        "seeded stream; print the loss curve, detect divergence, optionally plot it.",
        epilog="Exit status: 0 a run that stayed finite; 1 a run that diverged (its step is reported); 2 bad usage.",
    )
    p.add_argument("problem", help=f"one of: {', '.join(problems.names())}")
    p.add_argument("rule", help="update rule (refopt list rules)")
    p.add_argument("--hyper", action="append", metavar="KEY=VALUE", help="a hyper-parameter of the rule; repeatable")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="a size of the problem, e.g. width=64 or layers=2; repeatable")
    p.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    p.add_argument("--batch-size", type=int, default=16, help="examples per mini-batch (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial parameters and of the batches (default 0)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float32", help="parameter dtype (default float32)")
    p.add_argument("--backend", choices=BACKENDS, default="numpy",
                   help="array library to train with (torch: its CPU or CUDA tensors; cupy: the GPU)")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS threads for NumPy (default 1: the models multiply small matrices; needs threadpoolctl)")
    p.add_argument("--plot", metavar="PATH", help="write the loss curve to an image file (needs matplotlib)")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None,
                   help="evaluate the steps with refopt.fast (--fast) or rule.step (--no-fast); default: the fast "
                        "path when the rule has one and the parameters have at least 32768 elements. The same "
                        "bits either way")
    p.add_argument("--json", action="store_true", help="print one JSON object (every step's loss) instead of the table")
    _progress.add_flag(p)


def _theta0(problem, seed: int, dtype: str, backend: str):
    theta = np.asarray(problem.init(seed), dtype=dtype)
    if backend == "numpy":
        return theta
    if backend == "torch":
        try:
            import torch
        except ImportError:
            raise ImportError("--backend torch needs PyTorch: pip install torch") from None
        return torch.as_tensor(theta, device="cuda" if torch.cuda.is_available() else "cpu")
    try:
        import cupy
    except ImportError:
        raise ImportError("--backend cupy needs CuPy: pip install 'refopt[cupy]'") from None
    return cupy.asarray(theta)


def _number(x: float):
    return x if math.isfinite(x) else ("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))


def run(args) -> int:
    if args.steps < 1:
        raise ValueError(f"--steps must be a positive integer; got {args.steps}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer; got {args.batch_size}")
    if args.seed < 0:
        raise ValueError(f"--seed must be a non-negative integer; got {args.seed}")
    if args.threads < 1:
        raise ValueError(f"--threads must be a positive integer; got {args.threads}")
    sizes = {**DIGITS_SIZES.get(args.problem, {}), **parse_hyper(args.param)}
    problem = problems.get(args.problem, **sizes)
    data = None
    if args.problem in DIGITS_SIZES:
        X, y = problems.load_dataset("digits")[:2]
        data = (X, y)
    rule = rules.get(args.rule, **parse_hyper(args.hyper))
    if args.plot:
        check_plot(args.plot)
    theta0 = _theta0(problem, args.seed, args.dtype, args.backend)
    show = _progress.wanted(args)
    with blas_threads(args.threads), np.errstate(over="ignore", invalid="ignore"), \
            _progress.Bar(args.steps, f"{args.rule} on {args.problem}", show, unit=" steps") as bar:
        result = problems.train(problem, rule, args.steps, args.batch_size, args.seed, theta0=theta0, data=data,
                                progress=bar.step, fast=args.fast)
    losses = np.asarray(result.losses, dtype=np.float64).reshape(result.steps_run, -1).mean(axis=1)
    out = {
        "problem": args.problem, "rule": rule.name, "hyper": {k: repr(v) for k, v in rule.hyper.items()},
        "parameters": problem.dim, "steps": args.steps, "steps_run": result.steps_run,
        "batch_size": args.batch_size, "seed": args.seed, "dtype": args.dtype, "backend": args.backend,
        "first_loss": _number(float(losses[0])), "final_loss": _number(float(losses[-1])),
        "diverged_at": result.diverged_at, "loss": [_number(float(x)) for x in losses],
    }
    if args.json:
        print(json.dumps(out, allow_nan=False))
    else:
        print(f"{rule.name} on {args.problem} ({problem.dim} parameters, {args.dtype}, {args.backend}): "
              f"{result.steps_run} steps, batch {args.batch_size}, seed {args.seed}")
        marks = sorted({0, *np.linspace(0, result.steps_run - 1, 9).round().astype(int).tolist()})
        print("  step   mini-batch loss")
        for k in marks:
            print(f"  {k:>5}   {losses[k]:.6g}")
        if result.diverged:
            print(f"  DIVERGED: the loss is not finite at step {result.diverged_at}; the run stopped there")
    if args.plot:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(np.arange(result.steps_run), losses, lw=1.0)
        ax.set_yscale("log" if np.all(losses[np.isfinite(losses)] > 0) else "linear")
        ax.set_xlabel("step")
        ax.set_ylabel("mini-batch loss")
        ax.set_title(f"{rule.name} on {args.problem}, batch {args.batch_size}, seed {args.seed}", fontsize=9)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        plt.close(fig)
        print(f"wrote {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 1 if result.diverged else 0
