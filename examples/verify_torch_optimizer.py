"""Check torch optimizers against refopt's golden vectors with ``refopt verify``.

Three ways, from the shortest:

1. the command line, with a built-in adapter -- exactly what you would type in a shell:

       refopt verify torch.optim.Adam            # exit 0: every case passes
       refopt verify torch.optim.Adam --json     # the same report as data

2. the Python API, with the same adapter: ``refopt.verify.verify("torch.optim.RMSprop")``;

3. a factory for an optimizer refopt has no adapter for -- here a small wrapper that runs any
   ``torch.optim`` class one step at a time -- given as ``module:callable`` on the command line
   or as the function itself to the API.  ``make(**hyper)`` receives refopt's names (``lr``,
   ``betas``, ``eps``...) and returns ``step(params, grads, state) -> (params, state)`` over
   NumPy arrays, with ``state=None`` on the first call.

The wrapper below feeds torch.optim.Adam the *adam* vectors made with refopt's default
``ema='multiply_add'`` (torch evaluates the first moment with lerp): the two differ by
rounding only, which the vectors' tolerance classes allow.  A third call checks a torch
"port" of Adam with a deliberate bug (ε inside the square root) and prints the convention
``refopt verify`` recognises in it.

    python examples/verify_torch_optimizer.py
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

import refopt.verify


def make_torch_adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """A factory: torch.optim.Adam on one tensor, stepped with NumPy gradients."""

    def step(params, grads, state):
        if state is None:
            p = torch.nn.Parameter(torch.from_numpy(params.copy()))
            state = (p, torch.optim.Adam([p], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        p, opt = state
        p.grad = torch.from_numpy(grads.copy())
        opt.step()
        return p.detach().numpy().copy(), state

    return step


def make_buggy_adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """A hand-written torch Adam with ε inside the square root: √(v̂ + ε) instead of √v̂ + ε."""
    beta1, beta2 = betas

    def step(params, grads, state):
        p, g = torch.from_numpy(params), torch.from_numpy(grads)
        if state is None:
            state = {"m": torch.zeros_like(p), "v": torch.zeros_like(p), "t": 0}
        t = state["t"] + 1
        m = beta1 * state["m"] + (1 - beta1) * g
        v = beta2 * state["v"] + (1 - beta2) * g * g
        denom = torch.sqrt(v / (1 - beta2**t) + eps)  # the bug
        p = p - lr / (1 - beta1**t) * m / denom
        return p.numpy(), {"m": m, "v": v, "t": t}

    return step


def main() -> int:
    # 1. the command line (python -m refopt is the `refopt` command)
    done = subprocess.run([sys.executable, "-m", "refopt", "verify", "torch.optim.Adam"], capture_output=True, text=True)
    print(done.stdout or done.stderr)
    print(f"-> exit status {done.returncode}\n")

    # 2. the API with a built-in adapter
    report = refopt.verify.verify("torch.optim.RMSprop")
    print(report.text().splitlines()[-1], "\n")

    # 3. factories: a faithful wrapper, then a port with a bug
    report = refopt.verify.verify(make_torch_adam, rule="adam", dtype="float64")
    print(report.text(), "\n")
    buggy = refopt.verify.verify(make_buggy_adam, rule="adam", dtype="float64")
    first = next(r for r in buggy.results if not r.passed)
    print(f"the buggy port first departs in case {first.case.id} at step t={first.first['t']} "
          f"({first.first['quantity']}[{first.first['index']}])")
    print(buggy.identification["message"])
    return 0 if done.returncode == 0 and report.passed and not buggy.passed else 1


if __name__ == "__main__":
    np.seterr(over="ignore", invalid="ignore")
    sys.exit(main())
