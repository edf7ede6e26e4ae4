"""The compiled CPU fast path: the traced step as parallel loops, compiled by Numba.

The program that :mod:`refopt.fast._cupy` prints as a CUDA kernel is printed here as Python
loops, one statement per operation of the reference, and compiled with
``numba.njit(parallel=True, fastmath=False, error_model="numpy")``: every parameter is read and
written about once, and the loops are spread over the cores.  A program with ``exp`` (diffGrad)
calls NumPy's float32 ``exp`` algorithm compiled into the loop (:mod:`refopt.fast._expf`) where
that is what NumPy runs here; otherwise (and in float64) it is cut there: the pieces are
compiled loops and the ``exp`` between them is NumPy's own, run block by block so that what
crosses a cut stays in cache (see :func:`loop_source`).

In place.  Each loop body reads its inputs first and writes its outputs last, so an output may
be the input it replaces (``out=(params, state)``): then a step reads every array once and
writes it back into the cache lines it just read -- no read-for-ownership of a separate
destination, which is what a step into fresh or alternating buffers pays (about 1.4x the
traffic of Adam's step).

Rounding.  ``fastmath=False`` keeps IEEE semantics: LLVM does not contract ``a*b + c`` into a
fused multiply-add, division and square root are correctly rounded, and every coefficient is
rounded to the array's dtype exactly where the reference rounds it (a weak scalar meeting an
array); ``exp`` is NumPy's, called or compiled in.  So the result is the reference's, bit for
bit, for every rule.
``error_model="numpy"`` makes a division by zero give inf or nan, as NumPy's does (Numba's
default raises, and the test for it kept the loops from vectorizing).

Compiled loops are cached on disk (``$REFOPT_CACHE``, default ``~/.cache/refopt``) when that
directory is writable, so a program compiles once per machine (about a second) rather than once
per process.  This module is one of refopt's explicit fast paths: it imports NumPy, and Numba
(the ``numba`` extra) lazily.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import threading
import types
from pathlib import Path

import numpy as np

from ._numpy import _fresh_outputs

__all__ = ["step", "loop_source"]

_KERNELS: dict[str, object] = {}


def _numba():
    try:
        import numba
    except ImportError as exc:
        raise ImportError("engine='numba' needs Numba: pip install 'refopt[numba]'") from exc
    return numba


def _is_array_exp(n) -> bool:
    """``exp`` of an array: where a program is cut, or calls ``exp_f32`` (``exp`` of two
    coefficients is a host scalar, computed once per step)."""
    return n.op == "exp" and n.kind == "array"


def _expr(n, names) -> str:
    """Python source of node ``n``'s value (``T`` is the array's scalar type inside the loop).

    An input array is read through its local copy ``a_<name>``, loaded at the top of the loop
    body (see :func:`loop_source`).  ``exp`` of an array is ``exp_f32``, NumPy's float32 ``exp``
    (:mod:`refopt.fast._expf`), in a loop that calls it at all (``loop_source(inline_exp=True)``)."""
    def ref(a, want):
        if a.op == "in":
            text = f"a_{a.name}"
        elif a.op == "coef":
            text = "c_" + a.name
        elif a.op == "const":
            text = repr(float(a.args[0]))
        else:
            text = names[id(a)]
        if want == "T" and a.kind == "scalar":
            return f"T({text})"  # a weak scalar meeting an array: rounded to T once
        return text

    want = "T" if n.kind == "array" else "double"
    if n.op in ("+", "-", "*", "/"):
        a, b = n.args
        return f"{ref(a, want)} {n.op} {ref(b, want)}"
    if n.op in ("<", "<=", ">", ">="):
        a, b = n.args
        w = "T" if "array" in (a.kind, b.kind) else "double"
        return f"{ref(a, w)} {n.op} {ref(b, w)}"
    if n.op == "neg":
        return f"-{ref(n.args[0], want)}"
    if n.op == "abs":
        return f"abs({ref(n.args[0], want)})"
    if _is_array_exp(n):
        return f"exp_f32({ref(n.args[0], want)})"
    if n.op in ("sqrt", "exp"):
        return f"np.{n.op}({ref(n.args[0], want)})"
    if n.op == "sign":  # NumPy's sign: ±1, and x itself for ±0 and NaN
        x = ref(n.args[0], want)
        return f"(T(1) if {x} > 0 else (T(-1) if {x} < 0 else {x}))"
    if n.op in ("maximum", "minimum"):  # NaN-propagating, like NumPy's
        a, b = (ref(x, want) for x in n.args)
        cmp = ">=" if n.op == "maximum" else "<="
        return f"({a} if {a} != {a} else ({b} if {b} != {b} else ({a} if {a} {cmp} {b} else {b})))"
    if n.op == "where":
        cond, a, b = n.args
        return f"({ref(a, want)} if {names[id(cond)]} else {ref(b, want)})"
    raise AssertionError(n.op)  # pragma: no cover - every traced op is printed above


def loop_source(prog, inplace=frozenset(), inline_exp=False):
    """The module source of the compiled step and the schedule that runs it.

    Every loop body reads the inputs it needs into locals first and writes the outputs last,
    so an output may be its own input (``inplace``: the output names written into the input
    array of the same name, ``p`` and ``s_<slot>``, instead of into ``out_<name>``).

    A program without ``exp`` is one parallel loop over the whole array (``loop0``), and so is
    a program with ``exp`` when ``inline_exp``: the loop calls ``exp_f32``, NumPy's float32
    ``exp`` written out for Numba (:mod:`refopt.fast._expf`; float32 arrays only, and only where
    it equals ``np.exp`` in this process -- :func:`step` decides).  Otherwise a program with
    ``exp`` is cut there into pieces (``loop0``, ``loop1``, ...) with NumPy's ``exp`` between
    them -- the reference's own, so the result keeps the reference's bits.  Such a program runs
    *blocked*: every piece, then the next, on one block of elements at a time, so that the
    values crossing a cut live in block-sized temporaries that stay in cache (the schedule is
    run by :func:`step` on several threads).  An output is written by the piece that computes
    it, and later pieces read it back from there -- except in place while a later piece still
    reads the input it replaces: then a temporary carries it to the last piece.

    Returns ``(source, schedule, temporaries, blocked)``: ``schedule`` lists ``("loop", name,
    args)`` and ``("exp", source_array, result_array)`` in order; ``temporaries`` maps each
    temporary's name to its kind ("array" or "bool").
    """
    nodes = prog.nodes
    names = {id(n): f"n{i}" for i, n in enumerate(nodes)}
    uses: dict[int, int] = {}
    for n in nodes:
        for a in n.args:
            uses[id(a)] = uses.get(id(a), 0) + 1

    # pieces between the cuts; an exp's result belongs "between" piece k and k + 1
    cuts = [] if inline_exp else [n for n in nodes if _is_array_exp(n)]
    pieces: list[list] = [[]]
    for n in nodes:
        if n in cuts:
            pieces.append([])
        elif n.kind != "scalar":
            pieces[-1].append(n)
    last = len(pieces) - 1
    piece_of = {id(n): k for k, piece in enumerate(pieces) for n in piece}
    piece_of.update({id(n): k + 0.5 for k, n in enumerate(cuts)})

    def dest(name):
        return name if name in inplace else "out_" + name

    # the last piece that reads each input array (an output passed through counts as a read there)
    last_read: dict[str, float] = {}
    for n in nodes:
        for a in n.args:
            if a.op == "in":
                last_read[a.name] = max(last_read.get(a.name, 0), piece_of[id(n)])
    for _, n in prog.outputs:
        if n.op == "in":
            last_read[n.name] = last

    # where a value that crosses a cut lives: an output in its destination when that is safe
    # (not in place, or its input is read by no later piece), anything else in a temporary
    crossing = {id(a) for n in nodes for a in n.args
                if a.kind != "scalar" and a.op != "in" and piece_of[id(a)] != piece_of.get(id(n))}
    crossing |= {id(n) for _, n in prog.outputs if n.kind != "scalar" and n.op != "in" and piece_of[id(n)] != last}
    storage: dict[int, str] = {}
    temporaries: dict[str, str] = {}
    for name, n in prog.outputs:
        if id(n) in crossing and id(n) not in storage and (
                name not in inplace or last_read.get(name, -1) <= piece_of[id(n)]):
            storage[id(n)] = dest(name)
    for i, n in enumerate(nodes):
        if id(n) not in crossing or id(n) in storage:
            continue
        arg = n.args[0] if n in cuts else None
        if arg is not None and uses[id(arg)] == 1 and storage.get(id(arg)) in temporaries:
            storage[id(n)] = storage[id(arg)]  # exp in place: its argument has no other reader
        else:
            storage[id(n)] = f"t{i}"
            temporaries[f"t{i}"] = "bool" if n.kind == "bool" else "array"

    scalar_lines = [f"    {names[id(n)]} = {_expr(n, names)}" for n in nodes if n.kind == "scalar"]
    blocked = bool(cuts)
    lines = ['"""A refopt update step compiled by Numba (generated by refopt.fast._numba; do not edit)."""',
             "import numba", "import numpy as np", ""]
    if inline_exp and any(_is_array_exp(n) for n in nodes):
        from . import _expf

        lines[-1:] = [f"from refopt.fast._expf import exp_f32  # refopt.fast._expf {_expf.SOURCE_TAG}", ""]
    schedule = []
    for k, piece in enumerate(pieces):
        loads, body, stores = [], [], []
        inputs: list[str] = []
        loaded: set[int] = set()

        def read(a):
            if a.op == "in":
                if a.name not in inputs:
                    inputs.append(a.name)
            elif a.kind != "scalar" and piece_of[id(a)] != k and id(a) not in loaded:
                loads.append(f"        {names[id(a)]} = {storage[id(a)]}[i]")  # from an earlier piece or exp
                loaded.add(id(a))

        for n in piece:
            for a in n.args:
                read(a)
            body.append(f"        {names[id(n)]} = {_expr(n, names)}")
            if id(n) in crossing:
                stores.append(f"        {storage[id(n)]}[i] = {names[id(n)]}")
        if k == last:
            for name, n in prog.outputs:
                if n.kind == "scalar":
                    value = _expr_scalar(n) if n.op in ("coef", "const") else names[id(n)]
                    value = f"T({value})"
                elif storage.get(id(n)) == dest(name):
                    continue  # written there by the piece (or exp) that computed it
                else:
                    read(n)
                    value = f"a_{n.name}" if n.op == "in" else names[id(n)]
                stores.append(f"        {dest(name)}[i] = {value}")
        loads = [f"        a_{name} = {name}[i]" for name in inputs] + loads
        text = "\n".join(loads + body + stores)
        read_arrays = set(re.findall(r"\b(\w+)\[i\]", text))
        used = text + "\n".join(scalar_lines)
        coefficients = ["c_" + c for c in prog.scalars if re.search(rf"\bc_{c}\b", used)]
        arrays = [a for a in prog.arrays if a in read_arrays and a != "p"]
        written = sorted(w for w in {*temporaries, *(dest(nm) for nm, _ in prog.outputs)}
                         if w in read_arrays and w not in ("p", *arrays))
        args = ["p", *arrays, *coefficients, *written]
        serial = ("@numba.njit(nogil=True, fastmath=False, error_model='numpy', cache=True)", "range(p.shape[0])")
        parallel = ("@numba.njit(parallel=True, fastmath=False, error_model='numpy', cache=True)", "numba.prange(p.shape[0])")
        # a blocked program's loops run on one block per call; a one-loop program also gets a serial
        # twin, for arrays too small to share out (PARALLEL_MIN)
        for suffix, (decorator, loop) in [("", serial)] if blocked else [("", parallel), ("_serial", serial)]:
            lines += ["", decorator, f"def loop{k}{suffix}({', '.join(args)}):", "    T = p.dtype.type", *scalar_lines,
                      f"    for i in {loop}:", *(loads + body + stores or ["        pass"])]
        schedule.append(("loop", f"loop{k}", args))
        if k < len(cuts):
            arg = cuts[k].args[0]
            schedule.append(("exp", arg.name if arg.op == "in" else storage[id(arg)], storage[id(cuts[k])]))
    return "\n".join(lines) + "\n", schedule, temporaries, blocked


def _expr_scalar(n) -> str:
    return f"c_{n.name}" if n.op == "coef" else repr(float(n.args[0]))


def _cache_dir() -> Path | None:
    root = Path(os.environ.get("REFOPT_CACHE") or Path.home() / ".cache" / "refopt") / "numba"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".writable"
        probe.touch()
        return root
    except OSError:
        return None


def _module(source: str):
    """The compiled module of ``source`` (loaded once per process, compiled once per machine)."""
    module = _KERNELS.get(source)
    if module is not None:
        return module
    _numba()
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    name = f"refopt_step_{digest}"
    where = _cache_dir()
    if where is not None:  # a real file, so that Numba can cache the machine code beside it
        path = where / f"{name}.py"
        if not path.exists() or path.read_text() != source:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(source)
            os.replace(tmp, path)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # Numba's disk cache finds the functions' module by name
        spec.loader.exec_module(module)
    else:
        module = types.ModuleType(name)
        exec(compile(source.replace("cache=True", "cache=False"), f"<refopt step {digest}>", "exec"), module.__dict__)
    _KERNELS[source] = module
    return module


#: elements from which a one-loop program is shared out among the threads.  Below it the loop runs
#: on the calling thread: the work is microseconds, and Numba's OpenMP threads, once woken, spin
#: for a while and take the cores from whatever runs next (a BLAS call of the model) -- a small
#: transformer's training step went from 11 to 20 ms with its 21k-parameter update in parallel.
PARALLEL_MIN = 1 << 18

#: compile NumPy's float32 ``exp`` into the loop (:mod:`refopt.fast._expf`) where it equals
#: ``np.exp`` in this process: one pass over memory instead of a program cut at ``exp``.  False
#: keeps the cut for every dtype.  float64 is always cut: NumPy's float64 ``exp`` is SVML's or libm's.
INLINE_EXP = True

#: elements per block of a blocked program.  Its temporaries (0.5 MB each in float32) stay in
#: cache between the pieces; on the 2-core CI machine 2^17 was the fastest of 2^13 ... 2^19
#: for diffGrad at 10^7 (smaller blocks pay the Python between pieces, larger ones spill).
BLOCK = 1 << 17


def step(rule, prog, ps, gs, slots, coefficients, *, threads: int | None, targets=None, scratch=None):
    """New parameters and slots (lists over leaves): the compiled loops (and NumPy's exp) per leaf.

    ``targets``: per leaf, the arrays to write into (``{"p": ..., "s_<slot>": ...}``; an array
    may be the input of the same name: in place), or None for fresh ones.
    ``scratch``: a dict in which a blocked program's temporaries are kept from one step to the
    next (the caller's, one per thread), or None for fresh ones.
    """
    numba = _numba()
    names = rule.slots()
    new_p, new_s = [], []
    previous = numba.get_num_threads()
    workers = min(threads, numba.config.NUMBA_NUM_THREADS) if threads is not None else previous
    numba.set_num_threads(workers)
    try:
        for i, (p, g, s, c) in enumerate(zip(ps, gs, slots, coefficients)):
            inputs = {"p": p, "g": g, **{"s_" + k: s[k] for k in names}}
            if targets is not None:
                outs = {name: targets[i][name] for name, _ in prog.outputs}
            else:
                outs = _fresh_outputs(prog, p)
            inplace = frozenset(name for name, a in outs.items() if a is inputs[name])
            key = (inplace, _inline_exp(prog, p.dtype))
            printed = prog.__dict__.setdefault("numba_sources", {})  # printed once per program and variant
            if key not in printed:
                printed[key] = loop_source(prog, *key)
            source, schedule, temporaries, blocked = printed[key]
            module = _module(source)
            env = {name: np.ascontiguousarray(a).reshape(-1) for name, a in inputs.items()}
            env.update({"out_" + name: a.reshape(-1) for name, a in outs.items() if name not in inplace})
            env.update({"c_" + k: float(getattr(c, k)) for k in prog.scalars})
            if not blocked:
                (_, loop, args), = schedule
                if workers < 2 or p.size < PARALLEL_MIN:
                    loop += "_serial"
                getattr(module, loop)(*(env[a] for a in args))
            else:
                _run_blocked(module, schedule, temporaries, env, p.size, p.dtype, workers, scratch)
            new_p.append(outs["p"])
            new_s.append({k: outs["s_" + k] for k in names})
    finally:
        numba.set_num_threads(previous)
    return new_p, new_s


def _inline_exp(prog, dtype) -> bool:
    """Whether this program's loops call NumPy's float32 ``exp`` themselves (see ``INLINE_EXP``)."""
    if not INLINE_EXP or dtype != np.float32 or not any(_is_array_exp(n) for n in prog.nodes):
        return False
    from . import _expf

    return _expf.matches_numpy()


def _run_blocked(module, schedule, temporaries, env, n, dtype, threads, scratch):
    """Run a cut program block by block: every loop (and exp) of the schedule on elements
    ``lo:hi`` before the next block, each thread on its own contiguous share of the blocks.

    The compiled loops release the GIL and so does NumPy's exp, so the threads overlap; the
    temporaries of a block (one set per thread) stay in cache between the pieces.
    """
    from ._numpy import run_in_shares

    loops = [(getattr(module, a), b) if what == "loop" else (None, (a, b)) for what, a, b in schedule]

    def work(start, stop):
        key = (threading.get_ident(), dtype, BLOCK)
        temps = None if scratch is None else scratch.get(key)
        if temps is None:
            temps = {t: np.empty(BLOCK, dtype=bool if kind == "bool" else dtype) for t, kind in temporaries.items()}
            if scratch is not None:
                scratch[key] = temps
        for lo in range(start, stop, BLOCK):
            hi = min(stop, lo + BLOCK)
            view = {k: temps[k][: hi - lo] for k in temporaries}
            view.update({k: a[lo:hi] if isinstance(a, np.ndarray) else a for k, a in env.items()})
            for fn, args in loops:
                if fn is not None:
                    fn(*(view[a] for a in args))
                else:
                    np.exp(view[args[0]], out=view[args[1]])

    run_in_shares(work, n, BLOCK, threads)
