"""Update steps on large arrays: reference, fast path and torch.optim, at 10^4 to 10^7 (10^8 on a GPU).

For each rule (SGD with momentum 0.9, Adam, AdaBelief, diffGrad) and size, one float32
parameter array and its gradient are stepped by

* ``reference``: ``rule.step`` (one array-API operation per term of the box);
* ``fast numpy``: ``refopt.fast.fused(rule).step`` (NumPy on cache-sized blocks) into fresh
  arrays; ``fast numba``: the compiled loops (``engine="numba"``, when Numba is installed; the
  compilation happens in the untimed warm-up call); ``fast cuda``: the CuPy kernel;
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


def _timed(ctx: Context, fn, n: int) -> float:
    k = _inner(n)

    def many():
        for _ in range(k):
            fn()

    return ctx.time(many, repeat=1 if ctx.quick else ctx.repeat) / k


def _torch_steps(ctx: Context, cls_name: str, kwargs: dict, p_host: np.ndarray, g_host: np.ndarray):
    """{variant: seconds per step} for torch.optim's for-loop, foreach and fused implementations."""
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
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        saved, ctx.sync = ctx.sync, (lambda: (saved(), sync()))
        try:
            out[variant] = _timed(ctx, opt.step, p_host.size)
        finally:
            ctx.sync = saved
        del opt, param
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

    xp = ctx.xp
    rows: list[Row] = []
    rng = np.random.default_rng(0)
    for n in sizes(ctx):
        p_host = rng.standard_normal(n).astype(np.float32)
        g_host = (rng.standard_normal(n) * 1e-2).astype(np.float32)
        p, g = ctx.asarray(p_host), ctx.asarray(g_host)
        adam_torch = _torch_steps(ctx, "Adam", {"lr": 1e-3}, p_host, g_host)
        peer_name, peer_s = ("torch Adam foreach", adam_torch["foreach"]) if "foreach" in adam_torch else (None, None)
        size = f"{n:.0e}".replace("e+0", "e")
        for name, (hyper, slots, torch_peer) in RULES.items():
            rule = rules.get(name, **hyper)
            state = rule.init(p)
            p1, s1 = rule.step(p, g, state)  # past SGD's first step, whose program differs
            timings = {"reference": _timed(ctx, lambda: rule.step(p1, g, s1), n)}
            for label, engine in _engines(ctx):
                fused = fast.fused(rule, engine=engine)
                timings[label] = _timed(ctx, lambda: fused.step(p1, g, s1), n)  # the warm-up call compiles
                buffers = [fused.step(p1, g, s1), fused.step(p1, g, s1)]

                def pingpong():
                    buffers.reverse()
                    fused.step(p1, g, s1, out=buffers[0])

                timings[label + ", out="] = _timed(ctx, pingpong, n)
                own = buffers[0]  # arrays of its own to step in place

                def in_place():
                    fused.step(own[0], g, own[1], out=own)

                timings[label + ", in place"] = _timed(ctx, in_place, n)
                del buffers, own
            if torch_peer is not None:
                own_torch = adam_torch if name == "adam" else _torch_steps(ctx, *torch_peer, p_host, g_host)
                for variant, seconds in own_torch.items():
                    timings[f"torch {torch_peer[0]} {variant}"] = seconds
            reference_s = timings["reference"]
            for impl, seconds in timings.items():
                gbps = min_bytes(slots, 4) * n / seconds / 1e9
                if impl.startswith("fast") and "fused" in adam_torch:
                    peer, peer_time = "torch Adam fused", adam_torch["fused"]
                elif peer_name:
                    peer, peer_time = peer_name, peer_s
                else:
                    peer, peer_time = "reference", reference_s
                target, met, note = None, None, ""
                judged = name in ("adam", "adabelief", "diffgrad")
                if n == 10**7 and ctx.backend == "numpy" and peer_name and judged:
                    if impl.startswith("fast") and impl.endswith("in place") and peer == "torch Adam fused":
                        target, met = "≥1x torch Adam fused", peer_time / seconds >= 1.0
                        if name == "diffgrad":
                            note = (f"moves {min_bytes(slots, 4)} B/param to Adam's {min_bytes(2, 4)}: "
                                    f"{peer_time / seconds * min_bytes(slots, 4) / min_bytes(2, 4):.2f}x at equal bytes")
                    elif impl == "reference":
                        target, met = "within 2x of torch Adam foreach", peer_time / seconds >= 0.5
                if n == 10**8 and ctx.backend == "cupy" and impl.startswith("fast cuda") and judged:
                    target = "≥70% of copy bandwidth"
                    met = bool(ctx.copy_gbps) and gbps >= 0.7 * ctx.copy_gbps
                    fused_peer = adam_torch.get("fused")
                    if fused_peer:
                        target += ", ≥1x torch Adam fused"
                        met = met and fused_peer / seconds >= 1.0
                rows.append(ratio_row(
                    "steps", name, size, impl, seconds, peer, peer_time, gbps=gbps,
                    of_copy=gbps / ctx.copy_gbps if ctx.copy_gbps else None, target=target, met=met, note=note,
                ))
    return rows
