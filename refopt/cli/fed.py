"""``refopt fed``: FedAvg, FedAsync, FedBuff and FedFix on a simulated clock.

Runs unchanged under MPI: ``mpiexec -n 4 refopt fed ...`` splits the clients over the ranks
(:mod:`refopt.mpi`), and rank 0 prints the same output as a one-process run (the timing fields
``wall_seconds`` and ``steps_per_second`` aside); the other ranks stay quiet.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np

from .. import mpi as _mpi
from ..federated import SCHEMES, client_times, clock, simulate, theory
from . import _progress
from ._hyper import parse_hyper
from ._plot import check_plot, pyplot

STALENESS = ("constant", "polynomial", "hinge")
#: the default --max-steps: about 2 minutes and 400 MB of schedule on one core
MAX_STEPS = 1_000_000
#: option -> (the schemes it applies to, its default there)
SCHEME_OPTIONS = {
    "delta_t": (("fedfix",), 0.5),
    "buffer": (("fedbuff",), 5),
    "alpha": (("fedasync",), None),
    "staleness": (("fedbuff", "fedasync"), "constant"),
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "fed",
        help="simulate federated learning with heterogeneous client speeds on an exact clock",
        description="Simulate FedAvg, asynchronous FedAvg/FedAsync, FedBuff or FedFix with clients of "
        "different speeds on an exact (rational) simulated clock (Fraboni et al., JMLR 2023, arXiv:2206.10189). "
        "Defaults: the scenario of refopt reproduce fedfix, 10 one-dimensional quadratic clients with optima "
        "θ_i* = i and F-80 speeds. An option that does not apply to the chosen scheme is an error.",
    )
    p.add_argument("--scheme", choices=SCHEMES, default="fedfix",
                   help="the server rule: FedAvg, FedAsync (asynchronous FedAvg), FedBuff or FedFix (default fedfix)")
    p.add_argument("--delta-t", type=float, default=None, help="FedFix's aggregation window Δt (fedfix only; default 0.5)")
    p.add_argument("--buffer", type=int, default=None, help="FedBuff's buffer size (fedbuff only; default 5)")
    p.add_argument("--alpha", type=float, default=None,
                   help="FedAsync's mixing α (Xie et al.; fedasync only); default: Fraboni's asynchronous FedAvg")
    p.add_argument("--staleness", choices=STALENESS, default=None,
                   help="staleness function (fedbuff, and fedasync with --alpha; default constant)")
    p.add_argument("--clients", type=int, default=10, help="number of clients (default 10)")
    p.add_argument("--speeds", default="F-80", help="F-X (the paper's linear spread), exp, half_normal, or "
                   "comma-separated client times")
    p.add_argument("--weights", choices=("identical", "unbiased"), default="identical",
                   help="aggregation weights: identical, or unbiased (d_i = p_i / f_i, which removes the bias toward "
                   "fast clients)")
    p.add_argument("--problem", choices=("quadratic", "softmax"), default="quadratic",
                   help="quadratic clients (closed-form fixed points) or softmax regression on digits")
    p.add_argument("--local-steps", type=int, default=1, help="SGD steps a client takes per round (default 1)")
    p.add_argument("--lr-local", type=float, default=0.003, help="clients' learning rate (default 0.003)")
    p.add_argument("--lr-server", type=float, default=1.0, help="server learning rate (default 1)")
    p.add_argument("--horizon", type=float, default=3000.0, help="simulated time to run for (default 3000)")
    p.add_argument("--max-steps", type=int, default=MAX_STEPS,
                   help=f"refuse a run whose schedule would exceed this many server steps (counted before it is "
                   f"built; default {MAX_STEPS:,})")
    p.add_argument("--seed", type=int, default=0, help="seed of the client times, data and batches (default 0)")
    p.add_argument("--hyper", action="append", metavar="KEY=VALUE",
                   help=f"a hyper-parameter, one of {', '.join(HYPER)} (--lr-local and --lr-server are aliases of the "
                   "first two); repeatable")
    p.add_argument("--plot", metavar="PATH", help="write the loss against simulated time")
    _progress.add_flag(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text summary")


def _speeds(text: str):
    if "," in text or _is_number(text):
        try:
            return [float(v) for v in text.split(",")]
        except ValueError:
            raise ValueError(f"--speeds takes F-X, exp, half_normal or comma-separated times; got {text!r}") from None
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --hyper KEY=VALUE: simulate()'s names; --lr-local and --lr-server are aliases of the first two
HYPER = ("lr_local", "lr_server", "local_momentum", "server_momentum")
_ALIASES = {"lr_local": ("--lr-local", 0.003), "lr_server": ("--lr-server", 1.0)}


def options(args) -> dict:
    """simulate() keyword arguments for the scheme the command line names."""
    hyper = parse_hyper(getattr(args, "hyper", None))
    for key, value in hyper.items():
        if key not in HYPER:
            raise ValueError(f"--hyper {key}: not a hyper-parameter of the federated schemes; one of {', '.join(HYPER)}")
        if key in _ALIASES:
            flag, default = _ALIASES[key]
            if getattr(args, key) != default:
                raise ValueError(f"give {key} once: {flag} or --hyper {key}=..., not both")
            setattr(args, key, float(value))
    if args.horizon <= 0 or not math.isfinite(args.horizon):
        raise ValueError(f"--horizon must be a positive finite time; got {args.horizon}")
    if args.max_steps < 1:
        raise ValueError(f"--max-steps must be a positive integer; got {args.max_steps}")
    for name, (schemes, _) in SCHEME_OPTIONS.items():
        if getattr(args, name) is not None and args.scheme not in schemes:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} applies to --scheme {' and '.join(schemes)} only, not {args.scheme}")
    if args.staleness not in (None, "constant") and args.scheme == "fedasync" and args.alpha is None:
        raise ValueError(f"--staleness {args.staleness} applies to fedasync with --alpha only (Fraboni's asynchronous "
                         "FedAvg has no staleness scaling)")
    kw = dict(clients=args.clients, speeds=_speeds(args.speeds), horizon=args.horizon, local_steps=args.local_steps,
              lr_local=args.lr_local, lr_server=args.lr_server, weights=args.weights, seed=args.seed,
              **{k: float(v) for k, v in hyper.items() if k not in _ALIASES})
    for name, (schemes, default) in SCHEME_OPTIONS.items():
        if args.scheme in schemes:
            value = getattr(args, name)
            kw[name] = default if value is None else value
    if args.clients < 1:
        raise ValueError(f"--clients must be a positive integer; got {args.clients}")
    _mpi.check_memory(args.clients * 2048.0, f"--clients {args.clients:,}")
    times = client_times(kw["speeds"], args.clients, seed=args.seed)
    planned = clock.count_steps(args.scheme, times, horizon=args.horizon, delta_t=kw.get("delta_t"),
                                buffer=kw.get("buffer"))
    if planned > args.max_steps:
        raise ValueError(
            f"the run would take {planned:,} server steps to reach --horizon {args.horizon:g} (shortest client time "
            f"{float(min(times)):.3g}), more than --max-steps {args.max_steps:,}: shorten --horizon, lengthen "
            + ("--delta-t, " if args.scheme == "fedfix" else "") + "the client times, or raise --max-steps")
    kw["max_steps"] = args.max_steps
    return kw


def predicted_fixed_point(args, times=None):
    """The quadratic clients' fixed point Σ q̃_i θ_i* (:func:`refopt.federated.theory.fixed_point`;
    None for softmax or FedAsync with α). ``times``: the simulated clients' times (default: drawn
    from ``--speeds`` with ``--seed``, as the simulation draws them)."""
    if args.problem != "quadratic" or (args.scheme == "fedasync" and args.alpha is not None):
        return None
    if times is None:
        times = client_times(_speeds(args.speeds), args.clients, seed=args.seed)
    extra = {}
    if args.scheme == "fedfix":
        extra["delta_t"] = SCHEME_OPTIONS["delta_t"][1] if args.delta_t is None else args.delta_t
    elif args.scheme == "fedbuff":
        extra["buffer"] = SCHEME_OPTIONS["buffer"][1] if args.buffer is None else args.buffer
    return float(theory.fixed_point(args.scheme, times, list(range(args.clients)), weights=args.weights, **extra))


def run(args) -> int:
    return _mpi.run_cli("fed", lambda comm: _run(args, comm))


def _run(args, comm) -> int:
    with comm.agreed("reading the command line"):
        kw = options(args)
        if args.plot:
            check_plot(args.plot)
    with _progress.Bar(None, f"{args.scheme} server steps", _progress.wanted(args, rank=comm.rank),
                       unit=" steps") as bar:
        result = simulate(args.scheme, args.problem, comm=comm, progress=bar.step, **kw)
    with comm.agreed("the predicted fixed point"):
        predicted = predicted_fixed_point(args, result.client_times)
    if comm.rank != 0:  # every rank holds the same result; rank 0 reports it
        return 0
    out = result.to_dict()
    out["predicted_fixed_point"] = predicted
    if args.json:
        print(json.dumps(out, allow_nan=False))
    else:
        final = out["final_params"]
        final_text = f"{final:.6g}" if isinstance(final, float) else str(final) if isinstance(final, str) else \
            f"array of {len(final)}"
        print(f"{args.scheme} ({args.weights} weights), {args.clients} clients with speeds {args.speeds}, "
              f"{args.problem}: {out['server_steps']} server steps in simulated time {result.simulated_time:.6g}")
        if result.diverged_at is not None:
            print(f"  diverged at server step {result.diverged_at} ({result.diverged_quantity} not finite or "
                  f"exploding); the results are those of the steps before it")
        print(f"  final params {final_text}; optimum {out['optimum']}; predicted fixed point "
              f"{out['predicted_fixed_point']}")
        print(f"  {'client':>6} {'time':>8} {'participation':>14} {'mean delay':>11}")
        for i, (tau, q, delay) in enumerate(zip(out["client_times"], out["participation"], out["mean_delay"])):
            print(f"  {i:>6} {str(Fraction(tau)):>8} {q:>14.4f} {delay:>11.3f}")
    if args.plot:
        plt = pyplot()
        one_d = result.params is not None and np.asarray(result.params).ndim == 2 and np.asarray(result.params).shape[1] == 1
        fig, axes = plt.subplots(1, 2 if one_d else 1, figsize=(12 if one_d else 7, 4), squeeze=False)
        ax = axes[0][0]
        curves = out["curves"]
        ax.plot(curves["times"], curves["loss"], label=f"{args.scheme}, {args.weights} weights")
        ax.set_xlabel("simulated time")
        ax.set_ylabel("global loss")
        ax.set_yscale("log")
        ax.set_title("global loss", fontsize=9)
        ax.legend(fontsize=8)
        if one_d:  # a one-dimensional model: its path against the optimum and the predicted fixed point
            bx = axes[0][1]
            bx.plot(result.times, np.asarray(result.params)[:, 0], label="θ (server model)")
            if result.optimum is not None:
                bx.axhline(float(np.asarray(result.optimum).reshape(-1)[0]), color="black", ls="--", lw=0.9,
                           label="federated optimum")
            fixed = out.get("predicted_fixed_point")
            if isinstance(fixed, (int, float)):
                bx.axhline(fixed, color="tab:red", ls=":", lw=1.2, label="predicted fixed point (theory)")
            bx.set_xlabel("simulated time")
            bx.set_ylabel("θ")
            bx.set_title("the model against the optimum and the fixed point", fontsize=9)
            bx.legend(fontsize=8)
        fig.suptitle(f"{args.scheme} on {args.problem}, {args.clients} clients, {args.weights} weights, "
                     f"seed {args.seed}", fontsize=10)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        plt.close(fig)
    return 0


# ---------------------------------------------------------------------------------------
# refopt reproduce fedfix: 10 quadratic clients, F-80 speeds, all four schemes, both weightings
# ---------------------------------------------------------------------------------------

# identical weights: the biased fixed points Σ_i q̃_i θ_i*, q̃_i ∝ d_i f_i, of Fraboni et al.'s surrogate objective
# (arXiv:2206.10189) with the closed-form participation f_i of refopt.federated.theory (FedBuff-5: the simulated
# f_i); unbiased weights recover the federated optimum 4.5
FEDFIX_REPORTED = {"fedasync": 5.96, "fedfix-0.5": 5.36, "fedfix-0.8": 5.12, "fedbuff-5": 5.85, "fedavg": 4.5}


def fedfix_experiment(out: str | None):
    from .reproduce import Outcome, Row, _save

    times = client_times("F-80", 10)
    configs = {
        "fedavg": ("fedavg", {}),
        "fedasync": ("fedasync", {}),
        "fedbuff-5": ("fedbuff", {"buffer": 5}),
        "fedfix-0.5": ("fedfix", {"delta_t": 0.5}),
        "fedfix-0.8": ("fedfix", {"delta_t": 0.8}),
    }
    rows, curves = [], {}
    for weights in ("identical", "unbiased"):
        for label, (scheme, extra) in configs.items():
            result = simulate(scheme, "quadratic", clients=10, speeds="F-80", horizon=3000, local_steps=1,
                              lr_local=0.003, weights=weights, seed=0, **extra)
            d = result.to_dict()
            curves[(label, weights)] = (np.asarray(d["curves"]["times"], dtype=float), np.asarray(d["curves"]["loss"]))
            predicted = float(theory.fixed_point(scheme, times, list(range(10)), weights=weights, **extra))
            reported = FEDFIX_REPORTED[label] if weights == "identical" else 4.5
            final = float(d["final_params"])
            rows.append(Row(f"{label:<11} {weights:<9}", f"ends near {reported:.2f}",
                            f"{final:.4f} (theory {predicted:.4f}, {d['server_steps']} steps)",
                            abs(final - reported) <= 0.02 and abs(final - predicted) <= 0.02))
    checkpoints = (1, 10, 100, 1000, 3000)
    header = "global loss at simulated time " + " ".join(f"{t:>9}" for t in checkpoints)
    table = [header]
    for (label, weights), (t, loss) in curves.items():
        at = [loss[min(np.searchsorted(t, c, side="right") - 1, len(loss) - 1)] for c in checkpoints]
        table.append(f"  {label:<11} {weights:<9}        " + " ".join(f"{v:9.3g}" for v in at))
    notes = [
        "\n    ".join(table),
        "With identical weights the asynchronous schemes optimize a surrogate biased toward fast clients; the "
        "unbiased weights (d_i = p_i / f_i, refopt.federated.theory) restore the federated optimum 4.5.",
        "FedFix aggregates at fixed windows Δt on an exact rational clock; with Δt at least the slowest client's "
        "time it is FedAvg step for step.",
    ]
    outcome = Outcome(
        "Federated learning with heterogeneous speeds (Fraboni et al., JMLR 2023): FedAvg, FedAsync, FedBuff, FedFix",
        "scenario: 10 clients, L_i(θ) = (θ - i)²/2, F-80 speeds, K = 1 local step, lr 0.003, "
        "simulated time 3000 (about 10 time constants of FedAvg)",
        rows, notes)
    if out:
        plt = pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
        for ax, weights in zip(axes, ("identical", "unbiased")):
            for label in configs:
                t, loss = curves[(label, weights)]
                ax.plot(t, loss, label=label)
            ax.set_yscale("log")
            ax.set_xlabel("simulated time")
            ax.set_title(f"{weights} weights", fontsize=9)
            ax.legend(fontsize=7)
        axes[0].set_ylabel("federated loss Σ L_i(θ)/M")
        fig.suptitle("10 quadratic clients with optima 0..9, F-80 speeds", fontsize=10)
        fig.tight_layout()
        outcome.plots.append(_save(fig, out, "fedfix.png"))
        plt.close(fig)
    return outcome
