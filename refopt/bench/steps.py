"""Update steps on large arrays: reference, fast path and torch.optim, at 10^4 to 10^7 (10^8 on a GPU).

For each rule (SGD with momentum 0.9, Adam, AdaBelief, diffGrad) and size, one float32
parameter array and its gradient are stepped by

* ``reference``: ``rule.step`` (one array-API operation per term of the box);
* ``fast numpy``: ``refopt.fast.fused(rule).step`` (NumPy on cache-sized blocks) into new
  arrays (on the CPU, memory of the outputs dropped before: ``refopt.fast._numpy.recycled_empty``,
  as the reference's); ``fast numba``: the compiled loops (``engine="numba"``, when Numba is
  installed; the compilation happens in the untimed warm-up call); ``fast cuda``: the CuPy kernel;
* ``..., out=``: the same writing into the buffers of two steps before (no allocation, but
  every output is a separate stream the CPU must first read for ownership);
* ``..., in place``: ``out=(params, state)`` -- every array read once and written back where
  it was read, the memory behaviour of torch's in-place steps;
* torch.optim's ``for-loop``, ``foreach`` and ``fused`` implementations of the rule where torch
  has it (SGD, Adam), stepping one tensor in place.

Peers (torch has no AdaBelief or diffGrad, so Adam is the yardstick for every rule): the fast
rows are compared with ``torch.optim.Adam(fused=True)`` on the same size, every other row with
``torch.optim.Adam(foreach=True)``; without torch, with the reference path.  The targets (at
10^7 on the CPU): the fast path in place at least as fast as torch's fused Adam, the reference
within 2x of torch's foreach Adam.  Bandwidth is the minimum traffic of the step (one read of
p, g and every state slot and one write of p and the slots, 4 bytes each in float32: 20 bytes
per parameter for SGD with momentum, 28 for Adam and AdaBelief, 36 for diffGrad) over the
time, next to the measured copy bandwidth (a copy also reads its destination for ownership, so
a step in place can pass 100% of it).  diffGrad moves 36/28 of Adam's bytes, so at equal
bandwidth it takes 1.29x torch's fused Adam: its row says so.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from .. import rules
from ._common import Context, Row, ratio_row

RULES = {  # name -> (hyper-parameters, slots besides p and g, torch.optim class and arguments)
    "sgd": ({"lr": 1e-3, "momentum": 0.9}, 1, ("SGD", {"lr": 1e-3, "momentum": 0.9})),
    "adam": ({"lr": 1e-3}, 2, ("Adam", {"lr": 1e-3})),
    "adabelief": ({"lr": 1e-3}, 2, None),
    "diffgrad": ({"lr": 1e-3}, 3, None),
}


def min_bytes(slots: int, itemsize: int) -> int:
    """Bytes per parameter a fused step must move: read p, g, slots; write p, slots."""
    return itemsize * (2 + slots + 1 + slots)


def sizes(ctx: Context) -> list[int]:
    if ctx.quick:
        return [10**4, 10**5]
    return [10**4, 10**6, 10**7] + ([10**8] if ctx.backend == "cupy" else [])


def _inner(n: int) -> int:
    """Steps per timed call: enough that a call lasts a few milliseconds."""
    return max(1, min(200, 10**6 // n))


def _timed_together(ctx: Context, fns: dict, n: int) -> dict:
    """{label: seconds per step (a Timing)} of every callable, timed *interleaved*: each round
    calls every one once, so that a machine whose speed drifts (a shared VM) moves all of them
    alike and the ratios between rows stay meaningful.  Each callable is warmed up first (a
    compilation, a first allocation)."""
    import gc
    import time

    from ._common import Timing

    k = _inner(n)
    for fn in fns.values():
        fn()
    ctx.sync()
    times = {label: [] for label in fns}
    gc_was = gc.isenabled()
    gc.disable()
    try:
        # large sizes are cheap to repeat and the judged ones: at least 15 rounds there
        for _ in range(1 if ctx.quick else max(ctx.repeat, 15) if n >= 10**6 else ctx.repeat):
            for label, fn in fns.items():
                t0 = time.perf_counter()
                for _ in range(k):
                    fn()
                ctx.sync()
                times[label].append(time.perf_counter() - t0)
    finally:
        if gc_was:
            gc.enable()
    for _ in fns:
        ctx.on_timed()
    return {label: Timing(ts) / k for label, ts in times.items()}


def _torch_steppers(ctx: Context, cls_name: str, kwargs: dict, p_host: np.ndarray, g_host: np.ndarray) -> dict:
    """{variant: a callable doing one step} for torch.optim's for-loop, foreach and fused
    implementations, each on a tensor of its own (stepped in place, as torch does)."""
    try:
        import torch
    except ImportError:
        return {}
    device = "cuda" if ctx.backend == "cupy" else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        return {}
    out = {}
    for variant, flags in (("for-loop", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        param = torch.nn.Parameter(torch.as_tensor(p_host, device=device).clone())
        param.grad = torch.as_tensor(g_host, device=device).clone()
        try:
            opt = getattr(torch.optim, cls_name)([param], **kwargs, **flags)
            opt.step()
        except (RuntimeError, TypeError, ValueError):  # fused not built for this device or rule
            continue
        if device == "cuda":
            out[variant] = lambda opt=opt: (opt.step(), torch.cuda.synchronize())
        else:
            out[variant] = opt.step
    return out


def _engines(ctx: Context) -> list[tuple[str, str]]:
    """(row label, engine) of the fast paths this backend has."""
    if ctx.backend == "cupy":
        return [("fast cuda", "numpy")]  # CuPy arrays always take the CUDA kernel
    if ctx.backend != "numpy":
        return []
    engines = [("fast numpy", "numpy")]
    if importlib.util.find_spec("numba") is not None:
        engines.append(("fast numba", "numba"))
    return engines


def run(ctx: Context) -> list[Row]:
    from .. import fast

    rows: list[Row] = []
    rng = np.random.default_rng(0)
    for n in sizes(ctx):
        p_host = rng.standard_normal(n).astype(np.float32)
        g_host = (rng.standard_normal(n) * 1e-2).astype(np.float32)
        p, g = ctx.asarray(p_host), ctx.asarray(g_host)
        adam_torch = _torch_steppers(ctx, "Adam", {"lr": 1e-3}, p_host, g_host)
        peers = {f"torch Adam {v}": adam_torch[v] for v in ("foreach", "fused") if v in adam_torch}
        size = f"{n:.0e}".replace("e+0", "e")
        for name, (hyper, slots, torch_peer) in RULES.items():
            rule = rules.get(name, **hyper)
            state = rule.init(p)
            p1, s1 = rule.step(p, g, state)  # past SGD's first step, whose program differs
            fns = {"reference": lambda: rule.step(p1, g, s1)}
            for label, engine in _engines(ctx):
                fused = fast.fused(rule, engine=engine)
                fns[label] = lambda fused=fused: fused.step(p1, g, s1)
                buffers = [fused.step(p1, g, s1), fused.step(p1, g, s1)]

                def pingpong(fused=fused, buffers=buffers):
                    buffers.reverse()
                    fused.step(p1, g, s1, out=buffers[0])

                own = fused.step(p1, g, s1)  # arrays of its own to step in place
                fns[label + ", out="] = pingpong
                fns[label + ", in place"] = lambda fused=fused, own=own: fused.step(own[0], g, own[1], out=own)
            shown = []  # torch rows of this rule (the Adam peers are timed with every rule)
            if torch_peer is not None:
                own_torch = adam_torch if name == "adam" else _torch_steppers(ctx, *torch_peer, p_host, g_host)
                for variant, fn in own_torch.items():
                    fns[f"torch {torch_peer[0]} {variant}"] = fn
                    shown.append(f"torch {torch_peer[0]} {variant}")
            for label, fn in peers.items():
                fns.setdefault(label, fn)
            timings = _timed_together(ctx, fns, n)
            foreach_s, fused_s = timings.get("torch Adam foreach"), timings.get("torch Adam fused")
            for impl, seconds in timings.items():
                if impl.startswith("torch") and impl not in shown:
                    continue
                gbps = min_bytes(slots, 4) * n / seconds / 1e9
                if impl.startswith("fast") and fused_s is not None:
                    peer, peer_time = "torch Adam fused", fused_s
                elif foreach_s is not None:
                    peer, peer_time = "torch Adam foreach", foreach_s
                else:
                    peer, peer_time = "reference", timings["reference"]
                target, met, note = None, None, ""
                judged = name in ("adam", "adabelief", "diffgrad")
                if n == 10**7 and ctx.backend == "numpy" and judged:
                    medians = f"{peer_time.median / seconds.median:.2f}x on the medians"
                    if impl.endswith("in place") and peer == "torch Adam fused":
                        target, met = "≥1x torch Adam fused", peer_time / seconds >= 1.0
                        note = medians
                        if name == "diffgrad":
                            note += (f"; moves {min_bytes(slots, 4)} B/param to Adam's {min_bytes(2, 4)}: "
                                     f"{peer_time / seconds * min_bytes(slots, 4) / min_bytes(2, 4):.2f}x at equal bytes")
                    elif impl == "reference" and peer == "torch Adam foreach":
                        target, met = "within 2x of torch Adam foreach", peer_time / seconds >= 0.5
                        note = medians
                if n == 10**8 and ctx.backend == "cupy" and impl.startswith("fast cuda") and judged:
                    target = "≥70% of copy bandwidth"
                    met = bool(ctx.copy_gbps) and gbps >= 0.7 * ctx.copy_gbps
                    if fused_s is not None:
                        target += ", ≥1x torch Adam fused"
                        met = met and fused_s / seconds >= 1.0
                rows.append(ratio_row(
                    "steps", name, size, impl, seconds, peer, peer_time, gbps=gbps,
                    of_copy=gbps / ctx.copy_gbps if ctx.copy_gbps else None, target=target, met=met, note=note,
                ))
            del fns, timings
    return rows + _loops(ctx)


def _paths(ctx: Context, paths: dict, call, result) -> tuple[dict, bool]:
    """({label: seconds per call}, whether every path gave the same result): ``call(flag)`` runs
    the loop with ``fast=flag`` and ``result`` picks the array to compare; one call per round,
    interleaved (:func:`_timed_together`)."""
    first, *others = [_host(result(call(flag))) for flag in paths.values()]
    same = all(np.array_equal(first, other) for other in others)
    return _timed_together(ctx, {label: (lambda flag=flag: call(flag)) for label, flag in paths.items()}, 10**6), same


def _loops(ctx: Context) -> list[Row]:
    """End to end: ``refopt.run`` and ``problems.train`` on the reference (``fast=False``) and on
    the fast path, each the same bits (checked here)."""
    if ctx.backend not in ("numpy", "cupy"):
        return []
    from .. import functions, problems
    from .. import run as run_rule

    reference = "fast=False (reference)"
    rule = rules.adam(lr=1e-2)
    runs, dim, steps = (1000, 100, 3) if ctx.quick else (1000, 1000, 20)
    x0 = ctx.asarray(np.random.default_rng(0).standard_normal((runs, dim)).astype(np.float32))
    sphere = functions.get("sphere", dim=dim)
    paths = {reference: False, "default (fast path, NumPy engine)": None}
    if ctx.backend == "numpy" and importlib.util.find_spec("numba") is not None:
        paths['fast="numba"'] = "numba"
    timings, same = _paths(ctx, paths, lambda flag: run_rule(rule, sphere, x0, steps, fast=flag), lambda r: r.x)
    case = f"refopt.run: adam on sphere, {runs} runs x {dim} dims, {steps} steps"
    rows = [ratio_row("steps", case, f"{runs * dim:.0e}".replace("e+0", "e"), label, seconds, reference,
                      timings[reference], note="" if same else "RESULTS DIFFER")
            for label, seconds in timings.items()]

    problem = problems.get("transformer")
    theta0 = ctx.asarray(np.asarray(problem.init(0), dtype=np.float32))
    k = 2 if ctx.quick else 10
    timings, same = _paths(ctx, {reference: False, "fast=True": True},
                           lambda flag: problems.train(problem, rule, k, theta0=theta0, fast=flag), lambda r: r.theta)
    case = f"problems.train: adam on the transformer ({problem.dim} params), per step"
    for label, seconds in timings.items():
        note = "below refopt.fast.AUTO_MIN_ELEMENTS: the default is the reference" if label == "fast=True" else ""
        rows.append(ratio_row("steps", case, "batch 16", label, seconds / k, reference, timings[reference] / k,
                              note=note + ("" if same else "; RESULTS DIFFER")))
    return rows


def _host(a):
    from .. import _array

    return _array.to_numpy(a)
