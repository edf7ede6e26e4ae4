"""A hyper-parameter sweep: 10^4 Adam configurations x 1000 steps on Rosenbrock in one batched run.

``lr`` (geometric, 1e-4 to 1) and ``β1`` (0 to 0.99) on a 100 x 100 grid are arrays of shape
(K, 1) against parameters of shape (K, 2), so one ``refopt.run`` advances every configuration
at once.  It is timed against

* ``separate refopt runs``: the same configurations one ``refopt.run`` each;
* ``looping torch.optim.Adam``: one optimizer per configuration on a 2-element tensor, the
  gradient of Rosenbrock computed in closed form (no autograd), 1000 ``step()`` calls each --
  what a torch user writes without refopt.

The loops are timed on a sample of the configurations (every configuration costs the same
number of steps) and scaled to all K; the row says how many were timed.  The batched result is
checked against the separate runs of the sample: equal bit for bit.
"""

from __future__ import annotations

import time

import numpy as np

from .. import _array, functions, rules
from .. import run as run_rule
from ._common import Context, Row, ratio_row


def _grid(k: int):
    side = int(round(k**0.5))
    lr, beta1 = np.meshgrid(np.geomspace(1e-4, 1.0, side), np.linspace(0.0, 0.99, side))
    return lr.reshape(-1, 1), beta1.reshape(-1, 1)


def _torch_loop(lr, beta1, x0, steps) -> float | None:
    """Seconds to run each configuration with its own torch.optim.Adam; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    start = time.perf_counter()
    for a, b in zip(lr[:, 0], beta1[:, 0]):
        x = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64))
        opt = torch.optim.Adam([x], lr=float(a), betas=(float(b), 0.999))
        with torch.no_grad():
            for _ in range(steps):
                u, v = x[0], x[1]  # Rosenbrock (1 - u)² + 100 (v - u²)², gradient in closed form
                x.grad = torch.stack((-2 * (1 - u) - 400 * u * (v - u * u), 200 * (v - u * u)))
                opt.step()
    return time.perf_counter() - start


def run(ctx: Context) -> list[Row]:
    k, steps, sample = (400, 100, 8) if ctx.quick else (10_000, 1000, 40)
    lr, beta1 = _grid(k)
    f = functions.get("rosenbrock")
    x0_host = np.tile(np.asarray(f.start, dtype=np.float64), (lr.shape[0], 1))
    x0 = ctx.asarray(x0_host)
    rule = rules.adam(lr=lr, betas=(beta1, 0.999))
    result = {}

    def batched():
        with np.errstate(over="ignore", invalid="ignore"):
            result["r"] = run_rule(rule, f, x0, steps)

    batched_s = ctx.time(batched, repeat=1, warmup=0)
    picks = np.linspace(0, lr.shape[0] - 1, sample).astype(int)
    start = time.perf_counter()
    equal = True
    for i in picks:
        with np.errstate(over="ignore", invalid="ignore"):
            single = run_rule(rules.adam(lr=float(lr[i, 0]), betas=(float(beta1[i, 0]), 0.999)), f,
                              ctx.asarray(x0_host[i]), steps)
        a = _array.to_numpy(single.x[-1])
        b = _array.to_numpy(result["r"].x[-1])[i]
        equal &= bool(np.array_equal(a, b, equal_nan=True))
    separate_s = (time.perf_counter() - start) * lr.shape[0] / sample
    size = f"{lr.shape[0]} configs x {steps} steps"
    rows = [
        ratio_row("sweep", "adam on rosenbrock", size, "batched refopt.run", batched_s, "separate refopt runs",
                  separate_s, note=f"loop timed on {sample} configurations and scaled; batched rows equal separate "
                  f"runs bit for bit: {equal}"),
    ]
    torch_s = _torch_loop(lr[picks], beta1[picks], list(f.start), steps)
    if torch_s is not None:
        torch_s *= lr.shape[0] / sample
        rows.append(ratio_row("sweep", "adam on rosenbrock", size, "batched refopt.run", batched_s,
                              "looping torch.optim.Adam", torch_s, target="≥50x vs looping torch",
                              met=torch_s / batched_s >= 50,
                              note=f"torch loop timed on {sample} configurations and scaled"))
    return rows
