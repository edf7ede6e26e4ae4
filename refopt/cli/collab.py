"""``refopt collab``: decentralized learning with Byzantine nodes (D-SGD, MoNNA and baselines).

Runs unchanged under MPI: ``mpiexec -n 4 refopt collab ...`` splits the honest nodes over the
ranks (:mod:`refopt.mpi`), and rank 0 prints the same output as a one-process run (the timing
field ``steps_per_second`` aside); the other ranks stay quiet.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from .. import mpi as _mpi, problems
from ..collaborative import monna_lr, simulate
from ._hyper import parse_hyper
from ._plot import check_plot, pyplot
from . import _progress

ALGORITHMS = ("dsgd", "monna", "nna", "mocwtm", "bridge", "mogm", "gm", "scc")
# CLI attack names -> (simulate()'s attack name, parameters). ALIE is line-searched against the
# defender's own mixing, as in the MoNNA paper's experiments (Farhadkhani et al., ICML 2023,
# arXiv:2209.10931; code: LPD-EPFL/robust-collaborative-learning, attacks/ "little" and "empire");
# "optimal_foe" is that code's line-searched Fall of Empires, (1 − s)·μ; "ipm" is the fixed −2μ
# (Xie, Koyejo & Gupta, UAI 2019; ε = 2 as LPD-EPFL/byzfl), which refopt.attacks and simulate() call "foe".
ATTACKS = {
    "none": (None, None),
    "sign_flipping": ("sign_flipping", None),
    "ipm": ("ipm", None),
    "alie": ("optimal_monna", {"attack": "alie"}),
    "optimal_foe": ("optimal_monna", {"attack": "foe"}),
    "label_flipping": ("label_flipping", None),
    "mimic": ("mimic_heuristic", None),
    # deprecated alias: until refopt 0.x this was the line-searched FOE, while refopt.attacks.foe and
    # simulate(attack="foe") are the fixed −2μ; one name must mean one attack, so it will go
    "foe": ("optimal_monna", {"attack": "foe"}),
}
DEPRECATED_ATTACKS = {
    "foe": "--attack foe is deprecated: it runs the line-searched FOE, which is now --attack optimal_foe "
           "(refopt.attacks.foe and simulate(attack='foe') are the fixed -2μ, --attack ipm)",
}
MODELS = ("softmax", "mlp", "cnn")
# Named settings; an option given on the command line overrides its scenario's value.
#   paper: the MoNNA paper's MNIST settings (batch 25, lr 0.75/(1 + ⌊t/50⌋), 600 steps) at CPU size
#   noisy: batch 1 and a constant lr 0.5, 300 steps -- the honest nodes' disagreement is then
#          gradient noise, which momentum damps (at batch 25 it is data heterogeneity, which it
#          cannot), and the ALIE gap between MoNNA and NNA shows (Farhadkhani et al. §5's argument)
SCENARIOS = {"paper": {"steps": 600, "batch_size": 25, "lr": None},
             "noisy": {"steps": 300, "batch_size": 1, "lr": 0.5}}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "collab",
        help="simulate decentralized learning under Byzantine attacks",
        description="Simulate D-SGD, MoNNA or a robust baseline on a small real dataset with heterogeneous "
        "(Dirichlet) data, some nodes Byzantine. Scenarios: --scenario paper (the default) is the MoNNA paper's MNIST "
        "settings (26 nodes, 5 Byzantine, batch 25, 600 steps, lr 0.75/(1 + t/50), Dirichlet α = 1); --scenario noisy "
        "is batch 1 with a constant lr 0.5 for 300 steps, where momentum's damping of gradient noise shows under "
        "ALIE. Options given explicitly override the scenario.",
    )
    p.add_argument("--algorithm", choices=ALGORITHMS, default="monna",
                   help="D-SGD, MoNNA (momentum + nearest-neighbour averaging), NNA (without momentum) or a robust "
                   "baseline (default monna)")
    p.add_argument("--attack", choices=tuple(ATTACKS), default="alie",
                   help="alie and optimal_foe are line-searched against the defender (the MoNNA paper's); ipm is "
                   "the fixed -2μ (Fall of Empires, refopt.attacks.foe); mimic copies an honest node (warm-up "
                   "heuristic); none: every node is honest; foe: deprecated name of optimal_foe")
    p.add_argument("--nodes", type=int, default=26, help="number of nodes, Byzantine ones included (default 26)")
    p.add_argument("--byzantine", type=int, default=5, help="Byzantine nodes (also the f the rules declare)")
    p.add_argument("--alpha", type=float, default=1.0, help="Dirichlet heterogeneity α (inf: identical class mixes)")
    p.add_argument("--dataset", choices=tuple(problems.dataset_names()) if hasattr(problems, "dataset_names")
                   else ("digits", "gaussian_mixture"), default="digits",
                   help="the data: the bundled 8x8 digits (default) or a synthetic Gaussian mixture")
    p.add_argument("--scenario", choices=tuple(SCENARIOS), default="paper",
                   help="paper: batch 25, lr 0.75/(1 + t/50), 600 steps; noisy: batch 1, lr 0.5, 300 steps")
    p.add_argument("--model", choices=MODELS, default="softmax",
                   help="softmax regression, a one-hidden-layer MLP (32 tanh units) or a small CNN (digits only)")
    p.add_argument("--steps", type=int, default=None, help="steps (default: the scenario's)")
    p.add_argument("--batch-size", type=int, default=None, help="examples per node and step (default: the scenario's)")
    p.add_argument("--hyper", action="append", metavar="KEY=VALUE",
                   help=f"a hyper-parameter of the algorithm, one of {', '.join(HYPER)} (momentum: MoNNA's β, "
                   "default 0.99; tau, clip_iterations: centered clipping; nu, gm_iterations: the geometric median); "
                   "repeatable")
    p.add_argument("--lr", type=float, default=None,
                   help="a constant learning rate (default: the scenario's; paper: the schedule 0.75/(1 + t/50))")
    p.add_argument("--convention", choices=("all", "code"), default="all",
                   help="receive sets: the paper's all-to-all, or the code's n-f received / n-2f averaged")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split, batches and attack (default 0)")
    p.add_argument("--backend", choices=("numpy", "torch", "cupy"), default="numpy",
                   help="array library for every node's model (cupy: on the GPU)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="dtype of the models (default float64)")
    p.add_argument("--plot", metavar="PATH", help="write accuracy and loss curves")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text summary")
    _progress.add_flag(p)


def namespace(name: str):
    """The array namespace for --backend, with an install hint when it is missing."""
    if name == "numpy":
        return None  # the simulator's default
    try:
        if name == "torch":
            import array_api_compat.torch as xp
        else:
            import array_api_compat.cupy as xp
    except ImportError:
        hint = "pip install torch" if name == "torch" else "pip install 'refopt[cupy]' (and a CUDA GPU)"
        raise ValueError(f"--backend {name} is not installed: {hint}") from None
    return xp


# hyper-parameters of the algorithms that --hyper KEY=VALUE sets (simulate()'s names); --lr is the
# same as --hyper lr=...
HYPER = ("lr", "momentum", "tau", "clip_iterations", "nu", "gm_iterations")


def build(args):
    """The problem, data and simulate() keyword arguments that the command line describes."""
    hyper = parse_hyper(getattr(args, "hyper", None))
    for key in hyper:
        if key not in HYPER:
            raise ValueError(f"--hyper {key}: not a hyper-parameter of the algorithms; one of {', '.join(HYPER)}")
    if "lr" in hyper:
        if args.lr is not None:
            raise ValueError("give the learning rate once: --lr or --hyper lr=..., not both")
        args.lr = float(hyper.pop("lr"))
    for key, value in SCENARIOS[args.scenario].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.nodes < 2:
        raise ValueError(f"--nodes must be at least 2; got {args.nodes}")
    if args.steps < 1:
        raise ValueError(f"--steps must be a positive integer; got {args.steps}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer; got {args.batch_size}")
    # the communication graph (an n x n adjacency and its float64 mixing weights) is built first
    _mpi.check_memory(9.0 * args.nodes * args.nodes, f"--nodes {args.nodes} (the communication graph)")
    data = problems.load_dataset(args.dataset)
    features = data[0].shape[1]
    classes = int(max(data[1].max(), data[3].max())) + 1
    if args.model == "cnn":
        if args.dataset != "digits":
            raise ValueError(f"--model cnn takes the 8x8 digits images; got --dataset {args.dataset}")
        problem = problems.get("cnn")
    elif args.model == "softmax":
        problem = problems.softmax_regression(features, classes)
    else:
        problem = problems.mlp(features, 32, classes)
    attack, params = ATTACKS[args.attack]
    byzantine = 0 if attack is None else args.byzantine
    kwargs = dict(
        nodes=args.nodes, byzantine=byzantine, f=args.byzantine, attack=attack, attack_params=params,
        steps=args.steps, lr=monna_lr if args.lr is None else args.lr, batch_size=args.batch_size,
        seed=args.seed, alpha=None if args.alpha == float("inf") else args.alpha, convention=args.convention,
        eval_every=max(1, args.steps // 20), dtype=args.dtype, **hyper,
    )
    xp = namespace(args.backend)
    if xp is not None:
        kwargs["xp"] = xp
    return problem, data, kwargs


def run(args) -> int:
    return _mpi.run_cli("collab", lambda comm: _run(args, comm))


def _run(args, comm) -> int:
    with comm.agreed("reading the command line"):
        problem, data, kwargs = build(args)
        if args.plot:
            check_plot(args.plot)
        if args.backend == "cupy" and comm.is_mpi:  # one GPU per rank on a node, round robin
            import cupy

            cupy.cuda.Device(comm.local_rank % cupy.cuda.runtime.getDeviceCount()).use()
    if args.attack in DEPRECATED_ATTACKS and comm.rank == 0:
        print(f"refopt collab: note: {DEPRECATED_ATTACKS[args.attack]}", file=sys.stderr)
    show = _progress.wanted(args, rank=comm.rank) and (args.steps >= 500 or args.progress is True)
    with np.errstate(over="ignore", invalid="ignore"), \
            _progress.Bar(args.steps, f"{args.algorithm} under {args.attack}", show, unit=" steps") as bar:
        result = simulate(args.algorithm, problem, data, progress=bar.step, comm=comm, **kwargs)
    if comm.rank != 0:  # every rank holds the same result; rank 0 reports it
        return 0
    out = result.to_dict()
    out["honest_spread"] = out.pop("final_spread")
    drift = out.pop("final_drift")
    out["distance_to_honest_mean"] = drift ** 0.5 if isinstance(drift, float) else drift  # None or "inf"/"nan"
    if args.json:
        print(json.dumps(out, allow_nan=False))
    else:
        print(result.report())
        print(f"  accuracy over steps {out['eval_steps'][0]}..{out['eval_steps'][-1]}: "
              + " ".join(f"{a:.3f}" if isinstance(a, float) else str(a) for a in out["accuracy"]))
    if args.plot:
        plt = pyplot()
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        ax1.plot(out["eval_steps"], out["accuracy"], label="mean over honest nodes")
        ax1.plot(out["eval_steps"], out["accuracy_min"], ls="--", label="worst honest node")
        ax1.set_xlabel("step")
        ax1.set_ylabel("test accuracy")
        ax1.legend(fontsize=8)
        ax2.plot(np.arange(1, len(out["loss"]) + 1), out["loss"])
        ax2.set_yscale("log")
        ax2.set_xlabel("step")
        ax2.set_ylabel("honest training loss")
        fig.suptitle(f"{args.algorithm} under {args.attack}: {args.nodes} nodes, {kwargs['byzantine']} Byzantine, "
                     f"α = {args.alpha}, {args.dataset}", fontsize=10)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        plt.close(fig)
        print(f"wrote {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0
