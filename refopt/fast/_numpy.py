"""The NumPy fast path: the traced step, evaluated block by block.

Why it is faster.  The reference evaluates a rule's box one array operation at a time; on
10^7 parameters every operation is a full pass over memory and a fresh 40 MB temporary (an
Adam step makes 13 of them, about six times the traffic the step needs).  Here the traced
program (:mod:`refopt.fast._trace`) runs on blocks of ``block`` elements, one NumPy call per
operation with ``out=`` a block buffer: the temporaries of one block stay in the core's cache,
so main memory sees little more than the inputs read once and the outputs written once.
Blocks are shared among ``threads`` worker threads (NumPy releases the GIL inside its loops).

Why it is exact.  The program is the reference's own operations in the reference's order, each
done by the same NumPy function on the same values (a coefficient is rounded to the array's
dtype where it meets the array, as NumPy rounds a Python float), and an elementwise
operation's result for an element does not depend on where the element sits in its array.
The one liberty taken is ``s * x`` evaluated as ``x * s`` (and ``s + x`` as ``x + s``), which
IEEE arithmetic defines to be the same number.  The tests check the result against
``rule.step`` bit for bit on every rule and option this path accepts, and the golden vectors.

This module is one of refopt's explicit fast paths: it imports NumPy directly.
"""

from __future__ import annotations

import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["step", "recycled_empty", "release_recycled", "free_bytes"]

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _forget_pool() -> None:
    """In a forked child (``multiprocessing``'s default on Linux): the parent's worker threads do not
    exist there, and work handed to them would wait forever; the locks may have been held."""
    global _POOL, _POOL_SIZE, _POOL_LOCK, _FREE_LOCK
    _POOL, _POOL_SIZE, _POOL_LOCK = None, 0, threading.Lock()
    _FREE_LOCK = threading.RLock()


# ---------------------------------------------------------------------------------------------------
# recycled output memory
# ---------------------------------------------------------------------------------------------------
#
# A fresh array of tens of megabytes is mapped anew by the C allocator and faulted in page by page
# on its first write, and given back to the kernel when it is freed.  A step that returns new
# arrays pays that for each output, every step; on a VM whose guest hands freed pages back to the
# host (virtio-balloon free page reporting) each fault is a trip to the host, and the sliced
# reference step of diffGrad at 10^7 parameters spent 0.45 s of kernel time per 0.3 s step on it.
# So the outputs of such a step are cut from blocks that refopt keeps: when the arrays handed out
# (and every view of them) are gone, their block is free for the next step's outputs, already
# faulted in.  Kept free are at most half the most bytes ever in use at once: in a loop that
# holds one step's arrays while it makes the next, exactly one step's outputs.  The rest goes back
# to the allocator; release_recycled() drops them all.  Arrays under RECYCLE_MIN_BYTES are plain
# np.empty: the C allocator reuses small blocks by itself.
#
# The sliced reference step's temporaries (256 kB each, a few megabytes per slice) are NumPy's own
# and go through the C allocator, which gives freed memory above its trim threshold back to the
# kernel -- and glibc's threshold follows the largest mmap-ed block freed so far (its "dynamic mmap
# threshold", mallopt(3)), which a process whose only large arrays exceed 32 MB never raises: then
# the temporaries of every slice were handed back and faulted in again (30,000 faults, 0.1 s of
# kernel time per diffGrad step at 10^7).  _settle_allocator() frees one 8 MB block once, as any
# NumPy program that freed such an array would have, which raises glibc's thresholds to 8 and 16 MB;
# elsewhere it is an allocation and nothing more.

#: False: every new output is a fresh ``np.empty`` array (and the allocator is left as it is)
RECYCLE = True
#: arrays of at least this many bytes are recycled
RECYCLE_MIN_BYTES = 1 << 18
_SETTLED = False


def _settle_allocator() -> None:
    global _SETTLED
    if not _SETTLED:
        _SETTLED = True
        block = np.empty(8 << 20, dtype=np.uint8)
        del block


class _Block(np.ndarray):
    """Memory the recycler owns (an ndarray subclass that owns its data)."""


class _Lease(np.ndarray):
    """One use of a :class:`_Block`: the base of the array handed out.  Its own subclass stops
    NumPy's collapsing of view chains there, so every view of the output keeps the lease
    alive, and the lease dies only when the last of them does."""


_FREE: dict[int, list] = {}  # nbytes -> free blocks
_LEASED_BYTES = 0  # in blocks whose arrays are alive
_PEAK_BYTES = 0  # the most ever leased at once
_FREE_LOCK = threading.RLock()  # an RLock: a lease may die (and give back) inside a locked section


def free_bytes() -> int:
    """Bytes in free blocks, kept for the next outputs."""
    with _FREE_LOCK:
        return sum(nbytes * len(blocks) for nbytes, blocks in _FREE.items())


def _give_back(block) -> None:
    global _LEASED_BYTES
    with _FREE_LOCK:
        _LEASED_BYTES -= block.nbytes
        if free_bytes() + block.nbytes <= _PEAK_BYTES // 2:
            _FREE.setdefault(block.nbytes, []).append(block)


def recycled_empty(n: int, dtype, count: int) -> list[np.ndarray]:
    """``count`` new 1-D arrays of ``n`` elements of ``dtype``, uninitialised like ``np.empty``,
    each on a block that is reused once the array and all its views are gone (from
    ``RECYCLE_MIN_BYTES`` on, while ``RECYCLE``; otherwise they are ``np.empty``'s).

    The arrays are ordinary ``numpy.ndarray`` objects (their ``base`` is the lease object, so they
    do not own their data).  Thread-safe; after a fork the child starts with the blocks it
    inherited.
    """
    global _LEASED_BYTES, _PEAK_BYTES
    nbytes = n * np.dtype(dtype).itemsize
    if not RECYCLE or nbytes < RECYCLE_MIN_BYTES:
        return [np.empty((n,), dtype=dtype) for _ in range(count)]
    _settle_allocator()
    blocks = []
    with _FREE_LOCK:
        free = _FREE.get(nbytes, [])
        while free and len(blocks) < count:
            blocks.append(free.pop())
        _LEASED_BYTES += nbytes * count
        _PEAK_BYTES = max(_PEAK_BYTES, _LEASED_BYTES)
    blocks += [_Block((nbytes,), np.uint8) for _ in range(count - len(blocks))]
    out = []
    for block in blocks:
        lease = block.view(_Lease)
        weakref.finalize(lease, _give_back, block).atexit = False
        out.append(np.ndarray((n,), dtype, buffer=lease))
    return out


def release_recycled() -> int:
    """Drop every free block (their memory goes back to the allocator); returns the bytes dropped.
    Blocks in use are not touched and are kept again when they are freed."""
    with _FREE_LOCK:
        dropped = free_bytes()
        _FREE.clear()
    return dropped


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def default_threads() -> int:
    """Worker threads: the cores this process may run on (at most 16)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(16, cores))


def _pool(threads: int) -> ThreadPoolExecutor:
    """The shared worker threads (at least ``threads`` of them), for the fast paths and the sliced
    reference step; made again in a forked child (:func:`_forget_pool`).  A pool that is too small
    is replaced but not shut down -- another thread may be using it; its idle workers exit when it
    is collected.
    """
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < threads:
            _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="refopt-fast")
            _POOL_SIZE = threads
        return _POOL


def run_in_shares(work, n: int, block: int, threads: int) -> None:
    """Call ``work(lo, hi)`` on contiguous shares of ``range(n)``, one per thread (at most
    ``threads``), each a whole number of blocks of ``block`` elements but the last; wait for all.
    A single share runs on the calling thread."""
    blocks = -(-n // block)
    workers = max(1, min(threads, blocks))
    if workers == 1:
        work(0, n)
        return
    edges = [blocks * j // workers * block for j in range(workers)] + [n]
    for done in [_pool(workers).submit(work, edges[j], edges[j + 1]) for j in range(workers)]:
        done.result()


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

    Where a result lives decides the speed, not the arithmetic (which is fixed):

    * an output is *accumulated in place*: the chain of single-use nodes that ends in an
      output (``m = β1·m_old`` then ``m += (1-β1)·g``) writes into the output's block from its
      first node on, as hand-written NumPy would -- the output's cache lines are fetched once
      and every later node of the chain finds them in cache;
    * every other result takes a scratch buffer, reused as soon as the node that last reads it
      has run (often by that very node: an in-place operation), so one block's working set is
      a handful of buffers.
    """

    def __init__(self, prog):
        self.prog = prog
        nodes = prog.nodes
        last_use: dict[int, int] = {}
        uses: dict[int, int] = {}
        for i, n in enumerate(nodes):
            for a in n.args:
                if hasattr(a, "op"):
                    last_use[id(a)] = i
                    uses[id(a)] = uses.get(id(a), 0) + 1
        for _, n in prog.outputs:
            uses[id(n)] = uses.get(id(n), 0) + 1
        self.slot: dict[int, tuple] = {}
        for name, n in prog.outputs:  # output chains: in place, from the chain's first node
            while n.op not in ("in", "coef", "const") and n.kind == "array" and id(n) not in self.slot:
                self.slot[id(n)] = ("out", name)
                chain = [a for a in n.args if hasattr(a, "op") and a.kind == "array"
                         and a.op not in ("in", "coef", "const") and uses[id(a)] == 1 and id(a) not in self.slot]
                if not chain:
                    break
                n = chain[0]
        free: list[int] = []
        self.n_buffers = 0
        for i, n in enumerate(nodes):
            if n.kind == "scalar":
                continue
            for a in n.args:  # an argument read for the last time here frees its buffer for the result
                if hasattr(a, "op") and last_use.get(id(a)) == i and self.slot.get(id(a), ("",))[0] == "buf":
                    free.append(self.slot[id(a)][1])
            if id(n) in self.slot:  # part of an output chain
                continue
            else:
                kind = "bool" if n.kind == "bool" else "buf"
                if free and kind == "buf":
                    k = free.pop()
                else:
                    k = self.n_buffers
                    self.n_buffers += 1
                self.slot[id(n)] = (kind, k)

        # the program as instructions over storage keys: ("in", name), ("out", name), ("buf", k),
        # ("bool", k), or ("s", i) for the i-th scalar operand of this step
        self.scalar_nodes: list = []
        scalar_index: dict[int, int] = {}

        def key(a):
            if a.op == "in":
                return ("in", a.name)
            if a.kind == "scalar":
                if id(a) not in scalar_index:
                    scalar_index[id(a)] = len(self.scalar_nodes)
                    self.scalar_nodes.append(a)
                return ("s", scalar_index[id(a)])
            return self.slot[id(a)]

        self.code: list[tuple] = []
        for n in nodes:
            if n.kind == "scalar":
                continue
            args = [key(a) for a in n.args]
            if n.op in ("*", "+") and n.args[0].kind == "scalar":
                args.reverse()  # IEEE + and * commute exactly; NumPy's loops are faster array-first
            self.code.append((n.op, tuple(args), self.slot[id(n)]))
        # outputs that are not computed in place: an input, a constant or another output passed through
        self.copies = [(name, key(n)) for name, n in prog.outputs if self.slot.get(id(n)) != ("out", name)]

    def scalars(self, c, dtype) -> list:
        """This step's scalar operands: Python floats (doubles) as the reference computes them,
        rounded once to ``dtype`` where they meet an array (a weak scalar)."""
        values: dict[int, float] = {}

        def double(n):
            if n.op == "coef":
                return getattr(c, n.name)
            if n.op == "const":
                return n.args[0]
            return values[id(n)]

        for n in self.prog.nodes:
            if n.kind == "scalar":
                values[id(n)] = _PYTHON[n.op](*(double(a) for a in n.args))
        return [dtype.type(double(n)) for n in self.scalar_nodes]

    def run(self, inputs, outputs, lo, hi, scalars, buffers):
        """Evaluate the program on elements ``lo:hi``.

        An output that is its own input (in place) would be overwritten while the program may
        still read the input: such inputs are first copied into a block buffer (in cache).
        """
        m = hi - lo
        env = {("s", i): v for i, v in enumerate(scalars)}
        for name, a in inputs.items():
            env[("in", name)] = a[lo:hi]
            if outputs.get(name) is a:
                copies = buffers["in"]  # made on first need: most steps are not in place
                if name not in copies:
                    copies[name] = np.empty(buffers["size"], dtype=a.dtype)
                env[("in", name)] = copy = copies[name][:m]
                np.copyto(copy, a[lo:hi])
        for name, a in outputs.items():
            env[("out", name)] = a[lo:hi]
        for kind in ("buf", "bool"):
            for k, b in enumerate(buffers[kind]):
                env[(kind, k)] = b[:m]
        for op, args, out in self.code:
            if op == "where":
                cond, a, b = args
                if out == a:  # the result reuses a's buffer: fill in b where the condition fails
                    np.copyto(env[out], env[b], where=np.logical_not(env[cond]))
                else:
                    if out != b:
                        np.copyto(env[out], env[b])
                    np.copyto(env[out], env[a], where=env[cond])
            else:
                _UFUNCS[op](*[env[a] for a in args], out=env[out])
        for name, a in self.copies:
            outputs[name][lo:hi] = env[a]


_SCRATCH = threading.local()  # per thread: (dtype, size) -> the block buffers of the last step


def _block_buffers(dtype, size: int, count: int) -> dict:
    """This thread's block buffers for ``dtype``: ``count`` scratch arrays, as many boolean ones,
    and the copies of in-place inputs (made on first need), each of ``size`` elements -- kept from
    one step to the next, so that a step allocates nothing (fresh buffers of 2^16 elements are
    above the C allocator's mmap threshold: each step mapped and faulted them in anew, 0.2 ms at
    20,000 parameters in place)."""
    cache = _SCRATCH.__dict__.setdefault("buffers", {})
    key = (np.dtype(dtype), size)
    buffers = cache.get(key)
    if buffers is None:
        if len(cache) >= 8:  # block sizes this thread no longer uses
            cache.clear()
        buffers = cache[key] = {"buf": [], "bool": [], "in": {}, "size": size}
    while len(buffers["buf"]) < count:
        buffers["buf"].append(np.empty(size, dtype=dtype))
        buffers["bool"].append(np.empty(size, dtype=bool))
    return buffers


def _fresh_outputs(prog, p) -> dict:
    """The output arrays of a step that has no ``out=``, shaped like ``p`` (recycled memory)."""
    arrays = recycled_empty(p.size, p.dtype, len(prog.outputs))
    return {name: a.reshape(p.shape) for (name, _), a in zip(prog.outputs, arrays)}


def step(rule, prog, ps, gs, slots, c_per_leaf, *, block: int, threads: int, targets=None):
    """New parameters and slots (lists over leaves), the traced program evaluated on blocks.

    ``targets``: per leaf, the arrays to write into (``{"p": ..., "s_<slot>": ...}``), or None
    for fresh ones.
    """
    names = rule.slots()
    plan = prog.__dict__.get("numpy_plan") or prog.__dict__.setdefault("numpy_plan", _Plan(prog))
    new_p, new_s = [], []
    jobs = []  # (inputs, outputs, lo, hi, scalar values, dtype)
    for i, (p, g, s, c) in enumerate(zip(ps, gs, slots, c_per_leaf)):
        if targets is not None:
            outs = targets[i]
        else:
            outs = _fresh_outputs(prog, p)
        new_p.append(outs["p"])
        new_s.append({k: outs["s_" + k] for k in names})
        inputs = {"p": p, "g": g, **{"s_" + k: s[k] for k in names}}
        flat = {k: v.reshape(-1) for k, v in outs.items()}
        inputs = {k: flat[k] if outs.get(k) is v else v.reshape(-1) for k, v in inputs.items()}  # in place: one view
        values = plan.scalars(c, p.dtype)
        n = p.size
        for lo in range(0, n, block):
            jobs.append((inputs, flat, lo, min(n, lo + block), values, p.dtype))

    def run(part):
        if not part:
            return
        size = max(hi - lo for _, _, lo, hi, _, _ in part)
        buffers = {dt: _block_buffers(dt, size, plan.n_buffers) for dt in {job[-1] for job in part}}
        for inputs, outputs, lo, hi, values, dtype in part:
            plan.run(inputs, outputs, lo, hi, values, buffers[dtype])

    workers = min(threads, len(jobs))
    if workers <= 1:
        run(jobs)
    else:  # contiguous runs of blocks per worker: each thread streams through its own memory
        size = -(-len(jobs) // workers)
        parts = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        for future in [_pool(workers).submit(run, part) for part in parts]:
            future.result()
    return new_p, new_s
