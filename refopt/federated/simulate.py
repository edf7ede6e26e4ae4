r"""Simulate federated training on the exact clock: FedAvg, FedAsync, FedBuff, FedFix.

The model arithmetic is array-API; the bookkeeping is Host-side NumPy (see "Host-side parts" below).

Reference: Fraboni, Vidal, Kameni & Lorenzi, "A General Theory for Federated Optimization with
Asynchronous and Heterogeneous Clients Updates", JMLR 24 (2023), arXiv:2206.10189 (the rule, the
clock, the weights and the predictions), and the authors' code
``Accenture/Labs-Federated-Learning`` (branch ``asynchronous_FL``).

How a run works
---------------
1. :func:`refopt.federated.clock.schedule` lists every server step up to the horizon: its
   simulated time, the clients ``S_n`` it aggregates and, for each, the step ``ρ`` whose global
   model that client started from. The schedule depends only on the client times, never on the
   models, so it is computed once, up front.
2. The simulator replays it. At step ``n`` the clients of ``S_n`` run their ``K`` local SGD steps
   *now*, all in one batch: their start models ``θ^{ρ_k}`` are stacked into an ``(m, d)`` array
   and every local step is one call of ``problem.loss_grad`` on it. (Computing a task at its
   aggregation instead of at its start gives the same numbers: a task only reads its start
   model and its own data, and every client draws its mini-batches from its own random stream
   in the order of its tasks.)
3. The server applies the scheme's rule (:mod:`refopt.federated.rules`) with the weights
   ``ω_k`` and stores ``θ^n``. Only the global versions that a later step still starts from
   are kept, so memory is ``O(τ_max · d)``, not ``O(N · d)``.

Local work: ``K`` steps of SGD from the start model, heavy-ball momentum ``μ`` as in
``torch.optim.SGD`` (``b ← μ b + g``, first ``b = g``; ``θ ← θ − η_l b``), the buffer reset at
every task (the authors re-create the optimizer). Mini-batches of ``batch_size`` examples are
drawn without replacement from the client's data (a fresh batch per step); ``batch_size=None``
uses the client's whole data (full-batch GD; the quadratic clients have no data and always are
full-batch). ``Δ = local − start``.

Server rules (``scheme``, ``weights``; multipliers ``d_i`` from
:func:`refopt.federated.rules.client_multipliers`):

``fedavg``   ``ω = d`` of the sampled clients (``sampling="full"``: all; ``"md"``/``"uniform"``
             with ``sample`` clients per round, ``d`` playing the role of ``p``); every
             client waits for the slowest (rounds of ``max τ``); unsampled clients do no work.
``fedasync`` ``alpha=None`` (default): Fraboni's asynchronous FedAvg, ``ω_i = d_i``.
             ``alpha`` given: Xie et al.'s FedAsync with ``α_t = α s(τ)``: ``form="mixing"``
             ``θ ← (1 − α_t) θ + α_t x_new`` (needs identical weights and ``lr_server = 1``) or
             ``form="delta"`` ``ω_i = α_t d_i``.
``fedfix``   window ``delta_t``; ``ω_i = d_i``; empty windows are server steps that change nothing.
``fedbuff``  buffer ``c``; ``ω_k = d_k s(τ_k) ν`` (``normalise``), the authors' variant (buffered
             clients wait for the buffer to fill) or ``variant="nguyen"``; the unbiased
             multipliers ``p_i / f̂_i`` use the participation measured on the whole schedule (the
             authors' look-ahead).

Server learning rate ``lr_server`` (η_g) and momentum ``server_momentum`` apply to every
scheme except the FedAsync mixing form.

Problems: ``"quadratic"`` (:func:`refopt.problems.quadratic_clients` with ``θ_i* = i``, the
instance of ``refopt reproduce fedfix``) or any :class:`~refopt.problems.QuadraticClients`; ``"softmax"``
(softmax regression on ``load_dataset("digits")``, split over the clients with
``dirichlet_split(..., method="fraboni")`` and concentration ``split_alpha``) or any classifier
of :mod:`refopt.problems` together with ``data=(X_train, y_train, X_test, y_test)``.

Recorded (host NumPy, float64): at every evaluation (step 0 and every ``eval_every`` steps and
the last) the server step, simulated time, the federated loss ``Σ_i p_i L_i(θ^n)`` (training
data for classifiers), test accuracy (classifiers) and, for small models, the parameters;
per client the participation frequency ``f̂_i``, the mean and maximum delay and the realised
expected weight ``q̂_i = (1/N) Σ_n ω_i(n)``.

Divergence (the rule every refopt simulator follows for non-finite numbers): where a run can
diverge, the first non-finite or exploding value is detected, the run stops cleanly before the
step that produced it, and the result says which step and which quantity (``diverged_at``,
``diverged_quantity``); ``to_dict`` writes non-finite numbers as the strings "nan", "inf" and
"-inf" (as refopt's golden vectors do), so that its JSON stays valid. Here the quantities are the
``global model`` (checked after every server step: not finite) and the ``federated loss`` (at
every evaluation: not finite, or above ``L_0 + blowup·(1 + |L_0|)`` with ``L_0`` its value at
the start, the criterion of :func:`refopt.run`). ``final_params`` is then the last finite model
and ``server_steps`` the steps done before the diverging one.

Unbounded work: the number of server steps up to the horizon is computed before the schedule
is built (:func:`refopt.federated.clock.count_steps`); above :data:`SCHEDULE_LIMIT` (after the
``max_steps`` cap) the call is refused with the count, instead of filling the memory.

Host-side parts: the schedule, weights, random draws, data split and the result curves are host
objects, so this module imports NumPy and :mod:`fractions`; the arithmetic on models is
array-API code on the chosen backend (``xp``, ``dtype``, ``device``).
"""

from __future__ import annotations

import math
import numbers
import time as _time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from .. import _array, mpi as _mpi
from ..rules._base import suggest
from . import clock, rules

__all__ = ["simulate", "FedResult", "PROBLEMS", "SCHEDULE_LIMIT"]

PROBLEMS = ("quadratic", "softmax")

#: the most server steps a simulation builds a schedule for (each step holds a few hundred bytes of
#: host memory and takes about 0.1 ms to simulate: 10^7 steps are about 4 GB and 20 minutes)
SCHEDULE_LIMIT = 10_000_000


def _number(v):
    """A float for JSON: finite as is, non-finite as the string "nan", "inf" or "-inf"."""
    v = float(v)
    return v if math.isfinite(v) else str(v)


@dataclass
class FedResult:
    """What one simulation produced (host values; see the module docstring).

    Curves (one entry per evaluation): ``steps`` (server step, 0 = start), ``times`` (simulated
    time, float; ``times_exact`` as Fractions), ``loss`` (federated loss of the global model),
    ``accuracy`` (test accuracy, classifiers only, else None), ``params`` (``(evals, d)`` global
    models when ``d`` is small, else None). Per client (length M): ``participation`` (``f̂_i``),
    ``mean_delay`` (NaN if it never took part), ``max_delay`` (-1 if never), ``expected_weights``
    (``q̂_i``), ``multipliers`` (``d_i``). ``final_params``: ``θ^N`` (float64 ``(d,)``);
    ``server_steps`` N; ``simulated_time``: the time of the last server step (0 without one);
    ``horizon``; ``optimum`` (quadratic problems: the federated optimum ``(d,)``);
    ``wall_seconds`` and ``steps_per_second`` of the simulation loop. ``diverged_at``: the
    first server step whose model or loss was not finite or exploded (module docstring), or
    None; ``diverged_quantity``: which.
    """

    scheme: str
    final_params: np.ndarray
    steps: np.ndarray
    times: np.ndarray
    times_exact: list
    loss: np.ndarray
    accuracy: np.ndarray | None
    params: np.ndarray | None
    participation: np.ndarray
    mean_delay: np.ndarray
    max_delay: np.ndarray
    expected_weights: np.ndarray
    multipliers: np.ndarray
    client_times: tuple
    server_steps: int
    simulated_time: float
    horizon: float
    optimum: np.ndarray | None = None
    wall_seconds: float = 0.0
    steps_per_second: float = 0.0
    config: dict = field(default_factory=dict)
    diverged_at: int | None = None
    diverged_quantity: str | None = None

    @property
    def surrogate_weights(self) -> np.ndarray:
        """``q̃ = q̂ / Σ q̂``: the client weights of the surrogate objective actually optimized."""
        s = self.expected_weights.sum()
        return self.expected_weights / s if s > 0 else self.expected_weights.copy()

    def to_dict(self) -> dict:
        """A JSON-ready dict (lists and Python numbers; non-finite numbers as the strings 'nan', 'inf', '-inf')."""

        def fl(a):
            if a is None:
                return None
            a = np.asarray(a, dtype=np.float64)
            return [_number(v) for v in a.reshape(-1)] if a.ndim <= 1 else [fl(r) for r in a]

        fp = self.final_params
        return {
            "scheme": self.scheme,
            "final_params": _number(fp[0]) if fp.size == 1 else fl(fp),
            "optimum": None if self.optimum is None else (_number(self.optimum[0]) if self.optimum.size == 1
                                                            else fl(self.optimum)),
            "server_steps": int(self.server_steps),
            "diverged_at": self.diverged_at,
            "diverged_quantity": self.diverged_quantity,
            "simulated_time": _number(self.simulated_time),
            "horizon": _number(self.horizon),
            "participation": fl(self.participation),
            "mean_delay": fl(self.mean_delay),
            "max_delay": [int(v) for v in self.max_delay],
            "expected_weights": fl(self.expected_weights),
            "surrogate_weights": fl(self.surrogate_weights),
            "multipliers": fl(self.multipliers),
            "client_times": [str(t) for t in self.client_times],
            "curves": {
                "steps": [int(s) for s in self.steps],
                "times": fl(self.times),
                "loss": fl(self.loss),
                "accuracy": fl(self.accuracy),
            },
            "wall_seconds": _number(self.wall_seconds),
            "steps_per_second": _number(self.steps_per_second),
            "config": {k: (_number(v) if isinstance(v, float) else v if isinstance(v, (int, str, bool, type(None)))
                           else str(v)) for k, v in self.config.items()},
        }


# --------------------------------------------------------------------------- helpers
def _namespace(xp):
    if xp is None:
        import array_api_compat.numpy as npx

        return npx
    if isinstance(xp, str):
        import importlib

        names = {"numpy": "array_api_compat.numpy", "torch": "array_api_compat.torch",
                 "array_api_strict": "array_api_strict", "strict": "array_api_strict",
                 "cupy": "array_api_compat.cupy"}
        if xp not in names:
            raise ValueError(f"simulate: {suggest(xp, list(names), 'backend')}")
        return importlib.import_module(names[xp])
    return xp


def _real(name, value, *, low=-math.inf, low_open=False, high=math.inf, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"simulate: {name} must be a real number; got {value!r}")
    x = float(value)
    ok = math.isfinite(x) and (x > low if low_open else x >= low) and (x < high if high_open else x <= high)
    if not ok:
        lo = "" if low == -math.inf else (f" > {low:g}" if low_open else f" >= {low:g}")
        hi = "" if high == math.inf else (f" < {high:g}" if high_open else f" <= {high:g}")
        raise ValueError(f"simulate: {name} must be a finite real number{lo}{hi}; got {value!r}")
    return x


def _int(name, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"simulate: {name} must be an integer; got {value!r}")
    v = int(value)
    if v < low or (high is not None and v > high):
        rng = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"simulate: {name} must be an integer {rng}; got {value!r}")
    return v


def _choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"simulate: {name}: " + suggest(str(value), list(choices), name))
    return value


class _Quadratic:
    """Client oracle for quadratic clients: full-batch gradients of any subset of clients."""

    def __init__(self, problem):
        from ..problems import QuadraticClients

        self.problem = problem
        self.sub: dict = {}
        self.QC = QuadraticClients
        self.p_lifted = None

    def sizes(self):
        return np.ones(self.problem.clients)

    def grads(self, theta, clients, batch):  # theta (m, d)
        key = tuple(clients)
        sub = self.sub.get(key)
        if sub is None:
            P = self.problem
            idx = list(clients)
            curv = None if P.kind == "identity" else (P.curvatures[idx, 0] if P.kind == "scalar" else P.curvatures[idx])
            sub = self.sub[key] = self.QC(P.optima[idx], curv)
        return sub.loss_grad(theta)[1]

    def evaluate(self, theta, p):  # theta (d,): Σ_i p_i L_i(θ), every client at the same point
        if self.p_lifted is None:
            self.p_lifted = _array.lift(np.asarray(p, dtype=np.float64), theta)
        xp = _array.namespace(theta)
        loss = self.problem.loss_grad(theta)[0]                 # (M,)
        return float(_array.to_numpy(xp.sum(self.p_lifted * loss))), None


class _Classifier:
    """Client oracle for a classifier on split data: batched mini-batch gradients."""

    def __init__(self, problem, X, y, Xte, yte, parts, put, batch_size, xp):
        self.problem, self.xp = problem, xp
        self.parts = [np.asarray(pp, dtype=np.int64) for pp in parts]
        self.X, self.y = put(X), put(y, "int")
        self.Xte, self.yte = put(Xte), put(yte, "int")
        self.put = put
        n = [pp.size for pp in self.parts]
        self.batch = batch_size
        self.equal = len(set(n)) == 1
        if self.equal:  # every client at once at evaluation time
            idx = np.stack(self.parts)
            self.Xc, self.yc = put(np.asarray(X)[idx]), put(np.asarray(y)[idx], "int")
        else:
            self.Xc = [put(np.asarray(X)[pp]) for pp in self.parts]
            self.yc = [put(np.asarray(y)[pp], "int") for pp in self.parts]

    def sizes(self):
        return np.array([pp.size for pp in self.parts], dtype=np.float64)

    def draw(self, rng, client, K):
        """(K, b) global example indices of one task of ``client`` (its own random stream)."""
        pool = self.parts[client]
        if self.batch is None:
            return np.broadcast_to(pool, (K, pool.size))
        b = min(self.batch, pool.size)
        return np.stack([pool[rng.choice(pool.size, size=b, replace=False)] for _ in range(K)])

    def grads(self, theta, clients, batch):  # batch: (m, b) indices for this local step
        xp = self.xp
        m, b = batch.shape
        flat = self.put(batch.reshape(-1), "int")
        Xb = xp.reshape(xp.take(self.X, flat, axis=0), (m, b, self.X.shape[-1]))
        yb = xp.reshape(xp.take(self.y, flat, axis=0), (m, b))
        return self.problem.loss_grad(theta, Xb, yb)[1]

    def evaluate(self, theta, p):
        P = self.problem
        if self.equal:
            losses = _array.to_numpy(P.loss(theta[None, :], self.Xc, self.yc))
        else:
            losses = np.array([float(_array.to_numpy(P.loss(theta, X, y))) for X, y in zip(self.Xc, self.yc)])
        acc = float(_array.to_numpy(P.accuracy(theta, self.Xte, self.yte)))
        return float(np.dot(p, losses)), acc


# --------------------------------------------------------------------------- simulate
def simulate(
    scheme: str,
    problem: Any = "quadratic",
    *,
    clients: int | None = None,
    speeds: Any = "F-80",
    horizon: Any = 100,
    local_steps: int = 1,
    lr_local: float = 0.01,
    lr_server: float = 1.0,
    weights: Any = "identical",
    p: Any = "uniform",
    delta_t: Any = None,
    buffer: int | None = None,
    variant: str = "fraboni",
    alpha: float | None = None,
    form: str = "mixing",
    staleness: str = "constant",
    staleness_a: float | None = None,
    staleness_b: float | None = None,
    normalise: str = "buffer",
    sampling: str = "full",
    sample: int | None = None,
    local_momentum: float = 0.0,
    server_momentum: float = 0.0,
    batch_size: int | None = 64,
    data: Any = None,
    split: Any = None,
    split_alpha: float = 0.1,
    init: Any = None,
    seed: int = 0,
    eval_every: int | None = None,
    record_params: bool | None = None,
    max_steps: int | None = None,
    xp: Any = None,
    dtype: str = "float64",
    device: Any = None,
    comm: Any = None,
    blowup: float | None = 1e8,
    progress: Any = None,
) -> FedResult:
    """Run ``scheme`` on ``problem`` until the simulated ``horizon`` (see the module docstring).

    Every argument is checked before any simulation work (ValueError/TypeError naming it).

    ``clients``: M (default 10; for a given :class:`~refopt.problems.QuadraticClients` its own M,
    and a different value is an error). ``speeds``: ``"F-X"``, ``"exp"``, ``"half_normal"`` or M
    task times (:func:`refopt.federated.clock.client_times`, seeded by ``seed``).
    ``weights``: ``"identical"``, ``"unbiased"`` or M multipliers ``d_i``. ``p``: client
    importances, ``"uniform"``, ``"ratio"`` (data sizes) or M numbers. ``delta_t`` (fedfix only),
    ``buffer`` and ``variant`` (fedbuff only), ``alpha``/``form`` (fedasync only),
    ``staleness``/``staleness_a``/``staleness_b`` (fedasync with alpha, fedbuff), ``normalise``
    (fedbuff), ``sampling``/``sample`` (fedavg). ``init``: start model (``(d,)`` host numbers;
    default ``problem.init(seed)``). ``eval_every``: server steps between evaluations (default 1
    for quadratics, else about 250 evaluations over the run). ``max_steps``: a cap on the
    number of server steps (a guard against tiny client times); the schedule it leaves must hold
    at most :data:`SCHEDULE_LIMIT` steps, counted before it is built. ``blowup``: a federated loss
    above ``L_0 + blowup·(1 + |L_0|)`` counts as divergence (None: only non-finite values do).
    ``progress``: called as ``progress(n, N)`` after server step n of N (a progress-bar hook).

    ``comm``: None (one process) or an MPI communicator (:mod:`refopt.mpi`; an mpi4py
    communicator is wrapped). Under MPI the M clients are split into contiguous blocks (sizes
    differing by at most one; more ranks than clients is an error). Every rank replays the same
    schedule and keeps the global models; at each server step a rank runs the local work of
    its own clients of ``S_n`` (each client draws from its own stream, as serially), one
    ``Allgatherv`` gives every rank all the new local models in the order of ``S_n``, and the
    server rule is applied on every rank exactly as in the serial run: the result is the same,
    bit for bit, on every rank and for every number of ranks (NumPy backend).
    """
    from .. import problems as P

    fn = "simulate"
    comm = _mpi.resolve(comm, "simulate")
    # every rank checks the same arguments; one collective at the end makes all ranks agree on any error
    with comm.agreed("checking the arguments and setting up"):
        # ---- checks (all before any work) ------------------------------------------------------
        scheme = _choice("scheme", scheme, rules.SCHEMES)
        K = _int("local_steps", local_steps, 1)
        lr_l = _real("lr_local", lr_local, low=0.0, low_open=True)
        lr_g = _real("lr_server", lr_server, low=0.0, low_open=True)
        mu_l = _real("local_momentum", local_momentum, low=0.0, high=1.0, high_open=True)
        mu_g = _real("server_momentum", server_momentum, low=0.0, high=1.0, high_open=True)
        seed = _int("seed", seed, 0)
        if not isinstance(dtype, str) or dtype not in ("float64", "float32"):
            raise ValueError(f"{fn}: dtype must be 'float64' or 'float32'; got {dtype!r}")
        if blowup is not None:
            blowup = _real("blowup", blowup, low=0.0, low_open=True)
        if progress is not None and not callable(progress):
            raise TypeError(f"{fn}: progress must be a callable progress(n, N) or None; got {type(progress).__name__}")
        # named options are checked whatever the scheme, then refused where they do not apply
        form = _choice("form", form, rules.FEDASYNC_FORMS)
        variant = _choice("variant", variant, clock.FEDBUFF_VARIANTS)
        if form != "mixing" and not (scheme == "fedasync" and alpha is not None):
            raise ValueError(f"{fn}: form={form!r} applies to scheme 'fedasync' with alpha only")
        if variant != "fraboni" and scheme != "fedbuff":
            raise ValueError(f"{fn}: variant={variant!r} applies to scheme 'fedbuff' only, not {scheme!r}")
        if delta_t is not None and scheme != "fedfix":
            raise ValueError(f"{fn}: delta_t={delta_t!r} only applies to scheme 'fedfix', not {scheme!r}")
        if scheme == "fedfix":
            if delta_t is None:
                raise ValueError(f"{fn}: scheme 'fedfix' needs delta_t (the window length, > 0)")
            dt = clock.to_fraction(delta_t, "simulate: delta_t")
        if buffer is not None and scheme != "fedbuff":
            raise ValueError(f"{fn}: buffer={buffer!r} only applies to scheme 'fedbuff', not {scheme!r}")
        if alpha is not None:
            if scheme != "fedasync":
                raise ValueError(f"{fn}: alpha={alpha!r} only applies to scheme 'fedasync', not {scheme!r}")
            alpha = _real("alpha", alpha, low=0.0, low_open=True, high=1.0)
            form = _choice("form", form, rules.FEDASYNC_FORMS)
        staleness = _choice("staleness", staleness, rules.STALENESS)
        if staleness != "constant" and not (scheme == "fedbuff" or (scheme == "fedasync" and alpha is not None)):
            raise ValueError(f"{fn}: staleness={staleness!r} applies to 'fedbuff' and to 'fedasync' with alpha; "
                             f"scheme {scheme!r} has no staleness scaling")
        rules.staleness_factor(0, staleness, a=staleness_a, b=staleness_b)  # checks a, b
        normalise = _choice("normalise", normalise, rules.FEDBUFF_NORMALISATIONS)
        sampling = _choice("sampling", sampling, rules.SAMPLINGS)
        if sampling != "full" and scheme != "fedavg":
            raise ValueError(f"{fn}: sampling={sampling!r} only applies to scheme 'fedavg'")
        if batch_size is not None:
            batch_size = _int("batch_size", batch_size, 1)

        # ---- problem and clients ----------------------------------------------------------------
        if isinstance(problem, str):
            problem = _choice("problem", problem, PROBLEMS)
        M = None if clients is None else _int("clients", clients, 1)
        if isinstance(problem, P.QuadraticClients) or problem == "quadratic":
            if problem == "quadratic":
                M = 10 if M is None else M
                problem = P.quadratic_clients(np.arange(M, dtype=np.float64))
            elif M is not None and M != problem.clients:
                raise ValueError(f"{fn}: clients={M} does not match the problem's {problem.clients} quadratic clients")
            M = problem.clients
            if data is not None or split is not None:
                raise ValueError(f"{fn}: quadratic clients have no data; do not pass data or split")
            kind = "quadratic"
        else:
            M = 10 if M is None else M
            if problem == "softmax":
                if data is None:
                    data = P.load_dataset("digits")
                problem = P.softmax_regression(int(np.asarray(data[0]).shape[1]), 10)
            if not isinstance(problem, P.Problem) or not problem.needs_data:
                raise TypeError(f"{fn}: problem must be 'quadratic', 'softmax', QuadraticClients or a classifier of "
                                f"refopt.problems; got {problem!r}")
            if data is None or len(data) != 4:
                raise ValueError(f"{fn}: a classifier needs data=(X_train, y_train, X_test, y_test)")
            kind = "classifier"
            Xtr, ytr, Xte, yte = (np.asarray(a) for a in data)
            if split is None:
                parts = P.dirichlet_split(ytr, M, split_alpha, seed, method="fraboni", classes=problem.num_classes)
            else:
                if len(split) != M:
                    raise ValueError(f"{fn}: split must hold one index array per client ({M}); got {len(split)}")
                parts = [np.asarray(s, dtype=np.int64) for s in split]
                for i, s in enumerate(parts):
                    if s.ndim != 1 or s.size == 0 or s.min() < 0 or s.max() >= ytr.shape[0]:
                        raise ValueError(f"{fn}: split[{i}] must be a non-empty index array into the training set")

        # per client: its exact time, a random stream, its statistics (about 2 KB, measured)
        _mpi.check_memory(M * 2048.0, f"clients={M:,}", fn)
        times = clock.client_times(speeds, M, seed=seed)
        # MPI: rank r runs the local work of clients offsets[r] .. offsets[r+1]-1 (serial: all of them)
        offsets = _mpi.partition(M, comm.size, what="clients", where="simulate")
        owner = np.repeat(np.arange(comm.size), np.diff(offsets))
        horizon_f = clock.to_fraction(horizon, "simulate: horizon")
        if scheme == "fedbuff":
            if buffer is None or isinstance(buffer, bool) or not isinstance(buffer, numbers.Integral):
                raise ValueError(f"{fn}: scheme 'fedbuff' needs an integer buffer in [1, {M}]; got {buffer!r}")
            if not 1 <= int(buffer) <= M:
                raise ValueError(f"{fn}: buffer={buffer!r} must be in [1, number of clients = {M}]")
            buffer = int(buffer)
        if sampling != "full":
            if sample is None:
                raise ValueError(f"{fn}: sampling={sampling!r} needs sample, the number of clients per round")
            sample = _int("sample", sample, 1, M if sampling == "uniform" else None)
        elif sample is not None:
            raise ValueError(f"{fn}: sample={sample!r} needs sampling='md' or 'uniform'")

        sizes = np.ones(M) if kind == "quadratic" else np.array([pp.size for pp in parts], dtype=np.float64)
        if isinstance(p, str):
            p = _choice("p", p, ("uniform", "ratio"))
            pv = np.full(M, 1.0 / M) if p == "uniform" else sizes / sizes.sum()
        else:
            pv = rules._host_vector(fn, "p", p, M, nonneg=True)
            if pv.sum() <= 0:
                raise ValueError(f"{fn}: p must hold at least one positive importance")
            pv = pv / pv.sum()
        if isinstance(weights, str):
            _choice("weights", weights, rules.WEIGHTINGS)
        else:
            rules._host_vector(fn, "weights", weights, M, nonneg=True)
        if alpha is not None and form == "mixing":
            if not (isinstance(weights, str) and weights == "identical") or lr_g != 1.0 or mu_g != 0.0:
                raise ValueError(f"{fn}: FedAsync's mixing form (1 - α_t) θ + α_t x_new takes no client multipliers, "
                                 "server lr or server momentum: use weights='identical', lr_server=1, "
                                 "server_momentum=0, or form='delta'")
        if eval_every is not None:
            eval_every = _int("eval_every", eval_every, 1)
        if record_params is not None and not isinstance(record_params, (bool, np.bool_)):
            raise TypeError(f"{fn}: record_params must be True, False or None; got {record_params!r}")
        if max_steps is not None:
            max_steps = _int("max_steps", max_steps, 0)

        xp = _namespace(xp)
        fdt = getattr(xp, dtype)
        theta0 = problem.init(seed) if init is None else rules._host_vector(fn, "init", init, problem.dim)
        theta0 = np.asarray(theta0, dtype=np.float64).reshape(-1)

        # ---- the schedule ------------------------------------------------------------------------
        sched_kw = {}
        if scheme == "fedfix":
            sched_kw["delta_t"] = dt
        if scheme == "fedbuff":
            sched_kw.update(buffer=buffer, variant=variant)
        planned = clock.count_steps(scheme, times, horizon=horizon_f, **sched_kw)
        if max_steps is not None:
            planned = min(planned, max_steps)
        if planned > SCHEDULE_LIMIT:
            raise ValueError(
                f"{fn}: the schedule would hold {planned:,} server steps (scheme {scheme!r}, horizon {float(horizon_f):g}, "
                f"shortest client time {float(min(times)):.3g}"
                + (f", delta_t {float(dt):g}" if scheme == "fedfix" else "")
                + f"), more than the {SCHEDULE_LIMIT:,} a run may build: shorten the horizon, lengthen the client "
                "times or delta_t, or pass max_steps to stop earlier"
            )
        # the schedule's host memory (measured: about 320 bytes a step and 16 per aggregated client) and
        # the curves (an evaluation at every step at most: about 600 bytes)
        per_step = M if scheme in ("fedavg", "fedfix") else (buffer if scheme == "fedbuff" else 1)
        _mpi.check_memory(planned * (920.0 + 16.0 * per_step), f"a schedule of {planned:,} server steps", fn)
        events = clock.schedule(scheme, times, horizon=horizon_f, max_steps=max_steps, **sched_kw)
        N = len(events)
        freq = np.zeros(M)
        for ev in events:
            for i in ev.clients:
                freq[i] += 1
        freq = freq / N if N else freq
        d = rules.client_multipliers(scheme, times, p=pv, weights=weights, delta_t=dt if scheme == "fedfix" else None,
                                     buffer=buffer, frequencies=freq if (scheme == "fedbuff" and N) else None)

        # ---- backend ----------------------------------------------------------------------------
        def put(a, kind_="float"):
            dt_ = xp.int64 if kind_ == "int" else fdt
            a = np.asarray(a)
            return xp.asarray(a, dtype=dt_, device=device) if device is not None else xp.asarray(a, dtype=dt_)

        if kind == "quadratic":
            oracle = _Quadratic(problem)
            optimum = problem.optimum(pv)
        else:
            oracle = _Classifier(problem, Xtr, ytr, Xte, yte, parts, put, batch_size, xp)
            optimum = None
        if eval_every is None:
            eval_every = 1 if kind == "quadratic" else max(1, N // 250)
        if record_params is None:
            record_params = problem.dim <= 16
        client_rng = [np.random.default_rng([seed, 1, i]) for i in range(M)]
        sample_rng = np.random.default_rng([seed, 2])

        # last step at which each global version is a start model (to free the others)
        last_use: dict[int, int] = {}
        for ev in events:
            for s in ev.started:
                last_use[s] = ev.step

        theta = put(theta0)
        hist = {0: theta}
        velocity = None
        counts = np.zeros(M)
        delay_sum = np.zeros(M)
        delay_max = np.full(M, -1, dtype=np.int64)
        wsum = np.zeros(M)
        c_steps, c_times, c_exact, c_loss, c_acc, c_par = [], [], [], [], [], []

        def record(step, t):
            loss, acc = oracle.evaluate(theta, pv)
            c_steps.append(step)
            c_times.append(float(t))
            c_exact.append(Fraction(t))
            c_loss.append(loss)
            c_acc.append(acc)
            if record_params:
                c_par.append(_array.to_numpy(theta).astype(np.float64))

    record(0, 0)
    diverged_at = diverged_quantity = None
    done = 0  # server steps completed with a finite model
    good = (theta, velocity, 0)  # the last finite model, its velocity and its time
    loss0 = c_loss[0]
    t0 = _time.perf_counter()
    # MPI: an exception on one rank from here on aborts every rank (the others wait in a collective)
    # NumPy backend: a diverging run is detected and reported, not warned about
    with comm.guard("federated simulate"), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for ev in events:
            n, S, started = ev.step, ev.clients, ev.started
            taus = [n - 1 - s for s in started]
            # weights of the aggregated updates
            if scheme == "fedavg":
                if sampling == "full":
                    om = d.copy()
                else:
                    om = rules.fedavg_weights(d, sampling=sampling, m=sample, rng=sample_rng) * float(d.sum())
                w = [float(om[i]) for i in S]
            elif scheme == "fedbuff":
                w = list(rules.fedbuff_weights(d[list(S)], taus, staleness=staleness, a=staleness_a, b=staleness_b,
                                               normalise=normalise))
            elif scheme == "fedasync" and alpha is not None:
                w = [rules.fedasync_alpha(alpha, tk, staleness, a=staleness_a, b=staleness_b) for tk in taus]
                if form == "delta":
                    w = [wk * float(d[i]) for wk, i in zip(w, S)]
            else:
                w = [float(d[i]) for i in S]
            # local work of the clients that count (unsampled FedAvg clients do nothing)
            act = [k for k in range(len(S)) if not (scheme == "fedavg" and sampling != "full" and w[k] == 0.0)]
            if act:
                # this rank's share of the local work (serial: all of it), in the order of S
                mine = act if comm.size == 1 else [k for k in act if owner[S[k]] == comm.rank]
                local = None
                if mine:
                    cl = [S[k] for k in mine]
                    start = xp.stack([hist[started[k]] for k in mine]) if len(mine) > 1 else \
                        hist[started[mine[0]]][None, :]
                    batches = None
                    if kind == "classifier":  # each client's own stream: only its owner draws from it
                        batches = np.stack([oracle.draw(client_rng[i], i, K) for i in cl], axis=1)  # (K, m, b)
                    local = start
                    buf = None
                    for step in range(K):
                        g = oracle.grads(local, cl, None if batches is None else batches[step])
                        if mu_l > 0.0:
                            buf = g if buf is None else mu_l * buf + g
                            local = local - lr_l * buf
                        else:
                            local = local - lr_l * g
                if comm.size > 1:
                    # the exchange: every rank receives every local model of this step, then applies
                    # the server rule itself (no MPI reduction: the sum is the serial one)
                    if local is None:
                        local = xp.zeros((0, problem.dim), dtype=fdt, device=_array.device(theta))
                    per_rank = [0] * comm.size
                    for k in act:
                        per_rank[int(owner[S[k]])] += 1
                    local, = comm.allgather_rows([local], per_rank)
                    order = sorted(act, key=lambda k: int(owner[S[k]]))  # rank-major = the gathered rows
                    if order != act:  # S is sorted by client, so this only guards a future change
                        pos = [order.index(k) for k in act]
                        local = xp.take(local, put(np.asarray(pos), "int"), axis=0)
                    start = xp.stack([hist[started[k]] for k in act]) if len(act) > 1 else \
                        hist[started[act[0]]][None, :]
                if alpha is not None and form == "mixing":
                    theta = rules.fedasync_update(theta, local[0, :], None, w[act[0]], form="mixing")
                else:
                    deltas = local - start
                    theta, velocity = rules.server_update(theta, deltas, [w[k] for k in act], lr_server=lr_g,
                                                          momentum=mu_g, velocity=velocity)
            elif mu_g > 0.0 and velocity is not None:
                theta, velocity = rules.server_update(theta, xp.zeros((0, problem.dim), dtype=fdt), [], lr_server=lr_g,
                                                      momentum=mu_g, velocity=velocity)
            # divergence: the model after every step, the loss at every evaluation (every rank holds the
            # same model, so every rank stops at the same step)
            if not bool(xp.all(xp.isfinite(theta))):
                diverged_at, diverged_quantity = n, "global model"
                break
            if n % eval_every == 0 or n == N:
                record(n, ev.time)
                loss_n = c_loss[-1]
                if not math.isfinite(loss_n) or (blowup is not None and math.isfinite(loss0)
                                                 and loss_n > loss0 + blowup * (1.0 + abs(loss0))):
                    for curve in (c_steps, c_times, c_exact, c_loss, c_acc) + ((c_par,) if record_params else ()):
                        curve.pop()
                    diverged_at, diverged_quantity = n, "federated loss"
                    break
            for k, i in enumerate(S):  # the statistics count the steps that completed
                counts[i] += 1
                delay_sum[i] += taus[k]
                delay_max[i] = max(delay_max[i], taus[k])
                wsum[i] += w[k]
            hist[n] = theta
            for v in [v for v in hist if v != n and last_use.get(v, -1) <= n]:
                del hist[v]
            done = n
            if progress is not None:
                progress(n, N)
            good = (theta, velocity, ev.time)
    wall = _time.perf_counter() - t0
    theta, velocity, t_last = good
    N = done  # = len(events) unless the run diverged

    with np.errstate(invalid="ignore", divide="ignore"):
        mean_delay = np.where(counts > 0, delay_sum / np.maximum(counts, 1), np.nan)
    return FedResult(
        scheme=scheme,
        final_params=_array.to_numpy(theta).astype(np.float64),
        steps=np.asarray(c_steps, dtype=np.int64),
        times=np.asarray(c_times, dtype=np.float64),
        times_exact=c_exact,
        loss=np.asarray(c_loss, dtype=np.float64),
        accuracy=None if kind == "quadratic" else np.asarray(c_acc, dtype=np.float64),
        params=np.stack(c_par) if record_params else None,
        participation=freq,
        mean_delay=mean_delay,
        max_delay=delay_max,
        expected_weights=wsum / N if N else wsum,
        multipliers=d,
        client_times=tuple(times),
        server_steps=N,
        simulated_time=float(t_last),
        horizon=float(horizon_f),
        optimum=optimum,
        wall_seconds=wall,
        steps_per_second=N / wall if wall > 0 else float("inf"),
        diverged_at=diverged_at,
        diverged_quantity=diverged_quantity,
        config={"scheme": scheme, "clients": M, "speeds": speeds if isinstance(speeds, str) else "custom",
                "local_steps": K, "lr_local": lr_l, "lr_server": lr_g, "weights": weights if isinstance(weights, str)
                else "custom", "delta_t": None if delta_t is None else str(dt), "buffer": buffer,
                "variant": variant, "alpha": alpha, "form": form, "staleness": staleness, "normalise": normalise,
                "sampling": sampling, "sample": sample, "local_momentum": mu_l, "server_momentum": mu_g,
                "batch_size": batch_size, "seed": seed, "problem": problem.name, "dtype": dtype},
    )
