"""Simulate decentralized learning with Byzantine nodes: D-SGD, MoNNA and the robust baselines.

All honest nodes live in one ``(h, d)`` array; a step is a handful of array operations on it
(one batched ``problem.loss_grad``, the momentum and half-step updates, one attack call, one
batched mixing from :mod:`refopt.collaborative.mixing`), never a Python loop over nodes.

Host-side parts: the random draws (mini-batch indices, MoNNA's receive subsets, the attack's
randomness) come from one ``numpy.random.Generator`` seeded by ``seed`` and are moved to the
device with ``xp.asarray``; the data split, the topology and the result curves are host NumPy
arrays too.  This module therefore imports NumPy; the arithmetic of a step is array-API only.

Nodes and indices
    ``nodes`` = n nodes, of which the **last** ``byzantine`` indices (h, h+1, ..., n−1) are
    Byzantine and the first h = n − byzantine are honest.  Byzantine nodes hold no data and no
    model; each step they send the vectors an attack builds from the honest half-step models
    (omniscient attacker; the same f vectors reach every receiver, as in the MoNNA repo).
    Ties in nearest-neighbour selection go to the lowest index, hence to honest rows first.
    ``f`` is the number of Byzantine vectors the robust rules *declare*; it defaults to
    ``byzantine`` (declared = real).

One step t (MoNNA, Farhadkhani et al., ICML 2023, arXiv:2209.10931), for every honest node i at once::

    g_i   = ∇ℓ(θ_i; batch_i(t))                      (batches drawn with replacement from node i's data)
    m_i   = β m_i + (1 − β) g_i                       (EMA momentum, dampening = β; m_{-1} = 0)
    x_i   = θ_i − γ_t m_i                             (half-step)
    B     = attack(x_H, f)                            ((byzantine, d), sent by nodes h..n−1)
    θ_i   = MIX_i([x_H; B])                           (the algorithm's mixing over what i received)

Algorithms (the MoNNA paper's experiments and LPD-EPFL/robust-collaborative-learning; β is the
default ``momentum``):

=========  ==============================================  =====
name       mixing                                          β
=========  ==============================================  =====
dsgd       gossip with Metropolis–Hastings weights W        0.99
monna      NNA, pivot = own half-step                      0.99
nna        NNA (ablation: no momentum)                     0
mocwtm     coordinate-wise trimmed mean (f per side)       0.99
bridge     coordinate-wise trimmed mean                    0
mogm       geometric median, smoothed Weiszfeld            0.99
gm         geometric median                                0
scc        self-centered clipping (τ, 3 iterations)        0.9
=========  ==============================================  =====

Receive sets (``convention``):

``"all"`` (the paper's synchronous all-to-all): node i receives its own vector and those of
    its neighbours in ``topology`` (every node on the default complete graph), Byzantine
    vectors included; NNA averages |R_i| − f of them.  On the complete graph every honest node
    receives the same set, so the coordinate-wise and geometric-median rules are computed once
    with :mod:`refopt.aggregators` and shared.
``"code"`` (the MoNNA repository): |R_i| = n − f: its own vector, a uniformly random subset of
    n − f − 1 − byzantine other honest vectors (redrawn every step, independently per node; this
    is n − 2f − 1 when byzantine = f, as in the repo) and all the Byzantine vectors (they always
    arrive first); NNA averages n − 2f.  Needs the complete graph.

With f = 0 both conventions give every node all n vectors, NNA keeps all of them and MoNNA *is*
D-SGD with exact averaging (W = 11ᵀ/n) and the same momentum -- the relation the tests check.

Relation to heavy-ball momentum: with m^HB_t = β m^HB_{t−1} + g_t (torch's SGD, no dampening),
the EMA buffer is m_t = (1 − β) m^HB_t, so this simulator with (γ, β) equals heavy-ball D-SGD
with learning rate γ(1 − β).

Divergence (the rule every refopt simulator follows for non-finite numbers): where a run can
diverge, the first non-finite or exploding value is detected, the run stops cleanly before the
step that produced it, and the result says which step and which quantity
(``diverged_at``, ``diverged_quantity``); ``to_dict`` writes non-finite numbers as the strings
"nan", "inf" and "-inf" (as refopt's golden vectors do), so that its JSON stays valid. Here the
quantities checked, in this order within a step, are the honest ``training loss`` (not finite,
or above ``L_0 + blowup·(1 + |L_0|)`` with ``L_0`` the first step's, the criterion of
:func:`refopt.run`), the ``honest half-step models`` (not finite: checked before the mixing,
which would otherwise hide a NaN model behind the robust rules' treatment of non-finite rows),
the ``models after mixing`` (their spread not finite) and the ``drift``; at every evaluation
the ``test loss`` (not finite, or above the same bound from its value at the start). Byzantine
vectors may be non-finite (an attack); they are not divergence of the honest models.

Metrics, all over honest nodes only: ``loss`` (mean mini-batch loss at θ_t, every step),
``spread`` (V_H = (1/h) Σ ‖θ_i − θ̄_H‖² after mixing, every step), ``drift`` (‖θ̄_H − x̄_H‖²: how
far the mixing moved the honest mean away from the honest half-step mean, every step), and
at every evaluation the test ``accuracy`` (mean over honest nodes, also ``accuracy_min`` and
``accuracy_node0`` -- the MoNNA repo reports node 0) and ``test_loss``.
"""

from __future__ import annotations

import inspect
import math
import numbers
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .. import _array, mpi as _mpi
from ..rules._base import suggest
from . import mixing
from .topology import Topology, complete

__all__ = ["simulate", "SimulationResult", "ALGORITHMS", "DEFAULT_MOMENTUM", "CONVENTIONS", "monna_lr"]

#: algorithm -> (mixing kind, default momentum β) (the MoNNA paper's experiments, arXiv:2209.10931)
ALGORITHMS: dict[str, tuple[str, float]] = {
    "dsgd": ("gossip", 0.99),
    "monna": ("nna", 0.99),
    "nna": ("nna", 0.0),
    "mocwtm": ("trimmed_mean", 0.99),
    "bridge": ("trimmed_mean", 0.0),
    "mogm": ("geometric_median", 0.99),
    "gm": ("geometric_median", 0.0),
    "scc": ("clipping", 0.9),
}
DEFAULT_MOMENTUM = {name: beta for name, (_, beta) in ALGORITHMS.items()}
CONVENTIONS = ("all", "code")
_NEEDS_2F = {"nna", "trimmed_mean"}  # mixings that need |R_i| > 2f


def monna_lr(t: int, base: float = 0.75, every: int = 50) -> float:
    """MoNNA's MNIST schedule γ_t = base / (1 + ⌊t/every⌋) (0.75, 0.375, 0.25, ... every 50 steps)."""
    return base / (1 + t // every)


@dataclass
class SimulationResult:
    """Curves and final state of one simulation (host NumPy arrays, float64).

    ``loss``, ``spread``, ``drift``: one value per completed step (index t = step t+1 done);
    ``eval_steps``: the steps after which the test metrics were taken (0 = the start);
    ``accuracy``, ``accuracy_min``, ``accuracy_node0``, ``test_loss``: one value per evaluation;
    ``theta``: the final honest models (h, d) (after divergence: those of the last
    evaluation); ``diverged_at``: the first step whose values were not finite or exploded
    (the curves stop before it), or None; ``diverged_quantity``: which value (module doc).
    """

    algorithm: str
    config: dict
    loss: np.ndarray
    spread: np.ndarray
    drift: np.ndarray
    eval_steps: np.ndarray
    accuracy: np.ndarray
    accuracy_min: np.ndarray
    accuracy_node0: np.ndarray
    test_loss: np.ndarray
    theta: np.ndarray
    diverged_at: int | None
    seconds: float
    steps_done: int
    diverged_quantity: str | None = None

    @property
    def steps_per_second(self) -> float:
        return self.steps_done / self.seconds if self.seconds > 0 else math.inf

    @property
    def final_accuracy(self) -> float:
        return float(self.accuracy[-1]) if self.accuracy.size else math.nan

    @property
    def final_loss(self) -> float:
        return float(self.test_loss[-1]) if self.test_loss.size else math.nan

    def to_dict(self) -> dict:
        """JSON-ready summary (lists of floats; non-finite values as strings)."""

        def clean(a):
            return [_number(v) for v in np.asarray(a, dtype=np.float64).ravel()]

        return {
            "algorithm": self.algorithm,
            "config": {k: (_number(v) if isinstance(v, float) else v) for k, v in self.config.items()},
            "final_accuracy": _number(self.final_accuracy),
            "final_test_loss": _number(self.final_loss),
            "final_spread": _number(self.spread[-1]) if self.spread.size else None,
            "final_drift": _number(self.drift[-1]) if self.drift.size else None,
            "diverged_at": self.diverged_at,
            "diverged_quantity": self.diverged_quantity,
            "steps_per_second": _number(self.steps_per_second),
            "eval_steps": [int(s) for s in self.eval_steps],
            "accuracy": clean(self.accuracy),
            "accuracy_min": clean(self.accuracy_min),
            "test_loss": clean(self.test_loss),
            "loss": clean(self.loss),
            "spread": clean(self.spread),
            "drift": clean(self.drift),
        }

    def report(self) -> str:
        c = self.config
        head = (
            f"{self.algorithm} ({c['convention']}) n={c['nodes']} byzantine={c['byzantine']} f={c['f']} "
            f"attack={c['attack']} β={c['momentum']} steps={self.steps_done}"
        )
        tail = (f"; diverged at step {self.diverged_at} ({self.diverged_quantity} not finite or exploding; "
                f"the results are those before it)" if self.diverged_at is not None else "")
        return (
            f"{head}: honest accuracy {self.final_accuracy:.4f} "
            f"(min {float(self.accuracy_min[-1]) if self.accuracy_min.size else math.nan:.4f}), "
            f"test loss {self.final_loss:.4g}, spread {float(self.spread[-1]) if self.spread.size else math.nan:.3g}, "
            f"{self.steps_per_second:.1f} steps/s{tail}"
        )


def _number(v):
    """A float for JSON: finite as is, non-finite as the string "nan", "inf" or "-inf"."""
    v = float(v)
    return v if math.isfinite(v) else str(v)


def _too_big(value: float, start: float, blowup: float | None) -> bool:
    """True when ``value`` is not finite or (``blowup`` given) above ``start + blowup·(1 + |start|)``."""
    if not math.isfinite(value):
        return True
    return blowup is not None and math.isfinite(start) and value > start + blowup * (1.0 + abs(start))


# ---------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------


def _int(value, name, low, high=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"simulate: {name} must be an integer >= {low}; got {value!r}")
    if value < low or (high is not None and value > high):
        rng = f">= {low}" + (f" and <= {high}" if high is not None else "")
        raise ValueError(f"simulate: {name} must be an integer {rng}; got {value!r}")
    return int(value)


def _real(value, name, low, high, high_open=True, low_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"simulate: {name} must be a real number; got {value!r}")
    x = float(value)
    ok = (x > low if low_open else x >= low) and (x < high if high_open else x <= high)
    if not ok or not math.isfinite(x):
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"simulate: {name} must be in {lo}{low}, {high}{hi}; got {value!r}")
    return x


def _resolve_namespace(xp):
    if xp is None:
        import array_api_compat.numpy as npx

        return npx
    if isinstance(xp, str):
        names = {"numpy": "array_api_compat.numpy", "torch": "array_api_compat.torch", "array_api_strict": "array_api_strict", "strict": "array_api_strict", "cupy": "array_api_compat.cupy"}
        if xp not in names:
            raise ValueError(f"simulate: {suggest(xp, list(names), 'backend')}")
        import importlib

        return importlib.import_module(names[xp])
    return xp


def _attack_spec(attack, attack_params, byzantine):
    """(name, callable or None, kind) where kind is 'model', 'label_flipping' or None."""
    if attack is None or (isinstance(attack, str) and attack == "none"):
        if byzantine > 0:
            raise ValueError(
                f"simulate: byzantine={byzantine} Byzantine nodes need an attack (what they send); got attack={attack!r}. "
                "Use byzantine=0 for an attack-free run (the robust rules still declare f, see the f argument)"
            )
        return "none", None, None
    if byzantine == 0:
        raise ValueError(f"simulate: attack={attack!r} needs byzantine >= 1 Byzantine nodes; got byzantine=0")
    if callable(attack):
        return getattr(attack, "__name__", "attack"), attack, "model"
    if not isinstance(attack, str):
        raise TypeError(f"simulate: attack must be a name, a callable (honest, f, **params) -> (f, d) or None; got {type(attack).__name__}")
    if attack == "label_flipping":
        return attack, None, "label_flipping"
    from .. import attacks as _attacks  # helper module; imported on use

    # the registry's (honest, f) attacks, and the stateful mimic with its warm-up heuristic
    # (its (vectors, state) return is carried from step to step by _attack_caller)
    known = list(_attacks.names()) + ["mimic_heuristic"]
    if attack not in known:
        raise ValueError(f"simulate: {suggest(attack, known + ['none', 'label_flipping'], 'attack')}")
    fn = _attacks.mimic_heuristic if attack == "mimic_heuristic" else _attacks._REGISTRY[attack]
    return attack, fn, "model"


def _attack_caller(name, fn, params, rng, defender):
    """Adapt an attack callable to ``call(honest) -> (f, d)``, feeding it what its signature asks for.

    * ``aggregator``: the defender's own aggregator (``defender``, a callable (n, d) -> (d,)
      whose output is the honest nodes' mean mixing result), unless ``params`` sets it; an
      explicit ``aggregator=None`` is refused;
    * ``rng`` (a numpy Generator) or ``seed`` (an int drawn from it): the simulation's randomness;
    * ``state``: carried from call to call when the attack returns ``(vectors, state)``.
    """
    try:
        sig = inspect.signature(fn)
        accepted = set(sig.parameters)
    except (TypeError, ValueError):
        accepted = set()
    params = dict(params)
    if "aggregator" in accepted:
        if "aggregator" in params and params["aggregator"] is None:
            raise ValueError(
                f"simulate: attack {name!r} optimizes against the defender's aggregator and needs one; got aggregator=None "
                "(leave it out to attack the simulated algorithm's own mixing)"
            )
        params.setdefault("aggregator", defender)
    unknown = sorted(set(params) - accepted) if accepted and not any(
        v.kind == v.VAR_KEYWORD for v in inspect.signature(fn).parameters.values()
    ) else []
    if unknown:
        raise ValueError(f"simulate: attack {name!r} takes no parameter {unknown[0]!r} (it takes {', '.join(sorted(accepted))})")
    holder = {"state": params.pop("state", None)}

    def call(honest, f):
        kw = dict(params)
        if "rng" in accepted and "rng" not in kw:
            kw["rng"] = rng
        elif "seed" in accepted and "seed" not in kw:
            kw["seed"] = int(rng.integers(2**31))
        if "state" in accepted:
            kw["state"] = holder["state"]
        out = fn(honest, f, **kw)
        if isinstance(out, tuple):
            out, holder["state"] = out
        return out

    return call


# ---------------------------------------------------------------------------------------
# the simulator
# ---------------------------------------------------------------------------------------


def simulate(
    algorithm: str,
    problem: Any,
    data: Any,
    *,
    nodes: int,
    byzantine: int = 0,
    attack: Any = None,
    steps: int = 100,
    lr: float | Callable[[int], float] = 0.1,
    momentum: float | None = None,
    batch_size: int = 25,
    seed: int = 0,
    f: int | None = None,
    convention: str = "all",
    topology: Topology | None = None,
    alpha: float | None = None,
    split: Any = None,
    attack_params: Mapping[str, Any] | None = None,
    tau: float = 2.0,
    clip_iterations: int = 3,
    nu: float = 0.1,
    gm_iterations: int = 3,
    eval_every: int | None = None,
    eval_size: int | None = 1000,
    xp: Any = None,
    dtype: str = "float64",
    device: Any = None,
    progress: Callable[[int, int], None] | None = None,
    comm: Any = None,
    blowup: float | None = 1e8,
) -> SimulationResult:
    """Run ``steps`` steps of ``algorithm`` on ``nodes`` nodes (see the module doc for the math).

    ``problem``: an object with ``dim``, ``num_classes``, ``init(seed) -> (dim,)``,
    ``loss_grad(theta (h, dim), X (h, b, features), y (h, b)) -> ((h,), (h, dim))`` and
    ``accuracy(theta, X, y) -> (h,)`` (refopt.problems).  ``data``: ``(X_train, y_train, X_test,
    y_test)`` host arrays.  Node data: ``split`` (h index arrays into the training set), else
    ``alpha`` (Dirichlet heterogeneity, ``refopt.problems.dirichlet_split`` over the h honest
    nodes with the simulation seed), else i.i.d. (every honest node samples the whole set).
    ``lr``: a number or a schedule ``t -> γ_t`` (:func:`monna_lr`).  ``momentum``: β, default
    the algorithm's (table in the module doc).  ``attack``: ``None``/``"none"``, a name of
    :mod:`refopt.attacks` (``"foe"`` = ``"ipm"``, the fixed −ε·μ of Xie et al.; the line-searched
    FOE of the MoNNA experiments is ``"optimal_monna"`` with ``attack_params={"attack": "foe"}``),
    ``"mimic_heuristic"`` (stateful, seeded from the run's stream), ``"label_flipping"`` (the MoNNA repo's
    model-level version: Byzantine vector = honest half-step mean − γ_t · mean gradient on
    flipped labels y → K−1−y), or a callable ``(honest, f, **params) -> (f, d)``;
    ``attack_params`` are passed on.  ``xp``: an array namespace or its name (default NumPy);
    ``dtype``: "float64" or "float32".  ``blowup``: a loss above ``L_0 + blowup·(1 + |L_0|)``
    counts as divergence (None: only non-finite values do; module doc, "Divergence").

    ``comm``: None (one process) or an MPI communicator (:mod:`refopt.mpi`; an mpi4py
    communicator is wrapped). Under MPI the h honest nodes are split into contiguous blocks
    (sizes differing by at most one; more ranks than honest nodes is an error); every rank
    makes the full-size random draws, computes the gradients, momentum and half-steps of its
    own block, and one ``Allgatherv`` per step gives every rank all half-steps (and the
    per-node losses); the attack, the mixing and the metrics are then computed on every rank
    exactly as in the serial run. The result is the same, bit for bit, on every rank and for
    every number of ranks (NumPy backend).
    """
    comm = _mpi.resolve(comm, "simulate")
    # every rank checks the same arguments; one collective at the end makes all ranks agree on any error
    with comm.agreed("checking the arguments and setting up"):
        # ---- validation, all before any work ------------------------------------------------
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            raise ValueError(f"simulate: {suggest(str(algorithm), list(ALGORITHMS), 'algorithm')}")
        kind, default_beta = ALGORITHMS[algorithm]
        n = _int(nodes, "nodes", 1)
        nb = _int(byzantine, "byzantine", 0, n - 1)
        _mpi.check_memory(9.0 * n * n, f"nodes={n:,} (the communication graph)", "simulate")
        h = n - nb
        # MPI: rank r owns the honest nodes offsets[r] .. offsets[r+1]-1 (serial: all of them)
        offsets = _mpi.partition(h, comm.size, what=f"honest nodes (nodes={n}, byzantine={nb})", where="simulate")
        rank_rows = [offsets[r + 1] - offsets[r] for r in range(comm.size)]
        lo, hi = offsets[comm.rank], offsets[comm.rank + 1]
        hl = hi - lo
        whole = hl == h  # this process owns every honest node (serial, or one rank)
        f = nb if f is None else _int(f, "f", 0)
        steps = _int(steps, "steps", 0)
        batch_size = _int(batch_size, "batch_size", 1)
        seed = _int(seed, "seed", 0)
        beta = default_beta if momentum is None else _real(momentum, "momentum", 0.0, 1.0)
        if not callable(lr):
            base_lr = _real(lr, "lr", 0.0, math.inf, low_open=True)
        if convention not in CONVENTIONS:
            raise ValueError(f"simulate: {suggest(str(convention), list(CONVENTIONS), 'convention')}")
        if not isinstance(dtype, str) or dtype not in ("float64", "float32"):
            raise ValueError(f"simulate: dtype must be 'float64' or 'float32'; got {dtype!r}")
        if blowup is not None:
            blowup = _real(blowup, "blowup", 0.0, math.inf, low_open=True)
        tau = _real(tau, "tau", 0.0, math.inf, low_open=True)
        nu = _real(nu, "nu", 0.0, math.inf, low_open=True)
        clip_iterations = _int(clip_iterations, "clip_iterations", 1)
        gm_iterations = _int(gm_iterations, "gm_iterations", 1)
        eval_every = max(1, steps // 20) if eval_every is None else _int(eval_every, "eval_every", 1)
        if topology is None:
            topology = complete(n)
        if not isinstance(topology, Topology):
            raise TypeError(f"simulate: topology must be a refopt.collaborative Topology; got {type(topology).__name__}")
        if topology.n != n:
            raise ValueError(f"simulate: topology {topology.name} has {topology.n} nodes but nodes={n}")
        if not topology.is_connected():
            raise ValueError(f"simulate: topology {topology.name} is not connected; decentralized learning needs a connected graph")
        if convention == "code" and not topology.is_complete:
            raise ValueError(f"simulate: convention='code' (n − f received out of an all-to-all broadcast) needs the complete graph; got {topology.name}")

        # receive sets: counts per honest node (own vector included)
        adj = topology.adjacency
        received_all = np.array(adj[:h], copy=True)
        received_all[np.arange(h), np.arange(h)] = True
        counts = received_all.sum(axis=1) if convention == "all" else np.full(h, n - f)
        if kind in _NEEDS_2F:
            rule = {"nna": "NNA", "trimmed_mean": "coordinate-wise trimmed mean"}[kind]
            bad = np.nonzero(counts <= 2 * f)[0]
            if convention == "code" and n - f <= 2 * f:
                raise ValueError(
                    f"simulate: {algorithm} ({rule}, convention='code') needs n − f > 2f received vectors, i.e. n > 3f; got n={n}, f={f}"
                )
            if bad.size:
                i = int(bad[0])
                raise ValueError(
                    f"simulate: {algorithm} ({rule}) needs more than 2f received vectors at every honest node (n > 2f); "
                    f"got n={int(counts[i])} received at node {i} with f={f}"
                )
        others = n - f - 1 - nb  # "code": random other honest vectors received besides the nb Byzantine ones
        if convention == "code" and others < 0:
            raise ValueError(
                f"simulate: convention='code' (n − f received: own + n − f − 1 − byzantine honest others + the byzantine ones) "
                f"needs n − f − 1 >= byzantine; got n={n}, f={f}, byzantine={nb}"
            )
        for attr in ("dim", "num_classes", "init", "loss_grad", "accuracy"):
            if not hasattr(problem, attr):
                raise TypeError(f"simulate: problem must have {attr!r} (a refopt.problems Problem); got {type(problem).__name__}")
        if not isinstance(data, (tuple, list)) or len(data) != 4:
            raise TypeError("simulate: data must be the tuple (X_train, y_train, X_test, y_test)")
        X_train, y_train, X_test, y_test = (np.asarray(a) for a in data)
        if X_train.ndim != 2 or y_train.shape != (X_train.shape[0],) or X_test.ndim != 2 or y_test.shape != (X_test.shape[0],):
            raise ValueError(
                f"simulate: data must be X_train (N, features), y_train (N,), X_test (M, features), y_test (M,); got shapes "
                f"{X_train.shape}, {y_train.shape}, {X_test.shape}, {y_test.shape}"
            )
        K = int(problem.num_classes)
        if split is not None:
            if len(split) != h:
                raise ValueError(f"simulate: split must hold one index array per honest node ({h}); got {len(split)}")
            parts = [np.asarray(s, dtype=np.int64) for s in split]
        elif alpha is not None:
            alpha = _real(alpha, "alpha", 0.0, math.inf, low_open=True)
            from ..problems import dirichlet_split  # helper module; imported on use

            parts = [np.asarray(s, dtype=np.int64) for s in dirichlet_split(y_train, h, alpha, seed)]
        else:
            parts = [np.arange(X_train.shape[0], dtype=np.int64)] * h
        for i, p in enumerate(parts):
            if p.size == 0:
                raise ValueError(f"simulate: honest node {i} has no training data in the split")
            if p.min() < 0 or p.max() >= X_train.shape[0]:
                raise ValueError(f"simulate: split[{i}] indexes outside the training set of {X_train.shape[0]} rows")
        name_attack, attack_fn, attack_kind = _attack_spec(attack, attack_params or {}, nb)
        # an allocation that cannot succeed is refused now, not after the set-up (a coarse upper estimate:
        # the batch indices, the batch and a few activations of its width, the models and their copies,
        # the receive masks and distances, the test set on this rank's nodes)
        isz = 8 if dtype == "float64" else 4
        F_, d_ = X_train.shape[1], int(problem.dim)
        E_ = X_test.shape[0] if eval_size is None else min(eval_size, X_test.shape[0])
        width = F_ + 6 * max(F_, K)
        needed = (24.0 * h * batch_size + isz * (float(hl) * batch_size * width + float(hl) * E_ * (F_ + 3 * K)
                  + 12.0 * n * d_ + 4.0 * h * n) + X_train.nbytes
                  + 500.0 * steps)  # the per-step curves (four 0-d arrays a step until the end)
        _mpi.check_memory(needed, f"nodes={n}, steps={steps:,}, batch_size={batch_size}, model dim={d_}, {F_} features",
                          "simulate")
        if callable(lr):
            schedule = []
            for t in range(steps):  # every value the run will use, checked before any work
                try:
                    v = lr(t)
                except Exception as exc:
                    raise ValueError(f"simulate: the learning-rate schedule lr failed at step {t}: {exc!r}") from exc
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)) or float(v) <= 0:
                    raise ValueError(
                        f"simulate: the learning-rate schedule lr returned {v!r} at step {t}; "
                        "every value must be a finite real number > 0"
                    )
                schedule.append(float(v))
            lr_at = schedule.__getitem__
        else:
            lr_at = lambda t: base_lr  # noqa: E731

        # ---- set-up -------------------------------------------------------------------------
        xp = _resolve_namespace(xp)
        dev = device
        fdt = getattr(xp, dtype)
        rng = np.random.default_rng(seed)

        def put(a, dt=None):
            a = np.array(a, copy=True)  # writeable and contiguous (torch refuses read-only buffers)
            return xp.asarray(a, dtype=dt, device=dev) if dev is not None else xp.asarray(a, dtype=dt)

        Xtr = put(X_train.astype(np.float64), fdt)
        ytr = put(y_train.astype(np.int64), xp.int64)
        if eval_size is not None and eval_size < X_test.shape[0]:
            keep = np.sort(np.random.default_rng(seed + 1).choice(X_test.shape[0], eval_size, replace=False))
            X_test, y_test = X_test[keep], y_test[keep]
        E = X_test.shape[0]
        Xte = put(np.broadcast_to(X_test.astype(np.float64), (hl, E, X_test.shape[1])), fdt)  # own nodes only
        yte = put(np.broadcast_to(y_test.astype(np.int64), (hl, E)), xp.int64)
        lengths = np.array([p.size for p in parts], dtype=np.int64)
        pool = np.zeros((h, int(lengths.max())), dtype=np.int64)
        for i, p in enumerate(parts):  # host set-up, once
            pool[i, : p.size] = p
        rows = np.arange(h)[:, None]

        theta0 = np.asarray(problem.init(seed), dtype=np.float64)
        if theta0.shape != (int(problem.dim),):
            raise ValueError(f"simulate: problem.init returned shape {theta0.shape}, expected ({int(problem.dim)},)")
        theta = put(np.broadcast_to(theta0, (h, theta0.size)), fdt)  # all honest models, on every rank
        m = xp.zeros_like(theta) if whole else xp.zeros((hl, theta0.size), dtype=fdt, device=_array.device(theta))

        def own(a):
            """The rows of the honest nodes this process computes (all of them when serial)."""
            return a if whole else a[lo:hi, ...]
        W_h = put(topology.metropolis_hastings_weights()[:h], fdt) if kind == "gossip" else None
        shared = convention == "all" and topology.is_complete
        mask_all = put(received_all) if convention == "all" else None
        F = X_train.shape[1]

        draw_subsets = convention == "code" and others < h - 1

        def receive_mask():
            if convention == "all":
                return mask_all
            if not draw_subsets:  # every other honest vector is received (f = 0): nothing to draw
                return put(np.ones((h, n), dtype=bool))
            # own vector + a uniformly random subset of n − f − 1 − byzantine other honest + all Byzantine
            u = rng.random((h, h))
            u[np.arange(h), np.arange(h)] = np.inf
            picked = np.argsort(u, axis=1, kind="stable")[:, :others]
            mk = np.zeros((h, n), dtype=bool)
            mk[np.arange(h), np.arange(h)] = True
            mk[rows, picked] = True
            mk[:, h:] = True
            return put(mk)

        def mix(S, mask):
            if kind == "gossip":
                return mixing.gossip(W_h, S)
            if kind == "nna":
                return mixing.nna(S, mask, f)
            if shared and kind in ("trimmed_mean", "geometric_median"):
                from .. import aggregators  # helper module; imported on use

                if kind == "trimmed_mean":
                    v = aggregators.trimmed_mean(S, f)
                else:
                    v = aggregators.geometric_median(S, nu=nu, iterations=gm_iterations, start=xp.zeros_like(S[0, :]))
                return xp.broadcast_to(v[None, :], (h, S.shape[1]))
            if kind == "trimmed_mean":
                return mixing.trimmed_mean(S, mask, f)
            if kind == "geometric_median":
                return mixing.geometric_median(S, mask, nu=nu, iterations=gm_iterations)
            return mixing.self_centered_clipping(S, mask, tau=tau, iterations=clip_iterations)

        current_mask = {"mask": mask_all}

        def defender(X):
            """The defender's aggregator as an attack sees it: the honest nodes' mean mixing output."""
            return xp.mean(mix(X, current_mask["mask"]), axis=0)

        attack_call = None
        if attack_kind == "model":
            attack_call = _attack_caller(name_attack, attack_fn, attack_params or {}, rng, defender)

        def flip(y):
            try:
                from .. import attacks as _attacks

                return _attacks.label_flipping(y, num_classes=K)
            except (ImportError, AttributeError):
                return (K - 1) - y

        config = {
            "algorithm": algorithm, "nodes": n, "byzantine": nb, "f": f, "attack": name_attack, "steps": steps,
            "lr": (lr if not callable(lr) else getattr(lr, "__name__", "schedule")), "momentum": beta,
            "batch_size": batch_size, "seed": seed, "convention": convention, "topology": topology.name,
            "alpha": alpha, "dtype": dtype,
        }

        losses, spreads, drifts = [], [], []
        ev_steps, acc, acc_min, acc0, tloss = [], [], [], [], []

        def evaluate(t):
            th = own(theta)
            a = _array.to_numpy(problem.accuracy(th, Xte, yte)).astype(np.float64)
            te, _ = problem.loss_grad(th, Xte, yte)
            te = _array.to_numpy(te).astype(np.float64)
            a, te = comm.allgather_rows([a, te], rank_rows)  # every honest node's, in node order
            ev_steps.append(t)
            acc.append(float(a.mean()))
            acc_min.append(float(a.min()))
            acc0.append(float(a[0]))
            tloss.append(float(te.mean()))

    diverged_at = None
    diverged_quantity = None
    peaks = []  # max |honest half-step coordinate| per step
    start_loss = [None]  # the first step's training loss, host float
    done = 0
    last_good = theta
    start = time.perf_counter()
    # NumPy backend: a diverging run is detected and reported, not warned about.
    # MPI: an exception on one rank from here on aborts every rank (the others wait in a collective).
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"), comm.guard("collaborative simulate"):
        evaluate(0)
        for t in range(steps):
            # ---- one step: a fixed number of array operations, whatever the number of nodes ----
            # every rank draws all h nodes' batches (the same stream) and keeps its own rows
            draws = pool[rows, rng.integers(0, lengths[:, None], size=(h, batch_size))]
            idx = put((draws if whole else draws[lo:hi]).reshape(-1))
            Xb = xp.reshape(xp.take(Xtr, idx, axis=0), (hl, batch_size, F))
            yb = xp.reshape(xp.take(ytr, idx, axis=0), (hl, batch_size))
            theta_own = own(theta)
            loss, g = problem.loss_grad(theta_own, Xb, yb)
            m = g if beta == 0.0 else beta * m + (1.0 - beta) * g
            gamma = float(lr_at(t))
            half = theta_own - gamma * m
            # the exchange: every rank receives every honest half-step (and loss) in node order
            if attack_kind == "label_flipping":
                _, g_flip = problem.loss_grad(theta_own, Xb, flip(yb))
                half, loss, g_flip = comm.allgather_rows([half, loss, g_flip], rank_rows)
            else:
                half, loss = comm.allgather_rows([half, loss], rank_rows)
            mask = receive_mask()
            current_mask["mask"] = mask
            if attack_kind == "model":
                B = xp.asarray(attack_call(half, nb), dtype=fdt)
                S = xp.concat([half, B], axis=0)
            elif attack_kind == "label_flipping":
                b = xp.mean(half, axis=0) - gamma * xp.mean(g_flip, axis=0)
                S = xp.concat([half, xp.broadcast_to(b[None, :], (nb, b.shape[0]))], axis=0)
            else:
                S = half
            theta = mix(S, mask)  # every honest node's new model, on every rank
            mean_theta = xp.mean(theta, axis=0)
            losses.append(xp.mean(loss))
            peaks.append(xp.max(xp.abs(half)))
            spreads.append(xp.mean(xp.sum((theta - mean_theta) ** 2, axis=1)))
            drifts.append(xp.sum((mean_theta - xp.mean(half, axis=0)) ** 2))
            done = t + 1
            if progress is not None:
                progress(done, steps)
            if done % eval_every == 0 or done == steps:
                # the steps since the last check, one host transfer: the first bad value, in step order
                first = len(losses) - min(eval_every, len(losses))
                chunk = _array.to_numpy(xp.stack([
                    xp.stack(losses[first:]), xp.stack(peaks[first:]), xp.stack(spreads[first:]), xp.stack(drifts[first:]),
                ])).astype(np.float64)
                if start_loss[0] is None:
                    start_loss[0] = float(chunk[0, 0])
                bad = None
                for j in range(chunk.shape[1]):
                    if _too_big(float(chunk[0, j]), start_loss[0], blowup):
                        bad = (j, "training loss")
                    elif not math.isfinite(float(chunk[1, j])):
                        bad = (j, "honest half-step models")
                    elif not math.isfinite(float(chunk[2, j])):
                        bad = (j, "models after mixing")
                    elif not math.isfinite(float(chunk[3, j])):
                        bad = (j, "drift")
                    if bad is not None:
                        break
                if bad is not None:
                    at = first + bad[0]
                    diverged_at, diverged_quantity = at + 1, bad[1]
                    del losses[at:], spreads[at:], drifts[at:], peaks[at:]
                    done = at
                    break
                evaluate(done)
                if _too_big(tloss[-1], tloss[0], blowup):
                    diverged_at, diverged_quantity = done, "test loss"
                    for curve in (ev_steps, acc, acc_min, acc0, tloss):
                        curve.pop()
                    done -= 1
                    del losses[done:], spreads[done:], drifts[done:], peaks[done:]
                    break
                last_good = theta
        seconds = time.perf_counter() - start

    def host(vals):
        return _array.to_numpy(xp.stack(vals)).astype(np.float64) if vals else np.zeros(0)

    return SimulationResult(
        algorithm=algorithm,
        config=config,
        loss=host(losses),
        spread=host(spreads),
        drift=host(drifts),
        eval_steps=np.asarray(ev_steps, dtype=np.int64),
        accuracy=np.asarray(acc),
        accuracy_min=np.asarray(acc_min),
        accuracy_node0=np.asarray(acc0),
        test_loss=np.asarray(tloss),
        theta=_array.to_numpy(last_good).astype(np.float64),
        diverged_at=diverged_at,
        seconds=seconds,
        steps_done=done,
        diverged_quantity=diverged_quantity,
    )
