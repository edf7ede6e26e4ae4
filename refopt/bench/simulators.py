"""Benchmark section ``simulators``: simulator steps per second against a per-node Python loop.

refopt's two simulators keep every node (client) in one array and make a step a fixed number
of batched array operations.  The peer here is what one writes without that design: the same
algorithm, the same random draws and the same mixing rule, but a Python loop over the nodes
(clients), one ``problem.loss_grad`` call per node, and the mixing computed node by node.  Both
run the same number of steps from the same seed in this process; the final models are compared
(``allclose``, ``rtol = 1e-9``, float64) and the ratio is ``peer seconds per step / refopt
seconds per step``.

Collaborative (:func:`refopt.collaborative.simulate`, the ``refopt collab`` defaults: 26 nodes,
softmax regression on the bundled digits, Dirichlet ``alpha = 1`` split over the honest nodes,
batch 25, MoNNA's schedule ``0.75 / (1 + t // 50)``, float64):

* ``dsgd``: D-SGD without attack (26 honest nodes), gossip with the complete graph's
  Metropolis-Hastings weights; the peer mixes ``theta_i = W[i] @ S`` node by node;
* ``monna`` under ``sign_flipping`` and under the line-searched ALIE (``optimal_monna``,
  ``attack="alie"``), 5 Byzantine nodes, ``f = 5``: the peer's NNA computes, for each honest node,
  the distances from its half-step to all 26 received vectors (by differences), keeps the
  ``n - f`` nearest (stable order: ties to the lowest index) and averages them.  Under ALIE the
  attack's line search calls the defender's mixing 16 times per step; the peer hands the attack
  its own node-by-node mixing, so that cost is looped too.

refopt's time per step is read off the simulator's own clock around its step loop
(``SimulationResult.seconds``) as ``(seconds(N steps) - seconds(1 step)) / (N - 1)``: both runs
hold the same two test evaluations, which the difference removes.  The peer's clock is around
its step loop, which computes the same per-step metrics (loss, spread, drift) and no evaluation.

Federated (:func:`refopt.federated.simulate`, the ``refopt fed`` defaults: 10 clients, speeds
``F-80``, identical weights, one local SGD step, ``lr_local = 0.003``; FedFix window 0.5):
FedAvg and FedFix on the quadratic clients ``theta_i* = i`` and on softmax regression (digits,
Fraboni Dirichlet split 0.1, batch 64).  The peer replays the same schedule
(:func:`refopt.federated.clock.schedule`) with the same multipliers, and for each server step
loops over the clients: their own local SGD (one gradient call each, on their own data stream),
their delta, then ``theta += lr_server * w_k * delta_k`` one client at a time.  Evaluations are
switched off in both (``eval_every`` larger than the run) so that only stepping is timed; refopt's
time per server step is ``FedResult.wall_seconds`` of the full run minus that of a run to
horizon 10 (both hold the start and end evaluations), over the difference in server steps.

Sizes: 100 collaborative steps, 30 with ALIE; horizons 3000 (quadratic) / 1500 (softmax) of
simulated time.  ``ctx.quick``: 5 steps, horizons 100 / 40.

Host-side tooling: this module imports NumPy.
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any

import numpy as np

from refopt import _array
from refopt.bench._common import Context, Row, ratio_row

SECTION = "simulators"
TARGET = None  # refopt sets no target for these rows: they are reported

__all__ = ["run", "collab_peer", "fed_peer", "SECTION"]

_RTOL = 1e-9



def _compare(a: np.ndarray, b: np.ndarray) -> tuple[bool, float]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.max(np.abs(a))), 1e-300)
    return bool(np.allclose(a, b, rtol=_RTOL, atol=_RTOL * scale)), float(np.max(np.abs(a - b)) / scale)


# ---------------------------------------------------------------------------------------------
# collaborative: the per-node loop


def collab_peer(algorithm: str, problem, data, *, nodes: int, byzantine: int, attack: str | None,
                attack_params: dict | None, steps: int, alpha: float, seed: int, batch_size: int,
                xp: Any, device: Any = None, lr=None) -> tuple[np.ndarray, float]:
    """D-SGD or MoNNA (convention ``"all"``, complete graph) node by node.

    Returns ``(final honest models (h, d) on the host, seconds of the step loop)``.  The random
    draws are those of :func:`refopt.collaborative.simulate` (one generator seeded by ``seed``,
    one ``(h, batch)`` draw of example positions per step; the same Dirichlet split).
    """
    from refopt import attacks, problems
    from refopt.collaborative import ALGORITHMS, monna_lr
    from refopt.collaborative.topology import complete

    lr = monna_lr if lr is None else lr
    kind, beta = ALGORITHMS[algorithm]
    n, nb = nodes, byzantine
    h, f = n - nb, byzantine
    X_train, y_train = (np.asarray(a) for a in data[:2])
    F = X_train.shape[1]
    rng = np.random.default_rng(seed)
    parts = [np.asarray(p, dtype=np.int64) for p in problems.dirichlet_split(y_train, h, alpha, seed)]
    lengths = np.array([p.size for p in parts], dtype=np.int64)
    pool = np.zeros((h, int(lengths.max())), dtype=np.int64)
    for i, p in enumerate(parts):
        pool[i, : p.size] = p
    rows = np.arange(h)[:, None]

    def put(a, dt=None):
        a = np.array(a, copy=True)
        return xp.asarray(a, dtype=dt, device=device) if device is not None else xp.asarray(a, dtype=dt)

    Xtr, ytr = put(X_train.astype(np.float64), xp.float64), put(y_train.astype(np.int64), xp.int64)
    theta0 = np.asarray(problem.init(seed), dtype=np.float64)
    theta = [put(theta0, xp.float64) for _ in range(h)]
    m = [xp.zeros_like(t) for t in theta]
    W = put(complete(n).metropolis_hastings_weights()[:h], xp.float64) if kind == "gossip" else None
    keep = n - f

    def nna_node(S, i):
        diff = S - S[i, :][None, :]
        dist = _array.to_numpy(xp.sum(diff * diff, axis=1))
        near = np.argsort(dist, kind="stable")[:keep]
        acc = S[int(near[0]), :]
        for j in near[1:]:
            acc = acc + S[int(j), :]
        return acc / float(keep)

    def mix(S):
        if kind == "gossip":
            return [W[i, :] @ S for i in range(h)]
        return [nna_node(S, i) for i in range(h)]

    attack_fn = None
    if attack is not None:
        fn = getattr(attacks, attack)
        params = dict(attack_params or {})
        if attack == "optimal_monna":
            params["aggregator"] = lambda Xs: xp.mean(xp.stack(mix(Xs)), axis=0)
        attack_fn = lambda H: fn(H, nb, **params)  # noqa: E731

    metrics = []
    t0 = time.perf_counter()
    for t in range(steps):
        pos = pool[rows, rng.integers(0, lengths[:, None], size=(h, batch_size))]
        gamma = float(lr(t))
        half, losses = [], []
        for i in range(h):
            idx = put(pos[i])
            Xb = xp.take(Xtr, idx, axis=0)[None, :, :]
            yb = xp.take(ytr, idx, axis=0)[None, :]
            loss, g = problem.loss_grad(theta[i][None, :], Xb, yb)
            m[i] = g[0, :] if beta == 0.0 else beta * m[i] + (1.0 - beta) * g[0, :]
            half.append(theta[i] - gamma * m[i])
            losses.append(loss[0])
        H = xp.stack(half)
        S = H if attack_fn is None else xp.concat([H, xp.asarray(attack_fn(H), dtype=H.dtype)], axis=0)
        theta = mix(S)
        T = xp.stack(theta)
        mean_theta = xp.mean(T, axis=0)
        metrics.append((xp.mean(xp.stack(losses)), xp.mean(xp.sum((T - mean_theta) ** 2, axis=1)),
                        xp.sum((mean_theta - xp.mean(H, axis=0)) ** 2)))
    final = _array.to_numpy(xp.stack(theta))
    return final, time.perf_counter() - t0


def _collab_rows(ctx: Context) -> list[Row]:
    from refopt import problems
    from refopt.collaborative import monna_lr, simulate

    data = problems.load_dataset("digits")
    problem = problems.softmax_regression(data[0].shape[1], 10)
    dev = ctx.device
    quick = ctx.quick
    cases = (
        ("dsgd", "dsgd", 0, None, None, 5 if quick else 100),
        ("monna, sign_flipping", "monna", 5, "sign_flipping", None, 5 if quick else 100),
        ("monna, alie (line-searched)", "monna", 5, "optimal_monna", {"attack": "alie"}, 3 if quick else 30),
    )
    common = dict(alpha=1.0, seed=0, batch_size=25)
    rows = []
    for label, algorithm, nb, attack, params, steps in cases:
        kw = dict(nodes=26, byzantine=nb, f=5, attack=attack, attack_params=params, steps=steps, lr=monna_lr,
                  eval_every=steps, xp=ctx.xp, dtype="float64", **common)
        if dev is not None:
            kw["device"] = dev
        # a one-step run first: warms up, and holds the same two evaluations as the timed run,
        # so the difference of the two clocks is the time of steps - 1 steps alone
        r1 = simulate(algorithm, problem, data, **dict(kw, steps=1, eval_every=1))
        r = simulate(algorithm, problem, data, **kw)
        peer_final, peer_s = collab_peer(algorithm, problem, data, nodes=26, byzantine=nb, attack=attack,
                                         attack_params=params, steps=steps, xp=ctx.xp, device=dev, **common)
        ok, rel = _compare(r.theta, peer_final)
        t_ref = (r.seconds - r1.seconds) / (steps - 1) if r.seconds > r1.seconds else r.seconds / steps
        t_peer = peer_s / steps
        rows.append(ratio_row(
            SECTION, f"collab {label}", f"26 nodes ({nb} Byzantine), softmax/digits d={problem.dim}, {steps} steps",
            "refopt.collaborative.simulate", t_ref, "per-node loop", t_peer, target=TARGET, met=None,
            note=f"{'equal' if ok else 'DIFFERENT'} final models (max rel diff {rel:.1e}); "
                 f"{1 / t_ref:.0f} vs {1 / t_peer:.0f} steps/s; seconds are per step"))
    return rows


# ---------------------------------------------------------------------------------------------
# federated: the per-client loop


def fed_peer(scheme: str, problem_name: str, *, clients: int, horizon: Any, delta_t: Any = None,
             lr_local: float, speeds: str = "F-80", seed: int = 0, batch_size: int = 64,
             split_alpha: float = 0.1, local_steps: int = 1, xp: Any, device: Any = None) -> tuple[np.ndarray, float, int]:
    """FedAvg (full participation) or FedFix with identical weights, client by client.

    Returns ``(final global model on the host, seconds of the server-step loop, server steps)``.
    The schedule, the multipliers ``d_i``, the data split and every client's random stream
    (``default_rng([seed, 1, i])``, ``batch_size`` examples without replacement per local step)
    are those of :func:`refopt.federated.simulate`.
    """
    from refopt import problems as P
    from refopt.federated import clock, rules

    M = clients
    times = clock.client_times(speeds, M, seed=seed)
    pv = np.full(M, 1.0 / M)
    kw = {"delta_t": Fraction(delta_t)} if scheme == "fedfix" else {}
    events = clock.schedule(scheme, times, horizon=Fraction(horizon), **kw)
    d = rules.client_multipliers(scheme, times, p=pv, weights="identical",
                                 delta_t=kw.get("delta_t"), buffer=None, frequencies=None)

    def put(a, dt):
        a = np.array(a, copy=True)
        return xp.asarray(a, dtype=dt, device=device) if device is not None else xp.asarray(a, dtype=dt)

    if problem_name == "quadratic":
        problem = P.quadratic_clients(np.arange(M, dtype=np.float64))
        single = [P.quadratic_clients(np.asarray(problem.optima)[i: i + 1]) for i in range(M)]

        def grad(i, theta, rng):
            return single[i].loss_grad(theta[None, :])[1][0, :]
    else:
        data = P.load_dataset("digits")
        Xtr, ytr = np.asarray(data[0]), np.asarray(data[1])
        problem = P.softmax_regression(Xtr.shape[1], 10)
        parts = P.dirichlet_split(ytr, M, split_alpha, seed, method="fraboni", classes=problem.num_classes)
        parts = [np.asarray(p, dtype=np.int64) for p in parts]
        Xd, yd = put(Xtr, xp.float64), put(ytr, xp.int64)

        def grad(i, theta, rng):
            pool = parts[i]
            idx = put(pool[rng.choice(pool.size, size=min(batch_size, pool.size), replace=False)], xp.int64)
            Xb = xp.take(Xd, idx, axis=0)[None, :, :]
            yb = xp.take(yd, idx, axis=0)[None, :]
            return problem.loss_grad(theta[None, :], Xb, yb)[1][0, :]

    client_rng = [np.random.default_rng([seed, 1, i]) for i in range(M)]
    last_use: dict[int, int] = {}
    for ev in events:
        for s in ev.started:
            last_use[s] = ev.step
    theta = put(np.asarray(problem.init(seed), dtype=np.float64).reshape(-1), xp.float64)
    hist = {0: theta}
    t0 = time.perf_counter()
    for ev in events:
        upd = None
        for k, i in enumerate(ev.clients):
            start = hist[ev.started[k]]
            local = start
            for _ in range(local_steps):
                local = local - lr_local * grad(i, local, client_rng[i])
            term = float(d[i]) * (local - start)
            upd = term if upd is None else upd + term
        if upd is not None:
            theta = theta + 1.0 * upd
        hist[ev.step] = theta
        for v in [v for v in hist if v != ev.step and last_use.get(v, -1) <= ev.step]:
            del hist[v]
    return _array.to_numpy(theta), time.perf_counter() - t0, len(events)


def _fed_rows(ctx: Context) -> list[Row]:
    from refopt.federated import simulate

    dev = ctx.device
    quick = ctx.quick
    rows = []
    for problem_name, horizon in (("quadratic", 100 if quick else 3000), ("softmax", 40 if quick else 1500)):
        for scheme in ("fedavg", "fedfix"):
            extra = {"delta_t": 0.5} if scheme == "fedfix" else {}
            kw = dict(clients=10, speeds="F-80", horizon=horizon, local_steps=1, lr_local=0.003, weights="identical",
                      seed=0, eval_every=10**9, xp=ctx.xp, dtype="float64", **extra)
            if dev is not None:
                kw["device"] = dev
            # a short run first: warms up, and holds the same two evaluations as the timed run,
            # so the difference of the two clocks is the time of the extra server steps alone
            r1 = simulate(scheme, problem_name, **dict(kw, horizon=min(horizon, 10)))
            r = simulate(scheme, problem_name, **kw)
            final, peer_s, N = fed_peer(scheme, problem_name, clients=10, horizon=horizon, lr_local=0.003,
                                        seed=0, xp=ctx.xp, device=dev, **extra)
            ok, rel = _compare(r.final_params, final)
            if N != r.server_steps:
                ok = False
            N = max(N, 1)
            extra_steps = r.server_steps - r1.server_steps
            t_ref = ((r.wall_seconds - r1.wall_seconds) / extra_steps
                     if extra_steps > 0 and r.wall_seconds > r1.wall_seconds else r.wall_seconds / N)
            t_peer = peer_s / N
            rows.append(ratio_row(
                SECTION, f"fed {scheme} {problem_name}",
                f"10 clients F-80, d={r.final_params.size}, horizon {horizon}, {N} server steps",
                "refopt.federated.simulate", t_ref, "per-client loop", t_peer, target=TARGET, met=None,
                note=f"{'equal' if ok else 'DIFFERENT'} final models (max rel diff {rel:.1e}); "
                     f"{1 / t_ref:.0f} vs {1 / t_peer:.0f} steps/s; seconds are per server step"))
    return rows


def run(ctx: Context) -> list[Row]:
    """Collaborative and federated simulator steps per second against per-node/per-client loops."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _collab_rows(ctx) + _fed_rows(ctx)
