"""The NumPy fast path: the reference step, evaluated block by block.

Why it is faster.  The reference evaluates a rule's box one array operation at a time; on
10^7 parameters every operation is a full pass over memory and a fresh 40 MB temporary (an
Adam step makes 13 of them, about six times the traffic the step needs).  Here the same
``_leaf`` runs on blocks of ``block`` elements: the temporaries of one block stay in the
core's cache, so main memory sees little more than the inputs read once and the outputs
written once.  Blocks are shared among ``threads`` worker threads (NumPy releases the GIL
inside its loops).

Why it is exact.  Each block goes through the very code of the reference, the same NumPy
operations in the same order on the same values; an elementwise operation's result for an
element does not depend on where the element sits in its array.  The tracer
(:mod:`refopt.fast._trace`) certifies that the step is elementwise before a block is cut.
So the result equals ``rule.step`` bit for bit -- the tests check it on every rule and
option this path accepts, and against the golden vectors.

This module is one of refopt's explicit fast paths: it imports NumPy directly.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["step"]

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0


def default_threads() -> int:
    """Worker threads: the cores this process may run on (at most 16)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(16, cores))


def _pool(threads: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    if _POOL is None or _POOL_SIZE < threads:
        if _POOL is not None:
            _POOL.shutdown(wait=True)
        _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="refopt-fast")
        _POOL_SIZE = threads
    return _POOL


_UFUNCS = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide,
    "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
    "maximum": np.maximum, "minimum": np.minimum,
    "neg": np.negative, "abs": np.absolute, "sqrt": np.sqrt, "exp": np.exp, "sign": np.sign,
}
_PYTHON = {  # operations between two coefficients: Python floats, as in the reference
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b,
    "neg": lambda a: -a, "abs": abs,
}


class _Plan:
    """A traced program laid out for NumPy: each array node writes into a block buffer.

    Buffers are reused as soon as the node that last reads them has run, so that one block's
    working set is a handful of buffers; a node that is an output writes straight into the
    output array.
    """

    def __init__(self, prog):
        self.prog = prog
        nodes = prog.nodes
        last_use: dict[int, int] = {}
        for i, n in enumerate(nodes):
            for a in n.args:
                if hasattr(a, "op"):
                    last_use[id(a)] = i
        outputs = {}
        for name, n in prog.outputs:
            outputs.setdefault(id(n), name)
        free: list[int] = []
        self.n_buffers = 0
        self.slot: dict[int, tuple] = {}
        for i, n in enumerate(nodes):
            if n.kind == "scalar":
                continue
            for a in n.args:  # an argument read for the last time here frees its buffer for the result
                if hasattr(a, "op") and last_use.get(id(a)) == i and self.slot.get(id(a), ("",))[0] == "buf":
                    free.append(self.slot[id(a)][1])
            if id(n) in outputs and n.kind == "array":
                self.slot[id(n)] = ("out", outputs[id(n)])
            else:
                kind = "bool" if n.kind == "bool" else "buf"
                if free and kind == "buf":
                    k = free.pop()
                else:
                    k = self.n_buffers
                    self.n_buffers += 1
                self.slot[id(n)] = (kind, k)

    def scalars(self, c, dtype):
        """Every scalar node's value for this step: doubles, then rounded to ``dtype`` at use."""
        values: dict[int, float] = {}
        for n in self.prog.nodes:
            if n.kind == "scalar":
                args = [self._double(a, c, values) for a in n.args]
                values[id(n)] = _PYTHON[n.op](*args)
        return values

    @staticmethod
    def _double(n, c, values):
        if n.op == "coef":
            return getattr(c, n.name)
        if n.op == "const":
            return n.args[0]
        return values[id(n)]

    def run(self, inputs, outputs, lo, hi, c, values, buffers, dtype):
        """Evaluate the program on elements ``lo:hi``."""
        m = hi - lo
        scalar_type = dtype.type
        view = {}

        def get(n):
            if n.op == "in":
                return inputs[n.name][lo:hi]
            if n.kind == "scalar":  # a weak scalar meeting an array: rounded to the array's dtype
                return scalar_type(self._double(n, c, values))
            return view[id(n)]

        for n in self.prog.nodes:
            if n.kind == "scalar":
                continue
            where, k = self.slot[id(n)]
            out = outputs[k][lo:hi] if where == "out" else buffers[where][k][:m]
            if n.op == "where":
                cond, a, b = n.args
                np.copyto(out, get(b))
                np.copyto(out, get(a), where=get(cond))
            elif n.op in ("*", "+") and n.args[0].kind == "scalar":  # IEEE + and * commute exactly;
                _UFUNCS[n.op](get(n.args[1]), get(n.args[0]), out=out)  # NumPy is faster array-first
            else:
                _UFUNCS[n.op](*(get(a) for a in n.args), out=out)
            view[id(n)] = out
        for name, n in self.prog.outputs:
            if self.slot.get(id(n), ("",))[0] != "out" or self.slot[id(n)][1] != name:
                outputs[name][lo:hi] = get(n)  # an input or another output passed through


def step(rule, prog, ps, gs, slots, c_per_leaf, *, block: int, threads: int, targets=None):
    """New parameters and slots (lists over leaves), the traced program evaluated on blocks.

    ``targets``: per leaf, the arrays to write into (``{"p": ..., "s_<slot>": ...}``), or None
    for fresh ones.
    """
    names = rule.slots()
    plan = prog.__dict__.get("numpy_plan") or prog.__dict__.setdefault("numpy_plan", _Plan(prog))
    new_p, new_s = [], []
    jobs = []  # (inputs, outputs, lo, hi, c, scalar values, dtype)
    for i, (p, g, s, c) in enumerate(zip(ps, gs, slots, c_per_leaf)):
        if targets is not None:
            outs = targets[i]
        else:
            outs = {name: np.empty(p.shape, dtype=p.dtype) for name, _ in prog.outputs}
        new_p.append(outs["p"])
        new_s.append({k: outs["s_" + k] for k in names})
        inputs = {"p": p.reshape(-1), "g": g.reshape(-1), **{"s_" + k: s[k].reshape(-1) for k in names}}
        flat = {k: v.reshape(-1) for k, v in outs.items()}
        values = plan.scalars(c, p.dtype)
        n = p.size
        for lo in range(0, n, block):
            jobs.append((inputs, flat, lo, min(n, lo + block), c, values, p.dtype))

    def run(part):
        if not part:
            return
        dtypes = {job[6] for job in part}
        buffers = {
            dt: {"buf": [np.empty(block, dtype=dt) for _ in range(plan.n_buffers)],
                 "bool": [np.empty(block, dtype=bool) for _ in range(plan.n_buffers)]}
            for dt in dtypes
        }
        for inputs, outputs, lo, hi, c, values, dtype in part:
            plan.run(inputs, outputs, lo, hi, c, values, buffers[dtype], dtype)

    workers = min(threads, len(jobs))
    if workers <= 1:
        run(jobs)
    else:  # contiguous runs of blocks per worker: each thread streams through its own memory
        size = -(-len(jobs) // workers)
        parts = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        for future in [_pool(workers).submit(run, part) for part in parts]:
            future.result()
    return new_p, new_s
