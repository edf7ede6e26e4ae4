"""A training step of the small transformer: refopt's array-API model against the same model in torch.

One step = the loss and its exact gradient on a batch of 16 windows of refopt's character
corpus, then an Adam update -- in refopt, ``problem.loss_grad`` (hand-derived backward pass)
and ``rules.adam``; in torch, the same network written with ``torch.nn.functional`` from the
same flat parameter vector (``problem.layout``), ``loss.backward()`` and
``torch.optim.Adam`` (eager mode, its default kernels).  Both run in float32 on the context's
backend (NumPy on the CPU: torch on the CPU; CuPy: torch on the GPU), and on the CPU both are
limited to one thread: the matrices are 32 wide, and the row compares the programs, not the
thread pools.  The first steps' losses are checked equal to float32 accuracy before timing.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _array, problems, rules
from .._threads import blas_threads
from ._common import Context, Row, ratio_row

BATCH = 16


def _torch_step(problem, theta0: np.ndarray, device: str):
    """A closure running one torch training step on a batch; returns (step, loss_of)."""
    import torch
    import torch.nn.functional as F

    theta = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float32, device=device))
    opt = torch.optim.Adam([theta], lr=1e-3)
    D, H = problem.width, problem.heads
    d = D // H

    def loss_of(X, y):
        w = {n: theta[a:b].reshape(s) for n, s, a, b in problem.layout}
        B, T = X.shape
        x = F.embedding(X, w["tok"]) + w["pos"][:T]
        causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()
        for i in range(problem.layers):
            def p(name, i=i):
                return w[f"{i}.{name}"]

            h = F.layer_norm(x, (D,), p("ln1_g"), p("ln1_b"), eps=1e-5)
            q, k, v = F.linear(h, p("qkv_w"), p("qkv_b")).split(D, dim=-1)
            q, k, v = (t.reshape(B, T, H, d).transpose(1, 2) for t in (q, k, v))
            scores = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(~causal, float("-inf"))
            o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
            x = x + F.linear(o, p("o_w"), p("o_b"))
            h2 = F.layer_norm(x, (D,), p("ln2_g"), p("ln2_b"), eps=1e-5)
            x = x + F.linear(F.gelu(F.linear(h2, p("fc1_w"), p("fc1_b")), approximate="tanh"), p("fc2_w"), p("fc2_b"))
        x = F.layer_norm(x, (D,), w["lnf_g"], w["lnf_b"], eps=1e-5)
        logits = F.linear(x, w["head_w"], w["head_b"])
        return F.cross_entropy(logits.reshape(B * T, -1), y.reshape(-1))

    def step(X, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_of(X, y)
        loss.backward()
        opt.step()
        return loss

    return step, loss_of


def run(ctx: Context) -> list[Row]:
    try:
        import torch
    except ImportError:
        return [Row("models", "transformer step", f"batch {BATCH}", "refopt", float("nan"),
                    note="torch is not installed: no peer")]
    problem = problems.get("transformer")
    theta0 = np.asarray(problem.init(0), dtype=np.float32)
    batches = [problem.example_batch(BATCH, seed=k) for k in range(8)]
    device = "cuda" if ctx.backend == "cupy" else "cpu"
    t_batches = [(torch.as_tensor(X, device=device), torch.as_tensor(y, device=device)) for X, y in batches]
    r_batches = [(ctx.asarray(X), ctx.asarray(y)) for X, y in batches]
    rule = rules.adam(lr=1e-3)
    box = {"theta": ctx.asarray(theta0)}
    box["state"] = rule.init(box["theta"])
    i = {"k": 0}

    def refopt_step():
        X, y = r_batches[i["k"] % len(r_batches)]
        i["k"] += 1
        loss, g = problem.loss_grad(box["theta"], X, y)
        box["theta"], box["state"] = rule.step(box["theta"], g, box["state"])
        return loss

    torch_step, torch_loss = _torch_step(problem, theta0, device)
    j = {"k": 0}

    def peer_step():
        X, y = t_batches[j["k"] % len(t_batches)]
        j["k"] += 1
        return torch_step(X, y)

    # the same loss on the same batch before timing (float32: a few ulps of the loss)
    mine = float(_array.to_numpy(problem.loss(ctx.asarray(theta0), *r_batches[0])))
    with torch.no_grad():
        theirs = float(torch_loss(*t_batches[0]))
    agree = abs(mine - theirs) <= 1e-5 * abs(theirs)
    threads = torch.get_num_threads()
    repeat = 3 if ctx.quick else ctx.repeat
    steps = 2 if ctx.quick else 10

    def many(fn):
        def go():
            for _ in range(steps):
                fn()
        return go

    try:
        if ctx.backend != "cupy":
            torch.set_num_threads(1)
        with blas_threads(1 if ctx.backend != "cupy" else None):
            t_refopt = ctx.time(many(refopt_step), repeat=repeat) / steps
            t_torch = ctx.time(many(peer_step), repeat=repeat) / steps
    finally:
        torch.set_num_threads(threads)
    where = "GPU" if ctx.backend == "cupy" else "CPU, 1 thread each"
    target = "at least as fast as torch eager" if ctx.backend == "cupy" else "within 1.5x of torch eager"
    limit = 1.0 if ctx.backend == "cupy" else 1 / 1.5
    ratio = t_torch / t_refopt
    return [ratio_row("models", "transformer step", f"batch {BATCH}, {problem.dim} params", f"refopt {ctx.backend}",
                      t_refopt, f"torch eager ({where})", t_torch, target=target, met=bool(ratio >= limit),
                      note="" if agree else f"losses differ before timing: refopt {mine!r}, torch {theirs!r}")]
